"""Page faults and the hardware access bits: zero page, COW, policy placement, watermark
fallback, OOM, THP (huge zero page, fallback), file mappings, populate, MGLRU placement."""

import numpy as np
import pytest
from conftest import (
    ACCESSED, ANON, DIRTY, FILE, HPAGE, HPAGE_NR, PAGE, PRESENT, PSE, RW, SPECIAL, ZONE_MOVABLE,
    ZONE_NORMAL, addrs, assert_same, fault_gen, make_kernel, page_addrs, snapshot,
)

from tierscan import Kernel, Machine, OutOfMemory
from tierscan.mm.constants import PG_anon, PG_dirty, PG_lru, PG_swapbacked
from tierscan.mm.pagetable import PageTable
from tierscan.mm.physmem import WMARK_LOW, WMARK_MIN


def pte(mm, addr) -> int:
    return int(mm.pt.pte[PageTable.slot(addr)])


def pmd(mm, addr) -> int:
    return int(mm.pt.pmd[PageTable.slot(addr) >> 9])


# ---- anonymous memory: the zero page and copy-on-write -----------------------------------------
def test_anon_read_maps_zero_page_without_allocating(kernel, mm):
    vma = mm.mmap(16 * PAGE)
    free0 = kernel.pm.node_free.copy()
    counts = mm.access(addrs(vma.start), False)
    assert mm.translate(addrs(vma.start)).tolist() == [kernel.zero_pfn]
    assert (kernel.pm.node_free == free0).all()              # nothing allocated
    assert kernel.vmstat["pgfault"] == 1
    assert counts.tolist() == [1, 0]                          # the zero page lives on node 0
    e = pte(mm, vma.start)
    assert e & PRESENT and e & SPECIAL and not e & RW         # read-only special mapping
    assert kernel.pm.mapcount[kernel.zero_pfn] == 0           # the zero page is not counted
    # the neighbours were not faulted
    assert mm.translate(page_addrs(vma.start, 15, 1)).tolist() == [-1] * 15


def test_write_after_zero_page_read_cows(kernel, mm):
    vma = mm.mmap(16 * PAGE)
    a = addrs(vma.start + 3 * PAGE)
    mm.access(a, False)
    free0 = kernel.pm.node_free.copy()
    mm.access(a, True)
    pfn = int(mm.translate(a)[0])
    assert pfn not in (kernel.zero_pfn, -1)
    assert kernel.vmstat["pgfault"] == 2                      # read fault + write (COW) fault
    assert (free0 - kernel.pm.node_free).tolist() == [1, 0]   # one new page on the CPU's node
    pm = kernel.pm
    assert pm.flags[pfn] & PG_anon and pm.flags[pfn] & PG_swapbacked
    assert pm.mapping[pfn] == mm.id and pm.index[pfn] == PageTable.slot(int(a[0]))
    assert pm.mapcount[pfn] == 1 and pm.order[pfn] == 0
    e = pte(mm, int(a[0]))
    assert e & RW and e & DIRTY and not e & SPECIAL
    # a second store takes no fault
    mm.access(a, True)
    assert kernel.vmstat["pgfault"] == 2


def test_first_write_allocates_with_one_fault(kernel, mm):
    vma = mm.mmap(8 * PAGE)
    mm.access(page_addrs(vma.start, 8), True)
    pfns = mm.translate(page_addrs(vma.start, 8))
    assert kernel.vmstat["pgfault"] == 8
    assert len(set(pfns.tolist())) == 8 and (pfns > 0).all()
    assert kernel.vmstat["pgalloc_normal"] == 8 and kernel.vmstat["numa_hit"] == 8


def test_repeated_accesses_in_one_batch_fault_once(kernel, mm):
    vma = mm.mmap(4 * PAGE)
    a = addrs([vma.start] * 5 + [vma.start + PAGE] * 3)
    counts = mm.access(a, True)
    # 2 distinct pages -> 2 faults; 8 accesses all served by node 0
    assert kernel.vmstat["pgfault"] == 2
    assert counts.tolist() == [8, 0]


