"""An index of the folios on each LRU list, so that reclaim costs what it takes, not the size
of the node (issue 13; the kernel's lists are linked lists: list_add / list_add_tail /
list_del are O(1), and taking N folios from a tail reads N folios).

tierscan keeps list membership in per-pfn arrays (``PhysMem.list_gen`` + ``lru_stamp`` for the
MGLRU generations, ``PG_lru``/``PG_active`` + ``lru_stamp`` for the classic lists). Reading a
list from those arrays means scanning the node's whole pfn range, which at 200 GiB is most of
a reclaim pass. This index records, per list, the (stamp, pfn) of every folio put on it, in
list order, and answers "the first N folios from the tail", "every folio" and "is it empty"
by reading only the entries it returns (plus the stale ones it drops on the way).

How it stays right without hooks on removal: an entry is *valid* while the folio still has
that list position — its ``lru_stamp`` equals the recorded stamp and its list key (memcg,
node, generation list and type, or classic list) is the bucket's. Every other change (the
folio isolated, freed, moved to another list, given a new position) invalidates the entry;
invalid entries are dropped the first time a read meets them at the front of a chunk. Every
place that gives a folio a list position calls ``lru_index_note(pm, heads)`` (a new stamp
from ``PhysMem.next_stamps``, or a split THP's pages taking the head's position).

Order: stamps from ``next_stamps(tail=False)`` grow above every earlier one, those from
``tail=True`` fall below every earlier one, so a bucket is a sequence of sorted chunks in
disjoint stamp ranges: tail chunks (newest prepended first) then head chunks. Within a
stamp, by pfn (the pages of a split THP), as the whole-range reference sorts them.

The index is built from the arrays the first time reclaim asks (one whole-range scan), then
kept incrementally. ``PhysMem.lru_index = False`` disables it (the whole-range reference,
used by benchmarks/bench_pressure.py and the equivalence tests).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..arrays import upper_bound
from .constants import LRU_GEN_MASK, PG_active, PG_lru, PG_swapbacked, PG_unevictable

# list codes inside a key: MGLRU list_gen (1..4) x type -> 2 * gen + type (2..9); classic
# list lru (0..3) -> 16 + lru
_CLASSIC = 16
_LISTS = 32


def list_code(pm, heads) -> np.ndarray:
    """The list each folio sits on as a small code, -1 for none."""
    lg = pm.list_gen[heads].astype(np.int64)
    flags = pm.flags[heads]
    file_ = (flags & PG_swapbacked) == 0
    mglru = 2 * lg + file_
    classic_on = ((flags & PG_lru) != 0) & (lg == 0) & ((flags & PG_unevictable) == 0) & \
        ((pm.lru_gen_refs[heads] & LRU_GEN_MASK) == 0)
    lru = 2 * file_ + ((flags & PG_active) != 0)          # LRU_FILE * file + LRU_ACTIVE
    return np.where(lg > 0, mglru, np.where(classic_on, _CLASSIC + lru, -1))


def bucket_key(pm, heads) -> np.ndarray:
    """(memcg, node, list) of each folio as one int, -1 when on no list. One compiled pass
    (_bucket_keys): every list read validates its entries with this, and the numpy form
    (bucket_key_reference, the same keys) was a dozen array calls on ~64 entries each time."""
    heads = np.asarray(heads, dtype=np.int64)
    out = np.empty(heads.size, np.int64)
    _bucket_keys(heads, pm.list_gen, pm.flags, pm.lru_gen_refs, pm.memcg, pm.node_start,
                 pm.nr_nodes, out)
    return out


_SB, _LRU_BIT, _UNEV = int(PG_swapbacked), int(PG_lru), int(PG_unevictable)
_ACT, _GENMASK = int(PG_active), int(LRU_GEN_MASK)


@njit(cache=True, nogil=True)
def _bucket_keys(heads, list_gen, flags, gen_refs, memcg, node_start, nr_nodes, out):
    """bucket_key_reference() of each head pfn, into ``out`` (list_code's rules)."""
    for i in range(heads.size):
        h = heads[i]
        lg = int(list_gen[h])
        f = int(flags[h])
        file_ = 1 if (f & _SB) == 0 else 0
        if lg > 0:
            code = 2 * lg + file_
        elif (f & _LRU_BIT) and not (f & _UNEV) and not (int(gen_refs[h]) & _GENMASK):
            code = _CLASSIC + 2 * file_ + (1 if f & _ACT else 0)
        else:
            out[i] = -1
            continue
        nid = upper_bound(node_start, h, 0, node_start.size) - 1      # PhysMem.node_of
        if h >= node_start[node_start.size - 1]:
            nid = -1
        out[i] = (int(memcg[h]) * nr_nodes + nid) * _LISTS + code


def bucket_key_reference(pm, heads) -> np.ndarray:
    """bucket_key() in numpy."""
    code = list_code(pm, heads)
    key = (pm.memcg[heads].astype(np.int64) * pm.nr_nodes + pm.node_of(heads)) * _LISTS + code
    return np.where(code >= 0, key, -1)


def mglru_key(lruvec, gen: int, type_: int) -> int:
    pm = lruvec.kernel.pm
    return (lruvec.memcg.id * pm.nr_nodes + lruvec.nid) * _LISTS + 2 * (gen + 1) + type_


def classic_key(lruvec, lru: int) -> int:
    pm = lruvec.kernel.pm
    return (lruvec.memcg.id * pm.nr_nodes + lruvec.nid) * _LISTS + _CLASSIC + lru


_JOIN = 8192     # entries up to which a small batch joins the end chunk instead of its own


class _Chunk:
    """Entries sorted by (stamp, pfn); ``lo`` skips the dropped front."""

    __slots__ = ("stamps", "pfns", "lo")

    def __init__(self, stamps, pfns):
        order = np.lexsort((pfns, stamps))
        self.stamps, self.pfns, self.lo = stamps[order], pfns[order], 0

    def merge(self, stamps, pfns) -> None:
        self.__init__(np.concatenate([self.stamps[self.lo:], stamps]),
                      np.concatenate([self.pfns[self.lo:], pfns]))

    def live(self) -> int:
        return self.stamps.size - self.lo

    def join(self, other: "_Chunk", after: bool) -> None:
        """Take ``other``'s entries, all of them newer (``after``) or older than this chunk's:
        concatenation keeps the (stamp, pfn) order without a sort."""
        parts = [(self.stamps[self.lo:], self.pfns[self.lo:]), (other.stamps[other.lo:],
                                                                other.pfns[other.lo:])]
        if not after:
            parts.reverse()
        self.stamps = np.concatenate([parts[0][0], parts[1][0]])
        self.pfns = np.concatenate([parts[0][1], parts[1][1]])
        self.lo = 0


class _Bucket:
    __slots__ = ("tails", "heads")

    def __init__(self):
        self.tails: list[_Chunk] = []     # prepended: the last one is the oldest
        self.heads: list[_Chunk] = []     # appended: the last one is the newest

    def chunks(self):
        yield from reversed(self.tails)
        yield from self.heads

    def add(self, stamps, pfns) -> None:
        """New entries: a new head chunk (stamps above all held), a new tail chunk (below all
        held), or merged into the chunks whose ranges they fall in (a split THP's pages).
        Small batches at either end join the end chunk while it is under _JOIN entries:
        many small chunks made every add and every read walk them all (a 200-GiB run added
        one chunk per 64-folio demotion batch)."""
        newest = self.heads[-1] if self.heads else (self.tails[0] if self.tails else None)
        if newest is None or stamps.min() > newest.stamps[-1]:
            new = _Chunk(stamps, pfns)
            if self.heads and newest.live() + new.live() <= _JOIN:
                newest.join(new, after=True)
            else:
                self.heads.append(new)
            return
        oldest = self.tails[-1] if self.tails else self.heads[0]
        if stamps.max() < oldest.stamps[oldest.lo]:
            new = _Chunk(stamps, pfns)
            if self.tails and oldest.live() + new.live() <= _JOIN:
                oldest.join(new, after=False)
            else:
                self.tails.append(new)
            return
        chunks = list(self.chunks())
        for c in chunks:
            sel = (stamps >= c.stamps[c.lo]) & (stamps <= c.stamps[-1])
            if sel.any():
                c.merge(stamps[sel], pfns[sel])
                stamps, pfns = stamps[~sel], pfns[~sel]
                if stamps.size == 0:
                    return
        # what is left lies between chunks (their neighbours' entries were dropped): its own
        # chunk, in place
        where = sum(1 for c in chunks if c.stamps[-1] < stamps.min())
        new = _Chunk(stamps, pfns)
        nt = len(self.tails)
        if where <= nt:
            self.tails.insert(nt - where, new)
        else:
            self.heads.insert(where - nt, new)


class LruIndex:
    """Per-list (stamp, pfn) entries, in list order (see the module docstring)."""

    def __init__(self, pm):
        self.pm = pm
        self.buckets: dict[int, _Bucket] = {}
        self.note(np.flatnonzero((pm.list_gen != 0) | ((pm.flags & PG_lru) != 0)))

    def note(self, heads) -> None:
        """These folios were just given a list position: record it."""
        pm = self.pm
        heads = np.asarray(heads, dtype=np.int64)
        if heads.size == 0:
            return
        keys = bucket_key(pm, heads)
        on = keys >= 0
        heads, keys = heads[on], keys[on]
        if heads.size == 0:
            return
        stamps = pm.lru_stamp[heads].astype(np.int64)
        if (keys == keys[0]).all():
            self._bucket(int(keys[0])).add(stamps, heads)
            return
        order = np.argsort(keys, kind="stable")
        keys, heads, stamps = keys[order], heads[order], stamps[order]
        cut = np.flatnonzero(np.diff(keys)) + 1
        for k, h, s in zip(np.split(keys, cut), np.split(heads, cut), np.split(stamps, cut)):
            self._bucket(int(k[0])).add(s, h)

    def _bucket(self, key: int) -> _Bucket:
        b = self.buckets.get(key)
        if b is None:
            b = self.buckets[key] = _Bucket()
        return b

    def _valid(self, key: int, stamps, pfns) -> np.ndarray:
        pm = self.pm
        return (pm.lru_stamp[pfns] == stamps) & (bucket_key(pm, pfns) == key)

    def first(self, key: int, count: int) -> np.ndarray:
        """Up to ``count`` folios of the list from its tail (oldest first)."""
        b = self.buckets.get(key)
        out = []
        need = int(count)
        if b is None or need <= 0:
            return np.empty(0, np.int64)
        for c in list(b.chunks()):
            pos = c.lo
            n = c.stamps.size
            window = max(need, 64)
            while need > 0 and pos < n:
                end = min(n, pos + window)
                ok = self._valid(key, c.stamps[pos:end], c.pfns[pos:end])
                if pos == c.lo:                    # drop the stale entries at the front
                    lead = int(np.argmax(ok)) if ok.any() else ok.size
                    c.lo += lead
                got = c.pfns[pos:end][ok][:need]
                out.append(got)
                need -= got.size
                pos = end
                window *= 2
            if need == 0:
                break
        self._prune(b)
        return np.concatenate(out) if out else np.empty(0, np.int64)

    def all(self, key: int) -> np.ndarray:
        """Every folio on the list, tail first."""
        b = self.buckets.get(key)
        if b is None:
            return np.empty(0, np.int64)
        out = []
        for c in b.chunks():
            s, p = c.stamps[c.lo:], c.pfns[c.lo:]
            ok = self._valid(key, s, p)
            if not ok.all():                       # compact: the whole chunk was read anyway
                c.stamps, c.pfns, c.lo = s[ok], p[ok], 0
            out.append(c.pfns[c.lo:])
        self._prune(b)
        return np.concatenate(out) if out else np.empty(0, np.int64)

    def empty(self, key: int) -> bool:
        """list_empty(). The front entry of the first chunk is checked on its own first: it is
        nearly always valid (reads drop the stale ones at the front), and try_to_inc_min_seq
        asks this of all eight lists on every eviction, where first()'s array path cost
        ~0.08 ms a call. Otherwise first(key, 1), which drops what is stale."""
        b = self.buckets.get(key)
        if b is None:
            return True
        c = b.tails[-1] if b.tails else (b.heads[0] if b.heads else None)
        if c is not None and c.lo < c.stamps.size and \
                self._valid_one(key, int(c.stamps[c.lo]), int(c.pfns[c.lo])):
            return False
        return self.first(key, 1).size == 0

    def _valid_one(self, key: int, stamp: int, pfn: int) -> bool:
        """_valid() of one entry in scalar arithmetic (the same rules as list_code and
        bucket_key; tests/test_lru_index.py holds them together)."""
        pm = self.pm
        if int(pm.lru_stamp[pfn]) != stamp:
            return False
        lg = int(pm.list_gen[pfn])
        flags = int(pm.flags[pfn])
        file_ = int((flags & int(PG_swapbacked)) == 0)
        if lg > 0:
            code = 2 * lg + file_
        elif (flags & int(PG_lru)) and not (flags & int(PG_unevictable)) and \
                not (int(pm.lru_gen_refs[pfn]) & int(LRU_GEN_MASK)):
            code = _CLASSIC + 2 * file_ + int((flags & int(PG_active)) != 0)
        else:
            return False
        nid = int(np.searchsorted(pm.node_start, pfn, side="right")) - 1
        return (int(pm.memcg[pfn]) * pm.nr_nodes + nid) * _LISTS + code == key

    @staticmethod
    def _prune(b: _Bucket) -> None:
        b.tails = [c for c in b.tails if c.lo < c.stamps.size]
        b.heads = [c for c in b.heads if c.lo < c.stamps.size]

    def check(self, fail) -> None:
        """Every folio on a list is found, in order, by its bucket (Kernel.check())."""
        pm = self.pm
        heads = np.flatnonzero((pm.list_gen != 0) | ((pm.flags & PG_lru) != 0))
        keys = bucket_key(pm, heads)
        for key in np.unique(keys[keys >= 0]):
            want = heads[keys == key]
            want = want[np.lexsort((want, pm.lru_stamp[want]))]
            got = self.all(int(key))
            if not np.array_equal(got, want):
                fail(f"LRU index: list {int(key)} indexes {got.size} folios in an order "
                     f"other than the {want.size} on it", np.setxor1d(got, want))


def lru_index(pm):
    """The index of ``pm``'s lists, built on first use; None when disabled (the whole-range
    reference) by ``pm.lru_index = False``."""
    idx = getattr(pm, "lru_index", None)
    if idx is False:
        return None
    if idx is None:
        idx = pm.lru_index = LruIndex(pm)
    return idx


def lru_index_note(pm, heads) -> None:
    """Record new list positions, if the index exists yet (it reads them all when built)."""
    idx = getattr(pm, "lru_index", None)
    if idx:
        idx.note(heads)
