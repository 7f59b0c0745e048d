"""Node reclaim: the driver layer of mm/vmscan.c above eviction (mglru-spec §7.1, §4.1).

The call tree is the kernel's, so the classic LRU slots in beside MGLRU where the kernel has it:

    shrink_node ── lru_gen_enabled() and root reclaim ──> lru_gen_shrink_node
               │                                            └─ shrink_many ─ shrink_one
               │                                                  └─ try_to_shrink_lruvec
               │                                                       (get_nr_to_scan,
               │                                                        evict_folios,
               │                                                        should_abort_scan)
               └─ otherwise ─> shrink_node_memcgs ─ shrink_lruvec (per memcg)
                                                    └─ lru_gen_shrink_lruvec under MGLRU;
                                                       the classic LRU goes here (issue 13
                                                       item 6: not modelled yet)

kswapd (mm/kswapd.py: balance_pgdat → kswapd_shrink_node) and direct reclaim
(try_to_free_pages → do_try_to_free_pages → shrink_zones, below) both end in shrink_node.

Simplifications (docs/fidelity.md): shrink_many visits the memcgs in mem_cgroup_iter order
instead of the per-node memcg LRU bins; memcg protection (memory.min/low) is not modelled, so
get_nr_to_scan and shrink_one never skip a memcg; slab shrinkers do not exist.
"""

from __future__ import annotations

import numpy as np

from .constants import LRU_GEN_ANON, LRU_GEN_CORE, LRU_GEN_FILE, MIN_LRU_BATCH, ZONE_NAMES
from .evict import (
    DEF_PRIORITY, SWAP_CLUSTER_MAX, ScanControl, can_demote, evict_folios, get_swappiness,
)
from .lru_gen import lru_gen_from_seq
from .physmem import WMARK_HIGH, WMARK_PROMO
from .vmscan import should_run_aging, try_to_inc_max_seq

NUMA_BALANCING_NORMAL = 0x1
NUMA_BALANCING_MEMORY_TIERING = 0x2


def lru_gen_enabled(kernel) -> bool:
    """lru_gen_enabled(): the LRU_GEN_CORE capability of /sys/kernel/mm/lru_gen/enabled."""
    return bool(kernel.sysfs["lru_gen/enabled"] & LRU_GEN_CORE)


def root_reclaim(sc: ScanControl) -> bool:
    """root_reclaim(): global reclaim (no target memcg, or the root)."""
    return sc.target_memcg is None or sc.target_memcg.parent is None


def tiering_mark(kernel) -> int:
    """The watermark kswapd balances to: WMARK_PROMO while NUMA balancing is in memory-tiering
    mode (pgdat_balanced / should_abort_scan; promotion-spec §3.5), else WMARK_HIGH."""
    mode = int(kernel.sysfs["kernel/numa_balancing"])
    return WMARK_PROMO if mode & NUMA_BALANCING_MEMORY_TIERING else WMARK_HIGH


def can_reclaim_anon_pages(kernel, nid: int, sc: ScanControl) -> bool:
    """can_reclaim_anon_pages(): swap space is left, or the node can demote."""
    return kernel.swap.nr_free() > 0 or can_demote(kernel, nid, sc)


# ---- MGLRU: try_to_shrink_lruvec and what it calls (§7.1, §4.1) ------------------------------
def lruvec_inactive_pages(lruvec, type_: int) -> int:
    """NR_INACTIVE_{ANON,FILE} under MGLRU: pages outside the two youngest generations."""
    g = lruvec.lrugen
    return int(sum(max(int(g.nr_pages[lru_gen_from_seq(seq), type_].sum()), 0)
                   for seq in range(g.min_seq[type_], g.max_seq - 1)))


def get_nr_to_scan(lruvec, sc: ScanControl, swappiness: int) -> int:
    """get_nr_to_scan() (§4.1): nr >> priority when no aging is needed or at DEF_PRIORITY;
    otherwise age (try_to_inc_max_seq) and return -1 ("rotate") on success, else 0.
    memory.min protection and offline memcgs are not modelled."""
    g = lruvec.lrugen
    need_aging, nr = should_run_aging(lruvec, g.max_seq, swappiness)
    if not need_aging or sc.priority == DEF_PRIORITY:
        return nr >> sc.priority
    return -1 if try_to_inc_max_seq(lruvec, g.max_seq, swappiness, False) else 0


