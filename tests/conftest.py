"""Shared test helpers: finite-difference checks and the graphs the specification names."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def pytest_report_header(config):  # noqa: ANN001, ANN201
    import pcgraph as pc

    return f"pcgraph backends available here: {', '.join(pc.backends.available())}"
