"""The lowered program: slots, the memory plan, residual reuse, loops and the lowering table."""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest
from helpers import ALGORITHM_OPTIONS, GRAPHS, mlp, residual

import pcgraph as pc
from pcgraph.execute import (
    LOWERINGS,
    SCALE_SLOT,
    Instr,
    Loop,
    lower,
    register_lowering,
    saved,
)
from pcgraph.schedule import VJP, Section
from pcgraph.testing import random_batch


def _lowered(prog: pc.Program, algorithm: str, **options: object):  # noqa: ANN202
    return prog._lowered(prog.schedule(algorithm, **options))


def _instrs(items: list) -> list[Instr]:
    return [i for item in items for i in (item.body if isinstance(item, Loop) else [item])]


# ------------------------------------------------------------------ the memory plan
@pytest.mark.parametrize("algorithm", ["bp", "zil", "il", "fpa"])
def test_a_run_keeps_only_its_results_and_the_leaves(algorithm: str) -> None:
    g = residual()
    prog = pc.compile(g, dtype="float64")
    run = prog.run(prog.schedule(algorithm), prog.init_params(0), random_batch(g))
    held = {i for i, v in enumerate(run.slots) if v is not None}
    expected = set(run.lowered.outputs) | set(run.lowered.leaves) | {SCALE_SLOT}
    assert held <= expected  # every intermediate value was dropped after its last read
    kept = prog.run(prog.schedule(algorithm), prog.init_params(0), random_batch(g), keep=True)
    assert len([v for v in kept.slots if v is not None]) > len(held)
    for name, grad in kept.grads().items():  # dropping changes no result
        np.testing.assert_array_equal(grad, run.grads()[name])


def test_dropping_values_lowers_the_peak_memory_of_a_step() -> None:
    g = mlp(sizes=(64, 256, 256, 256, 10), activation=pc.relu)
    prog = pc.compile(g, dtype="float64")
    params, batch = prog.init_params(0), random_batch(g, size=256)
    peaks = {}
    for keep in (False, True):
        prog.run(prog.schedule("bp"), params, batch, keep=keep)  # lowered, not measured
        tracemalloc.start()
        prog.run(prog.schedule("bp"), params, batch, keep=keep)
        peaks[keep] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[False] < 0.8 * peaks[True]


def test_zil_needs_no_more_memory_than_backprop() -> None:
    g = mlp(sizes=(64, 256, 256, 256, 10), activation=pc.relu)
    prog = pc.compile(g, dtype="float64")
    params, batch = prog.init_params(0), random_batch(g, size=256)
    peaks = {}
    for algorithm in ("bp", "zil"):
        prog.grads(params, batch, algorithm)
        tracemalloc.start()
        prog.grads(params, batch, algorithm)
        peaks[algorithm] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks["zil"] <= 1.02 * peaks["bp"]


# ------------------------------------------------------------------ saved residuals
def _residual_readers(prog: pc.Program, algorithm: str, **options: object) -> dict[str, bool]:
    """For each executed VJP step of an op that saves a residual: whether its kernel reads it."""
    lowered = _lowered(prog, algorithm, **options)
    steps = lowered.schedule.executed()
    layout = lowered.layout
    out = {}
    for instr in _instrs(lowered.items):
        title, step = steps[instr.steps[0]]
        if isinstance(step, VJP) and pc.ops.OPS[step.op].saves is not None:
            residual = layout.slot(saved(step.out or step.at), step.node)
            out[f"{title}: {step}"] = layout.has(saved(step.out or step.at)) and (
                residual in instr.reads
            )
    return out


def test_backprop_reuses_every_residual_its_forward_saved() -> None:
    prog = pc.compile(pc.models.lenet(in_shape=(1, 12, 12), channels=(2, 3), kernel=3))
    readers = _residual_readers(prog, "bp")
    assert readers and all(readers.values())  # conv2d, max_pool2d, the cross-entropy


