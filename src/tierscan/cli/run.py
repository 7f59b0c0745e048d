"""`tierscan run`: run one experiment, show its progress and summary, save and plot it."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

_EXAMPLES = """\
examples:
  tierscan run examples/exp.toml                         # progress bar, then the summary
  tierscan run examples/exp.toml --json runs/exp.json --plot plots/
  tierscan run examples/exp.toml --set seed=3 --set workload.alpha=1.2 --set access_model=exact
  tierscan run examples/exp.toml --set 'detectors[0].interval_ms=100' --quiet --raw
  tierscan run examples/hotset-zen5.toml                 # zen5-cxl: memory on the CXL node

--set takes the dotted keys of the experiment file (docs/config.md); the value is a TOML
value or a bare string. The result file (--json) is written atomically and holds the whole
resolved configuration; `tierscan report` and `tierscan vmstat` read it back.
examples/ (in the source tree) has experiment files to start from.
Exit status: 0 done, 1 the run failed, 2 bad input (config, --set, output path)."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="run one experiment and print its summary",
        description="Run the experiment described by a TOML file (docs/config.md): show a\n"
                    "progress bar, print the run summary and per-node table, and optionally\n"
                    "save the result as JSON and plot it.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", metavar="CONFIG.toml", help="the experiment file")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override a configuration key (repeatable), e.g. workload.mode=2")
    p.add_argument("--json", metavar="OUT", help="save the result file here (atomically)")
    p.add_argument("--plot", metavar="DIR", help="write PNG charts into DIR (created if needed)")
    p.add_argument("--raw", action="store_true",
                   help="print raw numbers and machine keys instead of human units")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar and no 'wrote ...' notes")
    p.set_defaults(func=run)


# -- helpers shared with the other subcommands -----------------------------------------------


def make_console(file=None):
    """A rich Console on ``file`` (default stdout); not a terminal: 120 columns unless COLUMNS
    says otherwise, so tables in logs and pipes are not squeezed to 80."""
    f = sys.stdout if file is None else file
    console = _Console(file=f, highlight=False)
    if not console.is_terminal:
        try:
            width = int(os.environ.get("COLUMNS", "120"))
        except ValueError:
            width = 120
        console = _Console(file=f, highlight=False, width=max(width, 40))
    return console


@functools.cache
def _rich_console_class():
    from rich.console import Console

    class PipeAwareConsole(Console):
        """rich exits 1 on a closed pipe; raise instead, so cli.main ends quietly with the
        status Unix tools have (141) after the results are saved."""

        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError(32, "Broken pipe")

    return PipeAwareConsole


def _Console(**kwargs):
    return _rich_console_class()(**kwargs)


def note(message: str, quiet: bool = False) -> None:
    """An informational line on stderr ('wrote plots/hit_ratio.png')."""
    if not quiet:
        print(message, file=sys.stderr)


def shows_progress(console, quiet: bool) -> bool:
    """Progress bars only on an interactive terminal, and not with --quiet."""
    return not quiet and console.is_terminal and sys.stdout.isatty()


class RunProgress:
    """The ``progress`` callable given to the engine. It remembers the engine (so per-node
    counters can be read once the run ends) and, when ``show``, draws a rich progress bar:
    over simulated time when the experiment has a duration, else over the accesses per thread
    of the first process's phases (or over its phases, when some end by time only)."""

    def __init__(self, show: bool, console=None, min_interval_s: float = 0.1,
                 label: str = "simulating"):
        self.show, self.console, self.min_interval_s = show, console, min_interval_s
        self.label = label
        self.engine = None
        self._bar = self._task = None
        self._last = 0.0
        self._mode = None

    # what the bar measures
    def _measure(self, engine) -> tuple[float, float, str]:
        """(completed, total, detail)."""
        from tierscan.report.tables import fmt_count, fmt_ns

        if self._mode == "time":
            d = engine.duration_ns
            return min(engine.now, d), d, f"{fmt_ns(engine.now)} / {fmt_ns(d)} simulated"
        g = engine.groups[0]
        phases = g.spec.phases
        if self._mode == "accesses":
            total = float(sum(ph.accesses for ph in phases))
            return min(g.total, total), total, \
                f"{fmt_count(g.total)} / {fmt_count(total)} accesses per thread"
        # phases, each counted as one unit
        idx = min(g.phase_idx, len(phases))
        frac = 0.0
        if idx < len(phases):
            ph = phases[idx]
            if ph.accesses:
                frac = g.done / ph.accesses
            elif ph.duration_ns:
                frac = (engine.now - g.phase_start_ns) / ph.duration_ns
        done = min(idx + max(0.0, min(frac, 1.0)), len(phases))
        return done, float(len(phases)), \
            f"phase {min(idx + 1, len(phases))}/{len(phases)}, {fmt_ns(engine.now)} simulated"

    def _start(self, engine) -> None:
        from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        if engine.duration_ns:
            self._mode = "time"
        elif not engine.groups or not engine.groups[0].spec.phases:
            self.show = False
            return
        elif all(ph.accesses for ph in engine.groups[0].spec.phases):
            self._mode = "accesses"
        else:
            self._mode = "phases"
        self._bar = Progress(TextColumn(f"[bold]{self.label}"), BarColumn(), TaskProgressColumn(),
                             TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                             TimeRemainingColumn(), console=self.console, transient=True)
        done, total, detail = self._measure(engine)
        self._task = self._bar.add_task("run", total=total, completed=done, detail=detail)
        self._bar.start()

    def __call__(self, engine) -> None:
        self.engine = engine
        if not self.show:
            return
        if self._bar is None:
            self._start(engine)
            if not self.show:
                return
        now = time.monotonic()
        if now - self._last < self.min_interval_s:
            return
        self._last = now
        done, total, detail = self._measure(engine)
        self._bar.update(self._task, completed=done, total=total, detail=detail)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def node_vmstat(engine) -> list[dict]:
    """/sys/devices/system/node/nodeN/vmstat of every node of the engine's kernel."""
    vm = engine.kernel.vmstat
    names = list(vm.as_dict())
    per = {name: vm.node(name) for name in names}
    return [{name: int(per[name][i]) for name in names}
            for i in range(engine.kernel.machine.nr_nodes)]


