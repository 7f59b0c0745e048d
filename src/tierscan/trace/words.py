"""Decoding the word stream of tierscan's Valgrind tool (valgrind/tsw_main.c), vectorised.

Each little-endian uint64 word's top four bits give its type: 0 an access
(``page << 1 | is_write``), 8 the instruction clock, 9 a thread switch, 10 a VMA (followed by
two raw words, start and end). The decoder takes the stream in arbitrary byte pieces (a pipe
read) and carries the running thread, clock and any split record across pieces.
"""

from __future__ import annotations

import numba
import numpy as np

T_ACCESS, T_CLOCK, T_THREAD, T_VMA = 0, 8, 9, 10
VMA_KIND_CODES = {1: "anon", 2: "file", 3: "heap", 4: "stack", 5: "shm"}
_LOW60 = np.uint64((1 << 60) - 1)


@numba.njit(cache=True, nogil=True)
def _decode(w, thread, clock, pages, writes, threads, clocks, vma_at):
    """One pass: accesses out, running thread and clock carried; VMA marker positions listed
    (their two payload words skipped). Returns (accesses, VMA markers, thread, clock, stop)
    where stop is where a VMA record split by the end of ``w`` begins (len(w) if none)."""
    n = w.size
    k = 0
    nv = 0
    i = 0
    while i < n:
        x = w[i]
        t = x >> 60
        if t == 0:
            pages[k] = x >> 1
            writes[k] = x & 1
            threads[k] = thread
            clocks[k] = clock
            k += 1
        elif t == 8:
            clock = x & 0xFFFFFFFFFFFFFFF
        elif t == 9:
            thread = x & 0xFFFFFFFFFFFFFFF
        elif t == 10:
            if i + 2 >= n:
                return k, nv, thread, clock, i
            vma_at[nv] = i
            nv += 1
            i += 2
        i += 1
    return k, nv, thread, clock, n


class WordDecoder:
    def __init__(self):
        self.tail = b""
        self.thread = 1
        self.clock = 0
        self.vmas: list[list] = []      # [start, end, kind] in arrival order

    def feed(self, data: bytes):
        """Decode what can be decoded; return (pages, writes, threads, clocks) of the accesses."""
        if self.tail:
            data = self.tail + data
        n = len(data) // 8
        w = np.frombuffer(data, np.uint64, n)
        pages = np.empty(n, np.int64)
        writes = np.empty(n, np.uint8)
        threads = np.empty(n, np.uint16)
        clocks = np.empty(n, np.int64)
        vma_at = np.empty(n // 3 + 1, np.int64)
        k, nv, self.thread, self.clock, stop = _decode(w, np.uint64(self.thread),
                                                       np.uint64(self.clock), pages, writes,
                                                       threads, clocks, vma_at)
        self.thread, self.clock = int(self.thread), int(self.clock)
        self.tail = bytes(data[stop * 8:])      # data may be a reused buffer
        for i in vma_at[:nv].tolist():
            self.vmas.append([int(w[i + 1]), int(w[i + 2]),
                              VMA_KIND_CODES.get(int(w[i] & _LOW60), "anon")])
        return pages[:k], writes[:k], threads[:k], clocks[:k]
