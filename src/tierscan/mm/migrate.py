"""Folio migration between nodes (mm/migrate.c): the mechanism under move_pages, mbind and
every promotion engine.

A migration isolates the folio (lru_gen_del_folio, which sets PG_active when it leaves an active
generation), copies its state to a folio on the target node, rewrites every mapping through the
rmap keeping the young and dirty bits (remove_migration_pte), frees the old folio and puts the new
one back on the target node's lruvec. The new entry is built from the VMA's protection
(``vma->vm_page_prot``), so a NUMA-hint PROT_NONE entry is mapped present again.
"""

from __future__ import annotations

import numpy as np

from numba import njit

from ..arrays import unique
from .constants import (
    HPAGE_PMD_NR, HPAGE_PMD_ORDER, LRU_GEN_MASK, PG_anon, PG_dirty, PG_lru, PG_swapbacked, PTE_PFN_SHIFT,
    _PAGE_PRESENT, _PAGE_PROTNONE,
)
from .memcontrol import mem_cgroup_migrate
from .pagetable import mk_pte
from .physmem import BLOCK, WMARK_HIGH, WMARK_MIN
from .rmap import Sites, pmd_mapped_thps, pte_mapped_pages, rmap_walk
from .swap import swap_cache_migrate
from .vmstat import register_vmstat

_COPIED = ("flags", "lru_gen_refs", "memcg", "mapcount", "mapping", "index", "content",
           "demoted_ms")

# tierscan's own counter (not the kernel's): pages promoted (moved from a lower tier to a top
# tier) within Kernel.pingpong_window_ns of their demotion: promotion/demotion ping-pong.
# Demotion times are kept in whole milliseconds (PhysMem.demoted_ms), so the window is judged
# to 1 ms: a promotion counts when the milliseconds elapsed since the demotion's millisecond are
# within the window.
PINGPONG = "tierscan_promote_pingpong"
register_vmstat(PINGPONG)


def _notify_remap(kernel, sites, old_pfns, src_nid, dst_nid) -> None:
    """Tell the remap hooks which page slots of which mm now live on ``dst_nid``."""
    if not kernel.remap_hooks:
        return
    if sites.pmd:  # the PMD site is found once per page of the THP: each is its own page
        slots = (sites.slots << 9) + (old_pfns[sites.pos] & 511)
    else:
        slots = sites.slots
    for hook in kernel.remap_hooks:
        hook(sites.mm, slots, src_nid[sites.pos], dst_nid)


def migrate_folios(kernel, heads, target_nid: int, mark: int = WMARK_MIN,
                   flush_per_folio: bool = False, wake_kswapd: bool = False) -> np.ndarray:
    """migrate_pages() of the given folios to ``target_nid``. Returns a success mask.
    ``flush_per_folio`` charges a TLB shootdown per folio (single-folio migrations done one
    after the other) instead of one for the batch (migrate_pages_batch's batched flush).
    ``wake_kswapd``: the target allocation may wake the target's kswapd (demotion's
    GFP_NOWAIT does; promotion's allocation, which clears __GFP_RECLAIM, does not).

    A folio fails when the target node has no room above ``mark`` for a folio of its order.
    """
    pm, vm = kernel.pm, kernel.vmstat
    heads = np.asarray(heads, dtype=np.int64)
    ok = np.zeros(heads.size, bool)
    pingpong = _recently_demoted(kernel, heads, target_nid)
    nr_all = pm.folio_nr_pages(heads)
    orders = pm.order[heads]
    for order in unique(orders):
        idx = np.flatnonzero(orders == order)
        new, _ = _alloc_on(kernel, idx.size, int(order), target_nid, mark, wake_kswapd)
        moved = idx[: new.size]
        if new.size:
            src = kernel.node_of(heads[moved])
            mms = move_folios(kernel, heads[moved], new)
            ok[moved] = True
            if kernel.accounting is not None:
                kernel.accounting.migrated(int(order), new.size, mms,
                                           new.size if flush_per_folio else 1,
                                           src_nids=src, dst_nid=target_nid)
        nr, failed = 1 << int(order), idx.size - new.size
        vm.count("pgmigrate_success", target_nid, new.size * nr)
        vm.count("pgmigrate_fail", target_nid, failed * nr)
        if order == HPAGE_PMD_ORDER:
            vm.count("thp_migration_success", target_nid, new.size)
            vm.count("thp_migration_fail", target_nid, failed)
    if (ok & pingpong).any():
        vm.count(PINGPONG, target_nid, int((nr_all[ok & pingpong]).sum()))
    return ok


