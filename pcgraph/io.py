"""Files: checkpoints (``.npz``) and graph files (JSON), written atomically, read without pickle.

Checkpoint layout (``spec/checkpoint-format.md``): an uncompressed NumPy ``.npz`` whose arrays are
named ``a0``, ``a1``, ... plus ``manifest``, a 0-d unicode array holding JSON that says which
array is which parameter or optimiser-state entry, with the metadata (graph name, graph
fingerprint, step, epoch, algorithm, dtype).  Names therefore never need escaping, and nothing in
the file is unpickled or evaluated.

Graph files (``spec/graph-format.md``) are JSON: every node with its kind, op, operands, shape,
dtype and attributes; named initialisers only; constant values as nested lists.  Loading checks
every field and re-derives every shape with the op table, so a file can describe only a graph
the DSL could have built.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Union

import numpy as np

from .errors import FileFormatError, GraphError, PCGraphError
from .files import as_path, atomic_write, atomic_write_text, open_regular, read_bounded
from .graph import LEAF_KINDS, MAX_NODE_VALUES, Graph, infer, operands_of
from .init import INITIALIZERS
from .ops import OPS

PathLike = Union[str, "os.PathLike[str]"]

CHECKPOINT_FORMAT = "pcgraph-checkpoint"
GRAPH_FORMAT = "pcgraph-graph"
VERSION = 1
MAX_GRAPH_BYTES = 256 << 20  # a graph file larger than this is refused before parsing


# --------------------------------------------------------------------------- fingerprints
def _plain(value: Any) -> Any:
    """Attributes and constants as JSON values: tuples become lists, NumPy scalars numbers."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return _plain(np.asarray(value).tolist())
    return value


def _const(value: Any) -> Any:
    """A constant as float64 nested lists, so ``2``, ``2.0`` and ``float32(2)`` hash alike."""
    return np.asarray(_host(value), dtype=np.float64).tolist()


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
                _plain(d.get("attrs") or {}),
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


# --------------------------------------------------------------------------- checkpoints
@dataclass
class Checkpoint:
    """What ``load`` returns: parameters, optimiser state (or None) and metadata."""

    params: dict[str, Any]
    optimizer_state: dict[str, Any] | None
    meta: dict[str, Any]
    path: Path
    graph: str | None = None
    fingerprint: str | None = None
    dtype: str | None = None


def _host(value: Any) -> np.ndarray:
    if hasattr(value, "get") and type(value).__module__.startswith("cupy"):
        value = value.get()
    return np.asarray(value)


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, np.generic)


MAX_DEPTH = 32  # nesting of lists and dicts in checkpoint metadata and optimiser state
MAX_INT = 2**63 - 1  # integers in checkpoint metadata: 64-bit, as other JSON readers take them


