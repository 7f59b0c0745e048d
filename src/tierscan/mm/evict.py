"""MGLRU eviction: isolate the oldest generation's folios, sort out the ones to keep, reclaim or
demote the rest (mglru-spec §7; mm/vmscan.c of the baseline tree S7, mm/workingset.c of S9).

Everything works on numpy arrays of head pfns. A generation's list order is ``PhysMem.lru_stamp``
(the list tail, where eviction takes from, is the smallest stamp). ``scan_folios`` is the one
place where the kernel's per-folio order matters (it stops after 64 isolated or skipped pages):
the categories of the candidates are computed at once and the cut-off found with a cumulative
sum, which is exact because one folio's category never depends on what happened to another.

What the model leaves out or simplifies (docs/fidelity.md carries these):

- Demotion (do_demote_pass) takes anon and file folios alike; folios it cannot place go on to
  normal reclaim (anon to swap when there is swap space, file dropped), except in proactive
  reclaim, where they are kept, as in the kernel.
- Swap (mm/swap.py): an anon folio joins the swap cache, is written (unless it was already
  there and clean) and freed in one pass; a THP is split first (no THP_SWAP). Shmem folios
  are never swapped.
- Writeback is instantaneous: a dirty file folio that reaches ``shrink_folio_list`` is cleaned
  (``folio_mkclean``) and kept with PG_reclaim; there is no flusher, so a folio dirty in its flags
  is only ever sorted (``sort_folio`` case 6) and stays dirty.
- ``folio_referenced`` test-and-clears the folio's own PTEs/PMDs only: ``lru_gen_look_around``
  (§5.10, the neighbours' young bits and the Bloom-filter feedback) is not modelled.
- No pending signals (-EINTR), no memcg protection, no walk batch to flush, VM_LOCKED and
  mlock are not modelled.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

import numpy as np

from ..arrays import unique
from .constants import (
    LRU_GEN_ANON, LRU_GEN_FILE, LRU_REFS_WIDTH, MAX_LRU_BATCH, MAX_NR_GENS, MAX_NR_TIERS,
    MAX_NR_ZONES, MAX_SWAPPINESS, MIN_LRU_BATCH, MIN_NR_GENS, MIN_SWAPPINESS, PG_active, PG_anon,
    PG_dirty, PG_idle, PG_lru, PG_reclaim, PG_referenced, PG_swapcache, PG_unevictable,
    PG_workingset, PG_writeback, SWAPPINESS_ANON_ONLY, ULONG_MAX, _PAGE_ACCESSED, _PAGE_DIRTY,
    _PAGE_RW,
)
from .lru_gen import (
    clear_refs_bits, folio_inc_gen, folio_lru_gen, folio_lru_refs, folio_type, lru_gen_add_folio,
    lru_gen_del_folio, lru_gen_folio_seq, lru_gen_from_seq, lru_gen_set_refs, lru_hist_from_seq,
    lru_tier_from_refs,
)
from .evict_kernels import isolate_taken, scan_window
from .migrate import migrate_folios
from .page_idle import folio_test_clear_young
from .pagetable import PageTable
from .physmem import MAPCOUNT_ONE, WMARK_MIN
from .rmap import rmap_walk
from .lru_index import lru_index, lru_index_note, mglru_key
from .vmscan import evictable_min_seq, evictable_types, lruvec_folios, reset_ctrl_pos
from .workingset import workingset_eviction

DEF_PRIORITY = 12          # (unverified, spec §1)
SWAP_CLUSTER_MAX = 32      # (unverified, spec §1)

# gfp bits the model looks at. The values are the pre-6.0 ___GFP_* numbers; only __GFP_IO is
# tested (isolate_folio), the rest document intent.
__GFP_IO = 0x40
__GFP_FS = 0x80
__GFP_DIRECT_RECLAIM = 0x400
__GFP_KSWAPD_RECLAIM = 0x800
GFP_KERNEL = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM | __GFP_IO | __GFP_FS
GFP_NOIO = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM

# sort_folio() outcomes (§7.5), in the order the cases are tried; 0 = not sorted.
(SORT_NONE, SORT_UNEVICTABLE, SORT_PROMOTED, SORT_PROTECTED, SORT_INELIGIBLE,
 SORT_WRITEBACK) = range(6)


# ---- scan_control and reclaim_stat ---------------------------------------------------------
@dataclass
class ScanNr:
    """scan_control.nr: the dirty-file bookkeeping sort_folio and scan_folios feed (§7.5)."""

    file_taken: int = 0
    unqueued_dirty: int = 0


@dataclass
class ScanControl:
    """struct scan_control, the fields §7 uses. The debugfs ``-`` command uses may_writepage,
    may_unmap, may_swap, reclaim_idx = highest zone, GFP_KERNEL and proactive (§8.4).
    ``is_kswapd`` stands for current_is_kswapd(): it picks the *_kswapd or *_direct counters
    (reclaimer_offset(); the model has no pgsteal_proactive, so proactive counts as direct)."""

    nr_to_reclaim: int = SWAP_CLUSTER_MAX
    reclaim_idx: int = MAX_NR_ZONES - 1
    may_writepage: bool = True
    may_unmap: bool = True
    may_swap: bool = True
    proactive: bool = False
    priority: int = DEF_PRIORITY
    nr_reclaimed: int = 0
    nr_scanned: int = 0
    is_kswapd: bool = False
    gfp_mask: int = GFP_KERNEL
    order: int = 0
    target_memcg: object = None     # sc->target_mem_cgroup; None = root (global) reclaim
    memcg_low_reclaim: bool = False  # reclaim memcgs below memory.low too (mm/memcontrol.py)
    memcg_low_skipped: bool = False  # a memcg was skipped for memory.low
    # classic LRU (prepare_scan_control): the types whose active list may be deactivated
    # because the target saw refaults (bit 0 anon, bit 1 file); force_deactivate allows both,
    # skipped_deactivate records an active list left alone (do_try_to_free_pages retries)
    may_deactivate: int = 0
    force_deactivate: bool = False
    skipped_deactivate: bool = False
    nr: ScanNr = field(default_factory=ScanNr)


@dataclass
class ReclaimStat:
    """struct reclaim_stat, the fields the model fills (shrink_folio_list, §7.7)."""

    nr_demoted: int = 0
    nr_activate: list = field(default_factory=lambda: [0, 0])
    nr_unqueued_dirty: int = 0
    nr_pageout: int = 0


def reclaimer_suffix(sc: ScanControl) -> str:
    """reclaimer_offset(): which of the *_kswapd / *_direct counters an event goes to."""
    return "kswapd" if sc.is_kswapd else "direct"


# ---- swappiness and demotion targets ------------------------------------------------------
def vm_swappiness(kernel) -> int:
    """vm_swappiness (/proc/sys/vm/swappiness, default 60)."""
    return int(kernel.sysfs["vm/swappiness"])


def demotion_nodes(kernel, nid: int) -> list[int]:
    """The nodes a demotion from ``nid`` may allocate on (mm/memory-tiers.c, unverified): the
    preferred target first, i.e. the nearest node (by distance, then id) of the next lower
    tier, then every other node of any lower tier, nearest to that target first. Empty when
    ``nid`` is in the lowest tier. Kept per kernel: the tiers, distances and which nodes
    have memory are fixed for a kernel's life (no hotplug), and every eviction asks."""
    cache = kernel.__dict__.setdefault("_demotion_nodes", {})
    if nid not in cache:
        cache[nid] = _demotion_nodes(kernel, nid)
    return list(cache[nid])


