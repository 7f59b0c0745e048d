"""The classic (two-list) LRU: active/inactive anon/file lists per lruvec, used when
/sys/kernel/mm/lru_gen/enabled has LRU_GEN_CORE clear (mm/vmscan.c, include/linux/mm_inline.h).

State (DESIGN §4): a folio is on a classic list when it has PG_lru and no MGLRU generation
(the gen field of ``lru_gen_refs`` and ``list_gen`` are 0); which list is its type
(folio_is_file_lru) and PG_active; its position is ``lru_stamp`` (larger = nearer the head).
Each lruvec keeps ``lru_size[lru]`` in pages (lruvec->lru_zone_size summed over the one zone).

Simplifications (docs/fidelity.md "Classic LRU"): shrink_lruvec() scans each list's
get_scan_count() share in one batch per list instead of interleaved 32-folio rounds, and
stops between lists once nr_to_reclaim is met (the kernel rescales the remaining counts
instead); the anon/file cost balance uses the pages scanned but not reclaimed (lru_note_cost)
without the refault cost; may_deactivate is the target's refaults since the last
snapshot_refaults (prepare_scan_control) or'd with inactive_is_low of each lruvec (the kernel
asks the target's); VM_EXEC file folios get no extra trip round the active list;
refaults use the eviction counter (mm/workingset.py classic_eviction / classic_refault).
"""

from __future__ import annotations

import numpy as np

from .constants import (
    LRU_GEN_CORE, LRU_GEN_MASK, PG_active, PG_lru, PG_reclaim, PG_referenced, PG_unevictable,
    PG_workingset, _PAGE_ACCESSED,
)
from .lru_gen import folio_type, lru_gen_add_folio, lru_gen_del_folio
from .lru_index import classic_key, lru_index, lru_index_note
from .workingset import workingset_age_nonresident
from .vmstat import register_vmstat

register_vmstat("pgrefill")

LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE = 0, 1, 2, 3
LRU_BASE, LRU_ACTIVE, LRU_FILE = 0, 1, 2
NR_EVICTABLE_LRU = 4
LRU_NAMES = ("inactive_anon", "active_anon", "inactive_file", "active_file")
SCAN_EQUAL, SCAN_FRACT, SCAN_ANON, SCAN_FILE = 0, 1, 2, 3


def lru_gen_enabled(kernel) -> bool:
    """lru_gen_enabled(): LRU_GEN_CORE is set in /sys/kernel/mm/lru_gen/enabled."""
    return bool(int(kernel.sysfs["lru_gen/enabled"]) & LRU_GEN_CORE)


def lru_sizes(lruvec) -> np.ndarray:
    """lruvec->lru_zone_size[*][lru] summed over zones: pages on each classic list."""
    if not hasattr(lruvec, "lru_size"):
        lruvec.lru_size = np.zeros(NR_EVICTABLE_LRU, np.int64)
        lruvec.anon_cost = lruvec.file_cost = 0
    return lruvec.lru_size


def folio_lru_list(pm, heads) -> np.ndarray:
    """folio_lru_list(): LRU_FILE * file + LRU_ACTIVE * active (evictable folios)."""
    active = (pm.flags[heads] & PG_active) != 0
    return LRU_FILE * folio_type(pm, heads) + active.astype(np.int64)


def on_classic_list(pm, heads) -> np.ndarray:
    """PG_lru without an MGLRU generation or list (the classic lists' membership)."""
    return (((pm.flags[heads] & PG_lru) != 0) & ((pm.lru_gen_refs[heads] & LRU_GEN_MASK) == 0)
            & (pm.list_gen[heads] == 0) & ((pm.flags[heads] & PG_unevictable) == 0))


