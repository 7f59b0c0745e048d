"""Order-0 allocation speed (issue 13): PhysMem.alloc of a demotion batch (64 pages) on the
zen5-cxl CXL node at full size (252 GiB, 129k blocks) holding the pressure run's spilled
filler (75 GiB of order-0 pages), by the compiled pass (physmem._alloc_order0) and by its
numpy form (alloc_order0_reference), alternately on the same state: each allocation is freed
again before the next, so both forms see the same node and must return the same pfns
(checked). Two states: every used block full (the allocator then splits whole blocks from the
top: both forms read all the node's blocks), and 1% of the filler's pages freed at random
(partly used blocks low in the node: the compiled pass stops at the 64th free page).

With ``--pressure-scale s`` it also runs bench_pressure's scenario at scale s (after a 1/512
warm-up run, discarded) with the compiled order-0 allocation and with alloc_order0_reference
in its place, in the order compiled, numpy, numpy, compiled, checks that the counters agree
and prints the median CPU time of an ``evict_folios`` call in each.

    PYTHONPATH=src python3 benchmarks/bench_alloc.py [--calls 400] [--batch 64]
        [--pressure-scale 0.25 --pressure-duration 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from tierscan import Machine
from tierscan.mm.physmem import PhysMem

CXL = 2


def compare_pressure(scale: float, duration_s: float) -> None:
    """bench_pressure.run with order-0 alloc compiled and by its numpy form (ABBA)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_pressure

    compiled_alloc = PhysMem.alloc
    use_ref = [False]

    def alloc(self, nid, count, order=0):
        if use_ref[0] and order == 0 and count > 0:
            return self.alloc_order0_reference(nid, count)
        return compiled_alloc(self, nid, count, order)

    PhysMem.alloc = alloc
    try:
        bench_pressure.run(1 / 512, 2)           # one-off costs of a process's first run
        runs = []
        for ref in (False, True, True, False):
            use_ref[0] = ref
            runs.append(bench_pressure.run(scale, duration_s))
    finally:
        PhysMem.alloc = compiled_alloc
    if any(r["vm"] != runs[0]["vm"] for r in runs):
        raise SystemExit("compiled and numpy order-0 alloc disagree: "
                         + "; ".join(str(r["vm"]) for r in runs))
    ms = [f"{r['evict_ms']:.2f}" for r in runs]
    print(f"pressure x {scale:g}, {duration_s:g} s simulated, {runs[0]['evict_calls']:,} "
          f"evict_folios calls, median ms a call: compiled {ms[0]}, {ms[3]}, numpy {ms[1]}, "
          f"{ms[2]}; run CPU s: compiled {runs[0]['run_cpu_s']:.1f}, {runs[3]['run_cpu_s']:.1f},"
          f" numpy {runs[1]['run_cpu_s']:.1f}, {runs[2]['run_cpu_s']:.1f}; same counters")


def measure(pm: PhysMem, calls: int, batch: int) -> tuple[float, float]:
    """Median seconds of an allocation by each form, alternating (ABBA per pair)."""
    t_new, t_ref = [], []
    for i in range(calls):
        for ref in ((False, True) if i % 2 == 0 else (True, False)):
            t = time.perf_counter()
            got = pm.alloc_order0_reference(CXL, batch) if ref else pm.alloc(CXL, batch)
            (t_ref if ref else t_new).append(time.perf_counter() - t)
            pm.free(got)
            if ref:
                want = got
            else:
                have = got
        if not np.array_equal(have, want):
            raise SystemExit(f"compiled and numpy order-0 alloc disagree at call {i}")
    return float(np.median(t_new)), float(np.median(t_ref))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--filler-gib", type=float, default=75.0)
    ap.add_argument("--pressure-scale", type=float, default=0.0,
                    help="also the pressure scenario at this scale, compiled vs numpy (0: skip)")
    ap.add_argument("--pressure-duration", type=float, default=10.0)
    args = ap.parse_args(argv)
    pm = PhysMem(Machine.preset("zen5-cxl"))
    filler = pm.alloc(CXL, int(args.filler_gib * 2**30) // 4096)
    pm.alloc(CXL, 1)                       # warm the compiled pass before timing
    for label in ("used blocks full", "1% of the filler freed"):
        if label.startswith("1%"):
            rng = np.random.default_rng(0)
            pm.free(rng.choice(filler, filler.size // 100, replace=False))
        new, ref = measure(pm, args.calls, args.batch)
        print(f"alloc {args.batch} order-0 pages on the CXL node ({label}): compiled "
              f"{new * 1e6:.1f} us, numpy {ref * 1e6:.1f} us a call (x{ref / new:.1f}, median "
              f"of {args.calls}); same pfns")
    if args.pressure_scale > 0:
        del pm, filler
        compare_pressure(args.pressure_scale, args.pressure_duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
