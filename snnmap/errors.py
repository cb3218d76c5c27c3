"""The one error type users see: a single line saying what and where (CLI exit status 2)."""

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(text: str) -> str:
    """Escape control characters (newlines included) that file contents may smuggle into a message."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class SnnmapError(Exception):
    """Bad input, an impossible request or a broken design rule, phrased for the user."""

    def __init__(self, message: str, *, where: str | None = None):
        self.where = where
        super().__init__(one_line(f"{where}: {message}" if where else message))


class DesignRuleError(SnnmapError):
    """A model that breaks a limit of the chip, located by layer and tile."""
