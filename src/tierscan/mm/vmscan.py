"""MGLRU aging and the page-table walk, with the seed patch's resumable walk and
``lru_gen_scan_lruvec`` (mglru-spec §4–§6; mm/vmscan.c of the baseline tree S7).

The walk follows the kernel level by level: ``walk_page_range`` hands one P4D's worth of VMAs to
``walk_pud_range``, which calls ``walk_pmd_range`` per PUD, which tests each PMD entry (THP leaf,
non-leaf young bit, Bloom filter) and calls ``walk_pte_range`` on the 512-entry PTE table, whose
entries are handled with numpy. ``get_next_vma`` lets every level finish its own table across
VMAs. Return codes, resume addresses (``next_addr``) and the quirks Q1–Q7 of §6.5 and Q8
(docs/fidelity.md) follow the posted code; ``Kernel(faithful_quirks=False)`` switches each
quirk off.

Every walk takes a vectorised path over a whole ``walk_pmd_range`` range at once
(vmscan_fast.py), also when the callback stops it mid-range; it produces the same state,
statistics and callback sequence as this sequential code, which stays the reference.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

import numpy as np

from .constants import (
    ANON_AND_FILE, BLOOM_FILTER_SHIFT, LRU_GEN_MM_WALK, LRU_GEN_NONLEAF_YOUNG,
    MAX_LRU_BATCH, MAX_NR_GENS, MAX_NR_ZONES, MAX_SWAPPINESS, MIN_LRU_BATCH, MIN_NR_GENS,
    MM_LEAF_TOTAL, MM_LEAF_YOUNG, MM_NONLEAF_ADDED, MM_NONLEAF_FOUND, NR_HIST_GENS, NR_MM_STATS,
    P4D_SIZE, PAGE_SIZE, PG_workingset, PMD_SIZE, PUD_SIZE, SWAPPINESS_ANON_ONLY, ULONG_MAX,
    _PAGE_ACCESSED, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_PSE, _PAGE_SPECIAL,
)
from .lru_gen import (
    folio_inc_gen, folio_lru_gen, folio_lru_refs, folio_type, lru_gen_from_seq,
    lru_hist_from_seq, lru_tier_from_refs,
)
from .lru_index import lru_index, lru_index_note, mglru_key
from .pagetable import PageTable, pte_pfn
from .walk_kernels import commit_young, scan_ranges

GOLDEN_RATIO_64 = np.uint64(0x61C8864680B583EB)
PTE_TABLE_BASE = 0xFFFF_8880_0000_0000  # where the model's page-table pages "live"
PMD_MASK = ~(PMD_SIZE - 1) & ULONG_MAX
PUD_MASK = ~(PUD_SIZE - 1) & ULONG_MAX
P4D_MASK = ~(P4D_SIZE - 1) & ULONG_MAX
PAGE_MASK = ~(PAGE_SIZE - 1) & ULONG_MAX
SUITABLE_N = 8  # clamp(cache_line_size / sizeof(pte_t), 2, 8) on x86-64 (§1)


# ---- capabilities ---------------------------------------------------------------------------
def get_cap(kernel, cap: int) -> bool:
    """get_cap(): a bit of /sys/kernel/mm/lru_gen/enabled."""
    return bool(kernel.sysfs["lru_gen/enabled"] & cap)


def should_walk_mmu(kernel) -> bool:
    """arch_has_hw_pte_young() (true on x86) and LRU_GEN_MM_WALK (§4.2)."""
    return get_cap(kernel, LRU_GEN_MM_WALK)


def should_clear_pmd_young(kernel) -> bool:
    """arch_has_hw_nonleaf_pmd_young() (bare-metal x86, unverified) and LRU_GEN_NONLEAF_YOUNG."""
    return get_cap(kernel, LRU_GEN_NONLEAF_YOUNG)


# ---- the mm list (§2.3) -----------------------------------------------------------------------
SENTINEL = "fifo"  # the list head of lru_gen_mm_list.fifo


class LruGenMmList:
    """struct lru_gen_mm_list: one per memcg, a FIFO of its mm_structs."""

    def __init__(self):
        self.fifo: list = []

    def next(self, node):
        if node == SENTINEL:
            return self.fifo[0] if self.fifo else SENTINEL
        i = self.fifo.index(node) + 1
        return self.fifo[i] if i < len(self.fifo) else SENTINEL

    def prev(self, node):
        if node == SENTINEL:
            return self.fifo[-1] if self.fifo else SENTINEL
        i = self.fifo.index(node) - 1
        return self.fifo[i] if i >= 0 else SENTINEL


def lru_gen_add_mm(kernel, mm) -> None:
    """lru_gen_add_mm(): append to the memcg's FIFO; a lruvec whose last iteration ended at the
    list head will force-scan this mm first."""
    mm_list = kernel.mm_list(mm.memcg)
    for nid in range(kernel.machine.nr_nodes):
        st = kernel.lruvec(mm.memcg, nid).mm_state
        if st.tail == SENTINEL:
            st.tail = mm
    mm_list.fifo.append(mm)


def lru_gen_del_mm(kernel, mm) -> None:
    """lru_gen_del_mm(): move head back and tail forward past the leaving mm."""
    mm_list = kernel.mm_list(mm.memcg)
    if mm not in mm_list.fifo:
        return
    for nid in range(kernel.machine.nr_nodes):
        st = kernel.lruvec(mm.memcg, nid).mm_state
        if st.head is mm:
            st.head = mm_list.prev(mm)
        if st.tail is mm:
            st.tail = mm_list.next(mm)
    mm_list.fifo.remove(mm)


# ---- the walker's private state (§2.4) --------------------------------------------------------
@dataclass
class LruGenMmWalk:
    """struct lru_gen_mm_walk, plus the model's knobs for need_resched() and lock failures."""

    lruvec: object = None
    seq: int = 0
    next_addr: int = 0
    accessed_cb: object = None  # a Deliver adaptor (see lru_gen_scan_lruvec)
    nr_pages: np.ndarray = field(
        default_factory=lambda: np.zeros((MAX_NR_GENS, ANON_AND_FILE, MAX_NR_ZONES), np.int64))
    mm_stats: np.ndarray = field(default_factory=lambda: np.zeros(NR_MM_STATS, np.int64))
    batched: int = 0
    swappiness: int = 0
    nr_young_pte: int = 0
    nr_total_pte: int = 0
    force_scan: bool = False
    # model knobs: need_resched() becomes true after this many PTE slots in one round
    pte_budget: int | None = None
    round_ptes: int = 0
    # fault injection: return False from a PTL/PMD-lock trylock (tests of the lock paths)
    trylock: object = None

    def reset(self) -> None:
        """memset(walk, 0): what klruscand does after each node."""
        fresh = LruGenMmWalk(pte_budget=self.pte_budget, trylock=self.trylock)
        self.__dict__.update(fresh.__dict__)

    def need_resched(self) -> bool:
        return self.pte_budget is not None and self.round_ptes >= self.pte_budget

    def lock_ok(self, what: str) -> bool:
        return self.trylock is None or bool(self.trylock(what))


