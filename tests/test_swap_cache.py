"""The swap cache and swap readahead (issue 13 item 4; mm/swap.py): a swapped-in page stays in
the swap cache and is not written again when evicted clean; a fault reads its aligned
vm.page-cluster window into the cache (swap_cluster_readahead), the neighbours unmapped; the
content tag of every page survives swap-out, readahead, migration and the fault. Every kernel
is a debug kernel (Kernel.check() after each mm operation); direct calls check explicitly."""

import numpy as np
import pytest
from conftest import PAGE, make_kernel, page_addrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tierscan import ConfigError
from tierscan.errors import InvariantError
from tierscan.mm.constants import PG_lru, PG_swapcache
from tierscan.mm.migrate import migrate_folios
from tierscan.mm.swap import is_swap_pte, pte_to_swp_offset, swap_out_folios


def swap_kernel(slots=4096, caps=("16MiB", "16MiB")):
    k = make_kernel(caps)
    k.swapon(slots * PAGE)
    return k


def anon(k, n, nid=0):
    """A process with ``n`` written anon pages bound to ``nid``."""
    mm = k.spawn("p")
    vma = mm.mmap(n * PAGE, policy="bind", nodes=[nid])
    mm.access(page_addrs(vma.start, n), True)
    return mm, vma


def swap_out(k, mm, vma, pages):
    """shrink_folio_list's anon branch on the folios mapping ``pages`` of the VMA (isolated
    first, as reclaim would), then Kernel.check()."""
    pfns = mm.translate(np.uint64(vma.start) + np.uint64(PAGE) * np.asarray(pages, np.uint64))
    k.lru_del(pfns)
    lv = k.lruvec(k.root_memcg, 0)
    ok = swap_out_folios(k, lv, pfns)
    k.lru_add(pfns[~ok])
    k.check()
    return ok


def swapped(mm, vma):
    return np.flatnonzero(is_swap_pte(mm.pt.pte[vma.start_slot:vma.end_slot]))


def slot_of_page(mm, vma, pages):
    return pte_to_swp_offset(mm.pt.pte[vma.start_slot + np.asarray(pages)])


# ---- the swap cache ----------------------------------------------------------------------------
def test_a_swapped_in_page_evicted_again_clean_is_not_written_again():
    k = swap_kernel()
    k.sysfs["vm/page-cluster"] = 0
    mm, vma = anon(k, 64)
    assert swap_out(k, mm, vma, range(64)).all() and k.vmstat["pswpout"] == 64
    slots = slot_of_page(mm, vma, range(64))
    mm.access(page_addrs(vma.start, 32), False)          # read back: they stay in the cache
    assert k.vmstat["pswpin"] == 32 and k.swap.nr_free() == k.swap.nr_slots - 64
    assert swap_out(k, mm, vma, range(32)).all()
    assert k.vmstat["pswpout"] == 64                     # clean copies: no second write
    assert (slot_of_page(mm, vma, range(32)) == slots[:32]).all()


def test_a_page_written_after_swap_in_is_written_again():
    k = swap_kernel()
    k.sysfs["vm/page-cluster"] = 0
    mm, vma = anon(k, 16)
    swap_out(k, mm, vma, range(16))
    mm.access(page_addrs(vma.start, 16), False)          # read-only, in the swap cache
    mm.access(page_addrs(vma.start, 4), True)            # a store dirties four of them
    swap_out(k, mm, vma, range(16))
    assert k.vmstat["pswpout"] == 16 + 4


def test_a_write_fault_frees_the_slot_and_the_next_eviction_writes_a_new_one():
    """should_try_to_free_swap(): a store fault frees the swap (folio_free_swap)."""
    k = swap_kernel()
    k.sysfs["vm/page-cluster"] = 0
    mm, vma = anon(k, 16)
    swap_out(k, mm, vma, range(16))
    mm.access(page_addrs(vma.start, 16), True)
    assert k.swap.nr_free() == k.swap.nr_slots
    assert not (k.pm.flags[mm.translate(page_addrs(vma.start, 16))] & PG_swapcache).any()
    swap_out(k, mm, vma, range(16))
    assert k.vmstat["pswpout"] == 32


def test_a_read_fault_frees_the_slot_when_swap_is_more_than_half_full():
    """mem_cgroup_swap_full() -> vm_swap_full(): fewer than half the slots free."""
    k = swap_kernel(slots=96)
    k.sysfs["vm/page-cluster"] = 0
    mm, vma = anon(k, 64)
    swap_out(k, mm, vma, range(64))
    mm.access(page_addrs(vma.start, 1), False)           # 32 of 96 free: full, freed
    assert k.swap.nr_free() == 33
    mm.access(page_addrs(vma.start, 1, 40), False)       # 33 free: still full
    assert k.swap.nr_free() == 34


