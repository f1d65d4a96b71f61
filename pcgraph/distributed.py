"""Data-parallel training over MPI (mpi4py): every rank takes its shard of each global batch,
runs any algorithm on it, and one ``Allreduce`` of one flat buffer per step sums the shards'
parts of the update; every rank then applies the same update.

    comm = pc.distributed.world()  # MPI.COMM_WORLD under mpiexec, else one process alone
    for x, y in data.batches(256, seed=(0, epoch)):  # the same global batches on every rank
        prog.train_step(params, comm.shard({"x": x, "y": y}), "il", optimizer=opt, comm=comm)

Run it with ``mpiexec -n 2 python script.py``.  The result is one process's training on the
same global batches, to summation order: a parameter increment of every algorithm is a sum
over examples of terms scaled by ``1/B`` with ``B`` the *global* batch size (the shard's run
is told it: ``execute.Whole``), and what couples examples inside a step is summed across
ranks where it is computed: batch_norm's batch statistics, IL-prox's batch norms, iPC's
parameter steps at every inference step (one collective each).

Faults: ``world()`` installs an exception hook that prints the failing rank's traceback and
calls ``MPI.COMM_WORLD.Abort``, so an exception on one rank stops every rank instead of
leaving the others waiting in a collective.  Arrays of a GPU backend are reduced through a
host buffer, or in place on the device when the MPI library is CUDA-aware
(``Comm.cuda_aware``).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any, NoReturn

import numpy as np

from .backends import to_numpy
from .errors import FeedError, OptionError
from .execute import Whole

# Environment variables that MPI launchers set in the processes they start (MPICH's and Intel
# MPI's Hydra, Open MPI, PMIx, Slurm's PMI): ``world()`` imports mpi4py only under one, since
# importing it initialises MPI.
LAUNCHER_VARIABLES = (
    "PMI_SIZE",
    "PMI_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "PMIX_RANK",
    "MPI_LOCALNRANKS",
)


class Shard(dict):
    """One rank's part of a global batch (name -> array), knowing the global batch's size."""

    def __init__(self, arrays: Mapping[str, Any], whole_size: int) -> None:
        super().__init__(arrays)
        self.whole_size = whole_size


class Comm:
    """The processes training together: an mpi4py communicator, or one process alone
    (``mpi=None``).  ``rank`` and ``size`` as in MPI; ``reduced_bytes`` and ``reductions``
    count what the collectives of ``sum`` have sent."""

    def __init__(self, mpi: Any = None) -> None:
        self.mpi = mpi
        self.rank = 0 if mpi is None else int(mpi.Get_rank())
        self.size = 1 if mpi is None else int(mpi.Get_size())
        self.reduced_bytes = 0
        self.reductions = 0
        self._shardable: dict[int, Any] = {}  # id(schedule) -> schedule, checked shardable
        self._cuda_aware: bool | None = None

    def __repr__(self) -> str:
        kind = "MPI" if self.mpi is not None else "alone"
        return f"<Comm rank {self.rank} of {self.size} ({kind})>"

    @property
    def distributed(self) -> bool:
        """Whether more than one process trains: the step then shards and reduces."""
        return self.size > 1

    # ------------------------------------------------------------------ sharding
    def shard_range(self, n: int) -> tuple[int, int]:
        """This rank's examples ``[start, stop)`` of a global batch of ``n``: contiguous
        blocks in rank order, the first ``n % size`` ranks one example more."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (self.rank < extra)

    def shard(self, batch: Mapping[str, Any]) -> Shard:
        """This rank's part of the global ``batch`` (every rank passes the same one)."""
        if not isinstance(batch, Mapping):
            raise FeedError(f"a batch must be a dict name -> array, got {type(batch).__name__}")
        sizes = {len(v) for v in batch.values()}
        if len(sizes) != 1:
            raise FeedError(f"the batch's arrays have different batch sizes {sorted(sizes)}")
        (n,) = sizes
        if n < self.size:
            raise OptionError(
                f"a global batch of {n} example(s) cannot be split over {self.size} ranks: "
                "every rank needs one at least (a larger batch size, or a data set size whose "
                "last batch is not smaller than the number of ranks)"
            )
        start, stop = self.shard_range(n)
        return Shard({k: v[start:stop] for k, v in batch.items()}, n)

    def whole(self, batch: Mapping[str, Any], xp: Any) -> Whole:
        """The ``execute.Whole`` a run on this rank's ``batch`` belongs to: its global size
        (a ``Shard`` knows it; otherwise the ranks' sizes are summed) and the sum over ranks."""
        n = getattr(batch, "whole_size", None)
        if n is None:
            local = next((len(v) for v in batch.values()), 0)
            (total,) = self.sum([np.asarray(local, dtype=np.float64)])
            n = int(total)
        return Whole(int(n), lambda arrays: self.sum(arrays, xp))

    def check_shardable(self, schedule: Any) -> None:
        """``OptionError`` when ``schedule`` draws random numbers for the batch as a whole
        (dropout masks, Z-IL's ``init_noise``): a shard would draw others than one process."""
        if id(schedule) in self._shardable:
            return
        from .schedule import Perturb

        if any(isinstance(step, Perturb) for _, step in schedule.executed()):
            raise OptionError(
                f"algorithm {schedule.algorithm!r}: init_noise draws its noise for the batch as "
                "a whole, so it cannot be split over ranks; train it in one process"
            )
        dropped = [n for n, s in schedule.compiled.nodes.items() if s.op == "dropout"]
        if dropped:
            raise OptionError(
                f"node {dropped[0]!r}: dropout's mask depends on an example's position in the "
                "batch, so a batch split over ranks would draw other masks; train in one process"
            )
        self._shardable[id(schedule)] = schedule

    # ------------------------------------------------------------------ collectives
    @property
    def cuda_aware(self) -> bool:
        """Whether the MPI library reduces CUDA device buffers directly (MPI 4.1's
        ``MPIX_Query_cuda_support``, as mpi4py reports it); otherwise they go through host
        buffers."""
        if self._cuda_aware is None:
            query = getattr(_mpi_module(), "Query_cuda_support", None) if self.mpi else None
            try:
                self._cuda_aware = bool(query()) if query is not None else False
            except Exception:  # an MPI that cannot say: host buffers are always right
                self._cuda_aware = False
        return self._cuda_aware

    def sum(self, arrays: list, xp: Any = None) -> list:
        """Each of ``arrays`` (the same shapes and dtype on every rank) summed over the ranks,
        by ONE ``Allreduce`` of one flat buffer; alone, ``arrays`` as they are.  Host NumPy
        arrays are reduced in place in a new buffer; device arrays through the host (or on the
        device where MPI is CUDA-aware) and returned as arrays of ``xp``."""
        arrays = list(arrays)
        if self.mpi is None or self.size == 1 or not arrays:
            return arrays
        from mpi4py import MPI

        first = arrays[0]
        on_host = isinstance(first, np.ndarray | np.generic)
        on_device = not on_host and hasattr(first, "__cuda_array_interface__") and self.cuda_aware
        if on_device:
            import cupy

            flat = cupy.concatenate([a.reshape(-1) for a in arrays])
            cupy.cuda.get_current_stream().synchronize()  # MPI reads it outside the stream
        else:
            flat = np.concatenate([np.asarray(to_numpy(a)).reshape(-1) for a in arrays])
        self.mpi.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
        self.reduced_bytes += flat.nbytes
        self.reductions += 1
        ns = np
        if not (on_host or on_device):
            flat, ns = xp.asarray(flat), xp
        out, start = [], 0
        for a in arrays:
            size = int(np.prod(a.shape))
            out.append(
                flat[start : start + size].reshape(a.shape)
                if ns is np or on_device
                else ns.reshape(flat[start : start + size], tuple(a.shape))
            )
            start += size
        return out

    def first(self, value: Any) -> Any:
        """The value of the lowest rank whose ``value`` is not None (None when none has one):
        a decision every rank then takes alike."""
        if self.mpi is None or self.size == 1:
            return value
        return next((v for v in self.mpi.allgather(value) if v is not None), None)

    def barrier(self) -> None:
        if self.mpi is not None:
            self.mpi.Barrier()

    def abort(self, status: int = 1) -> NoReturn:
        """Stop every rank now (``MPI_Abort``); alone, exit with ``status``."""
        sys.stdout.flush()
        sys.stderr.flush()
        if self.mpi is not None and self.size > 1:
            # The launcher kills every rank at once: give it a moment to forward what this
            # rank printed (its error) first, or the message can be lost.
            time.sleep(0.5)
            self.mpi.Abort(status)
        raise SystemExit(status)


