"""`tierscan sweep`: run the cartesian product of a grid of overrides on a local process pool.

A sweep file (TOML) names a base experiment and a grid:

    base = "exp.toml"            # a path (relative to the sweep file), or an inline [base] table
    set = ["duration=2s"]        # optional: overrides applied to every run, before the grid
    [grid]                       # keys are --set keys, values are lists
    seed = [0, 1, 2]
    "detectors[0].interval_ms" = [100, 500, 2000]

Every combination is validated before anything runs (a bad key, value or workload is a usage
error, exit 2). Each finished run is saved at once, atomically, as OUT/<config_hash>.json; a run
whose file already exists is skipped, so re-running an interrupted sweep does only what is left.
OUT/index.csv maps every grid point's parameters to its file.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

from tierscan.cli.args import int_at_least
from dataclasses import dataclass

from tierscan.errors import ConfigError, TierscanError

_EXAMPLES = """\
examples:
  tierscan sweep sweep.toml                       # all cores, results in ./sweep-runs/
  tierscan sweep sweep.toml --jobs 4 --out runs/
  tierscan sweep sweep.toml --dry-run             # list the runs, and which are done
  tierscan report runs/*.json                     # then compare them

sweep file:
  base = "exp.toml"                 # or an inline [base] table holding the experiment
  set = ["duration=2s"]             # optional, applied to every run
  [grid]                            # --set keys -> lists; the runs are every combination
  seed = [0, 1]
  "detectors[0].interval_ms" = [100, 500]

Runs are saved as OUT/<config_hash>.json as soon as each finishes; a run whose file exists is
skipped, so an interrupted sweep resumes where it stopped. OUT/index.csv lists each grid
point's parameters, its file and its status (ok, failed, missing).
Exit status: 0 all runs done, 1 a run failed, 2 bad input (sweep file, base, grid)."""

_SWEEP_KEYS = {"base": True, "grid": True, "set": False}


class SweepFailed(TierscanError):
    exit_code = 1


_jobs = int_at_least(1, "a number of processes")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep", help="run a grid of experiments on all cores, resumably",
        description="Run every combination of a sweep file's [grid] of overrides over a base\n"
                    "experiment, in parallel, saving each run as OUT/<config_hash>.json and\n"
                    "skipping the runs already saved.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", metavar="SWEEP.toml", help="the sweep file")
    p.add_argument("-j", "--jobs", metavar="N", type=_jobs, default=None,
                   help=f"parallel runs (default: the number of CPUs, {os.cpu_count() or 1})")
    p.add_argument("--out", metavar="DIR",
                   help="where results go (default: ./STEM-runs, STEM = the sweep file's name)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs and whether each is done; run nothing, write nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.set_defaults(func=run)


# -- the sweep file --------------------------------------------------------------------------


def toml_value(v) -> str:
    """A TOML value's text, such that ``parse_override(f"k={toml_value(v)}")`` gives ``v``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)   # JSON string escapes are TOML basic-string escapes
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise ValueError(f"cannot use {type(v).__name__} values ({v!r}) in a grid")


def display_value(v) -> str:
    """A grid value as index.csv and the progress lines show it: strings bare."""
    return v if isinstance(v, str) else toml_value(v)


@dataclass
class Point:
    index: int                 # 1-based position in the grid
    params: dict               # grid key -> value
    cfg: object                # ExperimentConfig
    config_hash: str

    @property
    def file(self) -> str:
        return f"{self.config_hash}.json"

    def describe(self) -> str:
        return ", ".join(f"{k}={display_value(v)}" for k, v in self.params.items()) or "base"


@dataclass
class Sweep:
    where: str
    grid: dict
    points: list


def load_sweep(path) -> Sweep:
    """Read and validate a sweep file and every configuration of its grid (nothing runs)."""
    from tierscan.configcheck import Checker, load_toml
    from tierscan.sim.config import config_from_dict, join_key, parse_override
    from tierscan.units import describe_value

    doc, where = load_toml(path)
    c = Checker(where)
    c.table(doc, "", _SWEEP_KEYS)
    sweep_dir = os.path.dirname(os.path.abspath(os.fspath(path)))

    base = doc["base"]
    if isinstance(base, str):
        if not base:
            c.fail("base", "expected a path to an experiment file, got an empty string")
        full = base if os.path.isabs(base) else os.path.join(sweep_dir, base)
        if not os.path.isfile(full):
            c.fail("base", f"no such file {base!r}" + ("" if full == base else
                                                        f" (looked for {full})"))
        base_doc, base_where = load_toml(full)
        base_dir = os.path.dirname(os.path.abspath(full))
    elif isinstance(base, dict):
        base_doc, base_where, base_dir = base, f"{where} [base]", sweep_dir
    else:
        c.fail("base", f"expected a path to an experiment file or a [base] table, got "
                       f"{describe_value(base)}")

    fixed = c.array(doc.get("set", []), "set")
    for i, ov in enumerate(fixed):
        if not isinstance(ov, str):
            c.fail(f"set[{i}]", f"expected a 'key=value' string, got {describe_value(ov)}")

    grid = doc["grid"]
    if not isinstance(grid, dict):
        c.fail("grid", f"expected a table of --set keys to lists, got {describe_value(grid)}")
    for key, values in grid.items():
        field = join_key("grid", key)
        try:
            parse_override(f"{key}=0")
        except ConfigError:
            c.fail(field, "bad key (expected a --set key such as workload.mode or "
                          "\"detectors[0].interval_ms\", quoted when it has brackets)")
        if not isinstance(values, list) or not values:
            c.fail(field, f"expected a non-empty list of values, got {describe_value(values)}")
        for i, v in enumerate(values):
            try:
                toml_value(v)
            except ValueError as e:
                c.fail(f"{field}[{i}]", str(e))

    keys = list(grid)
    points = []
    for i, combo in enumerate(itertools.product(*(grid[k] for k in keys)), start=1):
        params = dict(zip(keys, combo))
        overrides = list(fixed) + [f"{k}={toml_value(v)}" for k, v in params.items()]
        point = Point(i, params, None, "")
        try:
            cfg = config_from_dict(base_doc, base_where, overrides=overrides, base_dir=base_dir)
            prevalidate(cfg)
        except ConfigError as e:
            raise ConfigError(f"grid point {i} ({point.describe()}): {e}", where=where) from None
        point.cfg, point.config_hash = cfg, cfg.config_hash()
        points.append(point)
    return Sweep(where, grid, points)


def prevalidate(cfg) -> None:
    """Catch what only building the run would otherwise find, before any run starts: an unknown
    or misconfigured workload, an unknown detector or promotion engine."""
    from tierscan.sim import plugins
    from tierscan.workload.library import make_workload

    make_workload(cfg.workload.name, dict(cfg.workload.params), where=cfg.source,
                  field=cfg.workload.path or "workload")
    plugins.load_all()
    for comp, registry, kind in [(d, plugins.DETECTORS, "detector") for d in cfg.detectors] + \
            ([(cfg.engine, plugins.ENGINES, "promotion engine")] if cfg.engine else []):
        if comp.name not in registry:
            known = ", ".join(sorted(registry)) or "none registered yet"
            comp.fail("name", f"unknown {kind} {comp.name!r} (known: {known})")


# -- running ---------------------------------------------------------------------------------


def run_point(payload: tuple) -> dict:
    """Run one configuration and save it (in a worker process). Never raises: returns
    {"ok": bool, "message": str, "exit_code": int, "wall_s": float}."""
    resolved, where, expected_hash, out_path = payload
    t0 = time.perf_counter()
    try:
        from tierscan.cli.run import run_config
        from tierscan.sim.config import config_from_dict

        cfg = config_from_dict(resolved, where)
        if cfg.config_hash() != expected_hash:
            raise RuntimeError(f"configuration hash changed in the worker "
                               f"({cfg.config_hash()} != {expected_hash})")
        run_config(cfg).save(out_path)
        return {"ok": True, "message": "", "exit_code": 0, "wall_s": time.perf_counter() - t0}
    except Exception as e:  # noqa: BLE001 - a failed run is reported, the sweep goes on
        if isinstance(e, TierscanError):
            msg, code = str(e), e.exit_code
        else:
            msg, code = f"internal error: {type(e).__name__}: {e}", 1
        return {"ok": False, "message": " ".join(msg.splitlines()), "exit_code": code,
                "wall_s": time.perf_counter() - t0}


def _mp_context():
    import multiprocessing

    # forkserver: workers fork from a clean server process (no threads of ours, such as the
    # progress bar's), with tierscan already imported once.
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["tierscan.cli.sweep", "tierscan.cli.run",
                                    "tierscan.sim.run"])
        return ctx
    return multiprocessing.get_context("spawn")


def _worker_init() -> None:
    """Workers ignore Ctrl-C: the sweep process handles it and stops them (an idle worker
    interrupted in its queue would otherwise print a traceback)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _execute(tasks: list, jobs: int, on_done) -> None:
    """Run ``tasks`` [(point, payload)], calling ``on_done(point, outcome)`` as each ends."""
    if not tasks:
        return
    if jobs == 1 or len(tasks) == 1:
        for point, payload in tasks:
            on_done(point, run_point(payload))
        return
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=_mp_context(),
                               initializer=_worker_init)
    try:
        futures = {pool.submit(run_point, payload): point for point, payload in tasks}
        for fut in as_completed(futures):
            try:
                outcome = fut.result()
            except Exception as e:  # noqa: BLE001 - e.g. a worker killed (BrokenProcessPool)
                outcome = {"ok": False, "exit_code": 1, "wall_s": 0.0,
                           "message": f"worker failed: {type(e).__name__}: {e}"}
            on_done(futures[fut], outcome)
    except BaseException:
        # Ctrl-C (or a bug): stop now. Runs in progress are lost (a result is all or nothing);
        # every finished one is already saved.
        workers = list((getattr(pool, "_processes", None) or {}).values())
        for proc in workers:
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


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
    from tierscan.report import atomic_write

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


def run(args) -> int:
    from tierscan.cli.run import make_console
    from tierscan.report import check_output_dir, ensure_dir

    sweep = load_sweep(args.sweep)
    stem = os.path.splitext(os.path.basename(args.sweep))[0]
    out_dir = args.out if args.out is not None else f"{stem}-runs"
    jobs = args.jobs or os.cpu_count() or 1

    # One run per distinct configuration (two grid points may resolve to the same one).
    unique: dict[str, Point] = {}
    for p in sweep.points:
        unique.setdefault(p.config_hash, p)
    exists = {h: os.path.exists(os.path.join(out_dir, p.file)) for h, p in unique.items()}
    todo = [p for h, p in unique.items() if not exists[h]]

    console = make_console()
    if args.dry_run:
        check_output_dir(out_dir)
        for p in sweep.points:
            state = "done" if exists[p.config_hash] else "to run"
            console.print(f"{p.index:>4}  {p.file}  {state:<6}  {p.describe()}", markup=False)
        console.print(f"{len(sweep.points)} grid points, {len(unique)} distinct runs: "
                      f"{len(unique) - len(todo)} done, {len(todo)} to run (in {out_dir})",
                      markup=False)
        return 0

    ensure_dir(out_dir, "sweep output directory")
    failures: list[tuple[Point, dict]] = []
    show_bar = not args.quiet and console.is_terminal and sys.stdout.isatty()
    say = (lambda text: None) if args.quiet else (lambda text: console.print(text, markup=False))
    n_total, counter = len(unique), [len(unique) - len(todo)]
    if counter[0]:
        say(f"{counter[0]} of {n_total} runs already in {out_dir}: skipped")

    bar = task = None
    if show_bar and todo:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        bar = Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                       transient=True)
        task = bar.add_task("sweep", total=len(todo))
        bar.start()

    def on_done(point: Point, outcome: dict) -> None:
        counter[0] += 1
        if outcome["ok"]:
            say(f"[{counter[0]}/{n_total}] {point.file} ({point.describe()}) "
                f"{outcome['wall_s']:.1f} s")
        else:
            failures.append((point, outcome))
            print(f"tierscan: run {point.index} ({point.describe()}) failed: "
                  f"{outcome['message']}", file=sys.stderr)
        if bar is not None:
            bar.advance(task)

    try:
        tasks = [(p, (p.cfg.resolved(), f"{sweep.where}: grid point {p.index}", p.config_hash,
                      os.path.join(out_dir, p.file))) for p in todo]
        _execute(tasks, jobs, on_done)
    finally:
        if bar is not None:
            bar.stop()
        _remove_stale_temp_files(out_dir, todo)
        write_index(out_dir, sweep, {p.config_hash for p, _ in failures})

    ran = len(todo) - len(failures)
    say(f"sweep: {n_total} runs: {ran} ran, {n_total - len(todo)} already done, "
        f"{len(failures)} failed; index: {os.path.join(out_dir, 'index.csv')}")
    if failures:
        failures.sort(key=lambda f: f[0].index)
        err = SweepFailed(f"{len(failures)} of {len(todo)} runs failed (first: grid point "
                          f"{failures[0][0].index}: {failures[0][1]['message']})")
        err.exit_code = max(o["exit_code"] for _, o in failures)
        raise err
    return 0
