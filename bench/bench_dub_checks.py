"""The acceptance checks of finished dubs (issue 7), measured on the files themselves.

For each dub folder (`dub.mp4` + `dub.json`, e.g. each job of `dfe batch data/jobs/heldout_dubs.csv -o outputs/heldout_dubs`):

- `frames` against the speech's length at 25 fps (`round(samples / 640)` at 16 kHz), and the video's duration;
- the dub's audio: duration, and the correlation of its envelope with the speech file's at lags ±4 frames (in sync:
  the best lag is 0);
- provenance: the container tag, the watermark score of the dub, and of a re-encode at H.264 CRF 28 without tags
  (the first 100 frames);
- the source video's size and codec (the 9:16 1080p HEVC clip among them).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_dub_checks.py [DUB_FOLDERS... (default outputs/heldout_dubs/*)]

Writes outputs/bench/dub_checks.json and dub_checks.md (atomically) and prints the table.
"""
from __future__ import annotations
import argparse, json, tempfile, time
from pathlib import Path
import numpy as np
from dfe.core import outputs_dir, atomic_write_json, atomic_write_text
from dfe.io import read_audio, probe_video, iter_frames, write_video
from dfe.provenance import verify_video
from dfe.inspect import audio_envelope
from dfe.imitator import lag_correlations

def check(folder:Path, max_frames:int=100) -> dict:
    d = json.loads((folder/'dub.json').read_text())
    mp4 = folder/'dub.mp4'
    speech = read_audio(d['audio']); want = int(round(len(speech)/640))
    info, src = probe_video(mp4), probe_video(d['video'])
    got = read_audio(mp4)
    n = min(want, int(len(got)//640))
    lags = lag_correlations(audio_envelope(speech, 16000, 25.0, n), audio_envelope(got, 16000, 25.0, n), 4)
    v = verify_video(mp4, max_frames=max_frames)
    with tempfile.TemporaryDirectory() as t:
        re = write_video(Path(t)/'crf28.mp4', iter_frames(mp4, count=max_frames), crf=28)
        v28 = verify_video(re, max_frames=max_frames)
    return dict(dub=folder.name, source=f"{src.width}×{src.height} {src.codec}", frames=info.n_frames, speech_frames=want,
                video_s=round(info.duration, 3), audio_s=round(len(got)/16000, 3), speech_s=round(len(speech)/16000, 3),
                av_best_lag=int(np.nanargmax(lags)) - 4, av_r0=round(float(lags[4]), 3), tag=v['tag_found'],
                watermark=round(float(v['watermark']['score']), 1), watermark_crf28=round(float(v28['watermark']['score']), 1),
                detected_crf28=bool(v28['watermark']['detected']), tag_crf28=v28['tag_found'])

def markdown(rows:list) -> str:
    L = ["# Finished dubs: length, audio sync, provenance (`bench/bench_dub_checks.py`)", "",
         "| dub | source | frames / speech frames | video s / speech s | audio best lag (frames) | r at lag 0 | tag | watermark | after CRF 28: watermark (detected) | tag |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['dub']} | {r['source']} | {r['frames']} / {r['speech_frames']} | {r['video_s']:.2f} / {r['speech_s']:.2f} | {r['av_best_lag']:+d} | "
                 f"{r['av_r0']:.3f} | {'yes' if r['tag'] else 'no'} | {r['watermark']} | {r['watermark_crf28']} ({'yes' if r['detected_crf28'] else 'no'}) | "
                 f"{'yes' if r['tag_crf28'] else 'no'} |")
    return '\n'.join(L) + '\n'

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('folders', nargs='*')
    a = ap.parse_args()
    folders = [Path(f) for f in a.folders] or sorted(p.parent for p in (outputs_dir()/'heldout_dubs').glob('*/dub.json'))
    rows = []
    for f in folders:
        rows.append(check(f)); print(json.dumps(rows[-1]), flush=True)
    out = outputs_dir()/'bench'
    atomic_write_json(out/'dub_checks.json', dict(rows=rows, created=time.strftime('%Y-%m-%dT%H:%M:%S')))
    atomic_write_text(out/'dub_checks.md', markdown(rows))
    print(markdown(rows)); print(f"wrote {out/'dub_checks.json'}")
