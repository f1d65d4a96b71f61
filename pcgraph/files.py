"""Files, safely: reading only regular files, boundedly, and writing atomically.

Every file pcgraph or its command line reads goes through ``open_regular``: a FIFO, a device
(``/dev/zero``), a directory or a link to one is refused before anything is read, and opening
never blocks.  Every file it writes goes through ``atomic_write``: a temporary file in the same
folder, fsynced and renamed over the target, so the target holds its old content or the whole
new one; the new file gets the permissions an ordinary write would give it (an existing file
keeps its mode), temporaries left by writers that died are removed, and errors name the target.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Union

from .errors import FileFormatError

PathLike = Union[str, "os.PathLike[str]"]


def as_path(path: Any, what: str) -> Path:
    """``path`` as a ``Path``: a non-empty str or an ``os.PathLike`` (not None, a number or a
    list); ``FileFormatError`` says what was given to ``what``."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise FileFormatError(
            f"{what}: the path must be a file name (str or os.PathLike), got {path!r:.60}"
        )
    return Path(path)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: Any, what: str = "open") -> IO[bytes]:
    """``path`` opened for binary reading, if it is a regular file (links followed); else
    ``FileFormatError`` naming it and what it is.  The open itself never blocks (a FIFO with
    no writer would block a plain ``open`` forever)."""
    path = as_path(path, what)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileFormatError(f"{path}: no such file") from None
    except OSError as e:
        raise FileFormatError(f"{path}: cannot open it ({e.strerror or e})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise FileFormatError(f"{path}: {_kind(mode)}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: Any, limit: int, what: str = "read") -> bytes:
    """The bytes of the regular file ``path``, refused (``FileFormatError``) beyond ``limit``
    bytes: never more than ``limit + 1`` bytes are read, whatever the file claims."""
    with open_regular(path, what) as f:
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise FileFormatError(f"{path}: cannot read it ({e.strerror or e})") from None
    if len(data) > limit:
        raise FileFormatError(f"{path}: larger than {limit} bytes")
    return data


# --------------------------------------------------------------------------- atomic writes
_HOST = socket.gethostname().replace(".", "_") or "host"


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def _remove_stale_temporaries(folder: Path, path: Path) -> None:
    """Delete temporaries of ``path`` left by writers on this host that no longer run (a save
    killed mid-way): their names carry the host and the writer's process id.  Another live
    writer's temporary is left alone."""
    prefix = _temp_prefix(path)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        parts = name[len(prefix) : -len(".tmp")].split(".")
        if len(parts) != 3 or parts[0] != _HOST or not parts[1].isdigit():
            continue  # another host's, or not one of ours
        pid = int(parts[1])
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            os.unlink(folder / name)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists (another user's) or not a pid: leave its file alone
    return True


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (/proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def _named(e: OSError, path: Path) -> OSError:
    """``e`` again, naming ``path`` (the file the user asked for) as its file name."""
    try:
        return type(e)(e.errno, e.strerror or str(e), str(path))
    except TypeError:  # a subclass with another constructor
        return OSError(e.errno, e.strerror or str(e), str(path))


def atomic_write(path: PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file so that ``path`` holds either its old content or the complete new one.

    ``write`` fills a temporary file in the same directory, which is flushed, fsynced and then
    renamed over ``path`` (``os.replace`` is atomic within a file system); the directory is
    fsynced too so the rename survives a crash.  On any error the temporary file is removed and
    an ``OSError`` names ``path``, not the temporary file.  The file gets the mode a plain write
    would give it (``0o666`` less the umask), or keeps the mode of the file it replaces.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        # Name the folder the user gave, not the temporary file mkstemp would report.
        raise FileNotFoundError(errno.ENOENT, "no such directory", str(folder))
    try:
        existing = os.stat(path)
    except OSError:
        existing = None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        raise IsADirectoryError(
            errno.EISDIR if stat.S_ISDIR(existing.st_mode) else errno.EINVAL,
            f"{_kind(existing.st_mode)}, not a regular file to replace",
            str(path),
        )
    mode = stat.S_IMODE(existing.st_mode) if existing is not None else 0o666 & ~_umask()
    _remove_stale_temporaries(folder, path)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f"{_temp_prefix(path)}{_HOST}.{os.getpid()}.", suffix=".tmp", dir=folder
        )
    except OSError as e:
        raise _named(e, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        # BaseException: a KeyboardInterrupt mid-write must not leave the temporary file behind.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise _named(e, path) from None
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory; the rename is still atomic
        return path
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return path


def atomic_write_text(path: PathLike, text: str) -> Path:
    """``atomic_write`` of UTF-8 text."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))