@dataclass
class MmWalkArgs:
    """struct mm_walk: the mm, the current VMA and the walker's private data."""

    mm: object
    walk: LruGenMmWalk
    vma: object = None


# ---- Bloom filters (§2.5) ---------------------------------------------------------------------
def hash_64(val, bits: int):
    """hash_64(): (val * GOLDEN_RATIO_64) >> (64 - bits), on uint64 (scalars or arrays)."""
    with np.errstate(over="ignore"):
        return (np.asarray(val, dtype=np.uint64) * GOLDEN_RATIO_64) >> np.uint64(64 - bits)


def pmd_item(mm, pmd_slots):
    """The address of the PMD entry: the model gives each mm's PMD table pages stable
    "kernel addresses" so the Bloom filter hashes a pointer as the kernel does."""
    pmd_slots = np.asarray(pmd_slots, dtype=np.uint64)
    table = (np.uint64(mm.id) << np.uint64(24)) + (pmd_slots >> np.uint64(9))
    return (np.uint64(PTE_TABLE_BASE) + table * np.uint64(PAGE_SIZE)
            + (pmd_slots & np.uint64(511)) * np.uint64(8))


def get_item_key(item):
    h = hash_64(item, BLOOM_FILTER_SHIFT * 2)
    mask = np.uint64((1 << BLOOM_FILTER_SHIFT) - 1)
    return (h & mask).astype(np.int64), (h >> np.uint64(BLOOM_FILTER_SHIFT)).astype(np.int64)


def test_bloom_filter(mm_state, seq: int, item):
    """test_bloom_filter(): a missing filter passes everything; else both key bits must be set."""
    f = mm_state.filters[seq % 2]
    if f is None:
        return np.ones(np.shape(item), bool) if np.ndim(item) else True
    k0, k1 = get_item_key(item)
    return f[k0] & f[k1]


def update_bloom_filter(mm_state, seq: int, item) -> None:
    f = mm_state.filters[seq % 2]
    if f is None:
        return
    k0, k1 = get_item_key(item)
    f[k0] = True
    f[k1] = True


def reset_bloom_filter(mm_state, seq: int) -> None:
    f = mm_state.filters[seq % 2]
    if f is None:
        mm_state.filters[seq % 2] = np.zeros(1 << BLOOM_FILTER_SHIFT, bool)
    else:
        f[:] = False


# ---- the mm-list iteration (§4.3) -------------------------------------------------------------
def get_next_mm(walk: LruGenMmWalk, kernel):
    """get_next_mm(): skip an mm not used since the last walk (its node bit clear), unless
    force_scan; clear the bit (Q4: a callback scan consumes the hint too, unless fixed)."""
    st = walk.lruvec.mm_state
    mm = st.head
    bit = 1 << (walk.lruvec.nid % 64)
    if not walk.force_scan and not (mm.lru_gen_bitmap & bit):
        return None
    if kernel.faithful_quirks or walk.accessed_cb is None:
        mm.lru_gen_bitmap &= ~bit
    return mm if mm.id in kernel.mms else None


def reset_mm_stats(walk: LruGenMmWalk, last: bool) -> None:
    st = walk.lruvec.mm_state
    hist = lru_hist_from_seq(walk.seq)
    st.stats[hist] += walk.mm_stats
    walk.mm_stats[:] = 0
    if NR_HIST_GENS > 1 and last:
        st.stats[lru_hist_from_seq(walk.seq + 1)] = 0


