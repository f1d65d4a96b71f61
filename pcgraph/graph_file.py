"""Graph files (``spec/graph-format.md``): JSON, written atomically, read without evaluating.

Every node is stored with its kind, op, operands, shape, dtype and attributes; named
initialisers only; constant values as nested lists.  Loading checks every field and re-derives
every shape with the op table, so a file can describe only a graph the DSL could have built.
``fingerprint`` hashes the same structure, so a checkpoint can name the graph it belongs to.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .backends import to_numpy
from .errors import FileFormatError, GraphError
from .files import PathLike, as_path, atomic_write_text, read_bounded
from .graph import LEAF_KINDS, MAX_NODE_VALUES, Graph, infer, operands_of
from .init import INITIALIZERS
from .ops import OPS

GRAPH_FORMAT = "pcgraph-graph"
VERSION = 1
MAX_GRAPH_BYTES = 256 << 20  # a graph file larger than this is refused before parsing


# --------------------------------------------------------------------------- fingerprints
def json_value(value: Any) -> Any:
    """Attributes and constants as JSON values: tuples become lists, NumPy scalars numbers."""
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return json_value(np.asarray(value).tolist())
    return value


def _const(value: Any) -> Any:
    """A constant as float64 nested lists, so ``2``, ``2.0`` and ``float32(2)`` hash alike."""
    return np.asarray(to_numpy(value), dtype=np.float64).tolist()


def _structure(nodes: Mapping[str, Mapping[str, Any]], loss: str | None) -> list:
    """What a checkpoint depends on: every node's name, kind, op, operands, shape, dtype,
    canonical attributes and constant value; initialisers and the graph's name are left out."""
    out: list = [["loss", loss]]
    for name in sorted(nodes):
        d = nodes[name]
        out.append(
            [
                name,
                d["kind"],
                d.get("op"),
                list(d["operands"]),
                list(d["shape"]),
                d["dtype"],
                bool(d["batched"]),
                json_value(d.get("attrs") or {}),
                _const(d.get("value")) if d["kind"] == "const" else None,
            ]
        )
    return out


