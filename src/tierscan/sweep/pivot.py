"""`tierscan report OUT/`: a pivot of a sweep's summary table and a plot of one metric.

The table has one row per value of ``rows`` and one column per value of ``cols`` (a grid
parameter each); a cell is the mean of ``metric`` over the runs with those values (other
parameters, e.g. seeds, are averaged), with the run count when more than one run is averaged.
The plot draws ``metric`` against ``rows`` (x), one line per value of ``cols``.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict

from tierscan.errors import ConfigError
from tierscan.report.tables import Cell, Column, Table
from tierscan.sweep.summary import METRICS, SUMMARY_FILE

FIXED = ("config_hash", "file", "status", "error", "wall_s")
DEFAULT_METRICS = ("runtime_ns", "throughput_per_s")


def load_summary(out_dir: str) -> list[dict]:
    """The rows of OUT/summary.parquet; a one-line error when it is missing or unreadable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = os.path.join(out_dir, SUMMARY_FILE)
    if not os.path.isfile(path):
        raise ConfigError("no summary.parquet here: not a sweep output directory (run "
                          "`tierscan sweep` into it first)", where=out_dir)
    try:
        return pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowException) as e:
        raise ConfigError(f"cannot read the sweep summary: {e}", where=path) from None


def parameters(rows: list[dict]) -> list[str]:
    """The grid parameters of a summary (the columns before the fixed ones)."""
    if not rows:
        return []
    names = list(rows[0])
    return names[:names.index("config_hash")] if "config_hash" in names else []


def _kind(metric: str) -> str:
    if metric.endswith("_ns"):
        return "ns"
    if metric in ("precision", "recall", "fast_tier_hit_ratio"):
        return "ratio"
    return "number"


def choose(rows: list[dict], row_key, col_key, metric, where: str) -> tuple:
    """Check (or default) the pivot's parameters and metric against the summary."""
    params = parameters(rows)
    for flag, key in (("--rows", row_key), ("--cols", col_key)):
        if key is not None and key not in params:
            raise ConfigError(f"{flag}: no grid parameter {key!r} (parameters: "
                              f"{', '.join(params) or 'none'})", where=where)
    if metric is not None and metric not in METRICS:
        raise ConfigError(f"--metric: unknown metric {metric!r} (metrics: "
                          f"{', '.join(METRICS)})", where=where)
    row_key = row_key or (params[0] if params else None)
    if col_key is None:
        col_key = next((p for p in params if p != row_key), None)
    if metric is None:
        metric = next((m for m in DEFAULT_METRICS if any(r.get(m) is not None for r in rows)),
                      DEFAULT_METRICS[-1])
    if row_key is None:
        raise ConfigError("the sweep has no grid parameters to pivot on", where=where)
    return row_key, col_key, metric


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


def pivot(rows: list[dict], row_key: str, col_key: str | None, metric: str) -> Table:
    ok = [r for r in rows if r.get("status") == "ok"]
    row_vals = list(dict.fromkeys(r[row_key] for r in ok))
    col_vals = list(dict.fromkeys(r[col_key] for r in ok)) if col_key else [None]
    cells = defaultdict(list)
    for r in ok:
        cells[(r[row_key], r[col_key] if col_key else None)].append(r.get(metric))
    kind = _kind(metric)
    cols = [Column(row_key)]
    cols += [Column(f"{col_key}={v}" if col_key else metric, kind=kind) for v in col_vals]
    table_rows = []
    for rv in row_vals:
        line = [Cell(rv, "text", str(rv))]
        for cv in col_vals:
            line.append(Cell(_mean(cells.get((rv, cv), [])), kind))
        table_rows.append(line)
    failed = len(rows) - len(ok)
    title = f"{metric} (mean over runs)" + (f"; {failed} failed runs left out" if failed else "")
    return Table(title, cols, table_rows)


def plot_metric(rows: list[dict], row_key: str, col_key: str | None, metric: str,
                out_png: str) -> str:
    """``metric`` against ``row_key``, one line (with markers) per value of ``col_key``."""
    from tierscan.report.plots import _figure, _no_data, save_figure

    ok = [r for r in rows if r.get("status") == "ok"]
    fig, ax = _figure(f"{metric} by {row_key}", row_key, metric)
    numeric = all(isinstance(r[row_key], (int, float)) and not isinstance(r[row_key], bool)
                  for r in ok)
    xs = list(dict.fromkeys(r[row_key] for r in ok))
    if numeric:
        xs.sort()
    col_vals = list(dict.fromkeys(r[col_key] for r in ok)) if col_key else [None]
    markers, dashes = "osD^v<>pX*h", ["-", "--", ":", "-."]   # distinct when lines overlap
    for i, cv in enumerate(col_vals):
        ys = [_mean([r.get(metric) for r in ok if r[row_key] == x and
                     (col_key is None or r[col_key] == cv)]) for x in xs]
        pos = xs if numeric else list(range(len(xs)))
        pts = [(x, y) for x, y in zip(pos, ys) if y is not None]
        if pts:
            ax.plot(*zip(*pts), marker=markers[i % len(markers)], linestyle=dashes[i % 4],
                    label=f"{col_key}={cv}" if col_key else metric)
    if not numeric:
        ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    if not ax.lines:
        _no_data(ax, f"no run has a value of {metric}")
    elif col_key:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    return save_figure(fig, out_png)
