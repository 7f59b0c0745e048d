"""Replaying a .tsw trace as a workload: ``make_workload("trace:run.tsw", {...})``.

The recorded address space becomes the replaying process's mappings: each recorded VMA (or,
without VMAs, each cluster of touched pages) clipped to the pages the trace touches, split
where a hole is larger than ``GAP_PAGES``, mapped in address order. A trace page maps to its
position in those mappings by one searchsorted per chunk.

Phases: an access-level trace is cut into ``windows`` phases of equal access counts (or of
equal time for ``ns``-clocked samples); each phase's distribution knows the window's per-page
access counts (what the rate model needs) and can also hand out the trace's accesses in their
recorded order (what the exact model takes, through ``take``). The threads' accesses stay one
interleaved stream: a group of T threads takes T x n accesses per advance and each thread is
charged a T-th of the time. A region-level trace (damo) gives one phase per aggregation
interval whose page weights are the regions' nr_accesses, lasting the interval times
``time_scale``. ``loops`` replays the trace that many times.

Before anything is built the whole file is checked (every chunk's checksum), so a damaged trace
fails at once with its offset, never part-way through a run.
"""

from __future__ import annotations

import math
import os

import numpy as np
from numba import njit

from ..arrays import upper_bound
from ..errors import ConfigError
from ..memsys.llc import LINES_PER_PAGE, LineCache
from ..units import parse_size
from ..workload.base import Mapping, Phase, ProcessSpec, WorkloadSpec
from ..workload.library import DEFAULT_NODE, register_prefixed_workload, _Reader
from ..configcheck import Checker
from .format import TraceReader

GAP_PAGES = 512                      # a hole above 2 MiB splits a mapping
DEFAULT_WINDOWS = 16
TRACE_KEYS = ("node", "cpu_node", "loops", "windows", "time_scale", "llc", "llc_size",
              "llc_ways", "name", "mlp")


class Layout:
    """Trace page number -> index in the replaying process's page list."""

    def __init__(self, starts, lens, kinds):
        self.start = np.asarray(starts, np.int64)
        self.len = np.asarray(lens, np.int64)
        self.kinds = list(kinds)
        self.base = np.concatenate([[0], np.cumsum(self.len)[:-1]]).astype(np.int64)
        self.n_pages = int(self.len.sum())

    def index(self, pages: np.ndarray) -> np.ndarray:
        out = np.empty(pages.size, np.int64)
        _index_kernel(np.ascontiguousarray(pages, np.int64), 0, False, self.start, self.len,
                      self.base, out)
        return out

    def index_deltas(self, deltas: np.ndarray, last: int) -> tuple[np.ndarray, int]:
        """``index`` of the pages ``last + cumsum(deltas)`` (a trace chunk as stored), in the
        same pass; also returns the last page."""
        out = np.empty(deltas.size, np.int64)
        last = _index_kernel(np.ascontiguousarray(deltas, np.int64), last, True, self.start,
                             self.len, self.base, out)
        return out, int(last)

    def index_reference(self, pages: np.ndarray) -> np.ndarray:
        """``index`` in numpy (the kernel's reference, for tests)."""
        r = np.searchsorted(self.start, pages, side="right") - 1
        return self.base[r] + pages - self.start[r]


@njit(cache=True, nogil=True)
def _index_kernel(pages, last, deltas, start, length, base, out):
    """Layout.index: the range of the previous page is tried first (a trace stays in one
    mapping for long runs), else a binary search, as searchsorted(..., "right") - 1. With
    ``deltas`` the input is page deltas from ``last`` (summed here); returns the last page."""
    n = start.size
    r = 0
    p = last
    for i in range(pages.size):
        p = p + pages[i] if deltas else pages[i]
        if not (start[r] <= p and p < start[r] + length[r]):
            r = upper_bound(start, p, 0, n) - 1
            if r < 0:
                r = n - 1                       # numpy's index -1 for a page below them all
        out[i] = base[r] + p - start[r]
    return p


