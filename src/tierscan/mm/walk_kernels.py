"""Compiled inner loops of the page-table walk (mglru-spec §5.8, §5.9).

``scan_ranges`` is the read-only half of walk_pte_range: for PTE slot ranges in walk order it
finds the entries whose A bit the walk would clear (get_pte_pfn, get_pfn_folio).
``commit_young`` is the write half: test-and-clear those A bits and run walk_update_folio() in
walk order, one update per run of entries mapping the same folio (the kernel's ``last``),
which is an ordered state machine and so a compiled loop (DESIGN §4).
``pmd_batches`` is walk_pmd_range_locked()'s batching of PMD entries (§5.7), also an ordered
state machine; ``pmd_batches_reference`` is the same in plain Python, for the tests.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .constants import (
    MAX_NR_GENS, MIN_LRU_BATCH, LRU_GEN_MASK, LRU_REFS_MASK, PG_anon, PG_dirty, PG_referenced, PG_swapbacked, PG_swapcache,
    PG_workingset, PTE_PFN_MASK, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PROTNONE,
    _PAGE_SPECIAL,
)

# Plain ints: numba compiles numpy-scalar globals into slow code. PTE bits are applied to
# uint64 entries through np.uint64(...) at the use site (numba folds it to a constant); flag
# bits are applied to values widened to int64.
_A, _D = int(_PAGE_ACCESSED), int(_PAGE_DIRTY)
_PRESENT = int(_PAGE_PRESENT | _PAGE_PROTNONE)
_SPECIAL, _PFN = int(_PAGE_SPECIAL), int(PTE_PFN_MASK)
_GEN, _REFS = int(LRU_GEN_MASK), int(LRU_REFS_MASK)
_REF, _WS, _DIRTY = int(PG_referenced), int(PG_workingset), int(PG_dirty)
_PRIVATE_ANON = int(PG_anon | PG_swapbacked)
_SWAPCACHE, _SWAPBACKED = int(PG_swapcache), int(PG_swapbacked)


@njit(cache=True, nogil=True)
def scan_ranges(lo, hi, pte, order, lru_gen_refs, memcg, node_lo, node_hi, memcg_id, zero_pfn,
                out_slot, out_pfn, per_range, limit):
    """Young, eligible PTEs of the slot ranges [lo[r], hi[r]) in order: their slots and pfns
    written to ``out_slot``/``out_pfn`` (room for every slot of the ranges), their count per
    range to ``per_range``. Returns how many. (The caller's buffers: a dense walk writes one
    entry per slot, and fresh pages would cost more than the scan.) ``scan_ranges_reference``
    is the numpy form. The scan ends at the ``limit``-th one found (>= 0; the ranges after
    count 0): for a caller that only looks at that many.

    The arrays are indexed with unsigned integers (slots, pfns and k are never negative):
    numba then leaves out the wrap-around of negative indexes, a compare and an add on
    every read and write (2.4-2.6 vs 3.0 ns a PTE over 4 Mi young PTEs)."""
    k = np.uint64(0)
    cap = np.uint64(limit)
    for r in range(lo.size):
        k0 = k
        for s in range(np.uint64(lo[r]), np.uint64(hi[r]) if k < cap else np.uint64(lo[r])):
            e = pte[s]
            if (not (e & np.uint64(_PRESENT)) or not (e & np.uint64(_A))
                    or (e & np.uint64(_SPECIAL))):
                continue
            pfn = np.int64((e & np.uint64(_PFN)) >> np.uint64(12))
            if pfn == zero_pfn or pfn < node_lo or pfn >= node_hi:
                continue
            u = np.uint64(pfn)
            head = u & ~((np.uint64(1) << np.uint64(order[u])) - np.uint64(1))
            if (np.int64(lru_gen_refs[head]) & _GEN) == 0 or np.int64(memcg[head]) != memcg_id:
                continue
            out_slot[k] = s
            out_pfn[k] = pfn
            k += np.uint64(1)
            if k == cap:
                break
        per_range[r] = k - k0
    return np.int64(k)


def scan_ranges_reference(lo, hi, pte, order, lru_gen_refs, memcg, node_lo, node_hi,
                          memcg_id, zero_pfn):
    """scan_ranges() as numpy passes over every slot of the ranges: (slots, pfns,
    per_range)."""
    lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    lens = hi - lo
    slots = np.repeat(lo - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
    e = pte[slots]
    pfn = ((e & np.uint64(_PFN)) >> np.uint64(12)).astype(np.int64)
    ok = (((e & np.uint64(_PRESENT)) != 0) & ((e & np.uint64(_A)) != 0)
          & ((e & np.uint64(_SPECIAL)) == 0) & (pfn != zero_pfn) & (pfn >= node_lo)
          & (pfn < node_hi))
    head = pfn[ok] & ~((np.int64(1) << order[pfn[ok]].astype(np.int64)) - 1)
    ok[ok] = ((lru_gen_refs[head].astype(np.int64) & _GEN) != 0) & (memcg[head] == memcg_id)
    per_range = np.bincount(np.repeat(np.arange(lens.size), lens)[ok], minlength=lens.size)
    return slots[ok], pfn[ok], per_range


@njit(cache=True, nogil=True)
def commit_young(table, slots, pfns, piece_ends, gen, flags, lru_gen_refs, order, zone,
                 walk_nr_pages):
    """Clear the A bit of ``table[slots]`` and walk_update_folio() each run of entries of one
    folio within one piece once, dirty if any of its entries was (§5.9). ``pfns`` are the
    entries' pfns (the folio head is found here); piece p ends before entry piece_ends[p].
    Returns how many folios changed gen (walk->batched). The update is written inline: a
    numba helper call costs more than the update itself; the nr_pages deltas are summed in a
    local array first (a store and reload of walk_nr_pages per folio cost half the loop)."""
    moved = 0
    n = slots.size
    last, last_piece, dirty = np.int64(-1), np.int64(-1), False
    leaving = np.zeros(2 * MAX_NR_GENS, np.int64)     # pages leaving (old gen, type)
    p = 0
    next_end = piece_ends[0] if piece_ends.size else n
    e = np.uint64(0)
    head = np.int64(-1)
    for i in range(n + 1):
        if i < n:
            while i >= next_end:
                p += 1
                next_end = piece_ends[p] if p < piece_ends.size else n
            e = table[slots[i]]
            table[slots[i]] = e & ~np.uint64(_A)
            pfn = pfns[i]
            head = pfn & ~((np.int64(1) << np.int64(order[pfn])) - 1)
            if head == last and p == last_piece:
                dirty = dirty or bool(e & np.uint64(_D))
                continue
        if last >= 0:
            # walk_update_folio(walk, last, gen, dirty)
            f = np.int64(flags[last])
            if dirty and not (f & _DIRTY) and not ((f & _PRIVATE_ANON) == _PRIVATE_ANON
                                                   and not (f & _SWAPCACHE)):
                f |= _DIRTY
                flags[last] = f
            # folio_update_gen(folio, gen) (§3.4)
            r = np.int64(lru_gen_refs[last])
            if not (f & _REF) and not (f & _WS):
                flags[last] = f | _REF
                lru_gen_refs[last] = r & ~_REFS
            elif r & _GEN:
                old = (r & _GEN) - 1
                lru_gen_refs[last] = (r & ~(_GEN | _REFS)) | (gen + 1)
                flags[last] = (f & ~_REF) | _WS
                if old != gen:  # update_batch_size()
                    t = 0 if f & _SWAPBACKED else 1
                    leaving[2 * old + t] += np.int64(1) << np.int64(order[last])
                    moved += 1
        if i < n:
            last, last_piece, dirty = head, np.int64(p), bool(e & np.uint64(_D))
    for q in range(2 * MAX_NR_GENS):
        if leaving[q]:
            walk_nr_pages[q // 2, q % 2, zone] -= leaving[q]
            walk_nr_pages[gen, q % 2, zone] += leaving[q]
    return moved


@njit(cache=True, nogil=True)
def pmd_batches(bv, bv_last, visit_pmd):
    """walk_pmd_range_locked()'s batches over the PMD visits ``bv`` that enter it, in walk
    order (``bv_last``: the last visit of each one's walk_pmd_range piece, where the batch is
    flushed; ``visit_pmd``: the PMD slot of every visit). A batch keeps ``first`` and a bitmap
    of the entries up to MIN_LRU_BATCH PMDs after it; an entry further away (the trigger) is
    processed first, then ``first``, then the bitmap in order, and the batch empties; what is
    left at the piece's end is processed there.

    Returns per member in processing order: visit, key, rank, batch, offset from ``first``
    (the caller orders deliveries by (key, rank): a batch processed at the trigger visit t has
    key 2t, before t's own table at 2t+1; at the end of a piece whose last visit is L, 2L+2);
    and per batch: first visit, bitmap, key, whether a trigger ended it."""
    n = bv.size
    m_visit = np.empty(n, np.int64)
    m_key = np.empty(n, np.int64)
    m_rank = np.empty(n, np.int64)
    m_group = np.empty(n, np.int64)
    m_off = np.empty(n, np.int64)
    g_first = np.empty(n, np.int64)
    g_bitmap = np.zeros(n, np.uint64)
    g_key = np.empty(n, np.int64)
    g_trigger = np.zeros(n, np.bool_)
    k = 0
    ng = 0
    i = 0
    while i < n:
        first, last = bv[i], bv_last[i]
        j = i + 1
        bitmap = np.uint64(0)
        while (j < n and bv_last[j] == last
               and visit_pmd[bv[j]] - visit_pmd[first] <= MIN_LRU_BATCH):
            bitmap |= np.uint64(1) << np.uint64(visit_pmd[bv[j]] - visit_pmd[first] - 1)
            j += 1
        rank = 0
        nxt = j
        key = 2 * last + 2
        if j < n and bv_last[j] == last:             # the trigger, processed first
            t = bv[j]
            key = 2 * t
            g_trigger[ng] = True
            m_visit[k], m_key[k], m_rank[k], m_group[k] = t, key, 0, ng
            m_off[k] = visit_pmd[t] - visit_pmd[first]
            k += 1
            rank = 1
            nxt = j + 1
        for q in range(i, j):
            m_visit[k], m_key[k], m_rank[k], m_group[k] = bv[q], key, rank, ng
            m_off[k] = visit_pmd[bv[q]] - visit_pmd[first]
            k += 1
            rank += 1
        g_first[ng], g_bitmap[ng], g_key[ng] = first, bitmap, key
        ng += 1
        i = nxt
    return (m_visit, m_key, m_rank, m_group, m_off, g_first[:ng], g_bitmap[:ng], g_key[:ng],
            g_trigger[:ng])


def pmd_batches_reference(bv, bv_last, visit_pmd):
    """pmd_batches() written as walk_pmd_range_locked() is: one entry at a time, a batch of
    ``first`` and a bitmap, processed on overflow (trigger first) or at the piece's end."""
    members, groups = [], []
    first, bitmap, group, last = -1, 0, [], None

    def process(key, trigger):
        for rank, v in enumerate(([trigger] if trigger is not None else []) + group):
            members.append((v, key, rank, len(groups), int(visit_pmd[v] - visit_pmd[first])))
        groups.append((first, bitmap, key, trigger is not None))

    for v, piece_last in zip(np.asarray(bv).tolist(), np.asarray(bv_last).tolist()):
        if first != -1 and piece_last != last:         # the previous piece ended: flush
            process(2 * last + 2, None)
            first = -1
        last = piece_last
        if first == -1:
            first, bitmap, group = v, 0, [v]
            continue
        off = int(visit_pmd[v] - visit_pmd[first])
        if off <= MIN_LRU_BATCH:
            bitmap |= 1 << (off - 1)
            group.append(v)
            continue
        process(2 * v, v)
        first = -1
    if first != -1:
        process(2 * last + 2, None)
    m = np.array(members, np.int64).reshape(-1, 5)
    g = np.array([(f, 0, k, t) for f, _, k, t in groups], np.int64).reshape(-1, 4)
    return (m[:, 0], m[:, 1], m[:, 2], m[:, 3], m[:, 4], g[:, 0],
            np.array([b for _, b, _, _ in groups], np.uint64), g[:, 2], g[:, 3].astype(bool))
