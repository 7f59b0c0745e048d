"""MGLRU per-lruvec state and the folio flag transitions (mglru-spec §2, §3).

A folio's generation is the gen+1 field of ``PhysMem.lru_gen_refs`` at its head pfn. The list it
sits on (``list_gen``) and its position there (``lru_stamp``: larger is nearer the head, i.e.
newer) are kept separately, because the kernel sorts lists lazily: the page-table walk changes a
folio's gen flag without moving it (§3.4). All functions take numpy arrays of head pfns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..arrays import unique
from .constants import (
    ANON_AND_FILE, LRU_GEN_FILE, LRU_GEN_MASK, LRU_REFS_MASK, LRU_REFS_SHIFT, MAX_NR_GENS,
    MAX_NR_TIERS, MAX_NR_ZONES, MIN_NR_GENS, NR_BLOOM_FILTERS, NR_HIST_GENS, NR_MM_STATS,
    PG_active, PG_dirty, PG_lru, PG_reclaim, PG_referenced, PG_swapbacked,
    PG_swapcache, PG_unevictable, PG_workingset, PG_writeback,
)
from .lru_index import lru_index_note


def lru_gen_from_seq(seq):
    """lru_gen_from_seq() (§2.1): seq % MAX_NR_GENS."""
    return seq % MAX_NR_GENS


def lru_hist_from_seq(seq):
    return seq % NR_HIST_GENS


@dataclass
class LruGenFolio:
    """struct lru_gen_folio (§2.2), initialised by lru_gen_init_lruvec (§2.6)."""

    max_seq: int = MIN_NR_GENS + 1
    min_seq: list[int] = field(default_factory=lambda: [0, 0])
    timestamps: list[int] = field(default_factory=lambda: [0] * MAX_NR_GENS)
    nr_pages: np.ndarray = field(
        default_factory=lambda: np.zeros((MAX_NR_GENS, ANON_AND_FILE, MAX_NR_ZONES), np.int64))
    avg_refaulted: np.ndarray = field(
        default_factory=lambda: np.zeros((ANON_AND_FILE, MAX_NR_TIERS), np.int64))
    avg_total: np.ndarray = field(
        default_factory=lambda: np.zeros((ANON_AND_FILE, MAX_NR_TIERS), np.int64))
    protected: np.ndarray = field(
        default_factory=lambda: np.zeros((NR_HIST_GENS, ANON_AND_FILE, MAX_NR_TIERS), np.int64))
    evicted: np.ndarray = field(
        default_factory=lambda: np.zeros((NR_HIST_GENS, ANON_AND_FILE, MAX_NR_TIERS), np.int64))
    refaulted: np.ndarray = field(
        default_factory=lambda: np.zeros((NR_HIST_GENS, ANON_AND_FILE, MAX_NR_TIERS), np.int64))
    enabled: bool = True


@dataclass
class LruGenMmState:
    """struct lru_gen_mm_state (§2.3): the lruvec's position in its memcg's mm list."""

    seq: int = MIN_NR_GENS
    head: object = None
    tail: object = None
    filters: list = field(default_factory=lambda: [None] * NR_BLOOM_FILTERS)
    stats: np.ndarray = field(default_factory=lambda: np.zeros((NR_HIST_GENS, NR_MM_STATS), np.int64))


class Lruvec:
    """One (memcg, node) pair's LRU: the MGLRU state plus its mm-walk state."""

    def __init__(self, kernel, memcg, nid: int):
        self.kernel, self.memcg, self.nid = kernel, memcg, nid
        # classic LRU: lruvec_page_state(WORKINGSET_ACTIVATE_ANON/FILE), hierarchical, and
        # its snapshot target_lruvec->refaults[] (prepare_scan_control / snapshot_refaults)
        self.workingset_activate = [0, 0]
        self.refaults = [0, 0]
        self.lrugen = LruGenFolio(timestamps=[kernel.jiffies] * MAX_NR_GENS)
        self.mm_state = LruGenMmState()

    def __repr__(self) -> str:
        return f"Lruvec(memcg={self.memcg.id}, node={self.nid})"


