#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py): one markdown table, a row per check, under 8 minutes on one H100.
#
#   bash bench/gpu_check.sh                 # on the GPU machine: python3 (or $PYTHON), PYTHONPATH=.
#   bash bench/gpu_check.sh --cpu-dry-run   # the same checks at tiny shapes on the CPU; uses
#                                           # .venv/bin/python when it exists (unless $PYTHON is set)
# Further flags go to the script: --only 1,2 and --budget-s SECONDS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python="${PYTHON:-python3}"
if [[ -z "${PYTHON:-}" && -x .venv/bin/python ]]; then
  for arg in "$@"; do
    if [[ "$arg" == "--cpu-dry-run" ]]; then python=.venv/bin/python; fi
  done
fi
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" bench/gpu_check.py "$@"
