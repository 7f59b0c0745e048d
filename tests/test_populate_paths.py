"""The populate fault path's compiled passes against their numpy references (issue 15, fixed
cost): the same pfns, LRU gens/order/stamps, page-table entries, counters and content tags on
random layouts (anon, file, shmem, THP, policies, memcgs, three nodes, a node filling up and
reclaim re-adding folios)."""

import numpy as np
import pytest
from conftest import PAGE, assert_same, make_kernel, page_addrs, snapshot

from tierscan.errors import OutOfMemory
from tierscan.mm import lru_gen, memory
from tierscan.mm.constants import (
    MAX_NR_GENS, PG_active, PG_dirty, PG_reclaim, PG_swapbacked, PG_swapcache, PG_unevictable,
    PG_workingset, PG_writeback,
)


def state(k) -> dict:
    """snapshot() plus the content tags (of pfns and of the page tables) and the stamps."""
    snap = snapshot(k)
    snap["content"] = k.pm.content.copy()
    for mid, mm in k.mms.items():
        snap[f"mm{mid}.content"] = mm.pt.content.copy()
    snap["stamps"] = (k.pm._stamp_head, k.pm._stamp_tail)
    return snap


def layout(seed: int, mglru: bool) -> dict:
    """A random set of populated mappings on a three-node machine, under memcgs; the first
    node fills up (default policy falls back), a memcg's limit makes reclaim re-add folios."""
    rng = np.random.default_rng(seed)
    k = make_kernel(("24MiB", "16MiB", "16MiB"))
    if not mglru:
        k.sysfs["lru_gen/enabled"] = 0
    mms = [k.spawn("p"), k.spawn("q", memcg=k.memcg_create("a"))]
    for _ in range(int(rng.integers(4, 8))):
        mm = mms[int(rng.integers(2))]
        kind = ["anon", "file", "shmem", "thp"][int(rng.integers(4))]
        pages = int(rng.integers(1, 4)) * 512 + int(rng.integers(0, 300))
        policy = [None, "bind", "interleave", "preferred"][int(rng.integers(4))]
        nodes = None if policy is None else sorted(
            rng.choice(3, size=int(rng.integers(1, 4)), replace=False).tolist())
        if policy == "preferred":
            nodes = nodes[:1]
        try:
            mm.mmap(pages * PAGE, "file" if kind == "file" else "anon", shared=kind == "shmem",
                    thp=kind == "thp", populate=True, policy=policy, nodes=nodes)
        except OutOfMemory:
            pass                              # deterministic too: the state after it counts
    # a memcg at its memory.max: its file faults reclaim its own folios, which re-adds some
    limited = k.memcg_create("b")
    limited.memory_max = 256
    mm = k.spawn("r", memcg=limited)
    vma = mm.mmap(700 * PAGE, kind="file")
    for i in range(0, 700, 100):
        mm.access(page_addrs(vma.start, 100, i), False)
    return state(k)


