"""Golden schedules: the compiler's output for two small graphs is pinned in spec/schedules/.

Regenerate after an intended change with ``PCGRAPH_UPDATE_GOLDEN=1 pytest tests/test_schedules.py``
and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import mlp, residual

import pcgraph as pc

GOLDEN = Path(__file__).resolve().parent.parent / "spec" / "schedules"
GRAPHS = {"mlp": lambda: mlp(sizes=(4, 3, 2), activation=pc.tanh), "residual": residual}
ALGORITHMS = {
    "bp": {},
    "zil": {},
    "zil-identity": {"levelling": "identity"},
    "fpa": {},
    "il": {"steps": 2},
    "epc": {"steps": 2},
}


@pytest.mark.parametrize("graph", GRAPHS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_schedule_matches_its_golden_copy(graph: str, algorithm: str) -> None:
    prog = pc.compile(GRAPHS[graph]())
    text = str(prog.schedule(algorithm.split("-")[0], **ALGORITHMS[algorithm])) + "\n"
    path = GOLDEN / f"{graph}-{algorithm}.txt"
    if os.environ.get("PCGRAPH_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with PCGRAPH_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text()