def _demotion_nodes(kernel, nid: int) -> list[int]:
    nodes = kernel.machine.nodes
    dist = kernel.machine.distance
    mine = nodes[nid].tier
    lower = [n for n in nodes if n.tier > mine and kernel.pm.node_present[n.id] > 0]
    if not lower:
        return []
    next_tier = min(n.tier for n in lower)
    target = min((n.id for n in lower if n.tier == next_tier), key=lambda j: (int(dist[nid][j]), j))
    rest = sorted((n.id for n in lower if n.id != target), key=lambda j: (int(dist[target][j]), j))
    return [target] + rest


def next_demotion_node(kernel, nid: int) -> int:
    """next_demotion_node(): the preferred demotion target of ``nid``, -1 (NUMA_NO_NODE) if none."""
    nodes = demotion_nodes(kernel, nid)
    return nodes[0] if nodes else -1


def can_demote(kernel, nid: int, sc: ScanControl | None = None) -> bool:
    """can_demote() (outside the spec, §10 gap (e)): demotion is enabled and ``nid`` has a
    lower-tier target; used by get_swappiness (§8.4) and shrink_folio_list (§7.7). Gated on
    /sys/kernel/mm/numa/demotion_enabled, off by default as in the kernel."""
    return bool(kernel.sysfs["numa/demotion_enabled"]) and next_demotion_node(kernel, nid) >= 0


def get_swappiness(lruvec, sc: ScanControl) -> int:
    """get_swappiness() (§8.4): 0 without may_swap; 0 when the node can neither demote nor
    swap (fewer than MIN_LRU_BATCH free swap slots); else vm.swappiness."""
    if not sc.may_swap:
        return 0
    kernel = lruvec.kernel
    if not can_demote(kernel, lruvec.nid, sc) and kernel.swap.nr_free() < MIN_LRU_BATCH:
        return 0
    return vm_swappiness(kernel)


# ---- the PID controller (§7.3) --------------------------------------------------------------
@dataclass
class CtrlPos:
    """struct ctrl_pos."""

    refaulted: int
    total: int
    gain: int


def read_ctrl_pos(lruvec, type_: int, tier: int, gain: int) -> CtrlPos:
    """read_ctrl_pos() (§7.3): refaulted and total of one tier, or of all tiers when
    tier == MAX_NR_TIERS, at hist(min_seq[type]) plus the running averages."""
    g = lruvec.lrugen
    hist = lru_hist_from_seq(g.min_seq[type_])
    tiers = slice(0, MAX_NR_TIERS) if tier == MAX_NR_TIERS else slice(tier, tier + 1)
    refaulted = g.avg_refaulted[type_, tiers].sum() + g.refaulted[hist, type_, tiers].sum()
    total = (g.avg_total[type_, tiers].sum() + g.protected[hist, type_, tiers].sum()
             + g.evicted[hist, type_, tiers].sum())
    return CtrlPos(int(refaulted), int(total), int(gain))


def _tier_ctrl_sums(lruvec, type_: int) -> tuple[list[int], list[int]]:
    """read_ctrl_pos()'s refaulted and total of every tier of ``type_`` at once, as Python
    ints (the same integer sums; get_tier_idx reads all four tiers on every scan, and four
    read_ctrl_pos calls were ~20 small numpy sums)."""
    g = lruvec.lrugen
    hist = lru_hist_from_seq(g.min_seq[type_])
    refaulted = g.avg_refaulted[type_] + g.refaulted[hist, type_]
    total = g.avg_total[type_] + g.protected[hist, type_] + g.evicted[hist, type_]
    return refaulted.tolist(), total.tolist()


def positive_ctrl_err(sp: CtrlPos, pv: CtrlPos) -> bool:
    """positive_ctrl_err() (§7.3): the PV has few refaults, or a refault rate no higher than
    the SP's (with the gains)."""
    return (pv.refaulted < MIN_LRU_BATCH or
            pv.refaulted * (sp.total + MIN_LRU_BATCH) * sp.gain
            <= (sp.refaulted + 1) * pv.total * pv.gain)


def get_tier_idx(lruvec, type_: int) -> int:
    """get_tier_idx() (§7.3): the highest tier whose refault rate stays within 3/2 of tier 0's;
    tiers above it are protected. With every counter at 0 this is 3: nothing is protected."""
    refaulted, total = _tier_ctrl_sums(lruvec, type_)
    sp = CtrlPos(refaulted[0], total[0], 2)
    tier = 1
    while tier < MAX_NR_TIERS:
        pv = CtrlPos(refaulted[tier], total[tier], 3)
        if not positive_ctrl_err(sp, pv):
            break
        tier += 1
    return tier - 1


