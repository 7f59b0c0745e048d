"""kscand (kmmscand): "slowtier page promotion based on PTE A bit" (Raghavendra K T, AMD),
promotion-spec §4, following the V2 code and the V3 changes the spec names. Registered as
detector ``kscand``; it migrates on its own (no promotion engine). ``version`` picks the
posting (``VERSIONS``): "v1" (kmmscand, Mar 2025), "v2" (Jun 2025), "v3" (Aug 2025, default).

V1 ("kmmscand" + "kmmmigrated") differs from V2 in what changes outcomes (read from
mm/kmmscand.c in github.com/RaghavendraKT80/linux-mm at commit 1f79c404, the author's tree of
the V1 series; the lore posting itself, 20250319193028.29514-1-raghavendra.kt@amd.com, was
not found in the reference corpus, so that the tree matches the posting is an assumption):

- the scanner sleeps ``kmmscand_scan_sleep_ms`` = 16 ms (V2: 20);
- the per-mm period is clamped to [500, 5000] ms (V2: [600, 5000]); the adaptation table,
  the ``scan_size >> 1`` budget and the target-node heuristic are V2's;
- accessed = not idle, young, referenced or a young PTE (V2's rule, no second touch);
- one **global** migration list: every scan splices its queued folios onto the tail, and
  kmmmigrated drains the whole list each cycle, in order, across mms (V2: one mm's list per
  cycle, round robin). Each folio goes to its mm's current ``target_node``;
- kmmmigrated does **not** re-check hotness (no is_hot_page(): V2 added it), only that the
  folio is still valid, on an LRU, on a lower tier and not on the target;
- kmmmigrated runs ``msleep(20)`` and then waits up to ``kmmmigrate_sleep_ms`` = 20 ms, so its
  period is 40 ms (nothing wakes it early in that tree).

Two kthreads, two daemons here:

- the scanner (``kscand``, every ``scan_sleep_ms`` = 20 ms) round-robins over every mm
  (registered when the engine starts, as at fork/exec; first scan ``scan_delay_ms`` = 1000 ms
  later). Up to ``mms_to_scan`` (4096) visits per cycle; a visit to an mm whose ``next_scan``
  has come walks its VMAs from the saved address (with NUMAB's VMA filters), whole VMAs at a
  time, until the walked VMA bytes reach the mm's ``scan_size``, or the page budget runs out
  (``scan_size >> 1`` as posted, a units bug; ``scan_size >> PAGE_SHIFT`` with
  ``Kernel(faithful_quirks=False)``). Per present entry, after ``kernel.materialize_ptes/pmds``
  (so the rate model draws the A bits it owes): the page-idle machinery clears a young A bit
  (the folio loses ``idle`` and gains ``young``), the folio counts as scanned on its node, and
  as accessed if, in V2, it is not idle, young, referenced or had a young entry, or, in V3
  (default), it had a young entry now *and* was not idle before this visit (its second
  consecutive observation). Accessed lower-tier folios are queued (folio, address) on the mm's
  migration list, each folio at most once per scan; then the folio is marked idle.
  After the scan the mm's period and size adapt (``kscand_update_mmslot_info``, the §4 table)
  and its target becomes the toptier node with most scanned pages, else ``target_node``. The
  next scan resumes just past the last PTE any walk visited, as posted (stale when the last
  VMAs walked had no page tables); with faithful quirks off, after the last VMA walked.
- the migrator (``kscand-migrate``, every ``migrate_sleep_ms`` = 20 ms) takes the next mm with
  a non-empty list and drains it, one folio at a time: still mapped there, on an LRU, not
  shared, still hot (an active MGLRU generation), on a lower tier, not on the target; then
  migrate_misplaced_folio_prepare (a balanced target, else kswapd is woken; no dirty page
  cache) and migrate_misplaced_folio.

Costs: the scanner is charged ``scan_pte_ns`` per entry visited and ``scan_young_pte_ns`` per
young entry cleared; the migrator is charged the migrations (the engine's accounting). Both
are kthreads, so it is detector overhead. Counters: the V2 ``nr_kscand_*`` vm events,
``numa_pages_migrated`` and ``pgpromote_success``. docs/numab-kscand.md has the details.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..arrays import unique
from ..jiffies import time_before
from ..mm.constants import (
    PAGE_SHIFT, PAGE_SIZE, PG_active, PG_lru, PG_referenced, PG_unevictable,
    _PAGE_ACCESSED, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_SPECIAL,
)
from ..mm.lru_gen import folio_lru_gen, lru_gen_is_active
from ..mm.mempolicy import get_vma_policy
from ..mm.migrate import migrate_misplaced_folios_one_by_one
from ..mm.page_idle import folio_set_young, install_page_young
from ..mm.pagetable import PageTable, pte_pfn
from ..mm.process import VM_EXEC, VM_HUGETLB, VM_IO, VM_MIXEDMAP, VM_PFNMAP, VM_READ, VM_WRITE
from ..mm.vmstat import register_vmstat
from ..sim.engine import MS, Daemon
from ..sim.plugins import register_detector
from .base import Detector
from .numab import FolioField, toptier_mask

# mm/kscand.c (V2) defaults [S23]
SCAN_SIZE_MIN = 256 << 20
SCAN_SIZE_MAX = 4 << 30
SCAN_SIZE = 1 << 30
SCAN_PERIOD_MIN_MS = 600
SCAN_PERIOD_MIN_MS_V1 = 500          # KMMSCAND_SCAN_PERIOD_MIN (V1 tree)
SCAN_PERIOD_MAX_MS = 5000
SCAN_PERIOD_MS = 2000
SCAN_SLEEP_MS = 20
MIGRATE_SLEEP_MS = 20
MMS_TO_SCAN = 4 * 1024
SCAN_DELAY_MS = 1000                 # sysctl_numa_balancing_scan_delay
DEFAULT_TARGET_NODE = 0
SCAN_PERIOD_TUNE_PERCENT = 15
SCAN_PERIOD_CHANGE_SCALE = 3
KSCAND_IGNORE_SCAN_THR = 256
SCAN_SIZE_CHANGE_SHIFT = 1
SCAN_DECAY_SHIFT = 4

# posted version -> what it changes (module docstring); explicit knobs override the sleeps
VERSIONS = {
    "v1": {"scan_sleep_ms": 16, "migrate_sleep_ms": 40, "period_min_ms": SCAN_PERIOD_MIN_MS_V1},
    "v2": {"scan_sleep_ms": SCAN_SLEEP_MS, "migrate_sleep_ms": MIGRATE_SLEEP_MS,
           "period_min_ms": SCAN_PERIOD_MIN_MS},
    "v3": {"scan_sleep_ms": SCAN_SLEEP_MS, "migrate_sleep_ms": MIGRATE_SLEEP_MS,
           "period_min_ms": SCAN_PERIOD_MIN_MS},
}
DEFAULT_VERSION = "v3"

COUNTERS = ("nr_kscand_mm_scans", "nr_kscand_vma_scans", "nr_kscand_migadded",
            "nr_kscand_migrated", "nr_kscand_migrate_failed", "nr_kscand_slowtier",
            "nr_kscand_toptier", "nr_kscand_idlepage")
register_vmstat(*COUNTERS)


def kscand_update_mmslot_info(scan_period: int, scan_size: int, old_scan_delta: int,
                              accessed: int, period_min_ms: int = SCAN_PERIOD_MIN_MS
                              ) -> tuple[int, int, int]:
    """kscand_update_mmslot_info(): the §4 table. ``accessed`` (Y) is this scan's slow-tier
    accessed pages; total = Y + (X >> 4) with X = ``old_scan_delta``, and a total below 256
    counts as 0. The case is chosen on (X, total), as the code does:

    X = 0, total = 0: period +15%, size halved;  X > 0, total > 0: period -15%, size doubled;
    X > 0, total = 0: period x8, size kept;      X = 0, total > 0: period /8, size = max.

    Then period is clamped to [600 (V1: 500), 5000] ms and size to [256 MB, 4 GB]. Returns (period,
    size, new scan_delta = total).
    """
    total = (old_scan_delta >> SCAN_DECAY_SHIFT) + int(accessed)
    if total < KSCAND_IGNORE_SCAN_THR:
        total = 0
    if not old_scan_delta and not total:
        scan_period = (100 + SCAN_PERIOD_TUNE_PERCENT) * scan_period // 100
        scan_size >>= SCAN_SIZE_CHANGE_SHIFT
    elif old_scan_delta and total:
        scan_period = (100 - SCAN_PERIOD_TUNE_PERCENT) * scan_period // 100
        scan_size <<= SCAN_SIZE_CHANGE_SHIFT
    elif old_scan_delta and not total:
        scan_period <<= SCAN_PERIOD_CHANGE_SCALE
    else:
        scan_period >>= SCAN_PERIOD_CHANGE_SCALE
        scan_size = SCAN_SIZE_MAX
    scan_period = min(max(scan_period, period_min_ms), SCAN_PERIOD_MAX_MS)
    scan_size = min(max(scan_size, SCAN_SIZE_MIN), SCAN_SIZE_MAX)
    return scan_period, scan_size, total


@dataclass
class MmSlot:
    """struct kscand_mm_slot plus the mm's kmigrated list (folio head pfn, page slot)."""

    group: object
    scan_period: int                 # ms
    scan_size: int                   # bytes
    next_scan: int                   # jiffies
    scan_delta: int = 0
    address: int = 0
    target_node: int = DEFAULT_TARGET_NODE
    list_heads: list = field(default_factory=list)
    list_slots: list = field(default_factory=list)
    scans: int = 0

    @property
    def mm(self):
        return self.group.mm

    def pending(self) -> int:
        return sum(a.size for a in self.list_heads)


