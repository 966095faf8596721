"Landmark detection on real clips and edited ones: no face, spliced blanks, two faces, near-profile, save/load."
import numpy as np, pytest, cv2
from dfe.core import data_dir
from dfe.io import iter_frames, write_video, probe_video
from dfe.landmarks import (detect_landmarks, fill_invalid, LandmarkTrack, NoFaceError, interocular_distance,
                           landmark_jitter, FLAG_NO_FACE, FLAG_MULTIPLE_FACES, FLAG_PARTIAL, FLAG_FILLED, flag_names)

def clip(name): return data_dir()/'clips'/f'{name}.mp4'
def frames(name, n): return list(iter_frames(clip(name), fps=25.0, count=n))

@pytest.fixture(scope='module')
def vox_a(): return frames('vox_a', 40)

def test_no_face_video_names_the_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path/'noise_and_black.mp4'
    write_video(path, [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(10)] + [np.zeros((96, 128, 3), np.uint8)]*5, fps=25)
    with pytest.raises(NoFaceError, match='noise_and_black.mp4: no face found in any of its 15 frames') as e:
        detect_landmarks(path)
    assert e.value.path == path

def test_spliced_blank_frames_are_flagged(vox_a):
    blank_at = [0, 10, 11, 12, 13, 14, 30]
    fr = [np.zeros_like(f) if i in blank_at else f for i, f in enumerate(vox_a)]
    for backend in ['landmarker', 'facemesh']:
        t = detect_landmarks(fr, backend=backend)
        assert np.flatnonzero(~t.valid).tolist() == blank_at, backend
        assert (t.flags[blank_at] == FLAG_NO_FACE).all() and np.isnan(t.points[blank_at]).all()
        assert np.isfinite(t.points[t.valid]).all()
        if t.blendshapes is not None: assert np.isnan(t.blendshapes[blank_at]).all() and np.isfinite(t.blendshapes[t.valid]).all()
        f = fill_invalid(t, max_gap=5)
        assert f.valid.all() and (f.flags[blank_at] & FLAG_FILLED).all()
        # a held first frame equals the first valid one; an interpolated one lies between its neighbours
        np.testing.assert_allclose(f.points[0], t.points[1])
        np.testing.assert_allclose(f.points[30], (t.points[29] + t.points[31])/2, atol=1e-3)
        assert not fill_invalid(t, max_gap=4).valid[10:15].any()

@pytest.fixture(scope='module')
def two_faces():
    "vox_a (224², face ~60 px between the eyes) padded to 320 high, beside an HDTF frame shrunk to 320² (~95 px)."
    small = [np.pad(f, ((48, 48), (0, 0), (0, 0))) for f in frames('vox_a', 30)]
    big = [cv2.resize(f, (320, 320), interpolation=cv2.INTER_AREA) for f in frames('hdtf_katiehill_000', 30)]
    return small, big

@pytest.mark.parametrize('backend', ['landmarker', 'facemesh'])
@pytest.mark.parametrize('big_on_left', [False, True])
def test_two_faces_flagged_and_larger_chosen(two_faces, backend, big_on_left):
    small, big = two_faces
    fr = [np.hstack([b, s] if big_on_left else [s, b]) for s, b in zip(small, big)]
    t = detect_landmarks(fr, backend=backend)
    assert t.valid.all() and (t.flags & FLAG_MULTIPLE_FACES).all() and (t.n_faces >= 2).all()
    cx = (t.boxes[:, 0] + t.boxes[:, 2])/2
    assert ((cx < 320) if big_on_left else (cx > 224)).all()   # the chosen face is the HDTF one
    assert (interocular_distance(t.points) > 75).all()          # ... at its size, not the vox face's

