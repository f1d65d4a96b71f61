"""Files: only regular files are read, never more than they hold; corrupted files are typed
errors; writes are atomic, follow the umask, clean up after dead writers and name the target."""

from __future__ import annotations

import errno
import io
import os
import stat
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import mlp

import pcgraph as pc
from pcgraph.files import atomic_write, open_regular

ROOT = Path(__file__).resolve().parent.parent


def _readers() -> dict:
    return {
        "load_graph": pc.load_graph,
        "load": pc.load,
        "read_idx": pc.data.read_idx,
        "read_mnist_csv": pc.data.read_mnist_csv,
    }


@pytest.mark.parametrize("reader", ["load_graph", "load", "read_idx", "read_mnist_csv"])
def test_a_device_a_fifo_a_directory_and_links_to_them_are_refused_without_reading(
    reader: str, tmp_path: Path
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # no writer: a plain open() would block forever
    (tmp_path / "zero").symlink_to("/dev/zero")
    cases = {
        "/dev/zero": "a device",
        str(tmp_path / "zero"): "a device",
        str(fifo): r"a FIFO \(named pipe\)",
        str(tmp_path): "a directory",
    }
    done: list = []

    def attempt() -> None:
        for path, kind in cases.items():
            with pytest.raises(pc.FileFormatError, match=f"{kind}, not a regular file"):
                _readers()[reader](path)
        done.append(True)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert done, f"{reader} blocked or failed on a special file"


def _checkpoint(tmp_path: Path) -> tuple[pc.Program, Path]:
    prog = pc.compile(mlp())
    return prog, pc.save(tmp_path / "ck.npz", prog.init_params(0), program=prog)


def _rewrite_member(path: Path, key: str, data: bytes, compress: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members[f"{key}.npy"] = data
    with zipfile.ZipFile(path, "w") as z:
        for name, raw in members.items():
            z.writestr(
                name, raw, compress_type=compress if name == f"{key}.npy" else zipfile.ZIP_STORED
            )


def test_an_array_header_declaring_more_than_the_file_holds_allocates_nothing(
    tmp_path: Path,
) -> None:
    _, path = _checkpoint(tmp_path)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
    )
    _rewrite_member(path, "a0", buf.getvalue() + b"\0" * 64)
    with pytest.raises(pc.FileFormatError, match=r"declares shape \(1000000, 1000000\)"):
        pc.load(path)


def test_a_compressed_member_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    prog, path = _checkpoint(tmp_path)
    buf = io.BytesIO()
    np.save(buf, np.zeros(10**6))  # 8 MB of zeros deflate to a few kB
    _rewrite_member(path, "a0", buf.getvalue(), zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 10**6
    with pytest.raises(pc.FileFormatError, match="'a0' is compressed"):
        pc.load(path, prog)


def test_a_checkpoint_for_bigger_parameters_is_refused_before_any_array_is_read(
    tmp_path: Path,
) -> None:
    big = pc.compile(mlp(sizes=(60, 50, 40, 3)))
    path = pc.save(tmp_path / "big.npz", big.init_params(0))  # no program: no fingerprint
    small = pc.compile(mlp())
    with pytest.raises(
        pc.FileFormatError, match=r"param 'W0' has shape \(60, 50\), the graph wants"
    ):
        pc.load(path, small)


def test_random_byte_flips_give_a_typed_error_or_the_saved_values(tmp_path: Path) -> None:
    prog, path = _checkpoint(tmp_path)
    original = path.read_bytes()
    saved = pc.load(path, prog).params
    rng = np.random.default_rng(0)
    outcomes = {"refused": 0, "loaded": 0}
    for trial in range(300):
        data = bytearray(original)
        for i in rng.integers(0, len(data), size=rng.integers(1, 4)):
            data[i] = int(rng.integers(0, 256))
        bad = tmp_path / f"flip{trial}.npz"
        bad.write_bytes(bytes(data))
        try:
            loaded = pc.load(bad, prog).params
        except pc.FileFormatError:
            outcomes["refused"] += 1
            continue
        outcomes["loaded"] += 1  # a flip in slack bytes the zip never reads
        assert all(np.array_equal(loaded[k], saved[k]) for k in saved)
        bad.unlink()
    assert outcomes["refused"] > 200


@pytest.mark.parametrize(
    "meta, match",
    [
        ("self", "contains itself"),
        ("deep", "nested more than 32"),
        ("huge", "bits does not fit in 64 bits"),
    ],
)
def test_checkpoint_metadata_is_bounded(meta: str, match: str, tmp_path: Path) -> None:
    prog = pc.compile(mlp())
    if meta == "self":
        value: dict = {}
        value["me"] = value
    elif meta == "deep":
        value = {}
        for _ in range(40):
            value = {"x": value}
    else:
        value = {"n": 10**400}
    with pytest.raises(pc.FileFormatError, match=match):
        pc.save(tmp_path / "ck.npz", prog.init_params(0), meta=value, program=prog)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_deeply_nested_json_constants_are_refused(tmp_path: Path) -> None:
    text = (
        '{"format": "pcgraph-graph", "version": 1, "name": "g", "loss": "c", "nodes": [{"name": "c", "kind": "const", "shape": [1], "value": '
        + "[" * 100000
        + "]" * 100000
        + "}]}"
    )
    with pytest.raises(pc.FileFormatError, match="nested too deeply|'value'"):
        pc.graph_from_json(text)


# ------------------------------------------------------------------ writing
def test_a_save_follows_the_umask_and_keeps_the_mode_of_the_file_it_replaces(
    tmp_path: Path,
) -> None:
    prog = pc.compile(mlp())
    params = prog.init_params(0)
    old = os.umask(0o027)
    try:
        fresh = pc.save(tmp_path / "fresh.npz", params, program=prog)
    finally:
        os.umask(old)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o640
    existing = tmp_path / "existing.npz"
    existing.write_bytes(b"old")
    existing.chmod(0o604)
    pc.save(existing, params, program=prog)
    assert stat.S_IMODE(existing.stat().st_mode) == 0o604


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    from pcgraph.files import _HOST

    target = tmp_path / "ck.npz"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".ck.npz.{_HOST}.{dead_pid}.abc123.tmp"
    live = tmp_path / f".ck.npz.{_HOST}.{os.getppid()}.def456.tmp"
    other_host = tmp_path / f".ck.npz.otherhost.{dead_pid}.ghi789.tmp"
    unrelated = tmp_path / ".other.npz.x.1.y.tmp"
    for p in (stale, live, other_host, unrelated):
        p.write_bytes(b"partial")
    atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new"
    assert not stale.exists()
    assert live.exists() and other_host.exists() and unrelated.exists()


def test_a_failed_write_names_the_target_and_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "ck.npz"
    target.write_bytes(b"previous")

    def full_disk(f: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as err:
        atomic_write(target, full_disk)
    assert err.value.filename == str(target) and err.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]


def test_a_special_file_is_never_replaced_by_a_save(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        atomic_write(fifo, lambda f: f.write(b"x"))
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_open_regular_opens_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"hello")
    with open_regular(path) as f:
        assert f.read() == b"hello"
