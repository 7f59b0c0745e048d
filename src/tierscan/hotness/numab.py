"""NUMA balancing in memory-tiering mode (kernel.numa_balancing = 2, "NUMAB2"), promotion-spec
§3; with pghot, its hint faults as a promotion source (§1.2). Registered as detectors
``numab2`` (upstream: promote in the faulting thread) and ``numab2-pghot`` (report each hint
fault to the promotion engine as ``record_access(head, cpu node, HINT_FAULT, jiffies)``).

Scanning (§3.2, task_tick_numa -> task_numa_work -> change_prot_numa). Every thread group is a
task group sharing one mm. Each thread has a ``node_stamp`` and a ``numa_scan_period`` compared
with its CPU runtime; the threads of a group run all the time they are not finished, so their
runtime is the simulated time. A thread whose runtime passes ``node_stamp + period`` advances
its stamp by the period (the first time, if its stamp is still 0, its period becomes
``task_scan_start()``) and, if ``jiffies >= mm.numa_next_scan``, runs task_numa_work: the first
such thread sets ``numa_next_scan = now + its period``, adds 2 ticks and 32x its scan time to
its own stamp (the 3% overhead cap), and marks PROT_NONE, from ``numa_scan_offset``, up to
``scan_size`` (256 MB) of address space holding a markable page, or up to 8x that of address
space without one, in 2 MiB-aligned chunks; it wraps at the end and bumps ``numa_scan_seq``.
VMA filters: not migratable, hugetlb or MIXEDMAP, read-only file mappings, inaccessible
mappings, VMAs newer than ``scan_delay`` (after the first sequence), VMAs already scanned this
sequence, and the per-VMA activity filter (§3.2 step 4; "this PID faulted here" is "a thread of
this mm took a hint fault in this VMA in the last two 4 x scan_delay windows"). In tiering mode
only slow-tier folios are marked (mm/memory.py change_prot_numa), and marking stamps the
folio's access time. A fault that leaves its folio on the slow tier skips task_numa_fault's
statistics in this mode (§3.2 "tiering-only caveat"); one that promotes it (or, with pghot,
reports it) passes the toptier target and, once per scan sequence, sets the period to
min(task_scan_max(), 2 x period), which is shorter when task_scan_max() is (see
task_numa_fault). Until then the period keeps the value
init_numa_balancing() and the first expiry gave it. init_numa_balancing() sets every task's
period to ``scan_delay`` and its ``node_stamp`` to 0, except that a thread created with
clone(CLONE_VM) gets a staggered, nonzero stamp, min(task_scan_max(parent), parent period *
mm_users ms) + 2 ticks. Only a task whose stamp is still 0 at its first expiry switches to
task_scan_start() = max(1000 ms / (2560 MB / scan_size), scan_period_min / ceil(RSS /
scan_size)) (100 ms from 2.5 GiB of RSS up). So a process's main thread scans every ~100 ms of
its runtime, while worker threads keep the 1000-ms scan_delay: with the usual harness, whose
main thread only waits for its workers (``main_thread_runs = false``, the default), the mm is
scanned 256 MB per second. The pghot v3 Mode 3 count supports this: upstream NUMAB2 promoted
3,754 THPs in 29.8 s, 7.3 GiB, i.e. 252 MiB per second of run (promotion-spec §7.1), where a
100-ms period would have covered the whole 64 GiB. [fair.c init_numa_balancing/task_tick_numa,
read in the public corpus.]

Faults (§3.3). The hook ``kernel.numa_hint_fault_hook`` receives the pfns of each batch of hint
faults (mm/memory.py counts numa_hint_faults and _local). The default MOF policy targets the
faulting CPU's node; a slow-tier folio there goes to should_numa_migrate_memory's tiering
branch, per destination node: free-space bypass (§3.4) -> 60-s threshold adjustment -> hint
fault latency (fault ms - access-time stamp, modulo the stamp's width, the stamp swapped to
now) below the threshold -> 1-s candidate rate limit. Admitted folios go through
migrate_misplaced_folio_prepare (balanced destination: free > HIGH + nr, else kswapd is
woken; no dirty page-cache folios; on an LRU) and are migrated synchronously: while a group's
accesses run, the engine charges that group for the migration (its threads stall).

Costs. task_numa_work runs in the task's context in the kernel (task_work on return to user).
By default (``scan_cost = "daemon"``) its CPU time is charged to this detector, reported as
detector overhead, so the runs compare with the kthread detectors; ``scan_cost = "task"``
charges it to the group instead (one thread does the work: the group's clock, the mean of its
threads, stalls by cost / threads). Either way the time feeds the 32x overhead throttle.
The cost is ``numa_scan_pte_ns`` per entry made PROT_NONE plus ``scan_pte_ns`` per present
entry looked at.

docs/numab-kscand.md lists the knobs, defaults and simplifications.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..arrays import first_occurrences, unique
from ..jiffies import UINT_MASK, jiffies_to_msecs, time_after, time_before
from ..mm.constants import PAGE_SHIFT, PG_anon, PMD_SIZE
from ..mm.memory import change_prot_numa
from ..mm.mempolicy import get_vma_policy, mpol_misplaced
from ..mm.migrate import migrate_misplaced_folios_one_by_one
from ..mm.physmem import WMARK_PROMO
from ..mm.process import (
    VM_EXEC, VM_HUGETLB, VM_IO, VM_MIXEDMAP, VM_PFNMAP, VM_READ, VM_WRITE,
)
from ..mm.vmstat import register_vmstat
from ..promote.base import HINT_FAULT, adjusted_threshold
from ..sim.engine import MS
from ..sim.plugins import register_detector
from .base import Detector
from .numab_classic import (
    NUMA_BALANCING_MEMORY_TIERING, NUMA_BALANCING_NORMAL, ClassicBalancing,
)

# debugfs /sys/kernel/debug/sched/numa_balancing/ and sysctl defaults (§3.1)
SCAN_PERIOD_MIN_MS = 1000
SCAN_PERIOD_MAX_MS = 60000
SCAN_SIZE_MB = 256
SCAN_DELAY_MS = 1000
HOT_THRESHOLD_MS = 1000
PROMOTE_RATE_LIMIT_MBPS = 65536
MAX_SCAN_WINDOW_MB = 2560                 # task_scan_min(): 100 ms floor at 256 MB
NUMA_MIGRATION_ADJUST_STEPS = 16          # threshold unit = 2 * ref / 16 (125 ms at 1000)
TICK_NSEC = 1_000_000                     # HZ = 1000
# PAGE_ACCESS_TIME_MASK: the access time lives in last_cpupid's bits (LAST_CPUPID_SHIFT =
# 8 PID bits + NR_CPUS_BITS). 21 bits fits NR_CPUS = 8192; a 524-s stamp never wraps in runs
# of minutes either way. [K]
ACCESS_TIME_BITS = 21
SCAN_COST = ("daemon", "task")
# Huang Ying's memory-tiering series, one step per patch, each on top of the previous
# (promotion-spec §3, [S26]; the step contents are from kernel knowledge of the 5.18-6.0
# patches, not re-read against the posted diffs): "base" promotes every faulting slow-tier
# folio (5.18); "hot-selection" adds the free-space bypass and the hint-fault-latency test
# against hot_threshold_ms; "rate-limit" adds the 1-s candidate rate limit; "auto-threshold"
# adds the 60-s threshold adjustment (upstream since 6.0, the default).
TIERING_STEPS = ("base", "hot-selection", "rate-limit", "auto-threshold")
# kernel.numa_balancing: 1 = NORMAL (classic, numab_classic.py), 2 = MEMORY_TIERING, 3 = both
NUMA_BALANCING_MODES = (1, 2, 3)

register_vmstat("pgpromote_candidate_nrl")


class FolioField:
    """A per-folio value kept, like a folio flag, by the folio's identity: (mm, page slot) for
    anon memory, (file, offset) for the page cache. Migration keeps the identity (it copies
    mapping and index), so the value follows the folio to its new pfn as the kernel's
    folio_migrate_flags() copies last_cpupid and the idle/young flags."""

    def __init__(self, kernel, dtype, default):
        self.kernel, self.dtype, self.default = kernel, np.dtype(dtype), default
        self._arrays: dict[int, np.ndarray] = {}

    def _keys(self, heads):
        pm = self.kernel.pm
        owner = pm.mapping[heads].astype(np.int64)
        owner = np.where((pm.flags[heads] & PG_anon) != 0, owner, -owner)
        return owner, pm.index[heads].astype(np.int64)

    @staticmethod
    def _groups(owner):
        if owner.size == 0:
            return
        lo, hi = int(owner.min()), int(owner.max())
        if lo == hi:
            yield lo, np.ones(owner.size, bool)
            return
        for o in unique(owner):
            yield int(o), owner == o

    def get(self, heads) -> np.ndarray:
        heads = np.asarray(heads, np.int64)
        out = np.full(heads.size, self.default, self.dtype)
        owner, idx = self._keys(heads)
        for o, sel in self._groups(owner):
            arr = self._arrays.get(o)
            if arr is None:
                continue
            i = idx[sel]
            vals = np.full(i.size, self.default, self.dtype)
            inside = i < arr.size
            vals[inside] = arr[i[inside]]
            out[sel] = vals
        return out

    def set(self, heads, values) -> None:
        heads = np.asarray(heads, np.int64)
        values = np.broadcast_to(np.asarray(values, self.dtype), heads.shape)
        owner, idx = self._keys(heads)
        for o, sel in self._groups(owner):
            i = idx[sel]
            arr = self._arrays.get(o)
            need = int(i.max()) + 1
            if arr is None or arr.size < need:
                new = np.full(max(need, 2 * (0 if arr is None else arr.size)), self.default,
                              self.dtype)
                if arr is not None:
                    new[:arr.size] = arr
                arr = self._arrays[o] = new
            arr[i] = values[sel]


# ---- per destination node: the promotion state of §1.5/§3.4 --------------------------------
def toptier_mask(kernel) -> np.ndarray:
    m = np.zeros(kernel.machine.nr_nodes, bool)
    m[list(kernel.machine.toptier_nodes)] = True
    return m


def pgdat_free_space_enough(kernel, nid: int, nr_free=None) -> bool:
    """pgdat_free_space_enough() (§3.4): free pages above WMARK_PROMO + max(1 GiB,
    present/16) (one zone per node)."""
    pm = kernel.pm
    free = int(pm.node_free[nid]) if nr_free is None else int(nr_free)
    enough = max(1 << (30 - PAGE_SHIFT), int(pm.node_present[nid]) // 16)
    return free > int(pm.watermarks[nid, WMARK_PROMO]) + enough


@dataclass
class PromotionState:
    """The pgdat fields of §3.4, one entry per node: 1-s rate-limit window and 60-s threshold
    window (ms), the candidate snapshots, and nbp_threshold (0 = use the default)."""

    nr_nodes: int
    nbp_rl_start: np.ndarray = field(init=False)
    nbp_rl_nr_cand: np.ndarray = field(init=False)
    nbp_th_start: np.ndarray = field(init=False)
    nbp_th_nr_cand: np.ndarray = field(init=False)
    nbp_threshold: np.ndarray = field(init=False)

    def __post_init__(self):
        for name in ("nbp_rl_start", "nbp_rl_nr_cand", "nbp_th_start", "nbp_th_nr_cand",
                     "nbp_threshold"):
            setattr(self, name, np.zeros(self.nr_nodes, np.int64))


# ---- per task and per VMA state ---------------------------------------------------------
@dataclass
class VmaNumab:
    """vma->numab_state."""

    start_scan_seq: int
    next_scan: int               # jiffies
    pids_active_reset: int       # jiffies
    prev_scan_seq: int
    pids_active: list = field(default_factory=lambda: [False, False])


@dataclass
class MmNuma:
    """The mm_struct's NUMA-balancing fields, shared by every thread group of the mm, and the
    VMAs' numab_state (per VMA, so per mm too)."""

    numa_next_scan: int          # jiffies
    numa_scan_offset: int = 0    # address
    numa_scan_seq: int = 0
    vmas: dict = field(default_factory=dict)
    nr_threads: int = 0          # the threads of all its groups (vma_is_accessed's bound)