@pytest.mark.parametrize("policy,nodes,expect", [
    ("local", None, 0),        # the faulting CPU's node
    ("bind", [1], 1),
    ("preferred", [1], 1),
    ("bind", [0, 1], 0),       # bind allows both: nearest to the CPU first
])
def test_write_allocates_on_policy_node(kernel, mm, policy, nodes, expect):
    vma = mm.mmap(4 * PAGE, policy=policy, nodes=nodes)
    mm.access(addrs(vma.start), True)
    assert kernel.node_of(mm.translate(addrs(vma.start))).tolist() == [expect]
    assert kernel.vmstat.node("numa_hit").tolist() == [int(expect == 0), int(expect == 1)]
    zone = "pgalloc_normal" if expect == 0 else "pgalloc_movable"
    assert kernel.vmstat[zone] == 1


def test_local_policy_follows_the_cpu_node():
    # two CPU nodes: a process on node 1 allocates locally on node 1, and an access with an
    # explicit cpu_node=0 allocates on node 0 (numa_local counted on the node of the page).
    k = make_kernel(["16MiB", "16MiB", "16MiB"], cpus=[[0], [1], []],
                    kinds=["dram", "dram", "cxl"])
    mm = k.spawn("p", cpu_node=1)
    vma = mm.mmap(4 * PAGE)
    mm.access(addrs(vma.start), True)
    mm.access(addrs(vma.start + PAGE), True, cpu_node=0)
    assert k.node_of(mm.translate(addrs(vma.start, vma.start + PAGE))).tolist() == [1, 0]
    assert k.vmstat.node("numa_local").tolist() == [1, 1, 0]
    assert k.vmstat["numa_miss"] == 0


def test_fallback_below_low_watermark_follows_distance():
    # node 0 (CPUs) is 30 away from node 1 and 20 away from node 2: node 2 is the first fallback
    k = make_kernel(["16MiB", "16MiB", "16MiB"],
                    distance=[[10, 30, 20], [30, 10, 20], [20, 20, 10]])
    mm = k.spawn("p")
    pm = k.pm
    low0 = int(pm.watermarks[0, WMARK_LOW])
    allow = int(pm.node_free[0]) - low0          # pages node 0 can give before reaching LOW
    vma = mm.mmap((allow + 10) * PAGE)
    mm.access(page_addrs(vma.start, allow), True)
    assert pm.node_free[0] == low0
    assert (k.node_of(mm.translate(page_addrs(vma.start, allow))) == 0).all()
    assert not any(kd.woken for kd in k.kswapd)
    # node 0 is now at its LOW mark: the next 10 pages fall back to node 2, the nearest other
    mm.access(page_addrs(vma.start, 10, allow), True)
    assert (k.node_of(mm.translate(page_addrs(vma.start, 10, allow))) == 2).all()
    assert pm.node_free[0] == low0
    # zone_statistics: the preferred node is node 0, the pages came from node 2
    assert k.vmstat.node("numa_hit").tolist() == [allow, 0, 0]
    assert k.vmstat.node("numa_miss").tolist() == [0, 0, 10]
    assert k.vmstat.node("numa_foreign").tolist() == [10, 0, 0]
    assert k.vmstat.node("numa_other").tolist() == [0, 0, 10]
    # the fast path found pages on node 2, so the slow path never ran: no kswapd was woken
    # (get_page_from_freelist falls back without waking; wake_all_kswapds is the slow path's)
    assert not any(kd.woken for kd in k.kswapd)
    # once every node is below LOW, the slow path wakes kswapd on all of them
    for nid in (1, 2):
        take = int(pm.node_free[nid] - pm.watermarks[nid, WMARK_LOW])
        pm.alloc(nid, take)                      # bare frames: no folio, only the allocator
    k.debug = False
    extra = mm.mmap(PAGE)
    mm.access(page_addrs(extra.start, 1), True)
    assert [kd.woken for kd in k.kswapd] == [True, True, True]


