"""Hyper-parameter sweeps on Ray Tune: a grid (or random search) over training options,
algorithm options, model arguments and seeds, every trial an ordinary ``pcgraph train`` run
in its own run folder, executed by Ray Tune.

    rows = pc.sweep.run("mlp", "digits", {"rate": [0.05, 0.1], "lr": [0.01, 0.1]},
                        seeds=[0, 1], train={"algorithm": "il", "epochs": 3}, out="runs/sweep")

A key of the space is an option of ``pcgraph train`` (``lr``, ``batch_size``, ``algorithm``,
``optimizer``, ...), ``model.KEY`` for an argument of the model builder, or else an option of
the algorithm (``rate``, ``steps``, ...).  By default Ray starts locally, sized to the machine,
each trial on one CPU with one BLAS thread (so trials do not oversubscribe the cores);
``address`` joins a running Ray cluster instead.  ``asha=True`` stops poor trials early
(Ray's ASHA scheduler, by epoch).

The sweep folder holds ``trials/<name>/`` (each trial's run folder: metrics, checkpoint,
curves), ``sweep.csv`` (one row per trial: its configuration, final and best metric, epochs,
seconds, status) and ``sweep.png`` (the metric against each swept hyper-parameter).  A trial
is named after its configuration, so running the same sweep again with ``resume=True``
(``pcgraph sweep ... --resume``) skips the trials already finished and continues unfinished
ones from their last checkpoint: an interrupted sweep resumes.  A trial runs ``python -m
pcgraph.cli train ...`` in a process of its own (its output in the run folder's
``train.log``) and reports each epoch's metrics as its ``metrics.json`` grows.
"""

from __future__ import annotations

import argparse
import csv
import io as _stdio
import itertools
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OptionError

# Every trial computes with one BLAS / OpenMP thread: Ray runs one trial per CPU.
ONE_THREAD = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PCGRAPH_SWEEP_TRIAL": "1",
}


@dataclass
class Space:
    """What a sweep varies: ``grid`` (key -> values, every combination), ``random`` (key ->
    (low, high, log): ``samples`` draws each, seeded by ``draw_seed``) and ``seeds``."""

    grid: dict[str, list] = field(default_factory=dict)
    random: dict[str, tuple[float, float, bool]] = field(default_factory=dict)
    samples: int = 0
    seeds: list[int] = field(default_factory=lambda: [0])
    draw_seed: int = 0

    @property
    def keys(self) -> list[str]:
        """The swept hyper-parameters, seeds excluded."""
        return [*self.grid, *self.random]

    def configurations(self) -> list[dict[str, Any]]:
        """Every trial's settings (swept keys and ``seed``), in a fixed order."""
        grid = [dict(zip(self.grid, values)) for values in itertools.product(*self.grid.values())]
        if self.random:
            rng = np.random.default_rng(self.draw_seed)
            drawn = []
            for _ in range(self.samples):
                one = {}
                for key, (low, high, log) in self.random.items():
                    u = rng.uniform(math.log(low), math.log(high)) if log else None
                    one[key] = float(math.exp(u) if log else rng.uniform(low, high))
                drawn.append(one)
            grid = [{**g, **d} for g in grid for d in drawn]
        return [{**g, "seed": seed} for g in grid for seed in self.seeds]


