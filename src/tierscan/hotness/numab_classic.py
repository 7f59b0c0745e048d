"""Classic NUMA balancing: the NUMA_BALANCING_NORMAL bit of ``kernel.numa_balancing`` (modes 1
and 3, promotion-spec §3.1), used by the ``numab1`` and ``numab3`` detectors of
hotness/numab.py.

Marking. With the NORMAL bit set, task_numa_work's change_prot_numa marks every migratable
page, toptier ones included (change_pte_range skips toptier folios only when the bit is
clear); slow-tier folios get their access-time stamp only when the MEMORY_TIERING bit is also
set (folio_use_access_time).

Faults (mm/memory.c do_numa_page -> numa_migrate_check -> mpol_misplaced -> fair.c
should_numa_migrate_memory). Under the default policy (preferred_node_policy[this node],
MPOL_F_MOF | MPOL_F_MORON) a folio on the faulting CPU's node is not misplaced and
should_numa_migrate_memory is not called (its last_cpupid is left alone). For a remote folio:

- mode 3, slow-tier folio: the tiering branch of hotness/numab.py (latency, rate limit...);
- otherwise the classic branch: ``last = folio_xchg_last_cpupid(folio, this cpupid)``, then
  refuse a slow-tier folio with an invalid last_cpupid when the tiering bit is clear (mode 1:
  its first fault only arms it); migrate at once early in the task's life
  (numa_preferred_nid unset or p->numa_scan_seq <= 4) if the last fault was by this task or by
  no one; otherwise the two-stage filter: refuse unless the last fault came from the
  destination node; then a private fault migrates, and a shared one migrates too because no
  numa group exists (numa groups are not modelled, see below).

Admitted folios go through migrate_misplaced_folio_prepare + migrate_misplaced_folio to the
faulting CPU's node (mm/migrate.py), which wakes kswapd on an unbalanced target only in
tiering mode. numa_pages_migrated counts every success; pgpromote_success only in tiering mode.

Statistics (fair.c task_numa_fault): a fault whose memory node (the target when migrated,
else the folio's node) is a slow tier is not counted in tiering mode, nor in mode 1 when its
last_cpupid is invalid; others add to numa_faults (MEMBUF per node x private/shared) and
numa_faults_locality (remote/local, and [2] for failed migrations). At the first counted
fault after mm->numa_scan_seq moved (and after numa_migrate_retry), task_numa_placement
decays the window (mem = mem / 2 + buffer), picks the node with most faults as
numa_preferred_nid (numa_nearest_node(N_CPU): a CPU-less CXL node gives its nearest CPU node)
and update_task_scan_period adapts the scan period from the local/remote and private/shared
ratios (NUMA_PERIOD_SLOTS = 10, NUMA_PERIOD_THRESHOLD = 7).

Simplifications (docs/fidelity.md): a thread group is one task (one pid, one fault record,
one preferred node: its threads share the footprint), numa groups (task_numa_group,
group_faults, preferred_group_nid) and task migration to the preferred node
(task_numa_migrate) are not modelled, so a task stays on its workload's CPU node and
numa_preferred_nid only steers should_numa_migrate_memory's early-lifetime rule; the CPU-side
fault buffers (NUMA_CPU/CPUBUF, used only by groups) are not kept.
[fair.c should_numa_migrate_memory/task_numa_fault/task_numa_placement/
update_task_scan_period and mm/mempolicy.c mpol_misplaced, read in the public corpus; the
ps_ratio/lr_ratio branch order is that of the fair.c copies read (a 2018 patch proposing
sp_ratio was posted; whether it was merged is unverified).]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..jiffies import time_after
from ..mm.migrate import migrate_misplaced_folios_one_by_one
from ..promote.base import HINT_FAULT

NUMA_BALANCING_NORMAL = 1
NUMA_BALANCING_MEMORY_TIERING = 2
NUMA_NO_NODE = -1
NUMA_PERIOD_SLOTS = 10
NUMA_PERIOD_THRESHOLD = 7
LAST__PID_MASK = 0xFF          # LAST__PID_SHIFT = 8: last_cpupid keeps 8 bits of the pid
CPUPID_UNSET = -1              # (-1 & LAST_CPUPID_MASK): no fault recorded, cpu and pid unset


def cpu_pid_to_cpupid(nid: int, pid: int) -> int:
    """cpu_pid_to_cpupid(): the model keeps the CPU's node (cpupid_to_nid is all it reads)
    and the pid's low 8 bits."""
    return (int(nid) << 8) | (int(pid) & LAST__PID_MASK)


