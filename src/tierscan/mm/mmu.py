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

from ..arrays import upper_bound
from ..prefetch import prefetch
from .constants import (
    _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_PSE, _PAGE_RW, MMAP_BASE,
    PAGE_SHIFT, PTE_PFN_MASK,
)

# Plain ints, wrapped in np.uint64() at each use: numba compiles numpy-scalar globals into slow
# code, and mixing int64 with uint64 entries would promote to float.
_A, _D, _P = int(_PAGE_ACCESSED), int(_PAGE_DIRTY), int(_PAGE_PRESENT)
_RW, _PSE = int(_PAGE_RW), int(_PAGE_PSE)
_MAPPED = int(_PAGE_PRESENT | _PAGE_PROTNONE)   # pte_present(): a NUMA hint entry counts
_PFN = int(PTE_PFN_MASK)


@njit(cache=True, nogil=True)
def find_vmas(addrs, starts, ends):
    """Index of the VMA holding each address (binary search over sorted starts), -1 for none."""
    out = np.empty(addrs.size, np.int64)
    n = starts.size
    for i in range(addrs.size):
        a = addrs[i]
        j = upper_bound(starts, a, 0, n) - 1
        out[i] = j if j >= 0 and a < ends[j] else -1
    return out


@njit(cache=True, nogil=True)
def translate_addrs(addrs, starts, ends, pte, pmd, ahead):
    """The pfn mapped at each address, -1 where no VMA holds it or nothing is mapped: one pass
    of find_vmas + PageTable.translate_slots (their numpy form is MM.translate_reference).
    With ``ahead`` > 0, address i + ahead's PMD and PTE entries are prefetched
    (tierscan.prefetch: IBS's sampled pages are random reads of both tables)."""
    out = np.empty(addrs.size, np.int64)
    n = starts.size
    for i in range(addrs.size):
        if ahead and i + ahead < addrs.size:
            s = np.int64((addrs[i + ahead] - np.uint64(MMAP_BASE)) >> np.uint64(PAGE_SHIFT))
            if s >= 0 and s < pte.size:
                prefetch(pmd, s >> 9)
                prefetch(pte, s)
        a = addrs[i]
        j = upper_bound(starts, a, 0, n) - 1
        out[i] = -1
        if j < 0 or a >= ends[j]:
            continue
        s = np.int64((a - np.uint64(MMAP_BASE)) >> np.uint64(PAGE_SHIFT))
        if s >= pte.size:       # no table yet (mmap grows them first): nothing mapped
            continue
        e = pmd[s >> 9]
        if (e & np.uint64(_PSE)) and (e & np.uint64(_MAPPED)):
            out[i] = np.int64((e & np.uint64(_PFN)) >> np.uint64(PAGE_SHIFT)) + (s & 511)
            continue
        t = pte[s]
        if t & np.uint64(_MAPPED):
            out[i] = np.int64((t & np.uint64(_PFN)) >> np.uint64(PAGE_SHIFT))
    return out


@njit(cache=True, nogil=True)
def rss_slots(lo, hi, pte, pmd, flags, anon_bit, zero_pfn, huge_zero_pfn, huge_nr):
    """(anon, file) pages mapped at page slots [lo, hi) that are not the zero page or a page
    of the huge zero page (``anon_bit`` set in the page's flags, or not): MM.rss_reference's
    count of one VMA (PageTable.translate_slots, is_zero_pfn, the flags) in one pass, without
    its per-slot arrays (a 64-GiB VMA is 16.8 M slots)."""
    anon = 0
    other = 0
    for s in range(lo, hi):
        e = pmd[s >> 9]
        if (e & np.uint64(_PSE)) and (e & np.uint64(_MAPPED)):
            pfn = np.int64((e & np.uint64(_PFN)) >> np.uint64(PAGE_SHIFT)) + (s & 511)
        else:
            t = pte[s]
            if not (t & np.uint64(_MAPPED)):
                continue
            pfn = np.int64((t & np.uint64(_PFN)) >> np.uint64(PAGE_SHIFT))
        if pfn == zero_pfn or (pfn >= huge_zero_pfn and pfn < huge_zero_pfn + huge_nr):
            continue
        if flags[pfn] & anon_bit:
            anon += 1
        else:
            other += 1
    return anon, other


