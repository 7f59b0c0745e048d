"""System calls: munmap, mbind, madvise, and their one-line errors on bad input."""

import numpy as np
import pytest
from conftest import (
    ANON, HPAGE, HPAGE_NR, PAGE, ZONE_MOVABLE, ZONE_NORMAL, addrs, assert_same, fault_gen,
    make_kernel, page_addrs, snapshot,
)

from tierscan import ConfigError, OutOfMemory, SegmentationFault
from tierscan.mm.constants import PG_lru
from tierscan.mm.pagetable import PageTable


# ---- munmap -------------------------------------------------------------------------------------
def test_munmap_frees_anon_pages(kernel, mm):
    free0 = kernel.pm.node_free.copy()
    vma = mm.mmap(20 * PAGE, populate=True)
    cxl = mm.mmap(6 * PAGE, policy="bind", nodes=[1], populate=True)
    assert (free0 - kernel.pm.node_free).tolist() == [20, 6]
    pfns = mm.translate(page_addrs(vma.start, 20))
    mm.munmap(vma.start, 20 * PAGE)
    mm.munmap(cxl.start, 6 * PAGE)
    assert (kernel.pm.node_free == free0).all()
    assert kernel.vmstat.node("pgfree").tolist() == [20, 6]
    assert (kernel.pm.flags[pfns] == 0).all()
    assert mm.vmas == []
    assert (mm.translate(page_addrs(vma.start, 20)) == -1).all()
    assert kernel.lruvec(kernel.root_memcg, 0).lrugen.nr_pages.sum() == 0
    assert kernel.lruvec(kernel.root_memcg, 1).lrugen.nr_pages.sum() == 0
    with pytest.raises(SegmentationFault):
        mm.access(addrs(vma.start), False)


def test_munmap_middle_splits_vma_and_frees_only_that_part(kernel, mm):
    vma = mm.mmap(10 * PAGE, populate=True)
    start = vma.start
    keep = mm.translate(page_addrs(start, 10))
    free0 = kernel.pm.node_free.copy()
    mm.munmap(start + 3 * PAGE, 4 * PAGE)
    assert [(v.start, v.end) for v in mm.vmas] == [(start, start + 3 * PAGE),
                                                  (start + 7 * PAGE, start + 10 * PAGE)]
    assert (kernel.pm.node_free - free0).tolist() == [4, 0]
    after = mm.translate(page_addrs(start, 10))
    assert (after[[0, 1, 2, 7, 8, 9]] == keep[[0, 1, 2, 7, 8, 9]]).all()
    assert (after[3:7] == -1).all()


def test_munmap_length_rounds_up_and_gaps_are_fine(kernel, mm):
    vma = mm.mmap(4 * PAGE, populate=True)
    mm.munmap(vma.start + 3 * PAGE, 1)          # 1 byte -> one page
    assert mm.vmas[0].end == vma.start + 3 * PAGE
    mm.munmap(vma.start + 100 * PAGE, PAGE)      # nothing mapped there: not an error
    assert len(mm.vmas) == 1


def test_munmap_keeps_page_cache(kernel, mm):
    vma = mm.mmap(6 * PAGE, kind="file", shared=True, populate=True)
    f = vma.file
    cached = f.pages.copy()
    free0 = kernel.pm.node_free.copy()
    mm.munmap(vma.start, 6 * PAGE)
    assert (f.pages == cached).all()
    assert (kernel.pm.node_free == free0).all()
    assert (kernel.pm.mapcount[cached] == 0).all()
    assert (kernel.pm.flags[cached] & PG_lru).all()      # still on the LRU, reclaimable
    assert f.i_mmap == []
    # mapping it again finds the same pages without a major fault
    maj = kernel.vmstat["pgmajfault"]
    v2 = mm.mmap(6 * PAGE, kind="file", file=f)
    mm.access(page_addrs(v2.start, 6), False)
    assert (mm.translate(page_addrs(v2.start, 6)) == cached).all()
    assert kernel.vmstat["pgmajfault"] == maj


def test_munmap_private_file_frees_cow_copies_only(kernel, mm):
    vma = mm.mmap(4 * PAGE, kind="file")
    mm.access(page_addrs(vma.start, 4), False)
    mm.access(addrs(vma.start), True)                    # one COW copy
    free0 = kernel.pm.node_free.copy()
    mm.munmap(vma.start, 4 * PAGE)
    assert (kernel.pm.node_free - free0).tolist() == [1, 0]
    assert (vma.file.pages >= 0).all()


