"""``pcgraph.compare``: runs from the same start, trained in lockstep on the same batches."""

from __future__ import annotations

import numpy as np
import pytest

import pcgraph as pc


def mlp() -> pc.Program:
    g = pc.Graph("tiny")
    x = g.input("x", (6,))
    h = pc.tanh(x @ g.param("W1", (6, 5)) + g.param("b1", (5,)))
    g.set_loss(pc.softmax_cross_entropy(h @ g.param("W2", (5, 3)), g.target("y", (), "int64")))
    return pc.compile(g, dtype="float64")


def feeds(n: int = 10, batch: int = 4) -> list[dict[str, np.ndarray]]:
    """``n`` random examples in batches of ``batch`` (the last one shorter)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((n, 6)), rng.integers(0, 3, n)
    return [{"x": x[i : i + batch], "y": y[i : i + batch]} for i in range(0, n, batch)]


def test_same_start_gives_each_run_its_own_copy() -> None:
    prog = mlp()
    runs = pc.compare.same_start(
        prog, ["bp", "il"], lambda: pc.optim.SGD(lr=0.1), seed=3, options={"il": {"steps": 5}}
    )
    assert list(runs) == ["bp", "il"] and runs["il"].options == {"steps": 5}
    assert runs["bp"].optimizer is not runs["il"].optimizer
    assert pc.compare.max_abs_diff(runs["il"].params, prog.init_params(seed=3)) == 0.0
    runs["bp"].params["W1"] += 1.0  # in place: must not reach the other run
    assert pc.compare.max_abs_diff(runs["il"].params, prog.init_params(seed=3)) == 0.0
    with pytest.raises(pc.OptionError, match="only once"):
        pc.compare.same_start(prog, ["bp", "bp"], lambda: pc.optim.SGD(lr=0.1))


def test_train_epoch_in_lockstep_zil_stays_equal_to_bp() -> None:
    prog = mlp()
    runs = pc.compare.same_start(prog, ["bp", "zil", "il"], lambda: pc.optim.SGD(lr=0.5))
    calls = []
    for _ in range(2):
        pc.compare.train_epoch(prog, runs, feeds(), on_batch=lambda: calls.append(1))
    assert len(calls) == 6  # 3 batches a call
    assert [r.step for r in runs.values()] == [6, 6, 6]
    bp, zil, il = runs.values()
    assert pc.compare.max_abs_diff(zil.params, bp.params) <= 1e-12
    assert pc.compare.max_abs_diff(il.params, bp.params) > 1e-6
    # The statistics describe the latest call only; the mean loss weighs batches by size.
    assert len(bp.losses) == 3 and bp.examples == 10 and bp.seconds > 0
    assert bp.mean_loss == pytest.approx(np.dot(bp.losses, [4, 4, 2]) / 10)


def test_train_epoch_takes_a_list_of_runs_and_passes_their_options() -> None:
    prog = mlp()
    few, many = (
        pc.compare.Run("il", prog.init_params(), pc.optim.SGD(lr=0.5), {"steps": n})
        for n in (1, 50)
    )
    pc.compare.train_epoch(prog, [few, many], feeds())
    assert few.step == many.step == 3
    assert pc.compare.max_abs_diff(few.params, many.params) > 1e-6
    bad = pc.compare.Run("il", prog.init_params(), pc.optim.SGD(lr=0.5), {"nope": 1})
    with pytest.raises(pc.OptionError, match="no option 'nope'"):
        pc.compare.train_epoch(prog, [bad], feeds())


def test_max_abs_diff_and_max_abs() -> None:
    a = {"w": np.array([1.0, -3.0], np.float32), "b": np.array([0.5], np.float32)}
    b = {"w": np.array([1.0, 1.0], np.float32), "b": np.array([0.25], np.float32)}
    assert pc.compare.max_abs_diff(a, b) == 4.0
    assert pc.compare.max_abs(a) == 3.0
    assert pc.compare.max_abs_diff({}, {}) == 0.0 and pc.compare.max_abs({}) == 0.0
    # In float64: a gap below float32's resolution at 1 still shows.
    tiny = {"w": np.array([1.0 + 1e-12])}
    assert pc.compare.max_abs_diff(tiny, {"w": np.array([1.0], np.float32)}) > 0
