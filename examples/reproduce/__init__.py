"""Reproductions of the seed papers' experiments, CPU-sized, on real data.

Each experiment is a module with ``run(quick, out) -> str`` (the Markdown report, also written to
``out/NAME.md`` with its PNG plots) and ``main()`` for ``python -m examples.reproduce.NAME
[--quick] [--out DIR]``.  ``RESULTS.md`` beside this file holds the full-mode reports as produced
on a 2-core machine, with the exact commands and a verdict for each claim.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

NAMES = ("accuracy", "ablation", "runtime", "stability", "fpa", "fullscale", "deep")


def experiments() -> dict[str, ModuleType]:
    """``{name: module}`` for every experiment, in the order of the issue."""
    return {name: importlib.import_module(f"{__name__}.{name}") for name in NAMES}


def __getattr__(attr: str) -> Any:
    # ``EXPERIMENTS`` is built on first use, so that ``python -m examples.reproduce.NAME`` does
    # not import NAME twice (once by this package, once as __main__).
    if attr == "EXPERIMENTS":
        return experiments()
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def run(name: str, quick: bool = False, out: Path | str = "runs/reproduce") -> str:
    """Run experiment ``name`` (one of ``NAMES``) and return its Markdown report."""
    if name not in NAMES:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(NAMES)}")
    return importlib.import_module(f"{__name__}.{name}").run(quick, Path(out))


__all__ = ["EXPERIMENTS", "NAMES", "experiments", "run"]
