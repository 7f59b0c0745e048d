"""Sizes and durations as users write them in TOML and on the command line.

Sizes use binary IEC units only (B, KiB, MiB, GiB, TiB). SI and bare-letter units ("GB", "MB",
"G") are rejected rather than guessed: numactl and the kernel print "MB" meaning MiB, while disk
vendors mean 10**6, and a simulator whose capacities are off by 7% would silently mis-place the
tier boundary. See docs/machine.md.
"""

from __future__ import annotations

import re
from fractions import Fraction

from tierscan.errors import ConfigError

_SIZE_UNITS = {"b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50}
# Units people write that have two meanings; each gets a message saying what to write instead.
_AMBIGUOUS_SIZE_UNITS = {
    "k", "m", "g", "t", "p", "kb", "mb", "gb", "tb", "pb", "ki", "mi", "gi", "ti",
}
_DURATION_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9}

# A non-negative decimal number, optional whitespace, an optional unit made of letters (and µ).
# A leading sign is matched so that "-4KiB" can be rejected as negative rather than as gibberish.
_QUANTITY = re.compile(r"^\s*([+-]?)(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-zµ]*)\s*$")


def describe_value(v) -> str:
    """A value with its TOML type name, for "expected X, got Y" messages: "string '8'"."""
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
             dict: "table"}
    t = names.get(type(v), type(v).__name__)
    return t if isinstance(v, (list, dict)) else f"{t} {v!r}"


def _split(value: str, what: str, example: str, where, field) -> tuple[str, Fraction, str]:
    m = _QUANTITY.match(value)
    if not m:
        raise ConfigError(f"expected {what} like {example!r}, got {value!r}", where=where, field=field)
    sign, number, unit = m.groups()
    return sign, Fraction(number), unit


def _check_magnitude(n: int, value, allow_zero: bool, where, field) -> int:
    if n < 0:
        raise ConfigError(f"must not be negative, got {value!r}", where=where, field=field)
    if n == 0 and not allow_zero:
        raise ConfigError(f"must be greater than zero, got {value!r}", where=where, field=field)
    return n


def parse_size(value, *, where: str | None = None, field: str | None = None,
               allow_zero: bool = False) -> int:
    """Return ``value`` in bytes.

    ``value`` is an int (bytes) or a string such as "4KiB", "8 GiB", "1.5GiB", "512B" or "4096"
    (bytes). Units are case-insensitive; fractions must come to a whole number of bytes. Zero is
    rejected unless ``allow_zero`` (a capacity of zero is always a mistake; a threshold may not be).
    """
    # bool is an int subclass; `capacity = true` is a typo, not one byte.
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(
            f"expected a size such as '8GiB' or an integer number of bytes, "
            f"got {describe_value(value)}", where=where, field=field)
    if isinstance(value, int):
        return _check_magnitude(value, value, allow_zero, where, field)

    sign, number, unit = _split(value, "a size", "8GiB", where, field)
    key = unit.lower()
    if key in _AMBIGUOUS_SIZE_UNITS:
        raise ConfigError(
            f"ambiguous unit {unit!r} in {value!r}: write GiB (2**30 bytes) or MiB; "
            f"numactl's \"MB\" means MiB", where=where, field=field)
    if key == "":
        mult = 1  # a bare number is bytes, as an int would be
    elif key in _SIZE_UNITS:
        mult = _SIZE_UNITS[key]
    else:
        raise ConfigError(
            f"unknown size unit {unit!r} in {value!r} (expected one of: B, KiB, MiB, GiB, TiB)",
            where=where, field=field)
    nbytes = number * mult
    if nbytes.denominator != 1:
        raise ConfigError(f"{value!r} is not a whole number of bytes", where=where, field=field)
    n = -int(nbytes) if sign == "-" else int(nbytes)
    return _check_magnitude(n, value, allow_zero, where, field)


def parse_duration_ns(value, *, where: str | None = None, field: str | None = None,
                      allow_zero: bool = False) -> int:
    """Return ``value`` in nanoseconds: an int (ns) or a string "500ms", "2s", "100us", "10ns"."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(
            f"expected a duration such as '500ms' or an integer number of nanoseconds, "
            f"got {describe_value(value)}", where=where, field=field)
    if isinstance(value, int):
        return _check_magnitude(value, value, allow_zero, where, field)

    sign, number, unit = _split(value, "a duration", "500ms", where, field)
    key = unit.lower() if unit != "µs" else unit
    if key not in _DURATION_UNITS:
        # A bare number is refused: "100" could be ns, ms or jiffies depending on who wrote it.
        raise ConfigError(
            f"expected a duration unit (ns, us, ms, s) in {value!r}", where=where, field=field)
    ns = number * _DURATION_UNITS[key]
    if ns.denominator != 1:
        raise ConfigError(f"{value!r} is not a whole number of nanoseconds", where=where, field=field)
    n = -int(ns) if sign == "-" else int(ns)
    return _check_magnitude(n, value, allow_zero, where, field)


def human_bytes(n: int) -> str:
    """Format a byte count with one decimal in the largest IEC unit it reaches: "8.0 GiB"."""
    n = int(n)
    for name, mult in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= mult:
            return f"{n / mult:.1f} {name}"
    return f"{n} B"