def fingerprint(obj: Any) -> str:
    """A SHA-256 hex digest of a graph's structure (``Graph``, ``Program`` or compiled graph).

    Equal for a graph, its compiled program and its JSON round trip; it changes when any node,
    edge, shape, attribute or constant changes, but not with the graph's name or initialisers.
    """
    compiled = getattr(obj, "compiled", obj)
    if isinstance(obj, Graph):
        obj.check()  # refuses what load_graph would refuse, naming the node
        G = obj.nx
        nodes = {}
        for n, d in G.nodes(data=True):
            nodes[n] = {**d, "operands": list(operands_of(G, n))}
        loss = G.graph.get("loss")
    elif hasattr(compiled, "nodes") and hasattr(compiled, "loss"):
        nodes = {
            n: {
                "kind": s.kind,
                "op": s.op,
                "operands": s.operands,
                "shape": s.shape,
                "dtype": s.dtype,
                "batched": s.batched,
                "attrs": s.attrs,
                "value": s.value,
            }
            for n, s in compiled.nodes.items()
        }
        loss = compiled.loss
    else:
        raise GraphError(f"fingerprint() needs a Graph or a Program, got {type(obj).__name__}")
    text = json.dumps(_structure(nodes, loss), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- graph files
_LEAF_FIELDS = {
    "input": {"name", "kind", "shape", "dtype"},
    "target": {"name", "kind", "shape", "dtype"},
    "param": {"name", "kind", "shape", "init", "dtype", "lr_scale"},
    "const": {"name", "kind", "shape", "value", "dtype"},
    "op": {"name", "kind", "op", "operands", "attrs", "shape", "dtype", "layer"},
}
_TOP_FIELDS = {"format", "version", "name", "loss", "nodes"}


def graph_to_dict(graph: Graph) -> dict[str, Any]:
    """The JSON data of ``graph`` (see ``spec/graph-format.md``); nodes in the compiler's order.

    Raises ``GraphError`` for what a file cannot hold: a callable initialiser (no code is ever
    saved) or a constant that is not finite.
    """
    if not isinstance(graph, Graph):
        raise GraphError(f"graph_to_dict needs a pcgraph.Graph, got {type(graph).__name__}")
    checked = graph.checked()  # refuses a cycle, naming it
    G = graph.nx
    nodes = []
    for name in checked:  # topological order
        d = G.nodes[name]
        kind = d.get("kind")
        entry: dict[str, Any] = {"name": name, "kind": kind, "shape": list(d["shape"])}
        if kind in ("input", "target"):
            entry["dtype"] = d["dtype"]
        elif kind == "param":
            init = d.get("init")
            if callable(init):
                raise GraphError(
                    f"param {name!r}: its init is a Python callable, which a graph file cannot "
                    f"hold (files never carry code); use a named initialiser "
                    f"({', '.join(INITIALIZERS)}) or set it again after loading"
                )
            entry["init"] = init
            if d.get("lr_scale", 1.0) != 1.0:
                entry["lr_scale"] = d["lr_scale"]
        elif kind == "const":
            value = np.asarray(to_numpy(d["value"]), dtype=np.float64)
            if not np.all(np.isfinite(value)):
                raise GraphError(f"const {name!r} holds a NaN or infinity; JSON cannot hold it")
            entry["value"] = value.tolist()
        elif kind == "op":
            entry = {
                "name": name,
                "kind": kind,
                "op": d["op"],
                "operands": list(operands_of(G, name)),
                "attrs": json_value(d.get("attrs") or {}),
                "shape": list(d["shape"]),
            }
            if d.get("layer"):
                entry["layer"] = True
        else:
            raise GraphError(f"node {name!r} has kind {kind!r}; it cannot be saved")
        nodes.append(entry)
    return {
        "format": GRAPH_FORMAT,
        "version": VERSION,
        "name": graph.name,
        "loss": G.graph.get("loss"),
        "nodes": nodes,
    }


def graph_to_json(graph: Graph) -> str:
    """``graph`` as JSON text: a header, then one node per line (diffs stay readable)."""
    data = graph_to_dict(graph)
    dump = lambda v: json.dumps(v, allow_nan=False, ensure_ascii=False)
    head = ", ".join(f"{dump(k)}: {dump(v)}" for k, v in data.items() if k != "nodes")
    body = ",\n".join(f"  {dump(n)}" for n in data["nodes"])
    return f'{{{head}, "nodes": [\n{body}\n]}}\n'


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not allowed (numbers must be finite)")


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


class _Reader:
    """Validates graph JSON data field by field; every error names the source and the node."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, msg: str, node: str | None = None) -> FileFormatError:
        where = f"node {node!r}: " if node is not None else ""
        return FileFormatError(f"{self.source}: {where}{msg}")

    def shape(self, value: Any, node: str) -> tuple[int, ...]:
        ok = isinstance(value, list) and all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value
        )
        if not ok:
            raise self.fail(f"'shape' must be a list of positive ints, got {value!r:.80}", node)
        if math.prod(value) > MAX_NODE_VALUES:
            raise self.fail(f"shape {value} declares more than {MAX_NODE_VALUES} values", node)
        return tuple(value)

    def attr(self, value: Any, node: str, depth: int = 0) -> Any:
        if depth > 8:
            raise self.fail("attribute values are nested too deeply", node)
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return tuple(self.attr(v, node, depth + 1) for v in value)
        raise self.fail(
            f"attribute values must be numbers, text, null or lists, got {type(value).__name__}",
            node,
        )

    def const_value(self, value: Any, shape: tuple, node: str) -> Any:
        def numeric(v: Any) -> bool:
            if isinstance(v, list):
                return all(numeric(u) for u in v)
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        if not numeric(value):
            raise self.fail("'value' must be a number or nested lists of numbers", node)
        try:
            array = np.asarray(value, dtype=np.float64)
        except ValueError:
            raise self.fail("'value' is a ragged nested list", node) from None
        if not np.all(np.isfinite(array)):  # 1e999 parses as infinity
            raise self.fail("'value' holds a number too large to be finite", node)
        if array.shape != shape:
            raise self.fail(f"'value' has shape {array.shape} but 'shape' says {shape}", node)
        return float(array) if array.shape == () else array

    def graph(self, data: Any) -> Graph:
        if not isinstance(data, dict):
            raise self.fail("a graph file must hold a JSON object")
        if data.get("format") != GRAPH_FORMAT:
            raise self.fail(f"not a pcgraph graph file ('format' must be {GRAPH_FORMAT!r})")
        version = data.get("version")
        if version != VERSION or isinstance(version, bool):
            raise self.fail(f"graph format version {version!r}; this pcgraph reads {VERSION}")
        unknown = set(data) - _TOP_FIELDS
        if unknown:
            raise self.fail(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(_TOP_FIELDS)}")
        name, loss, nodes = data.get("name"), data.get("loss"), data.get("nodes")
        if not isinstance(name, str) or not name:
            raise self.fail("'name' must be a non-empty string")
        if not isinstance(nodes, list):
            raise self.fail("'nodes' must be a list")
        g = Graph(name)
        for i, entry in enumerate(nodes):
            self.node(g, i, entry)
        if not isinstance(loss, str) or loss not in g.nx:
            raise self.fail(f"'loss' must name one of the nodes, got {loss!r:.80}")
        try:
            g.set_loss(loss)
        except GraphError as e:
            raise self.fail(str(e), loss) from None
        return g

    def node(self, g: Graph, i: int, entry: Any) -> None:
        if not isinstance(entry, dict):
            raise self.fail(f"node entry {i} is not a JSON object")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail(f"node entry {i} has no valid 'name' (a non-empty string)")
        if name in g.nx:
            raise self.fail("the name is used twice", name)
        kind = entry.get("kind")
        if kind not in _LEAF_FIELDS:
            raise self.fail(
                f"unknown kind {kind!r:.40}; expected op or {', '.join(LEAF_KINDS)}", name
            )
        unknown = set(entry) - _LEAF_FIELDS[kind]
        if unknown:
            raise self.fail(
                f"unknown field(s) {sorted(unknown)} for a node of kind {kind}; "
                f"allowed: {sorted(_LEAF_FIELDS[kind])}",
                name,
            )
        if "shape" not in entry and kind != "op":
            raise self.fail("'shape' is missing", name)
        shape = self.shape(entry["shape"], name) if "shape" in entry else None
        if kind in ("input", "target"):
            dtype = entry.get("dtype", "float")
            if dtype not in ("float", "int64"):
                raise self.fail(f"'dtype' must be 'float' or 'int64', got {dtype!r:.40}", name)
            g.nx.add_node(name, kind=kind, shape=shape, dtype=dtype, batched=True)
            return
        if kind in ("param", "const") and entry.get("dtype", "float") != "float":
            raise self.fail(f"a {kind} has dtype 'float', got {entry.get('dtype')!r:.40}", name)
        if kind == "param":
            init = entry.get("init")
            if init is not None and (not isinstance(init, str) or init not in INITIALIZERS):
                raise self.fail(
                    f"unknown init {init!r:.60}; files may name only {', '.join(INITIALIZERS)}",
                    name,
                )
            lr_scale = entry.get("lr_scale", 1.0)
            if (
                isinstance(lr_scale, bool)
                or not isinstance(lr_scale, (int, float))
                or not (math.isfinite(lr_scale) and lr_scale > 0)
            ):
                raise self.fail(f"'lr_scale' must be a number > 0, got {lr_scale!r:.40}", name)
            extra = {"lr_scale": float(lr_scale)} if lr_scale != 1.0 else {}
            g.nx.add_node(
                name, kind="param", shape=shape, dtype="float", batched=False, init=init, **extra
            )
            return
        if kind == "const":
            if "value" not in entry:
                raise self.fail("'value' is missing", name)
            value = self.const_value(entry["value"], shape, name)  # type: ignore[arg-type]
            g.nx.add_node(
                name, kind="const", shape=shape, dtype="float", batched=False, value=value
            )
            return
        self.op_node(g, name, entry, shape)

    def op_node(self, g: Graph, name: str, entry: dict, shape: tuple | None) -> None:
        op = entry.get("op")
        if not isinstance(op, str) or op not in OPS:
            raise self.fail(f"unknown op {op!r:.60}; known ops: {', '.join(sorted(OPS))}", name)
        operands = entry.get("operands")
        if not isinstance(operands, list) or not all(isinstance(o, str) for o in operands):
            raise self.fail("'operands' must be a list of node names", name)
        for o in operands:
            if o not in g.nx:
                # Operands must come earlier in the file: this also rules out cycles.
                raise self.fail(f"operand {o!r:.60} is not a node listed before it", name)
        attrs = entry.get("attrs", {})
        if not isinstance(attrs, dict):
            raise self.fail("'attrs' must be a JSON object", name)
        attrs = {k: self.attr(v, name) for k, v in attrs.items()}
        try:
            info = infer(OPS[op], name, operands, [g.nx.nodes[o] for o in operands], attrs)
        except GraphError as e:
            raise self.fail(str(e)) from None
        if shape is not None and tuple(info["shape"]) != shape:
            raise self.fail(
                f"'shape' says {list(shape)} but {op} of its operands gives {list(info['shape'])}",
                name,
            )
        if "dtype" in entry and entry["dtype"] != info["dtype"]:
            raise self.fail(
                f"'dtype' says {entry['dtype']!r:.40} but {op} gives {info['dtype']!r}", name
            )
        layer = entry.get("layer", False)
        if not isinstance(layer, bool):
            raise self.fail(f"'layer' must be true or false, got {layer!r:.40}", name)
        if layer and not info["batched"]:
            raise self.fail("only batched op nodes can be layers (value nodes)", name)
        g.nx.add_node(name, kind="op", op=op, **info, **({"layer": True} if layer else {}))
        for pos, o in enumerate(operands):
            g.nx.add_edge(o, name, pos=pos)


def graph_from_json(text: str | bytes, source: str = "<graph JSON>") -> Graph:
    """The ``Graph`` a JSON text describes; ``FileFormatError`` names ``source``, the node and
    the fault for malformed or hostile content (nothing in it is ever evaluated or imported)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise FileFormatError(f"{source}: not UTF-8 text ({e})") from None
    if not isinstance(text, str):
        raise FileFormatError(f"{source}: graph JSON must be text, got {type(text).__name__}")
    if len(text) > MAX_GRAPH_BYTES:
        raise FileFormatError(f"{source}: larger than {MAX_GRAPH_BYTES} bytes")
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise FileFormatError(f"{source}: JSON nested too deeply") from None
    except ValueError as e:
        raise FileFormatError(f"{source}: not valid JSON ({e})") from None
    return _Reader(source).graph(data)


def save_graph(path: PathLike, graph: Graph) -> Path:
    """Write ``graph`` as a JSON graph file, atomically."""
    return atomic_write_text(path, graph_to_json(graph))


def load_graph(path: PathLike) -> Graph:
    """Read a JSON graph file; ``FileFormatError`` names the file, the node and the fault."""
    path = as_path(path, "load_graph")
    raw = read_bounded(path, MAX_GRAPH_BYTES, "load_graph")
    return graph_from_json(raw, source=str(path))
