"""klruscand: MGLRU page-table scanning as a promotion source (mglru-spec §9; promotion-spec
§2). Registered as detector ``klruscand``.

One kthread with one walk struct. Every ``interval_ms`` it visits each node that is not top
tier and, on it, each memcg in ``mem_cgroup_iter`` order, calling
``lru_gen_scan_lruvec(lruvec, READ_ONCE(max_seq), accessed_cb, flush_cb)`` (mm/vmscan.py)
with that walk struct; after each node the walk struct is zeroed (``walk.reset()``, which is
what makes quirk Q5 end at a node boundary). ``accessed_cb`` appends to a static batch of
``batch_size`` pfns; ``flush_cb`` hands the batch to the promotion engine as
``record_access(pfns, NUMA_NO_NODE, PGTABLE_SCAN, jiffies)``, stamped with the flush time.

Parameters (``[[detectors]] name = "klruscand"``):

- ``interval_ms`` (500): period of a pass; the posted versions used 4000 (Kinsey v1), 100
  (Bharata v1/v2), 2000 (Kinsey v2) and 500 (pghot v3). A pass whose CPU time exceeds the
  interval is followed at once by the next (no catch-up), as the kthread does: the engine's
  rule for every kthread daemon (sim/engine.py ``Daemon``).
- ``batch_size`` (131072 = 2<<16): the static pfn batch.
- ``contract`` ("v2"): the callback contract of §6.3. "v1": the callback refuses a pfn when
  the batch is already full (its A bit is already clear: with faithful quirks it is lost);
  "v2": record, then say full.
- ``version`` ("v3"): the posted version whose ``interval_ms`` and ``contract`` become the
  defaults (``VERSIONS``; mglru-spec §9, promotion-spec §2.3); an explicit key overrides it.
  "v1" = Kinsey RFC v1 (4000 ms, int callback), "pghot-v1" = the copy in Bharata's pghot
  v1/v2 (100 ms, int callback), "v2" = Kinsey RFC v2 (2000 ms, bool callback), "v3" = the copy
  in pghot v3 7/8 (500 ms, bool callback). Every version uses the 2<<16 batch.
- ``batched`` (true): pass whole arrays of pfns to the callback (``vmscan.Deliver``'s batched
  form); the results are identical to the per-pfn form, only faster.

The pass's CPU time is charged from the walk's mm_stats: ``scan_pte_ns`` per MM_LEAF_TOTAL
and ``scan_young_pte_ns`` per MM_LEAF_YOUNG (re-walked ranges count twice, as in the kernel).
The daemon never creates a generation; it reports only pfns of lower-tier nodes.
"""

from __future__ import annotations

import errno

import numpy as np

from ..errors import ConfigError
from ..mm.constants import MM_LEAF_TOTAL, MM_LEAF_YOUNG
from ..mm.lru_gen import lru_hist_from_seq
from ..mm.vmscan import LruGenMmWalk, lru_gen_scan_lruvec
from ..promote.base import PGTABLE_SCAN
from ..sim.engine import MS
from ..sim.plugins import register_detector
from .base import Detector

NUMA_NO_NODE = -1
DEFAULT_INTERVAL_MS = 500
DEFAULT_BATCH_SIZE = 2 << 16
PARAMS = {"interval_ms": False, "batch_size": False, "contract": False, "batched": False,
          "version": False}
# Posted versions -> knob defaults (mglru-spec §9 version table, promotion-spec §2.3). The
# batch is 2<<16 in all of them; "pghot-v1" is Kinsey's v1 patch as carried (100 ms) in
# Bharata's pghot v1/v2 series.
VERSIONS = {
    "v1": {"interval_ms": 4000, "contract": "v1"},
    "pghot-v1": {"interval_ms": 100, "contract": "v1"},
    "v2": {"interval_ms": 2000, "contract": "v2"},
    "v3": {"interval_ms": DEFAULT_INTERVAL_MS, "contract": "v2"},
}
DEFAULT_VERSION = "v3"


def lower_tier_nodes(kernel) -> list[int]:
    """Nodes that are not top tier (``!node_is_toptier``; a machine always has tier 0)."""
    return list(kernel.machine.lower_tier_nodes)


