"""Parameter counts and seconds per training iteration of the deferred neural renderer's named configurations.

For each configuration (`dfe.models.CONFIGS`: `cpu`, 128², and `paper`, 256²) this builds the renderer (one actor's
texture), the window discriminator and the ST-LPIPS network, and times full training iterations
(`dfe.train.train_step`: renderer forward, region-weighted L1 + ST-LPIPS + texture regulariser + LSGAN generator
loss, backward, Adam step, then the discriminator's LSGAN step) on synthetic batches shaped like
`dfe.dataset.WindowDataset` batches (T = 5 frames, K = 1 reference, audio on). Data loading is not included
(bench/bench_dataset.py measures it: milliseconds per window). Also timed: inference (forward only) per window.
With --precision bf16 the training passes run under bfloat16 autocast in channels-last memory
(`dfe.train.TrainConfig.precision`); inference is timed in float32 either way.

The machine may be shared: the load average and the process CPU time per iteration are recorded beside the wall
time (on an oversubscribed machine, 2 OpenMP threads can be much slower than 1). Each (config, renderer
settings, precision, compile, batch, threads) row replaces an earlier one in the JSON; other rows are kept.

    .venv/bin/python bench/bench_models.py [--configs cpu paper] [--iters 5] [--batch cpu=4 paper=1] [--threads 1 2] [--precision fp32 bf16] [--compile generator|all]

Losses as `dfe.train.default_loss_weights`: for `cpu`, ST-LPIPS on one random frame per window around the mouth
(half the side); for `paper`, on every frame, whole frames (override with --perceptual-frames/--perceptual-crop).

With --compile generator (or all: the discriminator and ST-LPIPS too) the networks go through `torch.compile`
(inductor; on the CPU it needs a C++ compiler) first; the compile happens in the warm-up iterations, timed apart
(`warmup_s`). Measured in session 23 on this project's 2-core CPU, `cpu` in bf16, batch 4, 2 threads: the compiled
generator's step took 0.88 s against 0.65 s eager (after about 100 s of compiling, with a cold cache), so the
training commands do not compile.

Writes outputs/bench/models.json (atomically) and prints a summary.
"""
from __future__ import annotations
import argparse, json, os, platform, sys, time
import numpy as np
import torch
from dfe.core import outputs_dir, atomic_write_json
from dfe.models import renderer_config, DeferredRenderer, WindowDiscriminator, STLPIPS, LossWeights, synthetic_batch, model_sizes
from dfe.train import train_step, default_loss_weights, set_precision, bf16_supported
from dataclasses import replace

