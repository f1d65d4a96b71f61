"""The benchmark harness keeps working (``--smoke``); its timings are never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_smoke_run_writes_a_table(tmp_path: Path) -> None:
    out = tmp_path / "BENCH.md"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    text = out.read_text()
    for row in ("| bp |", "| zil |", "| fpa |", "| il |", "GFLOP/s", "1,000-node"):
        assert row in text