class Klruscand(Detector):
    name = "klruscand"

    def __init__(self, promoter=None, *, interval_ms: float = DEFAULT_INTERVAL_MS,
                 batch_size: int = DEFAULT_BATCH_SIZE, contract: str = "v2",
                 batched: bool = True, costs=None):
        super().__init__(promoter)
        if contract not in ("v1", "v2"):
            raise ValueError(f"unknown callback contract {contract!r} (expected 'v1' or 'v2')")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.interval_ns = int(round(interval_ms * MS))
        if self.interval_ns <= 0:
            raise ValueError(f"interval_ms must be > 0, got {interval_ms}")
        self.period_ns = self.interval_ns
        self.batch_size, self.contract, self.batched = int(batch_size), contract, bool(batched)
        self.costs = costs
        self.walk = LruGenMmWalk()       # allocated zeroed once, by the kthread
        self.batch = np.empty(self.batch_size, np.int64)
        self.nr = 0                      # batch_index
        self.kernel = None
        self.stats = {"passes": 0, "lruvecs": 0, "flushes": 0, "reported": 0,
                      "max_pending": 0, "warn_full": 0, "refused": 0, "overruns": 0,
                      "leaf_total": 0, "leaf_young": 0}
        if self.batched:
            self.accessed_cb = self._accessed_batch
        else:
            self.accessed_cb = self._accessed_v2 if contract == "v2" else self._accessed_v1

    # ---- the callbacks (§6.3, §9) ---------------------------------------------------------
    def _accessed_v2(self, pfn) -> bool:
        """v2: store the pfn if there is room (WARN once if called full); say whether full."""
        if self.nr < self.batch_size:
            self.batch[self.nr] = pfn
            self.nr += 1
        else:
            self.stats["warn_full"] += 1
        return self.nr == self.batch_size

    def _accessed_v1(self, pfn) -> int:
        """v1: -EAGAIN without storing when the batch is already full; else store, return 0."""
        if self.nr == self.batch_size:
            self.stats["refused"] += 1
            return -errno.EAGAIN
        self.batch[self.nr] = pfn
        self.nr += 1
        return 0

    def _accessed_batch(self, pfns: np.ndarray):
        """The batched form of the same callback: take what fits. v2 returns (taken, full);
        v1 returns taken (fewer than offered = the next pfn is refused)."""
        take = min(self.batch_size - self.nr, int(pfns.size))
        self.batch[self.nr:self.nr + take] = pfns[:take]
        self.nr += take
        if self.contract == "v1":
            if take < pfns.size:
                self.stats["refused"] += 1
            return take
        if take == 0 and pfns.size:
            self.stats["warn_full"] += 1
        return take, self.nr == self.batch_size

    def _room(self) -> int:
        """How many pfns _accessed_batch still takes (the walk scans for no more)."""
        return self.batch_size - self.nr

    def flush_cb(self) -> None:
        """flush_cb(): record every batched pfn with the flush time, then empty the batch."""
        n = self.nr
        if n == 0:
            return
        self.stats["max_pending"] = max(self.stats["max_pending"], n)
        self.stats["flushes"] += 1
        self.stats["reported"] += n
        pfns = self.batch[:n].copy()
        self.nr = 0
        if self.promoter is not None:
            self.promoter.record_access(pfns, NUMA_NO_NODE, PGTABLE_SCAN, self.kernel.jiffies)

    # ---- the kthread ----------------------------------------------------------------------
    def start(self, engine) -> None:
        require_mglru(engine.kernel)
        self.kernel = engine.kernel

    def scan_pass(self, kernel) -> tuple[int, int]:
        """One period's work. Returns (MM_LEAF_TOTAL, MM_LEAF_YOUNG) added by the pass."""
        self.kernel = kernel
        total = young = 0
        for nid in lower_tier_nodes(kernel):
            for memcg in kernel.memcgs:
                lruvec = kernel.lruvec(memcg, nid)
                seq = int(lruvec.lrugen.max_seq)          # READ_ONCE(lrugen->max_seq)
                hist = lru_hist_from_seq(seq)
                before = lruvec.mm_state.stats[hist].copy()
                lru_gen_scan_lruvec(lruvec, seq, self.accessed_cb, self.flush_cb,
                                    contract=self.contract, batched=self.batched,
                                    walk=self.walk, room=self._room)
                # the walk's mm_stats are folded into mm_state.stats[hist] after every mm
                delta = lruvec.mm_state.stats[hist] - before
                total += int(delta[MM_LEAF_TOTAL])
                young += int(delta[MM_LEAF_YOUNG])
                self.stats["lruvecs"] += 1
            self.walk.reset()                              # memset(walk, 0) after each node
        self.stats["passes"] += 1
        self.stats["leaf_total"] += total
        self.stats["leaf_young"] += young
        return total, young

    def run(self, engine) -> None:
        total, young = self.scan_pass(engine.kernel)
        c = self.costs or engine.costs
        cost = total * c.scan_pte_ns + young * c.scan_young_pte_ns
        engine.charge(cost)
        if cost > self.interval_ns:
            # the pass overran: the engine starts the next one when this one ends (no sleep;
            # the CPU rule of sim.engine.Daemon)
            self.stats["overruns"] += 1


def _params(component):
    component.check_keys(PARAMS)
    p, c = component.params, component.checker()
    f = component.field_path
    version = c.choice(p.get("version", DEFAULT_VERSION), f("version"), tuple(VERSIONS))
    defaults = VERSIONS[version]          # explicit keys below override the version's values
    interval = p.get("interval_ms", defaults["interval_ms"])
    interval = c.number_in(interval, f("interval_ms"), 0, 1e9)
    if interval <= 0:
        c.fail(f("interval_ms"), f"expected a number > 0, got {interval}")
    batch = c.int_at_least(p.get("batch_size", DEFAULT_BATCH_SIZE), f("batch_size"), 1)
    contract = c.choice(p.get("contract", defaults["contract"]), f("contract"), ("v1", "v2"))
    batched = c.boolean(p.get("batched", True), f("batched"))
    return dict(interval_ms=interval, batch_size=batch, contract=contract, batched=batched)


def require_mglru(kernel) -> None:
    """klruscand walks MGLRU's mm lists (lru_gen_scan_lruvec): it cannot run on the classic LRU."""
    from ..mm.classic_lru import lru_gen_enabled

    if not lru_gen_enabled(kernel):
        raise ConfigError("klruscand needs MGLRU: lru_gen/enabled has LRU_GEN_CORE (0x1) clear "
                          "(the classic LRU)", field="detectors.klruscand")


@register_detector("klruscand")
def make_klruscand(component, kernel, costs, promoter):
    require_mglru(kernel)
    return [Klruscand(promoter, costs=costs, **_params(component))]
