"""What `tierscan trace` does to a .tsw file: describe it, and cut a subset out of it, both a
chunk at a time (bounded memory)."""

from __future__ import annotations

import os

import numpy as np

from ..errors import ConfigError
from .format import Header, TraceReader, TraceWriter

_INF = np.iinfo(np.int64).max


def info(path) -> dict:
    """The header, record counts per chunk kind (every checksum checked), distinct pages and
    writes, stored bytes per access."""
    with TraceReader(path) as r:
        counts = r.verify()
        h = r.header
        out = {"file": os.fspath(path), "bytes": os.path.getsize(path), **h.__dict__, **counts}
        if h.kind == "access":
            s = r.summary()
            n = counts["records"]["access"]
            out["distinct_pages"] = int(s["page"].size)
            out["written_pages"] = int((s["writes"] > 0).sum())
            out["accesses"] = n
            out["bytes_per_access"] = out["bytes"] / n if n else None
        else:
            lo, hi = _INF, 0
            for c in r.regions():
                if c["time_ns"].size:
                    lo, hi = min(lo, int(c["time_ns"].min())), max(hi, int(c["time_ns"].max()))
            out["region_time_ns"] = [lo, hi] if hi else None
    out["vmas"] = len(h.vmas)
    return out


def parse_range(text: str, what: str, parse) -> tuple[int, int]:
    """"A:B" with either side optional -> (A, B); B exclusive."""
    if ":" not in text:
        raise ConfigError(f"expected START:END, got {text!r}", field=what)
    a, b = text.split(":", 1)
    try:
        lo = parse(a) if a.strip() else 0
        hi = parse(b) if b.strip() else _INF
    except ValueError:
        raise ConfigError(f"expected START:END numbers, got {text!r}", field=what) from None
    if hi <= lo:
        raise ConfigError(f"empty range {text!r} (END must be above START)", field=what)
    return lo, hi


def cut(src, dst, time=(0, _INF), address=(0, _INF)) -> int:
    """Write the records of ``src`` with clock (access) or time_ns (region) in [time) and
    address in [address) to ``dst``; returns the records kept. The header is kept, with the
    VMAs clipped to the address range and the cut noted in ``extra``."""
    t0, t1 = time
    a0, a1 = address
    kept = 0
    with TraceReader(src) as r:
        h = r.header
        vmas = [[max(s, a0), min(e, a1), k] for s, e, k in h.vmas if s < a1 and e > a0]
        extra = dict(h.extra, cut_from=os.fspath(src), cut_time=[t0, t1], cut_address=[a0, a1])
        nh = Header(source=h.source, kind=h.kind, page_size=h.page_size, clock=h.clock,
                    vmas=vmas, threads=h.threads, command=h.command, extra=extra)
        shift = int(np.log2(h.page_size))
        p0, p1 = a0 >> shift, -(-a1 >> shift) if a1 < _INF else _INF
        with TraceWriter(dst, nh) as w:
            if h.kind == "access":
                for c in r.accesses():
                    m = (c["clock"] >= t0) & (c["clock"] < t1) & (c["page"] >= p0) & (c["page"] < p1)
                    w.add(c["page"][m], c["flags"][m], c["thread"][m], c["clock"][m])
                    kept += int(m.sum())
                if kept:
                    nh.duration = 0      # recomputed from the last clock kept
            else:
                for c in r.regions():
                    st = np.maximum(c["start"], np.uint64(min(a0, _INF)))
                    en = np.minimum(c["end"], np.uint64(min(a1, np.iinfo(np.uint64).max)))
                    m = (c["time_ns"] >= t0) & (c["time_ns"] < t1) & (st < en)
                    w.add_regions(c["time_ns"][m], st[m], en[m], c["nr_accesses"][m])
                    kept += int(m.sum())
                nh.duration = h.duration
    return kept
