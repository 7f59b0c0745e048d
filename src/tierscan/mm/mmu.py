"""What the MMU does on each load and store, as compiled loops (DESIGN §4: the exact-order replay
of accesses is inherently sequential, so it is a numba kernel rather than numpy).

For accesses that need no fault the hardware sets the accessed bit of the leaf entry (and the
dirty bit on a store) and of the non-leaf PMD entry it walked through, and the access is served
by the node holding the page. The first access that needs a fault stops the replay so that the
kernel's fault path can run; the replay then resumes from it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .constants import (
    _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_PSE, _PAGE_RW,
    PTE_PFN_MASK,
)

_A, _D, _P = np.uint64(_PAGE_ACCESSED), np.uint64(_PAGE_DIRTY), np.uint64(_PAGE_PRESENT)
_RW, _PSE, _PN = np.uint64(_PAGE_RW), np.uint64(_PAGE_PSE), np.uint64(_PAGE_PROTNONE)
_PFN = np.uint64(PTE_PFN_MASK)


@njit(cache=True, nogil=True)
def find_vmas(addrs, starts, ends):
    """Index of the VMA holding each address (binary search over sorted starts), -1 for none."""
    out = np.empty(addrs.size, np.int64)
    n = starts.size
    for i in range(addrs.size):
        a = addrs[i]
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) >> 1
            if starts[mid] <= a:
                lo = mid + 1
            else:
                hi = mid
        j = lo - 1
        out[i] = j if j >= 0 and a < ends[j] else -1
    return out


@njit(cache=True, nogil=True)
def replay(slots, is_write, start, pte, pmd, node_start, counts):
    """Apply accesses[start:] in order until one needs a fault; returns its index, or -1.

    ``counts[n]`` gains one per access served by node n.
    """
    nnodes = counts.size
    for i in range(start, slots.size):
        s = slots[i]
        w = is_write[i]
        p = s >> 9
        e = pmd[p]
        if e & _PSE:
            if not (e & _P) or (w and not (e & _RW)):
                return i
            e |= _A
            if w:
                e |= _D
            pmd[p] = e
            pfn = np.int64(((e & _PFN) >> np.uint64(12)) + np.uint64(s & 511))
        else:
            t = pte[s]
            if not (t & _P) or (w and not (t & _RW)):
                return i
            t |= _A
            if w:
                t |= _D
            pte[s] = t
            pmd[p] = e | _A
            pfn = np.int64((t & _PFN) >> np.uint64(12))
        n = 0
        while n + 1 < nnodes and pfn >= node_start[n + 1]:
            n += 1
        counts[n] += 1
    return -1
