"""kmigrated's migration queue: one pghot-v3 reproduction run with every batch migrated at its
flush (the reference: ``MigrationQueue.add`` refuses everything) and with a wake's batches
queued and migrated together, in one process, CPU seconds (time.process_time). The two
result files (without their timing block) must be byte-identical; exit 1 if not.

    cd /work/main && PYTHONPATH=src python3 benchmarks/bench_kmigrated.py [--source ibs]
        [--scale 0.25] [--json PATH]
"""

from __future__ import annotations

import argparse
import io
import sys

from _report import add_json_arg, cpu_s, row, write_rows

from tierscan.experiments.pghot_v3 import SOURCES, config
from tierscan.mm import migrate
from tierscan.sim.config import config_from_dict
from tierscan.sim.run import run_experiment


def timed(cfg: dict, queue: bool) -> tuple[float, str]:
    """(CPU s, result JSON without timing) of one run."""
    real = migrate.MigrationQueue.add
    if not queue:
        migrate.MigrationQueue.add = lambda self, heads, nid: False
    try:
        t = cpu_s()
        res = run_experiment(config_from_dict(cfg))
        spent = cpu_s() - t
    finally:
        migrate.MigrationQueue.add = real
    out = io.StringIO()
    res.save(out, include_timing=False)
    return spent, out.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="numab2-pghot",
                    choices=[s for s in SOURCES if s not in ("numab0", "numab2")])
    ap.add_argument("--scale", type=float, default=1.0)
    add_json_arg(ap)
    args = ap.parse_args(argv)
    cfg = config(1, args.source, scale=args.scale)   # the fit (an engine of its own) first
    timed(config(1, args.source, scale=0.01), queue=True)   # compiled kernels loaded once
    ref_s, ref = timed(cfg, queue=False)
    fast_s, fast = timed(cfg, queue=True)
    same = ref == fast
    print(f"Mode 1 {args.source}, scale {args.scale:g}: per batch {ref_s:.2f} s CPU, queued "
          f"{fast_s:.2f} s CPU (x{ref_s / fast_s:.2f}); results "
          f"{'identical' if same else 'DIFFERENT'}")
    write_rows(args.json, [row(
        f"kmigrated batches queued, Mode 1 {args.source} (scale {args.scale:g})", "-",
        f"{fast_s:.1f} s CPU ({'same result' if same else 'RESULT DIFFERS'})", None,
        f"x{ref_s / fast_s:.2f} vs one migration per batch")])
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