def _recently_demoted(kernel, heads, target_nid: int) -> np.ndarray:
    """Which folios, if this migration promotes them (lower tier to top tier), were demoted
    less than pingpong_window_ns ago."""
    pm = kernel.pm
    tiers = _tiers(kernel)
    if tiers[target_nid] != 0 or heads.size == 0:
        return np.zeros(heads.size, bool)
    stamp = pm.demoted_ms[heads].astype(np.int64)
    elapsed_ms = kernel.clock_ns // 1_000_000 - (stamp - 1)
    return (stamp > 0) & (elapsed_ms * 1_000_000 <= kernel.pingpong_window_ns) & \
        (tiers[np.maximum(pm.node_of(heads), 0)] > 0)


def _alloc_on(kernel, count, order, nid, mark, wake_kswapd=False):
    from .page_alloc import alloc_pages

    return alloc_pages(kernel, count, order, [nid], nid, strict=False, marks=(mark,),
                       wake_kswapd=wake_kswapd, direct_reclaim=False)


def remove_migration_bits(entries) -> np.ndarray:
    """The flag bits remove_migration_pte()/remove_migration_pmd() (mm/migrate.c) give the new
    entry: ``mk_pte(new, vma->vm_page_prot)`` plus the young, dirty and write state the
    migration entry recorded. vm_page_prot is the VMA's ordinary protection, so a NUMA-hint
    PROT_NONE entry comes back PRESENT: its pending hint fault is gone (issue 11 §5)."""
    bits = np.asarray(entries, np.uint64) & np.uint64(0xFFF)
    hinted = (bits & (_PAGE_PRESENT | _PAGE_PROTNONE)) == _PAGE_PROTNONE
    return np.where(hinted, (bits & ~_PAGE_PROTNONE) | _PAGE_PRESENT, bits)


def move_folios(kernel, old, new, chunks=None):
    """Move folios ``old`` to the already allocated folios ``new`` of the same orders.
    Returns the mms whose page tables changed (their TLBs need a shootdown).

    ``chunks`` (folio offsets into ``old``, from 0 to old.size) cut the folios into groups
    that each stand for a move_folios() call of its own, made in order: the remap hooks hear
    of each group separately (their sums are floating point, so one call over all would not
    add up bit for bit) and the mms are returned as one set per group. Everything else a move
    does is per folio or an integer count, so it is the same done at once (the caller keeps
    to one target lruvec: lru_add numbers the list positions per lruvec)."""
    pm = kernel.pm
    # off the LRU (a demotion's folios were isolated: on no list, nothing to do); either
    # LRU's del only touches folios on its lists (an MGLRU gen, or PG_lru)
    if ((pm.flags[old] & PG_lru) | (pm.lru_gen_refs[old] & LRU_GEN_MASK)).any():
        kernel.lru_del(old)
    by_folio = COMPILED and BY_FOLIO
    thps = pmd_mapped_thps(kernel, old) if by_folio else None
    pages = pte_mapped_pages(kernel, old) if by_folio and thps is None else None
    if thps is not None:
        per_group = _move_pmd_thps(kernel, old, new, chunks, *thps)
    elif pages is not None:
        per_group = _move_pte_pages(kernel, old, new, chunks, *pages)
    else:
        per_group = _move_pages(kernel, old, new, chunks)
    cached = new[(pm.flags[new] & PG_anon) == 0]
    for fid in unique(pm.mapping[cached]):
        sel = cached[pm.mapping[cached] == fid]
        kernel.files[int(fid)].pages[pm.index[sel].astype(np.int64)] = sel
    swap_cache_migrate(kernel, old, new)
    kernel.free_pages(old)
    mem_cgroup_migrate(kernel, new)
    kernel.lru_add(new)
    return per_group[0] if chunks is None else per_group


def _move_pmd_thps(kernel, old, new, chunks, mm, pmd_slots) -> list[set]:
    """_move_pages for whole anon THPs of one mm, each mapped by one PMD leaf (at
    ``pmd_slots``: rmap.pmd_mapped_thps), folio by folio: the state copied by slices, the
    remap hooks told the pages' slots and source nodes of each chunk (each THP's 512 pages
    in order, one node: nodes are whole 2 MiB blocks), the PMD leaves rewritten once each.
    Their page-by-page rmap walk would find one PMD site (every page of every folio, in
    order), so these are the same calls with the same arrays, and the same writes.
    Returns the mms of each chunk (``chunks`` None: one chunk)."""
    pm = kernel.pm
    old, new = np.asarray(old, np.int64), np.asarray(new, np.int64)
    _copy_folios(old, new, pm.folio_nr_pages(old), *(getattr(pm, name) for name in _COPIED))
    bounds = np.asarray([0, old.size] if chunks is None else chunks).tolist()
    if kernel.remap_hooks:
        dst_nid = int(kernel.node_of(new[:1])[0])
        src_nid = kernel.node_of(old)
        page = np.arange(HPAGE_PMD_NR, dtype=np.int64)
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b > a:
                slots = ((pmd_slots[a:b] << 9)[:, None] + page).ravel()
                src = np.repeat(src_nid[a:b], HPAGE_PMD_NR)
                for hook in kernel.remap_hooks:
                    hook(mm, slots, src, dst_nid)
    table = mm.pt.pmd       # a PMD maps the new head
    table[pmd_slots] = mk_pte(new, 0) | remove_migration_bits(table[pmd_slots])
    return [{mm} if b > a else set() for a, b in zip(bounds[:-1], bounds[1:])]


