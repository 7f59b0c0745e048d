"""DAMON-based tiering: DAMOS ``migrate_hot`` / ``migrate_cold`` on per-node physical-address
DAMON contexts (promotion-spec §5.3; docs/damon.md).

One context per NUMA node, as in the self-tuned example of [S28]:

- every lower-tier node (CXL) runs ``migrate_hot <top-tier node>`` for regions whose access
  rate is at least ``hot_min_access_pct`` (5%), with an ``allow young`` page filter;
- every top-tier node (DRAM) runs ``migrate_cold <lower-tier node>`` for regions with a 0%
  access rate, with a ``reject young`` page filter (``demote = false`` turns these off).

Each context is the paddr monitor of mm/damon/core.c + paddr.c over the node's pfn range:

- sampling: every sampling interval each region checks the page it picked last time
  (``damon_pa_young``: the folio is not PG_idle, or a PTE/PMD accessed bit found through the
  rmap is set) and counts ``nr_accesses`` if it was young, then picks a new random page and
  makes it old (``damon_pa_mkold``: test-and-clear the young bits, set PG_idle). Work per sample is
  one page per region, vectorised over regions.
- aggregation (every ``aggr_ms``): merge adjacent regions whose ``nr_accesses`` differ by at
  most max/10 (size-limited to node size / min_nr_regions), apply the schemes if due, reset
  ``nr_accesses`` into ``last_nr_accesses`` and split every region into 2 (or 3) random
  pieces when there are at most max_nr_regions / 2 of them (kdamond_merge_regions,
  kdamond_split_regions; compiled loops, run once per aggregation).
- schemes (every ``apply_interval_ms``): the quota (``quota_mb_per_s`` x apply interval,
  optionally auto-tuned toward a node_mem_used_bp / node_mem_free_bp goal with DAMON's
  proportional feed loop) picks regions by DAMON's hot/cold score, then walks them in address
  order; each folio passes the ``young`` filter (which also makes a young folio old) and is
  migrated with ``migrate_folios`` at the MIN watermark: DAMON never reclaims on the target,
  a migration that finds no room simply fails.

Simplifications are listed in docs/damon.md. Nothing here touches a real DAMON sysfs tree.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numba import njit

from ..arrays import unique
from ..mm.constants import PAGE_SIZE, PG_idle, PG_lru, _PAGE_ACCESSED
from ..mm.migrate import migrate_folios
from ..mm.page_idle import folio_set_young, install_page_young
from ..mm.physmem import WMARK_MIN
from ..mm.rmap import rmap_walk
from ..mm.vmstat import register_vmstat
from ..sim.config import Component
from ..sim.costs import CostModel
from ..sim.plugins import register_detector
from .base import Detector
from .numab import FolioField

US = 1_000
MS = 1_000_000
# "MB" in the DAMON quota is read as MiB (damo's size parser; unverified).
MB = 1 << 20

DAMOS_MAX_SCORE = 99          # include/linux/damon.h
DAMON_MAX_SUBSCORE = 100      # mm/damon/ops-common.c
DAMON_MAX_AGE_IN_LOG = 32
FEED_LOOP_GOAL = 10_000       # damon_feed_loop_next_input(): score of an achieved goal
FEED_LOOP_MIN_INPUT = 10_000
ULONG_MAX = (1 << 64) - 1

# The self-tuned example's goals (promotion-spec §5.3): DRAM 99.7% used for promotion,
# 0.5% free for demotion; in basis points.
GOAL_USED_BP = 9970
GOAL_FREE_BP = 50

# Counters, per node of the DAMON context (tierscan's names, modelled on the DAMOS scheme stats
# of the sysfs interface; the kernel has no /proc/vmstat entries for DAMON). On a lower-tier
# node they count migrate_hot, on a top-tier node migrate_cold.
DAMON_VMSTAT = ("damon_nr_sampled", "damon_nr_aggregations", "damos_nr_tried",
                "damos_sz_tried", "damos_nr_applied", "damos_sz_applied",
                "damos_sz_ops_filter_passed", "damos_qt_exceeds")
register_vmstat(*DAMON_VMSTAT)


# ---- parameters -----------------------------------------------------------------------------

@dataclass(frozen=True)
class DamonParams:
    """The knobs of the ``damon`` detector (defaults: DAMON's and [S28]'s, see docs/damon.md)."""

    sample_us: int = 5_000             # sampling interval (DAMON default 5 ms)
    aggr_ms: int = 100                 # aggregation interval (DAMON default 100 ms)
    min_nr_regions: int = 10           # DAMON default (unverified for every kernel version)
    max_nr_regions: int = 1000         # DAMON default (unverified for every kernel version)
    hot_min_access_pct: float = 5.0    # migrate_hot: access rate >= this (self-tuned example)
    quota_mb_per_s: float = 200.0      # size quota per second (0 = none)
    apply_interval_ms: int = 1000      # scheme apply interval = quota reset interval
    goals: bool = False                # auto-tune the quota toward the node-memory goals
    demote: bool = True                # run migrate_cold on the top-tier nodes
    # DAMOS watermarks (every scheme): metric "none" (DAMOS_WMARK_NONE, DAMON's default) or
    # "free_mem_rate" (free pages per 1000 of total RAM); high/mid/low in that unit. The
    # values when the metric is on are DAMON_RECLAIM's defaults (mm/damon/reclaim.c: 5 s,
    # 500/400/200), an example, not a published tiering setting.
    # operations set: "paddr" (one context per node, as the tiering examples) or "vaddr" (one
    # context per process and action: the process's virtual address space, regions following
    # its VMAs, updated every ops_update_ms: damon_new_ctx()'s ops_update_interval, 60 s)
    ops: str = "paddr"
    ops_update_ms: int = 60_000
    wmarks_metric: str = "none"
    wmarks_interval_ms: int = 5000
    wmarks_high: int = 500
    wmarks_mid: int = 400
    wmarks_low: int = 200


PARAM_KEYS = tuple(f.name for f in fields(DamonParams))
WMARK_METRICS = ("none", "free_mem_rate")
OPS = ("paddr", "vaddr")


def parse_params(component: Component) -> DamonParams:
    """Validate a detector component's parameters; errors name the file and key path."""
    p = component.check_keys({k: False for k in PARAM_KEYS})
    c = component.checker()
    d = DamonParams()

    def get(key):
        return p.get(key, getattr(d, key))

    f = component.field_path
    sample_us = c.int_at_least(get("sample_us"), f("sample_us"), 1)
    aggr_ms = c.int_at_least(get("aggr_ms"), f("aggr_ms"), 1)
    if aggr_ms * 1000 < sample_us:
        component.fail("aggr_ms", f"the aggregation interval ({aggr_ms} ms) must not be shorter "
                                  f"than the sampling interval ({sample_us} us)")
    min_nr = c.int_at_least(get("min_nr_regions"), f("min_nr_regions"), 3)
    max_nr = c.int_at_least(get("max_nr_regions"), f("max_nr_regions"), 3)
    if max_nr < min_nr:
        component.fail("max_nr_regions", f"expected at least min_nr_regions ({min_nr}), "
                                         f"got {max_nr}")
    hot = c.number_in(get("hot_min_access_pct"), f("hot_min_access_pct"), 0.0, 100.0)
    quota = c.number_in(get("quota_mb_per_s"), f("quota_mb_per_s"), 0.0, 1e9)
    apply_ms = c.int_at_least(get("apply_interval_ms"), f("apply_interval_ms"), 1)
    goals = c.boolean(get("goals"), f("goals"))
    demote = c.boolean(get("demote"), f("demote"))
    ops = c.choice(get("ops"), f("ops"), OPS)
    ops_update = c.int_at_least(get("ops_update_ms"), f("ops_update_ms"), 1)
    metric = c.choice(get("wmarks_metric"), f("wmarks_metric"), WMARK_METRICS)
    w_int = c.int_at_least(get("wmarks_interval_ms"), f("wmarks_interval_ms"), 1)
    high, mid, low = (c.int_at_least(get(k), f(k), 0)
                      for k in ("wmarks_high", "wmarks_mid", "wmarks_low"))
    if not high >= mid >= low:       # damon_sysfs / damon_commit: high >= mid >= low
        component.fail("wmarks_mid", f"expected wmarks_high >= wmarks_mid >= wmarks_low, got "
                                     f"{high}, {mid}, {low}")
    return DamonParams(sample_us, aggr_ms, min_nr, max_nr, hot, quota, apply_ms, goals, demote,
                       ops, ops_update, metric, w_int, high, mid, low)


