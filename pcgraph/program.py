"""``pc.compile``: a validated graph bound to a backend and a float dtype, ready to run."""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import numpy as np

from . import backends as _backends
from . import checks
from .compile import Compiled, analyse, forward_steps, without_cycle_collection
from .errors import FeedError, GraphError, NumericalError, OptionError
from .execute import SCALE_SLOT, WHOLE_SLOT, Lowered, Whole, lower
from .graph import Graph, Node, known_names
from .init import INITIALIZERS, default_init
from .ops import OPS
from .schedule import Schedule, Section, Snapshot

FLOAT_DTYPES = ("float32", "float64")
_MAX_SCHEDULES = 256  # schedules (with their lowered programs) a program keeps at most


def _dtype_name(dtype: Any) -> str:
    name = getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or str(dtype)
    if name not in FLOAT_DTYPES:
        raise OptionError(
            f"unknown dtype {dtype!r}; pcgraph computes in {' or '.join(FLOAT_DTYPES)}"
        )
    return name


class Run:
    """What one run of a schedule leaves: its gradients, its loss and the values asked for
    (with ``keep``, every store).  Arrays are backend arrays of this run only."""

    def __init__(
        self, program: Program, lowered: Lowered, slots: list, batch_size: int, times: Any = None
    ) -> None:
        self.program, self.lowered, self.slots = program, lowered, slots
        self.batch_size, self.times = batch_size, times

    @property
    def schedule(self) -> Schedule:
        return self.lowered.schedule

    def store(self, name: str) -> dict[str, Any]:
        """The entries of store ``name`` that are still held: node -> array."""
        return self.lowered.layout.entries(name, self.slots)

    def value(self, node: str, store: str = "x") -> Any:
        return self.slots[self.lowered.layout.slot(store, node)]

    @property
    def loss(self) -> Any:
        """The per-example loss ``(B,)`` (the feed-forward one, for predictive coding)."""
        return self.value(self.schedule.compiled.loss, self.schedule.loss_from)

    def grads(self) -> dict[str, Any]:
        """Each parameter's gradient (zeros where the schedule leaves none)."""
        layout, slots, store = self.lowered.layout, self.slots, self.schedule.grads_from
        out = {}
        for p in self.program.params:
            g = slots[layout.slot(store, p)] if layout.has(store) else None
            out[p] = g if g is not None else self.program.zeros_like(p)
        return out


def _writable(array: Any) -> bool:
    """Whether ``array`` may be written in place (NumPy arrays can be read-only)."""
    flags = getattr(array, "flags", None)
    return bool(getattr(flags, "writeable", True))


def _targets_of(schedule: Schedule) -> list[str]:
    """The nodes a forward-only schedule is asked for (its ``targets`` option)."""
    return (
        list(dict(schedule.options).get("targets", ())) if schedule.algorithm == "forward" else []
    )


def _leaves_read(lowered: Lowered) -> set[str]:
    """The leaf nodes (feeds, parameters, constants) some kernel of ``lowered`` reads and no
    kernel writes (a latent leaf of inference is set by the schedule, not fed).  A snapshot
    copies whatever a leaf holds, fed or not: it needs no feed of its own."""
    read: set[int] = set()
    written: set[int] = set()
    executed = lowered.schedule.executed()
    for item in lowered.items:
        for instr in getattr(item, "body", [item]):
            if not all(isinstance(executed[i][1], Snapshot) for i in instr.steps):
                read |= instr.reads
            written |= instr.writes
    return {name for slot, name in lowered.leaves.items() if slot in read - written}


class _CheckedParams(Mapping):
    """Parameters ``program.check_params`` has validated and converted: read-only, so that the
    checks need not run again when they are handed on (``train_step`` to an algorithm)."""

    def __init__(self, program: Program, arrays: dict[str, Any]) -> None:
        self.program, self._arrays = program, arrays

    def __getitem__(self, name: str) -> Any:
        return self._arrays[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)


def compile(graph: Graph, backend: str | None = None, dtype: Any = "float32") -> Program:
    """Validate ``graph`` and bind it to ``backend`` (None: ``$PCGRAPH_BACKEND``, else numpy)."""
    dtype_name = _dtype_name(dtype)
    be = _backends.get(backend)
    return Program(analyse(graph), be, dtype_name)


