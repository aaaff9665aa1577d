#!/usr/bin/env bash
# GPU check of vidinfer's GPU backend: run on a machine with an NVIDIA GPU, CuPy, PyNvVideoCodec
# (or VPF's PyNvCodec) and TensorRT (or onnxruntime-gpu) already installed. Installs nothing; every
# step has its own timeout and together they stay under 5 minutes.
#
#   tools/gpu_check.sh [RESULTS_FILE]      default: docs/gpu-results.txt (or $GPU_RESULTS)
#
# Everything (versions, nvidia-smi, vidinfer info, pytest -m gpu, the kernel tests, the benchmark's
# JSON lines, the end-to-end GPU pipeline against the clips' ground truth) goes into the one
# results file, which is overwritten. Exit status: pytest's, else the end-to-end check's.
set -u
cd "$(dirname "$0")/.." || exit 2
OUT="${1:-${GPU_RESULTS:-docs/gpu-results.txt}}"
PY="${PYTHON:-python}"
mkdir -p "$(dirname "$OUT")"
: > "$OUT"
log() { printf '%s\n' "$*" >> "$OUT"; }
section() { log ""; log "## $*"; }
run() { # run LIMIT_S CMD...: output and exit status into the results file
  local limit=$1; shift
  timeout -k 5 "$limit" "$@" >> "$OUT" 2>&1
  local rc=$?
  log "[exit $rc$( [ $rc -eq 124 ] && echo ", timed out after ${limit}s")]"
  return $rc
}
start=$(date +%s)
log "# vidinfer GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), host $(hostname)"
section "git"
run 10 git rev-parse HEAD
run 5 git status --short
section "nvidia-smi"
run 10 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm --format=csv
section "python, numpy, cupy"
run 30 "$PY" - <<'PYEOF'
import sys, numpy
print(sys.version); print("numpy", numpy.__version__)
try:
    import cupy
    print("cupy", cupy.__version__, "runtime", cupy.cuda.runtime.runtimeGetVersion(),
          "driver", cupy.cuda.runtime.driverGetVersion(), "devices", cupy.cuda.runtime.getDeviceCount())
except Exception as exc:
    print("cupy unavailable:", type(exc).__name__, exc)
try:
    import PyNvVideoCodec as nvc
    print("PyNvVideoCodec", getattr(nvc, "__version__", "imported"))
except Exception as exc:
    print("PyNvVideoCodec unavailable:", type(exc).__name__, exc)
PYEOF
section "vidinfer info (what device = 'auto' picks, stage by stage)"
run 20 "$PY" -m vidinfer info
section "pytest -m gpu"
run 80 "$PY" -m pytest -m gpu -q -rA -p no:cacheprovider
rc_gpu=$?
section "pytest tests/test_gpu_kernels.py (CPU parts: references, emulated kernels, nvcc)"
run 30 "$PY" -m pytest tests/test_gpu_kernels.py -q -rs -p no:cacheprovider
section "benchmark (tools/gpu_bench.py, JSON lines)"
run 45 "$PY" tools/gpu_bench.py --iters 200 --nvdec-budget-s 10
section "end-to-end: Pipeline(device='gpu') over the shape clips, boxes vs ground truth (JSON line)"
run 70 "$PY" tools/gpu_pipeline_check.py
rc_e2e=$?
section "done"
log "total $(( $(date +%s) - start )) s; pytest -m gpu exit $rc_gpu; end-to-end exit $rc_e2e"
echo "results: $OUT"
[ "$rc_gpu" -ne 0 ] && exit "$rc_gpu"
exit $rc_e2e
