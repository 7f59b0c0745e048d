"""The model's invariants (DESIGN §9, mglru-spec §2.6), checked with whole-array operations.

- page conservation: every pfn is free (all state zero), reserved, or part of exactly one folio;
  allocator counts match the flags;
- compound integrity: heads are 512-aligned order-9 folios whose tails point back to them;
- ownership: an anon folio belongs to a live mm slot, a file folio sits in its file's page cache;
- rmap and page tables agree: each PTE/PMD leaf maps the page whose identity (mapping, index)
  is that address, and every page's mapcount equals the entries that map it;
- no anon folio is left without a mapping (it would be leaked);
- THP leaves cover whole 2 MiB ranges inside VMAs and hide no PTEs;
- MGLRU: 2 <= max_seq - min_seq + 1 <= 4, every folio is on a live generation with PG_lru and
  without PG_active, and nr_pages per (gen, type, zone) equals the folios in it;
- data identity: every page carries a content tag; an anon page mapped at a slot carries the
  tag the program's data there has (PageTable.content), a page-cache page its file offset's
  tag, and every swap entry points at a used slot owned by that mm and slot holding that tag
  (so migration, swap-out and swap-in keep the data); used swap slots are exactly the ones
  PTEs or swap-cache folios point at;
- the swap cache: each cached slot's folio is an order-0 anon folio with PG_swapcache whose
  folio->swap is that slot, with the slot's owner, index and content tag; it is unmapped while
  the owner's PTE holds the swap entry, else that PTE maps it; no other folio has
  PG_swapcache.
"""

from __future__ import annotations

import numpy as np

from ..arrays import unique
from ..errors import InvariantError
from .constants import (
    HPAGE_PMD_NR, HPAGE_PMD_ORDER, MAX_NR_GENS, MAX_NR_ZONES, PG_active, PG_allocated, PG_anon,
    PG_head, PG_lru, PG_reserved, PG_swapcache, PG_tail, PG_unevictable, PTRS_PER_PTE,
    _PAGE_SPECIAL,
)
from .lru_gen import folio_lru_gen, folio_type
from .pagetable import pte_pfn, pte_present
from .physmem import BLOCK


def _fail(what: str, where=None) -> None:
    loc = ""
    if where is not None and np.size(where):
        loc = f" (first at pfn/slot {int(np.atleast_1d(where)[0])})"
    raise InvariantError(f"invariant broken: {what}{loc}")


def check_kernel(k) -> None:
    pm = k.pm
    alloc = (pm.flags & PG_allocated) != 0
    _check_allocator(pm, alloc)
    _check_compound(pm, alloc)
    user = alloc & ((pm.flags & PG_reserved) == 0)
    heads = np.flatnonzero(user & ((pm.flags & PG_tail) == 0))
    _check_ownership(k, heads)
    _check_mappings(k, user)
    _check_lru(k, heads)
    _check_memcg_charges(k, heads)
    _check_content(k, user, heads)
    index = getattr(pm, "lru_index", None)
    if index:
        index.check(_fail)


def _check_allocator(pm, alloc) -> None:
    used_per_block = alloc.reshape(-1, BLOCK).sum(axis=1)
    bad = np.flatnonzero(pm.block_free != BLOCK - used_per_block)
    if bad.size:
        _fail("block free count disagrees with the allocated flags", bad * BLOCK)
    for nid in range(pm.nr_nodes):
        lo, hi = pm.node_range(nid)
        if pm.node_free[nid] != int((~alloc[lo:hi]).sum()):
            _fail(f"node {nid} free count {pm.node_free[nid]} != free pfns")
    free = ~alloc
    dirty = free & ((pm.flags != 0) | (pm.order != 0) | (pm.mapcount != 0) |
                    (pm.lru_gen_refs != 0) | (pm.mapping != 0) | (pm.list_gen != 0))
    if dirty.any():
        _fail("a free pfn carries folio state", np.flatnonzero(dirty))


