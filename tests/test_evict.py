"""MGLRU eviction (mglru-spec §7): what is taken, in which order, and what happens to it.

Every kernel here runs with debug=True, so the model's invariants (mm/check.py) are checked
after each aging, eviction, fault and mmap. The laptop machine has node 0 (DRAM, tier 0) and
node 1 (CXL, tier 1, no lower tier) and no swap device.
"""

import errno

import numpy as np
import pytest
from conftest import (
    ANON, FILE, HPAGE, HPAGE_NR, PAGE, assert_same, make_kernel, page_addrs, snapshot,
)

from tierscan import Kernel, Machine
from tierscan.mm import vmscan
from tierscan.mm.constants import (
    PG_active, PG_dirty, PG_lru, PG_reclaim, PG_workingset, ULONG_MAX, _PAGE_DIRTY, _PAGE_RW,
)
from tierscan.mm.evict import (
    GFP_NOIO, CtrlPos, ScanControl, evict_folios, get_swappiness, get_tier_idx,
    get_type_to_scan, next_demotion_node, positive_ctrl_err, run_eviction, scan_folios,
)
from tierscan.mm.lru_gen import (
    folio_lru_gen, folio_lru_refs, lru_gen_add_folio, lru_gen_from_seq, lru_gen_inc_refs,
)
from tierscan.mm.lru_index import lru_index_note
from tierscan.mm.pagetable import PageTable
from tierscan.mm.physmem import WMARK_MIN


@pytest.fixture
def kernel():
    """The laptop machine (see conftest) with demotion off (the default), so evicted file
    pages are dropped; the demotion tests use demoting_kernel()."""
    return Kernel(Machine.preset("laptop"), seed=0, debug=True)


def demoting_kernel(*args, **kw):
    """A debug kernel with /sys/kernel/mm/numa/demotion_enabled set (off by default)."""
    k = make_kernel(*args, **kw)
    k.sysfs["numa/demotion_enabled"] = True
    return k


def test_demotion_is_off_by_default_so_dram_anon_is_not_reclaimed():
    k = make_kernel(("16MiB", "16MiB"))
    mm = k.spawn("p")
    vma, pfns = anon_map(mm, 64, node=0)
    lv = lv_of(k, 0)
    assert get_swappiness(lv, proactive()) == 0   # no swap, no demotion: anon not evictable
    age(lv, 2)
    assert run_eviction(lv, lv.lrugen.min_seq[0], proactive(), -1, ULONG_MAX) in (0, -errno.EINVAL)
    assert (k.node_of(mm.translate(page_addrs(vma.start, 64))) == 0).all()
    assert k.vmstat["pgdemote_direct"] == 0


def proactive(**kw) -> ScanControl:
    """The scan_control of the debugfs '-' command (§8.4)."""
    return ScanControl(proactive=True, **kw)


def age(lv, times=1, swappiness=60):
    for _ in range(times):
        assert vmscan.try_to_inc_max_seq(lv, lv.lrugen.max_seq, swappiness, True)


def lv_of(k, nid):
    return k.lruvec(k.root_memcg, nid)


def file_map(k, mm, n, node=0, name="data", shared=False, file=None):
    """n pages of a file, read-faulted in address order on ``node``."""
    f = file or k.open_file(name, n * PAGE)
    prot = "rw" if shared else "r"
    vma = mm.mmap(n * PAGE, kind="file", file=f, shared=shared, prot=prot, populate=True,
                  policy="bind", nodes=[node])
    return f, vma, mm.translate(page_addrs(vma.start, n))


def anon_map(mm, n, node=0, **kw):
    vma = mm.mmap(n * PAGE, populate=True, policy="bind", nodes=[node], **kw)
    return vma, mm.translate(page_addrs(vma.start, n))


def list_gen(pm, heads):
    return pm.list_gen[heads].astype(np.int64) - 1


