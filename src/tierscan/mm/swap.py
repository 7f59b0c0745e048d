"""Swap: one swap area, swap entries in PTEs, swap-out and swap-in (mm/swapfile.c,
mm/swap_state.c, mm/vmscan.c add_to_swap/pageout, mm/memory.c do_swap_page).

A swapped-out anon page leaves a non-present PTE holding its swap entry, encoded as x86-64
does (arch/x86/include/asm/pgtable_64.h, unverified here): PRESENT and PROTNONE clear, the
swap type in the top SWP_TYPE_BITS bits and the offset, inverted (the L1TF mitigation), from
bit SWP_OFFSET_FIRST_BIT = _PAGE_BIT_PROTNONE + 1. Each slot of the area keeps what the page
held: its owner (mm id and page slot), its content tag and the shadow entry its eviction left
(mm/workingset.c). The model has no swap cache: a page is written out when it leaves memory
and read back by the fault that needs it (docs/fidelity.md).

Device costs (estimates, docs/cost-model.md): ``read_ns`` is what a thread waits in a major
fault for one 4 KiB page; ``write_ns`` is the reclaimer's CPU time to submit one page's write
(the write itself is asynchronous; device bandwidth is not modelled).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .constants import PAGE_SIZE, _PAGE_PRESENT, _PAGE_PROTNONE

SWP_TYPE_BITS = 5
SWP_OFFSET_FIRST_BIT = 9                       # _PAGE_BIT_PROTNONE + 1
SWP_OFFSET_SHIFT = SWP_OFFSET_FIRST_BIT + SWP_TYPE_BITS
_U = np.uint64


def swp_entry_to_pte(offsets, type_: int = 0) -> np.ndarray:
    """__swp_entry() / swp_entry_to_pte(): the non-present PTE of each swap offset."""
    off = np.asarray(offsets, dtype=np.uint64)
    return ((~off << _U(SWP_OFFSET_SHIFT)) >> _U(SWP_TYPE_BITS)) | \
        (_U(type_) << _U(64 - SWP_TYPE_BITS))


def pte_to_swp_offset(entries) -> np.ndarray:
    """__swp_offset(): the swap offset a swap PTE holds."""
    e = np.asarray(entries, dtype=np.uint64)
    return ((~e << _U(SWP_TYPE_BITS)) >> _U(SWP_OFFSET_SHIFT)).astype(np.int64)


def is_swap_pte(entries) -> np.ndarray:
    """is_swap_pte(): not none, not present (PROT_NONE counts as present)."""
    e = np.asarray(entries, dtype=np.uint64)
    return (e != 0) & ((e & (_PAGE_PRESENT | _PAGE_PROTNONE)) == 0)


class SwapDevice:
    """A swap area of ``size`` bytes (0: no swap, the default, as on a machine without a
    swap device). Slots are handed out from a cursor that wraps (the cluster allocator's
    net effect)."""

    def __init__(self, size: int = 0, read_ns: float = 80_000.0, write_ns: float = 2_000.0):
        if int(size) < 0:
            raise ConfigError(f"swap size must be >= 0, got {size}", field="swap.size")
        for name, v in (("read_ns", read_ns), ("write_ns", write_ns)):
            if not float(v) >= 0:
                raise ConfigError(f"expected a duration >= 0, got {v!r}", field=f"swap.{name}")
        n = int(size) // PAGE_SIZE
        self.nr_slots = n
        self.read_ns, self.write_ns = float(read_ns), float(write_ns)
        self.used = np.zeros(n, bool)
        self.owner = np.zeros(n, np.int32)      # mm id
        self.index = np.zeros(n, np.int64)      # page slot in that mm
        self.content = np.zeros(n, np.uint32)   # the page's content tag
        self.shadow = np.zeros(n, np.int64)     # workingset shadow entry (0: none)
        self._cursor = 0
        self._free = n

    def nr_free(self) -> int:
        """get_nr_swap_pages()."""
        return self._free

    def get_swap_pages(self, count: int) -> np.ndarray:
        """get_swap_pages(): up to ``count`` free offsets (fewer when the area is full)."""
        count = min(int(count), self._free)
        if count <= 0:
            return np.empty(0, np.int64)
        free = np.flatnonzero(~self.used[self._cursor:])
        if free.size < count:
            free = np.concatenate([free + self._cursor, np.flatnonzero(~self.used[:self._cursor])])
        else:
            free = free + self._cursor
        got = free[:count]
        self.used[got] = True
        self._free -= got.size
        self._cursor = int(got[-1]) + 1 if got[-1] + 1 < self.nr_slots else 0
        return got

    def free(self, offsets) -> None:
        """swap_free() / free_swap_and_cache(): release slots."""
        off = np.asarray(offsets, dtype=np.int64)
        if off.size == 0:
            return
        self.used[off] = False
        self.owner[off] = 0
        self.index[off] = 0
        self.content[off] = 0
        self.shadow[off] = 0
        self._free += off.size

    def total_pages(self) -> int:
        return self.nr_slots


# ---- swap-out (shrink_folio_list's anon path) ---------------------------------------------------
def _fits(nr: np.ndarray, free: int) -> np.ndarray:
    """Which folios, taken in order, still find all their slots free."""
    return np.cumsum(nr) <= free


def swap_out_folios(kernel, lruvec, heads, target_memcg=None) -> np.ndarray:
    """add_to_swap() + try_to_unmap() + pageout() + __remove_mapping() for isolated anon
    folios of ``lruvec``: each page gets a swap slot holding its owner, content tag and the
    shadow entry of its eviction; every PTE mapping it becomes its swap entry; the folio is
    freed. A THP is split first (split_folio_to_list: add_to_swap of a large folio fails
    without THP_SWAP). Folios that find no free slot are left alone. Returns the swapped
    mask."""
    from .memory import split_huge_pmds
    from .rmap import rmap_walk
    from .workingset import workingset_eviction

    pm, sw = kernel.pm, kernel.swap
    heads = np.asarray(heads, np.int64)
    nr = pm.folio_nr_pages(heads)
    ok = _fits(nr, sw.nr_free())
    sel = heads[ok]
    if sel.size == 0:
        return ok
    shadows = np.repeat(workingset_eviction(lruvec, sel, target_memcg), nr[ok])
    large = sel[pm.order[sel] > 0]
    if large.size:
        for s in rmap_walk(kernel, large):   # PMD mappings of the THPs: split them first
            if s.pmd:
                split_huge_pmds(s.mm, np.unique(s.slots))
        kernel.split_folios(large)
    pages = _pages_of(pm, sel, nr[ok])
    offs = sw.get_swap_pages(pages.size)
    sw.owner[offs] = pm.mapping[pages]
    sw.index[offs] = pm.index[pages]
    sw.content[offs] = pm.content[pages]
    sw.shadow[offs] = shadows
    nids = pm.node_of(pages)
    for s in rmap_walk(kernel, pages):
        s.mm.pt.pte[s.slots] = swp_entry_to_pte(offs[s.pos])
        np.subtract.at(pm.mapcount, pages[s.pos], 1)
        kernel.notify_unmap(s.mm, s.slots, nids[s.pos])
    kernel.vmstat.count("pswpout", lruvec.nid, pages.size)
    if kernel.accounting is not None:
        kernel.accounting.swap_out(pages.size, sw.write_ns)
    kernel.free_pages(pages)
    return ok


def _pages_of(pm, heads, nr) -> np.ndarray:
    """Every pfn of the folios (as they were before a split: head + 0 .. nr-1)."""
    if nr.size == 0 or nr.max() == 1:
        return heads.copy()
    return np.repeat(heads, nr) + (np.arange(int(nr.sum())) - np.repeat(np.cumsum(nr) - nr, nr))


# ---- swap-in (mm/memory.c do_swap_page) --------------------------------------------------------
def do_swap_page(mm, vma, slots, first_w, cpu_nid) -> None:
    """do_swap_page() for swap PTEs of one VMA, in first-access order: allocate a page under
    the VMA's policy, read the slot back (its content tag), hand its shadow entry to
    workingset_refault(), map it (writable and dirty for a store; read-only otherwise, so a
    later store takes do_wp_page's reuse path) and free the slot (no swap cache). Counts
    pswpin, pgmajfault and pgfault; the read is a major fault (the access models charge the
    device's read_ns for each pswpin)."""
    from .constants import PG_active, PG_anon, PG_swapbacked, _PAGE_DIRTY, _PAGE_RW
    from .memory import PTE_BASE, install_ptes, new_folios
    from .workingset import workingset_refault

    k = mm.kernel
    pm, sw, pt = k.pm, k.swap, mm.pt
    offs = pte_to_swp_offset(pt.pte[slots])
    heads, _ = new_folios(mm, vma, slots, 0, cpu_nid)
    from .memcontrol import mem_cgroup_charge

    mem_cgroup_charge(k, mm.memcg, heads)
    pm.flags[heads] |= PG_anon | PG_swapbacked
    pm.memcg[heads] = mm.memcg.id
    pm.mapping[heads] = mm.id
    pm.index[heads] = slots.astype(np.uint32)
    pm.content[heads] = sw.content[offs]
    workingset_refault(k, heads, sw.shadow[offs])
    from .classic_lru import lru_gen_enabled

    if lru_gen_enabled(k):
        pm.flags[heads] |= PG_active       # folio_add_lru() in a fault (lru_gen_in_fault)
    k.lru_add(heads)
    pm.mapcount[heads] = 1
    pt.pte[slots] = 0
    bits = np.where(first_w, PTE_BASE | _PAGE_RW | _PAGE_DIRTY, PTE_BASE).astype(np.uint64)
    install_ptes(mm, slots, heads, bits)
    sw.free(offs)
    k.vmstat.count("pswpin", cpu_nid, slots.size)
    k.vmstat.count("pgmajfault", cpu_nid, slots.size)
    k.vmstat.count("pgfault", cpu_nid, slots.size)
