"""memcg charging, limits and protection (mm/memcontrol.c, mm/page_counter.c).

Every folio is charged to its memcg (``Kernel.memcg_charged[id]``, pages) when it is set up
after allocation, uncharged when freed; a migration moves the charge (mem_cgroup_migrate).
A charge that takes the memcg or an ancestor past ``memory.max`` reclaims from that memcg
(try_to_free_mem_cgroup_pages) up to MAX_RECLAIM_RETRIES times, and fails with OutOfMemory
(the memcg OOM) if it is still over; past ``memory.high`` the charging task reclaims the excess
(mem_cgroup_handle_over_high, done at once here). Reclaim skips memcgs below their effective
``memory.min``, and below ``memory.low`` until a pass found nothing else to reclaim
(mem_cgroup_calculate_protection, mem_cgroup_below_min/low).

Effective protection is the kernel's (page_counter_calculate_protection / effective_protection
in mm/page_counter.c): relative to the reclaim's target (the root for global reclaim), a child
of the target gets its own setting; deeper, a memcg gets min(usage, setting), scaled down by
parent_effective / siblings' protected usage when its siblings together claim more than the
parent's effective protection. The classic get_scan_count scales each list's scan by
1 - protection / (usage + 1) (mem_cgroup_protection).

Simplifications (docs/fidelity.md "memcg limits"): effective values are computed when asked
(the kernel caches them per reclaim pass, computed parents first); the memory_recursiveprot
mount option (the unclaimed share of a parent's protection passed on) is off, as by default;
no memory.high throttling penalty (only the reclaim); no swap limits.
"""

from __future__ import annotations

import numpy as np

from ..errors import OutOfMemory
from .memcg import MEM_CGROUP_ID_MAX, PAGE_COUNTER_MAX
from .vmstat import register_vmstat

MAX_RECLAIM_RETRIES = 16
register_vmstat("memcg_max_events", "memcg_high_events", "memcg_low_events",
                "memcg_oom_events")   # tierscan's sums of the memcgs' memory.events


def memcg_charged(kernel) -> np.ndarray:
    """The per-memcg-id page counters (memcg->memory, this memcg's own pages)."""
    arr = getattr(kernel, "_memcg_charged", None)
    if arr is None:
        arr = kernel._memcg_charged = np.zeros(MEM_CGROUP_ID_MAX + 1, np.int64)
    return arr


def page_counter_read(kernel, memcg) -> int:
    """page_counter_read(&memcg->memory): pages charged to the memcg and its descendants."""
    arr = memcg_charged(kernel)
    return int(sum(int(arr[m.id]) for m in memcg.iter_tree()))


def charged(kernel, ids) -> np.ndarray:
    """Which folios (by memcg id) were charged: all when memcg is disabled (everything is the
    root's, id 0); otherwise those with a memcg, i.e. not id 0 (the root is id 1; a raw
    allocation that no fault set up has no memcg)."""
    ids = np.asarray(ids)
    if kernel.root_memcg.id == 0:
        return np.ones(ids.shape, bool)
    return ids != 0


def mem_cgroup_uncharge(kernel, heads) -> None:
    """mem_cgroup_uncharge() of folios being freed; a folio without a memcg has nothing to
    uncharge (``if (!folio_memcg(folio)) return``)."""
    pm = kernel.pm
    ids = pm.memcg[heads].astype(np.int64)
    keep = charged(kernel, ids)
    np.subtract.at(memcg_charged(kernel), ids[keep], pm.folio_nr_pages(heads[keep]))


def mem_cgroup_migrate(kernel, new_heads) -> None:
    """mem_cgroup_migrate(): the new folios carry the charge (the old ones are uncharged when
    freed)."""
    pm = kernel.pm
    np.add.at(memcg_charged(kernel), pm.memcg[new_heads].astype(np.int64),
              pm.folio_nr_pages(new_heads))


def _ancestors(memcg):
    while memcg is not None:
        yield memcg
        memcg = memcg.parent


def try_to_free_mem_cgroup_pages(kernel, memcg, nr_pages: int) -> int:
    """try_to_free_mem_cgroup_pages() (mm/vmscan.c): reclaim from ``memcg``'s subtree on every
    node (sc.target_memcg = memcg), priority DEF_PRIORITY down to 0, until nr_pages (at least
    SWAP_CLUSTER_MAX) are reclaimed; a pass that skipped memcgs below memory.low and
    reclaimed nothing is retried with memcg_low_reclaim. Returns pages reclaimed."""
    from .evict import DEF_PRIORITY, SWAP_CLUSTER_MAX, ScanControl
    from .reclaim import do_try_to_free_pages

    sc = ScanControl(nr_to_reclaim=max(int(nr_pages), SWAP_CLUSTER_MAX), priority=DEF_PRIORITY,
                     target_memcg=memcg, is_kswapd=False)
    return do_try_to_free_pages(kernel, list(range(kernel.machine.nr_nodes)), sc)


