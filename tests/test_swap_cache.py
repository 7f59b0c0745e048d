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
# swapin_nr_pages() opens the window as the stream proves itself: slot 0 reads 1 page (no
# hits, not next to prev_offset 0), slots 1 and 2 read 2 (adjacent), slot 3 is a hit, slot 4
# reads 4 (hits + 2 rounded up), then 8 ... up to 2^page-cluster, so 256 pages take
# 256 (page-cluster 0), 3 + 126 (1), 4 + 31 (3: ~1/8) and 5 + 15 (4) major faults.
@pytest.mark.parametrize("cluster,majors", [(0, 256), (1, 129), (3, 35), (4, 20)])
def test_a_sequential_reread_takes_one_major_fault_per_window(cluster, majors):
    k = swap_kernel()
    k.sysfs["vm/page-cluster"] = cluster
    mm, vma = anon(k, 256)
    swap_out(k, mm, vma, range(256))
    assert (slot_of_page(mm, vma, range(256)) == np.arange(256)).all()
    before = k.vmstat["pgmajfault"]
    mm.access(page_addrs(vma.start, 256), False)
    assert k.vmstat["pgmajfault"] - before == majors
    assert k.vmstat["pswpin"] == 256 and k.vmstat["swap_ra"] == 256 - majors
    assert k.vmstat["swap_ra_hit"] == 256 - majors
    assert k.vmstat["pgfault"] - 256 == 256                # the first touches, then these


def test_random_swap_ins_shrink_the_window_by_halves_to_one_page():
    """The hits of a stream open the next miss's window wherever it is; then, without hits
    and away from the previous miss, __swapin_nr_pages() gives 1 page, but never less than
    half the previous window."""
    k = swap_kernel()
    mm, vma = anon(k, 512)
    swap_out(k, mm, vma, range(512))
    mm.access(page_addrs(vma.start, 40), False)          # a stream: the window reaches 8
    ra = k.vmstat["swap_ra"]
    for n, page in enumerate([100, 200, 300, 400, 480]):
        mm.access(page_addrs(vma.start, 1, page), False)
        got = k.vmstat["swap_ra"] - ra
        ra = k.vmstat["swap_ra"]
        assert got == [7, 3, 1, 0, 0][n]   # windows 8 (the stream's 7 hits), 4, 2, 1, 1


def test_readahead_neighbours_stay_unmapped_in_the_swap_cache():
    k = swap_kernel()
    mm, vma = anon(k, 64)
    tags = mm.pt.content[vma.start_slot:vma.end_slot].copy()
    swap_out(k, mm, vma, range(64))
    mm.access(page_addrs(vma.start, 16), False)          # a stream: the window reaches 8
    ra, majors = k.vmstat["swap_ra"], k.vmstat["pgmajfault"]
    mm.access(page_addrs(vma.start, 1, 21), False)       # slot 21: window 16..23 (21 & ~7)
    assert k.vmstat["pgmajfault"] == majors + 1 and k.vmstat["swap_ra"] == ra + 7
    cache = k.swap.cache
    assert (cache[16:24] >= 0).all() and (cache[24:64] < 0).all()
    pfns = cache[16:24]
    assert (k.pm.flags[pfns] & PG_swapcache).all() and (k.pm.flags[pfns] & PG_lru).all()
    assert k.pm.mapcount[pfns].tolist() == [0, 0, 0, 0, 0, 1, 0, 0]
    still = np.r_[16:21, 22:24]
    assert is_swap_pte(mm.pt.pte[vma.start_slot + still]).all()
    assert (k.pm.content[pfns] == tags[16:24]).all()      # the neighbours hold their data
    assert k.swap.readahead[still].all() and not k.swap.readahead[21]
    hits = k.vmstat["swap_ra_hit"]
    mm.access(page_addrs(vma.start, 2, 22), False)       # two hits: minor faults
    assert k.vmstat["pgmajfault"] == majors + 1 and k.vmstat["swap_ra_hit"] == hits + 2


def test_the_readahead_window_stops_at_the_end_of_the_area_and_skips_free_slots():
    k = swap_kernel(slots=12)
    mm, vma = anon(k, 12)
    swap_out(k, mm, vma, range(12))
    k.sysfs["vm/page-cluster"] = 0
    mm.access(page_addrs(vma.start, 1, 9), True)         # slot 9 read alone, then freed (store)
    assert k.vmstat["swap_ra"] == 0 and not k.swap.used[9]
    k.sysfs["vm/page-cluster"] = 3
    mm.access(page_addrs(vma.start, 8), False)           # slots 0..7: the window opens to 4
    ra = k.vmstat["swap_ra"]
    mm.access(page_addrs(vma.start, 1, 10), False)       # 3 hits: window 8..15, cut at 11
    assert k.vmstat["swap_ra"] == ra + 2 and (k.swap.cache[[8, 11]] >= 0).all()
    assert k.swap.cache[9] < 0


