"Crops, boxes and rasters on a real tracked clip: jaw independence, crop/paste round trips, raster/landmark alignment."
import copy
import numpy as np
import pytest
import torch
from dfe.core import data_dir
from dfe.io import iter_frames
from dfe.render import project_points
from dfe.facemodel import load_face_model, MEDIAPIPE_REGIONS
from dfe.cropping import (jaw_union_bounds, jaw_independent_boxes, landmark_boxes_baseline, box_metrics, box_model, square_boxes,
                          crop_frame, crop_frames, paste_crop, crop_camera, crop_rasters, raster_model, uv_region_masks,
                          part_tile_table, atlas_coordinates, MASK_BITS, RASTER_PARTS)

CLIP = data_dir()/'clips'/'vox_f.mp4'

def light_track():
    "vox_f tracked with the light settings the notebooks use (cached in the user cache after the first run)."
    from dfe.tracking import track_video, TrackSettings
    s = TrackSettings(shape_frames=8, shape_iters=60, landmark_iters=60, appearance_frames=2, appearance_iters=20,
                      crop=64, texture_size=32, frame_iters=3)
    return track_video(CLIP, settings=s, device='cpu', progress=False)[0]

@pytest.fixture(scope='module')
def track(): return light_track()

@pytest.fixture(scope='module')
def bmodel(track): return box_model(len(track.identity), device='cpu')

@pytest.fixture(scope='module')
def frames(): return list(iter_frames(CLIP, count=40))

def has(m, name): return (m & MASK_BITS[name]) > 0


def test_boxes_do_not_depend_on_the_tracked_jaw(track, bmodel):
    "Replacing every frame's jawOpen by random values (all else as tracked) leaves the boxes unchanged."
    other = copy.copy(track)
    other.expression = track.expression.copy()
    other.expression[:, bmodel.expression_index('jawOpen')] = np.random.default_rng(0).uniform(0, 1, len(track))
    np.testing.assert_allclose(jaw_union_bounds(other, bmodel), jaw_union_bounds(track, bmodel), atol=1e-3)
    np.testing.assert_allclose(jaw_independent_boxes(other, bmodel), jaw_independent_boxes(track, bmodel), atol=1e-3)
    # while the mesh as tracked (no union) does depend on it
    assert np.abs(jaw_union_bounds(other, bmodel, jaw=(None,)) - jaw_union_bounds(track, bmodel, jaw=(None,))).max() > 1.0


def test_boxes_contain_the_face_with_margin(track, bmodel):
    "Every frame's closed-and-open face box lies inside the crop box (fixed scale = the largest smoothed side)."
    b = jaw_independent_boxes(track, bmodel, margin=0.15, smooth=0.0)
    u = jaw_union_bounds(track, bmodel)
    assert (u[:, 0] >= b[:, 0]).all() and (u[:, 1] >= b[:, 1]).all()
    assert (u[:, 2] <= b[:, 0] + b[:, 2]).all() and (u[:, 3] <= b[:, 1] + b[:, 2]).all()
    assert np.ptp(b[:, 2]) == 0
    per_frame = jaw_independent_boxes(track, bmodel, scale_smooth=0.1)
    assert np.ptp(per_frame[:, 2]) > 0


def test_box_stability_against_landmark_baseline(track, bmodel):
    jaw = track.expression[:, bmodel.expression_index('jawOpen')]
    ours = box_metrics(jaw_independent_boxes(track, bmodel), jaw, track.fps)
    base = box_metrics(landmark_boxes_baseline(track.landmarks), jaw, track.fps)
    assert ours['box_jitter_px'] < base['box_jitter_px']
    assert abs(ours['box_jaw_corr']) <= 0.1 < base['box_jaw_corr']


