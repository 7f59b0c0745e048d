"""Importers: traces made elsewhere, converted to .tsw a piece at a time.

- ``lackey``: a saved ``valgrind --tool=lackey --trace-mem=yes`` log (the recorder's parser);
- ``csv``: lines ``address,R|W[,time_ns]`` (address decimal or 0x-hex; a first line that is not
  a record is a column header and is skipped; ``#`` lines are comments);
- ``perf``: ``perf script -F tid,time,addr,event`` output of ``perf mem record`` samples (sampled
  accesses with time; an event name containing "store" is a write);
- ``damo``: damo's JSON records (regions with their access counts per aggregation interval).

The first three give access-level traces; perf samples and damo records replay in the rate
model (the trace's ``extra.replay`` says so). Errors name the file and the line.
"""

from __future__ import annotations

import os
import re

import ijson
import numpy as np

from ..errors import ConfigError
from .format import Header, TraceWriter
from .lackey import LackeyParser, parse_numbers

READ_BYTES = 8 << 20
FORMATS = ("lackey", "csv", "perf", "damo")


def _pieces(path, size=READ_BYTES):
    try:
        f = open(path, "rb")
    except OSError as e:
        raise ConfigError(f"cannot open: {e.strerror}", where=os.fspath(path)) from None
    with f:
        while True:
            b = f.read(size)
            if not b:
                return
            yield b


def import_lackey(src, dst) -> int:
    p = LackeyParser()
    with TraceWriter(dst, Header(source="lackey", extra={"imported_from": os.fspath(src)})) as w:
        for piece in _pieces(src):
            w.add(*p.feed(piece))
        w.add(*p.feed(b"", final=True))
        return w.added


def _lines(src):
    """Yield (first line number, list of complete lines as a bytes buffer) pieces."""
    rest, lineno = b"", 1
    for piece in _pieces(src):
        data = rest + piece
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        if cut:
            yield lineno, data[:cut]
            lineno += data.count(b"\n", 0, cut)
    if rest:
        yield lineno, rest + b"\n"


def import_csv(src, dst) -> int:
    """address,R|W[,time_ns] lines, parsed with numpy a piece at a time."""
    where = os.fspath(src)
    timed = None
    with TraceWriter(dst, Header(source="csv", clock="ns",
                                 extra={"imported_from": where})) as w:
        index = 0
        for first, data in _lines(src):
            buf = np.frombuffer(data, np.uint8)
            nl = np.flatnonzero(buf == 10)
            starts = np.concatenate([[0], nl[:-1] + 1])
            blank = (nl - starts == 0) | (buf[starts] == ord("#"))
            if first == 1 and not blank[0] and not chr(buf[0]).isdigit():
                blank[0] = True                  # a column header
            starts, stops, lines = starts[~blank], nl[~blank], first + np.flatnonzero(~blank)
            if not starts.size:
                continue
            fields = _split_fields(buf, starts, stops, where, lines)
            ncol = fields.shape[1]
            if timed is None:
                timed = ncol == 3
                w.header.clock = "ns" if timed else "index"
            if ncol != (3 if timed else 2):
                raise ConfigError(f"line {int(lines[0])}: expected {3 if timed else 2} fields "
                                  "like the first record", where=where)
            addr = parse_numbers(buf, fields[:, 0, 0], fields[:, 0, 1], where, lines, "address")
            op = buf[fields[:, 1, 0]]
            bad = ~np.isin(op, np.frombuffer(b"RWrwLSls", np.uint8)) | \
                (fields[:, 1, 1] - fields[:, 1, 0] != 1)
            if bad.any():
                raise ConfigError(f"line {int(lines[np.argmax(bad)])}: expected R or W in the "
                                  "second field", where=where)
            writes = np.isin(op, np.frombuffer(b"WwSs", np.uint8)).astype(np.uint8)
            if timed:
                t = parse_numbers(buf, fields[:, 2, 0], fields[:, 2, 1], where, lines, "time")
                clock = t.astype(np.int64)
            else:
                clock = index + np.arange(addr.size, dtype=np.int64)
            index += addr.size
            w.add((addr >> np.uint64(12)).astype(np.int64), writes,
                  np.ones(addr.size, np.uint16), clock)
        if not w.added:
            raise ConfigError("no records", where=where)
        return w.added


