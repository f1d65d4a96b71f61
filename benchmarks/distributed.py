"""Data-parallel training on MPI: time per MNIST epoch with 1 and 2 (or more) ranks.

    python -m benchmarks.distributed                       # mlp and lenet, 1 and 2 ranks
    python -m benchmarks.distributed --ranks 1,2 --models mlp --limit 2048 --epochs 1

The driver launches ``mpiexec -n N python -m benchmarks.distributed --worker ...`` for each
model and rank count, every rank with one BLAS thread (``OPENBLAS_NUM_THREADS=1``), and prints
a Markdown table: the median seconds per epoch over ``--rounds`` launches of each rank count,
alternated (training only, the slowest rank's), the speed-up over one rank (the median of the
per-round ratios, with their range), the bytes each step's ``Allreduce`` sends per rank, and the time of one such
``Allreduce`` alone.  From these it extrapolates where more ranks stop paying off: a step on
N ranks takes about ``c / N + o + t_allreduce(N)``, with ``c`` the compute that shards, ``o``
the per-step cost that does not (Python, launching kernels), both solved from the measured
step times on 1 and 2 ranks (``t1 = c + o``, ``t2 = c / 2 + o + t_allreduce(2)``), and
``t_allreduce(N) ~ t_allreduce(2) * 2 (N - 1) / N`` (the volume of a ring or reduce-scatter
allreduce); the speed-up is ``t1`` over that.  Needs ``pip install 'pcgraph[mpi]'`` and MNIST.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.timing import paired

MODELS = ("mlp", "lenet")


def worker(args: argparse.Namespace) -> None:
    import numpy as np

    import pcgraph as pc

    comm = pc.distributed.world()
    data = pc.data.mnist() if args.data == "mnist" else pc.data.digits()
    if args.limit:
        data = data.subset(train=args.limit)
    build = pc.models.MODELS[args.model]
    graph = build(**({"sizes": (784, 256, 256, 10)} if args.model == "mlp" else {}))
    prog = pc.compile(graph, dtype="float32")
    want = prog.compiled.nodes[prog.inputs[0]].shape
    data = data.reshape(want)
    x_name, y_name = prog.inputs[0], prog.targets[0]
    params = prog.init_params(seed=0)
    opt = pc.optim.SGD(lr=0.05, momentum=0.9)
    times, steps, all_steps = [], 0, 0
    for epoch in range(args.epochs + 1):  # epoch 0 warms up (lowering, caches)
        batches = data.batches(args.batch_size, seed=(0, epoch), drop_last=True)
        if epoch == 0:
            batches = [next(iter(batches))]
        comm.barrier()
        start = time.perf_counter()
        for x, y in batches:
            feed = comm.shard({x_name: x, y_name: y})
            prog.train_step(params, feed, args.algorithm, optimizer=opt, comm=comm)
            steps += epoch > 0
            all_steps += 1
        comm.barrier()
        if epoch:
            times.append(time.perf_counter() - start)
    per_step_bytes = comm.reduced_bytes / all_steps  # every collective of a step, per rank
    # One Allreduce of the step's volume, alone: what communication costs per step.
    buffer = np.ones(int(per_step_bytes // 4) or 1, dtype=np.float32)
    comm.barrier()
    start = time.perf_counter()
    for _ in range(50):
        comm.sum([buffer])
    allreduce = (time.perf_counter() - start) / 50 if comm.size > 1 else 0.0
    if comm.rank == 0:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "ranks": comm.size,
                    "epoch_seconds": float(np.median(times)),
                    "steps_per_epoch": steps // args.epochs,
                    "bytes_per_step": per_step_bytes if comm.size > 1 else 0,
                    "allreduce_seconds": allreduce,
                    "params": sum(int(np.prod(v.shape)) for v in params.values()),
                }
            ),
            flush=True,
        )


def mpiexec() -> str:
    here = Path(sys.executable).with_name("mpiexec")
    return str(here) if here.exists() else "mpiexec"


def driver(args: argparse.Namespace) -> None:
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    ranks = [int(r) for r in args.ranks.split(",")]
    runs: dict[tuple[str, int], list[dict]] = {}
    for model in args.models.split(","):
        for _ in range(args.rounds):  # rank counts alternated within each round: 1 2 1 2 ...
            for n in ranks:
                cmd = [
                    mpiexec(), "-n", str(n), sys.executable, "-m", "benchmarks.distributed",
                    "--worker", "--model", model, "--epochs", str(args.epochs),
                    "--batch-size", str(args.batch_size), "--data", args.data,
                    "--algorithm", args.algorithm,
                ] + (["--limit", str(args.limit)] if args.limit else [])  # fmt: skip
                out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                if out.returncode != 0:
                    sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
                runs.setdefault((model, n), []).append(
                    json.loads(out.stdout.strip().splitlines()[-1])
                )
                print(json.dumps(runs[model, n][-1]), file=sys.stderr)
    print(
        "| model | ranks | median s / epoch | speed-up (min-max) | bytes / step | allreduce | "
        "extrapolated speed-up at 4, 8, 16 ranks |\n|---|---|---|---|---|---|---|"
    )
    for (model, n), rows in runs.items():
        ones = runs[model, 1] if (model, 1) in runs else rows
        seconds = statistics.median(r["epoch_seconds"] for r in rows)
        speedup = paired([o["epoch_seconds"] for o in ones], [r["epoch_seconds"] for r in rows])
        allreduce = statistics.median(r["allreduce_seconds"] for r in rows)
        extra = ""
        if n == 2 and allreduce:
            steps = rows[0]["steps_per_epoch"]
            t1 = statistics.median(o["epoch_seconds"] for o in ones) / steps
            t2 = seconds / steps
            shards = max(2 * (t1 - t2 + allreduce), 0.0)  # c: the compute that splits over ranks
            fixed = max(t1 - shards, 0.0)  # o: what every rank does in full
            extra = ", ".join(
                f"{t1 / (shards / k + fixed + allreduce * 2 * (k - 1) / k):.2f}" for k in (4, 8, 16)
            )
        print(
            f"| {model} | {n} | {seconds:.2f} | {speedup} | {rows[0]['bytes_per_step']:,.0f} | "
            f"{allreduce * 1e3:.3f} ms | {extra} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", default="mlp", choices=MODELS)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--ranks", default="1,2")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3, help="launches of each rank count, alternated")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit", type=int, default=None, help="train on the first N examples")
    p.add_argument("--data", default="mnist", choices=["mnist", "digits"])
    p.add_argument("--algorithm", default="bp")
    args = p.parse_args()
    worker(args) if args.worker else driver(args)


if __name__ == "__main__":
    main()
