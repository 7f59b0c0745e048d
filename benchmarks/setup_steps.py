"""Where the fixed cost of a run goes, step by step: CPU seconds of each set-up step of the
fixed-cost run (bench_run.py: Mode 1 NUMAB0 at full scale, 1,000 accesses a thread), after a
first run has loaded the fit and numba. Each step is timed by wrapping its function, so the
figures nest (``build_engine`` holds the others but ``engine.run``; the indented populate rows
are parts of the row above them).

    cd /work/main && PYTHONPATH=src python3 benchmarks/setup_steps.py [--runs 2]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time

from bench_run import fixed_cost_config

import tierscan.access.rate as rate
import tierscan.kernel as kernel
import tierscan.mm.memory as memory
import tierscan.mm.physmem as physmem
import tierscan.memsys.system as system
import tierscan.mm.process as process
import tierscan.mm.vmstat as vmstat
import tierscan.sim.engine as engine
import tierscan.sim.run as run
from tierscan.sim.config import config_from_dict

STEPS = [(run, "build_engine", "build_engine (all of the set-up)"),
         (process.MM, "mmap", "mmap + populate 8 GiB"),
         (memory, "do_first_touch_faults", "  populate: first-touch faults"),
         (memory, "add_new_folios", "    folio set-up (incl. LRU insertion)"),
         (kernel.Kernel, "lru_add", "      LRU insertion (lru_add)"),
         (physmem.PhysMem, "alloc", "    allocation (PhysMem.alloc)"),
         (memory, "install_ptes", "    page-table writes (install_ptes)"),
         (system.MemorySystem, "tick", "memsys tick (first solve: TLB, LLC)"),
         (rate.RateModel, "attach", "rate model attach (one on_phase)"),
         (rate.RateModel, "on_phase", "rate model on_phase (every call)"),
         (engine, "BinTiers", "heat-map tiers"),
         (vmstat.Vmstat, "as_dict", "vmstat snapshot"),
         (engine.Engine, "run", "engine.run (1,000 accesses a thread)")]


def timed(owner, name: str, label: str, acc: dict) -> None:
    f = getattr(owner, name)

    @functools.wraps(f)
    def wrapper(*a, **kw):
        t = time.process_time()
        try:
            return f(*a, **kw)
        finally:
            acc[label] = acc.get(label, 0.0) + time.process_time() - t

    setattr(owner, name, wrapper)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2, help="timed runs (default 2)")
    args = ap.parse_args(argv)
    acc: dict[str, float] = {}
    for owner, name, label in STEPS:
        timed(owner, name, label, acc)
    cfg = config_from_dict(fixed_cost_config(1.0))
    run.run_experiment(cfg)                       # the fit, numba's start
    for i in range(args.runs):
        acc.clear()
        t = time.process_time()
        run.run_experiment(cfg)
        total = time.process_time() - t
        print(f"run {i + 1}: {total:.2f} s CPU")
        for _, _, label in STEPS:
            print(f"  {label:40s} {acc.get(label, 0.0):6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
