"""Kernel.check() can fail: corrupt one piece of state at a time and expect InvariantError.

Each test builds a small, valid state (check() passes), breaks exactly one thing the way a bug
in the model could, and asserts the checker names the broken invariant.
"""

import numpy as np
import pytest
from conftest import ANON, HPAGE, PAGE, ZONE_NORMAL, addrs, fault_gen, page_addrs

from tierscan import InvariantError
from tierscan.mm.constants import (
    PG_active, PG_allocated, PG_head, PG_lru, PG_tail, _PAGE_ACCESSED, _PAGE_PRESENT,
    _PAGE_USER,
)
from tierscan.mm.pagetable import PageTable, mk_pte


@pytest.fixture
def state(kernel, mm):
    """anon pages, a THP, a file mapping; returns handles to them."""
    anon = mm.mmap(8 * PAGE, populate=True)
    thp = mm.mmap(HPAGE, thp=True)
    mm.access(addrs(thp.start), True)
    fv = mm.mmap(4 * PAGE, kind="file", shared=True, populate=True)
    kernel.check()
    return {
        "anon": anon, "thp": thp, "file": fv,
        "pfns": mm.translate(page_addrs(anon.start, 8)),
        "head": int(mm.translate(addrs(thp.start))[0]),
        "fpfns": mm.translate(page_addrs(fv.start, 4)),
    }


def expect_broken(kernel, match):
    with pytest.raises(InvariantError, match=match):
        kernel.check()


def test_clean_state_passes(kernel, state):
    kernel.check()


def test_mapcount_off_by_one(kernel, state):
    kernel.pm.mapcount[state["pfns"][3]] += 1
    expect_broken(kernel, "mapcount")


def test_file_mapcount_off_by_one(kernel, state):
    kernel.pm.mapcount[state["fpfns"][0]] -= 1
    expect_broken(kernel, "mapcount")


def test_pte_points_at_free_pfn(kernel, mm, state):
    free_pfn = int(np.flatnonzero((kernel.pm.flags & PG_allocated) == 0)[1000])
    slot = PageTable.slot(state["anon"].start)
    mm.pt.pte[slot] = mk_pte(free_pfn, _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED)
    expect_broken(kernel, "free or reserved pfn")


def test_pte_outside_any_vma(kernel, mm, state):
    slot = PageTable.slot(state["anon"].end) + 3     # the gap after the VMA
    mm.pt.pte[slot] = mm.pt.pte[PageTable.slot(state["anon"].start)]
    expect_broken(kernel, "outside every VMA")


def test_pte_maps_page_of_another_identity(kernel, mm, state):
    # swap two PTEs: both pages still mapped once, but at each other's address
    s = PageTable.slot(state["anon"].start)
    mm.pt.pte[[s, s + 1]] = mm.pt.pte[[s + 1, s]]
    expect_broken(kernel, "another identity")


def test_nr_pages_entry_off(kernel, state):
    lv = kernel.lruvec(kernel.root_memcg, 0)
    lv.lrugen.nr_pages[fault_gen(kernel), ANON, ZONE_NORMAL] += 1
    expect_broken(kernel, "nr_pages")


def test_folio_gen_flag_outside_live_gens(kernel, state):
    # gens 0..3 are all live with max_seq 3, min_seq 0; move min_seq up so gen 0 is dead and
    # put a folio there (nr_pages moved with it so only the liveness check can fail)
    lv = kernel.lruvec(kernel.root_memcg, 0)
    pfn = state["pfns"][0]
    g = fault_gen(kernel)
    lv.lrugen.min_seq[ANON] = 1
    kernel.pm.lru_gen_refs[pfn] = (kernel.pm.lru_gen_refs[pfn] & ~np.uint8(7)) | np.uint8(1)
    lv.lrugen.nr_pages[g, ANON, ZONE_NORMAL] -= 1
    lv.lrugen.nr_pages[0, ANON, ZONE_NORMAL] += 1
    expect_broken(kernel, "outside \\[min_seq, max_seq\\]")


def test_seq_window_too_wide(kernel, state):
    kernel.lruvec(kernel.root_memcg, 1).lrugen.max_seq = 4   # min_seq 0: 5 generations
    expect_broken(kernel, "max_seq")


def test_folio_off_lru(kernel, state):
    pfn = state["pfns"][2]
    kernel.pm.lru_gen_refs[pfn] &= ~np.uint8(7)              # gen+1 = 0: off the lists
    kernel.lruvec(kernel.root_memcg, 0).lrugen.nr_pages[fault_gen(kernel), ANON, ZONE_NORMAL] -= 1
    expect_broken(kernel, "off the LRU")