# ---- per-folio field accessors -----------------------------------------------------------------
def folio_lru_gen(pm, heads) -> np.ndarray:
    """folio_lru_gen(): the flag gen, -1 when the folio is not on an MGLRU list."""
    return (pm.lru_gen_refs[heads] & LRU_GEN_MASK).astype(np.int64) - 1


def folio_type(pm, heads) -> np.ndarray:
    """folio_is_file_lru(): LRU_GEN_ANON (0) for swap-backed folios, LRU_GEN_FILE (1) otherwise."""
    return np.where(pm.flags[heads] & PG_swapbacked, 0, LRU_GEN_FILE)


def folio_refs_bits(pm, heads) -> np.ndarray:
    return ((pm.lru_gen_refs[heads] & LRU_REFS_MASK) >> LRU_REFS_SHIFT).astype(np.int64)


def folio_lru_refs(pm, heads) -> np.ndarray:
    """folio_lru_refs(): 0 without PG_referenced, else refs bits + 1 (§2.1)."""
    ref = (pm.flags[heads] & PG_referenced) != 0
    return np.where(ref, folio_refs_bits(pm, heads) + 1, 0)


def lru_tier_from_refs(refs, workingset) -> np.ndarray:
    """lru_tier_from_refs(): MAX_NR_TIERS-1 if workingset, else order_base_2(refs) (§2.1)."""
    refs = np.asarray(refs, dtype=np.int64)
    ob2 = np.where(refs > 1, np.ceil(np.log2(np.maximum(refs, 1))).astype(np.int64), 0)
    return np.where(np.asarray(workingset, dtype=bool), MAX_NR_TIERS - 1, ob2)


def set_gen(pm, heads, gens) -> None:
    """Store gen+1 in the gen field (gens may hold -1 for "off the lists")."""
    keep = pm.lru_gen_refs[heads] & ~LRU_GEN_MASK
    pm.lru_gen_refs[heads] = keep | (np.asarray(gens) + 1).astype(np.uint8)


def clear_refs_bits(pm, heads) -> None:
    pm.lru_gen_refs[heads] &= ~LRU_REFS_MASK


def lru_gen_is_active(lruvec, gens) -> np.ndarray:
    """lru_gen_is_active(): the gen of max_seq or max_seq-1 (§2.1)."""
    max_seq = lruvec.lrugen.max_seq
    gens = np.asarray(gens)
    return (gens == lru_gen_from_seq(max_seq)) | (gens == lru_gen_from_seq(max_seq - 1))


def lru_gen_update_size(lruvec, pm, heads, old_gens, new_gens) -> None:
    """lru_gen_update_size(): move the folios' pages between gens in nr_pages (-1 = none)."""
    if len(heads) == 0:
        return
    nr = pm.folio_nr_pages(heads)
    types, zones = folio_type(pm, heads), pm.zone_of(heads)
    nr_pages = lruvec.lrugen.nr_pages
    old, new = np.asarray(old_gens), np.asarray(new_gens)
    out = old >= 0
    nr_pages -= _sum_at(nr_pages.shape, (old[out], types[out], zones[out]), nr[out])
    into = new >= 0
    nr_pages += _sum_at(nr_pages.shape, (new[into], types[into], zones[into]), nr[into])


def _sum_at(shape, index, values) -> np.ndarray:
    """An array of ``shape`` holding the sum of ``values`` at each multi-index (np.add.at into
    zeros, by one bincount: add.at goes an element at a time, and folios come in millions)."""
    flat = np.ravel_multi_index(tuple(np.asarray(i, np.int64) for i in index), shape)
    size = int(np.prod(shape))
    return np.bincount(flat, weights=values, minlength=size).astype(np.int64).reshape(shape)


