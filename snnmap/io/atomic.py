"""Outputs appear whole or not at all: temp file in the same folder, fsync, rename."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from snnmap.errors import SnnmapError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    where = str(path)
    try:
        mode = os.stat(path).st_mode  # follows links
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        return _write_through(path, data)  # a rename would replace the device node or pipe itself
    # through a symlink: replace the file it names, not the link
    path = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise SnnmapError(f"cannot write: {e.strerror or e}", where=where) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; an output gets the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise SnnmapError(f"cannot write: {e.strerror or e}", where=where) from None
    except BaseException:
        _remove(tmp)
        raise


def _write_through(path, data: bytes) -> None:
    """A device or named pipe (/dev/null, /dev/stdout, a FIFO): nothing to make atomic. Opened
    non-blocking so that a pipe nobody reads is an error, not a hang."""
    import fcntl  # POSIX only

    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        why = "a named pipe that nothing reads" if e.errno == errno.ENXIO else e.strerror or e
        raise SnnmapError(f"cannot write: {why}", where=str(path)) from None
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as e:
        raise SnnmapError(f"cannot write: {e.strerror or e}", where=str(path)) from None


def _remove(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
