"""Where the fixed cost of a run goes, step by step: CPU seconds of each set-up step of the
fixed-cost run (bench_run.py: Mode 1 NUMAB0 at full scale, 1,000 accesses a thread), after a
first run has loaded the fit and numba. Each step is timed by wrapping its function, so the
figures nest (``build_engine`` holds the others but ``engine.run``; the indented populate rows
are parts of the row above them).

    cd /work/main && PYTHONPATH=src python3 benchmarks/setup_steps.py [--runs 2] [--reference]
        [--mode 3] [--no-memo]

``--reference`` times each run twice in the same process, with the fault path's compiled
passes and with their numpy forms (mm/memory.COMPILED, mm/lru_gen.REFERENCE off/on), and
prints the ratio of the populate rows (the results of the two are the same:
tests/test_populate_paths.py). ``--mode 3`` times Mode 3's run instead (64 GiB of THPs);
``--no-memo`` turns off memsys's memo of phase solutions (memsys/memo.py), which otherwise
answers every timed run's first solve from the first run (or the configuration's fit).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time

from bench_run import fixed_cost_config

import tierscan.memsys.memo as memo

import tierscan.access.rate as rate
import tierscan.kernel as kernel
import tierscan.mm.memory as memory
import tierscan.mm.migrate as migrate
import tierscan.mm.physmem as physmem
import tierscan.memsys.system as system
import tierscan.mm.lru_gen as lru_gen
import tierscan.mm.process as process
import tierscan.mm.vmstat as vmstat
import tierscan.sim.engine as engine
import tierscan.sim.run as run
from tierscan.sim.config import config_from_dict

STEPS = [(run, "build_engine", "build_engine (all of the set-up)"),
         (process.MM, "mmap", "mmap + populate"),
         (memory, "do_first_touch_faults", "  populate: first-touch faults"),
         (memory, "add_new_folios", "    folio set-up (incl. LRU insertion)"),
         (kernel.Kernel, "lru_add", "      LRU insertion (lru_add)"),
         (physmem.PhysMem, "alloc", "    allocation (PhysMem.alloc)"),
         (memory, "install_ptes", "    page-table writes (install_ptes)"),
         (process.MM, "move_pages", "move_pages (Mode 3: all THPs to CXL)"),
         (migrate, "move_folios", "  move_folios"),
         (migrate, "rmap_walk", "    rmap_walk"),
         (physmem.PhysMem, "free", "    PhysMem.free"),
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
    ap.add_argument("--reference", action="store_true",
                    help="also time each run with the fault path's numpy forms; print ratios")
    ap.add_argument("--mode", type=int, default=1, choices=(1, 2, 3),
                    help="the pghot-v3 mode whose NUMAB0 run is timed (default 1)")
    ap.add_argument("--no-memo", action="store_true",
                    help="compute every phase solution (memsys/memo.py off)")
    args = ap.parse_args(argv)
    memo.ENABLED = not args.no_memo
    acc: dict[str, float] = {}
    for owner, name, label in STEPS:
        timed(owner, name, label, acc)
    cfg = config_from_dict(fixed_cost_config(1.0, args.mode))
    run.run_experiment(cfg)                       # the fit, numba's start
    forms = [False, True] if args.reference else [False]
    for i in range(args.runs):
        steps = {}
        for reference in forms:
            memory.COMPILED, lru_gen.REFERENCE = not reference, reference
            acc.clear()
            t = time.process_time()
            run.run_experiment(cfg)
            steps[reference] = dict(acc, total=time.process_time() - t)
        memory.COMPILED, lru_gen.REFERENCE = True, False
        print(f"run {i + 1}: {steps[False]['total']:.2f} s CPU"
              + (f" (numpy forms: {steps[True]['total']:.2f})" if args.reference else ""))
        for _, _, label in STEPS:
            row = f"  {label:40s} {steps[False].get(label, 0.0):6.3f}"
            if args.reference:
                ref = steps[True].get(label, 0.0)
                ratio = ref / max(steps[False].get(label, 0.0), 1e-9)
                row += f"   numpy forms {ref:6.3f}  x{ratio:.2f}"
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