def _check_compound(pm, alloc) -> None:
    heads = np.flatnonzero(pm.flags & PG_head)
    if (pm.order[heads] != HPAGE_PMD_ORDER).any() or (heads % HPAGE_PMD_NR).any():
        _fail("a compound head is not an aligned order-9 folio", heads)
    tails = np.flatnonzero(pm.flags & PG_tail)
    want = (heads[:, None] + np.arange(1, HPAGE_PMD_NR)).ravel()
    if tails.size != want.size or (np.sort(tails) != np.sort(want)).any():
        _fail("tail pages do not match their heads", tails)
    if (pm.order[tails] != HPAGE_PMD_ORDER).any():
        _fail("a tail page's order differs from its head's", tails)
    small = alloc & ((pm.flags & (PG_head | PG_tail)) == 0)
    if (pm.order[small] != 0).any():
        _fail("an order>0 page without head/tail flags", np.flatnonzero(small & (pm.order != 0)))


def _check_ownership(k, heads) -> None:
    pm = k.pm
    anon = (pm.flags[heads] & PG_anon) != 0
    owners = pm.mapping[heads[anon]]
    live = np.isin(owners, np.fromiter(k.mms.keys(), dtype=np.int64, count=len(k.mms)))
    if not live.all():
        _fail("an anon folio belongs to no live mm", heads[anon][~live])
    fheads = heads[~anon]
    cached = np.zeros(fheads.size, bool)
    for fid, f in k.files.items():
        sel = pm.mapping[fheads] == fid
        idx = pm.index[fheads[sel]].astype(np.int64)
        ok = (idx < f.size_pages)
        ok[ok] = f.pages[idx[ok]] == fheads[sel][ok]
        cached[np.flatnonzero(sel)[ok]] = True
        entries = np.flatnonzero(f.pages >= 0)
        back = f.pages[entries]
        if ((pm.mapping[back] != fid) | (pm.index[back] != entries)).any():
            _fail(f"page cache of file {fid} points at a page of another identity", back)
    if not cached.all():
        _fail("a file folio is not in its file's page cache", fheads[~cached])


def _check_mappings(k, user) -> None:
    pm = k.pm
    expected = np.zeros(pm.nr_pfns, dtype=np.int64)
    reserved = {k.zero_pfn, k.huge_zero_pfn}
    for mm in k.mms.values():
        pt = mm.pt
        covered = np.zeros(pt.pte.size, bool)
        owner = np.full(pt.pte.size, -1, dtype=np.int64)
        for vi, v in enumerate(mm.vmas):
            covered[v.start_slot:v.end_slot] = True
            owner[v.start_slot:v.end_slot] = vi
        slots = np.flatnonzero(pte_present(pt.pte))
        if (~covered[slots]).any():
            _fail(f"mm {mm.id}: a PTE outside every VMA", slots[~covered[slots]])
        e = pt.pte[slots]
        real = (e & _PAGE_SPECIAL) == 0
        special_pfns = pte_pfn(e[~real])
        if (special_pfns != k.zero_pfn).any():
            _fail(f"mm {mm.id}: a special PTE that is not the zero page", slots[~real])
        slots, pfns = slots[real], pte_pfn(e[real])
        if (~user[pfns]).any():
            _fail(f"mm {mm.id}: a PTE maps a free or reserved pfn", slots[~user[pfns]])
        np.add.at(expected, pfns, 1)
        _check_identity(k, mm, owner, slots, pfns)
        _check_pmds(k, mm, covered, owner, expected, reserved, user)
    bad = np.flatnonzero(user & (expected != pm.mapcount))
    if bad.size:
        _fail(f"mapcount {pm.mapcount[bad[0]]} != {expected[bad[0]]} mappings", bad)
    heads = np.flatnonzero(user & ((pm.flags & PG_tail) == 0) & ((pm.flags & PG_anon) != 0))
    nr = pm.folio_nr_pages(heads)
    if heads.size:
        total = np.add.reduceat(expected[pm.folio_pfns(heads)],
                                np.concatenate([[0], np.cumsum(nr)[:-1]]))
        lost = (total == 0) & ((pm.flags[heads] & PG_swapcache) == 0)  # read ahead: kept
        if lost.any():
            _fail("an anon folio with no mapping was not freed", heads[lost])


