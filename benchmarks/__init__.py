"""pcgraph's benchmark harness (``make bench`` or ``python -m benchmarks``).

Thread counts are fixed here, before NumPy or PyTorch are imported, so every library in the
run uses the same number of BLAS threads.
"""

from __future__ import annotations

import os

THREADS = os.environ.setdefault("PCGRAPH_BENCH_THREADS", "2")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, THREADS)
# Interleaved runs alternate NumPy's OpenBLAS threads and PyTorch's OpenMP threads in one
# process; OpenMP workers that spin after a call would steal the 2 cores from the next run.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
