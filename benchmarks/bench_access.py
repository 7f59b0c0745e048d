"""Throughput of the access path: tierscan's vectorised MM.access against a per-access
pure-Python reference that does the same observable work on already-populated memory.

    cd /work/main && PYTHONPATH=src python3 benchmarks/bench_access.py [--quick]

See benchmarks/README.md. Exits 1 if the reference and the vectorised path disagree.
"""

from __future__ import annotations

import argparse
import bisect
import sys
import time

import numpy as np

from _report import add_json_arg, row, write_rows
from tierscan.errors import SegmentationFault
from tierscan.kernel import Kernel
from tierscan.machine import Machine
from tierscan.mm.constants import (
    MMAP_BASE, PAGE_SHIFT, PTE_PFN_MASK, PTRS_PER_PTE, _PAGE_ACCESSED, _PAGE_DIRTY,
    _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_PSE,
)
from tierscan.mm.pagetable import pte_present
from tierscan.mm.process import VM_READ, VM_WRITE

CXL_NODE = 1
EQUIV_ACCESSES = 10**5
REF_BUDGET_S = 60.0  # time the reference on a slice and scale if the full run would take longer

# Python-int copies of the entry bits, so the reference never touches a numpy scalar.
A, D, PSE = int(_PAGE_ACCESSED), int(_PAGE_DIRTY), int(_PAGE_PSE)
PRESENT_OR_PROTNONE = int(_PAGE_PRESENT) | int(_PAGE_PROTNONE)
PFN_MASK = int(PTE_PFN_MASK)


# ---- setup ---------------------------------------------------------------------------------------
def make_kernel(size: int, populate: bool):
    k = Kernel(Machine.preset("laptop"), seed=0)  # debug off (the default)
    mm = k.spawn("bench")
    vma = mm.mmap(size, kind="anon", populate=populate, policy="bind", nodes=[CXL_NODE])
    return k, mm, vma


def draw_accesses(start: int, end: int, n: int, seed: int):
    rng = np.random.default_rng(seed)
    addrs = rng.integers(start, end, size=n, dtype=np.uint64)
    is_write = rng.random(n) < 0.5
    return addrs, is_write


def clear_young_dirty(mm) -> None:
    """Clear A (bit 5) and D (bit 6) of every present PTE, and A of every PMD entry, so the
    comparison sees which bits the accesses set."""
    pte = mm.pt.pte
    present = pte_present(pte)
    pte[present] &= ~(_PAGE_ACCESSED | _PAGE_DIRTY)
    mm.pt.pmd[mm.pt.pmd != 0] &= ~_PAGE_ACCESSED


# ---- the per-access reference --------------------------------------------------------------------
def reference_access(mm, addrs: list[int], writes: list[bool]) -> list[int]:
    """One access at a time, in plain Python, for memory that is already populated: what a
    straightforward simulator does. Returns the accesses served by each node."""
    k = mm.kernel
    starts = [v.start for v in mm.vmas]
    ends = [v.end for v in mm.vmas]
    vflags = [v.flags for v in mm.vmas]
    node_start = [int(x) for x in k.pm.node_start[:-1]]
    counts = [0] * k.machine.nr_nodes
    pte, pmd = mm.pt.pte, mm.pt.pmd
    pte_item, pmd_item = pte.item, pmd.item
    bisect_right = bisect.bisect_right
    mm.lru_gen_bitmap = ~0  # the mm ran: lru_gen_use_mm()
    for addr, w in zip(addrs, writes):
        i = bisect_right(starts, addr) - 1
        if i < 0 or addr >= ends[i]:
            raise SegmentationFault(addr)
        fl = vflags[i]
        if not fl & VM_READ or (w and not fl & VM_WRITE):
            raise SegmentationFault(addr, "permission")
        slot = (addr - MMAP_BASE) >> PAGE_SHIFT
        p = slot >> 9
        e = pmd_item(p)
        if e & PSE and e & PRESENT_OR_PROTNONE:  # THP leaf: A (and D) in the PMD entry
            e |= A
            if w:
                e |= D
            pmd[p] = e
            pfn = ((e & PFN_MASK) >> PAGE_SHIFT) + (slot & (PTRS_PER_PTE - 1))
        else:
            t = pte_item(slot)
            if not t & PRESENT_OR_PROTNONE:
                raise RuntimeError(f"reference: slot {slot} is not populated")
            t |= A
            if w:
                t |= D
            pte[slot] = t
            pmd[p] = e | A  # the non-leaf accessed bit of the PMD walked through
            pfn = (t & PFN_MASK) >> PAGE_SHIFT
        counts[bisect_right(node_start, pfn) - 1] += 1
    return counts