def test_munmap_part_of_thp_splits_and_frees_unmapped_part(kernel, mm):
    vma = mm.mmap(2 * HPAGE, thp=True)
    mm.access(addrs(vma.start), True)
    head = int(mm.translate(addrs(vma.start))[0])
    lv = kernel.lruvec(kernel.root_memcg, 0)
    g = fault_gen(kernel)
    assert lv.lrugen.nr_pages[g, ANON, ZONE_NORMAL] == 512
    free0 = kernel.pm.node_free.copy()
    mm.munmap(vma.start, 100 * PAGE)
    # the PMD is split to PTEs, then the folio is split and its 100 unmapped pages freed
    assert kernel.vmstat["thp_split_pmd"] == 1
    assert kernel.vmstat["thp_split_page"] == 1
    assert (kernel.pm.node_free - free0).tolist() == [100, 0]
    rest = mm.translate(page_addrs(vma.start, HPAGE_NR - 100, 100))
    assert (rest == head + np.arange(100, HPAGE_NR)).all()      # same pages, same places
    assert (kernel.pm.order[rest] == 0).all()                   # now order-0 folios
    assert (kernel.pm.mapcount[rest] == 1).all()
    assert (kernel.pm.flags[head:head + 100] == 0).all()        # freed
    assert lv.lrugen.nr_pages[g, ANON, ZONE_NORMAL] == 412
    assert kernel.vmstat["pgfree"] == 100


def test_munmap_whole_thp_frees_it_without_split(kernel, mm):
    vma = mm.mmap(2 * HPAGE, thp=True)
    mm.access(addrs(vma.start, vma.start + HPAGE), True)
    free0 = kernel.pm.node_free.copy()
    mm.munmap(vma.start, HPAGE)
    assert (kernel.pm.node_free - free0).tolist() == [512, 0]
    assert kernel.vmstat["thp_split_page"] == 0 and kernel.vmstat["thp_split_pmd"] == 0
    assert kernel.pm.order[mm.translate(addrs(vma.start + HPAGE))[0]] == 9


