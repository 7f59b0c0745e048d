"""The page allocator's node fallback, watermark passes and slow path (mm/page_alloc.c).

alloc_pages() follows __alloc_pages(): the fast path (get_page_from_freelist) takes pages from
the first node in the policy's order that stays above its LOW watermark. When no node can,
the slow path (__alloc_pages_slowpath) wakes kswapd on every node of the list
(wake_all_kswapds), retries against MIN, then, if the caller may reclaim, runs direct reclaim
in the allocating task (__alloc_pages_direct_reclaim → try_to_free_pages) and retries, up to
MAX_RECLAIM_RETRIES attempts without progress (should_reclaim_retry). Only then does the
allocation fail (__alloc_pages_may_oom; the model raises OutOfMemory naming what was tried
instead of killing a task). Compaction is not modelled: a THP allocation never reclaims
(docs/fidelity.md).
"""

from __future__ import annotations

import numpy as np

from ..arrays import unique
from ..errors import OutOfMemory
from .constants import ZONE_NAMES
from .physmem import WMARK_LOW, WMARK_MIN

MAX_RECLAIM_RETRIES = 16


def get_page_from_freelist(kernel, need: int, order: int, nodes, mark: int, heads, nids) -> int:
    """One watermark pass over the nodes in order; appends what it takes. Returns pages still
    needed."""
    pm = kernel.pm
    nr = 1 << order
    for nid in nodes:
        if need == 0:
            break
        can = pm.allowance(nid, mark) // nr
        got = pm.alloc(nid, min(need, can), order) if can > 0 else np.empty(0, np.int64)
        if got.size:
            heads.append(got)
            nids.append(np.full(got.size, nid, dtype=np.int64))
            need -= got.size
    return need


def wake_all_kswapds(kernel, nodes, order: int) -> None:
    """wake_all_kswapds(): wakeup_kswapd() on every node of the allocation's zonelist."""
    for nid in dict.fromkeys(nodes):
        kernel.wakeup_kswapd(nid, order)


def alloc_pages(kernel, count: int, order: int, nodes: list[int], local_nid: int,
                *, strict: bool = True, marks=(WMARK_LOW, WMARK_MIN), wake_kswapd: bool = True,
                direct_reclaim: bool | None = None):
    """Allocate ``count`` folios of 2^order pages trying ``nodes`` in order.

    ``marks`` are the watermark passes (the fast path's LOW, then the slow path's MIN; a
    migration target passes its one mark); ``wake_kswapd`` (__GFP_KSWAPD_RECLAIM) wakes kswapd
    on every node once the first pass falls short; ``direct_reclaim`` (__GFP_DIRECT_RECLAIM,
    default: for order-0 allocations of the normal two passes) reclaims in the caller's
    context before giving up. Returns (heads, nids) in allocation order. With ``strict`` a
    shortfall frees what was taken and raises OutOfMemory (a failed fault leaves no state
    behind); otherwise it returns fewer.
    """
    nr = 1 << order
    heads, nids = [], []
    need = count
    if direct_reclaim is None:
        direct_reclaim = order == 0 and tuple(marks) == (WMARK_LOW, WMARK_MIN)
    tried = []
    for pass_no, mark in enumerate(marks):
        need = get_page_from_freelist(kernel, need, order, nodes, mark, heads, nids)
        if need and pass_no == 0 and wake_kswapd:
            wake_all_kswapds(kernel, nodes, order)       # __alloc_pages_slowpath
            tried.append("kswapd woken")
    if need and direct_reclaim and nodes:
        need = _direct_reclaim_retries(kernel, need, order, nodes, marks[-1], heads, nids, tried)
    heads = np.concatenate(heads) if heads else np.empty(0, np.int64)
    nids = np.concatenate(nids) if nids else np.empty(0, np.int64)
    if need and strict:
        kernel.pm.free(heads)
        raise OutOfMemory(_oom_message(kernel, count, need, order, nodes, tried))
    _count_alloc(kernel, heads, nids, nodes[0] if nodes else -1, local_nid, nr)
    return heads, nids


def _direct_reclaim_retries(kernel, need, order, nodes, mark, heads, nids, tried) -> int:
    """__alloc_pages_direct_reclaim() + should_reclaim_retry(): reclaim and retry the MIN
    pass until the allocation succeeds or MAX_RECLAIM_RETRIES attempts made no progress."""
    from .reclaim import try_to_free_pages

    no_progress = attempts = total = 0
    debug, kernel.debug = kernel.debug, False   # pages taken so far are not set up yet
    try:
        while need and no_progress < MAX_RECLAIM_RETRIES:
            progress = try_to_free_pages(kernel, nodes, order, need << order)
            attempts += 1
            total += progress
            need = get_page_from_freelist(kernel, need, order, nodes, mark, heads, nids)
            no_progress = 0 if progress else no_progress + 1
    finally:
        kernel.debug = debug
    tried.append(f"direct reclaim: {attempts} attempt(s) reclaimed {total} page(s)")
    return need


