"""pghot RFC v3: per-PFN hotness records for lower-tier memory and the kmigrated threads that
promote the pages whose record became READY (promotion-spec §1.2-§1.5, §1.8-§1.9).

State is one uint64 word per pfn of every lower-tier node (the mem_section hot_map), laid out
as in §1.3: nid bits 0-9, freq bits 10-12, time bits 13-31 (jiffies mod 2^19), READY bit 63.
``record_access`` applies the v3 update rule to the head pfn of each reported folio, in report
order (a compiled loop: the same pfn can come several times in one call). One ``Kmigrated``
daemon per lower-tier node polls its node's PGDAT_KMIGRATED_ACTIVATE flag every
``kmigrated_interval_ms`` and, when it is set, walks the node: test-and-clear READY, zero the
record, admission (§1.5: free space, latency threshold, 1-s rate limit, 60-s threshold
adjustment), migrate_misplaced_folio_prepare, batches of ``batch`` folios flushed on a
target-node change and at the end through migrate_misplaced_folios_batch.

``literal = true`` reproduces the v3 code as posted (§1.3 quirks): (a) the field masks are
built from the shifts, so nid reads as 0, time keeps 13 bits and freq overlaps time; (b)
admission compares full-width jiffies with the archived masked time; (c) IBS reports carry
nid 0; and kmigrated's batching loop does not flush on a target change, sending each batch to
the target of the folio that triggers its flush (moot while (a) makes every target 0).
docs/promotion.md lists every simplification.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numba import njit

from .. import prefetch as pf
from ..arrays import unique, upper_bound
from ..configcheck import is_int
from ..jiffies import UINT_MASK, jiffies_to_clock_ns, jiffies_to_msecs
from ..mm.constants import HZ, PAGE_SHIFT, PG_lru, PG_tail
from ..mm.migrate import (
    OK, MigrationQueue, count_prepare_failures, migrate_misplaced_folios_batch,
    misplaced_prepare_reasons, prepare_reasons_of, static_prepare_reasons,
)
from ..mm.physmem import WMARK_PROMO
from ..mm.vmstat import register_vmstat
from ..prefetch import prefetch, prefetch_folio
from ..sim.config import Component
from ..sim.engine import MS, Daemon
from ..sim.plugins import register_engine
from ..sim.promotion_metrics import folio_identities
from ..units import describe_value
from .base import (
    HINT_FAULT, HW_HINTS, PGTABLE_SCAN, SOURCES, PromotionEngine, adjusted_threshold,
)

# ---- v3 constants (include/linux/pghot.h, promotion-spec §1.3) -------------------------------
PGHOT_NID_WIDTH, PGHOT_FREQ_WIDTH, PGHOT_TIME_WIDTH = 10, 3, 19
PGHOT_NID_SHIFT = 0
PGHOT_FREQ_SHIFT = PGHOT_NID_SHIFT + PGHOT_NID_WIDTH      # 10
PGHOT_TIME_SHIFT = PGHOT_FREQ_SHIFT + PGHOT_FREQ_WIDTH    # 13
PGHOT_MIGRATE_READY = 63
PGHOT_NID_MAX = 1 << PGHOT_NID_WIDTH                      # nid >= this: -EINVAL
PGHOT_FREQ_MAX = 1 << PGHOT_FREQ_WIDTH                    # the freq cap as posted (8)
# intended masks ((1 << WIDTH) - 1) and the posted ones ((1 << SHIFT) - 1): quirk (a)
MASKS_INTENDED = ((1 << PGHOT_NID_WIDTH) - 1, (1 << PGHOT_FREQ_WIDTH) - 1,
                  (1 << PGHOT_TIME_WIDTH) - 1)
MASKS_LITERAL = ((1 << PGHOT_NID_SHIFT) - 1, (1 << PGHOT_FREQ_SHIFT) - 1,
                 (1 << PGHOT_TIME_SHIFT) - 1)               # 0, 1023, 8191
KMIGRATED_MIGRATION_ADJUST_STEPS = 16
KMIGRATED_PROMOTION_THRESHOLD_WINDOW = 60_000               # ms
MSEC_PER_SEC = 1000
ENOUGH_FREE_BYTES = 1 << 30                                 # pgdat_free_space_enough: 1 GiB

# CPU time of one step of kmigrated's PFN walk (pfn_to_online_page, page_folio, folio_nid,
# folio_test_lru, test_and_clear_bit on the record). The cost model has no entry for it yet;
# a ``pfn_walk_ns`` field there overrides this. An estimate: a few cached loads and one
# atomic bit operation on sequential memory.
PFN_WALK_NS = 5.0
# most folios kmigrated evaluates at a time (bounds the work between flushes)
_MAX_WINDOW = 1 << 16
_BLOCK = 512  # the records are grouped in 2 MiB blocks with a "may hold READY" flag

register_vmstat(
    "pghot_recorded_accesses", "pghot_recorded_hwhints", "pghot_recorded_pgtscans",
    "pghot_recorded_hintfaults", "pgpromote_candidate_nrl",
    # tierscan's own: what kmigrated did with the READY records it consumed
    "pghot_kmigrated_ready", "pghot_kmigrated_right_node", "pghot_kmigrated_bad_nid",
    "pghot_kmigrated_refused_latency", "pghot_kmigrated_refused_ratelimit",
)
_SOURCE_COUNTER = {HW_HINTS: "pghot_recorded_hwhints", PGTABLE_SCAN: "pghot_recorded_pgtscans",
                   HINT_FAULT: "pghot_recorded_hintfaults"}


# ---- shared helpers (kpromoted and direct use them too) --------------------------------------
def read_params(component: Component, kernel, spec: dict) -> dict:
    """Validate ``component.params`` against ``spec`` (key -> (default, kind)) and return the
    values with defaults filled in. kinds: ("int", min), "bool", "sources", "node"."""
    component.check_keys({k: False for k in spec})
    c = component.checker()
    out = {}
    for key, (default, kind) in spec.items():
        v = component.params.get(key, default)
        field = component.field_path(key)
        if isinstance(kind, tuple) and kind[0] == "int":
            out[key] = c.int_at_least(v, field, kind[1])
        elif kind == "bool":
            out[key] = c.boolean(v, field)
        elif kind == "node":
            n = kernel.machine.nr_nodes
            if not is_int(v) or not 0 <= v < n:
                c.fail(field, f"expected a node id in [0, {n - 1}], got {describe_value(v)}")
            out[key] = v
        elif kind == "sources":
            if not isinstance(v, (list, tuple)):
                c.fail(field, f"expected an array of sources ({', '.join(SOURCES)}), "
                              f"got {describe_value(v)}")
            for i, s in enumerate(v):
                if s not in SOURCES or not isinstance(s, str):
                    c.fail(f"{field}[{i}]", f"expected one of {', '.join(map(repr, SOURCES))}, "
                                            f"got {describe_value(s)}")
                if s in v[:i]:
                    c.fail(f"{field}[{i}]", f"source {s!r} is listed twice")
            out[key] = tuple(v)
        else:  # pragma: no cover - a spec bug
            raise ValueError(kind)
    return out


def setup_engine(engine, kernel, costs, component, params) -> dict:
    """What every engine's constructor does first: validate its params (engine.PARAMS), keep
    the kernel and costs, and index the lower-tier pfns. Returns the params."""
    p = read_params(make_component(engine.name, component, params), kernel, engine.PARAMS)
    engine.kernel, engine.costs = kernel, costs
    engine.lower = LowerTierPfns(kernel)
    return p


def make_component(name: str, component, params: dict) -> Component:
    if component is None:
        return Component(name=name, params=params)
    if params:
        raise TypeError("give either a component or keyword parameters, not both")
    return component


class LowerTierPfns:
    """The pfns of every lower-tier node, as one dense index (nodes in id order)."""

    def __init__(self, kernel):
        pm = kernel.pm
        tiers = np.array([n.tier for n in kernel.machine.nodes], dtype=np.int64)
        self.is_lower = tiers > 0
        self.nodes = tuple(int(n) for n in np.flatnonzero(self.is_lower))
        self.node_start = pm.node_start
        self.base = np.full(pm.nr_nodes, -1, dtype=np.int64)
        size = 0
        for nid in self.nodes:
            self.base[nid] = size
            lo, hi = pm.node_range(nid)
            size += hi - lo
        self.size = size

    def index(self, pfns, nids) -> np.ndarray:
        """Record index of lower-tier pfns whose nodes are ``nids``."""
        return pfns - self.node_start[nids] + self.base[nids]

    def span(self, nid: int) -> tuple[int, int]:
        lo = int(self.base[nid])
        return lo, lo + int(self.node_start[nid + 1] - self.node_start[nid])

    def pfn(self, idx, nid: int) -> np.ndarray:
        """The pfns of record indexes of node ``nid``."""
        return idx - self.base[nid] + self.node_start[nid]

    def pfn_of(self, idx) -> np.ndarray:
        """The pfns of record indexes of any lower-tier node."""
        nodes = np.array(self.nodes, dtype=np.int64)
        k = np.searchsorted(self.base[nodes], idx, side="right") - 1
        return idx - self.base[nodes[k]] + self.node_start[nodes[k]]


def nearest_cpu_node(kernel, nid: int) -> int:
    """Where a kthread bound to CPU-less ``nid`` runs: the closest node with CPUs."""
    m = kernel.machine
    cpu_nodes = m.cpu_nodes or (0,)
    return min(cpu_nodes, key=lambda c: (m.distance[nid][c], c))


def normalize_report(kernel, pfns, nid):
    """pfns as int64 and the nid of each (NUMA_NO_NODE for any negative value)."""
    pfns = np.asarray(pfns, dtype=np.int64).ravel()
    nids = np.asarray(nid, dtype=np.int64)
    if nids.ndim == 0:
        nids = np.full(pfns.size, int(nids), dtype=np.int64)
    else:
        nids = nids.ravel()
        if nids.size != pfns.size:
            raise ValueError(f"record_access: {pfns.size} pfns but {nids.size} nids")
        nids = nids.copy()
    nids[nids < 0] = -1
    return pfns, nids


def start_report(engine, pfns, nid, src: str, counter: str):
    """The common start of a hash-record engine's record_access (kpromoted v0, pghot v1/v2):
    reject an unknown source, normalise the report and count ``counter`` on each report's
    target node (``engine.default_node`` for NUMA_NO_NODE). Returns (pfns, nids, where)."""
    if src not in SOURCES:
        raise ValueError(f"unknown hotness source {src!r} (expected one of: "
                         f"{', '.join(SOURCES)})")
    k = engine.kernel
    n_nodes = k.machine.nr_nodes
    pfns, nids = normalize_report(k, pfns, nid)
    where = np.where((nids >= 0) & (nids < n_nodes), nids, engine.default_node)
    count_per_node(k.vmstat, counter, where, n_nodes)
    return pfns, nids, where


def lower_tier_lru_heads(kernel, lower: LowerTierPfns, pfns):
    """Which reports pass "pfn valid, not on a top-tier node, folio on an LRU" (§1.2 filters
    4-5); returns (mask over pfns, head pfns of the passing ones, their nodes). One compiled
    pass (``_lower_lru_heads``); the numpy form is ``lower_tier_lru_heads_reference``."""
    pm = kernel.pm
    pfns = np.ascontiguousarray(pfns, np.int64)
    keep = np.zeros(pfns.size, bool)
    heads, nodes = np.empty(pfns.size, np.int64), np.empty(pfns.size, np.int64)
    n = _lower_lru_heads(pfns, pm.node_start, pm.nr_pfns, lower.is_lower, pm.order, pm.flags,
                         PG_lru, keep, heads, nodes, pf.ahead)
    return keep, heads[:n], nodes[:n]


@njit(cache=True, nogil=True, inline="always")
def _lower_lru_head(p, node_start, nr_pfns, is_lower, order, flags, lru):
    """(folio head, node) of a report's pfn that passes filters 4-5, else (-1, -1)."""
    if p < 0 or p >= nr_pfns:
        return np.int64(-1), np.int64(-1)
    nid = np.int64(upper_bound(node_start, p, 0, node_start.size) - 1)
    if not is_lower[nid]:
        return np.int64(-1), np.int64(-1)
    head = _lru_head(p, order, flags, lru)
    if head < 0:
        return np.int64(-1), np.int64(-1)
    return head, nid


