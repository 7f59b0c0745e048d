"""walk_pmd_range over a whole range at once: the walk's fast path.

The sequential walk (vmscan.walk_pmd_range) loops over PMD entries in Python. This module
computes the same walk for every PMD entry of a ``walk_pmd_range`` call in a few numpy passes
and compiled loops:

1. plan (read-only): follow the control flow at VMA granularity (the get_next_vma restarts and
   the PTE-level continuations into later VMAs of the same table), classify every PMD entry
   ("visit": none, THP leaf, non-leaf young, Bloom filter), and list the PTE slots to visit;
2. find the young entries and the exact order the callback would see them in: PTE pfns as
   their table is walked, THPs when their walk_pmd_range_locked batch is processed
   (walk_kernels.pmd_batches);
3. deliver them all in one call (the callback's answer does not depend on how the sequence is
   cut into calls: vmscan.Deliver);
4. commit the state the sequential walk has when it stops: everything, or, when the callback
   asked to stop, exactly the prefix the sequential walk gets through before returning -EAGAIN
   (``_stop``): the consumed young entries cleared, the non-leaf bits of the batches processed
   so far, the per-table counts and Bloom filter of the tables finished, the interrupted
   table's nr_total/nr_young, mm_stats, next_addr (the Q1/Q2/Q7/Q8 paths as in vmscan.py).

It returns None when it does not apply (lock-failure injection), and the walk's error code
otherwise. Tests check it against the sequential walk state for state, stops included
(tests/test_walk_equivalence*.py).
"""

from __future__ import annotations

import errno
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .constants import (
    MM_LEAF_TOTAL, MM_LEAF_YOUNG, MM_NONLEAF_ADDED, MM_NONLEAF_FOUND, PAGE_SIZE, PMD_SIZE,
    ULONG_MAX, _PAGE_ACCESSED, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_PSE, _PAGE_SPECIAL,
)
from .lru_gen import lru_gen_from_seq
from .pagetable import PageTable, pte_pfn
from .walk_kernels import pmd_batches

NONE, THP, WALKED, SKIPPED = 0, 1, 2, 3       # a visit's kind


@dataclass
class Plan:
    """The PMD entries a walk_pmd_range call visits ("visits", in walk order) and the PTE slot
    ranges [lo, hi) it walks, each belonging to one visit (a table's continuation pieces into
    later VMAs follow its main piece)."""

    pmd: np.ndarray          # PMD slot of each visit
    kind: np.ndarray         # NONE, THP, WALKED or SKIPPED
    addr: np.ndarray         # the walk's ``addr`` at the visit (the piece start for its first)
    nxt: np.ndarray          # the end of the visit's range in walk_pmd_range (``next``); uint64
    lo: np.ndarray           # PTE slot ranges, walk order
    hi: np.ndarray
    range_visit: np.ndarray  # visit of each range
    batched: np.ndarray      # visits entering walk_pmd_range_locked, walk order
    batched_last: np.ndarray  # the last visit of each batched visit's piece (flush point)


@dataclass
class Young:
    """What the walk finds young, in delivery order: PTE items (slot, pfn; those of range r
    are items [ends[r-1], ends[r])) and THP items (their batch member index), merged into
    ``pfns``; ``order`` maps a delivery index to an item (< number of PTE items: a PTE item;
    else a THP item), None when the sequence is the PTE items alone."""

    slots: np.ndarray
    pfns_pte: np.ndarray
    per_range: np.ndarray    # PTE items per range
    ends: np.ndarray         # cumsum(per_range)
    m_visit: np.ndarray      # batch members, processing order (pmd_batches)
    m_key: np.ndarray
    m_rank: np.ndarray
    m_group: np.ndarray
    m_off: np.ndarray
    g_first: np.ndarray      # batches: first visit, bitmap, key, whether a trigger ended it
    g_bitmap: np.ndarray
    g_key: np.ndarray
    g_trigger: np.ndarray
    thp: np.ndarray          # member index of each delivered THP, delivery order
    thp_pfns: np.ndarray
    pfns: np.ndarray         # the delivery sequence
    order: np.ndarray | None


