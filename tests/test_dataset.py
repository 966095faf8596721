"Clip folders from a real tracked clip: contents, caching and rebuilds, interrupted builds, windows and references, dfe crop."
import json, pickle, shutil
from pathlib import Path
import numpy as np
import pytest
import torch
from dfe.core import data_dir, InputFileError, DfeError
from dfe.io import iter_frames
from dfe.cropping import crop_frame, MASK_BITS
import dfe.dataset as D
from dfe.dataset import (CropSettings, build_clip_dataset, dataset_is_current, read_manifest, ClipData, WindowDataset, crop_cmd,
                         dataset_key, track_file)

CLIP = data_dir()/'clips'/'vox_f.mp4'
S = 48   # small crops keep these tests quick

def light_track_dir(dest:Path) -> Path:
    "vox_f tracked with the notebooks' light settings (cached in the user cache), written to `dest`."
    from dfe.tracking import track_video, TrackSettings
    s = TrackSettings(shape_frames=8, shape_iters=60, landmark_iters=60, appearance_frames=2, appearance_iters=20,
                      crop=64, texture_size=32, frame_iters=3)
    track_video(CLIP, dest, settings=s, device='cpu', progress=False)
    return dest

@pytest.fixture(scope='module')
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp('ds')
    light_track_dir(d/'track')
    build_clip_dataset(d/'track', d/'clip', CropSettings(size=S), device='cpu', progress=False)
    return d

@pytest.fixture(scope='module')
def clip(work): return ClipData(work/'clip')


def test_folder_contents(work, clip):
    m = read_manifest(work/'clip')
    n = len(clip)
    assert m['clip'] == 'vox_f' and m['identity'] == 'vox_f' and m['frames'] == n == 114 and m['has_audio']
    assert clip.frames.shape == (n, S, S, 3) and clip.frames.dtype == np.uint8
    assert clip.uv.shape == (n, S, S, 2) and clip.uv.dtype == np.float16
    assert clip.part.dtype == np.uint8 and clip.masks.dtype == np.uint8 and clip.depth.dtype == np.float16
    assert clip.mel.shape == (4*n, 80) and clip.mel.dtype == np.float32
    assert clip.params['expression'].shape == (n, 53) and clip.params['boxes'].shape == (n, 3)
    # the stored frames are the crops of the video's frames with the stored boxes
    f = list(iter_frames(CLIP, start=30, count=1))[0]
    np.testing.assert_array_equal(clip.frames[30], crop_frame(f, clip.params['boxes'][30], S)[0])
    # the UV raster covers the face; masks are present and nested
    m30 = np.asarray(clip.masks[30])
    face, mouth = (m30 & MASK_BITS['face']) > 0, (m30 & MASK_BITS['mouth']) > 0
    assert mouth.sum() > 20 and not (mouth & ~face).any() and ((clip.part[30] > 0) | ~face).mean() > 0.95
    met = json.loads((work/'clip'/'metrics.json').read_text())
    for k in ('box_jitter_px', 'box_jaw_corr'): assert set(met[k]) == {'ours', 'ours_per_frame_scale', 'baseline'}


def test_rebuild_skipped_when_unchanged(work):
    before = {p.name: p.stat().st_mtime_ns for p in (work/'clip').iterdir()}
    out, built = build_clip_dataset(work/'track', work/'clip', CropSettings(size=S), device='cpu', progress=False)
    assert not built and out == work/'clip'
    assert {p.name: p.stat().st_mtime_ns for p in (work/'clip').iterdir()} == before


def test_rebuilt_when_the_track_or_settings_change(work, tmp_path):
    from dfe.tracking import Track
    shutil.copytree(work/'clip', tmp_path/'clip')
    tr = Track.load(work/'track'/'track.npz')
    tr.rotation = tr.rotation + np.float32(0.02)              # a retracked clip: slightly different poses
    (tmp_path/'track').mkdir(); tr.save(tmp_path/'track'/'track.npz')
    old_key = read_manifest(tmp_path/'clip')['key']
    _, built = build_clip_dataset(tmp_path/'track', tmp_path/'clip', CropSettings(size=S), device='cpu', progress=False)
    assert built and read_manifest(tmp_path/'clip')['key'] != old_key
    assert not np.allclose(ClipData(tmp_path/'clip').params['rotation'], ClipData(work/'clip').params['rotation'])
    _, built = build_clip_dataset(tmp_path/'track', tmp_path/'clip', CropSettings(size=S, margin=0.2), device='cpu', progress=False)
    assert built
    assert not sorted(p.name for p in tmp_path.iterdir() if p.name.startswith('.'))   # no temporary folders left


class Boom(RuntimeError): pass

