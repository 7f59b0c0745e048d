"""Address translation (issue 12 item 4): TLB reach per page size, the miss ratio from the
footprint and the access distribution, and the page-walk reference each miss makes.

Each thread has its core's TLB to itself; its accesses follow the phase's distribution, so
its miss probability per page comes from Che's LRU approximation (lru.py) with the TLB's
entries as capacity. Items are 4 KiB pages for PTE-mapped memory and 2 MiB ranges for
PMD-mapped THPs, each against its own entry count (the largest level of ``tlb_4k`` /
``tlb_2m``: a miss there is what starts a walk; the levels are treated as inclusive).

A walk's upper levels (PGD, PUD, and the PMD for 4 KiB pages) hit the page-walk caches
(their few entries cover the whole footprint; their cost is ``walk_ns`` in memsys/system.py);
its last reference, the PTE's cache line (or the PMD's for a THP), is a memory reference that
may hit the LLC. A line of 8 entries maps 8 pages (8 × 2 MiB for PMD entries), so walk
references are as many lines' worth as the footprint's page tables: llc.py decides which hit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import unique_inverse
from .lru import characteristic_time, compress, hit_probability

ENTRIES_PER_LINE = 8             # 64-byte line / 8-byte page-table entry


@dataclass
class Translation:
    walks: float                 # page walks per access (the group's TLB miss ratio)
    line_rates: np.ndarray       # walk references per access to each page-table line
    page_miss: np.ndarray | None  # TLB miss probability of an access to each page (None in
                                  # memsys's memo, memo.py: the model does not read it)


def no_translation(n: int) -> Translation:
    return Translation(0.0, np.zeros(0), np.zeros(n))


def _miss(rates, entries: int) -> np.ndarray:
    r, n = compress(rates)
    t = characteristic_time(r, n, float(entries))
    return 1.0 - hit_probability(rates, t)


def translation(w, slots, huge, tlb_4k, tlb_2m) -> Translation:
    """TLB misses of a stream with page weights ``w`` over the pages at mm page ``slots``,
    ``huge`` marking pages mapped by a PMD leaf; TLB entries per level for each page size."""
    w = np.asarray(w, float)
    slots = np.asarray(slots, np.int64)
    huge = np.asarray(huge, bool)
    miss = np.zeros(w.size)
    line = np.zeros(w.size, np.int64)
    small = ~huge
    if small.all():             # no THP: the same arrays without the masked copies
        miss = _miss(w, max(tlb_4k))
        line = slots // ENTRIES_PER_LINE
    elif small.any():
        miss[small] = _miss(w[small], max(tlb_4k))
        line[small] = slots[small] // ENTRIES_PER_LINE
    if huge.any():
        pmd = slots[huge] >> 9
        uniq, inv = unique_inverse(pmd)
        pmd_w = np.bincount(inv, weights=w[huge], minlength=uniq.size)
        miss[huge] = _miss(pmd_w, max(tlb_2m))[inv]
        # PMD-entry lines live in another table: a distinct (negative) id space
        line[huge] = -1 - pmd // ENTRIES_PER_LINE
    walk = w * miss
    _, inv = unique_inverse(line)
    line_rates = np.bincount(inv, weights=walk)
    return Translation(float(walk.sum()), line_rates, miss)
