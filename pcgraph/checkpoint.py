"""Checkpoints (``spec/checkpoint-format.md``): parameters, optimiser state and metadata.

An uncompressed NumPy ``.npz`` whose arrays are named ``a0``, ``a1``, ... plus ``manifest``, a
0-d unicode array holding JSON that says which array is which parameter or optimiser-state
entry, with the metadata (graph name, graph fingerprint, step, epoch, algorithm, dtype).  Names
therefore never need escaping, and nothing in the file is unpickled or evaluated.  Written
atomically (``files.atomic_write``).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from .backends import to_numpy
from .errors import FileFormatError, PCGraphError
from .files import PathLike, as_path, atomic_write, open_regular
from .graph_file import fingerprint

CHECKPOINT_FORMAT = "pcgraph-checkpoint"
VERSION = 1


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
        host = to_numpy(value)
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
