"""Optimisers: SGD (with momentum) and Adam, in two phases so a step applies everything or nothing.

``stage(params, grads, kernels)`` computes each parameter's step (the delta its value moves by)
and the new state into buffers the optimiser owns, one fused pass per array where the backend's
kernels allow it, and finiteness probes over them (sums of squares: one BLAS dot product for
all the steps, which live in one flat buffer); nothing the caller holds changes.
``commit(staged)`` then adds the steps to the parameter arrays, in place, and adopts the new
state.  ``Program.train_step`` commits only when the probes, together with the parameters' own
sum of squares, prove every new value finite: ``|p + delta| <= ||p|| + ||delta||``, so finite
sums whose square roots add up to less than half the largest float leave no room for an
overflow; otherwise an exact scan decides.

Momentum and Adam's moments decay geometrically where gradients are zero (dead ReLU units),
into subnormal floats, on which CPU arithmetic is 10-100x slower: every few steps the staged
state has entries below ``2**20`` times the smallest normal float set to zero, early enough
that none can become subnormal in between.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import checks
from .errors import OptionError

_FLUSH_MARGIN = 20  # flush below tiny * 2**20: 20 halvings before a value turns subnormal


def _check(
    name: str,
    value: Any,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    what: str = "",
) -> float:
    """A finite setting in range, as a float (NumPy scalars taken as their numbers)."""
    return checks.real(value, f"{what}: {name}", low, high, low_open)


def flush_period(decay: float) -> int:
    """Steps between flushes of state that decays by at most ``decay`` per step: half the
    steps a value needs to fall from the flush threshold to the subnormal range."""
    if decay <= 0.0:
        return 1
    if decay >= 1.0:
        return 1_000_000
    return max(1, int(_FLUSH_MARGIN * math.log(2) / -math.log(decay)) // 2)


@dataclass
class Staged:
    """What a step would apply: each parameter's delta, the new state, and finiteness probes
    (0-d arrays: ``probe`` the sum of squares of every delta, ``state_probe`` that of the state
    entries a finite delta does not prove finite (Adam's second moment), or None)."""

    deltas: dict[str, Any]
    state: dict[str, Any]
    step: int
    probe: Any
    state_probe: Any = None


class Optimizer:
    """Base class: ``stage`` and ``commit`` (``apply`` does both)."""

    state_roles: tuple[str, ...] = ()  # state entries are "<role>/<param name>" arrays

    def __init__(self) -> None:
        self.state: dict[str, Any] = {"step": 0}
        self._scratch: dict[tuple[str, str], Any] = {}
        self._flat: tuple | None = None  # (layout, flat buffer, views) of staged parameters

    # ------------------------------------------------------------------ the two phases
    def gradient_scale(self) -> float:
        """A factor the gradients may come already multiplied by (``Program.run``'s
        ``scale``): 1, unless the step is that multiple of the gradient."""
        return 1.0

    def stage(
        self,
        params: Mapping[str, Any],
        grads: Mapping[str, Any],
        kernels: Any,
        scale: float = 1.0,
        lr_scale: Mapping[str, float] | None = None,
    ) -> Staged:
        """Each parameter's delta and the new state, into the optimiser's own buffers;
        ``grads`` come multiplied by ``scale`` (this optimiser's ``gradient_scale()``, or 1);
        ``lr_scale`` multiplies the learning rate of the parameters it names (the graph's
        per-parameter factors, ``Graph.param(lr_scale=)``)."""
        raise NotImplementedError

    def commit(self, staged: Staged, params: Mapping[str, Any], kernels: Any) -> None:
        """Add ``staged``'s deltas to the arrays of ``params`` (in place); adopt its state."""
        for name, delta in staged.deltas.items():
            kernels.add_into(params[name], delta)
        for key, new in staged.state.items():
            old = self.state.get(key)
            self.state[key] = new
            if old is not None:  # the old state array is the next step's buffer
                self._scratch[("state", key)] = old
        self.state["step"] = staged.step

    def apply(self, params: Mapping[str, Any], grads: Mapping[str, Any], kernels: Any) -> None:
        """``commit(stage(...))`` of unscaled gradients, with no finiteness check."""
        self.commit(self.stage(params, grads, kernels), params, kernels)

    def _param_buffers(self, params: Mapping[str, Any], kernels: Any) -> tuple[Any, dict]:
        """One flat buffer for every parameter's delta, and a view of it per parameter: the
        finiteness probe is then one dot product, whatever the number of parameters."""
        layout = tuple((k, v.shape, v.dtype, type(v)) for k, v in params.items())
        if self._flat is not None and self._flat[0] == layout:
            return self._flat[1], self._flat[2]
        xp = kernels.xp
        dtypes = {d for _, _, d, _ in layout}
        if not kernels.inplace or len(dtypes) != 1:
            self._flat = None
            return None, {}
        sizes = [math.prod(shape) for _, shape, _, _ in layout]
        flat = xp.empty((sum(sizes),), dtype=next(iter(params.values())).dtype)
        views, start = {}, 0
        for (name, shape, _, _), n in zip(layout, sizes):
            views[name] = xp.reshape(flat[start : start + n], shape)
            start += n
        self._flat = (layout, flat, views)
        return flat, views

    def _buffer(self, role: str, key: str, like: Any, kernels: Any) -> Any:
        """A buffer shaped like ``like`` for ``role`` of ``key``, made once (None where the
        kernels write fresh arrays)."""
        if not kernels.inplace:
            return None
        buf = self._scratch.get((role, key))
        if (
            buf is None
            or buf.shape != like.shape
            or buf.dtype != like.dtype
            or type(buf) is not type(like)
        ):
            buf = self._scratch[(role, key)] = kernels.xp.empty_like(like)
        return buf

    def _state_buffer(self, key: str, like: Any, kernels: Any) -> Any:
        buf = self._scratch.pop(("state", key), None)
        if buf is not None and (buf.shape != like.shape or buf.dtype != like.dtype):
            buf = None
        if buf is None and kernels.inplace:
            buf = kernels.xp.empty_like(like)
        return buf

    @staticmethod
    def _probe(kernels: Any, arrays: list) -> Any:
        total = None
        for a in arrays:
            s = kernels.sum_squares(a)
            total = s if total is None else total + s
        return total

    def _flush(self, kernels: Any, decay: float, step: int, arrays: list) -> list:
        if step % flush_period(decay):
            return arrays
        out = []
        for a in arrays:
            info = np.finfo(a.dtype)
            out.append(kernels.flush_tiny(a, float(info.tiny) * 2.0**_FLUSH_MARGIN))
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The optimiser's settings and state (arrays stay backend arrays)."""
        return {"type": type(self).__name__, "settings": self.settings(), "state": dict(self.state)}

    def load_state_dict(self, data: Mapping[str, Any]) -> None:
        """Adopt a ``state_dict()``: its type must be this optimiser's, its state a step count
        and arrays named ``<role>/<param>`` (``check_state`` matches them to parameters)."""
        name = type(self).__name__
        if not isinstance(data, Mapping):
            raise OptionError(
                f"{name}.load_state_dict needs a state_dict() mapping, got {data!r:.60}"
            )
        if data.get("type") != name:
            raise OptionError(f"optimiser state is for {data.get('type')!r:.40}, not {name}")
        state = data.get("state")
        if not isinstance(state, Mapping):
            raise OptionError(f"{name} state: 'state' must be a mapping, got {state!r:.60}")
        step = state.get("step", 0)
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise OptionError(f"{name} state: 'step' must be an int >= 0, got {step!r:.40}")
        for key, value in state.items():
            if key == "step":
                continue
            role, _, param = key.partition("/") if isinstance(key, str) else ("", "", "")
            if role not in self.state_roles or not param:
                roles = ", ".join(f"'{r}/<param>'" for r in self.state_roles) or "none"
                raise OptionError(
                    f"{name} state: unknown entry {key!r:.60}; its entries are 'step' and {roles}"
                )
            if not (hasattr(value, "shape") and hasattr(value, "dtype")) or value.dtype.kind != "f":
                raise OptionError(
                    f"{name} state: entry {key!r} must be a float array, got {value!r:.60}"
                )
        self.state = {**state, "step": int(step)}
        self._scratch, self._flat = {}, None

    def check_state(self, params: Mapping[str, Any]) -> None:
        """``OptionError`` naming the first state entry that does not fit ``params`` (an unknown
        parameter, another shape, dtype or array type): checked before a step touches anything."""
        name = type(self).__name__
        for key, value in self.state.items():
            if key == "step":
                continue
            param = key.partition("/")[2]
            p = params.get(param)
            if p is None:
                raise OptionError(f"{name} state entry {key!r}: there is no parameter {param!r}")
            if type(value) is not type(p) or value.shape != p.shape or value.dtype != p.dtype:
                raise OptionError(
                    f"{name} state entry {key!r} is a {type(value).__name__} of shape "
                    f"{tuple(value.shape)} and dtype {value.dtype}; parameter {param!r} is a "
                    f"{type(p).__name__} of shape {tuple(p.shape)} and dtype {p.dtype}"
                )

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.settings().items())})"