def test_interrupted_build_never_looks_finished(work, tmp_path, monkeypatch):
    calls = dict(n=0)
    real = D.crop_rasters
    def failing(*a, **k):
        calls['n'] += 1
        if calls['n'] == 3: raise Boom("simulated crash in the middle of the clip")
        return real(*a, **k)
    monkeypatch.setattr(D, 'crop_rasters', failing)
    # a fresh build: nothing at the target, no temporary folder left
    with pytest.raises(Boom): build_clip_dataset(work/'track', tmp_path/'new', CropSettings(size=S), device='cpu', progress=False)
    assert not (tmp_path/'new').exists() and list(tmp_path.iterdir()) == []
    # a rebuild of a finished folder: the old, complete folder stays in place and current for its key
    shutil.copytree(work/'clip', tmp_path/'old')
    key = read_manifest(tmp_path/'old')['key']
    calls['n'] = 0
    with pytest.raises(Boom): build_clip_dataset(work/'track', tmp_path/'old', CropSettings(size=S, margin=0.3), device='cpu', progress=False)
    assert dataset_is_current(tmp_path/'old', key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['old']


def test_half_written_folder_is_not_current(work, tmp_path):
    shutil.copytree(work/'clip', tmp_path/'c')
    key = read_manifest(tmp_path/'c')['key']
    assert dataset_is_current(tmp_path/'c', key)
    np.save(tmp_path/'c'/'uv.npy', np.zeros((3, S, S, 2), np.float16))     # truncated array
    assert not dataset_is_current(tmp_path/'c', key)
    (tmp_path/'c'/'dataset.json').unlink()
    assert not dataset_is_current(tmp_path/'c', key)
    with pytest.raises(InputFileError, match='no dataset.json'): ClipData(tmp_path/'c')


def test_stale_temporary_folders_are_cleaned(work, tmp_path):
    stale = tmp_path/'.c.building-999999999-abc'; stale.mkdir(); (stale/'frames.npy').write_bytes(b'x')
    build_clip_dataset(work/'track', tmp_path/'c', CropSettings(size=16), device='cpu', progress=False)
    assert not stale.exists() and (tmp_path/'c'/'dataset.json').exists()


def test_bad_inputs_name_the_file(work, tmp_path):
    with pytest.raises(InputFileError, match='no track.npz'): track_file(tmp_path)
    from dfe.tracking import Track
    tr = Track.load(work/'track'/'track.npz'); tr.source = str(tmp_path/'moved.mp4')
    (tmp_path/'t').mkdir(); tr.save(tmp_path/'t'/'track.npz')
    with pytest.raises(InputFileError, match='moved.mp4'): build_clip_dataset(tmp_path/'t', tmp_path/'o', progress=False)
    # with the video given explicitly it works
    _, built = build_clip_dataset(tmp_path/'t', tmp_path/'o', CropSettings(size=16), video=CLIP, device='cpu', progress=False)
    assert built
    # a folder that is not a dataset is never replaced
    (tmp_path/'mine').mkdir(); (tmp_path/'mine'/'notes.txt').write_text('keep me')
    with pytest.raises(DfeError, match='refusing'): build_clip_dataset(work/'track', tmp_path/'mine', CropSettings(size=16), progress=False)
    assert (tmp_path/'mine'/'notes.txt').read_text() == 'keep me'


def test_window_items(clip):
    ds = WindowDataset([clip], window=5, refs=2, seed=0)
    assert len(ds) == len(clip) - 4
    it = ds[10]
    T = 5
    expect = dict(frames=((T, 3, S, S), torch.float32), uv=((T, S, S, 2), torch.float32), tile=((T, S, S), torch.int64),
                  part=((T, S, S), torch.uint8), depth=((T, S, S), torch.float32), masks=((T, S, S), torch.uint8),
                  mel=((T, 20, 80), torch.float32), expression=((T, 53), torch.float32), rotation=((T, 3), torch.float32),
                  sh=((T, 9, 3), torch.float32), focal=((T,), torch.float32), principal=((T, 2), torch.float32),
                  ref_frames=((2, 3, S, S), torch.float32), index=((T,), torch.int64), ref_index=((2,), torch.int64))
    for k, (shape, dt) in expect.items(): assert (tuple(it[k].shape), it[k].dtype) == (shape, dt), k
    assert it['index'].tolist() == list(range(10, 15))
    assert float(it['frames'].min()) >= 0 and float(it['frames'].max()) <= 1
    np.testing.assert_array_equal((it['frames'][2].permute(1, 2, 0)*255).round().byte().numpy(), clip.frames[12])
    # the audio window of frame i is centred on feature row 4i + 2
    np.testing.assert_array_equal(it['mel'][0].numpy(), clip.mel[4*10 + 2 - 10:4*10 + 2 + 10])


def test_references_same_clip_never_in_or_near_the_window(clip):
    ds = WindowDataset([clip], window=5, refs=3)
    for i in range(len(ds)):
        s0 = int(ds.items[i][0 + 1])
        for _ in range(3):
            it = ds[i]
            assert it['ref_clip'] == ['vox_f']*3
            r = it['ref_index'].numpy()
            assert ((r < s0 - 5) | (r >= s0 + 10)).all(), (i, r)
    a, b = WindowDataset([clip], seed=1), WindowDataset([clip], seed=1)
    assert all(torch.equal(a[i]['ref_index'], b[i]['ref_index']) for i in range(0, len(a), 7))
    assert len({int(WindowDataset([clip])[5]['ref_index'][0]) for _ in range(20)}) > 1     # unseeded: fresh draws


def test_identity_scope_and_failed_frames(work, tmp_path):
    shutil.copytree(work/'clip', tmp_path/'a'); shutil.copytree(work/'clip', tmp_path/'b')
    m = json.loads((tmp_path/'b'/'dataset.json').read_text()); m['clip'] = 'vox_f_2'    # another clip of the same actor
    (tmp_path/'b'/'dataset.json').write_text(json.dumps(m))
    p = dict(np.load(tmp_path/'b'/'params.npz')); p['failed'][40:60] = 1; np.savez(tmp_path/'b'/'params.npz', **p)
    ds = WindowDataset([tmp_path/'a', tmp_path/'b'], ref_scope='identity', refs=4, seed=0)
    n = len(ClipData(tmp_path/'a'))
    assert len(ds) == (n - 4) + (n - 4 - 24)               # windows touching a failed frame are skipped
    clips = {c for i in range(0, len(ds), 5) for c in ds[i]['ref_clip']}
    assert clips == {'vox_f', 'vox_f_2'}
    for i in range(len(ds)):
        cand = ds.reference_candidates(i)
        assert not ((cand[:, 0] == 1) & (cand[:, 1] >= 40) & (cand[:, 1] < 60)).any()   # never a failed frame
    with pytest.raises(DfeError): WindowDataset([tmp_path/'a'], ref_scope='actor')


def test_dataloader_workers_and_pickling(clip):
    ds = WindowDataset([clip], window=3)
    assert pickle.loads(pickle.dumps(ds))[3]['frames'].shape == (3, 3, S, S)
    # spawned workers: they unpickle the dataset for real, and a fork of this process (which may hold other tests' threads,
    # e.g. the Dask cluster of test_batch) can deadlock in the child
    dl = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, shuffle=True, multiprocessing_context='spawn')
    b = next(iter(dl))
    assert b['frames'].shape == (4, 3, 3, S, S) and len(b['ref_clip']) == 1 and len(b['ref_clip'][0]) == 4


