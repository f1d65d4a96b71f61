"""Large graphs: compiling and emitting schedules grows linearly with the graph.

Work is counted, not timed: the number of lines of pcgraph's own code executed (Python's trace
hook), which a pass that rescans the graph per level or per node would multiply.  Speed itself
is measured by the benchmark harness (BENCHMARKS.md), never here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import pcgraph as pc

PACKAGE = str(Path(pc.__file__).resolve().parent)
ALGORITHMS = ("bp", "zil", "il", "fpa")


def chain(layers: int, width: int = 3) -> pc.Graph:
    """``layers`` of ``tanh(h @ W + b)`` with one shared W and b: 3 nodes a layer."""
    g = pc.Graph("chain")
    h = g.input("x", (width,))
    W, b = g.param("W", (width, width)), g.param("b", (width,))
    for _ in range(layers):
        h = pc.tanh(h @ W + b)
    g.set_loss(pc.mse(h, g.target("y", (width,))))
    return g


def compile_and_schedule(g: pc.Graph) -> pc.Program:
    prog = pc.compile(g)
    for algorithm in ALGORITHMS:
        prog.schedule(algorithm)
    return prog


def compile_schedule_and_run(g: pc.Graph) -> None:
    """Compile, emit every schedule, then lower and run bp and zil once (one example)."""
    prog = compile_and_schedule(g)
    params = prog.init_params(0)
    batch = {"x": np.zeros((1, 3), np.float32), "y": np.zeros((1, 3), np.float32)}
    for algorithm in ("bp", "zil"):
        prog.grads(params, batch, algorithm=algorithm)


def lines_executed(fn, *args) -> int:  # noqa: ANN001
    """How many lines of pcgraph's own code ``fn(*args)`` executes (each loop iteration of a
    comprehension counts too); other libraries' frames are not traced."""
    count = 0

    def local(frame, event, arg):  # noqa: ANN001, ANN202
        nonlocal count
        if event == "line":
            count += 1
        return local

    def start(frame, event, arg):  # noqa: ANN001, ANN202
        return local if frame.f_code.co_filename.startswith(PACKAGE) else None

    sys.settrace(start)
    try:
        fn(*args)
    finally:
        sys.settrace(None)
    return count


def test_compile_and_schedules_do_work_linear_in_the_graph() -> None:
    small, large = chain(400), chain(1600)  # 1,204 and 4,804 nodes
    n_small, n_large = small.nx.number_of_nodes(), large.nx.number_of_nodes()
    work_small = lines_executed(compile_schedule_and_run, small)
    work_large = lines_executed(compile_schedule_and_run, large)
    ratio = (work_large / n_large) / (work_small / n_small)
    assert ratio < 1.25, f"work per node grew {ratio:.2f}x from {n_small} to {n_large} nodes"
    assert work_large / n_large < 2500, "more than 2,500 lines of pcgraph per node"


def test_a_20000_node_graph_compiles_and_zil_equals_bp() -> None:
    g = chain(6667)
    assert g.nx.number_of_nodes() > 20_000
    prog = compile_and_schedule(g)
    rng = np.random.default_rng(0)
    params = {k: v * 0.5 for k, v in prog.init_params(0).items()}
    batch = {"x": rng.normal(size=(2, 3)).astype(np.float32), "y": rng.normal(size=(2, 3))}
    batch["y"] = batch["y"].astype(np.float32)
    bp, zil = prog.grads(params, batch), prog.grads(params, batch, algorithm="zil")
    for k in bp:
        np.testing.assert_array_equal(zil[k], bp[k])


def test_the_pixel_by_pixel_mnist_rnn_trains_with_zil_from_the_cli(tmp_path: Path) -> None:
    from pcgraph import cli

    try:
        pc.data.mnist()
    except pc.FileFormatError as e:
        pytest.skip(f"MNIST is not installed: {e}")
    argv = ["train", "--model", "rnn_many_to_one", "--model-args", "T=784,D=1,H=8"]
    argv += ["--data", "mnist", "--limit", "32", "--test-limit", "16", "--batch-size", "16"]
    argv += ["--epochs", "1", "--algorithm", "zil", "--out", str(tmp_path / "run"), "--no-plot"]
    assert cli.main(argv) == 0
    assert (tmp_path / "run" / "checkpoint.npz").is_file()
