"""Swap readahead's window (mm/swap_state.c swapin_nr_pages, swap_cluster_readahead).

The window of each swap-in that misses the swap cache depends on the readahead hits since the
last miss (swapin_readahead_hits, counted by swap_cache_get_folio when it finds a folio with
PG_readahead) and on the previous miss's offset and window: __swapin_nr_pages() opens it to
the next power of two >= hits + 2 (at least 4), keeps 2 pages for a miss next to the
previous one without hits, otherwise 1, caps it at 2^page_cluster and never shrinks it below
half the previous window. Which later faults then hit depends on the windows before them, so
the plan is an ordered state machine: ``plan_windows`` is compiled (DESIGN §4),
``plan_windows_reference`` is the same in plain Python for the tests.

The state (prev_offset, last_readahead_pages, swapin_readahead_hits) is the kernel's global
one, kept on the SwapDevice as an int64[3].
"""

from __future__ import annotations

import numpy as np
from numba import njit

PREV_OFFSET, LAST_RA_PAGES, RA_HITS = 0, 1, 2


@njit(cache=True, nogil=True)
def _swapin_nr_pages_c(prev_offset, offset, hits, max_pages, prev_win):
    """__swapin_nr_pages() (mm/swap_state.c); ``.py_func`` is the plain-Python form."""
    pages = hits + 2
    if pages == 2:
        if offset != prev_offset + 1 and offset != prev_offset - 1:
            pages = 1
    else:
        roundup = 4
        while roundup < pages:
            roundup <<= 1
        pages = roundup
    if pages > max_pages:
        pages = max_pages
    last_ra = prev_win // 2
    if pages < last_ra:
        pages = last_ra
    return pages


@njit(cache=True, nogil=True)
def plan_windows(offs, cached, readahead, nr_slots, max_pages, state):
    """For faulting swap offsets ``offs`` in fault order (distinct), with ``cached`` and
    ``readahead`` their slots' swap-cache state before the faults: which faults miss (and
    read), and the window [start, end] each miss reads (swap_cluster_readahead: aligned to its
    size, cut at the area's end). A fault inside an earlier miss's window hits; a hit on a
    read-ahead folio counts towards the next window. Updates ``state`` in place."""
    n = offs.size
    order = np.argsort(offs)
    srt = offs[order]
    cached = cached.copy()
    readahead = readahead.copy()
    major = np.zeros(n, np.bool_)
    starts = np.empty(n, np.int64)
    ends = np.empty(n, np.int64)
    for i in range(n):
        if cached[i]:
            if readahead[i]:
                state[2] += 1                       # swapin_readahead_hits
                readahead[i] = False
            continue
        off = offs[i]
        if max_pages <= 1:
            pages = 1
        else:                                       # swapin_nr_pages()
            hits = state[2]
            state[2] = 0
            pages = _swapin_nr_pages_c(state[0], off, hits, max_pages, state[1])
            if hits == 0:
                state[0] = off
            state[1] = pages
        mask = pages - 1
        start = off & ~mask
        end = min(off | mask, nr_slots - 1)
        major[i] = True
        starts[i] = start
        ends[i] = end
        lo = np.searchsorted(srt, start)
        hi = np.searchsorted(srt, end, side="right")
        for j in order[lo:hi]:
            if not cached[j]:
                cached[j] = True
                readahead[j] = j != i
    return major, starts[major], ends[major]


def plan_windows_reference(offs, cached, readahead, nr_slots, max_pages, state):
    """plan_windows in plain Python, for the tests."""
    cached, readahead = list(map(bool, cached)), list(map(bool, readahead))
    major, starts, ends = [False] * len(offs), [], []
    for i, off in enumerate(int(o) for o in offs):
        if cached[i]:
            if readahead[i]:
                state[RA_HITS] += 1
                readahead[i] = False
            continue
        pages = 1
        if max_pages > 1:
            hits, state[RA_HITS] = int(state[RA_HITS]), 0
            pages = _swapin_nr_pages_c.py_func(int(state[PREV_OFFSET]), off, hits, max_pages,
                                               int(state[LAST_RA_PAGES]))
            if hits == 0:
                state[PREV_OFFSET] = off
            state[LAST_RA_PAGES] = pages
        start, end = off & ~(pages - 1), min(off | (pages - 1), nr_slots - 1)
        major[i] = True
        starts.append(start)
        ends.append(end)
        for j, o in enumerate(int(x) for x in offs):
            if start <= o <= end and not cached[j]:
                cached[j], readahead[j] = True, j != i
    return (np.array(major, bool), np.array(starts, np.int64), np.array(ends, np.int64))
