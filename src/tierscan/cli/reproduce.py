"""`tierscan reproduce pghot-v3`: the pghot RFC v3 experiment, our numbers beside the cover
letter's (docs/reproductions.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tierscan.cli.args import int_at_least
from tierscan.report import atomic_write, check_output_file, check_output_files
from tierscan.sweep.pool import usable_cores

_EXAMPLES = """\
examples:
  tierscan reproduce pghot-v3 --mode 2                   # one mode, full scale
  tierscan reproduce pghot-v3 --mode all --json out.json
  tierscan reproduce pghot-v3 --mode all --jobs 1        # one process, a progress bar per run
  tierscan reproduce pghot-v3 --mode 1 --scale 0.05      # a quick, smaller run
  tierscan reproduce pghot-v3 --mode 3 --fit each        # Mode 3 on its published time scale
  tierscan reproduce pghot-v3 --mode 2 --json-dir runs/  # also keep every run's result
  tierscan report runs/mode2-numab2.json                 # its time-to-promote, plots, ...

Five sources per mode: numab0, numab2 (upstream), numab2-pghot, klruscand (500 ms) and
ibs, the last three into pghot v3. The per-thread access count is the one fitted value
(to the published NUMAB0 Mode 1 time); every other number is a prediction.

The runs go to --jobs worker processes, longest first; the tables and result files are the
same as with --jobs 1. Memory: each worker holds one run; a full-scale Mode 3 run (64 GiB of
THPs) peaked at 2.8 GiB resident, so allow --jobs N x 3-4 GiB. Full scale, --mode all: ~65 s
CPU in all processes, 34 s wall on 2 idle cores (measured; docs/performance.md)."""


def register(subparsers) -> None:
    p = subparsers.add_parser("reproduce", help="reproduce a published experiment",
                              description=__doc__, epilog=_EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=["pghot-v3"], help="the experiment to reproduce")
    p.add_argument("--mode", default="all", choices=["1", "2", "3", "all"],
                   help="benchmark mode (default all)")
    p.add_argument("--runs", type=int, default=1, help="runs per configuration (default 1)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply footprint and accesses (0 < SCALE <= 1, default 1)")
    p.add_argument("--model", choices=["rate", "exact"], default="rate", help="access model")
    p.add_argument("--fit", choices=["mode1", "each"], default="mode1",
                   help="fit the per-thread access count to NUMAB0 of Mode 1 only (default: "
                        "the one fitted value) or of each mode (two more fitted values)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latency-model", choices=["loaded", "idle"], default="loaded",
                   help="loaded: device curves, closed loop, TLB, LLC (default); idle: the "
                        "idle-latency sum")
    p.add_argument("--dram-channels", type=int, metavar="N",
                   help="memory configuration: N DRAM channels populated per socket "
                        "(default: the preset's)")
    p.add_argument("--cxl-devices", type=int, metavar="N",
                   help="memory configuration: N CXL devices behind the CXL node "
                        "(default: the preset's)")
    p.add_argument("--page-tables", choices=["local", "membind"], default="local",
                   help="where Modes 1-2 keep their page tables: the CPU's node (default) or "
                        "the CXL node (numactl --membind)")
    p.add_argument("--json", metavar="OUT", help="save the result table as JSON")
    p.add_argument("--json-dir", metavar="DIR",
                   help="save every run's full result as DIR/modeM-SOURCE[-runN].json")
    p.add_argument("-j", "--jobs", metavar="N", type=int_at_least(1, "a number of processes"),
                   default=None,
                   help=f"runs in parallel, one worker process each (default: the usable CPUs, "
                        f"{usable_cores()}; 1: every run in this process)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.table import Table

    from tierscan.cli.run import RunProgress, make_console, note, shows_progress
    from tierscan.errors import ConfigError
    from tierscan.experiments.pghot_v3 import SOURCES, reproduce

    if not 0 < args.scale <= 1:
        raise ConfigError(f"expected 0 < SCALE <= 1, got {args.scale:g}", field="--scale")
    if args.runs < 1:
        raise ConfigError(f"expected an integer >= 1, got {args.runs}", field="--runs")
    for name in ("dram_channels", "cxl_devices"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"expected an integer >= 1, got {value}",
                              field=f"--{name.replace('_', '-')}")
    memory = {"dram_channels": args.dram_channels, "cxl_devices": args.cxl_devices}
    memory = memory if any(memory.values()) else None
    modes = (1, 2, 3) if args.mode == "all" else (int(args.mode),)
    if args.json:                                        # fail before minutes of runs
        check_output_file(args.json, "result table")
    save = None
    if args.json_dir:
        def name(mode, source, run):
            return f"mode{mode}-{source}{f'-run{run + 1}' if args.runs > 1 else ''}.json"

        out_dir = Path(args.json_dir)
        check_output_files(out_dir, [name(m, s, r) for m in modes for s in SOURCES
                                     for r in range(args.runs)], "--json-dir")

        def save(result, mode, source, run):
            result.save(out_dir / name(mode, source, run))
    console = make_console()
    show = shows_progress(console, args.quiet)
    jobs = args.jobs or usable_cores()
    n_runs = len(modes) * len(SOURCES) * args.runs
    if jobs > 1 and n_runs > 1:
        note(f"{n_runs} runs on {min(jobs, n_runs)} worker processes, longest first",
             args.quiet)

    def done(m, s, r, info):
        note(f"mode {m}: {s} run {r + 1} done ({info['wall_s']:.1f} s wall, "
             f"{info['cpu_s']:.1f} s CPU; its process's peak RSS so far "
             f"{info['peak_rss_bytes'] / 2**30:.1f} GiB)", args.quiet)

    out = reproduce(modes, scale=args.scale, runs=args.runs, seed=args.seed,
                    access_model=args.model, fit=args.fit, save=save,
                    latency_model=args.latency_model, memory=memory,
                    page_tables=args.page_tables, jobs=jobs, progress=done,
                    run_progress=lambda m, s, r: RunProgress(show, console,
                                                             label=f"mode {m} {s}"))
    for mode, row in out["modes"].items():
        t = Table(title=f"pghot RFC v3, Mode {mode} (ours vs published)")
        for col in ("source", "time (s)", "published (s)", "ratio", "published ratio",
                    "migrated", "published migrated"):
            t.add_column(col, justify="left" if col == "source" else "right")
        for source, c in row.items():
            p = c["published"]
            t.add_row(source, f"{c['runtime_us'] / 1e6:.1f}", f"{p['runtime_us'] / 1e6:.1f}",
                      f"{c['ratio_to_numab0']:.3f}", f"{p['ratio_to_numab0']:.3f}",
                      f"{c['promoted']:,}", f"{p['promoted']:,}")
        console.print(t)
    for o in out["orderings"]:
        console.print(f"Mode {o['mode']}: {o['ordering']:<32} {'holds' if o['holds'] else 'does NOT hold'}")
    if args.json:
        text = json.dumps(out, indent=1, sort_keys=True) + "\n"
        atomic_write(args.json, lambda f: f.write(text))
    return 0
