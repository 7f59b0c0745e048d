"""Memory pressure in the kernel model: kswapd, direct reclaim, demotion, swap and refaults
(issue 13 items 1-5). Every kernel here is a debug kernel: Kernel.check() (page conservation,
mappings, swap entries and the content tag of every page) runs after every operation."""

import numpy as np
import pytest
from conftest import PAGE, make_kernel, page_addrs

from tierscan import OutOfMemory
from tierscan.mm import vmscan
from tierscan.mm.kswapd import (
    ASLEEP, RUNNING, SHORT_SLEEP, KSWAPD_SHORT_SLEEP_NS, MAX_RECLAIM_RETRIES, balance_pgdat,
    kswapd_run, pgdat_balanced,
)
from tierscan.mm.physmem import WMARK_HIGH, WMARK_LOW, WMARK_MIN, WMARK_PROMO
from tierscan.mm.swap import is_swap_pte, pte_to_swp_offset, swp_entry_to_pte


def fill(k, mm, nid, pages, populate=True):
    """An anon mapping bound to ``nid``, written page by page (oldest first)."""
    vma = mm.mmap(pages * PAGE, policy="bind", nodes=[nid], populate=populate)
    return vma


def below_low(k, nid):
    return int(k.pm.node_free[nid]) < int(k.pm.watermarks[nid, WMARK_LOW])


def tiering_kernel(caps=("16MiB", "64MiB")):
    k = make_kernel(caps)
    k.sysfs["numa/demotion_enabled"] = True
    return k


def room(k, nid, mark=WMARK_LOW):
    return int(k.pm.node_free[nid] - k.pm.watermarks[nid, mark])


# ---- swap entries ----------------------------------------------------------------------------
def test_swap_pte_encoding_round_trips_and_is_not_present():
    offs = np.array([0, 1, 12345, (1 << 40) - 1])
    e = swp_entry_to_pte(offs)
    assert is_swap_pte(e).all() and (pte_to_swp_offset(e) == offs).all()
    assert not is_swap_pte(np.array([0], np.uint64)).any()


