"""pghot RFC v1 and v2 (Aug / Sep 2025; promotion-spec §1.1, §1.6): PFN-hashed hotness records,
a per-target-node max-heap of records that are hot enough, and one ``kpromoted<N>`` thread per
top-tier node with CPUs that pops the hottest records every 20 ms and batch-migrates them.
Engines ``pghot-v1`` and ``pghot-v2``; ``[engine] name = "pghot"`` with ``version`` picks any
of kpromoted v0, pghot v1, v2, v3 by one name (``VERSIONS``).

v1 follows mm/pghot.c and include/linux/pghot.h of the v1 posting (3/7, message-id
20250814134826.154003-4-bharata@amd.com [S10]), read in the reference corpus:

- ``pghot_record_access``: count ``pghot_recorded_accesses``; only HW_HINTS and PGTABLE_SCAN
  are sources (hint faults: -EINVAL after that count); drop toptier, offline and non-LRU
  pfns. The record is keyed by the reported pfn (not its folio head). A new record, a report
  more than ``KPROMOTED_FREQ_WINDOW`` (5000 ms) after the last, or a report with a known nid
  other than the record's, gives frequency 1; otherwise frequency + 1. ``last_update`` and
  ``nid`` (NUMA_NO_NODE: ``KPROMOTED_DEFAULT_NODE`` = 0) are always updated. A new record goes
  into the hash only; an existing one with frequency >= 2 (``KPRMOTED_FREQ_THRESHOLD``)
  enters its target node's heap (if the heap has room: ``PGHOT_HEAP_PCT`` = 25% of the hash
  entries, which are ``PGHOT_HASH_PCT`` = 50% of the lower-tier pages), and one in the heap
  whose frequency fell below 2 leaves it.
- ``kpromoted<N>`` (every ``KPROMOTE_DELAY`` = 20 ms) extracts up to
  ``KPRMOTED_MIGRATE_BATCH`` = 1024 heap tops with frequency >= 2. Each extracted record is
  freed. It is dropped (``kpromoted_dropped``) if its folio is not on an LRU
  (``kpromoted_non_lru``), already on the target (``kpromoted_right_node``) or last reported
  more than 2 windows ago (``kpromoted_cold_old``); the rest go through
  migrate_misplaced_folio_prepare (a refused one is lost) and one
  migrate_misplaced_folios_batch() to N. No rate limit, no latency threshold.

v2 (RFC v2, Sep 2025 [S7]) is not in the reference corpus as code; the spec's summary is
"nid/freq/time packed in a u32 (10/3/19 bits); rate limit and dynamic threshold moved in from
NUMAB2, which became a pure source; hash and heap kept". Modelled as v1 plus: hint faults are a
source (no window bypass: that came with v3's "move NUMAB2" patch, an assumption); the
frequency saturates at 7 (3 bits; saturation rather than wrap is an assumption); the time is
jiffies mod 2^19 and window tests use the 19-bit difference; and each extracted folio passes
pghot v3's admission (free space, latency threshold on the record's time, 1-s rate limit,
60-s threshold adjustment, promotion-spec §1.5) before prepare, at extraction time (where v2
applies it is an assumption).

Simplifications (docs/fidelity.md): heap ties (equal frequency) are taken in the order the
records entered the heap (the kernel's binary-heap order among equals is not modelled); a
record whose nid changes leaves its old heap (the kernel leaves a stale entry there); the
kpromoted thread's CPU time is ``pfn_walk_ns`` per extracted record (an estimate) plus the
migrations.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..mm.constants import HZ, PG_lru
from ..mm.migrate import OK, count_prepare_failures, misplaced_prepare_reasons
from ..mm.vmstat import register_vmstat
from ..sim.config import Component
from ..sim.engine import MS
from ..sim.plugins import ENGINES, register_engine
from .base import HINT_FAULT, HW_HINTS, PGTABLE_SCAN, SOURCES, PromotionEngine
from .kpromoted import Kpromoted
from .pghot import (
    MASKS_INTENDED, MSEC_PER_SEC, PFN_WALK_NS, FirstReports, PghotV3, count_per_node,
    setup_engine, start_report,
)

# include/linux/pghot.h (v1)
KPROMOTED_FREQ_WINDOW_MS = 5000
KPRMOTED_FREQ_THRESHOLD = 2
PGHOT_HASH_PCT = 50
PGHOT_HEAP_PCT = 25
KPRMOTED_MIGRATE_BATCH = 1024
KPROMOTED_DEFAULT_NODE = 0
KPROMOTE_DELAY_MS = 20
V2_FREQ_MAX = (1 << 3) - 1          # a 3-bit field (assumed to saturate)
V2_TIME_MASK = MASKS_INTENDED[2]    # 19 bits of jiffies
V1_TIME_MASK = (1 << 62) - 1        # unsigned long jiffies: no wrap within a run

COUNTERS = ("pghot_records_hash", "pghot_records_heap", "kpromoted_right_node",
            "kpromoted_non_lru", "kpromoted_cold_old", "kpromoted_dropped")
register_vmstat(*COUNTERS)
_SOURCE_COUNTER = {HW_HINTS: "pghot_recorded_hwhints", PGTABLE_SCAN: "pghot_recorded_pgtscans",
                   HINT_FAULT: "pghot_recorded_hintfaults"}


@njit(cache=True, nogil=True)
def _record(present, freq, last, rnid, in_heap, heap_node, heap_seq, heap_nr, idx, nids, now,
            window, time_mask, freq_max, threshold, heap_cap, default_node, next_seq, added,
            heaped):
    """pghot_record_access() after its filters, one report at a time in order. ``added[i]``:
    report i created its record; ``heaped[i]``: it put the record into a heap. Returns the
    next heap insertion number."""
    t = now & time_mask
    for i in range(idx.size):
        j = idx[i]
        nid = nids[i]
        new = not present[j]
        if new:                                  # phi_alloc(): a zeroed record
            present[j] = True
            freq[j] = 0
            last[j] = 0
            rnid[j] = 0
        added[i] = new
        d = (t - last[j]) & time_mask
        new_window = d > window or (nid != -1 and rnid[j] != nid)
        if new or new_window:
            freq[j] = 1
        elif freq[j] < freq_max:
            freq[j] += 1
        last[j] = t
        rnid[j] = default_node if nid == -1 else nid
        if new:
            continue                             # hash only
        tgt = rnid[j]
        if in_heap[j] and heap_node[j] == tgt:   # phi_heap_add_or_adjust()
            if freq[j] < threshold:
                in_heap[j] = False
                heap_nr[tgt] -= 1
        elif freq[j] >= threshold:
            if in_heap[j]:                       # left its old target's heap
                in_heap[j] = False
                heap_nr[heap_node[j]] -= 1
            if heap_nr[tgt] < heap_cap:
                in_heap[j] = True
                heap_node[j] = tgt
                heap_seq[j] = next_seq
                next_seq += 1
                heap_nr[tgt] += 1
                heaped[i] = True
    return next_seq


class PghotHashHeap(PghotV3):
    """pghot v1 (``version = "v1"``) or v2 (``"v2"``): hash + heap, kpromoted threads. Reuses
    pghot v3's admission and batching for v2 (``PghotV3._promote``)."""

    name = "pghot-v1"
    version = "v1"
    per_report_jiffies = False
    period_ns = KPROMOTE_DELAY_MS * MS

    PARAMS = {
        "freq_window_ms": (KPROMOTED_FREQ_WINDOW_MS, ("int", 0)),
        "freq_threshold": (KPRMOTED_FREQ_THRESHOLD, ("int", 1)),
        "kpromote_delay_ms": (KPROMOTE_DELAY_MS, ("int", 1)),
        "batch": (KPRMOTED_MIGRATE_BATCH, ("int", 1)),
        "heap_pct": (PGHOT_HEAP_PCT, ("int", 1)),
        "default_node": (KPROMOTED_DEFAULT_NODE, "node"),
        "sources": ([HW_HINTS, PGTABLE_SCAN], "sources"),
    }

    def __init__(self, kernel, costs=None, component: Component | None = None, **params):
        PromotionEngine.__init__(self)
        p = setup_engine(self, kernel, costs, component, params)
        self.freq_window_ms = p["freq_window_ms"]
        self.freq_threshold = p["freq_threshold"]
        self.interval_ms = p["kpromote_delay_ms"]         # KPROMOTE_DELAY, for Kpromoted
        self.batch = p["batch"]
        self.default_node = p["default_node"]
        self.sources = frozenset(p["sources"])
        self.rate_limit_MBps = p.get("rate_limit_MBps", 0)
        self.literal = False
        self.masks = MASKS_INTENDED
        self.walk_step_ns = float(getattr(costs, "pfn_walk_ns", PFN_WALK_NS))
        v2 = self.version == "v2"
        self.time_mask = V2_TIME_MASK if v2 else V1_TIME_MASK
        self.freq_max = V2_FREQ_MAX if v2 else np.iinfo(np.int64).max
        n, nr_nodes = self.lower.size, kernel.machine.nr_nodes
        # pghot_init(): heap entries = PGHOT_HEAP_PCT of the hash entries (PGHOT_HASH_PCT of
        # the lower-tier pages), per top-tier node
        self.heap_cap = n * PGHOT_HASH_PCT // 100 * p["heap_pct"] // 100
        self.present = np.zeros(n, np.bool_)
        self.freq = np.zeros(n, np.int64)
        self.last = np.zeros(n, np.int64)
        self.rnid = np.zeros(n, np.int64)
        self.in_heap = np.zeros(n, np.bool_)
        self.heap_node = np.zeros(n, np.int64)
        self.heap_seq = np.zeros(n, np.int64)
        self.heap_nr = np.zeros(nr_nodes, np.int64)
        self._next_seq = 0
        self._first = FirstReports(n)
        self.init_admission_state(nr_nodes)     # v2's admission (§1.5), as pghot v3 keeps it
        top = set(kernel.machine.toptier_nodes)
        # kpromoted<N>: kpromoted v0's thread, calling this engine's kpromoted_migrate
        self.threads = [Kpromoted(self, nid) for nid in kernel.machine.cpu_nodes if nid in top]

    def _window(self) -> int:
        return self.freq_window_ms * HZ // MSEC_PER_SEC

    # ---- pghot_record_access ------------------------------------------------------------------
    def record_access(self, pfns, nid, src: str, now_jiffies: int) -> int:
        """pghot_record_access() (v1/v2) for each (pfn, nid) in order. Returns the records
        updated."""
        k = self.kernel
        vm, pm, n_nodes = k.vmstat, k.pm, k.machine.nr_nodes
        pfns, nids, where = start_report(self, pfns, nid, src, "pghot_recorded_accesses")
        if pfns.size == 0:
            return 0
        if src not in self.sources:                  # -EINVAL
            return 0
        count_per_node(vm, _SOURCE_COUNTER[src], where, n_nodes)
        node = pm.node_of(pfns)
        keep = node >= 0
        keep[keep] = self.lower.is_lower[node[keep]]
        keep[keep] = (pm.flags[pm.folio_head(pfns[keep])] & PG_lru) != 0
        if not keep.any():
            return 0
        idx = self.lower.index(pfns[keep], node[keep])
        self._first.seen(idx, now_jiffies)
        added = np.zeros(idx.size, np.bool_)
        heaped = np.zeros(idx.size, np.bool_)
        self._next_seq = _record(
            self.present, self.freq, self.last, self.rnid, self.in_heap, self.heap_node,
            self.heap_seq, self.heap_nr, idx, nids[keep], int(now_jiffies), self._window(),
            self.time_mask, self.freq_max, self.freq_threshold, self.heap_cap,
            self.default_node, self._next_seq, added, heaped)
        w = where[keep]
        count_per_node(vm, "pghot_records_hash", w[added], n_nodes)
        count_per_node(vm, "pghot_records_heap", w[heaped], n_nodes)
        return int(idx.size)

    # ---- kpromoted ----------------------------------------------------------------------------
    def heap_order(self, nid: int) -> np.ndarray:
        """Record indexes in node ``nid``'s heap, in extraction order: highest frequency
        first; equal frequencies in the order they entered the heap."""
        idx = np.flatnonzero(self.in_heap & (self.heap_node == nid))
        return idx[np.lexsort((self.heap_seq[idx], -self.freq[idx]))]

    def kpromoted_migrate(self, nid: int, engine) -> bool:
        """kpromoted_migrate() -> phi_heap_extract(): up to ``batch`` heap tops with frequency
        >= the threshold are taken out of the heap and the hash; the cold or misplaced ones
        are dropped, the rest prepared and migrated in one batch to ``nid``. Only the folios
        this kthread's CPU affords by the end of the next tick are extracted
        (``engine.affordable``); the others stay in the heap and the thread yields."""
        k = self.kernel
        pm, vm = k.pm, k.vmstat
        idx = self.heap_order(nid)
        idx = idx[self.freq[idx] >= self.freq_threshold][:self.batch]
        if idx.size == 0:
            return False
        pfns = self.lower.pfn_of(idx)
        heads = pm.folio_head(pfns)
        non_lru = (pm.flags[heads] & PG_lru) == 0
        _, first = np.unique(heads, return_index=True)
        dup = np.ones(idx.size, bool)
        dup[first] = False
        non_lru |= dup                  # the first record's folio was isolated meanwhile
        right = ~non_lru & (k.node_of(heads) == self.rnid[idx])
        age = (k.jiffies - self.last[idx]) & self.time_mask
        cold_old = ~non_lru & ~right & (age > 2 * self._window())
        hot = ~(non_lru | right | cold_old)
        take = engine.affordable(pm.folio_nr_pages(heads[hot]))
        yielded = take < int(hot.sum())
        if yielded:                      # stop before the first hot record it cannot afford
            cut = int(np.flatnonzero(hot)[take])
            idx, pfns, heads = idx[:cut], pfns[:cut], heads[:cut]
            non_lru, right, cold_old, hot = non_lru[:cut], right[:cut], cold_old[:cut], hot[:cut]
        engine.charge(idx.size * self.walk_step_ns)
        for name, mask in (("kpromoted_non_lru", non_lru), ("kpromoted_right_node", right),
                           ("kpromoted_cold_old", cold_old),
                           ("kpromoted_dropped", non_lru | right | cold_old)):
            if mask.any():
                vm.count(name, nid, int(mask.sum()))
        times = self.last[idx[hot]]
        self._forget(idx)
        go = heads[hot]
        if self.version == "v2":
            self._promote(go, np.full(go.size, nid, np.int64), times, engine)
        else:
            reasons = misplaced_prepare_reasons(k, go, nid)
            count_prepare_failures(k, reasons[reasons > OK], nid)
            if (reasons == OK).any():
                self._flush(go[reasons == OK], nid, engine)
        k.after_op()
        return yielded

    def _forget(self, idx) -> None:
        """Free extracted records (hash_del + heap removal)."""
        np.subtract.at(self.heap_nr, self.heap_node[idx[self.in_heap[idx]]], 1)
        self.present[idx] = False
        self.in_heap[idx] = False
        self.freq[idx] = 0
        self.last[idx] = 0
        self.rnid[idx] = 0

    def _latency_ms(self, times) -> np.ndarray:
        return ((self.kernel.jiffies - times) & self.time_mask) * MSEC_PER_SEC // HZ


