"""Optimisers: SGD (with momentum) and Adam.

An optimiser computes the next parameters and its next state without touching either, so that
``Program.train_step`` can check everything first and then commit both at once (no half-applied
update after an error).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .errors import OptionError


def _check(
    name: str,
    value: Any,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    what: str = "",
) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"{'>' if low_open else '>='} {low}" + (
            f" and <= {high}" if high < math.inf else ""
        )
        raise OptionError(f"{what}: {name}={value!r} must be a finite number {bound}")
    return float(value)


class Optimizer:
    """Base class: ``compute(params, grads, xp) -> (new_params, new_state)`` and ``commit``."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {"step": 0}

    def compute(
        self, params: Mapping[str, Any], grads: Mapping[str, Any], xp: Any
    ) -> tuple[dict, dict]:
        raise NotImplementedError

    def commit(self, new_state: dict) -> None:
        self.state = new_state

    def state_dict(self) -> dict[str, Any]:
        """The optimiser's settings and state (arrays stay backend arrays)."""
        return {"type": type(self).__name__, "settings": self.settings(), "state": dict(self.state)}

    def load_state_dict(self, data: Mapping[str, Any]) -> None:
        if data.get("type") != type(self).__name__:
            raise OptionError(
                f"optimiser state is for {data.get('type')!r}, not {type(self).__name__}"
            )
        self.state = dict(data["state"])

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.settings().items())})"


class SGD(Optimizer):
    """``v = momentum * v + g + weight_decay * p``; ``p -= lr * v`` (``p -= lr * (g + momentum * v)``
    with ``nesterov``).  With momentum 0 this is plain SGD."""

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
        if nesterov and self.momentum == 0:
            raise OptionError("SGD: nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)

    def settings(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }

    def compute(
        self, params: Mapping[str, Any], grads: Mapping[str, Any], xp: Any
    ) -> tuple[dict, dict]:
        new_params, state = {}, {"step": self.state.get("step", 0) + 1}
        for name, p in params.items():
            g = grads[name]
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                prev = self.state.get(f"v/{name}")
                v = g if prev is None else self.momentum * prev + g
                state[f"v/{name}"] = v
                g = g + self.momentum * v if self.nesterov else v
            new_params[name] = p - self.lr * g
        return new_params, state


class Adam(Optimizer):
    """Adam (Kingma and Ba 2015) with bias correction; ``weight_decay`` is decoupled (AdamW)."""

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

    def compute(
        self, params: Mapping[str, Any], grads: Mapping[str, Any], xp: Any
    ) -> tuple[dict, dict]:
        b1, b2 = self.betas
        t = self.state.get("step", 0) + 1
        state: dict[str, Any] = {"step": t}
        new_params = {}
        for name, p in params.items():
            g = grads[name]
            m_prev, v_prev = self.state.get(f"m/{name}"), self.state.get(f"v/{name}")
            m = (1 - b1) * g if m_prev is None else b1 * m_prev + (1 - b1) * g
            v = (1 - b2) * g * g if v_prev is None else b2 * v_prev + (1 - b2) * g * g
            state[f"m/{name}"], state[f"v/{name}"] = m, v
            step = (m / (1 - b1**t)) / (xp.sqrt(v / (1 - b2**t)) + self.eps)
            if self.weight_decay:
                step = step + self.weight_decay * p
            new_params[name] = p - self.lr * step
        return new_params, state


OPTIMIZERS = {"sgd": SGD, "adam": Adam}
