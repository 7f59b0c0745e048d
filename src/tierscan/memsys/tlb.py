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
from numba import njit

from ..arrays import unique_inverse
from .lru import characteristic_time, compress, hit_probability

ENTRIES_PER_LINE = 8             # 64-byte line / 8-byte page-table entry
COMPILED = True                  # False: translation always runs translation_reference


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
    ``huge`` marking pages mapped by a PMD leaf; TLB entries per level for each page size.

    A group's slots ascend (its ranges in order), so a PMD's pages and a page-table line's
    pages are runs: two compiled passes sum them in page order, as the reference's bincounts
    over unique_inverse's keys do, and the reference's masked copies and full-length key
    arrays are never built (a 16 Mi-page Mode 3 group, all THPs: 2.3 s the reference). Che's
    solutions (_miss) stay numpy's. Slots not ascending: translation_reference."""
    w = np.asarray(w, float)
    slots = np.asarray(slots, np.int64)
    huge = np.asarray(huge, bool)
    n = w.size
    if not COMPILED or n < 2 or slots[-1] <= slots[0]:
        return translation_reference(w, slots, huge, tlb_4k, tlb_2m)
    nr_huge = int(np.count_nonzero(huge))
    pmd_w = np.empty(min(nr_huge, (int(slots[-1]) >> 9) - (int(slots[0]) >> 9) + 1))
    pmds = _pmd_weights(w, slots, huge, pmd_w)
    if pmds < 0:
        return translation_reference(w, slots, huge, tlb_4k, tlb_2m)
    if nr_huge == 0:            # no THP: no masked copy
        miss_small = _miss(w, max(tlb_4k))
    else:
        miss_small = _miss(w[~huge], max(tlb_4k)) if nr_huge < n else np.zeros(0)
    miss_pmd = _miss(pmd_w[:pmds], max(tlb_2m)) if pmds else np.zeros(0)
    lines = (int(slots[-1]) - int(slots[0])) // ENTRIES_PER_LINE + 2
    walk, miss = np.empty(n), np.empty(n)
    pte_rates, pmd_rates = np.empty(lines), np.empty(min(pmds, lines))
    nr_pte, nr_pmd = _walk_lines(w, slots, huge, miss_small, miss_pmd, walk, miss, pte_rates,
                                 pmd_rates)
    # the lines in ascending id (unique_inverse's order): PMD-entry lines have negative ids,
    # falling as the pages ascend, so theirs come first and reversed
    line_rates = np.concatenate([pmd_rates[:nr_pmd][::-1], pte_rates[:nr_pte]])
    return Translation(float(walk.sum()), line_rates, miss)


def translation_reference(w, slots, huge, tlb_4k, tlb_2m) -> Translation:
    """translation in numpy, for slots in any order."""
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


# sequential sums over runs: numba (DESIGN §4); the reference is translation_reference
@njit(cache=True, nogil=True)
def _pmd_weights(w, slots, huge, out):
    """The weight of each PMD of the huge pages, in ascending PMD order, each summed from 0 in
    page order (np.bincount's order); -1 if the slots do not strictly ascend (``out`` holds
    as many PMDs as the first and last slots span)."""
    k = 0
    pmd = -1
    for i in range(slots.size):
        if i and slots[i] <= slots[i - 1]:
            return -1
        if huge[i]:
            p = slots[i] >> 9
            if k == 0 or p != pmd:
                if k == out.size:       # more PMDs than the span allows: a slot went back
                    return -1
                out[k] = 0.0
                k += 1
                pmd = p
            out[k - 1] += w[i]
    return k


@njit(cache=True, nogil=True)
def _walk_lines(w, slots, huge, miss_small, miss_pmd, walk, miss, pte_rates, pmd_rates):
    """Each page's miss probability and walk rate (w · miss), and the walk rate of each PTE
    line (small pages) and PMD-entry line (huge pages), in page order, each summed from 0 in
    page order; returns how many lines of each."""
    small_i, pmd_i = -1, -1
    nr_pte, nr_pmd = 0, 0
    pmd, pte_line, pmd_line = -1, -1, -1
    for i in range(slots.size):
        if huge[i]:
            p = slots[i] >> 9
            if pmd_i < 0 or p != pmd:
                pmd_i += 1
                pmd = p
            m = miss_pmd[pmd_i]
            x = w[i] * m
            line = p // ENTRIES_PER_LINE
            if nr_pmd == 0 or line != pmd_line:
                pmd_rates[nr_pmd] = 0.0
                nr_pmd += 1
                pmd_line = line
            pmd_rates[nr_pmd - 1] += x
        else:
            small_i += 1
            m = miss_small[small_i]
            x = w[i] * m
            line = slots[i] // ENTRIES_PER_LINE
            if nr_pte == 0 or line != pte_line:
                pte_rates[nr_pte] = 0.0
                nr_pte += 1
                pte_line = line
            pte_rates[nr_pte - 1] += x
        miss[i] = m
        walk[i] = x
    return nr_pte, nr_pmd