# ---- which folios are taken --------------------------------------------------------------------
def test_evicts_only_the_oldest_generation_oldest_first(kernel, mm):
    pm = kernel.pm
    lv = lv_of(kernel, 0)
    f_old, _, old = file_map(kernel, mm, 200, name="old")
    age(lv, 2)
    f_new, _, new = file_map(kernel, mm, 30, name="new")   # joins max_seq - 1
    g = lv.lrugen
    min_gen = lru_gen_from_seq(g.min_seq[FILE])
    assert (list_gen(pm, old) == min_gen).all() and (folio_lru_gen(pm, old) == min_gen).all()
    assert (folio_lru_gen(pm, new) == lru_gen_from_seq(g.max_seq - 1)).all()

    sc = proactive()
    assert evict_folios(ULONG_MAX, lv, sc, 60) > 0
    # isolation stops at MIN_LRU_BATCH pages: exactly the 64 oldest (first faulted) went
    assert (f_old.pages[:64] == -1).all() and (f_old.pages[64:] == old[64:]).all()
    assert sc.nr_reclaimed == 64
    assert (f_new.pages == new).all()

    # anon has nothing: its min_seq climbs over the empty generations, but with both types
    # evictable it is held at max_seq - 2 while file still has max_seq - 3
    assert g.min_seq == [g.max_seq - 2, g.max_seq - 3]

    seq = g.min_seq[FILE]
    assert run_eviction(lv, seq, sc, 60) == 0
    assert (f_old.pages == -1).all()
    assert (f_new.pages == new).all()       # a younger generation is never touched
    assert (folio_lru_gen(pm, new) == lru_gen_from_seq(g.max_seq - 1)).all()


def test_oldest_means_list_order_not_pfn_order(kernel, mm):
    pm = kernel.pm
    lv = lv_of(kernel, 0)
    f, _, pfns = file_map(kernel, mm, 100)
    age(lv, 2)
    pm.lru_stamp[pfns] = pm.lru_stamp[pfns][::-1].copy()  # the last page is now the list tail
    lru_index_note(pm, pfns)                                # new list positions: tell the index
    evict_folios(ULONG_MAX, lv, proactive(), 60)
    assert (f.pages[-64:] == -1).all() and (f.pages[:-64] == pfns[:-64]).all()


def test_promoted_folio_is_sorted_to_its_flag_gen_not_evicted(kernel, mm):
    pm = kernel.pm
    lv = lv_of(kernel, 0)
    f, vma, pfns = file_map(kernel, mm, 16)
    age(lv)
    mm.access(page_addrs(vma.start, 1, first=5))   # young again: the next walk promotes it
    age(lv)
    g = lv.lrugen
    p = pfns[5]
    min_gen = lru_gen_from_seq(g.min_seq[FILE])
    flag_gen = lru_gen_from_seq(g.max_seq - 1)
    assert list_gen(pm, [p])[0] == min_gen and folio_lru_gen(pm, [p])[0] == flag_gen

    evict_folios(ULONG_MAX, lv, proactive(), 60)
    assert f.pages[5] == p and mm.translate(page_addrs(vma.start, 1, first=5))[0] == p
    assert list_gen(pm, [p])[0] == flag_gen == folio_lru_gen(pm, [p])[0]
    others = np.delete(np.arange(16), 5)
    assert (f.pages[others] == -1).all()


def test_a_type_with_two_generations_is_never_scanned(kernel, mm):
    pm = kernel.pm
    lv = lv_of(kernel, 0)
    g = lv.lrugen
    # nothing to evict: min_seq[file] climbs over the empty generations to max_seq - 1
    assert evict_folios(ULONG_MAX, lv, proactive(), 0) == 0
    assert g.max_seq - g.min_seq[FILE] + 1 == 2
    f, _, pfns = file_map(kernel, mm, 40)           # they land in gen(min_seq[file])
    assert (list_gen(pm, pfns) == lru_gen_from_seq(g.min_seq[FILE])).all()
    stamps = pm.lru_stamp[pfns].copy()

    scanned, isolated = scan_folios(ULONG_MAX, lv, proactive(), FILE, 3)
    assert scanned == 0 and isolated.size == 0
    assert evict_folios(ULONG_MAX, lv, proactive(), 0) == 0
    assert (f.pages == pfns).all() and (pm.lru_stamp[pfns] == stamps).all()
    assert kernel.vmstat["pgscan_direct"] == 0