@njit(cache=True, nogil=True, inline="always")
def _lru_head(p, order, flags, lru):
    """The folio head of pfn ``p`` (0 <= p < nr_pfns; compound_head()) if on an LRU (filter
    5), else -1. Indexed unsigned: no negative-index wrap-around."""
    u = np.uint64(p)
    head = u & ~((np.uint64(1) << np.uint64(order[u])) - np.uint64(1))
    if (flags[head] & lru) == 0:
        return np.int64(-1)
    return np.int64(head)


@njit(cache=True, nogil=True)
def _lower_lru_heads(pfns, node_start, nr_pfns, is_lower, order, flags, lru, keep, heads,
                     nodes, ahead):
    """lower_tier_lru_heads per report; returns how many passed (heads[:n], nodes[:n]).
    With ``ahead`` > 0 the folio reads of later reports are prefetched (prefetch_folio)."""
    n = 0
    half = ahead // 2
    for i in range(pfns.size):
        if ahead:
            prefetch_folio(pfns, i + ahead, i + half, order, flags)
        head, nid = _lower_lru_head(pfns[i], node_start, nr_pfns, is_lower, order, flags, lru)
        if head < 0:
            continue
        keep[i] = True
        heads[n] = head
        nodes[n] = nid
        n += 1
    return n


def lower_tier_lru_heads_reference(kernel, lower: LowerTierPfns, pfns):
    """lower_tier_lru_heads as numpy passes (the reference of its compiled pass)."""
    pm = kernel.pm
    node = pm.node_of(pfns)
    keep = node >= 0
    keep[keep] = lower.is_lower[node[keep]]
    heads = pm.folio_head(pfns[keep])
    lru = (pm.flags[heads] & PG_lru) != 0
    keep[keep] = lru
    return keep, heads[lru], node[keep]


