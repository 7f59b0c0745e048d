"""Inverse-CDF page sampling (workload/distributions.py), distinct values of integer keys
(arrays.unique), per-node page counts (Kernel.node_pages) and a run's per-phase set-up
(MM.translate, memsys's TLB and LLC solution), each against the simple form it replaced, in
one process.

    cd /work/main && PYTHONPATH=src python3 benchmarks/bench_sample.py

See benchmarks/README.md. Every fast path must give the reference's exact result; the script
checks that and exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from _report import add_json_arg, row, write_rows
from tierscan.arrays import unique
from tierscan.experiments.pghot_v3 import config
from tierscan.mm.constants import PG_allocated, PG_anon, PG_reserved
from tierscan.sim.config import config_from_dict
from tierscan.sim.run import build_engine
from tierscan.workload.distributions import Uniform


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t)
    return best, out


def reference_sample(dist, n, count, seed):
    """The plain inverse CDF: one searchsorted over the unsorted uniforms."""
    cdf = dist.cdf(n)
    u = np.random.default_rng(seed).random(count) * cdf[-1]
    return np.minimum(np.searchsorted(cdf, u, side="right"), n - 1)


def reference_node_pages(k):
    """The former Kernel.node_pages: the node of every used pfn by searchsorted, then bincount."""
    pm = k.pm
    used = (pm.flags & (PG_allocated | PG_reserved)) == PG_allocated
    nids = pm.node_of(np.flatnonzero(used))
    anon = (pm.flags[used] & PG_anon) != 0
    n = k.machine.nr_nodes
    thp = used & (pm.order > 0) & ((pm.flags & PG_anon) != 0)
    return {"anon": np.bincount(nids[anon], minlength=n),
            "file": np.bincount(nids[~anon], minlength=n),
            "anon_thp": np.bincount(pm.node_of(np.flatnonzero(thp)), minlength=n)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="best of this many timings")
    add_json_arg(ap)
    args = ap.parse_args(argv)
    ok = True
    rows = []
    dist = Uniform()
    print("sampling: Uniform over n pages, count draws, best of", args.repeat)
    for n, count in ((2_097_152, 2_300), (2_097_152, 100_000), (16_777_216, 1_000_000)):
        t_fast, fast = best_of(lambda: dist.sample(n, count, np.random.default_rng(1)),
                               args.repeat)
        t_ref, ref = best_of(lambda: reference_sample(dist, n, count, 1), args.repeat)
        same = np.array_equal(fast, ref)
        ok &= same
        if count == 2_300:
            rows.append(row("IBS tick draw: 2,300 pages over 2 Mi (sorted uniforms)", "-",
                            f"{t_fast * 1e3:.2f} ms", None if same else False,
                            f"x{t_ref / t_fast:.1f} vs one searchsorted"))
        print(f"  n={n:>10,} count={count:>9,}  fast {t_fast * 1e3:8.2f} ms  "
              f"reference {t_ref * 1e3:8.2f} ms  x{t_ref / t_fast:4.1f}  "
              f"{'same pages' if same else 'DIFFERENT PAGES'}")

    # Distinct values of 2 Mi int64 identities (a promotion summary's keys): sort-based
    # arrays.unique against np.unique's hash path.
    keys = np.random.default_rng(2).permutation(1 << 21).astype(np.int64) * 7 + (3 << 33)
    t_fast, fast = best_of(lambda: unique(keys), args.repeat)
    t_ref, ref = best_of(lambda: np.unique(keys), args.repeat)
    same = np.array_equal(fast, ref) and fast.dtype == ref.dtype
    ok &= same
    print(f"unique of 2 Mi distinct int64 keys: sort {t_fast * 1e3:.0f} ms  np.unique (hash) "
          f"{t_ref * 1e3:.0f} ms  x{t_ref / t_fast:.1f}  {'same' if same else 'DIFFERENT'}")
    rows.append(row("distinct values of 2 Mi int64 keys (arrays.unique)", "-",
                    f"{t_fast * 1e3:.0f} ms", None if same else False,
                    f"x{t_ref / t_fast:.1f} vs np.unique"))

    # The pghot v3 machine with Mode 2's 8 GiB file mapping on the CXL node.
    e = build_engine(config_from_dict(config(2, "numab0")))
    k = e.kernel
    t_fast, fast = best_of(k.node_pages, args.repeat)
    t_ref, ref = best_of(lambda: reference_node_pages(k), args.repeat)
    same = all(np.array_equal(fast[key], ref[key]) for key in ref)
    ok &= same
    print(f"node_pages on zen5-cxl ({k.pm.nr_pfns:,} pfns): fast {t_fast * 1e3:.1f} ms  "
          f"reference {t_ref * 1e3:.0f} ms  x{t_ref / t_fast:.1f}  "
          f"{'same counts' if same else 'DIFFERENT COUNTS'}")
    rows.append(row("per-node page counts on zen5-cxl (Kernel.node_pages, 12 a run)", "-",
                    f"{t_fast * 1e3:.1f} ms", None if same else False,
                    f"x{t_ref / t_fast:.0f} vs every pfn by searchsorted"))
    ok &= phase_setup(e, args.repeat, rows)
    write_rows(args.json, rows)
    return 0 if ok else 1


def _np_unique_inverse(a):
    return np.unique(a, return_inverse=True)


def phase_setup(e, repeat: int, rows: list) -> bool:
    """What a phase change costs a group of 2 Mi pages (the rate model's and memsys's set-up):
    the pfn of every page (compiled MM.translate against its numpy form) and memsys's TLB and
    shared-LLC solution (distinct keys by unique_inverse's presence table against np.unique's
    sort)."""
    from tierscan.memsys import llc, lru, tlb

    g = e.groups[0]
    t_fast, fast = best_of(lambda: g.mm.translate(g.addrs), repeat)
    t_ref, ref = best_of(lambda: g.mm.translate_reference(g.addrs), repeat)
    same = np.array_equal(fast, ref)
    print(f"translate {g.n_pages:,} addresses: compiled {t_fast * 1e3:.1f} ms  numpy "
          f"{t_ref * 1e3:.1f} ms  x{t_ref / t_fast:.1f}  {'same' if same else 'DIFFERENT'}")
    rows.append(row(f"pfns of a group's {g.n_pages:,} pages (MM.translate, per phase)", "-",
                    f"{t_fast * 1e3:.1f} ms", None if same else False,
                    f"x{t_ref / t_fast:.1f} vs translate_reference (numpy)"))

    cpu = e.kernel.machine.cpu
    w = np.asarray(g.phase.distribution.weights(g.n_pages), float)
    huge = g.mm.pt.pmd_is_leaf(g.slots >> 9)

    def solve():
        tr = tlb.translation(w, g.slots, huge, cpu.tlb_4k, cpu.tlb_2m)
        hits = llc.shared_llc_hits([(1.0, w, tr.line_rates)], cpu.llc_bytes)
        return tr.walks, tr.line_rates, tr.page_miss, hits

    t_fast, fast = best_of(solve, repeat)
    saved = lru.unique_inverse, tlb.unique_inverse
    lru.unique_inverse = tlb.unique_inverse = _np_unique_inverse
    try:
        t_ref, ref = best_of(solve, repeat)
    finally:
        lru.unique_inverse, tlb.unique_inverse = saved
    same = fast[0] == ref[0] and fast[3] == ref[3] and all(
        np.array_equal(a, b) for a, b in zip(fast[1:3], ref[1:3]))
    print(f"memsys TLB + LLC solution of a phase: {t_fast * 1e3:.0f} ms  with np.unique "
          f"{t_ref * 1e3:.0f} ms  x{t_ref / t_fast:.2f}  {'same' if same else 'DIFFERENT'}")
    rows.append(row(f"memsys TLB + shared-LLC solution of a phase ({g.n_pages:,} pages)", "-",
                    f"{t_fast * 1e3:.0f} ms", None if same else False,
                    f"x{t_ref / t_fast:.2f} vs np.unique(return_inverse)"))
    return bool(same)


if __name__ == "__main__":
    sys.exit(main())