# ---- swap readahead ----------------------------------------------------------------------------
@pytest.mark.parametrize("cluster", [0, 1, 3, 4])
def test_a_sequential_reread_takes_one_major_fault_per_window(cluster):
    k = swap_kernel()
    k.sysfs["vm/page-cluster"] = cluster
    mm, vma = anon(k, 256)
    swap_out(k, mm, vma, range(256))
    assert (slot_of_page(mm, vma, range(256)) == np.arange(256)).all()
    before = k.vmstat["pgmajfault"]
    mm.access(page_addrs(vma.start, 256), False)
    majors = k.vmstat["pgmajfault"] - before
    assert majors == 256 >> cluster                       # 1/8 of them at the default 3
    assert k.vmstat["pswpin"] == 256 and k.vmstat["swap_ra"] == 256 - majors
    assert k.vmstat["swap_ra_hit"] == 256 - majors
    assert k.vmstat["pgfault"] - 256 == 256                # the first touches, then these


def test_readahead_neighbours_stay_unmapped_in_the_swap_cache():
    k = swap_kernel()
    mm, vma = anon(k, 64)
    tags = mm.pt.content[vma.start_slot:vma.end_slot].copy()
    swap_out(k, mm, vma, range(64))
    mm.access(page_addrs(vma.start, 1, 13), False)       # slot 13: window 8..15 (13 & ~7)
    assert k.vmstat["pgmajfault"] - 0 >= 1 and k.vmstat["swap_ra"] == 7
    cache = k.swap.cache
    assert (cache[8:16] >= 0).all() and (cache[:8] < 0).all() and (cache[16:64] < 0).all()
    pfns = cache[8:16]
    assert (k.pm.flags[pfns] & PG_swapcache).all() and (k.pm.flags[pfns] & PG_lru).all()
    assert k.pm.mapcount[pfns].tolist() == [0, 0, 0, 0, 0, 1, 0, 0]
    still = np.r_[8:13, 14:16]
    assert is_swap_pte(mm.pt.pte[vma.start_slot + still]).all()
    assert (k.pm.content[pfns] == tags[8:16]).all()       # the neighbours hold their data
    assert k.swap.readahead[still].all() and not k.swap.readahead[13]
    mm.access(page_addrs(vma.start, 2, 14), False)       # two hits: minor faults
    assert k.vmstat["pgmajfault"] == 1 and k.vmstat["swap_ra_hit"] == 2


def test_the_readahead_window_stops_at_the_end_of_the_area_and_skips_free_slots():
    k = swap_kernel(slots=12)
    mm, vma = anon(k, 12)
    swap_out(k, mm, vma, range(12))
    k.sysfs["vm/page-cluster"] = 0
    mm.access(page_addrs(vma.start, 1, 9), True)         # slot 9 read alone, then freed (store)
    assert k.vmstat["swap_ra"] == 0 and not k.swap.used[9]
    k.sysfs["vm/page-cluster"] = 3
    mm.access(page_addrs(vma.start, 1, 10), False)       # window 8..15, cut at 11, without 9
    assert k.vmstat["swap_ra"] == 2 and (k.swap.cache[[8, 11]] >= 0).all()


def test_munmap_frees_read_ahead_folios_and_their_slots():
    k = swap_kernel()
    mm, vma = anon(k, 64)
    swap_out(k, mm, vma, range(64))
    mm.access(page_addrs(vma.start, 1, 3), False)
    free_before = int(k.pm.node_free.sum())
    mm.munmap(vma.start, 64 * PAGE)
    assert k.swap.nr_free() == k.swap.nr_slots and (k.swap.cache < 0).all()
    assert int(k.pm.node_free.sum()) == free_before + 8


def test_the_content_tag_survives_swap_out_readahead_migration_and_the_fault():
    k = swap_kernel(caps=("16MiB", "16MiB"))
    mm, vma = anon(k, 32)
    tags = mm.pt.content[vma.start_slot:vma.end_slot].copy()
    swap_out(k, mm, vma, range(32))
    assert (k.swap.content[:32] == tags).all()
    mm.access(page_addrs(vma.start, 1, 0), False)        # reads slots 0..7
    ra = k.swap.cache[1:8].copy()
    assert (k.pm.node_of(ra) == 0).all()
    assert migrate_folios(k, ra, 1).all()                 # demote the unmapped neighbours
    k.check()
    moved = k.swap.cache[1:8]
    assert (k.pm.node_of(moved) == 1).all() and (k.pm.content[moved] == tags[1:8]).all()
    mm.access(page_addrs(vma.start, 7, 1), False)        # hits: mapped from node 1
    pfns = mm.translate(page_addrs(vma.start, 7, 1))
    assert (pfns == moved).all() and (k.pm.content[pfns] == tags[1:8]).all()
    assert k.vmstat["pgmajfault"] == 1 and k.vmstat["swap_ra_hit"] == 7
    swap_out(k, mm, vma, range(8))                       # clean: dropped, not written
    mm.access(page_addrs(vma.start, 32), False)
    assert (k.pm.content[mm.translate(page_addrs(vma.start, 32))] == tags).all()


