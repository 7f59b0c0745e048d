"""AMD IBS Op sampling as a promotion source ("hwhints"; promotion-spec §1.2, §5.1).
Registered as detector ``ibs``.

The hardware tags one op in ``sample_period`` (10000, fixed in the posted driver); the NMI
handler applies the filter chain of §5.1 and pushes ``{pfn, time}`` into a per-CPU ring of
``ring_size`` (150) slots, counting ``hwhint_buffer_full`` when the ring is full; an irq_work
later drains the ring into ``record_access(pfn, nid, HW_HINTS, time)``.

Model (docs/detectors.md):

- Sampling. Every engine tick, for each thread group that ran, ``engine.model.sample`` draws
  the pfns hit by sampled accesses of its last advance, with ``ops_per_access /
  sample_period`` samples per access (a Poisson count in the rate model, a Bernoulli thinning
  of the replayed accesses in the exact model). ``ops_per_access`` is the number of dispatched
  ops one simulated access stands for: IBS Op sampling counts every op, and a loop around a
  random access issues several. The default, 10, is an a-priori estimate from HPCC
  RandomAccess's inner loop (a shift-xor PRNG step, a mask, the read-modify-write and loop
  control), not a measurement. Every simulated load misses the caches, so the DC/L2-miss and
  L3-miss-only filters pass; user mode, a valid linear and physical address hold for every
  sample of a mapped page.
- Stores (``sample_stores``, default false). The driver sets IBS_OP_L3MISSONLY on Zen 4+ and
  notes "DataSrc isn't valid for stores"; a store retires before its line arrives, so we take
  it that a tagged store is not reported as an L3 miss and never raises the NMI. This is an
  inference, not a documented hardware fact: the pghot v3 results support it, since IBS
  covered ~all pages in Mode 2 (loads only, 72 s) but 60% in Mode 1 (half stores, 103 s),
  which the same per-op rate cannot give if stores were sampled (docs/reproductions.md).
- Filters in the handler: the page must be mapped (not the zero page) and its folio on an LRU
  (else ``hwhint_non_lru``). Top-tier (DRAM) samples are *not* dropped here: as posted they
  take ring slots and reach pghot, whose ``record_access`` drops toptier pfns (§1.2 filter 4).
  ``drop_toptier = true`` drops them in the handler instead.
- Rings. The kernel has one ring per CPU. Here each thread group has one ring per thread
  (threads are taken as pinned one per CPU; groups never share a CPU). Each sample gets a
  uniform time inside the tick and a uniformly chosen thread of its group.
- Drain. The irq_work/work-item latency is not modelled in the kernel sources we have; we
  assume the ring is emptied every ``drain_ms`` (10 ms) of simulated time. A ring that
  receives more than ``ring_size`` samples within one drain window drops the later ones.
  Drained samples are reported grouped by their sample jiffies, in time order.
- nid. The posted v3 code never fills the nid (``nid_quirk = true``: nid 0); with ``false``
  the nid is the sampling CPU's node (the intent).
- Cost. ``costs.sample_ns`` per hardware sample (every NMI, also those filtered or dropped),
  charged to this daemon (reported as detector overhead, although the NMI runs on the
  workload's CPU).

Counters (registered with vmstat): ``hwhint_nr_events``, ``hwhint_dram_accesses``,
``hwhint_cxl_accesses``, ``hwhint_useful_samples``, ``hwhint_buffer_full``,
``hwhint_non_lru``; each is counted on the node of the sampling CPU.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .. import prefetch as pf
from ..arrays import upper_bound
from ..jiffies import clock_to_jiffies
from ..mm.constants import HPAGE_PMD_NR, PG_lru
from ..mm.vmstat import register_vmstat
from ..prefetch import prefetch_folio
from ..promote.base import HW_HINTS
from ..sim.engine import MS
from ..sim.plugins import register_detector
from .base import Detector

DEFAULT_SAMPLE_PERIOD = 10_000
DEFAULT_RING_SIZE = 150
DEFAULT_DRAIN_MS = 10.0
DEFAULT_OPS_PER_ACCESS = 10.0
COUNTERS = ("hwhint_nr_events", "hwhint_dram_accesses", "hwhint_cxl_accesses",
            "hwhint_useful_samples", "hwhint_buffer_full", "hwhint_non_lru")
register_vmstat(*COUNTERS)
PARAMS = {"sample_period": False, "ops_per_access": False, "ring_size": False,
          "drain_ms": False, "nid_quirk": False, "drop_toptier": False, "sample_stores": False,
          "seed": False}


class Ibs(Detector):
    name = "ibs"
    kthread = False     # the NMI handler runs on the sampled CPUs, not on one kthread

    def __init__(self, promoter=None, *, sample_period: int = DEFAULT_SAMPLE_PERIOD,
                 ops_per_access: float = DEFAULT_OPS_PER_ACCESS,
                 ring_size: int = DEFAULT_RING_SIZE, drain_ms: float = DEFAULT_DRAIN_MS,
                 nid_quirk: bool = True,
                 drop_toptier: bool = False, sample_stores: bool = False, seed: int = 0,
                 costs=None):
        super().__init__(promoter)
        if int(sample_period) < 1:
            raise ValueError(f"sample_period must be >= 1, got {sample_period}")
        if not 0 < ops_per_access <= sample_period:
            raise ValueError(f"ops_per_access must be in (0, sample_period], got {ops_per_access}")
        if int(ring_size) < 1:
            raise ValueError(f"ring_size must be >= 1, got {ring_size}")
        self.drain_ns = int(round(drain_ms * MS))
        if self.drain_ns <= 0:
            raise ValueError(f"drain_ms must be > 0, got {drain_ms}")
        self.sample_period, self.ops_per_access = int(sample_period), float(ops_per_access)
        self.ring_size, self.nid_quirk = int(ring_size), bool(nid_quirk)
        self.drop_toptier, self.sample_stores = bool(drop_toptier), bool(sample_stores)
        self.costs = costs
        self.rng = np.random.default_rng([int(seed), 0x1B5])
        self.period_ns = 10 * MS          # replaced by the engine's tick in start()
        self.last_total: dict[int, float] = {}
        # ring state: ring key -> (window id, occupancy)
        self.ring_window: dict[int, np.ndarray] = {}   # per group: each thread's ring's
        self.ring_fill: dict[int, np.ndarray] = {}     # drain window and fill
        # samples in the rings, not yet drained: arrays of pfn, nid, time (ns), window
        self.pending = [np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64),
                        np.empty(0, np.int64)]
        self.stats = {"samples": 0, "reported": 0, "dropped_full": 0, "non_lru": 0,
                      "toptier_dropped": 0}

    @property
    def per_access(self) -> float:
        return self.ops_per_access / self.sample_period

    def start(self, engine) -> None:
        # Sampling follows the access model's last advance, so it must run every tick.
        self.period_ns = engine.tick_ns
        engine.model.sampled = True
        self.next_ns = engine.now + engine.tick_ns
        for g in engine.groups:
            self.last_total[g.gid] = g.total

    # ---- one tick -------------------------------------------------------------------------
    def run(self, engine) -> None:
        k = engine.kernel
        c = self.costs or engine.costs
        dt = engine.tick_ns
        tick_start = engine.now - dt
        top = min(n.tier for n in k.machine.nodes)
        tier = np.array([n.tier for n in k.machine.nodes])
        for g in engine.groups:
            if g.total == self.last_total.get(g.gid):
                continue   # the group did not run this tick (finished or stalled)
            self.last_total[g.gid] = g.total
            per = self.per_access
            ms = getattr(engine, "memsys", None)
            if ms is not None:      # the L3-miss filter: accesses the LLC serves are not tagged
                per *= ms.llc_miss_ratio(g)
            pfns = np.asarray(engine.model.sample(engine, g, per, dt,
                                                  loads_only=not self.sample_stores), np.int64)
            n = int(pfns.size)
            if n == 0:
                continue
            cpu = g.spec.cpu_node
            vm = k.vmstat
            vm.count("hwhint_nr_events", cpu, n)
            engine.charge(n * c.sample_ns)
            self.stats["samples"] += n
            # time order of the samples inside the tick (the exact model gives them in order)
            t = tick_start + np.sort(self.rng.integers(0, dt, n))
            thread = self.rng.integers(0, g.threads, n)
            ok, non_lru, n_top, n_lower = self._filter(k, pfns, tier, top)
            vm.count("hwhint_non_lru", cpu, non_lru)
            self.stats["non_lru"] += non_lru
            vm.count("hwhint_dram_accesses", cpu, n_top)
            vm.count("hwhint_cxl_accesses", cpu, n_lower)
            if self.drop_toptier:
                self.stats["toptier_dropped"] += n_top
            pfns, t, thread = pfns[ok], t[ok], thread[ok]
            kept = self._push(g.gid, thread, pfns, t)
            vm.count("hwhint_useful_samples", cpu, int(kept.sum()))
            full = int((~kept).sum())
            vm.count("hwhint_buffer_full", cpu, full)
            self.stats["dropped_full"] += full
            nid = 0 if self.nid_quirk else cpu
            self._queue(pfns[kept], np.full(int(kept.sum()), nid, np.int64), t[kept])
        self._drain(engine.now)

    def _filter(self, k, pfns, tier, top) -> tuple[np.ndarray, int, int, int]:
        """The handler's filter chain: a mapped page (not the zero page) whose folio is on an
        LRU; top-tier samples dropped too with ``drop_toptier``. Returns (the samples kept,
        how many failed the chain, how many passed it on a top-tier node, and on another).
        One compiled pass (``handler_filter``); ``_filter_reference`` is its numpy form."""
        ok = np.zeros(pfns.size, bool)
        counts = np.zeros(3, np.int64)
        pm = k.pm
        handler_filter(pfns, k.zero_pfn, k.huge_zero_pfn, HPAGE_PMD_NR, pm.order, pm.flags,
                       PG_lru, pm.node_start, pm.nr_pfns, tier, top, self.drop_toptier, ok,
                       counts, pf.ahead)
        return ok, int(counts[0]), int(counts[1]), int(counts[2])

    def _filter_reference(self, k, pfns, tier, top) -> tuple[np.ndarray, int, int, int]:
        ok = pfns >= 0
        ok[ok] = ~k.is_zero_pfn(pfns[ok])
        heads = k.pm.folio_head(pfns[ok])
        on_lru = (k.pm.flags[heads] & PG_lru) != 0       # folio_test_lru()
        ok[np.flatnonzero(ok)[~on_lru]] = False
        non_lru = pfns.size - int(ok.sum())
        is_top = tier[k.node_of(pfns[ok])] == top
        if self.drop_toptier:
            ok[np.flatnonzero(ok)[is_top]] = False
        return ok, non_lru, int(is_top.sum()), int((~is_top).sum())

    def _push(self, gid: int, thread, pfns, t) -> np.ndarray:
        """Put samples into their rings; a ring keeps at most ring_size per drain window.
        Returns the mask of samples that found a slot. Samples in time order (as ``run``
        gives them) go through one compiled pass in that order (``ring_push``); others
        through the sorting form (``_push_sorted``, also its reference in the tests)."""
        n = pfns.size
        if n == 0 or (n > 1 and (t[1:] < t[:-1]).any()):
            return self._push_sorted(gid, thread, pfns, t)
        kept = np.zeros(n, bool)
        ring_window, ring_fill = self._rings(gid, int(thread.max()) + 1)
        ring_push(np.ascontiguousarray(thread, np.int64), t // self.drain_ns, ring_window,
                  ring_fill, self.ring_size, kept)
        return kept

    def _push_sorted(self, gid: int, thread, pfns, t) -> np.ndarray:
        """_push for samples in any order: sorted by (ring, window, time), one run per
        (ring, window)."""
        n = pfns.size
        kept = np.zeros(n, bool)
        if n == 0:
            return kept
        window = t // self.drain_ns
        order = np.lexsort((t, window, thread))
        r, w = thread[order], window[order]
        starts = np.flatnonzero(np.r_[True, (r[1:] != r[:-1]) | (w[1:] != w[:-1])])
        counts = np.diff(np.r_[starts, n])
        rank = np.arange(n) - np.repeat(starts, counts)
        # one entry per (ring, window) run: a ring's first run continues the ring's stored
        # window if it is the same one; every later run is a newer window, so starts empty
        ring_window, ring_fill = self._rings(gid, int(r[-1]) + 1)
        gr, gw = r[starts], w[starts]
        first = np.r_[True, gr[1:] != gr[:-1]]
        base = np.where(first & (ring_window[gr] == gw), ring_fill[gr], 0)
        last = np.r_[gr[1:] != gr[:-1], True]
        ring_window[gr[last]] = gw[last]
        ring_fill[gr[last]] = np.minimum(self.ring_size, base[last] + counts[last])
        kept[order] = np.repeat(base, counts) + rank < self.ring_size
        return kept

    def _rings(self, gid: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The drain window (-1: none yet) and fill of each thread's ring of group ``gid``."""
        win, fill = self.ring_window.get(gid), self.ring_fill.get(gid)
        if win is None or win.size < size:
            old = 0 if win is None else win.size
            win = np.r_[win if old else np.empty(0, np.int64), np.full(size - old, -1, np.int64)]
            fill = np.r_[fill if old else np.empty(0, np.int64), np.zeros(size - old, np.int64)]
            self.ring_window[gid], self.ring_fill[gid] = win, fill
        return win, fill

    def _queue(self, pfns, nids, t) -> None:
        window = t // self.drain_ns
        self.pending = [np.concatenate([a, b]) for a, b in
                        zip(self.pending, (pfns, nids, t.astype(np.int64), window))]

    def _drain(self, now_ns: int) -> None:
        """The irq_work: hand every sample of a finished drain window to record_access."""
        pfns, nids, t, window = self.pending
        due = (window + 1) * self.drain_ns <= now_ns
        if not due.any():
            return
        if due.all():                  # the usual case: the window ended with this tick
            dp, dn, dt = pfns, nids, t
            self.pending = [a[:0] for a in self.pending]
        else:
            dp, dn, dt = pfns[due], nids[due], t[due]
            self.pending = [a[~due] for a in self.pending]
        if dt.size > 1 and (dt[1:] < dt[:-1]).any():   # several groups' samples: time order
            order = np.argsort(dt, kind="stable")
            dp, dn, dt = dp[order], dn[order], dt[order]
        jiffies = clock_to_jiffies(dt)
        self.stats["reported"] += int(dp.size)
        if self.promoter is None:
            return
        if getattr(self.promoter, "per_report_jiffies", False):   # one call for the window
            self.promoter.record_access(dp, dn, HW_HINTS, jiffies)
            return
        cuts = np.flatnonzero(np.diff(jiffies)) + 1
        for s, e in zip(np.r_[0, cuts], np.r_[cuts, dp.size]):
            self.promoter.record_access(dp[s:e], dn[s:e], HW_HINTS, int(jiffies[s]))


