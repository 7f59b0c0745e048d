"""kmigrated's migration queue: one pghot-v3 reproduction run with every batch migrated at its
flush (the reference: ``MigrationQueue.add`` refuses everything) and with a wake's batches
queued and migrated together, in one process, CPU seconds (time.process_time). The two
result files (without their timing block) must be byte-identical; exit 1 if not.

    cd /work/main && PYTHONPATH=src python3 benchmarks/bench_kmigrated.py [--source ibs]
        [--scale 0.25] [--json PATH]
"""

from __future__ import annotations

import argparse
import sys

from _report import add_json_arg, report_same_run, timed_run

from tierscan.experiments.pghot_v3 import SOURCES, config
from tierscan.mm import migrate


def timed(cfg: dict, queue: bool) -> tuple[float, str]:
    """(CPU s, result JSON without timing) of one run."""
    real = migrate.MigrationQueue.add
    if not queue:
        migrate.MigrationQueue.add = lambda self, heads, nid: False
    try:
        return timed_run(cfg)
    finally:
        migrate.MigrationQueue.add = real


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="numab2-pghot",
                    choices=[s for s in SOURCES if s not in ("numab0", "numab2")])
    ap.add_argument("--scale", type=float, default=1.0)
    add_json_arg(ap)
    args = ap.parse_args(argv)
    cfg = config(1, args.source, scale=args.scale)   # the fit (an engine of its own) first
    timed(config(1, args.source, scale=0.01), queue=True)   # compiled kernels loaded once
    ref, fast = timed(cfg, queue=False), timed(cfg, queue=True)
    return report_same_run(args.json, "kmigrated batches queued",
                           f"Mode 1 {args.source} (scale {args.scale:g})", ref, fast,
                           "per batch", "queued", "one migration per batch")


if __name__ == "__main__":
    sys.exit(main())
