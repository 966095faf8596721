"Dub viewer: side-by-side videos of a stand-in dub whose original says its frame numbers, memory-bounded alignment on a 1080×1920 clip, difference numbers, the viewer, and the notebook as a report job."
import json, shutil, tracemalloc
import numpy as np, pytest
from pathlib import Path
from dfe.core import data_dir, repo_root, InputFileError
from dfe.io import probe_video, read_frames, read_audio
from dfe.dub import pingpong_indices
from dfe.viewer import (numbered_clip, frame_number, fake_dub, aligned_original_chunks, aligned_original_frames, side_by_side,
                        label_height, write_side_by_side, iter_dub_pairs, original_of, difference_stats, summarise_stats,
                        pixel_difference, side_by_side_strip, dub_viewer, write_view_report, side_by_side_cmd, StaticDubView)

N_SRC, N_OUT, S = 10, 30, 224   # original frames, dub frames, frame side

@pytest.fixture(scope='module')
def pair(tmp_path_factory):
    "A 10-frame original that says its frame numbers, and a 30-frame stand-in dub of it (lower half darkened)."
    d = tmp_path_factory.mktemp('viewer')
    orig = numbered_clip(d/'original.mp4', N_SRC)
    return orig, fake_dub(orig, d/'dub.mp4', N_OUT)

