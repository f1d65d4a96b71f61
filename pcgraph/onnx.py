"""ONNX in and out: ``from_onnx`` builds a ``pc.Graph`` from an ONNX model with the DSL's own
ops, and ``to_onnx`` writes a compiled program's forward graph as an ONNX model.

``onnx`` is imported only here and only when called (``pip install "pcgraph[onnx]"``).  The
operator mapping, what is refused and why, is in ``spec/onnx.md``.

**The batch axis.**  pcgraph values carry the batch axis first and ops see per-example shapes;
an ONNX tensor may hold the batch anywhere, and PyTorch's exporters move it (``(T, B, d)``
attention layouts) and merge it with neighbours (``(T, B * heads, d)``).  The importer follows
where the batch sits in every tensor: a *layout* lists the ONNX axes, each either an int (an
axis of that size, a pcgraph axis) or a ``BatchAxis(pre, post)``, the ONNX axis of size
``pre * B * post`` whose ``pre`` and ``post`` parts (when > 1) are pcgraph axes of their own.
The ONNX tensor is then pcgraph's ``(B, ...)`` array with the batch axis moved to its place
and neighbouring axes merged.  Any reshape or transpose that keeps the batch axis whole is a
per-example reshape or transpose; shape arithmetic on the batch size (``Shape``, ``Gather``,
``Concat``, ``Mul`` ... feeding a ``Reshape``) is folded at import with the batch size as a
symbol (``BatchSize``), so none of it reaches the graph.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import (
    FileFormatError,
    GraphError,
    MissingDependencyError,
    PCGraphError,
    UnsupportedOperatorError,
)
from .files import open_regular, read_bounded

MAX_ONNX_BYTES = 1 << 30  # a model file (or all its external data) larger than this is refused
MAX_ONNX_NODES = 1_000_000  # nodes in one ONNX graph
MAX_FOLDED_VALUES = 1 << 24  # elements of a constant computed while folding at import
OPSET = 18  # the opset ``to_onnx`` writes

_FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}
_INT_TYPES = {6: "int32", 7: "int64", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 9: "bool"}


def _onnx() -> Any:
    """The ``onnx`` package, or ``MissingDependencyError`` naming the extra that installs it."""
    try:
        import onnx  # an optional dependency, imported when used
    except ImportError:
        raise MissingDependencyError(
            'reading and writing ONNX files needs the onnx package: pip install "pcgraph[onnx]"'
        ) from None
    return onnx


# --------------------------------------------------------------------------- the batch symbol
class BatchSize:
    """``coef * B``: a shape entry that depends on the batch size, while folding shape
    arithmetic at import.  Products with ints stay symbolic; anything else is refused."""

    __slots__ = ("coef",)

    def __init__(self, coef: int = 1) -> None:
        self.coef = int(coef)

    def __mul__(self, other: Any) -> BatchSize:
        if isinstance(other, BatchSize):
            raise _Unfoldable("the square of the batch size")
        return BatchSize(self.coef * _int(other))

    __rmul__ = __mul__

    def __floordiv__(self, other: Any) -> BatchSize:
        k = _int(other)
        if k <= 0 or self.coef % k:
            raise _Unfoldable(f"the batch size times {self.coef} divided by {k}")
        return BatchSize(self.coef // k)

    __truediv__ = __floordiv__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BatchSize) and other.coef == self.coef

    def __hash__(self) -> int:
        return hash(("B", self.coef))

    def __mod__(self, other: Any) -> int:
        if self.coef % _int(other):
            raise _Unfoldable(f"the batch size times {self.coef} modulo {other}")
        return 0

    def __int__(self) -> int:
        raise _Unfoldable("a value that depends on the batch size")

    __index__ = __int__

    def __repr__(self) -> str:
        return "B" if self.coef == 1 else f"{self.coef}*B"


class _Unfoldable(Exception):
    """Shape arithmetic the importer cannot do symbolically (turned into a typed error)."""


def _int(v: Any) -> int:
    if isinstance(v, BatchSize):
        raise _Unfoldable("a value that depends on the batch size")
    return int(v)


@dataclass(frozen=True)
class BatchAxis:
    """The ONNX axis that holds the batch: ``pre * B * post`` elements, ``pre`` outermost."""

    pre: int = 1
    post: int = 1

    @property
    def dim(self) -> BatchSize:
        return BatchSize(self.pre * self.post)


Layout = tuple  # of int | BatchAxis, one entry per ONNX axis


def _pc_shape(layout: Layout) -> tuple[int, ...]:
    """The per-example pcgraph shape a layout stands for."""
    out: list[int] = []
    for a in layout:
        if isinstance(a, BatchAxis):
            out += [n for n in (a.pre, a.post) if n > 1]
        else:
            out.append(a)
    return tuple(out)


def _pc_axes(layout: Layout) -> list[list[int]]:
    """For each ONNX axis, the pcgraph per-example axes it holds (in order)."""
    out, k = [], 0
    for a in layout:
        n = (int(a.pre > 1) + int(a.post > 1)) if isinstance(a, BatchAxis) else 1
        out.append(list(range(k, k + n)))
        k += n
    return out


def _dims(layout: Layout) -> list:
    return [a.dim if isinstance(a, BatchAxis) else a for a in layout]


def _batched(layout: Layout) -> bool:
    return any(isinstance(a, BatchAxis) for a in layout)


@dataclass
class _Tensor:
    """An ONNX value held by a pcgraph node (batched or not) in ``layout``."""

    node: Any  # pc.Node
    layout: Layout


# Operand positions that take constants (shapes, axes, indices, statistics): an initializer
# read only there is a constant, every other float initializer is a trainable parameter.
_CONSTANT_OPERANDS = {
    "Reshape": {1},
    "Slice": {1, 2, 3, 4},
    "Split": {1},
    "Squeeze": {1},
    "Unsqueeze": {1},
    "ReduceMean": {1},
    "ReduceSum": {1},
    "Clip": {1, 2},
    "Pow": {1},
    "BatchNormalization": {3, 4},
    "Expand": {1},
    "ConstantOfShape": {0},
    "Dropout": {1, 2},
}


# --------------------------------------------------------------------------- import
def from_onnx(
    model: Any,
    loss: str | None = None,
    *,
    name: str | None = None,
    trainable: Iterable[str] | None = None,
    max_bytes: int = MAX_ONNX_BYTES,
) -> tuple[Any, dict[str, np.ndarray]]:
    """``(g, params)``: the ONNX model ``model`` (a path or an ``onnx.ModelProto``) as a
    ``pc.Graph`` built with the DSL's ops, and its parameters (the float initializers that
    feed weights and biases) as NumPy arrays keyed by their parameter names.

    Inputs keep their ONNX names with the leading batch axis dropped (dynamic or fixed);
    ``g.outputs`` names the nodes holding the ONNX outputs (batch axis first).  Each parameter's
    ``init`` returns its ONNX value, so ``prog.init_params()`` starts from the model's weights.
    Parameters are the float initializers of more than one number that feed weights and
    biases; ``trainable`` (initializer names) chooses them instead.
    ``loss="softmax_cross_entropy"`` (integer class labels) or ``"mse"`` adds a target ``y``
    and the loss on the first output; with ``None`` call ``g.set_loss`` yourself.
    Unsupported operators or attributes raise ``UnsupportedOperatorError`` (a
    ``FileFormatError``) naming the node, the operator and the attribute; malformed or hostile
    files ``FileFormatError``.
    """
    onnx = _onnx()
    if isinstance(model, onnx.ModelProto):
        proto, folder, source = model, None, f"<ONNX model {model.graph.name!r}>"
    else:
        from .files import as_path

        path = as_path(model, "from_onnx")
        raw = read_bounded(path, max_bytes, "from_onnx")
        try:
            proto = onnx.load_model_from_string(raw)
        except Exception as e:  # protobuf's DecodeError and friends: a malformed file
            raise FileFormatError(f"{path}: not an ONNX model ({type(e).__name__})") from None
        folder, source = path.resolve().parent, str(path)
    if loss not in (None, "softmax_cross_entropy", "mse"):
        raise FileFormatError(
            f"from_onnx: loss {loss!r:.40}: use None, 'softmax_cross_entropy' or 'mse'"
        )
    if proto.functions:
        try:
            from onnx import inliner

            proto = inliner.inline_local_functions(proto)
        except Exception as e:
            raise FileFormatError(
                f"{source}: its local functions cannot be inlined ({e})"
            ) from None
    _load_external_data(proto, folder, source, max_bytes)
    chosen = None if trainable is None else {str(t) for t in trainable}
    if chosen is not None:
        missing = sorted(chosen - {t.name for t in proto.graph.initializer})
        if missing:
            raise FileFormatError(f"{source}: trainable names no initializer: {missing[:10]}")
    return _Importer(proto, source, name, chosen).build(loss)


def _load_external_data(proto: Any, folder: Path | None, source: str, max_bytes: int) -> None:
    """Read initializers stored in external files, only from inside the model's folder."""
    tensors = [t for t in proto.graph.initializer if t.data_location == 1]  # EXTERNAL
    if not tensors:
        return
    if folder is None:
        raise FileFormatError(
            f"{source}: has tensors in external files; load it from its path so they can be found"
        )
    total = 0
    for t in tensors:
        info = {e.key: e.value for e in t.external_data}
        where = info.get("location", "")
        target = (folder / where).resolve()
        if not where or os.path.isabs(where) or not target.is_relative_to(folder):
            raise FileFormatError(
                f"{source}: initializer {t.name!r} names external data {where!r:.80} outside the "
                f"model's folder {str(folder)!r}; refused"
            )
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
        except ValueError:
            raise FileFormatError(
                f"{source}: initializer {t.name!r}: bad offset or length"
            ) from None
        with open_regular(target, f"external data of {t.name!r}") as f:
            size = os.fstat(f.fileno()).st_size
            if length < 0:
                length = size - offset
            if offset < 0 or offset + length > size:
                raise FileFormatError(
                    f"{source}: initializer {t.name!r}: bytes {offset}..{offset + length} are "
                    f"outside {str(target)!r} ({size} bytes)"
                )
            total += length
            if total > max_bytes:
                raise FileFormatError(f"{source}: external data larger than {max_bytes} bytes")
            f.seek(offset)
            t.raw_data = f.read(length)
        del t.external_data[:]
        t.data_location = 0


