"""``pc.compile``: a validated graph bound to a backend and a float dtype, ready to run."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from . import backends as _backends
from .compile import Compiled, analyse, forward_steps
from .errors import FeedError, GraphError, NumericalError, OptionError
from .execute import lower, run_kernels, run_kernels_timed
from .graph import Graph, Node
from .init import INITIALIZERS, default_init
from .schedule import Schedule

FLOAT_DTYPES = ("float32", "float64")


def _dtype_name(dtype: Any) -> str:
    name = getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or str(dtype)
    if name not in FLOAT_DTYPES:
        raise OptionError(
            f"unknown dtype {dtype!r}; pcgraph computes in {' or '.join(FLOAT_DTYPES)}"
        )
    return name


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
        # What algorithms derive once and reuse: the identity-levelled graph, each schedule's
        # graph, lowered forward passes.
        self._derived: dict[tuple, Any] = {}
        self._kernels: dict[int, list] = {}  # id(schedule) -> its steps lowered to closures
        self._consts = {
            n: backend.asarray(s.value, dtype)
            for n, s in compiled.nodes.items()
            if s.kind == "const"
        }
        # Looked up every step: computed once here, not by a walk over every node each time.
        self._names = {k: tuple(compiled.of_kind(k)) for k in ("param", "input", "target")}
        self._feedable = frozenset(self._names["input"] + self._names["target"])
        self._ancestors: dict[tuple[str, ...], set[str]] = {}
        self._timings: list | None = None  # (section, step, seconds) while ``profile`` runs

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
        out = {}
        for name in self.params:
            spec = self.compiled.nodes[name]
            init = spec.init if spec.init is not None else default_init(spec.shape)
            fn = INITIALIZERS[init] if isinstance(init, str) else init
            rng = np.random.default_rng([int(seed), zlib.crc32(name.encode())])
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
        missing = sorted(n for n in needed & feedable if n not in batch)
        if missing:
            raise FeedError(f"the batch is missing {', '.join(map(repr, missing))}")
        out, size = {}, None
        for key in sorted(batch):
            spec = self.compiled.nodes[key]
            value = batch[key]
            shape = tuple(getattr(value, "shape", np.shape(value)))
            if len(shape) != len(spec.shape) + 1 or shape[1:] != spec.shape:
                raise FeedError(f"feed {key!r} has shape {shape}, expected (batch,) + {spec.shape}")
            if shape[0] == 0:
                raise FeedError(f"feed {key!r} is an empty batch")
            if size is not None and shape[0] != size:
                raise FeedError(f"feed {key!r} has batch size {shape[0]} but others have {size}")
            size = shape[0]
            if spec.dtype == "int64":
                out[key] = self._labels(key, value)
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
        classes = self.compiled.label_classes.get(key)
        if classes is not None and host.size and (host.min() < 0 or host.max() >= classes):
            raise FeedError(
                f"feed {key!r} holds labels in [{host.min()}, {host.max()}], outside "
                f"the {classes} classes [0, {classes - 1}]"
            )
        return self.backend.asarray(host, "int64")

    def _state(self, params: Mapping, batch: Mapping, targets: list[str]) -> tuple[dict, int]:
        key = tuple(targets)
        needed = self._ancestors.get(key)
        if needed is None:
            needed = self._ancestors[key] = self.compiled.ancestors(targets)
        values, size = self.check_batch(batch, needed)
        values.update(self.check_params(params))
        values.update(self._consts)
        if size == 0:
            raise FeedError("the batch feeds no input, so its size is unknown")
        return {"x": values}, size

    def _node_name(self, node: Node | str) -> str:
        name = node.name if isinstance(node, Node) else node
        if name not in self.compiled.nodes:
            raise GraphError(f"no node named {name!r} in program {self.name!r}")
        return name

    # ------------------------------------------------------------------ running
    def forward(self, params: Mapping, batch: Mapping, targets: list[str]) -> tuple[dict, int]:
        """Run the forward pass needed for ``targets``; returns (state, batch size)."""
        state, size = self._state(params, batch, targets)
        key = ("forward", tuple(targets))
        if key not in self._derived:
            self._derived[key] = lower(
                self.xp, self.compiled, forward_steps(self.compiled, targets), self._float
            )
        run_kernels(self._derived[key], state, size)
        return state, size

    def execute(self, schedule: Schedule, compiled: Compiled, state: dict, size: int) -> None:
        """Run ``schedule`` (emitted for ``compiled``) on ``state``, lowering it once."""
        kernels = self._kernels.get(id(schedule))
        if kernels is None:
            steps = [step for _, step in schedule.executed()]
            kernels = self._kernels[id(schedule)] = lower(self.xp, compiled, steps, self._float)
        if self._timings is None:
            run_kernels(kernels, state, size)
        else:
            times = run_kernels_timed(kernels, state, size, self.backend.synchronize)
            # One kernel per executed step, in order (``lower``'s contract).
            self._timings += [(sec, step, t) for (sec, step), t in zip(schedule.executed(), times)]

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
        calls after one warm-up) for every executed step, in order.

        Time outside the schedule (checks, the optimiser) is not in it: compare the sum with a
        timed ``train_step``.  On a GPU the device is synchronised after every step, so each
        step carries its own device time, and the steps do not overlap as they do unprofiled.
        """
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise OptionError(f"profile: repeats={repeats!r} must be a positive integer")
        self.grads(params, batch, algorithm, **options)  # lowers the schedule; not timed
        runs = []
        try:
            for _ in range(repeats):
                self._timings = []
                self.grads(params, batch, algorithm, **options)
                runs.append(self._timings)
        finally:
            self._timings = None
        # Every call runs the one schedule of (algorithm, options): the runs align step by step.
        return [
            (sec, step, float(np.median([run[i][2] for run in runs])))
            for i, (sec, step, _) in enumerate(runs[0])
        ]

    def evaluate(self, params: Mapping, batch: Mapping, node: Node | str) -> Any:
        """The value of ``node`` (handle or name) on ``batch``: a backend array ``(B, *shape)``."""
        name = self._node_name(node)
        state, _ = self.forward(params, batch, [name])
        return state["x"][name]

    def loss(self, params: Mapping, batch: Mapping) -> float:
        """The batch-mean loss as a Python float."""
        state, _ = self.forward(params, batch, [self.loss_node])
        return float(self.xp.mean(state["x"][self.loss_node]))

    def schedule(self, algorithm: str = "bp", **options: Any) -> Schedule:
        """The compiled schedule of ``algorithm`` (plain data; ``print`` it)."""
        from .algorithms import get_algorithm

        algo = get_algorithm(algorithm)
        opts = algo.resolve(options)
        key = (algo.name, tuple(sorted(opts.items())))
        if key not in self._schedules:
            self._schedules[key] = algo.schedule(self.compiled, opts)
        return self._schedules[key]

    def grads(
        self, params: Mapping, batch: Mapping, algorithm: str = "bp", **options: Any
    ) -> dict[str, Any]:
        """What ``algorithm`` would apply, in the gradient's sign: name -> array like the param."""
        from .algorithms import get_algorithm

        algo = get_algorithm(algorithm)
        opts = algo.resolve(options)
        grads, _ = algo.grads(self, params, batch, opts)
        return grads

    def train_step(
        self,
        params: dict,
        batch: Mapping,
        algorithm: str = "bp",
        optimizer: Any = None,
        on_nonfinite: str = "raise",
        **options: Any,
    ) -> float:
        """One training step in place: ``params`` (and the optimiser's state) are replaced by the
        updated ones only when everything succeeded; returns the batch loss before the update.

        A NaN or infinity in the loss, an error node or an update raises ``NumericalError``
        naming the first node where it appeared (``on_nonfinite="skip"`` skips the batch instead,
        counted in ``self.skipped``); either way nothing is applied.
        """
        from .algorithms import get_algorithm
        from .optim import Optimizer

        if not isinstance(optimizer, Optimizer):
            raise OptionError(
                f"train_step needs optimizer=pc.optim.SGD(...) or Adam(...), got {optimizer!r}"
            )
        if on_nonfinite not in ("raise", "skip"):
            raise OptionError(f"on_nonfinite={on_nonfinite!r} must be 'raise' or 'skip'")
        algo = get_algorithm(algorithm)
        if "alpha" in algo.options and options.get("alpha") is None:
            options = {**options, "alpha": optimizer.lr}  # IL-prox's proximal step is the lr
        opts = algo.resolve(options)
        current = self.check_params(params)
        xp = self.xp
        # A NaN or inf is reported below, naming the node where it first appears (or the batch
        # is skipped): NumPy's warnings from deep inside the step would only repeat it, vaguer.
        with np.errstate(all="ignore"):
            grads, extra = algo.grads(self, current, batch, opts)
            state = extra["state"]
            loss = xp.mean(state["x"][self.loss_node])
            # One dot product per gradient (BLAS: 3x faster than a sum): a NaN or inf anywhere
            # makes the total non-finite.  Huge finite gradients can overflow it too; the scan
            # then finds nothing and the step goes ahead.
            flat = (xp.reshape(g, (-1,)) for g in grads.values())
            total = loss + sum(xp.vecdot(f, f) for f in flat)
        where = None if bool(xp.isfinite(total)) else self._first_nonfinite(state, grads)
        if where is not None:
            if on_nonfinite == "skip":
                self.skipped = getattr(self, "skipped", 0) + 1
                return float(loss)
            raise NumericalError(
                f"train_step ({algorithm}): non-finite value first at {where}; nothing was applied"
            )
        optimizer.apply(current, grads, xp)
        params.update(current)
        return float(loss)

    def _first_nonfinite(self, state: dict, grads: dict) -> str | None:
        """Where a NaN/inf first appears: value nodes in order, then errors, then updates;
        None when every value, error and gradient is finite."""
        finite = lambda a: bool(self.xp.all(self.xp.isfinite(a)))  # noqa: E731
        for store, label in (("x", "node"), ("e", "error of node"), ("g", "error of node")):
            for name in self.compiled.order:
                value = state.get(store, {}).get(name)
                if value is not None and not finite(value):
                    return f"{label} {name!r}"
        for name in self._names["param"]:
            if not finite(grads[name]):
                return f"the update of param {name!r}"
        return None if finite(state["x"][self.loss_node]) else "the loss"

    def zeros_like(self, param: str) -> Any:
        """Zeros shaped like ``param`` (the gradient of a parameter the loss does not reach)."""
        return self.xp.zeros(self.compiled.nodes[param].shape, dtype=self._float)
