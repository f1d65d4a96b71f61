"""Argument checks shared by the API: one home for what a seed, a count, a flag or a number is.

Each check takes the value and a phrase naming it (``"init_params: seed"``), and either returns
the value as a plain Python object or raises ``OptionError`` saying what is wrong.  NumPy (and
any array library's) scalars and 0-d arrays are taken as the numbers they hold; arrays with
elements, text and ``True``/``False`` are never taken for numbers, and numbers never for flags.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from .errors import OptionError

MAX_SEED = 2**63 - 1  # NumPy's generators take any int >= 0; this keeps seeds 64-bit
MAX_COUNT = 1_000_000  # the ceiling of step counts (spec/errors.md)


def scalar(value: Any) -> Any:
    """``value``, with a NumPy-style scalar or 0-d array replaced by the Python number it holds;
    an array with elements raises (it is never one number)."""
    shape = getattr(value, "shape", None)
    if shape is None or not hasattr(value, "dtype"):
        return value
    if tuple(shape) != ():
        raise OptionError(f"an array of shape {tuple(shape)} where one value is expected")
    return value.item() if hasattr(value, "item") else value


def _scalar(value: Any, what: str) -> Any:
    try:
        return scalar(value)
    except OptionError as e:
        raise OptionError(f"{what}: {e}") from None


def integer(value: Any, what: str, low: int = 0, high: int = MAX_SEED) -> int:
    """An int in ``[low, high]`` (a bool, a float or text is refused, never truncated)."""
    value = _scalar(value, what)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise OptionError(f"{what}={value!r:.60} must be an int")
    if not low <= value <= high:
        raise OptionError(f"{what}={value} must be an int from {low} to {high:,}")
    return int(value)


def seed(value: Any, what: str) -> int:
    """A random seed: an int >= 0."""
    return integer(value, what, 0, MAX_SEED)


def seeds(value: Any, what: str) -> Any:
    """A seed for ``numpy.random.default_rng``: None, an int >= 0, or a sequence of them (e.g.
    ``(seed, epoch)``), returned as None, an int or a tuple of ints."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if not value:
            raise OptionError(f"{what} must be an int >= 0 or a non-empty sequence of them")
        return tuple(seed(v, what) for v in value)
    return seed(value, what)


def count(value: Any, what: str, high: int = MAX_COUNT) -> int:
    """A positive int of at most ``high``."""
    return integer(value, what, 1, high)


def real(
    value: Any, what: str, low: float = -math.inf, high: float = math.inf, low_open: bool = False
) -> float:
    """A finite real number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    value = _scalar(value, what)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise OptionError(f"{what}={value!r:.60} must be a number")
    try:
        value = float(value)
    except OverflowError:
        raise OptionError(f"{what}: {value.bit_length()}-bit integer is too large") from None
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bounds = []
        if low > -math.inf:
            bounds.append(f"{'>' if low_open else '>='} {low:g}")
        if high < math.inf:
            bounds.append(f"<= {high:g}")
        bound = (" " + " and ".join(bounds)) if bounds else ""
        raise OptionError(f"{what}={value!r} must be a finite number{bound}")
    return value


def flag(value: Any, what: str) -> bool:
    """``True`` or ``False`` itself (``"no"``, ``0`` or ``1`` are refused, not read as truthy)."""
    value = _scalar(value, what)
    if not isinstance(value, bool):
        raise OptionError(f"{what}={value!r:.60} must be True or False")
    return value


def name(value: Any, what: str) -> str:
    """A non-empty string (a list or a node handle where a name is meant is refused)."""
    if not isinstance(value, str) or not value:
        raise OptionError(f"{what}={value!r:.60} must be a non-empty string")
    return value
