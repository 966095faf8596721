"Post-processing (paper §3.7) on real cropped clips: segmentation, keeping the real background, colour matching, streaming paste-back, the Table 4 analog."
import numpy as np
import pytest
from dfe.core import outputs_dir
from dfe.cropping import MASK_BITS, crop_frames
from dfe.postprocess import (segment_person, person_segmenter, keep_real_background, colour_match, region_pixels, mask_band,
                             outline_band, simulate_generated, paste_back, paste_back_frames, postprocess_clip, postprocess_crops,
                             postprocess_table, PostprocessSettings, seam_weights, seam_error, POSTPROCESS_ROWS, _morph)

CROP = outputs_dir()/'crop'
CLIPS = ('hdtf_aoc_000', 'latentsync_demo3', 'styletalk_andrew_1')   # 512², 1080×1920 portrait, 256²
N = 12
COLOUR = dict(gain=(1.06, 1.0, 0.95), offset=(10, -6, 4), ramp=(0, 8, -8))

def _have(name): return (CROP/name/'dataset.json').exists()

_BUILT = {}

def _build(name, n=2*N):
    "A 128² clip folder of the first `n` frames of a corpus clip (tracked and cropped here, once), when outputs/crop lacks it."
    import tempfile
    from pathlib import Path
    if name in _BUILT: return _BUILT[name]
    root = Path(tempfile.mkdtemp(prefix=f'dfe-test-{name}-'))
    from dfe.core import data_dir
    from dfe.io import read_frames, read_audio, write_video
    from dfe.tracking import track_video
    from dfe.dataset import build_clip_dataset, CropSettings
    src = data_dir()/'clips'/f'{name}.mp4'
    if not src.exists(): pytest.skip(f"corpus clip {src} missing")
    fr = read_frames(src, count=n)
    vid = root/f'{name}.mp4'
    write_video(vid, fr, audio=read_audio(src, sr=16000)[:len(fr)*640])
    track_video(vid, root/f'track_{name}', progress=False)
    _BUILT[name] = build_clip_dataset(root/f'track_{name}', root/'crop'/name, CropSettings(size=128), video=vid, progress=False)[0]
    return _BUILT[name]

def load(name, n=N):
    from dfe.dataset import ClipData
    from dfe.io import read_frames
    c = ClipData(CROP/name if _have(name) else _build(name))
    src = c.manifest['source']
    from pathlib import Path
    if not Path(src).exists(): pytest.skip(f"source video {src} missing")
    fr = read_frames(src, fps=c.manifest['fps'], count=n)
    return dict(clip=c, frames=fr, crops=np.array(c.frames[:n]), masks=np.array(c.masks[:n]), boxes=c.params['boxes'][:n])

@pytest.fixture(scope='module', params=CLIPS)
def clip(request): return load(request.param)

def err(a, b, m): return float(np.abs(a.astype(np.float32) - b.astype(np.float32))[m].mean())


def test_the_face_is_person_and_segmentation_is_stateless(clip):
    "The mesh's face mask is person; the same image gives the same mask whatever was segmented before."
    crops, masks = clip['crops'], clip['masks']
    p = segment_person(crops)
    face = (masks & MASK_BITS['face']) > 0
    assert p[face].mean() > 0.98
    assert 0.02 < p[~face].mean() < 0.98                      # some background in a face crop
    segment_person(clip['frames'][:2])                       # other images in between
    np.testing.assert_array_equal(segment_person(crops[:1]), p[:1])
    assert person_segmenter(0) is person_segmenter(0)


def test_crops_of_the_real_frames_match_the_clip_folder(clip):
    "The crops post-processing cuts from the frames are the clip folder's (same boxes, same resampling)."
    real, valid = crop_frames(clip['frames'], clip['boxes'], clip['crops'].shape[1])
    inside = (clip['masks'] & MASK_BITS['inside']) > 0
    np.testing.assert_array_equal(valid, inside)
    assert err(real, clip['crops'], valid) < 1.0             # decoding may differ by a grey level


def test_keep_real_background_removes_stuck_background_pixels(clip):
    crops, masks = clip['crops'], clip['masks']
    S, inside = crops.shape[1], (masks & MASK_BITS['inside']) > 0
    gen = simulate_generated(crops, masks)
    kept, w = keep_real_background(gen, crops, protect=region_pixels(masks, 'mouth'), valid=inside)
    face = region_pixels(masks, 'face')
    ring = _morph(face, round(S/5), __import__('cv2').dilate) & ~face & inside
    real_bg = (segment_person(crops) < 0.5) & inside
    assert err(kept, crops, real_bg) < 0.5*err(gen, crops, real_bg)
    assert err(kept, crops, ring) < 0.95*err(gen, crops, ring)
    interior = _morph(face, 3, __import__('cv2').erode)
    assert np.abs(kept.astype(int) - gen)[interior].max() <= 1   # the face interior is the generator's
    assert not (~inside).any() or w[~inside].max() == 0          # no real pixel outside the video frame


def test_colour_matching_removes_a_colour_shift(clip):
    "A colour-shifted crop (no stuck pixels) matched at the seam band is as close to the real as the unshifted one."
    crops, masks = clip['crops'], clip['masks']
    S, inside = crops.shape[1], (masks & MASK_BITS['inside']) > 0
    g0, gc = simulate_generated(crops, masks, ring=0), simulate_generated(crops, masks, ring=0, **COLOUR)
    band = mask_band(region_pixels(masks, ('lower_face', 'mouth'), dilate=S/16), S/16) & inside
    cm, F = colour_match(gc, crops, band)
    lower = region_pixels(masks, 'lower_face')
    assert err(cm, crops, lower) < 0.5*err(gc, crops, lower)
    assert err(cm, crops, lower) < err(g0, crops, lower) + 1.0
    # the field is smooth: its gradient is small compared with the shift it removes
    assert np.abs(np.diff(F, axis=2)).mean() < 0.5


