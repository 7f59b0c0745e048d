"""Strict TOML loading and validation shared by every file tierscan reads (machines, scenarios,
experiments): each error is a ConfigError naming the file and the dotted key path."""

from __future__ import annotations

import math
import os

from tierscan.errors import ConfigError
from tierscan.units import describe_value


def read_text(path: str | os.PathLike) -> tuple[str, str]:
    """The UTF-8 text of a file and the name errors should give it."""
    where = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError("no such file", where=where) from None
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", where=where) from None
    try:
        return data.decode("utf-8"), where
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (bad byte at offset {e.start})", where=where) from None


def parse_toml(text: str, where: str) -> dict:
    import tomllib   # here, not at import: a run from a dict (a reproduction) parses no TOML

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib's message already carries "(at line L, column C)".
        raise ConfigError(f"invalid TOML: {e}", where=where) from None


def load_toml(path: str | os.PathLike) -> tuple[dict, str]:
    text, where = read_text(path)
    return parse_toml(text, where), where


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class Checker:
    """Validation helpers that raise ConfigError(where=the file, field=the key path)."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, field: str, message: str):
        raise ConfigError(message, where=self.where, field=field or None)

    def table(self, d, path: str, keys: dict[str, bool]):
        """``keys`` maps each allowed key to whether it is required."""
        if not isinstance(d, dict):
            self.fail(path, f"expected a table, got {describe_value(d)}")
        prefix = f"{path}." if path else ""
        for key in d:
            if key not in keys:
                self.fail(prefix + key, f"unknown key (expected one of: {', '.join(keys)})")
        for key, required in keys.items():
            if required and key not in d:
                self.fail(prefix + key, "missing required key")
        return d

    def int_at_least(self, v, field: str, minimum: int) -> int:
        if not is_int(v) or v < minimum:
            self.fail(field, f"expected an integer >= {minimum}, got {describe_value(v)}")
        return v

    def number_in(self, v, field: str, lo: float, hi: float) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or not lo <= v <= hi:
            self.fail(field, f"expected a number in [{lo}, {hi}], got {describe_value(v)}")
        return float(v)

    def boolean(self, v, field: str) -> bool:
        if not isinstance(v, bool):
            self.fail(field, f"expected true or false, got {describe_value(v)}")
        return v

    def string(self, v, field: str) -> str:
        if not isinstance(v, str) or not v:
            self.fail(field, f"expected a non-empty string, got {describe_value(v)}")
        return v

    def choice(self, v, field: str, choices) -> str:
        if v not in choices or not isinstance(v, str):
            self.fail(field, f"expected one of {', '.join(map(repr, choices))}, got "
                             f"{describe_value(v)}")
        return v

    def array(self, v, field: str) -> list:
        if not isinstance(v, list):
            self.fail(field, f"expected an array, got {describe_value(v)}")
        return v
