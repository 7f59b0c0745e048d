"""walk_pmd_range over a whole range at once: the walk's fast path.

The sequential walk (vmscan.walk_pmd_range) loops over PMD entries in Python. This module
computes the same walk for every PMD entry of a ``walk_pmd_range`` call in a few numpy passes:

1. plan (read-only): follow the control flow at VMA granularity (the get_next_vma restarts and
   the PTE-level continuations into later VMAs of the same table), classify every PMD entry
   (none, THP leaf, non-leaf young, Bloom filter), and list the PTE slots to visit;
2. find the young entries and the exact order the callback would see them in: PTE pfns as
   their table is walked, THPs when their walk_pmd_range_locked batch is processed;
3. deliver them; if the callback asks to stop, nothing has changed yet, so the sequential walk
   runs instead with a replay of the callback's answers (the callback is not called twice);
4. otherwise commit: clear the A bits, update folio gens, mm_stats, Bloom filters, args.vma.

It returns None when it does not apply (lock-failure injection), and the walk's error code
otherwise. Tests check it against the sequential walk state for state.
"""

from __future__ import annotations

import numpy as np

from .constants import (
    MIN_LRU_BATCH, MM_LEAF_TOTAL, MM_LEAF_YOUNG, MM_NONLEAF_ADDED, MM_NONLEAF_FOUND, PAGE_SIZE,
    PMD_SIZE, _PAGE_ACCESSED, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_PSE, _PAGE_SPECIAL,
)
from .lru_gen import lru_gen_from_seq
from .pagetable import PageTable, pte_pfn


class Replay:
    """Answers the sequential walk's deliveries from a decision already taken on the whole
    sequence: the first ``consumed`` pfns pass, and the delivery holding pfn ``anchor`` (the
    one the callback stopped on) stops."""

    def __init__(self, seq: np.ndarray, consumed: int, anchor: int):
        self.seq, self.consumed, self.anchor, self.pos = seq, consumed, anchor, 0

    def __call__(self, pfns: np.ndarray) -> tuple[int, bool]:
        n, pos = pfns.size, self.pos
        if n == 0:
            return 0, False
        if not np.array_equal(self.seq[pos:pos + n], pfns):
            raise AssertionError("fast and sequential walks disagree on the delivery order")
        if pos + n <= self.anchor:
            self.pos += n
            return n, False
        self.pos = self.consumed
        return self.consumed - pos, True