# ---- list placement (§3.1, §3.2) ---------------------------------------------------------------
def lru_gen_folio_seq(lruvec, pm, heads, reclaiming: bool) -> np.ndarray:
    """lru_gen_folio_seq() (§3.1): the seq a folio joins when it is (re)added to the lists."""
    flags = pm.flags[heads]
    active = (flags & PG_active) != 0
    ws = ((flags & PG_workingset) != 0).astype(np.int64)
    swapbacked = (flags & PG_swapbacked) != 0
    not_file_nor_swapcache = swapbacked & ((flags & PG_swapcache) == 0)
    reclaim_dirty = ((flags & PG_reclaim) != 0) & ((flags & (PG_dirty | PG_writeback)) != 0)
    if reclaiming:
        g = np.where(active, MIN_NR_GENS - ws, MAX_NR_GENS)
    else:
        g = np.where(active, MIN_NR_GENS - ws,
                     np.where(not_file_nor_swapcache | reclaim_dirty, MIN_NR_GENS, MAX_NR_GENS - ws))
    min_seq = np.asarray(lruvec.lrugen.min_seq)[folio_type(pm, heads)]
    return np.maximum(lruvec.lrugen.max_seq - g + 1, min_seq)


def lru_gen_add_folio(lruvec, heads, reclaiming: bool = False) -> None:
    """lru_gen_add_folio() (§3.1) with folio_set_lru(): join gen(seq) at the head, or the tail
    when reclaiming; clears PG_active. Unevictable folios stay off the generational lists.
    One compiled pass (lru_add_kernel); ``heads`` must be distinct. The numpy form is
    lru_gen_add_folio_reference (REFERENCE = True selects it, for the equivalence tests)."""
    if REFERENCE:
        lru_gen_add_folio_reference(lruvec, heads, reclaiming)
        return
    from .lru_add_kernel import add_folios_gen

    pm = lruvec.kernel.pm
    heads = np.asarray(heads, dtype=np.int64)
    g = lruvec.lrugen
    kept = np.empty_like(heads)
    n = add_folios_gen(heads, pm.flags, pm.lru_gen_refs, pm.list_gen, pm.order, pm.node_start,
                       pm.node_zone, int(g.max_seq), int(g.min_seq[0]), int(g.min_seq[1]),
                       bool(reclaiming), g.nr_pages, kept)
    if n == 0:
        return
    heads = kept[:n]
    pm.lru_stamp[heads] = pm.next_stamps(n, tail=reclaiming)
    lru_index_note(pm, heads)


REFERENCE = False   # True: lru_gen_add_folio runs the numpy form below


def lru_gen_add_folio_reference(lruvec, heads, reclaiming: bool = False) -> None:
    """lru_gen_add_folio() in numpy, the reference of the compiled pass (same results)."""
    pm = lruvec.kernel.pm
    heads = np.asarray(heads, dtype=np.int64)
    heads = heads[(pm.flags[heads] & PG_unevictable) == 0]
    if heads.size == 0:
        return
    gens = lru_gen_from_seq(lru_gen_folio_seq(lruvec, pm, heads, reclaiming))
    set_gen(pm, heads, gens)
    pm.flags[heads] = (pm.flags[heads] & ~PG_active) | PG_lru
    lru_gen_update_size(lruvec, pm, heads, np.full(heads.size, -1), gens)
    pm.list_gen[heads] = (gens + 1).astype(np.uint8)
    pm.lru_stamp[heads] = pm.next_stamps(heads.size, tail=reclaiming)
    lru_index_note(pm, heads)


def lru_gen_del_folio(lruvec, heads, reclaiming: bool = False) -> None:
    """lru_gen_del_folio() (§3.2) with folio_clear_lru(): leave the lists; a folio leaving an
    active gen (not for reclaim) gets PG_active so that it returns to an active gen."""
    pm = lruvec.kernel.pm
    heads = np.asarray(heads, dtype=np.int64)
    gens = folio_lru_gen(pm, heads)
    heads, gens = heads[gens >= 0], gens[gens >= 0]
    if heads.size == 0:
        return
    lru_gen_update_size(lruvec, pm, heads, gens, np.full(heads.size, -1))
    set_gen(pm, heads, np.full(heads.size, -1))
    act = np.zeros(heads.size, bool) if reclaiming else lru_gen_is_active(lruvec, gens)
    flags = pm.flags[heads] & ~PG_lru
    pm.flags[heads] = np.where(act, flags | PG_active, flags)
    pm.list_gen[heads] = 0
    pm.lru_stamp[heads] = 0