def test_fallback_in_one_batch_keeps_program_order():
    k = make_kernel(["16MiB", "16MiB"])
    mm = k.spawn("p")
    allow = int(k.pm.node_free[0] - k.pm.watermarks[0, WMARK_LOW])
    vma = mm.mmap((allow + 5) * PAGE)
    # touch the pages from the top down: the first `allow` touched (the highest) get node 0
    a = page_addrs(vma.start, allow + 5)[::-1].copy()
    mm.access(a, True)
    nids = k.node_of(mm.translate(a))
    assert (nids[:allow] == 0).all() and (nids[allow:] == 1).all()


def test_bind_full_node_raises_oom_and_changes_nothing():
    k = make_kernel(["16MiB", "16MiB"])
    mm = k.spawn("p")
    pm = k.pm
    # bind may go down to the MIN mark (slow path), but no further
    room = int(pm.node_free[1] - pm.watermarks[1, WMARK_MIN])
    vma = mm.mmap((room + 8) * PAGE, policy="bind", nodes=[1])
    mm.access(page_addrs(vma.start, room), True)
    assert pm.node_free[1] == pm.watermarks[1, WMARK_MIN]
    before = snapshot(k)
    for n in (1, 8):                        # a single page, and a batch that cannot fit
        stalls = k.vmstat["allocstall_movable"]
        with pytest.raises(OutOfMemory, match="out of memory") as e:
            mm.access(page_addrs(vma.start, n, room), True)
        # anon only, no swap, no demotion: 16 direct reclaims without progress, then OOM
        assert "direct reclaim: 16 attempt(s) reclaimed 0 page(s)" in str(e.value)
        assert "no swap device" in str(e.value) and "node 1:" in str(e.value)
        assert k.vmstat["allocstall_movable"] - stalls == 16
        k.check()
        after = snapshot(k)
        for name in ("allocstall_movable",):      # the attempts are counted, nothing else moved
            after["vmstat"][name] = before["vmstat"][name]
        assert_same(before, after)
    # a read still works: it maps the zero page and needs no memory
    mm.access(page_addrs(vma.start, 1, room), False)
    assert mm.translate(page_addrs(vma.start, 1, room)).tolist() == [k.zero_pfn]


def test_bind_oom_even_with_room_elsewhere():
    k = make_kernel(["16MiB", "16MiB"])
    mm = k.spawn("p")
    room = int(k.pm.node_free[0] - k.pm.watermarks[0, WMARK_MIN])
    vma = mm.mmap((room + 1) * PAGE, policy="bind", nodes=[0])
    free1 = int(k.pm.node_free[1])
    with pytest.raises(OutOfMemory, match=r"nodes \[0\]"):
        mm.access(page_addrs(vma.start, room + 1), True)
    # as a thread faulting page after page: the pages before the one that failed are mapped
    # (on node 0, down to MIN), node 1's free memory is untouched, the last page is not mapped
    assert int(k.pm.node_free[0]) == int(k.pm.watermarks[0, WMARK_MIN])
    assert int(k.pm.node_free[1]) == free1
    on = k.node_of(mm.translate(page_addrs(vma.start, room + 1)))
    assert (on[:room] == 0).all() and on[room] == -1
    k.check()


# ---- access bits -------------------------------------------------------------------------------
def test_fresh_pte_is_young_and_store_sets_dirty(kernel, mm):
    vma = mm.mmap(4 * PAGE)
    mm.access(addrs(vma.start), False)                # zero page, read-only
    mm.access(addrs(vma.start + PAGE), True)          # new page
    assert mm.young(addrs(vma.start, vma.start + PAGE)).tolist() == [True, True]
    assert pte(mm, vma.start) & ACCESSED and pte(mm, vma.start + PAGE) & ACCESSED
    assert not pte(mm, vma.start) & DIRTY
    assert pte(mm, vma.start + PAGE) & DIRTY
    # the untouched page has no entry and is not young
    assert mm.young(addrs(vma.start + 2 * PAGE)).tolist() == [False]