def test_il_reuses_a_residual_only_where_the_operands_are_those_the_forward_saw() -> None:
    prog = pc.compile(mlp(activation=pc.relu))
    readers = _residual_readers(prog, "il", steps=5)
    loss_vjps = {k: v for k, v in readers.items() if "softmax_cross_entropy" in k}
    # At step 0 the logits are the feed-forward ones: the forward's softmax serves.  Later
    # the logits have been recomputed from moved values, so the VJP must recompute it too.
    first = [v for k, v in loss_vjps.items() if k.startswith("inference t=0:")]
    assert first == [True]
    later = [v for k, v in loss_vjps.items() if not k.startswith("inference t=0")]
    assert later and not any(later)


def test_results_do_not_depend_on_reusing_residuals(monkeypatch: pytest.MonkeyPatch) -> None:
    g = pc.models.lenet(in_shape=(1, 12, 12), channels=(2, 3), kernel=3)
    batch = random_batch(g, size=3, classes=10)
    prog = pc.compile(g, dtype="float64")
    params = prog.init_params(0)
    reused = {a: prog.grads(params, batch, a, steps=3) for a in ("il", "fpa")}
    reused["bp"] = prog.grads(params, batch, "bp")
    monkeypatch.setattr(pc.execute.Lowerer, "reuses_saved", lambda self, r, ops: False)
    fresh = pc.compile(g, dtype="float64")
    for algorithm, grads in reused.items():
        opts = {} if algorithm == "bp" else {"steps": 3}
        again = fresh.grads(params, batch, algorithm, **opts)
        for name in grads:
            np.testing.assert_allclose(grads[name], again[name], rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------ loops
def test_a_loop_runs_its_body_as_often_as_the_unrolled_steps_would() -> None:
    g = residual()
    prog = pc.compile(g, dtype="float64")
    params, batch = prog.init_params(0), random_batch(g)
    looped = prog.schedule("il", steps=6)
    assert [s.repeat for s in looped.sections] == [1, 1, 5, 1, 1]
    # The same steps with the loop written out, section by section.
    unrolled = dataclasses.replace(
        looped,
        sections=tuple(
            dataclasses.replace(sec, title=f"{sec.title} #{k}", repeat=1)
            for sec in looped.sections
            for k in range(sec.repeat)
        ),
    )
    a = prog.run(looped, params, batch).grads()
    b = prog.run(unrolled, params, batch).grads()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_a_section_repeats_a_positive_whole_number_of_times() -> None:
    with pytest.raises(ValueError, match="repeat"):
        Section("loop", (), repeat=0)
    with pytest.raises(ValueError, match="repeat"):
        Section("loop", (), repeat=True)


# ------------------------------------------------------------------ the lowering table
def test_an_algorithm_brings_its_own_step_kinds() -> None:
    from pcgraph.algorithms.epc import ErrorStep, Reconstruct
    from pcgraph.algorithms.ilprox import Normalise, ProxOutput
    from pcgraph.algorithms.ipc import ParamStep

    own = (ProxOutput, Normalise, ParamStep, Reconstruct, ErrorStep)
    assert all(kind in LOWERINGS for kind in own)
    core = {k.__module__ for k in LOWERINGS if k not in own}
    assert core == {"pcgraph.schedule"}  # the core knows none of IL-prox's, iPC's, ePC's steps


def test_a_registered_step_kind_runs_in_schedules(monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclasses.dataclass(frozen=True)
    class Halve:
        """``g[node] *= 0.5``: a made-up step kind, registered from outside the core."""

        node: str

        def __str__(self) -> str:
            return f"g[{self.node}] *= 0.5"

    def lower_halve(lw, steps):  # noqa: ANN001, ANN202
        (step,) = steps
        slot = lw.update("g", step.node)

        def run(slots: list, batch: int) -> None:
            slots[slot] = slots[slot] * 0.5

        return lw.instr(run)

    monkeypatch.setitem(LOWERINGS, Halve, lower_halve)
    g = GRAPHS["mlp-tanh"]()
    prog = pc.compile(g, dtype="float64")
    params, batch = prog.init_params(0), random_batch(g)
    bp = prog.schedule("bp")
    backward = bp.section("backward")
    halved = dataclasses.replace(
        bp,
        sections=(
            bp.sections[0],
            dataclasses.replace(
                backward, steps=backward.steps[:1] + (Halve(bp.compiled.loss),) + backward.steps[1:]
            ),
        ),
    )
    assert "g[softmax_cross_entropy_0] *= 0.5" in str(halved)
    half = prog.run(halved, params, batch).grads()
    full = prog.grads(params, batch)
    for name in full:
        np.testing.assert_allclose(half[name], 0.5 * full[name], rtol=1e-14)
    assert register_lowering is not None  # the public way to do what setitem did here


def test_lowering_refuses_a_schedule_that_carries_no_graph() -> None:
    prog = pc.compile(mlp())
    bare = dataclasses.replace(prog.schedule("bp"), compiled=None)
    with pytest.raises(TypeError, match="carries no graph"):
        lower(bare, prog.xp, prog.backend.kernels, prog._float)


def test_a_backend_may_replace_the_lowering_of_a_step_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    from pcgraph.schedule import Update

    calls = []
    core = LOWERINGS[Update]

    def counting(lw, steps):  # noqa: ANN001, ANN202
        instr = core(lw, steps)
        run = instr.run

        def counted(slots: list, batch: int) -> None:
            calls.append(steps[0].node)
            run(slots, batch)

        instr.run = counted
        return instr

    g = residual()
    prog = pc.compile(g, dtype="float64")
    params, batch = prog.init_params(0), random_batch(g)
    expected = prog.grads(params, batch, "il", steps=3)
    monkeypatch.setattr(prog.backend, "lowerings", {Update: counting}, raising=False)
    other = pc.compile(g, dtype="float64")  # lowers anew, with the backend's lowering
    got = other.grads(params, batch, "il", steps=3)
    per_step = [s for s in other.schedule("il", steps=3).section("inference t=0").steps]
    updates = [s.node for s in per_step if isinstance(s, Update)]
    assert calls == updates * 3  # the backend's lowering ran every update of the 3 steps
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])