def walk_pmd_range_fast(args, start: int, end: int):
    """walk_pmd_range() (mglru-spec §5.6-§5.8) over [start, end) and the VMAs it continues
    into, in one go: the same state, stats, deliveries and return code as vmscan's sequential
    walk_pmd_range, stops included. None when it does not apply (lock-failure injection)."""
    walk = args.walk
    if walk.trylock is not None:
        return None
    plan = _plan(args, start, end)
    with _SCRATCH.use(int((plan.hi - plan.lo).sum())) as out:
        y = _young(args, plan, out)
        if walk.accessed_cb is not None and y.pfns.size:
            consumed, stop = walk.accessed_cb(y.pfns)
            if stop:
                return _stop(args, plan, y, consumed, walk.accessed_cb.anchor)
        nv, nr = plan.pmd.size, plan.lo.size
        _commit(args, plan, y, y.slots.size, y.thp.size, _member_is_nonleaf(plan, y), nv, nr)
    return 0


class Scratch:
    """The young-PTE scan's output buffers (slots, pfns), kept across calls: a dense range
    writes one entry per PTE slot, and on fresh pages the page faults cost more than the scan
    itself. The pfns the callback gets are a read-only view, valid during the call (callbacks
    copy what they keep, as klruscand's batch does). A walk started from inside a callback
    (none does today) gets fresh buffers."""

    def __init__(self):
        self.bufs = (np.empty(0, np.int64), np.empty(0, np.int64))
        self.busy = False

    @contextmanager
    def use(self, n: int):
        if self.busy:
            yield (np.empty(n, np.int64), np.empty(n, np.int64))
            return
        if self.bufs[0].size < n:
            self.bufs = (np.empty(n, np.int64), np.empty(n, np.int64))
        self.busy = True
        try:
            yield self.bufs
        finally:
            self.busy = False


_SCRATCH = Scratch()


# ---- 1. plan ---------------------------------------------------------------------------------
def _plan(args, start: int, end: int) -> Plan:
    from .vmscan import (
        PMD_MASK, PUD_MASK, ended_before_last_slot, get_next_vma, pmd_item,
        should_clear_pmd_young, test_bloom_filter,
    )

    walk, mm = args.walk, args.mm
    kernel, lruvec, pt = mm.kernel, walk.lruvec, mm.pt
    st = lruvec.mm_state
    nonleaf_mode = not walk.force_scan and should_clear_pmd_young(kernel)
    lo, hi = kernel.pm.node_range(lruvec.nid)
    visit_pmd, visit_kind, visit_addr, visit_nxt = [], [], [], []
    pte_lo, pte_hi, pte_visit = [], [], []
    batched, batched_last = [], []
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
        thp_valid = thp & young & (pfn >= lo) & (pfn < hi)        # get_pmd_pfn() != -1
        table = present & ~huge
        nl_young = table & young if nonleaf_mode else np.zeros(pmds.size, bool)
        reach_bloom = table & (young if nonleaf_mode else True)
        bloom = np.ones(pmds.size, bool)
        if not walk.force_scan and reach_bloom.any():
            bloom[reach_bloom] = test_bloom_filter(st, walk.seq, pmd_item(mm, pmds[reach_bloom]))
        walked = reach_bloom & bloom
        kind = np.where(~present | (huge & special), NONE,
                        np.where(thp, THP, np.where(walked, WALKED, SKIPPED)))
        visit_pmd.append(pmds)
        visit_kind.append(kind)
        # addr / next of walk_pmd_range's loop: PMD boundaries, clipped to [s, e)
        bounds = PageTable.addr(np.arange(p0, p1 + 1, dtype=np.int64) << 9)
        bounds[0], bounds[-1] = s, min(int(bounds[-1]), e)
        visit_addr.append(bounds[:-1])        # uint64 (addresses), read by int() where used
        visit_nxt.append(bounds[1:])
        # PTE ranges of the walked tables: whole tables, clipped to [s, e) at the ends
        w = np.flatnonzero(walked)
        if w.size:
            pte_lo.append(np.maximum(pmds[w] << 9, PageTable.slot(s)))
            pte_hi.append(np.minimum((pmds[w] + 1) << 9, PageTable.slot(e)))
            pte_visit.append(base + w)
        bv = base + np.flatnonzero(thp_valid | nl_young)
        batched.append(bv)
        batched_last.append(np.full(bv.size, base + pmds.size - 1))
        if walked[-1] and (e & ~PMD_MASK):
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
    empty = np.empty(0, np.int64)
    cat = (lambda xs: np.concatenate(xs).astype(np.int64) if xs else empty)
    return Plan(cat(visit_pmd), cat(visit_kind), np.concatenate(visit_addr),
                np.concatenate(visit_nxt), cat(pte_lo), cat(pte_hi), cat(pte_visit),
                cat(batched), cat(batched_last))