def _over(kernel, memcg, attr: str, nr: int) -> int:
    return page_counter_read(kernel, memcg) + nr - getattr(memcg, attr)


class _NoChecks:
    """Reclaim inside a charge runs while the charging task's new folios are allocated but
    not yet set up or on an LRU: Kernel.check()'s invariants hold only between operations,
    so the debug checks pause until the charge is done."""

    def __init__(self, kernel):
        self.kernel = kernel

    def __enter__(self):
        self.debug, self.kernel.debug = self.kernel.debug, False

    def __exit__(self, *exc):
        self.kernel.debug = self.debug


def mem_cgroup_charge(kernel, memcg, heads) -> None:
    """mem_cgroup_charge() → try_charge_memcg() for freshly allocated folios that are not set
    up yet: reclaim while the charge would take a memcg on the way to the root past
    memory.max; if that fails MAX_RECLAIM_RETRIES times, free the folios and raise
    OutOfMemory (the memcg OOM). A memcg left over memory.high is remembered for
    mem_cgroup_handle_over_high() on the task's return to user space."""
    heads = np.asarray(heads, dtype=np.int64)
    if heads.size == 0:
        return
    nr = int(kernel.pm.folio_nr_pages(heads).sum())
    for m in _ancestors(memcg):
        if m.memory_max >= PAGE_COUNTER_MAX or _over(kernel, m, "memory_max", nr) <= 0:
            continue
        kernel.vmstat.count("memcg_max_events", 0, 1)
        retries = MAX_RECLAIM_RETRIES
        with _NoChecks(kernel):
            while _over(kernel, m, "memory_max", nr) > 0 and retries:
                if not try_to_free_mem_cgroup_pages(kernel, m,
                                                    _over(kernel, m, "memory_max", nr)):
                    retries -= 1
        if _over(kernel, m, "memory_max", nr) > 0 and heads.size == 1:
            kernel.pm.free(heads)
            _memcg_oom(kernel, m, nr, memcg)
    # A batch of folios (one access batch's faults) is charged at once: what of it does not
    # fit below memory.max once everything else was reclaimed is reclaimed, or OOMs, when the
    # task returns to user space, where the batch's own folios are set up and reclaimable
    # (the kernel charges folio by folio and reclaims the earlier ones in between).
    memcg_charged(kernel)[memcg.id] += nr
    for m in _ancestors(memcg):
        if _over(kernel, m, "memory_high", 0) > 0 or _over(kernel, m, "memory_max", 0) > 0:
            pending = getattr(kernel, "_memcg_over_high", None)
            if pending is None:
                pending = kernel._memcg_over_high = {}
            pending[m.id] = m


def _memcg_oom(kernel, m, nr: int, memcg) -> None:
    kernel.vmstat.count("memcg_oom_events", 0, 1)
    raise OutOfMemory(
        f"memcg {m.path}: " + (f"charging {nr} pages to {memcg.path}" if nr else
                                "the last batch of faults") + " exceeds memory.max "
        f"({m.memory_max} pages, {page_counter_read(kernel, m)} in use) after "
        f"{MAX_RECLAIM_RETRIES} failed reclaim attempts (memcg OOM)")


def mem_cgroup_handle_over_high(kernel) -> None:
    """mem_cgroup_handle_over_high(): on return to user space, the task that charged a memcg
    past memory.high reclaims the excess from it (the throttling penalty is not modelled);
    a batch charged past memory.max (see mem_cgroup_charge) is reclaimed below it here, or
    the memcg OOMs."""
    pending = getattr(kernel, "_memcg_over_high", None)
    if not pending:
        return
    kernel._memcg_over_high = {}
    for m in pending.values():
        over = _over(kernel, m, "memory_high", 0)
        if over > 0:
            kernel.vmstat.count("memcg_high_events", 0, 1)
            try_to_free_mem_cgroup_pages(kernel, m, over)
        retries = MAX_RECLAIM_RETRIES
        while _over(kernel, m, "memory_max", 0) > 0 and retries:
            if not try_to_free_mem_cgroup_pages(kernel, m, _over(kernel, m, "memory_max", 0)):
                retries -= 1
        if _over(kernel, m, "memory_max", 0) > 0:
            _memcg_oom(kernel, m, 0, m)


def _effective(usage, parent_usage, setting, parent_effective, siblings_protected) -> int:
    """effective_protection() (mm/page_counter.c) without recursive_protection: the protected
    usage min(usage, setting), shared out in proportion when the siblings' protected usage
    exceeds what the parent's effective protection affords."""
    protected = min(usage, setting)
    if siblings_protected > parent_effective:
        return protected * parent_effective // siblings_protected
    return protected


