"""The page allocator's node fallback and watermark passes (mm/page_alloc.c).

The fast path takes pages from the first node in the policy's order that stays above its LOW
watermark; when every node is below LOW, kswapd is woken on them and the slow path retries
against MIN (reclaim and compaction are not modelled here; docs/fidelity.md).
"""

from __future__ import annotations

import numpy as np

from ..arrays import unique
from ..errors import OutOfMemory
from .constants import ZONE_NAMES
from .physmem import WMARK_LOW, WMARK_MIN


def alloc_pages(kernel, count: int, order: int, nodes: list[int], local_nid: int,
                *, strict: bool = True, marks=(WMARK_LOW, WMARK_MIN)):
    """Allocate ``count`` folios of 2^order pages trying ``nodes`` in order.

    Returns (heads, nids) in allocation order. With ``strict`` a shortfall frees what was taken
    and raises OutOfMemory, so a failed fault leaves no state behind; otherwise it returns fewer.
    """
    pm = kernel.pm
    nr = 1 << order
    heads, nids = [], []
    need = count
    for pass_no, mark in enumerate(marks):
        for nid in nodes:
            if need == 0:
                break
            can = pm.allowance(nid, mark) // nr
            if can < need and pass_no == 0:
                kernel.wakeup_kswapd(nid)
            got = pm.alloc(nid, min(need, can), order) if can > 0 else np.empty(0, np.int64)
            if got.size:
                heads.append(got)
                nids.append(np.full(got.size, nid, dtype=np.int64))
                need -= got.size
    heads = np.concatenate(heads) if heads else np.empty(0, np.int64)
    nids = np.concatenate(nids) if nids else np.empty(0, np.int64)
    if need and strict:
        pm.free(heads)
        kind = "THP" if order else "page"
        raise OutOfMemory(f"out of memory: cannot allocate {count} {kind}(s) on nodes {nodes} "
                          f"({need} short)")
    _count_alloc(kernel, heads, nids, nodes[0] if nodes else -1, local_nid, nr)
    return heads, nids


def _count_alloc(kernel, heads, nids, preferred: int, local_nid: int, nr: int) -> None:
    """zone_statistics() and the pgalloc_<zone> counter for a batch of allocations."""
    if heads.size == 0:
        return
    vm, pm = kernel.vmstat, kernel.pm
    for nid in unique(nids):
        n = int((nids == nid).sum())
        zone = ZONE_NAMES[pm.node_zone[nid]].lower()
        vm.count(f"pgalloc_{zone}", nid, n * nr)
        # numa_* count allocations, pgalloc_* count pages (zone_statistics vs PGALLOC)
        if nid == preferred:
            vm.count("numa_hit", nid, n)
        else:
            vm.count("numa_miss", nid, n)
            vm.count("numa_foreign", preferred, n)
        vm.count("numa_local" if nid == local_nid else "numa_other", nid, n)