def test_colour_matching_removes_the_seam_in_the_frame(clip):
    "Pasted through the paste region, a colour-shifted crop leaves a seam that colour matching removes."
    fr, crops, masks, boxes = clip['frames'], clip['crops'], clip['masks'], clip['boxes']
    S = crops.shape[1]
    gc = simulate_generated(crops, masks, ring=0, **COLOUR)
    s0 = PostprocessSettings(keep_background=False, colour_match=False)
    a = crop_frames(paste_back_frames(fr, gc, boxes, masks, s0), boxes, S)[0]
    b = crop_frames(paste_back_frames(fr, gc, boxes, masks, PostprocessSettings(keep_background=False)), boxes, S)[0]
    band = seam_weights(region_pixels(masks, s0.region_parts, s0.dilate*S), (masks & MASK_BITS['inside']) > 0, s0.feather*S)
    ea, eb = seam_error(a, crops, band), seam_error(b, crops, band)
    assert eb['grad'] < 0.6*ea['grad'] and eb['mae'] < 0.6*ea['mae']


def test_a_perfect_generator_is_left_almost_unchanged(clip):
    "Post-processing the real crops themselves costs nothing compared with pasting them plainly (resampling aside)."
    fr, crops, masks, boxes = clip['frames'], clip['crops'], clip['masks'], clip['boxes']
    S = crops.shape[1]
    def rt(s):
        back, valid = crop_frames(paste_back_frames(fr, crops, boxes, masks, s), boxes, S)
        return err(back, crops, valid)
    plain = rt(PostprocessSettings(keep_background=False, region='box', colour_match=False))
    assert plain < 2.5                                              # crop -> paste -> crop resampling only
    assert rt(PostprocessSettings(region='box')) < plain + 0.2
    assert rt(PostprocessSettings()) < plain                        # less is pasted


def test_table4_analog(clip):
    "Post-processing on vs off on simulated generated crops: better PSNR and outline error; each step does its job."
    fr, crops, masks, boxes = clip['frames'], clip['crops'], clip['masks'], clip['boxes']
    gen = simulate_generated(crops, masks, **COLOUR)
    T = {r['name']: r for r in postprocess_table(fr, gen, boxes, masks)}
    off, bg, reg, full = (T[k] for k in POSTPROCESS_ROWS)
    assert full['psnr'] > off['psnr'] and full['ssim'] > off['ssim'] and full['outline_mae'] < off['outline_mae']
    assert bg['background_mae'] < 0.6*off['background_mae']
    assert bg['seam_grad'] < off['seam_grad']                     # same band (the square's edge)
    assert full['seam_mae'] < reg['seam_mae']                     # same band (the region's outline)


def test_streaming_a_full_hd_clip_matches_the_batch():
    "postprocess_clip over iter_frame_chunks of a 1080×1920 video equals the batch, and leaves pixels outside the boxes alone."
    from dfe.io import iter_frame_chunks
    d = load('latentsync_demo3', n=10)
    c, fr, crops, masks, boxes = d['clip'], d['frames'], d['crops'], d['masks'], d['boxes']
    gen = simulate_generated(crops, masks, **COLOUR)
    chunks = list(postprocess_clip(iter_frame_chunks(c.manifest['source'], chunk=4, fps=c.manifest['fps'], count=10), gen, boxes, masks))
    assert [len(x) for x in chunks] == [4, 4, 2]
    out = np.concatenate(chunks)
    np.testing.assert_array_equal(out, paste_back_frames(fr, gen, boxes, masks))
    for f, o, b in zip(fr, out, boxes):
        x0, y0, sd = (int(np.floor(v)) for v in b)
        keep = np.ones(f.shape[:2], bool); keep[max(0, y0):y0 + sd + 2, max(0, x0):x0 + sd + 2] = False
        np.testing.assert_array_equal(o[keep], f[keep])
    # one crop at a time with paste_back (no segmentation) matches the batch without background keeping
    s = PostprocessSettings(keep_background=False)
    reg = region_pixels(masks[0], s.region_parts, s.dilate*crops.shape[1])
    np.testing.assert_array_equal(paste_back(fr[0], gen[0], boxes[0], reg, feather=s.feather*crops.shape[1]), paste_back_frames(fr[:1], gen[:1], boxes[:1], masks[:1], s)[0])


def test_bad_input_is_refused():
    d = load('styletalk_andrew_1', n=4)
    fr, crops, masks, boxes = d['frames'], d['crops'], d['masks'], d['boxes']
    with pytest.raises(Exception, match='uint8'): segment_person(crops.astype(np.float32))
    with pytest.raises(Exception, match='masks are needed'): paste_back_frames(fr, crops, boxes)
    with pytest.raises(Exception, match='matching batches'): paste_back_frames(fr[:3], crops, boxes, masks)
    with pytest.raises(Exception, match='masks must be'): paste_back_frames(fr, crops, boxes, masks[:, :10])
    with pytest.raises(Exception, match='more frames'): list(postprocess_clip(fr, crops[:2], boxes[:2], masks[:2]))
    with pytest.raises(Exception, match='generated crops'): list(postprocess_clip(fr[:2], crops, boxes, masks))
    with pytest.raises(Exception, match='one entry per frame'): list(postprocess_clip(fr, crops, boxes[:2], masks))
    out = paste_back_frames(fr, crops, boxes, settings=PostprocessSettings(region='box', protect=()))   # no masks needed
    assert out.shape == fr.shape
