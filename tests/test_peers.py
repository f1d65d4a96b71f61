"""Predictive coding against the peers' own code, on the same weights, in float64.

PCX (Pinchetti et al. 2024) runs in a subprocess where it is installed (JAX stays out of this
process): its tutorial MLP, one vode per layer after the activation, is pcgraph's
``value_nodes="layers"``; its IL step and its incremental-PC step must give pcgraph's weights.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
needs_pcx = pytest.mark.skipif(
    importlib.util.find_spec("pcx") is None,
    reason="PCX is not installed (pip install pcx==0.6.3 'jax[cpu]==0.4.38'; Python >= 3.11)",
)


@needs_pcx
@pytest.mark.parametrize("algorithm", ["il", "ipc"])
def test_pcx_tutorial_mlp_takes_pcgraphs_step_with_one_value_node_per_layer(algorithm: str) -> None:
    code = (
        "import jax; jax.config.update('jax_enable_x64', True)\n"
        "from benchmarks.pcx_peer import check_float64\n"
        f"print(check_float64({algorithm!r}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) <= 1e-12