def _json_safe(value: Any, where: str, depth: int = 0) -> Any:
    """``value`` checked to be plain JSON data (dicts with string keys, lists, numbers, text),
    nested at most ``MAX_DEPTH`` deep (a structure that contains itself never ends)."""
    if depth > MAX_DEPTH:
        raise FileFormatError(
            f"{where}: nested more than {MAX_DEPTH} levels deep (or it contains itself)"
        )
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, numbers.Integral):
        if not -MAX_INT - 1 <= value <= MAX_INT:
            raise FileFormatError(
                f"{where}: an integer of {int(value).bit_length()} bits does not fit in 64 bits"
            )
        return int(value)
    if isinstance(value, numbers.Real):
        try:
            return float(value)
        except OverflowError:
            raise FileFormatError(f"{where}: {value!r:.40} is too large for a float") from None
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, where, depth + 1) for v in value]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise FileFormatError(f"{where}: dictionary keys must be strings")
        return {k: _json_safe(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    raise FileFormatError(
        f"{where}: {type(value).__name__} cannot be stored in a checkpoint (only arrays, "
        "numbers, text, lists and dicts)"
    )


def save(
    path: PathLike,
    params: Mapping[str, Any],
    optimizer_state: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    program: Any = None,
) -> Path:
    """Save ``params`` (name -> array), an optimiser's ``state_dict()`` and ``meta`` (JSON data:
    step, epoch, algorithm, ...) to the ``.npz`` file ``path``, atomically.

    With ``program``, the parameters are checked against it and the graph's name, fingerprint and
    dtype are recorded so that ``load`` can refuse the checkpoint for another graph.
    """
    path = Path(path)
    if program is not None:
        program.check_params(params)  # FeedError names a missing, extra or misshapen entry
    arrays: dict[str, np.ndarray] = {}

    def store(value: Any, where: str) -> dict[str, Any]:
        host = _host(value)
        if host.dtype.kind not in "biuf":
            raise FileFormatError(f"{where}: arrays of dtype {host.dtype} cannot be saved")
        key = f"a{len(arrays)}"
        arrays[key] = host
        return {"__array__": key, "shape": list(host.shape), "dtype": host.dtype.str}

    param_entries = []
    for name, value in params.items():
        if not isinstance(name, str):
            raise FileFormatError(f"parameter names must be strings, got {name!r}")
        param_entries.append({"name": name, **store(value, f"param {name!r}")})

    def tree(value: Any, where: str, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise FileFormatError(
                f"{where}: nested more than {MAX_DEPTH} levels deep (or it contains itself)"
            )
        if _is_array(value):
            return store(value, where)
        if isinstance(value, Mapping):
            if not all(isinstance(k, str) for k in value):
                raise FileFormatError(f"{where}: dictionary keys must be strings")
            if "__array__" in value:
                raise FileFormatError(f"{where}: the key '__array__' is reserved")
            return {k: tree(v, f"{where}[{k!r}]", depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [tree(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
        return _json_safe(value, where, depth)

    manifest = {
        "format": CHECKPOINT_FORMAT,
        "version": VERSION,
        "graph": getattr(program, "name", None),
        "fingerprint": fingerprint(program) if program is not None else None,
        "dtype": getattr(program, "dtype", None),
        "params": param_entries,
        "optimizer": None if optimizer_state is None else tree(optimizer_state, "optimizer"),
        "meta": _json_safe(dict(meta or {}), "meta"),
    }
    text = json.dumps(manifest, allow_nan=True)

    def write(f: IO[bytes]) -> None:
        np.savez(f, manifest=np.array(text), **arrays)

    return atomic_write(path, write)


def _fail(path: Path, msg: str) -> FileFormatError:
    return FileFormatError(f"{path}: {msg}")


def _read_manifest(path: Path, archive: Any) -> dict:
    if "manifest" not in archive.files:
        raise _fail(path, "not a pcgraph checkpoint (no manifest in the archive)")
    raw = archive["manifest"]
    if raw.shape != () or raw.dtype.kind != "U":
        raise _fail(path, "its manifest is not a text entry")
    try:
        manifest = json.loads(str(raw))
    except (ValueError, RecursionError) as e:
        raise _fail(path, f"its manifest is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != CHECKPOINT_FORMAT:
        raise _fail(path, "not a pcgraph checkpoint (wrong format tag in the manifest)")
    if manifest.get("version") != VERSION or isinstance(manifest.get("version"), bool):
        raise _fail(
            path,
            f"checkpoint format version {manifest.get('version')!r}; this pcgraph reads {VERSION}",
        )
    for key, kind in (("params", list), ("meta", dict)):
        if not isinstance(manifest.get(key), kind):
            raise _fail(path, f"the manifest's {key!r} entry is missing or malformed")
    return manifest


def load(path: PathLike, program: Any = None) -> Checkpoint:
    """Read a checkpoint written by ``save``, without pickle.

    With ``program``, the checkpoint must be for the same graph (fingerprint) and hold exactly
    its parameters with their shapes; the parameters and optimiser arrays come back as backend
    arrays of the program's dtype.  Without it they are NumPy arrays as stored.  A missing,
    truncated, corrupted or foreign file raises ``FileFormatError`` naming the file and fault.
    """
    path = as_path(path, "load")
    # Ours to close (np.load leaks its own on a truncated zip); a FIFO or device is refused.
    with open_regular(path, "load") as file:
        size = os.fstat(file.fileno()).st_size
        try:
            archive = np.load(file, allow_pickle=False)
        except Exception as e:  # any failure to parse a foreign or damaged file
            raise _fail(
                path, f"not a readable .npz checkpoint (truncated or corrupted? {e})"
            ) from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise _fail(path, "holds a single array, not a pcgraph checkpoint archive")
        try:
            with archive:
                return _load_archive(path, archive, program, size)
        except PCGraphError:
            raise
        except Exception as e:
            # Reading a member checks its CRC-32, and the zip and .npy layers raise many kinds of
            # exception on damaged data (an unknown compression method, an 'encrypted' flag, a
            # header that does not tokenize): each is a file that cannot be read.
            raise _fail(path, f"unreadable or corrupted ({type(e).__name__}: {e})") from None


def _member(path: Path, archive: Any, key: str, size: int) -> np.ndarray:
    """One array of the archive, read only after its header proves it fits: stored (not
    compressed, as ``save`` writes it), numeric, and exactly as long as its header says, so no
    claim in the file makes ``load`` allocate more than the file holds."""
    info = archive.zip.getinfo(f"{key}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise _fail(path, f"array {key!r} is compressed; pcgraph checkpoints store arrays as is")
    if info.file_size > size:
        raise _fail(path, f"array {key!r} claims {info.file_size} bytes, more than the file has")
    with archive.zip.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise _fail(path, f"array {key!r}: .npy format version {version} is not read")
        if dtype.hasobject or dtype.kind not in "biuf":
            raise _fail(path, f"array {key!r} of dtype {dtype} is not numeric")
        nbytes = math.prod(shape) * dtype.itemsize
        if f.tell() + nbytes != info.file_size:
            raise _fail(
                path,
                f"array {key!r}: its header declares shape {shape}, which its size does not hold",
            )
        data = bytearray(f.read(nbytes))  # writable: parameters are updated in place
    order = "F" if fortran else "C"
    return np.frombuffer(data, dtype=dtype).reshape(shape, order=order)


def _load_archive(path: Path, archive: Any, program: Any, size: int) -> Checkpoint:
    manifest = _read_manifest(path, archive)
    if program is not None:
        _check_graph(path, manifest, program)
    used: set[str] = set()
    expected = (
        {} if program is None else {p: program.compiled.nodes[p].shape for p in program.params}
    )

    def fetch(entry: Any, where: str, shape: tuple | None = None) -> np.ndarray:
        if not isinstance(entry, dict) or not isinstance(entry.get("__array__"), str):
            raise _fail(path, f"{where}: malformed array entry in the manifest")
        key = entry["__array__"]
        if key not in archive.files or key == "manifest":
            raise _fail(path, f"{where}: array {key!r} is missing from the archive")
        if shape is not None and entry.get("shape") != list(shape):
            declared = entry.get("shape")
            declared = tuple(declared) if isinstance(declared, list) else declared
            raise _fail(path, f"{where} has shape {declared!r:.60}, the graph wants {shape}")
        value = _member(path, archive, key, size)
        if list(value.shape) != entry.get("shape"):
            raise _fail(
                path,
                f"{where}: array has shape {value.shape} but the manifest says {entry.get('shape')}",
            )
        used.add(key)
        return value

    params: dict[str, np.ndarray] = {}
    for i, entry in enumerate(manifest["params"]):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or name in params:
            raise _fail(path, f"parameter entry {i} has a missing or repeated name")
        value = fetch(entry, f"param {name!r}", expected.get(name))
        if value.dtype.kind != "f":
            raise _fail(path, f"param {name!r} has dtype {value.dtype}, not floating point")
        params[name] = value

    def tree(value: Any, where: str, depth: int = 0) -> Any:
        if depth > 64:
            raise _fail(path, f"{where}: optimiser state nested too deeply")
        if isinstance(value, dict):
            if "__array__" in value:
                return fetch(value, where)
            return {k: tree(v, f"{where}[{k!r}]", depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [tree(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
        return value

    opt = manifest.get("optimizer")
    opt_state = None if opt is None else tree(opt, "optimizer state")
    if opt_state is not None and not isinstance(opt_state, dict):
        raise _fail(path, "the optimiser state is not a dictionary")
    extra = set(archive.files) - used - {"manifest"}
    if extra:
        raise _fail(path, f"holds array(s) the manifest does not list: {', '.join(sorted(extra))}")

    ckpt = Checkpoint(
        params,
        opt_state,
        manifest["meta"],
        path,
        graph=manifest.get("graph"),
        fingerprint=manifest.get("fingerprint"),
        dtype=manifest.get("dtype"),
    )
    if program is not None:
        _bind(ckpt, program)
    return ckpt


def _check_graph(path: Path, manifest: dict, program: Any) -> None:
    """Refuse a checkpoint written for another graph, before reading any array."""
    theirs, mine = manifest.get("fingerprint"), fingerprint(program)
    if theirs is not None and theirs != mine:
        raise _fail(
            path,
            f"checkpoint is for graph {manifest.get('graph')!r:.60} (fingerprint "
            f"{str(theirs)[:12]}), not for graph {program.name!r} (fingerprint {mine[:12]}): "
            "their structures differ",
        )


def _bind(ckpt: Checkpoint, program: Any) -> None:
    """Check ``ckpt`` against ``program`` and move its arrays to the program's backend."""
    path = ckpt.path
    missing = [p for p in program.params if p not in ckpt.params]
    extra = [p for p in ckpt.params if p not in program.params]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks param(s) {', '.join(map(repr, missing))}")
        if extra:
            parts.append(f"has param(s) {', '.join(map(repr, extra))} the graph does not")
        raise _fail(path, f"checkpoint {' and '.join(parts)} (graph {program.name!r})")
    for name in program.params:
        want = program.compiled.nodes[name].shape
        if ckpt.params[name].shape != want:
            raise _fail(
                path, f"param {name!r} has shape {ckpt.params[name].shape}, the graph wants {want}"
            )
    convert = lambda a: program.backend.asarray(a, program.dtype) if a.dtype.kind == "f" else a
    ckpt.params = {name: convert(ckpt.params[name]) for name in program.params}

    def move(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return convert(value)
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        return value

    if ckpt.optimizer_state is not None:
        state = ckpt.optimizer_state.get("state")
        for key, value in state.items() if isinstance(state, dict) else ():
            if not isinstance(value, np.ndarray):
                continue  # the step count; optimisers check their own entries on loading
            param = key.partition("/")[2]
            if param not in program.params:
                raise _fail(path, f"optimiser state {key!r}: the graph has no param {param!r}")
            want = program.compiled.nodes[param].shape
            if value.shape != want:
                raise _fail(
                    path,
                    f"optimiser state {key!r} has shape {value.shape}; param {param!r} has {want}",
                )
        ckpt.optimizer_state = move(ckpt.optimizer_state)


# --------------------------------------------------------------------------- graph files
_LEAF_FIELDS = {
    "input": {"name", "kind", "shape", "dtype"},
    "target": {"name", "kind", "shape", "dtype"},
    "param": {"name", "kind", "shape", "init", "dtype"},
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
        elif kind == "const":
            value = np.asarray(_host(d["value"]), dtype=np.float64)
            if not np.all(np.isfinite(value)):
                raise GraphError(f"const {name!r} holds a NaN or infinity; JSON cannot hold it")
            entry["value"] = value.tolist()
        elif kind == "op":
            entry = {
                "name": name,
                "kind": kind,
                "op": d["op"],
                "operands": list(operands_of(G, name)),
                "attrs": _plain(d.get("attrs") or {}),
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
            g.nx.add_node(name, kind="param", shape=shape, dtype="float", batched=False, init=init)
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


__all__ = [
    "atomic_write",
    "atomic_write_text",
    "fingerprint",
    "save",
    "load",
    "Checkpoint",
    "graph_to_dict",
    "graph_to_json",
    "graph_from_json",
    "save_graph",
    "load_graph",
]