def _split_fields(buf, starts, stops, where, lines):
    """(n, k, 2) start/stop byte offsets of the k comma-separated fields of each line, with
    surrounding spaces trimmed; every line must have the same number of fields."""
    commas = np.flatnonzero(buf == ord(","))
    first = np.searchsorted(commas, starts)
    count = np.searchsorted(commas, stops) - first
    if (count != count[0]).any():
        bad = int(lines[np.argmax(count != count[0])])
        raise ConfigError(f"line {bad}: expected {count[0] + 1} comma-separated fields",
                          where=where)
    k = int(count[0]) + 1
    cpos = commas[first[:, None] + np.arange(k - 1)] if k > 1 else np.empty((starts.size, 0), int)
    fs = np.concatenate([starts[:, None], cpos + 1], axis=1)
    fe = np.concatenate([cpos, stops[:, None]], axis=1)
    for _ in range(4):                       # trim up to 4 spaces / CRs either side
        fs = np.where((fs < fe) & (buf[np.minimum(fs, buf.size - 1)] == 32), fs + 1, fs)
        last = np.maximum(fe - 1, 0)
        fe = np.where((fe > fs) & np.isin(buf[last], (13, 32)), fe - 1, fe)
    return np.stack([fs, fe], axis=2)


_PERF_LINE = re.compile(rb"^\s*(\d+)\s+(\d+)\.(\d+):\s+\d*\s*([^\s:]+):\s+([0-9a-fA-F]+)")


def perf_samples_reference(data: bytes, first: int, where: str):
    """``perf_samples`` with a regular expression per line (its reference, for tests and
    benchmarks/bench_trace.py)."""
    tid, t, addr, wr = [], [], [], []
    for i, line in enumerate(data.splitlines()):
        if not line.strip() or line.lstrip().startswith(b"#"):
            continue
        m = _PERF_LINE.match(line)
        if m is None:
            raise ConfigError(f"line {first + i}: not a 'perf script -F tid,time,addr,event' "
                              f"sample: {line[:60].decode(errors='replace')!r}", where=where)
        tid.append(int(m.group(1)))
        t.append(int(m.group(2)) * 1_000_000_000 + int(m.group(3)[:9].ljust(9, b"0")))
        addr.append(int(m.group(5), 16))
        wr.append(b"store" in m.group(4).lower())
    return (np.array(tid, np.int64), np.array(t, np.int64), np.array(addr, np.uint64),
            np.array(wr, np.uint8))


_SPACE = np.zeros(256, bool)
_SPACE[[9, 10, 11, 12, 13, 32]] = True
_STORE = np.frombuffer(b"store", np.uint8)


