"dfe batch: a CSV of papermill jobs on a process pool or a Dask LocalCluster; skipping finished jobs, re-running failed or changed ones, failures that do not stop the others, and the table's errors."
import os, json, pytest, nbformat
from pathlib import Path
from dfe.core import DfeError, InputFileError
from dfe import batch
from dfe.batch import read_jobs, run_batch, run_job, job_finished, read_status, batch_cmd, notebook_parameters, notebook_digest

PARAMS = "video = ''\naudio = ''\nout = '.'\niters: int = 3\nfail = False\nfail_if = ''  # fail while this file exists"
JOB_DIR_PARAMS = "video = ''\naudio = ''\nout = ''\njob_dir = ''"
CODE = ("import os\nfrom pathlib import Path\n"
        "if fail or (fail_if and Path(fail_if).exists()): raise ValueError(f'asked to fail on {Path(video).name}')\n"
        "Path(out, 'result.txt').write_text(f\"{Path(video).name} {Path(audio).name} {iters} {os.environ.get('OMP_NUM_THREADS')}\")")

def write_notebook(path, params=PARAMS, code=CODE):
    nb = nbformat.v4.new_notebook(metadata={'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}})
    nb.cells = [nbformat.v4.new_code_cell(params, metadata={'tags': ['parameters']}), nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, str(path)); return Path(path)

@pytest.fixture(autouse=True)
def one_thread(monkeypatch): monkeypatch.setenv('OMP_NUM_THREADS', '1')

@pytest.fixture
def work(tmp_path):
    "A folder with a job notebook, three dummy videos and a speech file."
    for f in ('a.mp4', 'b.mp4', 'c.mp4', 'de.wav'): (tmp_path/f).write_bytes(b'x')
    write_notebook(tmp_path/'job.ipynb')
    return tmp_path

def table(d:Path, text:str, name='jobs.csv') -> Path:
    (d/name).write_text(text); return d/name

def jobs_of(d:Path, csv='jobs.csv', **kw): return read_jobs(d/csv, out=d/'out', notebook=d/'job.ipynb', **kw)

def states(summary): return {r['job']: r['state'] for r in summary['jobs']}

def result(d:Path, job:str) -> str: return (d/'out'/job/'result.txt').read_text()

# --- running ---------------------------------------------------------------------------------------------------------

def test_failure_does_not_stop_others_and_failed_jobs_rerun(work):
    flag = work/'broken'; flag.write_text('x')
    table(work, f"job,video,audio,iters,fail_if\nj1,a.mp4,de.wav,4,\nj2,b.mp4,de.wav,5,{flag}\nj3,c.mp4,de.wav,6,\n")
    s = run_batch(jobs_of(work), workers=1, progress=False)   # one worker: j3 runs after j2 failed
    assert states(s) == dict(j1='done', j2='failed', j3='done')
    assert (s['done'], s['skipped'], s['failed']) == (2, 0, 1)
    assert s['jobs'][1]['error'].startswith('ValueError: asked to fail on b.mp4')
    assert result(work, 'j3') == 'c.mp4 de.wav 6 1'
    st = read_status(jobs_of(work)[1])
    assert st['state'] == 'failed' and 'ValueError' in st['traceback'] and st['record'] == 'record.ipynb'
    rec = nbformat.read(str(work/'out'/'j2'/'record.ipynb'), as_version=4)   # the failed run's record shows the error
    assert any(o.get('ename') == 'ValueError' for c in rec.cells for o in c.get('outputs', []))
    summ = json.loads((work/'out'/'summary.json').read_text())
    assert summ['failed'] == 1 and '| j2 | failed |' in (work/'out'/'summary.md').read_text()
    # fix the cause: the failed job runs again, the finished ones are skipped
    flag.unlink()
    s = run_batch(jobs_of(work), workers=1, progress=False)
    assert states(s) == dict(j1='skipped', j2='done', j3='skipped')
    assert result(work, 'j2') == 'b.mp4 de.wav 5 1'
    assert not list((work/'out').glob('*/.record.*'))   # no temporary record left behind

def test_skip_finished_and_force(work):
    table(work, "video,audio\na.mp4,de.wav\nb.mp4,de.wav\n")
    jobs = jobs_of(work)
    assert [j['name'] for j in jobs] == ['001_a_de', '002_b_de']
    assert states(run_batch(jobs, progress=False)) == {'001_a_de': 'done', '002_b_de': 'done'}
    assert all(job_finished(j) for j in jobs)
    stamp = (work/'out'/'001_a_de'/'status.json').read_text()
    s = run_batch(jobs, progress=False)
    assert states(s) == {'001_a_de': 'skipped', '002_b_de': 'skipped'}
    assert (work/'out'/'001_a_de'/'status.json').read_text() == stamp   # not touched
    assert states(run_batch(jobs[:1], force=True, progress=False)) == {'001_a_de': 'done'}
    assert json.loads((work/'out'/'001_a_de'/'status.json').read_text())['started'] >= json.loads(stamp)['started']

def test_changed_parameters_rerun(work):
    table(work, "job,video,audio,iters\nx,a.mp4,de.wav,4\ny,b.mp4,de.wav,4\n")
    run_batch(jobs_of(work), progress=False)
    assert result(work, 'x') == 'a.mp4 de.wav 4 1'
    table(work, "job,video,audio,iters\nx,a.mp4,de.wav,9\ny,b.mp4,de.wav,4\n")
    jobs = jobs_of(work)
    assert [job_finished(j) for j in jobs] == [False, True]
    assert states(run_batch(jobs, progress=False)) == dict(x='done', y='skipped')
    assert result(work, 'x') == 'a.mp4 de.wav 9 1'

def test_interrupted_job_is_not_finished(work):
    table(work, "job,video,audio\nx,a.mp4,de.wav\n")
    job = jobs_of(work)[0]
    d = Path(job['dir']); d.mkdir(parents=True)
    (d/'record.ipynb').write_text('{}')
    (d/'status.json').write_text(json.dumps(dict(state='running', notebook=job['notebook'], parameters=job['parameters'])))
    assert not job_finished(job)
    (d/'status.json').write_text(json.dumps(dict(state='done', notebook=job['notebook'], parameters=job['parameters'])))
    assert not job_finished(job)          # no digest of the notebook that ran: it may have been another version
    (d/'status.json').write_text(json.dumps(dict(state='done', notebook=job['notebook'], parameters=job['parameters'],
                                                 notebook_digest=notebook_digest(job['notebook']))))
    assert job_finished(job)

def test_dask_local_cluster(work):
    table(work, "job,video,audio,fail\nok,a.mp4,de.wav,\nbad,b.mp4,de.wav,yes\n")
    s = run_batch(jobs_of(work), workers=1, executor='dask', progress=False)
    assert states(s) == dict(ok='done', bad='failed')
    assert s['executor'] == 'dask'
    assert result(work, 'ok') == 'a.mp4 de.wav 3 1'
    st = read_status(jobs_of(work)[0])
    assert st['pid'] != os.getpid()   # ran in a Dask worker process
    assert states(run_batch(jobs_of(work), workers=1, executor='dask', progress=False)) == dict(ok='skipped', bad='failed')

def test_threads_per_job(work, monkeypatch):
    table(work, "job,video,audio\nx,a.mp4,de.wav\n")
    jobs = jobs_of(work)
    assert run_job(dict(jobs[0], threads=2))['threads'] == 2
    assert result(work, 'x') == 'a.mp4 de.wav 3 2'   # the kernel saw OMP_NUM_THREADS=2
    assert os.environ['OMP_NUM_THREADS'] == '1'       # and this process's environment is restored
    monkeypatch.delenv('OMP_NUM_THREADS')
    assert run_batch(jobs, workers=2, progress=False)['threads'] == max(1, len(os.sched_getaffinity(0)) // 2)   # nothing runs: x is finished

def test_job_dir_parameter(work):
    "A notebook that takes `job_dir` gets the job's folder; its `out` keeps the notebook's default unless the row sets it."
    write_notebook(work/'jd.ipynb', JOB_DIR_PARAMS, "from pathlib import Path\nPath(job_dir, out or 'default.txt').write_text(video)")
    table(work, "job,video,audio,out\nx,a.mp4,de.wav,\ny,b.mp4,de.wav,named.txt\n")
    x, y = read_jobs(work/'jobs.csv', out=work/'out', notebook=work/'jd.ipynb')
    assert x['parameters'] == dict(video=str(work/'a.mp4'), audio=str(work/'de.wav'), job_dir=str(work/'out'/'x'))
    assert run_job(x)['state'] == 'done' and (work/'out'/'x'/'default.txt').read_text() == str(work/'a.mp4')
    assert y['parameters']['out'] == str(work/'out'/'y'/'named.txt')

def test_cli(work, capsys):
    from dfe.cli import parser_for
    table(work, "job,video,audio,fail\nok,a.mp4,de.wav,\nbad,b.mp4,de.wav,yes\n")
    args = parser_for(batch_cmd, 'dfe batch').parse_args([str(work/'jobs.csv'), '-o', str(work/'out'), '--notebook', str(work/'job.ipynb'), '--dry-run'])
    assert batch_cmd(**vars(args)) == 0
    assert 'run  ok' in capsys.readouterr().out and not (work/'out').exists()
    assert batch_cmd(str(work/'jobs.csv'), out=str(work/'out'), notebook=str(work/'job.ipynb')) == 1   # a job failed
    assert '1 done, 0 skipped, 1 failed' in capsys.readouterr().out
    table(work, "job,video,audio\nok,a.mp4,de.wav\n", 'good.csv')
    assert batch_cmd(str(work/'good.csv'), out=str(work/'out'), notebook=str(work/'job.ipynb')) == 0

# --- the table's errors ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('text,expect', [
    ("video\na.mp4\n", "no 'audio' column, but the notebook job.ipynb takes `audio`"),
    ("video,audio\na.mp4,missing.wav\n", "line 2: audio 'missing.wav' not found"),
    ("video,audio\n,de.wav\n", "line 2: empty 'video'"),
    ("job,video,audio\nx,a.mp4,de.wav\nx,b.mp4,de.wav\n", "line 3: job name 'x' is also used on line 2"),
    ("video,audio,speed\na.mp4,de.wav,2\n", "column 'speed' is not a parameter of the notebook"),
    ("video,audio,speed\na.mp4,de.wav,\n", "column 'speed' is not a parameter of the job notebook"),
    ("video,audio,iters\na.mp4,de.wav,many\n", "line 2: iters: 'many' is not an int"),
    ("video,audio,fail\na.mp4,de.wav,perhaps\n", "line 2: fail: 'perhaps' is not a bool"),
    ("job,video,audio\n../x,a.mp4,de.wav\n", "job name '../x' is not a plain folder name"),
    ("video,audio\na.mp4,de.wav,extra\n", "line 2: 3 cells but the header has 2 columns"),
    ("video,audio,notebook\na.mp4,de.wav,nope.ipynb\n", "line 2: notebook 'nope.ipynb' not found"),
    ("video,,audio\na.mp4,,de.wav\n", "column 2 of the header has no name"),
    ("video,audio,video\na.mp4,de.wav,b.mp4\n", "column 'video' appears 2 times"),
    ("video,audio\n", "no jobs: only a header row"),
    ("\n# nothing\n", "empty: no header row and no jobs"),
    ("video,audio,job_dir\na.mp4,de.wav,x\n", "column 'job_dir': the batch sets it"),
])
def test_bad_table(work, text, expect):
    table(work, text)
    with pytest.raises(InputFileError) as e: jobs_of(work)
    assert expect in str(e.value) and str(work/'jobs.csv') in str(e.value)

def test_all_problems_reported_at_once(work):
    table(work, "job,video,audio,iters\nx,a.mp4,gone.wav,1\ny,nothere.mp4,de.wav,z\n")
    with pytest.raises(InputFileError, match=r"3 problem\(s\)") as e: jobs_of(work)
    assert 'line 2: audio' in str(e.value) and 'line 3: video' in str(e.value) and 'line 3: iters' in str(e.value)

def test_paths_and_notebook_column(work, monkeypatch):
    sub = work/'sub'; sub.mkdir()
    write_notebook(sub/'other.ipynb', params="video = ''\naudio = ''\nquality = 'high'", code="print(quality)")
    table(work, f"video,audio,notebook,quality\na.mp4,{work/'de.wav'},sub/other.ipynb,low\nb.mp4,de.wav,,\n")
    j1, j2 = jobs_of(work)
    assert j1['notebook'] == str(sub/'other.ipynb') and j1['parameters'] == dict(video=str(work/'a.mp4'), audio=str(work/'de.wav'), quality='low')
    assert j2['notebook'] == str(work/'job.ipynb') and j2['parameters']['out'] == str(work/'out'/'002_b_de')
    # a relative output is inside the job's folder
    table(work, "job,video,audio,out\nx,a.mp4,de.wav,res\n")
    assert jobs_of(work)[0]['parameters']['out'] == str(work/'out'/'x'/'res')
    # a relative input not beside the CSV is looked up in the corpus folder
    corpus = work/'corpus'; (corpus/'clips').mkdir(parents=True); (corpus/'clips'/'k.mp4').write_bytes(b'x')
    monkeypatch.setenv('DFE_DATA', str(corpus))
    table(work, "video,audio\nclips/k.mp4,de.wav\n")
    assert jobs_of(work)[0]['parameters']['video'] == str(corpus/'clips'/'k.mp4')

def test_default_notebook_and_kernel_errors(work, monkeypatch):
    table(work, "video,audio\na.mp4,de.wav\n")
    monkeypatch.setattr(batch, 'DEFAULT_JOB_NOTEBOOK', 'no_such_job.ipynb')
    with pytest.raises(DfeError, match='no_such_job.ipynb is missing'): read_jobs(work/'jobs.csv', out=work/'out')
    with pytest.raises(DfeError, match="no Jupyter kernel 'nope'"): jobs_of(work, kernel='nope')
    with pytest.raises(DfeError, match="unknown executor"): run_batch(jobs_of(work), executor='slurm')
    (work/'notes.txt').write_text('x')
    with pytest.raises(InputFileError, match='not a Jupyter notebook'): notebook_parameters(work/'notes.txt')

# --- stopping ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('sig', ['SIGTERM', 'SIGKILL'])
def test_killing_the_batch_stops_its_jobs(work, sig):
    "`kill` of a running `dfe batch` (SIGTERM: cleanup runs; SIGKILL: none can) leaves no worker or job kernel running on."
    import subprocess, sys, time, signal, psutil
    write_notebook(work/'slow.ipynb', code="import os, time\nfrom pathlib import Path\n"
                   "Path(out, 'kernel.pid').write_text(str(os.getpid()))\ntime.sleep(600)")
    table(work, "job,video,audio\nx,a.mp4,de.wav\ny,b.mp4,de.wav\n")
    proc = subprocess.Popen([sys.executable, '-c', 'import sys; from dfe.cli import main; sys.exit(main())', 'batch', str(work/'jobs.csv'),
                             '-o', str(work/'out'), '--notebook', str(work/'slow.ipynb')], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_file = work/'out'/'x'/'kernel.pid'
    t0 = time.time()
    while not (pid_file.exists() and pid_file.read_text()) and time.time() - t0 < 120 and proc.poll() is None: time.sleep(0.5)
    assert pid_file.exists(), "the job's kernel never started"
    family = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    kernel = int(pid_file.read_text())
    assert kernel in family
    proc.send_signal(getattr(signal, sig)); proc.wait(30)
    t0 = time.time()
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in family) and time.time() - t0 < 30: time.sleep(0.5)
    alive = [p for p in family if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"still running after {sig}: {[psutil.Process(p).cmdline()[:3] for p in alive]}"
    assert not (work/'out'/'y'/'kernel.pid').exists()      # the next job never started
    assert read_status(jobs_of(work)[0])['state'] != 'done'
