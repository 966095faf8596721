"""Tests of dfe.provenance: the watermark survives a real H.264 CRF 28 re-encode of marked shared clips (and a
half-size rescale, a trim), unmarked clips of the corpus are not flagged, `dfe verify` gives the right verdict and
exit code, and bad files raise errors naming them."""
import json
from pathlib import Path

import numpy as np
import pytest
import cv2

from dfe.core import data_dir, InputFileError
from dfe.io import read_frames, write_video, NoVideoStreamError
from dfe.provenance import (embed_watermark, detect_watermark, marking_psnr, texture_mask, write_marked_video,
                            MarkedVideoWriter, read_provenance_tags, has_provenance_tag, verify_video, verify_cmd,
                            PROVENANCE_TAGS, DETECTION_THRESHOLD, DEFAULT_KEY)

CLIPS = data_dir()/'clips'
needs_data = pytest.mark.skipif(not (CLIPS/'hdtf_katiehill_000.mp4').exists(), reason=f"shared clips not found in {CLIPS}")

# a held-out 512² HDTF clip, a 524² clip of another source, and a 256² clip (the smallest size dfe promises)
MARKED = ['hdtf_katiehill_000', 'vr_face5', 'styletalk_feifeili_3']
# unmarked clips of every source and size, 224² to 1080x1920
UNMARKED = ['hdtf_radio34_000', 'vr_face1', 'aniportrait_ref', 'styletalk_reagan_1', 'vox_h_1', 'vox_c_2', 'latentsync_demo3']
N = 50  # frames per clip: 2 s