class _Importer:
    def __init__(
        self, proto: Any, source: str, name: str | None, trainable: set[str] | None = None
    ) -> None:
        import onnx

        from .graph import Graph

        self.onnx = onnx
        self.proto = proto
        self.source = source
        graph = proto.graph
        if len(graph.node) > MAX_ONNX_NODES:
            raise FileFormatError(f"{source}: more than {MAX_ONNX_NODES} nodes")
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
        if not self.opset:
            raise FileFormatError(f"{source}: declares no opset of the default ONNX domain")
        self.g = Graph(name or graph.name or "onnx")
        self.values: dict[str, Any] = {}  # ONNX value name -> np.ndarray | _Tensor
        self.batch_size: int | None = None  # the inputs' fixed batch size, if they have one
        self.node_label = ""
        self.fresh: set[str] = set()  # the nodes made for the ONNX node being imported
        self.trainable = trainable
        self.batch_zero: Any = None  # 0 * sum(first float input): zeros, one per example

    # ------------------------------------------------------------------ errors
    def unsupported(self, what: str) -> UnsupportedOperatorError:
        supported = ", ".join(SUPPORTED)
        return UnsupportedOperatorError(
            f"{self.source}: {self.node_label}: {what}. Supported operators: {supported}"
        )

    def bad(self, what: str) -> FileFormatError:
        return FileFormatError(f"{self.source}: {self.node_label}: {what}")

    # ------------------------------------------------------------------ building
    def build(self, loss: str | None) -> tuple[Any, dict[str, np.ndarray]]:
        onnx = self.onnx
        graph = self.proto.graph
        initializers = {}
        for t in graph.initializer:
            try:
                initializers[t.name] = onnx.numpy_helper.to_array(t)
            except Exception as e:
                raise FileFormatError(
                    f"{self.source}: initializer {t.name!r} cannot be read ({type(e).__name__}: "
                    f"{str(e)[:100]})"
                ) from None
        for t in graph.sparse_initializer:
            raise FileFormatError(
                f"{self.source}: sparse initializer {t.values.name!r}: unsupported"
            )
        self._inputs(graph, initializers)
        params = self._params(graph, initializers)
        for k, v in initializers.items():
            self.values.setdefault(k, _float64(v))
        for i, node in enumerate(graph.node):
            self.node_label = f"node {node.name or i!r} ({node.op_type})"
            self._node(node)
        outputs = []
        for out in graph.output:
            self.node_label = f"graph output {out.name!r}"
            if out.name not in self.values:
                raise self.bad("no node computes it")
            value = self.values[out.name]
            if isinstance(value, _Unread):
                continue  # running statistics, a dropout mask: not part of the function
            if not isinstance(value, _Tensor) or not _batched(value.layout):
                raise self.unsupported("the output does not depend on the inputs")
            # The node holds it per example, batch axis first, wherever ONNX had the batch.
            outputs.append(value.node.name)
        if not outputs:
            raise FileFormatError(
                f"{self.source}: the model has no output computed from its inputs"
            )
        self.g.outputs = outputs
        if loss is not None:
            self._add_loss(loss)
        return self.g, params

    def _inputs(self, graph: Any, initializers: Mapping) -> None:
        for inp in graph.input:
            if inp.name in initializers:
                continue  # IR < 4 lists initializers among the inputs
            self.node_label = f"input {inp.name!r}"
            tt = inp.type.tensor_type
            if not inp.type.HasField("tensor_type"):
                raise self.unsupported("only tensor inputs are supported")
            if tt.elem_type in _FLOAT_TYPES:
                dtype = "float"
            elif tt.elem_type in (6, 7):
                dtype = "int64"
            else:
                raise self.unsupported(f"element type {tt.elem_type} (use float or int64 inputs)")
            dims = list(tt.shape.dim)
            if not dims:
                raise self.unsupported("a scalar input has no batch axis")
            first = dims[0]
            if first.HasField("dim_value"):
                if self.batch_size not in (None, first.dim_value):
                    raise self.unsupported("inputs with different fixed batch sizes")
                self.batch_size = int(first.dim_value)
            shape = []
            for k, d in enumerate(dims[1:], 1):
                if not d.HasField("dim_value") or d.dim_value <= 0:
                    raise self.unsupported(
                        f"axis {k} has no fixed size ({d.dim_param or 'unknown'}); only the batch "
                        "axis (the first) may be dynamic: export with a fixed size there"
                    )
                shape.append(int(d.dim_value))
            node = self._build(lambda s=shape, n=inp.name, d=dtype: self.g.input(n, s, dtype=d))
            self.values[inp.name] = _Tensor(node, (BatchAxis(),) + tuple(shape))

    def _params(self, graph: Any, initializers: Mapping) -> dict[str, np.ndarray]:
        """Parameters: float initializers of rank >= 1 read by some node in an operand
        position that is not a constant's (shapes, axes, statistics)."""
        used: dict[str, None] = {}
        for node in graph.node:
            constant = _CONSTANT_OPERANDS.get(node.op_type, set())
            for pos, name in enumerate(node.input):
                if name in initializers and pos not in constant:
                    used.setdefault(name, None)
        params = {}
        for name in used:
            array = initializers[name]
            if array.dtype.kind != "f" or array.ndim == 0:
                continue
            if self.trainable is None and array.size == 1:
                continue  # one number: a scale or an epsilon the exporter wrote (a constant)
            if self.trainable is not None and name not in self.trainable:
                continue
            if not np.all(np.isfinite(array)):
                raise FileFormatError(
                    f"{self.source}: initializer {name!r} holds a NaN or infinity"
                )
            value = np.array(array, copy=True)
            self.node_label = f"initializer {name!r}"
            node = self._build(lambda n=name, v=value: self.g.param(n, v.shape, init=_Initial(v)))
            self.values[name] = _Tensor(node, tuple(int(n) for n in value.shape))
            params[name] = value
        return params

    def _build(self, make: Callable[[], Any]) -> Any:
        """Run one DSL call, its GraphError (a shape the op rules refuse) named for this node."""
        try:
            made = make()
        except GraphError as e:
            raise self.bad(str(e)) from None
        self.fresh.add(made.name)
        return made

    def _add_loss(self, loss: str) -> None:
        first = self.g.node(self.g.outputs[0])
        target = "y" if "y" not in self.g.nx else "y_target"
        if loss == "softmax_cross_entropy":
            if not first.shape:
                raise FileFormatError(f"{self.source}: the first output has no class axis")
            y = self.g.target(target, first.shape[:-1], dtype="int64")
        else:
            y = self.g.target(target, first.shape)
        name = "loss" if "loss" not in self.g.nx else None
        self.g.set_loss(self.g.op(loss, first, y, name=name))

    # ------------------------------------------------------------------ one node
    def _node(self, node: Any) -> None:
        if node.domain not in ("", "ai.onnx"):
            raise self.unsupported(f"operator {node.op_type!r} of domain {node.domain!r}")
        handler = HANDLERS.get(node.op_type)
        if handler is None:
            raise self.unsupported(f"operator {node.op_type!r} is not supported")
        for a in node.attribute:
            if a.type in (5, 10):  # GRAPH, GRAPHS
                raise self.unsupported(f"attribute {a.name!r} holds a subgraph")
        inputs = []
        for name in node.input:
            if name == "":
                inputs.append(None)
            elif name not in self.values:
                raise self.bad(f"reads {name!r}, which nothing computes before it")
            elif isinstance(self.values[name], _Unread):
                raise self.unsupported(f"reads {name!r}, {self.values[name].what}")
            else:
                inputs.append(self.values[name])
        attrs = {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}
        if (
            node.op_type in _RESHAPING
            and inputs
            and isinstance(inputs[0], _Filled)
            and not any(isinstance(v, _Tensor) for v in inputs[1:])
        ):
            # A fill value (an RNN's zero state) reshaped on its way: the same fill value.
            self.values.update({o: inputs[0] for o in node.output if o})
            return
        zero = [isinstance(v, _Filled) and v.value == 0 for v in inputs]
        if any(zero) and node.op_type in ("MatMul", "Mul", "Add", "Sub", "Gemm"):
            value = self._with_zero(node, inputs, zero, attrs)
            if value is not None:
                self.values[node.output[0]] = value
                return
            inputs = [self.tensor(v) if isinstance(v, _Filled) else v for v in inputs]
        self.fresh = set()
        try:
            outs = handler(self, inputs, attrs, node)
        except _Unfoldable as e:
            raise self.unsupported(f"cannot fold {e} at import") from None
        except KeyError as e:
            raise self.bad(f"the attribute {e} is missing") from None
        except PCGraphError:
            raise
        except (ValueError, TypeError, IndexError, OverflowError, ZeroDivisionError) as e:
            # A malformed node (shapes or attributes that contradict each other).
            raise self.bad(f"{type(e).__name__}: {str(e)[:300]}") from None
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        real_outputs = [o for o in node.output if o]
        if len(outs) < len(real_outputs):
            raise self.unsupported(f"only its first {len(outs)} output(s) are supported")
        for name, value in zip(node.output, outs):
            if not name:
                continue
            if not isinstance(value, (_Tensor, _Unread, _Filled, np.ndarray)):
                value = np.asarray(value)  # a NumPy scalar, or a batch-size symbol
            if isinstance(value, np.ndarray) and value.dtype == object:
                if not any(isinstance(v, BatchSize) for v in value.reshape(-1).tolist()):
                    value = np.asarray(value.tolist(), dtype=np.int64)  # sizes, all known
            if isinstance(value, np.ndarray):
                value = _float64(value)
            if isinstance(value, np.ndarray) and value.size > MAX_FOLDED_VALUES:
                raise self.bad(f"a folded constant of {value.size} values is too large")
            if isinstance(value, _Tensor) and value.node.name in self.fresh:
                self.fresh.discard(value.node.name)
                value = _Tensor(self._rename(value.node, name), value.layout)
            self.values[name] = value

    def _with_zero(self, node: Any, inputs: list, zero: list, attrs: Mapping) -> Any:
        """An arithmetic node reading zeros as large as the batch (PyTorch's dynamo exporter
        writes h0 @ R + b with h0 = zeros(1, batch, hidden)): its value when the zeros simply
        drop out, else None (the zeros are then made as a batched node, ``tensor``)."""
        op = node.op_type
        a, b = inputs[0], inputs[1]
        f, other = (a, b) if zero[0] else (b, a)
        if op == "MatMul" and f.dims is not None and not (zero[0] and zero[1]):
            left = f.dims if zero[0] else _shape_of(a)
            right = _shape_of(b) if zero[0] else f.dims
            return _Filled(0.0, _matmul_dims(left, right))
        if op in ("Add", "Sub") and not (zero[0] and zero[1]):
            covers = isinstance(other, _Tensor) and _batched(other.layout)
            if covers and f.dims is not None and len(other.layout) >= len(f.dims):
                if op == "Add" or zero[1]:
                    return other  # x + 0, 0 + x, x - 0
                return _Tensor(self.op("neg", other.node), other.layout)  # 0 - x
        return None

    def _rename(self, node: Any, wanted: str) -> Any:
        """Give a node made for this ONNX node the ONNX value's name, when it is free."""
        import networkx as nx

        from .graph import Node

        if wanted in self.g.nx or not wanted:
            return node
        nx.relabel_nodes(self.g.nx, {node.name: wanted}, copy=False)
        return Node(self.g, wanted)

    # ------------------------------------------------------------------ helpers for handlers
    def op(self, name: str, *operands: Any, **attrs: Any) -> Any:
        return self._build(lambda: self.g.op(name, *operands, **attrs))

    def tensor(self, value: Any, what: str = "operand") -> _Tensor:
        """``value`` as a pcgraph node: constants become ``const`` nodes (floats only)."""
        if isinstance(value, _Tensor):
            return value
        if value is None:
            raise self.bad(f"the {what} is missing")
        if isinstance(value, _Filled):
            return self._batch_constant(value, what)
        array = np.asarray(value)
        if array.dtype == object:
            raise self.unsupported(f"the {what} depends on the batch size")
        node = self._build(lambda: self.g.const(np.array(array, dtype=np.float64)))
        return _Tensor(node, tuple(int(n) for n in array.shape))

    def _batch_constant(self, value: _Filled, what: str) -> _Tensor:
        """A constant as large as the batch (zeros(batch, hidden)) as a batched node:
        ``0 * sum(x) + value`` per example, x the first float input (its gradient is 0)."""
        dims = value.dims
        if dims is None or [type(d) for d in dims].count(BatchSize) != 1:
            raise self.unsupported(f"the {what} is a constant whose size depends on the batch")
        if any(isinstance(d, BatchSize) and d.coef != 1 for d in dims):
            raise self.unsupported(f"the {what} is a constant merged with the batch axis")
        layout = tuple(BatchAxis() if isinstance(d, BatchSize) else int(d) for d in dims)
        if self.batch_zero is None:
            floats = [n for n in self.g.inputs if self.g.node(n).dtype == "float"]
            if not floats:
                raise self.unsupported(f"the {what} is as large as the batch, with no float input")
            self.batch_zero = self.op("mul", self.op("sum", floats[0]), 0.0)
        fill = np.full(_pc_shape(layout), value.value)
        return _Tensor(self.op("add", self.batch_zero, fill), layout)

    def checked(self, t: _Tensor) -> _Tensor:
        """``t``, after checking that its node's shape is what its layout says."""
        if tuple(t.node.shape) != _pc_shape(t.layout):
            raise self.unsupported(
                f"its result {_dims(t.layout)} does not map onto per-example values "
                f"{tuple(t.node.shape)}"
            )
        return t

    def reshape_node(self, t: _Tensor, layout: Layout) -> _Tensor:
        shape = _pc_shape(layout)
        if tuple(t.node.shape) == shape:
            return _Tensor(t.node, layout)
        return _Tensor(self.op("reshape", t.node, shape=shape), layout)

    def axis(self, t: _Tensor, axis: Any, what: str = "axis") -> int:
        """The pcgraph axis of ONNX axis ``axis`` of ``t`` (not the batch's)."""
        rank = len(t.layout)
        a = _int(axis)
        if not -rank <= a < rank:
            raise self.bad(f"{what} {a} is out of range for rank {rank}")
        a %= rank
        if isinstance(t.layout[a], BatchAxis):
            raise self.unsupported(
                f"{what} {a} is the batch axis; ops across examples are not supported"
            )
        return _pc_axes(t.layout)[a][0]

    def onnx_axis(self, t: _Tensor, axis: Any) -> int:
        rank = len(t.layout)
        a = _int(axis)
        if not -rank <= a < rank:
            raise self.bad(f"axis {a} is out of range for rank {rank}")
        return a % rank