def parse_random(items: Sequence[str] | None) -> dict[str, tuple[float, float, bool]]:
    """``--random key=low,high[,log]`` items into ``{key: (low, high, log)}``."""
    out = {}
    for item in items or []:
        key, sep, rest = item.partition("=")
        parts = [p.strip() for p in rest.split(",")]
        try:
            low, high = float(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            low = high = math.nan
        log = parts[2:] == ["log"]
        bad = not (math.isfinite(low) and math.isfinite(high) and low < high)
        if not sep or bad or len(parts) not in (2, 3) or (len(parts) == 3 and not log):
            raise OptionError(f"--random: expected KEY=LOW,HIGH or KEY=LOW,HIGH,log, got {item!r}")
        if log and low <= 0:
            raise OptionError(f"--random {item!r}: a log-uniform range needs LOW > 0")
        out[key.strip()] = (low, high, log)
    return out


def load_spec(path: str | Path) -> tuple[dict[str, Any], Space, dict[str, Any]]:
    """A TOML sweep file: ``[train]`` (train options, as ``pcgraph train`` takes them),
    ``[grid]`` (key = [values]), ``[random]`` (key = [low, high] or [low, high, "log"]),
    ``[sweep]`` (``seeds``, ``samples``, ``metric``, ``mode``, ``asha``).  Returns (train
    settings, space, sweep settings)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise OptionError("reading a TOML sweep file needs Python 3.11 or tomli") from None
    from .files import read_bounded

    try:
        spec = tomllib.loads(read_bounded(Path(path), 1 << 20, "SPEC.toml").decode())
    except tomllib.TOMLDecodeError as e:
        raise OptionError(f"{path}: not a TOML sweep file ({e})") from None
    unknown = sorted(set(spec) - {"train", "grid", "random", "sweep"})
    if unknown:
        raise OptionError(f"{path}: unknown table(s) {unknown}; use train, grid, random, sweep")
    settings = dict(spec.get("sweep", {}))
    grid = {k: list(v) if isinstance(v, list) else [v] for k, v in spec.get("grid", {}).items()}
    random = parse_random(
        [f"{k}={','.join(map(str, v))}" for k, v in spec.get("random", {}).items()]
    )
    space = Space(
        grid=grid,
        random=random,
        samples=int(settings.pop("samples", 1 if random else 0)),
        seeds=[int(s) for s in settings.pop("seeds", [0])],
    )
    return dict(spec.get("train", {})), space, settings


# --------------------------------------------------------------------------- trials
def _value_text(value: Any) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return re.sub(r"[^\w.+-]", "_", text)


def trial_name(index: int, settings: Mapping[str, Any]) -> str:
    """A trial's folder name: its number and its settings (stable across reruns)."""
    return f"{index:03d}-" + ",".join(f"{k}={_value_text(v)}" for k, v in settings.items())


def _flags(settings: Mapping[str, Any]) -> list[str]:
    """``pcgraph train`` flags for ``settings`` (option name -> value): ``--name value``,
    a bare ``--name`` for True, nothing for None or False, one ``--algo-option`` per item."""
    argv: list[str] = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif key == "algo_option":
            for item in value:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(value)]
    return argv


def trial_settings(base: Mapping[str, Any], swept: Mapping[str, Any]) -> dict[str, Any]:
    """One trial's ``pcgraph train`` settings: ``base`` with ``swept`` applied: ``model.KEY``
    into the model arguments, an option of the trial's algorithm as an ``--algo-option``, any
    other key as the train option of that name."""
    from .algorithms import get_algorithm

    settings = dict(base)
    algo_options = list(base.get("algo_option") or [])
    model_args = [a for a in str(base.get("model_args") or "").split(",") if a]
    algorithm = swept.get("algorithm", base.get("algorithm") or "bp")
    for key, value in swept.items():
        if key.startswith("model."):
            model_args.append(f"{key[6:]}={value}")
        elif key in get_algorithm(str(algorithm)).options:
            algo_options.append(f"{key}={value}")
        else:
            settings[key.replace("-", "_")] = value
    settings["algo_option"], settings["model_args"] = algo_options, ",".join(model_args) or None
    return settings


def _metrics(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: (float(v) if isinstance(v, float) and math.isfinite(v) else v)
        for k, v in row.items()
        if isinstance(v, int | float) and v is not None and not isinstance(v, bool)
    }


def _report(metrics: dict[str, Any]) -> None:
    from ray import tune

    report = getattr(tune, "report", None)
    if report is None:  # Ray < 2.41: the report of ray.train
        from ray import train as ray_train

        report = ray_train.report
    report(metrics)


def _stored_rows(folder: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads((folder / "metrics.json").read_text())["epochs"])
    except (OSError, ValueError, KeyError):
        return []


def _source_root() -> str:
    """The folder holding the ``pcgraph`` package: a trial's process imports it from there."""
    return str(Path(__file__).resolve().parents[1])


