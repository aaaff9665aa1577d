#!/usr/bin/env bash
# The GPU check, on a machine with an NVIDIA GPU (see tools/gpu_check.py and docs/gpu.md):
#
#   tools/gpu_check.sh [--out DIR] [--budget-s S]    results: DIR/gpu_check.json and DIR/gpu_check.log
#   tools/gpu_check.sh --fake --out DIR              the rehearsal, here, on tests/gpu_fakes.py
#
# It installs only the wheels of .whl/ (tools/gpu_wheels.sh fetches them on a machine with a package
# registry), offline, into a folder of its own; every part has its own time limit and the whole check
# stays within --budget-s (default 510 s). Exit status 0 when every part passed.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" tools/gpu_check.py "$@"
