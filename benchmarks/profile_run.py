"""Where a reproduction's CPU time goes: cProfile, timed by CPU time (time.process_time, so
other users of a shared machine do not show up), of `tierscan reproduce pghot-v3 --mode M`
(all five sources in one process, or one with --source), as a table of the functions with the
most time of their own (docs/performance.md).

    cd /work/main && PYTHONPATH=src python3 benchmarks/profile_run.py --mode 1 [--scale S]
        [--source klruscand] [--top 25] [-o mode1.prof] [--warm]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time

from tierscan.experiments.pghot_v3 import SOURCES, config, reproduce
from tierscan.sim.config import config_from_dict
from tierscan.sim.run import run_experiment


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", type=int, choices=(1, 2, 3), default=1)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--source", choices=SOURCES, help="one source only (default: all five)")
    ap.add_argument("--top", type=int, default=25, help="rows of the table (default 25)")
    ap.add_argument("-o", "--out", help="also save the profile (pstats format)")
    ap.add_argument("--warm", action="store_true",
                    help="make the configuration's fit (and so numba's start) before profiling: "
                         "the profile of a run that is not the first of its process")
    args = ap.parse_args(argv)
    if args.warm:
        t = time.process_time()
        config(args.mode, args.source or "numab0", scale=args.scale)
        print(f"(before profiling: the fit and numba's start, {time.process_time() - t:.1f} s "
              f"CPU)")
    prof = cProfile.Profile(time.process_time)
    t = time.process_time()
    prof.enable()
    if args.source:
        run_experiment(config_from_dict(config(args.mode, args.source, scale=args.scale)))
    else:
        reproduce((args.mode,), scale=args.scale)
    prof.disable()
    total = time.process_time() - t
    if args.out:
        prof.dump_stats(args.out)
    st = pstats.Stats(prof)
    rows = sorted(((v[2], v[3], k) for k, v in st.stats.items()), reverse=True)[:args.top]
    what = args.source or "five sources"
    print(f"pghot-v3 Mode {args.mode} ({what}, scale {args.scale:g}): {total:.1f} s CPU "
          f"under cProfile")
    print("| function | own CPU (s) | share | with callees (s) |")
    print("|---|---:|---:|---:|")
    for own, cum, (path, line, name) in rows:
        where = path.split("/src/")[-1] if "/src/" in path else path.split("/")[-1]
        print(f"| `{name}` ({where}:{line}) | {own:.2f} | {own / total:.1%} | {cum:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
