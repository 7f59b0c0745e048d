"""A streaming, vectorised parser of Valgrind lackey's ``--trace-mem=yes`` output.

Lines are ``I  addr,size`` (an instruction fetch: the clock), `` L addr,size`` (load),
`` S addr,size`` (store), `` M addr,size`` (modify: a load and a store of one address, recorded as both);
lines starting with ``==`` are Valgrind's own messages. The parser takes arbitrary byte pieces,
keeps an unfinished last line for the next piece, and parses each piece with numpy: one hex
digit column per position, read right to left from the comma. Accesses then go through the
same run merging the fast tool does (``merge_runs``), so both backends give the same stream.
"""

from __future__ import annotations

import numpy as np

_HEX = np.full(256, -1, np.int64)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i
_MAX_DIGITS = 16
# place values of digit k from the right (uint64, wrapping as the sums do)
_PLACE10 = np.array([10 ** k % 2 ** 64 for k in range(_MAX_DIGITS + 3)], np.uint64)
_PLACE16 = np.array([16 ** k % 2 ** 64 for k in range(_MAX_DIGITS + 3)], np.uint64)


def parse_numbers(buf, starts, stops, where, lines, what, base16: bool = False) -> np.ndarray:
    """Unsigned numbers in ``buf[starts:stops]``, decimal or 0x-hex (``base16``: hex without
    the 0x), parsed column-wise; a bad one is a ConfigError naming the line."""
    from ..errors import ConfigError
    if base16:
        hexa = np.ones(starts.size, bool)
        s = starts
    else:
        hexa = (stops - starts > 2) & (buf[np.minimum(starts + 1, buf.size - 1)] | 0x20 ==
                                       ord("x")) & (buf[starts] == ord("0"))
        s = np.where(hexa, starts + 2, starts)
    width = stops - s
    bad = (width <= 0) | (width > _MAX_DIGITS + 3)
    k = np.arange(min(int(width.max(initial=0)), _MAX_DIGITS + 3))
    has = width[:, None] > k                      # digit k from the right of each number
    dig = _HEX[buf[np.where(has, stops[:, None] - 1 - k, 0)]]
    bad |= (has & ((dig < 0) | (~hexa[:, None] & (dig > 9)))).any(1)
    if hexa.all() or not hexa.any():              # one base: one row of place values
        place = (_PLACE16 if hexa.all() else _PLACE10)[k]
    else:
        place = np.where(hexa[:, None], _PLACE16[k], _PLACE10[k])
    out = (np.where(has, np.maximum(dig, 0), 0).astype(np.uint64) * place).sum(
        1, dtype=np.uint64)
    if bad.any():
        i = int(np.argmax(bad))
        raise ConfigError(f"line {int(lines[i])}: expected a decimal or 0x-hex {what}, got "
                          f"{bytes(buf[starts[i]:stops[i]]).decode(errors='replace')!r}",
                          where=where)
    return out


def merge_runs(pages: np.ndarray, writes: np.ndarray, threads: np.ndarray, state: list):
    """The fast tool's run merging (tsw_main.c on_load/on_store): within a run of accesses to one
    page by one thread, keep the first access and the first write. ``state`` = [page, thread,
    write seen] of the previous piece's last run, updated in place. Returns a keep mask."""
    n = pages.size
    if n == 0:
        return np.zeros(0, bool)
    prev_page = np.concatenate([[state[0]], pages[:-1]])
    prev_thr = np.concatenate([[state[1]], threads[:-1]])
    first = (pages != prev_page) | (threads != prev_thr)
    run_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    w = writes.astype(np.int64)
    cum = np.cumsum(w)
    upto = cum - np.concatenate([[0], cum])[run_start]     # writes in the run so far, inclusive
    carried = ~first[0] & (run_start == 0)                  # the previous piece's run goes on
    keep = first | ((w == 1) & (upto == 1) & ~(carried & bool(state[2])))
    last = run_start[-1]
    state[2] = bool(w[last:].any()) or (bool(carried[-1]) and bool(state[2]))
    state[0], state[1] = int(pages[-1]), int(threads[-1])
    return keep


class LackeyParser:
    def __init__(self, merge: bool = True):
        self.rest = b""
        self.clock = 0                # instructions seen so far
        self.merge = merge
        self.state = [-1, -1, False]
        self.lines = 0

    def feed(self, data: bytes, final: bool = False):
        """Parse the complete lines in ``data``; return (pages, writes, threads, clocks)."""
        data = self.rest + data
        end = len(data) if final else data.rfind(b"\n") + 1
        self.rest = data[end:]
        buf = np.frombuffer(data, np.uint8, end)
        nl = np.flatnonzero(buf == 10)
        if end and (not nl.size or nl[-1] != end - 1):
            nl = np.append(nl, end)               # a final line without its newline
        starts = np.concatenate([[0], nl[:-1] + 1]).astype(np.int64) if nl.size else nl
        ok = starts + 3 < nl                      # room for "X  " and one digit
        starts, stops = starts[ok], nl[ok]
        self.lines += starts.size
        c0, c1 = buf[starts], buf[starts + 1]
        is_i = (c0 == ord("I")) & (c1 == ord(" "))
        is_data = (c0 == ord(" ")) & np.isin(c1, np.frombuffer(b"LSM", np.uint8))
        icount = self.clock + np.cumsum(is_i)
        self.clock = int(icount[-1]) if icount.size else self.clock
        d_start, d_stop = starts[is_data] + 3, stops[is_data]
        commas = np.flatnonzero(buf == ord(","))
        ci = np.searchsorted(commas, d_start)
        good = ci < commas.size
        comma = np.where(good, commas[np.minimum(ci, max(commas.size - 1, 0))] if commas.size
                         else 0, d_stop)
        good &= comma < d_stop
        width = comma - d_start
        good &= (width > 0) & (width <= _MAX_DIGITS)
        d_start, comma, width = d_start[good], comma[good], width[good]
        kinds = c1[is_data][good]
        clocks = icount[is_data][good]
        addr = np.zeros(d_start.size, np.uint64)
        for k in range(_MAX_DIGITS):           # digit k from the right of each address
            has = width > k
            if not has.any():
                break
            dig = _HEX[buf[np.where(has, comma - 1 - k, 0)]]
            addr |= np.where(has, dig, 0).astype(np.uint64) << np.uint64(4 * k)
        pages = (addr >> np.uint64(12)).astype(np.int64)
        writes = (kinds != ord("L")).astype(np.uint8)
        # M (modify) is lackey's merge of a load and a store of one address: unmerge it, as the
        # fast tool sees the two
        rep = 1 + (kinds == ord("M"))
        if rep.size and rep.max() > 1:
            first_copy = (np.cumsum(rep) - rep)[rep == 2]
            pages, writes, clocks = np.repeat(pages, rep), np.repeat(writes, rep), np.repeat(clocks, rep)
            writes[first_copy] = 0
        threads = np.ones(pages.size, np.uint16)  # lackey does not report thread ids
        if self.merge:
            keep = merge_runs(pages, writes, threads, self.state)
            pages, writes, threads, clocks = pages[keep], writes[keep], threads[keep], clocks[keep]
        return pages, writes, threads, clocks
