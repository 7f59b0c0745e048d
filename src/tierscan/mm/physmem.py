"""Physical memory: pfn ranges per node and zone, per-pfn folio state, the page allocator.

State is a struct of numpy arrays indexed by pfn (DESIGN §4). A node's pfns are contiguous and
2 MiB aligned, so the node and zone of a pfn are derived from ranges instead of stored.

The allocator stands in for the buddy allocator: it hands out order-0 pages and order-9 (THP)
blocks. Order-0 requests first fill partly used 2 MiB blocks, then split whole blocks from the top
of the node, while order-9 requests take whole blocks from the bottom; this keeps THP-sized blocks
available the way the buddy allocator's preference for small free blocks does (docs/fidelity.md).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
from numba import njit

from .constants import (
    HPAGE_PMD_NR, HPAGE_PMD_ORDER, PAGE_SIZE, PG_allocated, PG_head, PG_reserved, PG_tail,
    ZONE_NAMES,
)

BLOCK = HPAGE_PMD_NR
WMARK_MIN, WMARK_LOW, WMARK_HIGH, WMARK_PROMO = range(4)
WMARK_NAMES = ("min", "low", "high", "promo")
WATERMARK_SCALE_FACTOR = 10  # vm.watermark_scale_factor default (unverified)
# One mapping, in PhysMem.mapcount's type: ufunc.at with a scalar of the array's own type
# takes numpy's fast loop (a Python int takes the generic one: 10 vs 0.27 ms for 2**18 pfns)
MAPCOUNT_ONE = np.int16(1)


def min_free_kbytes_for(lowmem_kbytes: int) -> int:
    """calculate_min_free_kbytes(): int_sqrt(lowmem_kbytes * 16) clamped to [128, 262144] (unverified)."""
    return int(min(max(math.isqrt(lowmem_kbytes * 16), 128), 262144))


# node_of, order-0 alloc, THP take and free by the compiled passes (False: their numpy forms,
# for tests and benchmarks)
COMPILED = True


@njit(cache=True, nogil=True)
def _node_of_kernel(node_start, pfns, out):
    """out[i] = the node whose pfn range holds pfns[i], -1 outside every node: the number of
    node starts after the first at or below the pfn (= searchsorted(side="right") - 1 over
    the non-decreasing starts; a machine has a few nodes, so counting them without branches
    beats a binary search)."""
    last = node_start.size - 1
    end = node_start[last]
    for i in range(pfns.size):
        p = pfns[i]
        j = 0
        for k in range(1, last):
            j += p >= node_start[k]
        out[i] = j if (p >= 0) & (p < end) else -1


def _counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys and how often each occurs (for ``a[keys] += 1`` with repeats, which
    ``np.add.at`` does an element at a time). Keys that come in runs, one run per key in
    ascending or descending order (the pfns of whole blocks as the allocator hands them out)
    are counted without sorting; the distinct keys then come in that order, not sorted."""
    if keys.size == 0:
        return keys, keys
    start = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    runs = keys[start]
    step = np.diff(runs)
    if not ((step > 0).all() or (step < 0).all()):
        # equal keys apart (not the allocator's block-by-block order): sort them together
        keys = np.sort(keys)
        start = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        runs = keys[start]
    # runs are distinct (strictly monotonic), so ``a[runs] += n`` counts every key once
    return runs, np.diff(np.r_[start, keys.size])