def run_trial(config: Mapping[str, Any]) -> None:
    """One trial (Ray calls it in a worker): ``pcgraph train`` with the trial's settings in
    its run folder, in a process of its own, reporting each epoch's metrics as they are
    written; a finished run's rows are reported again without training, an unfinished one
    resumes from its checkpoint."""
    trial = config["trial"]
    folder, epochs = Path(trial["folder"]), int(trial["epochs"])
    folder.mkdir(parents=True, exist_ok=True)
    rows = _stored_rows(folder) if (folder / "checkpoint.npz").exists() else []
    if len(rows) >= epochs:
        for row in rows:
            _report(_metrics(row))
        return
    if rows:
        argv = ["train", "--resume", str(folder), "--epochs", str(epochs)]
    else:
        argv = ["train", *trial["argv"], "--out", str(folder), "--overwrite"]
    env = {**os.environ, **ONE_THREAD}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_source_root(), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pcgraph.cli", *argv, "--no-progress"]
    reported = 0
    with open(folder / "train.log", "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            while True:
                finished = proc.poll() is not None
                rows = _stored_rows(folder)
                for row in rows[reported:]:  # each epoch once, in order (ASHA decides here)
                    _report(_metrics(row))
                reported = max(reported, len(rows))
                if finished:
                    break
                time.sleep(0.05)
        finally:  # stopped early (ASHA) or interrupted: the training process goes too
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=60)
    if proc.returncode != 0:
        lines = (folder / "train.log").read_text(errors="replace").strip().splitlines()
        raise RuntimeError(f"pcgraph train failed: {lines[-1] if lines else proc.returncode}")