def test_evict_folios_returns_zero_when_aging_is_needed(kernel, mm):
    lv = lv_of(kernel, 0)
    g = lv.lrugen
    evict_folios(ULONG_MAX, lv, proactive(), 0)     # min_seq[file] = max_seq - 1
    f, _, _ = file_map(kernel, mm, 10)
    age(lv)                                          # file now has 3 generations
    assert g.max_seq - g.min_seq[FILE] + 1 == 3
    # the ten pages are evicted, which empties the oldest generation: min_seq[file] moves up
    # to max_seq - 1 and evictable_min_seq + 2 > max_seq asks for aging
    assert evict_folios(ULONG_MAX, lv, proactive(), 0) == 0
    assert (f.pages == -1).all()
    assert vmscan.evictable_min_seq(g.min_seq, 0) + 2 > g.max_seq


# ---- what happens to them ----------------------------------------------------------------------
@pytest.mark.parametrize("kswapd", [False, True])
def test_clean_file_pages_are_unmapped_freed_and_counted(kernel, mm, kswapd):
    pm = kernel.pm
    lv = lv_of(kernel, 0)
    other = kernel.spawn("other")
    f, vma, pfns = file_map(kernel, mm, 20)
    _, vma2, _ = file_map(kernel, other, 20, file=f)   # the same page cache, mapped twice
    assert (pm.mapcount[pfns] == 2).all()
    # the first walk sees each folio young twice (once per mm) and promotes it to the youngest
    # gen with PG_workingset; inc_min_seq brings it back down to min_seq two agings later
    age(lv, 3)
    assert (folio_lru_gen(pm, pfns) == lru_gen_from_seq(lv.lrugen.min_seq[FILE])).all()
    free0 = pm.node_free.copy()
    evicted0 = lv.lrugen.evicted.copy()

    sc = ScanControl(proactive=not kswapd, is_kswapd=kswapd)
    evict_folios(ULONG_MAX, lv, sc, 60)
    who = "kswapd" if kswapd else "direct"
    assert (f.pages == -1).all()
    assert (mm.translate(page_addrs(vma.start, 20)) == -1).all()
    assert (other.translate(page_addrs(vma2.start, 20)) == -1).all()
    assert (pm.flags[pfns] == 0).all() and (pm.mapcount[pfns] == 0).all()
    assert (pm.node_free - free0).tolist() == [20, 0]
    assert kernel.vmstat.node(f"pgsteal_{who}").tolist() == [20, 0]
    assert kernel.vmstat.node(f"pgscan_{who}").tolist() == [20, 0]
    assert sc.nr_reclaimed == 20
    # PG_workingset: tier 3 (lru_gen_eviction)
    assert (lv.lrugen.evicted - evicted0)[0, FILE].tolist() == [0, 0, 0, 20]
    assert lv.lrugen.nr_pages[:, FILE].sum() == 0


def test_dirty_file_pages_are_sorted_for_writeback_not_freed(kernel, mm):
    pm = kernel.pm
    lv = lv_of(kernel, 0)
    f, vma, pfns = file_map(kernel, mm, 12, shared=True)
    mm.access(page_addrs(vma.start, 12), True)          # write faults dirty the folios
    assert ((pm.flags[pfns] & PG_dirty) != 0).all()
    age(lv, 2)
    g = lv.lrugen
    old_min = g.min_seq[FILE]

    sc = proactive()
    evict_folios(ULONG_MAX, lv, sc, 60)
    assert (f.pages == pfns).all()
    assert (mm.translate(page_addrs(vma.start, 12)) == pfns).all()
    assert ((pm.flags[pfns] & PG_reclaim) != 0).all()
    assert (list_gen(pm, pfns) == lru_gen_from_seq(old_min + 1)).all()
    assert sc.nr.file_taken == 12 and sc.nr.unqueued_dirty == 12
    assert kernel.vmstat["pgsteal_direct"] == 0


