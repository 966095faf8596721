"Heavier checks of dfe.facemodel: the cached embedding, gradients, gradcheck, and the embedding on real frames."
import numpy as np, pytest, torch
from dfe.facemodel import (load_face_model, mediapipe_embedding, compute_mediapipe_embedding, embedding_cache_path,
                           read_ict_model, FaceModel, select_submesh,
                           MEDIAPIPE_REGIONS, landmark_fit_residual)
from dfe.landmarks import load_mediapipe_canonical, landmarker_model_path

@pytest.fixture(scope='module')
def model(): return load_face_model(device='cpu')


def test_embedding_from_scratch_matches_cache(tmp_path, monkeypatch):
    cached = mediapipe_embedding()  # the user cache (computed there if missing)
    monkeypatch.setenv('DFE_CACHE', str(tmp_path))
    cp = embedding_cache_path()
    assert str(cp).startswith(str(tmp_path)) and not cp.exists()
    fresh = mediapipe_embedding()
    assert cp.exists()
    np.testing.assert_array_equal(fresh['triangle'], cached['triangle'])
    np.testing.assert_allclose(fresh['bary'], cached['bary'], atol=1e-5)
    np.testing.assert_allclose(fresh['residual_rigid'], cached['residual_rigid'], atol=1e-5, equal_nan=True)
    # a corrupt cache file is recomputed and replaced, never returned
    cp.write_bytes(b'garbage')
    again = mediapipe_embedding()
    np.testing.assert_array_equal(again['triangle'], cached['triangle'])
    assert np.load(cp)['bary'].shape == (478, 3)
    assert [p.name for p in cp.parent.iterdir()] == [cp.name]  # atomic write left no temporary behind


def test_embedding_is_valid_and_on_face(model):
    emb = mediapipe_embedding()
    ict = read_ict_model()
    b = emb['bary']
    assert (b >= -1e-6).all() and np.allclose(b.sum(1), 1, atol=1e-5)
    pn = ict['part_names']
    fr = ict['part_ranges'][pn.index('face')]
    assert (emb['vertex_ids'][:468] <= fr[1]).all()  # face part only, never the mouth interior
    for side, ids in (('right', range(468, 473)), ('left', range(473, 478))):
        lo, hi = ict['part_ranges'][pn.index(f'eyeball_{side}')]
        assert ((emb['vertex_ids'][list(ids)] >= lo) & (emb['vertex_ids'][list(ids)] <= hi)).all()
    assert np.nanmax(emb['residual_surface'][:468]) < 0.2  # warped points end on the surface (cm)


def test_gradients_reach_every_parameter(model):
    torch.manual_seed(0)
    p = [torch.randn(2, 100)*0.5, torch.rand(2, 53), torch.randn(2, 3)*0.2, torch.tensor([[0., 0, 60]]*2)]
    p = [x.requires_grad_() for x in p]
    v = model(*p)
    loss = (v*torch.randn_like(v)).sum() + model.landmarks_from_vertices(v).square().sum()
    loss.backward()
    for name, x in zip(('identity', 'expression', 'rotation', 'translation'), p):
        assert torch.isfinite(x.grad).all(), name
        assert (x.grad.abs() > 0).all(), f"{name}: some coefficients get no gradient"


def test_gradcheck_float64_subset(model):
    m = load_face_model(parts=('narrow_face',), device='cpu', n_identity=6).double()
    idx = torch.tensor([0, 100, 2000, 5000, int(m.landmarks68[8]), int(m.landmarks68[62])])
    def f(ident, expr, rot, trans): return m(ident, expr, rot, trans)[:, idx]
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(1, 6, generator=g, dtype=torch.float64), torch.rand(1, 53, generator=g, dtype=torch.float64),
            0.3*torch.randn(1, 3, generator=g, dtype=torch.float64), torch.randn(1, 3, generator=g, dtype=torch.float64)]
    assert torch.autograd.gradcheck(f, [a.requires_grad_() for a in args])
    # the landmarks too (a linear gather), and the rotation exactly at 0 and tiny
    def fl(expr, rot): return m.landmarks_from_vertices(m(expression=expr, rotation=rot))[:, [13, 14, 61, 291]]
    for r0 in (torch.zeros(1, 3, dtype=torch.float64), torch.full((1, 3), 1e-5, dtype=torch.float64)):
        assert torch.autograd.gradcheck(fl, [args[1].detach().requires_grad_(), r0.requires_grad_()])


