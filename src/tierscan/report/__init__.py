"""Reports on run results: tables (rich and CSV), plots (PNG) and access heatmaps.

- ``report.tables``: ``summary_table``, ``vmstat_table``, ``numastat_table``, ``compare_table``
  build ``Table`` objects (raw values + a unit per cell) that render to the terminal in human
  units or raw (``Table.to_rich(raw=...)``), to CSV (``Table.write_csv``) and to JSON-ready
  records (``Table.records()``).
- ``report.plots``: one function per chart, each writing a PNG and returning its path.
- ``report.heatmap``: an access heatmap (time x address) as PNG or as shaded terminal text.

Every file is written atomically (a temporary file in the same directory, then a rename), so a
report file is either the previous one or the complete new one.

matplotlib is imported only by ``plots`` and ``heatmap``'s PNG writer, so importing
``report.tables`` stays cheap.
"""

from __future__ import annotations

import os

from tierscan.errors import ConfigError
from tierscan.sim.results import atomic_write as _atomic_write

__all__ = ["atomic_write", "check_output_dir", "check_output_file", "ensure_dir"]


def check_output_file(path, what: str = "output file") -> str:
    """Check, before any work is done, that ``path`` can be written (its directory exists and is
    writable, and it is not a directory); a one-line ConfigError naming it otherwise."""
    path = os.fspath(path)
    if path == "" or os.path.isdir(path):
        raise ConfigError(f"cannot write {what}: it is a directory", where=path or "''")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        why = "is not a directory" if os.path.exists(directory) else "does not exist"
        raise ConfigError(f"cannot write {what}: {directory} {why}", where=path)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {what}: permission denied in {directory}", where=path)
    return path


def check_output_dir(path, what: str = "output directory") -> str:
    """Check, without creating anything, that the directory ``path`` exists and is writable or
    could be created (its nearest existing ancestor is a writable directory)."""
    path = os.fspath(path)
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise ConfigError(f"cannot use as {what}: {probe} is not a directory", where=path)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write to {what}: permission denied in {probe}", where=path)
    return path


def ensure_dir(path, what: str = "output directory") -> str:
    """Create the directory ``path`` (and parents) if needed; a ConfigError if that fails or
    it is not writable."""
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"cannot use as {what}: it exists and is not a directory",
                          where=path) from None
    except OSError as e:
        raise ConfigError(f"cannot create {what}: {e.strerror or e}", where=path) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write to {what}: permission denied", where=path)
    return path


def atomic_write(path, write, *, binary: bool = False) -> str:
    """Write a file atomically (sim.results.atomic_write, the one implementation)."""
    return _atomic_write(path, write, binary=binary)