def _ranges_of(pages: np.ndarray, vmas, shift: int):
    """Mapping ranges [start page, length, kind] covering sorted distinct ``pages``."""
    if pages.size == 0:
        return [], [], []
    vs = np.array([v[0] >> shift for v in vmas], np.int64)
    ve = np.array([-(-v[1] >> shift) for v in vmas], np.int64)
    vi = np.searchsorted(vs, pages, side="right") - 1
    inside = (vi >= 0) & (pages < (ve[np.maximum(vi, 0)] if vmas else 0))
    vma_of = np.where(inside, vi, -1)
    split = np.ones(pages.size, bool)
    split[1:] = (np.diff(pages) > GAP_PAGES) | (vma_of[1:] != vma_of[:-1])
    first = np.flatnonzero(split)
    last = np.append(first[1:], pages.size) - 1
    kinds = [vmas[v][2] if v >= 0 else "anon" for v in vma_of[first].tolist()]
    return pages[first].tolist(), (pages[last] - pages[first] + 1).tolist(), kinds


def _mapping(kind: str, size: int, node: int) -> Mapping:
    file = kind == "file"
    return Mapping(size=size, kind="file" if file else "anon", shared=kind == "shm",
                   policy="bind", nodes=(node,), populate=True)


class WeightsWindow:
    """One window of a trace as a distribution: per-page weights from its access counts (the
    rate model's rates; the exact model samples from them for region traces)."""

    name = "trace"

    def __init__(self, counts_idx, counts):
        self.idx, self.counts = counts_idx, counts

    def weights(self, n: int) -> np.ndarray:
        w = np.zeros(n)
        np.add.at(w, self.idx, self.counts)
        total = w.sum()
        return w / total if total > 0 else np.full(n, 1.0 / n)

    def sample(self, n: int, count: int, rng) -> np.ndarray:
        w = self.weights(n)
        return np.searchsorted(np.cumsum(w), rng.random(count) * w.sum()).clip(0, n - 1)

    # value semantics are identity: a trace window is not a parameterised distribution
    __hash__ = object.__hash__


class TraceWindow(WeightsWindow):
    """A window of an access-level trace, which also hands out the trace's accesses in their
    recorded order (shared by all windows of a replay) for the exact model."""

    def __init__(self, source: "TraceSource", counts_idx, counts):
        super().__init__(counts_idx, counts)
        self.source = source

    def take(self, count: int):
        return self.source.take(count)


class TraceSource:
    """The access stream of a trace, read chunk by chunk, looped, with each access's LLC
    outcome: the memory-timing layer's set-associative LRU line cache (memsys/llc.py). A trace
    is page-granular, so each access references a line of its page drawn uniformly (as the
    exact model's LLC does, memsys/system.py): the line of the trace's i-th access is a hash of
    i (``line_offsets``), so a replay is deterministic and an access's line does not depend on
    how the engine batches the stream. Lines are indexed by the replaying process's page index
    (virtual), not by pfn, so a migration does not move a page's lines to other sets."""

    LINE_SEED = 0x7357

    def __init__(self, path, layout: Layout, loops: int, llc: LineCache | None):
        self.path, self.layout, self.loops, self.llc = path, layout, loops, llc
        self._it = None
        self._buf_idx = np.empty(0, np.int64)
        self._buf_w = np.empty(0, bool)
        self.loop = 0
        self.consumed = 0
        self.misses = 0

    def _chunks(self):
        while self.loop < self.loops:
            last = 0
            with TraceReader(self.path) as r:
                for deltas, flags in r.page_deltas():      # views of a reused buffer
                    idx, last = self.layout.index_deltas(deltas, last)
                    yield idx, (flags & 1).view(bool)
            self.loop += 1

    def take(self, count: int):
        """The next ``count`` accesses as (page indices, writes, LLC hits), and how many
        trace accesses were consumed so far (fewer than asked only at the end). Views of the
        current chunk; only a batch that spans two chunks is copied."""
        if self._it is None:
            self._it = self._chunks()
        parts_i, parts_w, have = [], [], 0
        while have < count:
            if self._buf_idx.size == 0:
                nxt = next(self._it, None)
                if nxt is None:
                    break
                self._buf_idx, self._buf_w = nxt
            k = min(count - have, self._buf_idx.size)
            parts_i.append(self._buf_idx[:k])
            parts_w.append(self._buf_w[:k])
            self._buf_idx, self._buf_w = self._buf_idx[k:], self._buf_w[k:]
            have += k
        if len(parts_i) == 1:
            idx, w = parts_i[0], parts_w[0]
        else:
            idx = np.concatenate(parts_i) if parts_i else np.empty(0, np.int64)
            w = np.concatenate(parts_w) if parts_w else np.empty(0, bool)
        first = self.consumed
        self.consumed += idx.size
        if self.llc is None:
            hit = np.zeros(idx.size, bool)
        else:
            hit = self.llc.access_pages(idx, line_offsets(first, idx.size, self.LINE_SEED))
        self.misses += int(idx.size - np.count_nonzero(hit))
        return idx, w, hit, int(self.consumed)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def line_offsets(first: int, n: int, seed: int) -> np.ndarray:
    """The line (0..63) referenced by trace accesses first .. first+n-1: the top 6 bits of
    SplitMix64's output for position seed + i, i.e. a uniform draw that depends on the
    access's position only."""
    out = np.empty(n, np.uint8)
    _line_offsets_kernel(np.uint64(seed + first), out)
    return out