# ---- 2. young entries and delivery order ------------------------------------------------------
def _young(args, plan: Plan, out) -> Young:
    from .vmscan import get_pfn_folio_mask, young_ptes

    walk, mm = args.walk, args.mm
    kernel, lruvec, pt = mm.kernel, walk.lruvec, mm.pt
    m_visit, m_key, m_rank, m_group, m_off, g_first, g_bitmap, g_key, g_trigger = pmd_batches(
        plan.batched, plan.batched_last, plan.pmd)
    thp = np.flatnonzero(plan.kind[m_visit] == THP)
    thp_pfn = np.empty(0, np.int64)
    if thp.size:
        thp_pfn = pte_pfn(pt.pmd[plan.pmd[m_visit[thp]]])
        ok, _ = get_pfn_folio_mask(kernel, lruvec, thp_pfn)
        thp, thp_pfn = thp[ok], thp_pfn[ok]
    if kernel.access_source is not None and plan.lo.size:
        _materialize_ranges(kernel, mm, plan.lo, plan.hi)
    # PTE items beyond those that decide the callback's answer are never delivered (it stops
    # by then) nor committed: not looked for (where no THP item is merged in among them)
    limit = (walk.accessed_cb.decisive() if walk.accessed_cb is not None and not thp.size
             else None)
    slots, pfns, per_range = young_ptes(kernel, lruvec, pt, plan.lo, plan.hi, out, limit)
    ends = np.cumsum(per_range)

    order = None
    if thp.size:
        # PTE items of visit v sort at (2v+1, position); THP items at (their batch's key, rank)
        key1 = np.concatenate([2 * np.repeat(plan.range_visit, per_range) + 1, m_key[thp]])
        key2 = np.concatenate([np.arange(pfns.size), m_rank[thp]])
        order = np.lexsort((key2, key1))
        all_pfns = np.concatenate([pfns, thp_pfn])[order]
    else:
        all_pfns = pfns.view()
        all_pfns.flags.writeable = False
    return Young(slots, pfns, per_range, ends, m_visit, m_key, m_rank, m_group, m_off,
                 g_first, g_bitmap, g_key, g_trigger, thp, thp_pfn, all_pfns, order)


def _materialize_ranges(kernel, mm, lo, hi) -> None:
    """kernel.materialize_ptes() of every PTE slot of the ranges, in walk order: by the access
    model's ``materialize_pte_ranges`` (the same draws, without the slot list) where it has
    one."""
    by_ranges = getattr(kernel.access_source, "materialize_pte_ranges", None)
    if by_ranges is not None:
        by_ranges(mm, lo, hi)
    else:
        kernel.materialize_ptes(mm, _slots_of(lo, hi))


def _slots_of(lo, hi) -> np.ndarray:
    """Every PTE slot of the ranges [lo[r], hi[r]), in walk order."""
    if (lo[1:] == hi[:-1]).all():              # back to back (whole tables, one VMA)
        return np.arange(lo[0], hi[-1])
    lens = hi - lo
    return np.repeat(lo - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))


def _member_is_nonleaf(plan: Plan, y: Young) -> np.ndarray:
    """Batch members whose non-leaf young bit walk_pmd_range_locked clears when it processes
    them (the batch holds only THP leaves and, in non-leaf mode, young non-leaf entries)."""
    return plan.kind[y.m_visit] != THP


