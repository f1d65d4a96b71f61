"""The benchmark harness keeps working (``--smoke``); its timings are never asserted."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

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
    rows = ("| bp |", "| zil |", "| fpa |", "| il |", "| numpy (hand, out= buffers) |")
    for row in (*rows, "GFLOP/s", "100-node"):
        assert row in text
    assert "- mlp 32-16-10 b8: step" in text and "linear" in text  # the bp profile section


def test_benchmark_only_runs_the_networks_it_names(tmp_path: Path) -> None:
    out = tmp_path / "BENCH.md"
    args = [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out), "--only"]
    run = subprocess.run([*args, "lenet"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "| lenet b4 | bp |" in out.read_text() and "mlp" not in out.read_text()
    bad = subprocess.run([*args, "vgg"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "matches none of the networks" in bad.stderr


def test_ratios_pair_the_calls_of_each_round() -> None:
    from benchmarks.run import Timings

    # The machine halves its speed in round 3, between a's call and b's: b takes 1.1x a's time
    # in the four other rounds, yet b's median is 2.2x a's (2 fast rounds of 5 against 3).
    t = Timings({"a": [1.0, 1.0, 1.0, 2.0, 2.0], "b": [1.1, 1.1, 2.2, 2.2, 2.2]})
    assert t.median("b") / t.median("a") == pytest.approx(2.2)
    assert t.ratio("b", "a") == pytest.approx(1.1)
    assert "a" in t and "c" not in t


def test_interleaved_runs_at_least_its_repeats_and_more_until_its_time_budget() -> None:
    from benchmarks.run import interleaved

    calls: list[str] = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    t = interleaved(fns, repeats=3, warmup=1)
    assert t.rounds == 3 and calls.count("a") == calls.count("b") == 4
    slow = {"a": lambda: time.sleep(0.002), "b": lambda: time.sleep(0.001)}
    t = interleaved(slow, repeats=3, warmup=0, min_seconds=0.05)
    assert t.rounds > 3 and len(t.times["a"]) == len(t.times["b"]) == t.rounds
    assert sum(t.times["a"]) + sum(t.times["b"]) >= 0.05


def test_the_preallocated_hand_step_takes_the_hand_steps_update() -> None:
    from benchmarks.run import PreallocatedMlpStep, numpy_mlp_step

    rng = np.random.default_rng(0)
    sizes, batch = (12, 7, 5, 4), 6
    params = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"fc{i}.W"] = rng.standard_normal((a, b)).astype(np.float32)
        params[f"fc{i}.b"] = rng.standard_normal(b).astype(np.float32)
    x, y = rng.standard_normal((batch, 12)).astype(np.float32), rng.integers(0, 4, batch)
    hand = {k: v.copy() for k, v in params.items()}
    ceiling = {k: v.copy() for k, v in params.items()}
    step = PreallocatedMlpStep(ceiling, batch)
    for _ in range(3):
        numpy_mlp_step(hand, x, y, lr=0.1)
        step(x, y, lr=0.1)
    for name in params:
        assert np.abs(hand[name] - params[name]).max() > 1e-3  # the step moved it
        np.testing.assert_allclose(ceiling[name], hand[name], rtol=1e-5, atol=1e-6)


def test_the_pcx_peer_takes_pcgraphs_il_step() -> None:
    """Where PCX is installed, its step (the benchmark's pcx row) is pcgraph's IL update: same
    weight step from the same weights and batch, to float32 rounding (19 steps instead of 20
    would be 10% off)."""
    if importlib.util.find_spec("pcx") is None:  # not imported here: JAX stays out of this process
        pytest.skip("PCX is not installed (a benchmark-only dependency)")
    run = subprocess.run(
        [sys.executable, "-c", "from benchmarks.pcx_peer import check; print(check())"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert float(run.stdout.split()[-1]) < 1e-4