def _check_identity(k, mm, owner, slots, pfns) -> None:
    """A PTE maps the page whose identity is its address: (mm, slot) for anon pages,
    (file, offset) for page-cache pages."""
    pm = k.pm
    anon = (pm.flags[pfns] & PG_anon) != 0
    bad = anon & ((pm.mapping[pfns] != mm.id) | (pm.index[pfns] != slots))
    if bad.any():
        _fail(f"mm {mm.id}: an anon PTE maps a page of another identity", slots[bad])
    for vi in unique(owner[slots[~anon]]):
        v = mm.vmas[vi]
        sel = ~anon & (owner[slots] == vi)
        want = v.pgoff + slots[sel] - v.start_slot
        if v.file is None or ((pm.mapping[pfns[sel]] != v.file.id) |
                              (pm.index[pfns[sel]] != want)).any():
            _fail(f"mm {mm.id}: a file PTE maps the wrong page-cache page", slots[sel])


def _check_pmds(k, mm, covered, owner, expected, reserved, user) -> None:
    pt, pm = mm.pt, k.pm
    pmds = np.arange(pt.pmd.size)
    cov = covered.reshape(-1, PTRS_PER_PTE)
    present = pt.pmd != 0
    if (present & ~cov.any(axis=1)).any():
        _fail(f"mm {mm.id}: a PMD entry outside every VMA", pmds[present & ~cov.any(axis=1)])
    leaf = pmds[pt.pmd_is_leaf(pmds)]
    if leaf.size == 0:
        return
    own = owner.reshape(-1, PTRS_PER_PTE)[leaf]
    if (~cov[leaf].all(axis=1) | (own != own[:, :1]).any(axis=1)).any():
        _fail(f"mm {mm.id}: a THP leaf does not sit inside one VMA", leaf)
    if (pt.pte.reshape(-1, PTRS_PER_PTE)[leaf] != 0).any():
        _fail(f"mm {mm.id}: PTEs hidden under a THP leaf", leaf)
    heads = pte_pfn(pt.pmd[leaf])
    real = ~np.isin(heads, list(reserved))
    if ((pt.pmd[leaf[~real]] & _PAGE_SPECIAL) == 0).any() or (heads[~real] != k.huge_zero_pfn).any():
        _fail(f"mm {mm.id}: a reserved page mapped by a non-special PMD", leaf[~real])
    heads, leaf = heads[real], leaf[real]
    if (~user[heads]).any() or ((pm.flags[heads] & PG_head) == 0).any():
        _fail(f"mm {mm.id}: a PMD leaf does not map a THP head", leaf)
    bad = (pm.mapping[heads] != mm.id) | (pm.index[heads] != (leaf << 9))
    if bad.any():
        _fail(f"mm {mm.id}: a PMD leaf maps a THP of another identity", leaf[bad])
    np.add.at(expected, heads, 1)