@njit(cache=True, nogil=True, inline="always")
def _touch(s, w, pte, pmd):
    """What the MMU does for one access to page slot ``s`` (a store if ``w``): set the leaf's
    accessed (and dirty) bit and the PMD's accessed bit; the pfn served, or -1 if the access
    needs a fault (nothing is changed then)."""
    p = s >> 9
    e = pmd[p]
    if e & np.uint64(_PSE):
        if not (e & np.uint64(_P)) or (w and not (e & np.uint64(_RW))):
            return -1
        e |= np.uint64(_A)
        if w:
            e |= np.uint64(_D)
        pmd[p] = e
        return np.int64((e & np.uint64(_PFN)) >> np.uint64(12)) + (s & 511)
    t = pte[s]
    if not (t & np.uint64(_P)) or (w and not (t & np.uint64(_RW))):
        return -1
    t |= np.uint64(_A)
    if w:
        t |= np.uint64(_D)
    pte[s] = t
    pmd[p] = e | np.uint64(_A)
    return np.int64((t & np.uint64(_PFN)) >> np.uint64(12))


@njit(cache=True, nogil=True, inline="always")
def _node(pfn, node_start):
    n = 0
    while n + 1 < node_start.size and pfn >= node_start[n + 1]:
        n += 1
    return n


@njit(cache=True, nogil=True)
def replay(slots, is_write, start, pte, pmd, node_start, counts):
    """Apply accesses[start:] in order until one needs a fault; returns its index, or -1.

    ``counts[n]`` gains one per access served by node n.
    """
    for i in range(start, slots.size):
        pfn = _touch(slots[i], is_write[i], pte, pmd)
        if pfn < 0:
            return i
        counts[_node(pfn, node_start)] += 1
    return -1


@njit(cache=True, nogil=True)
def replay_segments(pages, is_write, seg_ends, seg, page_addrs, page_slots, vm_starts, vm_ends,
                    pte, pmd, node_start, counts, cls):
    """The exact model's batches of several threads in one call: accesses to page indices
    ``pages`` (into ``page_addrs``/``page_slots``, the group's pages), cut into segments (one
    per thread) ending at ``seg_ends``, replayed in order from segment ``seg`` as ``replay``
    does, ``counts[s, c, n]`` gaining one per access of segment s and class c served by node
    n (``cls[i]`` is access i's class, e.g. LLC hit or miss; all class 0 if ``cls`` is empty).

    Stops at the first access that needs the kernel (a fault, or an address outside every
    VMA) and returns its segment, whose counts are then partial: the caller runs that segment
    through ``MM.access`` (re-applying its first accesses sets the same bits again). Returns
    the number of segments when all ran."""
    nvma = vm_starts.size
    classed = cls.size > 0
    if nvma == 0:
        return seg
    v = 0
    start = 0 if seg == 0 else seg_ends[seg - 1]
    for sg in range(seg, seg_ends.size):
        end = seg_ends[sg]
        for i in range(start, end):
            pg = pages[i]
            a = page_addrs[pg]
            if not (vm_starts[v] <= a and a < vm_ends[v]):    # another VMA than the last
                v = upper_bound(vm_starts, a, 0, nvma) - 1
                if v < 0 or a >= vm_ends[v]:
                    return sg
            pfn = _touch(page_slots[pg], is_write[i], pte, pmd)
            if pfn < 0:
                return sg
            counts[sg, cls[i] if classed else 0, _node(pfn, node_start)] += 1
        start = end
    return seg_ends.size