class FirstReports:
    """When each lower-tier pfn was first reported, for the engine's ``first_report_ns``
    (pfn -> ns), which is filled for promoted pfns only.

    Kept as ns + 1 (0: never reported) in an array made at the first report, so an engine
    that is never reported to holds none of it, and np.zeros' lazy pages leave the pfns never
    reported unbacked (a full-size table is 8 bytes per lower-tier pfn: 516 MB on zen5-cxl)."""

    def __init__(self, size: int):
        self.size = int(size)
        self.ns1 = None

    def table(self) -> np.ndarray:
        """ns + 1 per record, made at the first call."""
        if self.ns1 is None:
            self.ns1 = np.zeros(self.size, dtype=np.int64)
        return self.ns1

    def seen(self, idx, now_jiffies) -> None:
        """Reports of records ``idx`` at ``now_jiffies`` (one value, or one per report in
        report order): a record's first report sets its time."""
        self.table()
        if np.ndim(now_jiffies) == 0:
            fresh = self.ns1[idx] == 0
            self.ns1[idx[fresh]] = jiffies_to_clock_ns(now_jiffies) + 1
            return
        ns = jiffies_to_clock_ns(np.asarray(now_jiffies, np.int64))
        _first_reports(self.ns1, np.ascontiguousarray(idx, np.int64), ns + 1, pf.ahead)

    def seen_reference(self, idx, now_jiffies) -> None:
        """``seen`` by sorting (the reference of its compiled pass)."""
        if self.ns1 is None:
            self.ns1 = np.zeros(self.size, dtype=np.int64)
        fresh = self.ns1[idx] == 0
        first_idx, first = np.unique(idx[fresh], return_index=True)   # first report of each
        nows = np.broadcast_to(np.asarray(now_jiffies, np.int64), np.shape(idx))
        times, which = np.unique(nows[fresh][first], return_inverse=True)
        ns = np.array([jiffies_to_clock_ns(j) for j in times.tolist()], dtype=np.int64)
        self.ns1[first_idx] = ns[which] + 1

    def promoted(self, engine, idx, pfns) -> None:
        """Hand the first-report times of promoted pfns to ``engine.first_report_ns`` and
        forget them (the old pfns are free now)."""
        if self.ns1 is None:
            return
        t = self.ns1[idx]
        has = t > 0
        times = engine.first_report_ns
        if isinstance(times, FirstReportTimes):       # PghotV3's
            times.add(pfns[has], t[has] - 1)
        else:                                        # a dict (kpromoted's)
            times.update(zip(pfns[has].tolist(), (t[has] - 1).tolist()))
        self.ns1[idx] = 0


class FirstReportTimes(Mapping):
    """PghotV3's ``first_report_ns``: pfn -> ns of the first report of each promoted folio
    (head pfn before the migration), read as a dict by promotion_metrics. Kept as the arrays
    each promotion hands over (``add``) and merged at the first read: a dict update per
    promoted pfn cost ~0.5 s CPU in a full-scale IBS run (2 M promotions). A pfn promoted
    again takes its latest time, as dict.update gives. ``arrays()`` gives the pfns (ascending)
    and their times as arrays, which promotion_metrics.lookup reads instead of the dict
    views."""

    def __init__(self):
        self._keys = self._values = np.empty(0, np.int64)
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []   # (pfns, ns), in order

    def add(self, pfns, ns) -> None:
        if pfns.size:
            self._parts.append((pfns, ns))

    def _merged(self) -> tuple[np.ndarray, np.ndarray]:
        if self._parts:
            pfns = np.concatenate([self._keys, *(p for p, _ in self._parts)])
            ns = np.concatenate([self._values, *(t for _, t in self._parts)])
            self._parts = []
            # the last entry of each pfn: the first of the reversed arrays
            self._keys, first = np.unique(pfns[::-1], return_index=True)
            self._values = ns[::-1][first]
        return self._keys, self._values

    def __getitem__(self, pfn) -> int:
        keys, values = self._merged()
        i = int(np.searchsorted(keys, pfn))
        if i < keys.size and keys[i] == pfn:
            return int(values[i])
        raise KeyError(pfn)

    def __iter__(self):
        return iter(self._merged()[0].tolist())

    def __len__(self) -> int:
        return int(self._merged()[0].size)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self._merged()


@njit(cache=True, nogil=True)
def _first_reports(ns1, idx, ns_plus1, ahead):
    """Reports in order: a record's first report (ns1 still 0) sets its time. With
    ``ahead`` > 0, report i + ahead's entry is prefetched."""
    for i in range(idx.size):
        if ahead and i + ahead < idx.size:
            prefetch(ns1, idx[i + ahead])
        if ns1[idx[i]] == 0:
            ns1[idx[i]] = ns_plus1[i]


@njit(cache=True, nogil=True)
def _take_records(rec, idx, block, words, block_ready, ready_bits):
    """kmigrated's test-and-clear of the records ``idx`` (ascending) it consumed: their
    words into ``words``, zeroed in ``rec`` and their READY bits cleared, and each touched
    block's READY flag set again to whether a READY bit is left in it (the block's
    block // 64 words of ``ready_bits``: PghotV3._ready_bits). Its numpy form,
    ``take_records_reference`` (a gather, a scatter, np.unique and a whole-block compare
    of the records per touched block), is kmigrated_do_work's under ``fast_wake = False``."""
    for i in range(idx.size):
        r = idx[i]
        words[i] = rec[r]
        rec[r] = 0
        ready_bits[r >> 6] &= ~(np.uint64(1) << np.uint64(r & 63))
    last = -1
    per_block = block // 64
    for i in range(idx.size):
        b = idx[i] // block
        if b != last:
            last = b
            ready = False
            for w in range(b * per_block, (b + 1) * per_block):
                if ready_bits[w]:
                    ready = True
                    break
            block_ready[b] = ready