class PghotV2(PghotHashHeap):
    """pghot v2 (engine "pghot-v2"): v1 + u32 record, hint faults, pghot's admission."""

    name = "pghot-v2"
    version = "v2"
    PARAMS = {**PghotHashHeap.PARAMS,
              "rate_limit_MBps": (65536, ("int", 0)),
              "sources": (list(SOURCES), "sources")}


@register_engine("pghot-v1")
def _pghot_v1(component, kernel, costs):
    engine = PghotHashHeap(kernel, costs, component)
    return [engine, *engine.threads]


@register_engine("pghot-v2")
def _pghot_v2(component, kernel, costs):
    engine = PghotV2(kernel, costs, component)
    return [engine, *engine.threads]


# ---- one name, one version each ----------------------------------------------------------------
# the kpromoted v0 / pghot v1-v3 lineage of promotion-spec §1.1, by the engine each version is
VERSIONS = {"v0": "kpromoted-v0", "v1": "pghot-v1", "v2": "pghot-v2", "v3": "pghot-v3"}
DEFAULT_VERSION = "v3"


@register_engine("pghot")
def _pghot(component, kernel, costs):
    """``[engine] name = "pghot"``, ``version`` = "v0" (kpromoted v0), "v1", "v2" or "v3"
    (default); every other key is the chosen engine's."""
    from ..sim import plugins

    plugins.load_all()
    params = dict(component.params)
    version = component.checker().choice(params.pop("version", DEFAULT_VERSION),
                                          component.field_path("version"), tuple(VERSIONS))
    chosen = Component(name=VERSIONS[version], params=params, path=component.path,
                       where=component.where)
    return ENGINES[chosen.name](chosen, kernel, costs)


__all__ = ["PghotHashHeap", "PghotV2", "VERSIONS"]
