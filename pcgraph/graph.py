"""The DSL: a model is an explicit DAG of primitive ops held in a ``networkx.MultiDiGraph``.

Node attributes (``g.nx.nodes[name]``): ``kind`` (input, target, param, const, op), ``op`` (op
nodes), ``shape`` (per-example; the batch axis is implicit and leading), ``dtype`` ("float" or
"int64"), ``batched`` (whether values carry the batch axis), ``attrs`` (canonical op attributes),
``init`` (params), ``value`` (consts) and ``layer`` (op nodes marked by ``layer()``: value nodes
under ``value_nodes="layers"``).  Each edge is one operand, with attribute ``pos``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import networkx as nx

from .errors import GraphError, ShapeError
from .init import INITIALIZERS, InitSpec
from .ops import OPS, OpDef

LEAF_KINDS = ("input", "target", "param", "const")
_DTYPES = {
    "float": "float",
    "float32": "float",
    "float64": "float",
    "int64": "int64",
    "int": "int64",
    "int32": "int64",
}


def _dtype(dtype: Any, what: str) -> str:
    key = getattr(dtype, "__name__", None) if isinstance(dtype, type) else str(dtype)
    if key not in _DTYPES:
        raise GraphError(f"{what}: unknown dtype {dtype!r}; use 'float' or 'int64'")
    return _DTYPES[key]


MAX_NODE_VALUES = 1 << 31  # the elements a node may hold per example (spec/errors.md)


def _shape(shape: Any, what: str) -> tuple[int, ...]:
    if type(shape) is tuple and all(type(n) is int and n > 0 for n in shape):
        if math.prod(shape) > MAX_NODE_VALUES:  # the common case, without the ABC checks below
            raise GraphError(f"{what}: shape {shape} holds more than {MAX_NODE_VALUES} values")
        return shape
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise GraphError(f"{what}: shape must be a tuple of ints, got {shape!r:.60}")
    out = tuple(shape)
    if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n > 0 for n in out):
        raise GraphError(f"{what}: shape must hold positive ints, got {shape!r:.60}")
    out = tuple(int(n) for n in out)
    if math.prod(out) > MAX_NODE_VALUES:
        raise GraphError(f"{what}: shape {out} holds more than {MAX_NODE_VALUES} values")
    return out


def infer(
    op: OpDef, name: str, operands: list[str], info: list[Mapping[str, Any]], attrs: Mapping
) -> dict:
    """Check an op node against its op's rules; return its ``shape``, ``dtype``, ``batched``, ``attrs``.

    ``info`` holds the operands' node attributes.  Raises ``ShapeError`` naming node, op and shapes.
    """
    shapes = [tuple(i["shape"]) for i in info]
    batched = [bool(i["batched"]) for i in info]
    dtypes = [i["dtype"] for i in info]

    def fail(msg: str) -> ShapeError:
        listed = ", ".join(
            f"{o!r} {s}{' batched' if b else ''}{' int64' if d == 'int64' else ''}"
            for o, s, b, d in zip(operands, shapes, batched, dtypes)
        )
        return ShapeError(f"node {name!r} ({op.name}): {msg} [operands: {listed}]")

    if op.arity is not None and len(operands) != op.arity:
        raise fail(f"takes {op.arity} operand(s), got {len(operands)}")
    if not operands:
        raise fail("needs at least one operand")
    unknown = set(attrs) - set(op.defaults) - set(op.attr_order)
    if unknown:
        valid = sorted(set(op.defaults) | set(op.attr_order)) or ["none"]
        raise fail(f"unknown attribute(s) {sorted(unknown)}; valid: {', '.join(valid)}")
    for pos, d in enumerate(dtypes):
        if d == "int64" and pos not in op.int_operands and not op.structural:
            raise fail(f"operand {pos} is an integer array; {op.name} needs floats there")
    full = {**op.defaults, **attrs}
    try:
        canon = op.canon(full, shapes) if op.canon else full
        shape = tuple(op.shape(shapes, batched, **canon))
        if op.check_dtypes:
            op.check_dtypes(shapes, dtypes)
    except (ValueError, TypeError, OverflowError) as e:
        raise fail(str(e)) from None
    dtype = "int64" if op.structural and all(d == "int64" for d in dtypes) else "float"
    if dtype == "float" and "int64" in dtypes and op.structural:
        raise fail("mixes integer and float operands")
    return {"shape": shape, "dtype": dtype, "batched": any(batched), "attrs": canon}


class Node:
    """A handle on one node of a ``Graph``; Python operators on it build op nodes."""

    __slots__ = ("graph", "name")
    __array_ufunc__ = None  # make ``ndarray + node`` defer to ``Node.__radd__``

    def __init__(self, graph: Graph, name: str) -> None:
        self.graph = graph
        self.name = name

    @property
    def _data(self) -> dict:
        return self.graph.nx.nodes[self.name]

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-example shape (without the batch axis)."""
        return self._data["shape"]

    @property
    def dtype(self) -> str:
        return self._data["dtype"]

    @property
    def batched(self) -> bool:
        return self._data["batched"]

    @property
    def kind(self) -> str:
        return self._data["kind"]

    @property
    def op(self) -> str | None:
        return self._data.get("op")

    def __repr__(self) -> str:
        what = self.op or self.kind
        return f"<Node {self.name!r} {what} shape={self.shape}{' batched' if self.batched else ''}>"

    def __hash__(self) -> int:
        return hash((id(self.graph), self.name))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and other.graph is self.graph and other.name == self.name

    def __bool__(self) -> bool:
        raise GraphError(f"node {self.name!r} has no truth value while the graph is being built")

    def _bin(self, op: str, other: Any, swap: bool = False) -> Node:
        pair = (other, self) if swap else (self, other)
        return self.graph.op(op, *pair)

    def __add__(self, o: Any) -> Node:
        return self._bin("add", o)

    def __radd__(self, o: Any) -> Node:
        return self._bin("add", o, True)

    def __sub__(self, o: Any) -> Node:
        return self._bin("sub", o)

    def __rsub__(self, o: Any) -> Node:
        return self._bin("sub", o, True)

    def __mul__(self, o: Any) -> Node:
        return self._bin("mul", o)

    def __rmul__(self, o: Any) -> Node:
        return self._bin("mul", o, True)

    def __truediv__(self, o: Any) -> Node:
        return self._bin("div", o)

    def __rtruediv__(self, o: Any) -> Node:
        return self._bin("div", o, True)

    def __matmul__(self, o: Any) -> Node:
        return self._bin("matmul", o)

    def __rmatmul__(self, o: Any) -> Node:
        return self._bin("matmul", o, True)

    def __neg__(self) -> Node:
        return self.graph.op("neg", self)

    def __getitem__(self, key: Any) -> Node:
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            return self.graph.op("index", self, i=int(key))
        if isinstance(key, slice):
            return self.graph.op("slice", self, start=key.start, stop=key.stop, step=key.step)
        raise GraphError(
            f"node {self.name!r}: only x[i] and x[start:stop:step] on the first per-example axis "
            f"are supported, got {key!r}"
        )


