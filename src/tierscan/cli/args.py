"""Argument types shared by the subcommands."""

from __future__ import annotations

import argparse


def int_at_least(minimum: int, what: str):
    """An argparse type: an integer >= ``minimum`` (a usage error, exit 2, otherwise)."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected {what} >= {minimum}, got {n}")
        return n
    return parse
