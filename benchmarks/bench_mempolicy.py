"""Per-page node choice of the interleave policies: mempolicy.interleave_targets (numpy, one
call per fault batch) against weighted_interleave_nid, the kernel's per-page loop, in one
process; then populating a weighted-interleave mapping end to end.

    cd /work/main && PYTHONPATH=src python3 benchmarks/bench_mempolicy.py [--quick]

Exits 1 if the two disagree.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from _report import add_json_arg, cpu_s, row, write_rows
from tierscan.kernel import Kernel
from tierscan.machine import Machine
from tierscan.mm.mempolicy import MemPolicy, interleave_targets, weighted_interleave_nid


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    add_json_arg(ap)
    args = ap.parse_args()
    n = 20_000 if args.quick else 200_000
    k = Kernel(Machine.preset("laptop"), seed=0)
    k.sysfs["mempolicy/weighted_interleave/node0"] = 3
    pol = MemPolicy.make("weighted-interleave", [0, 1], k.machine.nr_nodes)
    ilx = np.arange(n, dtype=np.int64) + (1 << 30)
    t = cpu_s()
    ref = [weighted_interleave_nid(pol, int(i), k.sysfs) for i in ilx]
    t_ref = cpu_s() - t
    reps = 20
    t = cpu_s()
    for _ in range(reps):
        fast = interleave_targets(pol, ilx, k.sysfs)
    t_fast = (cpu_s() - t) / reps
    ok = fast.tolist() == ref
    size = (64 if args.quick else 512) << 20
    mm = k.spawn("bench")
    mm.mmap(4 << 20, policy="bind", nodes=[1], populate=True)   # compile the access path
    t = cpu_s()
    mm.mmap(size, policy="weighted-interleave", nodes=[0, 1], populate=True)
    t_pop = cpu_s() - t
    pages = size >> 12
    t = cpu_s()
    mm.mmap(size, policy="bind", nodes=[1], populate=True)
    t_bind = cpu_s() - t
    rows = [
        row("interleave targets (weighted 3:1)", "vectorised", f"{n / t_fast / 1e6:.1f} M pages/s",
            None, f"x{t_ref / t_fast:.0f} vs the per-page kernel loop"),
        row("populate weighted interleave", "", f"{pages / t_pop / 1e6:.2f} M pages/s "
            f"({size >> 20} MiB)", None, f"x{t_bind / t_pop:.2f} of a one-node bind's speed"),
    ]
    for r in rows:
        print(f"{r['figure']:<36} {r['measured']:<28} {r['ratio']}")
    if not ok:
        print("MISMATCH: interleave_targets disagrees with weighted_interleave_nid")
    write_rows(args.json, rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