def test_access_sets_young_and_store_sets_dirty_on_present_pte(kernel, mm):
    vma = mm.mmap(4 * PAGE, populate=True)
    slot = PageTable.slot(vma.start)
    mm.pt.pte[slot] &= ~np.uint64(ACCESSED | DIRTY)   # what aging / writeback would do
    assert mm.young(addrs(vma.start)).tolist() == [False]
    faults = kernel.vmstat["pgfault"]
    mm.access(addrs(vma.start), False)
    assert mm.young(addrs(vma.start)).tolist() == [True]
    assert not pte(mm, vma.start) & DIRTY              # a load does not dirty
    mm.access(addrs(vma.start), True)
    assert pte(mm, vma.start) & DIRTY
    assert kernel.vmstat["pgfault"] == faults           # a writable present PTE needs no fault


def test_nonleaf_pmd_accessed_bit(kernel, mm):
    vma = mm.mmap(2 * HPAGE)
    mm.access(addrs(vma.start, vma.start + HPAGE), True)
    lo, hi = PageTable.slot(vma.start) >> 9, (PageTable.slot(vma.start) >> 9) + 1
    assert mm.pt.pmd[lo] & np.uint64(PRESENT) and not mm.pt.pmd[lo] & np.uint64(PSE)
    mm.pt.pmd[[lo, hi]] &= ~np.uint64(ACCESSED)
    mm.access(addrs(vma.start + 5 * PAGE), False)        # walks through the first PMD only
    assert int(mm.pt.pmd[lo]) & ACCESSED
    assert not int(mm.pt.pmd[hi]) & ACCESSED


# ---- THP ----------------------------------------------------------------------------------------
def test_thp_write_allocates_pmd_mapped_folio(kernel, mm):
    vma = mm.mmap(2 * HPAGE, thp=True)
    assert vma.start % HPAGE == 0
    free0 = kernel.pm.node_free.copy()
    mm.access(addrs(vma.start + 17 * PAGE), True)
    pfns = mm.translate(page_addrs(vma.start, HPAGE_NR))
    head = int(pfns[0])
    assert head % HPAGE_NR == 0
    assert (pfns == head + np.arange(HPAGE_NR)).all()   # one folio maps the whole 2 MiB
    assert kernel.pm.order[head] == 9
    assert kernel.pm.mapcount[head] == 1                # the PMD mapping counts on the head
    e = pmd(mm, vma.start)
    assert e & PRESENT and e & PSE and e & RW and e & DIRTY and e & ACCESSED
    assert (mm.pt.pte[PageTable.slot(vma.start):PageTable.slot(vma.start) + 512] == 0).all()
    assert kernel.vmstat["thp_fault_alloc"] == 1
    assert kernel.vmstat["pgfault"] == 1
    assert (free0 - kernel.pm.node_free).tolist() == [512, 0]
    # PGALLOC counts pages (1 << order), zone_statistics counts allocations
    assert kernel.vmstat["pgalloc_normal"] == 512 and kernel.vmstat["numa_hit"] == 1
    # the second PMD was not touched
    assert mm.translate(addrs(vma.start + HPAGE)).tolist() == [-1]
    assert mm.young(addrs(vma.start + 300 * PAGE)).tolist() == [True]