def run_config(cfg, progress: RunProgress | None = None, command=None):
    """Run an experiment as the CLI does: ``run_experiment`` plus the per-node vmstat
    counters (``final["vmstat_node"]``, one dict per node) that `tierscan vmstat --node` and
    the per-node table read."""
    from tierscan.sim.results import RunResult
    from tierscan.sim.run import run_experiment

    progress = progress or RunProgress(show=False)
    result = run_experiment(cfg, progress=progress, command=command)
    if progress.engine is not None and "vmstat_node" not in result.final:
        final = dict(result.final)
        final["vmstat_node"] = node_vmstat(progress.engine)
        result = RunResult(meta=result.meta, series=result.series, final=final,
                           timing=result.timing)
    return result


def print_result_tables(console, result, raw: bool) -> None:
    from tierscan.report.tables import numastat_table, summary_table

    console.print(summary_table(result).to_rich(raw=raw))
    console.print(numastat_table(result).to_rich(raw=raw))


def plot_files(names: list[str] | None = None) -> list[str]:
    """Every file ``write_plots`` may write: the charts, and heatmap.png (one result, ``names``
    None or of length 1) or heatmap-NAME.png per result; for checking before any work."""
    from tierscan.report.plots import FILES

    heat = ["heatmap.png"] if not names or len(names) == 1 else \
        [f"heatmap-{n}.png" for n in names]
    return list(FILES.values()) + heat


def write_plots(results, out_dir, quiet: bool, names: list[str] | None = None) -> None:
    """plot_all, plus heatmap.png (one result) or heatmap-NAME.png (several, ``names`` in
    order, default 1, 2, ...) for each result that recorded a heatmap. All the PNGs appear
    together or, if one fails, none does (atomic_batch)."""
    from tierscan.report import atomic_batch
    from tierscan.report.heatmap import NO_HEATMAP, heatmap, heatmap_data
    from tierscan.report.plots import plot_all

    with atomic_batch():
        written, skipped = plot_all(results, out_dir)
        items = list(results.items()) if isinstance(results, dict) else [("", results)]
        names = names or [str(i + 1) for i in range(len(items))]
        for name, (label, r) in zip(names, items):
            data = heatmap_data(r)
            file = "heatmap.png" if len(items) == 1 else f"heatmap-{name}.png"
            if data is not None:
                written.append(heatmap(out_png=os.path.join(os.fspath(out_dir), file),
                                       title=f"access heatmap: {label}" if label else
                                       "access heatmap", **data))
            else:
                skipped.append(f"{file}: {NO_HEATMAP}")
    for path in written:
        note(f"wrote {path}", quiet)
    for msg in skipped:
        note(f"skipped {msg}", quiet)


# -- the command -----------------------------------------------------------------------------


def run(args) -> int:
    from tierscan.report import check_output_file, check_output_files
    from tierscan.sim.config import load_config
    from tierscan.sim.precheck import check_runnable

    cfg = load_config(args.config, args.overrides)
    for line in check_runnable(cfg):             # refuses what cannot run, warns on the rest
        note(f"tierscan: warning: {line}")
    # Refuse an unusable output path before spending the run's time.
    if args.json is not None:
        check_output_file(args.json, "result file")
    if args.plot is not None:
        check_output_files(args.plot, plot_files(), "plot directory")

    console = make_console()
    show = shows_progress(console, args.quiet)
    argv = getattr(args, "argv", None)
    command = ["tierscan", *argv] if argv is not None else None
    with RunProgress(show, console) as progress:
        result = run_config(cfg, progress, command=command)

    # Save first: a closed standard output (`| head -1`) must not lose a finished run.
    if args.json is not None:
        result.save(args.json)
        note(f"wrote {args.json}", args.quiet)
    if args.plot is not None:
        write_plots(result, args.plot, args.quiet)
    print_result_tables(console, result, args.raw)
    return 0


__all__ = ["RunProgress", "make_console", "node_vmstat", "note", "plot_files", "print_result_tables",
           "register", "run", "run_config", "shows_progress", "write_plots"]
