"""Order-0 allocation speed (issue 13): PhysMem.alloc of a demotion batch (64 pages) on the
zen5-cxl CXL node at full size (252 GiB, 129k blocks) holding the pressure run's spilled
filler (75 GiB of order-0 pages), by the compiled pass (physmem._alloc_order0) and by its
numpy form (alloc_order0_reference), alternately on the same state: each allocation is freed
again before the next, so both forms see the same node and must return the same pfns
(checked). Two states: every used block full (the allocator then splits whole blocks from the
top: both forms read all the node's blocks), and 1% of the filler's pages freed at random
(partly used blocks low in the node: the compiled pass stops at the 64th free page).

    PYTHONPATH=src python3 benchmarks/bench_alloc.py [--calls 400] [--batch 64]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from tierscan import Machine
from tierscan.mm.physmem import PhysMem

CXL = 2


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