def test_baseline_nan_frames_are_skipped():
    lm = np.random.default_rng(0).uniform(50, 150, (30, 478, 2))
    lm[[3, 4, 17]] = np.nan
    b = landmark_boxes_baseline(lm)
    assert np.isnan(b[[3, 4, 17]]).all() and np.isfinite(np.delete(b, [3, 4, 17], 0)).all()
    m = box_metrics(b, np.random.default_rng(1).uniform(0, 1, 30))
    assert m['frames'] == 27 and np.isfinite(m['box_jitter_px'])


def test_crop_paste_round_trip_reproduces_the_frame(frames):
    f = frames[5]
    box = (40., 30., 128.)                              # integer corner, side = crop size: a pure copy
    c, v = crop_frame(f, box, 128)
    assert v.all()
    np.testing.assert_array_equal(c, f[30:158, 40:168])
    back = paste_crop(np.zeros_like(f), c, box, feather=0)
    np.testing.assert_array_equal(back[30:158, 40:168], f[30:158, 40:168])
    assert back[:30].max() == 0 and back[158:].max() == 0 and back[:, :40].max() == 0 and back[:, 168:].max() == 0
    # a sub-pixel box at another scale: equal up to the two bilinear resamplings
    box = (20.37, 11.81, 150.5)
    c, _ = crop_frame(f, box, 256)
    back = paste_crop(f, c, box, feather=0)
    inner = (slice(14, 160), slice(23, 168))
    assert np.abs(back[inner].astype(int) - f[inner]).mean() < 1.5


def test_paste_with_mask_only_touches_the_mask_and_box(frames):
    f = frames[0]
    box = (-30., 60., 200.)                             # partly outside the frame
    c, v = crop_frame(f, box, 100)
    assert not v.all() and v.any()
    m = np.zeros((100, 100), bool); m[40:70, 40:70] = True
    out = paste_crop(f, 255 - c, box, mask=m, feather=4)
    changed = np.abs(out.astype(int) - f).max(-1) > 3
    ys, xs = np.nonzero(changed)
    # the mask covers crop pixels 40..70 -> frame x = -30 + 2*(40..70), y = 60 + 2*(40..70), plus the feathering
    assert xs.min() >= 50 - 12 and xs.max() <= 110 + 12 and ys.min() >= 140 - 12 and ys.max() <= 200 + 12
    assert changed[155:185, 65:95].all()


def test_downscaling_crop_is_area_averaged():
    "A fine checkerboard shrunk 8× must come out flat grey (plain bilinear sampling would alias it)."
    y, x = np.mgrid[:1024, :1024]
    f = np.repeat(((x + y) % 2*255).astype(np.uint8)[..., None], 3, -1)
    c, _ = crop_frame(f, (100., 100., 800.), 100)
    assert abs(c.mean() - 127.5) < 2 and c.std() < 3


