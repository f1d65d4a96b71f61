"""Shared test fixtures: the backends to run on, a hermetic backend choice, a seeded rng."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from helpers import BACKENDS, CUPY_UNAVAILABLE  # noqa: E402

import pcgraph as pc  # noqa: E402


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of a backend to compile on: "numpy", and "cupy" where a GPU is visible."""
    return request.param


@pytest.fixture(autouse=True)
def _hermetic_backend_choice(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts from the default choice (numpy), whatever the shell's $PCGRAPH_BACKEND,
    and a test's ``set_default_backend`` does not leak into the next one."""
    monkeypatch.delenv(pc.backends.ENV_VAR, raising=False)
    pc.set_default_backend(None)
    yield
    pc.set_default_backend(None)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def pytest_report_header(config):  # noqa: ANN001, ANN201
    lines = [f"pcgraph backends available here: {', '.join(pc.backends.available())}"]
    if CUPY_UNAVAILABLE is not None:
        lines.append(f"cupy tests skip: {CUPY_UNAVAILABLE}")
    return lines
