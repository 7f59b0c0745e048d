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

from .constants import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, PTE_PFN_MASK

# Plain ints, wrapped in np.uint64() at each use: numba compiles numpy-scalar globals into slow
# code, and mixing int64 with uint64 entries would promote to float.
_A, _D, _P = int(_PAGE_ACCESSED), int(_PAGE_DIRTY), int(_PAGE_PRESENT)
_RW, _PSE = int(_PAGE_RW), int(_PAGE_PSE)
_PFN = int(PTE_PFN_MASK)


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
        if e & np.uint64(_PSE):
            if not (e & np.uint64(_P)) or (w and not (e & np.uint64(_RW))):
                return i
            e |= np.uint64(_A)
            if w:
                e |= np.uint64(_D)
            pmd[p] = e
            pfn = np.int64((e & np.uint64(_PFN)) >> np.uint64(12)) + (s & 511)
        else:
            t = pte[s]
            if not (t & np.uint64(_P)) or (w and not (t & np.uint64(_RW))):
                return i
            t |= np.uint64(_A)
            if w:
                t |= np.uint64(_D)
            pte[s] = t
            pmd[p] = e | np.uint64(_A)
            pfn = np.int64((t & np.uint64(_PFN)) >> np.uint64(12))
        n = 0
        while n + 1 < nnodes and pfn >= node_start[n + 1]:
            n += 1
        counts[n] += 1
    return -1