@njit(cache=True, nogil=True)
def handler_filter(pfns, zero_pfn, huge_zero_pfn, huge_nr, order, flags, lru, node_start,
                   nr_pfns, tier, top, drop_toptier, ok, counts, ahead):
    """Ibs._filter per sample: ok[i] for a sample that passes; counts[0] += one that fails
    the chain (unmapped, the zero page, folio not on an LRU), counts[1] / counts[2] += one
    that passes on a node of the top tier / of another (node_of's -1 for a pfn past the
    last node reads the last node's tier, as the numpy form's tier[-1] does). With
    ``ahead`` > 0, sample i + ahead's order and sample i + ahead/2's head flags are
    prefetched (tierscan.prefetch)."""
    n = pfns.size
    half = ahead // 2
    for i in range(n):
        if ahead:
            prefetch_folio(pfns, i + ahead, i + half, order, flags)
        p = pfns[i]
        if p < 0 or p == zero_pfn or (p >= huge_zero_pfn and p < huge_zero_pfn + huge_nr):
            counts[0] += 1
            continue
        head = p & ~((np.int64(1) << np.int64(order[p])) - 1)       # compound_head()
        if (flags[head] & lru) == 0:                                 # folio_test_lru()
            counts[0] += 1
            continue
        nid = upper_bound(node_start, p, 0, node_start.size) - 1
        if p >= nr_pfns:
            nid = -1
        if tier[nid] == top:
            counts[1] += 1
            ok[i] = not drop_toptier
        else:
            counts[2] += 1
            ok[i] = True


