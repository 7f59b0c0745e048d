"""kswapd: the per-node background reclaimer (mm/vmscan.c kswapd, kswapd_try_to_sleep,
balance_pgdat, pgdat_balanced, wakeup_kswapd; promotion-spec §3.5).

Each node has a ``Kswapd`` record: the pgdat fields kswapd reads (kswapd_order,
kswapd_failures) and where the thread is in its loop. The engine runs one daemon per node
(sim/kswapd.py) that calls ``kswapd_run`` every tick; the thread is

- ASLEEP (schedule() in kswapd_try_to_sleep, woken only by wakeup_kswapd),
- SHORT_SLEEP (schedule_timeout(HZ/10) after a balanced run: a wakeup in it counts
  kswapd_low_wmark_hit_quickly; when it ends unbalanced, kswapd_high_wmark_hit_quickly), or
- RUNNING (balance_pgdat; back to the short sleep when the node is balanced, else again).

Not modelled (docs/fidelity.md): watermark boosting (boost_watermark() follows migratetype
fallbacks, which the model has no notion of, so watermark_boost is always 0 and
vm.watermark_boost_factor has no effect); kcompactd; the pfmemalloc throttle; the
kswapd_highest_zoneidx bookkeeping (one zone per node).
"""

from __future__ import annotations

from .constants import HZ
from .evict import DEF_PRIORITY, SWAP_CLUSTER_MAX, ScanControl
from .physmem import WMARK_HIGH
from .reclaim import shrink_node, tiering_mark

MAX_RECLAIM_RETRIES = 16                          # mm/internal.h
KSWAPD_SHORT_SLEEP_NS = 1_000_000_000 // HZ * (HZ // 10)   # schedule_timeout(HZ/10)
ASLEEP, SHORT_SLEEP, RUNNING = "asleep", "short_sleep", "running"


class Kswapd:
    """One node's kswapd: pgdat->kswapd_order / kswapd_failures and the thread's state."""

    def __init__(self, nid: int):
        self.nid = nid
        self.state = ASLEEP
        self.woken = False          # a wakeup_kswapd() arrived while it waited
        self.short_until = 0        # end of the HZ/10 short sleep (ns)
        self.order = 0              # pgdat->kswapd_order
        self.failures = 0           # pgdat->kswapd_failures
        self.runs = 0               # balance_pgdat calls (the pageoutrun counter, per node)

    def __repr__(self) -> str:
        return f"Kswapd(node={self.nid}, {self.state}, failures={self.failures})"


def pgdat_balanced(kernel, nid: int, order: int = 0) -> bool:
    """pgdat_balanced(): the node's free pages are above its high watermark, or the promo
    watermark while NUMA balancing is in memory-tiering mode (promotion-spec §3.5); a node
    without memory counts as balanced."""
    if kernel.pm.node_present[nid] == 0:
        return True
    return kernel.pm.watermark_ok(nid, order, tiering_mark(kernel))


def prepare_kswapd_sleep(kernel, nid: int, order: int = 0) -> bool:
    """prepare_kswapd_sleep(): sleep when balanced, or after MAX_RECLAIM_RETRIES failures
    (a hopeless node is left to direct reclaim)."""
    if kernel.kswapd[nid].failures >= MAX_RECLAIM_RETRIES:
        return True
    return pgdat_balanced(kernel, nid, order)


def wakeup_kswapd(kernel, nid: int, order: int = 0) -> None:
    """wakeup_kswapd(): raise kswapd_order and wake the thread if it is waiting, unless the
    node is hopeless (kswapd_failures >= MAX_RECLAIM_RETRIES) or already balanced."""
    if kernel.pm.node_present[nid] == 0:
        return
    k = kernel.kswapd[nid]
    k.order = max(k.order, int(order))
    if k.state == RUNNING:                 # !waitqueue_active(): it is reclaiming already
        return
    if k.failures >= MAX_RECLAIM_RETRIES or pgdat_balanced(kernel, nid, order):
        return
    k.woken = True


def kswapd_shrink_node(kernel, nid: int, sc: ScanControl) -> bool:
    """kswapd_shrink_node(): reclaim up to the high watermark's worth of pages (at least
    SWAP_CLUSTER_MAX) from the node. Returns whether it scanned that much (then balance_pgdat
    does not raise the priority)."""
    sc.nr_to_reclaim = max(int(kernel.pm.watermarks[nid, WMARK_HIGH]), SWAP_CLUSTER_MAX)
    shrink_node(kernel, nid, sc)
    return sc.nr_scanned >= sc.nr_to_reclaim


def balance_pgdat(kernel, nid: int, order: int = 0) -> int:
    """balance_pgdat(): from DEF_PRIORITY down to 1, stop once pgdat_balanced, else
    kswapd_shrink_node and raise the priority when that scanned too little or reclaimed
    nothing. A run that reclaims nothing counts a kswapd failure. Returns pages reclaimed.
    (kswapd_age_node does not age under MGLRU, and min_ttl_ms is not modelled.)"""
    reclaim_idx = int(kernel.pm.node_zone[nid])
    sc = ScanControl(is_kswapd=True, order=int(order), reclaim_idx=reclaim_idx,
                     priority=DEF_PRIORITY, nr_to_reclaim=0)
    kernel.vmstat.count("pageoutrun", nid, 1)
    kernel.kswapd[nid].runs += 1
    while True:
        before = sc.nr_reclaimed
        if pgdat_balanced(kernel, nid, sc.order):
            break
        sc.nr_scanned = 0
        raise_priority = not kswapd_shrink_node(kernel, nid, sc)
        if raise_priority or sc.nr_reclaimed == before:
            sc.priority -= 1
        if sc.priority < 1:
            break
    from .classic_lru import snapshot_refaults

    snapshot_refaults(kernel, None, nid)
    k = kernel.kswapd[nid]
    if sc.nr_reclaimed == 0:
        k.failures += 1
    else:
        k.failures = 0     # shrink_node(): reclaim progress resets kswapd_failures
    return sc.nr_reclaimed


def kswapd_run(kernel, nid: int, now_ns: int) -> bool:
    """One pass of the kswapd() loop at ``now_ns``: wake from (or stay in) kswapd_try_to_sleep,
    run balance_pgdat if due, then try to sleep. Returns whether balance_pgdat ran."""
    k = kernel.kswapd[nid]
    vm = kernel.vmstat
    if k.state == ASLEEP:
        if not k.woken:
            return False
        k.state = RUNNING
    elif k.state == SHORT_SLEEP:
        if k.woken:                                   # woken before the timeout
            vm.count("kswapd_low_wmark_hit_quickly", nid, 1)
            k.state = RUNNING
        elif now_ns >= k.short_until:
            if prepare_kswapd_sleep(kernel, nid, k.order):
                k.state = ASLEEP                      # schedule() until woken
                return False
            vm.count("kswapd_high_wmark_hit_quickly", nid, 1)
            k.state = RUNNING
        else:
            return False
    k.woken = False
    order, k.order = k.order, 0
    balance_pgdat(kernel, nid, order)
    # kswapd_try_to_sleep(): a short nap if balanced, else straight back to work
    if prepare_kswapd_sleep(kernel, nid, order):
        k.state, k.short_until = SHORT_SLEEP, now_ns + KSWAPD_SHORT_SLEEP_NS
    else:
        vm.count("kswapd_high_wmark_hit_quickly", nid, 1)
    return True