# ---- 4. commit -------------------------------------------------------------------------------
def _commit(args, plan: Plan, y: Young, n_pte: int, n_thp: int, nl: np.ndarray, nv: int,
            nr: int) -> None:
    """Commit the walk's effects up to a point: the first ``n_pte`` PTE items and ``n_thp``
    THP items cleared and their folios updated, the non-leaf bits of batch members ``nl``
    (a mask) cleared, and visits [0, nv) (ranges [0, nr)) counted as done: mm_stats, and the
    finished tables' Bloom filter entries and NONLEAF stats."""
    from .vmscan import SUITABLE_N, clear_young, pmd_item, update_bloom_filter

    walk, mm = args.walk, args.mm
    kernel, lruvec, pt = mm.kernel, walk.lruvec, mm.pt
    gen = lru_gen_from_seq(lruvec.lrugen.max_seq)
    stats = walk.mm_stats
    lens = plan.hi[:nr] - plan.lo[:nr]
    nr_ptes = int(lens.sum())
    stats[MM_LEAF_TOTAL] += int((plan.kind[:nv] <= THP).sum()) + nr_ptes
    stats[MM_LEAF_YOUNG] += n_pte + n_thp
    walk.round_ptes += nr_ptes
    clear_young(kernel, walk, pt.pte, y.slots[:n_pte], y.pfns_pte[:n_pte], y.ends, gen)
    if n_thp:                                   # (most walks find no THP: skip the calls)
        thp = y.thp[:n_thp]
        clear_young(kernel, walk, pt.pmd, plan.pmd[y.m_visit[thp]], y.thp_pfns[:n_thp],
                    np.arange(1, thp.size + 1), gen)
    if nl.any():
        pt.pmd[plan.pmd[y.m_visit[nl]]] &= ~_PAGE_ACCESSED

    walked = np.flatnonzero(plan.kind[:nv] == WALKED)
    if walked.size:
        rv = plan.range_visit[:nr]
        total = np.bincount(rv, weights=lens, minlength=nv)[walked].astype(np.int64)
        young = np.bincount(rv, weights=y.per_range[:nr], minlength=nv)[walked].astype(np.int64)
        total[0] += walk.nr_total_pte
        young[0] += walk.nr_young_pte
        walk.nr_total_pte = walk.nr_young_pte = 0
        suitable = young * SUITABLE_N >= total
        stats[MM_NONLEAF_FOUND] += walked.size
        stats[MM_NONLEAF_ADDED] += int(suitable.sum())
        update_bloom_filter(lruvec.mm_state, walk.seq + 1,
                            pmd_item(mm, plan.pmd[walked[suitable]]))


def _stop(args, plan: Plan, y: Young, consumed: int, anchor: int) -> int:
    """The callback stopped on delivery ``anchor`` having consumed the first ``consumed``:
    commit what the sequential walk does before it returns -EAGAIN, and set next_addr.

    A PTE anchor (visit v, range r): walk_pte_range stops inside v's table after the consumed
    entries; batches processed before v's table are done, the one still open is not. A THP
    anchor: walk_pmd_range_locked stops inside the processing of its batch (at the trigger
    visit, or at the end of the piece); members processed before the anchor are done."""
    walk, mm = args.walk, args.mm
    kernel = mm.kernel
    npte = y.slots.size
    if y.order is None:
        n_pte, item = consumed, anchor
    else:
        n_pte = int((y.order[:consumed] < npte).sum())
        item = int(y.order[anchor])
    n_thp = consumed - n_pte
    key = y.m_key
    if item < npte:                                  # ---- a PTE anchor
        r = int(np.searchsorted(y.ends, item, "right"))
        v = int(plan.range_visit[r])
        nl = _member_is_nonleaf(plan, y) & (key <= 2 * v)
        _advance_draws(kernel, mm, plan, v + 1, r + 1)
        _commit(args, plan, y, n_pte, n_thp, nl, v, r)
        _stop_in_table(args, plan, y, n_pte, item, v, r)
        return -errno.EAGAIN
    # ---- a THP anchor: member t of batch g, processed at key K
    from .vmscan import PmdBatch, _thp_resume_addr

    t = int(y.thp[item - npte])
    g = int(y.m_group[t])
    K, rank = int(key[t]), int(y.m_rank[t])
    trigger = bool(y.g_trigger[g])
    v_full = K // 2                                  # visits before the trigger / the piece end
    nl = _member_is_nonleaf(plan, y) & ((key < K) | ((key == K) & (y.m_rank < rank)))
    if trigger and plan.kind[v_full] != THP and not kernel.faithful_quirks:
        nl &= ~((key == K) & (y.m_rank == 0))       # Q8 off: the trigger stays young
    nr = int(np.searchsorted(plan.range_visit, v_full))
    _advance_draws(kernel, mm, plan, v_full + 1 if trigger else v_full, nr)
    _commit(args, plan, y, n_pte, n_thp, nl, v_full, nr)
    if trigger and plan.kind[v_full] == THP:
        walk.mm_stats[MM_LEAF_TOTAL] += 1            # counted before walk_pmd_range_locked
    first = int(y.g_first[g])
    batch = PmdBatch(int(plan.addr[first]), int(y.g_bitmap[g]))
    i = int(y.m_off[t])
    walk.next_addr = _thp_resume_addr(kernel, batch, i, int(plan.addr[int(y.m_visit[t])]),
                                      int(anchor < consumed))
    return -errno.EAGAIN