def test_a_sweep_over_options_keeps_a_bounded_number_of_programs() -> None:
    from pcgraph.program import _MAX_SCHEDULES

    g = mlp()
    prog = pc.compile(g)
    params, batch = prog.init_params(0), random_batch(g)
    for k in range(_MAX_SCHEDULES + 20):
        prog.schedule("il", steps=1, rate=0.01 + k * 1e-4)
    prog.grads(params, batch, "il", steps=1, rate=0.5)
    assert len(prog._schedules) <= _MAX_SCHEDULES and len(prog._programs) <= _MAX_SCHEDULES


@pytest.mark.parametrize("algorithm", ["bp", "zil", "il", "fpa", "il-prox", "ipc"])
def test_a_runs_scale_multiplies_its_gradients_and_nothing_else(algorithm: str) -> None:
    # Plain SGD folds -lr into the gradients where they are made.  For IL the inference itself
    # must not move (its dynamics are not linear in the seed): only the increments scale.
    g = residual()
    prog = pc.compile(g, dtype="float64")
    params, batch = prog.init_params(0), random_batch(g)
    options = ALGORITHM_OPTIONS.get(algorithm, {})
    schedule = prog.schedule(algorithm, **options)
    plain = prog.run(schedule, params, batch)
    scaled = prog.run(schedule, params, batch, scale=-0.125)
    np.testing.assert_array_equal(scaled.loss, plain.loss)
    for name, grad in plain.grads().items():
        np.testing.assert_allclose(scaled.grads()[name], -0.125 * grad, rtol=1e-13, atol=1e-16)