def test_device_and_dtype_moves(model):
    m = model.double()
    v = m(expression=torch.zeros(1, 53, dtype=torch.float64))
    assert v.dtype == torch.float64 and m.landmarks_from_vertices(v).dtype == torch.float64
    model.float()
    assert len(model.state_dict()) == 0  # constants are non-persistent buffers: nothing to checkpoint
    if torch.cuda.is_available():
        mc = load_face_model(device='cuda')
        vc = mc(torch.zeros(1, 100, device='cuda'), torch.zeros(1, 53, device='cuda'))
        assert vc.is_cuda and mc.landmarks_from_vertices(vc).is_cuda


def _detections(n_per_clip=2, clips=('hdtf_katiehill_000', 'hdtf_edmarkey_000')):
    av = pytest.importorskip('av'); mp = pytest.importorskip('mediapipe')
    from mediapipe.tasks.python import vision, BaseOptions
    from dfe.core import data_dir
    opts = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(landmarker_model_path(required=True))),
                                        output_face_blendshapes=True, output_facial_transformation_matrixes=True, num_faces=1)
    out = []
    with vision.FaceLandmarker.create_from_options(opts) as lmk:
        for clip in clips:
            path = data_dir()/'clips'/f'{clip}.mp4'
            if not path.exists(): pytest.skip(f"{path} not available")
            with av.open(str(path)) as c:
                for i, f in enumerate(c.decode(video=0)):
                    if i % 50: continue
                    img = f.to_ndarray(format='rgb24')
                    r = lmk.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(img)))
                    H, W = img.shape[:2]
                    out.append((np.array([[p.x*W, p.y*H] for p in r.face_landmarks[0]], np.float32),
                                np.array(r.facial_transformation_matrixes[0]), np.array([[b.score for b in r.face_blendshapes[0]]], np.float32), (H, W)))
                    if len(out) % n_per_clip == 0: break
    return out


def _face_model(emb, n_identity=40):
    ict = read_ict_model()
    s = select_submesh(ict, ('face',)); v = s['vertex_ids']
    return FaceModel(ict['neutral'][v], ict['identity_basis'][:n_identity, v], ict['expression_basis'][:, v], s['faces'],
                     s['faces_uv'], ict['uv'][s['uv_ids']], s['face_part'], s['part_names'], ict['expression_names'], v,
                     s['triangle_ids'], np.full(68, -1), embedding=emb)


def test_real_frames_non_rigid_embedding_beats_rigid_projection():
    """On real detections, a model fitted through the final embedding explains MediaPipe's lips and eyes better than
    one fitted through the similarity-aligned canonical points merely projected on the surface (no non-rigid step)."""
    torch.manual_seed(0)
    dets = _detections()
    ict, (cv, cf) = read_ict_model(), load_mediapipe_canonical()
    final, rigid = mediapipe_embedding(), compute_mediapipe_embedding(ict, cv, cf, stiffness=())
    ids = list(MEDIAPIPE_REGIONS['lips_outer'] + MEDIAPIPE_REGIONS['eye_left'] + MEDIAPIPE_REGIONS['eye_right'])
    res = {}
    for name, emb in (('final', final), ('rigid', rigid)):
        m = _face_model(emb)
        res[name] = np.mean([landmark_fit_residual(m, *d, steps=250)[ids].mean() for d in dets])
    print(res)
    assert res['final'] < res['rigid']
