"""The recorder's one-pass decoder of the Valgrind tool's words (trace/words.py) against the
plain-Python meaning of the stream, through the .tsw writer."""

from __future__ import annotations

import numpy as np
import pytest

from tierscan.trace.format import Header, PageCounter, TraceReader, TraceWriter
from tierscan.trace.words import WordDecoder, decode_reference


def tool_stream(n=50_000, seed=0) -> np.ndarray:
    """Words as the tool writes them: accesses over ~3,000 pages, clock words, thread
    switches and VMA records (three words) mixed in."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        r = rng.random()
        if r < 0.02:
            out.append((8 << 60) | (i * 1000))
        elif r < 0.03:
            out.append((9 << 60) | int(rng.integers(1, 5)))
        elif r < 0.035:
            start = int(rng.integers(1, 1 << 30)) << 12
            out += [(10 << 60) | int(rng.integers(1, 6)), start, start + 8192]
        else:
            page = 0x4000 + int(rng.zipf(1.3)) % 3_000 if rng.random() < 0.7 else \
                0x7ff000000 + int(rng.integers(0, 40))
            out.append(page << 1 | int(rng.random() < 0.3))
    return np.array(out, np.uint64)


@pytest.mark.parametrize("piece", [8, 4_099, 1 << 20])   # splits words and VMA records
def test_decoder_writes_what_the_stream_means(tmp_path, piece):
    words = tool_stream()
    raw = words.tobytes()
    p = tmp_path / "w.tsw"
    w = TraceWriter(p, Header(source="test"), background=True)
    w.counter = PageCounter(16)                     # grows many times on the way
    dec = WordDecoder(w)
    buf = bytearray(piece)                          # one reused read buffer, as the recorder
    got = 0
    for i in range(0, len(raw), piece):
        part = raw[i:i + piece]
        buf[:len(part)] = part
        got += dec.feed(memoryview(buf)[:len(part)])
    w.close()
    pages, writes, threads, clocks, vmas = decode_reference(words)
    assert got == pages.size and dec.vmas == vmas and dec.tail == b""
    with TraceReader(p) as r:
        cols = list(r.accesses())
        s = r.summary()
        assert r.header.threads == np.unique(threads).size
        assert r.header.duration == clocks[-1]
    for name, want in (("page", pages), ("flags", writes), ("thread", threads),
                       ("clock", clocks)):
        assert np.array_equal(np.concatenate([c[name] for c in cols]), want), name
    u, cnt = np.unique(pages, return_counts=True)
    assert np.array_equal(s["page"], u) and np.array_equal(s["accesses"], cnt)
    assert np.array_equal(s["writes"], np.bincount(np.searchsorted(u, pages), weights=writes,
                                                   minlength=u.size))
