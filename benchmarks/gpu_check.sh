#!/usr/bin/env bash
# The prepared GPU check: one command on a lent GPU machine, under 8 minutes, report in $OUT.
#
#   device run: command "bash benchmarks/gpu_check.sh", timeout_s 540 (carry .whl if needed)
#
# 1. The machine: nvidia-smi, and the versions of the Python it will use.
# 2. CuPy: the image's own where it imports; else a wheel for the CUDA major version that
#    nvidia-smi reports (cupy-cuda12x or cupy-cuda13x), from wheels carried in .whl/, else from
#    the package index when the machine reaches one.  The device machines of this workplace
#    reach no index but have CuPy, PyTorch and JAX in their image (python3 is that Python).
# 3. The tests on CuPy: every test taking the `backend` fixture (its cupy cases) and
#    tests/test_backends.py (CuPy against NumPy for every graph, algorithm and op).
# 4. The benchmark harness in GPU mode: pcgraph bp, zil and il(20) against PyTorch CUDA (and
#    PCX on JAX's GPU backend where PCX imports), each alone in its process, the device
#    synchronised inside every timed step.
# Steps 3 and 4 have time limits of their own, so the report always comes back.  On a machine
# without a GPU the CuPy parts are skipped (with the reason) and the rest runs: that is how
# this script is tried on the CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
REPORT="$OUT/gpu_report.md"
start=$SECONDS
elapsed() { echo "$((SECONDS - start)) s"; }

{
  echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "## Machine"
  echo '```'
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    cuda=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9]*\)\..*/\1/p' | head -1)
    echo "CUDA (driver): ${cuda:-unknown}"
  else
    cuda=""
    echo "no nvidia-smi: no NVIDIA GPU here"
  fi
  "$PY" - <<'EOF'
import importlib, platform
print("python", platform.python_version())
for name in ("numpy", "cupy", "torch", "jax", "pcx"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"))
    except Exception as e:  # a missing or broken peer is a line of the report
        print(name, "unavailable:", type(e).__name__, str(e)[:120])
EOF
  echo '```'
} >"$REPORT" 2>&1

# ------------------------------------------------------------------ CuPy
if ! "$PY" -c "import cupy" 2>/dev/null && [ -n "${cuda:-}" ]; then
  wheel="cupy-cuda${cuda}x"
  echo "CuPy is not importable: installing $wheel" >>"$REPORT"
  { [ -d .whl ] && timeout 120 "$PY" -m pip install -q --no-index --find-links .whl "$wheel"; } \
    || timeout 120 "$PY" -m pip install -q "$wheel" \
    || echo "could not install $wheel (no wheel carried, no index reached)" >>"$REPORT"
fi
backend=$("$PY" - 2>&1 <<'EOF' | tail -1
import pcgraph  # noqa: F401  (binds pcgraph.backends)
from pcgraph.backends.cupy_backend import CupyBackend

why = CupyBackend.availability()
print("yes" if why is None else why)
EOF
)
echo "- CuPy backend usable: ${backend}" >>"$REPORT"

# ------------------------------------------------------------------ tests on CuPy
{
  echo
  echo "## Tests on CuPy ($(elapsed) in)"
  echo '```'
} >>"$REPORT"
timeout 240 "$PY" -m pytest -q -p no:cacheprovider -rs -k cupy tests \
  >"$OUT/tests_cupy.log" 2>&1
echo "backend-fixture tests: exit $?" >>"$REPORT"
tail -3 "$OUT/tests_cupy.log" >>"$REPORT"
timeout 120 "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_backends.py \
  >"$OUT/tests_backends.log" 2>&1
echo "tests/test_backends.py: exit $?" >>"$REPORT"
tail -3 "$OUT/tests_backends.log" >>"$REPORT"
echo '```' >>"$REPORT"

# ------------------------------------------------------------------ the harness, GPU mode
{
  echo
  echo "## Benchmarks, GPU mode ($(elapsed) in)"
  echo
} >>"$REPORT"
if [ "$backend" = "yes" ]; then
  timeout 200 "$PY" -m benchmarks --device gpu --rounds 5 --seconds 1 \
    --contenders bp,zil,il,torch,torch-seq,pcx --out "$OUT/BENCHMARKS-gpu.md" \
    >"$OUT/bench_gpu.log" 2>&1
  echo "harness exit $?" >>"$REPORT"
  [ -f "$OUT/BENCHMARKS-gpu.md" ] && cat "$OUT/BENCHMARKS-gpu.md" >>"$REPORT"
else
  echo "skipped: the CuPy backend cannot run here" >>"$REPORT"
fi
echo >>"$REPORT"
echo "Done in $(elapsed)." >>"$REPORT"
cat "$REPORT"