def test_rasters_line_up_with_the_face(track, frames):
    "The rasters are drawn with the crop camera: the model's own lip landmarks fall in the mouth mask, eyes outside the lower face."
    n = 8
    idx = list(range(0, 40, 40//n))
    S = 128
    rm = raster_model(len(track.identity), device='cpu')
    lm_model = load_face_model(parts=RASTER_PARTS, n_identity=len(track.identity), device='cpu')
    boxes = jaw_independent_boxes(track, box_model(len(track.identity), device='cpu'))[idx]
    fc, pc = crop_camera(track.focal, track.principal, boxes, S)
    fc, pc = torch.as_tensor(fc, dtype=torch.float32), torch.as_tensor(pc, dtype=torch.float32)
    with torch.no_grad():
        p = track.params(idx)
        r = crop_rasters(rm, rm(**p), fc, pc, S)
        lm = project_points(lm_model.landmarks_from_vertices(lm_model(**p)), fc, pc).numpy()
    masks = r['masks'].numpy()
    def frac(ids, name):
        pts = lm[:, list(ids)].round().astype(int).clip(0, S - 1)
        return np.mean([has(masks[k], name)[pts[k, :, 1], pts[k, :, 0]] for k in range(len(idx))])
    lips = MEDIAPIPE_REGIONS['lips_outer']
    eyes = MEDIAPIPE_REGIONS['eye_left'] + MEDIAPIPE_REGIONS['eye_right']
    assert frac(lips, 'mouth') > 0.95 and frac(lips, 'lower_face') > 0.95 and frac(lips, 'face') > 0.95
    assert frac(eyes, 'lower_face') < 0.05 and frac(eyes, 'mouth') == 0 and frac(eyes, 'face') > 0.95   # eye holes are filled
    # the crop of the video and the raster agree: the face mask is where the face is, roughly centred in the crop
    ys, xs = np.nonzero(has(masks[0], 'face'))
    assert abs(xs.mean() - S/2) < S/8 and abs(ys.mean() - S/2) < S/6


def test_uv_raster_is_float_tile_local_and_matches_parts(track):
    S = 96
    rm = raster_model(len(track.identity), device='cpu')
    jaw = rm.expression_index('jawOpen')
    p = track.params([0, 0])
    p['expression'] = p['expression'].clone(); p['expression'][0, jaw] = 0.0; p['expression'][1, jaw] = 1.0   # frame 0 closed, then open
    boxes = jaw_independent_boxes(track, box_model(len(track.identity), device='cpu'))[:2]
    fc, pc = crop_camera(track.focal, track.principal, boxes, S)
    with torch.no_grad(): r = crop_rasters(rm, rm(**p), torch.as_tensor(fc, dtype=torch.float32), torch.as_tensor(pc, dtype=torch.float32), S)
    uv, part, tile = r['uv'], r['part'].long(), r['tile']
    assert uv.dtype == torch.float32 and float(uv.min()) >= 0 and float(uv.max()) <= 1
    assert torch.equal(tile, torch.as_tensor(part_tile_table(rm.part_names))[part])
    assert bool((uv[part == 0] == 0).all()) and bool((r['depth'][part == 0] == 0).all()) and bool((r['depth'][part > 0] > 0).all())
    inner = has(r['masks'], 'mouth_interior')
    assert inner[1].sum() > 2*inner[0].sum() and inner[1].sum() > 20
    assert set(tile[1][inner[1]].unique().tolist()) >= {1, 2}                  # socket and tongue/gums visible
    # full float precision, not 8-bit steps: almost no value sits on the 1/255 grid
    q = uv[part > 0]*255
    assert float(((q - q.round()).abs() < 1e-4).float().mean()) < 0.01
    a = atlas_coordinates(uv, tile, 5)
    assert bool((a[..., 0][part > 0] >= 0).all()) and bool((a[..., 0][part == 0] < 0).all())


def test_uv_region_masks_nest():
    m = uv_region_masks(256)
    face, low, mouth = (m & 1) > 0, (m & 2) > 0, (m & 4) > 0
    assert not (low & ~face).any() and not (mouth & ~face).any()
    assert 0 < mouth.sum() < low.sum() < face.sum()
    rows = np.nonzero(mouth.any(1))[0]; lrows = np.nonzero(low.any(1))[0]; frows = np.nonzero(face.any(1))[0]
    assert rows.min() > lrows.min() >= frows.min()           # v up: the mouth starts below the lower-face line


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_rasters_on_gpu_match_cpu(track):
    S = 64
    out = {}
    for dev in ('cpu', 'cuda'):
        rm = raster_model(len(track.identity), device=dev)
        boxes = jaw_independent_boxes(track, box_model(len(track.identity), device=dev))[:4]
        fc, pc = crop_camera(track.focal, track.principal, boxes, S)
        with torch.no_grad():
            out[dev] = crop_rasters(rm, rm(**track.params(slice(0, 4), device=dev)), torch.as_tensor(fc, dtype=torch.float32, device=dev),
                                    torch.as_tensor(pc, dtype=torch.float32, device=dev), S)
    assert (out['cpu']['part'] != out['cuda']['part'].cpu()).float().mean() < 0.01