def _mpi_module() -> Any:
    from mpi4py import MPI

    return MPI


_WORLD: Comm | None = None


def current() -> Comm | None:
    """The ``world()`` made so far in this process, or None."""
    return _WORLD


def launched_by_mpi() -> bool:
    """Whether an MPI launcher (``mpiexec``, ``srun``) started this process."""
    return any(v in os.environ for v in LAUNCHER_VARIABLES)


def world() -> Comm:
    """The processes ``mpiexec`` started (``MPI.COMM_WORLD``), or this process alone when it
    was not started by an MPI launcher or mpi4py is not installed (``pip install
    'pcgraph[mpi]'``).  With several ranks, an uncaught exception on any rank prints its
    traceback and aborts them all (``MPI.COMM_WORLD.Abort``) instead of a hang."""
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    mpi = None
    if launched_by_mpi():
        try:
            mpi = _mpi_module().COMM_WORLD
        except ImportError:
            mpi = None
    _WORLD = Comm(mpi)
    if _WORLD.size > 1:
        _abort_on_uncaught(_WORLD)
    return _WORLD


def _abort_on_uncaught(comm: Comm) -> None:
    previous = sys.excepthook

    def hook(kind: type, value: BaseException, tb: Any) -> None:
        if issubclass(kind, KeyboardInterrupt):
            previous(kind, value, tb)
            comm.abort(130)
        text = "".join(traceback.format_exception(kind, value, tb))
        sys.stderr.write(f"rank {comm.rank} of {comm.size}: {text}")
        sys.stderr.write(f"rank {comm.rank}: aborting every rank (MPI_Abort)\n")
        comm.abort(1)

    sys.excepthook = hook


__all__ = ["Comm", "Shard", "world", "current", "launched_by_mpi"]