def _move_pte_pages(kernel, old, new, chunks, mm, slots) -> list[set]:
    """_move_pages for order-0 anon pages of one mm, each mapped by the PTE at ``slots``
    (rmap.pte_mapped_pages): the rmap walk would find one PTE site over every page in order
    (pos = 0, 1, ...), so each chunk's site is the chunk's slice of the pages, and these
    are the same hook calls with the same values, and the same writes, without the walk."""
    pm = kernel.pm
    old, new = np.asarray(old, np.int64), np.asarray(new, np.int64)
    copy_folio_state(pm, old, new, old, new)
    bounds = np.asarray([0, old.size] if chunks is None else chunks).tolist()
    if kernel.remap_hooks:
        dst_nid = int(kernel.node_of(new[:1])[0])
        src_nid = kernel.node_of(old)
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b > a:
                for hook in kernel.remap_hooks:
                    hook(mm, slots[a:b], src_nid[a:b], dst_nid)
    _remap_ptes(mm.pt.pte, slots, new, np.arange(old.size, dtype=np.int64))
    return [{mm} if b > a else set() for a, b in zip(bounds[:-1], bounds[1:])]


def _move_pages(kernel, old, new, chunks) -> list[set]:
    """move_folios' copy, remap hooks and page-table rewrite by an rmap walk of every page
    of the folios. Returns the mms of each chunk (``chunks`` None: one chunk)."""
    pm = kernel.pm
    old_p, new_p = pm.folio_pfns(old), pm.folio_pfns(new)
    copy_folio_state(pm, old_p, new_p, old, new)
    dst_nid = int(kernel.node_of(new_p[:1])[0])
    # only the remap hooks read the source nodes (none during the set-up's placement)
    src_nid = kernel.node_of(old_p) if kernel.remap_hooks else None
    sites = rmap_walk(kernel, old_p)
    if chunks is None:
        groups = [sites]
    else:
        page_at = np.r_[0, np.cumsum(pm.folio_nr_pages(old))][np.asarray(chunks)]
        groups = split_sites(sites, page_at)
    per_group = []
    for group in groups:
        mms = set()
        for s in group:
            _notify_remap(kernel, s, old_p, src_nid, dst_nid)
            mms.add(s.mm)
        per_group.append(mms)
    for s in sites:
        if s.pmd:
            slots, pos = pmd_leaves(s)
            s.mm.pt.pmd[slots] = mk_pte(new_p[pos] & ~np.int64(511), 0) | \
                remove_migration_bits(s.mm.pt.pmd[slots])        # a PMD maps the new head
        elif COMPILED:
            _remap_ptes(s.mm.pt.pte, np.asarray(s.slots, np.int64),
                        np.asarray(new_p, np.int64), np.asarray(s.pos, np.int64))
        else:
            table = s.mm.pt.pte
            table[s.slots] = mk_pte(new_p[s.pos], 0) | remove_migration_bits(table[s.slots])
    return per_group


def pmd_leaves(sites):
    """A PMD site's slots and positions, one for each run of equal slots: rmap_walk finds a
    PMD leaf once for each queried page of its THP (512 in a row for a whole THP), and every
    one of them rewrites that entry to the same value (the old entry, read before any write,
    and the head of the same new folio), so once per run writes the same table. Keeps all
    entries when ``REFERENCE_PMD_WRITES`` is set (the per-page form)."""
    if REFERENCE_PMD_WRITES or sites.slots.size < 2:
        return sites.slots, sites.pos
    first = np.flatnonzero(np.r_[True, sites.slots[1:] != sites.slots[:-1]])
    return sites.slots[first], sites.pos[first]


REFERENCE_PMD_WRITES = False
# False: move_folios walks the pages of whole PMD-mapped THPs and of PTE-mapped 4 KiB anon
# pages too (_move_pages, the former form of _move_pmd_thps and _move_pte_pages)
BY_FOLIO = True
# False: copy_folio_state copies field by field in numpy and move_folios rewrites the PTEs
# with numpy (mk_pte | remove_migration_bits): the references of the compiled passes
COMPILED = True

# plain ints for the compiled PTE rewrite (entries go through np.uint64 at the use site)
_FLAGS, _PROTNONE, _PRESENT = 0xFFF, int(_PAGE_PROTNONE), int(_PAGE_PRESENT)
_PFN_SHIFT = int(PTE_PFN_SHIFT)