# --------------------------------------------------------------------------- the sweep
def sweep(
    base: Mapping[str, Any],
    space: Space,
    out: str | Path,
    metric: str | None = None,
    mode: str | None = None,
    asha: bool = False,
    address: str | None = None,
    cpus: int | None = None,
    resume: bool = False,
    plot: bool = True,
    train_options: Collection[str] | None = None,
    echo: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run ``space`` on Ray Tune, each trial ``pcgraph train`` with the settings ``base``
    (train option name -> value, e.g. ``{"model": "mlp", "data": "digits", "epochs": 3}``)
    and the trial's; write ``sweep.csv`` and ``sweep.png`` to ``out``; return the table's
    rows, in trial order.  ``train_options`` (the names train takes, when the caller knows
    them) lets a swept key that nothing takes be refused before Ray starts."""
    base = dict(base)
    if base.get("epochs") is None:
        base["epochs"] = 5
    # Trials run in folders of their own: the files they read are named by absolute paths.
    if base.get("graph"):
        file, colon, function = str(base["graph"]).partition(":")
        base["graph"] = f"{Path(file).resolve()}{colon}{function}"
    if base.get("data_root"):
        base["data_root"] = str(Path(base["data_root"]).resolve())
    metric = metric or "test_acc"
    mode = mode or ("min" if "loss" in metric else "max")
    if mode not in ("min", "max"):
        raise OptionError(f"--mode {mode!r} must be min or max")
    configurations = space.configurations()
    if not configurations:
        raise OptionError(
            "the sweep has no trials: give --grid, --random with --samples, or --seeds"
        )
    _check_settings(base, space, train_options)
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()) and not resume:
        if (out / "trials").exists() or (out / "sweep.csv").exists():
            raise OptionError(
                f"--out {str(out)!r} already holds a sweep; pass --resume to continue it (the "
                "same sweep), or another --out"
            )
    (out / "trials").mkdir(parents=True, exist_ok=True)
    trials = []
    for i, swept in enumerate(configurations):
        name = trial_name(i, swept)
        argv = _flags(trial_settings(base, swept))
        folder = str(out / "trials" / name)
        trials.append(
            {
                "name": name,
                "folder": folder,
                "settings": swept,
                "argv": argv,
                "epochs": base["epochs"],
            }
        )
    statuses = _run_on_ray(trials, metric, mode, asha, address, cpus, int(base["epochs"]), out)
    rows = _table(trials, statuses, metric, mode, space.keys)
    _write_csv(out / "sweep.csv", rows)
    echo(f"wrote {out / 'sweep.csv'} ({len(rows)} trials)")
    best = _best(rows, mode)
    if best is not None:
        shown = ", ".join(f"{k}={best[k]}" for k in [*space.keys, "seed"])
        echo(f"best {metric} {best['best_' + metric]:.4f}: {shown} ({best['folder']})")
    if plot:
        from . import plots

        if plots.available():
            path = plots.sweep(rows, space.keys, f"best_{metric}", out / "sweep.png", out.name)
            echo(f"wrote {path}")
        else:
            echo("note: matplotlib is not installed, so no plot (pip install 'pcgraph[plot]')")
    return rows


def _check_settings(
    base: Mapping[str, Any], space: Space, train_options: Collection[str] | None
) -> None:
    """Every swept key names a model argument, an option of the algorithm or (when the
    caller knows train's options) a train option, before any trial starts."""
    from .algorithms import get_algorithm

    algorithms = {base.get("algorithm") or "bp", *space.grid.get("algorithm", [])}
    for a in algorithms:
        get_algorithm(str(a))  # an unknown algorithm names the valid ones
    if train_options is None:
        return  # pcgraph train refuses an unknown option in the trial itself
    for key in space.keys:
        known = key.replace("-", "_") in train_options or key.startswith("model.")
        if not known and not any(key in get_algorithm(str(a)).options for a in algorithms):
            raise OptionError(
                f"sweep key {key!r} is no option of pcgraph train, of the model (model.KEY) or "
                f"of algorithm {', '.join(sorted(map(str, algorithms)))}"
            )


def _run_on_ray(
    trials: list[dict],
    metric: str,
    mode: str,
    asha: bool,
    address: str | None,
    cpus: int | None,
    epochs: int,
    out: Path,
) -> dict[str, str]:
    """Run every trial on Ray Tune; returns trial name -> status ("ok" or the error)."""
    try:
        import ray
        from ray import tune
    except ImportError:
        raise OptionError("sweeps run on Ray Tune: pip install 'pcgraph[sweep]'") from None
    started = False
    if not ray.is_initialized():
        env = {"env_vars": dict(ONE_THREAD)}
        if address:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        else:
            ray.init(
                num_cpus=cpus or os.cpu_count() or 1,
                runtime_env=env,
                include_dashboard=False,
                log_to_driver=False,
            )
        started = True
    try:
        scheduler = None
        if asha:
            from ray.tune.schedulers import ASHAScheduler

            scheduler = ASHAScheduler(
                time_attr="epoch", metric=metric, mode=mode, max_t=epochs, grace_period=1
            )
        run_config = getattr(tune, "RunConfig", None)
        if run_config is None:
            from ray.train import RunConfig as run_config
        tuner = tune.Tuner(
            tune.with_resources(run_trial, {"cpu": 1}),
            param_space={"trial": tune.grid_search(trials)},
            tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=True),
            run_config=run_config(name="tune", storage_path=str(out / "ray"), verbose=0),
        )
        results = tuner.fit()
        statuses = {}
        for result in results:
            name = result.config["trial"]["name"]
            if result.error is not None:
                statuses[name] = f"error: {_first_line(result.error)}"
            elif int((result.metrics or {}).get("epoch", epochs)) < epochs:
                # ASHA's decision, even when the training process had already run on
                # (its epochs are reported as they are written, and may outrun the decision).
                statuses[name] = "stopped early"
            else:
                statuses[name] = "ok"
        return statuses
    finally:
        if started:
            ray.shutdown()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    found = [line for line in text if "Error:" in line]
    return (found[-1] if found else (text[-1] if text else type(error).__name__)).strip()[:300]


def _table(
    trials: list[dict], statuses: Mapping[str, str], metric: str, mode: str, keys: list[str]
) -> list[dict[str, Any]]:
    rows = []
    pick = max if mode == "max" else min
    for t in trials:
        history = _stored_rows(Path(t["folder"]))
        last = history[-1] if history else {}
        values = [r.get(metric) for r in history if isinstance(r.get(metric), int | float)]
        values = [v for v in values if math.isfinite(v)]
        status = statuses.get(t["name"], "not run")
        if status == "ok" and len(history) < int(t["epochs"]):
            status = "stopped early"
        rows.append(
            {
                "trial": t["name"],
                **{k: t["settings"].get(k) for k in keys},
                "seed": t["settings"]["seed"],
                "epochs": len(history),
                f"final_{metric}": last.get(metric),
                f"best_{metric}": pick(values) if values else None,
                "final_loss": last.get("loss"),
                "final_test_acc": last.get("test_acc"),
                "seconds": sum(
                    float(r.get("train_seconds") or 0) + float(r.get("eval_seconds") or 0)
                    for r in history
                ),
                "status": status,
                "folder": t["folder"],
            }
        )
    return rows


def _best(rows: list[dict[str, Any]], mode: str) -> dict[str, Any] | None:
    key = next(k for k in rows[0] if k.startswith("best_")) if rows else None
    scored = [r for r in rows if key and r[key] is not None]
    if not scored:
        return None
    return (max if mode == "max" else min)(scored, key=lambda r: r[key])


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    from .files import atomic_write_text

    buf = _stdio.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


# --------------------------------------------------------------------------- the Python API
def run(
    model: str | Callable[..., Any] | Any,
    data: str,
    space: Mapping[str, Sequence[Any]],
    seeds: Sequence[int] = (0,),
    train: Mapping[str, Any] | None = None,
    out: str | Path = "runs/sweep",
    metric: str | None = None,
    mode: str | None = None,
    asha: bool = False,
    address: str | None = None,
    cpus: int | None = None,
    resume: bool = False,
    plot: bool = True,
    random: Mapping[str, tuple] | None = None,
    samples: int = 0,
) -> list[dict[str, Any]]:
    """A grid sweep of ``model`` (a zoo name, ``"file.py:function"``, a ``pc.Graph`` or a
    function returning one) on ``data`` over ``space`` (key -> values, every combination)
    and ``seeds``, each trial ``pcgraph train`` with ``train``'s settings (e.g.
    ``{"algorithm": "il", "epochs": 3, "limit": 5000}``); ``random`` adds keys drawn
    ``samples`` times from (low, high[, "log"]).  Returns ``sweep.csv``'s rows."""
    from .graph import Graph
    from .graph_file import save_graph

    base: dict[str, Any] = {}
    out = Path(out)
    if isinstance(model, str) and (model.endswith(".json") or ".py" in model):
        base["graph"] = model
    elif isinstance(model, str):
        base["model"] = model
    else:
        graph = model() if callable(model) and not isinstance(model, Graph) else model
        if not isinstance(graph, Graph):
            raise OptionError(
                f"sweep.run: model must be a zoo name, a file or a pc.Graph, got {graph!r:.60}"
            )
        out.mkdir(parents=True, exist_ok=True)
        save_graph(graph, out / "graph.json")
        base["graph"] = str((out / "graph.json").resolve())
    base["data"] = data
    base.update({key.replace("-", "_"): value for key, value in (train or {}).items()})
    rand = parse_random([f"{k}={','.join(map(str, v))}" for k, v in (random or {}).items()])
    grid = {k: list(v) for k, v in space.items()}
    the_space = Space(grid=grid, random=rand, samples=samples, seeds=[int(s) for s in seeds])
    return sweep(base, the_space, out, metric, mode, asha, address, cpus, resume, plot)


def print_table(rows: Sequence[Mapping[str, Any]], file: Any = None) -> None:
    """The rows as aligned text (what ``pcgraph sweep`` prints)."""
    if not rows:
        return
    keys = [k for k in rows[0] if k != "folder"]
    cells = [[_cell(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    out = file or sys.stdout
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)), file=out)
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)), file=out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else "-"
    return "-" if value is None else str(value)


