"""The paper reproductions (``examples/reproduce``) run end to end in quick mode, write their
report, and their key claims already hold at that size."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.reproduce import EXPERIMENTS, NAMES, common  # noqa: E402
from pcgraph.errors import FileFormatError  # noqa: E402

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(scope="module", autouse=True)
def _data_available() -> None:
    try:
        common.mnist(True, 8, 8)
    except (FileFormatError, ImportError) as e:
        pytest.skip(f"no MNIST and no digits stand-in: {e}")


def rows(text: str, first_header: str) -> list[dict[str, str]]:
    """The rows of the Markdown table whose header starts with ``| first_header |``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    head = [c.strip() for c in lines[start].strip("|").split("|")]
    out = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        out.append(dict(zip(head, (c.strip() for c in line.strip("|").split("|")))))
    return out


def number(cell: str) -> float:
    return float(cell.split()[0])


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each experiment run once in quick mode through its command-line entry point."""
    out = tmp_path_factory.mktemp("reproduce")
    texts = {}
    for name in NAMES:
        assert EXPERIMENTS[name].main(["--quick", "--out", str(out)]) == 0
        texts[name] = (out / f"{name}.md").read_text()
        assert texts[name].startswith("# ")
        assert f"python -m examples.reproduce.{name} --quick" in texts[name]
        assert (out / f"{name}.png").exists() == HAS_MATPLOTLIB
    return texts


def test_every_experiment_is_registered_with_run_and_main() -> None:
    assert list(EXPERIMENTS) == [
        "accuracy",
        "ablation",
        "runtime",
        "stability",
        "fpa",
        "fullscale",
        "deep",
    ]
    for module in EXPERIMENTS.values():
        assert callable(module.run) and callable(module.main)


def test_accuracy_zil_equals_backprop_and_il_differs(reports: dict[str, str]) -> None:
    table = rows(reports["accuracy"], "network | algorithm")
    by = {(r["network"], r["algorithm"], r["dtype"]): r for r in table}
    end, first = "max abs vs BP, end", "max abs vs BP, 1 update"
    for net in ("mlp", "cnn", "rnn", "resnet", "transformer"):
        bp, zil = by[(net, "BP", "float32")], by[(net, "Z-IL", "float32")]
        assert number(by[(net, "Z-IL", "float64")][end]) <= 1e-10
        assert number(zil[end]) <= 1e-5
        assert zil["test acc %"] == bp["test acc %"]
        assert (
            by[(net, "Z-IL", "float64")]["test acc %"] == by[(net, "BP", "float64")]["test acc %"]
        )
        assert number(by[(net, "FPA (depth sweeps, rate 1)", "float32")][first]) <= 1e-5
        assert number(by[(net, "IL (20 steps, rate 0.1)", "float32")][first]) > 1e-4
        assert number(by[(net, "FPA (20 sweeps, rate 0.1)", "float32")][first]) > 1e-4


def test_ablation_every_dropped_condition_diverges(reports: dict[str, str]) -> None:
    text = reports["ablation"]
    assert text.count("| variant |") == 3  # the sigmoid MLP, the MLP and the CNN
    for table in text.split("| variant |")[1:]:
        table = rows("| variant |" + table, "variant")
        by = {r["variant"]: r for r in table}
        assert number(by["Z-IL, all three conditions"]["1 update, float64"]) <= 1e-10
        assert number(by["Z-IL, literal dense dynamics"]["1 update, float64"]) <= 1e-10
        ablated = [r for r in table if r["variant"].startswith("no C")]
        assert len(ablated) == 7
        assert all(number(r["1 update, float64"]) > 1e-6 for r in ablated)


def test_runtime_has_every_network_and_algorithm(reports: dict[str, str]) -> None:
    table = rows(reports["runtime"], "network")
    assert len(table) == 5
    for r in table:
        for col in ("BP ms", "Z-IL ms", "FPA (depth sweeps) ms", "IL (20 steps) ms"):
            assert number(r[col]) > 0
        assert number(r["Z-IL / BP"]) > 0
    assert "Quick mode: one repeat, a smoke run" in reports["runtime"]


def test_stability_il_prox_survives_every_learning_rate(reports: dict[str, str]) -> None:
    table = rows(reports["stability"], "learning rate")
    assert [r["learning rate"] for r in table] == ["0.01", "0.1", "1", "2.5", "10", "100"]
    for r in table:
        for col in r:
            if col.startswith("IL-prox"):
                assert "diverged" not in r[col] and "worse" not in r[col], (
                    r["learning rate"],
                    r[col],
                )
    worst = table[-1]  # lr 100: SGD-backprop does not learn
    assert all(
        "diverged" in worst[c] or "worse" in worst[c] for c in worst if c.startswith("BP-SGD")
    )


def test_fpa_rate_1_is_exact_from_the_depth_on(reports: dict[str, str]) -> None:
    table = rows(reports["fpa"], "steps")
    at = next(i for i, r in enumerate(table) if "(= depth)" in r["steps"])
    for when in ("at initialisation",):
        col = f"FPA, rate 1, {when}"
        assert all(number(r[col]) <= 1e-12 for r in table[at:])
        assert number(table[at - 1][col]) > 1e-2
        assert number(table[-1][f"strict IL, rate 0.1, {when}"]) > 1e-2


def test_fullscale_zil_accuracy_is_bp_accuracy(reports: dict[str, str]) -> None:
    table = rows(reports["fullscale"], "data | network | BP")
    assert len(table) in (2, 4)  # MNIST (and Fashion-MNIST where installed), MLP and LeNet
    for r in table:
        assert r["Z-IL"] == r["BP"]
        assert number(r["Z-IL vs BP: sum of abs parameter differences"]) <= 1e-3
        for col in ("IL (layers)", "iPC (layers)"):
            assert 0.0 <= number(r[col]) <= 100.0


def test_deep_has_every_row_and_zil_is_backprop(reports: dict[str, str]) -> None:
    table = rows(reports["deep"], "row")
    by = {(r["row"], r["network"], r["Adam lr"]): r for r in table}
    assert set(by) == {
        ("BP", "mupc", "0.1"),
        ("Z-IL", "mupc", "0.1"),
        ("muPC-IL", "mupc", "0.1"),
        ("ePC (rate 0.5)", "mupc", "0.01"),
        ("ePC (rate 0.1)", "mupc", "0.01"),
        ("ePC (rate 0.02)", "mupc", "0.01"),
        ("BP", "mupc", "0.01"),
        ("BP", "sp", "0.001"),
        ("standard IL", "sp", "0.001"),
        ("ePC (rate 1e-09)", "sp", "0.001"),
        ("BP", "standard", "0.001"),
        ("standard IL", "standard", "0.001"),
    }
    assert by[("Z-IL", "mupc", "0.1")]["test acc %"] == by[("BP", "mupc", "0.1")]["test acc %"]
    for r in table:
        assert r["note"] == "" and 0.0 <= number(r["test acc %"]) <= 100.0
    assert len(rows(reports["deep"], "width")) == 4  # two widths times two depths


@pytest.mark.parametrize(
    "settings",
    [
        "il_steps=3",
        "il_steps=x,il_rate=0.1,ipc_steps=2,ipc_lr=0.1",
        "il_steps=2,il_rate=0.1,ipc_steps=2,ipc_lr=0.1,typo=1",
    ],
)
def test_fullscale_refuses_bad_settings_with_a_usage_error(
    settings: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as stop:
        EXPERIMENTS["fullscale"].main(["--quick", "--settings", settings])
    assert stop.value.code == 2
    assert "argument --settings" in capsys.readouterr().err
