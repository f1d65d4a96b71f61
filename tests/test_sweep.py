"""Sweeps on Ray Tune (``pcgraph sweep``, ``pc.sweep.run``): a 4-trial grid on a local Ray of 2
CPUs writes one row per trial, prints the best configuration and draws the plot; each trial
is an ordinary ``pcgraph train`` run (its metrics equal those of ``pcgraph train`` run by hand
with the trial's settings); a sweep run again with ``--resume`` retrains only the trials that
are missing and continues an unfinished one from its checkpoint, to the same numbers."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from pcgraph import cli
from pcgraph.cli import parse_grid
from pcgraph.errors import OptionError
from pcgraph.sweep import Space, parse_random

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
SETTINGS = [
    "--model", "mlp", "--model-args", "sizes=(64,16,10)", "--data", "digits",
    "--limit", "240", "--test-limit", "80", "--epochs", "2", "--batch-size", "32",
    "--algorithm", "il", "--lr", "0.1",
]  # fmt: skip
SWEPT = ["--grid", "rate=0.05,0.2", "--seeds", "0,1"]


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _epochs(folder: Path) -> list[dict]:
    """The run's metric rows without their times, numbers rounded to 6 significant digits
    (a trial's process may use another BLAS thread count than this one)."""
    rows = json.loads((folder / "metrics.json").read_text())["epochs"]
    return [
        {
            k: float(f"{v:.6g}") if isinstance(v, float) else v
            for k, v in r.items()
            if "seconds" not in k
        }
        for r in rows
    ]


@pytest.fixture(scope="module")
def local_ray():  # noqa: ANN201
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'pcgraph[sweep]')")
    pytest.importorskip("ray.tune", reason="Ray Tune is not installed")
    from pcgraph.sweep import ONE_THREAD

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": dict(ONE_THREAD)},
    )
    yield
    ray.shutdown()