def _check_lru(k, heads) -> None:
    from .classic_lru import lru_gen_enabled

    if not lru_gen_enabled(k):
        _check_classic_lru(k, heads)
        return
    pm = k.pm
    evictable = heads[(pm.flags[heads] & PG_unevictable) == 0]
    gens = folio_lru_gen(pm, evictable)
    if (gens < 0).any():
        _fail("a folio is off the LRU outside any operation", evictable[gens < 0])
    flags = pm.flags[evictable]
    if ((flags & PG_lru) == 0).any() or ((flags & PG_active) != 0).any():
        _fail("a folio on an MGLRU list lacks PG_lru or has PG_active", evictable)
    memcgs = pm.memcg[evictable].astype(np.int64)
    nids = pm.node_of(evictable)
    types, zones = folio_type(pm, evictable), pm.zone_of(evictable)
    nr = pm.folio_nr_pages(evictable)
    for (mid, nid), lv in k._lruvecs.items():
        g = lv.lrugen
        for t in (0, 1):
            n = g.max_seq - g.min_seq[t] + 1
            if not 2 <= n <= MAX_NR_GENS:
                _fail(f"{lv!r}: max_seq {g.max_seq} - min_seq[{t}] {g.min_seq[t]} + 1 = {n}")
        sel = (memcgs == mid) & (nids == nid)
        live = np.zeros((2, MAX_NR_GENS), bool)
        for t in (0, 1):
            for seq in range(g.min_seq[t], g.max_seq + 1):
                live[t, seq % MAX_NR_GENS] = True
        dead = sel & ~live[types, np.maximum(gens, 0)]
        if dead.any():
            _fail(f"{lv!r}: a folio sits in a generation outside [min_seq, max_seq]",
                  evictable[dead])
        counted = np.zeros((MAX_NR_GENS, 2, MAX_NR_ZONES), np.int64)
        np.add.at(counted, (gens[sel], types[sel], zones[sel]), nr[sel])
        if (counted != g.nr_pages).any():
            _fail(f"{lv!r}: nr_pages {g.nr_pages.tolist()} != folios per gen {counted.tolist()}")
    known = np.fromiter(k.memcgs.by_id.keys(), dtype=np.int64)
    if (~np.isin(memcgs, known)).any():
        _fail("a folio is charged to an unknown memcg", evictable[~np.isin(memcgs, known)])


def _check_memcg_charges(k, heads) -> None:
    """Every memcg's page counter equals the pages of the folios pointing at it (folios never
    charged, raw allocations without a memcg, are not counted)."""
    from .memcontrol import charged, memcg_charged

    pm = k.pm
    heads = heads[charged(k, pm.memcg[heads])]
    counted = np.bincount(pm.memcg[heads].astype(np.int64), weights=pm.folio_nr_pages(heads),
                          minlength=memcg_charged(k).size).astype(np.int64)
    bad = np.flatnonzero(counted != memcg_charged(k))
    if bad.size:
        _fail(f"memcg page counters {memcg_charged(k)[bad].tolist()} != pages charged "
              f"{counted[bad].tolist()} for memcg ids {bad.tolist()}")


def _check_content(k, user, heads) -> None:
    from .swap import is_swap_pte, pte_to_swp_offset

    pm = k.pm
    if (pm.content[user] == 0).any():
        _fail("a page without a content tag", np.flatnonzero(user & (pm.content == 0)))
    for fid, f in k.files.items():
        entries = np.flatnonzero(f.pages >= 0)
        bad = pm.content[f.pages[entries]] != f.content[entries]
        if bad.any():
            _fail(f"file {fid}: a page-cache page lost its offset's data", f.pages[entries][bad])
    sw = k.swap
    referenced = np.zeros(sw.nr_slots, bool)
    for mm in k.mms.values():
        pt = mm.pt
        pfns = pt.translate_slots(np.arange(pt.pte.size))
        mapped = np.flatnonzero(pfns >= 0)
        p = pfns[mapped]
        anon = ((pm.flags[p] & PG_anon) != 0) & ~k.is_zero_pfn(p)
        bad = pm.content[p[anon]] != pt.content[mapped[anon]]
        if bad.any():
            _fail(f"mm {mm.id}: an anon page does not hold the data of its slot",
                  mapped[anon][bad])
        slots = np.flatnonzero(is_swap_pte(pt.pte))
        if slots.size == 0:
            continue
        offs = pte_to_swp_offset(pt.pte[slots])
        if ((offs < 0) | (offs >= sw.nr_slots)).any():
            _fail(f"mm {mm.id}: a swap entry outside the swap area", slots)
        if (~sw.used[offs]).any() or (sw.owner[offs] != mm.id).any() or \
                (sw.index[offs] != slots).any():
            _fail(f"mm {mm.id}: a swap entry points at a slot of another page", slots)
        if (sw.content[offs] != pt.content[slots]).any():
            _fail(f"mm {mm.id}: a swapped-out page lost its data", slots)
        if referenced[offs].any():
            _fail(f"mm {mm.id}: two swap entries share a slot", slots)
        referenced[offs] = True
    _check_swap_cache(k, user, referenced)
    leaked = sw.used & ~referenced & (sw.cache < 0)
    if leaked.any():
        _fail("a used swap slot no PTE or swap-cache folio points at (leaked)",
              np.flatnonzero(leaked))
    if sw.nr_free() != int((~sw.used).sum()):
        _fail("the swap area's free count disagrees with its slots")