def effective_protection(kernel, memcg, attr: str, target=None) -> int:
    """page_counter_calculate_protection() for memory.min (``attr`` = "memory_min": emin) or
    memory.low ("memory_low": elow) relative to the reclaim ``target`` (None: the root). The
    target and memcgs outside its subtree are not protected; the target's children get their
    own setting; deeper memcgs share their parent's effective value with their siblings
    (children_{min,low}_usage = the sum of min(usage, setting) over the parent's children)."""
    root = target or kernel.root_memcg
    if memcg is root or memcg.parent is None:
        return 0
    usage = page_counter_read(kernel, memcg)
    if not usage:
        return 0                                 # the kernel leaves it stale: nothing to take
    parent = memcg.parent
    if parent is root:
        return getattr(memcg, attr)
    siblings = sum(min(page_counter_read(kernel, c), getattr(c, attr)) for c in parent.children)
    return _effective(usage, page_counter_read(kernel, parent), getattr(memcg, attr),
                      effective_protection(kernel, parent, attr, target), siblings)


def mem_cgroup_protection(kernel, target, memcg) -> tuple[int, int]:
    """mem_cgroup_protection(): (emin, elow), or (0, 0) for the root and the reclaim target."""
    if memcg is target or memcg.parent is None:
        return 0, 0
    return (effective_protection(kernel, memcg, "memory_min", target),
            effective_protection(kernel, memcg, "memory_low", target))


def mem_cgroup_below_min(kernel, target, memcg) -> bool:
    """mem_cgroup_below_min(): usage at or below the effective memory.min (the target of the
    reclaim itself is never protected)."""
    if memcg is target or memcg.parent is None:
        return False
    return page_counter_read(kernel, memcg) <= \
        effective_protection(kernel, memcg, "memory_min", target)


def mem_cgroup_below_low(kernel, target, memcg) -> bool:
    """mem_cgroup_below_low(): usage at or below the effective memory.low."""
    if memcg is target or memcg.parent is None:
        return False
    return page_counter_read(kernel, memcg) <= \
        effective_protection(kernel, memcg, "memory_low", target)


def memcg_skip_for_protection(kernel, sc, memcg) -> bool:
    """shrink_node_memcgs()'s protection checks: skip a memcg below memory.min; below
    memory.low skip it too unless sc.memcg_low_reclaim (then count a low event)."""
    target = sc.target_memcg
    if mem_cgroup_below_min(kernel, target, memcg):
        return True
    if mem_cgroup_below_low(kernel, target, memcg):
        if not sc.memcg_low_reclaim:
            sc.memcg_low_skipped = True
            return True
        kernel.vmstat.count("memcg_low_events", 0, 1)
    return False


# ---- memory.stat ------------------------------------------------------------------------------
def memory_stat(kernel, memcg) -> str:
    """memory.stat of ``memcg`` (cgroup v2, recursive over its subtree) in the kernel's format
    and order (memory_stat_format), bytes for sizes: the entries the model has."""
    from .classic_lru import lru_gen_enabled
    from .constants import (
        HPAGE_PMD_ORDER, PG_active, PG_allocated, PG_anon, PG_dirty, PG_reserved, PG_swapbacked,
        PG_tail,
    )
    from .lru_gen import folio_lru_gen, lru_gen_is_active

    pm = kernel.pm
    ids = np.array([m.id for m in memcg.iter_tree()], np.int64)
    heads = np.flatnonzero(np.isin(pm.memcg, ids) &
                           ((pm.flags & (PG_allocated | PG_tail | PG_reserved)) == PG_allocated))
    flags = pm.flags[heads]
    nr = pm.folio_nr_pages(heads)
    anon = (flags & PG_anon) != 0
    swapbacked = (flags & PG_swapbacked) != 0
    if lru_gen_enabled(kernel):
        active = np.zeros(heads.size, bool)
        gens = folio_lru_gen(pm, heads)
        for lv in kernel.lruvecs():
            sel = (pm.memcg[heads] == lv.memcg.id) & (pm.node_of(heads) == lv.nid) & (gens >= 0)
            active[sel] = lru_gen_is_active(lv, gens[sel])
    else:
        active = (flags & PG_active) != 0

    def b(mask) -> int:
        return int(nr[mask].sum()) << 12

    rows = [
        ("anon", b(anon)),
        ("file", b(~anon)),
        ("shmem", b(~anon & swapbacked)),
        ("file_dirty", b(~anon & ((flags & PG_dirty) != 0))),
        ("anon_thp", b(anon & (pm.order[heads] == HPAGE_PMD_ORDER))),
        ("inactive_anon", b(swapbacked & ~active)),
        ("active_anon", b(swapbacked & active)),
        ("inactive_file", b(~swapbacked & ~active)),
        ("active_file", b(~swapbacked & active)),
    ]
    return "".join(f"{name} {value}\n" for name, value in rows)