def get_type_to_scan(lruvec, swappiness: int) -> int:
    """get_type_to_scan() (§7.3): FILE at swappiness <= 1, ANON at >= 200, else compare the
    refault rates of all anon tiers (gain swappiness) and all file tiers (gain 200-swappiness)."""
    if swappiness <= MIN_SWAPPINESS + 1:
        return LRU_GEN_FILE
    if swappiness >= MAX_SWAPPINESS:
        return LRU_GEN_ANON
    sp = read_ctrl_pos(lruvec, LRU_GEN_ANON, MAX_NR_TIERS, swappiness)
    pv = read_ctrl_pos(lruvec, LRU_GEN_FILE, MAX_NR_TIERS, MAX_SWAPPINESS - swappiness)
    return int(positive_ctrl_err(sp, pv))


# ---- per-folio predicates -------------------------------------------------------------------
def folio_mapped(pm, heads) -> np.ndarray:
    """folio_mapped(): some page of the folio has a mapping."""
    heads = np.asarray(heads, dtype=np.int64)
    if heads.size == 0:
        return np.zeros(0, bool)
    nr = pm.folio_nr_pages(heads)
    if nr.max() == 1:
        return pm.mapcount[heads] > 0
    starts = np.concatenate([[0], np.cumsum(nr)[:-1]])
    return np.maximum.reduceat(pm.mapcount[pm.folio_pfns(heads)], starts) > 0


def _sort_cases(lruvec, heads, sc: ScanControl, tier_idx: int):
    """The sort_folio() case of each folio (§7.5), without side effects.
    Returns (cases, tiers, saturated)."""
    pm = lruvec.kernel.pm
    g = lruvec.lrugen
    flags = pm.flags[heads]
    types = folio_type(pm, heads)
    refs = folio_lru_refs(pm, heads)
    ws = (flags & PG_workingset) != 0
    tiers = lru_tier_from_refs(refs, ws)
    saturated = refs + ws == (1 << LRU_REFS_WIDTH) + 1
    min_gen = lru_gen_from_seq(np.asarray(g.min_seq, dtype=np.int64)[types])
    dirty_file = (types == LRU_GEN_FILE) & ((flags & PG_dirty) != 0)
    conds = [
        (flags & PG_unevictable) != 0,                                  # 1 unevictable
        folio_lru_gen(pm, heads) != min_gen,                            # 2 promoted
        (tiers > tier_idx) | saturated,                                 # 3 protected
        ((flags & PG_lru) == 0) | (pm.zone_of(heads) > sc.reclaim_idx),  # 4 ineligible
        ((flags & PG_writeback) != 0) | dirty_file,                     # 6 waiting for writeback
    ]
    cases = np.select(conds, [SORT_UNEVICTABLE, SORT_PROMOTED, SORT_PROTECTED, SORT_INELIGIBLE,
                              SORT_WRITEBACK], default=SORT_NONE)
    return cases, tiers, saturated


def _isolatable(pm, heads, sc: ScanControl) -> np.ndarray:
    """isolate_folio()'s refusals (§7.6), without side effects: swap constrained (no IO and
    dirty, or anon outside the swap cache), no reference to get (a fault holds the folio:
    PhysMem.pinned), or already isolated (PG_lru clear)."""
    flags = pm.flags[heads]
    if sc.gfp_mask & __GFP_IO:
        constrained = np.zeros(heads.size, bool)
    else:
        constrained = (((flags & PG_dirty) != 0) |
                       (((flags & PG_anon) != 0) & ((flags & PG_swapcache) == 0)))
    if pm.pinned.size:
        constrained |= np.isin(heads, pm.pinned)
    return ~constrained & ((flags & PG_lru) != 0)


# ---- the per-folio passes of a scan: compiled (evict_kernels.py) or numpy --------------------
COMPILED = True   # False: scan_folios runs the numpy forms below (the reference of the kernels)


def _scan_window(lruvec, cand, sc: ScanControl, tier_idx: int, isolated: int, remaining: int):
    """scan_folios()'s look at a window of list-tail candidates, without side effects: each
    folio's sort_folio() case, tier and saturation, whether isolate_folio() would take it,
    and where the zone's sequential stop rule ends it (64 pages isolated, counting the
    ``isolated`` before this zone, or 64 skipped in this zone; or the last of ``remaining``
    candidates). Returns (cases, tiers, saturated, isolatable, stop) where ``stop`` is the
    number of folios taken, or -1 when the window holds no stop; the arrays are valid up to
    the stop (all of them when there is none)."""
    pm = lruvec.kernel.pm
    if not COMPILED:
        return _scan_window_reference(lruvec, cand, sc, tier_idx, isolated, remaining)
    n = cand.size
    cases, tiers = np.empty(n, np.int64), np.empty(n, np.int64)
    saturated, iso = np.empty(n, bool), np.empty(n, bool)
    g = lruvec.lrugen
    pinned = np.sort(pm.pinned) if pm.pinned.size else pm.pinned
    stop = scan_window(cand, pm.flags, pm.lru_gen_refs, pm.order, pm.node_start, pm.node_zone,
                       int(lru_gen_from_seq(g.min_seq[0])), int(lru_gen_from_seq(g.min_seq[1])),
                       int(tier_idx), int(sc.reclaim_idx), bool(sc.gfp_mask & __GFP_IO),
                       pinned.astype(np.int64), int(isolated), int(remaining),
                       cases, tiers, saturated, iso)
    return cases, tiers, saturated, iso, int(stop)


def _scan_window_reference(lruvec, cand, sc: ScanControl, tier_idx: int, isolated: int,
                           remaining: int):
    """_scan_window() in numpy (whole-window arrays and cumulative sums)."""
    pm = lruvec.kernel.pm
    d = pm.folio_nr_pages(cand)
    cases, tiers, saturated = _sort_cases(lruvec, cand, sc, tier_idx)
    is_sorted = cases != SORT_NONE
    is_iso = ~is_sorted & _isolatable(pm, cand, sc)
    is_skip = ~is_sorted & ~is_iso
    # the sequential stop rule, evaluated after each folio
    iso_cum = isolated + np.cumsum(d * is_iso)
    skip_cum = np.cumsum(d * is_skip)
    stop = np.maximum(iso_cum, skip_cum) >= MIN_LRU_BATCH
    stop[-1] |= cand.size == remaining
    hit = np.flatnonzero(stop)
    return cases, tiers, saturated, is_iso, int(hit[0]) + 1 if hit.size else -1