class Graph:
    """A model as an explicit DAG of primitive ops; ``g.nx`` is the networkx graph itself."""

    def __init__(self, name: str = "graph") -> None:
        self.name = name
        self.nx = nx.MultiDiGraph(name=name, loss=None)
        # Nodes the graph hands out besides its loss (an imported ONNX model's outputs).
        self.outputs: list[str] = []

    # ------------------------------------------------------------------ leaves
    def _new(self, name: str, **data: Any) -> Node:
        if not isinstance(name, str) or not name:
            raise GraphError(f"node names must be non-empty strings, got {name!r}")
        if name in self.nx:
            raise GraphError(f"a node named {name!r} already exists in graph {self.name!r}")
        self.nx.add_node(name, **data)
        return Node(self, name)

    def input(self, name: str, shape: Iterable[int], dtype: Any = "float") -> Node:
        """A batched data input of per-example ``shape``; ``dtype`` "float" or "int64"."""
        what = f"input {name!r}"
        return self._new(
            name, kind="input", shape=_shape(shape, what), dtype=_dtype(dtype, what), batched=True
        )

    def target(self, name: str, shape: Iterable[int], dtype: Any = "float") -> Node:
        """A batched target (labels) of per-example ``shape``; class indices use dtype "int64"."""
        what = f"target {name!r}"
        return self._new(
            name, kind="target", shape=_shape(shape, what), dtype=_dtype(dtype, what), batched=True
        )

    def param(
        self,
        name: str,
        shape: Iterable[int],
        init: InitSpec | None = None,
        lr_scale: float = 1.0,
    ) -> Node:
        """A trainable parameter (no batch axis); ``init`` is a name in ``pc.init.INITIALIZERS``
        or a callable ``(rng, shape) -> array``; by default glorot_uniform for rank >= 2, else zeros.
        ``lr_scale`` multiplies the optimiser's learning rate for this parameter (per-layer rates,
        e.g. muPC's for Adam: ``spec/models.md``)."""
        shp = _shape(shape, f"param {name!r}")
        if (
            isinstance(lr_scale, bool)
            or not isinstance(lr_scale, numbers.Real)
            or not (math.isfinite(lr_scale) and lr_scale > 0)
        ):
            raise GraphError(f"param {name!r}: lr_scale={lr_scale!r:.40} must be a number > 0")
        lr_scale = float(lr_scale)
        if (
            init is not None
            and not callable(init)
            and not (isinstance(init, str) and init in INITIALIZERS)
        ):
            raise GraphError(
                f"param {name!r}: unknown init {init!r}; use a callable (rng, shape) -> array or "
                f"one of {', '.join(INITIALIZERS)}"
            )
        extra = {"lr_scale": lr_scale} if lr_scale != 1.0 else {}
        return self._new(
            name, kind="param", shape=shp, dtype="float", batched=False, init=init, **extra
        )

    def const(self, value: Any, name: str | None = None) -> Node:
        """A constant: a Python number or an array-like (stored as given, cast by the backend)."""
        if isinstance(value, bool) or not (
            isinstance(value, numbers.Real) or hasattr(value, "shape")
        ):
            raise GraphError(f"a constant must be a real number or an array, got {type(value)!r}")
        import numpy as np  # the check only; the graph side imports no array library at load

        from .backends import to_numpy

        host = np.asarray(to_numpy(value))
        if host.dtype.kind not in "biuf":
            raise GraphError(f"a constant must hold real numbers, got dtype {host.dtype}")
        if not np.all(np.isfinite(host)):
            raise GraphError(
                f"constant {name or '(unnamed)'!r} holds a NaN or infinity; constants are finite"
            )
        shape = tuple(int(n) for n in host.shape)
        return self._new(
            name or self._auto("const"),
            kind="const",
            shape=shape,
            dtype="float",
            batched=False,
            value=value,
        )

    # ------------------------------------------------------------------ ops
    def _auto(self, base: str) -> str:
        k = self.nx.graph.setdefault("_counters", {}).get(base, 0)
        while f"{base}_{k}" in self.nx:
            k += 1
        self.nx.graph["_counters"][base] = k + 1
        return f"{base}_{k}"

    def _operand(self, x: Any) -> str:
        if isinstance(x, Node):
            if x.graph is not self:
                raise GraphError(
                    f"node {x.name!r} belongs to graph {x.graph.name!r}, not {self.name!r}"
                )
            return x.name
        if isinstance(x, str):
            if x not in self.nx:
                raise GraphError(f"no node named {x!r} in graph {self.name!r}")
            return x
        return self.const(x).name

    def op(self, op: str, *operands: Any, name: str | None = None, **attrs: Any) -> Node:
        """Add an op node applying ``op`` to ``operands`` (nodes, names or constants)."""
        if op not in OPS:
            raise GraphError(f"unknown op {op!r}; known ops: {', '.join(sorted(OPS))}")
        opdef = OPS[op]
        if opdef.arity is None and len(operands) == 1 and isinstance(operands[0], (list, tuple)):
            operands = tuple(operands[0])
        if opdef.arity is not None and len(operands) > opdef.arity:
            extra = operands[opdef.arity :]
            if len(extra) > len(opdef.attr_order):
                raise GraphError(f"{op} takes {opdef.arity} operand(s), got {len(operands)}")
            for key, value in zip(opdef.attr_order, extra):
                if key in attrs:
                    raise GraphError(f"{op}: attribute {key!r} given twice")
                attrs[key] = value
            operands = operands[: opdef.arity]
        if name is not None and name in self.nx:
            raise GraphError(f"a node named {name!r} already exists in graph {self.name!r}")
        names = [self._operand(x) for x in operands]
        node_name = name or self._auto(op)
        info = infer(opdef, node_name, names, [self.nx.nodes[n] for n in names], attrs)
        if opdef.elementwise:
            names = [self._pad(n, len(info["shape"])) for n in names]
        self._new(node_name, kind="op", op=op, **info)
        for pos, operand in enumerate(names):
            self.nx.add_edge(operand, node_name, pos=pos)
        return Node(self, node_name)

    def _pad(self, name: str, rank: int) -> str:
        """Reshape a batched operand of lower per-example rank so broadcasting aligns per example."""
        data = self.nx.nodes[name]
        if not data["batched"] or len(data["shape"]) >= rank:
            return name
        shape = (1,) * (rank - len(data["shape"])) + tuple(data["shape"])
        return self.op("reshape", name, shape=shape).name

    # ------------------------------------------------------------------ loss and access
    def set_loss(self, node: Node | str) -> Node:
        """Declare the per-example scalar ``node`` as the loss; the program minimises its batch mean."""
        name = self._operand(node) if isinstance(node, (Node, str)) else None
        if name is None:
            raise GraphError(f"set_loss needs a node of this graph, got {node!r}")
        data = self.nx.nodes[name]
        if tuple(data["shape"]) != () or not data["batched"]:
            raise GraphError(
                f"the loss node {name!r} must be a batched scalar per example, got per-example "
                f"shape {tuple(data['shape'])}{'' if data['batched'] else ' without a batch axis'}"
            )
        self.nx.graph["loss"] = name
        return Node(self, name)

    @property
    def loss(self) -> Node | None:
        name = self.nx.graph.get("loss")
        return Node(self, name) if name is not None else None

    def node(self, name: str) -> Node:
        """The handle of the node called ``name``."""
        if not isinstance(name, str) or name not in self.nx:
            raise GraphError(
                f"no node named {name!r:.60} in graph {self.name!r}{known_names(name, self.nx)}"
            )
        return Node(self, name)

    def _of_kind(self, kind: str) -> list[str]:
        return [n for n, k in self.nx.nodes(data="kind") if k == kind]

    @property
    def params(self) -> list[str]:
        """Parameter names in the order they were declared."""
        return self._of_kind("param")

    @property
    def inputs(self) -> list[str]:
        return self._of_kind("input")

    @property
    def targets(self) -> list[str]:
        return self._of_kind("target")

    def __repr__(self) -> str:
        return f"<Graph {self.name!r}: {self.nx.number_of_nodes()} nodes, loss={self.nx.graph.get('loss')!r}>"

    def check(self) -> None:
        """Check every node's attributes and every edge as the DSL would have set them, after
        any edit of ``g.nx``; ``GraphError`` names the node and the attribute at fault.
        ``pc.compile``, ``save_graph``, ``graph_to_json`` and ``fingerprint`` call it first, so each
        refuses what ``load_graph`` would refuse.  Linear in nodes plus edges."""
        self.checked()

    def checked(self) -> dict[str, tuple[tuple[str, ...], dict[str, Any] | None]]:
        """``check``, returning what it worked out on the way, in topological order
        (``topological_order``): each node's operands in position order and, for op nodes,
        what the op's rules infer (``infer``'s dict), so the compiler does not work them out
        twice.  Linear in nodes plus edges (n log n for the order)."""
        G = self.nx
        if not isinstance(G, nx.MultiDiGraph):
            raise GraphError(
                f"graph {self.name!r}: g.nx must be a networkx.MultiDiGraph (directed, one edge "
                f"per operand), got {type(G).__name__}"
            )
        for name, data in G.nodes(data=True):
            _check_node(name, data)
        loss = G.graph.get("loss")
        if loss is not None and (not isinstance(loss, str) or loss not in G):
            raise GraphError(
                f"graph {self.name!r}: its loss {loss!r:.60} is not a node of the graph; "
                "was the loss node removed or renamed in g.nx?"
            )
        if loss is not None and (
            tuple(G.nodes[loss]["shape"]) != () or not G.nodes[loss]["batched"]
        ):
            raise GraphError(f"graph {self.name!r}: its loss {loss!r} is no batched scalar")
        incoming: dict[str, list] = {n: [] for n in G}
        edges = list(G.edges(data="pos"))
        for src, dst, pos in edges:
            incoming[dst].append((src, dst, pos))
        order = topological_order({n: [e[0] for e in ins] for n, ins in incoming.items()})
        if order is None:
            cycle = " -> ".join(str(u) for u, _, *_ in nx.find_cycle(G))
            raise GraphError(f"graph {self.name!r} has a cycle: {cycle}")
        for src, dst, pos in edges:
            if isinstance(pos, bool) or not isinstance(pos, int):
                raise GraphError(
                    f"node {dst!r}: the edge from {src!r} must carry an int operand position "
                    f"'pos', got {pos!r:.40}"
                )
        out: dict[str, tuple[tuple[str, ...], dict[str, Any] | None]] = {}
        nodes = G.nodes
        for name in order:  # the result is in topological order, which the compiler keeps
            data = nodes[name]
            operands = _ordered_operands(name, incoming[name])
            if data["kind"] != "op":
                if operands:
                    raise GraphError(
                        f"{data['kind']} node {name!r} cannot have operands, it has {operands}"
                    )
                out[name] = (operands, None)
                continue
            # What the op's rules make of the operands must be what the node records.
            attrs = dict(data.get("attrs") or {})
            info = infer(
                OPS[data["op"]], name, list(operands), [G.nodes[o] for o in operands], attrs
            )
            for key in ("shape", "dtype", "batched"):
                recorded = tuple(data[key]) if key == "shape" else data[key]
                if recorded != info[key]:
                    raise GraphError(
                        f"node {name!r} ({data['op']}) records {key} {recorded!r} but its "
                        f"operands give {info[key]!r}; was g.nx edited?"
                    )
            out[name] = (operands, info)
        return out