def perf_samples(data: bytes, first: int, where: str):
    """Parse complete `perf script -F tid,time,addr,event` lines (``first``: the number of the
    first one) with numpy over the whole piece: (tids, times ns, addresses, writes).

    A line is the tokens TID SECONDS.FRACTION: [PERIOD] EVENT: ADDR (anything after the address
    is ignored): every token's start and end come from one whitespace mask, the k-th token of a
    line is its first token's index + k, and each field is parsed as a column of numbers. An
    event whose name contains "store" (any case) is a write. A line that is none of this is a
    ConfigError naming it, as the reference's regular expression would."""
    buf = np.frombuffer(data, np.uint8)
    sp = _SPACE[buf]
    tok_s = np.flatnonzero(~sp & np.concatenate([[True], sp[:-1]]))
    tok_e = np.flatnonzero(~sp & np.concatenate([sp[1:], [True]])) + 1
    nl = np.flatnonzero(buf == 10)
    line_of = np.searchsorted(nl, tok_s)                 # each token's line (0-based)
    first_tok = np.searchsorted(line_of, np.arange(nl.size))
    ntok = np.diff(np.append(first_tok, tok_s.size))
    comment = (ntok > 0) & (buf[tok_s[np.minimum(first_tok, max(tok_s.size - 1, 0))]]
                            == ord("#")) if tok_s.size else np.zeros(nl.size, bool)
    rec = np.flatnonzero((ntok > 0) & ~comment)
    ft, nt = first_tok[rec], ntok[rec]
    lines = first + rec

    def fail(bad):
        i = int(np.argmax(bad))
        ln = rec[i]
        start = nl[ln - 1] + 1 if ln else 0
        text = bytes(buf[start:nl[ln]][:60]).decode(errors="replace")
        raise ConfigError(f"line {int(lines[i])}: not a 'perf script -F tid,time,addr,event' "
                          f"sample: {text!r}", where=where)

    if (nt < 4).any():
        fail(nt < 4)
    colon = lambda k: buf[tok_e[k] - 1] == ord(":")
    has_period = ~colon(ft + 2)
    ev = ft + 2 + has_period
    bad = (has_period & (nt < 5)) | ~colon(ft + 1) | ~colon(np.minimum(ev, tok_s.size - 1)) | \
        (tok_e[np.minimum(ev, tok_s.size - 1)] - tok_s[np.minimum(ev, tok_s.size - 1)] < 2)
    if bad.any():
        fail(bad)
    ts, te = tok_s[ft + 1], tok_e[ft + 1] - 1           # SECONDS.FRACTION without the colon
    dots = np.flatnonzero(buf == ord("."))
    dot = dots[np.minimum(np.searchsorted(dots, ts), max(dots.size - 1, 0))] if dots.size \
        else te
    bad = (dot <= ts) | (dot + 1 >= te) if dots.size else np.ones(ts.size, bool)
    if bad.any():
        fail(bad)
    tid = parse_numbers(buf, tok_s[ft], tok_e[ft], where, lines, "thread id")
    sec = parse_numbers(buf, ts, dot, where, lines, "time")
    digits = np.minimum(te - dot - 1, 9)
    frac = parse_numbers(buf, dot + 1, dot + 1 + digits, where, lines, "time")
    if has_period.any():
        parse_numbers(buf, tok_s[ft + 2][has_period], tok_e[ft + 2][has_period], where,
                      lines[has_period], "period")
    addr = parse_numbers(buf, tok_s[ev + 1], tok_e[ev + 1], where, lines, "address",
                         base16=True)
    ns = frac * (np.uint64(10) ** (9 - digits).astype(np.uint64))
    low = np.frombuffer(data.lower(), np.uint8)
    occ = np.flatnonzero(low[:max(low.size - 4, 0)] == _STORE[0])
    for k in range(1, _STORE.size):
        occ = occ[low[occ + k] == _STORE[k]]
    nxt = np.searchsorted(occ, tok_s[ev])
    writes = (nxt < occ.size) & (occ[np.minimum(nxt, max(occ.size - 1, 0))] + 5 <= tok_e[ev]) \
        if occ.size else np.zeros(rec.size, bool)
    return (tid.astype(np.int64), (sec * np.uint64(1_000_000_000) + ns).astype(np.int64), addr,
            writes.astype(np.uint8))


def import_perf(src, dst) -> int:
    """`perf script -F tid,time,addr,event` lines: TID SECONDS.FRACTION: [PERIOD] EVENT: ADDR,
    parsed a piece at a time by ``perf_samples``."""
    where = os.fspath(src)
    h = Header(source="perf-mem", clock="ns",
               extra={"imported_from": where, "replay": "rate", "sampled": True})
    t_first = None
    with TraceWriter(dst, h) as w:
        for first, data in _lines(src):
            tid, t, addr, wr = perf_samples(data, first, where)
            if not t.size:
                continue
            if t_first is None:
                t_first = int(t[0])
            w.add(addr >> np.uint64(12), wr, tid % 65536, t - t_first)
        if not w.added:
            raise ConfigError("no samples", where=where)
        return w.added


