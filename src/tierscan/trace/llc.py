"""A page-granular, set-associative LRU last-level-cache filter for trace replay.

DESIGN §5: accesses may be "filtered through a last-level-cache model so that only cache
misses reach memory". The memory-timing layer (memsys/llc.py, issue 12) was not on main when
this was written; this small one stands in until replay can use it. Recorded traces are
page-granular (an access is ``vaddr >> 12``, runs merged), so the cache holds pages, not lines:
a page "hits" when it is among the ``ways`` most recently used pages of its set. That is a
coarse stand-in for line residency (docs/fidelity.md says what it does to results).

``filter_misses`` is the numba kernel (an inherently sequential state machine); ``reference``
is the plain Python loop the tests check it against.
"""

from __future__ import annotations

import numba
import numpy as np

PAGE = 4096


class PageLLC:
    def __init__(self, size_bytes: int, ways: int):
        if size_bytes < PAGE * ways or ways < 1:
            raise ValueError("the cache must hold at least one set of pages")
        self.ways = int(ways)
        self.sets = int(size_bytes // (PAGE * ways))
        self.tags = np.full((self.sets, self.ways), -1, np.int64)
        self.stamps = np.zeros((self.sets, self.ways), np.int64)
        self.clock = np.zeros(1, np.int64)

    def misses(self, pages: np.ndarray) -> np.ndarray:
        """A mask of the accesses (in order) that miss; the cache state moves on."""
        out = np.empty(pages.size, np.bool_)
        filter_misses(np.ascontiguousarray(pages, np.int64), self.tags, self.stamps, self.clock,
                      out)
        return out


@numba.njit(cache=True, nogil=True)
def filter_misses(pages, tags, stamps, clock, out):
    sets, ways = tags.shape
    t = clock[0]
    for i in range(pages.size):
        p = pages[i]
        s = (p ^ (p >> 11)) % sets      # fold higher bits in, as cache index hashes do
        t += 1
        hit = -1
        oldest = 0
        for w in range(ways):
            if tags[s, w] == p:
                hit = w
                break
            if stamps[s, w] < stamps[s, oldest]:
                oldest = w
        if hit >= 0:
            stamps[s, hit] = t
            out[i] = False
        else:
            tags[s, oldest] = p
            stamps[s, oldest] = t
            out[i] = True
    clock[0] = t


def reference(pages, sets: int, ways: int) -> np.ndarray:
    """The same cache as per-set Python lists in LRU order (most recent last)."""
    lru = [[] for _ in range(sets)]
    out = []
    for p in (int(x) for x in pages):
        s = lru[(p ^ (p >> 11)) % sets]
        if p in s:
            s.remove(p)
            out.append(False)
        else:
            if len(s) == ways:
                s.pop(0)
            out.append(True)
        s.append(p)
    return np.array(out, bool)
