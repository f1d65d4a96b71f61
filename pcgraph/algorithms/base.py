"""The learning algorithms: each is one ``Algorithm`` record (options and a schedule emitter).

``prog.grads(..., algorithm=NAME, **options)`` and ``prog.train_step`` look algorithms up here,
emit the algorithm's schedule and run it with ``Program.run``: an algorithm is its schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pcgraph import checks
from pcgraph.errors import OptionError


@dataclass(frozen=True)
class Option:
    """One algorithm option: its default, a check, and a one-line description."""

    default: Any
    check: Callable[[Any], str | None]  # returns why the value is bad, or None
    doc: str
    normalise: Callable[[Any], Any] | None = None  # a checked value in its one form (hashable)


def positive_int(v: Any) -> str | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and 0 < v <= checks.MAX_COUNT
    return None if ok else f"must be an int from 1 to {checks.MAX_COUNT:,}"


def finite_rate(v: Any) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
    return None if ok else "must be a finite number > 0"


def choice(*values: Any) -> Callable[[Any], str | None]:
    """One of ``values`` exactly: of the same type too, so ``0`` is not taken for ``False``."""

    def check(v: Any) -> str | None:
        ok = any(type(v) is type(c) and v == c for c in values)
        return None if ok else f"must be one of {', '.join(map(repr, values))}"

    return check


@dataclass(frozen=True)
class Algorithm:
    """A learning algorithm: ``schedule(compiled, opts)`` emits its schedule, which carries its
    graph and names where its gradients (in the gradient's sign) and its loss are."""

    name: str
    summary: str
    schedule: Callable[..., Any]
    options: Mapping[str, Option] = field(default_factory=dict)
    # The option that is the parameters' step size inside the schedule, if the algorithm steps
    # them there: ``train_step`` fills it with the optimiser's learning rate when not given.
    param_step_option: str | None = None

    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults filled in and every value checked; an unknown option names the valid ones."""
        unknown = sorted(map(str, set(given) - set(self.options)))
        if unknown:
            valid = ", ".join(sorted(self.options)) or "none"
            hint = _owner_hint(unknown[0], self.name)
            raise OptionError(
                f"algorithm {self.name!r} has no option {unknown[0]!r}{hint}; its options: {valid}"
            )
        out = {}
        for key, opt in self.options.items():
            try:  # a NumPy scalar is the number it holds; an array is no option value
                value = checks.scalar(given.get(key, opt.default))
            except OptionError:
                raise OptionError(
                    f"algorithm {self.name!r}: option {key} must be one value, not an array"
                ) from None
            why = opt.check(value)
            if why:
                raise OptionError(f"algorithm {self.name!r}: option {key}={value!r} {why}")
            out[key] = value if opt.normalise is None else opt.normalise(value)
        return out


ALGORITHMS: dict[str, Algorithm] = {}


def register(algo: Algorithm) -> Algorithm:
    ALGORITHMS[algo.name] = algo
    return algo


def _owner_hint(option: str, algorithm: str) -> str:
    owners = [a for a, algo in ALGORITHMS.items() if option in algo.options and a != algorithm]
    return f" (it is an option of {', '.join(owners)})" if owners else ""


def get_algorithm(name: str) -> Algorithm:
    """The algorithm called ``name``; an unknown name lists the valid ones."""
    if not isinstance(name, str) or name not in ALGORITHMS:
        raise OptionError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]
