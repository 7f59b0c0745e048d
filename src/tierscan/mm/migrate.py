"""Folio migration between nodes (mm/migrate.c): the mechanism under move_pages, mbind and
every promotion engine.

A migration isolates the folio (lru_gen_del_folio, which sets PG_active when it leaves an active
generation), copies its state to a folio on the target node, rewrites every mapping through the
rmap keeping the young and dirty bits (remove_migration_pte), frees the old folio and puts the new
one back on the target node's lruvec.
"""

from __future__ import annotations

import numpy as np

from .constants import HPAGE_PMD_ORDER, PG_anon
from .pagetable import mk_pte
from .physmem import WMARK_MIN
from .rmap import rmap_walk

_COPIED = ("flags", "lru_gen_refs", "memcg", "mapcount", "mapping", "index")


def _notify_remap(kernel, sites, old_pfns, src_nid, dst_nid) -> None:
    """Tell the remap hooks which page slots of which mm now live on ``dst_nid``."""
    if not kernel.remap_hooks:
        return
    if sites.pmd:  # the PMD site is found once per page of the THP: each is its own page
        slots = (sites.slots << 9) + (old_pfns[sites.pos] & 511)
    else:
        slots = sites.slots
    for hook in kernel.remap_hooks:
        hook(sites.mm, slots, src_nid[sites.pos], dst_nid)


def migrate_folios(kernel, heads, target_nid: int, mark: int = WMARK_MIN) -> np.ndarray:
    """migrate_pages() of the given folios to ``target_nid``. Returns a success mask.

    A folio fails when the target node has no room above ``mark`` for a folio of its order.
    """
    pm, vm = kernel.pm, kernel.vmstat
    heads = np.asarray(heads, dtype=np.int64)
    ok = np.zeros(heads.size, bool)
    orders = pm.order[heads]
    for order in np.unique(orders):
        idx = np.flatnonzero(orders == order)
        new, _ = _alloc_on(kernel, idx.size, int(order), target_nid, mark)
        moved = idx[: new.size]
        if new.size:
            mms = move_folios(kernel, heads[moved], new)
            ok[moved] = True
            if kernel.accounting is not None:
                kernel.accounting.migrated(int(order), new.size, mms)
        nr, failed = 1 << int(order), idx.size - new.size
        vm.count("pgmigrate_success", target_nid, new.size * nr)
        vm.count("pgmigrate_fail", target_nid, failed * nr)
        if order == HPAGE_PMD_ORDER:
            vm.count("thp_migration_success", target_nid, new.size)
            vm.count("thp_migration_fail", target_nid, failed)
    return ok


def _alloc_on(kernel, count, order, nid, mark):
    from .page_alloc import alloc_pages

    return alloc_pages(kernel, count, order, [nid], nid, strict=False, marks=(mark,))


def move_folios(kernel, old, new) -> set:
    """Move folios ``old`` to the already allocated folios ``new`` of the same orders.
    Returns the mms whose page tables changed (their TLBs need a shootdown)."""
    pm = kernel.pm
    kernel.lru_del(old)
    old_p, new_p = pm.folio_pfns(old), pm.folio_pfns(new)
    for name in _COPIED:
        arr = getattr(pm, name)
        arr[new_p] = arr[old_p]
    src_nid, dst_nid = kernel.node_of(old_p), int(kernel.node_of(new_p[:1])[0])
    mms = set()
    for s in rmap_walk(kernel, old_p):
        _notify_remap(kernel, s, old_p, src_nid, dst_nid)
        mms.add(s.mm)
        table = s.mm.pt.pmd if s.pmd else s.mm.pt.pte
        target = new_p[s.pos] & ~np.int64(511) if s.pmd else new_p[s.pos]  # a PMD maps the head
        table[s.slots] = mk_pte(target, 0) | (table[s.slots] & np.uint64(0xFFF))
    cached = new[(pm.flags[new] & PG_anon) == 0]
    for fid in np.unique(pm.mapping[cached]):
        sel = cached[pm.mapping[cached] == fid]
        kernel.files[int(fid)].pages[pm.index[sel].astype(np.int64)] = sel
    kernel.free_pages(old)
    kernel.lru_add(new)
    return mms
