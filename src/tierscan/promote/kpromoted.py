"""kpromoted v0 (Mar 2025; promotion-spec §1.1, §1.6): PFN-keyed hotness records and one
``kpromoted<N>`` thread per node with CPUs that promotes, once a second, every record aimed at
its node whose page was reported often enough lately.

Records {pfn, frequency, last_update, hot_node} live in a hash of 2^16 buckets in the kernel;
here they are dense arrays over the lower-tier pfns (``present`` says a record exists), walked
in the kernel's bucket order (hash_64(pfn, 16), newest first inside a bucket). A record is
keyed by the reported pfn, not its folio head, as in the posted code.

The promotion rule (page_should_be_promoted): the folio is on an LRU (else
kpromoted_mig_non_lru), not already on the thread's node (kpromoted_mig_right_node), its
record's window started at most 2 windows ago (kpromoted_mig_cold_old), and its frequency is at
least the threshold (kpromoted_mig_cold_not_accessed). A failing record is deleted
(kpromoted_mig_dropped); a passing one is a candidate, promoted alone through prepare +
migrate_misplaced_folio, and deleted only if that succeeds.

``literal = true`` keeps the posted window test, ``(last_update - now) > window`` on unsigned
longs: a new record reaches frequency 2 at once, and a report in a later jiffy always starts a
new window (frequency 1), so only pages reported once, or twice within one jiffy, qualify.
The intended rule (the default) is ``now - last_update > window``, with a new record at 1.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..mm.constants import HZ, PG_lru
from ..mm.migrate import migrate_misplaced_folios_one_by_one
from ..mm.vmstat import register_vmstat
from ..sim.config import Component
from ..sim.engine import MS, Daemon
from ..sim.plugins import register_engine
from .base import HW_HINTS, PGTABLE_SCAN, PromotionEngine
from ..sim.promotion_metrics import folio_identities
from .pghot import PFN_WALK_NS, FirstReports, count_per_node, setup_engine, start_report

KPROMOTED_HASH_ORDER = 16
GOLDEN_RATIO_64 = 0x61C8864680B583EB          # include/linux/hash.h
MSEC_PER_SEC = 1000

COUNTERS = (
    "kpromoted_recorded_accesses", "kpromoted_recorded_hwhints", "kpromoted_recorded_pgtscans",
    "kpromoted_record_toptier", "kpromoted_record_added", "kpromoted_record_exists",
    "kpromoted_mig_right_node", "kpromoted_mig_non_lru", "kpromoted_mig_cold_old",
    "kpromoted_mig_cold_not_accessed", "kpromoted_mig_candidate", "kpromoted_mig_promoted",
    "kpromoted_mig_dropped",
)
register_vmstat(*COUNTERS)
_SOURCE_COUNTER = {HW_HINTS: "kpromoted_recorded_hwhints",
                   PGTABLE_SCAN: "kpromoted_recorded_pgtscans"}


def hash_64(vals, bits: int) -> np.ndarray:
    """hash_64() of include/linux/hash.h: (val * GOLDEN_RATIO_64) >> (64 - bits)."""
    v = np.asarray(vals, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        return ((v * np.uint64(GOLDEN_RATIO_64)) >> np.uint64(64 - bits)).astype(np.int64)


@njit(cache=True, nogil=True)
def _kpromoted_update(present, freq, last, hot_node, seq, idx, nids, now, window, literal,
                      default_node, next_seq, added):
    """kpromoted_record_access() after the filters, one report at a time in order; added[i]
    says report i created its record. Returns the next insertion number."""
    for i in range(idx.size):
        j = idx[i]
        new = not present[j]
        added[i] = new
        if new:                                  # kpromoted_lookup(): kzalloc'ed record
            present[j] = True
            freq[j] = 1
            last[j] = now
            seq[j] = next_seq
            next_seq += 1
        if literal:
            d = last[j] - now                    # unsigned long: negative wraps huge
            if d < 0 or d > window:
                freq[j] = 1
                last[j] = now
            else:
                freq[j] += 1
        elif not new:
            d = now - last[j]
            if d < 0 or d > window:
                freq[j] = 1
                last[j] = now
            else:
                freq[j] += 1
        hot_node[j] = default_node if nids[i] == -1 else nids[i]
    return next_seq


class Kpromoted(Daemon):
    """kpromoted<N>: every ``engine.interval_ms`` calls ``engine.kpromoted_migrate(N)``. In
    kpromoted v0 that walks every record and promotes those aimed at N; pghot v1/v2 reuse the
    thread for their heap extraction (promote/pghot_hashheap.py)."""

    def __init__(self, engine: "KpromotedV0", nid: int):
        self.engine, self.nid = engine, int(nid)
        self.name = f"kpromoted{nid}"
        self.period_ns = engine.interval_ms * MS
        self.cpu_node = int(nid)

    def run(self, engine) -> bool:
        return self.engine.kpromoted_migrate(self.nid, engine)


class KpromotedV0(PromotionEngine):
    """kpromoted v0 (engine "kpromoted-v0"). Params: freq_window_ms (5000), freq_threshold (2),
    interval_ms (1000), default_node (0; the posted code hard-codes 1), literal (false)."""

    name = "kpromoted-v0"
    period_ns = 1000 * MS

    PARAMS = {
        "freq_window_ms": (5000, ("int", 0)),
        "freq_threshold": (2, ("int", 0)),
        "interval_ms": (1000, ("int", 1)),
        "default_node": (0, "node"),
        "literal": (False, "bool"),
    }

    def __init__(self, kernel, costs=None, component: Component | None = None, **params):
        super().__init__()
        p = setup_engine(self, kernel, costs, component, params)
        self.freq_window_ms = p["freq_window_ms"]
        self.freq_threshold = p["freq_threshold"]
        self.interval_ms = p["interval_ms"]
        self.default_node = p["default_node"]
        self.literal = p["literal"]
        self.walk_step_ns = float(getattr(costs, "pfn_walk_ns", PFN_WALK_NS))
        n = self.lower.size
        self.present = np.zeros(n, dtype=np.bool_)
        self.freq = np.zeros(n, dtype=np.int64)
        self.last_update = np.zeros(n, dtype=np.int64)
        self.hot_node = np.zeros(n, dtype=np.int64)
        self.seq = np.zeros(n, dtype=np.int64)   # insertion order (hlist_add_head: newest first)
        self._next_seq = 0
        self._first = FirstReports(n)
        self._resume: dict[int, tuple] = {}   # (hash, -seq) where a yielded pass stopped
        # one thread per node with CPUs (N_CPU), bound to it
        self.threads = [Kpromoted(self, nid) for nid in kernel.machine.cpu_nodes]

    def _window(self) -> int:
        return self.freq_window_ms * HZ // MSEC_PER_SEC

    def record_access(self, pfns, nid, src: str, now_jiffies: int) -> int:
        """kpromoted_record_access() for each (pfn, nid) in order. Returns the records
        updated."""
        k = self.kernel
        vm, pm, n_nodes = k.vmstat, k.pm, k.machine.nr_nodes
        pfns, nids, where = start_report(self, pfns, nid, src, "kpromoted_recorded_accesses")
        if pfns.size == 0:
            return 0
        if src in _SOURCE_COUNTER:      # v0 knows IBS and page-table scans only
            count_per_node(vm, _SOURCE_COUNTER[src], where, n_nodes)
        node = pm.node_of(pfns)
        ok = node >= 0
        top = ok.copy()
        top[ok] = ~self.lower.is_lower[node[ok]]
        if top.any():
            count_per_node(vm, "kpromoted_record_toptier", where[top], n_nodes)
        keep = ok & ~top
        keep[keep] = (pm.flags[pm.folio_head(pfns[keep])] & PG_lru) != 0
        if not keep.any():
            return 0
        idx = self.lower.index(pfns[keep], node[keep])
        self._first.seen(idx, now_jiffies)
        added = np.zeros(idx.size, dtype=np.bool_)
        self._next_seq = _kpromoted_update(
            self.present, self.freq, self.last_update, self.hot_node, self.seq, idx,
            nids[keep], int(now_jiffies), self._window(), self.literal, self.default_node,
            self._next_seq, added)
        w = where[keep]
        count_per_node(vm, "kpromoted_record_added", w[added], n_nodes)
        count_per_node(vm, "kpromoted_record_exists", w[~added], n_nodes)
        return int(idx.size)

    def kpromoted_migrate(self, nid: int, engine) -> bool:
        """kpromoted_migrate(): one pass over every record (§1.6). The pass migrates only the
        candidates this kthread's CPU affords by the end of the next engine tick
        (``engine.affordable``); then it stops before the next one, yields (returns True) and
        resumes there, in walk order, as soon as its CPU is free (the engine's CPU rule). The
        walk's cost is charged once, when a pass starts."""
        k = self.kernel
        pm, vm = k.pm, k.vmstat
        resume = self._resume.pop(nid, None)
        if resume is None:
            n_records = int(np.count_nonzero(self.present))
            engine.charge(((1 << KPROMOTED_HASH_ORDER) + n_records) * self.walk_step_ns)
        idx = np.flatnonzero(self.present & (self.hot_node == nid))
        pfns = self.lower.pfn_of(idx)
        hashes = hash_64(pfns, KPROMOTED_HASH_ORDER)
        order = np.lexsort((-self.seq[idx], hashes))
        idx, pfns, hashes = idx[order], pfns[order], hashes[order]
        if resume is not None:                    # the records after where the pass stopped
            after = (hashes > resume[0]) | ((hashes == resume[0]) & (-self.seq[idx] > resume[1]))
            idx, pfns, hashes = idx[after], pfns[after], hashes[after]
        if idx.size == 0:
            return False
        heads = pm.folio_head(pfns)
        now = k.jiffies
        non_lru = (pm.flags[heads] & PG_lru) == 0
        right = ~non_lru & (k.node_of(heads) == nid)
        age = now - self.last_update[idx]
        cold_old = ~non_lru & ~right & ((age < 0) | (age > 2 * self._window()))
        cold_na = ~non_lru & ~right & ~cold_old & (self.freq[idx] < self.freq_threshold)
        cand = ~(non_lru | right | cold_old | cold_na)
        # candidates are migrated one at a time in walk order; a later record of a folio that
        # an earlier one promoted finds the old page off the LRU
        c = np.flatnonzero(cand)
        _, first = np.unique(heads[c], return_index=True)
        first = np.sort(first)
        take = engine.affordable(pm.folio_nr_pages(heads[c[first]]))
        yielded = take < first.size
        if yielded:                               # stop before the first it cannot afford
            cut = int(c[first[take]])
            self._resume[nid] = (int(hashes[cut - 1]), int(-self.seq[idx[cut - 1]]))
            idx, pfns, heads = idx[:cut], pfns[:cut], heads[:cut]
            non_lru, right, cold_old, cold_na, cand = (
                non_lru[:cut], right[:cut], cold_old[:cut], cold_na[:cut], cand[:cut])
            c = np.flatnonzero(cand)
            first = first[:take]
        tried = heads[c[first]]
        ids = folio_identities(k, tried)
        moved = migrate_misplaced_folios_one_by_one(k, tried, nid)
        ok = np.zeros(c.size, bool)
        ok[first] = moved
        dup = np.ones(c.size, bool)
        dup[first] = False
        head_moved = np.isin(heads[c], heads[c[first]][moved])
        late = dup & head_moved                       # their page was promoted meanwhile
        non_lru[c[late]] = True
        cand[c[late]] = False
        promoted = np.zeros(idx.size, bool)
        promoted[c[ok]] = True
        dropped = ~cand
        for name, mask in (("kpromoted_mig_non_lru", non_lru), ("kpromoted_mig_right_node", right),
                           ("kpromoted_mig_cold_old", cold_old),
                           ("kpromoted_mig_cold_not_accessed", cold_na),
                           ("kpromoted_mig_candidate", cand),
                           ("kpromoted_mig_promoted", promoted),
                           ("kpromoted_mig_dropped", dropped)):
            if mask.any():
                vm.count(name, nid, int(mask.sum()))
        gone = idx[dropped | promoted]
        self.present[gone] = False
        self.freq[gone] = 0
        self.last_update[gone] = 0
        self.hot_node[gone] = 0
        self.seq[gone] = 0
        if moved.any():
            self.note_promoted(tried[moved], engine.now, ids[moved])
            # the report time of a promoted folio: its record's pfn (the first one to move it)
            self._first.promoted(self, idx[c[first]][moved], tried[moved])
            k.after_op()
        return yielded


@register_engine("kpromoted-v0")
def _kpromoted_v0(component, kernel, costs):
    engine = KpromotedV0(kernel, costs, component)
    return [engine, *engine.threads]


__all__ = ["Kpromoted", "KpromotedV0", "hash_64"]
