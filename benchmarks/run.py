"""``python -m benchmarks``: pcgraph against PyTorch, PCX and a hand-written NumPy step, each
contender timed alone in its own process, and the report ``BENCHMARKS.md``.

For every network, each contender (``benchmarks/contenders.py``) runs in a fresh process
(``benchmarks/worker.py``): it builds the network with the same weights, warms up, then times
training steps back to back on 8 rotating batches and reports its median ms per step.  The
processes of one network run in rounds, every contender once per round in a fixed order (A B C
A B C ...), and a comparison is the median over rounds of the two contenders' ratio in the same
round, shown with its min-max.  No process imports another contender's runtime: two runtimes in
one process slow each other down with the threads each leaves spinning after a call.

Also measured, each in processes of its own: one epoch of MNIST end to end (``benchmarks/
epoch.py``, pcgraph against an idiomatic PyTorch script with a ``DataLoader``), a long training
run's step time at its start and end, the zil/bp peak memory, and compile time.  The deep muPC
network of issue 27 (``--only mupc``) has rows of its own: pcgraph's IL and ePC as
``examples/reproduce/deep.py`` trains them, against FabricPC's (``benchmarks/
fabricpc_deep_peer.py``), with seconds per MNIST epoch extrapolated from the steps.  ``--smoke``
runs tiny networks once, to keep the harness working in CI; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchmarks
from benchmarks.contenders import CONTENDERS, LR, PC_OPTIONS, mupc_options
from benchmarks.networks import Network, networks
from benchmarks.timing import Paired, paired

ROOT = Path(__file__).resolve().parent.parent

# The comparisons of the report: (contender, reference, column heading).
COMPARISONS = (
    ("torch", "/ PyTorch (TorchPeer)"),
    ("torch-seq", "/ nn.Sequential"),
    ("numpy", "/ NumPy floor"),
    ("bp", "/ pcgraph bp"),
    ("pcx", "/ PCX il"),
    ("fabricpc", "/ FabricPC"),
)
# The "/ FabricPC" column: each pcgraph row over the FabricPC row computing the same update.
FABRICPC_TWINS = {
    "il-layers": "fabricpc",
    "il-mupc": "fabricpc-il-mupc",
    "epc-mupc": "fabricpc-epc-mupc",
}
# A muPC network's seconds per MNIST epoch: its ms per step times the steps of an epoch of
# MNIST_TRAIN examples (an epoch of the 128-layer network runs for many minutes per contender).
MNIST_TRAIN = 60_000
# The executor issue's targets: (contender, reference, network name prefix, bound).
TARGETS = (
    ("bp", "torch", "mlp 784-256-256-10 b64", 0.85),
    ("bp", "torch", "mlp 784-256-256-10 b256", 0.95),
    ("bp", "torch", "rnn", 0.9),
    ("bp", "torch", "lenet", 1.0),
    ("bp", "torch", "transformer", 1.0),
    ("il", "pcx", "mlp", 0.9),
    ("zil", "bp", "", 1.03),
)
# On a GPU (the GPU issue's targets): bp within 1.5x of PyTorch CUDA, il(20) within 1.0x of PCX.
GPU_TARGETS = (
    ("bp", "torch", "mlp", 1.5),
    ("bp", "torch", "lenet", 1.5),
    ("il", "pcx", "mlp", 1.0),
    ("zil", "bp", "", 1.05),
)


@dataclass
class Results:
    """Per network: each contender's per-round results (None where a round failed)."""

    rounds: dict[str, dict[str, list[dict]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def ms(self, net: str, contender: str) -> list[float]:
        return [r["ms"] for r in self.rounds.get(net, {}).get(contender, [])]

    def pair(self, net: str, a: str, b: str) -> Paired | None:
        ra, rb = self.rounds.get(net, {}).get(a), self.rounds.get(net, {}).get(b)
        if not ra or not rb or len(ra) != len(rb):
            return None
        return paired([r["ms"] for r in ra], [r["ms"] for r in rb])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for var in benchmarks.THREAD_VARS:
        env[var] = benchmarks.THREADS
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def spawn(module: str, args: list[str], timeout: float = 900) -> dict[str, Any]:
    """Run ``python -m module args`` in a fresh process; its last stdout line as JSON."""
    run = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if run.returncode != 0:
        raise RuntimeError(run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "failed")
    return json.loads(run.stdout.strip().splitlines()[-1])


def bench_network(
    net: Network, names: list[str], rounds: int, args: argparse.Namespace, results: Results
) -> None:
    """``rounds`` rounds of one process per contender, in a fixed order (A B C A B C ...)."""
    alive = list(names)
    per: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(rounds):
        for name in list(alive):
            worker_args = [net.name, name, "--device", args.device, "--seconds", str(args.seconds)]
            if args.smoke:
                worker_args += ["--smoke", "--min-steps", "2", "--warmup", "1"]
            try:
                res = spawn("benchmarks.worker", worker_args)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                results.failures.append(f"{net.name}, {CONTENDERS[name].label}: {e}")
                alive.remove(name)
                per.pop(name)
                continue
            _check_isolation(name, res)
            per[name].append(res)
            print(
                f"  round {r + 1}/{rounds} {CONTENDERS[name].label}: {res['ms']:.3f} ms "
                f"({res['steps']} steps)",
                file=sys.stderr,
            )
    results.rounds[net.name] = per


def _check_isolation(name: str, res: dict) -> None:
    runtime = CONTENDERS[name].runtime
    foreign = {"pcgraph": {"torch", "jax"}, "numpy": {"torch", "jax"}}.get(runtime, set())
    if runtime == "pytorch":
        foreign = {"jax"}
    if runtime == "pcx":
        foreign = {"torch"}
    leaked = foreign & set(res["runtimes"])
    if leaked:
        raise RuntimeError(f"contender {name} loaded {', '.join(sorted(leaked))} in its process")


def bench_epochs(args: argparse.Namespace, torch_ok: bool) -> tuple[dict, list[str]]:
    """One MNIST epoch per (model, contender), alternated over ``args.epoch_rounds`` rounds."""
    notes: list[str] = []
    try:
        import pcgraph as pc

        pc.data.mnist()
    except Exception as e:  # no MNIST copy here: the rows are left out, and the report says so
        return {}, [f"end-to-end epoch rows left out: {e}"]
    from benchmarks.epoch import write_mnist

    contenders = ["pcgraph-bp", "pcgraph-zil"] + (["pytorch"] if torch_ok else [])
    if not torch_ok:
        notes.append("end-to-end epoch: PyTorch not installed, pcgraph rows only")
    out: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_mnist(Path(tmp))
        for model in ("mlp", "lenet"):
            out[model] = {c: [] for c in contenders}
            for r in range(args.epoch_rounds):
                for c in contenders:
                    res = spawn("benchmarks.epoch", [model, c, "--data", tmp])
                    out[model][c].append(res)
                    print(
                        f"  epoch {model} round {r + 1}: {c} {res['seconds']:.2f} s, "
                        f"accuracy {res['accuracy']:.4f}",
                        file=sys.stderr,
                    )
    return out, notes


def source_revision() -> str:
    """The git commit of the checkout pcgraph is imported from (``+`` when its library or
    benchmark sources have uncommitted changes); '' when it is not imported from a checkout."""
    import pcgraph as pc

    root = Path(pc.__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            run = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        except OSError:  # no git
            return None
        return run.stdout.strip() if run.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root:  # installed, or inside another repository
        return ""
    head = git("rev-parse", "--short", "HEAD") or ""
    dirty = git(
        "status", "--porcelain", "--untracked-files=no", "--", "pcgraph", "backends", "benchmarks"
    )
    return head + ("+" if head and dirty else "")


def versions() -> dict[str, str]:
    """Versions of Python, NumPy, pcgraph and each peer, read without importing the peers."""
    from importlib.metadata import PackageNotFoundError, version

    import numpy as np

    import pcgraph as pc

    rev = source_revision()
    out = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pcgraph": pc.__version__ + (f" (commit {rev})" if rev else ""),
    }
    for dist in ("torch", "pcx", "jax", "jaxlib", "cupy-cuda12x", "cupy-cuda13x"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def _fmt_ratio(p: Paired | None) -> str:
    return str(p) if p is not None else ""


def render(
    results: Results,
    chosen: list[Network],
    epochs: dict,
    extra: dict[str, str],
    header: dict[str, str],
    profiles: list[str] = (),  # type: ignore[assignment]
) -> str:
    lines = ["# pcgraph benchmarks", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()] + [""]
    lines += ["## Training steps, each contender alone in its process", ""]
    heads = " | ".join(h for _, h in COMPARISONS)
    lines += [f"| network | contender | ms/step (median) | {heads} | rounds |"]
    lines += ["|---|---|---|" + "---|" * len(COMPARISONS) + "---|"]
    for net in chosen:
        per = results.rounds.get(net.name, {})
        for name, rows in per.items():
            if not rows:
                continue
            cols = []
            for ref, _ in COMPARISONS:
                if ref == "fabricpc":
                    ref = FABRICPC_TWINS.get(name, "")
                fits = name != ref and (ref != "bp" or CONTENDERS[name].runtime == "pcgraph")
                fits = fits and (ref != "pcx" or name in ("il", "pcx"))
                cols.append(_fmt_ratio(results.pair(net.name, name, ref)) if fits else "")
            ms = statistics.median(r["ms"] for r in rows)
            lines.append(
                f"| {net.name} | {CONTENDERS[name].label} | {ms:.3f} | {' | '.join(cols)} "
                f"| {len(rows)} |"
            )
    lines += [
        "",
        "Ratios: the median over rounds of the two contenders' medians in the same round, "
        "(min-max) over the rounds. Below 1: the row's contender is faster.",
        "",
    ]
    gpu = header.get("device") == "gpu"
    lines += [f"## Targets (the {'GPU' if gpu else 'executor'} issue)", ""]
    for a, b, where, bound in GPU_TARGETS if gpu else TARGETS:
        for net in chosen:
            if not net.name.startswith(where):
                continue
            p = results.pair(net.name, a, b)
            if p is None:
                continue
            verdict = "met" if p.median <= bound else "missed"
            lines.append(
                f"- {net.name}: {CONTENDERS[a].label} / {CONTENDERS[b].label} = {p} "
                f"(target <= {bound}): {verdict}"
            )
    lines.append("")
    if epochs:
        lines += ["## One epoch of MNIST end to end, each alone in its process", ""]
        lines += [
            "Reading the IDX files, one epoch at batch 64 (SGD lr 0.05, momentum 0.9), test "
            "accuracy; seconds from reading the files to the accuracy (imports excluded).",
            "",
            "| model | contender | seconds (median) | train s | / pytorch | test accuracy | rounds |",
            "|---|---|---|---|---|---|---|",
        ]
        for model, per in epochs.items():
            for c, rows in per.items():
                secs = statistics.median(r["seconds"] for r in rows)
                train = statistics.median(r["train_s"] for r in rows)
                ratio = ""
                if c != "pytorch" and "pytorch" in per:
                    ratio = str(
                        paired([r["seconds"] for r in rows], [r["seconds"] for r in per["pytorch"]])
                    )
                acc = statistics.median(r["accuracy"] for r in rows)
                lines.append(
                    f"| {model} | {c} | {secs:.2f} | {train:.2f} | {ratio} | {acc:.4f} | "
                    f"{len(rows)} |"
                )
        lines.append("")
    if profiles:
        lines += [
            "## Where a step's time goes",
            "",
            "`Program.profile` alternating with timed training steps in one process per "
            'network (medians, float32), summed per op; "outside the schedule" is the rest '
            "of `train_step` (checks, the loss, the optimiser's staged update); ops of 1% and "
            "more:",
            "",
            *profiles,
            "",
        ]
    lines += ["## Other measurements", ""] + [f"- {k}: {v}" for k, v in extra.items()]
    if results.failures:
        lines += ["", "## Contenders that failed to run", ""]
        lines += [f"- {f}" for f in results.failures]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--smoke", action="store_true", help="tiny networks, one round: keeps CI honest"
    )
    ap.add_argument("--rounds", type=int, default=7, help="rounds of processes (at least 5)")
    ap.add_argument("--seconds", type=float, default=1.5, help="timed seconds per process")
    ap.add_argument("--out", default="BENCHMARKS.md", help="where to write the Markdown report")
    ap.add_argument(
        "--only", default="", metavar="TEXT", help="only the networks whose name contains TEXT"
    )
    ap.add_argument(
        "--contenders",
        default="",
        metavar="A,B",
        help=f"only these contenders (of {', '.join(CONTENDERS)})",
    )
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--epoch-rounds", type=int, default=5, help="rounds of the MNIST epoch rows")
    ap.add_argument("--no-epoch", action="store_true", help="leave out the MNIST epoch rows")
    ap.add_argument("--no-profile", action="store_true", help="leave out the per-op profiles")
    ap.add_argument("--flat", type=int, default=5000, help="steps of the long-run row (0: none)")
    args = ap.parse_args(argv)
    rounds = 1 if args.smoke else max(args.rounds, 5)
    chosen = [net for net in networks(args.smoke, args.device) if args.only in net.name]
    if not chosen:
        names = ", ".join(repr(net.name) for net in networks(args.smoke, args.device))
        ap.error(f"--only {args.only!r} matches none of the networks: {names}")
    wanted = [c for c in args.contenders.split(",") if c] or list(CONTENDERS)
    unknown = [c for c in wanted if c not in CONTENDERS]
    if unknown:
        ap.error(f"unknown contender(s) {', '.join(unknown)}; choose from {', '.join(CONTENDERS)}")
    results = Results()
    missing = {}
    for c in wanted:
        why = CONTENDERS[c].missing()
        if why:
            missing[CONTENDERS[c].label] = why
    names = [c for c in wanted if CONTENDERS[c].label not in missing]
    for net in chosen:
        print(f"{net.name}:", file=sys.stderr)
        applicable = [c for c in names if CONTENDERS[c].applies(net)]
        bench_network(net, applicable, rounds, args, results)
    profiles: list[str] = []
    if args.device == "cpu" and not args.no_profile:
        for net in chosen:
            for algo in ("bp", "il") if net.is_mlp else ("bp",):
                if algo not in names:
                    continue
                flags = ["--smoke"] if args.smoke else []
                try:
                    res = spawn("benchmarks.worker", [net.name, "--profile", algo, *flags])
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    results.failures.append(f"{net.name}, profile of {algo}: {e}")
                    continue
                step = res["step_ms"]
                shares = ", ".join(
                    f"{op} {ms:.2f} ({ms / step:.0%})"
                    for op, ms in res["per_op_ms"].items()
                    if ms / step >= 0.01
                )
                profiles.append(f"- {net.name}, {algo}: step {step:.2f} ms: {shares}")
    extra: dict[str, str] = {}
    if missing:
        extra["not installed here"] = "; ".join(f"{k} ({v})" for k, v in missing.items())
    for net in chosen:
        per = results.rounds.get(net.name, {})
        if per.get("bp") and per.get("zil") and "peak_bytes" in per["bp"][0]:
            bp, zil = per["bp"][0]["peak_bytes"], per["zil"][0]["peak_bytes"]
            extra[f"peak memory of a gradient computation, {net.name}"] = (
                f"zil / bp = {zil / bp:.2f} (bp {bp / 2**20:.1f} MiB, zil {zil / 2**20:.1f} MiB)"
            )
        for name, rows in per.items():
            if rows and "compile_s" in rows[0]:
                extra[
                    f"{CONTENDERS[name].label}'s first call (tracing and XLA compilation), "
                    f"{net.name}"
                ] = f"{statistics.median(r['compile_s'] for r in rows):.1f} s, not timed"
        if net.is_mupc and any(per.values()):
            steps = math.ceil(MNIST_TRAIN / net.batch)
            seconds = {
                CONTENDERS[n].label: statistics.median(r["ms"] for r in rows) * steps / 1e3
                for n, rows in per.items()
                if rows
            }
            extra[f"seconds per MNIST epoch, {net.name}"] = (
                "; ".join(f"{label} {s:.0f} s" for label, s in seconds.items())
                + f" (median ms per step x {steps} steps of {net.batch}: extrapolated, not an "
                "epoch run; the ratios are the steps' ratios)"
            )
    epochs: dict = {}
    if not args.smoke and not args.no_epoch and args.device == "cpu":
        epochs, notes = bench_epochs(
            args, "torch" in {CONTENDERS[c].needs[0] for c in names if CONTENDERS[c].needs}
        )
        extra.update({f"note {i + 1}": n for i, n in enumerate(notes)})
    if args.flat and args.device == "cpu" and "bp" in names:
        steps = 20 if args.smoke else args.flat
        res = spawn(
            "benchmarks.worker",
            [chosen[0].name, "--flat", str(steps)] + (["--smoke"] if args.smoke else []),
        )
        extra[f"long run, {res['network']}, bp with SGD(lr={res['lr']}, momentum=0.9)"] = (
            f"{res['steps']} steps: median step {res['start_ms']:.3f} ms over steps "
            f"{res['window']}-{2 * res['window']}, {res['end_ms']:.3f} ms over the last "
            f"{res['window']} (x{res['end_ms'] / res['start_ms']:.2f}); "
            f"{res['subnormal']} subnormal values in the optimiser state at the end; "
            f"{res['faults_per_step']:.2f} page faults per step over the last "
            f"{res['window']} steps, resident size {res['rss_growth_mib']:+.1f} MiB from "
            "the first window to the end"
        )
    compile_nodes = 100 if args.smoke else 1000
    comp = spawn("benchmarks.worker", ["--compile", str(compile_nodes)])
    extra[f"compile a {compile_nodes:,}-node graph with its bp and zil schedules"] = (
        f"{comp['seconds'] * 1e3:.0f} ms"
    )
    for net in (net for net in chosen if net.is_mupc):
        il, epc = mupc_options("il", net.batch), mupc_options("epc", net.batch)
        extra[f"the rows of {net.name}"] = (
            "the deep reproduction's training (issue 27, examples/reproduce/deep.py): Adam "
            f"(lr {LR:g}) instead of SGD, value nodes on the marked layers; IL {il['steps']} "
            f"steps at {il['rate']:g} per example, ePC {epc['steps']} steps at {epc['rate']:g}; "
            "FabricPC's step is its trainer's jitted step (feed-forward init, InferenceSGD or "
            "EPCInference, mean local gradients, optax.adam) on the same weights with jpc's "
            "multipliers (benchmarks/fabricpc_deep_peer.py)"
        )
    if "pcx" in names:
        il = PC_OPTIONS["il"]
        extra["pcx il"] = (
            "PCX's step on the same weights and batch: vodes at pcgraph's value nodes (each "
            f"linear and relu), feed-forward init, {il['steps']} SGD steps (rate {il['rate']}) on "
            "the batch-summed energy, one SGD step on the weights (batch mean); one jitted "
            "function, blocked on (benchmarks/pcx_peer.py)"
        )
    threads = ", ".join(f"{v}={benchmarks.THREADS}" for v in benchmarks.THREAD_VARS)
    pools = sorted(
        {
            p
            for per in results.rounds.values()
            for rows in per.values()
            for r in rows[:1]
            for p in r["threads"].get("pools", [])
        }
    )
    header = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "device": args.device,
        "threads": f"{threads}; torch.set_num_threads({benchmarks.THREADS}); pools seen: "
        f"{', '.join(pools) or 'none'}",
        "versions": ", ".join(f"{k} {v}" for k, v in versions().items()),
        "method": f"float32, plain SGD (lr 1e-3), 8 rotating batches; each contender in a fresh "
        f"process per round: 3 warm-up steps, then steps back to back for {args.seconds:g} s "
        f"(at least 10), median ms per step; {rounds} rounds, contenders in a fixed order "
        "within each round",
    }
    text = render(results, chosen, epochs, extra, header, profiles)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