def lruvec_add_folio(lruvec, heads, tail: bool = False) -> None:
    """lruvec_add_folio() / lruvec_add_folio_tail() with folio_set_lru(): the list is chosen by
    PG_active and the folio type. Unevictable folios stay off the lists (as under MGLRU)."""
    pm = lruvec.kernel.pm
    heads = np.asarray(heads, dtype=np.int64)
    heads = heads[(pm.flags[heads] & PG_unevictable) == 0]
    if heads.size == 0:
        return
    pm.flags[heads] |= PG_lru
    pm.lru_stamp[heads] = pm.next_stamps(heads.size, tail=tail)
    lru_index_note(pm, heads)
    np.add.at(lru_sizes(lruvec), folio_lru_list(pm, heads), pm.folio_nr_pages(heads))


def lruvec_del_folio(lruvec, heads) -> None:
    """lruvec_del_folio() with folio_clear_lru(): PG_active stays, so a folio put back (or
    migrated) returns to the same list."""
    pm = lruvec.kernel.pm
    heads = np.asarray(heads, dtype=np.int64)
    heads = heads[on_classic_list(pm, heads)]
    if heads.size == 0:
        return
    np.subtract.at(lru_sizes(lruvec), folio_lru_list(pm, heads), pm.folio_nr_pages(heads))
    pm.flags[heads] &= ~PG_lru
    pm.lru_stamp[heads] = 0


def lru_list_heads(lruvec, lru: int) -> np.ndarray:
    """The head pfns on list ``lru`` of ``lruvec``, in pfn order."""
    pm = lruvec.kernel.pm
    lo, hi = pm.node_range(lruvec.nid)
    heads = np.flatnonzero((pm.flags[lo:hi] & PG_lru) != 0) + lo
    heads = heads[(pm.memcg[heads] == lruvec.memcg.id) & on_classic_list(pm, heads)]
    return heads[folio_lru_list(pm, heads) == lru]


def isolate_lru_folios(nr_to_scan: int, lruvec, lru: int) -> tuple[np.ndarray, int]:
    """isolate_lru_folios(): take folios from the tail of list ``lru`` until ``nr_to_scan``
    pages were taken. Returns (heads, tail first; pages taken). Folios a fault holds
    (PhysMem.pinned) are passed over, as MGLRU's isolate_folio does in the model (evict.py
    _isolatable): the kernel would isolate them and fail to free them at __remove_mapping."""
    pm = lruvec.kernel.pm
    index = lru_index(pm)
    if index is None:                    # the whole-range reference
        heads = lru_list_heads(lruvec, lru)
        key = pm.lru_stamp[heads].astype(np.int64) * (1 << 32) + heads
        heads = heads[np.argsort(key, kind="stable")]
    else:                                # a folio is >= 1 page: enough folios, tail first
        heads = index.first(classic_key(lruvec, lru), max(int(nr_to_scan), 0) + pm.pinned.size)
    if pm.pinned.size:
        heads = heads[~np.isin(heads, pm.pinned)]
    if heads.size == 0 or nr_to_scan <= 0:
        return np.empty(0, np.int64), 0
    nr = pm.folio_nr_pages(heads)
    take = int(np.searchsorted(np.cumsum(nr), nr_to_scan, side="left")) + 1
    heads = heads[:take]
    lruvec_del_folio(lruvec, heads)
    return heads, int(nr[:take].sum())


def inactive_is_low(lruvec, inactive_lru: int) -> bool:
    """inactive_is_low(): inactive * inactive_ratio < active, the ratio int_sqrt(10 * gb) of
    the list pair's size in GiB (1 below 1 GiB)."""
    size = lru_sizes(lruvec)
    inactive, active = int(size[inactive_lru]), int(size[inactive_lru + LRU_ACTIVE])
    gb = (inactive + active) >> (30 - 12)
    ratio = int(np.sqrt(10 * gb)) if gb else 1
    return inactive * ratio < active


def _can_age_anon_pages(lruvec, sc) -> bool:
    from .reclaim import can_reclaim_anon_pages

    return can_reclaim_anon_pages(lruvec.kernel, lruvec.nid, sc)