def test_a_larger_face_arriving_later_does_not_steal_the_track(two_faces):
    small, big = two_faces
    fr = [np.hstack([s, np.zeros_like(b) if i < 15 else b]) for i, (s, b) in enumerate(zip(small, big))]
    t = detect_landmarks(fr)
    cx = (t.boxes[:, 0] + t.boxes[:, 2])/2
    assert t.valid.all() and (cx < 224).all()
    assert not (t.flags[:15] & FLAG_MULTIPLE_FACES).any() and (t.flags[15:] & FLAG_MULTIPLE_FACES).all()

def test_face_cut_by_the_frame_is_partial():
    fr = frames('hdtf_katiehill_000', 10)
    assert not (detect_landmarks(fr).flags & FLAG_PARTIAL).any()
    t = detect_landmarks([np.ascontiguousarray(f[:340]) for f in fr])     # the chin is below the frame
    assert t.valid.all() and (t.flags & FLAG_PARTIAL).all()
    assert (t.points[..., 1] > 340).any(axis=1).all()                      # the points go on beyond the edge

@pytest.mark.parametrize('name,n', [('vox_a', 100), ('vox_c_2', 100), ('hdtf_katiehill_000', 100), ('vr_face5', 100),
                                    ('latentsync_demo3', 50)])
def test_real_clips_detected_and_in_bounds(name, n):
    "Small (224²) and large (512²) faces, glasses, sunglasses, a 1080×1920 portrait."
    t = detect_landmarks(frames(name, n))
    H, W = t.image_size
    assert t.valid.mean() >= 0.95, t
    p = t.points[t.valid]
    inside = (p[..., 0] >= 0) & (p[..., 0] <= W) & (p[..., 1] >= 0) & (p[..., 1] <= H)
    assert inside.mean() > 0.99
    iod = interocular_distance(p)
    assert (iod > 0.05*min(H, W)).all() and (iod < 0.6*min(H, W)).all()
    assert np.isfinite(t.blendshapes[t.valid]).all() and (t.blendshapes[t.valid] >= 0).all() and (t.blendshapes[t.valid] <= 1).all()
    R = t.matrices[t.valid][:, :3, :3]
    np.testing.assert_allclose(np.linalg.det(R), 1, atol=0.02)

def test_backends_agree(vox_a):
    a, b = detect_landmarks(vox_a, backend='landmarker'), detect_landmarks(vox_a, backend='facemesh')
    d = np.linalg.norm(a.points[..., :2] - b.points[..., :2], axis=-1).mean(-1) / interocular_distance(a.points)
    assert d.mean() < 0.1
    assert b.blendshapes is None and b.matrices is None
    with pytest.raises(Exception, match='has no blendshapes'): b.blendshape('jawOpen')

def test_near_profile_does_not_crash():
    t = detect_landmarks(clip('vox_h_2'))       # from a path, decoded by dfe.io
    assert len(t) == probe_video(clip('vox_h_2')).n_frames and t.source.endswith('vox_h_2.mp4')
    assert t.valid.mean() > 0.8
    assert np.isnan(t.points[~t.valid]).all()
    f = fill_invalid(t)
    assert f.valid.sum() >= t.valid.sum()
    assert np.isfinite(landmark_jitter(t))

def test_save_load_round_trip(tmp_path, vox_a):
    for backend in ['landmarker', 'facemesh']:
        t = detect_landmarks(vox_a[:10] + [np.zeros_like(vox_a[0])], backend=backend, source='/some/clip.mp4')
        t.save(tmp_path/f'{backend}.npz')
        u = LandmarkTrack.load(tmp_path/f'{backend}.npz')
        np.testing.assert_array_equal(u.points, t.points)
        np.testing.assert_array_equal(u.valid, t.valid); np.testing.assert_array_equal(u.flags, t.flags)
        for k in ['blendshapes', 'matrices']:
            if getattr(t, k) is None: assert getattr(u, k) is None
            else: np.testing.assert_array_equal(getattr(u, k), getattr(t, k))
        assert (u.image_size, u.fps, u.backend, u.source, u.blendshape_names) == (t.image_size, t.fps, t.backend, t.source, t.blendshape_names)
        assert flag_names(u.flags)[-1] == 'no_face'
