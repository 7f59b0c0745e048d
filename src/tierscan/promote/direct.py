"""Direct promotion (engine "direct"): every reported lower-tier folio is migrated at once, in
the report call, to the report's nid (or ``default_node`` for NUMA_NO_NODE). No history, no
threshold, no rate limit: the upper bound on how fast a detector's reports can move pages,
and the synchronous in-context migration that NUMAB2 does in its faults (promotion-spec §3.3
step 4, without its admission test).

Each folio goes through migrate_misplaced_folio_prepare (dirty file folios, an unbalanced
target and isolated folios are refused) and migrate_misplaced_folio, one at a time in report
order within each destination node (destinations in ascending order), so its migration CPU
time falls on whoever reported (the caller's accounting context).
"""

from __future__ import annotations

import numpy as np

from ..arrays import unique
from ..mm.migrate import migrate_misplaced_folios_one_by_one
from ..mm.vmstat import register_vmstat
from ..sim.config import Component
from ..sim.engine import MS
from ..sim.plugins import register_engine
from ..sim.promotion_metrics import folio_identities
from .base import SOURCES, PromotionEngine
from .pghot import count_per_node, lower_tier_lru_heads, normalize_report, setup_engine

register_vmstat("direct_recorded_accesses")   # tierscan's own: reports received


class DirectPromotion(PromotionEngine):
    """Migrate on report (engine "direct"). Params: default_node (0), sources (all three)."""

    name = "direct"
    period_ns = 1000 * MS

    PARAMS = {
        "default_node": (0, "node"),
        "sources": (list(SOURCES), "sources"),
    }

    def __init__(self, kernel, costs=None, component: Component | None = None, **params):
        super().__init__()
        p = setup_engine(self, kernel, costs, component, params)
        self.default_node = p["default_node"]
        self.sources = frozenset(p["sources"])

    def record_access(self, pfns, nid, src: str, now_jiffies: int) -> int:
        """Promote the reported folios now. Returns how many moved."""
        if src not in SOURCES:
            raise ValueError(f"unknown hotness source {src!r} (expected one of: "
                             f"{', '.join(SOURCES)})")
        k = self.kernel
        n_nodes = k.machine.nr_nodes
        pfns, nids = normalize_report(k, pfns, nid)
        if pfns.size == 0:
            return 0
        targets = np.where(nids < 0, self.default_node, nids)
        count_per_node(k.vmstat, "direct_recorded_accesses",
                       np.where(targets < n_nodes, targets, self.default_node), n_nodes)
        if src not in self.sources:
            return 0
        keep, heads, nodes = lower_tier_lru_heads(k, self.lower, pfns)
        targets = targets[keep]
        go = (targets < n_nodes) & (targets != nodes)
        heads, targets = heads[go], targets[go]
        # a folio reported twice moves once, to the first report's node
        _, first = np.unique(heads, return_index=True)
        first = np.sort(first)
        heads, targets = heads[first], targets[first]
        moved = 0
        for dst in unique(targets):
            sel = heads[targets == dst]
            ids = folio_identities(k, sel)
            ok = migrate_misplaced_folios_one_by_one(k, sel, int(dst))
            if ok.any():
                self.note_promoted(sel[ok], k.clock_ns, ids[ok])
                self.first_report_ns.update(dict.fromkeys(sel[ok].tolist(), k.clock_ns))
                moved += int(ok.sum())
        if moved:
            k.after_op()
        return moved


@register_engine("direct")
def _direct(component, kernel, costs):
    return [DirectPromotion(kernel, costs, component)]


__all__ = ["DirectPromotion"]
