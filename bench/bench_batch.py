"""Benchmark of dfe.batch: the fixed cost of running a job through `dfe batch`, with a notebook that does nothing.
Measures one job run in-process (papermill + kernel start, per job), and whole batches on the local process pool
and on a Dask LocalCluster (wall time, and the start-up cost = wall time - job time / workers).
Prints a table and writes outputs/bench/batch.json (atomically).

    OMP_NUM_THREADS=1 python bench/bench_batch.py [--jobs 4] [--workers 1 2]     (or: dfe bench batch)
"""
import argparse, os, platform, statistics, sys, tempfile, time
from pathlib import Path
import nbformat
from dfe.core import outputs_dir, atomic_write_json
from dfe.batch import read_jobs, run_job, run_batch


def noop_notebook(path):
    nb = nbformat.v4.new_notebook(metadata={'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}})
    nb.cells = [nbformat.v4.new_code_cell("video = ''\naudio = ''\nout = '.'", metadata={'tags': ['parameters']}),
                nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, str(path)); return Path(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--jobs', type=int, default=4, help='jobs per batch')
    ap.add_argument('--workers', type=int, nargs='*', default=[1, 2], help='worker counts to try (local pool)')
    args = ap.parse_args(argv)
    d = Path(tempfile.mkdtemp(prefix='bench_batch_'))
    nb = noop_notebook(d/'noop.ipynb')
    for f in ('v.mp4', 'a.wav'): (d/f).write_bytes(b'x')
    (d/'jobs.csv').write_text('job,video,audio\n' + ''.join(f'j{i},v.mp4,a.wav\n' for i in range(args.jobs)))
    t = time.perf_counter(); jobs = read_jobs(d/'jobs.csv', out=d/'warm', notebook=nb); t_read = time.perf_counter() - t
    run_job(jobs[0])  # warm the imports and caches
    per_job = [run_job(j)['seconds'] for j in read_jobs(d/'jobs.csv', out=d/'inproc', notebook=nb)[:3]]
    rows = []
    configs = [('local', w) for w in args.workers] + [('dask', 1)]
    for ex, w in configs:
        js = read_jobs(d/'jobs.csv', out=d/f'{ex}{w}', notebook=nb)
        t = time.perf_counter(); s = run_batch(js, workers=w, executor=ex, threads=1, progress=False); wall = time.perf_counter() - t
        secs = [r['seconds'] for r in s['jobs']]
        t = time.perf_counter(); run_batch(js, workers=w, executor=ex, progress=False); t_skip = time.perf_counter() - t
        rows.append(dict(executor=ex, workers=w, jobs=len(js), done=s['done'], wall_s=round(wall, 2), job_s_mean=round(statistics.mean(secs), 2),
                         startup_s=round(wall - sum(secs)/w, 2), rerun_all_skipped_s=round(t_skip, 3)))
    print(f"read_jobs ({args.jobs} rows): {t_read:.2f} s;  one job in-process (papermill + kernel): "
          f"{statistics.mean(per_job):.2f} s (min {min(per_job):.2f})")
    print(f"{'executor':>9s}{'workers':>8s}{'jobs':>5s}{'wall s':>8s}{'job s':>7s}{'startup s':>10s}{'re-run s':>9s}")
    for r in rows:
        print(f"{r['executor']:>9s}{r['workers']:>8d}{r['jobs']:>5d}{r['wall_s']:>8.2f}{r['job_s_mean']:>7.2f}{r['startup_s']:>10.2f}{r['rerun_all_skipped_s']:>9.3f}")
    res = dict(read_jobs_s=round(t_read, 3), job_inprocess_s=[round(x, 3) for x in per_job], batches=rows, cores=len(os.sched_getaffinity(0)),
               omp_num_threads=os.environ.get('OMP_NUM_THREADS'), load_avg_1min=os.getloadavg()[0], python=sys.version.split()[0], machine=platform.machine())
    atomic_write_json(outputs_dir()/'bench'/'batch.json', res)
    print(f"wrote {outputs_dir()/'bench'/'batch.json'}")


if __name__ == '__main__':
    main()
