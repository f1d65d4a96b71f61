"""Run by ``tests/test_distributed.py`` under ``mpiexec -n N``: data-parallel training of every
algorithm on small graphs, compared on rank 0 with one process training on the same global
batches (computed there, without MPI).

    mpiexec -n 3 python tests/mpi_worker.py equivalence OUT.json
    mpiexec -n 2 python tests/mpi_worker.py fault OUT.json   # rank 1 raises in its 3rd step

``equivalence`` writes, per case, the largest parameter difference to the single process (and
its scale), whether every rank holds bit-identical parameters, and a digest of the parameters
(compared between launches with the same N).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

import pcgraph as pc

STEPS, BATCH, CLASSES = 20, 25, 4  # 25: uneven shards over 2 and 3 ranks


def mlp(batch_norm: bool) -> pc.Graph:
    g = pc.Graph("mlp-bn" if batch_norm else "mlp")
    h = g.input("x", (6,))
    y = g.target("y", (), dtype="int64")
    for i, n in enumerate((7, 5)):
        h = pc.linear(h, g.param(f"W{i}", (h.shape[-1], n)), g.param(f"b{i}", (n,)))
        if batch_norm:
            h = pc.batch_norm(h) * g.param(f"gamma{i}", (n,), init="ones") + g.param(
                f"beta{i}", (n,)
            )
        h = pc.tanh(h)
    logits = pc.linear(h, g.param("W2", (5, CLASSES)), g.param("b2", (CLASSES,)))
    g.set_loss(pc.softmax_cross_entropy(logits, y))
    return g


# (label, graph builder argument, dtype, algorithm, options, optimiser)
CASES = [
    ("bp", False, "float64", "bp", {}, lambda: pc.optim.SGD(lr=0.1, momentum=0.9)),
    ("zil", False, "float64", "zil", {}, lambda: pc.optim.SGD(lr=0.1)),
    ("fpa", False, "float64", "fpa", {}, lambda: pc.optim.Adam(lr=0.01)),
    ("il", False, "float64", "il", {"steps": 8, "rate": 0.1}, lambda: pc.optim.SGD(lr=0.1)),
    ("il-prox", False, "float64", "il-prox", {}, lambda: pc.optim.SGD(lr=0.1)),
    (
        "il-prox-iltheory",
        False,
        "float64",
        "il-prox",
        {"output_norm": "iltheory"},
        lambda: pc.optim.SGD(lr=0.1),
    ),
    ("ipc", False, "float64", "ipc", {"steps": 5}, lambda: pc.optim.SGD(lr=0.05)),
    ("bn-bp", True, "float64", "bp", {}, lambda: pc.optim.SGD(lr=0.1)),
    ("bn-il", True, "float64", "il", {"steps": 8}, lambda: pc.optim.SGD(lr=0.1)),
    ("bn-ipc", True, "float64", "ipc", {"steps": 5}, lambda: pc.optim.SGD(lr=0.05)),
    ("f32-bp", False, "float32", "bp", {}, lambda: pc.optim.SGD(lr=0.1)),
    ("f32-il", False, "float32", "il", {"steps": 8}, lambda: pc.optim.SGD(lr=0.1)),
    ("f32-ipc", False, "float32", "ipc", {"steps": 5}, lambda: pc.optim.SGD(lr=0.05)),
]


def global_batches(seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {"x": rng.normal(size=(BATCH, 6)), "y": rng.integers(0, CLASSES, size=BATCH)}
        for _ in range(STEPS)
    ]


def train(prog: pc.Program, algorithm: str, options: dict, make_opt, comm=None) -> dict:  # noqa: ANN001
    params, opt = prog.init_params(seed=1), make_opt()
    for batch in global_batches():
        feed = batch if comm is None else comm.shard(batch)
        prog.train_step(params, feed, algorithm, optimizer=opt, comm=comm, **options)
    return pc.to_numpy(params)


def digest(params: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(params):
        h.update(name.encode())
        h.update(np.ascontiguousarray(params[name]).tobytes())
    return h.hexdigest()


def equivalence(comm: pc.distributed.Comm, out: Path) -> None:
    results = {}
    for label, bn, dtype, algorithm, options, make_opt in CASES:
        prog = pc.compile(mlp(bn), dtype=dtype)
        params = train(prog, algorithm, options, make_opt, comm)
        same = len(set(comm.mpi.allgather(digest(params)))) == 1
        if comm.rank == 0:
            ref = train(prog, algorithm, options, make_opt)
            # grads(comm=) too: the global batch's gradient on every rank
            results[label] = {
                "max_abs_diff": pc.compare.max_abs_diff(params, ref),
                "scale": pc.compare.max_abs(ref),
                "moved": pc.compare.max_abs_diff(ref, pc.to_numpy(prog.init_params(seed=1))),
                "ranks_identical": same,
                "digest": digest(params),
                "dtype": dtype,
            }
    batch = global_batches()[0]
    prog = pc.compile(mlp(True), dtype="float64")
    params = prog.init_params(seed=1)
    grads = pc.to_numpy(prog.grads(params, comm.shard(batch), "il", comm=comm, steps=8))
    if comm.rank == 0:
        ref = pc.to_numpy(prog.grads(params, batch, "il", steps=8))
        results["grads-il-bn"] = {
            "max_abs_diff": pc.compare.max_abs_diff(grads, ref),
            "scale": pc.compare.max_abs(ref),
            "moved": pc.compare.max_abs(ref),
            "ranks_identical": True,
            "digest": digest(grads),
            "dtype": "float64",
        }
        results["_comm"] = {"size": comm.size, "reduced_bytes": comm.reduced_bytes}
        out.write_text(json.dumps(results, indent=1))


def fault(comm: pc.distributed.Comm) -> None:
    prog = pc.compile(mlp(False), dtype="float64")
    params, opt = prog.init_params(seed=1), pc.optim.SGD(lr=0.1)
    for step, batch in enumerate(global_batches()):
        if step == 2 and comm.rank == 1:
            raise RuntimeError("injected fault on rank 1")
        prog.train_step(params, comm.shard(batch), "il", optimizer=opt, comm=comm)


if __name__ == "__main__":
    mode, out_path = sys.argv[1], Path(sys.argv[2])
    world = pc.distributed.world()
    assert world.size > 1, "run under mpiexec -n N with N >= 2"
    if mode == "equivalence":
        equivalence(world, out_path)
    else:
        fault(world)
