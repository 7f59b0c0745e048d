"""The classic LRU (issue 13 item 6): lists per lruvec, the switch from/to MGLRU, shrink_lruvec
with active/inactive aging and the referenced/active promotion rules, and every detector
running on it (klruscand refusing)."""

import numpy as np
import pytest
from conftest import PAGE, page_addrs
from hypothesis import HealthCheck, given, settings, strategies as st

from tierscan import ConfigError
from tierscan.kernel import Kernel
from tierscan.machine import Machine
from tierscan.mm.classic_lru import (
    LRU_ACTIVE_ANON, LRU_ACTIVE_FILE, LRU_INACTIVE_ANON, LRU_INACTIVE_FILE, folio_mark_accessed,
    inactive_is_low, lru_list_heads, lru_sizes, shrink_lruvec_classic,
)
from tierscan.mm.constants import PG_active, PG_referenced, PG_workingset, _PAGE_ACCESSED
from tierscan.mm.evict import ScanControl
from tierscan.mm.pagetable import PageTable
from tierscan.mm.reclaim import shrink_node

CLASSIC = 0


def classic_kernel():
    k = Kernel(Machine.preset("laptop"), seed=0, debug=True)
    k.sysfs.write("lru_gen/enabled", "n")
    return k


def file_pages(k, mm, n):
    vma = mm.mmap(n * PAGE, kind="file")
    a = page_addrs(vma.start, n)
    mm.access(a, False)
    return vma, a


def make_old(mm, a):
    """Clear the young bits the faults installed (as if a scan had seen them long ago)."""
    mm.pt.pte[PageTable.slot(a)] &= ~_PAGE_ACCESSED


def old_file_pages_first_64_active(n):
    """A classic kernel with n file pages, young bits cleared, the first 64 activated (two
    folio_mark_accessed each). Returns (kernel, mm, vma, addresses, node 0's root lruvec)."""
    k = classic_kernel()
    mm = k.spawn("a")
    vma, a = file_pages(k, mm, n)
    make_old(mm, a)
    hot = vma.file.pages[:64].copy()
    folio_mark_accessed(k, hot)
    folio_mark_accessed(k, hot)
    return k, mm, vma, a, k.lruvec(k.root_memcg, 0)


def test_new_faulted_folios_start_on_the_inactive_list():
    k = classic_kernel()
    mm = k.spawn("a")
    file_pages(k, mm, 64)
    anon = mm.mmap(32 * PAGE)
    mm.access(page_addrs(anon.start, 32), True)
    lv = k.lruvec(k.root_memcg, 0)
    assert lru_sizes(lv).tolist() == [32, 0, 64, 0]


def test_switching_moves_folios_between_generations_and_lists():
    k = Kernel(Machine.preset("laptop"), seed=0, debug=True)
    mm = k.spawn("a")
    file_pages(k, mm, 64)                    # MGLRU: faulted folios join an active generation
    lv = k.lruvec(k.root_memcg, 0)
    k.sysfs.write("lru_gen/enabled", "n")    # drain_evictable: active gen -> active list
    assert lru_sizes(lv)[LRU_ACTIVE_FILE] == 64 and lv.lrugen.nr_pages.sum() == 0
    k.sysfs.write("lru_gen/enabled", "y")    # fill_evictable: back into the generations
    assert lv.lrugen.nr_pages.sum() == 64 and lru_sizes(lv).sum() == 0
    k.check()


def test_under_pressure_pages_leave_the_inactive_list_first():
    """Active folios survive a reclaim pass that frees the inactive ones."""
    k = classic_kernel()
    mm = k.spawn("a")
    vma, a = file_pages(k, mm, 256)
    make_old(mm, a)
    hot = vma.file.pages[:64].copy()
    folio_mark_accessed(k, hot)               # PG_referenced
    folio_mark_accessed(k, hot)               # activated
    lv = k.lruvec(k.root_memcg, 0)
    assert lru_sizes(lv)[LRU_ACTIVE_FILE] == 64
    assert ((k.pm.flags[hot] & PG_active) != 0).all()
    sc = ScanControl(nr_to_reclaim=192, priority=0)
    shrink_lruvec_classic(lv, sc)
    assert sc.nr_reclaimed == 192
    assert (vma.file.pages[:64] >= 0).all()          # the active ones are all still cached
    assert (vma.file.pages[64:256] < 0).all()        # the inactive ones went


