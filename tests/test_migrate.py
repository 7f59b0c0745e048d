"""Migration: move_pages(2) status codes, THP migration, and what a migrated page keeps
(PTE bits, identity, rmap, LRU accounting)."""

import errno

import numpy as np
from conftest import (
    ACCESSED, ANON, DIRTY, FILE, HPAGE, HPAGE_NR, PAGE, RW, ZONE_MOVABLE, ZONE_NORMAL, addrs,
    make_kernel, page_addrs,
)

from tierscan.mm.constants import PG_active, PG_dirty, PG_lru
from tierscan.mm.migrate import migrate_folios
from tierscan.mm.pagetable import PageTable
from tierscan.mm.physmem import WMARK_MIN


def pte(mm, addr) -> int:
    return int(mm.pt.pte[PageTable.slot(addr)])


def test_move_pages_status_codes(kernel, mm):
    vma = mm.mmap(8 * PAGE)
    mm.access(addrs(vma.start), True)                    # a private page on node 0
    mm.access(addrs(vma.start + PAGE), False)            # the zero page
    f = kernel.open_file("shared", 4 * PAGE)
    other = kernel.spawn("other")
    fa = mm.mmap(4 * PAGE, kind="file", file=f)
    fb = other.mmap(4 * PAGE, kind="file", file=f)
    mm.access(addrs(fa.start), False)
    other.access(addrs(fb.start), False)                 # the same cache page in two mms
    unmapped = vma.end + 64 * PAGE
    status = mm.move_pages(addrs(vma.start,              # -> node 1
                                 unmapped,               # no VMA
                                 vma.start + 2 * PAGE,   # in a VMA, never faulted
                                 vma.start + PAGE,       # zero page
                                 fa.start,               # mapped by two mms
                                 vma.start),             # bad node
                           [1, 1, 1, 1, 1, 5])
    assert status.tolist() == [1, -errno.EFAULT, -errno.ENOENT, -errno.ENOENT, -errno.EACCES,
                               -errno.ENODEV]
    assert kernel.node_of(mm.translate(addrs(vma.start))).tolist() == [1]
    assert kernel.vmstat["pgmigrate_success"] == 1
    # the shared page stayed put
    assert kernel.node_of(mm.translate(addrs(fa.start))).tolist() == [0]


def test_move_pages_negative_node_and_already_there(kernel, mm):
    vma = mm.mmap(4 * PAGE, populate=True)
    pfns = mm.translate(page_addrs(vma.start, 2))
    status = mm.move_pages(page_addrs(vma.start, 2), [-1, 0])
    # -1 is no node; a page already on its target reports that node and is not moved
    assert status.tolist() == [-errno.ENODEV, 0]
    assert (mm.translate(page_addrs(vma.start, 2)) == pfns).all()
    assert kernel.vmstat["pgmigrate_success"] == 0


def test_move_pages_scalar_node_broadcasts(kernel, mm):
    vma = mm.mmap(4 * PAGE, populate=True)
    status = mm.move_pages(page_addrs(vma.start, 4), 1)
    assert status.tolist() == [1, 1, 1, 1]
    assert kernel.vmstat.node("pgmigrate_success").tolist() == [0, 4]


def test_move_pages_thp_moves_whole(kernel, mm):
    vma = mm.mmap(HPAGE, thp=True)
    mm.access(addrs(vma.start), True)
    old = int(mm.translate(addrs(vma.start))[0])
    free0 = kernel.pm.node_free.copy()
    # two addresses inside the same THP: the folio is migrated once
    status = mm.move_pages(addrs(vma.start + 7 * PAGE, vma.start + 300 * PAGE), [1, 1])
    assert status.tolist() == [1, 1]
    new = int(mm.translate(addrs(vma.start))[0])
    assert kernel.node_of([new]).tolist() == [1]
    assert new % HPAGE_NR == 0 and kernel.pm.order[new] == 9
    assert (mm.translate(page_addrs(vma.start, HPAGE_NR)) == new + np.arange(HPAGE_NR)).all()
    assert kernel.vmstat["thp_migration_success"] == 1
    assert kernel.vmstat["pgmigrate_success"] == 512
    assert (kernel.pm.node_free - free0).tolist() == [512, -512]
    assert (kernel.pm.flags[old:old + HPAGE_NR] == 0).all()
    assert kernel.pm.mapcount[new] == 1
    # still a PMD leaf, still young and dirty
    e = int(mm.pt.pmd[PageTable.slot(vma.start) >> 9])
    assert e & (1 << 7) and e & ACCESSED and e & DIRTY and e & RW