def test_a_sweep_tables_its_trials_names_the_best_plots_and_resumes(
    tmp_path: Path, local_ray: None, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "sweep"
    assert cli.main(["sweep", *SETTINGS, *SWEPT, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = _rows(out / "sweep.csv")
    assert sorted((r["rate"], r["seed"]) for r in rows) == [
        ("0.05", "0"), ("0.05", "1"), ("0.2", "0"), ("0.2", "1"),
    ]  # fmt: skip
    assert all(r["status"] == "ok" and r["epochs"] == "2" for r in rows)
    best = max(rows, key=lambda r: float(r["best_test_acc"]))
    assert f"best test_acc {float(best['best_test_acc']):.4f}" in printed
    assert (out / "sweep.png").is_file() == HAS_MATPLOTLIB

    # A trial is pcgraph train with its settings: the same metrics, epoch by epoch.
    trial = Path(next(r["folder"] for r in rows if r["rate"] == "0.2" and r["seed"] == "1"))
    by_hand = tmp_path / "by-hand"
    argv = ["train", *SETTINGS, "--algo-option", "rate=0.2", "--seed", "1", "--no-plot"]
    assert cli.main([*argv, "--out", str(by_hand)]) == 0
    assert _epochs(trial) == _epochs(by_hand)

    # Interrupted: one trial lost, another stopped after its first epoch.
    before = {Path(r["folder"]).name: _epochs(Path(r["folder"])) for r in rows}
    lost = Path(rows[0]["folder"])
    shutil.rmtree(lost)
    half = Path(rows[1]["folder"])
    shutil.rmtree(half)
    rate, seed = rows[1]["rate"], rows[1]["seed"]
    half_argv = ["train", *SETTINGS, "--algo-option", f"rate={rate}", "--seed", seed]
    assert cli.main([*half_argv, "--epochs", "1", "--no-plot", "--out", str(half)]) == 0
    untouched = Path(rows[2]["folder"]) / "metrics.json"
    stamp = untouched.stat().st_mtime_ns
    (out / "sweep.csv").unlink()

    assert cli.main(["sweep", *SETTINGS, *SWEPT, "--resume", str(out), "--no-plot"]) == 0
    again = _rows(out / "sweep.csv")
    assert [r["trial"] for r in again] == [r["trial"] for r in rows]
    assert all(r["status"] == "ok" and r["epochs"] == "2" for r in again)
    assert untouched.stat().st_mtime_ns == stamp  # a finished trial is not trained again
    for r in again:  # the lost and the half-done trials end where they ended before
        assert _epochs(Path(r["folder"])) == before[Path(r["folder"]).name]


def test_the_python_api_sweeps_with_asha(tmp_path: Path, local_ray: None) -> None:
    import pcgraph as pc

    # One trial at a time (cpus=1), the best rate first.
    train = {"model_args": "sizes=(64,16,10)", "limit": 600, "test_limit": 80, "epochs": 4}
    train |= {"algorithm": "il", "algo_option": ["steps=20"], "batch_size": 8, "no_plot": True}
    rows = pc.sweep.run(
        "mlp", "digits", {"lr": [0.1, 0.0001]}, train=train, out=tmp_path / "asha",
        asha=True, plot=False, cpus=1,
    )  # fmt: skip
    assert sorted(r["lr"] for r in rows) == [0.0001, 0.1]
    assert {r["status"] for r in rows} <= {"ok", "stopped early"}
    best = max(rows, key=lambda r: r["best_test_acc"] or 0.0)
    assert best["status"] == "ok" and best["epochs"] == 4  # the best trial ran to the end
    # Whether ASHA's decision reaches the poor trial before its training process has run all
    # its epochs depends on the machine's timing (the process trains on while Ray decides), so
    # the stop itself is not asserted here; its status is "stopped early" when it does.


def test_a_swept_key_that_nothing_takes_is_refused_before_ray_starts(tmp_path: Path) -> None:
    argv = ["sweep", *SETTINGS, "--grid", "ratee=0.1,0.2", "--out", str(tmp_path / "s")]
    assert cli.main(argv) == 2


def test_grid_and_random_spaces_expand_to_every_configuration() -> None:
    space = Space(grid=parse_grid(["rate=0.05,0.1", "steps=5,20"]), seeds=[0, 1])
    configs = space.configurations()
    assert len(configs) == 8 and configs[0] == {"rate": 0.05, "steps": 5, "seed": 0}
    drawn = Space(random=parse_random(["lr=0.001,0.1,log"]), samples=3, seeds=[0])
    values = [c["lr"] for c in drawn.configurations()]
    assert len(values) == 3 and all(0.001 <= v <= 0.1 for v in values)
    assert values == [c["lr"] for c in drawn.configurations()]  # seeded: the same draws
    with pytest.raises(OptionError, match="KEY=V1,V2"):
        parse_grid(["rate"])
    with pytest.raises(OptionError, match="LOW > 0"):
        parse_random(["lr=0,1,log"])


@pytest.mark.slow
def test_the_sweep_example_finds_where_il_matches_bp(tmp_path: Path) -> None:
    pytest.importorskip("ray.tune", reason="Ray Tune is not installed")
    from test_examples import run_example

    out = run_example("sweep_il", ["--quick", "--cpus", "2"], tmp_path, timeout=600)
    assert "BP test accuracy" in out and "rate 0.05" in out and "rate 0.2" in out
    assert (tmp_path / "runs" / "sweep_il" / "il" / "sweep.csv").is_file()
    if "max |p_2 - p_1|" in out:  # the MPI part ran: 2 ranks end where one process does
        gap = float(out.split("max |p_2 - p_1| = ")[1].split(";")[0])
        assert gap <= 1e-10


def test_a_toml_spec_holds_the_train_settings_the_space_and_the_sweep_settings(
    tmp_path: Path,
) -> None:
    from pcgraph.sweep import load_spec

    spec = tmp_path / "sweep.toml"
    spec.write_text(
        '[train]\nmodel = "mlp"\nepochs = 1\nalgorithm = "il"\n'
        "[grid]\nrate = [0.05, 0.1]\n"
        '[random]\nlr = [0.001, 0.1, "log"]\n'
        '[sweep]\nseeds = [0, 1]\nsamples = 2\nmetric = "test_loss"\n'
    )
    train, space, settings = load_spec(spec)
    assert train == {"model": "mlp", "epochs": 1, "algorithm": "il"}
    assert settings == {"metric": "test_loss"}
    configs = space.configurations()
    assert len(configs) == 8 and {c["rate"] for c in configs} == {0.05, 0.1}
    assert all(0.001 <= c["lr"] <= 0.1 for c in configs)
    spec.write_text("[grids]\nrate = [1]\n")
    with pytest.raises(OptionError, match="unknown table"):
        load_spec(spec)