_BATCHED = {"input": True, "target": True, "param": False, "const": False}


def topological_order(operands: Mapping[str, Sequence[str]]) -> list[str] | None:
    """The nodes in topological order, the smallest name (as ``str``) first among those
    ready (so the order is that of ``networkx.lexicographical_topological_sort``, whatever the
    insertion order); None when there is a cycle.  ``operands[n]`` lists n's sources (once per
    edge).  O(edges + nodes log nodes)."""
    import heapq

    children: dict[str, list[str]] = {n: [] for n in operands}
    waiting = {n: len(ops) for n, ops in operands.items()}
    for n, ops in operands.items():
        for o in ops:
            children[o].append(n)
    ready = [(str(n), n) for n, k in waiting.items() if k == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, n = heapq.heappop(ready)
        order.append(n)
        for ch in children[n]:
            waiting[ch] -= 1
            if waiting[ch] == 0:
                heapq.heappush(ready, (str(ch), ch))
    return order if len(order) == len(operands) else None


def known_names(name: object, names: Iterable[str], shown: int = 12) -> str:
    """A hint for an unknown node ``name``: the closest existing names, or the first few."""
    import difflib

    existing = [n for n in names if isinstance(n, str)]
    close = difflib.get_close_matches(str(name), existing, n=3) if isinstance(name, str) else []
    if close:
        return f"; did you mean {', '.join(map(repr, close))}?"
    more = f", ... ({len(existing)} in all)" if len(existing) > shown else ""
    return f"; its nodes: {', '.join(existing[:shown])}{more}"


def operands_of(G: nx.MultiDiGraph, name: str) -> tuple[str, ...]:
    """The operands of node ``name`` in position order (each edge's ``pos``); ``GraphError``
    when the positions are not 0, 1, ... once each."""
    return _ordered_operands(name, list(G.in_edges(name, data="pos")))


def _ordered_operands(name: str, edges: list) -> tuple[str, ...]:
    """The sources of ``edges`` (``(src, dst, pos)``, into ``name``) in position order: the one
    place operand order is worked out."""
    if len(edges) == 1 and type(edges[0][2]) is int and edges[0][2] == 0:
        return (edges[0][0],)  # the common case: one operand at position 0
    positions = sorted(
        pos if isinstance(pos, int) and not isinstance(pos, bool) else -1 for _, _, pos in edges
    )
    if positions != list(range(len(edges))):
        raise GraphError(
            f"node {name!r}: its incoming edges must carry operand positions 0..{len(edges) - 1} "
            f"once each, got {[pos for _, _, pos in edges]}"
        )
    by_pos = {pos: src for src, _, pos in edges}
    return tuple(by_pos[i] for i in range(len(edges)))


def _check_node(name: Any, data: Mapping[str, Any]) -> None:
    """One node's attributes against the DSL's contract (module docstring)."""
    if not isinstance(name, str) or not name:
        raise GraphError(f"node names must be non-empty strings, got {name!r:.60}")
    kind = data.get("kind")
    # Every membership test is guarded by a type test: an array or a list in an attribute
    # must give a GraphError, not NumPy's ambiguous-truth error or an unhashable TypeError.
    if not isinstance(kind, str) or kind not in (*LEAF_KINDS, "op"):
        raise GraphError(f"node {name!r} has kind {kind!r:.40}; expected op or {LEAF_KINDS}")
    what = f"{kind} {name!r}"
    if "shape" not in data:
        raise GraphError(f"{what}: the attribute 'shape' is missing")
    shape = data["shape"]
    if not isinstance(shape, (tuple, list)):
        raise GraphError(f"{what}: 'shape' must be a tuple of ints, got {shape!r:.60}")
    _shape(shape, what)
    dtype = data.get("dtype")
    if not isinstance(dtype, str) or dtype not in ("float", "int64"):
        raise GraphError(f"{what}: 'dtype' must be 'float' or 'int64', got {dtype!r:.40}")
    batched = data.get("batched")
    if not isinstance(batched, bool):
        raise GraphError(f"{what}: 'batched' must be True or False, got {batched!r:.40}")
    if kind in _BATCHED and batched is not _BATCHED[kind]:
        raise GraphError(f"{what}: a {kind} is {'' if _BATCHED[kind] else 'not '}batched")
    layer = data.get("layer", False)
    if not isinstance(layer, bool):
        raise GraphError(f"{what}: 'layer' must be True or False, got {layer!r:.40}")
    if layer and not (kind == "op" and data.get("batched") is True):
        raise GraphError(f"{what}: only batched op nodes can be layers (value nodes)")
    stray_attrs = data.get("attrs")
    no_attrs = stray_attrs is None or (isinstance(stray_attrs, Mapping) and not stray_attrs)
    if kind != "op" and (data.get("op") is not None or not no_attrs):
        raise GraphError(f"{what}: only op nodes carry 'op' or 'attrs'")
    if kind in ("param", "const") and dtype != "float":
        raise GraphError(f"{what}: a {kind} has dtype 'float', got {dtype!r}")
    if kind == "param":
        init = data.get("init")
        if (
            init is not None
            and not callable(init)
            and not (isinstance(init, str) and init in INITIALIZERS)
        ):
            raise GraphError(f"{what}: unknown init {init!r:.40}")
    elif kind == "const":
        if "value" not in data:
            raise GraphError(f"{what}: the attribute 'value' is missing")
        import numpy as np  # the check only; the graph side imports no array library at load

        from .backends import to_numpy

        value = data["value"]
        try:
            host = np.asarray(to_numpy(value))
        except Exception as e:  # anything NumPy cannot read is no constant
            raise GraphError(f"{what}: 'value' is not an array ({type(e).__name__})") from None
        if host.dtype.kind not in "biuf":
            raise GraphError(f"{what}: 'value' must hold real numbers, got dtype {host.dtype}")
        if tuple(host.shape) != tuple(shape):
            raise GraphError(
                f"{what}: 'value' has shape {host.shape} but 'shape' says {tuple(shape)}"
            )
        if not np.all(np.isfinite(host)):
            raise GraphError(f"{what}: 'value' holds a NaN or infinity; constants are finite")
    elif kind == "op":
        op = data.get("op")
        if not isinstance(op, str) or op not in OPS:
            raise GraphError(
                f"node {name!r}: unknown op {data.get('op')!r:.40}; known ops: {', '.join(sorted(OPS))}"
            )
        attrs = data.get("attrs", {})
        if attrs is not None and (
            not isinstance(attrs, Mapping) or not all(isinstance(k, str) for k in attrs)
        ):
            raise GraphError(f"{what}: 'attrs' must be a dict with string keys, got {attrs!r:.60}")


def dsl_function(opdef: OpDef) -> Any:
    """``pc.<op>``: a function adding an ``opdef`` node to its operands' graph."""

    def build(*operands: Any, name: str | None = None, **attrs: Any) -> Node:
        flat = operands[0] if opdef.arity is None and len(operands) == 1 else operands
        graphs = [
            x.graph
            for x in (flat if isinstance(flat, (list, tuple)) else [flat])
            if isinstance(x, Node)
        ]
        if not graphs:
            raise GraphError(f"{opdef.name}: at least one operand must be a node of a graph")
        return graphs[0].op(opdef.name, *operands, name=name, **attrs)

    build.__name__ = opdef.name
    build.__doc__ = f"Add a ``{opdef.name}`` node: {opdef.summary}.  See ``spec/ops.md``."
    return build


DSL = {name: dsl_function(opdef) for name, opdef in OPS.items()}


def layer(x: Node) -> Node:
    """Mark ``x`` as a layer's output and return it, as PCX's ``vode(...)`` does.

    Under ``value_nodes="layers"`` the predictive-coding algorithms make the marked nodes (and
    the loss's operands) their value nodes; every other op is folded into the prediction of the
    value node it feeds.  Backprop and Z-IL compute the same gradients either way.
    """
    if not isinstance(x, Node):
        raise GraphError(f"layer needs a node, got {x!r:.60}")
    if x.kind != "op" or not x.batched:
        raise GraphError(
            f"node {x.name!r}: only a batched op node can be a layer (value node), "
            f"this is a{' batched' if x.batched else 'n unbatched'} {x.kind}"
        )
    x.graph.nx.nodes[x.name]["layer"] = True
    return x


def flatten(x: Node, name: str | None = None) -> Node:
    """Reshape ``x`` to one per-example axis (a ``reshape`` node)."""
    return x.graph.op("reshape", x, name=name, shape=(-1,))


def split(
    x: Node, sizes: int | Iterable[int], axis: int = 0, name: str | None = None
) -> list[Node]:
    """Split ``x`` along per-example ``axis`` into ``slice`` nodes (ops have one output each).

    ``sizes`` is a number of equal sections, or the section lengths (summing to the axis length).
    With ``name``, the pieces are called ``{name}_0``, ``{name}_1``, ...
    """
    if not isinstance(x, Node):
        raise GraphError(f"split needs a node, got {x!r}")
    rank = len(x.shape)
    if not isinstance(axis, int) or not -rank <= axis < rank:
        raise GraphError(f"split: axis {axis!r} is out of range for per-example shape {x.shape}")
    n = x.shape[axis % rank]
    if isinstance(sizes, numbers.Integral):
        if sizes < 1 or n % sizes:
            raise GraphError(f"split: an axis of length {n} does not split into {sizes} sections")
        lengths = [n // int(sizes)] * int(sizes)
    else:
        lengths = [int(s) for s in sizes]
        if any(s < 1 for s in lengths) or sum(lengths) != n:
            raise GraphError(f"split: sizes {lengths} must be positive and sum to {n}")
    out, start = [], 0
    for i, length in enumerate(lengths):
        piece = None if name is None else f"{name}_{i}"
        out.append(x.graph.op("slice", x, name=piece, start=start, stop=start + length, axis=axis))
        start += length
    return out


def one_hot(ids: Node, classes: int, name: str | None = None) -> Node:
    """Float one-hot rows of integer ``ids``: shape ``ids.shape + (classes,)``.

    An ``embedding`` into a constant identity matrix, so the rows come in the program's dtype.
    """
    if not isinstance(ids, Node):
        raise GraphError(f"one_hot needs a node of integer ids, got {ids!r}")
    if not isinstance(classes, numbers.Integral) or isinstance(classes, bool) or classes < 1:
        raise GraphError(f"one_hot: classes must be a positive int, got {classes!r}")
    import numpy as np  # the identity matrix constant; the graph side imports no array library

    eye = ids.graph.const(np.eye(int(classes)))
    return ids.graph.op("embedding", ids, eye, name=name)
