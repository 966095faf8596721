"""Audio to expression (dfe.imitator): how held-out quality grows with the training speech (a learning curve).

Trains the audio model, as `dfe train-audio --all-identities` does (300 steps, 1.5-frame smoothing), on a random
fraction of the non-held-out identities (whole identities; two draws per fraction), with the targets realigned by
the offsets the split run measured (`outputs/audio2expr/train/train.json`, from `dfe train-audio`), and scores
each model like `dfe evaluate-audio` on the held-out identities: jawOpen r as recorded, and with each recording's
audio/video offset corrected (measured on the fitting half). The slope tells what more data would buy.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_audio_data.py [--fractions 0.25,0.5,0.75,1] [--seeds 0,1]

Writes outputs/bench/audio_data.json and audio_data.md (atomically) and prints the table.
"""
from __future__ import annotations
import argparse, json, time
import numpy as np
from dfe.core import outputs_dir, atomic_write_json, atomic_write_text
from dfe.facemodel import load_face_model
from dfe.imitator import (load_tracked_clips, shift_targets, train_audio2expr, evaluate_audio2expr, round_to_checkpoint,
                          TrainSettings, Audio2ExprConfig)

def run(fractions=(0.25, 0.5, 0.75, 1.0), seeds=(0, 1), smooth:float=1.5) -> dict:
    meta = json.loads((outputs_dir()/'audio2expr'/'train'/'train.json').read_text())
    offs = {k: v['offset'] for k, v in meta['av_offsets'].items()}
    clips = [shift_targets(c, offs.get(c.id, 0)) for c in load_tracked_clips(meta['train_clips'] + meta['val_clips'])]
    ids = sorted({c.identity for c in clips})
    face = load_face_model(parts=('face',), device='cpu')
    rows = []
    for f in fractions:
        for seed in seeds:
            order = list(ids); np.random.default_rng(seed).shuffle(order)
            keep = set(order[:max(1, round(f*len(ids)))])
            train = [c for c in clips if c.identity in keep]
            t0 = time.perf_counter()
            model, _ = train_audio2expr(train, [], face, TrainSettings(seed=seed, av_offsets='none'), Audio2ExprConfig(smooth=smooth), progress=False)
            model = round_to_checkpoint(model.cpu())
            ev = evaluate_audio2expr(model, out_dir='', speech_files=False)['summary']
            row = dict(fraction=f, seed=seed, identities=len(keep), clips=len(train), seconds=round(sum(len(c) for c in train)/25, 1),
                       jaw_corr=ev['generic']['jaw_corr'], jaw_corr_synced=ev['synced']['generic']['jaw_corr'],
                       lve_styled_mm=ev['styled']['lve_mm'], lip_gap_corr_synced=ev['synced']['styled']['lip_gap_corr'],
                       train_seconds_taken=round(time.perf_counter() - t0, 1))
            rows.append(row); print(json.dumps(row), flush=True)
    by = {}
    for r in rows: by.setdefault(r['fraction'], []).append(r)
    mean = [dict(fraction=f, identities=float(np.mean([r['identities'] for r in rs])), seconds=float(np.mean([r['seconds'] for r in rs])),
                 **{k: float(np.mean([r[k] for r in rs])) for k in ('jaw_corr', 'jaw_corr_synced', 'lve_styled_mm', 'lip_gap_corr_synced')})
            for f, rs in sorted(by.items())]
    x = np.log2([m['seconds'] for m in mean])
    fit = {k: np.polyfit(x, [m[k] for m in mean], 1).tolist() for k in ('jaw_corr', 'jaw_corr_synced')} if len(mean) > 1 else {}
    return dict(what='held-out audio-to-expression quality against the amount of training speech', rows=rows, mean=mean,
                per_doubling={k: v[0] for k, v in fit.items()}, fit_log2_seconds=fit, created=time.strftime('%Y-%m-%dT%H:%M:%S'))

def markdown(res:dict) -> str:
    L = ["# Audio to expression: held-out quality against training speech", "",
         "Mean over draws of the training identities (`bench/bench_audio_data.py`).", "",
         "| fraction of identities | identities | speech (s) | jawOpen r | jawOpen r, offsets corrected | styled LVE (mm) | lip-gap r, corrected |",
         "|---|---|---|---|---|---|---|"]
    for m in res['mean']:
        L.append(f"| {m['fraction']:g} | {m['identities']:.1f} | {m['seconds']:.0f} | {m['jaw_corr']:.3f} | {m['jaw_corr_synced']:.3f} | "
                 f"{m['lve_styled_mm']:.2f} | {m['lip_gap_corr_synced']:.3f} |")
    if res['per_doubling']:
        L += ["", "Least-squares line against log2(speech seconds): jawOpen r gains "
              f"{res['per_doubling']['jaw_corr']:+.3f} per doubling of the speech ({res['per_doubling']['jaw_corr_synced']:+.3f} with offsets corrected)."]
    return '\n'.join(L) + '\n'

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--fractions', default='0.25,0.5,0.75,1')
    ap.add_argument('--seeds', default='0,1')
    a = ap.parse_args()
    res = run([float(x) for x in a.fractions.split(',')], [int(x) for x in a.seeds.split(',')])
    out = outputs_dir()/'bench'
    atomic_write_json(out/'audio_data.json', res); atomic_write_text(out/'audio_data.md', markdown(res))
    print(markdown(res)); print(f"wrote {out/'audio_data.json'}")
