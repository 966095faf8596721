"""Seconds per renderer training iteration of a `dfe` command under different OpenMP waiting settings.

torch runs its CPU kernels on OpenMP threads; between kernels an idle thread spins or sleeps. `dfe.core` makes a
process that imports dfe before torch wait passively (`OMP_WAIT_POLICY=PASSIVE`, right when processes share the
cores), and a `dfe` command spin briefly (`spin_openmp_threads`: `GOMP_SPINCOUNT=30000`, right when it has the cores
to itself). This runs `dfe train-prior` on two synthetic 128² actors (`dfe.train.write_synthetic_clip`) for
`--iters` iterations of the `cpu` configuration, once per setting, alone and (with --shared) two at once, and reads
the seconds per iteration from the runs' logs (the median of the log records after the first).

    .venv/bin/python bench/bench_openmp.py [--spins passive 3000 30000 300000] [--iters 40] [--threads 2] [--precision bf16] [--shared]

`passive` is `OMP_WAIT_POLICY=PASSIVE`; a number is `GOMP_SPINCOUNT`; `default` is the command's own choice (what a
user gets). Writes outputs/bench/openmp.json (atomically; rows of other settings are kept) and prints a summary.
"""
from __future__ import annotations
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
from dfe.core import outputs_dir, atomic_write_json

def _env(spin:str, threads:int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT')}
    env['OMP_NUM_THREADS'] = str(threads)
    if spin == 'passive': env['OMP_WAIT_POLICY'] = 'PASSIVE'
    elif spin != 'default': env['GOMP_SPINCOUNT'] = str(int(spin))
    return env

def _command(data:Path, out:Path, iters:int, precision:str) -> list:
    return [sys.executable, '-c', 'import sys; from dfe.cli import main; sys.exit(main())', 'train-prior',
            '--data', str(data), '--out', str(out), '--iters', str(iters), '--heldout', 'none', '--precision', precision,
            '--no-progress']

def _s_per_iter(out:Path) -> float:
    from dfe.train import read_log
    recs = read_log(out, 'train')
    if len(recs) < 2: raise RuntimeError(f"{out}: fewer than 2 training log records; give more --iters")
    return float(np.median([r['s_per_iter'] for r in recs[1:]]))

def run(data:Path, work:Path, spin:str, iters:int, threads:int, precision:str, copies:int) -> dict:
    outs = [work/f'{spin}-{copies}-{i}' for i in range(copies)]
    t = time.perf_counter()
    procs = [subprocess.Popen(_command(data, o, iters, precision), env=_env(spin, threads), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for o in outs]
    for p in procs:
        _, err = p.communicate()
        if p.returncode: raise RuntimeError(f"dfe train-prior failed ({spin}):\n{err[-2000:]}")
    return dict(spin=spin, processes=copies, threads=threads, precision=precision, iters=iters,
                s_per_iter=[round(_s_per_iter(o), 4) for o in outs], wall_s=round(time.perf_counter() - t, 1))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--spins', nargs='*', default=['passive', '3000', '30000', '300000', 'default'])
    ap.add_argument('--iters', type=int, default=40)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--precision', default='bf16', help='fp32, bf16 or auto (`dfe.train.TrainConfig.precision`)')
    ap.add_argument('--shared', action='store_true', help='also run two commands at once, each with --threads threads')
    a = ap.parse_args()
    from dfe.train import write_synthetic_clip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)/'clips'
        for i, name in enumerate(('bench_a_1', 'bench_b_1')): write_synthetic_clip(data/name, name, frames=60, size=128, seed=i)
        for copies in ((1, 2) if a.shared else (1,)):
            for spin in a.spins:
                r = run(data, Path(tmp)/'runs', spin, a.iters, a.threads, a.precision, copies)
                r.update(loadavg=[round(x, 2) for x in os.getloadavg()], created=time.strftime('%Y-%m-%dT%H:%M:%S'))
                rows.append(r)
                print(f"{r['processes']} process(es) x {r['threads']} threads, {spin:>8s}: {' '.join(f'{s:.3f}' for s in r['s_per_iter'])} s/iter")
    path = outputs_dir()/'bench'/'openmp.json'
    key = lambda r: (r['spin'], r['processes'], r['threads'], r['precision'])
    old = json.loads(path.read_text()).get('rows', []) if path.exists() else []
    new = {key(r) for r in rows}
    atomic_write_json(path, dict(bench='openmp', config='cpu', size=128, batch=4, cores=len(os.sched_getaffinity(0)),
                                 rows=[r for r in old if key(r) not in new] + rows))
    print(f"wrote {path}")

if __name__ == '__main__':
    main()