def test_file_page_dirty_only_in_its_pte_is_written_back_and_kept(kernel, mm):
    pm = kernel.pm
    lv = lv_of(kernel, 0)
    f, vma, all_pfns = file_map(kernel, mm, 100, shared=True)
    mm.access(page_addrs(vma.start, 8), True)
    pfns = all_pfns[:8]
    age(lv, 2)
    # as if the folio had been cleaned while its mappings stayed writable and dirty
    pm.flags[pfns] &= ~PG_dirty
    slots = PageTable.slot(page_addrs(vma.start, 8))
    assert ((mm.pt.pte[slots] & _PAGE_DIRTY) != 0).all()
    g = lv.lrugen
    assert g.max_seq - g.min_seq[FILE] + 1 == 4

    evict_folios(ULONG_MAX, lv, proactive(), 60)
    assert (f.pages[:8] == pfns).all() and (mm.translate(page_addrs(vma.start, 8)) == pfns).all()
    assert ((pm.flags[pfns] & PG_dirty) == 0).all() and ((pm.flags[pfns] & PG_reclaim) != 0).all()
    assert ((mm.pt.pte[slots] & (_PAGE_DIRTY | _PAGE_RW)) == 0).all()   # folio_mkclean
    assert kernel.vmstat["pgsteal_direct"] == 56                        # the clean ones after
    # a clean inactive folio would go back to max_seq - 3 = min_seq, the generation it was
    # rejected from: evict_folios activates it instead, so it joins max_seq - 1
    assert g.min_seq[FILE] == g.max_seq - 3
    assert (list_gen(pm, pfns) == lru_gen_from_seq(g.max_seq - 1)).all()
    # the next store faults and dirties the folio again
    mm.access(page_addrs(vma.start, 1), True)
    assert pm.flags[pfns[0]] & PG_dirty and mm.pt.pte[slots[0]] & _PAGE_RW


def test_referenced_mapped_folios_are_activated_not_reclaimed(kernel, mm):
    pm = kernel.pm
    lv = lv_of(kernel, 0)
    f, vma, pfns = file_map(kernel, mm, 10)
    age(lv, 2)
    mm.access(page_addrs(vma.start, 5))
    evict_folios(ULONG_MAX, lv, proactive(), 60)
    assert (f.pages[:5] == pfns[:5]).all() and (f.pages[5:] == -1).all()
    assert not mm.young(page_addrs(vma.start, 5)).any()        # test-and-cleared by the rmap
    # lru_gen_set_refs on a PG_referenced folio: workingset, activated -> gen(max_seq)
    assert ((pm.flags[pfns[:5]] & PG_workingset) != 0).all()
    assert (folio_lru_gen(pm, pfns[:5]) == lru_gen_from_seq(lv.lrugen.max_seq)).all()
    assert kernel.vmstat["pgactivate"] == 5