def test_move_pages_huge_zero_subpage_is_enoent(kernel, mm):
    vma = mm.mmap(HPAGE, thp=True)
    mm.access(addrs(vma.start), False)
    assert mm.translate(addrs(vma.start + PAGE)).tolist() == [kernel.huge_zero_pfn + 1]
    free0 = kernel.pm.node_free.copy()
    status = mm.move_pages(addrs(vma.start, vma.start + PAGE), [1, 1])
    assert status.tolist() == [-errno.ENOENT, -errno.ENOENT]
    assert (kernel.pm.node_free == free0).all()


def test_move_pages_one_thp_two_targets():
    k = make_kernel(["16MiB", "16MiB", "16MiB"])
    mm = k.spawn("p")
    vma = mm.mmap(HPAGE, thp=True)
    mm.access(addrs(vma.start), True)
    status = mm.move_pages(addrs(vma.start, vma.start + PAGE), [1, 2])
    # the kernel processes the array in order: the folio goes to node 1, then on to node 2
    assert k.node_of(mm.translate(addrs(vma.start))).tolist() == [2]
    # each batch stores the node it was moved to (move_pages_and_store_status)
    assert status.tolist() == [1, 2]
    assert k.vmstat["thp_migration_success"] == 2


def test_migration_keeps_pte_bits_and_identity(kernel, mm):
    vma = mm.mmap(4 * PAGE)
    a, b = vma.start, vma.start + PAGE
    mm.access(addrs(a, b), True)
    # page b: aging cleared its young bit, writeback its dirty bit
    mm.pt.pte[PageTable.slot(b)] &= ~np.uint64(ACCESSED | DIRTY)
    old = mm.translate(addrs(a, b))
    ident = (kernel.pm.mapping[old].copy(), kernel.pm.index[old].copy(),
             kernel.pm.memcg[old].copy(), kernel.pm.mapcount[old].copy())
    assert mm.move_pages(addrs(a, b), [1, 1]).tolist() == [1, 1]
    new = mm.translate(addrs(a, b))
    assert kernel.node_of(new).tolist() == [1, 1]
    assert pte(mm, a) & ACCESSED and pte(mm, a) & DIRTY and pte(mm, a) & RW
    assert not pte(mm, b) & ACCESSED and not pte(mm, b) & DIRTY and pte(mm, b) & RW
    assert mm.young(addrs(a, b)).tolist() == [True, False]
    for before, name in zip(ident, ("mapping", "index", "memcg", "mapcount")):
        assert (getattr(kernel.pm, name)[new] == before).all(), name
    assert kernel.rmap(int(new[0])) == [(mm, a)]
    assert kernel.rmap(int(old[0])) == []
    assert (kernel.pm.flags[old] == 0).all()