def should_abort_scan(lruvec, sc: ScanControl) -> bool:
    """should_abort_scan() (§7.1): root reclaim stops once nr_to_reclaim (or the compaction
    gap, 2 << order) is met; kswapd at order 0 also stops once the node is above its high
    watermark (PROMO in tiering mode) + MIN_LRU_BATCH. One zone per node."""
    if not root_reclaim(sc):
        return False
    if sc.nr_reclaimed >= max(sc.nr_to_reclaim, 2 << sc.order):
        return True
    if not sc.is_kswapd or sc.order:
        return False
    kernel = lruvec.kernel
    mark = int(kernel.pm.watermarks[lruvec.nid, tiering_mark(kernel)]) + MIN_LRU_BATCH
    return int(kernel.pm.node_free[lruvec.nid]) >= mark


def try_to_shrink_lruvec(lruvec, sc: ScanControl) -> bool:
    """try_to_shrink_lruvec() (§7.1): evict until get_nr_to_scan says stop, evict_folios
    makes no progress, the scanned pages reach nr_to_scan or should_abort_scan. Returns
    whether the lruvec should be rotated (nr_to_scan < 0: it was just aged)."""
    swappiness = get_swappiness(lruvec, sc)
    scanned = 0
    nr_to_scan = 0
    while True:
        nr_to_scan = get_nr_to_scan(lruvec, sc, swappiness)
        if nr_to_scan <= 0:
            break
        delta = evict_folios(nr_to_scan, lruvec, sc, swappiness)
        if not delta:
            break
        scanned += delta
        if scanned >= nr_to_scan:
            break
        if should_abort_scan(lruvec, sc):
            break
    return nr_to_scan < 0


def shrink_one(lruvec, sc: ScanControl) -> None:
    """shrink_one() (§7.1): try_to_shrink_lruvec unless memory.min/low protect the memcg
    (mm/memcontrol.py)."""
    from .memcontrol import memcg_skip_for_protection

    if memcg_skip_for_protection(lruvec.kernel, sc, lruvec.memcg):
        return
    try_to_shrink_lruvec(lruvec, sc)


def shrink_many(kernel, nid: int, sc: ScanControl) -> None:
    """shrink_many() (§7.1), simplified: each memcg's lruvec on ``nid`` in mem_cgroup_iter
    order (not the memcg LRU's random bin), until should_abort_scan."""
    for memcg in kernel.memcgs:
        lruvec = kernel.lruvec(memcg, nid)
        shrink_one(lruvec, sc)
        if should_abort_scan(lruvec, sc):
            break