@njit(cache=True, nogil=True)
def _remap_ptes(pte, slots, new_p, pos):
    """remove_migration_pte() for the PTE sites of a migration in one pass: entry slots[i]
    becomes mk_pte(new_p[pos[i]]) with the flag bits remove_migration_bits gives it (a
    NUMA-hint PROT_NONE entry comes back PRESENT). The numpy form reads every entry before
    writing any; this pass reads and writes one at a time, which is the same because a slot
    appears at most once in a site (one PTE maps one page) and the flag rewrite is idempotent."""
    mask = np.uint64(_FLAGS)
    hint = np.uint64(_PROTNONE)
    both = np.uint64(_PRESENT | _PROTNONE)
    present = np.uint64(_PRESENT)
    shift = np.uint64(_PFN_SHIFT)
    for i in range(slots.size):
        s = slots[i]
        bits = pte[s] & mask
        if (bits & both) == hint:
            bits = (bits & ~hint) | present
        pte[s] = (np.uint64(new_p[pos[i]]) << shift) | bits


def copy_folio_state(pm, old_p, new_p, old=None, new=None) -> None:
    """folio_migrate_flags() and the rest of the per-page state a migration carries over
    (_COPIED) from pages ``old_p`` to pages ``new_p`` (distinct, disjoint): one compiled
    pass instead of a gather and a scatter per field; given the folios (heads ``old`` and
    ``new``, whose pages ``old_p`` and ``new_p`` are) and some are larger than a page, the
    pass copies each folio's pages as one slice per field (THPs: 512 pages a slice)."""
    if not COMPILED:
        for name in _COPIED:
            arr = getattr(pm, name)
            arr[new_p] = arr[old_p]
        return
    arrays = [getattr(pm, name) for name in _COPIED]
    if old is not None and old.size and old_p.size > old.size:
        _copy_folios(np.asarray(old, np.int64), np.asarray(new, np.int64),
                     pm.folio_nr_pages(old), *arrays)
        return
    _copy_state(np.asarray(old_p, np.int64), np.asarray(new_p, np.int64), *arrays)


@njit(cache=True, nogil=True)
def _copy_folios(old, new, nr, a0, a1, a2, a3, a4, a5, a6, a7):
    """The _COPIED fields (in that order) of each old folio's pages to its new folio's."""
    for i in range(old.size):
        o, n, k = old[i], new[i], nr[i]
        a0[n:n + k] = a0[o:o + k]
        a1[n:n + k] = a1[o:o + k]
        a2[n:n + k] = a2[o:o + k]
        a3[n:n + k] = a3[o:o + k]
        a4[n:n + k] = a4[o:o + k]
        a5[n:n + k] = a5[o:o + k]
        a6[n:n + k] = a6[o:o + k]
        a7[n:n + k] = a7[o:o + k]


@njit(cache=True, nogil=True)
def _copy_state(old_p, new_p, a0, a1, a2, a3, a4, a5, a6, a7):
    """The _COPIED fields (in that order) of each old page to its new page."""
    for i in range(old_p.size):
        o, n = old_p[i], new_p[i]
        a0[n] = a0[o]
        a1[n] = a1[o]
        a2[n] = a2[o]
        a3[n] = a3[o]
        a4[n] = a4[o]
        a5[n] = a5[o]
        a6[n] = a6[o]
        a7[n] = a7[o]


def split_sites(sites, page_at) -> list[list]:
    """``_sites_within`` of each chunk [page_at[i], page_at[i + 1]) of the queried pfns, all
    at once: rmap_walk lists each site's ``pos`` ascending, so a chunk is a slice of it found
    by one searchsorted per site (the reference masks every site once per chunk). A site
    whose ``pos`` is not ascending is split by the reference."""
    page_at = np.asarray(page_at, np.int64)
    out: list[list] = [[] for _ in range(page_at.size - 1)]
    for s in sites:
        if s.pos.size > 1 and (s.pos[1:] <= s.pos[:-1]).any():
            parts = [_sites_within([s], a, b) for a, b in zip(page_at[:-1], page_at[1:])]
        else:
            cut = np.searchsorted(s.pos, page_at)
            parts = [[Sites(s.mm, s.pmd, s.slots[a:b], s.pos[a:b])] if b > a else []
                     for a, b in zip(cut[:-1].tolist(), cut[1:].tolist())]
        for group, part in zip(out, parts):
            group.extend(part)
    return out


def split_sites_reference(sites, page_at) -> list[list]:
    """``split_sites`` by masking every site once per chunk (``_sites_within``)."""
    return [_sites_within(sites, a, b) for a, b in zip(page_at[:-1], page_at[1:])]


def _sites_within(sites, lo: int, hi: int) -> list:
    """The part of rmap_walk's ``sites`` for queried pfns [lo, hi), as rmap_walk of those
    pfns alone lists them (same mms and order; ``pos`` stays an index into the whole query)."""
    out = []
    for s in sites:
        keep = (s.pos >= lo) & (s.pos < hi)
        if keep.any():
            out.append(Sites(s.mm, s.pmd, s.slots[keep], s.pos[keep]))
    return out


