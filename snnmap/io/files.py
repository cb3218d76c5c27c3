"""Checks on the paths a user names as inputs."""

from __future__ import annotations

import os
import stat

from snnmap.errors import SnnmapError


def require_regular(path, kind: str) -> None:
    """Refuse a device, pipe or socket before opening it: its size cannot be checked first
    (/dev/zero and /dev/urandom never end, so a read grows until memory runs out) and opening a
    named pipe blocks until something writes to it. A missing file or a folder is left to the
    caller's open, which names it."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise SnnmapError(f"is not a regular file (a device, pipe or socket): give the {kind} as a file",
                          where=str(path))
