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

HAS_DIGITS = importlib.util.find_spec("sklearn") is not None

# Z-IL against backprop, in float32: parameters after training, or gradients on one batch.
DIVERGENCE = re.compile(r"max \|([pg])_zil - \1_bp\| = ([0-9.eE+-]+)")
TOLERANCE = 1e-5


def run_example(name: str, args: list[str], cwd: Path, timeout: float = 120) -> str:
    """Run ``examples/<name>.py`` with ``args`` in ``cwd``; return its output (it must succeed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
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


@needs(HAS_DIGITS, "scikit-learn (the digits data)")
def test_custom_op(tmp_path: Path) -> None:
    out = run_example("custom_op", ["--quick"], tmp_path)
    assert "FAIL" not in out.split("the same check on a VJP")[0], "the correct VJP must pass"
    assert "wrong VJP caught" in out
    assert "graph JSON round trip: True" in out
    assert re.search(r"zil vs bp on one batch, float64: max \|g_zil - g_bp\| = \S+", out)
    assert zil_divergence(out) <= TOLERANCE
    assert (tmp_path / "runs" / "custom_op" / "swish_mlp.json").is_file()


@pytest.mark.parametrize("name", ["quickstart", "custom_op"])
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