# ---- misplaced-folio migration (NUMA balancing, pghot's kmigrated, kpromoted) ----------------
#
# tierscan's own counters (not in /proc/vmstat): why a misplaced folio did not move. The
# prepare_fail ones count folios refused by migrate_misplaced_folio_prepare() (the kernel never
# calls migrate_pages() for them, so they are not part of pgmigrate_fail); target_full counts
# the pages of folios migrate_pages() could not allocate on the target (a subset of
# pgmigrate_fail). Counted on the target node. No pinning is modelled, so there is no "pinned".
PREPARE_FAIL_EXEC_SHARED = "pgmigrate_prepare_fail_exec_shared"
PREPARE_FAIL_DIRTY_FILE = "pgmigrate_prepare_fail_dirty_file"
PREPARE_FAIL_UNBALANCED = "pgmigrate_prepare_fail_unbalanced"
PREPARE_FAIL_ISOLATED = "pgmigrate_prepare_fail_isolated"
MIGRATE_FAIL_TARGET_FULL = "pgmigrate_fail_target_full"
register_vmstat(PREPARE_FAIL_EXEC_SHARED,
                PREPARE_FAIL_DIRTY_FILE, PREPARE_FAIL_UNBALANCED, PREPARE_FAIL_ISOLATED,
                MIGRATE_FAIL_TARGET_FULL)

# prepare outcome codes, in the kernel's order of checks
OK, EXEC_SHARED, DIRTY_FILE, UNBALANCED, ISOLATED = 0, 1, 2, 3, 4
_REASON_COUNTER = {EXEC_SHARED: PREPARE_FAIL_EXEC_SHARED, DIRTY_FILE: PREPARE_FAIL_DIRTY_FILE,
                   UNBALANCED: PREPARE_FAIL_UNBALANCED, ISOLATED: PREPARE_FAIL_ISOLATED}


def migrate_balanced_pgdat(kernel, target_nid: int, nr_pages) -> np.ndarray:
    """migrate_balanced_pgdat() (promotion-spec §3.5, unverified [K]): the target stays balanced
    if its free pages exceed the HIGH watermark plus the pages to migrate
    (zone_watermark_ok(zone, 0, high + nr): free > mark). One zone per node."""
    pm = kernel.pm
    free = int(pm.node_free[target_nid])
    return free > int(pm.watermarks[target_nid, WMARK_HIGH]) + np.asarray(nr_pages, np.int64)


def static_prepare_reasons(kernel, heads, vma=None) -> np.ndarray:
    """The refusals of migrate_misplaced_folio_prepare() that do not depend on the target's
    free pages: EXEC_SHARED, DIRTY_FILE (checked before the balance test) and ISOLATED
    (folio_isolate_lru fails: the folio is not on an LRU; checked after it)."""
    pm = kernel.pm
    flags = pm.flags[heads]
    file = (flags & PG_swapbacked) == 0            # folio_is_file_lru()
    reason = np.zeros(heads.size, np.int8)
    if vma is not None:
        from .process import VM_EXEC
        if vma.flags & VM_EXEC:
            shared = file & kernel.folio_mapped_shared(heads)
            reason[shared] = EXEC_SHARED
    reason[(reason == OK) & file & ((flags & PG_dirty) != 0)] = DIRTY_FILE
    reason[(reason == OK) & ((flags & PG_lru) == 0)] = ISOLATED
    return reason


def misplaced_prepare_reasons(kernel, heads, target_nid: int, vma=None) -> np.ndarray:
    """Outcome code (OK, EXEC_SHARED, DIRTY_FILE, UNBALANCED, ISOLATED) of
    migrate_misplaced_folio_prepare() for each folio, all against the target's current free
    pages (prepare itself allocates nothing), without counting or waking kswapd."""
    return prepare_reasons_of(kernel, static_prepare_reasons(kernel, heads, vma),
                              kernel.pm.folio_nr_pages(heads), target_nid)


def prepare_reasons_of(kernel, static, nr_pages, target_nid: int) -> np.ndarray:
    """misplaced_prepare_reasons() of folios whose target-independent refusals
    (static_prepare_reasons, which a caller may compute once for many windows: they read
    only the folios' flags) and sizes are given, against the target's current free pages."""
    reason = static.copy()
    early = (reason == EXEC_SHARED) | (reason == DIRTY_FILE)
    unbalanced = ~early & ~migrate_balanced_pgdat(kernel, target_nid, nr_pages)
    reason[unbalanced] = UNBALANCED
    return reason


def count_prepare_failures(kernel, reasons, target_nid: int) -> None:
    """Count refusals (codes from misplaced_prepare_reasons) and wake kswapd on an unbalanced
    target, as the refusing prepare calls would have."""
    vm = kernel.vmstat
    counts = np.bincount(reasons.astype(np.int64), minlength=5)
    for code, name in _REASON_COUNTER.items():
        if counts[code]:
            vm.count(name, target_nid, int(counts[code]))
    if counts[UNBALANCED] and not _normal_only(kernel):
        # the kernel wakes kswapd on the target's highest managed zone (in tiering mode)
        kernel.wakeup_kswapd(target_nid)


