"""kmigrated's fast paths: one pghot-v3 reproduction run with a reference form of kmigrated's
wake and with the fast one, twice each in one process, CPU seconds (time.process_time). The
result files (without their timing block) must be byte-identical; exit 1 if not.

References (``--reference``): ``per-batch`` (the default) migrates every batch at its flush
(``MigrationQueue.add`` refuses everything) against the queue that migrates a wake's batches
together; ``wake`` runs kmigrated's wake in its reference forms (``PghotV3.fast_wake =
False``: admission windows judging prepare per window and selecting each destination, the
walk's THP blocks read twice; ``migrate.split_sites_reference``: the queued batches' rmap
sites masked once per batch) against the fast ones, both with the queue.

    cd /work/main && PYTHONPATH=src python3 benchmarks/bench_kmigrated.py [--source ibs]
        [--scale 0.25] [--reference wake] [--json PATH]
"""

from __future__ import annotations

import argparse
import sys

from _report import add_json_arg, mean_of, report_same_run, timed_run

from tierscan.experiments.pghot_v3 import SOURCES, config
from tierscan.mm import migrate
from tierscan.promote.pghot import PghotV3

# reference name: (figure, reference's label, fast path's label, what the ratio is against)
REFERENCES = {
    "per-batch": ("kmigrated batches queued", "per batch", "queued",
                  "one migration per batch"),
    "wake": ("kmigrated wake", "reference", "fast", "the reference forms of the wake"),
}


def timed(cfg: dict, reference: str | None) -> tuple[float, str]:
    """(CPU s, result JSON without timing) of one run, with ``reference``'s form (None: the
    fast paths)."""
    real = migrate.MigrationQueue.add, PghotV3.fast_wake, migrate.split_sites
    if reference == "per-batch":
        migrate.MigrationQueue.add = lambda self, heads, nid: False
    elif reference == "wake":
        PghotV3.fast_wake = False
        migrate.split_sites = migrate.split_sites_reference
    try:
        return timed_run(cfg)
    finally:
        migrate.MigrationQueue.add, PghotV3.fast_wake, migrate.split_sites = real


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="numab2-pghot",
                    choices=[s for s in SOURCES if s not in ("numab0", "numab2")])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--reference", choices=list(REFERENCES), default="per-batch")
    add_json_arg(ap)
    args = ap.parse_args(argv)
    cfg = config(1, args.source, scale=args.scale)   # the fit (an engine of its own) first
    timed(config(1, args.source, scale=0.01), None)   # compiled kernels loaded once
    # reference, fast, fast, reference: a run is cheaper the later it comes in a process
    # (measured: 3.95, 3.42 s for the same form first and third), so each form gets one
    # early and one late run, and its figure is their mean
    runs = [timed(cfg, form) for form in (args.reference, None, None, args.reference)]
    ref, fast = mean_of(runs[0], runs[3]), mean_of(runs[1], runs[2])
    figure, ref_name, fast_name, versus = REFERENCES[args.reference]
    return report_same_run(args.json, figure, f"Mode 1 {args.source} (scale {args.scale:g})",
                           ref, fast, ref_name, fast_name, versus)


if __name__ == "__main__":
    sys.exit(main())