def test_pages_accessed_between_scans_survive():
    """First pass: a young mapping gives PG_referenced and another trip; accessed again before
    the second pass, the folio is activated; the unaccessed ones are reclaimed."""
    k = classic_kernel()
    mm = k.spawn("a")
    vma, a = file_pages(k, mm, 128)
    make_old(mm, a)
    mm.access(a[:32], False)                          # used before the first pass
    lv = k.lruvec(k.root_memcg, 0)
    shrink_lruvec_classic(lv, ScanControl(nr_to_reclaim=10**6, priority=0))
    pfns = vma.file.pages[:32]
    assert (pfns >= 0).all() and (vma.file.pages[32:128] < 0).all()
    assert ((k.pm.flags[pfns] & PG_referenced) != 0).all()
    assert ((k.pm.flags[pfns] & PG_active) == 0).all()    # kept on the inactive list
    mm.access(a[:16], False)                          # used again between the scans
    shrink_lruvec_classic(lv, ScanControl(nr_to_reclaim=10**6, priority=0))
    assert (vma.file.pages[:16] >= 0).all()
    assert ((k.pm.flags[vma.file.pages[:16]] & PG_active) != 0).all()    # activated
    assert (vma.file.pages[16:32] < 0).all()          # not used again: reclaimed
    assert k.vmstat["pgactivate"] >= 16


def test_active_list_is_aged_when_the_inactive_list_is_low():
    k = classic_kernel()
    mm = k.spawn("a")
    vma, a = file_pages(k, mm, 128)
    lv = k.lruvec(k.root_memcg, 0)
    folio_mark_accessed(k, vma.file.pages[:128])
    folio_mark_accessed(k, vma.file.pages[:128])      # everything active
    assert inactive_is_low(lv, LRU_INACTIVE_FILE)
    shrink_lruvec_classic(lv, ScanControl(nr_to_reclaim=32, priority=0))
    assert k.vmstat["pgdeactivate"] > 0 and lru_sizes(lv)[LRU_INACTIVE_FILE] > 0
    assert not inactive_is_low(lv, LRU_INACTIVE_FILE) or lru_sizes(lv)[LRU_ACTIVE_FILE] == 0


def test_anon_is_demoted_by_node_reclaim_on_the_classic_lru():
    k = classic_kernel()
    k.sysfs["numa/demotion_enabled"] = True
    mm = k.spawn("a")
    anon = mm.mmap(256 * PAGE)
    a = page_addrs(anon.start, 256)
    mm.access(a, True)
    make_old(mm, a)
    sc = ScanControl(nr_to_reclaim=128, priority=0)
    shrink_node(k, 0, sc)
    assert k.vmstat["pgdemote_direct"] > 0
    assert (k.node_of(mm.translate(a)) >= 0).all()    # still mapped, wherever it lives
    assert lru_sizes(k.lruvec(k.root_memcg, 1))[LRU_INACTIVE_ANON] + \
        lru_sizes(k.lruvec(k.root_memcg, 1))[LRU_ACTIVE_ANON] > 0


def test_migration_keeps_the_list():
    k = classic_kernel()
    mm = k.spawn("a")
    vma, a = file_pages(k, mm, 8)
    pfns = vma.file.pages[:8].copy()
    folio_mark_accessed(k, pfns[:4])
    folio_mark_accessed(k, pfns[:4])
    mm.move_pages(a, 1)
    lv1 = k.lruvec(k.root_memcg, 1)
    assert lru_sizes(lv1)[LRU_ACTIVE_FILE] == 4 and lru_sizes(lv1)[LRU_INACTIVE_FILE] == 4
    assert sorted(lru_list_heads(lv1, LRU_ACTIVE_FILE).tolist()) == \
        sorted(vma.file.pages[:4].tolist())


def test_klruscand_refuses_the_classic_lru():
    from tierscan.sim.config import config_from_dict
    from tierscan.sim.run import build_engine

    doc = {"machine": {"preset": "laptop"}, "duration": "100ms",
           "workload": {"name": "hotset", "size": "8MiB"},
           "detectors": [{"name": "klruscand"}], "sysfs": {"lru_gen/enabled": CLASSIC}}
    with pytest.raises(ConfigError, match="klruscand needs MGLRU"):
        build_engine(config_from_dict(doc, "<test>"))


