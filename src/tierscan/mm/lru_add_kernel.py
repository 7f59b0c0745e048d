"""lru_gen_add_folio() as one compiled pass (mglru-spec §3.1): the MAP_POPULATE fault path adds
a quarter of a million folios a piece, and the numpy form (lru_gen.lru_gen_add_folio_reference,
kept for tests) makes ~25 passes over them. The kernel does the same per-folio steps in one:
lru_gen_folio_seq, the gen field, PG_lru/PG_active, list_gen and lru_gen_update_size's page
counts. List positions (lru_stamp) and the reclaim index stay with the caller.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .constants import (
    LRU_GEN_MASK, MAX_NR_GENS, MIN_NR_GENS, PG_active, PG_dirty, PG_lru, PG_reclaim,
    PG_swapbacked, PG_swapcache, PG_unevictable, PG_workingset, PG_writeback,
)

# plain ints: numba compiles numpy-scalar globals into slow code (as mmu.py)
_ACTIVE, _LRU, _WS, _SB = int(PG_active), int(PG_lru), int(PG_workingset), int(PG_swapbacked)
_SWAPCACHE, _RECLAIM, _UNEVICTABLE = int(PG_swapcache), int(PG_reclaim), int(PG_unevictable)
_DIRTY_WB = int(PG_dirty | PG_writeback)
_GEN_MASK = int(LRU_GEN_MASK)
_MIN, _MAX = int(MIN_NR_GENS), int(MAX_NR_GENS)


@njit(cache=True, nogil=True)
def add_folios_gen(heads, flags, gen_refs, list_gen, order, node_start, node_zone, max_seq,
                   min_seq_anon, min_seq_file, reclaiming, nr_pages, kept):
    """The per-folio part of lru_gen_add_folio() for distinct ``heads``: skips unevictable
    folios, writes the added ones' heads to ``kept`` in order and returns how many."""
    n = 0
    for i in range(heads.size):
        h = heads[i]
        f = int(flags[h])
        if f & _UNEVICTABLE:
            continue
        active = (f & _ACTIVE) != 0
        ws = 1 if f & _WS else 0
        swapbacked = (f & _SB) != 0
        if active:
            g = _MIN - ws
        elif reclaiming:
            g = _MAX
        elif (swapbacked and (f & _SWAPCACHE) == 0) or ((f & _RECLAIM) != 0
                                                         and (f & _DIRTY_WB) != 0):
            g = _MIN
        else:
            g = _MAX - ws
        typ = 0 if swapbacked else 1
        seq = max_seq - g + 1
        floor = min_seq_anon if typ == 0 else min_seq_file
        if seq < floor:
            seq = floor
        gen = seq % _MAX
        gen_refs[h] = np.uint8((int(gen_refs[h]) & ~_GEN_MASK & 0xFF) | (gen + 1))
        flags[h] = np.uint16((f & ~_ACTIVE & 0xFFFF) | _LRU)
        list_gen[h] = np.uint8(gen + 1)
        nid = np.searchsorted(node_start, h, side="right") - 1     # PhysMem.zone_of
        nr_pages[gen, typ, node_zone[nid]] += 1 << int(order[h])
        kept[n] = h
        n += 1
    return n
