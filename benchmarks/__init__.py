"""pcgraph's benchmark harness (``make bench`` or ``python -m benchmarks``).

Every contender runs in a process of its own (``benchmarks.worker``).  Thread counts are fixed
here, before NumPy, PyTorch or JAX are imported, so that every contender uses the same number
of threads; the workers print what each runtime reports.
"""

from __future__ import annotations

import os

THREADS = os.environ.setdefault("PCGRAPH_BENCH_THREADS", "2")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "PJRT_NPROC")
# JAX's CPU client (the PCX peer) sizes its intra-op thread pool from PJRT_NPROC, read once when
# the client starts; without it, from the CPUs the process may run on.  XLA_FLAGS has no thread
# count: --xla_cpu_multi_thread_eigen only switches Eigen's threads on or off, and
# --intra_op_parallelism_threads is refused there as an unknown flag (jaxlib 0.4.38).
for _var in THREAD_VARS:
    os.environ.setdefault(_var, THREADS)
