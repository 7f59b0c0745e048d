"""Decoding the word stream of tierscan's Valgrind tool (valgrind/tsw_main.c), in one pass.

Each little-endian uint64 word's top four bits give its type: 0 an access
(``page << 1 | is_write``), 8 the instruction clock, 9 a thread switch, 10 a VMA (followed by
two raw words, start and end). The decoder takes the stream in arbitrary byte pieces (a pipe
read) and carries the running thread, clock and any split record across pieces.

The recorder's hot path: one compiled pass per piece turns the words straight into a .tsw
access chunk as stored (page and clock deltas, flags, threads) and counts each page into the
writer's distinct-page table, so no column is built and then walked again; the columns go
into two sets of buffers used in turn (the writer compresses one chunk in its thread while
the next is decoded). ``decode_reference`` is the plain-Python meaning, for tests.
"""

from __future__ import annotations

import numba
import numpy as np

from .format import _EMPTY, _probe

T_ACCESS, T_CLOCK, T_THREAD, T_VMA = 0, 8, 9, 10
VMA_KIND_CODES = {1: "anon", 2: "file", 3: "heap", 4: "stack", 5: "shm"}
_LOW60 = np.uint64((1 << 60) - 1)
DONE, TABLE_FULL, SPLIT_VMA = 0, 1, 2


@numba.njit(cache=True, nogil=True)
def _decode_encode(w, i, k, nv, state, pdelta, flags, threads, cdelta, vma_at, keys, acc, wr,
                   used, seen):
    """Decode words w[i:] into chunk columns from position k: page and clock deltas (from
    state's last page and clock), flags, threads; count pages into the hash table (keys, acc,
    wr; see format.PageCounter) and mark threads seen; list VMA marker positions. state =
    [thread, clock, last page, last clock], updated. Returns (i, k, nv, used, status): DONE,
    TABLE_FULL (grow the table and call again from i) or SPLIT_VMA (a VMA record begins at
    i and is cut by the end of w)."""
    thread, clock, lastp, lastc = state[0], state[1], state[2], state[3]
    n = w.size
    limit = keys.size // 2
    status = 0
    while i < n:
        x = w[i]
        t = x >> np.uint64(60)
        if t == 0:
            p = np.int64(x >> np.uint64(1))
            h = _probe(keys, p)
            if keys[h] == _EMPTY:
                if used >= limit:
                    status = 1
                    break
                keys[h] = p
                used += 1
            f = np.uint8(x & np.uint64(1))
            acc[h] += np.uint64(1)
            wr[h] += np.uint64(f)
            pdelta[k] = p - lastp
            lastp = p
            flags[k] = f
            threads[k] = thread
            seen[thread] = True
            cdelta[k] = clock - lastc
            lastc = clock
            k += 1
        elif t == 8:
            clock = np.int64(x & np.uint64(0xFFFFFFFFFFFFFFF))
        elif t == 9:
            thread = np.int64(x & np.uint64(0xFFFF))
        elif t == 10:
            if i + 2 >= n:
                status = 2
                break
            vma_at[nv] = i
            nv += 1
            i += 2
        i += 1
    state[0], state[1], state[2], state[3] = thread, clock, lastp, lastc
    return i, k, nv, used, status


class WordDecoder:
    """Turns pieces of the tool's stream into access chunks for ``writer`` (a fresh
    format.TraceWriter, fed only through ``add_encoded``)."""

    def __init__(self, writer):
        self.writer = writer
        self.tail = b""
        self.state = np.array([1, 0, 0, 0], np.int64)    # thread, clock, last page, last clock
        self.vmas: list[list] = []      # [start, end, kind] in arrival order
        self._sets: list = [None, None]
        self._turn = 0

    def _buffers(self, n: int):
        """The column set whose turn it is, at least n long (the writer may still be
        compressing the last chunk, in the other set)."""
        cols = self._sets[self._turn]
        if cols is None or cols[0].size < n:
            cols = self._sets[self._turn] = (np.empty(n, np.int64), np.empty(n, np.uint8),
                                             np.empty(n, np.uint16), np.empty(n, np.int64))
        return cols

    def feed(self, data) -> int:
        """Decode what can be decoded into one chunk for the writer; returns its accesses."""
        if self.tail:
            data = self.tail + bytes(data)
        n = len(data) // 8
        w = np.frombuffer(data, np.uint64, n)
        pd, fl, th, cd = self._buffers(n)
        vma_at = np.empty(n // 3 + 1, np.int64)
        counter = self.writer.counter
        i = k = nv = 0
        while True:
            i, k, nv, counter.used, status = _decode_encode(
                w, i, k, nv, self.state, pd, fl, th, cd, vma_at, counter.keys, counter.acc,
                counter.wr, counter.used, self.writer.thread_seen)
            if status != TABLE_FULL:
                break
            counter.grow()
        # kept for the next piece: a VMA record or a word cut by the end of this one
        self.tail = bytes(data[(i if status == SPLIT_VMA else n) * 8:])
        for j in vma_at[:nv].tolist():
            self.vmas.append([int(w[j + 1]), int(w[j + 2]),
                              VMA_KIND_CODES.get(int(w[j] & _LOW60), "anon")])
        if k:
            self.writer.add_encoded(pd[:k], fl[:k], th[:k], cd[:k], int(self.state[2]),
                                    int(self.state[3]))
            self._turn ^= 1                 # this set is the writer's until the next chunk
        return k


def decode_reference(words: np.ndarray):
    """The stream's meaning in plain Python: (pages, writes, threads, clocks, vmas)."""
    thread, clock, out, vmas, i = 1, 0, [], [], 0
    words = [int(x) for x in words]
    while i < len(words):
        x, t = words[i], words[i] >> 60
        if t == T_ACCESS:
            out.append((x >> 1, x & 1, thread, clock))
        elif t == T_CLOCK:
            clock = x & ((1 << 60) - 1)
        elif t == T_THREAD:
            thread = x & 0xFFFF
        elif t == T_VMA:
            vmas.append([words[i + 1], words[i + 2], VMA_KIND_CODES.get(x & 0xF, "anon")])
            i += 2
        i += 1
    cols = [np.array(c, np.int64) for c in zip(*out)] if out else [np.empty(0, np.int64)] * 4
    return (*cols, vmas)