# ---- kswapd ----------------------------------------------------------------------------------
def test_kswapd_demotes_oldest_first_to_high_and_keeps_the_data():
    k = tiering_kernel()
    mm = k.spawn("p")
    old = fill(k, mm, 0, room(k, 0, WMARK_LOW) // 2)
    lv = k.lruvec(k.root_memcg, 0)
    for _ in range(2):                              # the old half ages twice
        vmscan.try_to_inc_max_seq(lv, lv.lrugen.max_seq, 60, True)
    new = mm.mmap(room(k, 0, WMARK_MIN) * PAGE, policy="bind", nodes=[0], populate=True)
    assert below_low(k, 0) and k.kswapd[0].woken and k.kswapd[0].state == ASLEEP
    content = mm.pt.content.copy()
    assert kswapd_run(k, 0, now_ns=0)
    assert pgdat_balanced(k, 0) and int(k.pm.node_free[0]) > int(k.pm.watermarks[0, WMARK_HIGH])
    n_old = old.nr_pages
    on = k.node_of(mm.translate(page_addrs(old.start, n_old)))
    # MGLRU evicts the oldest generation first: every demoted page is from the aged half
    assert (on == 1).sum() > 0
    assert (k.node_of(mm.translate(page_addrs(new.start, new.nr_pages))) == 0).all()
    demoted = int((on == 1).sum())
    assert k.vmstat["pgdemote_kswapd"] == demoted and k.vmstat["pgdemote_direct"] == 0
    assert k.vmstat["pgsteal_kswapd"] >= demoted and k.vmstat["pgscan_kswapd"] >= demoted
    # every page still mapped at its address with the same data
    assert (mm.translate(page_addrs(old.start, n_old)) >= 0).all()
    assert (mm.pt.content == content).all()
    assert k.kswapd[0].state == SHORT_SLEEP


def test_kswapd_short_sleep_counts_low_and_high_wmark_hit_quickly():
    k = tiering_kernel()
    mm = k.spawn("p")
    fill(k, mm, 0, room(k, 0, WMARK_MIN))
    kd = k.kswapd[0]
    assert kd.woken
    kswapd_run(k, 0, 0)
    assert kd.state == SHORT_SLEEP
    # an allocation finds the node below LOW within HZ/10: low_wmark_hit_quickly
    fill(k, mm, 0, room(k, 0, WMARK_MIN))
    assert kd.woken
    kswapd_run(k, 0, KSWAPD_SHORT_SLEEP_NS // 2)
    assert k.vmstat["kswapd_low_wmark_hit_quickly"] == 1
    # a quiet short sleep ends in the full sleep: nothing counted, woken only by an allocation
    kswapd_run(k, 0, 10 * KSWAPD_SHORT_SLEEP_NS)
    assert kd.state == ASLEEP and k.vmstat["kswapd_high_wmark_hit_quickly"] == 0
    assert not kswapd_run(k, 0, 20 * KSWAPD_SHORT_SLEEP_NS)


def test_kswapd_balances_to_promo_in_tiering_mode():
    k = tiering_kernel()
    k.sysfs["kernel/numa_balancing"] = 2
    mm = k.spawn("p")
    fill(k, mm, 0, room(k, 0, WMARK_MIN))
    balance_pgdat(k, 0)
    assert int(k.pm.node_free[0]) > int(k.pm.watermarks[0, WMARK_PROMO])


def test_watermark_scale_factor_moves_the_watermarks():
    k = make_kernel(("64MiB", "64MiB"))
    wm = k.pm.watermarks.copy()
    k.sysfs["vm/watermark_scale_factor"] = 1000           # 10 %
    gap = k.pm.watermarks[0, WMARK_LOW] - k.pm.watermarks[0, WMARK_MIN]
    assert gap == int(k.pm.node_present[0]) * 1000 // 10000
    assert (k.pm.watermarks[:, WMARK_HIGH] > wm[:, WMARK_HIGH]).all()


def test_kswapd_without_anything_to_reclaim_gives_up_after_16_failures():
    k = make_kernel(("16MiB", "64MiB"))                   # no demotion, no swap
    mm = k.spawn("p")
    fill(k, mm, 0, room(k, 0, WMARK_MIN))
    for i in range(MAX_RECLAIM_RETRIES):
        assert balance_pgdat(k, 0) == 0
    assert k.kswapd[0].failures == MAX_RECLAIM_RETRIES
    k.kswapd[0].woken = False
    k.wakeup_kswapd(0)
    assert not k.kswapd[0].woken                          # hopeless: left to direct reclaim


# ---- direct reclaim ----------------------------------------------------------------------------
def test_direct_reclaim_demotes_instead_of_oom():
    k = tiering_kernel()
    mm = k.spawn("p")
    n = room(k, 0, WMARK_MIN) + 300                       # more than node 0 can give
    vma = mm.mmap(n * PAGE, policy="bind", nodes=[0])
    lv = k.lruvec(k.root_memcg, 0)
    half = n // 2
    mm.access(page_addrs(vma.start, half), True)
    vmscan.try_to_inc_max_seq(lv, lv.lrugen.max_seq, 60, True)
    vmscan.try_to_inc_max_seq(lv, lv.lrugen.max_seq, 60, True)
    mm.access(page_addrs(vma.start, n - half, half), True)   # below MIN: direct reclaim
    assert k.vmstat["allocstall_movable"] > 0 and k.vmstat["pgdemote_direct"] > 0
    nodes = k.node_of(mm.translate(page_addrs(vma.start, n)))
    assert (nodes >= 0).all() and (nodes[half:] == 0).all()   # bind: new pages on node 0
    assert ((nodes == 1) == (np.arange(n) < half) & (nodes == 1)).all()


def test_oom_only_when_everything_failed_and_the_error_says_what_was_tried():
    k = make_kernel(("16MiB", "16MiB"))
    k.sysfs["numa/demotion_enabled"] = True
    k.swapon(64 * PAGE)
    mm = k.spawn("p")
    total = room(k, 0, WMARK_MIN) + room(k, 1, WMARK_MIN) + 64
    vma = mm.mmap((total + 10) * PAGE, policy="bind", nodes=[0, 1])
    mm.access(page_addrs(vma.start, total), True)         # fits: demotion and swap made room
    assert k.swap.nr_free() == 0 and k.vmstat["pswpout"] == 64
    with pytest.raises(OutOfMemory) as e:
        mm.access(page_addrs(vma.start, 10, total), True)
    msg = str(e.value)
    assert "nodes [0, 1]" in msg and "direct reclaim" in msg and "kswapd woken" in msg
    assert "swap 0 of 64 slot(s) free" in msg and "demotion from nodes [0]" in msg


# ---- swap ------------------------------------------------------------------------------------
def swap_kernel():
    k = make_kernel(("16MiB", "16MiB"))
    k.swapon(4096 * PAGE)
    return k


def test_anon_pages_swap_out_and_back_in_with_their_data():
    k = swap_kernel()
    mm = k.spawn("p")
    n = room(k, 0, WMARK_MIN) + 200
    vma = mm.mmap(n * PAGE, policy="bind", nodes=[0])
    mm.access(page_addrs(vma.start, n), True)             # the overflow swaps the oldest out
    swapped = np.flatnonzero(is_swap_pte(mm.pt.pte[vma.start_slot:vma.end_slot]))
    assert swapped.size >= 200 and k.vmstat["pswpout"] == swapped.size
    assert swapped.max() < n - 200                        # the oldest pages went
    tags = mm.pt.content[vma.start_slot + swapped].copy()
    assert (tags != 0).all()
    # touch them again: major faults read them back, each with its own data (swap readahead:
    # the slots were handed out in order from 0, so the faults at slots 0, 1, 2, 4, 8, 16 and
    # 24 read windows of 1, 2, 2, 4, 8, 8 and 8 pages, mm/swap_state.py)
    before = k.vmstat["pgmajfault"]
    mm.access(page_addrs(vma.start, 32, int(swapped[0])), False)
    back = vma.start_slot + swapped[:32]
    assert k.vmstat["pswpin"] >= 32 and k.vmstat["pgmajfault"] - before == 7
    pfns = mm.translate(page_addrs(vma.start, 32, int(swapped[0])))
    assert (k.pm.content[pfns] == tags[:32]).all() and (mm.pt.content[back] == tags[:32]).all()
    # a refault of a recently evicted page reaches the PID controller's refaulted[]
    assert k.vmstat["workingset_refault_anon"] >= 32
    lv = k.lruvec(k.root_memcg, 0)
    assert lv.lrugen.refaulted[:, 0].sum() > 0 and k.vmstat["workingset_activate_anon"] > 0


def test_swappiness_zero_keeps_anon_and_drops_file():
    k = swap_kernel()
    k.sysfs["vm/swappiness"] = 0
    mm = k.spawn("p")
    f = k.open_file("data", 400 * PAGE)
    mm.mmap(400 * PAGE, kind="file", file=f, prot="r", populate=True, policy="bind", nodes=[0])
    n = room(k, 0, WMARK_MIN) + 100
    vma = mm.mmap(n * PAGE, policy="bind", nodes=[0])
    mm.access(page_addrs(vma.start, n), True)
    assert k.vmstat["pswpout"] == 0 and (f.pages == -1).sum() >= 100


def test_munmap_frees_swap_slots():
    k = swap_kernel()
    mm = k.spawn("p")
    n = room(k, 0, WMARK_MIN) + 100
    vma = mm.mmap(n * PAGE, policy="bind", nodes=[0])
    mm.access(page_addrs(vma.start, n), True)
    assert k.swap.nr_free() < k.swap.nr_slots
    mm.munmap(vma.start, n * PAGE)
    assert k.swap.nr_free() == k.swap.nr_slots


# ---- file refaults ----------------------------------------------------------------------------
def test_dropped_file_page_refaults_with_its_data_and_is_counted():
    k = make_kernel(("16MiB", "16MiB"))
    mm = k.spawn("p")
    f = k.open_file("data", 300 * PAGE)
    fv = mm.mmap(300 * PAGE, kind="file", file=f, prot="r", populate=True, policy="bind",
                 nodes=[0])
    tags = f.content.copy()
    n = room(k, 0, WMARK_MIN) + 100
    vma = mm.mmap(n * PAGE, policy="bind", nodes=[0])
    mm.access(page_addrs(vma.start, n), True)             # no swap: the file pages go
    gone = np.flatnonzero(f.pages == -1)
    assert gone.size >= 100 and (f.shadow[gone] != 0).all()
    k.debug = True
    mm.munmap(vma.start, n * PAGE)                        # room again
    mm.access(page_addrs(fv.start, gone.size, 0), False)
    assert k.vmstat["workingset_refault_file"] == gone.size
    assert (f.content == tags).all()
    assert (k.pm.content[f.pages[gone]] == tags[gone]).all()


def test_page_idle_users_hand_the_young_bits_they_clear_to_reclaim():
    """damon_ptep_mkold() (mm/damon/ops-common.c) sets PG_young when it clears a young A bit,
    and folio_referenced_one() (mm/rmap.c) ends with `if (folio_test_clear_young(folio))
    referenced++`: an access DAMON (or kscand's page-idle scan) took off the PTE still keeps
    the folio from reclaim, once. Before PG_young was modelled, reclaim found such folios
    unreferenced and kswapd demoted hot pages as readily as cold ones. The flag follows the
    folio through migration (folio_migrate_flags), and the classic LRU's count sees it too."""
    from tierscan import Kernel, Machine
    from tierscan.hotness.damon import damon_folio_mkold, rmap_young
    from tierscan.mm.classic_lru import folio_referenced_ptes
    from tierscan.mm.evict import folio_referenced
    from tierscan.mm.migrate import migrate_folios

    k = Kernel(Machine.preset("laptop"), seed=0, debug=True)
    mm = k.spawn("t")
    vma = mm.mmap(3 * 4096, populate=True)
    addrs = vma.start + 4096 * np.arange(3, dtype=np.uint64)
    pfns = mm.translate(addrs)
    rmap_young(k, pfns, clear=True)                  # aged by someone else: no PG_young
    mm.access(addrs[:2], False)                      # pages 0 and 1 young, page 2 not
    damon_folio_mkold(k, pfns)
    assert not mm.young(addrs).any()                 # DAMON took every A bit
    assert migrate_folios(k, pfns[1:2], 1).all()     # page 1 moves to CXL with its PG_young
    pfns = mm.translate(addrs)
    assert folio_referenced(k, pfns[:1]).tolist() == [True]
    assert folio_referenced_ptes(k, pfns[1:]).tolist() == [1, 0]
    assert folio_referenced(k, pfns).tolist() == [False, False, False]   # taken once
    k.check()