def iterate_mm_list(walk: LruGenMmWalk, prev_mm):
    """iterate_mm_list(): hand out the next mm of this iteration. Returns (last, mm).

    Patched: the stale-seq early out applies only without accessed_cb (§6.1). Q3: a callback
    scan that reaches the list head bumps mm_state.seq, unless the quirk is off.
    """
    lruvec = walk.lruvec
    kernel = lruvec.kernel
    mm_list = kernel.mm_list(lruvec.memcg)
    st = lruvec.mm_state
    first = last = False
    mm = None
    if walk.accessed_cb is not None or walk.seq > st.seq:
        if st.head is None:
            st.head = SENTINEL
        if st.head == SENTINEL:
            first = True
        while True:
            st.head = mm_list.next(st.head)
            if st.head == SENTINEL:
                if kernel.faithful_quirks or walk.accessed_cb is None:
                    st.seq += 1
                last = True
                break
            # force scan for those added after the last iteration
            if st.tail is None or st.tail is st.head:
                st.tail = mm_list.next(st.head)
                walk.force_scan = True
            mm = get_next_mm(walk, kernel)
            if mm is not None:
                break
    if prev_mm is not None or last:
        reset_mm_stats(walk, last)
    if mm is not None and first:
        reset_bloom_filter(st, walk.seq + 1)
    return last, mm


def iterate_mm_list_nowalk(lruvec, seq: int) -> bool:
    st = lruvec.mm_state
    if seq > st.seq:
        st.head = st.tail = None
        st.seq += 1
        return True
    return False


# ---- VMA selection (§5.3, §5.4) ---------------------------------------------------------------
def should_skip_vma(vma, walk: LruGenMmWalk) -> bool:
    """should_skip_vma(): VMAs the walk does not visit."""
    from .process import (
        VM_DONTEXPAND, VM_HUGETLB, VM_IO, VM_LOCKED, VM_MIXEDMAP, VM_PFNMAP, VM_RAND_READ,
        VM_READ, VM_SEQ_READ, VM_WRITE,
    )

    if not vma.flags & (VM_READ | VM_WRITE):
        return True  # !vma_is_accessible()
    if vma.flags & VM_HUGETLB:
        return True
    if vma.flags & (VM_SEQ_READ | VM_RAND_READ):
        return True  # !vma_has_recency()
    if vma.flags & (VM_LOCKED | VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP):
        return True
    if vma.file is None or vma.file.shmem:  # anonymous or shmem
        return not walk.swappiness
    return walk.swappiness > MAX_SWAPPINESS


