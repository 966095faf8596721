"""Do the dubbed lips follow the new speech? Landmarks detected on finished dubs (no SyncNet offline, so a proxy).

For each dub folder (`dub.mp4` + `dub.json`, e.g. each job of `dfe batch data/jobs/heldout_dubs.csv -o outputs/heldout_dubs`):

- `gap`: the inner-lip gap (MediaPipe FaceMesh landmarks 13-14 over the inter-ocular distance) in every frame of the dub
  and of the original frames it was built on (the clip ping-ponged to the dub's length, as `dfe dub` does);
- `drive`: the audio model's jawOpen for the new speech (what the dub was asked to do, before the actor's style layer);
- `r_dub`: correlation of the dub's lip gap with `drive`: the rendered mouth follows the new speech;
- `r_null`: the same for the original frames: what the correlation is when the lips ignore the new speech;
- `amplitude`: std of the dub's lip gap / std of the original's (1: the actor's own amount of mouth motion).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_dub_lips.py [DUB_FOLDERS... (default outputs/heldout_dubs/*)]

Writes outputs/bench/dub_lips.json and dub_lips.md (atomically) and prints the table.
"""
from __future__ import annotations
import argparse, json, time
from pathlib import Path
import numpy as np
from dfe.core import outputs_dir, atomic_write_json, atomic_write_text
from dfe.io import read_audio
from dfe.landmarks import detect_landmarks
from dfe.tracking import inner_lip_gap, _corr
from dfe.imitator import load_audio2expr, predict_coefficients, JAW_OPEN
from dfe.dub import pingpong_indices

def corr(a, b) -> float|None:
    "Pearson r over frames finite in both (None if undefined)."
    r = _corr(a, b)
    return None if np.isnan(r) else r

def lip_gap_of(video) -> np.ndarray:
    lt = detect_landmarks(str(video), backend='facemesh', other_faces=False)
    return np.where(lt.valid, inner_lip_gap(lt.points), np.nan)

def score(folder:Path, model) -> dict:
    d = json.loads((folder/'dub.json').read_text())
    gd = lip_gap_of(folder/'dub.mp4')
    go = lip_gap_of(d['video'])
    n = len(gd)
    go = go[pingpong_indices(len(go), n)]
    drive = predict_coefficients(model, read_audio(d['audio'], sr=16000), n)[:, JAW_OPEN]
    sd, so = np.nanstd(gd), np.nanstd(go)
    return dict(job=folder.name, frames=n, tex_init=d['settings'].get('tex_init', 'random'), r_dub=corr(gd, drive), r_null=corr(go, drive),
                amplitude=float(sd/so) if so > 0 else None, detected_dub=float(np.isfinite(gd).mean()), detected_orig=float(np.isfinite(go).mean()))

def fmt(v, nd=2): return '–' if v is None else f"{v:.{nd}f}"

def markdown(rows) -> str:
    L = ["| dub | frames | texture init | r(dub lips, new speech) | r(original lips, new speech) | amplitude dub/original | lips found dub / original |",
         "|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['job']} | {r['frames']} | {r['tex_init']} | {fmt(r['r_dub'])} | {fmt(r['r_null'])} | {fmt(r['amplitude'])} | "
                 f"{r['detected_dub']:.0%} / {r['detected_orig']:.0%} |")
    ok = [r for r in rows if r['r_dub'] is not None and r['r_null'] is not None]
    if ok:
        L.append(f"| mean | | | {np.mean([r['r_dub'] for r in ok]):.2f} | {np.mean([r['r_null'] for r in ok]):.2f} | "
                 f"{np.mean([r['amplitude'] for r in ok if r['amplitude'] is not None]):.2f} | |")
    return '\n'.join(L) + '\n'

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('folders', nargs='*', help='dub folders (default: outputs/heldout_dubs/*)')
    a = ap.parse_args()
    folders = [Path(f) for f in a.folders] or sorted(p.parent for p in (outputs_dir()/'heldout_dubs').glob('*/dub.json'))
    model = load_audio2expr(device='cpu')
    rows = []
    for f in folders:
        rows.append(score(f, model)); print(rows[-1], flush=True)
    md = markdown(rows)
    atomic_write_json(outputs_dir()/'bench'/'dub_lips.json', dict(what=__doc__.split('\n')[0], rows=rows, created=time.strftime('%Y-%m-%dT%H:%M:%S')))
    atomic_write_text(outputs_dir()/'bench'/'dub_lips.md', md)
    print(md)
