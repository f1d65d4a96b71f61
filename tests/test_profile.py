"""``Program.profile``: the time of each executed schedule step, labelled as the schedule prints it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import mlp, residual

import pcgraph as pc
from pcgraph.execute import lower
from pcgraph.testing import random_batch


@pytest.mark.parametrize("algorithm, options", [("bp", {}), ("zil", {}), ("il", {"steps": 3})])
def test_profile_has_one_row_per_executed_step_in_schedule_order(
    algorithm: str, options: dict
) -> None:
    g = residual()
    prog = pc.compile(g)
    rows = prog.profile(prog.init_params(0), random_batch(g), algorithm, repeats=3, **options)
    expected = prog.schedule(algorithm, **options).executed()
    assert [(sec, step) for sec, step, _ in rows] == expected
    assert all(isinstance(t, float) and t > 0 for *_, t in rows)


def test_lowering_runs_every_executed_step_once_and_one_nodes_vjps_as_one_kernel() -> None:
    g = residual()
    prog = pc.compile(g)
    sched = prog.schedule("bp")
    lowered = lower(sched, prog.xp, prog.backend.kernels, prog._float)
    covered = [i for instr in lowered.items for i in instr.steps]
    assert covered == list(range(len(sched.executed())))
    for instr in lowered.items:
        nodes = {sched.executed()[i][1].node for i in instr.steps}
        assert len(nodes) == 1  # a kernel serves one node's VJPs, never two nodes'
    assert len(lowered.items) < len(sched.executed())  # and some node has several operands


def test_a_step_kind_without_a_lowering_is_refused_by_name() -> None:
    @dataclasses.dataclass(frozen=True)
    class Teleport:
        node: str

    g = residual()
    prog = pc.compile(g)
    sched = prog.schedule("bp")
    odd = dataclasses.replace(
        sched, sections=(pc.schedule.Section("odd", (Teleport("x"),)),) + sched.sections
    )
    with pytest.raises(TypeError, match=r"cannot run step .*Teleport\(node='x'\)"):
        lower(odd, prog.xp, prog.backend.kernels, prog._float)


def test_profiling_leaves_the_results_and_later_runs_unchanged() -> None:
    g = mlp()
    prog = pc.compile(g, dtype="float64")
    params, batch = prog.init_params(0), random_batch(g)
    before = prog.grads(params, batch, "zil")
    prog.profile(params, batch, "zil", repeats=2)
    after = prog.grads(params, batch, "zil")
    assert all(np.array_equal(before[p], after[p]) for p in prog.params)


def test_a_loops_steps_carry_the_time_of_all_its_iterations() -> None:
    g = mlp()
    prog = pc.compile(g, dtype="float64")
    rows = prog.profile(prog.init_params(0), random_batch(g), "il", repeats=1, steps=40)
    loop = [t for sec, _, t in rows if sec == "inference t=1..39"]
    once = [t for sec, _, t in rows if sec == "inference t=0"]
    assert len(loop) > len(once)  # the loop also recomputes the moving predictions
    assert sum(loop) > 10 * sum(once)  # 39 iterations against one


class _FailsOnSecondRead(dict):
    """A batch whose arrays can be read once: the profile's timed runs then fail."""

    reads = 0

    def __getitem__(self, key: str) -> object:
        self.reads += 1
        if self.reads > len(self):
            raise RuntimeError("the batch went away")
        return super().__getitem__(key)


def test_a_run_that_fails_while_timed_leaves_the_program_working() -> None:
    g = mlp()
    prog = pc.compile(g)
    with pytest.raises(RuntimeError, match="went away"):
        prog.profile(prog.init_params(0), _FailsOnSecondRead(random_batch(g)), "bp")
    assert prog.grads(prog.init_params(0), random_batch(g))  # and the program still runs


def test_a_step_that_fails_while_timed_leaves_the_program_working(monkeypatch) -> None:  # noqa: ANN001
    tanh = pc.ops.OPS["tanh"]
    calls = []

    def fails_after_the_warm_up(xp: object, xs: list) -> object:
        calls.append(1)
        if 2 < len(calls) < 5:  # the warm-up run evaluates the two hidden layers' tanh
            raise FloatingPointError("a kernel failed")
        return tanh.forward(xp, xs)

    monkeypatch.setitem(
        pc.ops.OPS, "tanh", dataclasses.replace(tanh, forward=fails_after_the_warm_up)
    )
    g = mlp(sizes=(6, 5, 4, 3))
    prog = pc.compile(g)
    params, batch = prog.init_params(0), random_batch(g)
    with pytest.raises(FloatingPointError, match="kernel failed"):
        prog.profile(params, batch, "bp", repeats=3)
    assert len(calls) == 3  # it failed in the first timed run, partway through the schedule
    calls.extend([1, 1])
    assert all(np.all(np.isfinite(v)) for v in prog.grads(params, batch).values())


@pytest.mark.parametrize("repeats", [0, -1, 2.5, True])
def test_profile_refuses_a_repeat_count_that_is_not_a_positive_integer(repeats: object) -> None:
    prog = pc.compile(mlp())
    with pytest.raises(pc.OptionError, match="repeats"):
        prog.profile(prog.init_params(0), random_batch(mlp()), repeats=repeats)