# ---- flag transitions (§3.4–§3.7) --------------------------------------------------------------
def folio_update_gen(pm, heads, gen: int) -> np.ndarray:
    """folio_update_gen() (§3.4), page-table aging: the first detection only sets PG_referenced
    (second chance); a later one moves the flag gen to ``gen`` with PG_workingset. Returns the
    old gen, or -1 when nothing moved. ``heads`` must be distinct. (The walk runs the same rule
    inside its compiled loop, walk_kernels.commit_young; a test holds the two together.)"""
    heads = np.asarray(heads, dtype=np.int64)
    old = np.full(heads.size, -1, dtype=np.int64)
    flags = pm.flags[heads]
    fresh = (flags & (PG_referenced | PG_workingset)) == 0
    pm.flags[heads[fresh]] |= PG_referenced
    clear_refs_bits(pm, heads[fresh])
    cur = folio_lru_gen(pm, heads)
    move = ~fresh & (cur >= 0)
    old[move] = cur[move]
    h = heads[move]
    set_gen(pm, h, np.full(h.size, gen))
    clear_refs_bits(pm, h)
    pm.flags[h] = (pm.flags[h] & ~PG_referenced) | PG_workingset
    return old


def folio_inc_gen(lruvec, heads, reclaiming: bool) -> np.ndarray:
    """folio_inc_gen() (§3.5), eviction and inc_min_seq: a folio already promoted keeps its gen;
    otherwise it moves to gen(min_seq)+1, losing PG_referenced and its refs (PG_reclaim when
    reclaiming). Returns the new gens. ``heads`` must be distinct and on the lists."""
    pm = lruvec.kernel.pm
    heads = np.asarray(heads, dtype=np.int64)
    types = folio_type(pm, heads)
    old_gen = lru_gen_from_seq(np.asarray(lruvec.lrugen.min_seq)[types])
    cur = folio_lru_gen(pm, heads)
    promoted = (cur >= 0) & (cur != old_gen)
    new = np.where(promoted, cur, (old_gen + 1) % MAX_NR_GENS)
    h = heads[~promoted]
    set_gen(pm, h, new[~promoted])
    clear_refs_bits(pm, h)
    pm.flags[h] &= ~PG_referenced
    if reclaiming:
        pm.flags[h] |= PG_reclaim
    lru_gen_update_size(lruvec, pm, h, old_gen[~promoted], new[~promoted])
    return new


def lru_gen_inc_refs(pm, heads) -> None:
    """lru_gen_inc_refs() (§3.6), folio_mark_accessed() for accesses through file descriptors."""
    heads = unique(np.asarray(heads, dtype=np.int64))
    flags = pm.flags[heads]
    heads = heads[((flags & PG_lru) != 0) & ((flags & PG_unevictable) == 0)]
    flags = pm.flags[heads]
    first = (flags & PG_referenced) == 0
    pm.flags[heads[first]] |= PG_referenced
    clear_refs_bits(pm, heads[first])
    rest = heads[~first]
    refs = folio_refs_bits(pm, rest)
    pm.flags[rest[refs == 3]] |= PG_workingset
    bump = rest[refs < 3]
    pm.lru_gen_refs[bump] += np.uint8(1 << LRU_REFS_SHIFT)


def lru_gen_set_refs(pm, heads) -> np.ndarray:
    """lru_gen_set_refs() (§3.7), rmap and eviction path: True when the caller should activate."""
    heads = np.asarray(heads, dtype=np.int64)
    flags = pm.flags[heads]
    fresh = (flags & (PG_referenced | PG_workingset)) == 0
    pm.flags[heads[fresh]] |= PG_referenced
    clear_refs_bits(pm, heads[fresh])
    rest = heads[~fresh]
    pm.flags[rest] = (pm.flags[rest] & ~PG_referenced) | PG_workingset
    clear_refs_bits(pm, rest)
    return ~fresh
