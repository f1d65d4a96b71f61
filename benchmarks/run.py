"""Time pcgraph's training steps against PyTorch's CPU autograd on the same networks and weights.

Compared runs are interleaved (A B A B ...) after a warm-up; times are medians over the rounds,
ratios the median over rounds of the two calls' ratio in each round.  Nothing here is asserted
by unit tests; the CI only runs ``--smoke`` to keep the harness working.

Where PCX (the JAX predictive-coding library) is importable, the MLP networks get one more row,
PCX's IL step with the same weights, 20 inference steps and SGD (``benchmarks/pcx_peer.py``).
``make bench`` installs it; by hand: ``pip install pcx==0.6.3 "jax[cpu]==0.4.38"`` (Python >=
3.11).  Without it the report is as before.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import benchmarks
import pcgraph as pc

GEMM_N = 1024  # the square GEMM whose rate the MLP's bp step is compared with
LOOP = 8  # steps (and batches) of the MLPs' training-loop rows
ALGORITHMS = {"bp": {}, "zil": {}, "fpa": {"rate": 1.0}, "il": {"steps": 20, "rate": 0.1}}


@dataclass
class Network:
    name: str
    build: Callable[[], pc.Graph]
    batch: int


def _mlp(sizes: tuple = (784, 256, 256, 10)) -> pc.Graph:
    from pcgraph.models import mlp

    return mlp(sizes=sizes, activation="relu")


def networks(smoke: bool) -> list[Network]:
    """The networks of the issue (tiny versions with ``smoke``)."""
    from pcgraph import models

    if smoke:
        return [
            Network("mlp 32-16-10 b8", lambda: _mlp((32, 16, 10)), 8),
            Network("lenet b4", lambda: models.lenet(), 4),
        ]
    return [
        Network("mlp 784-256-256-10 b64", _mlp, 64),
        Network("mlp 784-256-256-10 b256", _mlp, 256),
        Network("lenet 1x28x28 b64", lambda: models.lenet(), 64),
        Network(
            "rnn T28 D28 H128 b64",
            lambda: models.rnn_many_to_one(T=28, D=28, H=128, classes=10),
            64,
        ),
        Network(
            "transformer T16 d64 h4 b32",
            lambda: models.transformer_encoder(T=16, d_model=64, heads=4, layers=1),
            32,
        ),
    ]


def random_batch(g: pc.Graph, size: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for name in g.inputs + g.targets:
        node = g.node(name)
        if node.dtype == "int64":
            out[name] = rng.integers(0, 10, size=(size,) + node.shape)
        else:
            out[name] = rng.random((size,) + node.shape, dtype=np.float32)
    return out


class Timings:
    """Seconds per call of each function, one entry per round of ``interleaved``."""

    def __init__(self, times: dict[str, list[float]]) -> None:
        self.times = times

    def __contains__(self, name: str) -> bool:
        return name in self.times

    @property
    def rounds(self) -> int:
        return min((len(v) for v in self.times.values()), default=0)

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])

    def ratio(self, name: str, reference: str) -> float:
        """The median over rounds of ``name``'s time over ``reference``'s in the same round:
        the machine's speed drifts by tens of percent within a run here, and two calls of one
        round see much the same speed where two medians over the whole run need not."""
        pairs = zip(self.times[name], self.times[reference])
        return statistics.median(a / b for a, b in pairs)


def interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, warmup: int, min_seconds: float = 0.0
) -> Timings:
    """Each function timed in rounds (A B C, C A B, ...) after a warm-up: ``repeats`` rounds,
    and more until the timed rounds have taken ``min_seconds`` of wall time.

    Each round runs every function once, in a fresh seeded random order: a function that always
    ran right after one sharing its arrays would find them in cache and look faster than it is.
    The time budget gives fast networks many rounds: a 1 ms step's median over 21 rounds still
    moves by 10% with this machine's hiccups, over 100 it does not.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    order = np.random.default_rng(0)
    start, rounds = time.perf_counter(), 0
    while rounds < repeats or time.perf_counter() - start < min_seconds:
        rounds += 1
        for name in order.permutation(list(fns)):
            fn = fns[name]
            gc.disable()
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
            gc.enable()
    return Timings(times)