# ---- DAMON core arithmetic (mm/damon/core.c, ops-common.c) ----------------------------------

def feed_loop_next_input(last_input: int, score: int) -> int:
    """damon_feed_loop_next_input(): next = max(last * ((goal - score) / goal + 1), min), in
    the kernel's integer arithmetic, with the goal score fixed at 10,000."""
    goal = FEED_LOOP_GOAL
    if score == goal:
        return last_input
    if score >= goal * 2:
        return FEED_LOOP_MIN_INPUT
    over = score > goal
    diff = score - goal if over else goal - score
    compensation = last_input * diff // goal
    if over:
        return max(last_input - compensation, FEED_LOOP_MIN_INPUT)
    return min(last_input + compensation, ULONG_MAX)


def hot_score(nr_accesses: np.ndarray, age: np.ndarray, max_nr_accesses: int,
              aggr_ns: int, freq_weight: int = 1, age_weight: int = 1) -> np.ndarray:
    """damon_hot_score() per region: an access-frequency and an age subscore, weighted,
    scaled to [0, DAMOS_MAX_SCORE]. A region with no accesses is colder the older it is."""
    nr = np.asarray(nr_accesses, np.int64)
    freq = nr * DAMON_MAX_SUBSCORE // max(int(max_nr_accesses), 1)
    age_s = np.asarray(age, np.int64) * int(aggr_ns) // 1_000_000_000
    log = np.zeros(nr.size, np.int64)
    pos = age_s > 0
    log[pos] = np.minimum(np.floor(np.log2(age_s[pos])).astype(np.int64) + 1,
                          DAMON_MAX_AGE_IN_LOG)
    log = np.where(freq == 0, -log, log) + DAMON_MAX_AGE_IN_LOG
    age_sub = log * DAMON_MAX_SUBSCORE // DAMON_MAX_AGE_IN_LOG // 2
    hot = freq_weight * freq + age_weight * age_sub
    if freq_weight + age_weight:
        hot //= freq_weight + age_weight
    return np.clip(hot * DAMOS_MAX_SCORE // DAMON_MAX_SUBSCORE, 0, DAMOS_MAX_SCORE)


@njit(cache=True)
def _merge_regions_of(start, end, nr, last_nr, age, thres, sz_limit):
    """damon_merge_regions_of(): update each region's age, then merge it into its left
    neighbour when they are adjacent, their nr_accesses differ by at most ``thres`` and the
    merged size stays within ``sz_limit`` (size-weighted nr_accesses and age). Sizes in pages."""
    n = start.size
    o_start = np.empty(n, np.int64)
    o_end = np.empty(n, np.int64)
    o_nr = np.empty(n, np.int64)
    o_last = np.empty(n, np.int64)
    o_age = np.empty(n, np.int64)
    k = -1
    for i in range(n):
        d = nr[i] - last_nr[i]
        if d < 0:
            d = -d
        if d > thres:
            a = 0
        elif (nr[i] == 0) != (last_nr[i] == 0):
            a = 0
        else:
            a = age[i] + 1
        if k >= 0 and o_end[k] == start[i]:
            dd = o_nr[k] - nr[i]
            if dd < 0:
                dd = -dd
            szl = o_end[k] - o_start[k]
            szr = end[i] - start[i]
            if dd <= thres and szl + szr <= sz_limit:
                o_nr[k] = (o_nr[k] * szl + nr[i] * szr) // (szl + szr)
                o_age[k] = (o_age[k] * szl + a * szr) // (szl + szr)
                o_end[k] = end[i]
                continue
        k += 1
        o_start[k] = start[i]
        o_end[k] = end[i]
        o_nr[k] = nr[i]
        o_last[k] = last_nr[i]
        o_age[k] = a
    k += 1
    return o_start[:k], o_end[:k], o_nr[:k], o_last[:k], o_age[:k]


@njit(cache=True)
def _split_regions_of(start, end, nr, last_nr, age, nr_subs, rand):
    """damon_split_regions_of(): split every region into up to ``nr_subs`` pieces; each cut
    takes rand/10 (rand in 1..9) of what is left of the region's left part, as the kernel
    splits the left sub-region again. Regions of two pages or less are not split."""
    n = start.size
    cap = n * nr_subs
    o_start = np.empty(cap, np.int64)
    o_end = np.empty(cap, np.int64)
    o_nr = np.empty(cap, np.int64)
    o_last = np.empty(cap, np.int64)
    o_age = np.empty(cap, np.int64)
    cuts = np.empty(max(nr_subs, 1), np.int64)
    k = 0
    for i in range(n):
        s = start[i]
        sz = end[i] - s
        m = 0
        for j in range(nr_subs - 1):
            if sz <= 2:                 # sz_region > 2 * min_region_sz (one page)
                break
            sub = rand[i, j] * sz // 10
            if sub == 0 or sub >= sz:
                continue
            cuts[m] = s + sub
            m += 1
            sz = sub
        lo = s
        for c in range(m - 1, -1, -1):  # the cuts come right to left
            o_start[k] = lo
            o_end[k] = cuts[c]
            o_nr[k] = nr[i]
            o_last[k] = last_nr[i]
            o_age[k] = age[i]
            k += 1
            lo = cuts[c]
        o_start[k] = lo
        o_end[k] = end[i]
        o_nr[k] = nr[i]
        o_last[k] = last_nr[i]
        o_age[k] = age[i]
        k += 1
    return o_start[:k], o_end[:k], o_nr[:k], o_last[:k], o_age[:k]


# ---- page-level access checks through the rmap ----------------------------------------------

def lru_folio_mask(kernel, pfns: np.ndarray) -> np.ndarray:
    """damon_get_folio() succeeds: the pfn's folio is on an LRU list."""
    pm = kernel.pm
    return (pm.flags[pm.folio_head(pfns)] & PG_lru) != 0


def rmap_young(kernel, pfns: np.ndarray, clear: bool) -> np.ndarray:
    """Whether a PTE or PMD leaf mapping each pfn is young, through the rmap. The access model
    first draws the bits it owes (materialize). With ``clear`` the young bits found are
    cleared (ptep/pmdp_test_and_clear_young, as damon_pa_mkold does)."""
    pfns = np.asarray(pfns, np.int64)
    young = np.zeros(pfns.size, bool)
    if pfns.size == 0:
        return young
    for s in rmap_walk(kernel, pfns):
        if s.pmd:
            kernel.materialize_pmds(s.mm, unique(s.slots))
            table = s.mm.pt.pmd
        else:
            kernel.materialize_ptes(s.mm, unique(s.slots))
            table = s.mm.pt.pte
        y = (table[s.slots] & _PAGE_ACCESSED) != 0
        young[s.pos[y]] = True
        if clear and y.any():
            table[s.slots[y]] &= ~_PAGE_ACCESSED
    return young


def damon_folio_young(kernel, pfns: np.ndarray) -> np.ndarray:
    """damon_folio_young() / damon_folio_young_one() (mm/damon/paddr.c, ops-common.c): the
    folio of each pfn is accessed if a PTE/PMD mapping it is young *or* the folio is not
    PG_idle (``!folio_test_idle``), and an unmapped folio if it is not idle. A folio that
    DAMON never made old is therefore young, whatever its A bits."""
    pfns = np.asarray(pfns, np.int64)
    pm = kernel.pm
    young = (pm.flags[pm.folio_head(pfns)] & PG_idle) == 0
    idle = np.flatnonzero(~young)
    young[idle] = rmap_young(kernel, pfns[idle], clear=False)
    return young


def damon_folio_mkold(kernel, pfns: np.ndarray) -> None:
    """damon_folio_mkold() (mm/damon/ops-common.c): clear the young bit of every mapping
    (damon_ptep_mkold / damon_pmdp_mkold) and set PG_idle on the folio, mapped or not; a
    folio whose young bit was cleared gets PG_young (folio_set_young), which reclaim's
    folio_referenced() counts (mm/page_idle.py)."""
    pfns = np.asarray(pfns, np.int64)
    young = rmap_young(kernel, pfns, clear=True)
    pm = kernel.pm
    if young.any():
        install_page_young(kernel, lambda: FolioField(kernel, bool, False))
        folio_set_young(kernel, unique(pm.folio_head(pfns[young])))
    pm.flags[pm.folio_head(pfns)] |= PG_idle


# ---- DAMOS scheme and DAMON context ---------------------------------------------------------

def free_mem_rate(kernel) -> int:
    """damos_wmark_metric_value(DAMOS_WMARK_FREE_MEM_RATE): free pages per 1000 pages of RAM,
    over every node (global_zone_page_state(NR_FREE_PAGES) * 1000 / totalram_pages(); present
    pages stand for totalram)."""
    pm = kernel.pm
    return int(pm.node_free.sum()) * 1000 // max(int(pm.node_present.sum()), 1)


class Scheme:
    """One DAMOS scheme: an action with a target node, an access-rate window, a size quota per
    charge window (optionally goal-tuned) and a ``young`` page filter. ``stat`` mirrors the
    sysfs scheme stats; ``history`` has one entry per apply: (ns, esz, sz_tried, sz_applied)."""

    def __init__(self, action: str, target_nid: int, min_pct: float, max_pct: float,
                 quota_sz: int, reset_interval_ns: int, goal=None, wmarks=None):
        self.action, self.target_nid = action, int(target_nid)
        # (metric, interval_ns, high, mid, low) or None (DAMOS_WMARK_NONE); a new scheme is
        # active (damon_new_scheme() sets wmarks.activated = true)
        self.wmarks = wmarks
        self.activated = True
        self.min_pct, self.max_pct = float(min_pct), float(max_pct)
        self.allow_young = action == "migrate_hot"   # allow young / reject young
        self.quota_sz = int(quota_sz)                # bytes per window; 0 = no size quota
        self.reset_interval_ns = int(reset_interval_ns)
        self.goal = goal                             # (metric, nid, target_bp) or None
        self.esz = 0
        self.esz_bp = 0
        self.charged_sz = 0
        self.charged_from = None
        self.charge_pfn_from = None                  # where the next window resumes
        self.next_apply_sis = 0
        self.stat = {"nr_tried": 0, "sz_tried": 0, "nr_applied": 0, "sz_applied": 0,
                     "sz_ops_filter_passed": 0, "qt_exceeds": 0}
        self.history: list[tuple[int, int, int, int]] = []

    def wmark_wait_ns(self, kernel) -> int:
        """damos_wmark_wait_us() (mm/damon/core.c): 0 if the scheme is active, else how long
        to wait before the next check. Above ``high`` or below ``low``: deactivate. Inactive
        and between ``mid`` and ``high``: stay inactive. Otherwise (at or below ``mid`` and
        at or above ``low``, or already active inside [low, high]): activate."""
        if self.wmarks is None:
            return 0
        _, interval_ns, high, mid, low = self.wmarks
        metric = free_mem_rate(kernel)
        if metric > high or low > metric:
            self.activated = False
            return interval_ns
        if high >= metric >= mid and not self.activated:
            return interval_ns
        self.activated = True
        return 0

    @property
    def has_quota(self) -> bool:
        return bool(self.quota_sz) or self.goal is not None

    def goal_score(self, kernel) -> int:
        """damos_quota_score() for the one goal: current value * 10,000 / target."""
        metric, nid, target = self.goal
        pm = kernel.pm
        total = int(pm.node_present[nid])
        free = int(pm.node_free[nid])
        num = total - free if metric == "node_mem_used_bp" else free
        current = num * 10_000 // max(total, 1)
        return current * 10_000 // target

    def set_effective_quota(self, kernel) -> None:
        """damos_set_effective_quota() (no time quota): the goal tunes esz_bp with the feed
        loop; the size quota caps it."""
        if self.goal is None:
            self.esz = self.quota_sz
            return
        self.esz_bp = feed_loop_next_input(max(self.esz_bp, FEED_LOOP_MIN_INPUT),
                                           self.goal_score(kernel))
        esz = self.esz_bp // 10_000
        if self.quota_sz and self.quota_sz < esz:
            esz = self.quota_sz
        self.esz = esz

    def adjust_quota(self, kernel, now_ns: int) -> None:
        """damos_adjust_quota(): open the first window, or a new one when the reset interval
        has passed (counting the exceeded quota of the closing one)."""
        if not self.has_quota:
            return
        if self.charged_from is None:
            self.charged_from = now_ns
            self.set_effective_quota(kernel)
        elif now_ns >= self.charged_from + self.reset_interval_ns:
            if self.esz and self.charged_sz >= self.esz:
                self.stat["qt_exceeds"] += 1
            self.charged_from = now_ns
            self.charged_sz = 0
            self.set_effective_quota(kernel)


def va_three_regions(mm) -> list[tuple[int, int]]:
    """__damon_va_three_regions() (mm/damon/vaddr.c): the span of the mm's VMAs without its two
    biggest gaps, as [start, end) page slots in address order. A real process always has two
    gaps (text, heap, mmap area, stack); a simulated one may not, and then the runs between the
    gaps it has are returned (the kernel fails with -EINVAL and monitors nothing)."""
    vmas = sorted(mm.vmas, key=lambda v: v.start)
    if not vmas:
        return []
    gaps = [(b.start_slot - a.end_slot, a.end_slot, b.start_slot)
            for a, b in zip(vmas, vmas[1:]) if b.start_slot > a.end_slot]
    big = sorted(sorted(gaps, key=lambda g: -g[0])[:2], key=lambda g: g[1])
    lo, out = vmas[0].start_slot, []
    for _, g_lo, g_hi in big:
        out.append((lo, g_lo))
        lo = g_hi
    out.append((lo, max(v.end_slot for v in vmas)))
    return out


def va_evenly_split(ranges, min_nr_regions: int) -> tuple[np.ndarray, np.ndarray]:
    """__damon_va_init_regions(): each range split evenly into size / (total / min_nr_regions)
    pieces (at least one; damon_va_evenly_split_region, in pages)."""
    total = sum(hi - lo for lo, hi in ranges)
    piece = max(total // max(min_nr_regions, 1), 1)
    starts, ends = [], []
    for lo, hi in ranges:
        n = max((hi - lo) // piece, 1)
        sz = (hi - lo) // n
        cuts = lo + sz * np.arange(n, dtype=np.int64)
        starts.append(cuts)
        ends.append(np.append(cuts[1:], hi))
    return np.concatenate(starts), np.concatenate(ends)


class DamonContext:
    """A physical-address DAMON context over one node's pfn range, with its scheme.

    Regions are parallel int64 arrays sorted by address and tiling [node start, node end):
    ``start``/``end`` (pfns), ``nr_accesses`` (this aggregation so far), ``last_nr_accesses``,
    ``age`` (aggregations) and ``sampling_pfn`` (the page picked for the current sample).
    ``nr_regions_history`` is the region count after every aggregation.
    """

    def __init__(self, kernel, nid: int, scheme: Scheme | None, params: DamonParams, mm=None):
        self.nid, self.scheme, self.params = int(nid), scheme, params
        self.mm = mm                     # vaddr: the target process; regions are page slots
        self.min_nr_regions, self.max_nr_regions = params.min_nr_regions, params.max_nr_regions
        if mm is None:
            lo, hi = kernel.pm.node_range(nid)
            self.node_lo, self.node_hi = lo, hi
            # damon_region_sz_limit(): node size / min_nr_regions, at least one page.
            self.sz_limit = max((hi - lo) // self.min_nr_regions, 1)
            # damon_apply_min_nr_regions(): cut the one initial region into sz_limit pieces.
            bounds = np.append(np.arange(lo, hi, self.sz_limit, dtype=np.int64), hi)
            self.start, self.end = bounds[:-1].copy(), bounds[1:].copy()
        else:
            self.start, self.end = va_evenly_split(va_three_regions(mm), self.min_nr_regions)
            self._va_limits()
        n = self.start.size
        self.nr_accesses = np.zeros(n, np.int64)
        self.last_nr_accesses = np.zeros(n, np.int64)
        self.age = np.zeros(n, np.int64)
        self.sampling_pfn = self.start.copy()
        self.passed_sis = 0
        self.next_aggregation_sis = 0
        self.last_nr_regions = 0
        self.nr_regions_history: list[int] = []
        self.sleep_until_ns = 0          # watermarks: deactivated, sleeping until then
        self.paused = False
        self.va_groups: list = []        # vaddr: the target process's thread groups

    @property
    def nr_regions(self) -> int:
        return int(self.start.size)

    def _va_limits(self) -> None:
        self.node_lo = int(self.start[0]) if self.start.size else 0
        self.node_hi = int(self.end[-1]) if self.end.size else 0
        total = int((self.end - self.start).sum())
        self.sz_limit = max(total // self.min_nr_regions, 1)

    def pfns_at(self, where: np.ndarray) -> np.ndarray:
        """The pfn at each region address: itself for paddr; for vaddr the pfn mapped at the
        page slot in the target's page table, -1 where nothing is mapped."""
        where = np.asarray(where, np.int64)
        if self.mm is None:
            return where
        return self.mm.pt.translate_slots(where)

    def va_update(self) -> None:
        """damon_va_update() -> damon_set_regions(): regions outside the new three regions go;
        in each range the first and last intersecting regions stretch (or shrink) to its
        bounds and the holes between them get new regions (damon_fill_regions_holes); a range
        no region intersects gets one new region. New regions start with no accesses."""
        ranges = va_three_regions(self.mm)
        cols = [self.start, self.end, self.nr_accesses, self.last_nr_accesses, self.age]
        inside = np.zeros(self.start.size, bool)
        for lo, hi in ranges:
            inside |= (self.start < hi) & (self.end > lo)
        cols = [c[inside].copy() for c in cols]
        new = []
        for lo, hi in ranges:
            hit = np.flatnonzero((cols[0] < hi) & (cols[1] > lo))
            if hit.size:
                cols[0][hit[0]] = lo
                cols[1][hit[-1]] = hi
                # damon_fill_regions_holes(): a new region in every hole between them
                holes = np.flatnonzero(cols[1][hit[:-1]] != cols[0][hit[1:]])
                new.extend(zip(cols[1][hit[holes]].tolist(), cols[0][hit[holes + 1]].tolist()))
            else:
                new.append((lo, hi))
        if new:
            add = np.array(new, np.int64)
            z = np.zeros(len(new), np.int64)
            cols = [np.concatenate([c, a]) for c, a in
                    zip(cols, (add[:, 0], add[:, 1], z, z, z))]
            order = np.argsort(cols[0], kind="stable")
            cols = [c[order] for c in cols]
        self._set(cols)
        self._va_limits()

    def regions(self) -> dict[str, np.ndarray]:
        """A copy of the region arrays."""
        return {"start": self.start.copy(), "end": self.end.copy(),
                "nr_accesses": self.nr_accesses.copy(),
                "last_nr_accesses": self.last_nr_accesses.copy(), "age": self.age.copy()}

    def _set(self, arrays) -> None:
        (self.start, self.end, self.nr_accesses, self.last_nr_accesses,
         self.age) = (np.ascontiguousarray(a) for a in arrays)
        self.sampling_pfn = self.start.copy()

    def merge(self, threshold: int, max_thres: int) -> None:
        """kdamond_merge_regions(): merge, doubling the threshold while there are too many."""
        while True:
            self._set(_merge_regions_of(self.start, self.end, self.nr_accesses,
                                        self.last_nr_accesses, self.age, int(threshold),
                                        int(self.sz_limit)))
            threshold = max(1, threshold * 2)
            if not (self.nr_regions > self.max_nr_regions and threshold // 2 < max_thres):
                break

    def reset_aggregated(self) -> None:
        self.last_nr_accesses = self.nr_accesses.copy()
        self.nr_accesses = np.zeros_like(self.nr_accesses)

    def split(self, rng) -> None:
        """kdamond_split_regions(): into 2 pieces (3 when the count did not change and is
        below a third of the maximum), only while at most half the maximum."""
        n = self.nr_regions
        if n > self.max_nr_regions // 2:
            return
        subs = 3 if (self.last_nr_regions == n and n < self.max_nr_regions // 3) else 2
        rand = rng.integers(1, 10, size=(n, subs - 1), dtype=np.int64)
        self._set(_split_regions_of(self.start, self.end, self.nr_accesses,
                                    self.last_nr_accesses, self.age, subs, rand))
        self.last_nr_regions = n


# ---- the detector ---------------------------------------------------------------------------

class DamonTiering(Detector):
    """kdamond(s) for DAMON-based tiering: one paddr context per node (see module doc).

    All contexts run in this one daemon (CPU is charged to ``name``), top-tier contexts
    (migrate_cold) before lower-tier ones (migrate_hot) in each sampling interval.
    Promotions are recorded in ``promoted_pfns``/``promoted_ns`` (old head pfns; one entry
    per folio) and, when a promotion engine is given, with ``promoter.note_promoted``;
    demotions in ``demoted_pfns``/``demoted_ns``.
    """

    name = "damon"

    def __init__(self, kernel, costs: CostModel | None = None, promoter=None,
                 params: DamonParams | None = None):
        super().__init__(promoter)
        self.kernel = kernel
        self.costs = costs
        self.params = params or DamonParams()
        p = self.params
        self.sample_ns = p.sample_us * US
        self.aggr_ns = p.aggr_ms * MS
        self.apply_ns = p.apply_interval_ms * MS
        self.period_ns = self.sample_ns          # rounded to the engine's tick in start()
        self.rng = np.random.default_rng([kernel.seed, 0xDA30])
        self.promoted_pfns: list[np.ndarray] = []
        self.promoted_ns: list[np.ndarray] = []
        self.demoted_pfns: list[np.ndarray] = []
        self.demoted_ns: list[np.ndarray] = []
        self.contexts = self._build_contexts()

    # ---- setup ---------------------------------------------------------------------------------
    def _build_contexts(self) -> list[DamonContext]:
        k, p = self.kernel, self.params
        m = k.machine
        if p.ops == "vaddr":
            return []                    # per process: built in start(), from the workload
        top, lower = list(m.toptier_nodes), list(m.lower_tier_nodes)
        quota_sz = int(p.quota_mb_per_s * MB * p.apply_interval_ms // 1000)
        wm = self._wmarks()
        ctxs = []

        def nearest(nid, among):  # lowest distance, then lowest id
            return min(among, key=lambda t: (int(m.distance[nid][t]), t))

        if p.demote and lower:
            for nid in top:
                goal = ("node_mem_free_bp", nid, GOAL_FREE_BP) if p.goals else None
                s = Scheme("migrate_cold", nearest(nid, lower), 0.0, 0.0, quota_sz,
                           self.apply_ns, goal, wm)
                ctxs.append(DamonContext(k, nid, s, p))
        if top:
            for nid in lower:
                target = nearest(nid, top)
                goal = ("node_mem_used_bp", target, GOAL_USED_BP) if p.goals else None
                s = Scheme("migrate_hot", target, p.hot_min_access_pct, 100.0, quota_sz,
                           self.apply_ns, goal, wm)
                ctxs.append(DamonContext(k, nid, s, p))
        return ctxs

    def _build_va_contexts(self, groups) -> list[DamonContext]:
        """vaddr: for each process (once per mm, in workload order) a migrate_cold context to
        the lower tier (unless ``demote = false``) and a migrate_hot context to the top tier,
        each monitoring the process's whole virtual address space. The targets: the top-tier
        node nearest the process's CPU node, and the lower-tier node nearest that. A context's
        ``nid`` (where its counters go) is the node its action moves pages from."""
        k, p = self.kernel, self.params
        m = k.machine
        top, lower = list(m.toptier_nodes), list(m.lower_tier_nodes)
        if not top or not lower:
            return []
        quota_sz = int(p.quota_mb_per_s * MB * p.apply_interval_ms // 1000)
        wm = self._wmarks()

        def nearest(nid, among):
            return min(among, key=lambda t: (int(m.distance[nid][t]), t))

        ctxs, seen = [], set()
        for g in groups:
            mm = g.mm
            if mm.id in seen:
                continue
            seen.add(mm.id)
            of_mm = [h for h in groups if h.mm is mm]
            fast = nearest(mm.cpu_node, top)
            slow = nearest(fast, lower)
            if p.demote:
                goal = ("node_mem_free_bp", fast, GOAL_FREE_BP) if p.goals else None
                ctxs.append(DamonContext(k, fast, Scheme("migrate_cold", slow, 0.0, 0.0, quota_sz,
                                                         self.apply_ns, goal, wm), p, mm=mm))
            goal = ("node_mem_used_bp", fast, GOAL_USED_BP) if p.goals else None
            ctxs.append(DamonContext(k, slow, Scheme("migrate_hot", fast, p.hot_min_access_pct,
                                                     100.0, quota_sz, self.apply_ns, goal, wm),
                                     p, mm=mm))
            for c in ctxs[-2 if p.demote else -1:]:
                c.va_groups = of_mm
        return ctxs

    def _wmarks(self):
        p = self.params
        if p.wmarks_metric == "none":
            return None
        return (p.wmarks_metric, p.wmarks_interval_ms * MS, p.wmarks_high, p.wmarks_mid,
                p.wmarks_low)

    def context(self, nid: int) -> DamonContext:
        for c in self.contexts:
            if c.nid == nid:
                return c
        raise KeyError(f"no DAMON context on node {nid}")

    def start(self, engine) -> None:
        """Fix the intervals in whole ticks (young bits only change between ticks), schedule
        the first aggregation and apply, and make the first samples old."""
        tick = int(engine.tick_ns)
        self.period_ns = max(tick, -(-self.sample_ns // tick) * tick)
        self.next_ns = self.period_ns
        self.samples_per_aggr = max(1, self.aggr_ns // self.period_ns)
        self.samples_per_apply = max(1, self.apply_ns // self.period_ns)
        self.samples_per_update = max(1, self.params.ops_update_ms * MS // self.period_ns)
        if self.costs is None:
            self.costs = engine.costs
        if self.params.ops == "vaddr":
            self.contexts = self._build_va_contexts(engine.groups)
        for ctx in self.contexts:
            ctx.next_update_sis = self.samples_per_update
            ctx.next_aggregation_sis = self.samples_per_aggr
            if ctx.scheme is not None:
                ctx.scheme.next_apply_sis = self.samples_per_apply
            self._prepare(engine, ctx)

    @property
    def max_nr_accesses(self) -> int:
        """damon_max_nr_accesses(): samples per aggregation."""
        return int(getattr(self, "samples_per_aggr", max(1, self.aggr_ns // self.sample_ns)))

    @property
    def effective_aggr_ns(self) -> int:
        """The aggregation interval in effect: whole sampling intervals of whole ticks."""
        return self.max_nr_accesses * int(self.period_ns)

    # ---- the kdamond loop ---------------------------------------------------------------------
    def run(self, engine) -> None:
        for ctx in self.contexts:
            self._step(engine, ctx)

    def _step(self, engine, ctx: DamonContext) -> None:
        if ctx.mm is not None and all(g.finished_ns is not None for g in ctx.va_groups):
            return       # kdamond_need_stop(): the target process is gone (damon_va_target_valid)
        if not self._wait_activation(engine, ctx):
            return
        ctx.passed_sis += 1
        max_nr = self._check(engine, ctx)
        aggregate = ctx.passed_sis >= ctx.next_aggregation_sis
        if aggregate:
            ctx.merge(max_nr // 10, self.max_nr_accesses)
        s = ctx.scheme
        if s is not None and ctx.passed_sis >= s.next_apply_sis:
            self._apply(engine, ctx, s, ctx.nr_accesses if aggregate else ctx.last_nr_accesses)
            s.next_apply_sis = ctx.passed_sis + self.samples_per_apply
        if aggregate:
            ctx.next_aggregation_sis += self.samples_per_aggr
            ctx.reset_aggregated()
            ctx.split(self.rng)
            ctx.nr_regions_history.append(ctx.nr_regions)
            self.kernel.vmstat.count("damon_nr_aggregations", ctx.nid, 1)
        if ctx.mm is not None and ctx.passed_sis >= ctx.next_update_sis:
            ctx.next_update_sis += self.samples_per_update     # kdamond_update_ops()
            ctx.va_update()
        self._prepare(engine, ctx)

    def _wait_activation(self, engine, ctx: DamonContext) -> bool:
        """kdamond_wait_activation(): with its (only) scheme deactivated by the watermarks the
        context does not monitor at all; it sleeps the watermark interval and checks again.
        Returns whether the context samples in this interval. On waking active it prepares
        fresh access checks first, as kdamond's loop does after the wait."""
        s = ctx.scheme
        if s is None or s.wmarks is None:
            return True
        if engine.now < ctx.sleep_until_ns:
            return False
        wait = s.wmark_wait_ns(self.kernel)
        if wait:
            ctx.sleep_until_ns = engine.now + wait
            ctx.paused = True
            return False
        if ctx.paused:
            ctx.paused = False
            self._prepare(engine, ctx)
            return False
        return True

    def _prepare(self, engine, ctx: DamonContext) -> None:
        """damon_pa_prepare_access_checks(): a random page per region, made old."""
        width = ctx.end - ctx.start
        pick = ctx.start + (self.rng.random(width.size) * width).astype(np.int64)
        ctx.sampling_pfn = np.minimum(pick, ctx.end - 1)
        pfns = ctx.pfns_at(ctx.sampling_pfn)
        pfns = pfns[pfns >= 0]
        pfns = pfns[lru_folio_mask(self.kernel, pfns)]
        damon_folio_mkold(self.kernel, pfns)

    def _check(self, engine, ctx: DamonContext) -> int:
        """damon_pa_check_accesses(): was each region's sampled page young? Returns the
        largest nr_accesses."""
        k = self.kernel
        pfns = ctx.pfns_at(ctx.sampling_pfn)
        acc = np.zeros(pfns.size, bool)
        lru = pfns >= 0
        lru[lru] = lru_folio_mask(k, pfns[lru])
        acc[lru] = damon_folio_young(k, pfns[lru])
        ctx.nr_accesses += acc
        n = int(pfns.size)
        engine.charge(n * self.costs.scan_pte_ns)     # the page sampled per region
        k.vmstat.count("damon_nr_sampled", ctx.nid, n)
        return int(ctx.nr_accesses.max()) if n else 0

    # ---- DAMOS ---------------------------------------------------------------------------------
    def _apply(self, engine, ctx: DamonContext, s: Scheme, nr: np.ndarray) -> None:
        """kdamond_apply_schemes() for one context and its scheme."""
        k, vm = self.kernel, self.kernel.vmstat
        exceeded = s.stat["qt_exceeds"]
        s.adjust_quota(k, engine.now)
        vm.count("damos_qt_exceeds", ctx.nid, s.stat["qt_exceeds"] - exceeded)
        max_nr = self.max_nr_accesses
        rate = nr * 100.0
        valid = (rate >= s.min_pct * max_nr - 1e-9) & (rate <= s.max_pct * max_nr + 1e-9)
        sizes = ctx.end - ctx.start                      # pages
        esz = s.esz
        if s.has_quota and esz:
            # damos_adjust_quota(): the lowest score whose regions fill the quota.
            score = hot_score(nr, ctx.age, max_nr, self.effective_aggr_ns)
            if s.action == "migrate_cold":
                score = DAMOS_MAX_SCORE - score
            hist = np.bincount(score[valid], weights=sizes[valid] * PAGE_SIZE,
                               minlength=DAMOS_MAX_SCORE + 1)
            cum = np.cumsum(hist[::-1])                  # from the highest score down
            reach = np.flatnonzero(cum >= esz)
            min_score = DAMOS_MAX_SCORE - int(reach[0]) if reach.size else 0
            valid &= score >= min_score
        # Resume where the last exhausted window stopped (damos_skip_charged_region).
        lo = ctx.start.copy()
        if s.charge_pfn_from is not None:
            valid &= ctx.end > s.charge_pfn_from
            lo = np.maximum(lo, s.charge_pfn_from)
        idx = np.flatnonzero(valid)
        if s.has_quota and esz:
            if s.charged_sz >= esz:
                idx = idx[:0]
            take = (ctx.end[idx] - lo[idx])
            budget = (esz - s.charged_sz) // PAGE_SIZE   # ALIGN_DOWN to the region unit
            before = np.concatenate([[0], np.cumsum(take)[:-1]]).astype(np.int64)
            take = np.clip(budget - before, 0, take)
            keep = take > 0
            idx, take = idx[keep], take[keep]
        else:
            take = ctx.end[idx] - lo[idx]
        hi = lo[idx] + take
        tried = int(take.sum()) * PAGE_SIZE
        s.charged_sz += tried
        if s.has_quota and esz and s.charged_sz >= esz and idx.size and hi[-1] < ctx.node_hi:
            s.charge_pfn_from = int(hi[-1])
        else:                                             # the walk reached the end
            s.charge_pfn_from = None
        applied, passed, nr_applied = self._act(engine, ctx, s, lo[idx], hi)
        ctx.age[idx] = 0                                  # any action but stat resets age
        s.stat["nr_tried"] += int(idx.size)
        s.stat["sz_tried"] += tried
        s.stat["nr_applied"] += nr_applied
        s.stat["sz_applied"] += applied
        s.stat["sz_ops_filter_passed"] += passed
        s.history.append((int(engine.now), int(esz), tried, applied))
        vm.count("damos_nr_tried", ctx.nid, int(idx.size))
        vm.count("damos_sz_tried", ctx.nid, tried)
        vm.count("damos_nr_applied", ctx.nid, nr_applied)
        vm.count("damos_sz_applied", ctx.nid, applied)
        vm.count("damos_sz_ops_filter_passed", ctx.nid, passed)

    def _act(self, engine, ctx, s: Scheme, lo: np.ndarray, hi: np.ndarray):
        """damon_pa_migrate() over the pfn ranges [lo, hi): each LRU folio once, the young
        filter (a young folio is made old), then migrate_pages() to the target without
        reclaim. Returns (bytes applied, bytes that passed the filter, regions applied)."""
        k = self.kernel
        pm = k.pm
        if lo.size == 0:
            return 0, 0, 0
        width = hi - lo
        region_of = np.repeat(np.arange(lo.size), width)
        pfns = ctx.pfns_at(np.repeat(lo - np.concatenate([[0], np.cumsum(width)[:-1]]), width) +
                           np.arange(int(width.sum()), dtype=np.int64))
        if ctx.mm is not None:           # vaddr: unmapped pages have no folio
            region_of, pfns = region_of[pfns >= 0], pfns[pfns >= 0]
        heads_all = pm.folio_head(pfns)
        lru = (pm.flags[heads_all] & PG_lru) != 0
        heads, first = np.unique(heads_all[lru], return_index=True)
        owner = region_of[lru][first]
        engine.charge(heads.size * self.costs.scan_pte_ns)   # each folio's young check
        young = damon_folio_young(k, heads)
        damon_folio_mkold(k, heads[young])                    # matched young: mkold
        ok_filter = young if s.allow_young else ~young
        if ctx.mm is not None:           # vaddr sees folios already on the target: no move
            ok_filter &= pm.node_of(heads) != s.target_nid
        cand, cand_owner = heads[ok_filter], owner[ok_filter]
        nr_pages = pm.folio_nr_pages(cand)
        passed = int(nr_pages.sum()) * PAGE_SIZE
        if cand.size == 0:
            return 0, passed, 0
        # __damon_pa_migrate_folio_list(): gfp (GFP_HIGHUSER_MOVABLE & ~__GFP_RECLAIM) |
        # GFP_NOWAIT keeps __GFP_KSWAPD_RECLAIM, as demotion's: a failed allocation on a full
        # target wakes its kswapd (no direct reclaim)
        ok = migrate_folios(k, cand, s.target_nid, WMARK_MIN, wake_kswapd=True)
        moved = cand[ok]
        applied = int(nr_pages[ok].sum()) * PAGE_SIZE
        nr_applied = int(unique(cand_owner[ok]).size)
        if moved.size:
            when = np.full(moved.size, int(engine.now), np.int64)
            if s.action == "migrate_hot":
                self.promoted_pfns.append(moved)
                self.promoted_ns.append(when)
                if self.promoter is not None and hasattr(self.promoter, "note_promoted"):
                    self.promoter.note_promoted(moved, engine.now)
            else:
                self.demoted_pfns.append(moved)
                self.demoted_ns.append(when)
        return applied, passed, nr_applied

    # ---- results -------------------------------------------------------------------------------
    def promotions(self) -> tuple[np.ndarray, np.ndarray]:
        """(old head pfns, ns) of every promotion so far."""
        return _cat(self.promoted_pfns), _cat(self.promoted_ns)

    def demotions(self) -> tuple[np.ndarray, np.ndarray]:
        return _cat(self.demoted_pfns), _cat(self.demoted_ns)


def _cat(parts) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def make_damon(kernel, params: dict | None = None, costs: CostModel | None = None,
               promoter=None, *, where: str = "<damon>") -> DamonTiering:
    """Build the detector from a parameter table (validated as a config component would be)."""
    comp = Component(name="damon", params=dict(params or {}), path="damon", where=where)
    return DamonTiering(kernel, costs, promoter, parse_params(comp))


@register_detector("damon")
def _factory(component, kernel, costs, promoter=None):
    return [DamonTiering(kernel, costs, promoter, parse_params(component))]


__all__ = ["DamonParams", "DamonTiering", "DamonContext", "Scheme", "PARAM_KEYS",
           "DAMON_VMSTAT", "feed_loop_next_input", "hot_score", "make_damon", "parse_params",
           "damon_folio_mkold", "damon_folio_young", "rmap_young", "free_mem_rate",
           "va_three_regions"]
