"""The .tsw format: round trips, cut, info, and one-line errors for damaged files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from tierscan.cli.main import main
from tierscan.trace.format import (Header, TraceFormatError, TraceReader, TraceWriter,
                                   _CHUNK_HEAD)
from tierscan.trace.ops import cut, info


def write_trace(path, n=25_000, chunk=4_000, seed=0, **writer):
    rng = np.random.default_rng(seed)
    pages = rng.integers(0x400, 0x400 + 300, n) + np.where(rng.random(n) < 0.2, 0x7f000, 0)
    writes = (rng.random(n) < 0.3).astype(np.uint8)
    threads = rng.integers(1, 4, n)
    clocks = np.cumsum(rng.integers(0, 50, n))
    h = Header(source="test", vmas=[[0x400000, 0x400000 + 300 * 4096, "heap"]])
    with TraceWriter(path, h, chunk_records=chunk, **writer) as w:
        for i in range(0, n, 3_333):           # pieces that do not line up with chunks
            w.add(pages[i:i + 3_333], writes[i:i + 3_333], threads[i:i + 3_333],
                  clocks[i:i + 3_333])
    return pages, writes, threads, clocks


def read_all(path):
    with TraceReader(path) as r:
        cols = list(r.accesses())
    return {k: np.concatenate([c[k] for c in cols]) for k in cols[0]}


def test_round_trip_and_summary(tmp_path):
    p = tmp_path / "a.tsw"
    pages, writes, threads, clocks = write_trace(p)
    got = read_all(p)
    assert np.array_equal(got["page"], pages)
    assert np.array_equal(got["flags"], writes)
    assert np.array_equal(got["thread"], threads)
    assert np.array_equal(got["clock"], clocks)
    with TraceReader(p) as r:
        s = r.summary()
        assert r.header.threads == 3
        assert r.header.duration == clocks[-1]
        assert r.header.vmas == [[0x400000, 0x400000 + 300 * 4096, "heap"]]
    u, cnt = np.unique(pages, return_counts=True)
    assert np.array_equal(s["page"], u)
    assert np.array_equal(s["accesses"], cnt)
    assert np.array_equal(s["writes"], np.bincount(np.searchsorted(u, pages), weights=writes,
                                                   minlength=u.size))
    assert not (tmp_path / "a.tsw.part").exists()
    with TraceReader(p) as r:                  # replay's read: deltas and flags only
        parts = [(d.copy(), f.copy()) for d, f in r.page_deltas()]
    assert len(parts) > 1                      # one buffer reused across chunks
    assert np.array_equal(np.cumsum(np.concatenate([d for d, _ in parts])), pages)
    assert np.array_equal(np.concatenate([f for _, f in parts]), writes)


def test_background_writer_writes_the_same_file(tmp_path):
    """The recorder's writer (zstd level 1, chunks compressed in a second thread) writes the
    bytes the same writer writes in one thread; a failure in the thread reaches the caller."""
    write_trace(tmp_path / "fg.tsw", level=1)
    write_trace(tmp_path / "bg.tsw", level=1, background=True)
    assert (tmp_path / "bg.tsw").read_bytes() == (tmp_path / "fg.tsw").read_bytes()
    w = TraceWriter(tmp_path / "x.tsw", Header(source="test"), chunk_records=10,
                    background=True)
    w.f.close()                               # the thread's next write fails
    with pytest.raises(ValueError):
        for _ in range(3):
            w.add(np.arange(10), np.zeros(10), np.ones(10), np.arange(10))
    w.abort()
    assert not (tmp_path / "x.tsw.part").exists()


def test_header_that_outgrows_its_room_is_rewritten(tmp_path):
    p = tmp_path / "big.tsw"
    h = Header(source="test")
    with TraceWriter(p, h, chunk_records=100) as w:
        w.add(np.arange(500), np.zeros(500), np.ones(500), np.arange(500))
        h.vmas = [[i * 8192, i * 8192 + 4096, "anon"] for i in range(5000)]   # > 64 KiB of JSON
    with TraceReader(p) as r:
        assert len(r.header.vmas) == 5000
    assert np.array_equal(read_all(p)["page"], np.arange(500))


def test_cut_by_time_and_address(tmp_path):
    p, q = tmp_path / "a.tsw", tmp_path / "b.tsw"
    pages, writes, threads, clocks = write_trace(p)
    t0, t1 = int(clocks[5000]), int(clocks[15000])
    n = cut(p, q, time=(t0, t1), address=(0x400 * 4096, 0x500 * 4096))
    m = (clocks >= t0) & (clocks < t1) & (pages >= 0x400) & (pages < 0x500)
    assert n == m.sum() > 0
    got = read_all(q)
    assert np.array_equal(got["page"], pages[m])
    assert np.array_equal(got["clock"], clocks[m])
    assert info(q)["distinct_pages"] == np.unique(pages[m]).size


def test_region_chunks_round_trip_and_cut(tmp_path):
    p, q = tmp_path / "r.tsw", tmp_path / "s.tsw"
    with TraceWriter(p, Header(source="damo", kind="region", clock="ns", duration=300)) as w:
        w.add_regions([0, 0, 100], [0x1000, 0x9000, 0x1000], [0x9000, 0x20000, 0x20000],
                      [3, 0, 7])
        w.add_regions([200], [0x5000], [0x6000], [1])
    assert cut(p, q, time=(0, 150), address=(0x8000, 0x10000)) == 3
    with TraceReader(q) as r:
        c = [x for x in r.regions()]
    assert c[0]["start"].tolist() == [0x8000, 0x9000, 0x8000]
    assert c[0]["end"].tolist() == [0x9000, 0x10000, 0x10000]
    assert info(p)["records"]["region"] == 4


def _damage(p, how):
    raw = bytearray(p.read_bytes())
    hlen = struct.unpack("<I", raw[12:16])[0]
    first_chunk = 16 + hlen + 4
    if how == "truncated":
        raw = raw[:len(raw) * 2 // 3]
        expect = "truncated"
    elif how == "flipped":
        raw[first_chunk + _CHUNK_HEAD.size + 10] ^= 0x40
        expect = f"offset {first_chunk}: access chunk checksum mismatch"
    elif how == "magic":
        raw[:8] = b"NOTATSW!"
        expect = "offset 0: not a .tsw trace"
    else:
        raw[8:12] = struct.pack("<I", 99)
        expect = "offset 8: unknown .tsw version 99"
    p.write_bytes(bytes(raw))
    return expect


def test_record_count_that_does_not_match_the_payload_is_an_error(tmp_path):
    """The chunk header's record count is outside the checksum: both readers check it against
    the payload's length (replay's partial decompression too)."""
    p = tmp_path / "n.tsw"
    write_trace(p)
    raw = bytearray(p.read_bytes())
    first_chunk = 16 + struct.unpack("<I", raw[12:16])[0] + 4
    n = struct.unpack_from("<Q", raw, first_chunk + 8)[0]
    struct.pack_into("<Q", raw, first_chunk + 8, n - 1)
    p.write_bytes(bytes(raw))
    for read in (read_all, lambda p: [d.sum() for d, _ in TraceReader(p).page_deltas()]):
        with pytest.raises(TraceFormatError, match=f"offset {first_chunk}: chunk length"):
            read(p)


@pytest.mark.parametrize("how", ["truncated", "flipped", "magic", "version"])
def test_damaged_file_gives_one_line_with_file_and_offset(tmp_path, capsys, how):
    p = tmp_path / "bad.tsw"
    write_trace(p)
    expect = _damage(p, how)
    for read in (read_all, lambda p: [d.sum() for d, _ in TraceReader(p).page_deltas()]):
        with pytest.raises(TraceFormatError) as e:
            read(p)
        assert str(p) in str(e.value) and "offset" in str(e.value) and expect in str(e.value)
    assert main(["trace", "info", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(p) in err and expect in err
    assert main(["trace", "cut", str(p), "--time", "0:10", "-o", str(tmp_path / "o.tsw")]) == 2
    assert not (tmp_path / "o.tsw").exists() and not (tmp_path / "o.tsw.part").exists()


def test_cli_info_and_cut(tmp_path, capsys):
    p, q = tmp_path / "a.tsw", tmp_path / "b.tsw"
    pages, *_ = write_trace(p)
    assert main(["trace", "info", str(p)]) == 0
    out = capsys.readouterr().out
    assert "25,000 accesses" in out and f"{np.unique(pages).size:,} distinct" in out
    assert main(["trace", "cut", str(p), "--address", "0x7f000000:", "-o", str(q)]) == 0
    assert read_all(q)["page"].min() >= 0x7f000
    assert main(["trace", "cut", str(p), "--time", "9:3", "-o", str(q)]) == 2


def test_page_counter_matches_unique_across_growth():
    from tierscan.trace.format import PageCounter
    rng = np.random.default_rng(5)
    c = PageCounter(capacity=16)
    pages, writes = [], []
    for _ in range(5):
        p = rng.integers(-5, 100_000, 30_000) * 7
        w = rng.integers(0, 2, 30_000).astype(np.uint8)
        c.add(p, w)
        pages.append(p)
        writes.append(w)
    p, w = np.concatenate(pages), np.concatenate(writes)
    u, inv = np.unique(p, return_inverse=True)
    k, a, wr = c.summary()
    assert np.array_equal(k, u) and np.array_equal(a, np.bincount(inv))
    assert np.array_equal(wr, np.bincount(inv, weights=w))