def square_gemm(n: int = 1024) -> Callable[[], Any]:
    """One float32 ``n x n`` GEMM (``2 n^3`` FLOPs) into a preallocated output."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b, out = a.copy(), np.empty_like(a)
    return lambda: np.matmul(a, b, out=out)


def gemm_rate(n: int = 1024, repeats: int = 7) -> float:
    """The machine's float32 GEMM rate in FLOP/s (median of ``repeats``)."""
    gemm = square_gemm(n)
    gemm()
    return 2 * n**3 / statistics.median(_time(gemm) for _ in range(repeats))


def _time(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _mlp_layers(params: dict) -> list[str]:
    """The zoo MLP's layer names (``fc0``, ``fc1``, ...) in order."""
    return sorted({k.split(".")[0] for k in params}, key=lambda n: int(n[2:]))


def numpy_mlp_step(params: dict, x: np.ndarray, y: np.ndarray, lr: float = 0.01) -> None:
    """The floor: a hand-written NumPy backprop + SGD step of the zoo's relu MLP
    (parameters ``fc{i}.W`` of shape (in, out) and ``fc{i}.b``)."""
    layers = _mlp_layers(params)
    acts, h = [x], x
    for i, layer in enumerate(layers):
        z = h @ params[f"{layer}.W"] + params[f"{layer}.b"]
        h = np.maximum(z, 0) if i < len(layers) - 1 else z
        acts.append(h)
    p = np.exp(h - h.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    g = p / len(y)
    for i in reversed(range(len(layers))):
        a, w = acts[i], params[f"{layers[i]}.W"]
        gw, gb = a.T @ g, g.sum(0)
        if i:
            g = (g @ w.T) * (a > 0)
        w -= lr * gw
        params[f"{layers[i]}.b"] -= lr * gb


CEILING = "numpy (hand, out= buffers)"


class PreallocatedMlpStep:
    """The floor with every trick NumPy allows: ``numpy_mlp_step``'s arithmetic into buffers
    made once (``out=``), the bias gradient as a GEMV, the update applied as each layer's
    gradient is made.  A ceiling on what any NumPy executor can reach, not a design pcgraph
    could adopt as is (it writes its buffers in place and knows the network)."""

    def __init__(self, params: dict, batch: int) -> None:
        layers = _mlp_layers(params)
        self.W = [params[f"{n}.W"] for n in layers]
        self.b = [params[f"{n}.b"] for n in layers]
        f32 = self.W[0].dtype
        widths = [w.shape[1] for w in self.W]
        self.z = [np.empty((batch, n), f32) for n in widths]  # pre-activations
        self.h = [np.empty((batch, n), f32) for n in widths[:-1]]  # relu outputs
        self.g = [np.empty((batch, n), f32) for n in widths]  # cotangents of z
        self.mask = [np.empty((batch, n), f32) for n in widths[:-1]]
        self.gW = [np.empty_like(w) for w in self.W]
        self.gb = [np.empty_like(b) for b in self.b]
        self.row_max = np.empty((batch, 1), f32)
        self.ones = np.ones(batch, f32)
        self.rows = np.arange(batch)

    def __call__(self, x: np.ndarray, y: np.ndarray, lr: float = 0.01) -> None:
        W, b, z, h, g = self.W, self.b, self.z, self.h, self.g
        last = len(W) - 1
        for i in range(last + 1):
            np.matmul(x if i == 0 else h[i - 1], W[i], out=z[i])
            z[i] += b[i]
            if i < last:
                np.maximum(z[i], 0, out=h[i])
        p = g[last]
        np.subtract(z[last], np.max(z[last], axis=1, keepdims=True, out=self.row_max), out=p)
        np.exp(p, out=p)
        p /= np.sum(p, axis=1, keepdims=True, out=self.row_max)
        p[self.rows, y] -= 1
        p *= p.dtype.type(1 / len(y))
        rate = W[0].dtype.type(lr)
        for i in reversed(range(last + 1)):
            np.matmul((x if i == 0 else h[i - 1]).T, g[i], out=self.gW[i])
            np.matmul(self.ones, g[i], out=self.gb[i])
            if i:
                np.matmul(g[i], W[i].T, out=g[i - 1])
                np.greater(z[i - 1], 0, out=self.mask[i - 1])
                g[i - 1] *= self.mask[i - 1]
            self.gW[i] *= rate
            W[i] -= self.gW[i]
            self.gb[i] *= rate
            b[i] -= self.gb[i]


def mlp_flops(sizes: tuple, batch: int) -> float:
    """FLOPs of one backprop step: forward, weight and input gradients (none into the data)."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    fwd = sum(2 * batch * a * b for a, b in pairs)
    return fwd + fwd + (fwd - 2 * batch * pairs[0][0] * pairs[0][1])


def peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak traced allocation during ``fn`` (NumPy reports its buffers to tracemalloc)."""
    fn()
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def compile_time(nodes: int = 1000) -> float:
    """Seconds to compile a chain graph of about ``nodes`` nodes and emit its bp and zil schedules."""
    g = pc.Graph("chain")
    h = g.input("x", (8,))
    for i in range(nodes // 4):
        h = pc.tanh(h @ g.param(f"W{i}", (8, 8)) + g.param(f"b{i}", (8,)))
    g.set_loss(pc.mse(h, g.target("y", (8,))))
    t = time.perf_counter()
    prog = pc.compile(g)
    prog.schedule("bp")
    prog.schedule("zil")
    return time.perf_counter() - t


def pcx_available() -> bool:
    """Whether the PCX peer can run: PCX installed, and it, JAX and optax import."""
    if importlib.util.find_spec("pcx") is None:
        return False
    try:
        import benchmarks.pcx_peer  # noqa: F401  (imports pcx, jax and optax)
    except Exception as e:  # a broken JAX install should cost the row, not the run
        print(
            f"benchmarks: PCX is installed but does not load ({e!r}); no pcx row", file=sys.stderr
        )
        return False
    return True


def bench_network(
    net: Network,
    repeats: int,
    warmup: int,
    torch_ok: bool,
    pcx_ok: bool = False,
    min_seconds: float = 0.0,
) -> list[dict]:
    g = net.build()
    prog = pc.compile(g, dtype="float32")
    params = prog.init_params(0)
    batch = random_batch(g, net.batch)
    fns: dict[str, Callable[[], Any]] = {}
    for algo, opts in ALGORITHMS.items():
        opt = pc.optim.SGD(lr=1e-3)
        fns[algo] = lambda a=algo, o=opts, s=opt: prog.train_step(
            params, batch, algorithm=a, optimizer=s, **o
        )
    if torch_ok:
        from benchmarks.torch_peer import TorchPeer

        peer = TorchPeer(prog, params, lr=1e-3)
        feeds = peer.feed(batch)
        fns["torch"] = lambda: peer.step(feeds)
    mlp = net.name.startswith("mlp")
    sizes = tuple(int(s) for s in net.name.split()[1].split("-")) if mlp else ()
    pcx_compile = None
    if mlp:
        hand = {k: np.array(v) for k, v in params.items()}
        fns["numpy"] = lambda: numpy_mlp_step(hand, batch["x"], batch["y"])
        ceiling = PreallocatedMlpStep({k: np.array(v) for k, v in params.items()}, net.batch)
        fns["numpy out="] = lambda: ceiling(batch["x"], batch["y"])
        # The GEMM rate the bp step is a fraction of, measured in the same rounds: the machine's
        # speed drifts by tens of percent over a run here, and a ratio should not see it.
        fns["gemm"] = square_gemm(GEMM_N)
        # As a training loop runs: LOOP steps in a row, each on its own batch, so the weights
        # stay in cache between steps and the batches do not (one call, divided by LOOP).
        batches = [random_batch(g, net.batch, seed=i) for i in range(LOOP)]
        loop_sgd = pc.optim.SGD(lr=1e-3)
        fns["bp loop"] = lambda: [
            prog.train_step(params, b, algorithm="bp", optimizer=loop_sgd) for b in batches
        ]
        fns["numpy loop"] = lambda: [numpy_mlp_step(hand, b["x"], b["y"]) for b in batches]
        fns["numpy out= loop"] = lambda: [ceiling(b["x"], b["y"]) for b in batches]
    if mlp and pcx_ok:
        from benchmarks.pcx_peer import PcxPeer

        pcx_peer = PcxPeer(sizes, params, net.batch, lr=1e-3, **ALGORITHMS["il"])
        pcx_feeds = pcx_peer.feed(batch)
        # The first call traces and compiles; it is reported apart and kept out of the timings.
        pcx_compile = _time(lambda: pcx_peer.step(pcx_feeds))
        fns["pcx"] = lambda: pcx_peer.step(pcx_feeds)
    timed = interleaved(fns, repeats, warmup, min_seconds)
    rows = []

    def row(name: str, key: str) -> dict:
        out = {"network": net.name, "algorithm": name, "ms": timed.median(key) * 1e3}
        if "torch" in timed:
            out["vs torch"] = timed.ratio(key, "torch")
        if "numpy" in timed:
            out["vs numpy"] = timed.ratio(key, "numpy")
        return out

    for algo in ALGORITHMS:
        rows.append(row(algo, algo))
    rows[0]["rounds"] = timed.rounds
    if "pcx" in timed:
        rows.append(row(f"pcx il ({ALGORITHMS['il']['steps']} steps)", "pcx"))
        rows[0]["il/pcx"] = timed.ratio("il", "pcx")
        rows[0]["pcx compile"] = pcx_compile
    if "torch" in timed:
        rows.append(
            {"network": net.name, "algorithm": "pytorch", "ms": timed.median("torch") * 1e3}
        )
    if "numpy" in timed:
        # A step's fraction of the GEMM rate is its FLOPs over the GEMM's FLOP rate (both in the
        # same round), divided by its seconds: flops / (2 n^3) * (gemm seconds / step seconds).
        gemm_flops = mlp_flops(sizes, net.batch) / (2 * GEMM_N**3)
        rows[0]["gemm"] = gemm_flops * timed.ratio("gemm", "bp")
        for name, key in (("numpy (hand)", "numpy"), (CEILING, "numpy out=")):
            hand = {"network": net.name, "algorithm": name, "ms": timed.median(key) * 1e3}
            if "torch" in timed:
                hand["vs torch"] = timed.ratio(key, "torch")
            rows.append({**hand, "gemm": gemm_flops * timed.ratio("gemm", key)})
        for name, key in (
            ("bp", "bp loop"),
            ("numpy (hand)", "numpy loop"),
            (CEILING, "numpy out= loop"),
        ):
            rows.append(
                {
                    "network": net.name,
                    "algorithm": f"{name}, training loop",
                    "ms": timed.median(key) / LOOP * 1e3,
                    "gemm": gemm_flops * LOOP * timed.ratio("gemm", key),
                }
            )
    rows[0]["zil/bp"] = timed.ratio("zil", "bp")
    rows[0]["profile"] = bp_profile(prog, params, batch, repeats)
    mem = {a: peak_bytes(lambda a=a: prog.grads(params, batch, algorithm=a)) for a in ("bp", "zil")}
    rows[0]["mem"] = f"{mem['zil'] / mem['bp']:.2f} ({mem['bp'] / 2**20:.1f} MiB bp)"
    return rows


def bp_profile(prog: pc.Program, params: dict, batch: dict, repeats: int) -> str:
    """Where the bp step's time goes: each op's share (forward and VJPs), and what is spent
    outside the schedule (feed checks, the finiteness check, the optimiser), by difference
    with ``train_step``.  Profiled runs and timed steps alternate, ``repeats`` of each, so the
    machine's drift shifts both alike; medians."""
    sgd = pc.optim.SGD(lr=1e-3)
    runs, steps = [], []
    for _ in range(repeats):
        runs.append(prog.profile(params, batch, "bp", repeats=1))
        steps.append(_time(lambda: prog.train_step(params, batch, "bp", optimizer=sgd)))
    per_op: dict[str, float] = {}
    for i, (_, s, _) in enumerate(runs[0]):
        op = getattr(s, "op", type(s).__name__.lower())
        per_op[op] = per_op.get(op, 0.0) + statistics.median(run[i][2] for run in runs)
    step = statistics.median(steps)
    per_op["outside the schedule"] = max(step - sum(per_op.values()), 0.0)
    top = sorted(per_op.items(), key=lambda kv: -kv[1])
    shares = ", ".join(f"{op} {t * 1e3:.2f} ({t / step:.0%})" for op, t in top if t / step >= 0.01)
    return f"step {step * 1e3:.2f} ms: {shares}"


def source_revision() -> str:
    """The git commit of the checkout pcgraph is imported from (``+`` when its library or
    benchmark sources have uncommitted changes); '' when it is not imported from a checkout."""
    import subprocess

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


def versions(pcx_ok: bool = False) -> dict[str, str]:
    rev = source_revision()
    pcgraph = pc.__version__ + (f" (commit {rev})" if rev else "")
    out = {"python": platform.python_version(), "numpy": np.__version__, "pcgraph": pcgraph}
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:
        out["torch"] = "not installed"
    if pcx_ok:
        from importlib.metadata import version

        import jax

        out["pcx"] = version("pcx")  # the package has no __version__
        out["jax"] = jax.__version__
    return out


def blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info

        return ", ".join(f"{i['internal_api']}={i['num_threads']}" for i in threadpool_info())
    except ImportError:
        return f"OPENBLAS/OMP_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}"


def render(rows: list[dict], extra: dict[str, str], gemm: float, header: dict[str, str]) -> str:
    lines = ["# pcgraph benchmarks", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += [
        f"- float32 GEMM ({GEMM_N}^2): {gemm / 1e9:.0f} GFLOP/s at the end of the run; the GEMM "
        "rate column divides by the rate measured in the same interleaved rounds as the step",
        "",
    ]
    lines += [
        "| network | algorithm | ms/step (median) | / PyTorch | / hand NumPy | GEMM rate "
        "| zil / bp time | zil / bp peak memory | rounds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:

        def fmt(key: str, spec: str) -> str:
            return format(r[key], spec) if key in r else ""

        gem = f"{r['gemm']:.0%}" if "gemm" in r else ""
        lines.append(
            f"| {r['network']} | {r['algorithm']} | {r['ms']:.3f} | "
            f"{fmt('vs torch', '.2f')} | {fmt('vs numpy', '.2f')} | {gem} | "
            f"{fmt('zil/bp', '.3f')} | {r.get('mem', '')} | {r.get('rounds', '')} |"
        )
    lines += [""] + [f"- {k}: {v}" for k, v in extra.items()] + [""]
    lines += [
        "Where the bp step's time goes, in ms (`Program.profile` alternating with timed "
        "steps, medians; ops of 1% and more):",
        "",
    ]
    lines += [f"- {r['network']}: {r['profile']}" for r in rows if "profile" in r] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, 1 repeat: keeps CI honest")
    ap.add_argument(
        "--repeats", type=int, default=9, help="timed rounds per network, at least (>= 7)"
    )
    ap.add_argument(
        "--seconds",
        type=float,
        default=4.0,
        help="more rounds until a network's timed rounds take this long (default 4)",
    )
    ap.add_argument("--out", default="BENCHMARKS.md", help="where to write the Markdown report")
    ap.add_argument(
        "--only",
        default="",
        metavar="TEXT",
        help="run only the networks whose name contains TEXT (e.g. 'mlp', 'b256')",
    )
    args = ap.parse_args(argv)
    repeats, warmup = (1, 1) if args.smoke else (max(args.repeats, 7), 3)
    seconds = 0.0 if args.smoke else max(args.seconds, 0.0)
    try:
        import torch

        torch.set_num_threads(int(benchmarks.THREADS))
        torch_ok = True
    except ImportError:
        torch_ok = False
    pcx_ok = pcx_available()
    rows: list[dict] = []
    chosen = [net for net in networks(args.smoke) if args.only in net.name]
    if not chosen:
        names = ", ".join(repr(net.name) for net in networks(args.smoke))
        ap.error(f"--only {args.only!r} matches none of the networks: {names}")
    for net in chosen:
        rows += bench_network(net, repeats, warmup, torch_ok, pcx_ok, seconds)
    nodes = 100 if args.smoke else 1000
    extra = {
        f"compile a {nodes:,}-node graph (with bp and zil schedules)": (
            f"{compile_time(nodes) * 1e3:.0f} ms"
        ),
    }
    for r in rows:
        if "il/pcx" in r:
            extra[f"pcgraph il / pcx il, {r['network']}"] = (
                f"{r['il/pcx']:.2f} (PCX's first call, tracing and XLA compilation, "
                f"{r['pcx compile']:.1f} s, not timed)"
            )
    if pcx_ok:
        il = ALGORITHMS["il"]
        extra["pcx il"] = (
            "PCX's step on the same weights and batch: vodes at pcgraph's value nodes (each "
            f"linear and relu), feed-forward init, {il['steps']} SGD steps (rate {il['rate']}) on "
            "the batch-summed energy, one SGD step on the weights (batch mean); one jitted "
            "function, blocked on (benchmarks/pcx_peer.py)"
        )
    threads = blas_threads() + (
        f", XLA PJRT_NPROC={os.environ.get('PJRT_NPROC')}" if pcx_ok else ""
    )
    header = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "threads": f"{benchmarks.THREADS} ({threads})",
        "versions": ", ".join(f"{k} {v}" for k, v in versions(pcx_ok).items()),
        "method": f"train step incl. SGD update, float32; interleaved rounds after {warmup} "
        f"warm-up rounds, at least {repeats} per network and more until they take "
        f"{seconds:g} s (the rounds column); ms are medians over the rounds, ratios (and "
        "GEMM-rate fractions) medians of the ratio within each round",
    }
    text = render(rows, extra, gemm_rate(GEMM_N), header)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
