"""Backprop on hypothesis-generated DAGs equals finite differences."""

from __future__ import annotations

import warnings

from dags import random_dags
from helpers import check_program_grads
from hypothesis import HealthCheck, given, settings

import pcgraph as pc
from pcgraph.testing import random_batch


@settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(random_dags())
def test_backprop_on_random_dags_matches_finite_differences(g: pc.Graph) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pc.UnusedParameterWarning)
        prog = pc.compile(g, dtype="float64")
    check_program_grads(prog, prog.init_params(seed=0), random_batch(g, size=3), directions=2)
