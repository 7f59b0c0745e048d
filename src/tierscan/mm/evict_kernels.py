"""Compiled per-folio loops of MGLRU eviction (mglru-spec §7.4-§7.6; mm/evict.py calls them).

An eviction takes ~64 folios, so its numpy form is a few hundred array calls on tiny arrays:
their fixed cost, not the folios, was the time of a 200-GiB pressure run (33 k evictions at
~6 ms each, docs/performance.md). Each kernel here is one pass doing what the kernel's loop
does per folio, beside the numpy form it replaces (evict.py keeps that form; ``COMPILED =
False`` there selects it, and tests/test_evict_kernels.py holds the two together).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..arrays import upper_bound
from .constants import (
    LRU_GEN_MASK, LRU_REFS_MASK, LRU_REFS_SHIFT, LRU_REFS_WIDTH, MAX_NR_GENS, MAX_NR_TIERS,
    MIN_LRU_BATCH, PG_anon, PG_dirty, PG_lru, PG_reclaim, PG_referenced, PG_swapbacked,
    PG_swapcache, PG_unevictable, PG_workingset, PG_writeback,
)

# plain ints: numba compiles numpy-scalar globals into slow code (as lru_add_kernel.py)
_REFERENCED, _DIRTY, _LRU, _WS = int(PG_referenced), int(PG_dirty), int(PG_lru), int(PG_workingset)
_RECLAIM, _SB, _UNEVICTABLE = int(PG_reclaim), int(PG_swapbacked), int(PG_unevictable)
_WRITEBACK, _ANON, _SWAPCACHE = int(PG_writeback), int(PG_anon), int(PG_swapcache)
_GEN_MASK, _REFS_MASK, _REFS_SHIFT = int(LRU_GEN_MASK), int(LRU_REFS_MASK), int(LRU_REFS_SHIFT)
_SATURATED = (1 << int(LRU_REFS_WIDTH)) + 1
_TOP_TIER = int(MAX_NR_TIERS) - 1
_BATCH = int(MIN_LRU_BATCH)
_NR_GENS = int(MAX_NR_GENS)

# sort_folio() cases, as evict.py numbers them
_UNEV, _PROMOTED, _PROTECTED, _INELIGIBLE, _WB = 1, 2, 3, 4, 5


@njit(cache=True, nogil=True, inline="always")
def _tier_of(f, refs_bits):
    """lru_tier_from_refs(folio_lru_refs(), PG_workingset) of one folio, and whether it is
    saturated (refs + workingset == BIT(LRU_REFS_WIDTH) + 1)."""
    refs = refs_bits + 1 if f & _REFERENCED else 0
    ws = 1 if f & _WS else 0
    if ws:
        tier = _TOP_TIER
    elif refs > 1:                       # order_base_2(refs)
        tier = 0
        v = refs - 1
        while v:
            tier += 1
            v >>= 1
    else:
        tier = 0
    return tier, refs + ws == _SATURATED


@njit(cache=True, nogil=True)
def scan_window(cand, flags, gen_refs, order, node_start, node_zone, min_gen_anon,
                min_gen_file, tier_idx, reclaim_idx, gfp_io, pinned, isolated, remaining,
                cases, tiers, saturated, iso):
    """scan_folios()'s per-folio pass over a window of list-tail candidates: each folio's
    sort_folio() case (evict._sort_cases), tier and saturation, whether isolate_folio() would
    take it (evict._isolatable; ``pinned`` sorted), and the sequential stop rule (64 pages
    isolated in all, counting the ``isolated`` before this zone, or skipped in this zone; or
    the last of ``remaining`` candidates). Fills the outputs up to the stop and returns how
    many folios the zone takes, or -1 when the window holds no stop (all filled)."""
    iso_cum = isolated
    skip_cum = 0
    n = cand.size
    for i in range(n):
        h = cand[i]
        f = int(flags[h])
        gr = int(gen_refs[h])
        tier, sat = _tier_of(f, (gr & _REFS_MASK) >> _REFS_SHIFT)
        tiers[i] = tier
        saturated[i] = sat
        file_ = (f & _SB) == 0
        min_gen = min_gen_file if file_ else min_gen_anon
        nid = upper_bound(node_start, h, 0, node_start.size) - 1     # PhysMem.zone_of
        if f & _UNEVICTABLE:
            c = _UNEV
        elif (gr & _GEN_MASK) - 1 != min_gen:
            c = _PROMOTED
        elif tier > tier_idx or sat:
            c = _PROTECTED
        elif (f & _LRU) == 0 or node_zone[nid] > reclaim_idx:
            c = _INELIGIBLE
        elif (f & _WRITEBACK) or (file_ and (f & _DIRTY)):
            c = _WB
        else:
            c = 0
        cases[i] = c
        ok = False
        if c == 0:
            ok = (f & _LRU) != 0
            if ok and not gfp_io:
                ok = not ((f & _DIRTY) or ((f & _ANON) and (f & _SWAPCACHE) == 0))
            if ok and pinned.size:
                j = upper_bound(pinned, h, 0, pinned.size)
                ok = not (j > 0 and pinned[j - 1] == h)
        iso[i] = ok
        d = 1 << int(order[h])
        if ok:
            iso_cum += d
        elif c == 0:
            skip_cum += d
        if max(iso_cum, skip_cum) >= _BATCH or (i == n - 1 and n == remaining):
            return i + 1
    return -1


@njit(cache=True, nogil=True)
def isolate_taken(heads, flags, gen_refs, list_gen, lru_stamp, order, node_start, node_zone,
                  nr_pages):
    """isolate_folio() of folios scan_window found isolatable: clear the refs bits of one
    without PG_referenced, clear PG_reclaim and take it off the lists
    (lru_gen_del_folio(reclaiming=True): nr_pages, gen field, PG_lru, list position)."""
    for i in range(heads.size):
        h = heads[i]
        f = int(flags[h])
        gr = int(gen_refs[h])
        if (f & _REFERENCED) == 0:
            gr &= ~_REFS_MASK & 0xFF
        f &= ~_RECLAIM & 0xFFFF
        gen = (gr & _GEN_MASK) - 1
        if gen >= 0:
            typ = 0 if f & _SB else 1
            nid = upper_bound(node_start, h, 0, node_start.size) - 1
            nr_pages[gen, typ, node_zone[nid]] -= 1 << int(order[h])
            gr &= ~_GEN_MASK & 0xFF
            f &= ~_LRU & 0xFFFF
            list_gen[h] = 0
            lru_stamp[h] = 0
        gen_refs[h] = np.uint8(gr)
        flags[h] = np.uint16(f)