class PhysMem:
    """Per-pfn state of every page frame, and the allocator over it."""

    def __init__(self, machine):
        nr_pages = [n.capacity // PAGE_SIZE for n in machine.nodes]
        self.nr_nodes = len(nr_pages)
        self.node_start = np.zeros(self.nr_nodes + 1, dtype=np.int64)
        self.node_start[1:] = np.cumsum(nr_pages)
        self.nr_pfns = int(self.node_start[-1])
        self.node_zone = np.array([ZONE_NAMES.index(n.zone) for n in machine.nodes], dtype=np.int8)
        n = self.nr_pfns
        # The per-pfn arrays (32 bytes a pfn). np.zeros is lazily backed, so pfns never touched
        # cost no resident memory.
        self.flags = np.zeros(n, dtype=np.uint16)
        self.lru_gen_refs = np.zeros(n, dtype=np.uint8)  # gen+1 (bits 0-2), refs (bits 3-4)
        self.list_gen = np.zeros(n, dtype=np.uint8)      # gen+1 of the list the folio sits on
        self.lru_stamp = np.zeros(n, dtype=np.int32)     # position in that list: larger = newer
        self.order = np.zeros(n, dtype=np.uint8)
        self.memcg = np.zeros(n, dtype=np.uint16)
        self.mapcount = np.zeros(n, dtype=np.int16)
        self.mapping = np.zeros(n, dtype=np.int32)       # owning mm id (anon) or file id
        self.index = np.zeros(n, dtype=np.uint32)        # page slot in the mm (anon) or file offset
        self.content = np.zeros(n, dtype=np.uint32)      # content tag: the data the page holds
        # tierscan: 1 + the millisecond of its last demotion (ping-pong); 4 bytes, not an
        # int64 of ns, to keep the per-pfn state small (uint32 ms lasts 49 days)
        self.demoted_ms = np.zeros(n, dtype=np.uint32)
        self.block_free = np.full(n // BLOCK, BLOCK, dtype=np.int16)
        self.node_free = np.array(nr_pages, dtype=np.int64)
        self.node_present = np.array(nr_pages, dtype=np.int64)
        self.watermarks = self.setup_watermarks(WATERMARK_SCALE_FACTOR)
        # folios a fault holds a reference on while it allocates (folio_get): reclaim in that
        # allocation must not take them (isolate_folio cannot get a reference)
        self.pinned = np.empty(0, dtype=np.int64)
        self._stamp_head = 0   # list_add: stamps grow from 1 upward
        self._stamp_tail = 0   # list_add_tail: stamps grow from 0 downward

    @contextmanager
    def pin(self, pfns):
        """Hold a reference on the folios of ``pfns`` for the duration (see ``pinned``)."""
        saved = self.pinned
        self.pinned = np.concatenate([saved, self.folio_head(np.asarray(pfns, np.int64))])
        try:
            yield
        finally:
            self.pinned = saved

    # ---- geometry -------------------------------------------------------------------------
    def node_of(self, pfns) -> np.ndarray:
        """Node id of each pfn (-1 for a negative pfn, i.e. "not present"), in one compiled
        pass (node_of_reference is the numpy form: the same array)."""
        pfns = np.asarray(pfns, dtype=np.int64)
        if not COMPILED:
            return self.node_of_reference(pfns)
        flat = np.ascontiguousarray(pfns).reshape(-1)
        out = np.empty(flat.size, dtype=np.int64)
        _node_of_kernel(self.node_start, flat, out)
        return out.reshape(pfns.shape)

    def node_of_reference(self, pfns) -> np.ndarray:
        pfns = np.asarray(pfns, dtype=np.int64)
        nid = np.searchsorted(self.node_start, pfns, side="right") - 1
        return np.where((pfns < 0) | (pfns >= self.nr_pfns), -1, nid)

    def zone_of(self, pfns) -> np.ndarray:
        return self.node_zone[self.node_of(pfns)]

    def node_range(self, nid: int) -> tuple[int, int]:
        return int(self.node_start[nid]), int(self.node_start[nid + 1])

    # ---- watermarks -----------------------------------------------------------------------
    def setup_watermarks(self, scale_factor: int) -> np.ndarray:
        """__setup_per_zone_wmarks() with one zone per node (spec promotion §3.4; unverified).

        min: min_free_kbytes shared out by lowmem size; Movable zones get managed/1024 clamped to
        [32, 128]. tmp = max(min/4, managed * watermark_scale_factor / 10000);
        low = min + tmp, high = min + 2 tmp, promo = min + 3 tmp.
        """
        pages = self.node_present
        lowmem = np.array([z != ZONE_NAMES.index("Movable") for z in self.node_zone])
        lowmem_pages = int(pages[lowmem].sum())
        min_pages_total = min_free_kbytes_for(lowmem_pages * PAGE_SIZE // 1024) * 1024 // PAGE_SIZE
        wm = np.zeros((self.nr_nodes, 4), dtype=np.int64)
        for nid in range(self.nr_nodes):
            if lowmem[nid]:
                wmin = min_pages_total * int(pages[nid]) // max(lowmem_pages, 1)
            else:
                wmin = min(max(int(pages[nid]) // 1024, 32), 128)
            tmp = max(wmin // 4, int(pages[nid]) * int(scale_factor) // 10000)
            wm[nid] = (wmin, wmin + tmp, wmin + 2 * tmp, wmin + 3 * tmp)
        return wm

    def watermark_ok(self, nid: int, order: int, mark: int) -> bool:
        """__zone_watermark_ok(): free - 2^order must stay at or above the watermark."""
        return int(self.node_free[nid]) - (1 << order) >= int(self.watermarks[nid, mark])

    def allowance(self, nid: int, mark: int) -> int:
        """How many order-0 pages can be taken from nid before it crosses the watermark."""
        return max(int(self.node_free[nid] - self.watermarks[nid, mark]), 0)

    # ---- allocation -----------------------------------------------------------------------
    def alloc(self, nid: int, count: int, order: int = 0) -> np.ndarray:
        """Take up to ``count`` free blocks of 2^order pages from node ``nid``; returns head pfns.

        Marks the pages allocated and compound (head/tail) but sets no other state.
        """
        if count <= 0:
            return np.empty(0, dtype=np.int64)
        b0, b1 = self.node_range(nid)
        b0, b1 = b0 // BLOCK, b1 // BLOCK
        bf = self.block_free[b0:b1]
        if order == HPAGE_PMD_ORDER:
            blocks = np.flatnonzero(bf == BLOCK)[:count] + b0
            pfns = blocks * BLOCK
            self._take(pfns, order)
            return pfns
        if order != 0:
            raise ValueError(f"unsupported allocation order {order}")
        if COMPILED:    # the block choice and the take in one compiled pass (numpy form below)
            out = np.empty(count, dtype=np.int64)
            n = _alloc_order0(self.block_free, b0, b1, count, int(PG_allocated), self.flags,
                              self.order, out)
            self.node_free[nid] -= n
            return out[:n]
        return self.alloc_order0_reference(nid, count)

    def alloc_order0_reference(self, nid: int, count: int) -> np.ndarray:
        """alloc() of ``count`` order-0 pages in numpy (the compiled pass's reference)."""
        b0, b1 = self.node_range(nid)
        b0, b1 = b0 // BLOCK, b1 // BLOCK
        bf = self.block_free[b0:b1]
        partial = np.flatnonzero((bf > 0) & (bf < BLOCK))
        # every listed block has a free page, so the first ``count`` blocks are enough; the
        # whole free blocks are listed only when the partial ones fall short (a demotion
        # batch of 64 nearly never needs them, and listing them reads the node's blocks)
        whole = np.flatnonzero(bf == BLOCK)[::-1] if partial.size < count else partial[:0]
        order_blocks = np.concatenate([partial[:count], whole[:max(count - partial.size, 0)]])
        if order_blocks.size == 0:
            return np.empty(0, dtype=np.int64)
        need = np.searchsorted(np.cumsum(bf[order_blocks], dtype=np.int64), count) + 1
        blocks = order_blocks[:need] + b0
        cand = (blocks[:, None] * BLOCK + np.arange(BLOCK)).ravel()
        pfns = cand[(self.flags[cand] & PG_allocated) == 0][:count]
        self._take(pfns, 0)
        return pfns

    def _take(self, heads: np.ndarray, order: int) -> None:
        nr = 1 << order
        if nr > 1 and COMPILED:    # THPs: one compiled pass over whole folios (numpy form below)
            _take_folios(np.ascontiguousarray(heads, np.int64), nr, order, int(PG_allocated),
                         int(PG_head), int(PG_tail), self.flags, self.order, self.block_free)
        else:
            self._take_reference(heads, order)
            return
        self.node_free -= nr * np.bincount(self.node_of(heads), minlength=self.nr_nodes)

    def _take_reference(self, heads: np.ndarray, order: int) -> None:
        """_take() with per-page index arrays (numpy; order 0 outside alloc: reserve)."""
        nr = 1 << order
        pfns = (heads[:, None] + np.arange(nr)).ravel() if nr > 1 else heads
        self.flags[pfns] = PG_allocated
        self.order[pfns] = order
        if nr > 1:
            self.flags[heads] |= PG_head
            tails = pfns.reshape(-1, nr)[:, 1:].ravel()
            self.flags[tails] |= PG_tail
        blocks, per_block = _counts(pfns // BLOCK)
        self.block_free[blocks] -= per_block.astype(self.block_free.dtype)
        self.node_free -= nr * np.bincount(self.node_of(heads), minlength=self.nr_nodes)

    def _state_arrays(self) -> tuple:
        """The per-pfn arrays free() clears."""
        return (self.flags, self.lru_gen_refs, self.list_gen, self.lru_stamp, self.order,
                self.memcg, self.mapcount, self.mapping, self.index, self.content,
                self.demoted_ms)

    def free(self, heads: np.ndarray) -> None:
        """Return folios (head pfns) to the allocator, clearing all per-pfn state: one
        compiled pass over whole folios (slices, not per-page index arrays) unless COMPILED
        is False (free_reference, the numpy form: the same arrays)."""
        heads = np.asarray(heads, dtype=np.int64)
        if heads.size == 0:
            return
        if not COMPILED:
            self.free_reference(heads)
            return
        nr = self.folio_nr_pages(heads)
        self.node_free += np.bincount(self.node_of(heads), weights=nr,
                                      minlength=self.nr_nodes).astype(np.int64)
        _free_folios(np.ascontiguousarray(heads), nr, self.block_free, *self._state_arrays())

    def free_reference(self, heads: np.ndarray) -> None:
        """free() with a per-page index array."""
        heads = np.asarray(heads, dtype=np.int64)
        pfns = self.folio_pfns(heads)
        self.node_free += np.bincount(self.node_of(heads), weights=self.folio_nr_pages(heads),
                                      minlength=self.nr_nodes).astype(np.int64)
        blocks, per_block = _counts(pfns // BLOCK)
        self.block_free[blocks] += per_block.astype(self.block_free.dtype)
        for arr in self._state_arrays():
            arr[pfns] = 0

    def reserve(self, heads: np.ndarray, order: int) -> None:
        """Mark blocks as reserved kernel memory (the zero pages)."""
        self._take(np.asarray(heads, dtype=np.int64), order)
        self.flags[self.folio_pfns(heads)] |= PG_reserved

    # ---- folio geometry -------------------------------------------------------------------
    def folio_nr_pages(self, heads) -> np.ndarray:
        return np.left_shift(1, self.order[heads].astype(np.int64))

    def folio_head(self, pfns) -> np.ndarray:
        """compound_head(): the head pfn of each pfn's folio."""
        pfns = np.asarray(pfns, dtype=np.int64)
        mask = np.left_shift(1, self.order[pfns].astype(np.int64)) - 1
        return pfns & ~mask

    def folio_pfns(self, heads) -> np.ndarray:
        """All pfns of the given folios, folio by folio."""
        heads = np.asarray(heads, dtype=np.int64)
        nr = self.folio_nr_pages(heads)
        if heads.size == 0 or nr.max() == 1:
            return heads.copy()
        if nr.min() == nr.max():           # folios of one size (THPs): no repeat
            return (heads[:, None] + np.arange(int(nr[0]), dtype=np.int64)).ravel()
        starts = np.repeat(heads, nr)
        offs = np.arange(int(nr.sum())) - np.repeat(np.cumsum(nr) - nr, nr)
        return starts + offs

    def next_stamps(self, count: int, tail: bool) -> np.ndarray:
        """List positions for ``count`` folios added at the head (newest) or tail (oldest) end."""
        if tail:
            stamps = self._stamp_tail - np.arange(count, dtype=np.int64)
            self._stamp_tail -= count
        else:
            stamps = self._stamp_head + 1 + np.arange(count, dtype=np.int64)
            self._stamp_head += count
        return stamps.astype(np.int32)


@njit(cache=True, nogil=True)
def _take_folios(heads, nr, o, allocated, head, tail, flags, order, block_free):
    """PhysMem._take of whole folios of ``nr`` = 2^``o`` (> 1) pages: the head's flags
    allocated|head, the tails' allocated|tail, every page's order ``o``; the pages leave
    their block's free count (a folio of at most BLOCK pages is aligned: it is in one block)."""
    f_head, f_tail = np.uint16(allocated | head), np.uint16(allocated | tail)
    for i in range(heads.size):
        h = heads[i]
        flags[h] = f_head
        flags[h + 1:h + nr] = f_tail
        order[h:h + nr] = o
        block_free[h // BLOCK] -= nr


@njit(cache=True, nogil=True)
def _free_folios(heads, nr, block_free, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10):
    """PhysMem.free's per-page part, folio by folio over slices: the pages back in their
    block's free count (a folio lies in one block) and every state array cleared. A 4 KiB
    page's state is cleared by stores, not slices of one: its 11 one-element slices cost
    twice the stores (2,000 random pages: 368 vs 159 us, micro, in cache)."""
    for i in range(heads.size):
        h, n = heads[i], nr[i]
        block_free[h // BLOCK] += n
        if n == 1:
            a0[h] = 0
            a1[h] = 0
            a2[h] = 0
            a3[h] = 0
            a4[h] = 0
            a5[h] = 0
            a6[h] = 0
            a7[h] = 0
            a8[h] = 0
            a9[h] = 0
            a10[h] = 0
            continue
        e = h + n
        a0[h:e] = 0
        a1[h:e] = 0
        a2[h:e] = 0
        a3[h:e] = 0
        a4[h:e] = 0
        a5[h:e] = 0
        a6[h:e] = 0
        a7[h:e] = 0
        a8[h:e] = 0
        a9[h:e] = 0
        a10[h:e] = 0


@njit(cache=True, nogil=True)
def _alloc_order0(block_free, b0, b1, count, allocated, flags, order, out):
    """alloc() of up to ``count`` order-0 pages from blocks [b0, b1): the free pages of the
    partly used blocks in ascending pfn order, then those of whole free blocks from the top
    of the node down (each block's pages ascending), as alloc_order0_reference picks them;
    each page taken (flags = allocated, order 0, one less free in its block). Stops at the
    ``count``-th page instead of listing the node's blocks. Returns how many were taken."""
    n = 0
    f_alloc = np.uint16(allocated)
    b = b0
    while b < b1 and n < count:
        # most blocks are whole free or full: test a run of 64 for a partly used one
        # without branches (0 < free < BLOCK as one unsigned compare), which vectorizes
        if b + 64 <= b1:
            hit = False
            for j in range(b, b + 64):
                hit |= np.uint16(block_free[j] - 1) < BLOCK - 1
            if not hit:
                b += 64
                continue
        free = block_free[b]
        if 0 < free < BLOCK:
            p, e = b * BLOCK, (b + 1) * BLOCK
            while p < e and n < count:
                if (flags[p] & allocated) == 0:
                    flags[p] = f_alloc
                    order[p] = 0
                    block_free[b] -= 1
                    out[n] = p
                    n += 1
                p += 1
        b += 1
    for b in range(b1 - 1, b0 - 1, -1):
        if n == count:
            return n
        if block_free[b] != BLOCK:
            continue
        p = b * BLOCK
        take = min(BLOCK, count - n)
        for i in range(take):
            flags[p + i] = f_alloc
            order[p + i] = 0
            out[n + i] = p + i
        block_free[b] -= take
        n += take
    return n
