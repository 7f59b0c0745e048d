"""Physical memory: node pfn ranges, the order-0 / order-9 allocator, watermarks, free()."""

import math

import numpy as np
import pytest
from conftest import HPAGE_NR, PAGE, machine_dict

from tierscan import Machine
from tierscan.mm.constants import PG_allocated, PG_head, PG_reserved, PG_tail
from tierscan.mm.physmem import WMARK_HIGH, WMARK_LOW, WMARK_MIN, WMARK_PROMO, PhysMem

GiB = 1 << 30
# laptop: node 0 = 1 GiB = 262144 pages, node 1 = 2 GiB = 524288 pages
N0, N1 = GiB // PAGE, 2 * GiB // PAGE


@pytest.fixture
def pm():
    """A bare allocator on the laptop machine (no kernel, so no zero pages reserved)."""
    return PhysMem(Machine.preset("laptop"))


def whole_blocks(pm, nid):
    lo, hi = pm.node_range(nid)
    return int((pm.block_free[lo // HPAGE_NR:hi // HPAGE_NR] == HPAGE_NR).sum())


def test_node_pfn_ranges(pm):
    # Node pfns are contiguous in node order: node 0 = [0, 1 GiB/4 KiB), node 1 follows.
    assert pm.node_range(0) == (0, N0)
    assert pm.node_range(1) == (N0, N0 + N1)
    assert pm.nr_pfns == N0 + N1
    assert pm.node_present.tolist() == [N0, N1]
    assert pm.node_free.tolist() == [N0, N1]
    assert pm.node_of([0, N0 - 1, N0, N0 + N1 - 1]).tolist() == [0, 0, 1, 1]
    # -1 ("not present") and pfns past the end have no node
    assert pm.node_of([-1, N0 + N1]).tolist() == [-1, -1]
    # zones: DRAM defaults to Normal (index 2), CXL to Movable (index 3)
    assert pm.zone_of([0, N0]).tolist() == [2, 3]


def test_order9_allocation_from_bottom_aligned(pm):
    heads = pm.alloc(0, 3, order=9)
    # order-9 requests take whole blocks from the bottom of the node: blocks 0, 1, 2
    assert heads.tolist() == [0, 512, 1024]
    assert (heads % HPAGE_NR == 0).all()
    pfns = pm.folio_pfns(heads)
    assert pfns.size == 3 * HPAGE_NR
    assert (pm.order[pfns] == 9).all()
    assert (pm.flags[pfns] & PG_allocated).all()
    assert (pm.flags[heads] & PG_head).all() and not (pm.flags[heads] & PG_tail).any()
    tails = np.setdiff1d(pfns, heads)
    assert (pm.flags[tails] & PG_tail).all() and not (pm.flags[tails] & PG_head).any()
    assert pm.node_free[0] == N0 - 3 * 512 and pm.node_free[1] == N1
    assert pm.block_free[:3].tolist() == [0, 0, 0] and pm.block_free[3] == 512
    # compound_head of any page of a THP is its head
    assert pm.folio_head([1, 511, 513, 1535]).tolist() == [0, 0, 512, 1024]
    assert pm.folio_nr_pages(heads).tolist() == [512] * 3


def test_order9_on_node1_stays_in_range(pm):
    heads = pm.alloc(1, 2, order=9)
    assert heads.tolist() == [N0, N0 + 512]
    assert pm.node_free.tolist() == [N0, N1 - 1024]


def test_order0_allocation_from_top_of_node(pm):
    pfns = pm.alloc(0, 5)
    # no partly used block yet, so the first whole block from the top is split: the last block
    # of node 0 starts at N0 - 512
    assert pfns.tolist() == list(range(N0 - 512, N0 - 507))
    assert (pm.order[pfns] == 0).all()
    assert ((pm.flags[pfns] & (PG_head | PG_tail)) == 0).all()
    assert pm.node_free[0] == N0 - 5
    assert pm.block_free[N0 // 512 - 1] == 507


def test_order0_prefers_partly_used_blocks(pm):
    nblocks = N0 // 512
    first = pm.alloc(0, 1)
    assert whole_blocks(pm, 0) == nblocks - 1
    # 511 more pages fit in the block the first page came from: no second block is broken
    more = pm.alloc(0, 511)
    assert np.unique(np.concatenate([first, more]) // 512).tolist() == [nblocks - 1]
    assert whole_blocks(pm, 0) == nblocks - 1
    # the next page needs a new block: the next one down
    nxt = pm.alloc(0, 1)
    assert nxt[0] // 512 == nblocks - 2
    assert whole_blocks(pm, 0) == nblocks - 2
    # 511 pages fill the partial block nblocks-2 exactly, still breaking no whole block
    pm.alloc(0, 511)
    assert whole_blocks(pm, 0) == nblocks - 2
    assert pm.block_free[nblocks - 2:nblocks].tolist() == [0, 0]


def test_order0_refills_holes_before_breaking_a_block(pm):
    # THPs at the bottom, a full order-0 block at the top; freeing 3 order-0 pages makes the
    # top block the only partly used one, and the next 3 order-0 pages go exactly there.
    pm.alloc(0, 4, order=9)
    top = pm.alloc(0, 512)
    assert np.unique(top // 512).tolist() == [N0 // 512 - 1]
    holes = top[[7, 100, 300]]
    pm.free(holes)
    wb = whole_blocks(pm, 0)
    got = pm.alloc(0, 3)
    assert sorted(got.tolist()) == sorted(holes.tolist())
    assert whole_blocks(pm, 0) == wb
    # a 4th page breaks one whole block (there is no partly used one left)
    pm.alloc(0, 1)
    assert whole_blocks(pm, 0) == wb - 1
    # and THP allocation still finds the lowest whole block (block 4: 0-3 hold the THPs)
    assert pm.alloc(0, 1, order=9).tolist() == [4 * 512]


def test_alloc_exhaustion_returns_fewer(pm):
    got = pm.alloc(0, N0 + 10)
    assert got.size == N0
    assert pm.node_free[0] == 0 and whole_blocks(pm, 0) == 0
    assert pm.alloc(0, 1).size == 0
    assert pm.alloc(0, 1, order=9).size == 0
    # node 1 untouched
    assert pm.node_free[1] == N1
    assert pm.alloc(0, 0).size == 0
    with pytest.raises(ValueError):
        pm.alloc(1, 1, order=3)


def test_free_clears_state_and_restores_counts(pm):
    heads = np.concatenate([pm.alloc(0, 1, order=9), pm.alloc(1, 4)])
    pfns = pm.folio_pfns(heads)
    for name in ("lru_gen_refs", "list_gen", "lru_stamp", "memcg", "mapcount", "mapping",
                 "index"):
        getattr(pm, name)[pfns] = 3
    pm.flags[pfns] |= np.uint16(1 << 1)
    pm.free(heads)
    for name in ("flags", "lru_gen_refs", "list_gen", "lru_stamp", "order", "memcg",
                 "mapcount", "mapping", "index"):
        assert (getattr(pm, name)[pfns] == 0).all(), name
    assert pm.node_free.tolist() == [N0, N1]
    assert (pm.block_free == 512).all()


def test_kernel_reserves_zero_pages(kernel):
    pm = kernel.pm
    # the zero page is pfn 0 and the huge zero page the order-9 block at pfn 512, both on node 0
    assert kernel.zero_pfn == 0 and kernel.huge_zero_pfn == 512
    assert pm.flags[0] & PG_reserved and pm.order[0] == 0
    hz = pm.folio_pfns(np.array([512]))
    assert (pm.flags[hz] & PG_reserved).all() and (pm.order[hz] == 9).all()
    assert pm.flags[512] & PG_head
    # 1 + 512 reserved pages
    assert pm.node_free.tolist() == [N0 - 513, N1]


# ---- watermarks ------------------------------------------------------------------------------
def expected_watermarks(machine):
    """__setup_per_zone_wmarks(), written out independently.

    min_free_kbytes = clamp(int_sqrt(lowmem_kbytes * 16), 128, 262144); pages_min is shared among
    lowmem (non-Movable) nodes by size; a Movable node gets clamp(managed / 1024, 32, 128).
    tmp = max(min / 4, managed * 10 / 10000) (watermark_scale_factor = 10);
    low = min + tmp, high = min + 2 tmp, promo = min + 3 tmp.
    """
    pages = [n.capacity // PAGE for n in machine.nodes]
    lowmem = [n.zone != "Movable" for n in machine.nodes]
    lowmem_pages = sum(p for p, lm in zip(pages, lowmem) if lm)
    min_free_kb = min(max(math.isqrt(lowmem_pages * (PAGE // 1024) * 16), 128), 262144)
    pages_min = min_free_kb // (PAGE // 1024)
    out = []
    for p, lm in zip(pages, lowmem):
        wmin = pages_min * p // lowmem_pages if lm else min(max(p // 1024, 32), 128)
        tmp = max(wmin // 4, p * 10 // 10000)
        out.append([wmin, wmin + tmp, wmin + 2 * tmp, wmin + 3 * tmp])
    return out


def test_watermarks_laptop_numbers(pm):
    # node 0: lowmem 1 GiB = 1048576 KiB -> int_sqrt(16777216) = 4096 KiB = 1024 pages;
    #   tmp = max(1024/4 = 256, 262144*10/10000 = 262) = 262 -> 1024, 1286, 1548, 1810
    # node 1 (Movable): 524288/1024 = 512 clamped to 128; tmp = max(32, 524) = 524
    assert pm.watermarks.tolist() == [[1024, 1286, 1548, 1810], [128, 652, 1176, 1700]]
    assert pm.watermarks.tolist() == expected_watermarks(Machine.preset("laptop"))


@pytest.mark.parametrize("caps,kinds", [
    (["16MiB", "16MiB"], None),
    (["4GiB", "2GiB", "8GiB"], ["dram", "dram", "cxl"]),
    (["64GiB", "1GiB"], None),
    (["2MiB", "512MiB"], None),
])
def test_watermarks_formula_and_order(caps, kinds):
    m = Machine.from_dict(machine_dict(caps, kinds=kinds,
                                       cpus=[[0]] + [[] for _ in caps[1:]]))
    wm = PhysMem(m).watermarks
    assert wm.tolist() == expected_watermarks(m)
    assert (wm[:, WMARK_MIN] < wm[:, WMARK_LOW]).all()
    assert (wm[:, WMARK_LOW] < wm[:, WMARK_HIGH]).all()
    assert (wm[:, WMARK_HIGH] < wm[:, WMARK_PROMO]).all()


def test_two_dram_nodes_share_min_by_size():
    m = Machine.from_dict(machine_dict(["4GiB", "2GiB", "8GiB"], kinds=["dram", "dram", "cxl"]))
    wm = PhysMem(m).watermarks
    # lowmem = 6 GiB = 6291456 KiB -> int_sqrt(100663296) = 10033 KiB -> 2508 pages,
    # shared 2:1 -> 1672 and 836; the CXL node is clamped to 128.
    assert wm[:, WMARK_MIN].tolist() == [1672, 836, 128]


def test_watermark_ok_and_allowance(pm):
    low = int(pm.watermarks[0, WMARK_LOW])
    pm.alloc(0, N0 - low - 1)
    # free = low + 1: one order-0 page may go (leaving free == low), a THP may not
    assert pm.watermark_ok(0, 0, WMARK_LOW)
    assert not pm.watermark_ok(0, 9, WMARK_LOW)
    assert pm.allowance(0, WMARK_LOW) == 1
    pm.alloc(0, 2)
    assert not pm.watermark_ok(0, 0, WMARK_LOW)
    assert pm.allowance(0, WMARK_LOW) == 0   # never negative


def test_kernel_free_pages_counts_pgfree(kernel):
    heads = kernel.pm.alloc(1, 2, order=9)
    kernel.free_pages(heads)
    assert kernel.vmstat["pgfree"] == 1024
    assert kernel.vmstat.node("pgfree").tolist() == [0, 1024]
    kernel.check()  # the pages went back cleanly


def _state(pm):
    return [a.copy() for a in pm._state_arrays()] + [pm.block_free.copy(), pm.node_free.copy()]


def test_compiled_take_and_free_match_numpy_forms(monkeypatch):
    """THP allocation (_take) and free() of whole folios by the compiled slice passes leave
    every per-pfn array, block count and node count as the per-page numpy forms do: THPs and
    order-0 pages on both nodes, freed in a shuffled mix with state written in between."""
    import tierscan.mm.physmem as physmem

    states = []
    for compiled in (True, False):
        rng = np.random.default_rng(5)
        monkeypatch.setattr(physmem, "COMPILED", compiled)
        pm = PhysMem(Machine.preset("laptop"))
        heads = np.concatenate([pm.alloc(0, 40, 9), pm.alloc(1, 30, 9), pm.alloc(0, 700),
                                pm.alloc(1, 300)])
        pfns = pm.folio_pfns(heads)
        for arr in pm._state_arrays():
            if arr is pm.flags or arr is pm.order:
                continue
            arr[pfns] = rng.integers(1, 100, pfns.size).astype(arr.dtype)
        taken = _state(pm)
        pm.free(rng.permutation(heads)[: heads.size * 2 // 3])
        states.append((taken, _state(pm)))
    for got, want in zip(states[0], states[1]):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_compiled_order0_alloc_matches_numpy_form(monkeypatch):
    """Order-0 alloc() by the compiled pass takes the same pfns in the same order and leaves
    every per-pfn array, block and node count as alloc_order0_reference: a node fragmented by
    THPs and freed pages, then requests that fit in the partly used blocks, that need whole
    blocks from the top, that exceed what the node has left, and partly used blocks at the
    edges of the runs of 64 blocks the compiled pass skips."""
    import tierscan.mm.physmem as physmem

    runs = []
    for compiled in (True, False):
        rng = np.random.default_rng(11)
        monkeypatch.setattr(physmem, "COMPILED", compiled)
        pm = PhysMem(Machine.preset("laptop"))
        got = [pm.alloc(0, 6, 9), pm.alloc(0, 3000), pm.alloc(1, 777)]
        small = np.concatenate(got[1:])
        pm.free(np.concatenate([rng.permutation(got[0])[:3],
                                rng.permutation(small)[: small.size // 2]]))
        for nid, count in ((0, 1), (0, 64), (1, 64), (0, 1500), (1, 900), (0, 5),
                           (1, int(pm.node_free[1]) + 7)):
            got.append(pm.alloc(nid, count))
        assert int(pm.node_free[1]) == 0          # the last request took all node 1 had
        # node 0 full but for one page in blocks 64, 127, 128 and 300: the compiled pass
        # skips runs of 64 blocks without a partly used one, so these sit at run edges
        pm.alloc(0, int(pm.node_free[0]))
        pm.free(np.array([64, 127, 128, 300]) * 512 + 7)
        got += [pm.alloc(0, 3), pm.alloc(0, 5)]
        assert got[-1].size == 1 and int(pm.node_free[0]) == 0
        runs.append((got, _state(pm)))
    (got_c, state_c), (got_n, state_n) = runs
    for g, w in zip(got_c + state_c, got_n + state_n):
        np.testing.assert_array_equal(g, w)