@njit(cache=True, nogil=True)
def ring_push(thread, window, ring_window, ring_fill, ring_size, kept):
    """The NMI handler's ring push for samples in time order: a sample of a drain window
    newer than its ring's starts the ring empty; it is kept while the ring has room."""
    for i in range(thread.size):
        r = thread[i]
        if ring_window[r] != window[i]:
            ring_window[r] = window[i]
            ring_fill[r] = 0
        if ring_fill[r] < ring_size:
            kept[i] = True
            ring_fill[r] += 1


def _params(component) -> dict:
    component.check_keys(PARAMS)
    p, c, f = component.params, component.checker(), component.field_path
    period = c.int_at_least(p.get("sample_period", DEFAULT_SAMPLE_PERIOD), f("sample_period"), 1)
    opa = c.number_in(p.get("ops_per_access", DEFAULT_OPS_PER_ACCESS), f("ops_per_access"), 0,
                      period)
    if opa <= 0:
        c.fail(f("ops_per_access"), f"expected a number > 0, got {opa}")
    ring = c.int_at_least(p.get("ring_size", DEFAULT_RING_SIZE), f("ring_size"), 1)
    drain = c.number_in(p.get("drain_ms", DEFAULT_DRAIN_MS), f("drain_ms"), 0, 1e9)
    if drain <= 0:
        c.fail(f("drain_ms"), f"expected a number > 0, got {drain}")
    return dict(sample_period=period, ops_per_access=opa, ring_size=ring, drain_ms=drain,
                nid_quirk=c.boolean(p.get("nid_quirk", True), f("nid_quirk")),
                drop_toptier=c.boolean(p.get("drop_toptier", False), f("drop_toptier")),
                sample_stores=c.boolean(p.get("sample_stores", False), f("sample_stores")),
                seed=c.int_at_least(p.get("seed", 0), f("seed"), 0))


@register_detector("ibs")
def make_ibs(component, kernel, costs, promoter):
    params = _params(component)
    if "seed" not in component.params:
        params["seed"] = kernel.seed      # the experiment's seed
    return [Ibs(promoter, costs=costs, **params)]
