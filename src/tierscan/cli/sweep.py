"""`tierscan sweep`: run a grid of experiments on a local process pool or a Dask cluster.

The work is tierscan.sweep's (grid, backends, summary table); this module parses the command
line and shows progress. Every combination is validated before anything runs (exit 2).
"""

from __future__ import annotations

import argparse
import os
import sys

from tierscan.cli.args import int_at_least
from tierscan.errors import TierscanError

_EXAMPLES = """\
examples:
  tierscan sweep examples/sweep.toml              # all cores, results in ./sweep-runs/
  tierscan sweep sweep.toml --jobs 4 --out runs/
  tierscan sweep sweep.toml --dry-run             # list the runs, and which are done
  tierscan sweep sweep.toml --scheduler local:2   # a Dask LocalCluster of 2 workers
  tierscan sweep sweep.toml --scheduler tcp://10.0.0.5:8786 --out /shared/runs
  tierscan report sweep-runs/                     # a pivot of the summary table
  tierscan report sweep-runs/*.json               # or compare the runs

sweep file:
  base = "exp.toml"                 # or an inline [base] table holding the experiment
  set = ["duration=2s"]             # optional, applied to every run
  [grid]                            # --set keys -> lists; the runs are every combination
  seed = [0, 1]
  "detectors[0].interval_ms" = [100, 500]

Runs are saved as OUT/<config_hash>.json as soon as each finishes; a run whose file exists is
skipped, so an interrupted sweep resumes where it stopped. OUT/index.csv lists each grid
point's parameters, its file and its status (ok, failed, missing); OUT/summary.parquet has one
row per run with its parameters and headline metrics (pandas, Polars and DuckDB read it).
--scheduler needs Dask: pip install 'tierscan[cluster]'. docs/sweeps.md has more.
Exit status: 0 all runs done, 1 a run failed, 2 bad input (sweep file, base, grid)."""


class SweepFailed(TierscanError):
    exit_code = 1


_jobs = int_at_least(1, "a number of processes")


def _scheduler(text: str) -> str:
    from tierscan.sweep.backends import parse_scheduler

    try:
        return parse_scheduler(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep", help="run a grid of experiments on all cores or a Dask cluster, resumably",
        description="Run every combination of a sweep file's [grid] of overrides over a base\n"
                    "experiment, in parallel, saving each run as OUT/<config_hash>.json and\n"
                    "skipping the runs already saved.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", metavar="SWEEP.toml", help="the sweep file")
    p.add_argument("-j", "--jobs", metavar="N", type=_jobs, default=None,
                   help=f"parallel runs on the local pool (default: the number of CPUs, "
                        f"{os.cpu_count() or 1})")
    p.add_argument("--scheduler", metavar="ADDRESS", type=_scheduler, default=None,
                   help="run on a Dask cluster: a scheduler address (tcp://host:8786) or "
                        "local:N to start a LocalCluster of N workers")
    p.add_argument("--collect", action="store_true",
                   help="with --scheduler: workers return results and this process saves "
                        "them (for clusters without a shared file system)")
    p.add_argument("--out", metavar="DIR",
                   help="where results go (default: ./STEM-runs, STEM = the sweep file's name)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs and whether each is done; run nothing, write nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.set_defaults(func=run)


class _Bar:
    """One progress bar for the sweep: done / running / failed and the last run's wall time."""

    def __init__(self, console, total: int, slots: int):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        self.slots = slots
        self.progress = Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.description}"), TimeElapsedColumn(),
                                 TimeRemainingColumn(), console=console, transient=True)
        self.task = self.progress.add_task(self._text(0, total, 0, None), total=total)
        self.total = total
        self.progress.start()

    def _text(self, done: int, total: int, failed: int, wall_s) -> str:
        running = min(self.slots, total - done)
        last = f", last run {wall_s:.1f} s" if wall_s is not None else ""
        return f"running {running}, failed {failed}{last}"

    def update(self, stats, outcome) -> None:
        self.progress.update(self.task, advance=1, description=self._text(
            stats.done, self.total, len(stats.failures), outcome.get("wall_s")))

    def stop(self) -> None:
        self.progress.stop()


def run(args) -> int:
    from tierscan.cli.run import make_console
    from tierscan.errors import ConfigError
    from tierscan.report import check_output_files, ensure_dir
    from tierscan.sweep import load_sweep, plan, run_sweep
    from tierscan.sweep.backends import make_backend

    if args.collect and args.scheduler is None:
        raise ConfigError("--collect goes with --scheduler (the local pool always shares this "
                          "machine's file system)", where="--collect")
    sweep = load_sweep(args.sweep)
    stem = os.path.splitext(os.path.basename(args.sweep))[0]
    out_dir = args.out if args.out is not None else f"{stem}-runs"
    unique, todo = plan(sweep, out_dir)

    console = make_console()
    say = (lambda text: None) if args.quiet else (lambda text: console.print(text, markup=False))
    # Before anything runs: the directory, the index and the summary (existing results are
    # skipped, never replaced).
    check_output_files(out_dir, ["index.csv", "summary.parquet"], "sweep output directory")
    if args.dry_run:
        missing = {p.config_hash for p in todo}
        for p in sweep.points:
            state = "to run" if p.config_hash in missing else "done"
            console.print(f"{p.index:>4}  {p.file}  {state:<6}  {p.describe()}", markup=False)
        console.print(f"{len(sweep.points)} grid points, {len(unique)} distinct runs: "
                      f"{len(unique) - len(todo)} done, {len(todo)} to run (in {out_dir})",
                      markup=False)
        return 0

    backend = make_backend(args.scheduler, args.jobs or os.cpu_count() or 1)  # Dask installed?
    ensure_dir(out_dir, "sweep output directory")
    if len(unique) > len(todo):
        say(f"{len(unique) - len(todo)} of {len(unique)} runs already in {out_dir}: skipped")
    show_bar = not args.quiet and console.is_terminal and sys.stdout.isatty()
    bar = None

    def on_done(point, outcome, stats) -> None:
        n = stats.skipped + stats.done
        if outcome["ok"]:
            say(f"[{n}/{stats.total}] {point.file} ({point.describe()}) "
                f"{outcome['wall_s']:.1f} s")
        else:
            print(f"tierscan: run {point.index} ({point.describe()}) failed: "
                  f"{outcome['message']}", file=sys.stderr)
        if bar is not None:
            bar.update(stats, outcome)

    with backend:
        if args.scheduler is not None:
            say(f"sweep on {backend.label}" +
                (f"; dashboard: {backend.dashboard}" if backend.dashboard else ""))
        if show_bar and todo:
            bar = _Bar(console, len(todo), backend.slots)
        try:
            stats = run_sweep(sweep, out_dir, backend, collect=args.collect, on_done=on_done)
        finally:
            if bar is not None:
                bar.stop()

    ran = len(todo) - len(stats.failures)
    say(f"sweep: {stats.total} runs: {ran} ran, {stats.skipped} already done, "
        f"{len(stats.failures)} failed; index: {os.path.join(out_dir, 'index.csv')}")
    if stats.failures:
        failures = sorted(stats.failures, key=lambda f: f[0].index)
        err = SweepFailed(f"{len(failures)} of {len(todo)} runs failed (first: grid point "
                          f"{failures[0][0].index}: {failures[0][1]['message']})")
        err.exit_code = max(o["exit_code"] for _, o in failures)
        raise err
    return 0
