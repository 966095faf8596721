"`dfe dub` end to end on short real clips: output length, new audio, provenance, faceless frames, odd inputs, bad inputs."
import json, wave
from pathlib import Path
import numpy as np
import pytest
from dfe.core import data_dir, DfeError, InputFileError
from dfe.io import read_audio, probe_video, read_frames, write_video, MediaError
from dfe.dub import dub_video, DubSettings, pingpong_indices

CLIP = data_dir()/'clips'/'vox_f.mp4'          # 4.6 s, 224², one face throughout
SPEECH = data_dir()/'audio'/'french.wav'
pytestmark = pytest.mark.skipif(not CLIP.exists() or not SPEECH.exists(), reason='shared data not available')
QUICK = DubSettings(iters=3)                   # the shipped prior, barely adapted: these tests check the plumbing, not the looks


@pytest.fixture(scope='module')
def work(tmp_path_factory): return tmp_path_factory.mktemp('dubwork')


def _write_wav(path, x, sr, channels=1):
    x = np.clip(np.repeat(x[:, None], channels, 1), -1, 1)
    with wave.open(str(path), 'wb') as w:
        w.setnchannels(channels); w.setsampwidth(2); w.setframerate(sr)
        w.writeframes((x*32767).astype('<i2').tobytes())


def test_dub_48k_stereo(work, tmp_path):
    "A 48 kHz stereo speech file longer than the clip: the dub is as long as the speech at 25 fps, carries it, and is marked."
    from dfe.provenance import verify_video
    sp = read_audio(SPEECH, sr=48000)[:48000*6]
    _write_wav(tmp_path/'speech48k.wav', sp, 48000, channels=2)
    out = tmp_path/'dub.mp4'
    r = dub_video(CLIP, tmp_path/'speech48k.wav', out, QUICK, work_dir=work/'vox_f', progress=False)
    n = int(round(len(sp)/48000*25))
    info = probe_video(out)
    assert info.n_frames == n == r['frames'] and info.has_audio
    got = read_audio(out, sr=16000)
    assert abs(len(got) - 16000*6) < 0.01*16000*6
    ref = read_audio(tmp_path/'speech48k.wav', sr=16000)
    k = min(len(got), len(ref))
    assert np.corrcoef(got[:k], ref[:k])[0, 1] > 0.9          # the new speech, in sync (AAC round trip)
    assert Path(r['contact_sheet']).exists()
    v = verify_video(out)
    assert v['tag_found'] and v['watermark']['detected'] and v['synthetic']
    assert set(r['stage_seconds']) >= {'track', 'crop', 'adapt', 'animate', 'render'}
    assert not list(tmp_path.glob('.*tmp*')) and not list((work/'vox_f').glob('dub-*'))  # no temporaries left


def test_dub_passes_faceless_frames_through(work, tmp_path):
    "Frames without a face (here 20 black frames in the middle) come out unchanged; the others are dubbed."
    fr = read_frames(CLIP)
    fr[50:70] = 0
    vid = tmp_path/'with_gap.mp4'
    write_video(vid, fr, audio=read_audio(CLIP, sr=16000))
    out = tmp_path/'dub.mp4'
    sp = read_audio(SPEECH, sr=16000)[:16000*3]
    spath = tmp_path/'speech.wav'; _write_wav(spath, sp, 16000)
    r = dub_video(vid, spath, out, QUICK, work_dir=work/'gap', progress=False)
    idx = pingpong_indices(len(fr), r['frames'])
    black = (idx >= 50) & (idx < 70)
    assert r['passed_through'] >= black.sum() > 0
    o = read_frames(out)
    assert o[black].mean() < 8                               # still black: nothing was pasted there
    assert o[~black].mean() > 40


def test_dub_refuses_bad_inputs(tmp_path):
    "A corrupt video, a missing speech file and an output that is an input give clear errors and write nothing."
    bad = tmp_path/'cut.mp4'
    bad.write_bytes(CLIP.read_bytes()[:len(CLIP.read_bytes())//2])
    out = tmp_path/'o'/'dub.mp4'
    with pytest.raises(MediaError) as e: dub_video(bad, SPEECH, out, QUICK, work_dir=tmp_path/'w', progress=False)
    assert str(bad) in str(e.value)
    with pytest.raises(InputFileError, match='missing.wav'): dub_video(CLIP, tmp_path/'missing.wav', out, QUICK, progress=False)
    with pytest.raises(InputFileError, match='input'): dub_video(CLIP, SPEECH, CLIP, QUICK, progress=False)
    with pytest.raises(InputFileError, match='mp4'): dub_video(CLIP, SPEECH, tmp_path/'dub.avi', QUICK, progress=False)
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))

def test_job_notebook_defaults_are_dub_settings():
    "The job notebook's parameters that are `DubSettings` fields default to the same values (a batch row without them dubs as `dfe dub` does)."
    import ast, dataclasses
    from dfe.batch import notebook_parameters
    from dfe.core import repo_root
    spec = notebook_parameters(repo_root()/'nbs'/'75_dub_job.ipynb')
    fields = {f.name: f.default for f in dataclasses.fields(DubSettings)}
    shared = sorted(set(spec) & set(fields))
    assert {'prior', 'iters', 'tex_init', 'frames', 'mix', 'precision', 'crf'} <= set(shared)
    for k in shared: assert ast.literal_eval(spec[k]['default']) == fields[k], (k, spec[k]['default'], fields[k])