def _check_swap_cache(k, user, swap_entry) -> None:
    """The swap cache (mm/swap.py) against the folios and the page tables; ``swap_entry``
    marks the slots a swap PTE points at."""
    from .pagetable import pte_pfn, pte_present

    pm, sw = k.pm, k.swap
    offs = np.flatnonzero(sw.cache >= 0)
    flagged = np.flatnonzero(user & ((pm.flags & PG_swapcache) != 0))
    if offs.size == 0 and flagged.size == 0:
        return
    pfns = sw.cache[offs]
    if (~sw.used[offs]).any():
        _fail("a free swap slot has a swap-cache folio", offs[~sw.used[offs]])
    if (~user[pfns]).any() or (pm.order[pfns] != 0).any() or \
            ((pm.flags[pfns] & (PG_swapcache | PG_anon)) != (PG_swapcache | PG_anon)).any():
        _fail("a swap-cache slot points at a page that is not an order-0 anon swap-cache "
              "folio", pfns)
    if (sw.slot_of[pfns] != offs).any() or flagged.size != offs.size:
        _fail("folio->swap and the swap cache disagree", flagged)
    if ((pm.mapping[pfns] != sw.owner[offs]) | (pm.index[pfns] != sw.index[offs])).any():
        _fail("a swap-cache folio is not the page its slot belongs to", pfns)
    if (pm.content[pfns] != sw.content[offs]).any():
        _fail("a swap-cache folio does not hold its slot's data", pfns)
    for mid in np.unique(sw.owner[offs]).tolist():
        sel = sw.owner[offs] == mid
        pte = k.mms[mid].pt.pte[sw.index[offs[sel]]]
        unmapped = swap_entry[offs[sel]]
        if (pm.mapcount[pfns[sel]][unmapped] != 0).any():
            _fail("a swap-cache folio is mapped while its PTE holds the swap entry",
                  pfns[sel][unmapped])
        mapped = ~unmapped
        if (~pte_present(pte[mapped]) | (pte_pfn(pte[mapped]) != pfns[sel][mapped])).any():
            _fail("a swapped-in swap-cache folio is not mapped at its slot", pfns[sel][mapped])


def _check_classic_lru(k, heads) -> None:
    """The classic lists (mm/classic_lru.py): every evictable folio is on one (PG_lru, no
    MGLRU generation or list), each lruvec's lru_size matches its folios, and the MGLRU
    generations are empty."""
    from .classic_lru import NR_EVICTABLE_LRU, folio_lru_list, lru_sizes, on_classic_list

    pm = k.pm
    evictable = heads[(pm.flags[heads] & PG_unevictable) == 0]
    off = ~on_classic_list(pm, evictable)
    if off.any():
        _fail("a folio is off the classic LRU outside any operation", evictable[off])
    memcgs = pm.memcg[evictable].astype(np.int64)
    nids = pm.node_of(evictable)
    lists = folio_lru_list(pm, evictable)
    nr = pm.folio_nr_pages(evictable)
    for (mid, nid), lv in k._lruvecs.items():
        sel = (memcgs == mid) & (nids == nid)
        counted = np.bincount(lists[sel], weights=nr[sel], minlength=NR_EVICTABLE_LRU)
        if (counted.astype(np.int64) != lru_sizes(lv)).any():
            _fail(f"{lv!r}: lru_size {lru_sizes(lv).tolist()} != folios per list "
                  f"{counted.astype(np.int64).tolist()}")
        if lv.lrugen.nr_pages.any():
            _fail(f"{lv!r}: MGLRU generations hold pages under the classic LRU")
    known = np.fromiter(k.memcgs.by_id.keys(), dtype=np.int64)
    if (~np.isin(memcgs, known)).any():
        _fail("a folio is charged to an unknown memcg", evictable[~np.isin(memcgs, known)])