@pytest.mark.parametrize("kswapd", [False, True])
def test_anon_pages_on_dram_are_demoted_to_cxl(kernel, mm, kswapd):
    kernel.sysfs["numa/demotion_enabled"] = True
    pm = kernel.pm
    lv0, lv1 = lv_of(kernel, 0), lv_of(kernel, 1)
    assert next_demotion_node(kernel, 0) == 1 and next_demotion_node(kernel, 1) == -1
    vma, pfns = anon_map(mm, 100)
    addrs = page_addrs(vma.start, 100)
    age(lv0, 2)
    sc = ScanControl(proactive=not kswapd, is_kswapd=kswapd)
    assert get_swappiness(lv0, sc) == 60
    who = "kswapd" if kswapd else "direct"

    evict_folios(ULONG_MAX, lv0, sc, 60)
    now = mm.translate(addrs)
    assert (kernel.node_of(now[:64]) == 1).all() and (now[64:] == pfns[64:]).all()
    assert lv0.lrugen.evicted[0, ANON].tolist() == [64, 0, 0, 0]
    assert kernel.vmstat.node(f"pgdemote_{who}").tolist() == [64, 0]

    assert run_eviction(lv0, lv0.lrugen.min_seq[ANON], sc, 60) == 0
    now = mm.translate(addrs)
    assert (kernel.node_of(now) == 1).all()
    assert kernel.vmstat.node(f"pgdemote_{who}").tolist() == [100, 0]
    assert kernel.vmstat[f"pgsteal_{who}"] == 100
    assert kernel.vmstat["pgmigrate_success"] == 100
    # same identity, still mapped once, on node 1's lruvec in max_seq - 1
    assert (pm.mapping[now] == mm.id).all()
    assert (pm.index[now] == PageTable.slot(addrs)).all()
    assert (pm.mapcount[now] == 1).all() and ((pm.flags[now] & PG_lru) != 0).all()
    assert (folio_lru_gen(pm, now) == lru_gen_from_seq(lv1.lrugen.max_seq - 1)).all()
    assert lv0.lrugen.nr_pages[:, ANON].sum() == 0
    assert lv1.lrugen.nr_pages[:, ANON].sum() == 100
    assert (pm.flags[pfns] == 0).all()                 # the DRAM pages were freed


def test_anon_thp_is_demoted_whole_and_stops_the_batch(kernel, mm):
    kernel.sysfs["numa/demotion_enabled"] = True
    pm = kernel.pm
    lv0 = lv_of(kernel, 0)
    thp = mm.mmap(HPAGE, thp=True, populate=True, policy="bind", nodes=[0])
    head = mm.translate(page_addrs(thp.start, 1))[0]
    assert pm.order[head] == 9
    _, small = anon_map(mm, 8)                          # younger in the same generation
    age(lv0, 2)
    evict_folios(ULONG_MAX, lv0, proactive(), 60)
    new = mm.translate(page_addrs(thp.start, HPAGE_NR))
    assert kernel.node_of(new[:1])[0] == 1 and pm.order[new[0]] == 9
    assert (new == new[0] + np.arange(HPAGE_NR)).all()
    assert kernel.vmstat["thp_migration_success"] == 1
    assert kernel.vmstat["pgdemote_direct"] == HPAGE_NR
    # 512 isolated pages >= 64: the small folios behind it were not even looked at
    assert (kernel.node_of(small) == 0).all()


def test_anon_pages_on_cxl_are_not_reclaimed(kernel, mm):
    pm = kernel.pm
    lv1 = lv_of(kernel, 1)
    vma, pfns = anon_map(mm, 40, node=1)
    age(lv1, 2)
    sc = proactive()
    assert get_swappiness(lv1, sc) == 0                 # no lower tier, no swap
    assert get_swappiness(lv_of(kernel, 0), ScanControl(may_swap=False)) == 0

    assert run_eviction(lv1, lv1.lrugen.min_seq[ANON], sc, -1) == 0   # anon not even scanned
    assert (mm.translate(page_addrs(vma.start, 40)) == pfns).all()
    assert kernel.vmstat["pgscan_direct"] == 0

    # forced to scan anon: isolated, cannot be demoted or swapped, activated and put back
    assert run_eviction(lv1, lv1.lrugen.min_seq[ANON], sc, 200) == 0
    assert (mm.translate(page_addrs(vma.start, 40)) == pfns).all()
    assert kernel.vmstat["pgscan_direct"] == 40 and kernel.vmstat["pgactivate"] == 40
    assert kernel.vmstat["pgsteal_direct"] == 0 and kernel.vmstat["pgdemote_direct"] == 0
    assert (folio_lru_gen(pm, pfns) == lru_gen_from_seq(lv1.lrugen.max_seq - 1)).all()
    assert ((pm.flags[pfns] & PG_active) == 0).all()


