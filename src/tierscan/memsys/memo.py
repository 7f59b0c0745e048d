"""The phase solutions of the memory system (a group's TLB model, a CPU node's shared LLC),
kept across the runs of one process (issue 15: the per-run set-up).

Both are pure functions of their inputs (tlb.translation, llc.shared_llc_hits), and the runs
of one reproduction or sweep mostly ask the same questions again: pghot's fit and the five
sources of a mode share the workload, the machine and the placement, so the first solve of
every run after the first finds its answer here instead of recomputing Che's solutions over
every page (0.2-0.4 s CPU for 2 Mi pages). Entries are keyed by the content of the inputs
(a SHA-1 digest of the arrays' bytes, dtypes and shapes, ~5 ms per 8 MiB), never by identity,
so a hit returns what computing would, bit for bit. A few entries are kept, most recently used
last; ``ENABLED = False`` recomputes every time (tests compare the two). A process pool's
workers start with their parent's entries (``entries``/``load``, sweep/pool.py): `reproduce
--jobs N` builds pghot's fit, Mode 1's solution, in the parent, and each worker would otherwise
solve it again.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

ENABLED = True
ENTRIES = 8           # a mode's sources share one entry per kind; Modes 1-3 need three

_memo: OrderedDict = OrderedDict()
stats = {"hits": 0, "misses": 0}


def digest(*parts) -> bytes:
    """A content key of arrays (their dtype, shape and bytes) and plain values (their repr)."""
    h = hashlib.sha1(usedforsecurity=False)
    for p in parts:
        if isinstance(p, np.ndarray):
            a = np.ascontiguousarray(p)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.reshape(-1).view(np.uint8))
        else:
            h.update(repr(p).encode())
        h.update(b"|")
    return h.digest()


def cached(key, compute):
    """``compute()``, or the value it returned for the same ``key`` earlier in the process.
    The value must not be modified by its users (shared by every hit)."""
    if not ENABLED:
        return compute()
    value = _memo.get(key)
    if value is None:
        stats["misses"] += 1
        value = compute()
        _memo[key] = value
        while len(_memo) > ENTRIES:
            _memo.popitem(last=False)
    else:
        stats["hits"] += 1
        _memo.move_to_end(key)
    return value


def entries() -> list:
    """The kept (key, value) pairs, least recently used first (what ``load`` takes)."""
    return list(_memo.items())


def load(pairs) -> None:
    """Keep these (key, value) pairs (``entries`` of another process) as if computed here;
    their arrays read-only again, as the values this process computes are kept."""
    for key, value in pairs:
        for a in (getattr(value, "__dict__", None) or {}).values():
            if isinstance(a, np.ndarray):
                a.setflags(write=False)
        _memo[key] = value
        _memo.move_to_end(key)
        while len(_memo) > ENTRIES:
            _memo.popitem(last=False)


def clear() -> None:
    _memo.clear()