def _stop_in_table(args, plan: Plan, y: Young, n_pte: int, anchor: int, v: int, r: int):
    """walk_pte_range() stopped in range ``r`` of visit ``v``'s table, then walk_pmd_range():
    the early return (the table's counts kept for the resumed walk), or the table counted
    (unless Q7 is off), next_addr moved back to the pending batch's first entry (Q1)."""
    from .vmscan import SUITABLE_N, pmd_item, update_bloom_filter

    walk, mm = args.walk, args.mm
    kernel = mm.kernel
    item0 = np.concatenate([[0], y.ends])                      # first PTE item of each range
    r0 = int(np.searchsorted(plan.range_visit, v))             # v's first range
    in_r = n_pte - int(item0[r])                               # consumed in range r
    visited = (int(y.slots[n_pte - 1]) + 1 if in_r else int(y.slots[anchor])) - int(plan.lo[r])
    total = walk.nr_total_pte + int((plan.hi[r0:r] - plan.lo[r0:r]).sum()) + visited
    young = walk.nr_young_pte + n_pte - int(item0[r0])
    walk.mm_stats[MM_LEAF_TOTAL] += visited
    walk.round_ptes += visited
    walk.next_addr = (PageTable.addr(int(y.slots[n_pte - 1])) + PAGE_SIZE if in_r
                      else PageTable.addr(int(y.slots[anchor])))
    # the batch still open at v (first visited at or before v, processed after v's table)
    open_ = np.flatnonzero((y.g_first <= v) & (y.g_key // 2 > v))
    first = int(plan.addr[int(y.g_first[open_[0]])]) if open_.size else -1
    if walk.next_addr < int(plan.nxt[v]) and first == -1:
        walk.nr_total_pte, walk.nr_young_pte = total, young
        return
    walk.nr_total_pte = walk.nr_young_pte = 0
    if kernel.faithful_quirks:                     # Q7 off: decided by the re-walk instead
        walk.mm_stats[MM_NONLEAF_FOUND] += 1
        if young * SUITABLE_N >= total:
            walk.mm_stats[MM_NONLEAF_ADDED] += 1
            update_bloom_filter(walk.lruvec.mm_state, walk.seq + 1,
                                pmd_item(mm, int(plan.pmd[v])))
    if first != -1 or kernel.faithful_quirks:
        walk.next_addr = first & ULONG_MAX         # Q1: -1 becomes ULONG_MAX


def _advance_draws(kernel, mm, plan: Plan, nv: int, nr: int) -> None:
    """The sequential walk materializes each PMD entry and each PTE piece as it reaches them;
    the fast path materialized the whole range up front, so those later draws find nothing
    owed (zero hazard) and change no bit, but they take uniforms from the access model's
    generator. Take the same number (visits [0, nv), ranges [0, nr)), so the stream after a
    stop is the one the sequential walk leaves: by the model's ``skip_draws`` (the uniforms
    without the draws) where it has one, else by materializing again."""
    src = kernel.access_source
    if src is None:
        return
    skip = getattr(src, "skip_draws", None)
    if skip is not None:
        skip(mm, plan.pmd[:nv], plan.lo[:nr], plan.hi[:nr])
        return
    kernel.materialize_pmds(mm, plan.pmd[:nv])
    if nr:
        kernel.materialize_ptes(mm, _slots_of(plan.lo[:nr], plan.hi[:nr]))
