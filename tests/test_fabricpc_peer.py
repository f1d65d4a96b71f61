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


def test_the_harness_times_fabricpc_beside_pcgraph_on_the_deep_network(tmp_path: Path) -> None:
    """``python -m benchmarks --only mupc`` (its tiny form): the four rows, each in a process
    of its own, the pcgraph rows over their FabricPC twins, and the seconds per epoch."""
    import subprocess

    out = tmp_path / "BENCH.md"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--only", "mupc", "--seconds", "0.05"]
        + ["--no-profile", "--flat", "0", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    text = out.read_text()
    lines = text.splitlines()
    head = next(line for line in lines if line.startswith("| network |"))
    column = [h.strip() for h in head.split("|")].index("/ FabricPC")
    rows = {
        cells[2].strip(): cells
        for cells in (line.split("|") for line in lines if line.startswith("| deep_mlp mupc"))
    }
    assert set(rows) == {
        "pcgraph il (layers, Adam)",
        "pcgraph epc (layers, Adam)",
        "fabricpc il (Adam)",
        "fabricpc epc (Adam)",
    }
    for label in ("pcgraph il (layers, Adam)", "pcgraph epc (layers, Adam)"):
        assert float(rows[label][column].split()[0]) > 0  # a ratio to its twin
    assert "seconds per MNIST epoch" in text and "fabricpc epc (Adam)'s first call" in text
    assert "Contenders that failed" not in text
