"""`tierscan report`: tables, CSV and plots from saved results, without re-running."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from tierscan.errors import ConfigError

_EXAMPLES = """\
examples:
  tierscan report runs/exp.json                       # summary, per-node and vmstat tables
  tierscan report runs/*.json                         # one comparison row per run
  tierscan report runs/a.json runs/b.json --plot plots/ --csv tables/
  tierscan report runs/exp.json --raw                 # raw numbers (ns, pages, ratios)
  tierscan report runs/exp.json --json | jq .results[0].summary.pgpromote_success
  tierscan report runs/exp.json --heatmap             # access heatmap in the terminal
  tierscan report sweep-runs/                         # a sweep: pivot of its summary table
  tierscan report sweep-runs/ --rows seed --cols workload.alpha --metric recall --plot plots/

--plot writes hit_ratio.png, resident.png, promotions.png, cpu_overhead.png and
time_to_promote.png (those two when the runs have the data), and heatmap.png when a run
recorded a heatmap; several results share one chart each, labelled by detector.
--csv writes compare.csv and, per result, STEM-summary.csv, STEM-numastat.csv and
STEM-vmstat.csv (STEM = the result file's name without .json), all in raw units.
Given a sweep's output directory, report prints a pivot of OUT/summary.parquet: --rows and
--cols name grid parameters (default: the first two), --metric a headline metric (default:
runtime_ns, or throughput_per_s for duration-bound runs); --plot draws the metric against
--rows, one line per value of --cols (sweep-METRIC.png); --csv writes pivot.csv."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="tables, CSV and plots from saved results",
        description="Re-render the tables and plots of one or more saved results\n"
                    "(tierscan run --json, tierscan sweep) without re-running them.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", metavar="RESULT.json", nargs="+",
                   help="result files, or one sweep output directory")
    p.add_argument("--plot", metavar="DIR", help="write PNG charts into DIR")
    p.add_argument("--csv", metavar="DIR", help="write the tables as CSV into DIR")
    p.add_argument("--raw", action="store_true",
                   help="raw numbers and machine keys instead of human units")
    p.add_argument("--json", action="store_true",
                   help="print the tables as one JSON document instead")
    p.add_argument("--heatmap", action="store_true",
                   help="draw each result's access heatmap in the terminal")
    sweep = p.add_argument_group("a sweep directory")
    sweep.add_argument("--rows", metavar="PARAM", help="grid parameter of the pivot's rows")
    sweep.add_argument("--cols", metavar="PARAM", help="grid parameter of the pivot's columns")
    sweep.add_argument("--metric", metavar="NAME", help="the metric in the cells")
    p.set_defaults(func=run)


def _stems(paths: list[str]) -> list[str]:
    """File names without .json, made unique with -2, -3... in order."""
    out: list[str] = []
    for p in paths:
        base = os.path.basename(p)
        stem = base[:-5] if base.endswith(".json") else base
        name, k = stem, 2
        while name in out:
            name, k = f"{stem}-{k}", k + 1
        out.append(name)
    return out


def _csv_files(stems: list[str]) -> list[str]:
    return ["compare.csv"] + [f"{stem}-{name}.csv" for stem in stems
                              for name in ("summary", "numastat", "vmstat")]


def run(args) -> int:
    from tierscan.cli.run import make_console, note, plot_files, write_plots
    from tierscan.report import atomic_batch, check_output_files
    from tierscan.report.heatmap import NO_HEATMAP, heatmap_data, heatmap_text
    from tierscan.report.tables import (compare_notes, compare_table, numastat_table,
                                        summary_metrics,
                                        summary_table, unique_labels, vmstat_table)
    from tierscan.sim.results import RunResult

    if len(args.results) == 1 and os.path.isdir(args.results[0]):
        return report_sweep(args)
    for flag in ("rows", "cols", "metric"):
        if getattr(args, flag) is not None:
            raise ConfigError("goes with a sweep output directory, not result files",
                              where=f"--{flag}")
    results = [RunResult.load(p) for p in args.results]   # all or nothing: load every file first
    stems = _stems(args.results)
    if args.plot is not None:
        check_output_files(args.plot, plot_files(stems), "plot directory")
    if args.csv is not None:
        check_output_files(args.csv, _csv_files(stems), "CSV directory")
    labelled = unique_labels(zip(stems, results))
    labels = list(labelled)

    # Files first, standard output last (a closed pipe must not lose them).
    if args.csv is not None:
        with atomic_batch():
            written = [compare_table(labelled).write_csv(os.path.join(args.csv, "compare.csv"))]
            for stem, r in zip(stems, results):
                for name, table in (("summary", summary_table(r)), ("numastat", numastat_table(r)),
                                    ("vmstat", vmstat_table(r, names="all"))):
                    written.append(table.write_csv(os.path.join(args.csv, f"{stem}-{name}.csv")))
        for p in written:
            note(f"wrote {p}")
    if args.plot is not None:
        write_plots(labelled, args.plot, quiet=False, names=stems)

    if args.json:
        doc = {
            "results": [{"file": path, "label": label,
                         "summary": {m.key: _json_number(m.value) for m in summary_metrics(r)},
                         "numastat": numastat_table(r).records(),
                         "vmstat": r.final.get("vmstat"),
                         "vmstat_node": r.final.get("vmstat_node")}
                        for path, label, r in zip(args.results, labels, results)],
            "compare": compare_table(labelled).records(),
        }
        print(json.dumps(doc, indent=1, allow_nan=False))
    else:
        console = make_console()
        if len(results) == 1:
            r = results[0]
            console.print(summary_table(r).to_rich(raw=args.raw))
            console.print(numastat_table(r).to_rich(raw=args.raw))
            console.print(vmstat_table(r).to_rich(raw=args.raw))
        else:
            console.print(compare_table(labelled).to_rich(raw=args.raw))
            for line in compare_notes(labelled):
                console.print(line, markup=False, highlight=False)
            for label, r in labelled.items():
                t = numastat_table(r)
                t.title = f"{label}: {t.title}"
                console.print(t.to_rich(raw=args.raw))
        if args.heatmap:
            for path, label, r in zip(args.results, labels, results):
                data = heatmap_data(r)
                if data is None:
                    print(f"{path}: {NO_HEATMAP}", file=sys.stderr)
                    continue
                console.print(f"{label}: access heatmap", markup=False, style="bold")
                console.print(heatmap_text(width=min(console.width - 2, 100), **data))

    return 0


def report_sweep(args) -> int:
    """The pivot (and plot) of a sweep directory's summary table."""
    from tierscan.cli.run import make_console, note
    from tierscan.report import check_output_files
    from tierscan.sweep.pivot import choose, load_summary, pivot, plot_metric

    out_dir = args.results[0]
    rows = load_summary(out_dir)
    row_key, col_key, metric = choose(rows, args.rows, args.cols, args.metric, out_dir)
    table = pivot(rows, row_key, col_key, metric)
    csv_file = plot_file = None
    if args.csv is not None:
        csv_file = check_output_files(args.csv, ["pivot.csv"], "CSV directory")[0]
    if args.plot is not None:
        plot_file = check_output_files(args.plot, [f"sweep-{metric}.png"], "plot directory")[0]
    # Files first, standard output last (a closed pipe must not lose them).
    if csv_file is not None:
        note(f"wrote {table.write_csv(csv_file)}")
    if plot_file is not None:
        note(f"wrote {plot_metric(rows, row_key, col_key, metric, plot_file)}")
    if args.json:
        print(json.dumps({"pivot": table.records()}, indent=1, allow_nan=False))
    else:
        make_console().print(table.to_rich(raw=args.raw))
    return 0


def _json_number(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v