def get_next_vma(mask: int, size: int, args: MmWalkArgs, vm_end: int):
    """get_next_vma(): the next non-skipped VMA piece inside the parent table that ends at the
    round-up of ``vm_end``. Returns (found, start, end); leaves args.vma where the search stopped."""
    start = -(-vm_end // size) * size
    end = ((start | (~mask & ULONG_MAX)) + 1) & ULONG_MAX
    for vma in args.mm.vmas:
        if vma.end <= start:
            continue
        args.vma = vma
        if end and end <= vma.start:
            return False, start, end
        if should_skip_vma(vma, args.walk):
            continue
        return True, max(start, vma.start), min(end - 1, vma.end - 1) + 1
    args.vma = None
    return False, start, end


def ended_before_last_slot(end: int, mask: int, size: int) -> bool:
    """``i < PTRS_PER_PMD`` (``_PUD``) after a walk_pmd_range (walk_pud_range) loop over
    [start, end) in the table ``mask`` covers, with entries of ``size`` bytes: the range
    stopped before the table's last entry, so get_next_vma() may find more of it (mm/vmscan.c).
    A range ending unaligned inside the last entry has no room left, whatever ``end``'s
    alignment."""
    return ((end - 1) & ~mask & ULONG_MAX) < (~mask & ULONG_MAX) + 1 - size


# ---- PTE-level checks (§5.8) ------------------------------------------------------------------
def get_pfn_folio_mask(kernel, lruvec, pfns):
    """get_pte_pfn()/get_pmd_pfn()'s node range and get_pfn_folio(): on an LRU, on the
    lruvec's node and memcg. Returns (mask, heads)."""
    pm = kernel.pm
    lo, hi = pm.node_range(lruvec.nid)
    ok = (pfns >= lo) & (pfns < hi)
    heads = np.zeros(pfns.size, np.int64)
    heads[ok] = pm.folio_head(pfns[ok])
    ok[ok] = (folio_lru_gen(pm, heads[ok]) >= 0) & (pm.memcg[heads[ok]] == lruvec.memcg.id)
    return ok, heads


def young_ptes(kernel, lruvec, pt, lo, hi, out=None, limit=None):
    """get_pte_pfn() and get_pfn_folio() over PTE slot ranges [lo[r], hi[r]): the entries whose
    A bit the walk would clear (present, young, not special or the zero page, on the lruvec's
    node, a folio of its memcg on an LRU). Returns (slots, pfns, per-range count); ``out``:
    two int64 buffers with room for every slot to write them into (else fresh ones);
    ``limit``: only the first that many (the later ranges count 0)."""
    pm = kernel.pm
    node_lo, node_hi = pm.node_range(lruvec.nid)
    lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    total = int((hi - lo).sum())
    if out is None:
        out = (np.empty(total, np.int64), np.empty(total, np.int64))
    per_range = np.empty(lo.size, np.int64)
    k = scan_ranges(lo, hi, pt.pte, pm.order, pm.lru_gen_refs, pm.memcg, node_lo, node_hi,
                    lruvec.memcg.id, kernel.zero_pfn, out[0], out[1], per_range,
                    total if limit is None else limit)
    return out[0][:k], out[1][:k], per_range


def clear_young(kernel, walk, table, slots, pfns, piece_ends, gen: int) -> None:
    """Test-and-clear the A bits and walk_update_folio() each run of one folio within one
    piece (piece p ends before entry piece_ends[p]) (§5.9)."""
    pm = kernel.pm
    zone = int(pm.node_zone[walk.lruvec.nid])
    walk.batched += commit_young(table, np.asarray(slots, np.int64), np.asarray(pfns, np.int64),
                                 np.asarray(piece_ends, np.int64), gen, pm.flags,
                                 pm.lru_gen_refs, pm.order, zone, walk.nr_pages)


def suitable_to_scan(total: int, young: int) -> bool:
    """suitable_to_scan(): at least one young PTE per cache line on average (n = 8)."""
    return young * SUITABLE_N >= total


# ---- delivery to the accessed callback (§6.3) -------------------------------------------------
class Deliver:
    """Calls the accessed callback on the pfns found young, in walk order.

    ``__call__(pfns)`` returns (consumed, stop): the first ``consumed`` pfns had their A bit
    cleared and were walked past; ``stop`` asks the walk to stop right after them. ``anchor``
    is then the index of the pfn on which the callback said stop (the last consumed one, or a
    v1 refusal that is not consumed when quirks are off). The per-pfn and batched forms give
    the same answers for the same callback behaviour. A batched callback may get a read-only
    view of the walk's buffer (vmscan_fast.Scratch): copy what you keep after the call.

    - v1 per-pfn ``cb(pfn) -> int``: non-zero means "no space"; the refused pfn's A bit is
      already clear and it is lost (as posted) unless quirks are off, when it is left young and
      the walk resumes at it.
    - v2 per-pfn ``cb(pfn) -> bool``: True means "recorded, and now full".
    - batched ``cb(np.ndarray) -> int taken`` or ``(taken, full)``: taking fewer than offered
      means full (v2) or a refusal of the next one (v1); under v2 return ``(taken, True)`` when
      the batch filled exactly on the last pfn offered.
    """

    def __init__(self, cb, contract: str, batched: bool, faithful: bool, room=None):
        if contract not in ("v1", "v2"):
            raise ValueError(f"unknown callback contract {contract!r} (expected 'v1' or 'v2')")
        self.cb, self.contract, self.batched, self.faithful = cb, contract, batched, faithful
        self.room = room if batched else None
        self.anchor = -1

    def decisive(self):
        """How many leading pfns of a call decide its answer, or None (all of them): a
        batched callback that says how many pfns it still takes (``room()``: klruscand's
        free batch slots) takes at most that many of any longer sequence and so stops by
        the pfn after them, whatever follows (under v1 and v2, taking fewer than offered
        stops). The walk need not find young PTEs beyond them (vmscan_fast._young)."""
        return None if self.room is None else self.room() + 1

    def __call__(self, pfns: np.ndarray) -> tuple[int, bool]:
        if pfns.size == 0:
            return 0, False
        stop_at = self._stop_index(pfns)
        if stop_at is None:
            return pfns.size, False
        self.anchor = stop_at
        # v2 records the pfn it stops on; v1 refuses it, losing it as posted
        keep = self.contract == "v2" or self.faithful
        return stop_at + (1 if keep else 0), True

    def _stop_index(self, pfns: np.ndarray):
        """Index of the pfn on which the callback says stop, or None."""
        if not self.batched:
            for i, pfn in enumerate(pfns.tolist()):
                if self.cb(pfn):
                    return i
            return None
        ret = self.cb(pfns)
        taken, full = ret if isinstance(ret, tuple) else (ret, False)
        taken = int(taken)
        if not 0 <= taken <= pfns.size:
            raise ValueError(f"batched accessed_cb took {taken} of {pfns.size} pfns")
        if self.contract == "v1":
            return taken if taken < pfns.size else None
        if taken < pfns.size or full:
            return max(taken - 1, 0)
        return None


# ---- walk_pte_range (§5.8) --------------------------------------------------------------------
def walk_pte_range(args: MmWalkArgs, start: int, end: int, pmd_slot: int):
    """walk_pte_range(): test and clear the young bits of one PTE table's VMA pieces.
    Returns (err, suitable)."""
    walk, mm = args.walk, args.mm
    pt, kernel, lruvec = mm.pt, mm.kernel, walk.lruvec
    pmd = pt.pmd[pmd_slot]
    if not (pmd & _PAGE_PRESENT) or (pmd & _PAGE_PSE):
        return 0, False  # no PTE table to map
    if not walk.lock_ok("ptl"):
        return 0, True
    gen = lru_gen_from_seq(lruvec.lrugen.max_seq)
    err = 0
    while True:
        s0, s1 = PageTable.slot(start), PageTable.slot(end)
        kernel.materialize_ptes(mm, np.arange(s0, s1))
        cand, pfns, _ = young_ptes(kernel, lruvec, pt, [s0], [s1])
        consumed, stop = (walk.accessed_cb(pfns) if walk.accessed_cb is not None
                          else (cand.size, False))
        if stop:
            visited = int(cand[consumed - 1]) + 1 - s0 if consumed else int(cand[0]) - s0
        else:
            visited = s1 - s0
        walk.nr_total_pte += visited
        walk.round_ptes += visited
        walk.mm_stats[MM_LEAF_TOTAL] += visited
        walk.nr_young_pte += consumed
        walk.mm_stats[MM_LEAF_YOUNG] += consumed
        clear_young(kernel, walk, pt.pte, cand[:consumed], pfns[:consumed], [consumed], gen)
        if stop:
            walk.next_addr = (PageTable.addr(int(cand[consumed - 1])) + PAGE_SIZE
                              if consumed else PageTable.addr(int(cand[0])))
            err = -errno.EAGAIN
            break
        if (end & ~PMD_MASK) == 0:
            break  # i == PTRS_PER_PTE
        found, start, end = get_next_vma(PMD_MASK, PAGE_SIZE, args, end)
        if not found:
            break
    return err, suitable_to_scan(walk.nr_total_pte, walk.nr_young_pte)


# ---- walk_pmd_range_locked (§5.7) -------------------------------------------------------------
@dataclass
class PmdBatch:
    """walk_pmd_range()'s ``first`` and ``bitmap`` locals."""

    first: int = -1
    bitmap: int = 0


def find_next_bit(bitmap: int, size: int, offset: int) -> int:
    rest = bitmap >> offset if offset < size else 0
    if rest == 0:
        return size
    return offset + ((rest & -rest).bit_length() - 1)


def get_pmd_pfn(kernel, lruvec, entry) -> int:
    """get_pmd_pfn(): -1 unless present, not the huge zero page, young and on this node."""
    if not (entry & (_PAGE_PRESENT | _PAGE_PROTNONE)) or (entry & _PAGE_SPECIAL):
        return -1
    if not entry & _PAGE_ACCESSED:
        return -1
    pfn = int(pte_pfn(entry))
    lo, hi = kernel.pm.node_range(lruvec.nid)
    return pfn if lo <= pfn < hi else -1


def walk_pmd_range_locked(args: MmWalkArgs, addr: int, batch: PmdBatch) -> int:
    """walk_pmd_range_locked(): batch up to 1+64+1 PMD entries, then under the PMD lock clear
    the non-leaf young bits and test-and-clear the THP leaves (addr -1 flushes the batch)."""
    walk, mm = args.walk, args.mm
    pt, kernel, lruvec = mm.pt, mm.kernel, walk.lruvec
    if batch.first == -1:
        batch.first, batch.bitmap = addr, 0
        return 0
    i = 0 if addr == -1 else (addr >> 21) - (batch.first >> 21)
    if i and i <= MIN_LRU_BATCH:
        batch.bitmap |= 1 << (i - 1)
        return 0
    err = 0
    if walk.lock_ok("pmd"):
        gen = lru_gen_from_seq(lruvec.lrugen.max_seq)
        base = batch.first & PMD_MASK
        clear_nonleaf = (not walk.force_scan and should_clear_pmd_young(kernel))
        trigger = -1          # the overflow trigger's PMD slot, if its non-leaf bit was cleared
        while True:
            a = base + i * PMD_SIZE if i else batch.first
            slot = PageTable.slot(a) >> 9
            entry = pt.pmd[slot]
            stop = False
            if entry & (_PAGE_PRESENT | _PAGE_PROTNONE | _PAGE_PSE):
                if not entry & _PAGE_PSE:
                    if clear_nonleaf:
                        pt.pmd[slot] &= ~_PAGE_ACCESSED
                        if i > MIN_LRU_BATCH:
                            trigger = slot
                else:
                    pfn = get_pmd_pfn(kernel, lruvec, entry)
                    ok, _ = get_pfn_folio_mask(kernel, lruvec, np.array([pfn]))
                    if pfn != -1 and ok[0]:
                        consumed, stop = (walk.accessed_cb(np.array([pfn]))
                                          if walk.accessed_cb is not None else (1, False))
                        if consumed:
                            walk.mm_stats[MM_LEAF_YOUNG] += 1
                            clear_young(kernel, walk, pt.pmd, [slot], [pfn], [1], gen)
                        if stop:
                            walk.next_addr = _thp_resume_addr(kernel, batch, i, a, consumed)
                            err = -errno.EAGAIN
                            if trigger != -1 and not kernel.faithful_quirks:
                                # Q8 off: the trigger's PTE table is not walked yet (the walk
                                # stops before it); leave it young for the resumed walk
                                pt.pmd[trigger] |= _PAGE_ACCESSED
                            break
            i = 0 if i > MIN_LRU_BATCH else find_next_bit(batch.bitmap, MIN_LRU_BATCH, i) + 1
            if i > MIN_LRU_BATCH:
                break
    batch.first = -1
    return err


def _thp_resume_addr(kernel, batch: PmdBatch, i: int, addr: int, consumed: int) -> int:
    """Where the walk resumes after a flush at batch entry ``i`` (§6.3, Q2 of §6.5).

    As posted: the PMD after the next batched entry's bit, which overshoots to offset 65 when no
    bit is left and skips the pending offsets 0..64 when the trigger (i > 64) filled the batch.
    Fixed: resume right after this entry, or at ``first`` when entries are still pending.
    """
    if kernel.faithful_quirks:
        nxt = find_next_bit(batch.bitmap, MIN_LRU_BATCH, i) + 1
        return (batch.first & PMD_MASK) + nxt * PMD_SIZE
    if i > MIN_LRU_BATCH:
        return batch.first
    if not consumed:
        return addr  # v1 refusal with quirks off: retry this entry
    nxt = find_next_bit(batch.bitmap, MIN_LRU_BATCH, i) + 1
    if nxt <= MIN_LRU_BATCH:
        return (batch.first & PMD_MASK) + nxt * PMD_SIZE
    return addr + PMD_SIZE


# ---- walk_pmd_range (§5.6) --------------------------------------------------------------------
def walk_pmd_range(args: MmWalkArgs, start: int, end: int, fast: bool = True) -> int:
    """walk_pmd_range(): per PMD entry, in order: presence, THP leaf, non-leaf young bit, Bloom
    filter, then walk_pte_range; suitable tables go into the next generation's filter.
    ``fast`` tries the vectorised equivalent first (vmscan_fast.py)."""
    from .vmscan_fast import walk_pmd_range_fast

    walk, mm = args.walk, args.mm
    pt, kernel, lruvec = mm.pt, mm.kernel, walk.lruvec
    st = lruvec.mm_state
    if fast and kernel.fast_walk:
        err = walk_pmd_range_fast(args, start, end)
        if err is not None:
            return err
    batch = PmdBatch()
    nonleaf = not walk.force_scan and should_clear_pmd_young(kernel)
    while True:
        addr = start
        while addr != end:
            nxt = min((addr | ~PMD_MASK & ULONG_MAX) + 1, end)
            slot = PageTable.slot(addr) >> 9
            kernel.materialize_pmds(mm, [slot])
            val = pt.pmd[slot]
            if not (val & (_PAGE_PRESENT | _PAGE_PROTNONE | _PAGE_PSE)) or (
                    (val & _PAGE_PSE) and (val & _PAGE_SPECIAL)):
                walk.mm_stats[MM_LEAF_TOTAL] += 1
                addr = nxt
                continue
            if val & _PAGE_PSE:
                walk.mm_stats[MM_LEAF_TOTAL] += 1
                if get_pmd_pfn(kernel, lruvec, val) != -1:
                    err = walk_pmd_range_locked(args, addr, batch)
                    if err:
                        return err
                addr = nxt
                continue
            if nonleaf:
                if not val & _PAGE_ACCESSED:
                    addr = nxt
                    continue
                err = walk_pmd_range_locked(args, addr, batch)
                if err:
                    return err
            item = pmd_item(mm, slot)
            if not walk.force_scan and not test_bloom_filter(st, walk.seq, item):
                addr = nxt
                continue
            err, suitable = walk_pte_range(args, addr, nxt, slot)
            if err and walk.next_addr < nxt and batch.first == -1:
                return err
            interrupted = bool(err)
            walk.nr_total_pte = walk.nr_young_pte = 0
            if not (interrupted and not kernel.faithful_quirks):  # Q7 off: decide on the re-walk
                walk.mm_stats[MM_NONLEAF_FOUND] += 1
                if suitable:
                    walk.mm_stats[MM_NONLEAF_ADDED] += 1
                    update_bloom_filter(st, walk.seq + 1, item)
            if err:
                if batch.first != -1 or kernel.faithful_quirks:
                    walk.next_addr = batch.first & ULONG_MAX  # Q1: -1 becomes ULONG_MAX
                return err
            addr = nxt
        err = walk_pmd_range_locked(args, -1, batch)
        if err or not ended_before_last_slot(end, PUD_MASK, PMD_SIZE):
            return err
        found, start, end = get_next_vma(PUD_MASK, PMD_SIZE, args, end)
        if not found:
            return 0


# ---- walk_pud_range and the driver (§5.5, §5.2) -----------------------------------------------
def pud_present(mm, pud_index: int) -> bool:
    """pud_present(): present as soon as its PMD table exists, even if every PMD is none."""
    return mm.pt.pud_present(pud_index)


def walk_pud_range(args: MmWalkArgs, start: int, end: int) -> int:
    """walk_pud_range(): PUD by PUD; stops at a PUD boundary when need_resched() or
    MAX_LRU_BATCH promotions are pending. Returns 1 (mm done) or -EAGAIN (resume at next_addr)."""
    walk = args.walk
    done_early = False
    while True:
        addr = start
        while addr != end:
            nxt = min((addr | ~PUD_MASK & ULONG_MAX) + 1, end)
            if pud_present(args.mm, PageTable.slot(addr) >> 18):
                err = walk_pmd_range(args, addr, nxt)
                if err:
                    return err
                if walk.need_resched() or walk.batched >= MAX_LRU_BATCH:
                    end = (addr | ~PUD_MASK & ULONG_MAX) + 1
                    done_early = True
                    break
            addr = nxt
        if done_early:
            break
        if ended_before_last_slot(end, P4D_MASK, PUD_SIZE):
            found, start, end = get_next_vma(P4D_MASK, PUD_SIZE, args, end)
            if found:
                continue
        end = -(-end // P4D_SIZE) * P4D_SIZE
        break
    if end == 0 or args.vma is None:
        return 1
    walk.next_addr = max(end, args.vma.start)
    return -errno.EAGAIN


def walk_page_range(mm, start: int, walk: LruGenMmWalk) -> int:
    """walk_page_range(mm, start, ULONG_MAX) with the MGLRU ops: test_walk = should_skip_vma,
    p4d_entry = walk_pud_range. The first non-zero result ends the walk."""
    if start >= ULONG_MAX:
        return -errno.EINVAL
    args = MmWalkArgs(mm, walk)
    for vma in list(mm.vmas):
        if vma.end <= start or should_skip_vma(vma, walk):
            continue
        args.vma = vma
        addr = max(start, vma.start)
        while addr < vma.end:
            nxt = min((addr | ~P4D_MASK & ULONG_MAX) + 1, vma.end)
            if p4d_present(mm, addr):
                err = walk_pud_range(args, addr, nxt)
                if err:
                    return err
            addr = nxt
    return 0


def p4d_present(mm, addr: int) -> bool:
    """p4d_present(): present as soon as its PUD table exists."""
    return mm.pt.p4d_present(max(PageTable.slot(addr & P4D_MASK) >> 27, 0))


def try_walk_mm(mm, walk: LruGenMmWalk) -> int:
    """try_walk_mm() (patch): one round from next_addr; -EBUSY if max_seq moved."""
    lruvec = walk.lruvec
    if walk.seq != lruvec.lrugen.max_seq:
        return -errno.EBUSY
    walk.round_ptes = 0
    err = -errno.EBUSY
    if walk.lock_ok("mmap"):
        err = walk_page_range(mm, walk.next_addr, walk)
    if walk.batched:
        reset_batch_size(walk)
    return err


def walk_mm(mm, walk: LruGenMmWalk) -> None:
    """walk_mm(): rounds of try_walk_mm until the mm is done."""
    walk.next_addr = 0  # FIRST_USER_ADDRESS
    while try_walk_mm(mm, walk) == -errno.EAGAIN:
        pass


def reset_batch_size(walk: LruGenMmWalk) -> None:
    """reset_batch_size(): apply the deferred nr_pages deltas."""
    walk.lruvec.lrugen.nr_pages += walk.nr_pages
    walk.nr_pages[:] = 0
    walk.batched = 0


# ---- aging (§4) -------------------------------------------------------------------------------
def lruvec_folios(lruvec, types=(0, 1)):
    """Head pfns of the folios on this lruvec's generational lists (list_gen set)."""
    pm = lruvec.kernel.pm
    lo, hi = pm.node_range(lruvec.nid)
    sel = (pm.list_gen[lo:hi] != 0) & (pm.memcg[lo:hi] == lruvec.memcg.id)
    heads = np.flatnonzero(sel) + lo
    if len(types) < 2:
        heads = heads[folio_type(pm, heads) == types[0]]
    return heads


def reset_ctrl_pos(lruvec, type_: int, carryover: bool) -> None:
    """reset_ctrl_pos() (§7.3)."""
    g = lruvec.lrugen
    clear = NR_HIST_GENS == 1 if carryover else NR_HIST_GENS > 1
    if not carryover and not clear:
        return
    hist = lru_hist_from_seq(g.min_seq[type_] if carryover else g.max_seq + 1)
    if carryover:
        g.avg_refaulted[type_] = (g.avg_refaulted[type_] + g.refaulted[hist, type_]) // 2
        g.avg_total[type_] = (g.avg_total[type_] + g.protected[hist, type_]
                              + g.evicted[hist, type_]) // 2
    if clear:
        g.refaulted[hist, type_] = 0
        g.evicted[hist, type_] = 0
        g.protected[hist, type_] = 0


def inc_min_seq(lruvec, type_: int, swappiness: int) -> bool:
    """inc_min_seq() (§4.5): move the oldest gen's folios one gen up (folio_inc_gen), to the
    tail of their new list, counting them as protected; a non-evictable type keeps them."""
    g = lruvec.lrugen
    pm = lruvec.kernel.pm
    exempt = (type_ == 1 and swappiness == SWAPPINESS_ANON_ONLY) or (type_ == 0 and not swappiness)
    if not exempt:
        old = lru_gen_from_seq(g.min_seq[type_])
        index = lru_index(pm)
        if index is None:                # the whole-range reference
            heads = lruvec_folios(lruvec, (type_,))
            heads = heads[pm.list_gen[heads] == old + 1]
            # zone by zone, each list from its tail (oldest first)
            order = np.lexsort((pm.lru_stamp[heads], pm.zone_of(heads)))
            heads = heads[order]
        else:                            # a node has one zone: the list, tail first
            heads = index.all(mglru_key(lruvec, old, type_))
        refs = folio_lru_refs(pm, heads)
        ws = (pm.flags[heads] & PG_workingset) != 0
        new = folio_inc_gen(lruvec, heads, reclaiming=False)
        pm.list_gen[heads] = (new + 1).astype(np.uint8)
        pm.lru_stamp[heads] = pm.next_stamps(heads.size, tail=True)
        lru_index_note(pm, heads)
        counted = (refs + ws) != (1 << 2) + 1
        tiers = lru_tier_from_refs(refs[counted], ws[counted])
        hist = lru_hist_from_seq(g.min_seq[type_])
        np.add.at(g.protected[hist, type_], tiers, pm.folio_nr_pages(heads[counted]))
    reset_ctrl_pos(lruvec, type_, carryover=True)
    g.min_seq[type_] += 1
    return True


def inc_max_seq(lruvec, seq: int, swappiness: int) -> bool:
    """inc_max_seq() (§4.5): make room (inc_min_seq for a type with 4 gens), stamp the new
    youngest gen and advance max_seq."""
    g = lruvec.lrugen
    if seq != g.max_seq:
        return False
    for t in range(ANON_AND_FILE):
        if g.max_seq - g.min_seq[t] + 1 == MAX_NR_GENS:
            inc_min_seq(lruvec, t, swappiness)
    for t in range(ANON_AND_FILE):
        reset_ctrl_pos(lruvec, t, carryover=False)
    g.timestamps[lru_gen_from_seq(g.max_seq + 1)] = lruvec.kernel.jiffies
    g.max_seq += 1
    return True


def try_to_inc_max_seq(lruvec, seq: int, swappiness: int, force_scan: bool) -> bool:
    """try_to_inc_max_seq() (§4.2): walk every mm of the memcg (or just bump mm_state.seq when
    the walk is off), and create a new generation if this walker closed the iteration."""
    st = lruvec.mm_state
    kernel = lruvec.kernel
    if seq > lruvec.lrugen.max_seq:
        raise ValueError(f"seq {seq} > max_seq {lruvec.lrugen.max_seq}")
    if seq <= st.seq:
        return False
    if not should_walk_mmu(kernel):
        success = iterate_mm_list_nowalk(lruvec, seq)
    else:
        walk = LruGenMmWalk(lruvec=lruvec, seq=seq, swappiness=swappiness, force_scan=force_scan)
        mm = None
        while True:
            success, mm = iterate_mm_list(walk, mm)
            if mm is None:
                break
            walk_mm(mm, walk)
    if success:
        success = inc_max_seq(lruvec, seq, swappiness)
    kernel.after_op()
    return success


# ---- the patch: lru_gen_scan_lruvec (§6.2) ----------------------------------------------------
def lru_gen_scan_lruvec(lruvec, seq: int, accessed_cb, flush_cb, *, contract: str = "v2",
                        batched: bool = False, walk: LruGenMmWalk | None = None,
                        room=None) -> LruGenMmWalk:
    """lru_gen_scan_lruvec(): rescan the youngest generation without creating a new one.

    Every young PTE/PMD of the lruvec's node and memcg found in the memcg's mms is cleared,
    its folio promoted to gen(max_seq) by folio_update_gen, and its pfn (the head pfn for a
    PMD-mapped THP) passed to ``accessed_cb``; ``flush_cb()`` runs after every round.
    ``walk`` is the caller's walk struct (klruscand keeps one per pass; Q5); by default a
    fresh one. ``room``: for a batched callback, how many pfns it still takes (Deliver).
    Returns the walk struct.
    """
    kernel = lruvec.kernel
    walk = walk or LruGenMmWalk()
    if not kernel.faithful_quirks:
        walk.force_scan = False  # Q5 off: force_scan does not leak from an earlier lruvec
    walk.lruvec, walk.seq = lruvec, seq
    walk.accessed_cb = Deliver(accessed_cb, contract, batched, kernel.faithful_quirks, room)
    walk.swappiness = MAX_SWAPPINESS
    mm = None
    while True:
        _, mm = iterate_mm_list(walk, mm)
        if mm is None:
            break
        walk.next_addr = 0
        while True:
            err = try_walk_mm(mm, walk)
            flush_cb()
            if err != -errno.EAGAIN:
                break
        if err == -errno.EBUSY and not kernel.faithful_quirks and walk.seq != lruvec.lrugen.max_seq:
            break  # Q6 off: stop instead of cascading -EBUSY through the rest of the list
    walk.accessed_cb = None
    kernel.after_op()
    return walk


# ---- when aging is needed (§4.1) ----------------------------------------------------------------
def evictable_min_seq(min_seq, swappiness: int) -> int:
    min_type = int(swappiness == 0)
    max_type = int(swappiness < SWAPPINESS_ANON_ONLY)
    return min(min_seq[min_type], min_seq[max_type])


def should_run_aging(lruvec, max_seq: int, swappiness: int) -> tuple[bool, int]:
    """should_run_aging(): (aging needed, nr pages in the evictable gens)."""
    g = lruvec.lrugen
    ems = evictable_min_seq(g.min_seq, swappiness)
    if ems + MIN_NR_GENS > max_seq:
        return True, 0
    nr = 0
    for t in evictable_types(swappiness):
        # one gather and one sum over the gens of min_seq..max_seq (the same integer total)
        gens = [lru_gen_from_seq(seq) for seq in range(g.min_seq[t], max_seq + 1)]
        nr += int(np.maximum(g.nr_pages[gens, t], 0).sum())
    return ems + MIN_NR_GENS == max_seq, nr


def evictable_types(swappiness: int):
    """for_each_evictable_type(): FILE only at 0, ANON only at 201, else both."""
    return [t for t in (0, 1) if not (t == 0 and swappiness == 0)
            and not (t == 1 and swappiness == SWAPPINESS_ANON_ONLY)]