def _normal_only(kernel) -> bool:
    """kernel.numa_balancing = 1 (NORMAL without MEMORY_TIERING): migrate_misplaced_folio_prepare
    returns -EAGAIN on an unbalanced target without waking kswapd, and migrate_misplaced_folio
    counts no pgpromote_success. Mode 0 keeps the model's tiering behaviour (kscand, kpromoted
    and pghot runs compare promotions by that counter; unverified for pghot's kernels)."""
    return int(kernel.sysfs["kernel/numa_balancing"]) == 1


def migrate_misplaced_folio_prepare(kernel, heads, target_nid: int, vma=None) -> np.ndarray:
    """migrate_misplaced_folio_prepare() (promotion-spec §1.4 step 5, §3.5; [K]) for each folio
    (head pfns): the mask of folios that may be migrated to ``target_nid``.

    Refused, in the kernel's order: a file folio mapped by more than one process through an
    executable VMA (only when the caller passes the faulting ``vma``, as NUMA balancing does;
    kmigrated and kpromoted pass none); a dirty file folio; any folio when the target is not
    balanced (migrate_balanced_pgdat: free > HIGH + nr must hold; unverified), which also wakes
    kswapd on the target; a folio that is not on an LRU (already isolated or not LRU at all).
    Each folio is judged against the target's current free pages. The folio is not isolated
    here: tierscan takes it off its LRU in the migration itself (migrate_folios), and a folio
    that then fails stays where it was on its list.
    """
    heads = np.asarray(heads, dtype=np.int64)
    if heads.size == 0:
        return np.zeros(0, bool)
    reasons = misplaced_prepare_reasons(kernel, heads, int(target_nid), vma)
    count_prepare_failures(kernel, reasons, int(target_nid))
    return reasons == OK


def migrate_misplaced_folios_batch(kernel, heads, target_nid: int,
                                   flush_per_folio: bool = False) -> np.ndarray:
    """migrate_misplaced_folios_batch() (promotion-spec §1.4, [S11]): one migrate_pages() of
    prepared folios to ``target_nid`` (MIGRATE_ASYNC, MR_NUMA_MISPLACED). The new folios are
    allocated on the target only, with no fallback and no reclaim: the allocation may go down
    to the MIN watermark ([K], unverified). Successes are added to numa_pages_migrated and, for
    folios leaving a lower-tier node for a top-tier one, to the target's pgpromote_success
    (pages); failures are in pgmigrate_fail (by migrate_folios) and pgmigrate_fail_target_full.
    Returns the success mask."""
    heads = np.asarray(heads, dtype=np.int64)
    if heads.size == 0:
        return np.zeros(0, bool)
    target_nid = int(target_nid)
    nr = kernel.pm.folio_nr_pages(heads)         # before migration clears the old folios
    src_tier = _tiers(kernel)[kernel.node_of(heads)]
    ok = migrate_folios(kernel, heads, target_nid, WMARK_MIN, flush_per_folio)
    vm = kernel.vmstat
    moved = int(nr[ok].sum())
    if moved:
        vm.count("numa_pages_migrated", target_nid, moved)
        if _tiers(kernel)[target_nid] == 0 and not _normal_only(kernel):
            promoted = int(nr[ok & (src_tier > 0)].sum())
            if promoted:
                vm.count("pgpromote_success", target_nid, promoted)
    failed = int(nr[~ok].sum())
    if failed:
        vm.count(MIGRATE_FAIL_TARGET_FULL, target_nid, failed)
    return ok