class Kscand(Detector):
    """The scanner kthread. ``migrator`` is its kmigrated companion daemon."""

    name = "kscand"

    def __init__(self, *, costs=None, scan_sleep_ms: float | None = None,
                 migrate_sleep_ms: float | None = None, mms_to_scan: int = MMS_TO_SCAN,
                 scan_period_ms: int = SCAN_PERIOD_MS, scan_size_mb: int = SCAN_SIZE >> 20,
                 scan_delay_ms: int = SCAN_DELAY_MS, target_node: int = DEFAULT_TARGET_NODE,
                 version: str = DEFAULT_VERSION, honor_mempolicy: bool = False):
        super().__init__(None)
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {', '.join(VERSIONS)}, got {version!r}")
        vdef = VERSIONS[version]
        if scan_sleep_ms is None:
            scan_sleep_ms = vdef["scan_sleep_ms"]
        if migrate_sleep_ms is None:
            migrate_sleep_ms = vdef["migrate_sleep_ms"]
        self.period_min_ms = vdef["period_min_ms"]
        self.period_ns = int(round(float(scan_sleep_ms) * MS))
        if self.period_ns <= 0:
            raise ValueError(f"scan_sleep_ms must be > 0, got {scan_sleep_ms}")
        if int(mms_to_scan) < 1:
            raise ValueError(f"mms_to_scan must be >= 1, got {mms_to_scan}")
        self.costs, self.version = costs, version
        self.mms_to_scan = int(mms_to_scan)
        # the sysfs stores clamp (mm_scan_period_ms_store); the size default is not a knob
        self.scan_period_ms = min(max(int(scan_period_ms), self.period_min_ms),
                                  SCAN_PERIOD_MAX_MS)
        self.scan_size = min(max(int(scan_size_mb) << 20, SCAN_SIZE_MIN), SCAN_SIZE_MAX)
        self.scan_delay_ms, self.target_node = int(scan_delay_ms), int(target_node)
        self.honor_mempolicy = bool(honor_mempolicy)
        self.slots: list[MmSlot] = []
        self.cursor = 0                  # kscand_scan.mm_slot
        self.scan_address = 0            # kscand_scanctrl.address (global, as posted)
        self.kernel = None
        self.migrator = KscandMigrator(self, migrate_sleep_ms)
        # V1: kmmscand_migrate_list, one FIFO for every mm: (slot, heads, page slots) per scan
        self.global_list: list[tuple[MmSlot, np.ndarray, np.ndarray]] = []
        self.queued_log: list[tuple[int, np.ndarray]] = []   # (mm id, heads) per scan, tests
        self.log_queued = False
        self.stats = {"cycles": 0, "mm_scans": 0, "entries": 0, "young": 0, "queued": 0}

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self, engine) -> None:
        k = self.kernel = engine.kernel
        if self.target_node not in k.machine.toptier_nodes:
            raise ValueError(f"target_node {self.target_node} is not a toptier node "
                             f"(toptier: {list(k.machine.toptier_nodes)})")
        self.toptier = toptier_mask(k)
        self.idle = FolioField(k, bool, False)      # PG_idle (page_idle flags)
        # PG_young is the kernel's (mm/page_idle.py): reclaim's folio_referenced() takes it
        install_page_young(k, lambda: FolioField(k, bool, False))
        for g in engine.groups:                     # __kscand_enter() at fork/exec
            if any(s.mm is g.mm for s in self.slots):
                continue                            # one slot per mm, not per thread group
            self.slots.append(MmSlot(g, self.scan_period_ms, self.scan_size,
                                     k.jiffies + self.scan_delay_ms,
                                     target_node=self.target_node))

    def run(self, engine) -> None:
        """kscand_do_scan(): up to mms_to_scan visits, one mm each, round robin. A visit to an
        mm that is not due moves on; an mm scanned in this cycle is not due again in it."""
        self.stats["cycles"] += 1
        live = [s for s in self.slots if not engine.mm_exited(s.mm)]
        if len(live) != len(self.slots):             # kscand_collect_mm_slot() at exit
            gone = [s for s in self.slots if engine.mm_exited(s.mm)]
            self.slots = live
            self.cursor = 0
            for s in gone:
                s.list_heads.clear()
                s.list_slots.clear()
            # kmmscand_cleanup_migration_list(): entries of an exited mm are not migrated
            self.global_list = [e for e in self.global_list if e[0] in live]
        n = len(self.slots)
        if n == 0:
            return
        now = self.kernel.jiffies
        for _ in range(min(self.mms_to_scan, n)):
            slot = self.slots[self.cursor % n]
            self.cursor = (self.cursor + 1) % n
            if slot.next_scan and time_before(now, slot.next_scan):
                continue
            self.scan_mm(engine, slot)

    # ---- one mm -------------------------------------------------------------------------
    def _vma_skipped(self, vma) -> bool:
        """kscand_walk_page_vma()'s filters (NUMAB's)."""
        f = vma.flags
        if f & (VM_IO | VM_PFNMAP | VM_HUGETLB | VM_MIXEDMAP):
            return True
        if self.honor_mempolicy and not get_vma_policy(vma).mof:
            return True
        if vma.file is not None and (f & (VM_READ | VM_WRITE)) == VM_READ:
            return True
        return not (f & (VM_READ | VM_WRITE | VM_EXEC))

    def scan_mm(self, engine, slot: MmSlot) -> None:
        """kscand_scan_mm_slot() on a due mm."""
        k, mm = self.kernel, slot.mm
        budget = slot.scan_size >> 1 if k.faithful_quirks else slot.scan_size >> PAGE_SHIFT
        nr = k.machine.nr_nodes
        scanned = np.zeros(nr, np.int64)
        accessed = np.zeros(nr, np.int64)
        vmas = list(mm.vmas)
        i = next((n for n, v in enumerate(vmas) if v.end > slot.address), len(vmas))
        walked = 0
        queued: list[np.ndarray] = []
        qslots: list[np.ndarray] = []
        broke = None
        entries = young = 0
        for vma in vmas[i:]:
            if not self._vma_skipped(vma):
                budget, e, y = self.walk_vma(vma, budget, scanned, accessed, queued, qslots)
                entries += e
                young += y
            k.vmstat.count("nr_kscand_vma_scans", self.cpu_node)
            walked += vma.end - vma.start
            if walked >= slot.scan_size or budget == 0:
                broke = vma
                break
        if broke is None:
            slot.address = 0                 # ran off the last VMA: start over next time
        elif k.faithful_quirks or budget == 0:
            # as posted: just past the last PTE any walk visited (kscand_scanctrl.address),
            # which is stale when the last VMAs had no page tables
            slot.address = self.scan_address + PAGE_SIZE
        else:
            slot.address = broke.end         # quirk off: resume after the last VMA walked
        heads = np.concatenate(queued) if queued else np.empty(0, np.int64)
        hslots = np.concatenate(qslots) if qslots else np.empty(0, np.int64)
        if heads.size:                                   # once per folio per scan
            _, first = np.unique(heads, return_index=True)
            first = np.sort(first)
            heads, hslots = heads[first], hslots[first]
            if self.version == "v1":
                self.global_list.append((slot, heads, hslots))
            else:
                slot.list_heads.append(heads)
                slot.list_slots.append(hslots)
            k.vmstat.count("nr_kscand_migadded", self.cpu_node, heads.size)
            k.vmstat.count("nr_kscand_slowtier", self.cpu_node, heads.size)
        if self.log_queued:
            self.queued_log.append((mm.id, heads.copy()))
        k.vmstat.count("nr_kscand_mm_scans", self.cpu_node)
        total = int(accessed[~self.toptier].sum())       # get_slowtier_accesed()
        top = np.flatnonzero(self.toptier & (scanned > 0))
        target = int(top[np.argmax(scanned[top])]) if top.size else self.target_node
        slot.scan_period, slot.scan_size, slot.scan_delta = kscand_update_mmslot_info(
            slot.scan_period, slot.scan_size, slot.scan_delta, total, self.period_min_ms)
        slot.next_scan = k.jiffies + slot.scan_period
        slot.target_node = target
        slot.scans += 1
        c = self.costs or engine.costs
        engine.charge(entries * c.scan_pte_ns + young * c.scan_young_pte_ns)
        self.stats["mm_scans"] += 1
        self.stats["entries"] += entries
        self.stats["young"] += young
        self.stats["queued"] += int(heads.size)

    def walk_vma(self, vma, budget, scanned, accessed, queued, qslots):
        """walk_page_vma() with hot_vma_idle_pte_entry() over every present entry of ``vma``
        in address order (a THP leaf is one entry). Returns (budget left, entries visited,
        young entries cleared)."""
        k, mm = self.kernel, vma.mm
        pm, pt = k.pm, mm.pt
        pmds = np.arange(vma.start_slot >> 9, -(-vma.end_slot // 512), dtype=np.int64)
        populated = pmds[pt.pmd[pmds] != 0]
        if populated.size == 0:
            return budget, 0, 0
        leaf = populated[pt.pmd_is_leaf(populated)]
        table = populated[~pt.pmd_is_leaf(populated)]
        slots = (table[:, None] * 512 + np.arange(512)).ravel()
        slots = slots[(slots >= vma.start_slot) & (slots < vma.end_slot)]
        e = pt.pte[slots]
        slots = slots[((e & (_PAGE_PRESENT | _PAGE_PROTNONE)) != 0) & ((e & _PAGE_SPECIAL) == 0)]
        le = pt.pmd[leaf]
        leaf = leaf[((le & _PAGE_SPECIAL) == 0) & (pte_pfn(le) != k.huge_zero_pfn)]
        k.materialize_ptes(mm, slots)
        k.materialize_pmds(mm, leaf)
        # entries in address order: PTEs by page slot, THP leaves at their first page
        eslot = np.concatenate([slots, leaf << 9])
        is_pmd = np.concatenate([np.zeros(slots.size, bool), np.ones(leaf.size, bool)])
        order = np.argsort(eslot, kind="stable")
        eslot, is_pmd = eslot[order], is_pmd[order]
        ent = np.where(is_pmd, pt.pmd[eslot >> 9], pt.pte[eslot])
        pte_young = (ent & _PAGE_ACCESSED) != 0
        heads = pm.folio_head(pte_pfn(ent))
        flags = pm.flags[heads]
        valid = ((flags & PG_unevictable) == 0) & ~k.folio_mapped_shared(heads)
        # the page budget: each valid entry takes one; the walk stops at the entry taking the
        # last (that entry is counted as scanned, but not tested)
        n, nvalid = eslot.size, int(valid.sum())
        hit_zero = budget <= nvalid
        stop = int(np.searchsorted(np.cumsum(valid), budget)) + 1 if hit_zero else n
        visited = np.zeros(n, bool)
        visited[:stop] = True
        tested = visited & valid
        if hit_zero:
            tested[stop - 1] = False
        budget -= int(tested.sum()) + (1 if hit_zero else 0)
        if hit_zero:                         # scanctrl->address: the last entry visited
            self.scan_address = int(PageTable.addr(int(eslot[stop - 1])))
        else:                                # ... the last PTE of the last populated table
            last = int(populated.max())
            self.scan_address = min(vma.end, int(PageTable.addr((last + 1) << 9))) - PAGE_SIZE
        v2 = self.version in ("v1", "v2")          # V1 has V2's accessed rule
        # page_idle_clear_pte_refs(): V2 for every present entry, V3 for valid ones
        clear = visited & pte_young if v2 else visited & valid & pte_young
        nid = pm.node_of(heads)
        idle_before = self.idle.get(heads)
        young_before = k.page_young.get(heads)
        young_now = young_before | clear
        if v2:
            idle_now = idle_before & ~clear
            lru = (flags & PG_lru) != 0
            acc = tested & lru & (~idle_now | young_now | ((flags & PG_referenced) != 0) |
                                  pte_young)
            set_idle = tested & lru
        else:
            # prev_idle = idle; set idle; a young entry clears it again
            idle_now = ~clear
            lru = (flags & PG_lru) != 0
            acc = tested & lru & ~idle_now & ~idle_before & \
                (young_now | ((flags & PG_referenced) != 0))
            set_idle = visited & valid
        # write the folio flags back (young stays until reclaim's folio_referenced takes it)
        upd = clear | set_idle
        if upd.any():
            # V2 sets idle last; V3 sets it before clearing the refs, which may clear it again
            new_idle = np.where(set_idle, True, idle_now) if v2 else idle_now
            self.idle.set(heads[upd], new_idle[upd])
            folio_set_young(k, heads[clear])
        # clear the A bits the walk found set
        cp, cs = clear & is_pmd, clear & ~is_pmd
        pt.pmd[eslot[cp] >> 9] &= ~_PAGE_ACCESSED
        pt.pte[eslot[cs]] &= ~_PAGE_ACCESSED
        np.add.at(scanned, nid[visited & valid], 1)
        np.add.at(accessed, nid[acc], 1)
        toptier = self.toptier[nid]
        k.vmstat.count("nr_kscand_toptier", self.cpu_node, int((tested & lru & toptier).sum()))
        k.vmstat.count("nr_kscand_idlepage", self.cpu_node, int((tested & lru & ~acc).sum()))
        q = acc & ~toptier                               # kscand_eligible_srcnid()
        queued.append(heads[q])
        qslots.append(eslot[q])
        return budget, int(visited.sum()), int(clear.sum())


class KscandMigrator(Daemon):
    """kscand's kmigrated: drains one mm's migration list per cycle, folio by folio."""

    name = "kscand-migrate"

    def __init__(self, scanner: Kscand, sleep_ms: float):
        self.scanner = scanner
        self.period_ns = int(round(float(sleep_ms) * MS))
        if self.period_ns <= 0:
            raise ValueError(f"migrate_sleep_ms must be > 0, got {sleep_ms}")
        self.cursor = 0
        self.promoted_pfns: list[np.ndarray] = []
        self.promoted_ns: list[np.ndarray] = []
        self.stats = {"cycles": 0, "tried": 0, "migrated": 0, "not_mapped": 0, "invalid": 0,
                      "non_lru": 0, "not_hot": 0, "ineligible_src": 0, "same_node": 0,
                      "not_migrated": 0}

    def run(self, engine) -> bool:
        """Drain the next mm's list. Only the folios this kthread's CPU can migrate before
        its work would land early are taken (``engine.affordable``); the rest stay queued at
        the head of the list and the migrator yields, to resume on the same mm when its CPU
        is free (the engine's CPU rule, sim/engine.py ``Daemon``)."""
        s = self.scanner
        self.stats["cycles"] += 1
        if s.version == "v1":
            return self.run_global(engine)
        n = len(s.slots)
        for step in range(n):
            at = (self.cursor + step) % n
            slot = s.slots[at]
            if slot.list_heads:
                heads = np.concatenate(slot.list_heads)
                slots = np.concatenate(slot.list_slots)
                take = engine.affordable(engine.kernel.pm.folio_nr_pages(heads))
                slot.list_heads[:] = [heads[take:]] if take < heads.size else []
                slot.list_slots[:] = [slots[take:]] if take < heads.size else []
                more = take < heads.size
                self.cursor = at if more else (at + 1) % max(n, 1)
                self.migrate_mm(engine, slot, heads[:take], slots[:take])
                return more
        return False

    def run_global(self, engine) -> bool:
        """V1 kmmscand_migrate_folio(): drain the one global list in order, across mms, each
        folio to its mm's target node. As in ``run``, only what this kthread's CPU affords is
        taken; the rest stays at the head of the list and the migrator yields."""
        s = self.scanner
        if not s.global_list:
            return False
        nr = np.concatenate([engine.kernel.pm.folio_nr_pages(h) for _, h, _ in s.global_list])
        left = engine.affordable(nr)
        rest = []
        for slot, heads, slots in s.global_list:
            take = min(left, heads.size)
            left -= take
            if take:
                self.migrate_mm(engine, slot, heads[:take], slots[:take], recheck_hot=False)
            if take < heads.size:
                rest.append((slot, heads[take:], slots[take:]))
        s.global_list = rest
        return bool(rest)

    def migrate_mm(self, engine, slot: MmSlot, heads, slots, recheck_hot: bool = True) -> None:
        """kmigrated_migrate_mm(): kmigrated_promote_folio() on each queued folio in order
        (V1's kmmscand_promote_folio() has no hotness re-check: ``recheck_hot=False``)."""
        k, mm = engine.kernel, slot.mm
        pm, pt, s = k.pm, mm.pt, self.scanner
        dest = slot.target_node
        self.stats["tried"] += int(heads.size)
        cur = pt.translate_slots(slots)
        cur_head = np.where(cur >= 0, pm.folio_head(np.maximum(cur, 0)), -1)
        ok = cur_head == heads                 # the folio is still the one mapped there
        self.stats["not_mapped"] += int((~ok).sum())
        h = np.where(ok, heads, 0)
        flags = pm.flags[h]
        valid = ok & ((flags & PG_unevictable) == 0)
        valid[valid] = ~k.folio_mapped_shared(heads[valid])
        self.stats["invalid"] += int((ok & ~valid).sum())
        lru = valid & ((flags & PG_lru) != 0)
        self.stats["non_lru"] += int((valid & ~lru).sum())
        hot = lru.copy()
        if lru.any() and recheck_hot:
            hot[lru] = self.is_hot_page(k, heads[lru])
        self.stats["not_hot"] += int((lru & ~hot).sum())
        src = pm.node_of(h)
        elig = hot & ~s.toptier[src]
        self.stats["ineligible_src"] += int((hot & ~elig).sum())
        other = elig & (src != dest)
        self.stats["same_node"] += int((elig & ~other).sum())
        cand = other & (pt.pmd[slots >> 9] != 0)
        _, first = np.unique(np.where(cand, heads, -1), return_index=True)
        dup = np.ones(heads.size, bool)
        dup[first] = False
        cand &= ~dup                            # a folio queued twice moves once
        # migrate_misplaced_folio_prepare() (no VMA: no exec-shared test; no dirty page
        # cache; a balanced target, else kswapd is woken) and migrate_misplaced_folio(), one
        # folio after the other; numa_pages_migrated and pgpromote_success are counted there
        moved = np.zeros(heads.size, bool)
        if cand.any():
            moved[cand] = migrate_misplaced_folios_one_by_one(k, heads[cand], dest)
            self.stats["not_migrated"] += int((cand & ~moved).sum())
            self.promoted_pfns.append(heads[moved])
            self.promoted_ns.append(np.full(int(moved.sum()), k.clock_ns, np.int64))
        self.stats["migrated"] += int(moved.sum())
        k.vmstat.count("nr_kscand_migrated", s.cpu_node, int(moved.sum()))
        k.vmstat.count("nr_kscand_migrate_failed", s.cpu_node, int((~moved).sum()))

    @staticmethod
    def is_hot_page(k, heads) -> np.ndarray:
        """is_hot_page(): the folio's MGLRU generation is active (max_seq or max_seq - 1);
        on the classic LRU, folio_test_active()."""
        from ..mm.classic_lru import lru_gen_enabled

        pm = k.pm
        if not lru_gen_enabled(k):
            return (pm.flags[heads] & PG_active) != 0
        out = np.zeros(heads.size, bool)
        gens = folio_lru_gen(pm, heads)
        key = pm.memcg[heads].astype(np.int64) * 1024 + pm.node_of(heads)
        lvs = {(lv.memcg.id, lv.nid): lv for lv in k.lruvecs()}
        for kk in unique(key):
            sel = key == kk
            lv = lvs.get((int(kk) // 1024, int(kk) % 1024))
            if lv is not None:
                out[sel] = lru_gen_is_active(lv, gens[sel]) & (gens[sel] >= 0)
        return out


# ---- registration -------------------------------------------------------------------------
PARAMS = {"scan_sleep_ms": False, "migrate_sleep_ms": False, "mms_to_scan": False,
          "scan_period_ms": False, "scan_size_mb": False, "scan_delay_ms": False,
          "target_node": False, "version": False, "honor_mempolicy": False}


def _params(component, kernel) -> dict:
    component.check_keys(PARAMS)
    p, c, f = component.params, component.checker(), component.field_path
    out = {}
    for key in ("scan_sleep_ms", "migrate_sleep_ms"):
        if key not in p:                 # the version's default (Kscand.__init__)
            continue
        v = c.number_in(p[key], f(key), 0, 1e9)
        if v <= 0:
            c.fail(f(key), f"expected a number > 0, got {v}")
        out[key] = v
    out["mms_to_scan"] = c.int_at_least(p.get("mms_to_scan", MMS_TO_SCAN), f("mms_to_scan"), 1)
    out["scan_period_ms"] = c.int_at_least(p.get("scan_period_ms", SCAN_PERIOD_MS),
                                           f("scan_period_ms"), 0)
    out["scan_size_mb"] = c.int_at_least(p.get("scan_size_mb", SCAN_SIZE >> 20),
                                         f("scan_size_mb"), 1)
    out["scan_delay_ms"] = c.int_at_least(p.get("scan_delay_ms", SCAN_DELAY_MS),
                                          f("scan_delay_ms"), 0)
    tn = c.int_at_least(p.get("target_node", DEFAULT_TARGET_NODE), f("target_node"), 0)
    if tn not in kernel.machine.toptier_nodes:
        c.fail(f("target_node"), f"node {tn} is not a toptier node (toptier: "
                                 f"{list(kernel.machine.toptier_nodes)}; EINVAL)")
    out["target_node"] = tn
    out["version"] = c.choice(p.get("version", DEFAULT_VERSION), f("version"), tuple(VERSIONS))
    out["honor_mempolicy"] = c.boolean(p.get("honor_mempolicy", False), f("honor_mempolicy"))
    return out


@register_detector("kscand")
def make_kscand(component, kernel, costs, promoter):
    scanner = Kscand(costs=costs, **_params(component, kernel))
    return [scanner, scanner.migrator]
