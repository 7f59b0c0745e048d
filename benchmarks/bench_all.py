"""Run every benchmark and print one table: figure, goal, measured, ratio against the
reference measured in the same process, and whether the goal is met (issue 15).

    cd /work/main && PYTHONPATH=src python3 benchmarks/bench_all.py [--quick]

Each benchmark runs in its own process (so peak memory figures are its own) with --json; its
own detailed output goes to benchmarks/out/NAME.log. Exit status 1 if a benchmark failed
(a fast path that differs from its reference), not for a goal missed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (script, arguments for a full run, arguments for --quick)
BENCHES = [
    ("bench_run.py", [], ["--quick"]),
    ("bench_walk.py", [], ["--quick"]),
    ("bench_engine.py", [], ["--quick"]),
    # 8 GiB in --quick too: populating goes by 1 GiB pieces, so a 1 GiB mapping would be one
    # piece and its peak not the figure's
    ("bench_memory.py", [], []),
    ("bench_sample.py", [], ["--repeat", "2"]),
    ("bench_access.py", [], ["--quick"]),
    ("bench_memsys.py", [], ["--scale", "0.125"]),
    ("bench_kmigrated.py", [], ["--scale", "0.05"]),
    ("bench_kmigrated.py", ["--reference", "wake"], ["--scale", "0.05", "--reference", "wake"]),
    ("bench_ibs.py", [], ["--scale", "0.05"]),
    ("bench_tick.py", ["--scale", "1"], ["--scale", "0.05"]),
    ("bench_migrate.py", [], ["--scale", "0.05"]),
]


def main(argv=None) -> int:
    from rich.console import Console
    from rich.table import Table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs of every benchmark")
    ap.add_argument("--only", nargs="*", help="run only these scripts (e.g. bench_walk.py)")
    ap.add_argument("--markdown", metavar="PATH",
                    help="also write the table as markdown (docs/performance.md's form)")
    args = ap.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)   # a log keeps rows whole
    log_dir = HERE / "out"
    log_dir.mkdir(exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent / "src"),
                                                      env.get("PYTHONPATH")]))
    rows, failed = [], []
    logs: set[str] = set()
    for script, full, quick in BENCHES:
        if args.only and script not in args.only:
            continue
        log_name = f"{script[:-3]}.log"
        if log_name in logs:                        # a script run twice keeps both logs
            log_name = f"{script[:-3]}-{len(logs)}.log"
        logs.add(log_name)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rows.json"
            cmd = [sys.executable, str(HERE / script), *(quick if args.quick else full),
                   "--json", str(out)]
            t = time.perf_counter()
            console.print(f"[dim]running {script} ...[/dim]")
            with open(log_dir / log_name, "w") as log:
                rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    cwd=HERE.parent).returncode
            console.print(f"[dim]  {script}: exit {rc}, {time.perf_counter() - t:.0f} s wall, "
                          f"log in {log_dir / log_name}[/dim]")
            if rc != 0:
                failed.append(script)
            if out.exists():
                rows += [dict(r, bench=script) for r in json.loads(out.read_text())]
    table = Table(title="tierscan benchmarks (issue 15): fast paths vs references in one process")
    for col in ("figure", "goal", "measured", "ratio (same process)", "met", "benchmark"):
        table.add_column(col, justify="left", overflow="fold")
    for r in rows:
        met = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "-"}[r["met"]]
        table.add_row(r["figure"], r["goal"], r["measured"], r["ratio"], met, r["bench"])
    console.print(table)
    if args.markdown:
        Path(args.markdown).write_text(markdown(rows))
    if failed:
        console.print(f"[red]failed (a fast path differs from its reference, or an error): "
                      f"{', '.join(failed)}[/red]")
    return 1 if failed else 0


def markdown(rows: list[dict]) -> str:
    met = {True: "yes", False: "no", None: "-"}
    lines = ["| figure | goal | measured | ratio (same process) | met | benchmark |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['figure']} | {r['goal']} | {r['measured']} | {r['ratio'] or '-'} | "
              f"{met[r['met']]} | {r['bench']} |" for r in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
