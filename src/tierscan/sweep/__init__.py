"""Sweeps: a grid of experiments run on a local process pool or a Dask cluster (docs/sweeps.md).

``run_sweep`` is what `tierscan sweep` does, callable from Python:

- one run per distinct configuration (two grid points may resolve to the same one); a run whose
  result file OUT/HASH.json exists is skipped, so an interrupted sweep resumes;
- each finished run is saved atomically as it completes (by the worker, or by this process with
  ``collect``), its summary row with it, and OUT/summary.parquet is rewritten;
- OUT/index.csv lists every grid point with its status (ok, failed, missing) at the end, also
  after Ctrl-C or a failure.

Layering: a sweep sits above ``report`` (its summary uses report's metric definitions).
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, field

from tierscan.report import atomic_write
from tierscan.sweep.grid import Point, Sweep, display_value, load_sweep, toml_value
from tierscan.sweep.runner import Task
from tierscan.sweep.summary import load_row, row_of, save_row, write_summary

__all__ = ["Point", "Sweep", "SweepStats", "load_sweep", "plan", "run_sweep", "toml_value",
           "write_index"]

SUMMARY_EVERY_S = 2.0   # rewrite summary.parquet at most this often while runs finish


@dataclass
class SweepStats:
    total: int                      # distinct runs of the grid
    skipped: int                    # already saved before this invocation
    todo: list                      # Points to run
    done: int = 0
    failures: list = field(default_factory=list)   # (Point, outcome)

    @property
    def running_or_queued(self) -> int:
        return len(self.todo) - self.done


def plan(sweep: Sweep, out_dir: str) -> tuple[dict, list]:
    """({config_hash: first Point}, [Points whose result file is missing])."""
    unique: dict[str, Point] = {}
    for p in sweep.points:
        unique.setdefault(p.config_hash, p)
    todo = [p for p in unique.values() if not os.path.exists(os.path.join(out_dir, p.file))]
    return unique, todo


def run_sweep(sweep: Sweep, out_dir: str, backend, *, collect: bool = False,
              on_done=None) -> SweepStats:
    """Run what is left of ``sweep`` into ``out_dir`` (which must exist) on ``backend`` (an
    entered PoolBackend or DaskBackend). ``on_done(point, outcome, stats)`` is called as each
    run ends."""
    from tierscan.sim.results import RunResult

    unique, todo = plan(sweep, out_dir)
    stats = SweepStats(total=len(unique), skipped=len(unique) - len(todo), todo=todo)
    rows = {h: r for h, r in ((h, load_row(out_dir, p)) for h, p in unique.items())
            if r is not None}
    last_write = [0.0]

    def finished(i: int, outcome: dict) -> None:
        point = todo[i]
        stats.done += 1
        if outcome["ok"] and collect and "result_json" in outcome:
            RunResult.from_json(outcome["result_json"], point.file).save(
                os.path.join(out_dir, point.file))
        if outcome["ok"]:
            row = row_of(point, "ok", metrics=outcome["metrics"], wall_s=outcome["wall_s"])
        else:
            stats.failures.append((point, outcome))
            row = row_of(point, "failed", error=outcome["message"], wall_s=outcome["wall_s"])
        if outcome["ok"]:       # a failure is not kept: a rerun tries it again
            save_row(out_dir, row)
        rows[point.config_hash] = row
        if time.monotonic() - last_write[0] >= SUMMARY_EVERY_S:
            write_summary(out_dir, sweep, rows)
            last_write[0] = time.monotonic()
        if on_done is not None:
            on_done(point, outcome, stats)

    out_abs = os.path.abspath(out_dir)
    tasks = [Task(p.cfg.resolved(), f"{sweep.where}: grid point {p.index}", p.config_hash,
                  os.path.join(out_abs, p.file), collect) for p in todo]
    try:
        backend.execute(tasks, finished)
    finally:
        _remove_stale_temp_files(out_dir, todo)
        write_index(out_dir, sweep, {p.config_hash for p, _ in stats.failures})
        for h, p in unique.items():       # results saved by workers whose answer never came
            if h not in rows and (row := load_row(out_dir, p)) is not None:
                rows[h] = row
        if rows:
            write_summary(out_dir, sweep, rows)
    return stats


def _remove_stale_temp_files(out_dir: str, points) -> None:
    """Temporary files of saves cut short by a terminated worker (``.HASH.json.XXXX.tmp``)."""
    prefixes = tuple(f".{p.file}." for p in points)
    try:
        names = os.listdir(out_dir)
    except OSError:
        return
    for name in names:
        if name.startswith(prefixes) and name.endswith(".tmp"):
            try:
                os.unlink(os.path.join(out_dir, name))
            except OSError:
                pass


def write_index(out_dir: str, sweep: Sweep, failed: set) -> str:
    """OUT/index.csv: point, the grid keys, config_hash, file, status: ``ok`` (its file is
    there), ``failed`` (its run failed in this invocation) or ``missing`` (not run yet)."""
    keys = list(sweep.grid)

    def status(p: Point) -> str:
        if p.config_hash in failed:
            return "failed"
        return "ok" if os.path.exists(os.path.join(out_dir, p.file)) else "missing"

    def write(f):
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["point", *keys, "config_hash", "file", "status"])
        for p in sweep.points:
            w.writerow([p.index, *(display_value(p.params[k]) for k in keys), p.config_hash,
                        p.file, status(p)])

    return atomic_write(os.path.join(out_dir, "index.csv"), write)