def walk_pmd_range_fast(args, start: int, end: int):
    from .vmscan import (
        PMD_MASK, PUD_MASK, SUITABLE_N, clear_young, ended_before_last_slot, get_next_vma,
        get_pfn_folio_mask, pmd_item, should_clear_pmd_young, test_bloom_filter,
        update_bloom_filter, walk_pmd_range, young_ptes,
    )

    walk, mm = args.walk, args.mm
    if walk.trylock is not None:
        return None
    kernel, lruvec, pt = mm.kernel, walk.lruvec, mm.pt
    st = lruvec.mm_state
    vma_at_entry = args.vma
    nonleaf_mode = not walk.force_scan and should_clear_pmd_young(kernel)
    lo, hi = kernel.pm.node_range(lruvec.nid)

    # ---- 1. plan -----------------------------------------------------------------------------
    visit_pmd, visit_kind = [], []          # kind: 0 none, 1 THP, 2 PTE table walked, 3 skipped
    pte_lo, pte_hi, pte_visit = [], [], []  # PTE slot ranges and the visit they belong to
    piece_last_visit = []
    batched_visits = []                     # visits entering walk_pmd_range_locked, per piece
    base = 0                                # visits planned so far
    s, e = start, end
    while True:
        p0, p1 = PageTable.slot(s) >> 9, (PageTable.slot(e - 1) >> 9) + 1
        pmds = np.arange(p0, p1)
        kernel.materialize_pmds(mm, pmds)
        ent = pt.pmd[pmds]
        present = (ent & (_PAGE_PRESENT | _PAGE_PROTNONE | _PAGE_PSE)) != 0
        huge = (ent & _PAGE_PSE) != 0
        special = (ent & _PAGE_SPECIAL) != 0
        young = (ent & _PAGE_ACCESSED) != 0
        pfn = pte_pfn(ent)
        thp = present & huge & ~special
        thp_valid = thp & young & (pfn >= lo) & (pfn < hi)
        table = present & ~huge
        nl_young = table & young if nonleaf_mode else np.zeros(pmds.size, bool)
        reach_bloom = table & (young if nonleaf_mode else True)
        bloom = np.ones(pmds.size, bool)
        if not walk.force_scan and reach_bloom.any():
            bloom[reach_bloom] = test_bloom_filter(st, walk.seq, pmd_item(mm, pmds[reach_bloom]))
        walked = reach_bloom & bloom
        kind = np.where(~present | (huge & special), 0, np.where(thp, 1, np.where(walked, 2, 3)))
        visit_pmd.append(pmds)
        visit_kind.append(kind)
        # PTE ranges of the walked tables: whole tables, clipped to [s, e) at the ends
        w = np.flatnonzero(walked)
        if w.size:
            a = np.maximum(pmds[w] << 9, PageTable.slot(s))
            b = np.minimum((pmds[w] + 1) << 9, PageTable.slot(e))
            pte_lo.append(a)
            pte_hi.append(b)
            pte_visit.append(base + w)
        last_walked = walked[-1]
        batched_visits.append(base + np.flatnonzero(thp_valid | nl_young))
        piece_last_visit.append(base + pmds.size - 1)
        if last_walked and (e & ~PMD_MASK):
            # walk_pte_range's continuation into later VMAs of the same PTE table
            cont_end = e
            while True:
                found, cs, cont_end = get_next_vma(PMD_MASK, PAGE_SIZE, args, cont_end)
                if not found:
                    break
                pte_lo.append(np.array([PageTable.slot(cs)]))
                pte_hi.append(np.array([PageTable.slot(cont_end)]))
                pte_visit.append(np.array([base + pmds.size - 1]))
                if not cont_end & ~PMD_MASK:
                    break
        base += pmds.size
        if not ended_before_last_slot(e, PUD_MASK, PMD_SIZE):
            break
        found, s, e = get_next_vma(PUD_MASK, PMD_SIZE, args, e)
        if not found:
            break

    visit_pmd = np.concatenate(visit_pmd)
    visit_kind = np.concatenate(visit_kind)
    nvisit = visit_pmd.size

    # ---- 2. young entries and delivery order --------------------------------------------------
    # ranges are already in walk order: a table's continuation pieces follow its main piece
    if pte_lo:
        lo_a, hi_a = np.concatenate(pte_lo), np.concatenate(pte_hi)
        range_visit = np.concatenate(pte_visit)
    else:
        lo_a = hi_a = range_visit = np.empty(0, np.int64)
    if kernel.access_source is not None and lo_a.size:
        lens = hi_a - lo_a
        kernel.materialize_ptes(mm, np.repeat(lo_a - np.cumsum(lens) + lens, lens)
                                + np.arange(int(lens.sum())))
    cslots, cpfns, cheads, crange, _ = young_ptes(kernel, lruvec, pt, lo_a, hi_a)
    cvisit = range_visit[crange]

    thp_visits, thp_rank_key = _thp_delivery(batched_visits, visit_pmd, visit_kind,
                                             piece_last_visit)
    thp_pfn = pte_pfn(pt.pmd[visit_pmd[thp_visits]]) if thp_visits.size else np.empty(0, np.int64)
    thp_ok, thp_heads = get_pfn_folio_mask(kernel, lruvec, thp_pfn)
    thp_visits, thp_rank_key = thp_visits[thp_ok], thp_rank_key[thp_ok]
    thp_pfn, thp_heads = thp_pfn[thp_ok], thp_heads[thp_ok]

    # sort key: PTE pfns of visit v at (2v+1, position); THP groups at (2v or 2v+2, rank)
    if thp_pfn.size:
        key1 = np.concatenate([2 * cvisit + 1, thp_rank_key[:, 0]])
        key2 = np.concatenate([np.arange(cpfns.size), thp_rank_key[:, 1]])
        all_pfns = np.concatenate([cpfns, thp_pfn])[np.lexsort((key2, key1))]
    else:
        all_pfns = cpfns

    # ---- 3. deliver --------------------------------------------------------------------------
    if walk.accessed_cb is not None and all_pfns.size:
        consumed, stop = walk.accessed_cb(all_pfns)
        if stop:
            deliver = walk.accessed_cb
            args.vma = vma_at_entry
            walk.accessed_cb = Replay(all_pfns, consumed, deliver.anchor)
            try:
                return walk_pmd_range(args, start, end, fast=False)
            finally:
                walk.accessed_cb = deliver

    # ---- 4. commit ---------------------------------------------------------------------------
    gen = lru_gen_from_seq(lruvec.lrugen.max_seq)
    nr_ptes = int((hi_a - lo_a).sum())
    stats = walk.mm_stats
    stats[MM_LEAF_TOTAL] += int((visit_kind <= 1).sum()) + nr_ptes
    stats[MM_LEAF_YOUNG] += cslots.size + thp_pfn.size
    walk.round_ptes += nr_ptes
    clear_young(kernel, walk, pt.pte, cslots, cheads, crange, gen)
    clear_young(kernel, walk, pt.pmd, visit_pmd[thp_visits], thp_heads,
                np.arange(thp_heads.size), gen)
    nl = np.concatenate(batched_visits)
    nl = nl[visit_kind[nl] != 1]
    pt.pmd[visit_pmd[nl]] &= ~_PAGE_ACCESSED

    walked = np.flatnonzero(visit_kind == 2)
    if walked.size:
        total = np.bincount(range_visit, weights=hi_a - lo_a, minlength=nvisit)[walked]
        young = np.bincount(cvisit, minlength=nvisit)[walked]
        total[0] += walk.nr_total_pte
        young[0] += walk.nr_young_pte
        walk.nr_total_pte = walk.nr_young_pte = 0
        suitable = young * SUITABLE_N >= total
        stats[MM_NONLEAF_FOUND] += walked.size
        stats[MM_NONLEAF_ADDED] += int(suitable.sum())
        update_bloom_filter(st, walk.seq + 1, pmd_item(mm, visit_pmd[walked[suitable]]))
    return 0


def _thp_delivery(batched_visits, visit_pmd, visit_kind, piece_last_visit):
    """Which THP visits are delivered, and when: walk_pmd_range_locked() keeps a batch from
    ``first`` up to offset 64; an entry further away triggers processing (that entry, then
    first, then the bitmap in order) before its own table is walked; the rest is processed
    at the end of the piece. Returns (visits, keys) with keys (key1, rank) as in the caller."""
    out_v, out_k = [], []
    for bv, last in zip(batched_visits, piece_last_visit):
        first = -1
        group: list[int] = []
        for v in bv.tolist():
            if first == -1:
                first, group = v, [v]
                continue
            off = int(visit_pmd[v] - visit_pmd[first])
            if off <= MIN_LRU_BATCH:
                group.append(v)
                continue
            for rank, g in enumerate([v] + group):
                if visit_kind[g] == 1:
                    out_v.append(g)
                    out_k.append((2 * v, rank))
            first, group = -1, []
        for rank, g in enumerate(group):
            if visit_kind[g] == 1:
                out_v.append(g)
                out_k.append((2 * last + 2, rank))
    if not out_v:
        return np.empty(0, np.int64), np.empty((0, 2), np.int64)
    return np.array(out_v, np.int64), np.array(out_k, np.int64)