def bench_config(name:str, batch:int, iters:int, perceptual_frames:int=-1, perceptual_crop:float=-1, warmup:int=1,
                 precision:str='fp32', renderer:dict|None=None, compile:str='') -> dict:
    cfg = renderer_config(name, **(renderer or {}))
    torch.manual_seed(0)
    R = DeferredRenderer(cfg, actors=['a'])
    D = WindowDiscriminator(cfg)
    lp = STLPIPS()
    set_precision([R.generator, D, lp], precision)
    w = default_loss_weights(cfg)
    if perceptual_frames >= 0: w = replace(w, perceptual_frames=perceptual_frames)
    if perceptual_crop >= 0: w = replace(w, perceptual_crop=perceptual_crop)
    opt = torch.optim.Adam([dict(params=list(R.generator.parameters()), lr=1e-3), dict(params=[R.texture('a').planes], lr=5e-3)], betas=(0.5, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.99))
    if compile not in ('', 'generator', 'all'): raise SystemExit(f"--compile must be generator or all, not {compile!r}")
    if compile: R.generator = torch.compile(R.generator)
    if compile == 'all': D, lp = torch.compile(D), torch.compile(lp)
    if compile: warmup = max(warmup, 2)   # the compile, then a first compiled step
    bt = synthetic_batch(cfg, batch)
    actors = ['a']*batch
    ts, cs, t0 = [], [], time.perf_counter()
    for i in range(warmup + iters):
        if i == warmup: warmup_s = time.perf_counter() - t0
        t, c = time.perf_counter(), time.process_time()
        train_step(R, D, D, opt, opt_d, lp, bt, actors, w, generator=torch.Generator().manual_seed(i), precision=precision)
        if i >= warmup: ts.append(time.perf_counter() - t); cs.append(time.process_time() - c)
    # without the perceptual loss, to show where the time goes
    w0 = replace(w, perceptual=0.)
    c = time.process_time(); train_step(R, D, D, opt, opt_d, None, bt, actors, w0, precision=precision); no_lp = time.process_time() - c
    R.eval()
    with torch.no_grad():
        R(bt, actors)
        t, c = time.perf_counter(), time.process_time(); R(bt, actors); inf, inf_cpu = (time.perf_counter() - t)/batch, (time.process_time() - c)/batch
    sizes = model_sizes(cfg)
    return dict(config=name, renderer=renderer or {}, precision=precision, compile=compile, warmup_s=round(warmup_s, 1), bf16_native=bf16_supported('cpu'), size=cfg.size, window=cfg.window, refs=cfg.refs, tex_channels=cfg.tex_channels, tex_res=cfg.tex_res,
                batch=batch, loss_weights=w.__dict__, parameters=sizes,
                generator_mb_fp16=round(sizes['generator']*2/2**20, 2), texture_mb_fp16=round(sizes['texture']*2/2**20, 2),
                threads=torch.get_num_threads(),
                s_per_iter_median=round(float(np.median(ts)), 3), s_per_iter_all=[round(x, 3) for x in ts],
                cpu_s_per_iter_median=round(float(np.median(cs)), 3), cpu_s_per_iter_without_perceptual=round(no_lp, 3),
                s_per_window_inference=round(inf, 4), cpu_s_per_window_inference=round(inf_cpu, 4),
                windows_per_second_training=round(batch/float(np.median(ts)), 3),
                loadavg=[round(x, 2) for x in os.getloadavg()], created=time.strftime('%Y-%m-%dT%H:%M:%S'))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--configs', nargs='*', default=['cpu', 'paper'])
    ap.add_argument('--iters', type=int, default=5)
    ap.add_argument('--batch', nargs='*', default=['cpu=4', 'paper=1'], help='NAME=B batch sizes')
    ap.add_argument('--perceptual-frames', type=int, default=-1, help="frames per window in ST-LPIPS (0: all; -1: the configuration's default)")
    ap.add_argument('--perceptual-crop', type=float, default=-1, help="ST-LPIPS around the mouth, fraction of the side (0: whole frames; -1: default)")
    ap.add_argument('--threads', type=int, nargs='*', default=[1, 2], help='torch thread counts to measure')
    ap.add_argument('--precision', nargs='*', default=['fp32', 'bf16'], help='training precisions to measure (`TrainConfig.precision`)')
    ap.add_argument('--compile', default='', choices=['', 'generator', 'all'], help="torch.compile the generator ('generator') or all networks ('all') before timing")
    ap.add_argument('--renderer', default='', help="renderer settings over each configuration's, KEY=VALUE,... (e.g. ch_base=4096,ch_max=256)")
    a = ap.parse_args()
    if a.iters < 1: ap.error(f"--iters must be at least 1, not {a.iters}")
    batches = dict(kv.split('=') for kv in a.batch)
    path = outputs_dir()/'bench'/'models.json'
    old = json.loads(path.read_text()).get('results', []) if path.exists() else []
    from dfe.train import renderer_settings
    rows = []
    for n in a.configs:
      over = renderer_settings(a.renderer, n)
      for prec in a.precision:
        for th in a.threads:
            torch.set_num_threads(th)
            r = bench_config(n, int(batches.get(n, 1)), a.iters, a.perceptual_frames, a.perceptual_crop, precision=prec, renderer=over, compile=a.compile)
            rows.append(r)
            print(f"{n:6s}{' ' + a.renderer if a.renderer else ''}{' compiled ' + a.compile if a.compile else ''} {r['size']}², {prec}, batch {r['batch']}, {th} thread(s): generator {r['parameters']['generator']/1e6:.2f} M "
                  f"({r['generator_mb_fp16']} MB fp16), texture {r['parameters']['texture']/1e6:.2f} M, discriminator "
                  f"{r['parameters']['discriminator']/1e6:.2f} M; {r['s_per_iter_median']} s/iter wall, {r['cpu_s_per_iter_median']} CPU s/iter "
                  f"({r['cpu_s_per_iter_without_perceptual']} without ST-LPIPS); inference {r['s_per_window_inference']} s/window; "
                  f"load average {r['loadavg']}", flush=True)
    key = lambda r: (r['config'], json.dumps(r.get('renderer', {}), sort_keys=True), r.get('precision', 'fp32'), r.get('compile', ''), r['batch'], r['threads'])
    new = {key(r) for r in rows}
    out = dict(what='deferred neural renderer: parameters and seconds per training iteration (synthetic batches, no data loading); '
                    'rows of earlier runs with other (config, renderer settings, precision, compile, batch, threads) are kept',
               note='the machine may be shared: compare cpu_s_per_iter (process CPU time) and the recorded load average',
               results=[r for r in old if key(r) not in new] + rows, torch=torch.__version__, cpu_count=os.cpu_count(),
               machine=platform.machine(), processor=platform.processor(),
               command='.venv/bin/python bench/bench_models.py ' + ' '.join(sys.argv[1:]))
    p = atomic_write_json(path, out)
    print(f"wrote {p}")

if __name__ == '__main__': main()