def _isolate_taken(lruvec, heads, sc: ScanControl) -> None:
    """isolate_folio() of folios _scan_window found isolatable (the refusals are not checked
    again)."""
    if not COMPILED:
        isolate_folio(lruvec, heads, sc)
        return
    pm = lruvec.kernel.pm
    isolate_taken(np.asarray(heads, np.int64), pm.flags, pm.lru_gen_refs, pm.list_gen,
                  pm.lru_stamp, pm.order, pm.node_start, pm.node_zone, lruvec.lrugen.nr_pages)


# ---- sort_folio / isolate_folio / scan_folios -----------------------------------------------
def sort_folio(lruvec, heads, sc: ScanControl, tier_idx: int, cases=None) -> np.ndarray:
    """sort_folio() (§7.5) on folios taken, in this order, from the tail of gen(min_seq)'s
    list. The cases, tried in order: unevictable → off the generational lists; promoted (flag
    gen != gen(min_seq)) → head of its flag gen's list; protected (tier > tier_idx, or
    saturated) → folio_inc_gen, head of min_seq+1, pages added to protected[] unless
    saturated; ineligible zone → folio_inc_gen, tail; writeback or dirty file →
    folio_inc_gen(reclaiming), head. Returns which folios were sorted (kept).
    ``cases``: _sort_cases() of these folios when the caller has it (scan_folios computed it
    on the same unchanged state to find its cut-off)."""
    kernel = lruvec.kernel
    pm = kernel.pm
    g = lruvec.lrugen
    heads = np.asarray(heads, dtype=np.int64)
    cases, tiers, saturated = _sort_cases(lruvec, heads, sc, tier_idx) if cases is None \
        else cases
    nr = pm.folio_nr_pages(heads)
    types = folio_type(pm, heads)
    new_gen = folio_lru_gen(pm, heads)  # case 2 keeps its flag gen

    unev = cases == SORT_UNEVICTABLE
    if unev.any():
        # lru_gen_del_folio + lruvec_add_folio to the (classic) unevictable list
        lru_gen_del_folio(lruvec, heads[unev], reclaiming=True)
        pm.flags[heads[unev]] |= PG_unevictable | PG_lru
    prot = cases == SORT_PROTECTED
    if prot.any():
        new_gen[prot] = folio_inc_gen(lruvec, heads[prot], reclaiming=False)
        counted = prot & ~saturated  # don't count the workingset being lazily promoted
        hist = lru_hist_from_seq(np.asarray(g.min_seq, dtype=np.int64)[types[counted]])
        np.add.at(g.protected, (hist, types[counted], tiers[counted]), nr[counted])
    inel = cases == SORT_INELIGIBLE
    if inel.any():
        new_gen[inel] = folio_inc_gen(lruvec, heads[inel], reclaiming=False)
    wb = cases == SORT_WRITEBACK
    if wb.any():
        dirty = (pm.flags[heads[wb]] & PG_dirty) != 0
        writeback = (pm.flags[heads[wb]] & PG_writeback) != 0
        file_dirty = (types[wb] == LRU_GEN_FILE) & dirty
        sc.nr.file_taken += int(nr[wb][file_dirty].sum())
        sc.nr.unqueued_dirty += int(nr[wb][file_dirty & ~writeback].sum())
        new_gen[wb] = folio_inc_gen(lruvec, heads[wb], reclaiming=True)
    # list_move (head) in processing order, list_move_tail for the ineligible ones
    to_head = (cases == SORT_PROMOTED) | prot | wb
    pm.list_gen[heads[to_head]] = (new_gen[to_head] + 1).astype(np.uint8)
    pm.lru_stamp[heads[to_head]] = pm.next_stamps(int(to_head.sum()), tail=False)
    lru_index_note(pm, heads[to_head])
    pm.list_gen[heads[inel]] = (new_gen[inel] + 1).astype(np.uint8)
    pm.lru_stamp[heads[inel]] = pm.next_stamps(int(inel.sum()), tail=True)
    lru_index_note(pm, heads[inel])
    return cases != SORT_NONE


def isolate_folio(lruvec, heads, sc: ScanControl) -> np.ndarray:
    """isolate_folio() (§7.6): unless refused (see _isolatable), clear the refs bits of a folio
    without PG_referenced, clear PG_reclaim and take it off the lists
    (lru_gen_del_folio(reclaiming=True)). Returns which folios were isolated."""
    pm = lruvec.kernel.pm
    heads = np.asarray(heads, dtype=np.int64)
    ok = _isolatable(pm, heads, sc)
    h = heads[ok]
    clear_refs_bits(pm, h[(pm.flags[h] & PG_referenced) == 0])
    pm.flags[h] &= ~PG_reclaim
    lru_gen_del_folio(lruvec, h, reclaiming=True)
    return ok


def _gen_list(lruvec, type_: int, gen: int) -> np.ndarray:
    """Head pfns on lrugen.folios[gen][type][*] (any zone), in pfn order."""
    pm = lruvec.kernel.pm
    lo, hi = pm.node_range(lruvec.nid)
    heads = np.flatnonzero(pm.list_gen[lo:hi] == gen + 1) + lo
    return heads[(pm.memcg[heads] == lruvec.memcg.id) & (folio_type(pm, heads) == type_)]


