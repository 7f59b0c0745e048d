"""The oracle detector and the "none" detector (docs/detectors.md).

``oracle`` knows the workload: each page's weight is ``threads x w_p``, its group's thread count
times the page's probability under the current phase's distribution (so pages of different
processes compare as accesses per unit of per-thread progress, i.e. assuming every thread
issues accesses at the same rate). At the first tick of the run, and then every
``period_ms`` (default 100; 0 = only at the first tick), it migrates at once the hottest
lower-tier folios that fit in the top tier's free memory above its high watermark, with
``mm.migrate.migrate_folios`` (mark = WMARK_HIGH); when hotter folios do not fit it wakes the
target's kswapd, which demotes what MGLRU finds oldest. It is its own promotion engine: it
ignores the configured one and keeps ``promoted_pfns`` / ``promoted_ns`` / ``promoted_ids``
like a ``PromotionEngine`` so ``promotion_summary`` can read it. Folios are ranked by weight
per page; each goes to its group's CPU node if that is top tier, else the nearest top-tier
node. A folio costs its size (512 pages for a THP); pages of zero weight are never promoted.

``none`` is NUMAB0: no detector at all.

``oracle_hot_set(engine)`` is the reference set for precision and recall: the identities
(promotion_metrics) of the K heaviest pages, K = the pages that fit in the top tier's free
memory above the high watermark at the start of the run.
"""

from __future__ import annotations

import numpy as np

from ..arrays import unique
from ..mm.constants import PG_lru
from ..mm.migrate import migrate_folios
from ..mm.physmem import WMARK_HIGH
from ..sim.engine import MS
from ..sim.plugins import register_detector
from ..sim.promotion_metrics import folio_identities, identity_keys, page_identities
from .base import Detector

DEFAULT_PERIOD_MS = 100


def toptier_target(machine, cpu_node: int) -> int:
    """Where a group's pages are promoted: its CPU node if top tier, else the nearest one."""
    top = list(machine.toptier_nodes)
    if cpu_node in top:
        return cpu_node
    return min(top, key=lambda n: (int(machine.distance[cpu_node][n]), n))


def _lower_tier_mask(machine, nids) -> np.ndarray:
    tier = np.array([n.tier for n in machine.nodes])
    nids = np.asarray(nids, np.int64)
    ok = nids >= 0
    out = np.zeros(nids.size, bool)
    out[ok] = tier[nids[ok]] > tier.min()
    return out


def page_weights(group, phase=None) -> np.ndarray:
    """threads x w_p for every page of ``group`` under ``phase`` (default: its current one)."""
    ph = group.phase if phase is None else phase
    if ph is None:
        return np.zeros(group.n_pages)
    return group.threads * np.asarray(ph.distribution.weights(group.n_pages), float)


