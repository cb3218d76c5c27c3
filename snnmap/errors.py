"""The one error type users see: a single line saying what and where (CLI exit status 2)."""


class SnnmapError(Exception):
    """Bad input, an impossible request or a broken design rule, phrased for the user."""

    def __init__(self, message: str, *, where: str | None = None):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class DesignRuleError(SnnmapError):
    """A model that breaks a limit of the chip, located by layer and tile."""
