"""Page faults, the hardware access bits, and zapping (mm/memory.c, mm/huge_memory.c).

Everything works on arrays of page slots (see pagetable.py). A batch of accesses is resolved in
three phases, each vectorised: NUMA hint faults on PROT_NONE entries, first-touch faults on empty
entries (in first-access order, so a node fills and falls back in program order), then write
faults on read-only entries (copy-on-write of the zero page and of private file pages, dirty
tracking of shared ones). docs/fidelity.md lists what this ordering simplifies.
"""

from __future__ import annotations

import numpy as np

from typing import NamedTuple

from ..arrays import unique
from .constants import (
    HPAGE_PMD_NR, HPAGE_PMD_ORDER, PG_active, PG_anon, PG_dirty, PG_swapbacked, PTRS_PER_PTE,
    _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_PSE, _PAGE_RW,
    _PAGE_SPECIAL, _PAGE_USER,
)
from .classic_lru import lru_gen_enabled
from .fault_kernels import (
    any_numa_hint, any_swap_entry, any_write_protect, missing_index, prot_numa_ptes,
    set_ptes, set_up_folios, set_up_thps, thp_fault_pmds,
)
from .page_writeback import folio_mark_dirty
from .pagetable import PageTable, mk_pte, pte_pfn, pte_present
from .physmem import MAPCOUNT_ONE
from .swap import free_swap_and_cache, is_swap_pte, pte_to_swp_offset

# x86's vm_page_prot carries _PAGE_ACCESSED, so a freshly faulted entry is young (unverified).
PTE_BASE = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED
PMD_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY  # _PAGE_TABLE


def first_by_slot(slots: np.ndarray, is_write: np.ndarray):
    """Unique slots in first-access order, with whether the first and any access writes."""
    if np.all(slots[1:] > slots[:-1]):     # each slot once, in order (MAP_POPULATE): as is
        return slots, np.arange(slots.size), is_write, is_write.astype(bool)
    uniq, first, inv = np.unique(slots, return_index=True, return_inverse=True)
    any_write = np.bincount(inv, weights=is_write, minlength=uniq.size) > 0
    order = np.argsort(first, kind="stable")
    return uniq[order], first[order], is_write[first[order]], any_write[order]


def groups_in_order(keys: np.ndarray):
    """Yield (key, selection) for each distinct key, in order of the key's first appearance:
    a mask, or slice(None) when every key is the same (one VMA: MAP_POPULATE's case, no sort
    and no copies)."""
    if keys.size and keys[0] == keys[-1] and (keys == keys[0]).all():
        yield int(keys[0]), slice(None)
        return
    uniq, first = np.unique(keys, return_index=True)
    for key in uniq[np.argsort(first, kind="stable")]:
        yield int(key), keys == key


