"""Swap: one swap area, swap entries in PTEs, swap-out and swap-in (mm/swapfile.c,
mm/swap_state.c, mm/vmscan.c add_to_swap/pageout, mm/memory.c do_swap_page).

A swapped-out anon page leaves a non-present PTE holding its swap entry, encoded as x86-64
does (arch/x86/include/asm/pgtable_64.h, unverified here): PRESENT and PROTNONE clear, the
swap type in the top SWP_TYPE_BITS bits and the offset, inverted (the L1TF mitigation), from
bit SWP_OFFSET_FIRST_BIT = _PAGE_BIT_PROTNONE + 1. Each slot of the area keeps what the page
held: its owner (mm id and page slot), its content tag and the shadow entry its eviction left
(mm/workingset.c).

The swap cache (mm/swap_state.c) maps a slot to the folio that holds its data while both
exist: ``SwapDevice.cache[offset]`` is that folio's pfn (-1: none) and ``SwapDevice.slot_of[pfn]``
its folio->swap, with PG_swapcache on the folio. Swap-out adds the folio (add_to_swap), writes
it (pageout) and frees it once unmapped (__remove_mapping); a folio still in the cache and clean
is freed without a write. Swap-in (do_swap_page) finds a cached folio (a minor fault) or reads
the slot and, with ``vm/page-cluster`` > 0, the used slots of its aligned window
(swap_cluster_readahead, sized by swapin_nr_pages: mm/swap_state.py) into the cache. The
slot is freed by folio_free_swap (a write fault, or swap more than half full:
should_try_to_free_swap), by zap (free_swap_and_cache), or when its folio is freed
while mapped (the model's unmap; the kernel leaves that to reclaim).

Device costs (estimates, docs/cost-model.md): ``read_ns`` is what a thread waits in a major
fault for one 4 KiB page; ``write_ns`` is the reclaimer's CPU time to submit one page's write
(the write itself is asynchronous; device bandwidth is not modelled).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .constants import PAGE_SIZE, PG_swapcache, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PROTNONE
from .physmem import MAPCOUNT_ONE
from .swap_state import plan_windows
from .vmstat import register_vmstat

register_vmstat("swap_ra", "swap_ra_hit")      # mm/swap_state.c SWAP_RA, SWAP_RA_HIT

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
        self.cache = np.full(n, -1, np.int64)   # the swap cache: pfn of the slot's folio
        self.readahead = np.zeros(n, bool)      # PG_readahead of that folio (read ahead)
        self.slot_of = np.full(0, -1, np.int32)  # folio->swap of each pfn (-1: none), sized
        #                                          by the first add_to_swap_cache
        # swap-ins that read from the device: the faulting thread waits read_ns for each
        # (readahead pages come in the same I/O; a tierscan count, not a vmstat one)
        self.nr_major = 0
        # swapin_nr_pages()'s globals: prev_offset, last_readahead_pages, swapin_readahead_hits
        self.ra_state = np.zeros(3, np.int64)
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
        """swap_free() / put_swap_folio(): release slots (their folios have left the swap
        cache: see free_swap_and_cache)."""
        off = np.asarray(offsets, dtype=np.int64)
        if off.size == 0:
            return
        self.used[off] = False
        self.owner[off] = 0
        self.index[off] = 0
        self.content[off] = 0
        self.shadow[off] = 0
        self.readahead[off] = False
        self._free += off.size

    def total_pages(self) -> int:
        return self.nr_slots


# ---- the swap cache (mm/swap_state.c) ---------------------------------------------------------
def add_to_swap_cache(kernel, pfns, offs) -> None:
    """add_to_swap_cache(): the order-0 folios ``pfns`` hold slots ``offs`` (PG_swapcache,
    folio->swap)."""
    sw, pm = kernel.swap, kernel.pm
    if sw.slot_of.size < pm.nr_pfns:
        sw.slot_of = np.concatenate([sw.slot_of, np.full(pm.nr_pfns - sw.slot_of.size, -1,
                                                         np.int32)])
    pm.flags[pfns] |= PG_swapcache
    sw.cache[offs] = pfns
    sw.slot_of[pfns] = offs


def delete_from_swap_cache(kernel, pfns) -> np.ndarray:
    """__delete_from_swap_cache(): the folios leave the swap cache (their slots stay in use).
    Returns the slots they held."""
    sw, pm = kernel.swap, kernel.pm
    offs = sw.slot_of[pfns]
    pm.flags[pfns] &= ~PG_swapcache
    sw.cache[offs] = -1
    sw.readahead[offs] = False
    sw.slot_of[pfns] = -1
    return offs


def folio_free_swap(kernel, pfns) -> None:
    """folio_free_swap(): drop mapped folios from the swap cache and free their slots (the
    only copy of the data is now the folio)."""
    kernel.swap.free(delete_from_swap_cache(kernel, pfns))


def free_swap_and_cache(kernel, offs) -> None:
    """free_swap_and_cache() for zapped swap entries: a folio still in the swap cache for the
    slot (unmapped: its PTE was the swap entry) is freed with it."""
    sw = kernel.swap
    offs = np.asarray(offs, np.int64)
    cached = sw.cache[offs]
    cached = cached[cached >= 0]
    if cached.size:
        delete_from_swap_cache(kernel, cached)
        kernel.lru_del(cached)
        kernel.free_pages(cached)
    sw.free(offs)


def swap_cache_release(kernel, heads) -> None:
    """Folios freed while still in the swap cache (kernel.free_pages): the last mapping of a
    swapped-in folio went away, so its slot is freed too. The kernel keeps such a folio in
    the cache until reclaim drops it (docs/fidelity.md)."""
    pm = kernel.pm
    cached = heads[(pm.flags[heads] & PG_swapcache) != 0]
    if cached.size:
        folio_free_swap(kernel, cached)


def swap_cache_migrate(kernel, old, new) -> None:
    """folio_migrate_mapping() for swap-cache folios: the cache slot points at the new folio
    (``new`` already carries the copied flags). Called by migrate.move_folios before it frees
    ``old``."""
    pm, sw = kernel.pm, kernel.swap
    sel = (pm.flags[old] & PG_swapcache) != 0
    if not sel.any():
        return
    o, n = old[sel], new[sel]
    offs = sw.slot_of[o]
    pm.flags[o] &= ~PG_swapcache
    sw.slot_of[o] = -1
    sw.slot_of[n] = offs
    sw.cache[offs] = n


def vm_swap_full(sw) -> bool:
    """vm_swap_full(): more than half of the swap area is in use."""
    return sw.nr_free() * 2 < sw.nr_slots


# ---- swap-out (shrink_folio_list's anon path) ---------------------------------------------------
def _fits(nr: np.ndarray, free: int) -> np.ndarray:
    """Which folios, taken in order, still find all their slots free."""
    return np.cumsum(nr) <= free


def swap_out_folios(kernel, lruvec, heads, target_memcg=None) -> np.ndarray:
    """add_to_swap() + try_to_unmap() + pageout() + __remove_mapping() for isolated anon
    folios of ``lruvec`` (mm/vmscan.c shrink_folio_list). A folio not yet in the swap cache
    gets a slot (add_to_swap; a THP is split first: add_to_swap of a large folio fails without
    THP_SWAP), and folios that find no free slot are left alone. Every PTE mapping a page
    becomes its swap entry (try_to_unmap, which moves a dirty PTE's bit to the folio). A folio
    new to the cache or dirty is written (pageout: pswpout, write_ns); a clean one already in
    the cache (swapped in and never written, or read ahead) is not. Each slot keeps the page's
    owner, content tag and eviction shadow; the folio leaves the cache and is freed
    (__remove_mapping). Returns the swapped mask."""
    from .memory import split_huge_pmds
    from .rmap import rmap_walk
    from .workingset import workingset_eviction

    pm, sw = kernel.pm, kernel.swap
    heads = np.asarray(heads, np.int64)
    nr = pm.folio_nr_pages(heads)
    cached = (pm.flags[heads] & PG_swapcache) != 0
    ok = cached.copy()
    ok[~cached] = _fits(nr[~cached], sw.nr_free())
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
    in_cache = (pm.flags[pages] & PG_swapcache) != 0
    new = pages[~in_cache]
    add_to_swap_cache(kernel, new, sw.get_swap_pages(new.size))   # add_to_swap()
    offs = sw.slot_of[pages]
    write = ~in_cache
    nids = pm.node_of(pages)
    for s in rmap_walk(kernel, pages):                           # try_to_unmap()
        write[s.pos[(s.mm.pt.pte[s.slots] & _PAGE_DIRTY) != 0]] = True
        s.mm.pt.pte[s.slots] = swp_entry_to_pte(offs[s.pos])
        np.subtract.at(pm.mapcount, pages[s.pos], MAPCOUNT_ONE)
        kernel.notify_unmap(s.mm, s.slots, nids[s.pos])
    from .constants import PG_dirty

    write |= (pm.flags[pages] & PG_dirty) != 0
    sw.owner[offs] = pm.mapping[pages]
    sw.index[offs] = pm.index[pages]
    sw.content[offs] = pm.content[pages]
    sw.shadow[offs] = shadows
    nr_written = int(write.sum())                                 # pageout()
    kernel.vmstat.count("pswpout", lruvec.nid, nr_written)
    if kernel.accounting is not None and nr_written:
        kernel.accounting.swap_out(nr_written, sw.write_ns)
    delete_from_swap_cache(kernel, pages)                          # __remove_mapping()
    kernel.free_pages(pages)
    return ok


def _pages_of(pm, heads, nr) -> np.ndarray:
    """Every pfn of the folios (as they were before a split: head + 0 .. nr-1)."""
    if nr.size == 0 or nr.max() == 1:
        return heads.copy()
    return np.repeat(heads, nr) + (np.arange(int(nr.sum())) - np.repeat(np.cumsum(nr) - nr, nr))


# ---- swap-in (mm/memory.c do_swap_page, mm/swap_state.c swapin_readahead) -----------------------
def page_cluster(kernel) -> int:
    """page_cluster (/proc/sys/vm/page-cluster, default 3)."""
    return int(kernel.sysfs["vm/page-cluster"])


def swap_read_plan(sw, offs, cluster: int):
    """Which faults read from the device and which slots they read, for ``offs`` faulting in
    this order: a fault whose slot is in the swap cache is a hit; a miss reads every used,
    uncached slot of its window (swap_cluster_readahead: 2^cluster slots at most, sized by
    swapin_nr_pages, mm/swap_state.py), so later faults in it hit. Returns (major fault mask,
    slots read, the slot of the fault each read belongs to)."""
    major, start, end = plan_windows(offs, sw.cache[offs] >= 0, sw.readahead[offs],
                                     sw.nr_slots, 1 << cluster, sw.ra_state)
    width = end - start + 1
    read = np.repeat(start, width) + (np.arange(int(width.sum())) -
                                      np.repeat(np.cumsum(width) - width, width))
    owner = np.repeat(offs[major], width)
    first = np.zeros(read.size, bool)        # a slot two windows share is read by the first
    first[np.unique(read, return_index=True)[1]] = True
    keep = first & sw.used[read] & (sw.cache[read] < 0)
    return major, read[keep], owner[keep]


def do_swap_page(mm, vma, slots, first_w, cpu_nid) -> None:
    """do_swap_page() for swap PTEs of one VMA, in first-access order.

    swap_cache_get_folio() first: a cached folio is mapped without I/O (a minor fault; a
    read-ahead one counts swap_ra_hit and swapin_readahead_hits). Otherwise swapin_readahead()
    -> swap_cluster_readahead(): the slot and the other used slots of its aligned window
    (swapin_nr_pages: up to 2^vm.page-cluster, mm/swap_state.py) are read into new
    folios (pswpin each; swap_ra for the neighbours, which stay unmapped in the cache with
    PG_readahead), allocated under the faulting VMA's policy with the faulting address's
    interleave index, charged to the owner's memcg; each hands its shadow to
    workingset_refault() and joins the LRU (PG_active under MGLRU: folio_add_lru in a fault).
    The faulting page is mapped (writable and dirty for a store, read-only otherwise) and
    stays in the swap cache unless should_try_to_free_swap() (a write fault, or
    vm_swap_full()) lets folio_free_swap() drop it. Counts pgfault, and pgmajfault for the
    faults that read. A fault whose cached folio was reclaimed by this fault's own allocation
    stays a swap entry and is retried by the caller's next round."""
    from .classic_lru import lru_gen_enabled
    from .constants import PG_active, PG_anon, PG_swapbacked, _PAGE_RW
    from .memcontrol import mem_cgroup_charge
    from .memory import PTE_BASE, install_ptes, new_folios
    from .workingset import workingset_refault

    k = mm.kernel
    pm, sw, pt = k.pm, k.swap, mm.pt
    slots = np.asarray(slots, np.int64)
    offs = pte_to_swp_offset(pt.pte[slots])
    major, read, read_for = swap_read_plan(sw, offs, page_cluster(k))
    own = np.isin(read, offs[major])
    by_off = np.argsort(offs)
    heads, _ = new_folios(mm, vma, slots[by_off[np.searchsorted(offs[by_off], read[own])]],
                          0, cpu_nid)                                # the faulting pages
    ra = read[~own]    # their neighbours, under the faulting address's interleave index
    ra_slots = slots[by_off[np.searchsorted(offs[by_off], read_for[~own])]]
    ra_heads, got = new_folios(mm, vma, ra_slots, 0, cpu_nid, strict=False)
    read = np.concatenate([read[own], ra[got]])
    heads = np.concatenate([heads, ra_heads])
    if read.size:
        owners = sw.owner[read]
        for mid in np.unique(owners).tolist():
            mem_cgroup_charge(k, k.mms[mid].memcg, heads[owners == mid])
            pm.memcg[heads[owners == mid]] = k.mms[mid].memcg.id
        pm.flags[heads] |= PG_anon | PG_swapbacked
        pm.mapping[heads] = owners
        pm.index[heads] = sw.index[read].astype(np.uint32)
        pm.content[heads] = sw.content[read]
        workingset_refault(k, heads, sw.shadow[read])
        sw.shadow[read] = 0
        add_to_swap_cache(k, heads, read)
        sw.readahead[read] = True
        sw.readahead[offs[major]] = False
        if lru_gen_enabled(k):
            pm.flags[heads] |= PG_active   # folio_add_lru() in a fault (lru_gen_in_fault)
        k.lru_add(heads)
        k.vmstat.count("pswpin", cpu_nid, read.size)
        k.vmstat.count("swap_ra", cpu_nid, int((~np.isin(read, offs[major])).sum()))
        sw.nr_major += int(major.sum())
    pfns = sw.cache[offs]
    ok = pfns >= 0                   # all but faults whose cached folio reclaim just took
    hit = ok & ~major & sw.readahead[offs]
    k.vmstat.count("swap_ra_hit", cpu_nid, int(hit.sum()))
    sw.readahead[offs[ok]] = False
    slots, offs, pfns, first_w = slots[ok], offs[ok], pfns[ok], np.asarray(first_w)[ok]
    pm.mapcount[pfns] = 1
    pt.pte[slots] = 0
    bits = np.where(first_w, PTE_BASE | _PAGE_RW | _PAGE_DIRTY, PTE_BASE).astype(np.uint64)
    install_ptes(mm, slots, pfns, bits)
    free = first_w | vm_swap_full(sw)  # should_try_to_free_swap()
    folio_free_swap(k, pfns[free])
    k.vmstat.count("pgmajfault", cpu_nid, int(major[ok].sum()))
    k.vmstat.count("pgfault", cpu_nid, slots.size)
