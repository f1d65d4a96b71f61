"""The learning algorithms: each is one ``Algorithm`` record (options and a schedule emitter).

``prog.grads(..., algorithm=NAME, **options)`` and ``prog.train_step`` look algorithms up here,
emit the algorithm's schedule and run it with ``Program.run``: an algorithm is its schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pcgraph.errors import OptionError


@dataclass(frozen=True)
class Option:
    """One algorithm option: its default, a check, and a one-line description."""

    default: Any
    check: Callable[[Any], str | None]  # returns why the value is bad, or None
    doc: str


def positive_int(v: Any) -> str | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and v > 0
    return None if ok else "must be a positive int"


def finite_rate(v: Any) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
    return None if ok else "must be a finite number > 0"


def choice(*values: Any) -> Callable[[Any], str | None]:
    return lambda v: None if v in values else f"must be one of {', '.join(map(repr, values))}"


@dataclass(frozen=True)
class Algorithm:
    """A learning algorithm: ``schedule(compiled, opts)`` emits its schedule, which carries its
    graph and names where its gradients (in the gradient's sign) and its loss are."""

    name: str
    summary: str
    schedule: Callable[..., Any]
    options: Mapping[str, Option] = field(default_factory=dict)

    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults filled in and every value checked; an unknown option names the valid ones."""
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            valid = ", ".join(sorted(self.options)) or "none"
            hint = _owner_hint(unknown[0], self.name)
            raise OptionError(
                f"algorithm {self.name!r} has no option {unknown[0]!r}{hint}; its options: {valid}"
            )
        out = {}
        for key, opt in self.options.items():
            value = given.get(key, opt.default)
            why = opt.check(value)
            if why:
                raise OptionError(f"algorithm {self.name!r}: option {key}={value!r} {why}")
            out[key] = value
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
    if name not in ALGORITHMS:
        raise OptionError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


from . import bp, ilprox, predictive  # noqa: E402,F401  (they register themselves)
