"""Errors a user of tierscan can cause, each rendered by the CLI as one line.

Every error names what was wrong (a file, a field path, an address or an offset) and what was
expected. The CLI prints ``str(err)`` and exits; a traceback never reaches a user.
"""


class TierscanError(Exception):
    """Base class: a user-facing error with a one-line message."""

    exit_code = 1


class ConfigError(TierscanError, ValueError):
    """Bad configuration: a TOML file, a field, a unit or a shape.

    ``where`` is the file (or "<preset NAME>") and ``field`` a dotted key path.
    """

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, field: str | None = None):
        self.where, self.field, self.message = where, field, message
        prefix = ": ".join(p for p in (where, field) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class SegmentationFault(TierscanError):
    """An access outside any VMA, or one the VMA's protection forbids (SIGSEGV semantics)."""

    def __init__(self, address: int, reason: str = "no VMA maps this address"):
        self.address = int(address)
        super().__init__(f"segmentation fault at address {self.address:#x}: {reason}")


class OutOfMemory(TierscanError):
    """No node allowed by the memory policy could satisfy an allocation."""


class InvariantError(TierscanError, AssertionError):
    """``Kernel.check()`` found a broken model invariant (a bug in tierscan, not in the input)."""