def _mm_field(name: str):
    """A TaskNuma attribute that is its mm's (MmNuma), read and written through."""
    return property(lambda t: getattr(t.shared, name),
                    lambda t, v: setattr(t.shared, name, v))


@dataclass
class TaskNuma:
    """One thread group: its threads' node_stamp/numa_scan_period (task_struct fields) and,
    through ``shared``, its mm's scan state (mm_struct fields; several groups of one mm share
    it)."""

    group: object
    node_stamp: np.ndarray       # ns of runtime, per thread
    scan_period: np.ndarray      # ms, per thread
    shared: MmNuma
    placement_seq: int = 0       # p->numa_scan_seq: the sequence task_numa_placement last saw
    passes: int = 0

    numa_next_scan = _mm_field("numa_next_scan")
    numa_scan_offset = _mm_field("numa_scan_offset")
    numa_scan_seq = _mm_field("numa_scan_seq")
    vmas = _mm_field("vmas")

    @property
    def mm(self):
        return self.group.mm


class NumaBalancing(Detector):
    """NUMAB2 (``pghot=False``) or NUMAB2 as a pghot source (``pghot=True``)."""

    name = "numab2"
    kthread = False     # task_numa_work runs in each task's own context, throttled by the
    #                     kernel's 32x rule (node_stamp), not by one kthread's CPU

    def __init__(self, promoter=None, *, pghot: bool = False, costs=None,
                 scan_period_min_ms: int = SCAN_PERIOD_MIN_MS,
                 scan_period_max_ms: int = SCAN_PERIOD_MAX_MS,
                 scan_size_mb: int = SCAN_SIZE_MB, scan_delay_ms: int = SCAN_DELAY_MS,
                 hot_threshold_ms: int = HOT_THRESHOLD_MS,
                 promote_rate_limit_mbps: int = PROMOTE_RATE_LIMIT_MBPS,
                 access_time_bits: int = ACCESS_TIME_BITS, tick_ms: float = 10.0,
                 scan_cost: str = "daemon", honor_mempolicy: bool = False,
                 main_thread_runs: bool = False, tiering_step: str = "auto-threshold",
                 mode: int = 2):
        super().__init__(promoter)
        if mode not in NUMA_BALANCING_MODES:
            raise ValueError(f"mode must be one of {NUMA_BALANCING_MODES}, got {mode!r}")
        if pghot and not mode & NUMA_BALANCING_MEMORY_TIERING:
            raise ValueError("NUMA balancing reports to pghot only in tiering mode (2 or 3)")
        self.mode = int(mode)       # kernel.numa_balancing
        if pghot and promoter is None:
            raise ValueError("numab2-pghot reports to a promotion engine; none was given")
        if scan_cost not in SCAN_COST:
            raise ValueError(f"scan_cost must be one of {SCAN_COST}, got {scan_cost!r}")
        if tiering_step not in TIERING_STEPS:
            raise ValueError(f"tiering_step must be one of {TIERING_STEPS}, got {tiering_step!r}")
        self.step = TIERING_STEPS.index(tiering_step)      # how far the series goes
        for key, v, lo in (("scan_period_min_ms", scan_period_min_ms, 1),
                           ("scan_period_max_ms", scan_period_max_ms, 1),
                           ("scan_size_mb", scan_size_mb, 1), ("scan_delay_ms", scan_delay_ms, 0),
                           ("hot_threshold_ms", hot_threshold_ms, 1),
                           ("promote_rate_limit_mbps", promote_rate_limit_mbps, 0),
                           ("access_time_bits", access_time_bits, 8)):
            if int(v) != v or int(v) < lo:
                raise ValueError(f"{key} must be an integer >= {lo}, got {v}")
        self.pghot = bool(pghot)
        self.name = f"numab{self.mode}" + ("-pghot" if self.pghot else "")
        self.costs = costs
        self.scan_period_min_ms, self.scan_period_max_ms = int(scan_period_min_ms), \
            int(scan_period_max_ms)
        self.scan_size_mb, self.scan_delay_ms = int(scan_size_mb), int(scan_delay_ms)
        self.hot_threshold_ms = int(hot_threshold_ms)
        self.rate_limit_mbps = int(promote_rate_limit_mbps)
        self.time_mask = (1 << int(access_time_bits)) - 1
        self.period_ns = int(round(float(tick_ms) * MS))
        if self.period_ns <= 0:
            raise ValueError(f"tick_ms must be > 0, got {tick_ms}")
        self.scan_cost, self.honor_mempolicy = scan_cost, bool(honor_mempolicy)
        self.main_thread_runs = bool(main_thread_runs)
        self.kernel = None
        self.engine = None
        self.classic = None         # numab_classic.ClassicBalancing in modes 1 and 3
        self.tasks: list[TaskNuma] = []
        self.promoted_pfns: list[np.ndarray] = []   # pfns before migration
        self.promoted_ns: list[np.ndarray] = []
        self.stats = {"passes": 0, "pte_updates": 0, "huge_updates": 0, "entries_scanned": 0,
                      "faults": 0, "candidates": 0, "free_space": 0, "latency_refused": 0,
                      "rate_limited": 0, "not_migrated": 0,
                      "promoted": 0, "reported": 0, "latency_sum_ms": 0, "latency_n": 0,
                      "pids_forced": 0}

    # ---- knobs derived as the kernel derives them -----------------------------------------
    @property
    def rate_limit_pages(self) -> int:
        """numa_balancing_promote_rate_limit_MBps << (20 - PAGE_SHIFT): pages per second."""
        return self.rate_limit_mbps << (20 - PAGE_SHIFT)

    @property
    def scan_size_pages(self) -> int:
        return self.scan_size_mb << (20 - PAGE_SHIFT)

    def task_nr_scan_windows(self, rss_pages: int) -> int:
        """task_nr_scan_windows(): RSS in scan_size windows, rounded up (at least 1)."""
        n = self.scan_size_pages
        rss = rss_pages or n
        return -(-rss // n)

    def task_scan_min(self, rss_pages: int) -> int:
        """task_scan_min(): max(1000 / (MAX_SCAN_WINDOW / scan_size), period_min / windows)."""
        windows = MAX_SCAN_WINDOW_MB // self.scan_size_mb if \
            self.scan_size_mb < MAX_SCAN_WINDOW_MB else 1
        floor = 1000 // windows
        return max(floor, self.scan_period_min_ms // self.task_nr_scan_windows(rss_pages))

    def task_scan_start(self, rss_pages: int) -> int:
        """task_scan_start() without a numa group: task_scan_min()."""
        return self.task_scan_min(rss_pages)

    def task_scan_max(self, rss_pages: int) -> int:
        return max(self.task_scan_min(rss_pages),
                   self.scan_period_max_ms // self.task_nr_scan_windows(rss_pages))

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self, engine) -> None:
        k = engine.kernel
        if k.numa_hint_fault_hook is not None:
            raise ValueError("another NUMA-balancing detector already handles hint faults")
        self.kernel, self.engine = k, engine
        if not k.sysfs["kernel/numa_balancing"]:   # sysctl kernel.numa_balancing = mode
            k.sysfs["kernel/numa_balancing"] = self.mode
        self.toptier = toptier_mask(k)
        self.state = PromotionState(k.machine.nr_nodes)
        self.access_time = FolioField(k, np.int64, self.time_mask)   # cpupid -1: all ones
        j = k.jiffies
        shared: dict[int, MmNuma] = {}
        for g in engine.groups:
            mmn = shared.get(g.mm.id)
            if mmn is None:
                mmn = shared[g.mm.id] = MmNuma(j + self.scan_delay_ms)   # mm->numa_next_scan
            # a later group's threads are further clones of the process's main thread
            stamps = self.init_numa_balancing(g.threads, self._rss(g.mm), mmn.nr_threads)
            mmn.nr_threads += g.threads
            self.tasks.append(TaskNuma(
                g, stamps, np.full(g.threads, self.scan_delay_ms, np.int64),  # numa_scan_period
                mmn))
        self.by_mm = {}                 # mm id -> its groups' TaskNuma
        for t in self.tasks:
            self.by_mm.setdefault(t.mm.id, []).append(t)
        if self.mode & NUMA_BALANCING_NORMAL:
            self.classic = ClassicBalancing(self)
        k.numa_hint_fault_hook = self.hint_fault

    def run(self, engine) -> None:
        for t in self.tasks:
            if t.group.finished_ns is not None:
                continue                  # the task exited
            self.task_tick_numa(engine, t)

    def init_numa_balancing(self, threads: int, rss_pages: int,
                            made_before: int = 0) -> np.ndarray:
        """The running threads' initial node_stamp (ns), per init_numa_balancing() (§3.2).

        The main thread (mm_users == 1) starts at 0. Each worker is a clone(CLONE_VM) of the
        main thread, made while ``mm_users`` = 1 + the workers already made, and gets
        min(task_scan_max(parent), parent period * mm_users * NSEC_PER_MSEC) + 2 * TICK_NSEC.
        The kernel compares task_scan_max()'s milliseconds with nanoseconds there, so the min is
        a few microseconds; a 2021 patch (Miaohe Lin, "the unit of task_scan_max() is ms while
        ns is expected") multiplies it by NSEC_PER_MSEC. Whether it was merged is unverified;
        the fair.c copies read keep the mixed units, which this follows. Either way the stamp
        is nonzero, which is what keeps a worker's period at scan_delay.

        ``made_before`` threads of the mm exist already (earlier thread groups of the same
        process): the main thread is among them, and every thread here is a clone."""
        first = 1 if self.main_thread_runs and made_before == 0 else 0
        mm_users = 1 + made_before - (1 if self.main_thread_runs and made_before else 0) + \
            np.arange(threads - first, dtype=np.int64)               # at each clone
        delay = np.minimum(self.task_scan_max(rss_pages),              # ms read as ns [sic]
                           self.scan_delay_ms * mm_users * MS) + 2 * TICK_NSEC
        return np.concatenate([np.zeros(first, np.int64), delay]).astype(np.int64)

    # ---- scanning -------------------------------------------------------------------------
    def task_tick_numa(self, engine, t: TaskNuma) -> None:
        """task_tick_numa() for every thread of the group (their runtime is the clock)."""
        runtime = engine.now
        period = t.scan_period * MS
        fire = runtime > t.node_stamp + period
        if not fire.any():
            return
        first = fire & (t.node_stamp == 0)
        if first.any():
            t.scan_period[first] = self.task_scan_start(self._rss(t.mm))
        t.node_stamp[fire] += period[fire]
        if time_before(self.kernel.jiffies, t.numa_next_scan):
            return
        for thread in np.flatnonzero(fire):
            if self.task_numa_work(engine, t, int(thread)):
                break                     # the others find numa_next_scan in the future

    @staticmethod
    def _rss(mm) -> int:
        r = mm.rss()
        return r["anon"] + r["file"]

    def task_numa_work(self, engine, t: TaskNuma, thread: int) -> bool:
        """task_numa_work() by ``thread``; returns whether it scanned (won numa_next_scan)."""
        k = self.kernel
        now = k.jiffies
        if time_before(now, t.numa_next_scan):
            return False
        t.numa_next_scan = now + int(t.scan_period[thread])
        t.node_stamp[thread] += 2 * TICK_NSEC
        updated, scanned = self._scan(t, now)
        c = self.costs or engine.costs
        cost = updated * c.numa_scan_pte_ns + scanned * c.scan_pte_ns
        if self.scan_cost == "daemon":
            engine.charge(cost)
        else:
            t.group.stall_ns += cost / t.group.threads
        t.node_stamp[thread] += int(32 * cost)
        t.passes += 1
        self.stats["passes"] += 1
        return True

    def _vma_skipped(self, vma) -> bool:
        f = vma.flags
        if f & (VM_IO | VM_PFNMAP | VM_HUGETLB | VM_MIXEDMAP):
            return True           # !vma_migratable(), hugetlb, MIXEDMAP
        if self.honor_mempolicy and not get_vma_policy(vma).mof:
            return True           # !vma_policy_mof(): the default policy or MPOL_F_NUMA_BALANCING
        if vma.file is not None and (f & (VM_READ | VM_WRITE)) == VM_READ:
            return True           # read-only file mapping (shared libraries)
        return not (f & (VM_READ | VM_WRITE | VM_EXEC))   # !vma_is_accessible()

    def _vma_is_accessed(self, t: TaskNuma, vma, st: VmaNumab) -> bool:
        """vma_is_accessed(): the first two sequences, recent hint faults here, a scan already
        inside the VMA, or not scanned for more sequences than the mm has threads."""
        if t.numa_scan_seq - st.start_scan_seq < 2:
            return True
        if st.pids_active[0] or st.pids_active[1]:
            return True
        if t.numa_scan_offset > vma.start:
            return True
        return t.numa_scan_seq > st.prev_scan_seq + t.shared.nr_threads

    def _scan(self, t: TaskNuma, now: int) -> tuple[int, int]:
        """The VMA loop of task_numa_work(). Returns (entries made PROT_NONE, entries seen).

        With the ``vma_pids_forced`` retry of kernel/sched/fair.c (6.8+): if the loop reaches
        the last VMA having skipped one because vma_is_accessed() said no, it starts again at
        ``numa_scan_offset`` with the test switched off and scans the first VMA it can, then
        stops (one forced VMA per pass); the budgets carry over."""
        mm = t.mm
        pages = self.scan_size_pages
        virtpages = pages * 8
        vmas = list(mm.vmas)            # sorted by start
        updated = scanned = 0
        reset_period = 4 * self.scan_delay_ms          # VMA_PID_RESET_PERIOD
        stopped = False                 # out with a VMA in hand: resume at ``start``
        pids_skipped = pids_forced = False
        while True:                     # retry_pids:
            start = t.numa_scan_offset
            i = next((n for n, v in enumerate(vmas) if v.end > start), None)
            if i is None:
                self._reset_ptenuma_scan(t)
                start, i = 0, 0
            while i < len(vmas):
                vma = vmas[i]
                i += 1
                if self._vma_skipped(vma):
                    continue
                st = t.vmas.get(vma)
                if st is None:
                    nxt = now + self.scan_delay_ms
                    st = t.vmas[vma] = VmaNumab(t.numa_scan_seq, nxt, nxt + reset_period,
                                                t.numa_scan_seq - 1)
                if t.numa_scan_seq and time_before(now, st.next_scan):
                    continue              # a new VMA of a long-lived task waits scan_delay
                if t.numa_scan_seq and time_after(now, st.pids_active_reset):
                    st.pids_active_reset += reset_period
                    st.pids_active = [st.pids_active[1], False]
                if st.prev_scan_seq == t.numa_scan_seq:
                    t.numa_scan_offset = vma.end
                    continue
                if not pids_forced and not self._vma_is_accessed(t, vma, st):
                    pids_skipped = True
                    continue
                while True:
                    start = max(start, vma.start)
                    end = min(-(-(start + (pages << PAGE_SHIFT)) // PMD_SIZE) * PMD_SIZE,
                              vma.end)
                    res = change_prot_numa(vma, start, end, skip_toptier=not (
                        self.mode & NUMA_BALANCING_NORMAL))
                    self._stamp(res.heads, now)
                    updated += res.nr_updated - res.nr_huge * 511   # entries, a THP is one
                    scanned += res.nr_scanned
                    self.stats["pte_updates"] += res.nr_updated
                    self.stats["huge_updates"] += res.nr_huge
                    if res.nr_updated:
                        pages -= (end - start) >> PAGE_SHIFT
                    virtpages -= (end - start) >> PAGE_SHIFT
                    start = end
                    if pages <= 0 or virtpages <= 0:
                        stopped = True
                        break
                    if end == vma.end:
                        break
                if stopped:
                    break
                st.prev_scan_seq = t.numa_scan_seq   # this VMA is done for this sequence
                if pids_forced:
                    self.stats["pids_forced"] += 1
                    stopped = True        # only one forced VMA a pass; vma is still set
                    break
            if stopped or pids_forced or not pids_skipped:
                break
            pids_forced = True
        if stopped:
            t.numa_scan_offset = start
        else:
            self._reset_ptenuma_scan(t)
        self.stats["entries_scanned"] += scanned
        return updated, scanned

    @staticmethod
    def _reset_ptenuma_scan(t: TaskNuma) -> None:
        t.numa_scan_seq += 1
        t.numa_scan_offset = 0

    def _stamp(self, heads, now_ms: int) -> None:
        """folio_xchg_access_time() at marking, for slow-tier folios (folio_use_access_time:
        only with the tiering bit)."""
        if heads.size == 0 or not self.mode & NUMA_BALANCING_MEMORY_TIERING:
            return
        slow = ~self.toptier[self.kernel.pm.node_of(heads)]
        self.access_time.set(heads[slow], now_ms & self.time_mask)

    # ---- the hint-fault path ------------------------------------------------------------
    def hint_fault(self, mm, pfns, writes, cpu_nid) -> None:
        """The rest of do_numa_page()/do_huge_pmd_numa_page() after the entries are restored
        (the kernel's numa_hint_fault_hook)."""
        k = self.kernel
        pm = k.pm
        pfns = np.asarray(pfns, np.int64)
        if pfns.size == 0:
            return
        self.stats["faults"] += int(pfns.size)
        t = self._faulting_task(mm)
        if t is not None:
            self._set_access_pid_bits(t, pfns)
        heads = pm.folio_head(pfns)
        if self.classic is not None:                # modes 1 and 3 (numab_classic.py)
            _, first = np.unique(heads, return_index=True)  # a folio faults once per batch
            first = np.sort(first)
            allowed = None
            if self.honor_mempolicy:                # the policy's target must be this node
                allowed = self._mpol_target(mm, pfns[first], pm.node_of(heads[first]),
                                            int(cpu_nid)) == int(cpu_nid)
            self.classic.hint_fault(t, heads[first], int(cpu_nid), allowed)
            return
        src = pm.node_of(heads)
        dst = int(cpu_nid)              # MOF default policy: the faulting CPU's node
        # the tiering branch: a slow-tier folio whose target is another node with memory
        misplaced = ~self.toptier[src] & (src != dst)
        if self.honor_mempolicy and misplaced.any():
            misplaced &= self._mpol_target(mm, pfns, src, dst) == dst
        heads = first_occurrences(heads[misplaced])     # a folio faults once per batch
        if heads.size == 0:
            return
        if self.pghot:
            self.promoter.record_access(heads, dst, HINT_FAULT, k.jiffies)
            self.stats["reported"] += int(heads.size)
            self.task_numa_fault(t)
        elif self.promote(heads, dst).size:
            self.task_numa_fault(t)

    def _mpol_target(self, mm, pfns, src, dst: int) -> np.ndarray:
        """mpol_misplaced() per faulting page under its VMA's policy (else the faulting
        task's): the node it should go to, -1 where none (mm/mempolicy.py)."""
        pm = self.kernel.pm
        out = np.full(pfns.size, -1, np.int64)
        mapping, index = pm.mapping[pfns], pm.index[pfns].astype(np.int64)
        anon = (pm.flags[pfns] & PG_anon) != 0
        for vma in mm.vmas:
            if vma.file is None:
                hit = anon & (mapping == mm.id) & (index >= vma.start_slot) & \
                    (index < vma.end_slot)
            else:
                hit = ~anon & (mapping == vma.file.id) & (index >= vma.pgoff) & \
                    (index < vma.pgoff + vma.nr_pages)
            if hit.any():
                out[hit] = mpol_misplaced(get_vma_policy(vma), src[hit], dst)
        return out

    def _faulting_task(self, mm) -> TaskNuma | None:
        """The task of ``mm`` taking the fault: the thread group the engine is running (a
        fault comes from its accesses), else the mm's first group."""
        tasks = self.by_mm.get(mm.id)
        if not tasks:
            return None
        cur = self.engine.accounting.current if self.engine is not None else None
        return next((t for t in tasks if t.group is cur), tasks[0])

    def task_numa_fault(self, t: TaskNuma | None) -> None:
        """task_numa_fault() for faults whose ``mem_node`` is the toptier target: a promoted
        folio (upstream: TNF_MIGRATED, nid = target) or any reported one (pghot v3 passes
        target_nid). A fault left on the slow tier returns early in tiering mode (§3.3 step 5),
        so only these faults build statistics; the spec's "period never adapts" (§3.2) holds
        for a task none of whose faults migrate.

        The statistics reach update_task_scan_period() through task_numa_placement(), once
        per scan sequence. Such a fault is always private (a slow-tier folio's last_cpupid
        reads -1: its bits hold the access time) and remote (the folio was on the slow node,
        which the faulting CPU is not on), so local + shared == 0 and the kernel takes its
        "scan slower" branch: period = min(task_scan_max(), period << 1) and
        mm->numa_next_scan = now + period [fair.c, read in the public corpus]. Every thread of
        the group takes it at its first such fault of the sequence; the model applies it to all
        threads at the group's first one (they share the footprint) and ignores
        numa_migrate_retry's up-to-1-s gating of the placement."""
        if t is None or t.numa_scan_seq == t.placement_seq:
            return
        t.placement_seq = t.numa_scan_seq
        cap = self.task_scan_max(self._rss(t.mm))
        t.scan_period = np.minimum(cap, t.scan_period << 1)
        # each thread sets mm->numa_next_scan = now + its period; the last one (a worker) wins
        t.numa_next_scan = self.kernel.jiffies + int(t.scan_period[-1])

    def _set_access_pid_bits(self, t: TaskNuma, pfns) -> None:
        """vma_set_access_pid_bit() for the VMAs the faults hit."""
        if not t.vmas:
            return
        pm = self.kernel.pm
        mapping, index = pm.mapping[pfns], pm.index[pfns].astype(np.int64)
        anon = (pm.flags[pfns] & PG_anon) != 0
        for vma, st in t.vmas.items():
            if vma.file is None:
                hit = anon & (mapping == t.mm.id) & (index >= vma.start_slot) & \
                    (index < vma.end_slot)
            else:
                hit = ~anon & (mapping == vma.file.id) & (index >= vma.pgoff) & \
                    (index < vma.pgoff + vma.nr_pages)
            if hit.any():
                st.pids_active[1] = True

    def promote(self, heads, dst: int) -> np.ndarray:
        """should_numa_migrate_memory()'s tiering branch (§3.3) for each folio in fault order,
        then prepare and migrate the admitted ones. Returns the folios migrated (old pfns)."""
        k, pm, s = self.kernel, self.kernel.pm, self.state
        nr = pm.folio_nr_pages(heads)
        now = jiffies_to_msecs(k.jiffies)           # unsigned int ms
        self.stats["candidates"] += int(heads.size)
        if self.step == 0:                          # "base": every faulting slow-tier folio
            return self.migrate_misplaced(heads, dst)
        # free-space bypass: holds for a prefix of the batch (free only falls as we promote)
        before = int(pm.node_free[dst]) - (np.cumsum(nr) - nr)
        enough = max(1 << (30 - PAGE_SHIFT), int(pm.node_present[dst]) // 16)
        n_fs = int((before > int(pm.watermarks[dst, WMARK_PROMO]) + enough).sum())
        admitted = [heads[:n_fs]]
        if n_fs:
            s.nbp_threshold[dst] = 0
            k.vmstat.count("pgpromote_candidate_nrl", dst, int(nr[:n_fs].sum()))
            self.stats["free_space"] += n_fs
        rest, rnr = heads[n_fs:], nr[n_fs:]
        if rest.size:
            rl = self.rate_limit_pages
            if self.step >= 3:                      # "auto-threshold"
                self.numa_promotion_adjust_threshold(dst, rl, self.hot_threshold_ms)
            th = int(s.nbp_threshold[dst]) or self.hot_threshold_ms
            latency = self.numa_hint_fault_latency(rest, now)
            self.stats["latency_sum_ms"] += int(latency.sum())
            self.stats["latency_n"] += int(latency.size)
            hot = latency < th
            self.stats["latency_refused"] += int((~hot).sum())
            cand, cnr = rest[hot], rnr[hot]
            if cand.size:
                # before "rate-limit" the candidates are still counted (pgpromote_candidate;
                # whether "hot-selection" alone counted them is unverified), never refused
                ok = self.numa_promotion_rate_limit(dst, rl if self.step >= 2 else 1 << 62,
                                                    cnr, now)
                self.stats["rate_limited"] += int((~ok).sum())
                admitted.append(cand[ok])
        admitted = np.concatenate(admitted)
        if admitted.size == 0:
            return admitted
        return self.migrate_misplaced(admitted, dst)

    def migrate_misplaced(self, heads, dst: int) -> np.ndarray:
        """migrate_misplaced_folio_prepare() then migrate_misplaced_folio() for each admitted
        folio in fault order (mm/migrate.py): a balanced destination (free > HIGH + nr, else
        kswapd is woken there), no dirty page-cache folio, on an LRU; the copy runs in the
        faulting task. numa_pages_migrated and pgpromote_success are counted there. Returns
        the old pfns of the folios moved."""
        k = self.kernel
        ok = migrate_misplaced_folios_one_by_one(k, heads, dst)
        self.stats["not_migrated"] += int((~ok).sum())
        self.stats["promoted"] += int(ok.sum())
        old = heads[ok]
        self.promoted_pfns.append(old)
        self.promoted_ns.append(np.full(old.size, k.clock_ns, np.int64))
        return old

    def numa_hint_fault_latency(self, heads, now_ms: int) -> np.ndarray:
        """(now - folio_xchg_access_time(folio, now)) & PAGE_ACCESS_TIME_MASK."""
        last = self.access_time.get(heads)
        self.access_time.set(heads, now_ms & self.time_mask)
        return (now_ms - last) & self.time_mask

    def numa_promotion_adjust_threshold(self, nid: int, rate_limit: int, ref_th: int) -> None:
        """numa_promotion_adjust_threshold(): at most once per scan_period_max (60 s), move
        nbp_threshold one unit towards a candidate rate of rate_limit, with +-10% hysteresis."""
        k, s = self.kernel, self.state
        now = jiffies_to_msecs(k.jiffies)           # unsigned int: wraps 300 s after boot
        th_period = self.scan_period_max_ms
        if (now - int(s.nbp_th_start[nid])) & UINT_MASK <= th_period:
            return
        s.nbp_th_start[nid] = now
        ref_cand = rate_limit * th_period // 1000
        nr_cand = int(k.vmstat.node("pgpromote_candidate")[nid])
        diff = nr_cand - int(s.nbp_th_nr_cand[nid])
        s.nbp_th_nr_cand[nid] = nr_cand
        s.nbp_threshold[nid] = adjusted_threshold(int(s.nbp_threshold[nid]), ref_th, diff,
                                                  ref_cand, NUMA_MIGRATION_ADJUST_STEPS)

    def numa_promotion_rate_limit(self, nid: int, rate_limit: int, nr, now_ms: int) -> np.ndarray:
        """numa_promotion_rate_limit() for successive candidates of ``nr`` pages each: count
        them in pgpromote_candidate, open a new 1-s window at the first if the last opened
        more than 1000 ms ago, and refuse each whose window count reaches the limit. Returns
        the mask of candidates not limited."""
        k, s = self.kernel, self.state
        nr = np.asarray(nr, np.int64)
        c0 = int(k.vmstat.node("pgpromote_candidate")[nid])
        k.vmstat.count("pgpromote_candidate", nid, int(nr.sum()))
        after = c0 + np.cumsum(nr)                   # node_page_state after each mod
        if (now_ms - int(s.nbp_rl_start[nid])) & UINT_MASK > 1000:   # unsigned int
            s.nbp_rl_start[nid] = now_ms
            s.nbp_rl_nr_cand[nid] = int(after[0])
        return after - int(s.nbp_rl_nr_cand[nid]) < rate_limit


# ---- registration -------------------------------------------------------------------------
PARAMS = {"scan_period_min_ms": False, "scan_period_max_ms": False, "scan_size_mb": False,
          "scan_delay_ms": False, "hot_threshold_ms": False, "promote_rate_limit_mbps": False,
          "access_time_bits": False, "tick_ms": False, "scan_cost": False,
          "honor_mempolicy": False, "main_thread_runs": False, "tiering_step": False}


def _params(component) -> dict:
    component.check_keys(PARAMS)
    p, c, f = component.params, component.checker(), component.field_path
    out = {}
    for key, default, lo in (("scan_period_min_ms", SCAN_PERIOD_MIN_MS, 1),
                             ("scan_period_max_ms", SCAN_PERIOD_MAX_MS, 1),
                             ("scan_size_mb", SCAN_SIZE_MB, 1),
                             ("scan_delay_ms", SCAN_DELAY_MS, 0),
                             ("hot_threshold_ms", HOT_THRESHOLD_MS, 1),
                             ("promote_rate_limit_mbps", PROMOTE_RATE_LIMIT_MBPS, 0),
                             ("access_time_bits", ACCESS_TIME_BITS, 8)):
        out[key] = c.int_at_least(p.get(key, default), f(key), lo)
    tick = c.number_in(p.get("tick_ms", 10.0), f("tick_ms"), 0, 1e6)
    if tick <= 0:
        c.fail(f("tick_ms"), f"expected a number > 0, got {tick}")
    out["tick_ms"] = tick
    out["scan_cost"] = c.choice(p.get("scan_cost", "daemon"), f("scan_cost"), SCAN_COST)
    for key in ("honor_mempolicy", "main_thread_runs"):
        out[key] = c.boolean(p.get(key, False), f(key))
    out["tiering_step"] = c.choice(p.get("tiering_step", TIERING_STEPS[-1]), f("tiering_step"),
                                   TIERING_STEPS)
    return out


def _check_sysctl(component, kernel, mode: int) -> None:
    """The run's own ``[sysfs] "kernel/numa_balancing"``, if set, must be the source's mode."""
    set_to = int(kernel.sysfs["kernel/numa_balancing"])
    if set_to and set_to != mode:
        component.fail("name", f"{component.name} runs kernel.numa_balancing = {mode}, but "
                               f"[sysfs] \"kernel/numa_balancing\" = {set_to}: use "
                               f"numab{set_to} or drop the sysfs value")


# the tiering branch's admission knobs: mode 1 has no tiering branch, so they would do nothing
TIERING_ONLY = ("tiering_step", "hot_threshold_ms", "promote_rate_limit_mbps")


def _make(mode: int, pghot: bool):
    def make(component, kernel, costs, promoter):
        params = _params(component)
        _check_sysctl(component, kernel, mode)
        unused = [key for key in TIERING_ONLY if key in component.params]
        if not mode & NUMA_BALANCING_MEMORY_TIERING and unused:
            component.fail(unused[0], f"{component.name} (kernel.numa_balancing = 1) has no "
                                      "tiering branch; use numab2 or numab3 for this knob")
        if not pghot:
            return [NumaBalancing(None, costs=costs, mode=mode, **params)]
        if promoter is None:
            component.fail("", f"{component.name} reports hint faults to a promotion engine: "
                               "add an [engine] (e.g. pghot-v3)")
        return [NumaBalancing(promoter, pghot=True, costs=costs, mode=mode, **params)]
    return make


# kernel.numa_balancing = 1 (classic), 2 (tiering), 3 (both); -pghot: tiering faults to pghot
for _mode, _pghot in ((1, False), (2, False), (2, True), (3, False), (3, True)):
    register_detector(f"numab{_mode}" + ("-pghot" if _pghot else ""))(_make(_mode, _pghot))