def test_munmap_part_of_huge_zero_pmd(kernel, mm):
    vma = mm.mmap(HPAGE, thp=True)
    mm.access(addrs(vma.start), False)
    free0 = kernel.pm.node_free.copy()
    mm.munmap(vma.start + HPAGE // 2, HPAGE // 2)
    # the huge zero PMD becomes zero-page PTEs for the half that stays mapped; nothing is freed
    assert (mm.translate(page_addrs(vma.start, 256)) == kernel.zero_pfn).all()
    assert (kernel.pm.node_free == free0).all()
    assert kernel.vmstat["thp_split_page"] == 0


def test_mm_exit_frees_everything(kernel):
    free0 = kernel.pm.node_free.copy()
    mm = kernel.spawn("p")
    mm.mmap(3 * HPAGE, thp=True, populate=True)
    mm.mmap(10 * PAGE, policy="bind", nodes=[1], populate=True)
    mm.exit()
    assert (kernel.pm.node_free == free0).all()
    assert mm.id not in kernel.mms


# ---- mbind --------------------------------------------------------------------------------------
def test_mbind_part_of_vma_splits_it(kernel, mm):
    vma = mm.mmap(10 * PAGE)
    s = vma.start
    mm.mbind(s + 3 * PAGE, 4 * PAGE, "bind", [1])
    assert [(v.start - s) // PAGE for v in mm.vmas] == [0, 3, 7]
    assert [(v.end - s) // PAGE for v in mm.vmas] == [3, 7, 10]
    assert [v.policy.mode for v in mm.vmas] == ["default", "bind", "default"]
    assert mm.vmas[1].policy.nodes == (1,)
    mm.access(page_addrs(s, 10), True)
    assert kernel.node_of(mm.translate(page_addrs(s, 10))).tolist() == [0] * 3 + [1] * 4 + [0] * 3


def test_mbind_without_move_leaves_pages(kernel, mm):
    vma = mm.mmap(8 * PAGE, populate=True)
    before = mm.translate(page_addrs(vma.start, 8))
    mm.mbind(vma.start, 8 * PAGE, "bind", [1])
    assert (mm.translate(page_addrs(vma.start, 8)) == before).all()
    assert kernel.vmstat["pgmigrate_success"] == 0


def test_mbind_move_migrates_pages_in_range(kernel, mm):
    vma = mm.mmap(10 * PAGE, populate=True)
    mm.access(addrs(vma.start + PAGE), False)            # nothing changes: already populated
    s = vma.start
    old = mm.translate(page_addrs(s, 10))
    mm.mbind(s + 2 * PAGE, 5 * PAGE, "bind", [1], move=True)
    new = mm.translate(page_addrs(s, 10))
    assert kernel.node_of(new).tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0, 0]
    assert (new[[0, 1, 7, 8, 9]] == old[[0, 1, 7, 8, 9]]).all()
    assert kernel.vmstat["pgmigrate_success"] == 5
    # identity carried over: same owner and slot
    assert (kernel.pm.mapping[new] == mm.id).all()
    assert (kernel.pm.index[new] == PageTable.slot(page_addrs(s, 10))).all()
    assert (kernel.pm.flags[old[2:7]] == 0).all()        # the old pages were freed
    lv1 = kernel.lruvec(kernel.root_memcg, 1)
    assert lv1.lrugen.nr_pages[:, ANON, ZONE_MOVABLE].sum() == 5


def test_mbind_move_skips_zero_page_and_unfaulted(kernel, mm):
    vma = mm.mmap(4 * PAGE)
    mm.access(addrs(vma.start), False)                   # zero page
    mm.access(addrs(vma.start + PAGE), True)
    mm.mbind(vma.start, 4 * PAGE, "preferred", [1], move=True)
    pfns = mm.translate(page_addrs(vma.start, 4))
    assert pfns[0] == kernel.zero_pfn and (pfns[2:] == -1).all()
    assert kernel.node_of(pfns[1:2]).tolist() == [1]
    assert kernel.vmstat["pgmigrate_success"] == 1


def test_mbind_move_thp(kernel, mm):
    vma = mm.mmap(HPAGE, thp=True)
    mm.access(addrs(vma.start), True)
    mm.mbind(vma.start, HPAGE, "bind", [1], move=True)
    head = int(mm.translate(addrs(vma.start))[0])
    assert kernel.node_of([head]).tolist() == [1] and kernel.pm.order[head] == 9
    assert kernel.vmstat["thp_migration_success"] == 1
    assert kernel.vmstat["pgmigrate_success"] == 512


def test_mbind_move_over_huge_zero_page_moves_nothing(kernel, mm):
    vma = mm.mmap(HPAGE, thp=True)
    mm.access(addrs(vma.start), False)                   # huge zero page
    free0 = kernel.pm.node_free.copy()
    mm.mbind(vma.start, HPAGE, "bind", [1], move=True)
    assert (kernel.pm.node_free == free0).all()
    assert mm.translate(addrs(vma.start)).tolist() == [kernel.huge_zero_pfn]


def test_mbind_inside_thp_splits_pmd_but_keeps_folio(kernel, mm):
    vma = mm.mmap(HPAGE, thp=True)
    mm.access(addrs(vma.start), True)
    head = int(mm.translate(addrs(vma.start))[0])
    mm.mbind(vma.start + HPAGE // 2, HPAGE // 2, "bind", [1])
    assert len(mm.vmas) == 2
    assert kernel.vmstat["thp_split_pmd"] == 1
    # PTE-mapped now, but still one order-9 folio at the same pfns
    assert (mm.translate(page_addrs(vma.start, HPAGE_NR)) == head + np.arange(HPAGE_NR)).all()
    assert kernel.pm.order[head] == 9
    assert (kernel.pm.mapcount[head:head + HPAGE_NR] == 1).all()


# ---- madvise ------------------------------------------------------------------------------------
def test_madvise_hugepage_enables_thp(kernel, mm):
    vma = mm.mmap(2 * HPAGE)
    mm.madvise(vma.start, 2 * HPAGE, "hugepage")
    assert len(mm.vmas) == 1
    mm.access(addrs(vma.start), True)
    assert kernel.pm.order[mm.translate(addrs(vma.start))[0]] == 9
    assert kernel.vmstat["thp_fault_alloc"] == 1


def test_madvise_hugepage_on_part_of_vma(kernel, mm):
    vma = mm.mmap(2 * HPAGE)
    mm.madvise(vma.start + HPAGE, HPAGE, "hugepage")
    assert len(mm.vmas) == 2
    mm.access(addrs(vma.start, vma.start + HPAGE), True)
    orders = kernel.pm.order[mm.translate(addrs(vma.start, vma.start + HPAGE))]
    assert orders.tolist() == [0, 9]


def test_madvise_nohugepage_and_hugepage_again(kernel, mm):
    vma = mm.mmap(3 * HPAGE, thp=True)
    mm.madvise(vma.start, HPAGE, "nohugepage")
    kernel.sysfs["transparent_hugepage/enabled"] = "always"     # NOHUGEPAGE still wins
    mm.access(addrs(vma.start, vma.start + HPAGE), True)
    assert kernel.pm.order[mm.translate(addrs(vma.start, vma.start + HPAGE))].tolist() == [0, 9]
    mm.madvise(vma.start, HPAGE, "hugepage")     # clears NOHUGEPAGE; PMD already has a table
    mm.access(addrs(vma.start + 2 * HPAGE), True)
    assert kernel.vmstat["thp_fault_alloc"] == 2


# ---- bad input: one-line errors, nothing changed ------------------------------------------------
def _setup(kernel, mm):
    vma = mm.mmap(8 * PAGE, populate=True)
    ro = mm.mmap(4 * PAGE, prot="r")
    mm.access(addrs(ro.start), False)
    none = mm.mmap(4 * PAGE, prot="none")
    return vma, ro, none


BAD_CALLS = [
    # (label, call, error type, what the message must contain, or a function of the VMAs
    # giving it)
    ("mmap zero length", lambda mm, v, ro, no: mm.mmap(0), ConfigError, "mmap.length"),
    ("mmap negative", lambda mm, v, ro, no: mm.mmap(-PAGE), ConfigError, "mmap.length"),
    ("mmap non-int", lambda mm, v, ro, no: mm.mmap("big"), ConfigError, "mmap.length"),
    ("mmap kind", lambda mm, v, ro, no: mm.mmap(PAGE, kind="heap"), ConfigError, "mmap.kind"),
    ("mmap prot", lambda mm, v, ro, no: mm.mmap(PAGE, prot="rwx"), ConfigError, "mmap.prot"),
    ("mmap policy", lambda mm, v, ro, no: mm.mmap(PAGE, policy="interleave"), ConfigError,
     "policy"),
    ("mmap node", lambda mm, v, ro, no: mm.mmap(PAGE, policy="bind", nodes=[2]), ConfigError,
     "node 2 does not exist"),
    ("mmap negative node", lambda mm, v, ro, no: mm.mmap(PAGE, policy="bind", nodes=[-1]),
     ConfigError, "nodes"),
    ("mmap bind no nodes", lambda mm, v, ro, no: mm.mmap(PAGE, policy="bind"), ConfigError,
     "nodes"),
    ("mmap offset", lambda mm, v, ro, no: mm.mmap(PAGE, kind="file", offset=100), ConfigError,
     "mmap.offset"),
    ("mmap past eof", lambda mm, v, ro, no: mm.mmap(
        4 * PAGE, kind="file", file=mm.kernel.open_file("f", PAGE)), ConfigError, "mmap.length"),
    ("munmap zero", lambda mm, v, ro, no: mm.munmap(v.start, 0), ConfigError, "munmap.length"),
    ("munmap negative", lambda mm, v, ro, no: mm.munmap(v.start, -1), ConfigError,
     "munmap.length"),
    ("munmap unaligned", lambda mm, v, ro, no: mm.munmap(v.start + 12, PAGE), ConfigError,
     "munmap.addr"),
    ("mbind unaligned", lambda mm, v, ro, no: mm.mbind(v.start + 1, PAGE, "bind", [1]),
     ConfigError, "mbind.addr"),
    ("mbind zero", lambda mm, v, ro, no: mm.mbind(v.start, 0, "bind", [1]), ConfigError,
     "mbind.length"),
    ("mbind policy", lambda mm, v, ro, no: mm.mbind(v.start, PAGE, "weighted", [1]),
     ConfigError, "unknown policy"),
    ("mbind node", lambda mm, v, ro, no: mm.mbind(v.start, PAGE, "bind", [7], move=True),
     ConfigError, "node 7"),
    ("mbind unmapped", lambda mm, v, ro, no: mm.mbind(v.start, 64 * PAGE, "bind", [1],
                                                      move=True), ConfigError, "ENOMEM"),
    ("madvise advice", lambda mm, v, ro, no: mm.madvise(v.start, PAGE, "willneed"), ConfigError,
     "madvise.advice"),
    ("madvise unaligned", lambda mm, v, ro, no: mm.madvise(v.start + 8, PAGE, "hugepage"),
     ConfigError, "madvise.addr"),
    ("madvise unmapped", lambda mm, v, ro, no: mm.madvise(v.start + 2 * PAGE, 1 << 30,
                                                          "hugepage"), ConfigError, "not fully"),
    ("access outside", lambda mm, v, ro, no: mm.access(addrs(v.start, 0xdead000), True),
     SegmentationFault, "0xdead000"),
    ("access past end", lambda mm, v, ro, no: mm.access(addrs(v.start, v.end), True),
     SegmentationFault, lambda v, ro: hex(v.end)),
    ("store to read-only", lambda mm, v, ro, no: mm.access(addrs(v.start + PAGE, ro.start + PAGE),
                                                           np.array([True, True])),
     SegmentationFault, lambda v, ro: f"{ro.start + PAGE:#x}: store to a read-only mapping"),
    ("load from PROT_NONE", lambda mm, v, ro, no: mm.access(addrs(no.start), False),
     SegmentationFault, "PROT_NONE"),
]


@pytest.mark.parametrize("label,call,exc,needle", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_is_a_one_line_error_and_changes_nothing(kernel, mm, label, call, exc, needle):
    vma, ro, none = _setup(kernel, mm)
    if callable(needle):
        needle = needle(vma, ro)
    nfiles = len(kernel.files)
    before = snapshot(kernel)
    with pytest.raises(exc) as info:
        call(mm, vma, ro, none)
    msg = str(info.value)
    assert needle in msg
    assert "\n" not in msg and msg.strip() == msg and msg
    if label != "mmap past eof":         # that call opened its file before failing
        assert len(kernel.files) == nfiles
    kernel.check()
    after = snapshot(kernel)
    after = {k: v for k, v in after.items() if k in before}
    assert_same(before, after)


def test_segfault_carries_the_address(kernel, mm):
    vma = mm.mmap(PAGE)
    with pytest.raises(SegmentationFault) as info:
        mm.access(addrs(vma.end + 5), False)
    assert info.value.address == vma.end + 5
    assert f"{vma.end + 5:#x}" in str(info.value)


def test_configerror_names_the_field(kernel, mm):
    with pytest.raises(ConfigError) as info:
        mm.mmap(0)
    assert info.value.field == "mmap.length"
    assert "must be positive" in str(info.value)


def test_mmap_populate_oom_leaves_no_vma():
    k = make_kernel(["16MiB", "16MiB"])
    mm = k.spawn("p")
    with pytest.raises(OutOfMemory):
        mm.mmap(20 << 20, populate=True, policy="bind", nodes=[1])
    assert mm.vmas == []


def test_munmap_past_the_page_table_span(kernel, mm):
    vma = mm.mmap(PAGE, populate=True)
    free0 = kernel.pm.node_free.copy()
    mm.munmap(vma.start, HPAGE + PAGE)          # covers the VMA and the next (never used) PMD
    assert mm.vmas == []
    assert (kernel.pm.node_free - free0).tolist() == [1, 0]
    kernel.check()


# ---- API misuse: still a one-line tierscan error, never a numpy/Python traceback -------------
MISUSE = [
    pytest.param(lambda mm, v: mm.move_pages(addrs(v.start, v.start + PAGE), [1, 1, 1]),
                 id="move_pages nodes length"),
    pytest.param(lambda mm, v: mm.access(addrs(v.start, v.start + PAGE), [True, False, True]),
                 id="access is_write length"),
    pytest.param(lambda mm, v: mm.access(addrs(v.start + 6 * PAGE), True, cpu_node=7),
                 id="access cpu_node 7"),
    pytest.param(lambda mm, v: mm.access(addrs(v.start + 6 * PAGE), True, cpu_node=-1),
                 id="access cpu_node -1"),
    pytest.param(lambda mm, v: mm.access(addrs(v.start + 6 * PAGE), True, cpu_node=1),
                 id="access cpu_node without CPUs"),
    pytest.param(lambda mm, v: mm.access(-PAGE, False), id="access negative address"),
    pytest.param(lambda mm, v: mm.munmap(-PAGE, PAGE), id="munmap negative address"),
    pytest.param(lambda mm, v: mm.mbind(v.start, PAGE, "bind", 1), id="mbind nodes not a list"),
    pytest.param(lambda mm, v: mm.mmap(1 << 60), id="mmap beyond the address space"),
]


@pytest.mark.parametrize("call", MISUSE)
def test_api_misuse_is_a_tierscan_error(kernel, mm, call):
    from tierscan import TierscanError

    vma = mm.mmap(8 * PAGE)
    mm.access(page_addrs(vma.start, 4), True)      # pages 4-7 stay unfaulted
    before = snapshot(kernel)
    with pytest.raises(TierscanError) as info:
        call(mm, vma)
    assert "\n" not in str(info.value)
    kernel.check()
    assert_same(before, snapshot(kernel))