def test_active_flag_on_listed_folio(kernel, state):
    kernel.pm.flags[state["pfns"][1]] |= PG_active
    expect_broken(kernel, "PG_active")


def test_lru_flag_missing(kernel, state):
    kernel.pm.flags[state["pfns"][1]] &= ~PG_lru
    expect_broken(kernel, "PG_lru")


def test_tail_flag_cleared(kernel, state):
    kernel.pm.flags[state["head"] + 17] &= ~PG_tail
    expect_broken(kernel, "tail pages")


def test_tail_flag_on_small_page(kernel, state):
    kernel.pm.flags[state["pfns"][5]] |= PG_tail
    expect_broken(kernel, "tail pages")


def test_head_flag_misaligned(kernel, state):
    kernel.pm.flags[state["pfns"][5]] |= PG_head
    expect_broken(kernel, "compound head")


def test_tail_order_differs(kernel, state):
    kernel.pm.order[state["head"] + 3] = 0
    expect_broken(kernel, "order")


def test_node_free_count_off(kernel, state):
    kernel.pm.node_free[0] -= 1
    expect_broken(kernel, "node 0 free count")


def test_block_free_count_off(kernel, state):
    kernel.pm.block_free[state["head"] // 512] = 1
    expect_broken(kernel, "block free count")


def test_free_pfn_with_leftover_state(kernel, state):
    free_pfn = int(np.flatnonzero((kernel.pm.flags & PG_allocated) == 0)[0])
    kernel.pm.mapping[free_pfn] = 7
    expect_broken(kernel, "free pfn carries folio state")


def test_leaked_allocated_page(kernel, state):
    # a page taken from the allocator and never given an owner: a file folio in no page cache
    kernel.pm.alloc(1, 1)
    expect_broken(kernel, "not in its file's page cache")


def test_anon_folio_of_dead_mm(kernel, mm, state):
    kernel.pm.mapping[state["pfns"][0]] = 99
    expect_broken(kernel, "no live mm")


def test_unmapped_anon_folio_not_freed(kernel, mm, state):
    pfn = state["pfns"][4]
    mm.pt.pte[PageTable.slot(state["anon"].start) + 4] = 0
    kernel.pm.mapcount[pfn] = 0
    expect_broken(kernel, "no mapping was not freed")


def test_page_cache_points_elsewhere(kernel, state):
    f = state["file"].file
    f.pages[[0, 1]] = f.pages[[1, 0]]
    expect_broken(kernel, "page cache")


def test_pmd_leaf_over_ptes(kernel, mm, state):
    # a PTE under the leaf that maps the very page the leaf maps there (so the identity check
    # passes): only the "no PTEs hidden under a THP leaf" invariant catches it
    slot = PageTable.slot(state["thp"].start) + 10
    mm.pt.pte[slot] = mk_pte(state["head"] + 10, _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED)
    expect_broken(kernel, "hidden under a THP leaf")


def test_pmd_leaf_pointing_at_a_tail(kernel, mm, state):
    p = PageTable.slot(state["thp"].start) >> 9
    mm.pt.pmd[p] += np.uint64(PAGE)          # pfn + 1
    expect_broken(kernel, "THP head")


def test_memcg_unknown(kernel, state):
    # charge a folio to a memcg that does not exist, moving its page out of the root lruvec's
    # nr_pages so that only the "known memcg" invariant can fail
    pfn = state["pfns"][0]
    kernel.pm.memcg[pfn] = 42
    kernel.lruvec(kernel.root_memcg, 0).lrugen.nr_pages[fault_gen(kernel), ANON, ZONE_NORMAL] -= 1
    expect_broken(kernel, "unknown memcg")


def test_memcg_moved_without_nr_pages(kernel, state):
    cg = kernel.memcg_create("other")
    kernel.pm.memcg[state["pfns"][0]] = cg.id
    expect_broken(kernel, "nr_pages")


def test_zero_page_pte_not_special(kernel, mm, state):
    v = mm.mmap(PAGE)
    mm.access(addrs(v.start), False)
    kernel.check()
    mm.pt.pte[PageTable.slot(v.start)] &= ~np.uint64(1 << 9)   # drop _PAGE_SPECIAL
    expect_broken(kernel, "free or reserved pfn")


def test_debug_mode_checks_after_each_operation(kernel, mm, state):
    # with debug=True a corrupted state is caught by the next public operation
    kernel.pm.node_free[1] += 1
    with pytest.raises(InvariantError):
        mm.mmap(PAGE)