def test_migration_moves_lru_accounting(kernel, mm):
    vma = mm.mmap(6 * PAGE)
    mm.access(page_addrs(vma.start, 6), True)
    fv = mm.mmap(2 * PAGE, kind="file", shared=True)
    mm.access(page_addrs(fv.start, 2), True)
    lv0 = kernel.lruvec(kernel.root_memcg, 0).lrugen.nr_pages
    lv1 = kernel.lruvec(kernel.root_memcg, 1).lrugen.nr_pages
    assert lv0[:, ANON, ZONE_NORMAL].sum() == 6 and lv0[:, FILE, ZONE_NORMAL].sum() == 2
    mm.move_pages(np.concatenate([page_addrs(vma.start, 4), page_addrs(fv.start, 1)]), 1)
    assert lv0[:, ANON, ZONE_NORMAL].sum() == 2 and lv0[:, FILE, ZONE_NORMAL].sum() == 1
    assert lv1[:, ANON, ZONE_MOVABLE].sum() == 4 and lv1[:, FILE, ZONE_MOVABLE].sum() == 1
    assert lv1[:, :, ZONE_NORMAL].sum() == 0
    new = mm.translate(page_addrs(vma.start, 4))
    assert (kernel.pm.flags[new] & PG_lru).all() and not (kernel.pm.flags[new] & PG_active).any()
    # a freshly faulted folio sits in an active gen (max_seq-1); del_folio sets PG_active, so it
    # is re-added in max_seq-1 of the target lruvec (mglru-spec §3.1-3.2)
    g1 = (kernel.lruvec(kernel.root_memcg, 1).lrugen.max_seq - 1) % 4
    assert ((kernel.pm.lru_gen_refs[new] & 7) == g1 + 1).all()


def test_migrate_file_page_updates_cache_and_dirty_state(kernel, mm):
    vma = mm.mmap(4 * PAGE, kind="file", shared=True)
    mm.access(addrs(vma.start), True)
    mm.access(addrs(vma.start + PAGE), False)
    f = vma.file
    old = f.pages[:2].copy()
    assert mm.move_pages(page_addrs(vma.start, 2), 1).tolist() == [1, 1]
    new = mm.translate(page_addrs(vma.start, 2))
    assert (f.pages[:2] == new).all() and (new != old).all()
    assert (kernel.pm.flags[new] & PG_dirty).tolist() == [PG_dirty, 0]
    assert (kernel.pm.index[new] == [0, 1]).all() and (kernel.pm.mapping[new] == f.id).all()
    # a later mapper finds the migrated page
    other = kernel.spawn("other")
    ov = other.mmap(4 * PAGE, kind="file", file=f)
    other.access(addrs(ov.start), False)
    assert other.translate(addrs(ov.start)).tolist() == [new[0]]


def test_migrate_folios_rewrites_every_mapping(kernel):
    # the mechanism under promotion engines: a page mapped by two mms moves for both
    f = kernel.open_file("lib", 2 * PAGE)
    a, b = kernel.spawn("a"), kernel.spawn("b")
    va = a.mmap(2 * PAGE, kind="file", file=f)
    vb = b.mmap(2 * PAGE, kind="file", file=f)
    a.access(addrs(va.start), False)
    b.access(addrs(vb.start), False)
    old = int(f.pages[0])
    ok = migrate_folios(kernel, np.array([old]), 1)
    assert ok.tolist() == [True]
    kernel.check()
    new = int(f.pages[0])
    assert kernel.node_of([new]).tolist() == [1]
    assert a.translate(addrs(va.start)).tolist() == [new]
    assert b.translate(addrs(vb.start)).tolist() == [new]
    assert kernel.pm.mapcount[new] == 2
    assert sorted((m.id, ad) for m, ad in kernel.rmap(new)) == sorted(
        [(a.id, va.start), (b.id, vb.start)])


