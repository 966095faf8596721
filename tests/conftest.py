"Shared test helpers."
import subprocess, sys
from pathlib import Path


def run_papermill(notebook, output, parameters:dict, cwd, timeout:float=180, tries:int=3):
    """Execute `notebook` with papermill in a child process, with a hard time limit.

    papermill/nbclient occasionally never returns although the kernel is idle (nteract/papermill#711, seen here
    twice with ipykernel 7, each time in the 76_dub_viewer report job): a run that exceeds `timeout` is killed and
    tried again, `tries` times in all. The report jobs take 15-20 s on 2 busy cores, so 180 s leaves ample room
    and a hang costs 3 minutes, not 10. A notebook that fails fails at once."""
    cmd = [sys.executable, '-m', 'papermill', str(notebook), str(output), '--cwd', str(cwd), '-k', 'python3',
           '--execution-timeout', str(int(timeout)), '--no-progress-bar']
    for k, v in parameters.items(): cmd += ['-p', k, str(v)]   # YAML-parsed: numbers stay numbers, paths stay strings
    for attempt in range(tries):
        try: r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            if attempt == tries - 1: raise
            continue
        assert r.returncode == 0, f"papermill failed on {notebook}:\n{r.stderr[-3000:]}"
        return Path(output)
