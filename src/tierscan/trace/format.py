"""The .tsw trace format: a versioned header, then zstd-compressed columnar chunks, each with
its own CRC-32, written and read a chunk at a time so a multi-GB trace is never held whole.

Layout (little-endian; docs/trace-format.md is the specification):

    file    = magic "TSWTRACE" | u32 version | u32 header_len | header JSON | u32 crc32(JSON)
              | chunk* | end chunk
    chunk   = "TSWC" | u8 kind | 3 bytes zero | u64 nr_records | u32 raw_len | u32 comp_len
              | u32 crc32(payload) | payload (zstd of the columns, in the order below)

    kind 1 (access):  page delta int64 (first entry relative to the previous chunk's last page),
                      flags uint8 (bit 0 write), thread uint16, clock delta int64
    kind 2 (region):  time_ns int64, start uint64, end uint64, nr_accesses uint32
    kind 3 (summary): page int64, accesses uint64, writes uint64 (every distinct page, sorted)
    kind 0 (end):     no payload; its absence means the file was cut short

A damaged file raises ``TraceFormatError`` naming the file and the byte offset.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from dataclasses import dataclass, field

import numba
import numpy as np
import zstandard

from ..errors import TierscanError

MAGIC = b"TSWTRACE"
VERSION = 1
CHUNK_MAGIC = b"TSWC"
KIND_END, KIND_ACCESS, KIND_REGION, KIND_SUMMARY = 0, 1, 2, 3
KIND_NAMES = {KIND_ACCESS: "access", KIND_REGION: "region", KIND_SUMMARY: "summary"}
_CHUNK_HEAD = struct.Struct("<4sB3xQIII")
CHUNK_RECORDS = 1 << 20            # records a writer buffers before it compresses a chunk
ZSTD_LEVEL = 3
# Recording writes ~19 raw bytes per access as it arrives: zstd level 1 compresses them 2.5x
# faster than level 3 for ~18% more bytes (0.218 vs 0.184 bytes per access on a CPython
# recording, benchmarks/bench_trace.py), and the recorder's CPU time is the slowdown.
RECORD_ZSTD_LEVEL = 1

HEADER_SLACK = 64 << 10           # bytes reserved for the header's final values (VMAs)
VMA_KINDS = ("anon", "file", "heap", "stack", "shm")

ACCESS_COLUMNS = (("page", np.int64), ("flags", np.uint8), ("thread", np.uint16),
                  ("clock", np.int64))
REGION_COLUMNS = (("time_ns", np.int64), ("start", np.uint64), ("end", np.uint64),
                  ("nr_accesses", np.uint32))
SUMMARY_COLUMNS = (("page", np.int64), ("accesses", np.uint64), ("writes", np.uint64))
COLUMNS = {KIND_ACCESS: ACCESS_COLUMNS, KIND_REGION: REGION_COLUMNS,
           KIND_SUMMARY: SUMMARY_COLUMNS}
FLAG_WRITE = 1
_ACCESS_RECORD = sum(np.dtype(dt).itemsize for _, dt in ACCESS_COLUMNS)   # 19 bytes
_ACCESS_PREFIX = 9                 # page delta + flags: the columns replay reads


class TraceFormatError(TierscanError):
    """A .tsw file that is not one, or is damaged: one line naming the file and the offset."""

    exit_code = 2

    def __init__(self, path, offset: int | None, message: str):
        self.path, self.offset = str(path), offset
        at = f": offset {offset}" if offset is not None else ""
        super().__init__(f"{path}{at}: {message}")


@dataclass
class Header:
    """What a trace says about itself. ``kind`` is "access" or "region"; ``clock`` names the
    unit of the access clock ("instructions" for recordings, "ns" for imported timed samples,
    "index" when there is none); ``vmas`` is a list of [start, end, kind] byte ranges."""

    source: str
    kind: str = "access"
    page_size: int = 4096
    clock: str = "instructions"
    vmas: list = field(default_factory=list)
    threads: int = 1
    duration: int = 0                 # in the clock's unit (ns for region traces)
    command: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "Header":
        d = json.loads(raw)
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _columns_to_bytes(kind: int, cols: dict) -> bytes:
    return b"".join(np.ascontiguousarray(cols[name], dt).tobytes()
                    for name, dt in COLUMNS[kind])


def _compress_columns(cctx, kind: int, cols: dict) -> tuple[bytes, int]:
    """One zstd frame of the columns in order, fed column by column (no joined copy)."""
    z = cctx.compressobj()
    parts, raw_len = [], 0
    for name, dt in COLUMNS[kind]:
        col = np.ascontiguousarray(cols[name], dt)
        raw_len += col.nbytes
        parts.append(z.compress(memoryview(col).cast("B")))
    parts.append(z.flush())
    return b"".join(parts), raw_len


def _bytes_to_columns(kind: int, raw: bytes, n: int) -> dict | None:
    spec = COLUMNS[kind]
    if len(raw) != n * sum(np.dtype(dt).itemsize for _, dt in spec):
        return None
    out, pos = {}, 0
    for name, dt in spec:
        size = n * np.dtype(dt).itemsize
        out[name] = np.frombuffer(raw, dt, n, pos)
        pos += size
    return out


class PageCounter:
    """Accesses and writes per distinct page, in an open-addressing hash table (numba): one
    pass per chunk, no sort, memory sized by the footprint."""

    # Starts small: the table grows when half full, and a table a few times the footprint
    # stays in cache (the recorder probes it once per access: 9.6-11 vs 12.1 ns per access
    # decoded with 1 << 16 slots on a 2,391-page CPython recording).
    def __init__(self, capacity: int = 1 << 12):
        self.keys = np.full(capacity, _EMPTY, np.int64)
        self.acc = np.zeros(capacity, np.uint64)
        self.wr = np.zeros(capacity, np.uint64)
        self.used = 0

    def add(self, pages, flags) -> None:
        pages = np.ascontiguousarray(pages, np.int64)
        flags = np.ascontiguousarray(flags, np.uint8)
        start = 0
        while start < pages.size:
            done, self.used = _count_pages(self.keys, self.acc, self.wr, self.used,
                                           pages, flags, start)
            start = done
            if start < pages.size:
                self.grow()

    def grow(self) -> None:
        """Double the table (it is kept at most half full)."""
        keep = self.keys != _EMPTY
        keys, acc, wr = self.keys[keep], self.acc[keep], self.wr[keep]
        self.__init__(self.keys.size * 2)
        _count_pages(self.keys, self.acc, self.wr, 0, keys, np.zeros(keys.size, np.uint8), 0)
        self.acc[:] = 0
        self.wr[:] = 0
        slot = _slots(self.keys, keys)
        self.acc[slot], self.wr[slot] = acc, wr
        self.used = keys.size

    def summary(self):
        keep = self.keys != _EMPTY
        o = np.argsort(self.keys[keep])
        return self.keys[keep][o], self.acc[keep][o], self.wr[keep][o]


_EMPTY = -(1 << 63)               # an empty slot (no page number is this)
_FIB = -7046029254386353131     # 0x9E3779B97F4A7C15 as int64 (Fibonacci hashing; int64 math wraps)


@numba.njit(cache=True, nogil=True, inline="always")
def _probe(keys, p):
    """The slot of page p in the open-addressing table: its own, or the empty one to take."""
    mask = keys.size - 1
    h = (p * _FIB) & mask
    while keys[h] != p and keys[h] != _EMPTY:
        h = (h + 1) & mask
    return h


@numba.njit(cache=True, nogil=True)
def _count_pages(keys, acc, wr, used, pages, flags, start):
    """Count pages[start:]; stops (returning where) when the table passes half full."""
    limit = keys.size // 2
    for i in range(start, pages.size):
        p = pages[i]
        h = _probe(keys, p)
        if keys[h] == _EMPTY:
            if used >= limit:
                return i, used
            keys[h] = p
            used += 1
        acc[h] += 1
        wr[h] += flags[i] & 1
    return pages.size, used


@numba.njit(cache=True, nogil=True)
def _deltas(a, last):
    out = np.empty_like(a)
    for i in range(a.size):
        out[i] = a[i] - last
        last = a[i]
    return out


@numba.njit(cache=True, nogil=True)
def _mark(values, seen):
    for i in range(values.size):
        seen[values[i]] = True


@numba.njit(cache=True)
def _slots(keys, wanted):
    out = np.empty(wanted.size, np.int64)
    for i in range(wanted.size):
        out[i] = _probe(keys, wanted[i])
    return out


class TraceWriter:
    """Streams records into a .tsw file. Access records arrive in order through ``add``; at
    ``close`` the header is rewritten with the final thread count and duration, a summary chunk
    (distinct pages with their access and write counts) and the end chunk are written, and the
    file is renamed into place: a half-written trace never carries the final name."""

    def __init__(self, path, header: Header, chunk_records: int = CHUNK_RECORDS,
                 level: int = ZSTD_LEVEL, background: bool = False):
        """``background``: compress and write each chunk in a second thread (zstd and file
        writes release the GIL) while the caller produces the next one; at most one chunk is
        in flight, so memory stays bounded, and chunks keep their order."""
        self.path, self.header = os.fspath(path), header
        self.tmp = f"{self.path}.part"
        self.f = open(self.tmp, "wb")
        self.chunk_records = chunk_records
        self._buf: list[dict] = []
        self._buffered = 0
        self._last_page = 0
        self._last_clock = 0
        self.counter = PageCounter()               # distinct pages (the summary chunk)
        self.thread_seen = np.zeros(65536, bool)
        self.records = 0                          # records in the chunks written so far
        self.added = 0                            # access or region records added
        self._cctx = zstandard.ZstdCompressor(level=level)
        self._pool = None
        self._pending = None
        if background:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="tsw-writer")
        self._header_size = None
        self._write_header()

    def _write_header(self) -> None:
        # Padded with spaces (valid JSON whitespace) to a size fixed at open, so close() can
        # rewrite it in place with the final thread count and duration.
        raw = self.header.to_json()
        if self._header_size is None:
            self._header_size = len(raw) + HEADER_SLACK
        if len(raw) > self._header_size:
            return False
        raw = raw.ljust(self._header_size)
        self.f.seek(0)
        self.f.write(MAGIC + struct.pack("<II", VERSION, len(raw)) + raw
                     + struct.pack("<I", zlib.crc32(raw)))
        return True

    def _rewrite_with_bigger_header(self) -> None:
        """The final header outgrew its reserved room: copy the chunks after a new one."""
        old_start = 16 + self._header_size + 4
        self.f.close()
        src = open(self.tmp, "rb")
        src.seek(old_start)
        self._header_size = None
        self.f = open(self.tmp + "2", "wb")
        self._write_header()
        shutil.copyfileobj(src, self.f, 8 << 20)
        src.close()
        os.replace(self.tmp + "2", self.tmp)

    # -- access records ----------------------------------------------------------------------
    def add(self, pages, writes, threads, clocks) -> None:
        """Append accesses (absolute page numbers, write flags, thread ids, clock values)."""
        pages = np.asarray(pages, np.int64)
        if pages.size == 0:
            return
        self._buf.append({"page": pages, "flags": np.asarray(writes, np.uint8) & FLAG_WRITE,
                          "thread": np.asarray(threads, np.uint16),
                          "clock": np.asarray(clocks, np.int64)})
        self._buffered += pages.size
        self.added += pages.size
        while self._buffered >= self.chunk_records:
            self._flush_access(self.chunk_records)
        if len(self._buf) == 1 and self._buffered >= self.chunk_records // 2:
            self._flush_access(self._buffered)   # a large piece is a chunk as it is (no copy)

    def add_encoded(self, pdelta, flags, threads, cdelta, last_page: int, last_clock: int):
        """Append one chunk of accesses already encoded as stored (page and clock deltas from
        this writer's last page and clock) and already counted into ``counter`` and
        ``thread_seen``: the recorder's one-pass decoder (words.py). The arrays must stay
        unchanged until the next ``add_encoded`` or ``close`` returns (a background writer
        may still be compressing them until then)."""
        if self._buffered:
            self._flush_access(self._buffered)
        n = len(pdelta)
        if n == 0:
            return
        self._write_chunk(KIND_ACCESS, {"page": pdelta, "flags": flags, "thread": threads,
                                        "clock": cdelta}, n)
        self._last_page, self._last_clock = int(last_page), int(last_clock)
        self.added += n

    def _flush_access(self, n: int) -> None:
        cols = self._buf[0] if len(self._buf) == 1 else \
            {k: np.concatenate([b[k] for b in self._buf]) for k in self._buf[0]}
        rest = {k: v[n:] for k, v in cols.items()}
        cols = {k: v[:n] for k, v in cols.items()}
        self._buf = [rest] if rest["page"].size else []
        self._buffered = rest["page"].size
        self._count(cols)
        enc = dict(cols)
        enc["page"] = _deltas(np.ascontiguousarray(cols["page"], np.int64), self._last_page)
        enc["clock"] = _deltas(np.ascontiguousarray(cols["clock"], np.int64), self._last_clock)
        self._last_page, self._last_clock = int(cols["page"][-1]), int(cols["clock"][-1])
        self._write_chunk(KIND_ACCESS, enc, cols["page"].size)

    def _count(self, cols) -> None:
        """Fold a chunk into the distinct-page summary (sized by the footprint, not the trace)."""
        self.counter.add(cols["page"], cols["flags"])
        _mark(np.ascontiguousarray(cols["thread"], np.uint16), self.thread_seen)

    # -- region records ----------------------------------------------------------------------
    def add_regions(self, time_ns, start, end, nr_accesses) -> None:
        """Write one region-level chunk (one or more aggregation intervals of a damo record)."""
        cols = {"time_ns": time_ns, "start": start, "end": end, "nr_accesses": nr_accesses}
        n = len(np.asarray(time_ns))
        if n:
            self._write_chunk(KIND_REGION, cols, n)
            self.added += n

    def _write_chunk(self, kind: int, cols: dict, n: int) -> None:
        if self._pool is None:
            self._compress_and_write(kind, cols, n)
        else:
            self._drain()                   # the previous chunk first: one in flight at most
            self._pending = self._pool.submit(self._compress_and_write, kind, cols, n)
        self.records += n

    def _compress_and_write(self, kind: int, cols: dict, n: int) -> None:
        comp, raw_len = _compress_columns(self._cctx, kind, cols)
        self.f.write(_CHUNK_HEAD.pack(CHUNK_MAGIC, kind, n, raw_len, len(comp), zlib.crc32(comp)))
        self.f.write(comp)

    def _drain(self) -> None:
        """Wait for the chunk in flight (its error, if any, is raised here)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def _stop_pool(self) -> None:
        if self._pool is not None:
            try:
                self._drain()
            finally:
                self._pool.shutdown()
                self._pool = None

    def close(self) -> None:
        if self._buffered:
            self._flush_access(self._buffered)
        if self.header.kind == "access":
            pages, acc, wr = self.counter.summary()
            self.distinct_pages = pages.size
            self._write_chunk(KIND_SUMMARY, {"page": pages, "accesses": acc, "writes": wr},
                              pages.size)
            self.header.threads = max(1, int(self.thread_seen.sum()))
        self._stop_pool()
        self.f.write(_CHUNK_HEAD.pack(CHUNK_MAGIC, KIND_END, 0, 0, 0, 0))
        if self.header.kind == "access" and not self.header.duration:
            self.header.duration = self._last_clock
        end = self.f.tell()
        if self._write_header():
            self.f.seek(end)
        else:
            self._rewrite_with_bigger_header()
        self.f.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self._stop_pool()
        except Exception:
            pass                            # aborting anyway: the .part file goes
        self.f.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


@dataclass
class Chunk:
    kind: int
    offset: int          # byte offset of the chunk's header in the file
    records: int
    columns: dict | None  # decoded columns (absolute pages and clocks for access chunks)


class TraceReader:
    """Reads a .tsw file chunk by chunk. Opening checks the magic, the version and the header's
    checksum; ``chunks()`` yields decoded chunks, checking each one's checksum and length, and
    raises at the first damage, so a consumer never sees a partial silent result as complete
    (the missing end chunk of a truncated file is an error too)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        try:
            self.f = open(self.path, "rb")
        except OSError as e:
            raise TraceFormatError(self.path, None, f"cannot open: {e.strerror}") from None
        head = self.f.read(16)
        if len(head) < 8 or head[:8] != MAGIC:
            self.f.close()
            raise TraceFormatError(self.path, 0, f"not a .tsw trace (magic {head[:8]!r}, "
                                                 f"expected {MAGIC!r})")
        if len(head) < 16:
            self.f.close()
            raise TraceFormatError(self.path, len(head), "truncated header")
        version, hlen = struct.unpack("<II", head[8:16])
        if version != VERSION:
            self.f.close()
            raise TraceFormatError(self.path, 8, f"unknown .tsw version {version} "
                                                 f"(this tierscan reads version {VERSION})")
        raw = self.f.read(hlen)
        crc = self.f.read(4)
        if len(raw) < hlen or len(crc) < 4:
            self.f.close()
            raise TraceFormatError(self.path, 16 + len(raw), "truncated header")
        if zlib.crc32(raw) != struct.unpack("<I", crc)[0]:
            self.f.close()
            raise TraceFormatError(self.path, 16, "header checksum mismatch (damaged header)")
        try:
            self.header = Header.from_json(raw)
        except (ValueError, TypeError) as e:
            self.f.close()
            raise TraceFormatError(self.path, 16, f"unreadable header: {e}") from None
        self.data_start = 16 + hlen + 4
        self._dctx = zstandard.ZstdDecompressor()

    def close(self) -> None:
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _payloads(self):
        """Yield (kind, offset, records, raw length, compressed payload) of every chunk in file
        order, each checked (header, length, checksum); stops at the end chunk, raises at the
        first damage (a file without its end chunk is truncated)."""
        self.f.seek(self.data_start)
        off = self.data_start
        while True:
            head = self.f.read(_CHUNK_HEAD.size)
            if len(head) < _CHUNK_HEAD.size:
                raise TraceFormatError(self.path, off, "truncated: the file ends inside a chunk "
                                                       "header (no end chunk)")
            magic, kind, n, raw_len, comp_len, crc = _CHUNK_HEAD.unpack(head)
            if magic != CHUNK_MAGIC or kind not in (KIND_END, *COLUMNS):
                raise TraceFormatError(self.path, off, "bad chunk header (damaged file)")
            if kind == KIND_END:
                return
            payload = self.f.read(comp_len)
            if len(payload) < comp_len:
                raise TraceFormatError(self.path, off, "truncated: the file ends inside a chunk")
            if zlib.crc32(payload) != crc:
                raise TraceFormatError(self.path, off, f"{KIND_NAMES[kind]} chunk checksum "
                                                       "mismatch (damaged data)")
            yield kind, off, n, raw_len, payload
            off += _CHUNK_HEAD.size + comp_len

    def chunks(self, decode: bool = True, kinds=None):
        """Yield every chunk in file order; with ``decode=False`` only check checksums."""
        last_page = last_clock = 0
        for kind, off, n, raw_len, payload in self._payloads():
            cols = None
            # access chunks are delta-coded across chunks: decode them whenever any is wanted
            want = kinds is None or kind in kinds
            if decode and (want or (kind == KIND_ACCESS and KIND_ACCESS in kinds)):
                try:
                    raw = self._dctx.decompress(payload, max_output_size=raw_len)
                except zstandard.ZstdError as e:
                    raise TraceFormatError(self.path, off, f"cannot decompress: {e}") from None
                cols = _bytes_to_columns(kind, raw, n)
                if cols is None:
                    raise TraceFormatError(self.path, off, "chunk length does not match its "
                                                           "record count")
                if kind == KIND_ACCESS:
                    cols = dict(cols)
                    cols["page"] = last_page + np.cumsum(cols["page"])
                    last_page = int(cols["page"][-1])
                    cols["clock"] = last_clock + np.cumsum(cols["clock"])
                    last_clock = int(cols["clock"][-1])
            if kinds is None or kind in kinds:
                yield Chunk(kind, off, n, cols)

    def page_deltas(self):
        """Yield each access chunk's (page deltas, flags) as stored (deltas chain across
        chunks from page 0), for replay: only those two leading columns are decompressed, into
        one reused buffer, so the arrays are valid until the next chunk is read."""
        width = _ACCESS_PREFIX
        buf = bytearray(0)
        for kind, off, n, raw_len, payload in self._payloads():
            if kind != KIND_ACCESS:
                continue
            need = width * n
            if raw_len != _ACCESS_RECORD * n:
                raise TraceFormatError(self.path, off, "chunk length does not match its "
                                                       "record count")
            if len(buf) < need:
                buf = bytearray(need)
            view, got = memoryview(buf)[:need], 0
            try:
                with self._dctx.stream_reader(payload, read_across_frames=False) as rd:
                    while got < need:
                        k = rd.readinto(view[got:])
                        if not k:
                            break
                        got += k
            except zstandard.ZstdError as e:
                raise TraceFormatError(self.path, off, f"cannot decompress: {e}") from None
            if got < need:
                raise TraceFormatError(self.path, off, "chunk length does not match its "
                                                       "record count")
            yield np.frombuffer(buf, np.int64, n), np.frombuffer(buf, np.uint8, n, 8 * n)

    def verify(self) -> dict:
        """Check every chunk's checksum (no decompression); return records per kind."""
        counts = {name: 0 for name in KIND_NAMES.values()}
        chunks = {name: 0 for name in KIND_NAMES.values()}
        for c in self.chunks(decode=False):
            counts[KIND_NAMES[c.kind]] += c.records
            chunks[KIND_NAMES[c.kind]] += 1
        return {"records": counts, "chunks": chunks}

    def summary(self) -> dict | None:
        """The summary chunk's columns (distinct pages, accesses and writes per page)."""
        for c in self.chunks(kinds=(KIND_SUMMARY,)):
            return c.columns
        return None

    def accesses(self):
        """Yield the access chunks' decoded columns, in order (replay reads ``page_deltas``)."""
        for c in self.chunks(kinds=(KIND_ACCESS,)):
            yield c.columns

    def regions(self):
        for c in self.chunks(kinds=(KIND_REGION,)):
            yield c.columns