# ---- hypothesis: faults, accesses, reclaim and switches keep Kernel.check() clean -----------
ops = st.lists(st.one_of(
    st.tuples(st.just("touch"), st.integers(0, 1), st.integers(0, 255), st.integers(1, 64),
              st.booleans()),
    st.tuples(st.just("old"), st.integers(0, 1)),
    st.tuples(st.just("reclaim"), st.integers(0, 1), st.integers(1, 256), st.integers(0, 12)),
    st.tuples(st.just("accessed"), st.integers(0, 1), st.integers(0, 255), st.integers(1, 32)),
    st.tuples(st.just("switch"), st.booleans()),
    st.tuples(st.just("move"), st.integers(0, 1), st.integers(0, 255), st.integers(1, 32),
              st.integers(0, 1)),
), min_size=1, max_size=25)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_mixed_sequences_keep_the_invariants(seq):
    k = classic_kernel()
    k.sysfs["numa/demotion_enabled"] = True
    mm = k.spawn("a")
    vmas = [mm.mmap(256 * PAGE, kind="file"), mm.mmap(256 * PAGE)]
    for op in seq:
        if op[0] == "touch":
            v = vmas[op[1]]
            n = min(op[3], 256 - op[2])
            mm.access(page_addrs(v.start, n, op[2]), op[4])
        elif op[0] == "old":
            v = vmas[op[1]]
            make_old(mm, page_addrs(v.start, 256))
        elif op[0] == "reclaim":
            shrink_node(k, op[1], ScanControl(nr_to_reclaim=op[2], priority=op[3]))
        elif op[0] == "accessed":
            f = vmas[0].file
            p = f.pages[op[2]:op[2] + op[3]]
            folio_mark_accessed(k, p[p >= 0])
        elif op[0] == "switch":
            k.sysfs["lru_gen/enabled"] = 0x7 if op[1] else 0
        elif op[0] == "move":
            v = vmas[op[1]]
            n = min(op[3], 256 - op[2])
            mm.move_pages(page_addrs(v.start, n, op[2]), op[4])
        k.check()


# ---- a working set larger than DRAM, under the classic LRU ------------------------------------
@pytest.mark.parametrize("setup", [
    pytest.param(v, id=k) for k, v in
    __import__("test_pressure_engine").DETECTORS.items() if k in ("oracle", "numab2")])
def test_working_set_larger_than_dram_steady_state_on_the_classic_lru(setup):
    from test_pressure_engine import WSS_MACHINE, dram_share_of_hot_pages, run

    dets, engine = setup
    e = run({"name": "wss-larger", "size": "32MiB", "alpha": 1.1, "populate": True},
            dets, engine, duration="10s", machine=WSS_MACHINE,
            sysfs={"kernel/numa_balancing": 2, "lru_gen/enabled": CLASSIC})
    g = e.groups[0]
    base = float((e.kernel.node_of(g.mm.translate(g.addrs)) == 0).mean())
    share = dram_share_of_hot_pages(e)
    assert share > base + 0.1, (share, base)
    hit = e.results()["series"]["fast_tier_hit_ratio"]
    assert np.nanmean(hit[-10:]) > hit[1] + 0.1
    assert np.nanstd(hit[-10:]) < 0.05
    assert e.kernel.vmstat["pgdemote_kswapd"] > 0
    assert e.kernel.vmstat["pgrefill"] > 0                 # the classic lists were aged


@pytest.mark.parametrize("det", [{"name": "kscand"}, {"name": "damon"}, {"name": "ibs"}])
def test_other_detectors_run_on_the_classic_lru(det):
    from test_pressure_engine import WSS_MACHINE, run

    e = run({"name": "wss-larger", "size": "32MiB", "alpha": 1.1, "populate": True},
            [det], None, duration="2s", machine=WSS_MACHINE,
            sysfs={"kernel/numa_balancing": 2, "lru_gen/enabled": CLASSIC})
    assert e.now == 2_000_000_000 and e.kernel.lruvec(e.kernel.root_memcg, 0).lrugen.nr_pages.sum() == 0


# ---- classic refaults: the eviction counter (mm/workingset.c) ---------------------------------
def test_classic_refault_is_activated_when_its_distance_fits_the_workingset():
    """Evictions and activations age the lruvec (nonresident_age); the shadow keeps the age at
    eviction. A page evicted long ago (distance 192 > the 64 active file pages) refaults onto
    the inactive list; the last one evicted (distance 1) is activated."""
    from tierscan.mm.workingset import nonresident_age

    k, mm, vma, a, lv = old_file_pages_first_64_active(256)     # 64 activations age the lruvec
    assert nonresident_age(lv) == 64
    shrink_lruvec_classic(lv, ScanControl(nr_to_reclaim=192, priority=0))
    assert nonresident_age(lv) == 64 + 192 and (vma.file.pages[64:] < 0).all()
    mm.access(a[64:65], False)                           # evicted first: distance 192
    assert k.vmstat["workingset_refault_file"] == 1
    assert k.vmstat["workingset_activate_file"] == 0
    assert (k.pm.flags[vma.file.pages[64]] & PG_active) == 0
    mm.access(a[255:256], False)                         # evicted last: distance 1
    assert k.vmstat["workingset_refault_file"] == 2
    assert k.vmstat["workingset_activate_file"] == 1
    assert (k.pm.flags[vma.file.pages[255]] & PG_active) != 0
    assert lru_sizes(lv)[LRU_ACTIVE_FILE] == 65 and nonresident_age(lv) == 64 + 192 + 1
    k.check()