@pytest.mark.parametrize("is_proactive", [True, False])
def test_failed_demotion_keeps_the_folio_on_dram(is_proactive):
    k = demoting_kernel(("16MiB", "16MiB"))
    pm = k.pm
    mm = k.spawn("x")
    lv0 = lv_of(k, 0)
    vma, pfns = anon_map(mm, 20)
    anon_map(mm, pm.allowance(1, WMARK_MIN), node=1)   # node 1 full down to its min watermark
    age(lv0, 2)
    sc = ScanControl(proactive=is_proactive)
    evict_folios(ULONG_MAX, lv0, sc, 60)
    assert (mm.translate(page_addrs(vma.start, 20)) == pfns).all()
    assert k.vmstat["pgdemote_direct"] == 0 and k.vmstat["pgmigrate_fail"] == 20
    # proactive reclaim keeps them as they are; other reclaim retries without demotion, where
    # add_to_swap() fails (no swap) and they are activated. Either way they left the oldest gen.
    assert k.vmstat["pgactivate"] == (0 if is_proactive else 20)
    assert (list_gen(pm, pfns) == lru_gen_from_seq(lv0.lrugen.max_seq - 1)).all()


# ---- the debugfs '-' entry point ---------------------------------------------------------------
def test_run_eviction_errors(kernel, mm):
    lv = lv_of(kernel, 0)
    file_map(kernel, mm, 10)
    g = lv.lrugen
    before = snapshot(kernel)
    assert run_eviction(lv, g.max_seq - 1, proactive(), 60) == -errno.EINVAL
    assert run_eviction(lv, g.max_seq - 2, proactive(), 202) == -errno.EINVAL
    assert_same(before, snapshot(kernel))
    assert run_eviction(lv, g.max_seq - 2, proactive(), 60) == 0


def test_run_eviction_stops_at_nr_to_reclaim(kernel, mm):
    lv = lv_of(kernel, 0)
    f, _, _ = file_map(kernel, mm, 300)
    age(lv, 2)
    sc = proactive()
    assert run_eviction(lv, lv.lrugen.min_seq[FILE], sc, 60, nr_to_reclaim=100) == 0
    # a first batch of 64, then evict_folios(100 - 64) scans only 36 more
    assert sc.nr_reclaimed == 100 and (f.pages == -1).sum() == 100
    assert (f.pages[:100] == -1).all()


# ---- tiers and the PID controller --------------------------------------------------------------
def _inc_refs(pm, heads, times):
    for _ in range(times):
        lru_gen_inc_refs(pm, heads)


def test_with_zero_refault_counters_only_saturated_folios_are_protected(kernel, mm):
    pm = kernel.pm
    lv = lv_of(kernel, 0)
    f, _, pfns = file_map(kernel, mm, 124)
    age(lv, 2)
    g = lv.lrugen
    sat, ws, t2, plain = pfns[:8], pfns[8:16], pfns[16:24], pfns[24:]
    _inc_refs(pm, sat, 4)                               # refs 4 + workingset: saturated
    pm.flags[ws] |= PG_workingset                       # tier 3
    _inc_refs(pm, t2, 2)                                # refs 3: tier 2
    assert (folio_lru_refs(pm, sat) == 4).all() and (pm.flags[sat] & PG_workingset).all()
    assert (folio_lru_refs(pm, t2) == 3).all() and (folio_lru_refs(pm, plain) == 1).all()
    assert get_tier_idx(lv, FILE) == 3 and get_tier_idx(lv, ANON) == 3
    assert get_type_to_scan(lv, 60) == FILE
    old_min = g.min_seq[FILE]

    evict_folios(ULONG_MAX, lv, proactive(), 60)
    # the saturated folios were sorted to min_seq+1 and not counted as protected
    assert (f.pages[:8] == sat).all()
    assert (list_gen(pm, sat) == lru_gen_from_seq(old_min + 1)).all()
    assert g.protected.sum() == 0
    # everything else was isolated: 16 + 48 plain pages make 64
    assert (f.pages[8:72] == -1).all() and (f.pages[72:] == pfns[72:]).all()
    assert g.min_seq[FILE] == old_min                   # the oldest gen still holds 36 pages
    assert g.evicted[0, FILE].tolist() == [48, 0, 8, 8]