def cpupid_to_nid(cpupid):
    return np.asarray(cpupid) >> 8


def cpupid_to_pid(cpupid):
    c = np.asarray(cpupid)
    return np.where(c == CPUPID_UNSET, LAST__PID_MASK, c & LAST__PID_MASK)


def cpupid_pid_unset(cpupid):
    """cpupid_pid_unset(): the pid bits are all ones."""
    return cpupid_to_pid(cpupid) == LAST__PID_MASK


def cpupid_valid(cpupid):
    """cpupid_valid(): the CPU bits name a CPU (only the unset value does not here)."""
    return np.asarray(cpupid) != CPUPID_UNSET


@dataclass
class TaskFaults:
    """A task's numa_faults (NUMA_MEM and NUMA_MEMBUF, [node, priv]), numa_faults_locality
    ([remote, local, failed migrations], pages), total_numa_faults, numa_preferred_nid and
    numa_migrate_retry."""

    nr_nodes: int
    pid: int
    mem: np.ndarray = field(init=False)
    membuf: np.ndarray = field(init=False)
    locality: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))
    total_numa_faults: int = 0
    preferred_nid: int = NUMA_NO_NODE
    migrate_retry: int = 0           # jiffies
    pages_migrated: int = 0          # p->numa_pages_migrated
    has_faults: bool = False         # p->numa_faults allocated (a fault was counted)

    def __post_init__(self):
        self.mem = np.zeros((self.nr_nodes, 2), np.int64)
        self.membuf = np.zeros((self.nr_nodes, 2), np.int64)


def numa_nearest_node(machine, nid: int) -> int:
    """numa_nearest_node(nid, N_CPU): ``nid`` if it has CPUs, else the CPU node at the least
    node_distance (the lowest id among equals)."""
    cpu_nodes = list(machine.cpu_nodes)
    if nid == NUMA_NO_NODE or nid in cpu_nodes:
        return nid
    dist = machine.distance[nid]
    return min(cpu_nodes, key=lambda n: (int(dist[n]), n))