# ---- the access path ---------------------------------------------------------------------------
def handle_accesses(mm, slots: np.ndarray, is_write: np.ndarray, vidx: np.ndarray,
                    cpu_nid: int) -> np.ndarray:
    """Replay the accesses in order (mmu.replay); at the first one that needs a fault, resolve
    the faults of all remaining accesses, then resume. Returns accesses served per node."""
    from .mmu import replay

    k, pt = mm.kernel, mm.pt
    counts = np.zeros(k.machine.nr_nodes, dtype=np.int64)
    i = replay(slots, is_write, 0, pt.pte, pt.pmd, k.pm.node_start, counts)
    last = -1
    window = _fault_window(mm, vidx[i:], cpu_nid, slots.size) if i >= 0 else 0
    while i >= 0:
        # Under memory pressure, reclaim in the faults may take pages the replay has not
        # reached yet (their faults come in the next round). If it took the very page the
        # replay stopped at, resolve fewer accesses at a time: one fault followed by its access
        # always progresses, as a real thread's fault does.
        if i == last:
            if window == 1:
                raise RuntimeError(f"fault at page slot {int(slots[i])} was not resolved")
            window = max(1, window // 8)
        else:
            window = _fault_window(mm, vidx[i:], cpu_nid, slots.size)
        end = i + window
        rest_s, rest_w, rest_v = slots[i:end], is_write[i:end], vidx[i:end]
        do_numa_hint_faults(mm, rest_s, rest_w, cpu_nid)
        swapped_in = do_swap_faults(mm, rest_s, rest_w, rest_v, cpu_nid)
        first_written = do_first_touch_faults(mm, rest_s, rest_w, rest_v, cpu_nid)
        do_write_faults(mm, rest_s, rest_w, rest_v, cpu_nid,
                        np.concatenate([first_written, swapped_in]))
        last = i
        i = replay(slots, is_write, i, pt.pte, pt.pmd, k.pm.node_start, counts)
    return counts


def _fault_window(mm, vidx, cpu_nid, n: int) -> int:
    """How many accesses to resolve before replaying them: all, unless memory is short; then
    what the policies' nodes hold above MIN (at least FAULT_RECLAIM_BATCH), so that reclaim
    during the next round's faults takes pages the replay has already used, not ones it is
    about to use."""
    from .mempolicy import get_vma_policy, policy_nodes
    from .physmem import WMARK_MIN

    k = mm.kernel
    nodes = set()
    for vi in range(int(vidx.min()), int(vidx.max()) + 1):   # the VMAs the accesses span
        nodes.update(policy_nodes(get_vma_policy(mm.vmas[vi]), k.machine.distance, cpu_nid))
    avail = sum(k.pm.allowance(nid, WMARK_MIN) for nid in nodes)
    return n if avail >= n else max(avail, FAULT_RECLAIM_BATCH)


# ---- phase 1b: swap-in faults ------------------------------------------------------------------
def do_swap_faults(mm, slots, is_write, vidx, cpu_nid) -> np.ndarray:
    """do_swap_page() for every slot holding a swap entry (mm/swap.py), VMA by VMA in
    first-access order. Returns the slots whose first access was a store (mapped writable)."""
    from .swap import do_swap_page, is_swap_pte

    pt = mm.pt
    if COMPILED and not any_swap_entry(slots, pt.pte, pt.pmd):  # the mask below, one pass
        return np.empty(0, np.int64)
    sw = ~pt.pmd_is_leaf(slots >> 9) & is_swap_pte(pt.pte[slots])
    if not sw.any():
        return np.empty(0, np.int64)
    uslots, first, first_w, _ = first_by_slot(slots[sw], is_write[sw])
    uvidx = vidx[sw][first]
    for vi, sel in groups_in_order(uvidx):
        in_fault_batches(do_swap_page, mm, mm.vmas[vi], uslots[sel], first_w[sel], cpu_nid)
    return uslots[first_w]


FAULT_RECLAIM_BATCH = 512   # faults resolved between two direct reclaims under pressure


def in_fault_batches(fault, mm, vma, slots, first_w, cpu_nid) -> None:
    """Resolve ``fault(mm, vma, slots, first_w, cpu_nid)`` in batches a real thread's
    one-by-one faults would see: all at once when the policy's nodes hold them above MIN;
    otherwise what they hold first, then FAULT_RECLAIM_BATCH at a time, so that the pages
    faulted earlier are on the LRU (and may be reclaimed) when a later fault reclaims."""
    from .mempolicy import get_vma_policy, policy_nodes
    from .physmem import WMARK_MIN

    k = mm.kernel
    n = slots.size
    nodes = policy_nodes(get_vma_policy(vma), k.machine.distance, cpu_nid)
    avail = sum(k.pm.allowance(nid, WMARK_MIN) for nid in dict.fromkeys(nodes))
    if n <= avail:
        fault(mm, vma, slots, first_w, cpu_nid)
        return
    cuts = [0] + list(range(max(avail, 1), n, FAULT_RECLAIM_BATCH)) + [n]
    for a, b in zip(cuts[:-1], cuts[1:]):
        fault(mm, vma, slots[a:b], first_w[a:b], cpu_nid)


# ---- phase 1: NUMA hint faults -----------------------------------------------------------------
def do_numa_hint_faults(mm, slots, is_write, cpu_nid, distinct: bool = False) -> None:
    """do_numa_page()/do_huge_pmd_numa_page(): restore the entry, then let NUMA balancing act.
    ``distinct``: the caller gives each slot (and each THP's first slot) at most once (the
    rate model's due faults), so the per-slot dedupe would return them as given."""
    pt, k = mm.pt, mm.kernel
    if COMPILED and not any_numa_hint(slots, pt.pte, pt.pmd):   # the masks below, one pass
        return
    pmd_slots = slots >> 9
    leaf = pt.pmd_is_leaf(pmd_slots)
    hint_pte = ~leaf & ((pt.pte[slots] & (_PAGE_PRESENT | _PAGE_PROTNONE)) == _PAGE_PROTNONE)
    hint_pmd = leaf & ((pt.pmd[pmd_slots] & _PAGE_PRESENT) == 0)
    if not (hint_pte.any() or hint_pmd.any()):
        return
    if distinct:
        s, anyw = slots[hint_pte], is_write[hint_pte].astype(bool)
        m, manyw = pmd_slots[hint_pmd], is_write[hint_pmd].astype(bool)
    else:
        s, _, _, anyw = first_by_slot(slots[hint_pte], is_write[hint_pte])
        m, _, _, manyw = first_by_slot(pmd_slots[hint_pmd], is_write[hint_pmd])
    pt.pte[s] = (pt.pte[s] & ~_PAGE_PROTNONE) | _PAGE_PRESENT
    heads = do_huge_pmd_numa_page(mm, m)
    pfns = np.concatenate([pte_pfn(pt.pte[s]), heads])
    writes = np.concatenate([anyw, manyw])
    nids = k.pm.node_of(pfns)
    k.vmstat.count("pgfault", cpu_nid, pfns.size)
    k.vmstat.count("numa_hint_faults", cpu_nid, pfns.size)
    k.vmstat.count("numa_hint_faults_local", cpu_nid, int((nids == cpu_nid).sum()))
    if k.numa_hint_fault_hook is not None:
        k.numa_hint_fault_hook(mm, pfns, writes, cpu_nid)


def do_huge_pmd_numa_page(mm, pmd_slots) -> np.ndarray:
    """do_huge_pmd_numa_page()'s entry restore: make PROT_NONE THP leaves present again.
    Returns the head pfn each maps (the whole THP is one hint fault, promotion-spec §3.3)."""
    pt = mm.pt
    pmd_slots = np.asarray(pmd_slots, np.int64)
    pt.pmd[pmd_slots] = (pt.pmd[pmd_slots] & ~_PAGE_PROTNONE) | _PAGE_PRESENT
    return pte_pfn(pt.pmd[pmd_slots])


# ---- phase 2: first-touch faults ---------------------------------------------------------------
def do_first_touch_faults(mm, slots, is_write, vidx, cpu_nid) -> np.ndarray:
    """Fault in every slot with no mapping. Returns the slots whose first access was a store
    (their fault already handled the write, so phase 3 does not count a second fault)."""
    pt = mm.pt
    if COMPILED:        # the numpy form below, in one pass
        missing = missing_index(slots, pt.pte, pt.pmd)
    else:
        missing = np.flatnonzero(~pt.pmd_is_leaf(slots >> 9) & (pt.pte[slots] == 0))
    if missing.size == 0:
        return np.empty(0, np.int64)
    if missing.size < slots.size:
        slots, is_write, vidx = slots[missing], is_write[missing], vidx[missing]
    # (else every access misses, as in a populate: the arrays as they are, no copies)
    uslots, first, first_w, _ = first_by_slot(slots, is_write)
    uvidx = vidx[first]
    written = []
    for vi, sel in groups_in_order(uvidx):
        vma = mm.vmas[vi]
        s, w = uslots[sel], first_w[sel]
        if vma.thp_eligible(mm.kernel):
            # slots under a new THP never write-fault; under the huge zero page they do
            s, w = do_huge_pmd_anonymous_faults(mm, vma, s, w, cpu_nid)
        written.append(s[w])
        in_fault_batches(do_anonymous_faults if vma.file is None else do_file_faults,
                         mm, vma, s, w, cpu_nid)
    return np.concatenate(written)


def install_ptes(mm, slots, pfns, bits) -> None:
    """set_pte_at() for new mappings, allocating the PTE tables (pmd_populate) they need."""
    pt = mm.pt
    if COMPILED:        # the numpy form below, in one pass
        slots = np.asarray(slots, np.int64)
        pt.alloc_upper_tables(set_ptes(
            slots, np.broadcast_to(np.asarray(pfns, np.int64), slots.shape),
            np.broadcast_to(np.asarray(bits, np.uint64), slots.shape), pt.pte, pt.pmd,
            np.uint64(PMD_TABLE)))
        return
    pmd_slots = unique(slots >> 9)
    empty = pmd_slots[pt.pmd[pmd_slots] == 0]
    pt.alloc_upper_tables(empty)
    pt.pmd[empty] = PMD_TABLE
    pt.pte[slots] = mk_pte(pfns, 0) | np.asarray(bits, dtype=np.uint64)


def new_folios(mm, vma, slots, order: int, cpu_nid: int, strict: bool = True, ilx=None):
    """Allocate one folio of 2^order pages for each of ``slots`` (the first page slot each
    maps) under the VMA's policy, else the faulting task's (vma_alloc_folio ->
    get_vma_policy -> alloc_pages_mpol). ``ilx`` overrides the interleave indices (a page
    cache folio's is its file offset). Returns (heads, ok) as page_alloc.alloc_pages_mpol."""
    from .mempolicy import INTERLEAVE_MODES, get_vma_policy, interleave_index
    from .page_alloc import alloc_pages_mpol

    pol = get_vma_policy(vma)
    slots = np.asarray(slots, np.int64)
    if pol.mode in INTERLEAVE_MODES and ilx is None:
        ilx = interleave_index(vma, slots, order)
    return alloc_pages_mpol(mm.kernel, pol, slots.size, order, cpu_nid, ilx, strict=strict)


def add_new_folios(k, heads, memcg_id: int, flags, mapping: int, index, content=None,
                   shadows=None) -> None:
    """Set up freshly allocated folios and put them on the LRU.

    Faulted folios get PG_active first (folio_add_lru in a fault, mglru-spec §3.1), so they land in
    max_seq-1. ``index`` is per page, one entry per pfn of the folios; ``content`` the content
    tag of each page (fresh tags by default); ``shadows`` the shadow entries of the evicted
    pages they replace (workingset_refault, before folio_add_lru).
    """
    from .memcontrol import mem_cgroup_charge
    from .workingset import workingset_refault

    pm = k.pm
    mem_cgroup_charge(k, k.memcgs.by_id[int(memcg_id)], heads)
    pfns = pm.folio_pfns(heads)
    tags = k.new_content_tags(pfns.size) if content is None else content
    # lru_gen_in_fault() sets PG_active (the classic LRU adds inactive); after the refault
    active = PG_active if lru_gen_enabled(k) else np.uint16(0)
    if COMPILED:
        # one pass for what add_new_folios_reference_fields does
        index = np.asarray(index)
        set_up_folios(pfns, heads, pm.flags, pm.memcg, pm.mapping, pm.index, pm.content,
                      np.uint16(flags), np.uint16(memcg_id), np.int32(mapping),
                      np.broadcast_to(index.astype(np.int64, copy=False), pfns.shape),
                      np.broadcast_to(np.asarray(tags, np.uint32), pfns.shape),
                      np.uint16(0 if shadows is not None else active))
    else:
        add_new_folios_reference_fields(pm, pfns, heads, flags, memcg_id, mapping, index, tags,
                                        0 if shadows is not None else active)
    if shadows is not None:
        workingset_refault(k, heads, shadows)
        pm.flags[heads] |= active
    k.lru_add(heads)


def add_new_thps(k, heads, memcg_id: int, flags, mapping: int, pmds, slot_content) -> None:
    """add_new_folios for new anon THPs, each page's index its page slot (the THP ``heads[j]``
    maps the PMD ``pmds[j]``), with the slots' content tags (``slot_content``) set too: one
    pass (fault_kernels.set_up_thps) instead of the per-page pfn, index and tag arrays of
    add_new_folios and the copy to the slots (do_huge_pmd_anonymous_faults' numpy form)."""
    from .memcontrol import mem_cgroup_charge

    pm = k.pm
    mem_cgroup_charge(k, k.memcgs.by_id[int(memcg_id)], heads)
    tags = k.new_content_tags(heads.size * HPAGE_PMD_NR)
    active = PG_active if lru_gen_enabled(k) else np.uint16(0)
    set_up_thps(heads, np.asarray(pmds, np.int64), pm.flags, pm.memcg, pm.mapping, pm.index,
                pm.content, np.uint16(flags), np.uint16(memcg_id), np.int32(mapping), tags,
                np.uint16(active), slot_content)
    k.lru_add(heads)


# False: the fault path's numpy forms instead of its compiled passes (fault_kernels): the
# equivalence tests and benchmarks/setup_steps.py --reference
COMPILED = True


def add_new_folios_reference_fields(pm, pfns, heads, flags, memcg_id, mapping, index, tags,
                                    head_flags) -> None:
    """The numpy form of fault_kernels.set_up_folios."""
    pm.flags[pfns] |= np.uint16(flags)
    pm.memcg[pfns] = memcg_id
    pm.mapping[pfns] = mapping
    pm.index[pfns] = np.asarray(index, dtype=np.uint32)
    pm.content[pfns] = tags
    pm.flags[heads] |= np.uint16(head_flags)


def do_anonymous_faults(mm, vma, slots, first_w, cpu_nid) -> None:
    """do_anonymous_page(): a read maps the shared zero page, a write gets a new page."""
    k = mm.kernel
    reads = slots[~first_w]
    if reads.size:
        install_ptes(mm, reads, np.full(reads.size, k.zero_pfn), PTE_BASE | _PAGE_SPECIAL)
    writes = slots[first_w]
    if writes.size:
        heads, _ = new_folios(mm, vma, writes, 0, cpu_nid)
        add_new_folios(k, heads, mm.memcg.id, PG_anon | PG_swapbacked, mm.id, writes)
        mm.pt.content[writes] = k.pm.content[heads]
        k.pm.mapcount[heads] = 1
        install_ptes(mm, writes, heads, PTE_BASE | _PAGE_RW | _PAGE_DIRTY)
    k.vmstat.count("pgfault", cpu_nid, slots.size)


def do_huge_pmd_anonymous_faults(mm, vma, slots, first_w, cpu_nid):
    """do_huge_pmd_anonymous_page() for every empty, fully covered PMD the slots touch.

    A read maps the huge zero page (use_zero_page); a write allocates a THP. A PMD whose THP
    cannot be allocated falls back to base pages (thp_fault_fallback). Returns the slots left
    for the base-page path.
    """
    k, pt = mm.kernel, mm.pt
    if COMPILED:        # the numpy form below, in one pass
        upmd, uw, n_eligible = thp_fault_pmds(slots, first_w, vma.start_slot, vma.end_slot,
                                              pt.pmd)
        if upmd.size == 0:
            return slots, first_w
    else:
        pmds = slots >> 9
        eligible = (pmds << 9 >= vma.start_slot) & ((pmds + 1) << 9 <= vma.end_slot)
        eligible &= pt.pmd[pmds] == 0
        if not eligible.any():
            return slots, first_w
        n_eligible = int(eligible.sum())
        # first access per PMD decides read or write
        upmd, idx = first_per_key(pmds[eligible])
        uw = first_w[eligible][idx]
    pt.alloc_upper_tables(upmd)     # __handle_mm_fault: pud_alloc, pmd_alloc before the THP
    zero = ~uw if k.sysfs["transparent_hugepage/use_zero_page"] else np.zeros(uw.size, bool)
    if zero.any():
        pt.pmd[upmd[zero]] = mk_pte(np.full(int(zero.sum()), k.huge_zero_pfn),
                                    PTE_BASE | _PAGE_PSE | _PAGE_SPECIAL)
    want = upmd[~zero]
    heads, ok = new_folios(mm, vma, want << 9, HPAGE_PMD_ORDER, cpu_nid, strict=False)
    done = want[ok]
    if heads.size:
        if COMPILED:    # the numpy form below, without its per-page arrays
            add_new_thps(k, heads, mm.memcg.id, PG_anon | PG_swapbacked, mm.id, done,
                         pt.content)
        else:
            index = (done[:, None] * PTRS_PER_PTE + np.arange(HPAGE_PMD_NR)).ravel()
            add_new_folios(k, heads, mm.memcg.id, PG_anon | PG_swapbacked, mm.id, index)
            pt.content[index] = k.pm.content[k.pm.folio_pfns(heads)]
        k.pm.mapcount[heads] = 1  # the PMD mapping counts on the head
        pt.pmd[done] = mk_pte(heads, PTE_BASE | _PAGE_PSE | _PAGE_RW | _PAGE_DIRTY)
        k.vmstat.count("thp_fault_alloc", cpu_nid, heads.size)
    k.vmstat.count("thp_fault_fallback", cpu_nid, want.size - heads.size)
    k.vmstat.count("pgfault", cpu_nid, int(zero.sum()) + heads.size)
    if n_eligible == slots.size and int(zero.sum()) + done.size == upmd.size:
        return slots[:0], first_w[:0]   # every slot under a PMD just mapped (populate's case)
    # np.isin(pmds, upmd[zero]) | np.isin(pmds, done), by a table over the pmds' range
    pmds = slots >> 9
    lo = int(pmds.min())
    mark = np.zeros(int(pmds.max()) - lo + 1, bool)
    mark[upmd[zero] - lo] = True
    mark[done - lo] = True
    handled = mark[pmds - lo]
    return slots[~handled], first_w[~handled]


def first_per_key(keys):
    """(each distinct key, the index of its first occurrence), in first-occurrence order:
    ``np.unique(keys, return_index=True)`` reordered by index. Keys in ascending order (the
    PMDs of a populate's slots) take one pass instead of the sort."""
    keys = np.asarray(keys)
    if keys.size > 1 and (keys[1:] >= keys[:-1]).all():
        start = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        return keys[start], start
    uniq, idx = np.unique(keys, return_index=True)
    order = np.argsort(idx, kind="stable")
    return uniq[order], idx[order]


def file_offsets(vma, slots) -> np.ndarray:
    return vma.pgoff + (slots - vma.start_slot)


def do_file_faults(mm, vma, slots, first_w, cpu_nid) -> None:
    """do_read_fault()/do_shared_fault(): find or read the page-cache page and map it.

    A store to a shared mapping maps it writable and dirties the folio; a private mapping is
    mapped read-only here and copied on write in phase 3 (do_cow_fault's net effect).
    """
    k, f = mm.kernel, vma.file
    offs = file_offsets(vma, slots)
    cached = f.pages[offs] >= 0
    if offs.size > 1 and (offs[1:] > offs[:-1]).all():
        uncached = offs[~cached]    # each offset once, in order (a populate): no sort
    else:
        uoffs, ufirst = np.unique(offs, return_index=True)
        miss = ~cached[ufirst]
        uncached = uoffs[miss][np.argsort(ufirst[miss], kind="stable")]  # first-access order
    if uncached.size:
        cached_pfns = f.pages[offs[cached]]
        # the pages it maps stay while it allocates and charges the new ones (the charge may
        # reclaim the memcg: an unpinned cached page could be freed before it is mapped)
        with k.pm.pin(cached_pfns):
            # the page cache interleaves by file offset (as shmem_alloc_folio's ilx)
            heads, _ = new_folios(mm, vma, uncached, 0, cpu_nid, ilx=uncached)
            fresh = f.content[uncached] == 0              # first read of this offset's data
            f.content[uncached[fresh]] = k.new_content_tags(int(fresh.sum()))
            add_new_folios(k, heads, mm.memcg.id, PG_swapbacked if f.shmem else 0, f.id,
                           uncached, content=f.content[uncached], shadows=f.shadow[uncached])
        f.shadow[uncached] = 0
        f.pages[uncached] = heads
        if not f.shmem:
            k.vmstat.count("pgmajfault", cpu_nid, uncached.size)
    pfns = f.pages[offs]
    np.add.at(k.pm.mapcount, pfns, MAPCOUNT_ONE)
    shared_w = first_w & vma.shared
    bits = np.where(shared_w, PTE_BASE | _PAGE_RW | _PAGE_DIRTY, PTE_BASE).astype(np.uint64)
    install_ptes(mm, slots, pfns, bits)
    folio_mark_dirty(k, pfns[shared_w])
    k.vmstat.count("pgfault", cpu_nid, slots.size)


# ---- phase 3: write faults ---------------------------------------------------------------------
def do_write_faults(mm, slots, is_write, vidx, cpu_nid, first_written) -> None:
    """do_wp_page(): stores to read-only entries. The zero page and private file pages are
    copied to new anon pages; shared file pages become writable and dirty."""
    pt, k = mm.pt, mm.kernel
    if not is_write.any() or COMPILED and not any_write_protect(
            slots, is_write, pt.pte, pt.pmd, k.huge_zero_pfn):
        return                  # (any_write_protect: huge_zero.any() or ro.any() below)
    wslots, wvidx = slots[is_write], vidx[is_write]
    pmds = wslots >> 9
    leaf = pt.pmd_is_leaf(pmds)
    huge_zero = leaf & (pte_pfn(pt.pmd[pmds]) == k.huge_zero_pfn)
    if huge_zero.any():
        # do_huge_pmd_wp_page() on the huge zero page splits it and copies 4 KiB (fallback path)
        split_huge_zero_pmds(mm, unique(pmds[huge_zero]))
        leaf = pt.pmd_is_leaf(pmds)
    e = pt.pte[wslots]
    # (an entry reclaim took meanwhile is not present: handle_accesses' next round faults it)
    ro = ~leaf & ((e & _PAGE_PRESENT) != 0) & ((e & _PAGE_RW) == 0)
    if not ro.any():
        return
    uslots, first, _, _ = first_by_slot(wslots[ro], np.ones(int(ro.sum()), bool))
    uvidx = wvidx[ro][first]
    counted = ~np.isin(uslots, first_written)
    k.vmstat.count("pgfault", cpu_nid, int(counted.sum()))
    for vi, sel in groups_in_order(uvidx):
        vma = mm.vmas[vi]
        s = uslots[sel]
        if vma.shared:
            pfns = pte_pfn(pt.pte[s])
            pt.pte[s] |= _PAGE_RW | _PAGE_DIRTY
            folio_mark_dirty(k, pfns)
            continue
        old = pte_pfn(pt.pte[s])
        reuse = (k.pm.flags[old] & PG_anon) != 0
        pt.pte[s[reuse]] |= _PAGE_RW | _PAGE_DIRTY
        cow, old = s[~reuse], old[~reuse]
        if cow.size == 0:
            continue
        from_cache = old != k.zero_pfn
        # wp_page_copy() holds the page it copies until the copy is charged and mapped: the
        # charge may reclaim the memcg, which must not free the page being copied
        with k.pm.pin(old[from_cache]):
            heads, _ = new_folios(mm, vma, cow, 0, cpu_nid)
            # the copy holds the file page's data; a copy of the zero page is new data
            content = k.new_content_tags(cow.size)
            content[from_cache] = k.pm.content[old[from_cache]]
            add_new_folios(k, heads, mm.memcg.id, PG_anon | PG_swapbacked, mm.id, cow, content)
        pt.content[cow] = content
        k.pm.mapcount[heads] = 1
        np.subtract.at(k.pm.mapcount, old[from_cache], MAPCOUNT_ONE)
        pt.pte[cow] = mk_pte(heads, PTE_BASE | _PAGE_RW | _PAGE_DIRTY)


def split_huge_zero_pmds(mm, pmds) -> None:
    """__split_huge_zero_page_pmd(): replace huge-zero PMD leaves by zero-page PTE tables."""
    pt, k = mm.pt, mm.kernel
    slots = (pmds[:, None] * PTRS_PER_PTE + np.arange(PTRS_PER_PTE)).ravel()
    pt.pmd[pmds] = PMD_TABLE
    pt.pte[slots] = mk_pte(np.full(slots.size, k.zero_pfn), PTE_BASE | _PAGE_SPECIAL)
    k.vmstat.count("thp_split_pmd", mm.cpu_node, pmds.size)


def split_huge_pmds(mm, pmds) -> None:
    """__split_huge_pmd(): turn PMD leaves into PTE tables mapping the same folio page by page.

    The folio stays large; each subpage gains a PTE mapping and the head loses the PMD mapping.
    Young, dirty, write and PROT_NONE carry over to every PTE.
    """
    pt, k = mm.pt, mm.kernel
    pmds = np.asarray(pmds, dtype=np.int64)
    pmds = pmds[pt.pmd_is_leaf(pmds)]
    if pmds.size == 0:
        return
    zero = pte_pfn(pt.pmd[pmds]) == k.huge_zero_pfn
    if zero.any():
        split_huge_zero_pmds(mm, pmds[zero])
        pmds = pmds[~zero]
    if pmds.size == 0:
        return
    entries = pt.pmd[pmds]
    heads = pte_pfn(entries)
    bits = (entries & np.uint64(0xFFF)) & ~_PAGE_PSE
    slots = (pmds[:, None] * PTRS_PER_PTE + np.arange(PTRS_PER_PTE)).ravel()
    pfns = (heads[:, None] + np.arange(PTRS_PER_PTE)).ravel()
    pt.pte[slots] = mk_pte(pfns, 0) | np.repeat(bits, PTRS_PER_PTE)
    pt.pmd[pmds] = PMD_TABLE
    k.pm.mapcount[pfns] += 1
    k.pm.mapcount[heads] -= 1
    k.vmstat.count("thp_split_pmd", mm.cpu_node, pmds.size)


# ---- zap ---------------------------------------------------------------------------------------
def zap_slots(mm, start_slot: int, end_slot: int) -> np.ndarray:
    """zap_page_range(): unmap [start_slot, end_slot); returns the pfns that lost a mapping.

    PMD leaves straddling the range edges must have been split by the caller (VMA split does).
    """
    pt, k = mm.pt, mm.kernel
    lost = []
    p0, p1 = start_slot >> 9, -(-end_slot // PTRS_PER_PTE)
    pmds = np.arange(p0, p1)
    leaf = pmds[pt.pmd_is_leaf(pmds)]
    if leaf.size:
        pfn = pte_pfn(pt.pmd[leaf])
        real = pfn != k.huge_zero_pfn
        k.pm.mapcount[pfn[real]] -= 1
        lost.append(pfn[real])
        pt.pmd[leaf] = 0
    ptes = pt.pte[start_slot:end_slot]
    present = pte_present(ptes) & ((ptes & _PAGE_SPECIAL) == 0)
    pfns = pte_pfn(ptes[present])
    np.subtract.at(k.pm.mapcount, pfns, MAPCOUNT_ONE)
    lost.append(pfns)
    swapped = is_swap_pte(ptes)
    if swapped.any():                 # zap_nonpresent_ptes(): free_swap_and_cache()
        free_swap_and_cache(k, pte_to_swp_offset(ptes[swapped]))
    pt.pte[start_slot:end_slot] = 0
    pt.content[start_slot:end_slot] = 0   # the program's data there is gone
    return np.concatenate(lost) if lost else np.empty(0, np.int64)


def protect_slots_numa(mm, slots) -> int:
    """change_prot_numa() on present, non-special PTEs: clear PRESENT, set PROTNONE.
    Returns how many entries changed (numa_pte_updates)."""
    pt = mm.pt
    slots = np.asarray(slots, np.int64)
    e = pt.pte[slots]
    ok = ((e & _PAGE_PRESENT) != 0) & ((e & _PAGE_SPECIAL) == 0)
    pt.pte[slots[ok]] = (e[ok] & ~_PAGE_PRESENT) | _PAGE_PROTNONE
    src = mm.kernel.access_source
    if src is not None:  # the rate model draws when each page is next touched
        src.arm_hint_faults(mm, slots[ok])
    return int(ok.sum())


def change_huge_pmd_numa(mm, pmd_slots) -> np.ndarray:
    """change_huge_pmd() with prot_numa on THP leaves: clear PRESENT, set PROTNONE. Skips
    entries that are not present leaves, already PROT_NONE, or the huge zero page. Returns the
    PMD slots changed (each counts HPAGE_PMD_NR numa_pte_updates and one
    numa_huge_pte_updates in change_prot_numa)."""
    pt, k = mm.pt, mm.kernel
    pmd_slots = np.asarray(pmd_slots, np.int64)
    e = pt.pmd[pmd_slots]
    ok = pt.pmd_is_leaf(pmd_slots) & ((e & _PAGE_PRESENT) != 0) & ((e & _PAGE_SPECIAL) == 0)
    ok &= pte_pfn(e) != k.huge_zero_pfn
    done = pmd_slots[ok]
    pt.pmd[done] = (e[ok] & ~_PAGE_PRESENT) | _PAGE_PROTNONE
    src = k.access_source
    if src is not None and done.size:  # the rate model draws when each THP is next touched
        src.arm_hint_faults(mm, done, pmd=True)
    return done


class NumaProtResult(NamedTuple):
    nr_updated: int          # entries made PROT_NONE, a THP as HPAGE_PMD_NR (numa_pte_updates)
    nr_huge: int             # THP leaves among them (numa_huge_pte_updates)
    heads: np.ndarray        # head pfns of the folios marked (PTE-mapped ones, then THPs)
    nr_scanned: int = 0      # present entries looked at (PTEs and THP leaves)


def change_prot_numa(vma, start: int, end: int, *, skip_toptier: bool = True) -> NumaProtResult:
    """change_prot_numa() over [start, end) of ``vma`` (promotion-spec §3.2, [K]).

    The prot_numa filters of change_pte_range(): skip the zero page, entries already
    PROT_NONE, special mappings, shared copy-on-write folios of a private mapping, dirty
    page-cache folios (file LRU), and, with ``skip_toptier`` (kernel.numa_balancing = 2 without
    the NORMAL bit), folios on a toptier node. change_huge_pmd() skips the huge zero page,
    PROT_NONE leaves and toptier THPs. Counts numa_pte_updates and numa_huge_pte_updates on the
    node of the mm's CPUs. The caller stamps the access time of the folios returned.
    """
    mm = vma.mm
    k, pt, pm = mm.kernel, mm.pt, mm.kernel.pm
    s0, s1 = PageTable.slot(start), PageTable.slot(end)
    if s1 <= s0:
        return NumaProtResult(0, 0, np.empty(0, np.int64), 0)
    toptier = np.zeros(k.machine.nr_nodes, bool)
    if skip_toptier:
        toptier[list(k.machine.toptier_nodes)] = True
    pmds = np.arange(s0 >> 9, ((s1 - 1) >> 9) + 1, dtype=np.int64)
    leaf = pmds[pt.pmd_is_leaf(pmds)]
    huge_heads = np.empty(0, np.int64)
    if leaf.size:
        hh = pte_pfn(pt.pmd[leaf])
        want = ~toptier[np.maximum(pm.node_of(hh), 0)]
        done = change_huge_pmd_numa(mm, leaf[want])
        huge_heads = pte_pfn(pt.pmd[done])
    if COMPILED:        # the numpy form below, in one pass
        marked, heads, n_live = prot_numa_ptes(
            s0, s1, pt.pte, pt.pmd, pm.order, pm.flags, pm.mapcount, pm.node_start, toptier,
            k.zero_pfn, k.huge_zero_pfn, not vma.shared)
    else:
        slots = np.arange(s0, s1, dtype=np.int64)
        slots = slots[~pt.pmd_is_leaf(slots >> 9)]
        e = pt.pte[slots]
        # (a PROT_NONE entry has PRESENT clear)
        live = ((e & _PAGE_PRESENT) != 0) & ((e & _PAGE_SPECIAL) == 0)
        slots = slots[live]
        pfns = pte_pfn(e[live])
        heads = pm.folio_head(pfns)
        flags = pm.flags[heads]
        ok = ~k.is_zero_pfn(pfns) & ~toptier[np.maximum(pm.node_of(heads), 0)]
        ok &= ~(((flags & PG_swapbacked) == 0) & ((flags & PG_dirty) != 0))  # dirty file folio
        if not vma.shared and ok.any():  # is_cow_mapping(): skip folios mapped more than once
            ok[ok] = ~k.folio_mapped_shared(heads[ok])
        marked, heads, n_live = slots[ok], heads[ok], slots.size
    n = protect_slots_numa(mm, marked) if marked.size else 0
    nr_huge = int(huge_heads.size)
    total = n + nr_huge * HPAGE_PMD_NR
    if total:
        k.vmstat.count("numa_pte_updates", mm.cpu_node, total)
    if nr_huge:
        k.vmstat.count("numa_huge_pte_updates", mm.cpu_node, nr_huge)
    return NumaProtResult(total, nr_huge, np.concatenate([heads, huge_heads]),
                          int(n_live + leaf.size))