def test_side_by_side_video_frames_audio_and_panels(pair, tmp_path):
    orig, dub = pair
    out = write_side_by_side(dub, out=tmp_path/'sbs.mp4', max_side=None, watermark=False)
    info, dinfo = probe_video(out), probe_video(dub)
    assert info.n_frames == dinfo.n_frames == N_OUT
    bh = label_height(S)
    assert (info.width, info.height) == (3*S, S + bh)
    # audio: present, as long as the dub's, and the same sound
    a, b = read_audio(out), read_audio(dub)
    assert info.has_audio and len(a) == len(b)
    assert np.corrcoef(a, b)[0, 1] > 0.95
    fr = read_frames(out)
    left, mid, right = fr[:, bh:, :S], fr[:, bh:, S:2*S], fr[:, bh:, 2*S:]
    idx = pingpong_indices(N_SRC, N_OUT)
    # left panel: the original frame at the ping-pong index (its number, and its pixels up to re-encoding)
    assert (frame_number(left) == idx).all()
    src = read_frames(orig)
    assert np.abs(left.astype(int) - src[idx]).mean() < 3
    assert np.abs(left.astype(int) - src[np.minimum(np.arange(N_OUT), N_SRC - 1)]).mean() > 3 * np.abs(left.astype(int) - src[idx]).mean()
    # middle panel: the dub
    assert np.abs(mid.astype(int) - read_frames(dub)).mean() < 3
    # difference panel: ~black where the dub equals the original (upper half), bright where it was darkened
    top, low = right[:, 24:S//2 - 8].astype(float).mean(), right[:, S//2 + 8:].astype(float).mean()
    assert top < 12 and low > 5*top, (top, low)

def test_panels_of_a_batch_are_untouched_pixels(pair):
    orig, dub = pair
    o = np.concatenate(list(aligned_original_chunks(orig, N_OUT, chunk=7)))
    d = read_frames(dub)
    sbs = side_by_side(o, d)
    bh = label_height(S)
    assert sbs.shape == (N_OUT, S + bh, 3*S, 3)
    assert (sbs[:, bh:, :S] == o).all() and (sbs[:, bh:, S:2*S] == d).all()
    same = side_by_side(o[:3], o[:3], labels=False)[:, :, 2*S:]
    assert same.max() <= 4                        # the colour map's zero (inferno: (0, 0, 4)) where nothing differs

def test_aligned_original_caches_or_redecodes_the_same_frames(pair):
    orig, _ = pair
    for n in (1, 9, 10, 11, 47):
        idx = pingpong_indices(N_SRC, n)
        cached = np.concatenate(list(aligned_original_chunks(orig, n, chunk=4)))
        redecoded = np.concatenate(list(aligned_original_chunks(orig, n, chunk=4, max_cache_bytes=0)))
        assert (frame_number(cached) == idx).all() and (cached == redecoded).all()
    assert [len(c) for c in aligned_original_chunks(orig, 47, chunk=16)] == [16, 16, 15]

def test_single_frame_original(pair, tmp_path):
    one = numbered_clip(tmp_path/'one.mp4', 1)
    fr = list(aligned_original_frames(one, 5, max_cache_bytes=0))
    assert len(fr) == 5 and (frame_number(np.stack(fr)) == 0).all()

LATENT = data_dir()/'clips'/'latentsync_demo3.mp4'   # 1080×1920 HEVC at 30 fps

@pytest.mark.skipif(not LATENT.exists(), reason='latentsync_demo3.mp4 not in the corpus')
def test_memory_bounded_on_a_1080x1920_clip(tmp_path):
    "A 6-frame stand-in dub of a 1080×1920 clip: no full-resolution frame reaches numpy when the panels are 256 px."
    full = 1080*1920*3
    dub = fake_dub(LATENT, tmp_path/'dub.mp4', 6, crf=30)
    assert (probe_video(dub).width, probe_video(dub).height) == (1080, 1920)
    tracemalloc.start()
    got = np.concatenate(list(aligned_original_chunks(LATENT, 6, chunk=4, max_side=256)))
    peak_align = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert got.shape == (6, 256, 144, 3) and peak_align < full/2, peak_align
    assert (got == read_frames(LATENT, count=6, max_side=256)).all()
    tracemalloc.start()
    out = write_side_by_side(dub, max_side=256, chunk=4, watermark=False)
    peak_sbs = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak_sbs < full, peak_sbs
    info = probe_video(out)
    assert info.n_frames == 6 and (info.width, info.height) == (3*144, 256 + label_height(144)) and info.has_audio

def test_original_from_the_dub_json(pair, tmp_path):
    orig, dub = pair
    assert original_of(dub) == orig
    d = tmp_path/'moved'; d.mkdir()
    shutil.copy(dub, d/'dub.mp4'); shutil.copy(orig, d/'original.mp4')
    (d/'dub.json').write_text(json.dumps(dict(video='original.mp4')))        # relative to the JSON's folder
    assert original_of(d/'dub.mp4') == d/'original.mp4'
    (d/'dub.json').write_text(json.dumps(dict(video=str(tmp_path/'gone.mp4'))))
    with pytest.raises(InputFileError, match='gone.mp4'): original_of(d/'dub.mp4')
    (d/'dub.json').unlink()
    with pytest.raises(InputFileError, match='no original video given'): write_side_by_side(d/'dub.mp4')
    with pytest.raises(InputFileError, match='is an input'): write_side_by_side(dub, out=orig)

def test_difference_stats_zero_where_nothing_changed(pair, tmp_path):
    orig, dub = pair
    same = fake_dub(orig, tmp_path/'same.mp4', N_OUT, darken=1.0)      # a "dub" that changes nothing
    s0 = difference_stats(same)
    assert s0['mean_abs'].max() < 2 and s0['changed_fraction'].max() < 0.005
    s1 = difference_stats(dub, max_side=None)
    o = np.concatenate(list(aligned_original_chunks(orig, N_OUT)))
    low = o[:, S//2:]
    expected = (pixel_difference(low, (low*0.5).round().astype(np.uint8)) > 12).mean(axis=(1, 2))/2
    assert np.abs(s1['changed_fraction'] - expected).max() < 0.03
    assert (s1['source_index'] == pingpong_indices(N_SRC, N_OUT)).all() and len(s1['envelope']) == N_OUT
    summ = summarise_stats(s1)
    assert summ['frames'] == N_OUT and summ['mean_abs'] > 5*summarise_stats(s0)['mean_abs']

def test_strip_rows_are_the_chosen_frames(pair, tmp_path):
    orig, dub = pair
    img = side_by_side_strip(dub, n=[3, 12, 29], max_side=112, path=tmp_path/'strip.png')
    bh = label_height(112)
    rows = img.reshape(3, 112 + bh, 336, 3)[:, bh:, :112]
    assert (frame_number(rows, band=8) == pingpong_indices(N_SRC, N_OUT)[[3, 12, 29]]).all()
    assert (tmp_path/'strip.png').stat().st_size > 0
    with pytest.raises(ValueError, match='frames must lie'): side_by_side_strip(dub, n=[N_OUT])

def test_viewer_static_and_live(pair):
    orig, dub = pair
    v = dub_viewer(dub, max_side=112, frames=5, live=False)
    assert isinstance(v, StaticDubView) and len(v.panels.frames) == 5 and len(v.audio) == len(read_audio(dub))
    w = dub_viewer(dub, max_side=112, live=True)
    slider, image, info = w.children[1].children[1], w.children[2], w.children[3]
    import cv2
    for i in (0, 12, 29):
        slider.value = i
        pic = cv2.cvtColor(cv2.imdecode(np.frombuffer(image.value, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert frame_number(pic[None, label_height(112):, :112], band=8)[0] == pingpong_indices(N_SRC, N_OUT)[i]
        assert f"original frame {pingpong_indices(N_SRC, N_OUT)[i]}" in info.value
    assert type(w.children[4]).__name__ == 'Audio'
    assert 'application/vnd.plotly.v1+json' in w.children[-1].outputs[0]['data']     # the difference curve
    # a memory budget too small for every frame: the slider steps over frames instead
    w2 = dub_viewer(dub, max_side=112, live=True, max_bytes=10*2*112*112*3)
    assert w2.children[1].children[1].step == 3

def test_command_writes_the_report(pair, tmp_path):
    orig, dub = pair
    assert side_by_side_cmd(str(dub), out=str(tmp_path/'view'), max_side=112, progress=False) == 0
    assert sorted(p.name for p in (tmp_path/'view').iterdir()) == ['difference.html', 'difference.json', 'side_by_side.mp4', 'strip.png']
    r = json.loads((tmp_path/'view'/'difference.json').read_text())
    assert r['frames'] == N_OUT and len(r['per_frame']['mean_abs']) == N_OUT and r['original'] == str(orig)

def test_notebook_runs_as_a_report_job(pair, tmp_path):
    "papermill with a dub and an output folder: the report files, no error."
    from conftest import run_papermill
    orig, dub = pair
    out = tmp_path/'report'
    run_papermill(repo_root()/'nbs'/'76_dub_viewer.ipynb', tmp_path/'out.ipynb', dict(dub=dub, out_dir=out), repo_root()/'nbs')
    assert sorted(p.name for p in out.iterdir()) == ['difference.html', 'difference.json', 'side_by_side.mp4', 'strip.png']
    assert probe_video(out/'side_by_side.mp4').n_frames == N_OUT
    cells = json.loads((tmp_path/'out.ipynb').read_text())['cells']
    assert not [o for c in cells for o in c.get('outputs', []) if o.get('output_type') == 'error']