class ClassicBalancing:
    """The NORMAL-mode half of a NumaBalancing detector ``det`` (modes 1 and 3): its hint-fault
    path and per-task statistics. Mode 3's slow-tier folios go to ``det``'s tiering branch."""

    def __init__(self, det):
        self.det = det
        k = det.kernel
        self.kernel = k
        self.tiering = bool(det.mode & NUMA_BALANCING_MEMORY_TIERING)
        from .numab import FolioField              # one home for per-folio fields
        self.last_cpupid = FolioField(k, np.int64, CPUPID_UNSET)   # folio->_last_cpupid
        self.has_memory = np.asarray(k.pm.node_present) > 0        # node_state(N_MEMORY)
        self.tasks: dict[int, TaskFaults] = {}
        for t in det.tasks:
            self.tasks[id(t)] = TaskFaults(k.machine.nr_nodes, pid=t.group.gid + 1)
        for key in ("classic_candidates", "classic_refused_invalid", "classic_refused_node",
                    "classic_migrated", "classic_not_migrated", "classic_local",
                    "placements"):
            det.stats.setdefault(key, 0)

    def task(self, t) -> TaskFaults:
        return self.tasks[id(t)]

    # ---- do_numa_page ---------------------------------------------------------------------
    def hint_fault(self, t, heads, dst: int, allowed=None) -> None:
        """do_numa_page() for a batch of distinct folios faulted from node ``dst`` by task
        ``t`` (None: an mm no task of the engine owns: no statistics). ``allowed``: with
        ``honor_mempolicy``, the folios whose VMA policy (mpol_misplaced) targets ``dst``. The
        first counted fault may run task_numa_placement, which later faults then see."""
        if allowed is None:
            allowed = np.ones(heads.size, bool)
        if t is not None and self._placement_due(t):
            self._faults(t, heads[:1], dst, allowed[:1])
            heads, allowed = heads[1:], allowed[1:]
        if heads.size:
            self._faults(t, heads, dst, allowed)

    def _placement_due(self, t) -> bool:
        return t.placement_seq != t.numa_scan_seq and \
            time_after(self.kernel.jiffies, self.task(t).migrate_retry)

    def _faults(self, t, heads, dst: int, allowed) -> None:
        d, k, pm = self.det, self.kernel, self.kernel.pm
        src = pm.node_of(heads)
        nr = pm.folio_nr_pages(heads)
        slow = ~d.toptier[src]
        use_access_time = slow if self.tiering else np.zeros(heads.size, bool)
        last = self.last_cpupid.get(heads)          # numa_migrate_check's last_cpupid
        last[use_access_time] = CPUPID_UNSET        # its bits hold the access time
        local = src == dst                          # TNF_FAULT_LOCAL
        d.stats["classic_local"] += int((local & ~use_access_time).sum())
        mem_node = src.copy()
        failed = np.zeros(heads.size, bool)         # TNF_MIGRATE_FAIL
        misplaced = ~local & bool(self.has_memory[dst]) & allowed   # mpol_misplaced

        tier = np.flatnonzero(misplaced & use_access_time)
        if tier.size:                                # mode 3: the tiering branch
            th = heads[tier]
            # a cross-tier migration in tiering mode resets last_cpupid (folio_migrate_flags)
            self.last_cpupid.set(th, CPUPID_UNSET)
            if d.pghot:
                d.promoter.record_access(th, dst, HINT_FAULT, k.jiffies)
                d.stats["reported"] += int(th.size)
                mem_node[tier] = dst                 # pghot v3 passes target_nid
            else:
                moved = d.promote(th, dst)
                mem_node[tier[np.isin(th, moved)]] = dst

        cls = np.flatnonzero(misplaced & ~use_access_time)
        if cls.size:                                 # the classic branch
            ch = heads[cls]
            ok = self.should_numa_migrate_memory(t, ch, src[cls], dst)
            go = cls[ok]
            if go.size:
                moved = migrate_misplaced_folios_one_by_one(k, heads[go], dst)
                mem_node[go[moved]] = dst
                failed[go[~moved]] = True
                d.stats["classic_migrated"] += int(moved.sum())
                d.stats["classic_not_migrated"] += int((~moved).sum())
                old = heads[go[moved]]
                d.promoted_pfns.append(old)
                d.promoted_ns.append(np.full(old.size, k.clock_ns, np.int64))
        if t is not None:
            self.task_numa_fault(t, last, mem_node, nr, local, failed, dst)

    def should_numa_migrate_memory(self, t, heads, src, dst: int) -> np.ndarray:
        """should_numa_migrate_memory()'s classic part (fair.c) for folios not taking the
        tiering branch, in fault order; exchanges each folio's last_cpupid. Returns the mask
        of folios to migrate to ``dst``."""
        d = self.det
        pid = t.group.gid + 1 if t is not None else 0
        last = self.last_cpupid.get(heads)
        self.last_cpupid.set(heads, cpu_pid_to_cpupid(dst, pid))
        d.stats["classic_candidates"] += int(heads.size)
        # mode 1 (no tiering bit): a slow-tier folio's first fault only records the cpupid
        invalid = np.zeros(heads.size, bool) if self.tiering else \
            (~d.toptier[src] & ~cpupid_valid(last))
        unset = cpupid_pid_unset(last)
        private = cpupid_to_pid(last) == (pid & LAST__PID_MASK)
        early = False
        if t is not None:
            tf = self.task(t)
            early = tf.preferred_nid == NUMA_NO_NODE or t.placement_seq <= 4
        admit_early = early & (unset | private)
        # two-stage filter: the last fault must have come from the destination node
        same_node = unset | (cpupid_to_nid(last) == dst)
        # then private -> yes; shared without a numa group (never set up here) -> yes
        ok = ~invalid & (admit_early | same_node)
        d.stats["classic_refused_invalid"] += int(invalid.sum())
        d.stats["classic_refused_node"] += int((~invalid & ~ok).sum())
        return ok

    # ---- fair.c task_numa_fault and task_numa_placement ------------------------------------
    def task_numa_fault(self, t, last, mem_node, nr, local, failed, cpu_node: int) -> None:
        """task_numa_fault(last_cpupid, mem_node, pages, flags) for each fault of the batch,
        in order (placement, if due, runs at the first counted one, before its counts)."""
        d = self.det
        keep = d.toptier[mem_node] | ~(self.tiering | ~cpupid_valid(last))
        if not keep.any():
            return
        tf = self.task(t)
        if self._placement_due(t):
            self.task_numa_placement(t)
            self.numa_migrate_preferred(t)
        tf.has_faults = True
        last, mem_node, nr = last[keep], mem_node[keep], nr[keep]
        local, failed = local[keep], failed[keep]
        # first accesses are private; otherwise private when the last fault was this task's
        priv = (last == CPUPID_UNSET) | (cpupid_to_pid(last) == (tf.pid & LAST__PID_MASK))
        migrated = mem_node == cpu_node
        tf.pages_migrated += int(nr[migrated & ~local].sum())
        tf.locality[2] += int(nr[failed].sum())
        np.add.at(tf.membuf, (mem_node, priv.astype(np.int64)), nr)
        tf.locality[1] += int(nr[local].sum())
        tf.locality[0] += int(nr[~local].sum())

    def task_numa_placement(self, t) -> None:
        """task_numa_placement() without numa groups: decay the per-node window, copy in the
        faults since the last scan sequence, pick the busiest node as numa_preferred_nid, then
        update_task_scan_period()."""
        tf = self.task(t)
        if t.placement_seq == t.numa_scan_seq:
            return
        t.placement_seq = t.numa_scan_seq
        self.det.stats["placements"] += 1
        fault_types = tf.membuf.sum(axis=0)          # [shared, private]
        diff = tf.membuf - tf.mem // 2
        tf.membuf[:] = 0
        tf.mem += diff
        tf.total_numa_faults += int(diff.sum())
        faults = tf.mem.sum(axis=1)
        max_faults, max_nid = 0, NUMA_NO_NODE
        for nid, f in enumerate(faults.tolist()):     # for_each_online_node, strict >
            if f > max_faults:
                max_faults, max_nid = f, nid
        max_nid = numa_nearest_node(self.kernel.machine, max_nid)
        if max_faults and max_nid != tf.preferred_nid:
            tf.preferred_nid = max_nid               # sched_setnuma()
        self.update_task_scan_period(t, int(fault_types[0]), int(fault_types[1]))

    def numa_migrate_preferred(self, t) -> None:
        """numa_migrate_preferred(): retry at most every min(1 s, period / 16). The task is not
        moved (task_numa_migrate is not modelled: it stays on its workload's CPU node)."""
        tf = self.task(t)
        if tf.preferred_nid == NUMA_NO_NODE or not tf.has_faults:
            return
        interval = min(1000, int(t.scan_period[-1]) // 16)   # HZ = 1000: ms are jiffies
        tf.migrate_retry = self.kernel.jiffies + interval

    def update_task_scan_period(self, t, shared: int, private: int) -> None:
        """update_task_scan_period(): no counted local or shared faults, or failed migrations:
        scan slower (period doubled up to task_scan_max, numa_next_scan pushed); otherwise move
        the period by slots of period / 10 from the private and local ratios."""
        d, tf = self.det, self.task(t)
        rss = d._rss(t.mm)
        smin, smax = d.task_scan_min(rss), d.task_scan_max(rss)
        remote, local = int(tf.locality[0]), int(tf.locality[1])
        if local + shared == 0 or tf.locality[2]:
            t.scan_period = np.minimum(smax, t.scan_period << 1)
            t.numa_next_scan = self.kernel.jiffies + int(t.scan_period[-1])
            return
        period_slot = -(-t.scan_period // NUMA_PERIOD_SLOTS)
        lr_ratio = local * NUMA_PERIOD_SLOTS // (local + remote)
        ps_ratio = private * NUMA_PERIOD_SLOTS // (private + shared)
        if ps_ratio >= NUMA_PERIOD_THRESHOLD:        # "most memory accesses are local"
            diff = max(ps_ratio - NUMA_PERIOD_THRESHOLD, 1) * period_slot
        elif lr_ratio >= NUMA_PERIOD_THRESHOLD:      # "most accesses are shared"
            diff = max(lr_ratio - NUMA_PERIOD_THRESHOLD, 1) * period_slot
        else:                                        # mostly remote and private: faster
            diff = -(NUMA_PERIOD_THRESHOLD - max(lr_ratio, ps_ratio)) * period_slot
        t.scan_period = np.clip(t.scan_period + diff, smin, smax).astype(np.int64)
        tf.locality[:] = 0
