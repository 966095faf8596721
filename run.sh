#!/usr/bin/env bash
# dfe's one entry point on a fresh machine (Python >= 3.10 and git; nothing else).
#   ./run.sh main    set up .venv if needed, then run the main job on the bundled default clip
#   ./run.sh test    set up .venv if needed, then run the whole test suite (notebooks + pytest)
#   ./run.sh setup   only set up .venv
# Environment: DFE_DATA, DFE_ASSETS (default ../shared/...), PYTHON (interpreter for the venv),
# DFE_TORCH (torch requirement to install when none is present; default torch==2.13.0, the CPU build).
set -euo pipefail
cd "$(dirname "$0")"
root=$(pwd)
venv="$root/.venv"
py=${PYTHON:-python3}

setup() {
  if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating $venv"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  fi
  local pip="$venv/bin/python -m pip"
  # torch first: keep an existing (e.g. CUDA) build, otherwise the pinned CPU build.
  if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "[setup] installing ${DFE_TORCH:-torch==2.13.0}"
    $pip install -q "${DFE_TORCH:-torch==2.13.0}" 2>&1 | grep -v '^WARNING: Location' || true
  fi
  # the package and its pinned requirements, re-installed only when they change
  local stamp="$venv/.dfe-installed"
  local want; want=$(cat settings.ini setup.py | sha256sum | cut -c1-16)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[setup] installing dfe and its requirements into $venv"
    $pip install -q -e ".[dev]" 2>&1 | grep -v '^WARNING: Location' || true
    "$venv/bin/python" -c "import dfe, torch, mediapipe, av, nbdev" || { echo "[setup] install failed" >&2; exit 1; }
    echo "$want" > "$stamp"
  fi
  export PATH="$venv/bin:$PATH"
}

cmd=${1:-}
shift || true
case "$cmd" in
  setup) setup ;;
  main)
    setup
    exec "$venv/bin/dfe" main "$@" ;;
  test)
    setup
    # the notebooks run side by side: torch's idle OpenMP threads must not spin (see dfe.core's OpenMP threads)
    export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
    export PATH="$venv/bin:$PATH"
    echo "[test] dfe/ is what nbs/ exports"
    before=$(find dfe -name '*.py' | sort | xargs sha256sum)
    nbdev_export
    after=$(find dfe -name '*.py' | sort | xargs sha256sum)
    if [ "$before" != "$after" ]; then
      echo "[test] FAILED: dfe/ differed from what nbs/ exports (now re-exported; edit the notebooks, not dfe/):" >&2
      diff <(echo "$before") <(echo "$after") >&2 || true
      exit 1
    fi
    echo "[test] notebook tests (nbdev_test)"
    nbdev_test --n_workers 2 --do_print "$@"
    echo "[test] pytest"
    exec pytest -q tests ;;
  *)
    sed -n '2,8p' "$0"; exit 2 ;;
esac
