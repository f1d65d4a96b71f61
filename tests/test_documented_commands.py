"""Every command the README and the ``--help`` texts show runs as written.

The commands are parsed out of README.md's shell blocks and out of each command's examples, so
a new example is tested the day it is written.  Each runs in one fresh folder, in order (the
help's ``train`` examples make the run folders its ``evaluate`` examples read), in quick form:
``train`` and ``compare`` get ``--limit 64 --test-limit 32 --epochs 1`` appended (later flags
win) and ``reproduce`` ``--quick``; everything else runs exactly as shown.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

import pcgraph as pc
from pcgraph import cli

ROOT = Path(__file__).resolve().parent.parent
QUICK = ["--limit", "64", "--test-limit", "32", "--epochs", "1", "--no-plot"]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("pcgraph ")]


def help_commands() -> list[str]:
    return [
        " ".join(example.replace("\\\n", " ").split())
        for command in cli.COMMANDS.values()
        for example in command.examples
    ]


def quick_form(argv: list[str]) -> list[str]:
    command = argv[0]
    if command in ("train", "compare", "sweep") and "--resume" not in argv:
        return [*argv, *QUICK, "--overwrite"]
    if command == "train":  # a resumed run keeps its own settings; one more epoch at most
        return argv
    if command == "reproduce":
        return [*argv, "--quick"] if "--quick" not in argv else argv
    return argv


COMMANDS = help_commands() + readme_commands()


def test_the_documentation_shows_commands_of_every_kind() -> None:
    kinds = {shlex.split(c)[1] for c in COMMANDS}
    assert kinds == set(cli.COMMANDS)
    assert len(readme_commands()) >= 10


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("documented")
    (folder / "examples").symlink_to(ROOT / "examples")
    return folder


@pytest.mark.parametrize("command", COMMANDS)
def test_a_documented_command_runs(command: str, workdir: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    argv = shlex.split(command)[1:]
    if argv[0] in ("verify",) and "--data" in argv and "mnist" in argv:
        argv += ["--batch-size", "2", "--directions", "1"]
    if argv[0] == "sweep":
        pytest.importorskip(
            "ray.tune", reason="sweeps need Ray Tune (pip install 'pcgraph[sweep]')"
        )
    if argv[0] == "reproduce" and argv[1] not in ("fpa", "ablation"):
        pytest.skip("the reproduce examples run in tests/test_reproduce.py")
    try:
        if "mnist" in argv:
            pc.data.mnist()
    except pc.FileFormatError as e:
        pytest.skip(f"MNIST is not installed: {e}")
    monkeypatch.chdir(workdir)
    code = cli.main(quick_form(argv))
    _, err = capsys.readouterr()
    assert code == 0, f"{command!r} failed: {err[-1500:]}"


def test_the_readme_python_runs_in_order(workdir: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    """README.md's Python blocks, one after another in one namespace (the first reads the run
    folder that the first session's commands, run above in the same folder, wrote)."""
    try:
        pc.data.mnist()
    except pc.FileFormatError as e:
        pytest.skip(f"MNIST is not installed: {e}")
    if not (workdir / "runs" / "lenet-zil" / "checkpoint.npz").is_file():
        pytest.skip("the first session's commands did not run here")
    monkeypatch.chdir(workdir)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    for block in blocks:
        # A block whose first line is "# needs: a, b" runs where those packages are installed.
        needs = re.match(r"# needs: (.*)\n", block)
        if needs and not all(importlib.util.find_spec(m.strip()) for m in needs[1].split(",")):
            continue
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    assert (
        pc.compare.max_abs_diff(namespace["runs"]["zil"].params, namespace["runs"]["bp"].params)
        == 0.0
    )