def test_the_page_cluster_sysctl_is_checked():
    k = swap_kernel()
    assert k.sysfs["vm/page-cluster"] == 3
    with pytest.raises(ConfigError):
        k.sysfs["vm/page-cluster"] = 32


# ---- Kernel.check() on the swap cache ----------------------------------------------------------
@pytest.fixture
def cached():
    """A kernel with slots 0..7 in the swap cache, slot 3's folio mapped."""
    k = swap_kernel()
    mm, vma = anon(k, 16)
    swap_out(k, mm, vma, range(16))
    mm.access(page_addrs(vma.start, 1, 3), False)
    return k, mm, vma


def test_check_finds_a_cached_folio_without_pg_swapcache(cached):
    k, _, _ = cached
    k.pm.flags[k.swap.cache[5]] &= ~PG_swapcache      # now an unmapped anon folio: a leak
    with pytest.raises(InvariantError, match="swap-cache|no mapping"):
        k.check()


def test_check_finds_a_cached_folio_that_lost_its_data(cached):
    k, _, _ = cached
    k.pm.content[k.swap.cache[5]] += 1
    with pytest.raises(InvariantError, match="data"):
        k.check()


def test_check_finds_a_cached_folio_mapped_behind_its_swap_entry(cached):
    k, _, _ = cached
    k.pm.mapcount[k.swap.cache[5]] = 1
    with pytest.raises(InvariantError):
        k.check()


def test_check_finds_a_slot_dropped_from_the_cache_without_its_folio(cached):
    k, _, _ = cached
    k.swap.cache[5] = -1
    with pytest.raises(InvariantError, match="folio->swap|swap-cache"):
        k.check()


def test_check_finds_a_swapped_in_folio_whose_slot_was_freed(cached):
    k, _, _ = cached
    k.swap.used[3] = False
    k.swap._free += 1
    with pytest.raises(InvariantError, match="free swap slot"):
        k.check()


# ---- generated sequences -----------------------------------------------------------------------
N = 96
OPS = st.lists(st.tuples(st.sampled_from(["out", "read", "write", "migrate", "reclaim",
                                          "cluster"]),
                         st.integers(0, N - 1), st.integers(1, 24)),
               min_size=1, max_size=14)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=OPS, exit_at_end=st.booleans())
def test_generated_swap_sequences_keep_the_data_and_the_invariants(ops, exit_at_end):
    """Swap-out, swap-in (read and write), readahead at varying page-cluster, migration of
    resident folios (mapped or read ahead) and reclaim: after each step Kernel.check() is
    clean and every page of the process still holds the data of its slot; at the end the
    exit frees every slot and cached folio."""
    from tierscan.mm.reclaim import try_to_free_pages

    k = swap_kernel(slots=512)
    mm, vma = anon(k, N)
    tags = mm.pt.content[vma.start_slot:vma.end_slot].copy()
    for op, first, count in ops:
        pages = np.arange(first, min(first + count, N))
        ptes = mm.pt.pte[vma.start_slot + pages]
        if op == "out":
            present = pages[~is_swap_pte(ptes)]
            if present.size:
                swap_out(k, mm, vma, present)
        elif op in ("read", "write"):
            mm.access(page_addrs(vma.start, pages.size, int(first)), op == "write")
        elif op == "migrate":
            # the swap cache's folios (read ahead or swapped in) first, then mapped ones
            pfns = mm.translate(page_addrs(vma.start, N))
            resident = np.concatenate([k.swap.cache[k.swap.cache >= 0], pfns[pfns >= 0]])
            resident = resident[k.pm.node_of(resident) == 0]
            _, first_at = np.unique(resident, return_index=True)
            resident = resident[np.sort(first_at)]
            if resident.size:
                migrate_folios(k, resident[:count], 1)
        elif op == "reclaim":
            try_to_free_pages(k, [0, 1], 0, count)
        else:
            k.sysfs["vm/page-cluster"] = count % 5
        k.check()
        sw = is_swap_pte(mm.pt.pte[vma.start_slot:vma.end_slot])
        pfns = mm.translate(page_addrs(vma.start, N))
        assert (k.pm.content[pfns[~sw]] == tags[~sw]).all()
        offs = pte_to_swp_offset(mm.pt.pte[vma.start_slot:vma.end_slot][sw])
        assert (k.swap.content[offs] == tags[sw]).all()
    if exit_at_end:
        mm.exit()
        k.check()
        assert k.swap.nr_free() == k.swap.nr_slots and (k.swap.cache < 0).all()