# ---- equivalence -------------------------------------------------------------------------------
def check_equivalence(size: int, addrs: np.ndarray, is_write: np.ndarray) -> None:
    """Run both paths on fresh, identically populated kernels and compare the resulting state."""
    k1, mm1, _ = make_kernel(size, populate=True)
    clear_young_dirty(mm1)
    fast_counts = mm1.access(addrs, is_write).tolist()

    k2, mm2, _ = make_kernel(size, populate=True)
    clear_young_dirty(mm2)
    ref_counts = reference_access(mm2, addrs.tolist(), is_write.tolist())

    assert np.array_equal(mm1.pt.pte, mm2.pt.pte), \
        f"PTE arrays differ at {np.flatnonzero(mm1.pt.pte != mm2.pt.pte)[:10].tolist()}"
    assert np.array_equal(mm1.pt.pmd, mm2.pt.pmd), \
        f"PMD arrays differ at {np.flatnonzero(mm1.pt.pmd != mm2.pt.pmd)[:10].tolist()}"
    assert fast_counts == ref_counts, f"per-node counts differ: {fast_counts} vs {ref_counts}"
    # No other observable state may differ either (faults, counters, folio state).
    for name in ("flags", "lru_gen_refs", "list_gen", "lru_stamp", "order", "memcg",
                 "mapcount", "mapping", "index", "block_free", "node_free"):
        assert np.array_equal(getattr(k1.pm, name), getattr(k2.pm, name)), f"pm.{name} differs"
    assert k1.vmstat.as_dict() == k2.vmstat.as_dict(), "vmstat counters differ"
    # The check is only meaningful if the accesses set bits that were clear.
    assert int(fast_counts[CXL_NODE]) == addrs.size, "accesses were not all served by node 1"
    assert ((mm1.pt.pte & _PAGE_ACCESSED) != 0).sum() > 0


# ---- timing ------------------------------------------------------------------------------------
def best_of(fn, repeats: int = 3, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def best_of_fresh(setup, fn, repeats: int = 3, warmup: int = 1) -> float:
    """Like best_of, but ``setup()`` (untimed) builds fresh state for every run."""
    best = float("inf")
    for i in range(warmup + repeats):
        state = setup()
        t0 = time.process_time()
        fn(state)
        dt = time.process_time() - t0
        del state
        if i >= warmup:
            best = min(best, dt)
    return best


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>14,.0f} accesses/s"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 10^5 accesses over 256 MiB instead of 10^6 over 1 GiB")
    ap.add_argument("--seed", type=int, default=0, help="seed for the random accesses")
    add_json_arg(ap)
    args = ap.parse_args(argv)

    n = 10**5 if args.quick else 10**6
    size = (256 << 20) if args.quick else (1 << 30)
    print(f"bench_access: {n:,} random accesses (50% stores) over {size >> 20} MiB anon, "
          f"populated, bound to node {CXL_NODE} (CXL), laptop machine, seed {args.seed}")

    k, mm, vma = make_kernel(size, populate=True)
    addrs, is_write = draw_accesses(vma.start, vma.end, n, args.seed)

    neq = min(EQUIV_ACCESSES, n)
    try:
        check_equivalence(size, addrs[:neq], is_write[:neq])
    except AssertionError as e:
        print(f"equivalence: FAILED: {e}")
        return 1
    print(f"equivalence: ok ({neq:,} accesses from cleared A/D bits: PTE, PMD, per-node counts)")

    # (a) the vectorised path
    t_fast = best_of(lambda: mm.access(addrs, is_write))

    # (b) the per-access reference, on Python ints
    addr_list, write_list = addrs.tolist(), is_write.tolist()
    sl = min(EQUIV_ACCESSES, n)
    t0 = time.process_time()
    reference_access(mm, addr_list[:sl], write_list[:sl])
    estimate = (time.process_time() - t0) * n / sl
    if estimate > REF_BUDGET_S:
        ref_n = sl
        t_slice = best_of(lambda: reference_access(mm, addr_list[:sl], write_list[:sl]))
        t_ref = t_slice * n / sl
        ref_note = (f"  [timed on a {sl:,}-access slice ({t_slice:.3f} s), scaled x{n // sl} "
                    f"to {n:,}: the full run would take ~{estimate:.0f} s]")
    else:
        ref_n = n
        t_ref = best_of(lambda: reference_access(mm, addr_list, write_list))
        ref_note = ""

    # cold: the mapping is not populated, so first-touch (and copy-on-write) faults are included
    def cold_setup():
        _, cmm, cvma = make_kernel(size, populate=False)
        assert cvma.start == vma.start
        return cmm

    t_cold = best_of_fresh(cold_setup, lambda cmm: cmm.access(addrs, is_write))

    print("timings: best of 3 after 1 warm-up (CPU time, time.process_time)")
    print(f"  (a) vectorised mm.access, populated:  {rate(n, t_fast)}  ({t_fast * 1e3:.1f} ms "
          f"for {n:,})")
    print(f"  (b) per-access Python reference:      {rate(n, t_ref)}  ({t_ref:.3f} s for {n:,})"
          + ("" if ref_n == n else " (scaled)"))
    if ref_note:
        print(ref_note)
    print(f"  speed-up (a)/(b): {t_ref / t_fast:.1f}x")
    print(f"  cold: vectorised mm.access, not populated (first-touch faults included): "
          f"{rate(n, t_cold).strip()}  ({t_cold * 1e3:.1f} ms for {n:,})")
    write_rows(args.json, [row(f"mm.access on populated memory ({n:,} random accesses)", "-",
                               f"{n / t_fast / 1e6:.1f} M acc/s", None,
                               f"x{t_ref / t_fast:.0f} vs per-access Python")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
