"""Saves survive being killed at any moment, and loading a hostile file runs no code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pcgraph as pc

ROOT = Path(pc.__file__).resolve().parent.parent

SAVER = """
import sys
import numpy as np
import pcgraph as pc

path = sys.argv[1]
w = np.zeros((256, 256))
step = 0
while True:
    step += 1
    w[:] = step  # every entry equals the step recorded in the metadata
    pc.save(path, {"W": w}, meta={"step": step})
    print(step, flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_a_save_killed_at_random_moments_leaves_a_complete_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.npz"
    pc.save(path, {"W": np.zeros((256, 256))}, meta={"step": 0})
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = np.random.default_rng(0)
    steps_seen = set()
    for _ in range(12):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path)], env=env, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # it is saving in a loop now
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt = pc.load(path)
        step = ckpt.meta["step"]
        assert np.all(ckpt.params["W"] == step), "the checkpoint mixes two saves"
        steps_seen.add(step)
    assert len(steps_seen) > 1, "the saver should have been killed at different steps"


def test_loading_a_pickled_payload_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):  # noqa: ANN204
            return (os.system, (f"touch {marker}",))

    hostile = tmp_path / "hostile.npz"
    np.savez(hostile, a0=np.array([Exploit()], dtype=object))
    with pytest.raises(pc.FileFormatError, match="hostile.npz"):
        pc.load(hostile)
    assert not marker.exists()


def test_loading_hostile_graph_json_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    name = f"__import__('os').system('touch {marker}')"
    text = (
        '{"format": "pcgraph-graph", "name": "' + name + '", '
        '"nodes": [{"name": "x", "kind": "input", "shape": "eval(1)"}]}'
    )
    path = tmp_path / "g.json"
    path.write_text(text)
    with pytest.raises(pc.FileFormatError, match="g.json"):
        pc.load_graph(path)
    assert not marker.exists()