def import_damo(src, dst) -> int:
    """damo's JSON records: a list of records (or {"records": [...]}), each with ``snapshots``,
    each with ``start_time``/``end_time`` (ns) and ``regions`` of ``start``, ``end`` and
    ``nr_accesses`` (an integer, or damo's {"samples": N, ...}).

    Streamed (ijson's parse events): one snapshot is held at a time and written as one region
    chunk, so a record file of any size takes memory for its largest snapshot only."""
    where = os.fspath(src)
    h = Header(source="damo", kind="region", clock="ns",
               extra={"imported_from": where, "replay": "rate"})
    try:
        f = open(src, "rb")
    except OSError as e:
        raise ConfigError(f"cannot open: {e.strerror}", where=where) from None
    with f, TraceWriter(dst, h) as w:
        t0, t_end = None, 0
        try:
            for path, snap in _damo_snapshots(f, where):
                st, en, starts, ends, nr = _damo_snapshot(snap, where, path)
                t0 = st if t0 is None else t0
                t_end = max(t_end, en)
                w.add_regions(np.full(starts.size, st - t0, np.int64), starts, ends, nr)
        except ijson.JSONError as e:
            raise ConfigError(f"not JSON: {e}", where=where) from None
        if t0 is None:
            raise ConfigError("the records hold no snapshots", where=where)
        h.duration = t_end - t0
        return w.added


def _damo_snapshots(f, where):
    """Yield (path, snapshot dict) of every snapshot of every record, one at a time."""
    events = ijson.parse(f)
    first = next(events, None)
    if first is None:
        raise ConfigError("not JSON: the file is empty", where=where)
    if first[1] == "start_array":
        rec_prefix = "item"
    elif first[1] == "start_map":
        rec_prefix = "records.item"
    else:
        raise ConfigError("expected a list of damo records", where=where)
    snap_prefix = rec_prefix + ".snapshots.item"
    ri, si, has_snaps, builder = -1, -1, False, None
    for prefix, event, value in events:
        if builder is not None:                        # inside a snapshot: build it
            if prefix == snap_prefix and event == "end_map":
                yield f"records[{ri}].snapshots[{si}]", builder.value
                builder = None
            else:
                builder.event(event, value)
            continue
        if prefix == rec_prefix:
            if event == "start_map":
                ri, si, has_snaps = ri + 1, -1, False
            elif event == "end_map":
                if not has_snaps:
                    raise ConfigError("missing 'snapshots'", where=where,
                                      field=f"records[{ri}]")
            elif event != "map_key":                                      # a record that is not an object
                raise ConfigError("missing 'snapshots'", where=where,
                                  field=f"records[{ri + 1}]")
        elif prefix == rec_prefix + ".snapshots" and event in ("start_array", "end_array"):
            has_snaps = True
        elif prefix == snap_prefix and event == "start_map":
            si += 1
            builder = ijson.ObjectBuilder()
            builder.event(event, value)
        elif prefix == snap_prefix:                    # a snapshot that is not an object
            raise ConfigError("expected start_time, end_time and regions", where=where,
                              field=f"records[{ri}].snapshots[{si + 1}]")
        elif prefix == rec_prefix + ".snapshots" and event != "map_key":
            raise ConfigError("missing 'snapshots'", where=where, field=f"records[{ri}]")
    if ri < 0:
        raise ConfigError("expected a list of damo records", where=where)


def _damo_snapshot(snap, where, path):
    """(start_time, end_time, region starts, ends, nr_accesses) of one snapshot, checked."""
    try:
        st, en = int(snap["start_time"]), int(snap["end_time"])
        regs = snap["regions"]
        starts = np.array([int(r["start"]) for r in regs], np.uint64)
        ends = np.array([int(r["end"]) for r in regs], np.uint64)
        nr = np.array([int(r["nr_accesses"]["samples"] if isinstance(r["nr_accesses"], dict)
                           else r["nr_accesses"]) for r in regs], np.uint32)
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"expected start_time, end_time and regions with start, "
                          f"end, nr_accesses ({type(e).__name__}: {e})",
                          where=where, field=path) from None
    if (ends <= starts).any():
        raise ConfigError("a region ends before it starts", where=where, field=path)
    return st, en, starts, ends, nr


IMPORTERS = {"lackey": import_lackey, "csv": import_csv, "perf": import_perf, "damo": import_damo}
