"""Optimisers: SGD (with momentum) and Adam.

``Program.train_step`` first computes and checks the gradients (shapes, finiteness); only then
does it call ``apply``, which updates the parameter arrays and the optimiser's state in place
(one pass per array, as PyTorch's optimisers do) and cannot fail half-way.
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

    def apply(self, params: Mapping[str, Any], grads: Mapping[str, Any], xp: Any) -> None:
        raise NotImplementedError

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

    def apply(self, params: Mapping[str, Any], grads: Mapping[str, Any], xp: Any) -> None:
        state = self.state
        for name, p in params.items():
            g = grads[name]
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                v = state.get(f"v/{name}")
                if v is None:
                    v = state[f"v/{name}"] = g + 0.0  # a copy: it is updated in place below
                else:
                    v *= self.momentum
                    v += g
                g = g + self.momentum * v if self.nesterov else v
            p -= self.lr * g
        state["step"] = state.get("step", 0) + 1


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

    def apply(self, params: Mapping[str, Any], grads: Mapping[str, Any], xp: Any) -> None:
        b1, b2 = self.betas
        state = self.state
        t = state["step"] = state.get("step", 0) + 1
        for name, p in params.items():
            g = grads[name]
            m, v = state.get(f"m/{name}"), state.get(f"v/{name}")
            if m is None:
                m = state[f"m/{name}"] = (1 - b1) * g
                v = state[f"v/{name}"] = (1 - b2) * (g * g)
            else:
                m *= b1
                m += (1 - b1) * g
                v *= b2
                v += (1 - b2) * (g * g)
            step = (m / (1 - b1**t)) / (xp.sqrt(v / (1 - b2**t)) + self.eps)
            if self.weight_decay:
                step = step + self.weight_decay * p
            p -= self.lr * step


OPTIMIZERS = {"sgd": SGD, "adam": Adam}