class Oracle(Detector):
    name = "oracle"
    kthread = False     # an ideal, instantaneous reference, not a kernel thread

    def __init__(self, promoter=None, *, period_ms: float = DEFAULT_PERIOD_MS):
        super().__init__(promoter)
        if period_ms < 0:
            raise ValueError(f"period_ms must be >= 0, got {period_ms}")
        self.once = period_ms == 0
        self.period_ns = int(round(period_ms * MS)) if period_ms else 1 << 62
        self.promoted_pfns: list[np.ndarray] = []
        self.promoted_ns: list[np.ndarray] = []
        self.promoted_ids: list[np.ndarray] = []
        self.first_report_ns: dict[int, int] = {}

    def start(self, engine) -> None:
        # The first pass runs at the first tick, after the run's first metrics sample, so that
        # the sample (which oracle_hot_set reads) shows the memory as the workload placed it.
        self.next_ns = engine.now
        self.started = False

    def run(self, engine) -> None:
        if not self.once or not self.started:
            self.started = True
            self.promote(engine)

    def candidates(self, engine):
        """Lower-tier folios of the workload on an LRU with weight > 0: (heads, weight per
        page, target node), heaviest per page first, ties in identity order."""
        k = engine.kernel
        pm = k.pm
        heads, weight, target = [], [], []
        for g in engine.groups:
            w = page_weights(g)
            pfns = g.mm.translate(g.addrs)
            ok = (pfns >= 0) & (w > 0)
            ok[ok] = ~k.is_zero_pfn(pfns[ok])
            ok[ok] = _lower_tier_mask(k.machine, k.node_of(pfns[ok]))
            h = pm.folio_head(pfns[ok])
            on_lru = (pm.flags[h] & PG_lru) != 0
            heads.append(h[on_lru])
            weight.append(w[ok][on_lru])
            target.append(np.full(int(on_lru.sum()),
                                  toptier_target(k.machine, g.spec.cpu_node), np.int64))
        if not heads:
            return np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64)
        heads, weight, target = map(np.concatenate, (heads, weight, target))
        uniq, first, inv = np.unique(heads, return_index=True, return_inverse=True)
        wsum = np.bincount(inv, weights=weight, minlength=uniq.size)
        density = wsum / pm.folio_nr_pages(uniq)
        ids = page_identities(k, uniq)   # ties broken by identity, as in oracle_hot_set
        order = np.lexsort((ids[:, 1], ids[:, 0], -density))
        return uniq[order], density[order], target[first][order]

    def promote(self, engine) -> int:
        """Migrate the hottest lower-tier folios that fit above the high watermark. Returns
        the number of pages promoted."""
        k = engine.kernel
        pm = k.pm
        heads, _, target = self.candidates(engine)
        moved = 0
        for nid in unique(target).tolist():
            h = heads[target == nid]
            nr = pm.folio_nr_pages(h)
            budget = pm.allowance(nid, WMARK_HIGH)
            take = np.cumsum(nr) <= budget              # the hottest prefix that fits ...
            left = budget - int(nr[take].sum())
            small = ~take & (nr == 1)                   # ... then base pages into what is left
            fill = np.flatnonzero(small)[:max(left, 0)]
            take[fill] = True
            if not take.all():
                # hotter pages wait for room: wake the target's kswapd, as a promoter's
                # refused migrate_misplaced_folio_prepare() would (promotion-spec §3.5)
                k.wakeup_kswapd(nid)
            sel = h[take]
            if sel.size == 0:
                continue
            ids = folio_identities(k, sel)
            ok = migrate_folios(k, sel, nid, mark=WMARK_HIGH)
            if ok.any():
                self.promoted_pfns.append(sel[ok])
                self.promoted_ns.append(np.full(int(ok.sum()), engine.now, np.int64))
                self.promoted_ids.append(ids[ok])
                moved += int(ids[ok, 2].sum())
        if moved:
            k.after_op()
        return moved


# ---- the reference hot set --------------------------------------------------------------------
def start_free_above_high(engine) -> int:
    """Pages free above the high watermark on the top-tier nodes at the start of the run (from
    the first metrics sample once the run has started, else now)."""
    pm = engine.kernel.pm
    series = getattr(engine, "series", {})
    if series.get("resident_pages"):
        free = pm.node_present - np.asarray(series["resident_pages"][0], np.int64)
    else:
        free = pm.node_free
    top = list(engine.kernel.machine.toptier_nodes)
    return int(np.maximum(free[top] - pm.watermarks[top, WMARK_HIGH], 0).sum())


def _start_on_lower_tier(engine, group) -> np.ndarray:
    """Per page of ``group``: whether its mapping was placed on a lower tier at the start
    (its move_to node, else its policy's nodes, else the CPU node; any lower-tier node
    counts)."""
    machine = engine.kernel.machine
    out = np.zeros(group.n_pages, bool)
    base = np.r_[group.range_base, group.n_pages]
    for i, m in enumerate(group.spec.mappings[:len(group.range_base)]):
        if m.move_to is not None:
            nodes = [m.move_to]
        elif m.nodes and m.policy not in ("local", "default"):
            nodes = list(m.nodes)
        else:
            nodes = [group.spec.cpu_node]
        out[base[i]:base[i + 1]] = _lower_tier_mask(machine, nodes).any()
    return out


