"""FabricPC's training step (the speed harness's ``fabricpc`` row) computes pcgraph's IL update
with one value node per layer: the rows time the same work.  FabricPC is a benchmark-only peer
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