@pytest.mark.parametrize("mglru", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_populate_with_the_compiled_passes_matches_the_numpy_forms(monkeypatch, seed, mglru):
    fast = layout(seed, mglru)
    monkeypatch.setattr(lru_gen, "REFERENCE", True)
    monkeypatch.setattr(memory, "COMPILED", False)
    assert_same(layout(seed, mglru), fast)


@pytest.mark.parametrize("reclaiming", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_add_folios_gen_matches_lru_gen_add_folio_reference(monkeypatch, seed, reclaiming):
    """Every flag combination lru_gen_folio_seq reads, both types, a min_seq floor above the
    computed seq, THP heads, several nodes/zones, unevictable folios skipped."""
    def run(reference: bool):
        monkeypatch.setattr(lru_gen, "REFERENCE", reference)
        k = make_kernel(("16MiB", "16MiB", "16MiB"))
        pm = k.pm
        r = np.random.default_rng(seed)
        heads = np.concatenate([pm.alloc(nid, 300) for nid in range(3)]
                               + [pm.alloc(1, 3, 9)])
        bits = [PG_active, PG_workingset, PG_swapbacked, PG_swapcache, PG_reclaim, PG_dirty,
                PG_writeback, PG_unevictable]
        for b, p in zip(bits, [.4, .3, .5, .2, .3, .3, .2, .05]):
            pm.flags[heads[r.random(heads.size) < p]] |= b
        r.shuffle(heads)
        for nid in range(3):
            lv = k.lruvec(k.root_memcg, nid)
            lv.lrugen.max_seq = int(r.integers(3, 9))
            lv.lrugen.min_seq = [lv.lrugen.max_seq - int(r.integers(0, MAX_NR_GENS)),
                                 lv.lrugen.max_seq - int(r.integers(0, MAX_NR_GENS))]
            sel = heads[pm.node_of(heads) == nid]
            lru_gen.lru_gen_add_folio(lv, sel, reclaiming=reclaiming)
        return {"flags": pm.flags.copy(), "refs": pm.lru_gen_refs.copy(),
                "list_gen": pm.list_gen.copy(), "stamp": pm.lru_stamp.copy(),
                **{f"nr{n}": k.lruvec(k.root_memcg, n).lrugen.nr_pages.copy()
                   for n in range(3)}}

    a, b = run(True), run(False)
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    assert a["list_gen"].any() and (a["nr0"] > 0).sum() > 1


@pytest.mark.parametrize("seed", range(8))
def test_fault_kernels_classify_as_the_numpy_masks(seed):
    """Random PMD/PTE tables mixing none, present (RW or not), PROT_NONE, swap, THP leaves
    (present, PROT_NONE, the huge zero page) and PTE tables; random accesses."""
    from tierscan.mm.fault_kernels import (
        any_numa_hint, any_swap_entry, any_write_protect, missing_index,
    )
    from tierscan.mm.constants import (
        _PAGE_PRESENT as P, _PAGE_PROTNONE as PN, _PAGE_PSE as PSE, _PAGE_RW as RW,
    )
    from tierscan.mm.pagetable import PageTable, pte_pfn
    from tierscan.mm.swap import is_swap_pte

    rng = np.random.default_rng(seed)
    hz = 512
    npmd = 16
    pfn = (rng.integers(1, 1 << 20, npmd * 512).astype(np.uint64) << np.uint64(12))
    kinds = [np.uint64(0), P, P | RW, PN, np.uint64(0x4000)]    # none/ro/rw/hint/swap
    pte = np.array([pfn[i] | kinds[j] if j else np.uint64(0)
                    for i, j in enumerate(rng.integers(0, 5, npmd * 512))], np.uint64)
    pmd_kinds = [np.uint64(0), P | RW, P | PSE | RW, PN | PSE,
                 (np.uint64(hz) << np.uint64(12)) | P | PSE]
    pmd = np.array([pmd_kinds[j] | (np.uint64(7) << np.uint64(12) if j in (2, 3) else 0)
                    for j in rng.integers(0, 5, npmd)], np.uint64)
    pt = PageTable.__new__(PageTable)
    pt.pte, pt.pmd = pte, pmd
    for n in (0, 1, 5, 300):
        for dense in (False, True):
            slots = rng.integers(0, npmd * 512, n)
            if dense:       # mostly one kind, so the answers are not always True
                slots = np.flatnonzero(pte == 0)[:n]
            w = rng.random(n) < .5
            leaf = pt.pmd_is_leaf(slots >> 9)
            e = pte[slots]
            hint = (~leaf & ((e & (P | PN)) == PN)) | (leaf & ((pmd[slots >> 9] & P) == 0))
            assert any_numa_hint(slots, pte, pmd) == hint.any()
            assert any_swap_entry(slots, pte, pmd) == (~leaf & is_swap_pte(e)).any()
            assert np.array_equal(missing_index(slots, pte, pmd),
                                  np.flatnonzero(~leaf & (e == 0)))
            wp = w & ((leaf & (pte_pfn(pmd[slots >> 9]) == hz))
                      | (~leaf & ((e & P) != 0) & ((e & RW) == 0)))
            assert any_write_protect(slots, w, pte, pmd, hz) == wp.any()


def thp_touches(seed: int) -> dict:
    """THP-eligible mappings (one not PMD-aligned at either end) touched in random order, with
    repeats, reads (the huge zero page) and writes, part already mapped, until the nodes run
    short and THP allocations fall back to base pages."""
    rng = np.random.default_rng(seed)
    k = make_kernel(("12MiB", "8MiB"))
    mm = k.spawn("p")
    mm.mmap(3 * PAGE, "anon")           # the next mapping starts off a PMD boundary
    vmas = [mm.mmap(int(rng.integers(6, 12)) * 512 * PAGE + int(rng.integers(1, 500)) * PAGE,
                    "anon", thp=True) for _ in range(2)]
    for vma in vmas:
        pages = (vma.end - vma.start) // PAGE
        for _ in range(4):
            n = int(rng.integers(1, 3000))
            first = rng.integers(0, pages, n)
            if rng.random() < .3:
                first = np.sort(first)
            try:
                mm.access(page_addrs(vma.start, 1, 0)[0] + np.uint64(PAGE) * first.astype(
                    np.uint64), rng.random(n) < .6)
            except OutOfMemory:
                pass
    snap = state(k)
    snap["mm.content"] = snap.pop(f"mm{mm.id}.content")
    return snap


@pytest.mark.parametrize("seed", range(6))
def test_thp_faults_in_random_order_match_the_numpy_forms(monkeypatch, seed):
    fast = thp_touches(seed)
    assert fast["mm.content"].any()
    monkeypatch.setattr(memory, "COMPILED", False)
    assert_same(thp_touches(seed), fast)


@pytest.mark.parametrize("seed", range(8))
def test_thp_fault_kernels_match_the_numpy_masks(seed):
    """thp_fault_pmds against do_huge_pmd_anonymous_faults' masks and first_per_key (random
    order, repeats, a range whose ends cut PMDs, some PMDs mapped)."""
    from tierscan.mm.fault_kernels import thp_fault_pmds
    from tierscan.mm.memory import first_per_key

    rng = np.random.default_rng(seed)
    npmd = 24
    pmd = np.where(rng.random(npmd) < .3, np.uint64(0x67), np.uint64(0))
    start, end = int(rng.integers(0, 700)), int(rng.integers(npmd * 512 - 700, npmd * 512))
    for n in (0, 1, 7, 2000):
        slots = rng.integers(start, end, n)
        if rng.random() < .5:
            slots = np.sort(slots)
        w = rng.random(n) < .5
        pmds = slots >> 9
        eligible = (pmds << 9 >= start) & ((pmds + 1) << 9 <= end) & (pmd[pmds] == 0)
        upmd, idx = first_per_key(pmds[eligible])
        got_pmd, got_w, got_n = thp_fault_pmds(slots, w, start, end, pmd)
        assert got_pmd.tolist() == upmd.tolist()
        assert got_w.tolist() == w[eligible][idx].tolist()
        assert got_n == int(eligible.sum())
