"""Where does IL match BP?  Sweep IL's inference rate and step count on Ray Tune against BP on
MNIST, then train the best IL setting on 2 MPI ranks and on one process: the same parameters,
in less time.

    python examples/sweep_il.py --quick    # digits, a 4-trial IL sweep; seconds to a minute
    python examples/sweep_il.py            # MNIST (5,000 images), rate x steps, 2 seeds

Needs Ray Tune (``pip install 'pcgraph[sweep]'``); the MPI part needs mpi4py and mpiexec
(``pip install 'pcgraph[mpi]'``) and is skipped with a note without them.  Every trial is an
ordinary ``pcgraph train`` run in ``--out``/il/trials/...; ``sweep.csv`` and ``sweep.png``
sit beside them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pcgraph as pc

from example_utils import positive_int


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="digits and a 4-trial sweep")
    p.add_argument("--seed", type=int, default=0, help="the first seed (default: 0)")
    p.add_argument("--epochs", type=positive_int, default=None, help="(default: 3; quick: 2)")
    p.add_argument("--cpus", type=positive_int, default=None, help="CPUs of the local Ray")
    p.add_argument("--backend", default=None, help="numpy or cupy (default: numpy)")
    p.add_argument("--out", default="runs/sweep_il", help="(default: runs/sweep_il)")
    return p.parse_args()


def main() -> None:
    args = parse()
    if importlib.util.find_spec("ray") is None:
        print("note: Ray Tune is not installed (pip install 'pcgraph[sweep]'); nothing to do")
        return
    quick = args.quick
    epochs = args.epochs or (2 if quick else 3)
    data = "digits" if quick else "mnist"
    model_args = "sizes=(64,32,10)" if quick else "sizes=(784,128,10)"
    train = {
        "model_args": model_args,
        "epochs": epochs,
        "limit": 400 if quick else 5000,
        "test_limit": 200 if quick else 2000,
        "lr": 0.1,
        "batch_size": 32 if quick else 64,
        "backend": args.backend,
        "no_plot": True,
    }
    seeds = [args.seed] if quick else [args.seed, args.seed + 1]
    import ray  # one local Ray for both sweeps (pc.sweep.run starts one itself otherwise)

    ray.init(
        num_cpus=args.cpus or os.cpu_count(),
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": dict(pc.sweep.ONE_THREAD)},
    )
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)  # a fresh sweep each time (use --resume on the CLI)
    print(f"BP on {data}: {len(seeds)} seed(s), {epochs} epoch(s)")
    bp = pc.sweep.run(
        "mlp", data, {}, seeds=seeds, train={**train, "algorithm": "bp"}, out=out / "bp",
        cpus=args.cpus, plot=False,
    )  # fmt: skip
    bp_acc = sum(float(r["final_test_acc"]) for r in bp) / len(bp)
    space = {"rate": [0.05, 0.2], "steps": [5]} if quick else {
        "rate": [0.02, 0.05, 0.1, 0.2], "steps": [5, 10, 20],
    }  # fmt: skip
    print(f"IL on {data}: rate x steps = {space}")
    il = pc.sweep.run(
        "mlp", data, space, seeds=seeds, train={**train, "algorithm": "il"}, out=out / "il",
        cpus=args.cpus,
    )  # fmt: skip
    print(f"\nBP test accuracy {bp_acc:.4f} (mean over seeds); IL by setting:")
    settings: dict[tuple, list[float]] = {}
    for r in il:
        settings.setdefault((r["rate"], r["steps"]), []).append(float(r["final_test_acc"]))
    for (rate, steps), accs in sorted(settings.items()):
        acc = sum(accs) / len(accs)
        verdict = "matches BP" if acc >= bp_acc - 0.01 else f"{bp_acc - acc:+.4f} below BP"
        print(f"  rate {rate:<5} steps {steps:<3} test acc {acc:.4f}  {verdict}")
    (rate, steps), _ = max(settings.items(), key=lambda kv: sum(kv[1]) / len(kv[1]))
    mpi_part(args, data, train, rate, steps, out)


def mpi_part(
    args: argparse.Namespace, data: str, train: dict, rate: float, steps: int, out: Path
) -> None:
    """The best IL setting trained on one process and on 2 MPI ranks: the same parameters."""
    mpiexec = Path(sys.executable).with_name("mpiexec")
    if importlib.util.find_spec("mpi4py") is None or not mpiexec.exists():
        print("note: mpi4py / mpiexec not installed (pip install 'pcgraph[mpi]'): no MPI run")
        return
    argv = [
        "train", "--model", "mlp", "--model-args", train["model_args"], "--data", data,
        "--algorithm", "il", "--algo-option", f"rate={rate}", "--algo-option", f"steps={steps}",
        "--epochs", str(train["epochs"]), "--limit", str(train["limit"]),
        "--test-limit", str(train["test_limit"]), "--lr", str(train["lr"]),
        "--batch-size", str(train["batch_size"]), "--seed", str(args.seed), "--dtype", "float64",
        "--no-plot", "--no-progress", "--overwrite",
    ]  # fmt: skip
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "pcgraph.cli"]
    one, two = out / "mpi-1", out / "mpi-2"
    subprocess.run([*cli, *argv, "--out", str(one)], check=True, env=env, capture_output=True)
    subprocess.run(
        [str(mpiexec), "-n", "2", *cli, *argv, "--out", str(two), "--distributed"],
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    graph = pc.load_graph(one / "graph.json")
    prog = pc.compile(graph, dtype="float64")
    p1, p2 = (
        pc.load(one / "checkpoint.npz", prog).params,
        pc.load(two / "checkpoint.npz", prog).params,
    )
    seconds = [
        sum(r["train_seconds"] for r in json.loads((d / "metrics.json").read_text())["epochs"])
        for d in (one, two)
    ]
    print(
        f"\nIL rate {rate} steps {steps} in float64 on 1 process and on 2 MPI ranks: "
        f"max |p_2 - p_1| = {pc.compare.max_abs_diff(p2, p1):.3g}; training "
        f"{seconds[0]:.2f} s against {seconds[1]:.2f} s"
    )


if __name__ == "__main__":
    main()