def test_thp_needs_a_fully_covered_aligned_range(kernel, mm):
    vma = mm.mmap(4 * HPAGE, thp=True)
    mm.munmap(vma.start, HPAGE // 2)      # the first PMD is now only half covered
    mm.access(addrs(vma.start + HPAGE // 2, vma.start + HPAGE), True)
    pfns = mm.translate(addrs(vma.start + HPAGE // 2, vma.start + HPAGE))
    assert kernel.pm.order[pfns].tolist() == [0, 9]
    assert kernel.vmstat["thp_fault_alloc"] == 1
    # a 3 MiB VMA: the second PMD is 1 MiB short
    v2 = mm.mmap(3 * HPAGE // 2, thp=True)
    mm.access(addrs(v2.start, v2.start + HPAGE), True)
    assert kernel.pm.order[mm.translate(addrs(v2.start, v2.start + HPAGE))].tolist() == [9, 0]


def test_thp_read_maps_huge_zero_page_then_write_splits_and_cows(kernel, mm):
    vma = mm.mmap(HPAGE, thp=True)
    free0 = kernel.pm.node_free.copy()
    mm.access(addrs(vma.start + 9 * PAGE), False)
    assert mm.translate(addrs(vma.start)).tolist() == [kernel.huge_zero_pfn]
    e = pmd(mm, vma.start)
    assert e & PSE and e & SPECIAL and not e & RW
    assert (kernel.pm.node_free == free0).all()
    assert kernel.vmstat["pgfault"] == 1 and kernel.vmstat["thp_fault_alloc"] == 0
    # a store: the huge zero PMD is split into zero-page PTEs and one 4 KiB page is copied
    mm.access(addrs(vma.start + 5 * PAGE), True)
    pfns = mm.translate(page_addrs(vma.start, HPAGE_NR))
    new = int(pfns[5])
    assert new not in (kernel.zero_pfn, kernel.huge_zero_pfn) and kernel.pm.order[new] == 0
    others = np.delete(pfns, 5)
    assert (others == kernel.zero_pfn).all()
    assert not pmd(mm, vma.start) & PSE
    assert kernel.vmstat["thp_split_pmd"] == 1
    assert kernel.vmstat["pgfault"] == 2
    assert kernel.vmstat["thp_fault_alloc"] == 0
    assert (free0 - kernel.pm.node_free).tolist() == [1, 0]


def test_thp_read_then_write_in_one_batch_counts_two_faults(kernel, mm):
    vma = mm.mmap(HPAGE, thp=True)
    # same as the two-call test above, in one batch: read page 0, then write page 1
    mm.access(addrs(vma.start, vma.start + PAGE), np.array([False, True]))
    assert mm.translate(addrs(vma.start)).tolist() == [kernel.zero_pfn]
    assert kernel.vmstat["pgfault"] == 2


def test_thp_disabled_or_not_advised_uses_base_pages(kernel, mm):
    plain = mm.mmap(HPAGE)                      # "madvise" mode and no MADV_HUGEPAGE
    mm.access(addrs(plain.start), True)
    assert kernel.pm.order[mm.translate(addrs(plain.start))[0]] == 0
    kernel.sysfs["transparent_hugepage/enabled"] = "never"
    v = mm.mmap(HPAGE, thp=True)
    mm.access(addrs(v.start), True)
    assert kernel.pm.order[mm.translate(addrs(v.start))[0]] == 0
    kernel.sysfs["transparent_hugepage/enabled"] = "always"
    v = mm.mmap(HPAGE)
    mm.access(addrs(v.start), True)
    assert kernel.pm.order[mm.translate(addrs(v.start))[0]] == 9
    assert kernel.vmstat["thp_fault_alloc"] == 1


def test_thp_no_huge_zero_page_when_disabled(kernel, mm):
    kernel.sysfs["transparent_hugepage/use_zero_page"] = 0
    vma = mm.mmap(HPAGE, thp=True)
    mm.access(addrs(vma.start), False)
    # the read allocates a real THP instead
    head = int(mm.translate(addrs(vma.start))[0])
    assert head != kernel.huge_zero_pfn and kernel.pm.order[head] == 9
    assert kernel.vmstat["thp_fault_alloc"] == 1


def test_thp_fallback_when_no_2mib_block_is_free():
    k = make_kernel(["16MiB", "16MiB"])
    mm = k.spawn("p")
    pm = k.pm
    lo, hi = (b // HPAGE_NR for b in pm.node_range(0))
    bf = pm.block_free[lo:hi]
    whole = int((bf == HPAGE_NR).sum())
    partial = int(bf[(bf > 0) & (bf < HPAGE_NR)].sum())
    # order-0 pages fill partly used blocks first, then break whole blocks from the top: this
    # many pages leaves exactly one page used in the last whole block
    fill = partial + (whole - 1) * HPAGE_NR + 1
    filler = mm.mmap(fill * PAGE, policy="bind", nodes=[0])
    mm.access(page_addrs(filler.start, fill), True)
    assert (pm.block_free[lo:hi] < HPAGE_NR).all()            # no whole block left
    # Punch holes that leave every block partly used: filler pages 511.. came from the top
    # block down, 512 per block; unmap 510 of each of the first two such blocks.
    for first in (512, 1024):
        mm.munmap(filler.start + first * PAGE, 510 * PAGE)
    assert (pm.block_free[lo:hi] < HPAGE_NR).all()            # still no whole block ...
    assert pm.allowance(0, WMARK_LOW) >= HPAGE_NR             # ... though the pages are there
    vma = mm.mmap(HPAGE, thp=True, policy="bind", nodes=[0])
    mm.access(addrs(vma.start), True)
    pfn = int(mm.translate(addrs(vma.start))[0])
    assert pm.order[pfn] == 0 and k.node_of([pfn]).tolist() == [0]
    assert k.vmstat["thp_fault_fallback"] == 1
    assert k.vmstat["thp_fault_alloc"] == 0
    assert not pmd(mm, vma.start) & PSE
    assert k.vmstat["pgfault"] == fill + 1
    assert k.vmstat["pgfree"] == 1020


# ---- file mappings ------------------------------------------------------------------------------
def test_two_mms_share_page_cache(kernel):
    f = kernel.open_file("data", 8 * PAGE)
    a, b = kernel.spawn("a"), kernel.spawn("b")
    va = a.mmap(8 * PAGE, kind="file", file=f)
    vb = b.mmap(8 * PAGE, kind="file", file=f, shared=True)
    a.access(page_addrs(va.start, 4), False)
    assert kernel.vmstat["pgmajfault"] == 4         # 4 pages read from "disk"
    b.access(page_addrs(vb.start, 4), False)
    assert kernel.vmstat["pgmajfault"] == 4         # already cached: minor faults
    assert kernel.vmstat["pgfault"] == 8
    pa, pb = a.translate(page_addrs(va.start, 4)), b.translate(page_addrs(vb.start, 4))
    assert (pa == pb).all() and (pa == f.pages[:4]).all()
    assert (kernel.pm.mapcount[pa] == 2).all()
    assert not (kernel.pm.flags[pa] & PG_anon).any()
    assert (kernel.pm.mapping[pa] == f.id).all()
    assert kernel.pm.index[pa].tolist() == [0, 1, 2, 3]
    assert {m.id for m, _ in kernel.rmap(int(pa[0]))} == {a.id, b.id}


def test_file_mapping_with_offset(kernel, mm):
    f = kernel.open_file("data", 16 * PAGE)
    vma = mm.mmap(4 * PAGE, kind="file", file=f, offset=8 * PAGE)
    mm.access(addrs(vma.start + PAGE), False)
    pfn = int(mm.translate(addrs(vma.start + PAGE))[0])
    assert f.pages[9] == pfn and kernel.pm.index[pfn] == 9
    assert (np.delete(f.pages, 9) == -1).all()


def test_private_file_write_cows_and_keeps_cache_page(kernel):
    f = kernel.open_file("data", 4 * PAGE)
    a, b = kernel.spawn("a"), kernel.spawn("b")
    va = a.mmap(4 * PAGE, kind="file", file=f)               # private
    vb = b.mmap(4 * PAGE, kind="file", file=f)
    a.access(addrs(va.start), False)
    b.access(addrs(vb.start), False)
    cache = int(f.pages[0])
    assert kernel.pm.mapcount[cache] == 2
    e = pte(a, va.start)
    assert not e & RW                                      # private file pages map read-only
    a.access(addrs(va.start), True)
    new = int(a.translate(addrs(va.start))[0])
    assert new != cache
    assert kernel.pm.flags[new] & PG_anon and kernel.pm.mapping[new] == a.id
    assert f.pages[0] == cache                             # the page cache keeps its page ...
    assert kernel.pm.mapcount[cache] == 1                  # ... now mapped only by b
    assert not kernel.pm.flags[cache] & PG_dirty           # the file was not written
    assert b.translate(addrs(vb.start)).tolist() == [cache]
    assert kernel.vmstat["pgfault"] == 3


def test_private_file_first_write_is_one_fault(kernel, mm):
    vma = mm.mmap(4 * PAGE, kind="file")
    mm.access(addrs(vma.start), True)
    f = vma.file
    pfn = int(mm.translate(addrs(vma.start))[0])
    # do_cow_fault: the page is read into the cache and copied, in one fault
    assert kernel.vmstat["pgfault"] == 1 and kernel.vmstat["pgmajfault"] == 1
    assert f.pages[0] >= 0 and f.pages[0] != pfn
    assert kernel.pm.mapcount[f.pages[0]] == 0
    assert kernel.pm.flags[pfn] & PG_anon


@pytest.mark.parametrize("read_first", [False, True])
def test_shared_file_write_dirties_folio(kernel, mm, read_first):
    vma = mm.mmap(4 * PAGE, kind="file", shared=True)
    if read_first:
        mm.access(addrs(vma.start), False)
        assert not kernel.pm.flags[vma.file.pages[0]] & PG_dirty
    mm.access(addrs(vma.start), True)
    pfn = int(mm.translate(addrs(vma.start))[0])
    assert pfn == vma.file.pages[0]                     # no copy: the cache page is written
    assert kernel.pm.flags[pfn] & PG_dirty
    e = pte(mm, vma.start)
    assert e & RW and e & DIRTY
    assert kernel.vmstat["pgfault"] == 1 + read_first


def test_shmem_is_not_a_major_fault(kernel, mm):
    vma = mm.mmap(4 * PAGE, shared=True)                 # MAP_SHARED|MAP_ANONYMOUS = shmem
    assert vma.file is not None and vma.file.shmem
    mm.access(page_addrs(vma.start, 4), False)
    pfns = mm.translate(page_addrs(vma.start, 4))
    assert (pfns > 0).all() and (pfns != kernel.zero_pfn).all()   # shmem has no zero page
    assert kernel.vmstat["pgmajfault"] == 0
    assert kernel.vmstat["pgfault"] == 4
    assert (kernel.pm.flags[pfns] & PG_swapbacked).all()
    assert not (kernel.pm.flags[pfns] & PG_anon).any()
    f = kernel.open_file("shm", 4 * PAGE, shmem=True)
    v2 = mm.mmap(4 * PAGE, kind="file", file=f, shared=True)
    mm.access(addrs(v2.start), False)
    assert kernel.vmstat["pgmajfault"] == 0


# ---- populate -----------------------------------------------------------------------------------
def test_populate_anon_faults_every_page(kernel, mm):
    n = 37
    free0 = kernel.pm.node_free.copy()
    vma = mm.mmap(n * PAGE, populate=True)
    pfns = mm.translate(page_addrs(vma.start, n))
    # a private writable mapping is populated with write faults: real pages, no zero page
    assert (pfns > 0).all() and len(set(pfns.tolist())) == n
    assert kernel.vmstat["pgfault"] == n
    assert (free0 - kernel.pm.node_free).tolist() == [n, 0]
    assert mm.rss() == {"anon": n, "file": 0}


def test_populate_shared_file_reads_every_page(kernel, mm):
    n = 9
    vma = mm.mmap(n * PAGE, kind="file", shared=True, populate=True)
    pfns = mm.translate(page_addrs(vma.start, n))
    assert (pfns == vma.file.pages).all()
    assert kernel.vmstat["pgmajfault"] == n and kernel.vmstat["pgfault"] == n
    assert not (kernel.pm.flags[pfns] & PG_dirty).any()
    assert mm.rss() == {"anon": 0, "file": n}


def test_populate_thp_and_prot_none(kernel, mm):
    vma = mm.mmap(2 * HPAGE, thp=True, populate=True)
    heads = mm.translate(addrs(vma.start, vma.start + HPAGE))
    assert kernel.pm.order[heads].tolist() == [9, 9]
    assert kernel.vmstat["thp_fault_alloc"] == 2 and kernel.vmstat["pgfault"] == 2
    none = mm.mmap(4 * PAGE, prot="none", populate=True)
    assert (mm.translate(page_addrs(none.start, 4)) == -1).all()


# ---- MGLRU placement ----------------------------------------------------------------------------
def test_faulted_folios_join_max_seq_minus_1(kernel, mm):
    pm = kernel.pm
    anon = mm.mmap(10 * PAGE)
    mm.access(page_addrs(anon.start, 10), True)
    cxl = mm.mmap(3 * PAGE, policy="bind", nodes=[1])
    mm.access(page_addrs(cxl.start, 3), True)
    fv = mm.mmap(4 * PAGE, kind="file")
    mm.access(page_addrs(fv.start, 4), False)
    shm = mm.mmap(2 * PAGE, shared=True)
    mm.access(page_addrs(shm.start, 2), False)
    thp = mm.mmap(HPAGE, thp=True)
    mm.access(addrs(thp.start), True)

    lv0 = kernel.lruvec(kernel.root_memcg, 0)
    lv1 = kernel.lruvec(kernel.root_memcg, 1)
    g = fault_gen(kernel)
    assert lv0.lrugen.max_seq == 3 and g == 2         # a fresh lruvec: max_seq 3 -> gen 2
    heads = np.concatenate([mm.translate(page_addrs(anon.start, 10)),
                            mm.translate(page_addrs(fv.start, 4)),
                            mm.translate(page_addrs(shm.start, 2)),
                            mm.translate(addrs(thp.start))])
    assert ((pm.lru_gen_refs[heads] & 7) == g + 1).all()   # gen+1 in bits 0-2
    assert (pm.flags[heads] & PG_lru).all()
    expect0 = np.zeros((4, 2, 4), np.int64)
    expect0[g, ANON, ZONE_NORMAL] = 10 + 2 + 512      # anon + shmem (swap-backed) + one THP
    expect0[g, FILE, ZONE_NORMAL] = 4
    assert (lv0.lrugen.nr_pages == expect0).all()
    expect1 = np.zeros((4, 2, 4), np.int64)
    expect1[g, ANON, ZONE_MOVABLE] = 3
    assert (lv1.lrugen.nr_pages == expect1).all()


def test_faulted_folios_charge_the_mms_memcg(kernel):
    cg = kernel.memcg_create("job")
    mm = kernel.spawn("p", memcg=cg)
    vma = mm.mmap(5 * PAGE)
    mm.access(page_addrs(vma.start, 5), True)
    pfns = mm.translate(page_addrs(vma.start, 5))
    assert (kernel.pm.memcg[pfns] == cg.id).all()
    assert kernel.lruvec(cg, 0).lrugen.nr_pages[fault_gen(kernel, cg), ANON, ZONE_NORMAL] == 5
    assert kernel.lruvec(kernel.root_memcg, 0).lrugen.nr_pages.sum() == 0


def test_memcg_disabled_uses_root_lruvec():
    # cgroup_disable=memory: only the root, with id 0, and its lruvecs take every folio
    k = Kernel(Machine.preset("laptop"), seed=0, debug=True, memcg=False)
    assert k.root_memcg.id == 0
    mm = k.spawn("p")
    vma = mm.mmap(4 * PAGE, populate=True)
    pfns = mm.translate(page_addrs(vma.start, 4))
    assert (k.pm.memcg[pfns] == 0).all()
    assert k.lruvec(k.root_memcg, 0).lrugen.nr_pages[fault_gen(k), ANON, ZONE_NORMAL] == 4
