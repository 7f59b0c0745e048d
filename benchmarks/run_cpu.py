"""CPU seconds of one pghot-v3 reproduction run and a digest of its result file, for timing
two checkouts back to back in separate processes (changes that have no switch to compare
them in one process; a later run in a process is cheaper, so alternate: A, B, B, A).

    PYTHONPATH=/path/to/checkout/src python3 benchmarks/run_cpu.py [--source ibs] [--mode 1]
        [--scale 1]

The configuration's fit and a scale-0.01 run (numba's start, the compiled kernels) come
first, untimed; then the run, timed as ``_report.timed_run`` times it (time.process_time
around run_experiment). Prints the CPU seconds and the md5 of the result file without its
timing block (equal digests: the same results).
"""

from __future__ import annotations

import argparse
import hashlib
import sys

from _report import timed_run

from tierscan.experiments.pghot_v3 import SOURCES, config


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="ibs", choices=SOURCES)
    ap.add_argument("--mode", type=int, choices=(1, 2, 3), default=1)
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args(argv)
    cfg = config(args.mode, args.source, scale=args.scale)
    timed_run(config(args.mode, args.source, scale=0.01))
    spent, out = timed_run(cfg)
    print(f"Mode {args.mode} {args.source}, scale {args.scale:g}: {spent:.2f} s CPU, result "
          f"md5 {hashlib.md5(out.encode()).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
