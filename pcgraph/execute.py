"""The one interpreter: runs the steps of any schedule on a backend's array namespace.

State is a dict of named stores (``"x"`` values, ``"ff"`` feed-forward values, ``"mu"``
predictions, ``"g"`` cotangents, ``"e"`` errors, ``"s"`` children's error sums, ``"d"``
parameter increments), each a dict node -> array.  Arrays are never written in place, so a
snapshot of a store is a shallow copy.  Backends know no graph; the executor knows no array
library beyond the namespace ``xp`` it is handed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .compile import Compiled
from .ops import OPS
from .schedule import (
    VJP,
    Clear,
    Error,
    Eval,
    GradientUnits,
    Normalise,
    Perturb,
    ProxOutput,
    Relax,
    Seed,
    Snapshot,
    Update,
)


def accumulate(store: dict, key: str, value: Any) -> None:
    """``store[key] += value``, creating the entry on first use (never writes into ``value``)."""
    prev = store.get(key)
    store[key] = value if prev is None else prev + value


def _sq_norm(xp: Any, arrays: list) -> Any:
    """Per-example squared norm summed over ``arrays`` (each batched): shape (B,)."""
    total = 0.0
    for a in arrays:
        total = total + xp.sum(xp.reshape(a * a, (a.shape[0], -1)), axis=1)
    return total


def _kernel(xp: Any, c: Compiled, step: Any, dtype: Any) -> Callable[[dict, int], None]:
    """One step as a closure over everything that does not change between runs."""
    kind = type(step)
    if kind is Eval:
        spec = c.nodes[step.node]
        fwd, kw, operands, into, node = (
            OPS[spec.op].forward,
            spec.lowered,
            step.operands,
            step.into,
            step.node,
        )

        def run_eval(state: dict, batch: int) -> None:
            x = state["x"]
            state[into][node] = fwd(xp, [x[o] for o in operands], **kw)

        return run_eval
    if kind is VJP:
        spec = c.nodes[step.node]
        vjp, kw, operands, argnum = (OPS[spec.op].vjp, spec.lowered, spec.operands, step.argnum)
        node, src, into, at, out, target = (
            step.node,
            step.src,
            step.into,
            step.at,
            step.out or step.at,
            step.operand,
        )

        def run_vjp(state: dict, batch: int) -> None:
            where = state[at]
            cot = vjp(
                xp, argnum, state[src][node], state[out][node], [where[o] for o in operands], **kw
            )
            accumulate(state.setdefault(into, {}), target, cot)

        return run_vjp
    if kind is Seed:
        node, into, value = step.node, step.into, step.value
        # One array per batch size, made once: stored arrays are never written in place, so
        # every run may share it (IL seeds its loss error at every inference step).
        seeds: dict[int, Any] = {}

        def run_seed(state: dict, batch: int) -> None:
            seed = seeds.get(batch)
            if seed is None:
                fill = 1.0 / batch if value == "1/B" else float(value)
                seed = seeds[batch] = xp.full((batch,), fill, dtype=dtype)
            state.setdefault(into, {})[node] = seed

        return run_seed
    if kind is Relax:
        node = step.node

        def run_relax(state: dict, batch: int) -> None:
            state["e"][node] = state["s"].pop(node)

        return run_relax
    if kind is Update:
        node, rate = step.node, step.rate

        def run_update(state: dict, batch: int) -> None:
            x, e, s = state["x"], state["e"], state["s"]
            drive, err = s.pop(node, None), e.get(node)
            if drive is None and err is None:
                return
            # ``step`` is a fresh array, so scaling and adding in place writes no stored value.
            if err is None:
                step = drive * rate
            elif drive is None:
                step = err * -rate
            else:
                step = drive - err
                step *= rate
            step += x[node]
            x[node] = step

        return run_update
    if kind is GradientUnits:
        names = step.nodes

        def run_gradient_units(state: dict, batch: int) -> None:
            e, eg = state["e"], state.setdefault("eg", {})
            for n in names:
                eg[n] = e[n] * (-1.0 / batch)

        return run_gradient_units
    if kind is Error:
        node, mu = step.node, step.mu

        def run_error(state: dict, batch: int) -> None:
            state["e"][node] = state["x"][node] - state[mu][node]

        return run_error
    if kind is Snapshot:
        src, into = step.src, step.into
        return lambda state, batch: state.__setitem__(into, dict(state[src]))
    if kind is Clear:
        store_name, names = step.store, step.nodes

        def run_clear(state: dict, batch: int) -> None:
            store = state.setdefault(store_name, {})
            for n in names:
                store.pop(n, None)

        return run_clear
    if kind is Perturb:
        node, sigma, seed = step.node, step.sigma, step.seed

        def run_perturb(state: dict, batch: int) -> None:
            x = state["x"][node]
            noise = np.random.default_rng(seed).normal(0.0, sigma, size=tuple(x.shape))
            state["x"][node] = x + xp.asarray(noise, dtype=x.dtype)

        return run_perturb
    if kind is ProxOutput:
        node, pre, alpha, eps = step.node, step.presynaptic, step.alpha, step.eps

        def run_prox(state: dict, batch: int) -> None:
            n = _sq_norm(xp, [state["x"][p] for p in pre]) + eps
            scale = alpha * n / (1.0 + alpha * n)
            e = state["e"][node]
            if pre:  # a per-example scale, else one number (no presynaptic activity: n = eps)
                scale = xp.reshape(scale, (batch,) + (1,) * (e.ndim - 1))
            state["e"][node] = e * scale

        return run_prox
    if kind is Normalise:
        param, pre, alpha, eps = step.param, step.presynaptic, step.alpha, step.eps

        def run_normalise(state: dict, batch: int) -> None:
            arrays = [state["x"][p] for p in pre]
            norm = xp.mean(_sq_norm(xp, arrays)) if arrays else 0.0
            d = state.setdefault("d", {})
            if param in d:
                d[param] = d[param] / (alpha * (norm + 1.0 + eps))

        return run_normalise
    raise TypeError(f"the executor cannot run step {step!r}")


def lower(xp: Any, c: Compiled, steps: Iterable, dtype: Any) -> list[Callable[[dict, int], None]]:
    """Steps that run (``Schedule.executed()``: no notes) as closures, one per step, ready to
    be run many times."""
    return [_kernel(xp, c, step, dtype) for step in steps]


def run_kernels(kernels: list, state: dict[str, dict], batch_size: int) -> None:
    """Run lowered steps in order on ``state``."""
    for kernel in kernels:
        kernel(state, batch_size)


def run_kernels_timed(
    kernels: list, state: dict[str, dict], batch_size: int, synchronize: Callable[[], None]
) -> list[float]:
    """``run_kernels``, returning each step's wall time in seconds (for ``Program.profile``).

    ``synchronize`` waits for the device after each step, so that an asynchronous backend's
    time lands on the step that queued the work (it serialises the steps: use it to profile).
    """
    times = []
    synchronize()
    for kernel in kernels:
        start = time.perf_counter()
        kernel(state, batch_size)
        synchronize()
        times.append(time.perf_counter() - start)
    return times
