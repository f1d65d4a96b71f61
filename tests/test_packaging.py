"""The built wheel installs pcgraph with pcgraph.backends, usable from outside the repository."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_installs_pcgraph_backends_importable_from_elsewhere(tmp_path: Path) -> None:
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    # Without the `wheel` package here, let pip build in an isolated env that fetches it.
    isolation = [] if importlib.util.find_spec("wheel") is None else ["--no-build-isolation"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            *isolation,
            "-q",
            "-w",
            str(wheels),
        ],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("pcgraph-*.whl")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        cwd=tmp_path,
    )
    probe = (
        "import pcgraph, pcgraph.backends as b, sys;"
        "assert pcgraph.__file__.startswith(sys.argv[1]), pcgraph.__file__;"
        "assert b.__file__.startswith(sys.argv[1]), b.__file__;"
        "assert 'cupy' not in sys.modules;"
        "print(b.available())"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", probe, str(target)],
        check=True,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert "numpy" in out.stdout
