"""Decoding the word stream of tierscan's Valgrind tool (valgrind/tsw_main.c), vectorised.

Each little-endian uint64 word's top four bits give its type: 0 an access
(``page << 1 | is_write``), 8 the instruction clock, 9 a thread switch, 10 a VMA (followed by
two raw words, start and end). The decoder takes the stream in arbitrary byte pieces (a pipe
read) and carries the running thread, clock and any split record across pieces.
"""

from __future__ import annotations

import numpy as np

T_ACCESS, T_CLOCK, T_THREAD, T_VMA = 0, 8, 9, 10
VMA_KIND_CODES = {1: "anon", 2: "file", 3: "heap", 4: "stack", 5: "shm"}
_LOW60 = np.uint64((1 << 60) - 1)


class WordDecoder:
    def __init__(self):
        self.tail = b""
        self.thread = 1
        self.clock = 0
        self.vmas: list[list] = []      # [start, end, kind] in arrival order

    def feed(self, data: bytes):
        """Decode what can be decoded; return (pages, writes, threads, clocks) of the accesses."""
        data = self.tail + data
        n = len(data) // 8
        w = np.frombuffer(data, np.uint64, n)
        typ = (w >> np.uint64(60)).astype(np.int8)
        # A VMA record is three words: keep a record split by the piece boundary for later.
        vma_at = np.flatnonzero(typ == T_VMA)
        # Its two payload words are raw user addresses (< 2**47), so their type bits are 0 and
        # they can never be mistaken for a marker; they are masked out of the accesses below.
        real = vma_at.tolist()
        cut = n
        if real and real[-1] + 2 >= n:
            cut = real.pop()
        self.tail = data[cut * 8:]
        w, typ = w[:cut], typ[:cut]
        payload = np.zeros(cut, bool)
        for i in real:
            payload[i + 1:i + 3] = True
            self.vmas.append([int(w[i + 1]), int(w[i + 2]),
                              VMA_KIND_CODES.get(int(w[i] & _LOW60), "anon")])
        typ = np.where(payload, -1, typ)
        idx = np.arange(cut)
        # running thread and clock: the last marker at or before each word
        thr_pos = np.where(typ == T_THREAD, idx, -1)
        clk_pos = np.where(typ == T_CLOCK, idx, -1)
        np.maximum.accumulate(thr_pos, out=thr_pos)
        np.maximum.accumulate(clk_pos, out=clk_pos)
        low = (w & _LOW60).astype(np.int64)
        thread = np.where(thr_pos >= 0, low[np.maximum(thr_pos, 0)], self.thread)
        clock = np.where(clk_pos >= 0, low[np.maximum(clk_pos, 0)], self.clock)
        if cut:
            self.thread, self.clock = int(thread[-1]), int(clock[-1])
        acc = typ == T_ACCESS
        words = w[acc]
        return ((words >> np.uint64(1)).astype(np.int64), (words & np.uint64(1)).astype(np.uint8),
                thread[acc], clock[acc])