def half(frames):
    h, w = frames.shape[1:3]
    return np.stack([cv2.resize(f, (w//2//2*2, h//2//2*2), interpolation=cv2.INTER_AREA) for f in frames])


@pytest.fixture(scope='module', params=MARKED)
def reencoded(request, tmp_path_factory):
    "(original frames, dfe's marked output at CRF 18, its re-encode at CRF 28 without tags) for one clip."
    d = tmp_path_factory.mktemp(request.param)
    frames = read_frames(CLIPS/f'{request.param}.mp4', count=N)
    out = write_marked_video(d/'out.mp4', frames, crf=18)
    crf28 = write_video(d/'crf28.mp4', read_frames(out), crf=28)
    return frames, out, crf28


@needs_data
def test_output_is_marked_and_tagged(reencoded):
    frames, out, _ = reencoded
    r = verify_video(out)
    assert r['synthetic'] and r['tag_found'] and r['watermark']['detected']
    assert r['tags']['synthetic'] == 'true' and 'dfe' in r['tags']['comment']


@needs_data
def test_watermark_survives_crf28_reencode(reencoded):
    _, _, crf28 = reencoded
    assert not has_provenance_tag(read_provenance_tags(crf28))   # the re-encode dropped the tags...
    r = verify_video(crf28)
    assert r['watermark']['detected'] and r['synthetic']          # ...but not the watermark
    assert r['watermark']['frames'] == N
    assert verify_cmd(str(crf28)) == 0


@needs_data
def test_watermark_survives_trim_and_rescale(reencoded, tmp_path):
    frames, _, crf28 = reencoded
    g = read_frames(crf28)
    assert detect_watermark(g[20:45])['detected']                  # one second from the middle
    if min(frames.shape[1:3]) >= 512:                              # half size of a 256² clip is below the grid
        assert detect_watermark(write_video(tmp_path/'half.mp4', half(g), crf=28))['detected']


@needs_data
def test_wrong_key_not_detected(reencoded):
    _, _, crf28 = reencoded
    assert not detect_watermark(crf28, key='not the dfe key')['detected']


@needs_data
def test_marking_is_invisible(reencoded):
    frames = reencoded[0][:10]
    m = embed_watermark(frames)
    assert marking_psnr(frames, m) > 40
    flat = texture_mask(frames) <= 0.2 + 1e-6                       # flat regions change by at most 1 grey level
    if flat.any(): assert np.abs(m.astype(int) - frames)[flat].max() <= 1


@needs_data
@pytest.mark.parametrize('clip', UNMARKED)
def test_unmarked_clips_not_flagged(clip, tmp_path):
    p = CLIPS/f'{clip}.mp4'
    r = verify_video(p)
    assert not r['synthetic'] and not r['tag_found'] and not r['watermark']['detected']
    assert abs(r['watermark']['score']) < DETECTION_THRESHOLD
    assert verify_cmd(str(p)) == 1


@needs_data
def test_unmarked_reencoded_not_flagged(tmp_path):
    frames = read_frames(CLIPS/'hdtf_radio34_000.mp4', count=N)
    assert not detect_watermark(write_video(tmp_path/'u.mp4', frames, crf=28))['detected']


@needs_data
def test_chunked_writer_equals_whole(tmp_path):
    frames = read_frames(CLIPS/'styletalk_feifeili_3.mp4', count=9)
    with MarkedVideoWriter(tmp_path/'a.mp4', crf=0) as w:
        w.write(frames[:4]); w.write(frames[4]); w.write(frames[5:])
    b = write_marked_video(tmp_path/'b.mp4', frames, crf=0)
    np.testing.assert_array_equal(read_frames(tmp_path/'a.mp4'), read_frames(b))
    np.testing.assert_array_equal(np.concatenate([embed_watermark(frames[:4]), embed_watermark(frames[4:])]),
                                  embed_watermark(frames))


def test_small_synthetic_roundtrip(tmp_path):
    "No shared data needed: a moving textured 320x256 video through CRF 28."
    rng = np.random.default_rng(1)
    base = cv2.resize(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), (360, 296), interpolation=cv2.INTER_CUBIC)
    frames = np.stack([base[i:i+256, i:i+320] for i in range(20)])
    p = write_marked_video(tmp_path/'m.mp4', frames, crf=28)
    r = verify_video(p)
    assert r['watermark']['detected'] and r['tag_found']
    assert not detect_watermark(write_video(tmp_path/'u.mp4', frames, crf=28))['detected']


def test_verify_json_and_cli_parser(tmp_path, capsys):
    from dfe.cli import parser_for
    frames = np.full((4, 256, 256, 3), 100, np.uint8)
    p = write_marked_video(tmp_path/'flat.mp4', frames)
    assert verify_cmd(str(p), json=True) == 0                     # tags found even where the frames are flat
    out = json.loads(capsys.readouterr().out)
    assert out['tag_found'] and out['tags'] == PROVENANCE_TAGS
    args = parser_for(verify_cmd, 'dfe verify').parse_args([str(p), '--max-frames', '10', '--key', 'k'])
    assert (args.video, args.max_frames, args.key, args.json) == (str(p), 10, 'k', False)


def test_bad_inputs(tmp_path):
    with pytest.raises(InputFileError, match='no such file'): verify_video(tmp_path/'missing.mp4')
    (tmp_path/'empty.mp4').write_bytes(b'')
    with pytest.raises(InputFileError, match='empty'): verify_video(tmp_path/'empty.mp4')
    (tmp_path/'junk.mp4').write_bytes(b'\x00junk' * 100)
    with pytest.raises(InputFileError, match='junk.mp4'): verify_video(tmp_path/'junk.mp4')
    import av
    with av.open(str(tmp_path/'speech.m4a'), 'w') as c:  # audio only
        s = c.add_stream('aac', rate=16000); s.layout = 'mono'
        f = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format='fltp', layout='mono'); f.sample_rate = 16000
        for pkt in s.encode(f): c.mux(pkt)
        for pkt in s.encode(None): c.mux(pkt)
    with pytest.raises(NoVideoStreamError, match='speech.m4a'): verify_video(tmp_path/'speech.m4a')
    with pytest.raises(ValueError): embed_watermark(np.zeros((4, 4), np.uint8))
    with pytest.raises(TypeError): embed_watermark(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError): detect_watermark(np.zeros((1, 8, 8, 3), np.uint8), max_frames=0)