def test_migrate_pte_mapped_thp(kernel, mm):
    vma = mm.mmap(HPAGE, thp=True)
    mm.access(addrs(vma.start), True)
    mm.mbind(vma.start, HPAGE // 2, "bind", [1])      # splits the PMD, keeps the folio
    assert mm.move_pages(addrs(vma.start + PAGE), 1).tolist() == [1]
    pfns = mm.translate(page_addrs(vma.start, HPAGE_NR))
    assert (pfns == pfns[0] + np.arange(HPAGE_NR)).all()
    assert kernel.node_of(pfns[:1]).tolist() == [1] and kernel.pm.order[pfns[0]] == 9
    assert kernel.vmstat["thp_migration_success"] == 1


def test_move_pages_enomem_when_target_full():
    k = make_kernel(["16MiB", "16MiB"])
    mm = k.spawn("p")
    room = int(k.pm.node_free[1] - k.pm.watermarks[1, WMARK_MIN])
    fill = mm.mmap(room * PAGE, policy="bind", nodes=[1], populate=True)
    assert k.pm.node_free[1] == k.pm.watermarks[1, WMARK_MIN]
    vma = mm.mmap(2 * PAGE, populate=True)
    old = mm.translate(page_addrs(vma.start, 2))
    status = mm.move_pages(page_addrs(vma.start, 2), 1)
    assert status.tolist() == [-errno.ENOMEM, -errno.ENOMEM]
    assert (mm.translate(page_addrs(vma.start, 2)) == old).all()
    assert k.vmstat["pgmigrate_fail"] == 2 and k.vmstat["pgmigrate_success"] == 0
    # freeing room on node 1 lets it through
    mm.munmap(fill.start, 4 * PAGE)
    assert mm.move_pages(page_addrs(vma.start, 2), 1).tolist() == [1, 1]


def test_rmap_of_thp_tail_page(kernel, mm):
    vma = mm.mmap(HPAGE, thp=True)
    mm.access(addrs(vma.start), True)
    head = int(mm.translate(addrs(vma.start))[0])
    assert kernel.rmap(head) == [(mm, vma.start)]
    assert kernel.rmap(head + 3) == [(mm, vma.start + 3 * PAGE)]


def test_migration_stays_in_the_memcg(kernel):
    cg = kernel.memcg_create("job")
    mm = kernel.spawn("p", memcg=cg)
    vma = mm.mmap(HPAGE, thp=True, populate=True)
    assert kernel.lruvec(cg, 0).lrugen.nr_pages.sum() == 512
    assert mm.move_pages(addrs(vma.start), 1).tolist() == [1]
    # the THP left (job, node 0) for (job, node 1); the root memcg's lruvecs saw nothing
    assert kernel.lruvec(cg, 0).lrugen.nr_pages.sum() == 0
    assert kernel.lruvec(cg, 1).lrugen.nr_pages[:, ANON, ZONE_MOVABLE].sum() == 512
    assert kernel.lruvec(kernel.root_memcg, 1).lrugen.nr_pages.sum() == 0
    assert (kernel.pm.memcg[mm.translate(page_addrs(vma.start, 3))] == cg.id).all()
    # accesses are now served by node 1
    assert mm.access(page_addrs(vma.start, 3), False).tolist() == [0, 3]


def test_migration_drops_numa_hint_prot_none(kernel, mm):
    """remove_migration_pte()/remove_migration_pmd() build the new entry from
    vma->vm_page_prot (mm/migrate.c), so a page marked PROT_NONE by NUMA balancing is mapped
    present after it migrates: young, dirty and write carry over, the hint does not."""
    from tierscan.mm.constants import _PAGE_PRESENT, _PAGE_PROTNONE
    from tierscan.mm.memory import change_huge_pmd_numa, protect_slots_numa

    vma = mm.mmap(4 * PAGE)
    a = vma.start
    mm.access(addrs(a), True)
    protect_slots_numa(mm, [PageTable.slot(a)])
    assert pte(mm, a) & int(_PAGE_PROTNONE) and not pte(mm, a) & int(_PAGE_PRESENT)
    migrate_folios(kernel, mm.translate(addrs(a)), 1)
    e = pte(mm, a)
    assert e & int(_PAGE_PRESENT) and not e & int(_PAGE_PROTNONE)
    assert e & ACCESSED and e & DIRTY and e & RW
    assert kernel.node_of(mm.translate(addrs(a))).tolist() == [1]

    thp = mm.mmap(HPAGE, thp=True)
    mm.access(addrs(thp.start), True)
    ps = PageTable.slot(thp.start) >> 9
    assert change_huge_pmd_numa(mm, [ps]).tolist() == [ps]
    migrate_folios(kernel, mm.translate(addrs(thp.start)), 1)
    e = int(mm.pt.pmd[ps])
    assert e & int(_PAGE_PRESENT) and not e & int(_PAGE_PROTNONE) and e & (1 << 7)
    assert e & ACCESSED and e & DIRTY and e & RW
    kernel.check()


def _thp_batch_moved(monkeypatch, **forms):
    """A batch of PMD-mapped THPs (one with a NUMA hint), a PTE-mapped THP and 4 KiB pages of
    two mms moved to node 1 by one migrate_folios per order; the page tables and pfn state."""
    import tierscan.mm.migrate as migrate
    from tierscan.mm.memory import change_huge_pmd_numa
    from tierscan.mm.physmem import PhysMem

    for name, value in forms.items():      # the migrate module's form switches
        monkeypatch.setattr(migrate, name, value)
    k = make_kernel(("64MiB", "64MiB"))
    a, b = k.spawn("a"), k.spawn("b")
    heads, thps = [], []
    for mm in (a, b):
        thp = mm.mmap(4 * HPAGE, thp=True)
        mm.access(page_addrs(thp.start, 4 * HPAGE_NR), True)
        thps.append(thp)
        small = mm.mmap(8 * PAGE)
        mm.access(page_addrs(small.start, 8), True)
        heads.append(k.pm.folio_head(mm.translate(addrs(thp.start, thp.start + 3 * HPAGE,
                                                        thp.start + HPAGE, small.start))))
        change_huge_pmd_numa(mm, [PageTable.slot(thp.start + HPAGE) >> 9])
    a.mbind(thps[0].start + 2 * HPAGE, HPAGE // 2, "bind", [0])   # splits one PMD
    heads = np.concatenate(heads)
    thp_heads = k.pm.order[heads] == 9
    assert migrate_folios(k, heads[thp_heads], 1).all()
    assert migrate_folios(k, heads[~thp_heads], 1).all()
    k.check()
    pm = k.pm
    return [mm.pt.pmd.copy() for mm in (a, b)] + [mm.pt.pte.copy() for mm in (a, b)] + \
        [arr.copy() for arr in PhysMem._state_arrays(pm)]


def test_pmd_writes_once_per_leaf_match_per_page_writes(monkeypatch):
    """move_folios rewrites a PMD leaf once (pmd_leaves) instead of once per page of its THP:
    the page tables and pfn state after a mixed migration equal the per-page writes'."""
    fast = _thp_batch_moved(monkeypatch, REFERENCE_PMD_WRITES=False)
    ref = _thp_batch_moved(monkeypatch, REFERENCE_PMD_WRITES=True)
    for f, r in zip(fast, ref):
        np.testing.assert_array_equal(f, r)


def test_copy_by_folio_matches_numpy_copy(monkeypatch):
    """copy_folio_state's per-folio slices (THPs) leave the same pfn state and page tables
    as the numpy field-by-field copy (migrate.COMPILED = False)."""
    fast = _thp_batch_moved(monkeypatch, COMPILED=True)
    ref = _thp_batch_moved(monkeypatch, COMPILED=False)
    for f, r in zip(fast, ref):
        np.testing.assert_array_equal(f, r)


def _small_pages_moved(monkeypatch, compiled: bool):
    """4 KiB pages of two mms (anon, some read only, some NUMA-hinted PROT_NONE, and a shared
    file mapped by both) moved to node 1 by migrate_folios: the PTE tables and pfn state."""
    import tierscan.mm.migrate as migrate
    from tierscan.mm.memory import change_prot_numa
    from tierscan.mm.physmem import PhysMem

    monkeypatch.setattr(migrate, "COMPILED", compiled)
    k = make_kernel(("64MiB", "64MiB"))
    a, b = k.spawn("a"), k.spawn("b")
    f = k.open_file("shared", 8 * PAGE)
    heads = []
    for mm in (a, b):
        v = mm.mmap(16 * PAGE)
        mm.access(page_addrs(v.start, 12), True)
        mm.access(page_addrs(v.start + 12 * PAGE, 4), False)      # zero page: not moved
        fv = mm.mmap(8 * PAGE, kind="file", file=f)
        mm.access(page_addrs(fv.start, 8), False)
        change_prot_numa(v, v.start + 2 * PAGE, v.start + 7 * PAGE, skip_toptier=False)
        change_prot_numa(fv, fv.start, fv.start + 3 * PAGE, skip_toptier=False)
        heads.append(mm.translate(page_addrs(v.start, 12)))
        heads.append(mm.translate(page_addrs(fv.start, 8)))
    heads = np.unique(np.concatenate(heads))
    before = [mm.pt.pte.copy() for mm in (a, b)]
    assert migrate_folios(k, heads, 1).all()
    k.check()
    after = [mm.pt.pte.copy() for mm in (a, b)]
    hinted = sum(int(((x & 0x101) == 0x100).sum()) for x in before)
    return hinted, after + [arr.copy() for arr in PhysMem._state_arrays(k.pm)]


def test_compiled_pte_rewrite_matches_numpy(monkeypatch):
    """move_folios' compiled PTE rewrite (_remap_ptes) leaves the same page tables and pfn
    state as the numpy form (mk_pte | remove_migration_bits), hinted entries included."""
    hinted, fast = _small_pages_moved(monkeypatch, True)
    _, ref = _small_pages_moved(monkeypatch, False)
    assert hinted >= 10           # the case that rewrites flag bits is there
    for f, r in zip(fast, ref):
        np.testing.assert_array_equal(f, r)


def _thps_of_one_mm(nr=6):
    """A debug kernel whose mm has ``nr`` PMD-mapped THPs on node 0 (the second NUMA-hinted,
    PROT_NONE) and a few 4 KiB pages; returns (kernel, mm, THP heads, small heads)."""
    from tierscan.mm.memory import change_huge_pmd_numa

    k = make_kernel(("64MiB", "64MiB"))
    mm = k.spawn("a")
    thp = mm.mmap(nr * HPAGE, thp=True)
    mm.access(page_addrs(thp.start, nr * HPAGE_NR), True)
    small = mm.mmap(4 * PAGE)
    mm.access(page_addrs(small.start, 4), True)
    change_huge_pmd_numa(mm, [PageTable.slot(thp.start + HPAGE) >> 9])
    heads = mm.translate(addrs([thp.start + i * HPAGE for i in range(nr)]))
    return k, mm, heads, mm.translate(page_addrs(small.start, 4))


def test_pmd_mapped_thps_is_the_page_walk():
    """rmap.pmd_mapped_thps (a folio's pages checked in one pass) answers for whole PMD-mapped
    anon THPs of one mm what rmap_walk of their pages finds, one PMD site over every page; and
    refuses (None) whatever the page walk would find otherwise: a 4 KiB folio, a THP of
    another mm, a PTE-mapped THP, a page whose index or mapping is not its THP's."""
    from tierscan.mm.rmap import pmd_mapped_thps, rmap_walk

    k, mm, heads, small = _thps_of_one_mm()
    pm = k.pm
    got = pmd_mapped_thps(k, heads[::-1])
    (site,) = rmap_walk(k, pm.folio_pfns(heads[::-1]))
    assert got[0] is mm is site.mm and site.pmd
    np.testing.assert_array_equal(np.repeat(got[1], HPAGE_NR), site.slots)
    np.testing.assert_array_equal(np.arange(heads.size * HPAGE_NR), site.pos)
    other = k.spawn("b")
    v = other.mmap(HPAGE, thp=True)
    other.access(page_addrs(v.start, HPAGE_NR), True)
    assert pmd_mapped_thps(k, np.r_[heads, other.translate(addrs(v.start))]) is None
    assert pmd_mapped_thps(k, np.r_[heads, small[:1]]) is None
    h = int(heads[3])
    for arr, page, value in ((pm.index, h + 7, pm.index[h + 6]),     # slot not its page's
                             (pm.mapping, h + 500, 99),                  # not the mm's
                             (pm.index, h + 511, pm.index[h] + 1024)):   # under another PMD
        saved = arr[page]
        arr[page] = value
        assert pmd_mapped_thps(k, heads) is None
        sites = rmap_walk(k, pm.folio_pfns(heads[3:4]))
        assert [(s.pmd, s.pos.size) for s in sites] != [(True, HPAGE_NR)]
        arr[page] = saved
    assert pmd_mapped_thps(k, heads) is not None
    mm.mbind(PageTable.addr(int(pm.index[h])), HPAGE // 2, "bind", [0])   # splits its PMD
    assert pmd_mapped_thps(k, heads) is None


def _move_recorded(k, mm, heads, order: int, nid: int, chunks):
    """move_folios of ``heads`` to new folios of ``order`` on ``nid`` in ``chunks``, with a
    remap hook recording its calls: the calls, the mms of each chunk, the page tables and
    pfn state after it."""
    import tierscan.mm.migrate as migrate
    from tierscan.mm.physmem import PhysMem

    calls = []
    k.remap_hooks.append(lambda m, slots, src, dst: calls.append(
        (m.id, slots.dtype, slots.copy(), src.dtype, src.copy(), dst)))
    new, _ = migrate._alloc_on(k, heads.size, order, nid, WMARK_MIN)
    mms = migrate.move_folios(k, heads, new, np.array(chunks))
    k.check()
    return calls, [sorted(m.id for m in g) for g in mms], \
        [mm.pt.pmd.copy(), mm.pt.pte.copy()] + [a.copy() for a in PhysMem._state_arrays(k.pm)]


def _assert_same_move(moved, ref):
    """Two _move_recorded results are the same: the mms of each of the four chunks (one
    empty), the three remap-hook calls (mm, slots, sources, destination, with their dtypes),
    the page tables and pfn state."""
    calls, mms, state = moved
    ref_calls, ref_mms, ref_state = ref
    assert mms == ref_mms and [len(g) for g in mms] == [1, 0, 1, 1]
    assert len(calls) == len(ref_calls) == 3
    for c, r in zip(calls, ref_calls):
        assert c[0] == r[0] and c[1] == r[1] and c[3] == r[3] and c[5] == r[5]
        np.testing.assert_array_equal(c[2], r[2])
        np.testing.assert_array_equal(c[4], r[4])
    for f, r in zip(state, ref_state):
        np.testing.assert_array_equal(f, r)


def _moved_by(monkeypatch, by_folio: bool):
    """Whole PMD-mapped THPs of one mm moved to node 1 by one move_folios in chunks (one of
    them empty), with a remap hook recording its calls: the calls, the mms of each chunk,
    the page tables and pfn state."""
    import tierscan.mm.migrate as migrate

    monkeypatch.setattr(migrate, "BY_FOLIO", by_folio)
    k, mm, heads, _ = _thps_of_one_mm()
    heads = heads[[4, 1, 0, 5, 2, 3]]
    return _move_recorded(k, mm, heads, 9, 1, [0, 2, 2, 5, 6])


def test_move_by_folio_is_the_page_walk(monkeypatch):
    """move_folios of whole PMD-mapped THPs by folio (_move_pmd_thps) makes the remap hooks'
    calls (chunk by chunk, the same arrays) and leaves the page tables and pfn state of the
    page-by-page rmap walk (BY_FOLIO = False)."""
    _assert_same_move(_moved_by(monkeypatch, True), _moved_by(monkeypatch, False))


def _pages_of_one_mm(nr=40):
    """A debug kernel whose mm has ``nr`` 4 KiB anon pages, every third on node 1 and the
    rest on node 0 (a few NUMA-hinted, PROT_NONE), and a THP; returns (kernel, mm, page
    heads, THP head)."""
    from tierscan.mm.memory import change_prot_numa

    k = make_kernel(("64MiB", "64MiB", "64MiB"))
    mm = k.spawn("a")
    v = mm.mmap(nr * PAGE)
    mm.access(page_addrs(v.start, nr), True)
    third = page_addrs(v.start, nr)[::3]
    assert (mm.move_pages(third, np.ones(third.size, np.int64)) == 1).all()
    change_prot_numa(v, v.start + 3 * PAGE, v.start + 9 * PAGE, skip_toptier=False)
    thp = mm.mmap(HPAGE, thp=True)
    mm.access(page_addrs(thp.start, HPAGE_NR), True)
    return k, mm, mm.translate(page_addrs(v.start, nr)), mm.translate(addrs(thp.start))


def test_pte_mapped_pages_is_the_page_walk():
    """rmap.pte_mapped_pages answers for 4 KiB anon pages of one mm, each mapped by one PTE,
    what rmap_walk of them finds (one PTE site over every page, in order); and refuses
    (None) whatever the walk would find otherwise: a THP, a page of another mm, a file page,
    a page whose index is not where its PTE is, an unmapped page."""
    from tierscan.mm.rmap import pte_mapped_pages, rmap_walk

    k, mm, heads, thp = _pages_of_one_mm()
    pm = k.pm
    heads = heads[[5, 0, 30, 3, 4, 17, 39]]
    got = pte_mapped_pages(k, heads)
    (site,) = rmap_walk(k, heads)
    assert got[0] is mm is site.mm and not site.pmd
    np.testing.assert_array_equal(got[1], site.slots)
    np.testing.assert_array_equal(np.arange(heads.size), site.pos)
    other = k.spawn("b")
    v = other.mmap(PAGE)
    other.access(addrs(v.start), True)
    f = k.open_file("f", PAGE)
    fv = mm.mmap(PAGE, kind="file", file=f)
    mm.access(addrs(fv.start), False)
    for extra in (thp, other.translate(addrs(v.start)), mm.translate(addrs(fv.start))):
        assert pte_mapped_pages(k, np.r_[heads, extra]) is None
    h = int(heads[2])
    for arr, value in ((pm.index, pm.index[heads[3]]),     # another page's PTE
                       (pm.index, pm.index[h] + 4096)):    # no PTE there
        saved = arr[h]
        arr[h] = value
        assert pte_mapped_pages(k, heads) is None
        assert [(s.pmd, s.pos.size) for s in rmap_walk(k, heads)] != [(False, heads.size)]
        arr[h] = saved
    assert pte_mapped_pages(k, heads) is not None


def _pages_moved_by(monkeypatch, by_folio: bool):
    """4 KiB anon pages of one mm (on nodes 0 and 1) moved to node 2 by one move_folios in
    chunks (one of them empty), with a remap hook recording its calls: the calls, the mms
    of each chunk, the page table and pfn state."""
    import tierscan.mm.migrate as migrate

    monkeypatch.setattr(migrate, "BY_FOLIO", by_folio)
    k, mm, heads, _ = _pages_of_one_mm()
    heads = heads[np.random.default_rng(4).permutation(heads.size)[:30]]
    return _move_recorded(k, mm, heads, 0, 2, [0, 7, 7, 20, 30])


def test_move_pte_pages_is_the_page_walk(monkeypatch):
    """move_folios of PTE-mapped 4 KiB anon pages of one mm without the rmap walk
    (_move_pte_pages) makes the remap hooks' calls (chunk by chunk, the same arrays) and
    leaves the page tables and pfn state of the page-by-page walk (BY_FOLIO = False),
    NUMA-hinted entries included."""
    moved = _pages_moved_by(monkeypatch, True)
    _assert_same_move(moved, _pages_moved_by(monkeypatch, False))
    assert {0, 1} <= set(np.concatenate([c[4] for c in moved[0]]).tolist())
