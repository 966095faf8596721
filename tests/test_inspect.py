"Tracking inspection: the photometric residual and landmark projection on a synthetic track whose frame is its own render, and the notebook as a papermill batch report."
import json, numpy as np, pytest, torch
from pathlib import Path
from dfe.core import repo_root
from dfe.render import directional_sh_coeffs, project_points
from dfe.tracking import Track, TrackSettings, render_albedo, atlas_uv, N_TILES
from dfe.inspect import (track_model, fitted_landmarks, landmark_errors, photometric_residual, frame_panel, frame_viewer,
                         mesh_figure, coefficient_figure, error_figure, pose_figure, load_track, lip_gap)

S = 256  # frame side

def synthetic_track(n=3, dx=0.0):
    "A track of `n` frames of the mean face 45 cm in front of a 256² camera, turning slightly; a smooth colour-gradient albedo."
    T = 32
    u, v = np.meshgrid(np.linspace(0, 1, N_TILES*T), np.linspace(0, 1, T))
    tex = np.stack([0.3 + 0.5*u, 0.3 + 0.4*v, np.full_like(u, 0.5)]).astype(np.float16)
    sh = directional_sh_coeffs(torch.tensor([[0.3, -0.4, -1.]]), ambient=0.7, strength=0.3).numpy()   # light from the upper right, front
    rot = np.stack([np.zeros(n), np.linspace(-0.1, 0.1, n), np.zeros(n)], 1).astype(np.float32)
    return Track(identity=np.zeros(20, np.float32), expression=np.zeros((n, 53), np.float32), rotation=rot,
                 translation=np.tile(np.float32([dx, 1.0, 45.0]), (n, 1)), sh=np.repeat(sh, n, 0), focal=600., principal=(S/2, S/2),
                 image_size=(S, S), fps=25., texture=tex, landmarks=np.zeros((n, 478, 2), np.float32), failed=np.zeros(n, np.uint8),
                 photo_l1=np.zeros(n, np.float32), parts=TrackSettings().parts, source='')

@pytest.fixture(scope='module')
def model(): return track_model(synthetic_track())

@pytest.fixture(scope='module')
def rendered(model):
    "The synthetic track and its own renders as uint8 frames (detected landmarks = the fitted ones)."
    tr = synthetic_track()
    with torch.no_grad():
        verts = model(**tr.params())
        img, _ = render_albedo(model, verts, torch.full((len(tr),), tr.focal), torch.tensor([tr.principal]*len(tr)), S,
                               torch.as_tensor(tr.texture.astype(np.float32))[None], torch.as_tensor(tr.sh), atlas_uv(model))
    frames = (img.clamp(0, 1).permute(0, 2, 3, 1).numpy()*255).round().astype(np.uint8)
    tr.landmarks = fitted_landmarks(tr, model)
    return tr, frames

def test_fitted_landmarks_match_the_full_mesh(model):
    tr = synthetic_track()
    with torch.no_grad():
        X = model.landmarks_from_vertices(model(**tr.params()))
        ref = project_points(X, tr.focal, torch.tensor([tr.principal]*len(tr))).numpy()
    got = fitted_landmarks(tr, model)
    m = model.mp_mask.numpy()
    np.testing.assert_allclose(got[:, m], ref[:, m], atol=1e-3)
    assert np.isnan(got[:, ~m]).all() and (~m).sum() == 10          # the irises: no eyeballs in the tracker's parts

def test_residual_vanishes_on_the_tracks_own_render(model, rendered):
    tr, frames = rendered
    for i in range(len(tr)):
        r = photometric_residual(tr, i, frames[i], model, size=192)
        assert r['mask'].mean() > 0.2
        assert r['l1'] < 0.01, (i, r['l1'])                              # only resampling and edges differ
        moved = photometric_residual(synthetic_track(dx=0.5), i, frames[i], model, size=192)   # the fit 5 mm off
        assert moved['l1'] > 3*r['l1'], (i, moved['l1'], r['l1'])
    e = landmark_errors(tr, model)
    np.testing.assert_allclose(e['nme68'], 0, atol=1e-6)

def test_views_of_a_track(model, rendered, tmp_path):
    tr, frames = rendered
    p = frame_panel(tr, 1, frames[1], model, tile=128)
    assert p.shape == (128, 5*128, 3) and p.dtype == np.uint8
    assert lip_gap(tr.landmarks).shape == (len(tr),)
    f = coefficient_figure(tr, np.zeros(16000, np.float32))
    assert [t.name for t in f.data][:2] == ['speech envelope', 'lip gap (detected, IOD)']
    assert len(pose_figure(tr).data) == 6 and len(error_figure(tr, model=model).data) == 3
    # the track round-trips through a file, and `load_track` takes the folder
    tr.save(tmp_path/'track.npz')
    np.testing.assert_allclose(load_track(tmp_path).expression, tr.expression)

def test_frame_viewer_names_a_missing_frame(model, rendered, tmp_path):
    from dfe.io import write_video
    from dfe.core import InputFileError
    tr, frames = rendered
    v = write_video(tmp_path/'two.mp4', frames[:2])
    w = frame_viewer(tr, v, model, tile=96)
    with pytest.raises(InputFileError, match='two.mp4: has no frame 2'):
        w.children[0].children[1].value = 2

def test_notebook_runs_as_a_batch_report(tmp_path):
    "papermill with an output folder: a report with five plots and frame views, no error, no hang (widgets included)."
    from conftest import run_papermill
    nb = repo_root()/'nbs'/'14_tracking_inspect.ipynb'
    out = tmp_path/'report'
    run_papermill(nb, tmp_path/'out.ipynb', dict(max_seconds=0.6, out_dir=out), repo_root()/'nbs')
    html = (out/'report.html').read_text()
    assert html.count('Plotly.newPlot') == 5
    assert len(list(out.glob('frame_*.png'))) == 6
    cells = json.loads((tmp_path/'out.ipynb').read_text())['cells']
    assert not [o for c in cells for o in c.get('outputs', []) if o.get('output_type') == 'error']