def get_scan_count(lruvec, sc) -> np.ndarray:
    """get_scan_count(): how many pages of each list to scan. No reclaimable anon (no swap,
    no demotion target) or swappiness 0 with file pages: file only; priority 0 with
    swappiness: equal; otherwise anon and file in proportion to swappiness and 200 -
    swappiness, each weighted by (total_cost + 1) / (its cost + total_cost + 1). Each list
    contributes size >> priority, after a protected memcg's lists are scaled by its
    effective memory.min/low (mem_cgroup_protection): size - size * protection / (usage + 1),
    at least SWAP_CLUSTER_MAX; memory.low counts (and marks memcg_low_skipped) unless
    sc.memcg_low_reclaim."""
    from .evict import SWAP_CLUSTER_MAX, get_swappiness
    from .memcontrol import mem_cgroup_protection, page_counter_read

    swappiness = get_swappiness(lruvec, sc)
    size = lru_sizes(lruvec)
    if not sc.may_swap or not _can_age_anon_pages(lruvec, sc):
        balance = SCAN_FILE
    elif swappiness == 0 and size[LRU_INACTIVE_FILE] + size[LRU_ACTIVE_FILE]:
        balance = SCAN_FILE
    elif sc.priority == 0 and swappiness:
        balance = SCAN_EQUAL
    else:
        balance = SCAN_FRACT
    total_cost = lruvec.anon_cost + lruvec.file_cost
    ap = swappiness * (total_cost + 1) // (lruvec.anon_cost + total_cost + 1)
    fp = (200 - swappiness) * (total_cost + 1) // (lruvec.file_cost + total_cost + 1)
    nr = np.zeros(NR_EVICTABLE_LRU, np.int64)
    emin, elow = mem_cgroup_protection(lruvec.kernel, sc.target_memcg, lruvec.memcg)
    protection = 0
    if emin or elow:
        if not sc.memcg_low_reclaim and elow > emin:
            protection = elow
            sc.memcg_low_skipped = True
        else:
            protection = emin
        cgroup_size = max(page_counter_read(lruvec.kernel, lruvec.memcg), protection)
    for lru in range(NR_EVICTABLE_LRU):
        file = lru >= LRU_FILE
        scan = int(size[lru])
        if emin or elow:                  # proportional protection
            scan = max(scan - scan * protection // (cgroup_size + 1), SWAP_CLUSTER_MAX)
        scan >>= sc.priority
        if balance == SCAN_FRACT:
            denom = ap + fp
            scan = -(-scan * (fp if file else ap) // denom) if denom else 0
        elif balance == SCAN_FILE and not file:
            scan = 0
        elif balance == SCAN_ANON and file:
            scan = 0
        nr[lru] = scan
    return nr


def folio_referenced_ptes(kernel, heads) -> np.ndarray:
    """folio_referenced(): the number of young PTE/PMD mappings of each folio, clearing them
    (ptep_clear_flush_young); VMAs without recency are skipped as in evict.folio_referenced."""
    from .evict import _folio_sites, _vma_has_recency
    from .constants import PG_idle
    from .page_idle import folio_test_clear_young

    heads = np.asarray(heads, dtype=np.int64)
    count = np.zeros(heads.size, np.int64)
    mapped = np.zeros(heads.size, bool)
    for s, table, owner in _folio_sites(kernel, heads):
        keep = _vma_has_recency(s.mm, s.slots << 9 if s.pmd else s.slots)
        slots, owner = s.slots[keep], owner[keep]
        mapped[owner] = True
        (kernel.materialize_pmds if s.pmd else kernel.materialize_ptes)(s.mm, np.unique(slots))
        young = (table[slots] & _PAGE_ACCESSED) != 0
        table[slots[young]] &= ~_PAGE_ACCESSED
        np.add.at(count, owner[young], 1)
    kernel.pm.flags[heads[count > 0]] &= ~PG_idle
    # folio_referenced_one(): PG_young makes the mapping it is found on referenced (counted
    # once per mapping, so a folio whose young PTE already counted gains nothing; with several
    # mappings the flag is taken by the first one walked, approximated here as any)
    young = np.flatnonzero(mapped)[folio_test_clear_young(kernel, heads[mapped])]
    count[young] = np.maximum(count[young], 1)
    return count


def folio_check_references(kernel, heads) -> tuple[np.ndarray, np.ndarray]:
    """folio_check_references() for the classic LRU: referenced PTEs set PG_referenced and
    activate a folio that was already PG_referenced or has more than one young mapping,
    else keep it for another trip round the inactive list; no young mapping: reclaim
    (PG_referenced is cleared either way first). Returns (activate, keep) masks."""
    pm = kernel.pm
    heads = np.asarray(heads, dtype=np.int64)
    ptes = folio_referenced_ptes(kernel, heads)
    referenced_folio = (pm.flags[heads] & PG_referenced) != 0
    pm.flags[heads] &= ~PG_referenced
    young = ptes > 0
    pm.flags[heads[young]] |= PG_referenced
    activate = young & (referenced_folio | (ptes > 1))
    return activate, young & ~activate


def folio_mark_accessed(kernel, heads) -> None:
    """folio_mark_accessed() (mm/swap.c), for accesses through file descriptors: an
    unreferenced folio gets PG_referenced; a referenced inactive one is activated
    (folio_activate: to the active list's head, pgactivate) and loses PG_referenced. Under
    MGLRU it is lru_gen_inc_refs()."""
    from .lru_gen import lru_gen_inc_refs

    pm = kernel.pm
    heads = np.unique(np.asarray(heads, dtype=np.int64))
    if lru_gen_enabled(kernel):
        lru_gen_inc_refs(pm, heads)
        return
    flags = pm.flags[heads]
    referenced = (flags & PG_referenced) != 0
    active = (flags & PG_active) != 0
    pm.flags[heads[~referenced]] |= PG_referenced
    go = heads[referenced & ~active & on_classic_list(pm, heads)]
    if go.size:
        kernel.lru_del(go)
        pm.flags[go] = (pm.flags[go] & ~PG_referenced) | PG_active
        kernel.lru_add(go)
        kernel.vmstat.count("pgactivate", pm.node_of(go), pm.folio_nr_pages(go))
        workingset_activation(kernel, go)


def workingset_activation(kernel, heads) -> None:
    """workingset_activation() (mm/workingset.c): an activated folio ages its lruvec's
    nonresident information (workingset_age_nonresident)."""
    pm = kernel.pm
    nr = pm.folio_nr_pages(heads)
    key = pm.memcg[heads].astype(np.int64) * 1024 + pm.node_of(heads)
    for kk in np.unique(key):
        lv = kernel.lruvec(kernel.memcgs.by_id[int(kk) // 1024], int(kk) % 1024)
        workingset_age_nonresident(lv, int(nr[key == kk].sum()))


def move_folios_to_lru(lruvec, heads) -> None:
    """move_folios_to_lru(): survivors back to the head of their list (PG_active picks it);
    a folio written back for reclaim (PG_reclaim) goes to the inactive tail, where
    folio_rotate_reclaimable() puts it when its (instant, here) writeback ends."""
    pm = lruvec.kernel.pm
    heads = np.asarray(heads, dtype=np.int64)
    rotate = ((pm.flags[heads] & PG_reclaim) != 0) & ((pm.flags[heads] & PG_active) == 0)
    lruvec_add_folio(lruvec, heads[~rotate])
    lruvec_add_folio(lruvec, heads[rotate], tail=True)
    pm.flags[heads[rotate]] &= ~PG_reclaim
    active = heads[(pm.flags[heads] & PG_active) != 0]
    if active.size:                      # activations age the nonresident information
        workingset_age_nonresident(lruvec, int(pm.folio_nr_pages(active).sum()))


def _suffix(sc) -> str:
    from .evict import reclaimer_suffix

    return reclaimer_suffix(sc)


def shrink_active_list(nr_to_scan: int, lruvec, sc, lru: int) -> None:
    """shrink_active_list(): take nr_to_scan pages from the active list's tail; clear their
    young bits through the rmap (folio_referenced) and move every one to the inactive list's
    head with PG_workingset (a referenced non-executable folio is deactivated too, as in the
    kernel). pgrefill counts pages taken, pgdeactivate pages moved."""
    kernel = lruvec.kernel
    pm = kernel.pm
    heads, taken = isolate_lru_folios(nr_to_scan, lruvec, lru)
    if heads.size == 0:
        return
    kernel.vmstat.count("pgrefill", lruvec.nid, taken)
    mapped = pm.mapcount[heads] > 0
    folio_referenced_ptes(kernel, heads[mapped])
    pm.flags[heads] = (pm.flags[heads] & ~PG_active) | PG_workingset
    lruvec_add_folio(lruvec, heads)
    kernel.vmstat.count("pgdeactivate", lruvec.nid, taken)


def lru_note_cost(lruvec, file: bool, cost: int) -> None:
    """lru_note_cost(): add the cost of reclaiming one type (here pages scanned but not
    reclaimed; the kernel adds I/O and rotation cost); halve both when their sum exceeds a
    quarter of the lists' size."""
    if file:
        lruvec.file_cost += cost
    else:
        lruvec.anon_cost += cost
    if lruvec.anon_cost + lruvec.file_cost > int(lru_sizes(lruvec).sum()) // 4:
        lruvec.anon_cost //= 2
        lruvec.file_cost //= 2


def shrink_inactive_list(nr_to_scan: int, lruvec, sc, lru: int) -> int:
    """shrink_inactive_list(): isolate from the inactive tail, count pgscan, run the shared
    shrink_folio_list() (references, demotion, swap, writeback, freeing), put the survivors
    back and count pgsteal/pgdemote. Returns the pages reclaimed."""
    from .evict import shrink_folio_list

    kernel = lruvec.kernel
    heads, taken = isolate_lru_folios(nr_to_scan, lruvec, lru)
    if heads.size == 0:
        return 0
    suffix = _suffix(sc)
    file = lru >= LRU_FILE
    kernel.vmstat.count(f"pgscan_{suffix}", lruvec.nid, taken)
    reclaimed, rest, stat = shrink_folio_list(heads, lruvec, sc)
    sc.nr.unqueued_dirty += stat.nr_unqueued_dirty
    move_folios_to_lru(lruvec, rest)
    if stat.nr_demoted:
        kernel.vmstat.count(f"pgdemote_{suffix}", lruvec.nid, stat.nr_demoted)
    if reclaimed:
        kernel.vmstat.count(f"pgsteal_{suffix}", lruvec.nid, reclaimed)
    lru_note_cost(lruvec, file, taken - reclaimed)
    return reclaimed


def shrink_list(lru: int, nr_to_scan: int, lruvec, sc, may_deactivate: int) -> int:
    """shrink_list(): an active list is only aged (shrink_active_list) when deactivation is
    allowed for its type; an inactive list is reclaimed from."""
    if lru & LRU_ACTIVE:
        if may_deactivate & (1 << (lru >= LRU_FILE)):
            shrink_active_list(nr_to_scan, lruvec, sc, lru)
        else:
            sc.skipped_deactivate = True
        return 0
    return shrink_inactive_list(nr_to_scan, lruvec, sc, lru)


def shrink_lruvec_classic(lruvec, sc) -> None:
    """shrink_lruvec() for the classic lists (see the module doc for the batching): scan
    each list's get_scan_count() share, then age the active anon list if its inactive list
    is low. Adds to sc.nr_reclaimed."""
    from .evict import SWAP_CLUSTER_MAX
    from .reclaim import root_reclaim

    nr = get_scan_count(lruvec, sc)
    may_deactivate = sc.may_deactivate          # refaults on the target (prepare_scan_control)
    if inactive_is_low(lruvec, LRU_INACTIVE_ANON):
        may_deactivate |= 1
    if inactive_is_low(lruvec, LRU_INACTIVE_FILE):
        may_deactivate |= 2
    proportional = root_reclaim(sc) and not sc.is_kswapd and sc.priority == 12
    for lru in (LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE):
        if nr[lru]:
            sc.nr_reclaimed += shrink_list(lru, int(nr[lru]), lruvec, sc, may_deactivate)
        if sc.nr_reclaimed >= sc.nr_to_reclaim and not proportional:
            break
    if _can_age_anon_pages(lruvec, sc) and inactive_is_low(lruvec, LRU_INACTIVE_ANON):
        shrink_active_list(SWAP_CLUSTER_MAX, lruvec, sc, LRU_ACTIVE_ANON)
    lruvec.kernel.after_op()


def prepare_scan_control(kernel, nid: int, sc) -> None:
    """prepare_scan_control(), its deactivation part: an active list may be deactivated when
    the target lruvec's WORKINGSET_ACTIVATE_<type> moved since the last snapshot_refaults()
    (refaults mean a new workingset is forming: drop stale active pages quickly), or always
    with force_deactivate. The kernel also sets the bit when the target's inactive list is
    low; the model judges that per lruvec in shrink_lruvec_classic (docs/fidelity.md)."""
    target = kernel.lruvec(sc.target_memcg or kernel.root_memcg, nid)
    sc.may_deactivate = 0
    for file in (0, 1):
        if sc.force_deactivate or target.workingset_activate[file] != target.refaults[file]:
            sc.may_deactivate |= 1 << file


def snapshot_refaults(kernel, target_memcg, nid: int) -> None:
    """snapshot_refaults(): remember the target lruvec's WORKINGSET_ACTIVATE_* at the end of
    a reclaim run (balance_pgdat, do_try_to_free_pages)."""
    target = kernel.lruvec(target_memcg or kernel.root_memcg, nid)
    target.refaults = list(target.workingset_activate)


# ---- switching between MGLRU and the classic lists (lru_gen_change_state) --------------------
def _mglru_heads(lruvec) -> np.ndarray:
    """Folios on lruvec's MGLRU lists, gen index 0..3 in turn, each list from its tail."""
    pm = lruvec.kernel.pm
    lo, hi = pm.node_range(lruvec.nid)
    heads = np.flatnonzero(pm.list_gen[lo:hi] != 0) + lo
    heads = heads[pm.memcg[heads] == lruvec.memcg.id]
    order = np.lexsort((heads, pm.lru_stamp[heads].astype(np.int64), folio_type(pm, heads),
                        pm.list_gen[heads]))
    return heads[order]


def drain_evictable(lruvec) -> None:
    """drain_evictable(): every folio from the MGLRU lists (each from its tail) to the head of
    its classic list; lru_gen_del_folio sets PG_active for those in an active generation."""
    heads = _mglru_heads(lruvec)
    lru_gen_del_folio(lruvec, heads)
    lruvec_add_folio(lruvec, heads)


def fill_evictable(lruvec) -> None:
    """fill_evictable(): every folio from the classic lists (each from its tail) into the
    generations, the active ones (PG_active) into the youngest."""
    pm = lruvec.kernel.pm
    for lru in range(NR_EVICTABLE_LRU):
        heads = lru_list_heads(lruvec, lru)
        heads = heads[np.lexsort((heads, pm.lru_stamp[heads].astype(np.int64)))]
        lruvec_del_folio(lruvec, heads)
        lru_gen_add_folio(lruvec, heads)


def lru_gen_change_state(kernel, enabled: bool) -> None:
    """lru_gen_change_state() (mm/vmscan.c): on a change of LRU_GEN_CORE move every lruvec's
    folios between the MGLRU generations and the classic lists."""
    if getattr(kernel, "_lru_gen_core", True) == bool(enabled):
        return
    for lruvec in kernel.lruvecs():
        lruvec.lrugen.enabled = bool(enabled)
        (fill_evictable if enabled else drain_evictable)(lruvec)
    kernel._lru_gen_core = bool(enabled)
    kernel.after_op()