def group_page_identities(engine, group) -> np.ndarray:
    """(n_pages, 2) identities of a group's pages: from the page map where a page is mapped,
    else from its VMA (anon: (mm id, slot); file: (-file id, offset))."""
    k = engine.kernel
    # (the zero pages are PG_reserved frames: page_identities gives them owner 0, as unmapped)
    ids = page_identities(k, group.mm.translate(group.addrs))
    missing = np.flatnonzero(ids[:, 0] == 0)
    if missing.size:
        mm = group.mm
        vi = mm.find_vma_index(group.addrs[missing])
        for j in unique(vi[vi >= 0]).tolist():
            v = mm.vmas[j]
            sel = missing[vi == j]
            slots = group.slots[sel]
            if v.file is None:
                ids[sel] = np.column_stack([np.full(sel.size, mm.id), slots])
            else:
                ids[sel] = np.column_stack([np.full(sel.size, -v.file.id),
                                            v.pgoff + slots - v.start_slot])
    return ids


def oracle_candidates(engine, phase: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(ids, weights): the identities (owner, index) and weights (threads x w_p under phase
    ``phase`` of each group) of every page the oracle's hot set may hold, the pages placed on
    a lower tier at the start with a weight above 0, in the groups' page order."""
    ids, weights = [], []
    for g in engine.groups:
        phases = g.spec.phases
        if not phases:
            continue
        w = page_weights(g, phases[min(phase, len(phases) - 1)])
        keep = _start_on_lower_tier(engine, g) & (w > 0)
        if keep.all():      # (Mode 3: every one of 16.8 M pages; no copy)
            ids.append(group_page_identities(engine, g))
            weights.append(w)
        else:
            ids.append(group_page_identities(engine, g)[keep])
            weights.append(w[keep])
    if not ids:
        return np.empty((0, 2), np.int64), np.empty(0)
    if len(ids) == 1:       # (one group: its arrays are new, no copy needed)
        return ids[0], weights[0]
    return np.concatenate(ids), np.concatenate(weights)


def heaviest(ids: np.ndarray, weights: np.ndarray, k: int, ordered: bool = True) -> np.ndarray:
    """The first ``k`` rows of ``ids`` ranked heaviest first, equal weights by identity
    (owner, then index). ``ordered=False`` gives the same rows in the candidates' order: a
    selection instead of a sort of every candidate (the summary needs the set only; a
    three-key lexsort of Mode 3's 16.8 M pages was ~2 s CPU a run)."""
    k = min(max(int(k), 0), weights.size)
    if ordered:
        return ids[np.lexsort((ids[:, 1], ids[:, 0], -weights))[:k]]
    if k == weights.size:
        return ids
    if k == 0:
        return ids[:0]
    t = np.partition(weights, weights.size - k)[weights.size - k]     # the k-th heaviest
    above = np.flatnonzero(weights > t)
    ties = np.flatnonzero(weights == t)
    need = k - above.size          # >= 1: fewer than k are heavier, at least k as heavy
    if need < ties.size:           # the ties with the smallest identities, as the sort has
        ties = ties[np.argpartition(identity_keys(ids[ties]), need - 1)[:need]]
    return ids[np.sort(np.concatenate([above, ties]))]


def oracle_hot_set(engine, k: int | None = None, phase: int = 0,
                   ordered: bool = True) -> np.ndarray:
    """(K, 2) int64 identities (owner, index) of the K heaviest pages across the workload's
    groups (weight threads x w_p under phase ``phase`` of each group), heaviest first, among
    the pages placed on a lower tier at the start. K defaults to ``start_free_above_high``.
    Pages of zero weight are never in it. ``ordered=False``: the same pages, unsorted
    (``heaviest``)."""
    if k is None:
        k = start_free_above_high(engine)
    ids, weights = oracle_candidates(engine, phase)
    return heaviest(ids, weights, k, ordered)


# ---- registration ------------------------------------------------------------------------------
@register_detector("oracle")
def make_oracle(component, kernel, costs, promoter):
    component.check_keys({"period_ms": False})
    c, f = component.checker(), component.field_path
    period = c.number_in(component.params.get("period_ms", DEFAULT_PERIOD_MS), f("period_ms"),
                         0, 1e9)
    return [Oracle(promoter, period_ms=period)]


@register_detector("none")
def make_none(component, kernel, costs, promoter):
    """NUMAB0: no detector."""
    component.check_keys({})
    return []