class _Initial:
    """A parameter's ``init``: its ONNX value, whatever the seed."""

    def __init__(self, value: np.ndarray) -> None:
        self.value = value

    def __call__(self, rng: Any, shape: tuple) -> np.ndarray:
        return np.array(self.value, dtype=np.float64)

    def __repr__(self) -> str:
        return f"<ONNX initial value {self.value.shape}>"


# --------------------------------------------------------------------------- reshape
def _reshape_layout(imp: _Importer, layout: Layout, target: list) -> Layout:
    """The layout of a reshape of ``layout`` to ONNX dims ``target`` (ints, ``BatchSize``s,
    ``-1``), keeping the batch axis whole; refused when it would split or scatter it."""
    dims = _dims(layout)
    batched = _batched(layout)
    size = math.prod(int(d) for d in _pc_shape(layout))  # per example
    target = list(target)
    if target.count(-1) > 1:
        raise imp.bad(f"reshape target {target} has more than one -1")
    for d in target:
        if not isinstance(d, BatchSize) and d < -1:
            raise imp.bad(f"reshape target {target} has a negative size")
    syms = [k for k, d in enumerate(target) if isinstance(d, BatchSize)]
    if -1 in target:
        k = target.index(-1)
        known = math.prod(d.coef if isinstance(d, BatchSize) else d for d in target if d != -1)
        # Elements to share: per example, or for the whole fixed batch when the target
        # names no batch symbol and the batch size is fixed (then placed below).
        whole = size * imp.batch_size if batched and not syms and imp.batch_size else size
        if known <= 0 or whole % known:
            raise imp.bad(f"cannot reshape {dims} to {target}")
        absorbs = batched and not syms and not imp.batch_size
        target[k] = BatchSize(whole // known) if absorbs else whole // known
    syms = [k for k, d in enumerate(target) if isinstance(d, BatchSize)]
    if not batched:
        if syms:
            raise imp.bad(
                f"reshape target {target} depends on the batch size but its operand does not"
            )
        if math.prod(target) != size:
            raise imp.bad(f"cannot reshape {dims} to {target}")
        return tuple(int(d) for d in target)
    if not syms:
        if imp.batch_size is None:
            raise imp.unsupported(
                f"reshape to the fixed shape {target}: the batch axis is not kept; export with "
                "the batch size taken from the input (x.view(x.size(0), ...) or -1)"
            )
        syms = _place_fixed_batch(imp, layout, target)
    if len(syms) != 1:
        raise imp.unsupported(f"reshape to {target}: the batch size appears more than once")
    k = syms[0]
    before = 1
    for a in layout:  # the elements before the batch in row-major order, per example
        if isinstance(a, BatchAxis):
            before *= a.pre
            break
        before *= a
    prefix = math.prod(target[:k])
    if before % prefix:
        raise imp.unsupported(f"reshape of {dims} to {target} splits the batch axis")
    pre = before // prefix
    coef = target[k].coef
    if coef % pre:
        raise imp.unsupported(f"reshape of {dims} to {target} splits the batch axis")
    post = coef // pre
    rest = math.prod(target[k + 1 :])
    if prefix * pre * post * rest != size:
        raise imp.bad(f"cannot reshape {dims} to {target}")
    return tuple(target[:k]) + (BatchAxis(pre, post),) + tuple(int(d) for d in target[k + 1 :])


def _place_fixed_batch(imp: _Importer, layout: Layout, target: list) -> list[int]:
    """A reshape to constant sizes in a model exported with a fixed batch size N: the entry
    holding the batch is the first multiple of N at which the elements before the batch fit."""
    n = imp.batch_size
    before = 1
    for a in layout:
        if isinstance(a, BatchAxis):
            before *= a.pre
            break
        before *= a
    for k, d in enumerate(target):
        prefix = math.prod(target[:k])
        if d % n == 0 and before % prefix == 0 and (d // n) % (before // prefix) == 0:
            target[k] = BatchSize(d // n)
            return [k]
    raise imp.unsupported(f"reshape to {target} does not keep the batch axis (size {n})")


def _reshape(imp: _Importer, t: _Tensor, target: list) -> _Tensor:
    return imp.reshape_node(t, _reshape_layout(imp, t.layout, target))


# --------------------------------------------------------------------------- folding
def _float64(v: np.ndarray) -> np.ndarray:
    """Float constants are folded in float64 (the program casts the result to its dtype once):
    a scale such as sqrt(1 / sqrt(d)) is then as exact as the reference's double arithmetic,
    not rounded to the file's float32 at every step."""
    return v.astype(np.float64) if v.dtype.kind == "f" and v.dtype != np.float64 else v


def _matmul_dims(a: list, b: list) -> list:
    """NumPy matmul's output dims (the batch size symbol broadcasting as any size)."""
    if len(b) == 1:
        return list(a[:-1])
    if len(a) == 1:
        return list(b[:-2]) + list(b[-1:])
    la, lb = list(a[:-2]), list(b[:-2])
    n = max(len(la), len(lb))
    la, lb = [1] * (n - len(la)) + la, [1] * (n - len(lb)) + lb
    lead = [y if (not isinstance(x, BatchSize) and x == 1) else x for x, y in zip(la, lb)]
    return lead + [a[-2], b[-1]]


def _shape_of(v: Any) -> list:
    """The ONNX dims of a constant or a tensor (``BatchSize`` for the batch axis)."""
    return list(v.shape) if isinstance(v, np.ndarray) else _dims(v.layout)


def _is_const(v: Any) -> bool:
    return isinstance(v, np.ndarray)


def _ints(v: Any, what: str, imp: _Importer) -> list:
    """A constant operand as a list of ints (``BatchSize`` entries kept)."""
    if not _is_const(v):
        raise imp.unsupported(f"the {what} must be a constant (computed from shapes only)")
    return [d if isinstance(d, BatchSize) else int(d) for d in np.asarray(v).reshape(-1).tolist()]


def _fold_binary(fn: Callable, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    shape = np.broadcast_shapes(a.shape, b.shape)
    if math.prod(shape) > MAX_FOLDED_VALUES:
        raise ValueError(f"a folded constant of shape {shape} is too large")
    if a.dtype == object or b.dtype == object:
        a2, b2 = np.broadcast_arrays(a.astype(object), b.astype(object))
        out = np.empty(shape, dtype=object)
        for i in np.ndindex(shape):
            out[i] = fn(a2[i], b2[i])
        return out
    return np.asarray(fn(a, b))


def _int_div(x: Any, y: Any) -> Any:
    if isinstance(x, BatchSize):
        return x // y
    if isinstance(x, np.ndarray) and x.dtype.kind in "iu":
        return np.trunc(x / y).astype(x.dtype)
    if isinstance(x, numbers.Integral) and isinstance(y, numbers.Integral):
        return int(x / y)
    return x / y


# --------------------------------------------------------------------------- handlers
def _decode(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


def _elementwise(imp: _Importer, pc_op: str, a: Any, b: Any) -> _Tensor:
    """A broadcasting binary op of ONNX operands with NumPy's right-aligned broadcasting."""
    ta, tb = imp.tensor(a), imp.tensor(b)
    la, lb = ta.layout, tb.layout
    rank = max(len(la), len(lb))
    pa = (None,) * (rank - len(la)) + la
    pb = (None,) * (rank - len(lb)) + lb
    out = []
    for x, y in zip(pa, pb):
        if isinstance(x, BatchAxis) or isinstance(y, BatchAxis):
            if isinstance(x, BatchAxis) and isinstance(y, BatchAxis):
                if x != y:
                    raise imp.unsupported("operands hold the batch in different places")
                out.append(x)
            else:
                other = y if isinstance(x, BatchAxis) else x
                if other not in (None, 1):
                    raise imp.unsupported(
                        "an operand differs along the batch axis (a per-example constant)"
                    )
                out.append(x if isinstance(x, BatchAxis) else y)
        elif x is None or y is None:
            out.append(x if y is None else y)
        else:
            if x != y and 1 not in (x, y):
                raise imp.bad(f"shapes {_dims(la)} and {_dims(lb)} do not broadcast")
            out.append(max(x, y))
    result = tuple(out)
    operands = [_aligned(imp, t, result) for t in (ta, tb)]
    return imp.checked(_Tensor(imp.op(pc_op, *operands), result))


def _aligned(imp: _Importer, t: _Tensor, result: Layout) -> Any:
    """``t``'s node shaped to broadcast against ``result``'s pcgraph axes."""
    if _batched(t.layout):
        return t.node  # the same batch place; the DSL pads lower ranks
    if not _batched(result):
        return t.node
    lead = len(result) - len(t.layout)
    shape: list[int] = []
    for k, r in enumerate(result):
        mine = t.layout[k - lead] if k >= lead else None
        if isinstance(r, BatchAxis):
            shape += [1] * ((r.pre > 1) + (r.post > 1))
        elif mine is not None:
            shape.append(mine)
        elif shape:
            shape.append(1)
    while shape and shape[0] == 1 and len(shape) > len(_pc_shape(result)):
        shape.pop(0)
    if tuple(shape) == tuple(t.node.shape):
        return t.node
    return imp.op("reshape", t.node, shape=tuple(shape) or (1,))


def _binary_handler(pc_op: str, fold: Callable) -> Callable:
    def handle(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
        a, b = xs[0], xs[1]
        if _is_const(a) and _is_const(b):
            return _fold_binary(fold, a, b)
        return _elementwise(imp, pc_op, a, b)

    return handle


def _unary_handler(pc_op: str, fold: Callable | None = None, **pc_attrs: Any) -> Callable:
    def handle(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
        x = xs[0]
        if _is_const(x) and fold is not None and x.dtype != object:
            return np.asarray(fold(x))
        t = imp.tensor(x)
        return _Tensor(imp.op(pc_op, t.node, **pc_attrs), t.layout)

    return handle


def _identity(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    return xs[0]


def _constant(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    onnx = imp.onnx
    for a in node.attribute:
        if a.name == "value":
            return onnx.numpy_helper.to_array(a.t)
        if a.name in ("value_float", "value_int"):
            return np.asarray(onnx.helper.get_attribute_value(a))
        if a.name in ("value_floats", "value_ints"):
            return np.asarray(list(onnx.helper.get_attribute_value(a)))
    raise imp.unsupported(f"attribute(s) {[a.name for a in node.attribute]}")


def _shape(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    x = xs[0]
    if isinstance(x, _Filled):
        if x.dims is None:
            raise imp.unsupported("the shape of zeros computed from the batch size")
        dims = list(x.dims)
    else:
        dims = list(x.shape) if _is_const(x) else _dims(x.layout)
    start, end = attrs.get("start", 0), attrs.get("end", None)
    dims = dims[slice(start, end)]
    return np.array(dims, dtype=object if any(isinstance(d, BatchSize) for d in dims) else np.int64)


def _cast(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    x, to = xs[0], int(attrs["to"])
    if _is_const(x):
        if x.dtype == object:
            return x
        names = {**_FLOAT_TYPES, **_INT_TYPES}
        if to not in names or names[to] == "bfloat16":
            raise imp.unsupported(f"attribute 'to' = {to}")
        return x.astype(names[to])
    if to not in _FLOAT_TYPES:
        raise imp.unsupported(f"attribute 'to' = {to}: a float tensor cast to integers")
    return x


def _cast_like(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    x, like = xs[0], xs[1]
    kind = like.dtype.kind if _is_const(like) else ("i" if like.node.dtype == "int64" else "f")
    if _is_const(x):
        if x.dtype == object or kind == "f":
            return x  # float constants stay float64 (folded exactly, cast once by the program)
        return x.astype(like.dtype)
    if kind != "f":
        raise imp.unsupported("a float tensor cast to integers")
    return x


def _gather(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    data, idx = xs
    axis = int(attrs.get("axis", 0))
    if _is_const(data) and _is_const(idx):
        return np.take(data, np.asarray(idx).astype(np.int64), axis=axis)
    if isinstance(data, _Tensor) and not _batched(data.layout) and isinstance(idx, _Tensor):
        if axis != 0 or len(data.layout) != 2:
            raise imp.unsupported(
                f"attribute 'axis' = {axis}: embeddings gather rows of a 2-D table"
            )
        if idx.node.dtype != "int64":
            raise imp.unsupported("the indices must be integers")
        out = imp.op("embedding", idx.node, data.node)
        return _Tensor(out, idx.layout + (data.layout[1],))
    if isinstance(data, _Tensor) and _is_const(idx):
        t = imp.tensor(data)
        a = imp.onnx_axis(t, axis)
        pa = imp.axis(t, axis)
        n = t.layout[a]
        picks = [int(i) % n for i in np.asarray(idx).reshape(-1)]
        if picks != list(range(picks[0], picks[0] + len(picks))):
            raise imp.unsupported("gathering indices that are not a contiguous range")
        sliced = imp.op("slice", t.node, start=picks[0], stop=picks[0] + len(picks), axis=pa)
        layout = t.layout[:a] + (len(picks),) + t.layout[a + 1 :]
        target = _dims(layout[:a]) + list(np.asarray(idx).shape) + _dims(layout[a + 1 :])
        return _reshape(imp, _Tensor(sliced, layout), target)
    raise imp.unsupported("Gather of a computed table (only initializers or constants)")


def _unsqueeze_axes(imp: _Importer, xs: list, attrs: Mapping) -> list[int]:
    if imp.opset >= 13:
        return _ints(xs[1], "axes", imp) if len(xs) > 1 and xs[1] is not None else []
    return list(attrs.get("axes", []))


def _unsqueeze(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    x = xs[0]
    axes = _unsqueeze_axes(imp, xs, attrs)
    dims = list(x.shape) if _is_const(x) else _dims(x.layout)
    rank = len(dims) + len(axes)
    new = sorted(a % rank for a in axes)
    for a in new:
        dims.insert(a, 1)
    if _is_const(x):
        return x.reshape([int(d) if not isinstance(d, BatchSize) else d for d in dims])
    return _reshape(imp, x, dims)


def _squeeze(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    x = xs[0]
    axes = _unsqueeze_axes(imp, xs, attrs)
    dims = list(x.shape) if _is_const(x) else _dims(x.layout)
    rank = len(dims)
    drop = {a % rank for a in axes} if axes else {k for k, d in enumerate(dims) if d == 1}
    if any(dims[a] != 1 for a in drop):
        raise imp.bad(f"squeezes axes {sorted(drop)} of shape {dims} that are not 1")
    kept = [d for k, d in enumerate(dims) if k not in drop]
    if _is_const(x):
        return x.reshape(kept)
    return _reshape(imp, x, kept)


def _concat(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    axis = int(attrs["axis"])
    if all(_is_const(x) for x in xs):
        objects = any(x.dtype == object for x in xs)
        return np.concatenate([x.astype(object) if objects else x for x in xs], axis=axis)
    ts = [imp.tensor(x) for x in xs]
    if len({_batched(t.layout) for t in ts}) > 1:
        raise imp.unsupported("joins batched tensors and constants (a constant per example)")
    a = imp.onnx_axis(ts[0], axis)
    pa = imp.axis(ts[0], axis)
    layout = list(ts[0].layout)
    layout[a] = sum(t.layout[a] for t in ts)
    return _Tensor(imp.op("concat", [t.node for t in ts], axis=pa), tuple(layout))


def _slice_one(imp: _Importer, t: _Tensor, axis: int, start: int, end: int, step: int) -> _Tensor:
    a = imp.onnx_axis(t, axis)
    dim = t.layout[a]
    if step <= 0:
        raise imp.unsupported(f"slice step {step} (only positive steps)")
    if isinstance(dim, BatchAxis):
        if start == 0 and end >= 2**62 and step == 1:
            return t
        raise imp.unsupported("slices the batch axis")
    lo, hi, st = slice(start, end, step).indices(dim)
    if (lo, hi, st) == (0, dim, 1):
        return t
    n = len(range(lo, hi, st))
    if n == 0:
        raise imp.bad("an empty slice")
    layout = t.layout[:a] + (n,) + t.layout[a + 1 :]
    out = imp.op("slice", t.node, start=lo, stop=hi, step=st, axis=imp.axis(t, axis))
    return _Tensor(out, layout)


def _slice(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    x = xs[0]
    if imp.opset < 10:
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes = list(attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = _ints(xs[1], "starts", imp), _ints(xs[2], "ends", imp)
        axes = (
            _ints(xs[3], "axes", imp)
            if len(xs) > 3 and xs[3] is not None
            else list(range(len(starts)))
        )
        steps = (
            _ints(xs[4], "steps", imp) if len(xs) > 4 and xs[4] is not None else [1] * len(starts)
        )
    if _is_const(x):
        key = [slice(None)] * x.ndim
        for a, s, e, st in zip(axes, starts, ends, steps):
            key[int(a)] = slice(int(s), int(e), int(st))
        return x[tuple(key)]
    for a, s, e, st in zip(axes, starts, ends, steps):
        x = _slice_one(imp, x, int(a), int(s), int(e), int(st))
    return x


def _split(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    t = imp.tensor(xs[0])
    axis = int(attrs.get("axis", 0))
    a = imp.onnx_axis(t, axis)
    n = t.layout[a]
    if isinstance(n, BatchAxis):
        raise imp.unsupported("splits the batch axis")
    if imp.opset >= 13 and len(xs) > 1 and xs[1] is not None:
        sizes = _ints(xs[1], "split", imp)
    elif "split" in attrs:
        sizes = list(attrs["split"])
    else:
        count = int(attrs.get("num_outputs", len(node.output)))
        size = -(-n // count)
        sizes = [size] * (count - 1) + [n - size * (count - 1)]
    if sum(sizes) != n or any(s <= 0 for s in sizes):
        raise imp.bad(f"split sizes {sizes} do not add up to {n}")
    out, start = [], 0
    for s in sizes:
        out.append(_slice_one(imp, t, axis, start, start + s, 1))
        start += s
    return out


def _transpose(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    x = xs[0]
    perm = attrs.get("perm")
    if _is_const(x):
        return np.transpose(x, perm)
    t = imp.tensor(x)
    perm = list(perm) if perm is not None else list(range(len(t.layout)))[::-1]
    if sorted(perm) != list(range(len(t.layout))):
        raise imp.bad(f"perm {perm} is no permutation of {len(t.layout)} axes")
    groups = _pc_axes(t.layout)
    pc_perm = [p for k in perm for p in groups[k]]
    layout = tuple(t.layout[k] for k in perm)
    if pc_perm == sorted(pc_perm):
        return _Tensor(t.node, layout)
    return _Tensor(imp.op("transpose", t.node, axes=tuple(pc_perm)), layout)


def _reshape_handler(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    x, target = xs[0], _ints(xs[1], "shape", imp)
    dims = list(x.shape) if _is_const(x) else _dims(x.layout)
    if attrs.get("allowzero", 0) and 0 in target:
        raise imp.unsupported("attribute 'allowzero' = 1 with a zero in the shape")
    target = [
        dims[k] if (not isinstance(d, BatchSize) and d == 0) else d for k, d in enumerate(target)
    ]
    if _is_const(x):
        return x.reshape([int(d) for d in target])
    return _reshape(imp, x, target)


def _flatten(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    x = xs[0]
    dims = list(x.shape) if _is_const(x) else _dims(x.layout)
    a = int(attrs.get("axis", 1)) % (len(dims) + 1) if dims else 0
    target = [_prod(dims[:a]), _prod(dims[a:])]
    if _is_const(x):
        return x.reshape([int(d) for d in target])
    return _reshape(imp, x, target)


def _prod(dims: list) -> Any:
    out: Any = 1
    for d in dims:
        out = d * out if isinstance(d, BatchSize) else out * d
    return out


def _matmul(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    a, b = xs
    if _is_const(a) and _is_const(b):
        return np.matmul(a, b)
    ta, tb = imp.tensor(a), imp.tensor(b)
    la, lb = ta.layout, tb.layout
    both = _batched(la) and _batched(lb)
    for t, name, count in ((ta, "left", 2 if both else 1), (tb, "right", 2)):
        if _batched(t.layout) and any(isinstance(d, BatchAxis) for d in t.layout[-count:]):
            raise imp.unsupported(f"the {name} operand's matrix axes hold the batch")
    if len(la) == 1 or len(lb) == 1:
        if len(lb) == 1:
            out = la[:-1]
        else:
            out = lb[:-2] + lb[-1:]
    else:
        lead_a, lead_b = la[:-2], lb[:-2]
        rank = max(len(lead_a), len(lead_b))
        pa = (None,) * (rank - len(lead_a)) + lead_a
        pb = (None,) * (rank - len(lead_b)) + lead_b
        lead = []
        for x, y in zip(pa, pb):
            if isinstance(x, BatchAxis) or isinstance(y, BatchAxis):
                if x != y and not (y is None or x is None or 1 in (x, y)):
                    raise imp.unsupported("operands hold the batch in different places")
                lead.append(x if isinstance(x, BatchAxis) else y)
            else:
                lead.append(x if y in (None, 1) else y)
        out = tuple(lead) + (la[-2], lb[-1])
    return imp.checked(_Tensor(imp.op("matmul", ta.node, tb.node), tuple(out)))


def _gemm(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    a, w = imp.tensor(xs[0]), imp.tensor(xs[1])
    c = xs[2] if len(xs) > 2 else None
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    if attrs.get("transA", 0):
        raise imp.unsupported("attribute 'transA' = 1")
    if len(a.layout) != 2 or len(w.layout) != 2:
        raise imp.bad("Gemm needs 2-D operands")
    if attrs.get("transB", 0):
        w = _Tensor(imp.op("transpose", w.node), (w.layout[1], w.layout[0]))
    if alpha != 1.0:
        w = _Tensor(imp.op("mul", w.node, alpha), w.layout)
    n = w.layout[1]
    if c is not None and beta != 0.0:
        tc = imp.tensor(c)
        if (
            tc.layout in ((n,), (1, n))
            and not _batched(tc.layout)
            and isinstance(a.layout[0], BatchAxis)  # rows: the batch, maybe merged with more
        ):
            bias = tc.node if tc.layout == (n,) else imp.op("reshape", tc.node, shape=(n,))
            if beta != 1.0:
                bias = imp.op("mul", bias, beta)
            return _Tensor(imp.op("linear", a.node, w.node, bias), (a.layout[0], n))
        prod = _matmul(imp, [a, w], {}, node)
        if beta != 1.0:
            tc = _Tensor(imp.op("mul", tc.node, beta), tc.layout)
        return _elementwise(imp, "add", prod, tc)
    return _matmul(imp, [a, w], {}, node)


def _image_attrs(imp: _Importer, attrs: Mapping, kernel: tuple, what: str) -> dict:
    """Strides, symmetric pads and dilations of a 2-D conv or pool."""
    auto = _decode(attrs.get("auto_pad", "NOTSET"))
    if auto not in ("NOTSET", "VALID"):
        raise imp.unsupported(f"attribute 'auto_pad' = {auto!r} (give explicit pads)")
    strides = tuple(attrs.get("strides", (1, 1)))
    pads = tuple(attrs.get("pads", (0, 0, 0, 0)))
    dilations = tuple(attrs.get("dilations", (1, 1)))
    if len(strides) != 2 or len(pads) != 4 or len(dilations) != 2:
        raise imp.unsupported(f"{what} over other than 2 spatial axes")
    if pads[:2] != pads[2:]:
        raise imp.unsupported(f"attribute 'pads' = {list(pads)}: only symmetric padding")
    if attrs.get("ceil_mode", 0):
        raise imp.unsupported("attribute 'ceil_mode' = 1")
    return {"stride": strides, "padding": pads[:2], "dilation": dilations}


def _image(imp: _Importer, x: Any) -> _Tensor:
    t = imp.tensor(x)
    if len(t.layout) != 4 or t.layout[0] != BatchAxis():
        raise imp.unsupported(
            f"an image operand of shape {_dims(t.layout)}: 2-D images (N, C, H, W) with the batch first"
        )
    return t


def _conv(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    x, w = _image(imp, xs[0]), imp.tensor(xs[1])
    if _batched(w.layout) or len(w.layout) != 4:
        raise imp.unsupported("a computed or non-2-D convolution weight")
    k = tuple(attrs.get("kernel_shape", w.layout[2:]))
    if k != tuple(w.layout[2:]):
        raise imp.bad(f"kernel_shape {k} differs from the weight's {w.layout[2:]}")
    c = _image_attrs(imp, attrs, k, "Conv")
    out = imp.op("conv2d", x.node, w.node, groups=int(attrs.get("group", 1)), **c)
    layout = (BatchAxis(),) + tuple(out.shape)
    if len(xs) > 2 and xs[2] is not None:
        bias = imp.tensor(xs[2])
        return _elementwise(
            imp,
            "add",
            _Tensor(out, layout),
            _Tensor(
                imp.op("reshape", bias.node, shape=(bias.layout[0], 1, 1)), (bias.layout[0], 1, 1)
            ),
        )
    return _Tensor(out, layout)


def _conv_transpose(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    x, w = _image(imp, xs[0]), imp.tensor(xs[1])
    if _batched(w.layout) or len(w.layout) != 4:
        raise imp.unsupported("a computed or non-2-D convolution weight")
    if "output_shape" in attrs:
        raise imp.unsupported("attribute 'output_shape' (give pads and output_padding)")
    c = _image_attrs(imp, attrs, tuple(w.layout[2:]), "ConvTranspose")
    extra = tuple(attrs.get("output_padding", (0, 0)))
    out = imp.op(
        "conv_transpose2d",
        x.node,
        w.node,
        groups=int(attrs.get("group", 1)),
        output_padding=extra,
        **c,
    )
    layout = (BatchAxis(),) + tuple(out.shape)
    if len(xs) > 2 and xs[2] is not None:
        bias = imp.tensor(xs[2])
        shaped = imp.reshape_node(bias, (bias.layout[0], 1, 1))
        return _elementwise(imp, "add", _Tensor(out, layout), shaped)
    return _Tensor(out, layout)


def _pool(pc_op: str) -> Callable:
    def handle(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
        x = _image(imp, xs[0])
        kernel = tuple(attrs["kernel_shape"])
        c = _image_attrs(imp, attrs, kernel, node.op_type)
        if c.pop("dilation") != (1, 1):
            raise imp.unsupported(f"attribute 'dilations' = {list(attrs['dilations'])}")
        if pc_op == "avg_pool2d" and any(c["padding"]) and not attrs.get("count_include_pad", 0):
            raise imp.unsupported(
                "attribute 'count_include_pad' = 0 with padding (pcgraph counts the padding, "
                "as PyTorch's count_include_pad=True)"
            )
        if len([o for o in node.output if o]) > 1:
            raise imp.unsupported("the Indices output")
        out = imp.op(pc_op, x.node, kernel=kernel, **c)
        return _Tensor(out, (BatchAxis(),) + tuple(out.shape))

    return handle


def _global_avg_pool(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    t = imp.tensor(xs[0])
    if len(t.layout) < 3 or t.layout[0] != BatchAxis():
        raise imp.unsupported("GlobalAveragePool needs (N, C, spatial...) with the batch first")
    pooled = imp.op("global_avg_pool", t.node)
    layout = (BatchAxis(), t.layout[1]) + (1,) * (len(t.layout) - 2)
    return imp.reshape_node(_Tensor(pooled, (BatchAxis(), t.layout[1])), layout)


def _channel_shaped(imp: _Importer, v: Any, rank: int, what: str) -> _Tensor:
    """A per-channel vector ``(C,)`` as ``(C, 1, ..., 1)`` for an ``(N, C, ...)`` operand."""
    t = imp.tensor(v, what)
    if len(t.layout) != 1:
        raise imp.bad(f"the {what} must be a vector of channels")
    shape = (t.layout[0],) + (1,) * (rank - 2)
    return imp.reshape_node(t, shape)


def _batch_norm(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    x = imp.tensor(xs[0])
    if len(x.layout) < 2 or x.layout[0] != BatchAxis():
        raise imp.unsupported("BatchNormalization needs (N, C, ...) with the batch first")
    eps = float(attrs.get("epsilon", 1e-5))
    rank = len(x.layout)
    scale = _channel_shaped(imp, xs[1], rank, "scale")
    shift = _channel_shaped(imp, xs[2], rank, "bias")
    training = bool(attrs.get("training_mode", 0))
    if imp.opset < 14 and len([o for o in node.output if o]) > 1:
        training = True  # BatchNormalization-9 marks training by its extra outputs
    if training:
        normed = _Tensor(imp.op("batch_norm", x.node, eps=eps), x.layout)
        out = _elementwise(imp, "add", _elementwise(imp, "mul", normed, scale), shift)
        # The running statistics it would also output are no part of the gradient.
        return [out] + [_Unread("the running statistics of a batch norm")] * (len(node.output) - 1)
    if len([o for o in node.output if o]) > 1:
        raise imp.unsupported("running-statistics outputs in inference mode")
    mean, var = np.asarray(xs[3], dtype=np.float64), np.asarray(xs[4], dtype=np.float64)
    if not (_is_const(xs[3]) and _is_const(xs[4])):
        raise imp.unsupported("computed running statistics")
    inv = (1.0 / np.sqrt(var + eps)).reshape(scale.layout)
    centred = _elementwise(imp, "sub", x, mean.reshape(scale.layout))
    gain = _elementwise(imp, "mul", scale, inv)
    return _elementwise(imp, "add", _elementwise(imp, "mul", centred, gain), shift)


class _Unread:
    """An output pcgraph does not compute (a training-mode BatchNormalization's running
    statistics, a Dropout's mask): fine while nothing reads it, refused when something does."""

    def __init__(self, what: str) -> None:
        self.what = what


def _layer_norm(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    x = imp.tensor(xs[0])
    if len([o for o in node.output if o]) > 1:
        raise imp.unsupported("the Mean and InvStdDev outputs")
    rank = len(x.layout)
    first = imp.onnx_axis(x, int(attrs.get("axis", -1)))
    axes = tuple(imp.axis(x, a) for a in range(first, rank))
    out = _Tensor(
        imp.op("layer_norm", x.node, axis=axes, eps=float(attrs.get("epsilon", 1e-5))), x.layout
    )
    out = _elementwise(imp, "mul", out, xs[1])
    if len(xs) > 2 and xs[2] is not None:
        out = _elementwise(imp, "add", out, xs[2])
    return out


def _softmax(pc_op: str) -> Callable:
    def handle(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
        t = imp.tensor(xs[0])
        axis = int(attrs.get("axis", -1 if imp.opset >= 13 else 1))
        a = imp.onnx_axis(t, axis)
        if imp.opset < 13 and a != len(t.layout) - 1:
            raise imp.unsupported(f"attribute 'axis' = {axis} before opset 13 (coerced to 2-D)")
        return _Tensor(imp.op(pc_op, t.node, axis=imp.axis(t, a)), t.layout)

    return handle


def _reduce(pc_op: str) -> Callable:
    def handle(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
        t = imp.tensor(xs[0])
        input_axes = imp.opset >= 18 or (node.op_type == "ReduceSum" and imp.opset >= 13)
        if input_axes:
            axes = _ints(xs[1], "axes", imp) if len(xs) > 1 and xs[1] is not None else []
        else:
            axes = list(attrs.get("axes", []))
        if not axes:
            if attrs.get("noop_with_empty_axes", 0):
                return t
            axes = list(range(len(t.layout)))
        onnx_axes = sorted({imp.onnx_axis(t, a) for a in axes})
        pc_axes = tuple(imp.axis(t, a) for a in onnx_axes)
        keep = bool(attrs.get("keepdims", 1))
        out = imp.op(pc_op, t.node, axis=pc_axes, keepdims=keep)
        layout = tuple(
            (1 if keep else None) if k in onnx_axes else d for k, d in enumerate(t.layout)
        )
        return _Tensor(out, tuple(d for d in layout if d is not None))

    return handle


def _gelu(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    t = imp.tensor(xs[0])
    approx = _decode(attrs.get("approximate", "none"))
    if approx == "tanh":
        return _Tensor(imp.op("gelu", t.node), t.layout)
    if approx != "none":
        raise imp.unsupported(f"attribute 'approximate' = {approx!r}")
    # 0.5 x (1 + erf(x / sqrt 2)), PyTorch's exact GELU
    e = imp.op("erf", imp.op("mul", t.node, 1.0 / math.sqrt(2.0)))
    return _Tensor(imp.op("mul", imp.op("mul", t.node, 0.5), imp.op("add", e, 1.0)), t.layout)


def _pow(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    x, e = xs
    if _is_const(x) and _is_const(e):
        return np.power(x, e)
    if not _is_const(e) or np.asarray(e).size != 1:
        raise imp.unsupported("an exponent that is not one constant")
    t = imp.tensor(x)
    return _Tensor(imp.op("pow", t.node, exponent=float(np.asarray(e).reshape(()))), t.layout)


def _clip(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    t = imp.tensor(xs[0])
    if imp.opset >= 11:
        lo = xs[1] if len(xs) > 1 else None
        hi = xs[2] if len(xs) > 2 else None
        for v in (lo, hi):
            if v is not None and not _is_const(v):
                raise imp.unsupported("computed bounds")
        lo = None if lo is None else float(np.asarray(lo).reshape(()))
        hi = None if hi is None else float(np.asarray(hi).reshape(()))
    else:
        lo, hi = attrs.get("min"), attrs.get("max")
    if lo is None and hi is None:
        return t
    return _Tensor(imp.op("clip", t.node, lo=lo, hi=hi), t.layout)


def _dropout(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    training = xs[2] if len(xs) > 2 else None
    ratio = xs[1] if len(xs) > 1 else attrs.get("ratio", 0.5)
    if training is not None and (not _is_const(training) or bool(np.asarray(training))):
        if not (_is_const(ratio) and float(np.asarray(ratio)) == 0.0):
            raise imp.unsupported("dropout in training mode (export in eval mode, or with p=0)")
    return [xs[0], _Unread("the mask of a dropout")]


def _sum(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    out = xs[0]
    for x in xs[1:]:
        out = (
            _fold_binary(np.add, out, x)
            if _is_const(out) and _is_const(x)
            else _elementwise(imp, "add", out, x)
        )
    return out


def _leaky_relu(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    t = imp.tensor(xs[0])
    return _Tensor(imp.op("leaky_relu", t.node, slope=float(attrs.get("alpha", 0.01))), t.layout)


def _reciprocal(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    if _is_const(xs[0]):
        return 1.0 / xs[0]
    return _elementwise(imp, "div", np.asarray(1.0), xs[0])


def _constant_of_shape(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    shape = _ints(xs[0], "shape", imp)
    value = attrs.get("value")
    fill = imp.onnx.numpy_helper.to_array(value) if value is not None else np.zeros(1, np.float32)
    if any(isinstance(d, BatchSize) for d in shape):
        return _Filled(float(fill.reshape(-1)[0]), shape)
    if math.prod(shape) > MAX_FOLDED_VALUES:
        raise imp.bad(f"a constant of shape {shape} is too large")
    return np.full(shape, fill.reshape(-1)[0], dtype=fill.dtype)


def _expand(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    x = xs[0]
    shape = _ints(xs[1], "shape", imp)
    if not _is_const(x):
        raise imp.unsupported("expanding a computed tensor")
    if any(isinstance(d, BatchSize) for d in shape):
        if x.size and np.all(x == x.reshape(-1)[0]):
            return _Filled(float(x.reshape(-1)[0]), shape)  # zeros(batch, ...): a fill value
        raise imp.unsupported("expanding a constant that is not one value to the batch size")
    out = np.broadcast_shapes(x.shape, tuple(shape))
    if math.prod(out) > MAX_FOLDED_VALUES:
        raise imp.bad(f"a constant of shape {out} is too large")
    return np.broadcast_to(x, out).copy()


def _range(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    start, limit, delta = (np.asarray(x).reshape(()) for x in xs)
    if not all(_is_const(x) for x in xs):
        raise imp.unsupported("a computed range")
    n = max(int(math.ceil((limit - start) / delta)), 0) if delta else 0
    if n > MAX_FOLDED_VALUES:
        raise imp.bad(f"a range of {n} values is too large")
    return np.arange(start, limit, delta)


def _folded(fold: Callable) -> Callable:
    """An operator read only on constants (shape arithmetic), folded at import."""

    def handle(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
        if not all(_is_const(x) for x in xs):
            raise imp.unsupported(f"{node.op_type} of computed tensors (only of constants)")
        if len(xs) == 1:
            return np.asarray(fold(xs[0]))
        return _fold_binary(fold, *xs)

    return handle


def _mod(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    return _folded(np.fmod if attrs.get("fmod", 0) else (lambda a, b: a % b))(imp, xs, attrs, node)


def _where(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    if not all(_is_const(x) for x in xs):
        raise imp.unsupported("Where on computed tensors")
    return np.where(*xs)


_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
_DEFAULT_ACTIVATIONS = {
    "RNN": ["Tanh"],
    "GRU": ["Sigmoid", "Tanh"],
    "LSTM": ["Sigmoid", "Tanh", "Tanh"],
}


_RESHAPING = {
    "Reshape", "Unsqueeze", "Squeeze", "Transpose", "Flatten", "Identity", "Cast", "CastLike",
    "Expand", "Slice",
}  # fmt: skip


class _Filled:
    """``ConstantOfShape`` of a shape holding the batch size (an RNN's zero initial state):
    read as "no initial state" by the recurrent operators, refused anywhere else."""

    def __init__(self, value: float, dims: list | None) -> None:
        self.value, self.dims = value, dims


def _recurrent(imp: _Importer, xs: list, attrs: Mapping, node: Any) -> Any:
    """RNN, GRU and LSTM unrolled over the sequence with pcgraph's ops, the same weight nodes
    at every step (forward direction, default activations, no peepholes)."""
    kind = node.op_type
    gates = _GATES[kind]
    xs = list(xs) + [None] * (8 - len(xs))
    direction = _decode(attrs.get("direction", "forward"))
    if direction != "forward":
        raise imp.unsupported(f"attribute 'direction' = {direction!r} (only 'forward')")
    acts = [_decode(a) for a in attrs.get("activations", _DEFAULT_ACTIVATIONS[kind])]
    if acts != _DEFAULT_ACTIVATIONS[kind] or "activation_alpha" in attrs:
        raise imp.unsupported(f"attribute 'activations' = {acts} (only the defaults)")
    for name in ("clip", "input_forget"):
        if attrs.get(name):
            raise imp.unsupported(f"attribute {name!r}")
    if xs[4] is not None:
        raise imp.unsupported("the sequence_lens input (all sequences have the full length)")
    if kind == "LSTM" and xs[7] is not None:
        raise imp.unsupported("the peephole input P")
    hidden = int(attrs["hidden_size"])
    x = imp.tensor(xs[0], "input X")
    seq_axis = 1 if attrs.get("layout", 0) else 0
    if len(x.layout) != 3 or x.layout[1 - seq_axis] != BatchAxis():
        raise imp.unsupported(
            f"an input X of shape {_dims(x.layout)}: (seq, batch, features) or, with layout=1, "
            "(batch, seq, features)"
        )
    steps = x.layout[seq_axis]

    def matrix(v: Any, what: str) -> Any:  # (1, gates * hidden, k) -> (k, gates * hidden)
        t = imp.tensor(v, what)
        if _batched(t.layout) or len(t.layout) != 3 or t.layout[:2] != (1, gates * hidden):
            raise imp.bad(f"the {what} must have shape (1, {gates * hidden}, k)")
        return imp.op("transpose", imp.op("reshape", t.node, shape=t.layout[1:]))

    w, r = matrix(xs[1], "weights W"), matrix(xs[2], "recurrence weights R")
    wb = rb = None
    if xs[3] is not None:
        b = imp.tensor(xs[3], "bias B")
        if _batched(b.layout) or b.layout != (1, 2 * gates * hidden):
            raise imp.bad(f"the bias B must have shape (1, {2 * gates * hidden})")
        flat = imp.op("reshape", b.node, shape=(2 * gates * hidden,))
        wb = imp.op("slice", flat, start=0, stop=gates * hidden)
        rb = imp.op("slice", flat, start=gates * hidden, stop=2 * gates * hidden)

    def state(v: Any, what: str) -> Any:  # (1, batch, hidden) -> per example (hidden,)
        if v is None or (isinstance(v, _Filled) and v.value == 0):
            return None
        t = imp.tensor(v, what)
        if t.layout not in ((1, BatchAxis(), hidden), (BatchAxis(), 1, hidden)):
            raise imp.unsupported(f"an initial {what} of shape {_dims(t.layout)}")
        return imp.op("reshape", t.node, shape=(hidden,))

    h, c = state(xs[5], "hidden state"), state(xs[6], "cell state")

    def part(v: Any, k: int) -> Any:
        return imp.op("slice", v, start=k * hidden, stop=(k + 1) * hidden, axis=-1)

    def affine(v: Any, m: Any, bias: Any) -> Any:
        return imp.op("linear", v, m, bias) if bias is not None else imp.op("matmul", v, m)

    both = None if wb is None else imp.op("add", wb, rb)
    outs = []
    for t in range(steps):
        xt = imp.op("index", x.node, i=t)
        if kind == "GRU":
            gx = affine(xt, w, wb)
            gh = affine(h, r, rb) if h is not None else rb
            z_in, r_in = part(gx, 0), part(gx, 1)
            if gh is not None:
                z_in, r_in = imp.op("add", z_in, part(gh, 0)), imp.op("add", r_in, part(gh, 1))
            z, reset = imp.op("sigmoid", z_in), imp.op("sigmoid", r_in)
            cand = part(gx, 2)
            if attrs.get("linear_before_reset", 0):
                if gh is not None:
                    cand = imp.op("add", cand, imp.op("mul", reset, part(gh, 2)))
            elif h is not None or rb is not None:
                rh = None
                if h is not None:
                    r_cand = imp.op("slice", r, start=2 * hidden, stop=3 * hidden, axis=1)
                    rh = imp.op("matmul", imp.op("mul", reset, h), r_cand)
                extra = (
                    rh
                    if rb is None
                    else (part(rb, 2) if rh is None else imp.op("add", rh, part(rb, 2)))
                )
                cand = imp.op("add", cand, extra)
            cand = imp.op("tanh", cand)
            keep = imp.op("mul", imp.op("sub", 1.0, z), cand)
            h = keep if h is None else imp.op("add", keep, imp.op("mul", z, h))
        else:
            g = affine(xt, w, both)
            if h is not None:
                g = imp.op("add", g, imp.op("matmul", h, r))
            if kind == "RNN":
                h = imp.op("tanh", g)
            else:  # LSTM gates in ONNX's order: input, output, forget, cell
                i, o = imp.op("sigmoid", part(g, 0)), imp.op("sigmoid", part(g, 1))
                f, cand = imp.op("sigmoid", part(g, 2)), imp.op("tanh", part(g, 3))
                new = imp.op("mul", i, cand)
                c = new if c is None else imp.op("add", imp.op("mul", f, c), new)
                h = imp.op("mul", o, imp.op("tanh", c))
        outs.append(h)

    def shaped(v: Any, layout: Layout) -> _Tensor:
        return imp.reshape_node(_Tensor(v, (BatchAxis(),) + tuple(v.shape)), layout)

    lead = (steps, 1, BatchAxis()) if seq_axis == 0 else (BatchAxis(), steps, 1)
    y = shaped(imp.op("stack", outs, axis=0), lead + (hidden,))
    last = (1, BatchAxis(), hidden) if seq_axis == 0 else (BatchAxis(), 1, hidden)
    results = [y, shaped(h, last)]
    if kind == "LSTM":
        results.append(shaped(c, last))
    return results


HANDLERS: dict[str, Callable] = {
    "Add": _binary_handler("add", lambda a, b: a + b),
    "Sub": _binary_handler("sub", lambda a, b: a - b),
    "Mul": _binary_handler("mul", lambda a, b: a * b),
    "Div": _binary_handler("div", _int_div),
    "Max": _binary_handler("maximum", np.maximum),
    "Min": _binary_handler("minimum", np.minimum),
    "Pow": _pow,
    "Sum": _sum,
    "Neg": _unary_handler("neg", np.negative),
    "Relu": _unary_handler("relu", lambda x: np.maximum(x, 0)),
    "Tanh": _unary_handler("tanh", np.tanh),
    "Sigmoid": _unary_handler("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
    "Exp": _unary_handler("exp", np.exp),
    "Log": _unary_handler("log", np.log),
    "Sqrt": _unary_handler("sqrt", np.sqrt),
    "Abs": _unary_handler("abs", np.abs),
    "Softplus": _unary_handler("softplus"),
    "Erf": _unary_handler("erf"),
    "Gelu": _gelu,
    "LeakyRelu": _leaky_relu,
    "Reciprocal": _reciprocal,
    "Clip": _clip,
    "Softmax": _softmax("softmax"),
    "LogSoftmax": _softmax("log_softmax"),
    "MatMul": _matmul,
    "Gemm": _gemm,
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MaxPool": _pool("max_pool2d"),
    "AveragePool": _pool("avg_pool2d"),
    "GlobalAveragePool": _global_avg_pool,
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm,
    "ReduceMean": _reduce("mean"),
    "ReduceSum": _reduce("sum"),
    "Flatten": _flatten,
    "Reshape": _reshape_handler,
    "Transpose": _transpose,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Concat": _concat,
    "Split": _split,
    "Slice": _slice,
    "Gather": _gather,
    "Identity": _identity,
    "Dropout": _dropout,
    "Constant": _constant,
    "Shape": _shape,
    "Cast": _cast,
    "CastLike": _cast_like,
    "ConstantOfShape": _constant_of_shape,
    "Expand": _expand,
    "Range": _range,
    "Equal": _folded(lambda a, b: a == b),
    "Less": _folded(lambda a, b: a < b),
    "Greater": _folded(lambda a, b: a > b),
    "Mod": _mod,
    "Floor": _folded(np.floor),
    "Ceil": _folded(np.ceil),
    "Not": _folded(np.logical_not),
    "And": _folded(np.logical_and),
    "Or": _folded(np.logical_or),
    "Where": _where,
    "RNN": _recurrent,
    "LSTM": _recurrent,
    "GRU": _recurrent,
}
SUPPORTED = tuple(sorted(HANDLERS))


# --------------------------------------------------------------------------- export
class _Exporter:
    """Emits one compiled program's forward graph as ONNX nodes, one pcgraph op at a time."""

    def __init__(self, prog: Any) -> None:
        import onnx

        self.onnx = onnx
        self.prog = prog
        self.dtype = np.dtype(prog.dtype)
        self.elem = onnx.TensorProto.FLOAT if self.dtype == np.float32 else onnx.TensorProto.DOUBLE
        self.nodes: list = []
        self.initializers: list = []
        self.count = 0

    def fresh(self, base: str) -> str:
        self.count += 1
        return f"{base}::{self.count}"

    def constant(self, value: Any, base: str, dtype: Any = None) -> str:
        name = self.fresh(base)
        array = np.asarray(value, dtype=dtype or self.dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def emit(self, op_type: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        out = output or self.fresh(op_type)
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [out], **attrs))
        return out


def _ex_direct(op_type: str, **fixed: Any) -> Callable:
    def emit(ex: _Exporter, spec: Any, xs: list[str], lead: int) -> None:
        ex.emit(op_type, xs, spec.name, **fixed)

    return emit


def _ex_gelu(ex: _Exporter, spec: Any, xs: list[str], lead: int) -> None:
    (x,) = xs
    cube = ex.emit("Mul", [x, ex.emit("Mul", [x, x])])
    inner = ex.emit("Add", [x, ex.emit("Mul", [cube, ex.constant(0.044715, "gelu")])])
    t = ex.emit("Tanh", [ex.emit("Mul", [inner, ex.constant(math.sqrt(2 / math.pi), "gelu")])])
    half = ex.emit("Mul", [x, ex.constant(0.5, "gelu")])
    ex.emit("Mul", [half, ex.emit("Add", [t, ex.constant(1.0, "gelu")])], spec.name)


def _ex_linear(ex: _Exporter, spec: Any, xs: list[str], lead: int) -> None:
    x = ex.prog.compiled.nodes[spec.operands[0]]
    if not x.batched:
        ex.emit("Add", [ex.emit("MatMul", xs[:2]), xs[2]], spec.name)
    elif len(x.shape) == 1:  # (batch, in): a Gemm, which imports back as linear
        ex.emit("Gemm", xs, spec.name)
    else:  # (batch, ..., in): rows of a Gemm, and back
        rows = ex.emit("Reshape", [xs[0], ex.constant([-1, x.shape[-1]], "shape", np.int64)])
        out = ex.constant([-1, *spec.shape], "shape", np.int64)
        ex.emit("Reshape", [ex.emit("Gemm", [rows, *xs[1:]]), out], spec.name)


def _ex_reduce(op_type: str) -> Callable:
    def emit(ex: _Exporter, spec: Any, xs: list[str], lead: int) -> None:
        axes = ex.constant([a + lead for a in spec.attrs["axis"]], "axes", np.int64)
        ex.emit(op_type, [xs[0], axes], spec.name, keepdims=int(spec.attrs["keepdims"]))

    return emit


def _ex_axis(op_type: str) -> Callable:
    def emit(ex: _Exporter, spec: Any, xs: list[str], lead: int) -> None:
        ex.emit(op_type, xs, spec.name, axis=spec.attrs["axis"] + lead)

    return emit


def _normalise_nodes(ex: _Exporter, x: str, axes: list[int], eps: float, out: str) -> None:
    axes_name = ex.constant(axes, "axes", np.int64)
    centred = ex.emit("Sub", [x, ex.emit("ReduceMean", [x, axes_name], keepdims=1)])
    var = ex.emit("ReduceMean", [ex.emit("Mul", [centred, centred]), axes_name], keepdims=1)
    scale = ex.emit("Sqrt", [ex.emit("Add", [var, ex.constant(eps, "eps")])])
    ex.emit("Div", [centred, scale], out)


def _ex_layer_norm(ex: _Exporter, spec: Any, xs: list[str], lead: int) -> None:
    axes = [a + lead for a in spec.attrs["axis"]]
    _normalise_nodes(ex, xs[0], axes, spec.attrs["eps"], spec.name)


def _ex_batch_norm(ex: _Exporter, spec: Any, xs: list[str], lead: int) -> None:
    axes = [0] + list(range(2, len(spec.shape) + 1))
    _normalise_nodes(ex, xs[0], axes, spec.attrs["eps"], spec.name)


def _ex_reshape(ex: _Exporter, spec: Any, xs: list[str], lead: int) -> None:
    shape = ex.constant([0] * lead + list(spec.attrs["shape"]), "shape", np.int64)
    ex.emit("Reshape", [xs[0], shape], spec.name)


def _ex_transpose(ex: _Exporter, spec: Any, xs: list[str], lead: int) -> None:
    perm = list(range(lead)) + [a + lead for a in spec.attrs["axes"]]
    ex.emit("Transpose", xs, spec.name, perm=perm)


def _ex_index(ex: _Exporter, spec: Any, xs: list[str], lead: int) -> None:
    i = ex.constant(spec.attrs["i"], "index", np.int64)
    ex.emit("Gather", [xs[0], i], spec.name, axis=lead)


def _ex_slice(ex: _Exporter, spec: Any, xs: list[str], lead: int) -> None:
    a = spec.attrs
    ints = [ex.constant([a[k]], k, np.int64) for k in ("start", "stop")]
    axes, steps = (
        ex.constant([a["axis"] + lead], "axes", np.int64),
        ex.constant([a["step"]], "step", np.int64),
    )
    ex.emit("Slice", [xs[0], *ints, axes, steps], spec.name)


def _ex_stack(ex: _Exporter, spec: Any, xs: list[str], lead: int) -> None:
    axes = ex.constant([spec.attrs["axis"] + lead], "axes", np.int64)
    parts = [ex.emit("Unsqueeze", [x, axes]) for x in xs]
    ex.emit("Concat", parts, spec.name, axis=spec.attrs["axis"] + lead)


def _ex_embedding(ex: _Exporter, spec: Any, xs: list[str], lead: int) -> None:
    ex.emit("Gather", [xs[1], xs[0]], spec.name, axis=0)


def _ex_leaky(ex: _Exporter, spec: Any, xs: list[str], lead: int) -> None:
    ex.emit("LeakyRelu", xs, spec.name, alpha=spec.attrs["slope"])


def _ex_pow(ex: _Exporter, spec: Any, xs: list[str], lead: int) -> None:
    ex.emit("Pow", [xs[0], ex.constant(spec.attrs["exponent"], "exponent")], spec.name)


def _ex_clip(ex: _Exporter, spec: Any, xs: list[str], lead: int) -> None:
    lo, hi = spec.attrs["lo"], spec.attrs["hi"]
    bounds = ["" if v is None else ex.constant(v, "bound") for v in (lo, hi)]
    ex.emit("Clip", [xs[0], *bounds], spec.name)


def _ex_conv(op_type: str) -> Callable:
    def emit(ex: _Exporter, spec: Any, xs: list[str], lead: int) -> None:
        a = spec.attrs
        ph, pw = a["padding"]
        extra = {"output_padding": list(a["output_padding"])} if "output_padding" in a else {}
        ex.emit(
            op_type,
            xs,
            spec.name,
            strides=list(a["stride"]),
            pads=[ph, pw, ph, pw],
            dilations=list(a["dilation"]),
            group=a["groups"],
            **extra,
        )

    return emit


def _ex_pool(op_type: str, **fixed: Any) -> Callable:
    def emit(ex: _Exporter, spec: Any, xs: list[str], lead: int) -> None:
        a = spec.attrs
        ph, pw = a["padding"]
        ex.emit(
            op_type,
            xs,
            spec.name,
            kernel_shape=list(a["kernel"]),
            strides=list(a["stride"]),
            pads=[ph, pw, ph, pw],
            **fixed,
        )

    return emit


def _ex_global_avg_pool(ex: _Exporter, spec: Any, xs: list[str], lead: int) -> None:
    pooled = ex.emit("GlobalAveragePool", xs)
    ex.emit("Reshape", [pooled, ex.constant([0, -1], "shape", np.int64)], spec.name)


EXPORTERS: dict[str, Callable] = {
    "add": _ex_direct("Add"),
    "sub": _ex_direct("Sub"),
    "mul": _ex_direct("Mul"),
    "div": _ex_direct("Div"),
    "maximum": _ex_direct("Max"),
    "minimum": _ex_direct("Min"),
    "neg": _ex_direct("Neg"),
    "relu": _ex_direct("Relu"),
    "tanh": _ex_direct("Tanh"),
    "sigmoid": _ex_direct("Sigmoid"),
    "exp": _ex_direct("Exp"),
    "log": _ex_direct("Log"),
    "abs": _ex_direct("Abs"),
    "sqrt": _ex_direct("Sqrt"),
    "identity": _ex_direct("Identity"),
    "softplus": _ex_direct("Softplus"),
    "erf": _ex_direct("Erf"),
    "gelu": _ex_gelu,
    "leaky_relu": _ex_leaky,
    "pow": _ex_pow,
    "clip": _ex_clip,
    "matmul": _ex_direct("MatMul"),
    "linear": _ex_linear,
    "sum": _ex_reduce("ReduceSum"),
    "mean": _ex_reduce("ReduceMean"),
    "softmax": _ex_axis("Softmax"),
    "log_softmax": _ex_axis("LogSoftmax"),
    "layer_norm": _ex_layer_norm,
    "batch_norm": _ex_batch_norm,
    "reshape": _ex_reshape,
    "transpose": _ex_transpose,
    "index": _ex_index,
    "slice": _ex_slice,
    "concat": _ex_axis("Concat"),
    "stack": _ex_stack,
    "embedding": _ex_embedding,
    "conv2d": _ex_conv("Conv"),
    "conv_transpose2d": _ex_conv("ConvTranspose"),
    "max_pool2d": _ex_pool("MaxPool"),
    "avg_pool2d": _ex_pool("AveragePool", count_include_pad=1),
    "global_avg_pool": _ex_global_avg_pool,
}


def to_onnx(
    prog: Any,
    params: Mapping[str, Any],
    path: Any,
    outputs: list[str] | None = None,
) -> Path:
    """Write ``prog``'s forward graph to ``path`` as an ONNX model (opset ``OPSET``), checked
    with ``onnx.checker`` and written atomically; returns the path.

    The outputs are ``outputs`` (node names; default: the node predictions are read from,
    ``prog.prediction_node()``) with the batch axis first and dynamic (``N``); the inputs they
    need keep their names; ``params`` (as ``prog.init_params`` returns them) and the constants
    become initializers in the program's dtype.  The loss and the targets are left out.  An op
    with no ONNX form (dropout, the losses) raises ``UnsupportedOperatorError``.
    """
    onnx = _onnx()
    from .backends import to_numpy
    from .files import as_path, atomic_write

    path = as_path(path, "to_onnx")
    c = prog.compiled
    names = list(outputs) if outputs is not None else [prog.prediction_node()]
    for n in names:
        if n not in c.nodes:
            raise GraphError(f"to_onnx: no node named {n!r:.60} in graph {c.name!r}")
        if not c.nodes[n].batched:
            raise GraphError(f"to_onnx: output {n!r} has no batch axis")
    needed = c.ancestors(names)
    ex = _Exporter(prog)
    host = to_numpy(prog.check_params(params))
    inputs = []
    for name, spec in c.nodes.items():
        if name not in needed:
            continue
        if spec.kind == "target":
            raise GraphError(f"to_onnx: the outputs {names} depend on the target {name!r}")
        if spec.kind == "input":
            elem = onnx.TensorProto.INT64 if spec.dtype == "int64" else ex.elem
            inputs.append(onnx.helper.make_tensor_value_info(name, elem, ["N", *spec.shape]))
        elif spec.kind == "param":
            array = np.asarray(host[name], dtype=ex.dtype)
            ex.initializers.append(onnx.numpy_helper.from_array(array, name))
        elif spec.kind == "const":
            array = np.asarray(to_numpy(spec.value), dtype=ex.dtype)
            ex.initializers.append(onnx.numpy_helper.from_array(array, name))
        else:
            rule = EXPORTERS.get(spec.op)
            if rule is None:
                raise UnsupportedOperatorError(
                    f"to_onnx: node {name!r} ({spec.op}) has no ONNX form; exportable ops: "
                    f"{', '.join(sorted(EXPORTERS))}"
                )
            rule(ex, spec, list(spec.operands), 1 if spec.batched else 0)
    outs = [
        onnx.helper.make_tensor_value_info(
            n,
            onnx.TensorProto.INT64 if c.nodes[n].dtype == "int64" else ex.elem,
            ["N", *c.nodes[n].shape],
        )
        for n in names
    ]
    graph = onnx.helper.make_graph(ex.nodes, c.name, inputs, outs, ex.initializers)
    model = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)], producer_name="pcgraph"
    )
    model.ir_version = 8  # what onnxruntime releases of several years read
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # the checker's ValidationError or a shape-inference error
        raise GraphError(f"to_onnx: the ONNX model fails onnx.checker: {str(e)[:300]}") from None
    data = model.SerializeToString()
    return atomic_write(path, lambda f: f.write(data))