class MigrationQueue:
    """migrate_misplaced_folios_batch() calls to one target, queued while the caller goes on
    deciding (kmigrated's walk flushes a batch every 512 folios) and done together by
    ``run``, which costs about as much as one batch instead of one per batch. tierscan's own
    (not a kernel structure); the results are bit for bit those of migrating each batch when
    it was queued, because ``add`` takes only batches for which that holds:

    - every allocation succeeds: the pages of all queued batches fit above the target's MIN
      watermark (a batch's own allocation goes down to MIN), and THPs, which take whole free
      blocks from the bottom of the node, cannot meet the order-0 pages, which take partly
      used blocks and then whole blocks from the top (PhysMem.alloc). Taking n pages and
      then m is then taking n + m in one go: the same pfns in the same order;
    - the folios leave other nodes (the frees of one batch cannot feed the next one's
      allocation) and all belong to one memcg (one target lruvec, whose list positions are
      numbered in the order the folios are added, batch after batch);
    - the remap hooks and the migration's charges, whose sums are floating point, are still
      called once per batch and order, in the sequential order (move_folios' ``chunks``).

    While batches are queued, ``pm.node_free`` shows their pages as migrated (taken on the
    target, freed on their nodes): the free-page checks between batches (admission,
    migrate_balanced_pgdat, wakeup_kswapd's balance test) read exactly what they would read
    after each batch's migration. Nothing else those checks read is changed by a migration.
    ``run`` must be called before anything else looks at the kernel.
    """

    def __init__(self, kernel):
        self.kernel = kernel
        self.batches: list[np.ndarray] = []
        self.target = -1

    def add(self, heads, target_nid: int) -> bool:
        """Queue one batch for ``target_nid``; False (nothing queued) when the batch cannot
        join the queue: the caller runs the queue and tries again, or migrates it itself."""
        pm = self.kernel.pm
        heads = np.asarray(heads, dtype=np.int64)
        target_nid = int(target_nid)
        if heads.size == 0 or (self.batches and target_nid != self.target):
            return False
        if COMPILED:    # the checks, the THP count and the node_free change in one pass
            delta = np.zeros(pm.nr_nodes, np.int64)
            ok, memcg0, n9 = _queue_batch(pm.node_start, pm.memcg, pm.order, heads,
                                          target_nid, delta)
            if not ok:
                return False
            memcg0, n9 = int(memcg0), int(n9)
        else:           # the numpy form (reference)
            src = pm.node_of(heads)
            memcg = pm.memcg[heads]
            orders = pm.order[heads]
            if (src == target_nid).any() or (src < 0).any() or (memcg != memcg[0]).any() or \
                    ((orders != 0) & (orders != HPAGE_PMD_ORDER)).any():
                return False
            memcg0 = int(memcg[0])
            n9 = int(np.count_nonzero(orders))
        if not self.batches:
            self.target, self.memcg = target_nid, memcg0
            self.room = pm.allowance(target_nid, WMARK_MIN)
            self.whole = None
            self.n0 = self.n9 = 0
        elif memcg0 != self.memcg:
            return False
        n0 = heads.size - n9
        pages = n0 + (n9 << HPAGE_PMD_ORDER)
        if pages > self.room:
            return False
        if self.n9 + n9:
            if self.whole is None:   # nothing is allocated while batches wait: count once
                lo, hi = pm.node_range(target_nid)
                self.whole = int(np.count_nonzero(pm.block_free[lo // BLOCK:hi // BLOCK] ==
                                                  BLOCK))
            if self.n9 + n9 + -(-(self.n0 + n0) // BLOCK) > self.whole:
                return False
        self.room -= pages
        self.n0 += n0
        self.n9 += n9
        if COMPILED:
            pm.node_free += delta
        else:
            self._show_moved(src, np.left_shift(1, orders.astype(np.int64)), +1)
        self.batches.append(heads)
        return True

    def _show_moved(self, src, nr, sign: int) -> None:
        """Folios of ``nr`` pages on nodes ``src`` shown as moved to the target (sign +1) or
        back (-1) in pm.node_free. ``nr`` is 1 << order (folio_nr_pages), from the orders the
        caller has read already."""
        pm = self.kernel.pm
        delta = np.bincount(src, weights=nr, minlength=pm.nr_nodes).astype(np.int64)
        delta[self.target] -= int(nr.sum())
        pm.node_free += sign * delta

    def run(self) -> list[np.ndarray]:
        """Migrate the queued batches (migrate_misplaced_folios_batch of each, in order) and
        empty the queue. Returns each batch's success mask (all True: see ``add``)."""
        batches, self.batches = self.batches, []
        if not batches:
            return []
        k, target = self.kernel, self.target
        pm = k.pm
        heads = np.concatenate(batches)
        src = pm.node_of(heads)
        orders = pm.order[heads]
        nr = np.left_shift(1, orders.astype(np.int64))     # folio_nr_pages
        self._show_moved(src, nr, -1)
        src_tier = _tiers(k)[src]
        pingpong = _recently_demoted(k, heads, target)
        new = np.empty(heads.size, np.int64)
        for order in unique(orders):
            idx = np.flatnonzero(orders == order)
            got, _ = _alloc_on(k, idx.size, int(order), target, WMARK_MIN)
            if got.size != idx.size:   # add() rules this out
                raise AssertionError("MigrationQueue: an allocation came short")
            new[idx] = got
        # move in the order the batches would have: batch by batch, each order by order
        batch = np.repeat(np.arange(len(batches)), [b.size for b in batches])
        seq = np.lexsort((orders, batch))
        key = batch[seq] * 16 + orders[seq]
        chunks = np.r_[0, np.flatnonzero(key[1:] != key[:-1]) + 1, heads.size]
        mms = move_folios(k, heads[seq], new[seq], chunks)
        if k.accounting is not None:
            for i, (a, b) in enumerate(zip(chunks[:-1], chunks[1:])):
                k.accounting.migrated(int(orders[seq[a]]), int(b - a), mms[i], 1,
                                      src_nids=src[seq[a:b]], dst_nid=target)
        vm = k.vmstat
        for order in unique(orders):
            n = int(np.count_nonzero(orders == order))
            vm.count("pgmigrate_success", target, n << int(order))
            vm.count("pgmigrate_fail", target, 0)
            if order == HPAGE_PMD_ORDER:
                vm.count("thp_migration_success", target, n)
                vm.count("thp_migration_fail", target, 0)
        if pingpong.any():
            vm.count(PINGPONG, target, int(nr[pingpong].sum()))
        vm.count("numa_pages_migrated", target, int(nr.sum()))
        if _tiers(k)[target] == 0:
            promoted = int(nr[src_tier > 0].sum())
            if promoted:
                vm.count("pgpromote_success", target, promoted)
        return [np.ones(b.size, bool) for b in batches]


@njit(cache=True, nogil=True)
def _queue_batch(node_start, memcg, order, heads, target, delta):
    """MigrationQueue.add's per-folio part in one pass over ``heads`` (its numpy form is the
    reference, under COMPILED = False): refuses (False) a folio outside every node or already
    on ``target`` (node_of), of another memcg than the first, or neither order 0 nor
    HPAGE_PMD_ORDER; else returns (True, the memcg, the THP count) with ``delta`` (zeros in)
    holding each node's free-page change were the batch migrated (_show_moved's +1 form)."""
    last = node_start.size - 1
    end = node_start[last]
    m0 = memcg[heads[0]]
    n9 = 0
    total = 0
    for i in range(heads.size):
        h = heads[i]
        if h < 0 or h >= end:
            return False, m0, n9
        j = 0
        for k in range(1, last):
            j += h >= node_start[k]
        o = np.int64(order[h])
        if j == target or memcg[h] != m0 or (o != 0 and o != HPAGE_PMD_ORDER):
            return False, m0, n9
        n9 += o != 0
        nr = np.int64(1) << o
        delta[j] += nr
        total += nr
    delta[target] -= total
    return True, m0, n9


def migrate_misplaced_folio(kernel, head: int, target_nid: int) -> bool:
    """migrate_misplaced_folio(): the single-folio form of migrate_misplaced_folios_batch()
    for a prepared folio."""
    return bool(migrate_misplaced_folios_batch(kernel, np.array([int(head)], np.int64),
                                               target_nid)[0])


def migrate_misplaced_folios_one_by_one(kernel, heads, target_nid: int, vma=None) -> np.ndarray:
    """prepare + migrate_misplaced_folio() for each folio (distinct heads) in order, as a
    synchronous promoter calls them (NUMA hint faults, kpromoted v0). Each folio's balance test
    sees the pages the earlier ones took from the target. Returns the success mask.

    Vectorised: a compiled pass decides which folios pass, assuming each passing folio's
    allocation succeeds; they are migrated together. If an allocation fails (no free 2 MiB
    block for a THP), folios after the first failure that were refused only for the balance
    test are judged again against the real free pages.
    """
    heads = np.asarray(heads, dtype=np.int64)
    n = heads.size
    ok = np.zeros(n, bool)
    if n == 0:
        return ok
    target_nid = int(target_nid)
    pm = kernel.pm
    final = np.full(n, OK, np.int8)
    pending = np.arange(n)
    while pending.size:
        sub = heads[pending]
        reasons = _greedy_prepare(static_prepare_reasons(kernel, sub, vma),
                                  pm.folio_nr_pages(sub),
                                  int(pm.node_free[target_nid]),
                                  int(pm.watermarks[target_nid, WMARK_HIGH]))
        go = np.flatnonzero(reasons == OK)
        moved = migrate_misplaced_folios_batch(kernel, sub[go], target_nid, flush_per_folio=True)
        ok[pending[go]] = moved
        if moved.all():
            final[pending] = reasons
            break
        cut = int(go[np.flatnonzero(~moved)[0]])   # position of the first failed allocation
        final[pending[:cut + 1]] = reasons[:cut + 1]
        after, r_after = pending[cut + 1:], reasons[cut + 1:]
        final[after[r_after != UNBALANCED]] = r_after[r_after != UNBALANCED]
        pending = after[r_after == UNBALANCED]
    count_prepare_failures(kernel, final, target_nid)
    return ok


@njit(cache=True, nogil=True)
def _greedy_prepare(static, nr, free, high):
    """Prepare outcomes in order when each passing folio takes nr pages from ``free``."""
    out = np.empty(static.size, np.int8)
    used = 0
    for i in range(static.size):
        s = static[i]
        if s == 1 or s == 2:                 # EXEC_SHARED, DIRTY_FILE: before the balance test
            out[i] = s
        elif not free - used > high + nr[i]:
            out[i] = 3                       # UNBALANCED
        elif s == 4:
            out[i] = 4                       # ISOLATED
        else:
            out[i] = 0
            used += nr[i]
    return out


def _tiers(kernel) -> np.ndarray:
    return np.array([n.tier for n in kernel.machine.nodes], dtype=np.int64)
