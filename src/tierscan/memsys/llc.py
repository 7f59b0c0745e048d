"""The last-level-cache filter (issue 12 item 5), analytic form for the rate model.

The LLC holds 64-byte lines of data and of page tables, shared by the group's threads on one
CPU node. An access to page p references one of its 64 lines uniformly (the phase's
distribution is per page; within a page nothing is known, so every line is equally likely);
each TLB miss adds a reference to a page-table line (tlb.py). Che's approximation (lru.py)
over both populations gives the hit ratio of data references and of walk references.

What a hit means for the detectors (docs/cost-model.md, "LLC filter"): a hit costs
``llc_hit_ns`` instead of a memory access and moves no device traffic. It does *not* hide the
access from the A bit or from a NUMA hint fault: the A bit is set by the page walker, whether
or not the data then hits the cache, and a PROT_NONE entry faults on any access. Only the IBS
sampling path, filtered to L3 misses, sees misses only: its samples are thinned by the miss
ratio.

The exact model runs its accesses' lines (a uniformly drawn line of each accessed page, by
physical address) through ``LineCache``, a 16-way set-associative LRU cache, and charges a hit
or a miss per access; the closed loop's traffic still uses the analytic ratio. Its groups run
one after the other within a tick, not interleaved as on hardware, so one cache shared by
them would let each group have it to itself during its turn; each group gets instead a cache
of the lines it occupies in the shared analytic solution (docs/fidelity.md).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .lru import characteristic_time, compress, hit_probability

LINE = 64
LINES_PER_PAGE = 4096 // LINE


def shared_llc_hits(streams, llc_bytes: int) -> list[tuple[float, float, float]]:
    """One LLC shared by several streams: ``streams`` = [(share, w, line_rates)], share = the
    stream's part of all references (its threads' access rate over the total). One Che
    characteristic time for all; per stream (data hit ratio, walk hit ratio, lines of the
    cache it occupies)."""
    rates, counts, per_line = [], [], []
    for share, w, lr in streams:
        x = share * np.asarray(w, float) / LINES_PER_PAGE     # each line's rate, per page
        r, n = compress(x, float(LINES_PER_PAGE))
        lr_r, lr_n = compress(lr)
        rates += [r, share * lr_r]
        counts += [n, lr_n]
        per_line.append(x)
    t = characteristic_time(np.concatenate(rates), np.concatenate(counts), llc_bytes / LINE)
    out = []
    for (share, w, lr), x in zip(streams, per_line):
        w, lr = np.asarray(w, float), np.asarray(lr, float)
        hit_w, hit_lr = hit_probability(x, t), hit_probability(share * lr, t)
        h = float(w @ hit_w) / max(w.sum(), 1e-300)
        h_pt = float(lr @ hit_lr) / lr.sum() if lr.sum() > 0 else 1.0
        occ = LINES_PER_PAGE * float(hit_w.sum()) + float(hit_lr.sum())
        out.append((h, h_pt, occ))
    return out


def llc_hits(w, line_rates, llc_bytes: int) -> tuple[float, float]:
    """(data hit ratio, walk-reference hit ratio) of a stream with page weights ``w`` and
    page-table line reference rates ``line_rates`` (per access) in an LLC of ``llc_bytes``."""
    w = np.asarray(w, float)
    line_rates = np.asarray(line_rates, float)
    data_r, data_n = compress(w / LINES_PER_PAGE, np.full(w.size, float(LINES_PER_PAGE)))
    pt_r, pt_n = compress(line_rates)
    t = characteristic_time(np.concatenate([data_r, pt_r]), np.concatenate([data_n, pt_n]),
                            llc_bytes / LINE)
    h_data = float(w @ hit_probability(w / LINES_PER_PAGE, t)) / max(w.sum(), 1e-300)
    walks = line_rates.sum()
    h_pt = float(line_rates @ hit_probability(line_rates, t)) / walks if walks > 0 else 1.0
    return h_data, h_pt


# ---- the exact model's filter: a set-associative LRU cache on the line stream ------------------

WAYS = 16


class LineCache:
    """A set-associative LRU cache of 64-byte lines (``ways`` per set), for the exact model's
    address stream. ``access(lines)`` returns the hit mask and updates the cache in order.

    The kernel keeps each set's row in recency order (most recent first): a hit moves its line
    to the front, a miss shifts the row and drops the last (least recent) line. A set then
    holds its ``ways`` most recently used distinct lines, which is what LRU with per-way time
    stamps holds, so the hits are the same; one row of tags is the whole state (no stamps to
    read and compare), and a hot line is found in the first way. ``reference_access`` is the
    stamp form, in plain Python on its own state (for tests: the two give the same masks)."""

    def __init__(self, llc_bytes: int, ways: int = WAYS):
        self.size = int(llc_bytes)
        self.sets = max(1, int(llc_bytes) // LINE // ways)
        self.ways = ways
        self.tags = np.full((self.sets, ways), -1, np.int64)     # recency order, -1 empty
        self._mask = self.sets - 1 if self.sets & (self.sets - 1) == 0 else -1
        self._ref = None                                         # the reference's state

    def access(self, lines) -> np.ndarray:
        lines = np.ascontiguousarray(lines, np.int64)
        hit = np.empty(lines.size, np.bool_)
        _mru_kernel(lines, self.tags, self._mask, hit)
        return hit

    def access_pages(self, pages, offsets) -> np.ndarray:
        """``access(pages * LINES_PER_PAGE + offsets)`` without building the line array: line
        ``offsets[i]`` (0..63) of page ``pages[i]``."""
        pages = np.ascontiguousarray(pages, np.int64)
        hit = np.empty(pages.size, np.bool_)
        _mru_pages_kernel(pages, np.ascontiguousarray(offsets, np.uint8), self.tags,
                          self._mask, hit)
        return hit

    def reference_access(self, lines) -> np.ndarray:
        """The same cache as LRU with time stamps, one line at a time in Python, on its own
        state (the kernel's reference)."""
        if self._ref is None:
            self._ref = (np.full((self.sets, self.ways), -1, np.int64),
                         np.zeros((self.sets, self.ways), np.int64), [0])
        tags, stamp, clock = self._ref
        hit = np.zeros(len(lines), bool)
        for i, line in enumerate(int(x) for x in lines):
            s = line % self.sets
            clock[0] += 1
            found = np.flatnonzero(tags[s] == line)
            if found.size:
                hit[i] = True
                stamp[s, found[0]] = clock[0]
            else:
                victim = int(np.argmin(stamp[s]))
                tags[s, victim] = line
                stamp[s, victim] = clock[0]
        return hit

    def contents(self) -> list[set]:
        """The lines each set holds (kernel state), for tests."""
        return [set(r[r >= 0].tolist()) for r in self.tags]

    def reference_contents(self) -> list[set]:
        tags = self._ref[0] if self._ref is not None else np.full((self.sets, 1), -1)
        return [set(r[r >= 0].tolist()) for r in tags]


# inherently sequential: numba (DESIGN §4); the reference is LineCache.reference_access
@njit(cache=True, nogil=True, inline="always")
def _touch(row, line, ways) -> bool:
    """Look ``line`` up in one set's recency-ordered row and make it the most recent."""
    if row[0] == line:
        return True
    w = 1
    while w < ways and row[w] != line:
        w += 1
    found = w < ways
    if not found:
        w = ways - 1                  # the least recent line leaves
    while w > 0:
        row[w] = row[w - 1]
        w -= 1
    row[0] = line
    return found


@njit(cache=True, nogil=True)
def _mru_kernel(lines, tags, mask, hit):
    sets, ways = tags.shape
    for i in range(lines.size):
        line = lines[i]
        s = line & mask if mask >= 0 else line % sets
        hit[i] = _touch(tags[s], line, ways)


@njit(cache=True, nogil=True)
def _mru_pages_kernel(pages, offsets, tags, mask, hit):
    sets, ways = tags.shape
    for i in range(pages.size):
        line = pages[i] * LINES_PER_PAGE + offsets[i]
        s = line & mask if mask >= 0 else line % sets
        hit[i] = _touch(tags[s], line, ways)
