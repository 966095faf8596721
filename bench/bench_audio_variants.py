"""Audio to expression (dfe.imitator): cheap variants of the shipped model's use, scored like `dfe evaluate-audio`.

On the held-out identities' tracked clips (second half of each clip scored; the first half fits what needs
fitting) and on the validation identities of the shipped model's training (`train.json`, whole clips):

1. smoothing: jawOpen correlation of the prediction smoothed by a Gaussian of σ frames (σ is chosen on the
   validation identities, never on the held-out ones);
2. ensemble: the mean prediction of the shipped model and the checkpoints given with `--checkpoints`
   (e.g. `dfe train-audio --seed 1 -o outputs/audio2expr/exp_seed1`), alone and smoothed;
3. style fit: the actor's style layer fitted by least squares (`fit_style`) or by matching moments (scale = tracked
   std / predicted std), and on frames realigned by the recording's audio/video offset (as `fit_actor_style` does)
   at articulations 0 (least squares), 0.25 … 1 (moments): LVE against how much jawOpen moves (std ratio to the tracked).

The base model is a split run's checkpoint by default (`outputs/audio2expr/train`, from `dfe train-audio`): σ must be
chosen on identities the model never learnt from. The σ sweep, the members and the ensemble use the models' raw
predictions (their own `config.smooth` switched off); the style fits use the base model as it is used, with its
smoothing. The shipped model (`--model shipped`; trained with `--all-identities`) has no validation identities: its
run reports the held-out sweep and the style fits, and chooses no σ.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_audio_variants.py [--model PATH] [--checkpoints a.pt,b.pt] [--train-json PATH]

Writes outputs/bench/audio_variants.json (audio_variants_shipped.json with `--model shipped`; atomically) and prints a summary.
"""
from __future__ import annotations
import argparse, json, time
from dataclasses import replace
import numpy as np
from scipy.ndimage import gaussian_filter1d
from dfe.core import outputs_dir, atomic_write_json
from dfe.data import load_manifest, DEFAULT_HELDOUT_IDENTITIES
from dfe.imitator import (load_audio2expr, load_tracked_clips, predict_coefficients, fit_style, StyleLayer, lip_vertex_error,
                          load_face_model, clip_av_offset, shift_targets, MOUTH_INDICES, JAW_OPEN, _corr, _first_frames)

SIGMAS = (0, 1, 1.5, 2, 3)
ARTICULATIONS = (0, 0.25, 0.5, 0.75, 1)

def smooth(p, s): return gaussian_filter1d(p, s) if s else p

def raw_predict(m, wave, n) -> np.ndarray:
    "The model's coefficients without the smoothing it may apply itself (`config.smooth`): the σ sweep starts from these."
    c = m.config
    try:
        m.config = replace(c, smooth=0.0); return predict_coefficients(m, wave, n)
    finally: m.config = c