class Program:
    """A compiled graph on a backend: evaluate, differentiate and train it."""

    def __init__(self, compiled: Compiled, backend: Any, dtype: str) -> None:
        self.compiled = compiled
        self.backend = backend
        self.xp = backend.xp
        self.dtype = dtype
        self._float = getattr(self.xp, dtype)
        self._schedules: dict[tuple, Schedule] = {}
        self._resolved: dict[tuple, Schedule] = {}  # (algorithm, options as given) -> schedule
        self._programs: dict[tuple, Lowered] = {}  # (id(schedule), keep) -> lowered program
        self._consts = {
            n: backend.asarray(s.value, dtype)
            for n, s in compiled.nodes.items()
            if s.kind == "const"
        }
        # Looked up every step: computed once here, not by a walk over every node each time.
        self._names = {k: tuple(compiled.of_kind(k)) for k in ("param", "input", "target")}
        self._feedable = frozenset(self._names["input"] + self._names["target"])
        self._float_dtype = self.xp.empty((0,), dtype=self._float).dtype
        self._half_max = float(np.finfo(dtype).max) / 2
        self._param_shapes = [(p, compiled.nodes[p].shape) for p in self._names["param"]]
        self.lr_scales = {
            p: compiled.nodes[p].lr_scale
            for p in self._names["param"]
            if compiled.nodes[p].lr_scale != 1.0
        }  # the graph's per-parameter learning-rate factors, applied by train_step
        self._feed_specs = {
            n: (compiled.nodes[n].shape, compiled.nodes[n].dtype == "int64") for n in self._feedable
        }

    # ------------------------------------------------------------------ names
    @property
    def name(self) -> str:
        return self.compiled.name

    @property
    def params(self) -> list[str]:
        return list(self._names["param"])

    @property
    def inputs(self) -> list[str]:
        return list(self._names["input"])

    @property
    def targets(self) -> list[str]:
        return list(self._names["target"])

    @property
    def loss_node(self) -> str:
        return self.compiled.loss

    def __repr__(self) -> str:
        return (
            f"<Program {self.name!r} on {self.backend.name} {self.dtype}: "
            f"{len(self.compiled.nodes)} nodes, {len(self.params)} params>"
        )

    # ------------------------------------------------------------------ parameters
    def init_params(self, seed: int = 0) -> dict[str, Any]:
        """Fresh parameters: name -> backend array.  Each parameter draws from its own stream
        ``default_rng([seed, crc32(name)])``, so adding a parameter never changes the others."""
        seed = checks.seed(seed, "init_params: seed")
        out = {}
        for name in self.params:
            spec = self.compiled.nodes[name]
            init = spec.init if spec.init is not None else default_init(spec.shape)
            fn = INITIALIZERS[init] if isinstance(init, str) else init
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            value = np.asarray(fn(rng, spec.shape))
            if value.shape != spec.shape:
                raise GraphError(
                    f"param {name!r}: its init returned shape {value.shape}, expected {spec.shape}"
                )
            out[name] = self.backend.asarray(value, self.dtype)
        return out

    def check_params(self, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """``params`` as backend arrays of the program's dtype (a read-only mapping); FeedError
        names a bad entry."""
        if type(params) is _CheckedParams and params.program is self:
            return params  # what this method returned, passed on within one call
        fast = self._checked_as_is(params)
        if fast is not None:
            return fast
        if not isinstance(params, Mapping):
            raise FeedError(f"params must be a dict name -> array, got {type(params).__name__}")
        names = self._names["param"]
        missing = [p for p in names if p not in params]
        if missing:
            raise FeedError(f"params is missing {', '.join(map(repr, missing))}")
        extra = [
            k
            for k in params
            if k not in self.compiled.nodes or self.compiled.nodes[k].kind != "param"
        ]
        if extra:
            raise FeedError(
                f"params has unknown key(s) {', '.join(map(repr, extra))}; the "
                f"graph's parameters are {', '.join(self.params)}"
            )
        out = {}
        for name in names:
            value, shape = params[name], self.compiled.nodes[name].shape
            if tuple(getattr(value, "shape", np.shape(value))) != shape:
                raise FeedError(
                    f"param {name!r} has shape {tuple(np.shape(value))}, expected {shape}"
                )
            out[name] = self._to_backend(value, self.dtype, f"param {name!r}")
        return _CheckedParams(self, out)

    def _checked_as_is(self, params: Any) -> _CheckedParams | None:
        """The common case at training speed: a dict of exactly the parameters, each already a
        backend array of the right dtype and shape (None: anything else; the full check then
        says what is wrong, or converts)."""
        if type(params) is not dict or len(params) != len(self._param_shapes):
            return None
        native, dtype, out = self.backend.is_native, self._float_dtype, {}
        for name, shape in self._param_shapes:
            value = params.get(name)
            if value is None or not native(value) or value.dtype != dtype or value.shape != shape:
                return None
            out[name] = value
        return _CheckedParams(self, out)

    def _to_backend(self, value: Any, dtype: str, what: str) -> Any:
        native = self.backend.is_native(value)
        kind = getattr(value.dtype, "kind", "f") if native else np.asarray(value).dtype.kind
        if kind not in "biuf":
            raise FeedError(
                f"{what} has dtype {value.dtype if native else np.asarray(value).dtype}"
                ", not a number type"
            )
        if native and value.dtype == getattr(self.xp, dtype):
            return value
        return self.backend.asarray(value, dtype)

    # ------------------------------------------------------------------ feeding
    def check_batch(self, batch: Mapping[str, Any], needed: set[str]) -> tuple[dict, int]:
        """Validate and move a batch to the backend; returns (arrays, batch size)."""
        if not isinstance(batch, Mapping):
            raise FeedError(f"a batch must be a dict name -> array, got {type(batch).__name__}")
        feedable = self._feedable
        for key in batch:
            if key not in feedable:
                hint = " (it is a parameter: pass it in params)" if key in self.params else ""
                raise FeedError(
                    f"unknown feed key {key!r}{hint}; the graph's inputs and targets "
                    f"are {', '.join(sorted(feedable))}"
                )
        if not needed <= batch.keys():
            missing = sorted(n for n in needed & feedable if n not in batch)
            if missing:
                raise FeedError(f"the batch is missing {', '.join(map(repr, missing))}")
        out, size = {}, None
        for key in sorted(batch):
            per_example, is_label = self._feed_specs[key]
            value = batch[key]
            shape = getattr(value, "shape", None)
            shape = tuple(np.shape(value)) if shape is None else tuple(shape)
            if len(shape) != len(per_example) + 1 or shape[1:] != per_example:
                hint = ""
                if shape and math.prod(shape[1:]) == math.prod(per_example):
                    dims = ", ".join(map(str, per_example))
                    hint = f"; the sizes agree: pass x.reshape(len(x), {dims})"
                elif shape:
                    hint = (
                        f"; build the graph's input {key!r} for examples of shape {shape[1:]} "
                        "(e.g. g.input(..., shape)), or the zoo model for this data"
                    )
                raise FeedError(
                    f"feed {key!r} has shape {shape}, expected (batch,) + {per_example}{hint}"
                )
            if shape[0] == 0:
                raise FeedError(f"feed {key!r} is an empty batch")
            if size is not None and shape[0] != size:
                raise FeedError(f"feed {key!r} has batch size {shape[0]} but others have {size}")
            size = shape[0]
            if is_label:
                out[key] = self._labels(key, value)
            elif self.backend.is_native(value) and value.dtype == self._float_dtype:
                out[key] = value
            else:
                out[key] = self._to_backend(value, self.dtype, f"feed {key!r}")
        return out, int(size or 0)

    def _labels(self, key: str, value: Any) -> Any:
        """Integer labels, range-checked on the host when they come from the host (no device sync)."""
        if self.backend.is_native(value) and not isinstance(value, np.ndarray):
            if not self.xp.isdtype(value.dtype, "integral"):
                raise FeedError(
                    f"feed {key!r} must hold integers (class indices), got {value.dtype}"
                )
            return value
        host = np.asarray(value)
        if host.dtype.kind not in "iu":
            raise FeedError(f"feed {key!r} must hold integers (class indices), got {host.dtype}")
        host = host.astype(np.int64, copy=False)
        classes = self.compiled.label_classes.get(key)
        # One reduction: read as unsigned, a negative label is larger than any class count.
        if classes is not None and host.size and int(host.view(np.uint64).max()) >= classes:
            raise FeedError(
                f"feed {key!r} holds labels in [{host.min()}, {host.max()}], outside "
                f"the {classes} classes [0, {classes - 1}]"
            )
        return self.backend.asarray(host, "int64")

    def _node_name(self, node: Node | str) -> str:
        name = node.name if isinstance(node, Node) else node
        if not isinstance(name, str):
            raise GraphError(f"a node is named by a string or a Node handle, got {name!r:.60}")
        if name not in self.compiled.nodes:
            raise GraphError(
                f"no node named {name!r} in program {self.name!r}"
                + known_names(name, self.compiled.nodes)
            )
        return name

    # ------------------------------------------------------------------ running
    def _lowered(self, schedule: Schedule, keep: bool = False) -> Lowered:
        """``schedule`` lowered for this program, once per (schedule, keep)."""
        key = (id(schedule), keep)
        found = self._programs.get(key)
        if found is None or found.schedule is not schedule:
            c = schedule.compiled
            outputs = [(schedule.grads_from, p) for p in self._names["param"]]
            outputs += [(schedule.loss_from, c.loss)] if c.loss in c.nodes else []
            outputs += [("x", n) for n in _targets_of(schedule)]
            found = lower(
                schedule,
                self.xp,
                self.backend.kernels,
                self._float,
                outputs,
                keep,
                getattr(self.backend, "lowerings", None),
            )
            found.needed = _leaves_read(found)  # type: ignore[attr-defined]
            # What a run fills in before the kernels: constants once (a template copied per
            # run), parameters and feeds by slot.
            kinds = {n: c.nodes[n].kind for n in found.leaves.values()}
            found.template = [None] * found.nslots  # type: ignore[attr-defined]
            for slot, name in found.leaves.items():
                if kinds[name] == "const":
                    found.template[slot] = self._consts[name]  # type: ignore[attr-defined]
            found.param_slots = [  # type: ignore[attr-defined]
                (slot, n) for slot, n in found.leaves.items() if kinds[n] == "param"
            ]
            found.feed_slots = [  # type: ignore[attr-defined]
                (slot, n) for slot, n in found.leaves.items() if kinds[n] in ("input", "target")
            ]
            self._programs[key] = found
        return found

    def run(
        self,
        schedule: Schedule,
        params: Mapping,
        batch: Mapping,
        keep: bool = False,
        timed: bool = False,
        scale: float = 1.0,
        preset: Mapping[tuple[str, str], Any] | None = None,
        whole: Whole | None = None,
    ) -> Run:
        """Run ``schedule`` (emitted for this program's graph) on ``params`` and ``batch``.

        Returns a ``Run``: its gradients, loss and result values; with ``keep`` every store
        (nothing is dropped after its last use), for inspection; with ``timed`` the seconds of
        each executed step (``Run.times``), the device synchronised after each kernel.
        ``scale`` multiplies the gradients where they are made (the seeds and error scalings
        in gradient units): ``train_step`` folds plain SGD's ``-lr`` in this way, so the
        backward pass yields the steps themselves.
        ``preset`` fills entries (store, node) -> array that the schedule reads before it
        writes them (``Program.infer``'s given values, in the stores ``obs``, ``init``, ``free``).
        ``whole`` (data-parallel training, ``pcgraph.distributed``): the global batch that
        ``batch`` is one shard of; the run's gradients are then this shard's part of the global
        batch's.
        """
        lowered = self._lowered(schedule, keep)
        feeds, size = self.check_batch(batch, lowered.needed)  # type: ignore[attr-defined]
        if size == 0 and preset:
            size = int(next(iter(preset.values())).shape[0])
        if size == 0:
            raise FeedError("the batch feeds no input, so its size is unknown")
        checked = self.check_params(params)
        slots = lowered.template.copy()  # type: ignore[attr-defined]  (constants filled in)
        slots[SCALE_SLOT] = scale
        slots[WHOLE_SLOT] = whole
        for slot, name in lowered.param_slots:  # type: ignore[attr-defined]
            slots[slot] = checked[name]
        for slot, name in lowered.feed_slots:  # type: ignore[attr-defined]
            slots[slot] = feeds.get(name)
        for (store, node), value in (preset or {}).items():
            if lowered.layout.has(store):
                slots[lowered.layout.slot(store, node)] = value
        times = None
        if timed:
            times = lowered.run_timed(slots, size, self.backend.synchronize)
        else:
            lowered.run(slots, size)
        return Run(self, lowered, slots, size, times)

    def forward(self, params: Mapping, batch: Mapping, targets: list[str]) -> tuple[dict, int]:
        """The values of ``targets`` on ``batch``: ``({"x": {target: array}}, batch size)``."""
        run = self.run(self._forward_schedule(tuple(targets)), params, batch)
        return {"x": {t: run.value(t) for t in targets}}, run.batch_size

    def _forward_schedule(self, targets: tuple[str, ...]) -> Schedule:
        key = ("forward",) + targets
        if key not in self._schedules:
            c = self.compiled
            self._schedules[key] = Schedule(
                "forward",
                c.name,
                (("targets", targets),),
                (Section("forward", forward_steps(c, list(targets))),),
                compiled=c,
            )
        return self._schedules[key]

    def profile(
        self,
        params: Mapping,
        batch: Mapping,
        algorithm: str = "bp",
        repeats: int = 20,
        **options: Any,
    ) -> list[tuple[str, Any, float]]:
        """Where ``grads(params, batch, algorithm, **options)`` spends its time: (section title,
        schedule step (``str`` prints it as the schedule does), median seconds over ``repeats``
        calls after one warm-up) for every executed step, in order.  A loop's steps are listed
        once, with their time summed over its iterations; steps one kernel runs together (the
        VJPs of one node) share its time equally.

        Time outside the schedule (checks, the optimiser) is not in it: compare the sum with a
        timed ``train_step``.  On a GPU the device is synchronised after every kernel, so each
        step carries its own device time, and the steps do not overlap as they do unprofiled.
        """
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise OptionError(f"profile: repeats={repeats!r} must be a positive integer")
        schedule = self.schedule(algorithm, **options)
        self.run(schedule, params, batch)  # lowers the schedule; not timed
        runs = [self.run(schedule, params, batch, timed=True).times for _ in range(repeats)]
        return [
            (sec, step, float(np.median([run[i] for run in runs])))  # type: ignore[index]
            for i, (sec, step) in enumerate(schedule.executed())
        ]

    def evaluate(self, params: Mapping, batch: Mapping, node: Node | str) -> Any:
        """The value of ``node`` (handle or name) on ``batch``: a backend array ``(B, *shape)``."""
        name = self._node_name(node)
        state, _ = self.forward(params, batch, [name])
        return state["x"][name]

    def prediction_node(self, node: Node | str | None = None) -> str:
        """The node whose argmax is the predicted class: ``node`` if given, else the loss's
        prediction operand (``OpDef.prediction``: the logits of ``softmax_cross_entropy``, the
        prediction of ``mse``), else that of the graph's only such op; ``GraphError`` when there
        is none."""
        if node is not None:
            return self._node_name(node)

        def predicted(spec: Any) -> str | None:
            at = OPS[spec.op].prediction if spec.op is not None else None
            return None if at is None else spec.operands[at]

        loss = self.compiled.nodes[self.loss_node]
        if predicted(loss) is not None:
            return predicted(loss)
        found = [p for p in map(predicted, self.compiled.nodes.values()) if p is not None]
        if len(found) != 1:
            raise GraphError(
                f"graph {self.compiled.name!r}: no node to predict from (its loss is "
                f"{loss.op}); name one, e.g. predict(params, batch, node=...)"
            )
        return found[0]

    def predict(self, params: Mapping, batch: Mapping, node: Node | str | None = None) -> Any:
        """The predicted class of each example, ``(B,)`` int64 on the host: the argmax of
        ``node`` (default: ``prediction_node()``) over its per-example values.  ``batch``
        needs the inputs only."""
        name = self.prediction_node(node)
        return _classes(_backends.to_numpy(self.evaluate(params, batch, name)))

    def loss_and_predictions(
        self, params: Mapping, batch: Mapping, node: Node | str | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """One forward pass: each example's loss ``(B,)`` and, when ``node`` is given, its
        predicted class ``(B,)`` int64 (as ``predict``), both on the host; else None."""
        name = None if node is None else self.prediction_node(node)
        targets = [self.loss_node] + ([name] if name is not None else [])
        state, _ = self.forward(params, batch, targets)
        losses = _backends.to_numpy(state["x"][self.loss_node])
        if name is None:
            return losses, None
        return losses, _classes(_backends.to_numpy(state["x"][name]))

    def accuracy(
        self,
        params: Mapping,
        data: Any,
        part: str = "test",
        node: Node | str | None = None,
        batch_size: int = 500,
    ) -> float:
        """The fraction of examples whose predicted class is the label: ``data`` is a
        ``pc.data.Dataset`` (its ``part``, "test" or "train") or a pair ``(x, y)``; ``x`` is
        reshaped to the graph's one input when the sizes agree.  Evaluated ``batch_size``
        examples at a time, so memory stays bounded."""
        if isinstance(data, tuple) and len(data) == 2:
            x, y = data
        elif part in ("test", "train") and hasattr(data, f"x_{part}"):
            x, y = getattr(data, f"x_{part}"), getattr(data, f"y_{part}")
        else:
            raise OptionError(
                f"accuracy needs a pc.data.Dataset and part 'test' or 'train', or a pair (x, y); "
                f"got {type(data).__name__} and part={part!r}"
            )
        if len(self.inputs) != 1:
            raise OptionError(f"accuracy feeds graphs with one input; this one has {self.inputs}")
        x, y = np.asarray(x), np.asarray(y)
        want = self.compiled.nodes[self.inputs[0]].shape
        if len(x) and x[0].size == math.prod(want):
            x = x.reshape((len(x), *want))
        correct = 0
        for start in range(0, len(y), batch_size):
            xb = x[start : start + batch_size]
            correct += int(
                np.sum(
                    self.predict(params, {self.inputs[0]: xb}, node)
                    == y[start : start + batch_size]
                )
            )
        return correct / max(len(y), 1)

    def loss(self, params: Mapping, batch: Mapping) -> float:
        """The batch-mean loss as a Python float."""
        state, _ = self.forward(params, batch, [self.loss_node])
        return float(self.xp.mean(state["x"][self.loss_node]))

    def schedule(self, algorithm: str = "bp", **options: Any) -> Schedule:
        """The compiled schedule of ``algorithm`` (plain data; ``print`` it)."""
        return self._schedule_of(algorithm, options)

    def infer(
        self,
        params: Mapping,
        observed: Mapping,
        free: Any = (),
        steps: int = 20,
        rate: float = 0.1,
        init: Mapping | None = None,
        mask: Mapping | None = None,
        value_nodes: Any = "all",
    ) -> Any:
        """Predictive-coding inference with any nodes clamped: ``pcgraph.inference.infer``
        (the relaxed values, errors and energy trace, and the schedule it ran)."""
        from .inference import infer

        return infer(self, params, observed, free, steps, rate, init, mask, value_nodes)

    def cached_schedule(self, key: tuple, build: Any) -> Schedule:
        """The schedule ``build()`` made for ``key`` (hashable) the first time it was asked
        for: schedules not named by an algorithm (inference) share the algorithms' cache."""
        key = ("cached",) + key
        if key not in self._schedules:
            if len(self._schedules) >= _MAX_SCHEDULES:
                self._schedules.clear()
                self._resolved.clear()
                self._programs.clear()
            self._schedules[key] = without_cycle_collection(build)()
        return self._schedules[key]

    def _schedule_of(self, algorithm: str, options: Mapping[str, Any]) -> Schedule:
        try:  # the options as given, when hashable: no resolving on every step
            given = (algorithm, tuple(sorted(options.items())))
            found = self._resolved.get(given)
        except TypeError:
            given, found = None, None
        if found is not None:
            return found
        from .algorithms import get_algorithm

        algo = get_algorithm(algorithm)
        opts = algo.resolve(options)
        key = (algo.name, tuple(sorted(opts.items())))
        if key not in self._schedules:
            if len(self._schedules) >= _MAX_SCHEDULES:  # a sweep over options: stay bounded
                self._schedules.clear()
                self._resolved.clear()
                self._programs.clear()
            self._schedules[key] = without_cycle_collection(algo.schedule)(self.compiled, opts)
        if given is not None:
            self._resolved[given] = self._schedules[key]
        return self._schedules[key]

    def grads(
        self,
        params: Mapping,
        batch: Mapping,
        algorithm: str = "bp",
        comm: Any = None,
        **options: Any,
    ) -> dict[str, Any]:
        """What ``algorithm`` would apply, in the gradient's sign: name -> array like the param.

        With ``comm`` (``pc.distributed.world()``) of several ranks, ``batch`` is this rank's
        shard of a global batch (``comm.shard(batch)``) and the result is the global batch's,
        the same on every rank (one ``Allreduce``)."""
        schedule = self._schedule_of(algorithm, options)
        whole = self._whole(schedule, batch, comm)
        if whole is None:
            return self.run(schedule, params, batch).grads()
        grads = self.run(schedule, params, batch, whole=whole).grads()
        return dict(zip(grads, whole.sum(list(grads.values()))))

    def _whole(self, schedule: Schedule, batch: Mapping, comm: Any) -> Whole | None:
        """The global batch that ``batch`` is this rank's shard of (None: not distributed)."""
        if comm is None or not comm.distributed:
            return None
        comm.check_shardable(schedule)
        return comm.whole(batch, self.xp)

    def train_step(
        self,
        params: dict,
        batch: Mapping,
        algorithm: str = "bp",
        optimizer: Any = None,
        on_nonfinite: str = "raise",
        comm: Any = None,
        **options: Any,
    ) -> float:
        """One training step in place: ``params`` (and the optimiser's state) are replaced by the
        updated ones only when everything succeeded; returns the batch loss before the update.

        A NaN or infinity in the loss, an error node, an update or a new parameter value raises
        ``NumericalError`` naming the first node where it appeared (``on_nonfinite="skip"``
        skips the batch instead, counted in ``self.skipped``); either way nothing is applied.

        With ``comm`` (``pc.distributed.world()``) of several ranks, ``batch`` is this rank's
        shard of the global batch (``comm.shard(batch)``): every rank computes its shard's part
        of the update, one ``Allreduce`` of one buffer sums the parts and the loss, and every
        rank applies the same update; the returned loss is the global batch's.
        """
        from .optim import Optimizer

        if not isinstance(optimizer, Optimizer):
            raise OptionError(
                f"train_step needs optimizer=pc.optim.SGD(...) or Adam(...), got {optimizer!r}"
            )
        if on_nonfinite not in ("raise", "skip"):
            raise OptionError(f"on_nonfinite={on_nonfinite!r} must be 'raise' or 'skip'")
        from .algorithms import get_algorithm

        step_option = get_algorithm(algorithm).param_step_option
        if step_option is not None:
            if self.lr_scales:
                raise OptionError(
                    f"{algorithm} steps the parameters inside its schedule at one rate, so it "
                    f"cannot follow the graph's per-parameter learning rates (lr_scale on "
                    f"{', '.join(sorted(self.lr_scales)[:3])}...); use another algorithm, or a "
                    "graph without lr_scale (e.g. deep_cnn(adam_rates=False))"
                )
            if options.get(step_option) is None:  # the in-schedule step is the optimiser's lr
                options = {**options, step_option: optimizer.lr}
        schedule = self._schedule_of(algorithm, options)
        if not isinstance(params, MutableMapping):
            raise FeedError(
                f"train_step updates params in place: pass a dict name -> array, not a "
                f"read-only {type(params).__name__}"
            )
        current = self.check_params(params)
        for name, value in current.items():
            if value is params.get(name) and not _writable(value):
                raise FeedError(
                    f"param {name!r} is a read-only array; train_step writes the update into "
                    "it (pass a writable copy, e.g. numpy.array(value))"
                )
        optimizer.check_state(current)  # OptionError names an entry that does not fit
        xp, kernels = self.xp, self.backend.kernels
        # Per-parameter rates leave no single factor to fold into the backward pass.
        scale = 1.0 if self.lr_scales else optimizer.gradient_scale()
        # A NaN or inf is reported below, naming the node where it first appears (or the batch
        # is skipped): NumPy's warnings from deep inside the step would only repeat it, vaguer.
        whole = self._whole(schedule, batch, comm)
        with np.errstate(all="ignore"):
            run = self.run(schedule, current, batch, scale=scale, whole=whole)
            grads = run.grads()
            if whole is None:
                loss = xp.sum(run.loss) / run.batch_size
            else:  # the shards' parts and losses summed in one buffer, one collective
                *summed, loss_sum = whole.sum([*grads.values(), xp.sum(run.loss)])
                grads, loss = dict(zip(grads, summed)), loss_sum / whole.size
            staged = optimizer.stage(current, grads, kernels, scale, self.lr_scales)
            ok = bool(self._proves_finite(loss, staged, current))
        if not ok:
            where = self._first_nonfinite(schedule, current, batch, grads, staged, whole)
            if whole is not None:  # every rank takes the same decision: the lowest rank's
                where = comm.first(where)
            if where is not None:
                if on_nonfinite == "skip":
                    self.skipped = getattr(self, "skipped", 0) + 1
                    return float(loss)
                raise NumericalError(
                    f"train_step ({algorithm}): non-finite value first at {where}; "
                    "nothing was applied"
                )
        optimizer.commit(staged, current, kernels)
        params.update(current)
        return float(loss)

    def _proves_finite(self, loss: Any, staged: Any, params: Mapping) -> Any:
        """A 0-d boolean, on the device: whether the loss, the staged state and every new
        parameter value ``p + delta`` are finite, from sums of squares alone (BLAS dot
        products; no pass over ``p + delta``).  ``|p + delta| <= ||p|| + ||delta||`` entry by
        entry, so finite sums whose roots add up to less than half the largest float leave no
        room for an overflow.  False also when a sum overflows on huge finite values: the
        caller's exact scan then decides."""
        xp, kernels = self.xp, self.backend.kernels
        params_ss = None
        for p in params.values():
            ss = kernels.sum_squares(p)
            params_ss = ss if params_ss is None else params_ss + ss
        total = loss
        for probe in (staged.probe, staged.state_probe, params_ss):
            if probe is not None:
                total = total + probe
        finite = xp.isfinite(total)
        if staged.probe is None or params_ss is None:
            return finite
        bound = xp.sqrt(params_ss) + xp.sqrt(staged.probe)
        return finite & (bound < self._half_max)

    def _first_nonfinite(
        self,
        schedule: Schedule,
        params: Mapping,
        batch: Mapping,
        grads: dict,
        staged: Any,
        whole: Whole | None = None,
    ) -> str | None:
        """Where a NaN/inf first appears: value nodes in order, then errors, then gradients, then
        the staged new values; None when everything is finite.  Runs the schedule again keeping
        every store (the step itself drops what it no longer needs)."""
        finite = lambda a: bool(self.xp.all(self.xp.isfinite(a)))  # noqa: E731
        with np.errstate(all="ignore"):
            kept = self.run(schedule, params, batch, keep=True, whole=whole)
        values = kept.store(schedule.loss_from)
        for store, label in ((values, "node"), (kept.store("e"), "error of node")):
            for name in kept.lowered.schedule.compiled.order:
                value = store.get(name)
                if value is not None and not finite(value):
                    return f"{label} {name!r}"
        cotangents = kept.store("g")
        for name in kept.lowered.schedule.compiled.order:
            value = cotangents.get(name)
            if value is not None and not finite(value):
                return f"error of node {name!r}"
        for name in self._names["param"]:
            if not finite(grads[name]):  # gradients, or plain SGD's steps (scaled gradients)
                return f"the update of param {name!r}"
        if not finite(kept.loss):
            return "the loss"
        for key, value in staged.state.items():
            if not finite(value):
                return f"the optimiser's state {key!r}"
        for name, delta in staged.deltas.items():
            if not finite(delta) or not finite(params[name] + delta):
                return f"the new value of param {name!r} (the optimiser's step overflows)"
        return None

    def zeros_like(self, param: str) -> Any:
        """Zeros shaped like ``param`` (the gradient of a parameter the loss does not reach)."""
        return self.xp.zeros(self.compiled.nodes[param].shape, dtype=self._float)


def _classes(scores: np.ndarray) -> np.ndarray:
    """The argmax over each example's values ``(B, ...)``: the predicted classes ``(B,)``."""
    return np.argmax(scores.reshape(len(scores), -1), axis=1)