def test_classic_refault_restores_the_workingset_flag():
    """A folio deactivated by shrink_active_list carries PG_workingset; evicted and refaulted
    within the distance it is activated with PG_workingset again (workingset_restore_file)."""
    k = classic_kernel()
    mm = k.spawn("a")
    vma, a = file_pages(k, mm, 64)
    make_old(mm, a)
    pfns = vma.file.pages[:64].copy()
    k.pm.flags[pfns] |= PG_workingset
    other, b = file_pages(k, mm, 64)
    folio_mark_accessed(k, other.file.pages)
    folio_mark_accessed(k, other.file.pages)             # 64 active pages: the workingset
    lv = k.lruvec(k.root_memcg, 0)
    shrink_lruvec_classic(lv, ScanControl(nr_to_reclaim=64, priority=0))
    assert (vma.file.pages < 0).all()
    mm.access(a[63:64], False)
    assert k.vmstat["workingset_restore_file"] == 1
    assert (k.pm.flags[vma.file.pages[63]] & PG_workingset) != 0


def test_classic_swap_in_is_a_refault_with_the_eviction_counter():
    """Anon pages swapped out under the classic LRU leave eviction-counter shadows in their
    swap slots; touching one again counts workingset_refault_anon (before: no shadow, no
    refault). It is not activated: its distance (at least its own page) exceeds the
    workingset size for an anon refault (active + inactive file, and with free swap the
    active anon list), which is 0 here: nothing was ever activated."""
    from test_pressure import is_swap_pte, make_kernel, room

    from tierscan.mm.physmem import WMARK_MIN
    from tierscan.mm.swap import pte_to_swp_offset
    from tierscan.mm.workingset import workingset_size

    k = make_kernel(("16MiB", "16MiB"))
    k.sysfs.write("lru_gen/enabled", "n")
    k.swapon(4096 * PAGE)
    mm = k.spawn("p")
    n = room(k, 0, WMARK_MIN) + 200
    vma = mm.mmap(n * PAGE, policy="bind", nodes=[0])
    mm.access(page_addrs(vma.start, n), True)             # the overflow swaps some out
    swapped = np.flatnonzero(is_swap_pte(mm.pt.pte[vma.start_slot:vma.end_slot]))
    assert swapped.size >= 200 and k.vmstat["workingset_refault_anon"] == 0
    offs = pte_to_swp_offset(mm.pt.pte[vma.start_slot + swapped])
    assert (k.swap.shadow[offs] != 0).all()
    assert workingset_size(k, k.root_memcg, 0, file=False) == 0
    mm.access(page_addrs(vma.start, 1, int(swapped[-1])), False)
    # one major fault; it and each page read ahead with it (swap_ra) refault
    assert k.vmstat["pgmajfault"] == 1 and k.vmstat["pswpin"] == 1 + k.vmstat["swap_ra"]
    assert k.vmstat["workingset_refault_anon"] == k.vmstat["pswpin"]
    assert k.vmstat["workingset_activate_anon"] == 0
    k.check()


def test_refaults_let_reclaim_deactivate_the_active_list():
    """prepare_scan_control(): when the target lruvec's WORKINGSET_ACTIVATE_* moved since the
    last snapshot_refaults() (a new workingset is forming), reclaim may deactivate the active
    list even though the inactive list is not low; without refaults it leaves it alone, and
    the snapshot at the end of the run (do_try_to_free_pages) makes it one-shot."""
    from tierscan.mm.reclaim import try_to_free_pages
    from tierscan.mm.workingset import count_workingset_activate

    k, _, _, _, lv = old_file_pages_first_64_active(512)     # 64 active, 448 inactive
    assert not inactive_is_low(lv, LRU_INACTIVE_FILE)
    try_to_free_pages(k, [0], 0, 32)
    assert k.vmstat["pgdeactivate"] == 0                   # no refaults: active left alone
    count_workingset_activate(lv, 1, 3)                    # three file refaults activated
    assert k.vmstat["workingset_activate_file"] == 3
    try_to_free_pages(k, [0], 0, 32)
    moved = k.vmstat["pgdeactivate"]
    assert moved > 0                                       # stale active pages deactivated
    try_to_free_pages(k, [0], 0, 32)
    assert k.vmstat["pgdeactivate"] == moved               # snapshot taken: no new refaults
    k.check()