def run(model=None, checkpoints=(), train_json=None) -> dict:
    split = outputs_dir()/'audio2expr'/'train'
    model = model or split/'audio2expr.pt'
    models = [load_audio2expr(None if model == 'shipped' else model, device='cpu')] + [load_audio2expr(c, device='cpu') for c in checkpoints]
    face = load_face_model(parts=('face',), device='cpu')
    # σ is chosen on the base model's validation identities; a model trained on all of them (the shipped one) has none: no choice (σ 0)
    val_ids = models[0].meta.get('val_clips') if train_json is None else json.loads(open(train_json).read())['val_clips']
    val = {}
    for c in load_tracked_clips(val_ids or []):
        p, t, v = raw_predict(models[0], c.wave, len(c))[:, JAW_OPEN], c.coefficients[:, JAW_OPEN], c.valid
        val[c.id] = {str(s): _corr(smooth(p, s)[v], t[v]) for s in SIGMAS}
    val_mean = {str(s): float(np.mean([r[str(s)] for r in val.values()])) for s in SIGMAS} if val else None
    best = max(SIGMAS, key=lambda s: val_mean[str(s)]) if val else 0
    ids = [c.id for c in load_manifest() if c.identity in DEFAULT_HELDOUT_IDENTITIES]
    held, cols = {}, list(MOUTH_INDICES)
    for c in load_tracked_clips(ids):
        N, k = len(c), len(c)//2
        preds = [raw_predict(m, c.wave, N) for m in models]
        t, v = c.coefficients[:, JAW_OPEN], c.valid[k:]
        r = lambda p: _corr(p[k:][v], t[k:][v])
        row = dict(smoothing={str(s): r(smooth(preds[0][:, JAW_OPEN], s)) for s in SIGMAS},
                   members=[r(p[:, JAW_OPEN]) for p in preds])
        ens = np.mean([p[:, JAW_OPEN] for p in preds], 0)
        row.update(ensemble=r(ens), ensemble_smoothed=r(smooth(ens, best)))
        g, ok, pred = c.coefficients, c.valid[:k], predict_coefficients(models[0], c.wave, N)   # the model as it is used (its own smoothing)
        fit = _first_frames(c, k); fit = shift_targets(fit, clip_av_offset(fit, models[0], max_spread=None)['offset'])
        styles = {'least_squares': fit_style(pred[:k], g[:k], ok, 0.3), 'moments': fit_style(pred[:k], g[:k], ok, 0.3, articulation=1)}
        styles.update({f'synced_articulation_{al:g}': fit_style(pred[:k], fit.coefficients, fit.valid, 0.3, articulation=al) for al in ARTICULATIONS})
        test = np.arange(k, N)[c.valid[k:]]; ref = c.expression[test]
        for name, st in styles.items():
            y = st(pred); e = ref.copy(); e[:, cols] = y[test]
            row[f'style_{name}'] = dict(lve_mm=float(lip_vertex_error(face, e, ref).mean()),
                                        jaw_std_ratio=float(y[test, JAW_OPEN].std()/max(g[test, JAW_OPEN].std(), 1e-6)))
        held[c.id] = row
        print(c.id, {k_: (round(v_, 3) if isinstance(v_, float) else v_) for k_, v_ in row.items() if k_ in ('ensemble', 'ensemble_smoothed')}, flush=True)
    mean = lambda f: float(np.mean([f(r) for r in held.values()]))
    summary = dict(val_sigma_mean=val_mean, sigma_chosen_on_val=best,
                   held_out=dict(smoothing={str(s): mean(lambda r: r['smoothing'][str(s)]) for s in SIGMAS},
                                 members=[mean(lambda r, i=i: r['members'][i]) for i in range(len(models))],
                                 ensemble=mean(lambda r: r['ensemble']), ensemble_smoothed=mean(lambda r: r['ensemble_smoothed']),
                                 style={n: dict(lve_mm=mean(lambda r: r[f'style_{n}']['lve_mm']),
                                                jaw_std_ratio=mean(lambda r: r[f'style_{n}']['jaw_std_ratio']))
                                        for n in styles}))
    return dict(what='audio-to-expression variants (smoothing, ensembles, style-layer fit) on held-out and validation identities',
                checkpoints=[str(model)] + list(checkpoints), summary=summary, val_clips=val, held_out_clips=held,
                created=time.strftime('%Y-%m-%dT%H:%M:%S'))

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', default='', help="base checkpoint: a split run with validation identities (default outputs/audio2expr/train/audio2expr.pt), or 'shipped'")
    ap.add_argument('--checkpoints', default='', help='comma-separated extra audio2expr checkpoints for the ensemble')
    ap.add_argument('--train-json', default='', help="a train.json whose validation clips choose σ (default: the base model's own)")
    a = ap.parse_args()
    res = run(a.model or None, [c for c in a.checkpoints.split(',') if c], a.train_json or None)
    out = outputs_dir()/'bench'/('audio_variants_shipped.json' if a.model == 'shipped' else 'audio_variants.json')
    atomic_write_json(out, res)
    print(json.dumps(res['summary'], indent=1)); print(f"wrote {out}")