def test_munmap_frees_read_ahead_folios_and_their_slots():
    k = swap_kernel()
    mm, vma = anon(k, 64)
    swap_out(k, mm, vma, range(64))
    mm.access(page_addrs(vma.start, 9), False)           # slot 8 reads 8..15 ahead
    cached = int((k.swap.cache >= 0).sum())
    assert cached == 16
    free_before = int(k.pm.node_free.sum())
    mm.munmap(vma.start, 64 * PAGE)
    assert k.swap.nr_free() == k.swap.nr_slots and (k.swap.cache < 0).all()
    assert int(k.pm.node_free.sum()) == free_before + cached


def test_the_content_tag_survives_swap_out_readahead_migration_and_the_fault():
    k = swap_kernel(caps=("16MiB", "16MiB"))
    mm, vma = anon(k, 32)
    tags = mm.pt.content[vma.start_slot:vma.end_slot].copy()
    swap_out(k, mm, vma, range(32))
    assert (k.swap.content[:32] == tags).all()
    mm.access(page_addrs(vma.start, 9), False)           # slot 8 reads 8..15 ahead
    ra = k.swap.cache[9:16].copy()
    assert (k.pm.node_of(ra) == 0).all() and (k.pm.mapcount[ra] == 0).all()
    assert migrate_folios(k, ra, 1).all()                 # demote the unmapped neighbours
    k.check()
    moved = k.swap.cache[9:16]
    assert (k.pm.node_of(moved) == 1).all() and (k.pm.content[moved] == tags[9:16]).all()
    majors, hits = k.vmstat["pgmajfault"], k.vmstat["swap_ra_hit"]
    mm.access(page_addrs(vma.start, 7, 9), False)        # hits: mapped from node 1
    pfns = mm.translate(page_addrs(vma.start, 7, 9))
    assert (pfns == moved).all() and (k.pm.content[pfns] == tags[9:16]).all()
    assert k.vmstat["pgmajfault"] == majors and k.vmstat["swap_ra_hit"] == hits + 7
    swap_out(k, mm, vma, range(16))                      # clean: dropped, not written
    assert k.vmstat["pswpout"] == 32
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
    """A kernel with slots 0..15 in the swap cache, 0..8 mapped, 9..15 read ahead."""
    k = swap_kernel()
    mm, vma = anon(k, 16)
    swap_out(k, mm, vma, range(16))
    mm.access(page_addrs(vma.start, 9), False)
    return k, mm, vma


def test_check_finds_a_cached_folio_without_pg_swapcache(cached):
    k, _, _ = cached
    k.pm.flags[k.swap.cache[12]] &= ~PG_swapcache      # now an unmapped anon folio: a leak
    with pytest.raises(InvariantError, match="swap-cache|no mapping"):
        k.check()


def test_check_finds_a_cached_folio_that_lost_its_data(cached):
    k, _, _ = cached
    k.pm.content[k.swap.cache[12]] += 1
    with pytest.raises(InvariantError, match="data"):
        k.check()


def test_check_finds_a_cached_folio_mapped_behind_its_swap_entry(cached):
    k, _, _ = cached
    k.pm.mapcount[k.swap.cache[12]] = 1
    with pytest.raises(InvariantError):
        k.check()


def test_check_finds_a_slot_dropped_from_the_cache_without_its_folio(cached):
    k, _, _ = cached
    k.swap.cache[12] = -1
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


# ---- the compiled window plan against its reference ----------------------------------------------
@settings(max_examples=200, deadline=None)
@given(data=st.data(), cluster=st.integers(0, 5), nr_slots=st.integers(1, 300))
def test_plan_windows_matches_its_reference(data, cluster, nr_slots):
    from tierscan.mm.swap_state import plan_windows, plan_windows_reference

    n = data.draw(st.integers(0, min(nr_slots, 60)))
    offs = np.array(data.draw(st.permutations(range(nr_slots)))[:n], np.int64)
    if data.draw(st.booleans()):
        offs = np.sort(offs)                                  # streams as well as scatter
    cached = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool)
    ra = cached & np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool)
    state = np.array([data.draw(st.integers(0, nr_slots)), data.draw(st.sampled_from(
        [0, 1, 2, 4, 8, 16, 32])), data.draw(st.integers(0, 9))], np.int64)
    ref_state = state.copy()
    got = plan_windows(offs, cached, ra, nr_slots, 1 << cluster, state)
    want = plan_windows_reference(offs, cached, ra, nr_slots, 1 << cluster, ref_state)
    for a, b in zip(got, want):
        assert a.tolist() == b.tolist()
    assert state.tolist() == ref_state.tolist()