def take_records_reference(rec, idx, block, block_ready, ready_bits) -> np.ndarray:
    """_take_records by numpy; returns the words."""
    words = rec[idx]
    rec[idx] = 0
    np.bitwise_and.at(ready_bits, idx >> 6, ~(np.uint64(1) << (idx & 63).astype(np.uint64)))
    touched = unique(idx // block)
    block_ready[touched] = (rec.reshape(-1, block)[touched] < 0).any(axis=1)
    return words


@njit(cache=True, nogil=True)
def _ready_landed(rec, blocks, block, pfn_offset, start, flags, tail, lru, idx, pfns):
    """The READY words (bit 63: negative in the int64 view) of ``blocks`` of ``block`` words
    each, in order, that a walk from pfn ``start`` lands on (PghotV3._landed_on: at or past
    ``start``, not a THP tail, on an LRU; record r is pfn r + pfn_offset): their indexes and
    pfns into ``idx`` and ``pfns``; returns how many."""
    n = 0
    for b in blocks:
        base = b * block
        for j in range(block):
            r = base + j
            if rec[r] < 0:
                p = r + pfn_offset
                if p >= start and (flags[p] & tail) == 0 and (flags[p] & lru) != 0:
                    idx[n] = r
                    pfns[n] = p
                    n += 1
    return n


@njit(cache=True, nogil=True)
def _ready_landed_bits(ready_bits, blocks, block, pfn_offset, start, flags, tail, lru, idx,
                       pfns):
    """_ready_landed from the records' READY bits (PghotV3._ready_bits: bit r % 64 of word
    r // 64 is set exactly when record r is READY) instead of the records: block // 64
    words a block (64 bytes) instead of ``block`` words (4 KiB), the same records in the
    same order (bits low to high in ascending words are ascending records)."""
    n = 0
    per_block = block // 64
    for b in blocks:
        for w in range(b * per_block, (b + 1) * per_block):
            x = ready_bits[w]
            r = w * 64
            while x:
                if x & np.uint64(1):
                    p = r + pfn_offset
                    if p >= start and (flags[p] & tail) == 0 and (flags[p] & lru) != 0:
                        idx[n] = r
                        pfns[n] = p
                        n += 1
                x >>= np.uint64(1)
                r += 1
    return n


@njit(cache=True, nogil=True)
def _set_ready_bits(ready_bits, idx):
    """The READY bits of records ``idx``."""
    for r in idx:
        ready_bits[r >> 6] |= np.uint64(1) << np.uint64(r & 63)


def count_per_node(vm, name: str, nodes, nr_nodes: int) -> None:
    count_nodes(vm, name, np.bincount(np.asarray(nodes, dtype=np.int64), minlength=nr_nodes))


def count_nodes(vm, name: str, counts) -> None:
    """vmstat ``name`` += counts[n] on each node n with a non-zero count."""
    for n in np.flatnonzero(counts):
        vm.count(name, int(n), int(counts[n]))


# ---- the record update (pghot_record_access's CAS loop body) ---------------------------------
_READY = -(1 << PGHOT_MIGRATE_READY)   # bit 63 in the int64 view of the records


@njit(cache=True, nogil=True, inline="always")
def _pghot_word(h, now, nid, window, threshold, literal, hint, default_node, nid_mask,
                freq_mask, time_mask, freq_max):
    """The CAS loop body: record word ``h`` after one report from ``nid`` at jiffies ``now``."""
    t = now & time_mask
    old_nid = (h >> 0) & nid_mask
    old_freq = (h >> 10) & freq_mask
    old_time = (h >> 13) & time_mask
    d = t - old_time                       # unsigned long in the kernel: < 0 wraps huge
    expired = d < 0 or d > window
    new_window = (expired and not hint) or (nid != -1 and old_nid != nid)
    if new_window:
        freq = 1
    elif old_freq < freq_max:
        freq = old_freq + 1
    else:
        # as posted, freq is left unassigned here (it can only happen with the literal
        # masks, where freq reads the time bits): keep the old value
        freq = old_freq
    tgt = default_node if nid == -1 else nid
    if literal:
        h &= ~(nid_mask << 0)              # the posted masks: nid_mask = 0 clears nothing
        h &= ~(freq_mask << 10)
        h &= ~(time_mask << 13)
        h |= (tgt & nid_mask) << 0
        h |= (freq & freq_mask) << 10
        h |= (t & time_mask) << 13
    else:
        h &= ~np.int64(0xFFFFFFFF)
        h |= tgt & nid_mask
        h |= min(freq, freq_mask) << 10    # a 3-bit field holds 7 at most
        h |= t << 13
    if freq > threshold:
        h |= np.int64(_READY)
    return h


@njit(cache=True, nogil=True)
def _record_one_pass(pfns, node_start, nr_pfns, is_lower, order, flags, lru, base, ns1,
                     ns_plus1, rec, nid, now, window, threshold, literal, hint, default_node,
                     nid_mask, freq_mask, time_mask, freq_max, block_ready, ready_bits,
                     activate, ahead):
    """PghotV3._record_one's filters 4-5 and records' part for one nid, report by report in
    one pass: what lower_tier_lru_heads, LowerTierPfns.index, FirstReports.seen (``ns1``,
    ``ns_plus1``: the time + 1), _pghot_update and the READY block / activation marks do
    over arrays (they touch different words, so doing them per report in order is the
    same). ``now`` and ``ns_plus1`` hold one time for every report, or one per report.
    Returns how many records were updated.

    klruscand's reports are runs of consecutive pfns (a walk's young PTEs of one VMA), so
    the pass keeps the last lower-tier node's pfn range and looks a node up only for a pfn
    outside it (filter 4: the same node, as node_start is sorted); it prefetches only where
    the pfns ahead are not the next ones (the hardware's prefetcher follows those), and
    indexes with unsigned integers (no negative-index wrap-around). Together 5.7 vs 8.6 ns
    a report over runs of consecutive pfns, 101 vs 120 over sorted random ones (micro, 64 M
    records)."""
    n = 0
    half = ahead // 2
    per_report = now.size > 1
    c_lo, c_hi, c_node = np.int64(0), np.int64(0), np.int64(-1)   # the cached node's pfns
    for i in range(pfns.size):
        if ahead and (i + ahead >= pfns.size or pfns[i + ahead] - pfns[i] != ahead):
            prefetch_folio(pfns, i + ahead, i + half, order, flags)
        p = pfns[i]
        if p < c_lo or p >= c_hi:
            if p < 0 or p >= nr_pfns:
                continue
            node = np.int64(upper_bound(node_start, p, 0, node_start.size) - 1)
            if not is_lower[node]:
                continue
            c_lo, c_hi, c_node = node_start[node], node_start[node + 1], node
        head = _lru_head(p, order, flags, lru)
        if head < 0:
            continue
        j = np.uint64(head - c_lo + base[c_node])
        w = i if per_report else 0
        if ns1[j] == 0:
            ns1[j] = ns_plus1[w]
        h = _pghot_word(rec[j], now[w], nid, window, threshold, literal, hint, default_node,
                        nid_mask, freq_mask, time_mask, freq_max)
        rec[j] = h
        if h < 0:
            block_ready[j // np.uint64(_BLOCK)] = True
            ready_bits[j >> np.uint64(6)] |= np.uint64(1) << (j & np.uint64(63))
            activate[c_node] = True
        n += 1
    return n


@njit(cache=True, nogil=True)
def _pghot_update(rec, idx, nids, nows, window, threshold, literal, hint, default_node,
                  nid_mask, freq_mask, time_mask, freq_max, out, ahead):
    """Apply one report per i, in order, to rec[idx[i]] (int64 view of the uint64 words), at
    jiffies nows[i]. With ``ahead`` > 0, report i + ahead's record is prefetched."""
    for i in range(idx.size):
        if ahead and i + ahead < idx.size:
            prefetch(rec, idx[i + ahead])
        j = idx[i]
        h = _pghot_word(rec[j], nows[i], nids[i], window, threshold, literal, hint,
                        default_node, nid_mask, freq_mask, time_mask, freq_max)
        rec[j] = h
        out[i] = h < 0


class _Destinations:
    """The destination nodes of one kmigrated wake's folios, for the per-destination steps of
    each admission window. When every folio of the wake goes to one node (the usual case:
    one top-tier node) a step takes the window's mask as it is, without a unique() and a
    comparison per step; otherwise, and always in the reference form (``fast=False``),
    each destination's folios are selected from the window."""

    def __init__(self, targets, fast: bool = True):
        self.only = -1
        if fast and targets.size and targets.min() == targets.max():
            self.only = int(targets[0])

    def each(self, d, mask) -> list[tuple[int, np.ndarray]]:
        """(destination, mask of its folios) for each destination among d[mask], ascending."""
        if self.only >= 0:
            return [(self.only, mask)] if mask.any() else []
        return [(int(dst), mask & (d == dst)) for dst in unique(d[mask])]


class _WalkSteps:
    """PghotV3._walk_steps(start, stop) for every stop up to ``p1`` of one wake from one read
    of the THP block heads (the reference reads every block head's order for each stop:
    twice a wake, over the whole rest of the node).

    A THP fills its 2 MiB block (PhysMem.alloc gives order 9 only whole free blocks, and
    order is cleared when its pages are freed or split), so only blocks without a free page
    can hold one: the heads' orders are read for those only, found in ``block_free`` (one
    contiguous int16 per block) instead of one strided byte per block of ``order`` (a cache
    line each: ~126,000 a wake at full scale, most of them free CXL blocks)."""

    def __init__(self, pm, start: int, p1: int):
        self.start = start
        first = -(-start // _BLOCK) * _BLOCK
        b0 = first // _BLOCK
        b1 = b0 + max(-(-(p1 - first) // _BLOCK), 0)      # the blocks whose head is < p1
        inside = min(b1, pm.block_free.size)
        full = b0 + np.flatnonzero(pm.block_free[b0:inside] == 0)
        if b1 > inside:                        # a partial block past block_free: read it
            full = np.r_[full, np.arange(max(inside, b0), b1)]
        heads = full * _BLOCK
        self.thps = heads[pm.order[heads] != 0]

    def upto(self, stop: int) -> int:
        """Walk steps over [start, stop): one per base page, one per THP."""
        return (stop - self.start) - int(np.searchsorted(self.thps, stop)) * 511


class Kmigrated(Daemon):
    """kmigrated<N>: the per-lower-tier-node promotion thread of pghot v3 (§1.4)."""

    def __init__(self, pghot: "PghotV3", nid: int):
        self.pghot, self.nid = pghot, int(nid)
        self.name = f"kmigrated{nid}"
        self.period_ns = pghot.kmigrated_interval_ms * MS
        self.cpu_node = nearest_cpu_node(pghot.kernel, nid)

    def run(self, engine) -> bool:
        return self.pghot.kmigrated_do_work(self.nid, engine)


class PghotV3(PromotionEngine):
    """pghot RFC v3 (engine "pghot-v3"). Params: freq_window_ms (5000), freq_threshold (2),
    rate_limit_MBps (65536), kmigrated_interval_ms (100), batch (512), sources (all three),
    literal (false), default_node (0)."""

    name = "pghot-v3"
    # kmigrated's wake: admission windows with the wake's prepare refusals computed once and
    # single-destination steps (_Destinations), the walk's THP blocks read once
    # (_WalkSteps); False: the reference forms (per window and destination, _walk_steps)
    fast_wake = True
    per_report_jiffies = True   # record_access takes one jiffies value per report
    # reports that all carry one nid take the one-nid pass (_record_one), also with a time
    # per report (IBS's drained windows); False: only a scalar nid and time do (the general
    # form is then the reference, tests/test_pghot_record_one.py)
    one_nid_pass = True
    # kmigrated's READY scan reads the records' READY bits (_ready_landed_bits); False: the
    # records themselves (_ready_landed, the former form)
    ready_bits = True
    period_ns = 100 * MS     # nothing to do on its own: the kmigrated daemons do the work

    PARAMS = {
        "freq_window_ms": (5000, ("int", 0)),
        "freq_threshold": (2, ("int", 0)),
        "rate_limit_MBps": (65536, ("int", 0)),
        "kmigrated_interval_ms": (100, ("int", 1)),
        "batch": (512, ("int", 1)),
        "sources": (list(SOURCES), "sources"),
        "literal": (False, "bool"),
        "default_node": (0, "node"),
    }

    def __init__(self, kernel, costs=None, component: Component | None = None, **params):
        super().__init__()
        self.first_report_ns = FirstReportTimes()
        p = setup_engine(self, kernel, costs, component, params)
        self.freq_window_ms = p["freq_window_ms"]
        self.freq_threshold = p["freq_threshold"]
        self.rate_limit_MBps = p["rate_limit_MBps"]
        self.kmigrated_interval_ms = p["kmigrated_interval_ms"]
        self.batch = p["batch"]
        self.sources = frozenset(p["sources"])
        self.literal = p["literal"]
        self.default_node = p["default_node"]
        self.masks = MASKS_LITERAL if self.literal else MASKS_INTENDED
        self.walk_step_ns = float(getattr(costs, "pfn_walk_ns", PFN_WALK_NS))
        nr_nodes = kernel.machine.nr_nodes
        self.records = np.zeros(self.lower.size, dtype=np.uint64)   # the hot_map words
        self._rec64 = self.records.view(np.int64)
        self._block_ready = np.zeros(self.lower.size // _BLOCK, dtype=bool)
        # one bit per record, set exactly while it is READY (the record passes set it with
        # the block's flag, _take_records clears it): kmigrated's READY scan reads 64 bytes
        # a flagged block instead of its 4 KiB of records
        self._ready_bits = np.zeros(self.lower.size // 64, dtype=np.uint64)
        self._first = FirstReports(self.lower.size)
        self.activate = np.zeros(nr_nodes, dtype=bool)               # PGDAT_KMIGRATED_ACTIVATE
        self.walk_pos: dict[int, int] = {}     # where an unfinished walk of a node resumes
        self.init_admission_state(nr_nodes)
        self.kmigrated = [Kmigrated(self, nid) for nid in self.lower.nodes]

    def init_admission_state(self, nr_nodes: int) -> None:
        """The per-destination pgdat promotion state of §1.5 (nbp_*), all zero."""
        for name in ("nbp_threshold", "nbp_th_start", "nbp_th_nr_cand", "nbp_rl_start",
                     "nbp_rl_nr_cand"):
            setattr(self, name, np.zeros(nr_nodes, dtype=np.int64))

    # ---- pghot_record_access ------------------------------------------------------------------
    def record_access(self, pfns, nid, src: str, now_jiffies) -> int:
        """pghot_record_access() for each (pfn, nid) in order (§1.2, §1.3). Returns how many
        records were updated. ``now_jiffies`` is one time, or one per report (ascending):
        the same as one call per time, in one call (IBS drains a window's reports so)."""
        if src not in SOURCES:
            raise ValueError(f"unknown hotness source {src!r} (expected one of: "
                             f"{', '.join(SOURCES)})")
        k = self.kernel
        if np.ndim(nid) == 0 and np.ndim(now_jiffies) == 0:
            return self._record_one(pfns, int(nid), src, now_jiffies)
        one = self._one_nid(pfns, nid)
        if one is not None:
            return self._record_one(pfns, one, src, now_jiffies)
        vm, n_nodes = k.vmstat, k.machine.nr_nodes
        pfns, nids = normalize_report(k, pfns, nid)
        if pfns.size == 0:
            return 0
        nows = np.broadcast_to(np.asarray(now_jiffies, dtype=np.int64), pfns.shape)
        if self.literal and src == HW_HINTS:
            nids[:] = 0                              # quirk (c): the IBS nid is never filled
        valid = nids < PGHOT_NID_MAX                  # filter 2, before any counting
        if not valid.all():
            pfns, nids, nows = pfns[valid], nids[valid], nows[valid]
        where = np.where((nids >= 0) & (nids < n_nodes), nids, self.default_node)
        per_node = np.bincount(where, minlength=n_nodes)
        count_nodes(vm, "pghot_recorded_accesses", per_node)
        if src not in self.sources:                  # filter 3: the source's static key
            return 0
        count_nodes(vm, _SOURCE_COUNTER[src], per_node)
        keep, heads, nodes = lower_tier_lru_heads(k, self.lower, pfns)
        if heads.size == 0:
            return 0
        kept_nows = nows[keep]
        return self._update(heads, nodes, nids[keep], kept_nows,
                            kept_nows if np.ndim(now_jiffies) else now_jiffies, src)

    def _one_nid(self, pfns, nid) -> int | None:
        """The nid every report carries, when record_access can take the one-nid pass with
        it (``one_nid_pass``); else None."""
        if not self.one_nid_pass:
            return None
        if np.ndim(nid) == 0:
            return int(nid)
        nids = np.asarray(nid).ravel()
        if nids.size == 0 or nids.size != np.size(pfns) or nids.dtype.kind not in "iu":
            return None                              # (the general form checks them)
        first = int(nids[0])
        return first if (nids == first).all() else None

    def _record_one(self, pfns, nid: int, src: str, now_jiffies) -> int:
        """record_access() with one nid for every report (klruscand's batches, NUMA hint
        faults, IBS's drained windows) and one time, or one per report: the same filters,
        counters and updates without the per-report nid and node arrays the general form
        builds before the lower-tier filter."""
        k = self.kernel
        pfns = np.asarray(pfns, dtype=np.int64).ravel()
        if np.ndim(now_jiffies):
            if pfns.size == 0:
                return 0
            now = np.ascontiguousarray(np.broadcast_to(
                np.asarray(now_jiffies, dtype=np.int64), pfns.shape))
        else:
            now = np.array([int(now_jiffies)], np.int64)
        nid = -1 if nid < 0 else nid                 # normalize_report's NUMA_NO_NODE
        if self.literal and src == HW_HINTS:
            nid = 0                                  # quirk (c)
        if pfns.size == 0 or nid >= PGHOT_NID_MAX:   # filter 2, before any counting
            return 0
        where = nid if 0 <= nid < k.machine.nr_nodes else self.default_node
        k.vmstat.count("pghot_recorded_accesses", where, pfns.size)
        if src not in self.sources:                  # filter 3
            return 0
        k.vmstat.count(_SOURCE_COUNTER[src], where, pfns.size)
        if self._first.ns1 is None:      # made at the first report that passes the filters
            if lower_tier_lru_heads(k, self.lower, pfns)[1].size == 0:
                return 0
        pm = k.pm
        ns_plus1 = (jiffies_to_clock_ns(now) if now.size > 1 else
                    np.array([jiffies_to_clock_ns(int(now[0]))], np.int64)) + 1
        nid_mask, freq_mask, time_mask = self.masks
        return int(_record_one_pass(
            np.ascontiguousarray(pfns), pm.node_start, pm.nr_pfns, self.lower.is_lower,
            pm.order, pm.flags, PG_lru, self.lower.base, self._first.table(),
            ns_plus1, self._rec64, nid, now,
            self.freq_window_ms * HZ // MSEC_PER_SEC, self.freq_threshold, self.literal,
            src == HINT_FAULT, self.default_node, nid_mask, freq_mask, time_mask,
            PGHOT_FREQ_MAX, self._block_ready, self._ready_bits, self.activate, pf.ahead))

    def _update(self, heads, nodes, nids, nows, seen_at, src: str) -> int:
        """The records' part of record_access(): first reports (at ``seen_at``, one time or
        one per report), the CAS loop body per report in order, READY blocks and kmigrated
        activation. Returns how many records were updated."""
        idx = self.lower.index(heads, nodes)
        self._first.seen(idx, seen_at)
        ready = np.zeros(idx.size, dtype=np.bool_)
        nid_mask, freq_mask, time_mask = self.masks
        _pghot_update(self._rec64, idx, nids, np.ascontiguousarray(nows),
                      self.freq_window_ms * HZ // MSEC_PER_SEC, self.freq_threshold,
                      self.literal, src == HINT_FAULT, self.default_node,
                      nid_mask, freq_mask, time_mask, PGHOT_FREQ_MAX, ready, pf.ahead)
        if ready.any():
            self._block_ready[idx[ready] // _BLOCK] = True
            _set_ready_bits(self._ready_bits, np.ascontiguousarray(idx[ready], np.int64))
            self.activate[unique(nodes[ready])] = True
        return int(idx.size)

    # ---- record decoding ----------------------------------------------------------------------
    def decode(self, words) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(nid, freq, time, ready) of record words, read with this engine's masks."""
        w = np.asarray(words, dtype=np.uint64).view(np.int64)
        nid_mask, freq_mask, time_mask = self.masks
        return ((w >> PGHOT_NID_SHIFT) & nid_mask, (w >> PGHOT_FREQ_SHIFT) & freq_mask,
                (w >> PGHOT_TIME_SHIFT) & time_mask, w < 0)

    def record_of(self, pfns) -> np.ndarray:
        """The record words of lower-tier pfns (for tests and reports)."""
        pfns = np.asarray(pfns, dtype=np.int64)
        return self.records[self.lower.index(pfns, self.kernel.node_of(pfns))]

    # ---- kmigrated ----------------------------------------------------------------------------
    def kmigrated_do_work(self, nid: int, engine) -> bool:
        """One wake-up of kmigrated<nid>: if PGDAT_KMIGRATED_ACTIVATE is set, clear it and
        walk every pfn of the node (§1.4). The walk goes only as far as this kthread's CPU
        reaches before its effects would land early (``engine.cpu_left_ns``, the engine's CPU
        rule); then it yields (returns True) and the next wake-up resumes it where it
        stopped. A batch still pending at that point is flushed (docs/fidelity.md)."""
        k = self.kernel
        pm, vm = k.pm, k.vmstat
        p0, p1 = pm.node_range(nid)
        start = self.walk_pos.pop(nid, None)
        if start is None:
            if not self.activate[nid]:
                return False
            self.activate[nid] = False
            start = p0
        steps = _WalkSteps(pm, start, p1) if self.fast_wake else None
        step_ns = self._step_ns(start, p1, steps)
        idx, heads = self._walk_ready(nid, start, p1, engine, step_ns)
        stop = self._walk_stop(start, p1, heads, engine, step_ns)
        if stop < p1:
            self.walk_pos[nid] = stop
            keep = heads < stop
            idx, heads = idx[keep], heads[keep]
        # the walk's cost: one step per base page, one per THP (it steps by folio size)
        engine.charge((steps.upto(stop) if steps else self._walk_steps(start, stop)) *
                      self.walk_step_ns)
        if idx.size:
            # test-and-clear READY, zero the rest; the touched blocks' READY flags again
            if self.fast_wake:
                words = np.empty(idx.size, np.int64)
                _take_records(self._rec64, idx, _BLOCK, words, self._block_ready,
                              self._ready_bits)
            else:
                words = take_records_reference(self._rec64, idx, _BLOCK, self._block_ready,
                                               self._ready_bits)
            self._kmigrated_records(nid, idx, heads, words.view(np.uint64), engine)
        return stop < p1

    def _ready_in(self, nid: int, start: int, blocks) -> tuple[np.ndarray, np.ndarray]:
        """(record indexes, head pfns) of the READY records in ``blocks`` (record block
        numbers, ascending) that the walk from pfn ``start`` lands on, in pfn order. The
        blocks' READY bits are read, and the walk's landing tests made, by one compiled pass
        (``_ready_landed_bits``; ``ready_bits = False``: ``_ready_landed``, its former form
        reading the records; ``_ready_in_reference`` is the numpy form)."""
        idx = np.empty(blocks.size * _BLOCK, np.int64)
        pfns = np.empty(blocks.size * _BLOCK, np.int64)
        args = (np.ascontiguousarray(blocks, np.int64), _BLOCK,
                int(self.lower.node_start[nid] - self.lower.base[nid]), start,
                self.kernel.pm.flags, PG_tail, PG_lru, idx, pfns)
        if self.ready_bits:
            n = _ready_landed_bits(self._ready_bits, *args)
        else:
            n = _ready_landed(self._rec64, *args)
        return idx[:n], pfns[:n]

    def _ready_in_reference(self, nid: int, start: int, blocks):
        """_ready_in by numpy: a copy of the blocks, compared, np.nonzero."""
        r, c = np.nonzero(self._rec64.reshape(-1, _BLOCK)[blocks] < 0)
        return self._landed_on(nid, start, blocks[r] * _BLOCK + c)

    def _landed_on(self, nid: int, start: int, idx):
        """The READY records ``idx`` (ascending) the walk from pfn ``start`` lands on."""
        pfns = self.lower.pfn(idx, nid)
        ahead = pfns >= start
        idx, pfns = idx[ahead], pfns[ahead]
        flags = self.kernel.pm.flags[pfns]
        # the walk lands on heads and base pages only (it steps over THP tails), and skips
        # folios that are not on an LRU before looking at the record
        visit = ((flags & PG_tail) == 0) & ((flags & PG_lru) != 0)
        return idx[visit], pfns[visit]

    def _walk_ready(self, nid: int, start: int, p1: int, engine, step_ns=None):
        """The READY records a walk of [start, p1) meets, as far as ``_walk_stop`` needs
        them: (record indexes, head pfns), in pfn order. The blocks flagged as holding READY
        records are read from ``start`` on in growing chunks, and reading ends at the first
        folio the walk cannot afford (its ``need`` > ``cpu_left_ns()``, as _walk_stop prices
        it): _walk_stop's stop depends only on the folios up to that one (need grows along
        the walk, so ``total`` exceeds the budget too), and the walk never passes it. A
        resumed walk used to read every READY record of the node on each wake
        (``_walk_ready_reference``; the same result, tests/test_perf_paths.py). The first
        chunk is 16 blocks, or fewer if the walk's reach without migrations ends sooner (no
        folio past it is affordable): one block past it. That only sizes the reads; the test
        above decides where they end."""
        lo, hi = self.lower.span(nid)
        p0 = int(self.lower.node_start[nid])
        first, end = (lo + start - p0) // _BLOCK, hi // _BLOCK
        left = engine.cpu_left_ns()
        c = engine.costs
        if step_ns is None:
            step_ns = self._step_ns(start, p1)
        reach = start + left / step_ns if np.isfinite(left) and step_ns > 0 else None
        if reach is not None:
            # the walk keeps no folio past max(reach, start + 1) and a THP's tail
            # (_walk_stop), and needs one folio past it at most: the flags of two blocks
            # past that one's are enough (a full-scale Mode 1 ibs wake reaches ~3,900 of
            # the node's ~60,000 blocks: flatnonzero over the rest took 0.08 s a run)
            end = min(end, (lo + int(max(reach, start + 1)) - p0) // _BLOCK + 3)
        blocks = first + np.flatnonzero(self._block_ready[first:end])
        chunk = 16
        if reach is not None:
            chunk = min(chunk, 1 + int(np.searchsorted(blocks * _BLOCK - lo + p0, reach)))
        idx, heads = [], []
        pos = 0
        while pos < blocks.size:
            i, h = self._ready_in(nid, start, blocks[pos:pos + chunk])
            idx.append(i)
            heads.append(h)
            pos += chunk
            chunk *= 2
            if h.size and np.isfinite(left):
                got = np.concatenate(heads)
                mig = np.cumsum(np.where(self.kernel.pm.folio_nr_pages(got) > 1,
                                         c.migrate_thp_ns, c.migrate_page_ns))
                if step_ns * (got[-1] + 1 - start) + mig[-1] > left:
                    break                 # an unaffordable folio: the stop is decided
        if not idx:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(idx), np.concatenate(heads)

    def _walk_ready_reference(self, nid: int, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Every READY record of the node from ``start`` on (the reference of _walk_ready)."""
        lo, hi = self.lower.span(nid)
        blocks = lo // _BLOCK + np.flatnonzero(self._block_ready[lo // _BLOCK:hi // _BLOCK])
        return self._ready_in_reference(nid, start, blocks)

    def _walk_steps(self, start: int, stop: int) -> int:
        """Steps of the pfn walk over [start, stop): one per base page, one per THP. A THP is
        a whole 2 MiB block with its head first (the only large order), so the block heads'
        orders count them: 1/512 of the pfns read (walks stop only at folio boundaries)."""
        first = -(-start // _BLOCK) * _BLOCK
        thps = np.count_nonzero(self.kernel.pm.order[first:stop:_BLOCK])
        return (stop - start) - thps * 511

    def _step_ns(self, start: int, p1: int, steps: "_WalkSteps | None" = None) -> float:
        """CPU time of the walk per pfn over [start, p1) (THPs are one step)."""
        n = steps.upto(p1) if steps is not None else self._walk_steps(start, p1)
        return self.walk_step_ns * n / max(p1 - start, 1)

    def _walk_stop(self, start: int, p1: int, heads, engine, step_ns=None) -> int:
        """Where this wake-up's walk must stop for its CPU time (walk steps, and the
        migration of the READY folios it passes, priced as the cost model prices them) to
        fit ``engine.cpu_left_ns()``: p1 if the whole rest fits; else just past the last
        READY folio that fits, and at least one folio or one step further than ``start``."""
        left = engine.cpu_left_ns()
        if step_ns is None:                          # (kmigrated_do_work computes it once)
            step_ns = self._step_ns(start, p1)
        c = engine.costs
        mig = np.cumsum(np.where(self.kernel.pm.folio_nr_pages(heads) > 1,
                                 c.migrate_thp_ns, c.migrate_page_ns))
        total = step_ns * (p1 - start) + (mig[-1] if mig.size else 0.0)
        if total <= left:
            return p1
        need = step_ns * (heads + 1 - start) + mig
        n = int(np.searchsorted(need, left, side="right"))
        spent = mig[n - 1] if n else 0.0
        stop = start + int(max(left - spent, 0.0) / max(step_ns, 1e-12))  # the walk's reach
        if n < heads.size:
            stop = min(stop, int(heads[n]))          # not onto a folio it cannot afford
        if n:
            stop = max(stop, int(heads[n - 1]) + 1)  # past every folio it can
        stop = min(max(stop, start + 1), p1)         # and always one step on
        head = stop // _BLOCK * _BLOCK
        if stop != head and self.kernel.pm.order[head]:
            stop = min(head + _BLOCK, p1)            # not inside a THP: past its tail
        return stop

    def _kmigrated_records(self, nid: int, idx, heads, words, engine) -> None:
        """Steps 3-7 of §1.4 for the READY records a walk consumed, in pfn order."""
        k = self.kernel
        vm = k.vmstat
        vm.count("pghot_kmigrated_ready", nid, int(idx.size))
        targets, _, times, _ = self.decode(words)
        bad = targets >= k.machine.nr_nodes               # no such node: nothing to do
        right = ~bad & (targets == nid)                   # already on its target
        if bad.any():
            vm.count("pghot_kmigrated_bad_nid", nid, int(bad.sum()))
        if right.any():
            vm.count("pghot_kmigrated_right_node", nid, int(right.sum()))
        go = ~bad & ~right
        self._promote(heads[go], targets[go], times[go], engine)
        k.after_op()

    def free_space_enough(self) -> np.ndarray:
        """pgdat_free_space_enough() for every node (§3.4): free pages above the PROMO
        watermark plus max(1 GiB, node_present_pages / 16)."""
        pm = self.kernel.pm
        enough = np.maximum(ENOUGH_FREE_BYTES >> PAGE_SHIFT, pm.node_present >> 4)
        return pm.node_free > pm.watermarks[:, WMARK_PROMO] + enough

    def adjust_threshold(self, dst: int, rate_limit: int, ref_th: int, now_ms: int) -> None:
        """kmigrated_promotion_adjust_threshold() (§1.5): at most once per 60 s per
        destination, move nbp_threshold by one step (ref_th * 2 / 16) toward the rate the
        candidates should have come at."""
        if (now_ms - int(self.nbp_th_start[dst])) & UINT_MASK > \
                KMIGRATED_PROMOTION_THRESHOLD_WINDOW:                  # unsigned int ms
            self.nbp_th_start[dst] = now_ms
            ref_cand = rate_limit * KMIGRATED_PROMOTION_THRESHOLD_WINDOW // MSEC_PER_SEC
            nr_cand = int(self.kernel.vmstat.node("pgpromote_candidate")[dst])
            diff_cand = nr_cand - int(self.nbp_th_nr_cand[dst])
            self.nbp_th_nr_cand[dst] = nr_cand
            self.nbp_threshold[dst] = adjusted_threshold(
                int(self.nbp_threshold[dst]), ref_th, diff_cand, ref_cand,
                KMIGRATED_MIGRATION_ADJUST_STEPS)

    def _latency_ms(self, times) -> np.ndarray:
        now = self.kernel.jiffies
        if self.literal:       # quirk (b): full-width jiffies minus the masked archived time
            lat = now - times
        else:
            lat = (now - times) & self.masks[2]
        return lat * MSEC_PER_SEC // HZ

    def _promote(self, heads, targets, times, engine) -> None:
        """Steps 4-7 of §1.4 for the consumed records, in walk order: admission
        (kmigrated_should_migrate_memory), prepare, batching and the batch flushes.

        Batching follows kmigrated_walk_zone(). As intended, a batch is flushed at ``batch``
        folios and on a target change, to its own target. As posted (``literal``), ``if
        (cur_nid != NUMA_NO_NODE) cur_nid = nid;`` comes before the test ``cur_nid != nid``,
        which therefore never holds after the first folio: batches are cut at ``batch``
        folios only and go to the target of the folio that triggers the flush (of the last
        folio at the end of the walk), whatever their own folios asked for.

        Vectorised in windows: admission and prepare depend on the destination's free pages,
        which change only when a batch is flushed, so each window is evaluated against the
        current state up to the folio that triggers the next flush (the 513th prepared
        folio, or the first with another target); that folio was admitted and prepared before
        the flush, as in the kernel, and starts the next batch.
        """
        k = self.kernel
        pm, vm = k.pm, k.vmstat
        n = heads.size
        if n == 0:
            return
        nr = pm.folio_nr_pages(heads)
        lat = self._latency_ms(times)
        now_ms = jiffies_to_msecs(k.jiffies)
        rate_limit = self.rate_limit_MBps << (20 - PAGE_SHIFT)     # MB_TO_PAGES
        ref_th = self.freq_window_ms
        pending: list[np.ndarray] = []
        pending_n, pending_nid = 0, -1
        queue = MigrationQueue(k)     # the flushes, migrated together where that is exact
        fast = self.fast_wake
        dests = _Destinations(targets, fast)
        # the refusals that read only flags: no flush changes the flags of a folio still to
        # come (a migration touches its own folios and the new ones on the target)
        static = static_prepare_reasons(k, heads) if fast else None
        pos = 0
        first_window = window = 2 * self.batch + 2     # room for a flush when most folios go
        while pos < n:
            end = min(pos + window, n)
            h, d, f, lt = heads[pos:end], targets[pos:end], nr[pos:end], lat[pos:end]
            m = end - pos
            fe = self.free_space_enough()[d]
            for dst, _ in dests.each(d, ~fe):
                self.adjust_threshold(dst, rate_limit, ref_th, now_ms)
            th = np.where(self.nbp_threshold > 0, self.nbp_threshold, ref_th)[d]
            lat_ok = ~fe & (lt < th)
            rl_ok = np.zeros(m, bool)
            cand_after = np.zeros(m, np.int64)
            cand_now = vm.node("pgpromote_candidate")
            for dst, of_dst in dests.each(d, lat_ok):
                sel = np.flatnonzero(of_dst)
                cum = int(cand_now[dst]) + np.cumsum(f[sel])
                if (now_ms - int(self.nbp_rl_start[dst])) & UINT_MASK > MSEC_PER_SEC:
                    snap = cum[0]            # a new 1-s window opens at the first candidate
                else:
                    snap = int(self.nbp_rl_nr_cand[dst])
                rl_ok[sel] = cum - snap < rate_limit
                cand_after[sel] = cum
            admitted = fe | (lat_ok & rl_ok)
            reasons = np.full(m, -1, np.int8)
            for dst, sel in dests.each(d, admitted):
                if fast:
                    reasons[sel] = prepare_reasons_of(k, static[pos:end][sel], f[sel], dst)
                else:
                    reasons[sel] = misplaced_prepare_reasons(k, h[sel], dst)
            go = np.flatnonzero(reasons == OK)
            cut, trigger = m, -1
            if go.size:
                bnid = pending_nid if pending_n else int(d[go[0]])
                room = self.batch - pending_n
                other = np.flatnonzero(d[go] != bnid)
                if self.literal:   # as posted: no flush on a target change (cur_nid bug)
                    j = min(room, go.size)
                else:
                    j = min(room, int(other[0]) if other.size else go.size)
                if j < go.size:
                    trigger = int(go[j])
                    cut = trigger + 1
                joined = go[:j]
                if joined.size:
                    pending.append(h[joined])
                    pending_n += joined.size
                    pending_nid = int(d[joined[-1]]) if self.literal else bnid
            self._commit(d[:cut], f[:cut], fe[:cut], lat_ok[:cut], rl_ok[:cut],
                         cand_after[:cut], reasons[:cut], now_ms, dests)
            if trigger >= 0:
                # as posted, cur_nid is the trigger's target when the batch is flushed
                nid = int(d[trigger]) if self.literal else pending_nid
                self._flush(np.concatenate(pending), nid, engine, queue)
                pending, pending_n, pending_nid = [h[[trigger]]], 1, int(d[trigger])
                window = first_window
            else:                                   # mostly refused: look further ahead
                window = min(2 * window, _MAX_WINDOW)
            pos += cut
        if pending_n:
            self._flush(np.concatenate(pending), pending_nid, engine, queue)
        self._run_queue(queue, engine)

    def _commit(self, d, f, fe, lat_ok, rl_ok, cand_after, reasons, now_ms,
                dests: _Destinations) -> None:
        """Apply the state changes and counts of the processed folios."""
        vm = self.kernel.vmstat
        for dst, of_dst in dests.each(d, fe):
            # the free-space shortcut: workload changed, reset the threshold
            self.nbp_threshold[dst] = 0
            vm.count("pgpromote_candidate_nrl", dst, int(f[of_dst].sum()))
        for dst, of_dst in dests.each(d, lat_ok):
            sel = np.flatnonzero(of_dst)
            vm.count("pgpromote_candidate", dst, int(f[sel].sum()))
            if (now_ms - int(self.nbp_rl_start[dst])) & UINT_MASK > MSEC_PER_SEC:
                self.nbp_rl_start[dst] = now_ms
                self.nbp_rl_nr_cand[dst] = cand_after[sel[0]]
        for dst, of_dst in dests.each(d, ~fe & ~lat_ok):
            vm.count("pghot_kmigrated_refused_latency", dst, int(np.count_nonzero(of_dst)))
        for dst, of_dst in dests.each(d, lat_ok & ~rl_ok):
            vm.count("pghot_kmigrated_refused_ratelimit", dst, int(np.count_nonzero(of_dst)))
        for dst, failed in dests.each(d, reasons > OK):
            count_prepare_failures(self.kernel, reasons[failed], dst)

    def _flush(self, heads, nid: int, engine, queue: MigrationQueue | None = None) -> None:
        """migrate_misplaced_folios_batch() of one batch. With a ``queue``: queued with the
        batches before it when that gives the same results (MigrationQueue: the free-page
        checks that follow see the batch as migrated), else after them on its own."""
        if queue is not None:
            if queue.add(heads, nid):
                return
            self._run_queue(queue, engine)
            if queue.add(heads, nid):
                return
        self._promoted(heads, folio_identities(self.kernel, heads),
                       migrate_misplaced_folios_batch(self.kernel, heads, nid), engine)

    def _run_queue(self, queue: MigrationQueue, engine) -> None:
        """Migrate the queued batches; promotions are noted."""
        if not queue.batches:
            return
        heads = np.concatenate(queue.batches)
        ids = folio_identities(self.kernel, heads)    # before the migration frees them
        self._promoted(heads, ids, np.concatenate(queue.run()), engine)

    def _promoted(self, heads, ids, ok, engine) -> None:
        k = self.kernel
        if ok.any():
            self.note_promoted(heads[ok], engine.now, ids[ok])
            old = heads[ok]
            self._first.promoted(self, self.lower.index(old, k.node_of(old)), old)


@register_engine("pghot-v3")
def _pghot_v3(component, kernel, costs):
    engine = PghotV3(kernel, costs, component)
    return [engine, *engine.kmigrated]


__all__ = ["FirstReportTimes", "FirstReports", "Kmigrated", "LowerTierPfns", "PghotV3",
           "read_params"]