# --------------------------------------------------------------------------- pcgraph sweep
def _count(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def add_options(p: argparse.ArgumentParser) -> None:
    """``pcgraph sweep``'s own options (the CLI adds train's)."""
    p.add_argument(
        "spec",
        nargs="?",
        metavar="SPEC.toml",
        help="a sweep file: tables [train] (train options), [grid] (key = [values]), [random] "
        '(key = [low, high] or [low, high, "log"]) and [sweep] (seeds, samples, metric, mode, '
        "asha); its settings take precedence over the flags",
    )
    s = p.add_argument_group("sweep")
    s.add_argument(
        "--grid",
        action="append",
        metavar="KEY=V1,V2,...",
        help="values of one hyper-parameter (repeatable; every combination is a trial): a "
        "train option (lr, batch_size, algorithm, momentum, ...), model.KEY for a model "
        "argument, or an option of the algorithm (rate, steps, ...)",
    )
    s.add_argument(
        "--random",
        action="append",
        metavar="KEY=LOW,HIGH[,log]",
        help="a hyper-parameter drawn uniformly (log: log-uniformly) --samples times",
    )
    s.add_argument("--samples", type=_count, metavar="N", help="draws of --random")
    s.add_argument(
        "--seeds", metavar="S1,S2,...", help="seeds of every configuration (default: --seed)"
    )
    s.add_argument(
        "--metric", help="the metric to rank trials by, a column of metrics.csv (default: test_acc)"
    )
    s.add_argument("--mode", choices=["max", "min"], help="(default: min for losses, else max)")
    s.add_argument("--asha", action="store_true", help="stop poor trials early (Ray's ASHA)")
    s.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="join this running Ray cluster (`ray start --head` on one machine, `ray start "
        "--address HOST:PORT` on the others) instead of starting Ray here",
    )
    s.add_argument("--cpus", type=_count, metavar="N", help="CPUs of the local Ray (default: all)")