def _list_from_tail(pm, heads: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` folios of one list taken from its tail: smallest lru_stamp first
    (ties, the pages of a split THP, by pfn)."""
    key = pm.lru_stamp[heads].astype(np.int64) * (1 << 32) + heads
    if heads.size > count:
        part = np.argpartition(key, count - 1)[:count]
        return heads[part[np.argsort(key[part], kind="stable")]]
    return heads[np.argsort(key, kind="stable")]


_SCAN_WINDOW = 2 * MIN_LRU_BATCH   # scan_folios' first read of a list's tail


def scan_folios(nr_to_scan: int, lruvec, sc: ScanControl, type_: int, tier_idx: int):
    """scan_folios() (§7.4): take up to min(nr_to_scan, MAX_LRU_BATCH) folios from the tail of
    gen(min_seq[type])'s lists, zone by zone from reclaim_idx down and round; each is sorted,
    isolated or skipped. A zone stops when the batch is used up or 64 pages were isolated (in
    all) or skipped (in this zone); skipped folios go back to the list head. A type with only
    MIN_NR_GENS generations is not scanned.

    Returns (scanned pages, or 0 when nothing was isolated and the batch was not used up;
    isolated head pfns in isolation order)."""
    kernel = lruvec.kernel
    pm = kernel.pm
    g = lruvec.lrugen
    empty = np.empty(0, np.int64)
    if g.max_seq - g.min_seq[type_] + 1 == MIN_NR_GENS:
        return 0, empty
    remaining = min(int(nr_to_scan), MAX_LRU_BATCH)
    if remaining <= 0:
        return 0, empty  # no caller asks for nothing; the kernel's --remaining would wrap
    gen = lru_gen_from_seq(g.min_seq[type_])
    index = lru_index(pm)
    if index is None:                    # the whole-range reference
        on_gen = _gen_list(lruvec, type_, gen)
        zones = pm.zone_of(on_gen)
    scanned = sorted_ = isolated = skipped = 0
    out = []
    for i in range(MAX_NR_ZONES, 0, -1):
        zone = (sc.reclaim_idx + i) % MAX_NR_ZONES
        if index is None:
            in_zone = on_gen[zones == zone]
            if in_zone.size == 0:
                continue  # the loop body would not run; the stop test below already failed
            cand = _list_from_tail(pm, in_zone, remaining)
        else:                            # a node has one zone: its list is the node's
            if zone != pm.node_zone[lruvec.nid]:
                continue
            cand = None
        # The candidates are read from the tail in growing windows, not all ``remaining``
        # (up to MAX_LRU_BATCH = 4096) at once: the stop rule usually ends the zone after
        # ~64 folios, and reading, checking and sorting 4096 list entries per call was most
        # of an eviction's cost. A window is re-read whole when it did not reach the stop
        # and the list may hold more: nothing changes state in between, so the first
        # ``take`` folios and their cases are the ones the full read gives.
        window = min(remaining, _SCAN_WINDOW)
        while True:
            if index is not None:
                cand = index.first(mglru_key(lruvec, gen, type_), window)
                if cand.size == 0:
                    break
            cases, tiers, saturated, is_iso, stop_at = _scan_window(
                lruvec, cand, sc, tier_idx, isolated, remaining)
            if stop_at >= 0 or cand.size < window or window >= remaining or index is None:
                break
            window = min(remaining, window * 4)
        if cand.size == 0:
            continue
        take = stop_at if stop_at >= 0 else cand.size
        cand, d = cand[:take], pm.folio_nr_pages(cand[:take])
        cases, tiers, saturated, is_iso = cases[:take], tiers[:take], saturated[:take], \
            is_iso[:take]
        is_sorted = cases != SORT_NONE
        is_skip = ~is_sorted & ~is_iso
        scanned += int(d.sum())
        remaining -= take
        if is_sorted.any():
            sort_folio(lruvec, cand[is_sorted], sc, tier_idx,
                       (cases[is_sorted], tiers[is_sorted], saturated[is_sorted]))
        sorted_ += int(d[is_sorted].sum())
        iso = cand[is_iso]
        _isolate_taken(lruvec, iso, sc)
        out.append(iso)
        isolated += int(d[is_iso].sum())
        if is_skip.any():
            # list_move to a local list, then list_splice back at the head: the last skipped
            # folio becomes the newest
            skip = cand[is_skip]
            pm.lru_stamp[skip] = pm.next_stamps(skip.size, tail=False)
            lru_index_note(pm, skip)
            skipped += int(d[is_skip].sum())
        if not remaining or isolated >= MIN_LRU_BATCH:
            break
    kernel.vmstat.count(f"pgscan_{reclaimer_suffix(sc)}", lruvec.nid, isolated)
    if type_ == LRU_GEN_FILE:
        sc.nr.file_taken += isolated
    iso_heads = np.concatenate(out) if out else empty
    return (scanned if isolated or not remaining else 0), iso_heads


def isolate_folios(nr_to_scan: int, lruvec, sc: ScanControl, swappiness: int):
    """isolate_folios() (§7.3): scan the type get_type_to_scan() picks, then the other
    evictable type if that scanned nothing. Returns (scanned, type scanned, isolated heads)."""
    type_ = get_type_to_scan(lruvec, swappiness)
    for _ in evictable_types(swappiness):
        tier = get_tier_idx(lruvec, type_)
        scanned, heads = scan_folios(nr_to_scan, lruvec, sc, type_, tier)
        if scanned:
            return scanned, type_, heads
        type_ = 1 - type_
    return 0, 1 - type_, np.empty(0, np.int64)


def try_to_inc_min_seq(lruvec, swappiness: int) -> bool:
    """try_to_inc_min_seq() (§4.5): advance min_seq of each evictable type past generations
    whose lists are empty (keeping at least MIN_NR_GENS), keep anon and file within one
    generation of max_seq-2 of each other when both are evictable, and carry the PID
    counters over for each type that moved."""
    pm = lruvec.kernel.pm
    g = lruvec.lrugen
    index = lru_index(pm)
    if index is None:                    # the whole-range reference
        populated = np.zeros((MAX_NR_GENS, 2), bool)
        heads = lruvec_folios(lruvec)
        populated[pm.list_gen[heads].astype(np.int64) - 1, folio_type(pm, heads)] = True

        def nonempty(gen, t):
            return populated[gen, t]
    else:
        # list_empty() of the lists the loop below reaches only (the kernel's loop asks no
        # other; asking all eight was most of this function's cost)
        def nonempty(gen, t):
            return not index.empty(mglru_key(lruvec, gen, t))
    min_seq = list(g.min_seq)
    for t in evictable_types(swappiness):
        while min_seq[t] + MIN_NR_GENS <= g.max_seq:
            if nonempty(lru_gen_from_seq(min_seq[t]), t):
                break
            min_seq[t] += 1
    if swappiness and swappiness <= MAX_SWAPPINESS:
        seq = g.max_seq - MIN_NR_GENS
        if min_seq[LRU_GEN_ANON] > seq and min_seq[LRU_GEN_FILE] < seq:
            min_seq[LRU_GEN_ANON] = seq
        elif min_seq[LRU_GEN_FILE] > seq and min_seq[LRU_GEN_ANON] < seq:
            min_seq[LRU_GEN_FILE] = seq
    success = False
    for t in evictable_types(swappiness):
        if min_seq[t] <= g.min_seq[t]:
            continue
        reset_ctrl_pos(lruvec, t, carryover=True)
        g.min_seq[t] = min_seq[t]
        success = True
    return success


# ---- shrink_folio_list and what it calls ------------------------------------------------------
def _vma_has_recency(mm, page_slots: np.ndarray) -> np.ndarray:
    """vma_has_recency(): not VM_SEQ_READ or VM_RAND_READ (invalid_folio_referenced_vma)."""
    from .process import VM_RAND_READ, VM_SEQ_READ

    if page_slots.size == 0:
        return np.zeros(0, bool)
    vidx = mm.find_vma_index(PageTable.addr(page_slots))
    vflags = np.array([v.flags for v in mm.vmas] + [0], dtype=np.int64)[vidx]
    return (vidx >= 0) & ((vflags & (VM_SEQ_READ | VM_RAND_READ)) == 0)


def _folio_sites(kernel, heads):
    """Every PTE/PMD leaf mapping the folios: yields (sites, table, owner index per site)."""
    pm = kernel.pm
    pfns = pm.folio_pfns(heads)
    owner = np.repeat(np.arange(heads.size), pm.folio_nr_pages(heads))
    for s in rmap_walk(kernel, pfns):
        yield s, (s.mm.pt.pmd if s.pmd else s.mm.pt.pte), owner[s.pos]


def folio_referenced(kernel, heads) -> np.ndarray:
    """folio_referenced() as folio_check_references() calls it (§7.7): test and clear the young
    bit of every PTE and PMD leaf mapping each folio, through the rmap; mappings in VMAs
    without recency are skipped. Returns which folios had a young mapping.
    (lru_gen_look_around's neighbour scan is not modelled.)"""
    heads = np.asarray(heads, dtype=np.int64)
    ref = np.zeros(heads.size, bool)
    mapped = np.zeros(heads.size, bool)
    for s, table, owner in _folio_sites(kernel, heads):
        keep = _vma_has_recency(s.mm, s.slots << 9 if s.pmd else s.slots)
        slots, owner = s.slots[keep], owner[keep]
        mapped[owner] = True
        (kernel.materialize_pmds if s.pmd else kernel.materialize_ptes)(s.mm, unique(slots))
        young = (table[slots] & _PAGE_ACCESSED) != 0
        table[slots[young]] &= ~_PAGE_ACCESSED
        ref[owner[young]] = True
    kernel.pm.flags[heads[ref]] &= ~PG_idle   # folio_referenced_one(): referenced, not idle
    # ... then `if (folio_test_clear_young(folio)) referenced++`: an access a page-idle user
    # (DAMON, kscand) took off the A bit still counts (mm/page_idle.py)
    ref[mapped] |= folio_test_clear_young(kernel, heads[mapped])
    return ref


def _mapping_dirty(kernel, heads) -> np.ndarray:
    """Whether any PTE/PMD mapping each folio is dirty (what try_to_unmap or folio_mkclean
    would transfer to the folio)."""
    heads = np.asarray(heads, dtype=np.int64)
    dirty = np.zeros(heads.size, bool)
    for s, table, owner in _folio_sites(kernel, heads):
        dirty[owner[(table[s.slots] & _PAGE_DIRTY) != 0]] = True
    return dirty


def try_to_unmap(kernel, heads) -> None:
    """try_to_unmap(): clear every PTE and PMD leaf mapping the folios and drop their mapcounts
    (the TLB flush has no model)."""
    pm = kernel.pm
    heads = np.asarray(heads, dtype=np.int64)
    if heads.size == 0:
        return
    pfns = pm.folio_pfns(heads)
    for s in rmap_walk(kernel, pfns):
        if s.pmd:
            # a PMD leaf may be reported once per queried page; its mapping counts on the head
            slots, first = np.unique(s.slots, return_index=True)
            s.mm.pt.pmd[slots] = 0
            np.subtract.at(pm.mapcount, pm.folio_head(pfns[s.pos[first]]), MAPCOUNT_ONE)
        else:
            s.mm.pt.pte[s.slots] = 0
            np.subtract.at(pm.mapcount, pfns[s.pos], MAPCOUNT_ONE)
            kernel.notify_unmap(s.mm, s.slots, pm.node_of(pfns[s.pos]))


def pageout(kernel, heads) -> None:
    """pageout() with the writeback completing at once (model): folio_clear_dirty_for_io()
    cleans the folio and its mappings (folio_mkclean: PTEs clean and write-protected, so the
    next store faults and dirties it again), and the folio keeps PG_reclaim."""
    pm = kernel.pm
    heads = np.asarray(heads, dtype=np.int64)
    if heads.size == 0:
        return
    for s in rmap_walk(kernel, pm.folio_pfns(heads)):
        table = s.mm.pt.pmd if s.pmd else s.mm.pt.pte
        table[s.slots] &= ~(_PAGE_DIRTY | _PAGE_RW)
    pm.flags[heads] = (pm.flags[heads] & ~PG_dirty) | PG_reclaim


def __remove_mapping(kernel, heads, shadows) -> None:
    """__remove_mapping() for unmapped page-cache folios: delete them from their file's page
    cache, leaving the shadow entry workingset_eviction() made in each slot."""
    pm = kernel.pm
    fids = pm.mapping[heads]
    for fid in unique(fids):
        sel = fids == fid
        f = kernel.files[int(fid)]
        idx = pm.index[heads[sel]].astype(np.int64)
        f.pages[idx] = -1
        f.shadow[idx] = shadows[sel]


def demote_folio_list(kernel, heads, nid: int) -> np.ndarray:
    """demote_folio_list(): migrate isolated folios to the demotion targets of ``nid``, the
    preferred target first, then the other allowed lower-tier nodes (alloc_demote_folio).
    Returns which folios moved. migrate_folios() takes folios off whatever LRU they are on,
    so isolated folios go through it as they are. alloc_demote_folio's GFP_NOWAIT
    allocation never reclaims but may go down to the MIN watermark, waking the target's
    kswapd below LOW. With more than one lower-tier node, a folio that fails on one node and
    moves to the next is also counted in pgmigrate_fail (the kernel falls back inside one
    allocation)."""
    heads = np.asarray(heads, dtype=np.int64)
    ok = np.zeros(heads.size, bool)
    kernel.pm.demoted_ms[heads] = kernel.clock_ns // 1_000_000 + 1   # moves with the folio
    for target in demotion_nodes(kernel, nid):
        todo = np.flatnonzero(~ok)
        if todo.size == 0:
            break
        ok[todo] = migrate_folios(kernel, heads[todo], target, WMARK_MIN, wake_kswapd=True)
    kernel.pm.demoted_ms[heads[~ok]] = 0
    return ok


def _demote_pass(kernel, lruvec, heads, nr, sc: ScanControl, stat: ReclaimStat) -> np.ndarray:
    """do_demote_pass: demote the folios (anon and file); demoted ones count in evicted[]
    (§7.7) and as reclaimed. Returns the demoted mask."""
    g = lruvec.lrugen
    pm = kernel.pm
    types = folio_type(pm, heads)
    tiers = lru_tier_from_refs(folio_lru_refs(pm, heads), (pm.flags[heads] & PG_workingset) != 0)
    hist = lru_hist_from_seq(np.asarray(g.min_seq, dtype=np.int64)[types])
    demoted = demote_folio_list(kernel, heads, lruvec.nid)
    np.add.at(g.evicted, (hist[demoted], types[demoted], tiers[demoted]), nr[demoted])
    stat.nr_demoted += int(nr[demoted].sum())
    return demoted


def shrink_folio_list(heads, lruvec, sc: ScanControl):
    """shrink_folio_list(), the MGLRU-relevant parts (§7.7), on isolated folios of one lruvec.

    - mapped and !may_unmap, or under writeback: keep;
    - folio_check_references(): a mapped folio with a young PTE/PMD is referenced
      (folio_referenced clears those bits); lru_gen_set_refs() then says ACTIVATE (PG_active)
      or KEEP; an unreferenced or unmapped folio goes on to reclaim;
    - do_demote_pass (can_demote): every folio to reclaim, anon or file, is first offered to
      demote_folio_list(); the ones that did not move go on to normal reclaim below, except
      in proactive reclaim, where they are kept;
    - anon: add_to_swap() and pageout to the swap device (mm/swap.py) when may_swap and a
      slot is free; otherwise activate (activate_locked_split). Shmem is not swapped: activate;
    - file: dirty (the folio, or a dirty PTE that try_to_unmap would transfer): pageout() when
      may_writepage (cleaned at once, PG_reclaim) and kept; clean: unmapped from every mm,
      removed from the page cache (leaving a shadow entry) and freed;
    - every folio reclaimed or demoted goes through lru_gen_eviction() (evicted[]).

    Returns (nr_reclaimed pages, surviving heads in input order, ReclaimStat). Demoted pages
    count as reclaimed, as in the kernel (nr_reclaimed += nr_demoted).
    """
    from .swap import swap_out_folios

    kernel = lruvec.kernel
    pm = kernel.pm
    vm = kernel.vmstat
    heads = np.asarray(heads, dtype=np.int64)
    stat = ReclaimStat()
    n = heads.size
    if n == 0:
        return 0, heads, stat
    nr = pm.folio_nr_pages(heads)
    sc.nr_scanned += int(nr.sum())
    if kernel.accounting is not None:
        kernel.accounting.reclaim_scanned(int(nr.sum()))
    flags = pm.flags[heads]
    types = folio_type(pm, heads)
    # folio_check_dirty_writeback(): file folios only
    file_dirty = (types == LRU_GEN_FILE) & ((flags & PG_dirty) != 0)
    stat.nr_unqueued_dirty += int(nr[file_dirty & ((flags & PG_writeback) == 0)].sum())

    mapped = folio_mapped(pm, heads)
    gone = np.zeros(n, bool)       # freed, swapped out or demoted
    activate = np.zeros(n, bool)
    todo = ~(mapped & (not sc.may_unmap)) & ((flags & PG_writeback) == 0)

    from .classic_lru import folio_check_references, lru_gen_enabled

    referenced = np.zeros(n, bool)
    if lru_gen_enabled(kernel):
        chk = np.flatnonzero(todo & mapped)
        referenced[chk] = folio_referenced(kernel, heads[chk])
        ref = np.flatnonzero(referenced)
        activate[ref[lru_gen_set_refs(pm, heads[ref])]] = True
    else:           # the classic rules: PG_referenced, then activation (mm/classic_lru.py)
        chk = np.flatnonzero(todo)
        act, keep = folio_check_references(kernel, heads[chk])
        activate[chk[act]] = True
        referenced[chk[act | keep]] = True
    reclaim = todo & ~referenced
    reclaimed = 0

    cand = np.flatnonzero(reclaim)
    if cand.size and can_demote(kernel, lruvec.nid, sc):
        demoted = _demote_pass(kernel, lruvec, heads[cand], nr[cand], sc, stat)
        gone[cand[demoted]] = True
        reclaimed += stat.nr_demoted
        reclaim[cand[demoted]] = False
        if sc.proactive:
            reclaim[cand] = False                    # kept, not retried without demotion

    anon = np.flatnonzero(reclaim & (types == LRU_GEN_ANON))
    if anon.size:
        is_anon = (pm.flags[heads[anon]] & PG_anon) != 0
        swapped = np.zeros(anon.size, bool)
        if sc.may_swap and (sc.gfp_mask & __GFP_IO):
            sw = np.flatnonzero(is_anon)
            swapped[sw] = swap_out_folios(kernel, lruvec, heads[anon[sw]],
                                           target_memcg=sc.target_memcg)
            gone[anon[swapped]] = True
            reclaimed += int(nr[anon[swapped]].sum())
        activate[anon[~swapped]] = True              # add_to_swap() failed: activate_locked
    files = np.flatnonzero(reclaim & (types == LRU_GEN_FILE))
    if files.size:
        fh = heads[files]
        dirty = ((pm.flags[fh] & PG_dirty) != 0) | _mapping_dirty(kernel, fh)
        if sc.may_writepage:
            pageout(kernel, fh[dirty])
            stat.nr_pageout += int(nr[files][dirty].sum())
        free = fh[~dirty]
        try_to_unmap(kernel, free)
        shadows = workingset_eviction(lruvec, free, sc.target_memcg)
        __remove_mapping(kernel, free, shadows)
        kernel.free_pages(free)
        gone[files[~dirty]] = True
        reclaimed += int(nr[files][~dirty].sum())

    act = np.flatnonzero(activate & ~gone)
    if act.size:
        pm.flags[heads[act]] |= PG_active
        for t in (0, 1):
            stat.nr_activate[t] += int(nr[act][types[act] == t].sum())
        vm.count("pgactivate", lruvec.nid, int(nr[act].sum()))
    return reclaimed, heads[~gone], stat


# ---- evict_folios and run_eviction ----------------------------------------------------------
def evict_folios(nr_to_scan: int, lruvec, sc: ScanControl, swappiness: int) -> int:
    """evict_folios() (§7.2): isolate, advance min_seq over emptied generations, shrink the
    isolated folios and put the survivors back: a clean, unmapped, inactive one gets one retry
    (a missed folio_rotate_reclaimable); one whose lru_gen_folio_seq would be min_seq gets
    PG_active so a rejected folio does not return to the oldest generation. Returns the pages
    scanned, 0 when evictable_min_seq + MIN_NR_GENS > max_seq (aging is needed)."""
    kernel = lruvec.kernel
    pm = kernel.pm
    g = lruvec.lrugen
    scanned, type_, heads = isolate_folios(nr_to_scan, lruvec, sc, swappiness)
    scanned += int(try_to_inc_min_seq(lruvec, swappiness))
    if evictable_min_seq(g.min_seq, swappiness) + MIN_NR_GENS > g.max_seq:
        scanned = 0
    skip_retry = False
    suffix = reclaimer_suffix(sc)
    while heads.size:
        reclaimed, heads, stat = shrink_folio_list(heads, lruvec, sc)
        sc.nr.unqueued_dirty += stat.nr_unqueued_dirty
        sc.nr_reclaimed += reclaimed
        if heads.size == 0:          # all reclaimed or demoted: nothing to put back
            _count_evicted(kernel, lruvec, stat, reclaimed, suffix)
            break
        flags = pm.flags[heads]
        unevictable = (flags & PG_unevictable) != 0
        clean = np.zeros(heads.size, bool)
        if not skip_retry:
            clean = (~unevictable & ((flags & (PG_active | PG_dirty | PG_writeback)) == 0)
                     & ~folio_mapped(pm, heads))
        rest = heads[~unevictable & ~clean]
        # don't add rejected folios to the oldest generation
        oldest = rest[lru_gen_folio_seq(lruvec, pm, rest, reclaiming=False) == g.min_seq[type_]]
        pm.flags[oldest] = (pm.flags[oldest] & ~PG_referenced) | PG_active
        clear_refs_bits(pm, oldest)
        # folio_putback_lru() of the unevictable ones: the (classic) unevictable list
        unev = heads[unevictable]
        pm.flags[unev] = (pm.flags[unev] & ~PG_active) | PG_lru
        lru_gen_add_folio(lruvec, rest)  # move_folios_to_lru()
        _count_evicted(kernel, lruvec, stat, reclaimed, suffix)
        heads = heads[clean]
        skip_retry = True
    kernel.after_op()
    return scanned


def _count_evicted(kernel, lruvec, stat: ReclaimStat, reclaimed: int, suffix: str) -> None:
    """evict_folios()'s pgdemote_* and pgsteal_* of one shrink_folio_list pass."""
    if stat.nr_demoted:
        kernel.vmstat.count(f"pgdemote_{suffix}", lruvec.nid, stat.nr_demoted)
    if reclaimed:
        kernel.vmstat.count(f"pgsteal_{suffix}", lruvec.nid, reclaimed)


def run_eviction(lruvec, seq: int, sc: ScanControl, swappiness: int,
                 nr_to_reclaim: int = ULONG_MAX) -> int:
    """run_eviction() (§8.4, the debugfs ``-`` command): evict until min_seq passes ``seq``,
    ``nr_to_reclaim`` pages were reclaimed, or evict_folios() returns 0. Returns 0, or -EINVAL
    when seq + MIN_NR_GENS > max_seq. For convenience a negative swappiness means the
    lruvec's default (get_swappiness, as run_cmd does) and one above 201 is -EINVAL (run_cmd's
    check). Signals are not modelled, so -EINTR never happens."""
    kernel = lruvec.kernel
    g = lruvec.lrugen
    if swappiness < MIN_SWAPPINESS:
        swappiness = get_swappiness(lruvec, sc)
    elif swappiness > SWAPPINESS_ANON_ONLY:
        return -errno.EINVAL
    if seq + MIN_NR_GENS > g.max_seq:
        return -errno.EINVAL
    sc.nr_reclaimed = 0
    try:
        while True:
            if seq < evictable_min_seq(g.min_seq, swappiness):
                return 0
            if sc.nr_reclaimed >= nr_to_reclaim:
                return 0
            if not evict_folios(nr_to_reclaim - sc.nr_reclaimed, lruvec, sc, swappiness):
                return 0
    finally:
        kernel.after_op()