def test_pid_controller_protects_tiers_that_refault_more():
    sp = CtrlPos(refaulted=0, total=1000, gain=2)
    assert positive_ctrl_err(sp, CtrlPos(refaulted=63, total=63, gain=3))      # too few refaults
    assert not positive_ctrl_err(sp, CtrlPos(refaulted=500, total=1000, gain=3))
    assert positive_ctrl_err(CtrlPos(500, 1000, 2), CtrlPos(500, 1000, 3))


def test_a_protected_tier_is_sorted_and_counted(kernel, mm):
    pm = kernel.pm
    lv = lv_of(kernel, 0)
    f, _, pfns = file_map(kernel, mm, 108)
    age(lv, 2)
    g = lv.lrugen
    t1 = pfns[:8]
    _inc_refs(pm, t1, 1)                                # refs 2: tier 1
    g.avg_total[FILE, :2] = 1000
    g.avg_refaulted[FILE, 1] = 500                      # tier 1 refaults far more than tier 0
    assert get_tier_idx(lv, FILE) == 0
    old_min = g.min_seq[FILE]

    evict_folios(ULONG_MAX, lv, proactive(), 60)
    assert (f.pages[:8] == t1).all()
    assert (list_gen(pm, t1) == lru_gen_from_seq(old_min + 1)).all()
    assert g.protected[0, FILE].tolist() == [0, 8, 0, 0]
    assert (f.pages[8:72] == -1).all() and (f.pages[72:] == pfns[72:]).all()


def test_type_to_scan_follows_refaults_and_swappiness(kernel):
    lv = lv_of(kernel, 0)
    g = lv.lrugen
    assert get_type_to_scan(lv, 60) == FILE             # all counters 0
    assert get_type_to_scan(lv, 1) == FILE and get_type_to_scan(lv, 200) == ANON
    g.avg_total[:, 0] = 1000
    g.avg_refaulted[FILE, 0] = 1000                      # file refaults: scan anon instead
    assert get_type_to_scan(lv, 60) == ANON
    assert get_type_to_scan(lv, 0) == FILE


# ---- the stop rules of scan_folios (§7.4) ------------------------------------------------------
def test_scan_folios_stops_when_the_batch_is_used_up(kernel, mm):
    pm = kernel.pm
    lv = lv_of(kernel, 0)
    _, _, pfns = file_map(kernel, mm, 50)
    age(lv, 2)
    scanned, isolated = scan_folios(10, lv, proactive(), FILE, 3)
    assert scanned == 10 and (isolated == pfns[:10]).all()
    assert ((pm.flags[isolated] & PG_lru) == 0).all()
    assert (folio_lru_gen(pm, isolated) == -1).all()
    lru_gen_add_folio(lv, isolated)                     # put them back before the next check
    kernel.check()


def test_scan_folios_skips_then_splices_skipped_folios_to_the_head(kernel, mm):
    pm = kernel.pm
    lv = lv_of(kernel, 0)
    _, pfns = anon_map(mm, 100)
    age(lv, 2)
    gen = lru_gen_from_seq(lv.lrugen.min_seq[ANON])
    sc = proactive(gfp_mask=GFP_NOIO)                  # no IO: anon outside swapcache is skipped
    scanned, isolated = scan_folios(ULONG_MAX, lv, sc, ANON, 3)
    assert scanned == 0 and isolated.size == 0         # nothing isolated, batch not used up
    stamps = pm.lru_stamp[pfns].astype(np.int64)
    assert (list_gen(pm, pfns) == gen).all()
    # the 64 skipped (the oldest) are now the newest, in the order they were skipped
    assert stamps[:64].min() > stamps[64:].max()
    assert (np.diff(stamps[:64]) > 0).all() and (np.diff(stamps[64:]) > 0).all()
    kernel.check()


