"""One contender, alone in this process: ``python -m benchmarks.worker NETWORK CONTENDER``.

Builds the contender (importing its runtime and no other), warms it up, times training steps
back to back on rotating batches, and prints one JSON line: the median ms per step, the step
count, the thread settings in force and the runtimes this process loaded.  ``benchmarks.run``
starts these processes in alternation and pairs their medians.

``--flat STEPS`` instead trains pcgraph's bp with momentum SGD for STEPS steps and reports the
step time at the start and at the end (a long run must not slow down, e.g. on subnormal floats).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import benchmarks  # noqa: F401  (sets the thread counts before any runtime is imported)

RUNTIME_MODULES = ("torch", "jax", "cupy", "pcgraph")


def threads() -> dict[str, Any]:
    """The thread pools in force in this process, as each runtime reports them."""
    out: dict[str, Any] = {"env": {k: os.environ.get(k) for k in benchmarks.THREAD_VARS}}
    try:
        from threadpoolctl import threadpool_info

        out["pools"] = sorted(f"{i['internal_api']}={i['num_threads']}" for i in threadpool_info())
    except ImportError:
        pass
    if "torch" in sys.modules:
        out["torch"] = sys.modules["torch"].get_num_threads()
    return out


def loaded_runtimes() -> list[str]:
    return [m for m in RUNTIME_MODULES if m in sys.modules]


def run_contender(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.contenders import CONTENDERS
    from benchmarks.networks import find
    from benchmarks.timing import time_steps

    contender = CONTENDERS[args.contender]
    net = find(args.network, args.smoke)
    start = time.perf_counter()
    stepper = contender.make(net, args.device)
    build = time.perf_counter() - start
    times = time_steps(
        stepper.step,
        stepper.sync,
        warmup=args.warmup,
        min_steps=args.min_steps,
        seconds=args.seconds,
    )
    return {
        "network": net.name,
        "contender": contender.name,
        "device": args.device,
        "ms": statistics.median(times) * 1e3,
        "steps": len(times),
        "build_s": build,
        **stepper.info,
    }


def run_flat(args: argparse.Namespace) -> dict[str, Any]:
    """pcgraph bp with SGD(momentum=0.9) for ``args.flat`` steps on rotating random batches."""
    import numpy as np

    import pcgraph as pc
    from benchmarks.networks import batches, find

    net = find(args.network, args.smoke)
    g = net.build()
    prog = pc.compile(g, dtype="float32")
    params = prog.init_params(0)
    feeds = batches(net, g)
    opt = pc.optim.SGD(lr=args.flat_lr, momentum=0.9)
    window = max(min(500, args.flat // 5), 1)
    times, faults, rss = [], {}, {}
    for i in range(args.flat):
        if i in (window, args.flat - window):  # the system's view of the process's memory
            faults[i], rss[i] = _memory_counters()
        t = time.perf_counter()
        prog.train_step(params, feeds[i % len(feeds)], "bp", optimizer=opt)
        times.append(time.perf_counter() - t)
    faults[args.flat], rss[args.flat] = _memory_counters()
    state = pc.to_numpy({k: v for k, v in opt.state.items() if k != "step"})
    tiny = np.finfo(np.float32).tiny
    subnormal = sum(int(np.count_nonzero((v != 0) & (np.abs(v) < tiny))) for v in state.values())
    return {
        "network": net.name,
        "contender": "flat",
        "steps": args.flat,
        "window": window,
        "start_ms": statistics.median(times[window : 2 * window]) * 1e3,
        "end_ms": statistics.median(times[-window:]) * 1e3,
        "subnormal": subnormal,
        "lr": args.flat_lr,
        # Page faults per step over the last window (memory the process takes from the system
        # afresh; 0: every step reuses the memory of the steps before it) and the resident
        # size's growth between the first window and the end.
        "faults_per_step": (faults[args.flat] - faults[args.flat - window]) / window,
        "rss_growth_mib": (rss[args.flat] - rss[window]) / 2**20,
    }


def _memory_counters() -> tuple[int, int]:
    """(minor + major page faults so far, resident bytes) of this process; (0, 0) where
    /proc is missing."""
    try:
        fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
        pages = int(open("/proc/self/statm").read().split()[1])
    except OSError:
        return 0, 0
    return int(fields[7]) + int(fields[9]), pages * os.sysconf("SC_PAGE_SIZE")


def run_profile(args: argparse.Namespace) -> dict[str, Any]:
    """Where a training step of ``args.profile`` spends its time: ``Program.profile`` runs
    alternating with timed ``train_step`` calls (medians), summed per op; what the schedule's
    kernels do not account for is "outside the schedule" (checks, loss, optimiser)."""
    import pcgraph as pc
    from benchmarks.contenders import LR, PC_OPTIONS
    from benchmarks.networks import batches, find
    from benchmarks.timing import time_steps

    net = find(args.network, args.smoke)
    g = net.build()
    prog = pc.compile(g, dtype="float32")
    params = prog.init_params(0)
    feeds = batches(net, g)
    algorithm = args.profile
    options = dict(PC_OPTIONS[algorithm])
    if algorithm == "il-prox":
        options["alpha"] = LR
    opt = pc.optim.SGD(lr=LR)
    rounds = 3 if args.smoke else 15
    runs, steps = [], []
    for r in range(rounds):
        runs.append(prog.profile(params, feeds[r % len(feeds)], algorithm, repeats=1, **options))
        steps += time_steps(
            lambda i: prog.train_step(
                params, feeds[i % len(feeds)], algorithm, optimizer=opt, **options
            ),
            warmup=1,
            min_steps=3,
            seconds=0.0,
        )
    per_op: dict[str, float] = {}
    for i, (_, step, _) in enumerate(runs[0]):
        op = getattr(step, "op", type(step).__name__)
        per_op[op] = per_op.get(op, 0.0) + statistics.median(run[i][2] for run in runs)
    step_s = statistics.median(steps)
    per_op["outside the schedule"] = max(step_s - sum(per_op.values()), 0.0)
    return {
        "network": net.name,
        "contender": f"profile {algorithm}",
        "step_ms": step_s * 1e3,
        "per_op_ms": {k: v * 1e3 for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])},
    }


def run_compile(nodes: int, algorithms: tuple[str, ...] = ("bp", "zil")) -> dict[str, Any]:
    """Seconds to compile a chain of about ``nodes`` nodes and emit the schedules of
    ``algorithms``, each timed apart."""
    import pcgraph as pc

    g = pc.Graph("chain")
    h = g.input("x", (8,))
    for i in range(nodes // 5):  # five nodes a layer: W, b, matmul, add, tanh
        h = pc.tanh(h @ g.param(f"W{i}", (8, 8)) + g.param(f"b{i}", (8,)))
    g.set_loss(pc.mse(h, g.target("y", (8,))))
    start = time.perf_counter()
    prog = pc.compile(g)
    parts = {"compile": time.perf_counter() - start}
    for algorithm in algorithms:
        t = time.perf_counter()
        prog.schedule(algorithm)
        parts[algorithm] = time.perf_counter() - t
    return {
        "contender": "compile",
        "nodes": g.nx.number_of_nodes(),
        "seconds": time.perf_counter() - start,
        "parts": parts,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.worker", description=__doc__)
    ap.add_argument("network", nargs="?", default="", help="a network of benchmarks.networks")
    ap.add_argument("contender", nargs="?", default="", help="a contender of CONTENDERS")
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--smoke", action="store_true", help="the networks of --smoke")
    ap.add_argument("--seconds", type=float, default=1.5, help="time steps at least this long")
    ap.add_argument("--min-steps", type=int, default=10, help="and at least this many steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--flat", type=int, default=0, metavar="STEPS", help="the long-run check")
    ap.add_argument("--flat-lr", type=float, default=0.05, help="its learning rate")
    ap.add_argument("--compile", type=int, default=0, metavar="NODES", help="time a compile")
    ap.add_argument(
        "--schedules", default="bp,zil", help="with --compile: the schedules emitted and timed"
    )
    ap.add_argument("--profile", default="", metavar="ALGO", help="per-op profile of a step")
    args = ap.parse_args(argv)
    if args.compile:
        result = run_compile(args.compile, tuple(args.schedules.split(",")))
    elif args.profile:
        result = run_profile(args)
    elif args.flat:
        result = run_flat(args)
    else:
        result = run_contender(args)
    result["threads"] = threads()
    result["runtimes"] = loaded_runtimes()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