# What a trial does not take from the sweep command's train settings.
_NOT_PASSED = ("resume", "out", "overwrite", "progress")


def command(
    args: argparse.Namespace, grid: dict[str, list], train_defaults: Mapping[str, Any]
) -> int:
    """``pcgraph sweep`` after the CLI parsed it: ``grid`` its ``--grid`` values,
    ``train_defaults`` each train option's default.  Runs the sweep, prints its table."""
    base = {
        k: getattr(args, k)
        for k, default in train_defaults.items()
        if k not in _NOT_PASSED and getattr(args, k, default) != default
    }
    settings: dict[str, Any] = {}
    random = parse_random(args.random)
    seeds = None
    if args.seeds:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise OptionError(f"--seeds {args.seeds!r}: expected integers, e.g. 0,1,2") from None
    samples = args.samples
    if args.spec:
        train, space, settings = load_spec(args.spec)
        for key, value in train.items():
            name = key.replace("-", "_")
            if name not in train_defaults or name in _NOT_PASSED:
                raise OptionError(f"{args.spec}: [train] {key!r} is no option of pcgraph train")
            base[name] = value
        grid = {**grid, **space.grid}
        random = {**random, **space.random}
        samples = space.samples or samples
        seeds = space.seeds if seeds is None else seeds
    if random and not samples:
        raise OptionError("--random needs --samples N (how many draws)")
    if base.get("model") is None and base.get("graph") is None:
        raise OptionError("a sweep needs a model: --model NAME or --graph FILE (or SPEC.toml)")
    base.setdefault("data", args.data)
    out = args.resume or args.out or "runs/sweep"
    if args.overwrite and not args.resume:
        import shutil

        for name in ("trials", "ray", "sweep.csv", "sweep.png"):
            path = Path(out) / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    space = Space(grid=grid, random=random, samples=samples or 0, seeds=seeds or [int(args.seed)])
    rows = sweep(
        base,
        space,
        out,
        metric=args.metric or settings.get("metric"),
        mode=args.mode or settings.get("mode"),
        asha=bool(args.asha or settings.get("asha", False)),
        address=args.address,
        cpus=args.cpus,
        resume=bool(args.resume),
        plot=not args.no_plot,
        train_options=set(train_defaults),
    )
    print_table(rows)
    failed = [r for r in rows if str(r["status"]).startswith("error")]
    for r in failed:
        print(f"trial {r['trial']}: {r['status']}", file=sys.stderr)
    return 1 if failed else 0


__all__ = ["run", "sweep", "Space", "parse_random", "load_spec", "run_trial", "trial_settings"]
