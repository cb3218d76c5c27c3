"""A wall-clock budget handed to the passes that search (`--time-limit`)."""

from __future__ import annotations

import math
import time

from snnmap.errors import SnnmapError


class Deadline:
    def __init__(self, seconds: float | None):
        check_seconds(seconds)
        self.seconds = seconds
        self.end = None if seconds is None else time.monotonic() + seconds

    def expired(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end

    def remaining(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - time.monotonic())


def check_seconds(seconds: float | None) -> None:
    """A --time-limit is a positive finite number of seconds (inf: say no limit by leaving it out)."""
    if seconds is not None and not (seconds > 0 and math.isfinite(seconds)):
        raise SnnmapError(f"--time-limit must be a positive finite number of seconds, got {seconds}")