def _oom_message(kernel, count, need, order, nodes, tried) -> str:
    """The one-line OutOfMemory error: the request, the nodes and their free pages against
    MIN, and every fallback tried (kswapd, direct reclaim, demotion, swap)."""
    from .evict import can_demote

    pm = kernel.pm
    kind = "THP" if order else "page"
    free = ", ".join(f"node {n}: {int(pm.node_free[n])} free / min "
                     f"{int(pm.watermarks[n, WMARK_MIN])}" for n in dict.fromkeys(nodes))
    demote = [n for n in dict.fromkeys(nodes) if can_demote(kernel, n)]
    sw = kernel.swap
    what = list(tried) or ["no reclaim (the allocation may not reclaim)"]
    what.append(f"demotion from nodes {demote}" if demote else
                "no demotion (numa/demotion_enabled off or no lower tier)")
    what.append(f"swap {sw.nr_free()} of {sw.total_pages()} slot(s) free" if sw.total_pages()
                else "no swap device")
    return (f"out of memory: cannot allocate {count} {kind}(s) of order {order} on nodes "
            f"{list(nodes)} ({need} short; {free}); tried: {'; '.join(what)}")


def _count_alloc(kernel, heads, nids, preferred: int, local_nid: int, nr: int) -> None:
    """zone_statistics() and the pgalloc_<zone> counter for a batch of allocations."""
    if heads.size == 0:
        return
    vm, pm = kernel.vmstat, kernel.pm
    if nids[0] == nids[-1] and (nids == nids[0]).all():   # one node (no sort needed)
        per_node = [(int(nids[0]), nids.size)]
    else:
        per_node = [(nid, int((nids == nid).sum())) for nid in unique(nids)]
    for nid, n in per_node:
        zone = ZONE_NAMES[pm.node_zone[nid]].lower()
        vm.count(f"pgalloc_{zone}", nid, n * nr)
        # numa_* count allocations, pgalloc_* count pages (zone_statistics vs PGALLOC)
        if nid == preferred:
            vm.count("numa_hit", nid, n)
        else:
            vm.count("numa_miss", nid, n)
            vm.count("numa_foreign", preferred, n)
        vm.count("numa_local" if nid == local_nid else "numa_other", nid, n)


def alloc_pages_mpol(kernel, policy, count: int, order: int, local_nid: int, ilx=None,
                     *, strict: bool = True):
    """alloc_pages_mpol(): allocate ``count`` folios of 2^order pages under ``policy`` for a
    task on ``local_nid``; ``ilx`` is each folio's interleave index (mempolicy.interleave_index),
    needed by the interleave modes only. Returns (heads, ok): ``ok`` marks the requests that
    got a folio and ``heads`` holds their folios in request order (with ``strict`` every one,
    or OutOfMemory with nothing taken).

    A policy with one node order (default, local, preferred, bind) is one alloc_pages() call.
    Interleave and weighted interleave start each folio at its own node
    (interleave_nid/weighted_interleave_nid, fallback along that node's zonelist, no mask) and
    count numa_interleave where it landed there; the model allocates the folios of each
    target node together, in the order the targets first appear (docs/fidelity.md: under a
    shortage the fallbacks of different targets interleave differently from the kernel's
    one-by-one faults). preferred-many tries its mask without direct reclaim, then anywhere
    (alloc_pages_preferred_many)."""
    from .mempolicy import INTERLEAVE_MODES, interleave_targets, policy_nodes, zonelist

    distance = kernel.machine.distance
    mode = policy.mode
    if mode not in INTERLEAVE_MODES and mode != "preferred-many":
        heads, _ = alloc_pages(kernel, count, order, policy_nodes(policy, distance, local_nid),
                               local_nid, strict=strict)
        return heads, np.arange(count) < heads.size
    if mode == "preferred-many":
        mask_order = [n for n in zonelist(distance, local_nid) if n in policy.nodes]
        first, _ = alloc_pages(kernel, count, order, mask_order, local_nid, strict=False,
                               direct_reclaim=False)
        try:
            rest, _ = alloc_pages(kernel, count - first.size, order,
                                  zonelist(distance, local_nid), local_nid, strict=strict)
        except OutOfMemory:
            kernel.pm.free(first)
            raise
        heads = np.concatenate([first, rest])
        return heads, np.arange(count) < heads.size
    targets = interleave_targets(policy, ilx, kernel.sysfs)
    out = np.full(count, -1, np.int64)
    taken = []
    try:
        uniq, first_at = np.unique(targets, return_index=True)
        for nid in uniq[np.argsort(first_at, kind="stable")]:
            sel = np.flatnonzero(targets == nid)
            heads, nids = alloc_pages(kernel, sel.size, order, zonelist(distance, int(nid)),
                                      local_nid, strict=strict)
            taken.append(heads)
            out[sel[:heads.size]] = heads
            kernel.vmstat.count("numa_interleave", int(nid), int((nids == nid).sum()))
    except OutOfMemory:
        for heads in taken:
            kernel.pm.free(heads)
        raise
    ok = out >= 0
    return out[ok], ok
