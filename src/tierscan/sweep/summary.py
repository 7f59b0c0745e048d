"""The sweep's results table, OUT/summary.parquet: one row per distinct run.

Columns, in order: every grid parameter (named by its --set key, typed by its values), the
run's ``config_hash``, ``file`` and ``status`` (``ok`` or ``failed``), ``error`` (the failure's
one-line message), ``wall_s`` (the run's own wall time), then the headline metrics of
``METRICS``. A failed run has null metrics. pandas, Polars and DuckDB read the file as is
(``pd.read_parquet``, ``pl.read_parquet``, ``SELECT * FROM 'summary.parquet'``).

Each finished run's row is also kept as OUT/.rows/HASH.json, so the table can be rewritten
(atomically, whole) after every finished run and rebuilt when a sweep resumes without
reloading every result file.
"""

from __future__ import annotations

import json
import math
import os

from tierscan.report import atomic_write

SUMMARY_FILE = "summary.parquet"
ROWS_DIR = ".rows"

# key -> (arrow type, what it is). Units in the name, as in result files.
METRICS = {
    "runtime_ns": ("int64", "when the last thread group finished (null for duration-bound runs)"),
    "sim_time_ns": ("int64", "simulated time of the run"),
    "accesses": ("float64", "memory accesses of all threads"),
    "throughput_per_s": ("float64", "accesses per simulated second"),
    "promoted_pages": ("int64", "pages promoted (the promotion summary's count)"),
    "pgpromote_success": ("int64", "/proc/vmstat pgpromote_success"),
    "numa_hint_faults": ("int64", "/proc/vmstat numa_hint_faults"),
    "daemon_cpu_ns": ("float64", "CPU time of every detector and engine daemon"),
    "fast_tier_hit_ratio": ("float64", "share of accesses served by the top tier"),
    "precision": ("float64", "share of promoted pages in the hot set"),
    "recall": ("float64", "share of the hot set promoted"),
    "time_to_promote_p50_ns": ("float64", "median time from the run start to a promotion"),
    "time_to_promote_p90_ns": ("float64", "90th percentile of the same"),
}


def _finite(v):
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def metrics_of(result) -> dict:
    """The headline metrics of a RunResult (plain numbers or None), with report's definitions."""
    from tierscan.report.tables import (accesses, daemon_cpu_ns, overall_hit_ratio,
                                        promoted_pages, throughput, ttp_quantile)

    final = result.final
    vm = final.get("vmstat") or {}
    promo = final.get("promotion") if isinstance(final.get("promotion"), dict) else {}
    dist = promo.get("time_to_promote_ns")
    dist = dist if isinstance(dist, dict) else {}

    def ttp(q: int):
        v = ttp_quantile(result, q)
        return v if v is not None else dist.get(f"p{q}")

    out = {
        "runtime_ns": final.get("runtime_ns"),
        "sim_time_ns": result.sim_time_ns,
        "accesses": accesses(result),
        "throughput_per_s": throughput(result),
        "promoted_pages": promoted_pages(result),
        "pgpromote_success": vm.get("pgpromote_success"),
        "numa_hint_faults": vm.get("numa_hint_faults"),
        "daemon_cpu_ns": float(sum(daemon_cpu_ns(result).values())),
        "fast_tier_hit_ratio": overall_hit_ratio(result),
        "precision": promo.get("precision"),
        "recall": promo.get("recall"),
        "time_to_promote_p50_ns": ttp(50),
        "time_to_promote_p90_ns": ttp(90),
    }
    return {k: _finite(v) for k, v in out.items()}


def row_of(point, status: str, *, metrics: dict | None = None, error: str = "",
           wall_s: float | None = None) -> dict:
    """One summary row (the grid parameters are added when the table is written)."""
    row = {"config_hash": point.config_hash, "file": point.file, "status": status,
           "error": error, "wall_s": wall_s}
    row.update({k: (metrics or {}).get(k) for k in METRICS})
    return row


def save_row(out_dir: str, row: dict) -> None:
    rows_dir = os.path.join(out_dir, ROWS_DIR)
    os.makedirs(rows_dir, exist_ok=True)
    atomic_write(os.path.join(rows_dir, f"{row['config_hash']}.json"),
                 lambda f: json.dump(row, f, sort_keys=True))


def load_row(out_dir: str, point) -> dict | None:
    """The saved row of ``point``'s run, or one computed from its result file (a sweep run by
    an older tierscan, or a client that died between the two saves); None if neither exists."""
    try:
        with open(os.path.join(out_dir, ROWS_DIR, f"{point.config_hash}.json"),
                  encoding="utf-8") as f:
            row = json.load(f)
        if isinstance(row, dict) and row.get("config_hash") == point.config_hash:
            return row
    except (OSError, ValueError):
        pass
    path = os.path.join(out_dir, point.file)
    if not os.path.exists(path):
        return None
    from tierscan.sim.results import RunResult

    row = row_of(point, "ok", metrics=metrics_of(RunResult.load(path)))
    save_row(out_dir, row)
    return row


def _grid_type(values: list) -> str:
    kinds = {type(v) for v in values}
    if kinds == {bool}:
        return "bool"
    if kinds <= {int} and kinds:
        return "int64"
    if kinds <= {int, float} and kinds:
        return "float64"
    return "string"


def write_summary(out_dir: str, sweep, rows: dict) -> str:
    """Write OUT/summary.parquet atomically from ``rows`` ({config_hash: row}), in grid order,
    one row per distinct run."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tierscan.sweep.grid import display_value

    keys = list(sweep.grid)
    firsts, seen = [], set()
    for p in sweep.points:
        if p.config_hash in rows and p.config_hash not in seen:
            seen.add(p.config_hash)
            firsts.append(p)
    columns, fields = {}, []
    for key in keys:
        kind = _grid_type(sweep.grid[key])
        vals = [p.params[key] for p in firsts]
        if kind == "string":
            vals = [display_value(v) for v in vals]
        elif kind == "float64":
            vals = [float(v) for v in vals]
        columns[key] = vals
        fields.append(pa.field(key, getattr(pa, kind if kind != "bool" else "bool_")()))
    fixed = [("config_hash", "string"), ("file", "string"), ("status", "string"),
             ("error", "string"), ("wall_s", "float64")]
    for name, kind in fixed + [(k, t) for k, (t, _) in METRICS.items()]:
        vals = [rows[p.config_hash].get(name) for p in firsts]
        if kind == "int64":
            vals = [None if v is None else int(v) for v in vals]
        elif kind == "float64":
            vals = [None if v is None else float(v) for v in vals]
        columns[name] = vals
        fields.append(pa.field(name, getattr(pa, kind)()))
    table = pa.Table.from_pydict(columns, schema=pa.schema(fields))
    return atomic_write(os.path.join(out_dir, SUMMARY_FILE),
                        lambda f: pq.write_table(table, f), binary=True)