def test_eviction_leaves_no_young_bit_and_counts_consistent(kernel, mm):
    """A mixed run through run_eviction: the invariant checker runs after each evict_folios."""
    kernel.sysfs["numa/demotion_enabled"] = True
    lv = lv_of(kernel, 0)
    file_map(kernel, mm, 150)
    anon_map(mm, 150)
    age(lv, 2)
    assert run_eviction(lv, max(lv.lrugen.min_seq), proactive(), -1) == 0
    g = lv.lrugen
    assert (g.nr_pages >= 0).all()
    assert vmscan.evictable_min_seq(g.min_seq, 60) > 2
    assert kernel.vmstat["pgsteal_direct"] == 300
    kernel.check()


def test_get_tier_idx_reads_the_counters_read_ctrl_pos_reads(kernel):
    """get_tier_idx's one-pass sums (_tier_ctrl_sums) are read_ctrl_pos's, tier by tier, for
    both types and both history slots, and it picks the tier the read_ctrl_pos loop picks."""
    from tierscan.mm.constants import MAX_NR_TIERS
    from tierscan.mm.evict import _tier_ctrl_sums, positive_ctrl_err, read_ctrl_pos

    lv = lv_of(kernel, 0)
    g = lv.lrugen
    rng = np.random.default_rng(1)
    picked = set()
    for trial in range(60):
        for arr in (g.avg_refaulted, g.avg_total, g.refaulted, g.protected, g.evicted):
            arr[...] = rng.integers(0, 400, arr.shape)
        g.min_seq = [trial % 3, (trial + 1) % 3]
        for t in (0, 1):
            refaulted, total = _tier_ctrl_sums(lv, t)
            for tier in range(MAX_NR_TIERS):
                pos = read_ctrl_pos(lv, t, tier, 3)
                assert (refaulted[tier], total[tier]) == (pos.refaulted, pos.total)
            sp, tier = read_ctrl_pos(lv, t, 0, 2), 1
            while tier < MAX_NR_TIERS and positive_ctrl_err(sp, read_ctrl_pos(lv, t, tier, 3)):
                tier += 1
            assert get_tier_idx(lv, t) == tier - 1
            picked.add(tier - 1)
    assert len(picked) > 1                   # the draws reach more than one outcome


def test_scan_reads_past_a_long_run_of_sorted_folios_as_the_reference_does():
    """scan_folios reads the list tail in growing windows (128, 512, ... folios): 600 saturated
    folios at the tail are sorted and the 64 behind them isolated, exactly as the whole-range
    reference (which reads MAX_LRU_BATCH candidates at once) does."""
    out = []
    for reference in (False, True):
        k = Kernel(Machine.preset("laptop"), seed=0, debug=True)
        if reference:
            k.pm.lru_index = False
        mm = k.spawn("bench")
        lv = lv_of(k, 0)
        f, _, pfns = file_map(k, mm, 800)
        age(lv, 2)
        sat = pfns[:600]
        _inc_refs(k.pm, sat, 4)
        k.pm.flags[sat] |= PG_workingset                 # refs 4 + workingset: saturated
        evict_folios(ULONG_MAX, lv, proactive(), 60)
        out.append((f.pages.copy(), k.pm.list_gen.copy(), k.pm.lru_stamp.copy(),
                    k.vmstat["pgscan_direct"], k.vmstat["pgsteal_direct"]))
        assert (f.pages[600:664] == -1).all() and (f.pages[:600] == sat).all()
        assert (f.pages[664:] == pfns[664:]).all()
    for a, b in zip(*out):
        assert np.array_equal(a, b)
