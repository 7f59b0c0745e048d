"""Which accesses of a fault round need which fault, as compiled passes (mm/memory.py's phases).

Each phase of handle_accesses first classifies every access of the round (up to a whole
1 GiB MAP_POPULATE piece, 262,144 accesses) by its PMD and PTE entries; in numpy that is
half a dozen gathers and masks per phase, mostly to find that nothing needs that phase. These
loops read the entries once, without temporaries. They classify exactly as the numpy masks
beside them in memory.py (pmd_is_leaf, is_swap_pte, pte_present); tests/test_populate_paths.py
checks them against those masks. prot_numa_ptes is NUMA balancing's marking filter
(change_prot_numa), checked against its numpy form in tests/test_perf_paths.py.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..arrays import upper_bound
from .constants import (
    HPAGE_PMD_NR, PG_dirty, PG_swapbacked, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_PSE, _PAGE_RW,
    _PAGE_SPECIAL, PTE_PFN_MASK,
)

# plain ints (numba compiles numpy-scalar globals into slow code, as mmu.py)
_P, _PN, _PSE, _RW, _PFN = (int(_PAGE_PRESENT), int(_PAGE_PROTNONE), int(_PAGE_PSE),
                            int(_PAGE_RW), int(PTE_PFN_MASK))
_PMD_NR = int(HPAGE_PMD_NR)
_SPECIAL, _SB, _DIRTY = int(_PAGE_SPECIAL), int(PG_swapbacked), int(PG_dirty)


@njit(cache=True, nogil=True, inline="always")
def is_zero_pfn(p, zero_pfn, huge_zero_pfn):
    """Kernel.is_zero_pfn for one pfn: the zero page or a page of the huge zero page."""
    return p == zero_pfn or (p >= huge_zero_pfn and p < huge_zero_pfn + _PMD_NR)


@njit(cache=True, nogil=True, inline="always")
def _leaf(e):
    """PageTable.pmd_is_leaf for one PMD entry."""
    return (e & np.uint64(_PSE)) != 0 and (e & np.uint64(_P | _PN)) != 0


@njit(cache=True, nogil=True)
def any_numa_hint(slots, pte, pmd):
    """Does any slot sit under a NUMA hint entry (a PROT_NONE PTE, or a non-present THP
    leaf)? do_numa_hint_faults' hint_pte | hint_pmd."""
    for i in range(slots.size):
        s = slots[i]
        e = pmd[s >> 9]
        if _leaf(e):
            if (e & np.uint64(_P)) == 0:
                return True
        elif (pte[s] & np.uint64(_P | _PN)) == np.uint64(_PN):
            return True
    return False


@njit(cache=True, nogil=True)
def any_swap_entry(slots, pte, pmd):
    """Does any slot outside a THP leaf hold a swap entry (is_swap_pte)?"""
    for i in range(slots.size):
        s = slots[i]
        if not _leaf(pmd[s >> 9]):
            e = pte[s]
            if e != 0 and (e & np.uint64(_P | _PN)) == 0:
                return True
    return False


@njit(cache=True, nogil=True)
def missing_index(slots, pte, pmd):
    """Indices of the accesses to slots with no mapping: not under a THP leaf, PTE none
    (np.flatnonzero of do_first_touch_faults' ``missing``)."""
    out = np.empty(slots.size, np.int64)
    n = 0
    for i in range(slots.size):
        s = slots[i]
        if not _leaf(pmd[s >> 9]) and pte[s] == 0:
            out[n] = i
            n += 1
    return out[:n]


@njit(cache=True, nogil=True)
def any_write_protect(slots, is_write, pte, pmd, huge_zero_pfn):
    """Does any store hit the huge zero page or a present read-only PTE (outside a THP
    leaf)? Only then has do_write_faults work to do."""
    hz = np.uint64(huge_zero_pfn)
    for i in range(slots.size):
        if not is_write[i]:
            continue
        s = slots[i]
        e = pmd[s >> 9]
        if _leaf(e):
            if ((e & np.uint64(_PFN)) >> np.uint64(12)) == hz:
                return True
        else:
            p = pte[s]
            if (p & np.uint64(_P)) != 0 and (p & np.uint64(_RW)) == 0:
                return True
    return False


@njit(cache=True, nogil=True)
def set_up_folios(pfns, heads, flags, memcg, mapping, index, content, page_flags, memcg_id,
                  mapping_id, page_index, tags, head_flags):
    """add_new_folios' per-page fields in one pass: OR ``page_flags`` into every pfn, set its
    memcg, mapping, index (``page_index``, truncated to the array's type as numpy's astype)
    and content tag, then OR ``head_flags`` into each head."""
    for i in range(pfns.size):
        p = pfns[i]
        flags[p] |= page_flags
        memcg[p] = memcg_id
        mapping[p] = mapping_id
        index[p] = page_index[i]
        content[p] = tags[i]
    if head_flags:
        for i in range(heads.size):
            flags[heads[i]] |= head_flags


