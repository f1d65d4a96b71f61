"""The benchmark harness keeps working (``--smoke``) and measures as it says: each contender in
a process of its own, ratios paired by round.  Its timings are never asserted."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_benchmark_smoke_run_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "BENCH.md"
    run = _run("benchmarks", "--smoke", "--out", str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    text = out.read_text()
    for row in (
        "| pcgraph bp |",
        "| pcgraph zil |",
        "| pcgraph fpa |",
        "| pcgraph il |",
        "| pcgraph il-prox |",
        "| numpy (hand) |",
        "| numpy (hand, out= buffers) |",
        "| deep_mlp mupc L6 w16 b8 | pcgraph il (layers, Adam) |",
        "| deep_mlp mupc L6 w16 b8 | pcgraph epc (layers, Adam) |",
    ):
        assert row in text
    for part in ("## Targets", "100-node", "long run", "zil / bp =", "alone in its process"):
        assert part in text
    assert "seconds per MNIST epoch, deep_mlp mupc L6 w16 b8: pcgraph il" in text


def test_the_large_graph_benchmark_replaces_only_its_own_section(tmp_path: Path) -> None:
    out = tmp_path / "BENCH.md"
    out.write_text("# Report\n\nkept\n")
    for _ in range(2):  # the second run replaces the section the first one wrote
        run = _run("benchmarks.large", "--smoke", "--out", str(out))
        assert run.returncode == 0, run.stderr[-2000:]
    text = out.read_text()
    assert text.startswith("# Report\n\nkept\n")
    assert text.count("## Large graphs") == 1 and "| nodes | compile s |" in text
    assert "time per node at 803 nodes is" in text and "per node at 203 (target" in text


def test_the_pytorch_rnn_contender_computes_pcgraphs_loss() -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed")
    code = (
        "from benchmarks.networks import Network, batches\n"
        "from benchmarks.contenders import CONTENDERS, _program\n"
        "from pcgraph import models\n"
        "net = Network('rnn small b8', lambda: models.rnn_many_to_one(T=12, D=2, H=5), 8)\n"
        "step = CONTENDERS['torch-rnn'].make(net, 'cpu')\n"
        "prog, g, params = _program(net, 'cpu')\n"
        "print(step.step(0), prog.loss(params, batches(net, g)[0]))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    theirs, ours = map(float, run.stdout.split())
    assert abs(theirs - ours) <= 1e-5 * abs(ours)


def test_benchmark_only_runs_the_networks_it_names(tmp_path: Path) -> None:
    out = tmp_path / "BENCH.md"
    run = _run("benchmarks", "--smoke", "--out", str(out), "--only", "lenet", "--contenders", "bp")
    assert run.returncode == 0, run.stderr[-2000:]
    text = out.read_text()
    assert "| lenet b4 | pcgraph bp |" in text and "mlp 32" not in text
    bad = _run("benchmarks", "--smoke", "--out", str(out), "--only", "vgg")
    assert bad.returncode == 2 and "matches none of the networks" in bad.stderr
    bad = _run("benchmarks", "--smoke", "--out", str(out), "--contenders", "tensorflow")
    assert bad.returncode == 2 and "unknown contender" in bad.stderr


def test_a_pcgraph_worker_loads_no_other_runtime() -> None:
    run = _run("benchmarks.worker", "mlp 32-16-10 b8", "bp", "--smoke", "--seconds", "0.05")
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["runtimes"] == ["pcgraph"]
    assert result["steps"] >= 10 and result["ms"] > 0
    assert result["threads"]["env"]["OPENBLAS_NUM_THREADS"] == "2"


def test_ratios_pair_the_processes_of_each_round() -> None:
    from benchmarks.timing import paired

    # The machine halves its speed from round 3 on, between a's process and b's: b takes 1.1x
    # a's time in the four other rounds, yet b's median is 2.2x a's (2 fast rounds of 5).
    a, b = [1.0, 1.0, 1.0, 2.0, 2.0], [1.1, 1.1, 2.2, 2.2, 2.2]
    p = paired(b, a)
    assert np.median(b) / np.median(a) == pytest.approx(2.2)
    assert p.median == pytest.approx(1.1) and p.pairs == 5
    assert p.low == pytest.approx(1.1) and p.high == pytest.approx(2.2)
    assert str(p) == "1.10 (1.10-2.20)"


def test_time_steps_warms_up_then_times_at_least_min_steps_and_its_budget() -> None:
    from benchmarks.timing import time_steps

    calls: list[int] = []
    times = time_steps(calls.append, warmup=2, min_steps=5, seconds=0.0)
    assert calls == list(range(7)) and len(times) == 5
    times = time_steps(lambda i: time.sleep(0.001), warmup=0, min_steps=3, seconds=0.05)
    assert len(times) > 3 and sum(times) >= 0.04


def test_interleaved_runs_at_least_its_repeats_and_more_until_its_time_budget() -> None:
    from benchmarks.timing import interleaved

    calls: list[str] = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    t = interleaved(fns, repeats=3, warmup=1)
    assert t.rounds == 3 and calls.count("a") == calls.count("b") == 4
    slow = {"a": lambda: time.sleep(0.002), "b": lambda: time.sleep(0.001)}
    t = interleaved(slow, repeats=3, warmup=0, min_seconds=0.05)
    assert t.rounds > 3 and len(t.times["a"]) == len(t.times["b"]) == t.rounds


def test_the_preallocated_hand_step_takes_the_hand_steps_update() -> None:
    from benchmarks.floor import PreallocatedMlpStep, numpy_mlp_step

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
        loss_hand = numpy_mlp_step(hand, x, y, lr=0.1)
        loss_ceiling = step(x, y, lr=0.1)
        assert loss_ceiling == pytest.approx(loss_hand, rel=1e-5)
    for name in params:
        assert np.abs(hand[name] - params[name]).max() > 1e-3  # the step moved it
        np.testing.assert_allclose(ceiling[name], hand[name], rtol=1e-5, atol=1e-6)


def test_the_hand_step_takes_pcgraphs_bp_step() -> None:
    """The floor is the same training step as pcgraph's bp with plain SGD (float64)."""
    import pcgraph as pc
    from benchmarks.floor import numpy_mlp_step
    from benchmarks.networks import random_batch
    from pcgraph.models import mlp

    g = mlp(sizes=(12, 7, 5, 4), activation="relu")
    prog = pc.compile(g, dtype="float64")
    params = prog.init_params(0)
    batch = random_batch(g, 6)
    batch["y"] = batch["y"] % 4
    hand = {k: np.array(v) for k, v in params.items()}
    loss = prog.train_step(params, batch, "bp", optimizer=pc.optim.SGD(lr=0.1))
    assert numpy_mlp_step(hand, batch["x"].astype(np.float64), batch["y"], lr=0.1) == (
        pytest.approx(loss, rel=1e-12)
    )
    for name in params:
        np.testing.assert_allclose(hand[name], params[name], rtol=1e-12, atol=1e-14)


def _tiny_mnist(folder: Path) -> None:
    """MNIST's four IDX files with 128 training and 50 test images of noise."""
    import pcgraph as pc
    from benchmarks.epoch import FILES

    rng = np.random.default_rng(0)
    folder.mkdir()
    for split, n in (("train", 128), ("test", 50)):
        pc.data.write_idx(
            folder / FILES[f"{split}_images"], rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        )
        pc.data.write_idx(folder / FILES[f"{split}_labels"], rng.integers(0, 10, n, dtype=np.uint8))


@pytest.mark.parametrize("contender", ["pcgraph-bp", "pytorch"])
def test_the_epoch_script_trains_and_reports_accuracy(tmp_path: Path, contender: str) -> None:
    if contender == "pytorch" and importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed (a benchmark-only dependency)")
    _tiny_mnist(tmp_path / "mnist")
    run = _run("benchmarks.epoch", "lenet", contender, "--data", str(tmp_path / "mnist"))
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.splitlines()[-1])
    assert 0.0 <= result["accuracy"] <= 1.0 and result["seconds"] > result["train_s"] > 0
    assert result["runtimes"] == (["pcgraph"] if contender.startswith("pcgraph") else ["torch"])


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