def test_crop_cmd(work, tmp_path, capsys):
    assert crop_cmd(str(work/'track'), out=str(tmp_path/'out'), size=32) == 0
    out = capsys.readouterr().out
    assert 'built' in out and 'box_jaw_corr' in out
    met = json.loads((tmp_path/'out'/'metrics.json').read_text())
    assert met['size'] == 32 and met['frames'] == 114
    assert crop_cmd(str(work/'track'/'track.npz'), out=str(tmp_path/'out'), size=32) == 0
    assert 'up to date' in capsys.readouterr().out
    from dfe.cli import parser_for
    a = vars(parser_for(crop_cmd, 'dfe crop').parse_args(['T', '-o', 'O', '--size', '128', '--scale-smooth', '0.5']))
    assert a['trackdir'] == 'T' and a['out'] == 'O' and a['size'] == 128 and a['scale_smooth'] == 0.5


def test_heldout_gap_errors_read_the_clips_track(work, tmp_path):
    "`dfe.evaluate.heldout_difficulty`'s lip-gap error: from the track the clip folder records; NaN when that track is gone."
    from dfe.evaluate import _gap_errors
    g = _gap_errors(work/'clip', 10, 40)
    assert g.shape == (30,) and np.isfinite(g).all()
    assert 0 < g.mean() < 0.1                     # inter-ocular units: the light fit opens the mouth within a tenth of the eyes' distance
    moved = tmp_path/'clip'
    shutil.copytree(work/'clip', moved)
    m = json.loads((moved/'dataset.json').read_text())
    (moved/'dataset.json').write_text(json.dumps(dict(m, track=str(tmp_path/'gone'/'track.npz'))))
    assert np.isnan(_gap_errors(moved, 10, 40)).all()