@njit(cache=True, nogil=True)
def set_ptes(slots, pfns, bits, pte, pmd, pmd_table):
    """install_ptes' entries in one pass: a PMD entry that is none becomes ``pmd_table``
    (pmd_populate), then each slot's PTE maps its pfn with its ``bits`` (pfn_pte, set_pte_at;
    a slot given twice keeps the last, as numpy's assignment). Returns the PMD slots it
    populated, for their upper tables."""
    new = np.empty(slots.size, np.int64)
    n = 0
    for i in range(slots.size):
        p = slots[i] >> 9
        if pmd[p] == 0:
            pmd[p] = pmd_table
            new[n] = p
            n += 1
    for i in range(slots.size):
        pte[slots[i]] = (np.uint64(pfns[i]) << np.uint64(12)) | bits[i]
    return new[:n]


@njit(cache=True, nogil=True)
def thp_fault_pmds(slots, first_w, start_slot, end_slot, pmd):
    """do_huge_pmd_anonymous_faults' PMDs in one pass: each PMD the slots touch that a THP can
    fill (wholly inside [start_slot, end_slot), entry none), once, in first-access order, with
    whether that first access writes; and how many of the slots lie under such a PMD. The
    numpy form (memory.py) masks, then first_per_key; 64 GiB of THP populate makes it ~15
    passes over 16 M slots. The table of PMDs seen spans only those the eligible slots touch."""
    lo, hi = np.int64(1) << 62, np.int64(-1)
    for i in range(slots.size):
        p = slots[i] >> 9
        if p << 9 >= start_slot and (p + 1) << 9 <= end_slot and pmd[p] == 0:
            lo = min(lo, p)
            hi = max(hi, p)
    out_pmd = np.empty(max(hi - lo + 1, 0), np.int64)
    out_w = np.empty(out_pmd.size, np.bool_)
    if hi < 0:
        return out_pmd, out_w, 0
    seen = np.zeros(hi - lo + 1, np.bool_)
    m = n_eligible = 0
    for i in range(slots.size):
        p = slots[i] >> 9
        if p << 9 >= start_slot and (p + 1) << 9 <= end_slot and pmd[p] == 0:
            n_eligible += 1
            if not seen[p - lo]:
                seen[p - lo] = True
                out_pmd[m] = p
                out_w[m] = first_w[i]
                m += 1
    return out_pmd[:m], out_w[:m], n_eligible


@njit(cache=True, nogil=True)
def prot_numa_ptes(s0, s1, pte, pmd, order, flags, mapcount, node_start, toptier, zero_pfn,
                   huge_zero_pfn, skip_mapped_shared):
    """change_prot_numa()'s PTE filter over the page slots [s0, s1) in one pass (memory.py
    keeps the numpy form: ~30 array operations a 256-MB scan step): of the present,
    non-special PTEs outside THP leaves, those whose page is not a zero page and whose folio
    is on a node not in ``toptier``, not a dirty page-cache folio and, with
    ``skip_mapped_shared`` (a private mapping), mapped at most once on every page. Returns
    those slots, their folios' heads, and how many present entries it looked at."""
    out_slots = np.empty(max(s1 - s0, 0), np.int64)
    out_heads = np.empty(out_slots.size, np.int64)
    m = live = 0
    last = node_start.size - 1
    prev_head, prev_shared = np.int64(-1), False
    for s in range(s0, s1):
        if _leaf(pmd[s >> 9]):
            continue
        e = pte[s]
        if (e & np.uint64(_P)) == 0 or (e & np.uint64(_SPECIAL)) != 0:
            continue
        live += 1
        pfn = np.int64((e & np.uint64(_PFN)) >> np.uint64(12))
        if is_zero_pfn(pfn, zero_pfn, huge_zero_pfn):
            continue
        head = pfn & ~((np.int64(1) << np.int64(order[pfn])) - 1)
        nid = upper_bound(node_start, head, 0, last) - 1        # node_of
        if nid < 0 or head >= node_start[last]:     # -1 (past the last node) read as node 0,
            nid = 0                                 # as the numpy form's np.maximum
        if toptier[nid]:
            continue
        f = flags[head]
        if (f & _SB) == 0 and (f & _DIRTY) != 0:
            continue
        if skip_mapped_shared:
            if head != prev_head:                   # a PTE-mapped THP's pages come in a row
                prev_head = head
                prev_shared = False
                for p in range(head, head + (np.int64(1) << np.int64(order[head]))):
                    if mapcount[p] > 1:
                        prev_shared = True
                        break
            if prev_shared:
                continue
        out_slots[m] = s
        out_heads[m] = head
        m += 1
    return out_slots[:m], out_heads[:m], live


@njit(cache=True, nogil=True)
def set_up_thps(heads, pmds, flags, memcg, mapping, index, content, page_flags, memcg_id,
                mapping_id, tags, head_flags, slot_content):
    """set_up_folios for new PMD-mapped THPs, and the copy of their content tags to the page
    slots, in one pass without per-page pfn and index arrays: the THP ``heads[j]`` maps the
    page slots of PMD ``pmds[j]``, its pages' index is their slot, and each page's content
    tag (``tags``, folio by folio) goes to its pfn and to its slot."""
    i = 0
    for j in range(heads.size):
        h = heads[j]
        base = pmds[j] * _PMD_NR
        for x in range(_PMD_NR):
            p = h + x
            flags[p] |= page_flags
            memcg[p] = memcg_id
            mapping[p] = mapping_id
            index[p] = base + x
            content[p] = tags[i]
            slot_content[base + x] = tags[i]
            i += 1
        flags[h] |= head_flags