def set_initial_priority(kernel, nid: int, sc: ScanControl) -> None:
    """set_initial_priority() (§7.1): at DEF_PRIORITY with nr_to_reclaim >= 64, start at
    fls(reclaimable) - 1 - fls(nr_to_reclaim - 1) clamped to [6, 12], reclaimable being the
    inactive file pages (plus inactive anon when anon can be reclaimed)."""
    if sc.priority != DEF_PRIORITY or sc.nr_to_reclaim < MIN_LRU_BATCH:
        return
    types = [LRU_GEN_FILE]
    if can_reclaim_anon_pages(kernel, nid, sc):
        types.append(LRU_GEN_ANON)
    reclaimable = sum(lruvec_inactive_pages(kernel.lruvec(m, nid), t)
                      for m in kernel.memcgs for t in types)
    priority = int(reclaimable).bit_length() - 1 - int(sc.nr_to_reclaim - 1).bit_length()
    sc.priority = int(np.clip(priority, DEF_PRIORITY // 2, DEF_PRIORITY))


def lru_gen_shrink_node(kernel, nid: int, sc: ScanControl) -> None:
    """lru_gen_shrink_node() (§7.1): root reclaim of one node under MGLRU. Returns at once
    unless may_writepage and may_unmap."""
    if not sc.may_writepage or not sc.may_unmap:
        return
    set_initial_priority(kernel, nid, sc)
    shrink_many(kernel, nid, sc)


def lru_gen_shrink_lruvec(lruvec, sc: ScanControl) -> None:
    """lru_gen_shrink_lruvec() (§7.1): memcg reclaim of one lruvec (try_to_shrink_lruvec)."""
    try_to_shrink_lruvec(lruvec, sc)


def shrink_lruvec(lruvec, sc: ScanControl) -> None:
    """shrink_lruvec(): MGLRU goes to lru_gen_shrink_lruvec; the classic active/inactive
    lists to get_scan_count / shrink_list (mm/classic_lru.py)."""
    if lru_gen_enabled(lruvec.kernel):
        lru_gen_shrink_lruvec(lruvec, sc)
        return
    from .classic_lru import shrink_lruvec_classic

    shrink_lruvec_classic(lruvec, sc)


def shrink_node_memcgs(kernel, nid: int, sc: ScanControl) -> None:
    """shrink_node_memcgs(): shrink_lruvec on each memcg under the target (all for root),
    skipping those memory.min/low protect (mem_cgroup_calculate_protection)."""
    from .memcontrol import memcg_skip_for_protection

    memcgs = kernel.memcgs if sc.target_memcg is None else sc.target_memcg.iter_tree()
    for memcg in memcgs:
        if memcg_skip_for_protection(kernel, sc, memcg):
            continue
        shrink_lruvec(kernel.lruvec(memcg, nid), sc)


def shrink_node(kernel, nid: int, sc: ScanControl) -> None:
    """shrink_node(): root reclaim under MGLRU is lru_gen_shrink_node; anything else walks
    the memcgs (shrink_node_memcgs). The one entry of kswapd and direct reclaim."""
    if lru_gen_enabled(kernel) and root_reclaim(sc):
        lru_gen_shrink_node(kernel, nid, sc)
        return
    from .classic_lru import prepare_scan_control

    prepare_scan_control(kernel, nid, sc)
    shrink_node_memcgs(kernel, nid, sc)


# ---- direct reclaim (mm/vmscan.c try_to_free_pages) -----------------------------------------
def reclaim_zone_idx() -> int:
    """gfp_zone(GFP_HIGHUSER_MOVABLE): user pages may come from every zone up to Movable, so
    direct reclaim for them counts allocstall_movable and may reclaim every zone."""
    return len(ZONE_NAMES) - 1


def try_to_free_pages(kernel, nodes, order: int, nr_to_reclaim: int) -> int:
    """try_to_free_pages() → do_try_to_free_pages() (direct reclaim in the allocating task):
    count allocstall_<zone>, then shrink_zones (shrink_node on each node of the zonelist)
    from DEF_PRIORITY down until nr_to_reclaim pages were reclaimed. The kernel asks for SWAP_CLUSTER_MAX per call; the model's
    allocation is a batch, so it asks for the batch's shortfall (at least 32). Returns the
    pages reclaimed (demoted pages count, as in the kernel)."""
    reclaim_idx = reclaim_zone_idx()
    sc = ScanControl(nr_to_reclaim=max(int(nr_to_reclaim), SWAP_CLUSTER_MAX),
                     reclaim_idx=reclaim_idx, order=order, is_kswapd=False,
                     priority=DEF_PRIORITY)
    kernel.vmstat.count(f"allocstall_{ZONE_NAMES[reclaim_idx].lower()}", nodes[0], 1)
    return do_try_to_free_pages(kernel, nodes, sc)


def do_try_to_free_pages(kernel, nodes, sc: ScanControl) -> int:
    """do_try_to_free_pages(): shrink_zones (shrink_node on each node once, in order) from
    sc.priority down to 0 until nr_to_reclaim pages were reclaimed, then snapshot_refaults();
    if nothing was reclaimed, once more with force_deactivate when a classic active list was
    left alone (skipped_deactivate), else once more reclaiming memcgs memory.low protected
    (memcg_low_reclaim). Returns sc.nr_reclaimed."""
    from .classic_lru import snapshot_refaults

    nodes = list(dict.fromkeys(nodes))
    initial_priority = sc.priority
    while True:
        while sc.priority >= 0:
            sc.nr_scanned = 0
            for nid in nodes:
                shrink_node(kernel, nid, sc)
            if sc.nr_reclaimed >= sc.nr_to_reclaim:
                break
            sc.priority -= 1
        for nid in nodes:
            snapshot_refaults(kernel, sc.target_memcg, nid)
        if sc.nr_reclaimed:
            return sc.nr_reclaimed
        if sc.skipped_deactivate:     # nothing reclaimed with an active list left alone
            sc.priority, sc.force_deactivate, sc.skipped_deactivate = initial_priority, True, False
        elif sc.memcg_low_skipped and not sc.memcg_low_reclaim:   # untapped memory.low
            sc.priority, sc.force_deactivate = initial_priority, False
            sc.memcg_low_reclaim, sc.memcg_low_skipped = True, False
        else:
            return 0