class SGD(Optimizer):
    """``v = momentum * v + g + weight_decay * p``; ``p -= lr * v`` (``p -= lr * (g + momentum * v)``
    with ``nesterov``).  With momentum 0 this is plain SGD."""

    state_roles = ("v",)

    def __init__(
        self,
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.lr = _check("lr", lr, 0.0, low_open=True, what="SGD")
        self.momentum = _check("momentum", momentum, 0.0, 1.0, what="SGD")
        self.weight_decay = _check("weight_decay", weight_decay, 0.0, what="SGD")
        self.nesterov = checks.flag(nesterov, "SGD: nesterov")
        if self.nesterov and self.momentum == 0:
            raise OptionError("SGD: nesterov=True needs momentum > 0")

    def settings(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }

    def gradient_scale(self) -> float:
        """``-lr`` for plain SGD (no momentum, no weight decay): its step is ``-lr`` times the
        gradient, which the backward pass can then make directly, sparing a pass over every
        parameter.  1 otherwise."""
        return -self.lr if not self.momentum and not self.weight_decay else 1.0

    def stage(
        self,
        params: Mapping[str, Any],
        grads: Mapping[str, Any],
        kernels: Any,
        scale: float = 1.0,
        lr_scale: Mapping[str, float] | None = None,
    ) -> Staged:
        step = self.state.get("step", 0) + 1
        lr_scale = lr_scale or {}
        if scale != 1.0:  # the gradients are the steps already (see gradient_scale)
            if scale != self.gradient_scale() or lr_scale:
                raise OptionError(f"SGD cannot take gradients scaled by {scale!r}")
            deltas = {name: grads[name] for name in params}
            return Staged(deltas, {}, step, self._probe(kernels, list(deltas.values())))
        flat, views = self._param_buffers(params, kernels)
        deltas, new_state, velocities = {}, {}, []
        for name, p in params.items():
            g = grads[name]
            if self.weight_decay:
                g = kernels.axpy(self.weight_decay, p, g, self._buffer("decayed", name, g, kernels))
            direction = g
            if self.momentum:
                key = f"v/{name}"
                v = self.state.get(key)
                buf = self._state_buffer(key, g, kernels)
                if v is None:
                    v_new = kernels.scaled(g, 1.0, buf)  # a copy: the first velocity is g
                else:
                    v_new = kernels.sgd_velocity(v, g, self.momentum, buf)
                new_state[key] = v_new
                velocities.append(key)
                direction = v_new
                if self.nesterov:
                    direction = kernels.axpy(
                        self.momentum, v_new, g, self._buffer("nesterov", name, g, kernels)
                    )
            lr = self.lr * lr_scale.get(name, 1.0)
            deltas[name] = kernels.scaled(direction, -lr, views.get(name))
        if velocities:
            flushed = self._flush(kernels, self.momentum, step, [new_state[k] for k in velocities])
            new_state.update(zip(velocities, flushed))
        # A finite delta proves the velocity finite too: the delta is -lr times it (or, with
        # Nesterov, -lr times g plus momentum times it).
        probe = self._probe(kernels, [flat] if flat is not None else list(deltas.values()))
        return Staged(deltas, new_state, step, probe)


class Adam(Optimizer):
    """Adam (Kingma and Ba 2015) with bias correction; ``weight_decay`` is decoupled (AdamW):
    ``p -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * p)``."""

    state_roles = ("m", "v")

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.lr = _check("lr", lr, 0.0, low_open=True, what="Adam")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise OptionError(f"Adam: betas={betas!r} must be a pair (beta1, beta2)")
        self.betas = (
            _check("betas[0]", betas[0], 0.0, 1.0, what="Adam"),
            _check("betas[1]", betas[1], 0.0, 1.0, what="Adam"),
        )
        if max(self.betas) >= 1.0:
            raise OptionError(f"Adam: betas={betas!r} must each be < 1")
        self.eps = _check("eps", eps, 0.0, low_open=True, what="Adam")
        self.weight_decay = _check("weight_decay", weight_decay, 0.0, what="Adam")

    def settings(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "betas": self.betas,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
        }

    def stage(
        self,
        params: Mapping[str, Any],
        grads: Mapping[str, Any],
        kernels: Any,
        scale: float = 1.0,
        lr_scale: Mapping[str, float] | None = None,
    ) -> Staged:
        if scale != 1.0:
            raise OptionError(f"Adam cannot take gradients scaled by {scale!r}")
        lr_scale = lr_scale or {}
        b1, b2 = self.betas
        step = self.state.get("step", 0) + 1
        lr_m = self.lr / (1 - b1**step)  # the bias corrections, as PyTorch's Adam folds them
        root_v = math.sqrt(1 - b2**step)
        flat, views = self._param_buffers(params, kernels)
        deltas, new_state, moments = {}, {}, []
        for name, p in params.items():
            g = grads[name]
            m, v = self.state.get(f"m/{name}"), self.state.get(f"v/{name}")
            bufs = (
                self._state_buffer(f"m/{name}", g, kernels),
                self._state_buffer(f"v/{name}", g, kernels),
            )
            if m is None:
                m, v = kernels.xp.zeros_like(g), kernels.xp.zeros_like(g)
            m_new, v_new = kernels.adam_moments(m, v, g, b1, b2, None if bufs[0] is None else bufs)
            new_state[f"m/{name}"], new_state[f"v/{name}"] = m_new, v_new
            moments += [f"m/{name}", f"v/{name}"]
            factor = lr_scale.get(name, 1.0)
            if self.weight_decay:  # -lr * wd * p + the Adam step, into the delta's view
                raw = self._buffer("adam", name, g, kernels)
                raw = kernels.adam_delta(m_new, v_new, lr_m * factor, root_v, self.eps, raw)
                decay = -self.lr * factor * self.weight_decay
                deltas[name] = kernels.axpy(decay, p, raw, views.get(name))
            else:
                deltas[name] = kernels.adam_delta(
                    m_new, v_new, lr_m * factor, root_v, self.eps, views.get(name)
                )
        m_keys, v_keys = moments[0::2], moments[1::2]
        new_state.update(
            zip(m_keys, self._flush(kernels, b1, step, [new_state[k] for k in m_keys]))
        )
        new_state.update(
            zip(v_keys, self._flush(kernels, b2, step, [new_state[k] for k in v_keys]))
        )
        probe = self._probe(kernels, [flat] if flat is not None else list(deltas.values()))
        # m / sqrt(v) stays finite when v overflows: the second moment needs its own probe.
        state_probe = self._probe(kernels, [new_state[k] for k in v_keys])
        return Staged(deltas, new_state, step, probe, state_probe)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


# --------------------------------------------------------------------------- learning rates
@dataclass(frozen=True)
class Schedule:
    """A learning rate that depends on the update count: ``schedule(step)`` is the rate of
    update ``step`` (0-based), ``base`` times ``factor(step)``.  ``apply(optimizer, step)``
    sets ``optimizer.lr`` before that update; a run resumed at step ``k`` continues the same
    rates.  Build one with ``constant``, ``step_decay`` or ``cosine`` (each with an optional
    linear warm-up)."""

    kind: str
    base: float
    warmup: int = 0  # updates of linear warm-up from base / (warmup + 1) to base
    every: int = 0  # step_decay: multiply by gamma every ``every`` updates
    gamma: float = 1.0
    total: int = 0  # cosine: updates from the end of the warm-up to the final rate
    final: float = 0.0  # cosine: the rate reached after ``total`` updates, as a fraction of base

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "step", "cosine"):
            raise OptionError(f"Schedule: kind {self.kind!r} must be constant, step or cosine")
        _check("lr", self.base, 0.0, low_open=True, what=f"{self.kind} schedule")
        checks.integer(self.warmup, f"{self.kind} schedule: warmup", 0, checks.MAX_COUNT)
        if self.kind == "step":
            checks.count(self.every, "step_decay: every")
            checks.real(self.gamma, "step_decay: gamma", 0.0, 1.0, low_open=True)
        if self.kind == "cosine":
            checks.count(self.total, "cosine: total")
            checks.real(self.final, "cosine: final", 0.0, 1.0)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.base * (step + 1) / (self.warmup + 1)
        t = step - self.warmup
        if self.kind == "step":
            return self.base * self.gamma ** (t // self.every)
        if self.kind == "cosine":
            progress = min(t / self.total, 1.0)
            return self.base * (
                self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * progress))
            )
        return self.base

    def apply(self, optimizer: Optimizer, step: int) -> None:
        """Set ``optimizer.lr`` to this schedule's rate for update ``step``."""
        optimizer.lr = self(step)


def constant(lr: float, warmup: int = 0) -> Schedule:
    """``lr`` throughout (after ``warmup`` updates rising linearly to it)."""
    return Schedule("constant", lr, warmup)


def step_decay(lr: float, every: int, gamma: float = 0.1, warmup: int = 0) -> Schedule:
    """``lr * gamma ** (updates // every)`` (after the warm-up)."""
    return Schedule("step", lr, warmup, every=every, gamma=gamma)


def cosine(lr: float, total: int, final: float = 0.0, warmup: int = 0) -> Schedule:
    """From ``lr`` down to ``final * lr`` over ``total`` updates along half a cosine (after
    the warm-up), then ``final * lr``."""
    return Schedule("cosine", lr, warmup, total=total, final=final)