def line_offsets_reference(first: int, n: int, seed: int) -> np.ndarray:
    """``line_offsets`` in numpy (the kernel's reference, for tests)."""
    with np.errstate(over="ignore"):
        z = (np.uint64(seed + first) + np.arange(n, dtype=np.uint64) + np.uint64(1)) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(58)).astype(np.uint8)


@njit(cache=True, nogil=True)
def _line_offsets_kernel(base, out):
    one, s30, s27, s31, s58 = np.uint64(1), np.uint64(30), np.uint64(27), np.uint64(31), \
        np.uint64(58)
    for i in range(out.size):
        z = (base + np.uint64(i) + one) * _GOLDEN
        z = (z ^ (z >> s30)) * _MIX1
        z = (z ^ (z >> s27)) * _MIX2
        z ^= z >> s31
        out[i] = np.uint8(z >> s58)


def _access_windows(r: TraceReader, layout: Layout, windows: int, by_time: bool):
    """Per-window (page index, count) pairs and each window's access count and time span."""
    total = sum(c.records for c in r.chunks(decode=False) if c.kind == 1)
    h = r.header
    edges_t = np.linspace(0, max(h.duration, 1), windows + 1) if by_time else None
    per = -(-total // windows)
    acc: list[dict] = [dict() for _ in range(windows)]
    sizes = np.zeros(windows, np.int64)
    pos = 0
    for c in r.accesses():
        idx = layout.index(c["page"])
        if by_time:
            win = np.clip(np.searchsorted(edges_t, c["clock"], side="right") - 1, 0, windows - 1)
        else:
            win = (pos + np.arange(idx.size)) // per
        pos += idx.size
        key = win * layout.n_pages + idx
        u, cnt = np.unique(key, return_counts=True)
        for wv in np.unique(u // layout.n_pages).tolist():
            m = (u // layout.n_pages) == wv
            d = acc[wv]
            d.setdefault("k", []).append(u[m] % layout.n_pages)
            d.setdefault("c", []).append(cnt[m])
            sizes[wv] += int(cnt[m].sum())
    out = []
    for wv in range(windows):
        if not acc[wv]:
            out.append((np.empty(0, np.int64), np.empty(0), 0))
            continue
        k = np.concatenate(acc[wv]["k"])
        cn = np.concatenate(acc[wv]["c"]).astype(float)
        u, inv = np.unique(k, return_inverse=True)
        out.append((u, np.bincount(inv, weights=cn), int(sizes[wv])))
    span = np.diff(edges_t).astype(np.int64) if by_time else None
    return out, span


@register_prefixed_workload("trace")
def trace_workload(arg: str, params: dict, *, where: str, field: str) -> WorkloadSpec:
    """Replay the .tsw trace ``arg`` (docs/workloads.md, 'trace:PATH')."""
    c = Checker(where)
    rd = _Reader(c, params, field, TRACE_KEYS)
    path = arg
    if not path:
        c.fail(field, "workload 'trace:PATH' needs the .tsw file after the colon")
    if not os.path.exists(path) and where and os.path.isfile(where):
        alt = os.path.join(os.path.dirname(where), path)
        path = alt if os.path.exists(alt) else path
    node = rd.integer("node", DEFAULT_NODE, 0)
    cpu = rd.integer("cpu_node", 0, 0)
    loops = rd.integer("loops", 1, 1)
    windows = rd.integer("windows", DEFAULT_WINDOWS, 1)
    scale = rd.number("time_scale", 1.0, 0, math.inf, lo_open=True)
    use_llc = rd.boolean("llc", True)
    llc_size = parse_size(rd._raw("llc_size", "32MiB"), where=where, field=rd.field("llc_size"))
    rd.out["llc_size"] = llc_size
    ways = rd.integer("llc_ways", 16, 1)
    if llc_size < 64 * ways:
        rd.fail("llc_size", f"expected at least llc_ways lines ({64 * ways} bytes)")
    name = rd.string("name", os.path.basename(path))
    mlp = rd.number("mlp", 1.0, 0, math.inf, lo_open=True)
    with TraceReader(path) as r:
        r.verify()                                  # a damaged file fails here, at once
        h = r.header
        shift = int(h.page_size).bit_length() - 1
        vmas = sorted(h.vmas)
        if h.kind == "access":
            pages = r.summary()["page"]
        else:
            pages = _region_pages(r, shift)
        starts, lens, kinds = _ranges_of(pages, vmas, shift)
        if not starts:
            raise ConfigError("the trace has no accesses", where=path)
        layout = Layout(starts, lens, kinds)
        threads = max(1, int(h.threads))
        if h.kind == "access":
            by_time = h.clock == "ns"
            wins, span = _access_windows(r, layout, windows, by_time)
            llc = LineCache(llc_size, ways) if use_llc else None
            source = TraceSource(path, layout, loops, llc)
            one = []
            for i, (u, cnt, size) in enumerate(wins):
                if size == 0 and not by_time:
                    continue
                one.append((TraceWindow(source, u, cnt), size, None if span is None else
                            max(1, int(span[i] * scale))))
            phases = [Phase(d, accesses=None if dur else max(1, -(-size // threads)),
                            duration_ns=dur) for d, size, dur in one] * loops
        else:
            phases = _region_phases(r, layout, shift, scale) * loops
    maps = tuple(_mapping(k, n * h.page_size, node) for k, n in zip(kinds, lens))
    proc = ProcessSpec(name=name, threads=threads, cpu_node=cpu, mappings=maps,
                       phases=tuple(phases), mlp=mlp)
    return WorkloadSpec(f"trace:{arg}", (proc,), dict(rd.out))


def _region_pages(r: TraceReader, shift: int) -> np.ndarray:
    """Distinct pages of every region (regions are ranges: merged as ranges, then expanded)."""
    s, e = [], []
    for c in r.regions():
        s.append(c["start"].astype(np.int64) >> shift)
        e.append(-(-c["end"].astype(np.int64) >> shift))
    s, e = np.concatenate(s), np.concatenate(e)
    o = np.argsort(s)
    s, e = s[o], np.maximum.accumulate(e[o])
    new = np.ones(s.size, bool)
    new[1:] = s[1:] > e[:-1]
    rs, re_ = s[new], np.append(e[np.flatnonzero(new)[1:] - 1], e[-1])
    return np.concatenate([np.arange(a, b) for a, b in zip(rs.tolist(), re_.tolist())])


def _region_phases(r: TraceReader, layout: Layout, shift: int, scale: float) -> list:
    """One phase per aggregation interval: weight nr_accesses on every page of each region."""
    by_t: dict[int, list] = {}
    for c in r.regions():
        for t in np.unique(c["time_ns"]).tolist():
            m = c["time_ns"] == t
            by_t.setdefault(t, []).append((c["start"][m], c["end"][m], c["nr_accesses"][m]))
    times = sorted(by_t)
    end = r.header.duration or (times[-1] + 1)
    phases = []
    for i, t in enumerate(times):
        st = np.concatenate([x[0] for x in by_t[t]]).astype(np.int64) >> shift
        en = -(-np.concatenate([x[1] for x in by_t[t]]).astype(np.int64) >> shift)
        nr = np.concatenate([x[2] for x in by_t[t]]).astype(float)
        n = en - st
        pages = np.repeat(st, n) + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        idx = layout.index(pages)
        dur = (times[i + 1] if i + 1 < len(times) else end) - t
        phases.append(Phase(WeightsWindow(idx, np.repeat(nr, n)),
                            duration_ns=max(1, int(dur * scale))))
    return phases
