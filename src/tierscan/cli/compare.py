"""`tierscan compare`: one workload, several hot-page sources, one table and one set of plots."""

from __future__ import annotations

import argparse
import json
import os

_EXAMPLES = """\
examples:
  tierscan compare --workload zipf --duration 2s --detectors klruscand,numab2,ibs,oracle,none
  tierscan compare --workload pghot-bench --set workload.mode=2 --set workload.scale=0.01 \\
      --machine zen5-cxl --detectors klruscand,numab2,numab2-pghot,ibs,none --plot plots/
  tierscan compare --workload hotset --set workload.size=256MiB --set workload.accesses=2000000 \\
      --model exact --detectors numab2,oracle --json-dir runs/
  tierscan compare --workload zipf --duration 1s --detectors klruscand,none --json | jq '.compare[].promoted_pages'

A workload that runs until stopped (zipf, uniform, hotset without accesses) needs --duration.

Sources: klruscand, ibs, numab2-pghot and numab3-pghot report into the promotion engine
(--engine, default pghot-v3); numab1, numab2 (upstream), numab3, kscand, damon and oracle
promote by themselves; none (alias numab0) runs without any."""

SELF_PROMOTING = {"numab1", "numab2", "numab3", "kscand", "damon", "oracle"}
NONE = {"none", "numab0"}


def register(subparsers) -> None:
    p = subparsers.add_parser("compare", help="compare hot-page sources on one workload",
                              description=__doc__, epilog=_EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", required=True, help="a workload name (docs/workloads.md)")
    p.add_argument("--detectors", required=True,
                   help="comma-separated sources, e.g. klruscand,numab2,ibs,oracle,none")
    p.add_argument("--machine", default="laptop",
                   help="a machine preset, or a machine TOML file (a name ending in .toml)")
    p.add_argument("--engine", default="pghot-v3", help="promotion engine for reporting sources")
    p.add_argument("--model", choices=["rate", "exact"], default="rate", help="access model")
    p.add_argument("--duration", help="run length, e.g. 5s (default: until the workload ends)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override a key of every run's config, e.g. workload.alpha=1.2")
    p.add_argument("--plot", metavar="DIR", help="write comparison PNGs into DIR")
    p.add_argument("--json-dir", metavar="DIR", help="save each run's result file in DIR")
    p.add_argument("--raw", action="store_true", help="raw numbers instead of human units")
    p.add_argument("--json", action="store_true",
                   help="print the comparison table as JSON (raw values, one record per source)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run_config(args, source: str) -> dict:
    d = {"name": source, "seed": args.seed, "access_model": args.model,
         "machine": {"file": os.path.abspath(args.machine)} if args.machine.endswith(".toml")
         else {"preset": args.machine}, "workload": {"name": args.workload}}
    if args.duration:
        d["duration"] = args.duration
    if source in SELF_PROMOTING:
        d["detectors"] = [{"name": source}]
    elif source not in NONE:
        d["detectors"] = [{"name": source}]
        d["engine"] = {"name": args.engine}
    return d


def run(args) -> int:
    import os

    from tierscan.cli.run import RunProgress, make_console, note, shows_progress
    from tierscan.errors import ConfigError
    from tierscan.report import atomic_batch, check_output_files
    from tierscan.report.plots import FILES, plot_all
    from tierscan.report.tables import compare_notes, compare_table
    from tierscan.sim.config import config_from_dict
    from tierscan.sim.precheck import check_runnable
    from tierscan.sim.run import run_experiment

    sources = [s.strip() for s in args.detectors.split(",") if s.strip()]
    if not sources:
        raise ConfigError("expected at least one source", field="--detectors")
    # Validate every run before running any (a missing duration, a node the machine lacks, an
    # unknown source), naming the source: "compare numab2: workload.node: ...".
    cfgs = {s: config_from_dict(run_config(args, s), where=f"compare {s}",
                                overrides=args.overrides) for s in sources}
    warned = set()
    for cfg in cfgs.values():
        for line in check_runnable(cfg):
            line = line.split(": ", 1)[1]                # said once, not once per source
            if line not in warned:
                warned.add(line)
                note(f"tierscan: warning: compare: {line}")
    # ... and every output path (nothing is created until the runs are done)
    if args.json_dir:
        check_output_files(args.json_dir, [f"{s}.json" for s in sources], "--json-dir")
    if args.plot:
        check_output_files(args.plot, list(FILES.values()), "plot directory")
    results = {}
    console = make_console()
    for source, cfg in cfgs.items():
        with RunProgress(shows_progress(console, args.quiet), console, label=source) as bar:
            results[source] = run_experiment(cfg, progress=bar)
        note(f"{source}: done", args.quiet)
        if args.json_dir:              # saved as each finishes: a later failure keeps it
            results[source].save(os.path.join(args.json_dir, f"{source}.json"))
    if args.plot:                      # files before standard output (a closed pipe)
        with atomic_batch():
            written, skipped = plot_all(results, args.plot)
        for line in skipped:
            note(line, args.quiet)
    table = compare_table(results)
    if args.json:
        print(json.dumps({"compare": table.records()}, indent=1, allow_nan=False))
    else:
        console.print(table.to_rich(raw=args.raw))
        for line in compare_notes(results):
            console.print(line, markup=False, highlight=False)
    return 0
