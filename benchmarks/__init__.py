"""pcgraph's benchmark harness (``make bench`` or ``python -m benchmarks``).

Thread counts are fixed here, before NumPy, PyTorch or JAX are imported, so every library in the
run uses the same number of threads.
"""

from __future__ import annotations

import os

THREADS = os.environ.setdefault("PCGRAPH_BENCH_THREADS", "2")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, THREADS)
# Interleaved runs alternate NumPy's OpenBLAS threads and PyTorch's OpenMP threads in one
# process; OpenMP workers that spin after a call would steal the 2 cores from the next run.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# JAX's CPU client (the PCX peer) sizes its intra-op thread pool from PJRT_NPROC, read once when
# the client starts; without it, from the CPUs the process may run on.  XLA_FLAGS has no thread
# count: --xla_cpu_multi_thread_eigen only switches Eigen's threads on or off, and
# --intra_op_parallelism_threads is refused there as an unknown flag (jaxlib 0.4.38).
os.environ.setdefault("PJRT_NPROC", THREADS)
