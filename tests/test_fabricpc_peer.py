"""FabricPC's training steps (the speed harness's ``fabricpc`` rows) compute pcgraph's updates:
IL with one value node per layer on the zoo's MLP, IL and ePC on the deep muPC network; the rows
time the same work.  FabricPC is a benchmark-only peer
whose JAX need not agree with PCX's pin; this runs where it is installed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("fabricpc", reason="FabricPC (pip install fabricpc) is not installed")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.fabricpc_peer import check  # noqa: E402


def test_fabricpcs_il_step_is_pcgraphs_il_with_one_value_node_per_layer() -> None:
    assert check() < 1e-6  # float32: measured 6e-8


def test_fabricpcs_il_and_epc_steps_on_the_deep_mupc_network_are_pcgraphs() -> None:
    """The harness's deep rows (issue 27): FabricPC's IL and ePC steps on jpc's muPC residual
    MLP (6 blocks, width 16, float64) take pcgraph's ``train_step(..., value_nodes="layers")``
    update, with plain SGD (the gradient itself; one inference step fewer is 0.5% off) and with
    Adam (two steps; Adam divides each gradient by its own size, so entries near its eps carry
    float64 rounding up to about 1e-9 of the change)."""
    from benchmarks.fabricpc_deep_peer import check as check_deep

    diffs = check_deep()
    assert diffs["il sgd"] < 1e-12 and diffs["epc sgd"] < 1e-12, diffs  # measured 4e-15
    assert diffs["il adam"] < 1e-8 and diffs["epc adam"] < 1e-8, diffs  # measured 5e-10
