"""What a promotion engine is: a daemon that receives hotness reports and migrates pages.

Detectors report with ``record_access(pfns, nid, src, now_jiffies)`` as pghot_record_access()
does (promotion-spec §1.2): ``pfns`` an int64 array, ``nid`` the target (accessing) node or
NUMA_NO_NODE (-1), as a scalar or an array, ``src`` one of SOURCES. The engine decides what
to migrate and when (its ``run`` is called every ``period_ns``), and records every promotion
in ``promotions`` (pfn after migration -> simulated ns) so results can report counts,
time-to-promote, precision and recall.
"""

from __future__ import annotations

import numpy as np

from ..sim.engine import Daemon

HW_HINTS, PGTABLE_SCAN, HINT_FAULT = "hwhints", "pgtscan", "hintfault"
SOURCES = (HW_HINTS, PGTABLE_SCAN, HINT_FAULT)


def adjusted_threshold(th: int, ref_th: int, diff_cand: int, ref_cand: int, steps: int) -> int:
    """The 60-s hot-threshold step of numa_promotion_adjust_threshold() and its pghot copy
    (promotion-spec §1.5): too many candidates lower the threshold by 2·ref/steps (not below
    one step), too few raise it (not above 2·ref)."""
    unit = ref_th * 2 // steps
    th = th or ref_th
    if diff_cand > ref_cand * 11 // 10:
        return max(th - unit, unit)
    if diff_cand < ref_cand * 9 // 10:
        return min(th + unit, ref_th * 2)
    return th


class PromotionEngine(Daemon):
    name = "promotion-engine"

    def __init__(self):
        self.promoted_pfns: list[np.ndarray] = []   # pfns (before migration) of promotions
        self.promoted_ns: list[np.ndarray] = []     # when each happened
        self.promoted_ids: list[np.ndarray] = []    # their identities (promotion_metrics)
        self.first_report_ns: dict[int, int] = {}   # not used by every engine

    def record_access(self, pfns, nid, src: str, now_jiffies: int) -> None:
        raise NotImplementedError

    def note_promoted(self, old_pfns: np.ndarray, now_ns: int, ids=None) -> None:
        """Record promoted folios (head pfns before migration). ``ids`` are their identities
        from promotion_metrics.folio_identities, taken before the migration freed the old
        pfns; an engine passes them on every call or on none."""
        old_pfns = np.asarray(old_pfns, np.int64)
        self.promoted_pfns.append(old_pfns)
        self.promoted_ns.append(np.full(old_pfns.size, now_ns, np.int64))
        if ids is not None:
            self.promoted_ids.append(np.asarray(ids, np.int64).reshape(-1, 3))

    def run(self, engine) -> None:
        """Engines that migrate on report need no periodic work."""
