"""Large graphs: compile time against graph size, and training steps of big unrolled graphs.

``python -m benchmarks.large`` measures, each in fresh processes as ``benchmarks.run`` does:

- compile plus the bp, zil, il and fpa schedules of a chain of ``tanh(h @ W + b)`` layers at
  1,000, 10,000 and 100,000 nodes (the median of ``--rounds`` processes, and the time per node);
- pixel-by-pixel MNIST with the zoo's RNN (T = 784, H = 128, batch 64): pcgraph bp and zil, and
  PyTorch's ``nn.RNN`` with the same weights, processes alternated, medians of per-round ratios;
- the 100-block residual MLP (``models.deep_mlp``): pcgraph bp, zil and il;

and checks (not timed) that one Z-IL step equals BP's in float64 on both networks.  It writes its
section of BENCHMARKS.md between the markers below, leaving the rest of the file as it is.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.contenders import CONTENDERS
from benchmarks.networks import large_networks, random_batch
from benchmarks.run import ROOT, spawn
from benchmarks.timing import paired

BEGIN, END = "<!-- large graphs: benchmarks/large.py -->", "<!-- end of large graphs -->"
SIZES = (1_000, 10_000, 100_000)
CONTENDERS_OF = {"rnn": ["bp", "zil", "torch-rnn"], "deep_mlp": ["bp", "zil", "il"]}


def compile_rows(rounds: int, sizes: tuple[int, ...]) -> tuple[list[str], dict[int, float]]:
    """The table, and the seconds per node at each chain size (keyed by the actual count)."""
    per_node: dict[int, float] = {}
    lines = [
        "| nodes | compile s | bp s | zil s | il s | fpa s | total s | us per node |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        runs = [
            spawn("benchmarks.worker", ["--compile", str(n), "--schedules", "bp,zil,il,fpa"])
            for _ in range(rounds)
        ]
        best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]  # the median run
        parts, nodes = best["parts"], best["nodes"]
        per_node[nodes] = best["seconds"] / nodes
        cells = [f"{parts[k]:.2f}" for k in ("compile", "bp", "zil", "il", "fpa")]
        lines.append(
            f"| {nodes:,} | {' | '.join(cells)} | {best['seconds']:.2f} | {per_node[nodes] * 1e6:.0f} |"
        )
        print(f"compile {nodes} nodes: {best['seconds']:.2f} s", file=sys.stderr)
    return lines, per_node


def exactness() -> list[str]:
    """One Z-IL gradient against BP's, float64, on each large network (largest abs difference)."""
    import pcgraph as pc

    out = []
    for net in large_networks():
        g = net.build()
        prog = pc.compile(g, dtype="float64")
        params = prog.init_params(0)
        batch = random_batch(g, 8)
        batch = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in batch.items()}
        bp = prog.grads(params, batch)
        zil = prog.grads(params, batch, algorithm="zil")
        worst = max(float(np.max(np.abs(zil[k] - bp[k]))) for k in bp)
        scale = max(float(np.max(np.abs(bp[k]))) for k in bp)
        out.append(
            f"- {net.name} ({g.nx.number_of_nodes():,} nodes): one Z-IL gradient vs BP's in "
            f"float64, largest difference {worst:.1e} (largest gradient entry {scale:.1e})"
        )
    return out


def step_rows(rounds: int, seconds: float) -> list[str]:
    lines = [
        "| network | contender | median ms per step | vs pcgraph bp | pairs |",
        "|---|---|---|---|---|",
    ]
    for net in large_networks():
        names = [n for n in CONTENDERS_OF[net.name.split()[0]] if CONTENDERS[n].missing() is None]
        per: dict[str, list[float]] = {n: [] for n in names}
        for r in range(rounds):
            for name in names:
                try:
                    res = spawn("benchmarks.worker", [net.name, name, "--seconds", str(seconds)])
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    print(f"{net.name} {name}: {e}", file=sys.stderr)
                    continue
                per[name].append(res["ms"])
                print(f"  round {r + 1} {net.name} {name}: {res['ms']:.1f} ms", file=sys.stderr)
        for name in names:
            if not per[name]:
                continue
            ratio = paired(per[name], per["bp"]) if name != "bp" and per["bp"] else None
            lines.append(
                f"| {net.name} | {CONTENDERS[name].label} | {statistics.median(per[name]):.1f} | "
                f"{ratio if ratio else '1'} | {len(per[name])} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.large", description=__doc__)
    ap.add_argument("--rounds", type=int, default=5, help="process rounds of the step rows")
    ap.add_argument("--seconds", type=float, default=1.5, help="timed seconds per process")
    ap.add_argument("--out", default="BENCHMARKS.md", help="the report whose section to replace")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one round (for CI)")
    args = ap.parse_args(argv)
    sizes = (200, 800) if args.smoke else SIZES
    table, per_node = compile_rows(1 if args.smoke else 3, sizes)
    small, large = min(per_node), max(per_node)
    growth = per_node[large] / per_node[small]
    body = [
        BEGIN,
        "## Large graphs (`python -m benchmarks.large`)",
        "",
        "Compile plus the bp, zil, il and fpa schedules of a chain of `tanh(h @ W + b)` layers "
        "(the median of 3 processes each):",
        "",
        *table,
        "",
        f"- time per node at {large:,} nodes is {growth:.2f}x the time per node at "
        f"{small:,} (target: within 2x; the total at 100,000 nodes: under 10 s)",
    ]
    if not args.smoke:
        body += ["", *exactness(), "", *step_rows(args.rounds, args.seconds)]
    body += ["", END]
    path = ROOT / args.out if not Path(args.out).is_absolute() else Path(args.out)
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + "\n".join(body) + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + "\n".join(body) + "\n"
    path.write_text(text)
    print("\n".join(body))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
