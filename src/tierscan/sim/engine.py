"""The engine (DESIGN §6): simulated time, the tick loop, daemons, accounting and metrics.

Each tick every unfinished thread group runs for the tick (minus the stall it owes), moving
through its phases; then the daemons that are due run, in order of due time; then metrics
are sampled if due. A run ends when every group has finished its phases or at ``duration``.
Simulated time is in ns; the kernel's clock (jiffies, HZ=1000) follows it.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..access.base import HEAT_BINS, BinTiers, ThreadGroup
from ..access.exact import ExactModel
from ..access.rate import RateModel
from ..errors import ConfigError
from ..memsys.system import MemorySystem
from ..mm.memcontrol import mem_cgroup_handle_over_high
from ..mm.mempolicy import MemPolicy
from .costs import CostModel

MS = 1_000_000


class Daemon:
    """A kernel thread or periodic job. ``run(engine)`` does one period's work; the CPU time
    it charges (engine.charge) is its overhead. ``cpu_node`` is where it runs.

    The CPU rule (docs/architecture.md, "Daemons take time"). A daemon with ``kthread = True``
    (the default) is one kernel thread, i.e. one CPU: the CPU time a run charges advances the
    daemon's own clock, ``busy_until_ns = start + charged``, where ``start`` is the time the
    run was due. Its next run is due ``period_ns`` after the start of the cycle, and never
    before ``busy_until_ns``: a run that overran its period is followed at once by the next
    (no catch-up, as a kthread that loops ``work(); sleep(period)`` with the sleep shortened
    to nothing). Work must also not take effect earlier than the CPU reaches it: the engine
    applies a run's effects at the tick it runs in, so a run may use at most
    ``engine.cpu_left_ns()`` of CPU (up to the end of the next tick). A daemon whose work
    can be split (a migrator's queue, a walk over records) takes what fits, keeps the rest
    and returns True from ``run``: it *yields*, and the engine runs it again as soon as its
    CPU is free (``busy_until_ns``), continuing the same cycle, without waiting a period. A
    run that cannot be split (one scan pass) may overrun: its effects land at once and the
    daemon is then busy until its CPU has paid for them.

    ``kthread = False`` is for work that is not one kernel thread (NUMA balancing's scan, run
    by each task in its own context; IBS's NMI handling on the sampled CPUs; the oracle): its
    CPU time is reported but does not delay it, and ``cpu_left_ns()`` is unbounded.

    ``busy_ns`` is the CPU time the daemon charged over the run; the result's
    ``final["daemon_utilisation"]`` is busy_ns / elapsed per daemon name.
    """

    name = "daemon"
    period_ns = 100 * MS
    cpu_node = 0
    kthread = True
    next_ns = 0                 # when the next run is due (set by the engine)
    busy_until_ns = 0           # when this daemon's CPU has finished the work charged so far
    busy_ns = 0.0               # CPU time charged over the run

    def start(self, engine) -> None:
        """Called once before the first tick."""

    def run(self, engine) -> bool | None:
        """One run. Return True to yield with work left (resume when the CPU is free)."""
        raise NotImplementedError


class Accounting:
    """What the kernel charges while the engine runs: CPU time of the current context (a
    thread group in its faults, or a daemon) and TLB-shootdown stalls of every thread of an
    mm whose page tables a migration changed."""

    def __init__(self, engine):
        self.engine = engine
        self.current = None            # a ThreadGroup or a Daemon
        self.cpu_ns: dict[str, float] = {}
        self.run_ns = 0.0              # CPU charged by the current daemon run so far
        self.run_start_ns = 0          # when the current daemon run started (was due)

    def charge(self, ns: float) -> None:
        cur = self.current
        if isinstance(cur, ThreadGroup):
            cur.stall_ns += ns / cur.threads  # one thread of the group did it: the group clock
            #                                   is its threads' mean
        elif cur is not None:
            self.cpu_ns[cur.name] = self.cpu_ns.get(cur.name, 0.0) + ns
            self.run_ns += ns

    def reclaim_scanned(self, nr_pages: int) -> None:
        """shrink_folio_list() looked at ``nr_pages`` isolated pages (rmap walk, unmap)."""
        self.charge(nr_pages * self.engine.costs.reclaim_page_ns)

    def swap_out(self, nr_pages: int, write_ns: float) -> None:
        """Reclaim submitted ``nr_pages`` swap writes (the device's per-page CPU cost)."""
        self.charge(nr_pages * write_ns)

    def migrated(self, order: int, count: int, mms, flushes: int = 1, src_nids=None,
                 dst_nid: int | None = None) -> None:
        """``count`` folios of ``order`` migrated with ``flushes`` TLB shootdowns, each of which
        stalls every thread of the mms whose page tables changed. With the loaded latency
        model, the copies (read from ``src_nids``, one per folio, written to ``dst_nid``) load
        both devices in the next tick's solve."""
        c = self.engine.costs
        ms = self.engine.memsys
        if ms is not None and src_nids is not None:
            ms.kernel_traffic(src_nids, dst_nid, 4096 << order)
        self.charge(count * (c.migrate_thp_ns if order else c.migrate_page_ns))
        for mm in mms:
            for g in self.engine.groups_of_mm.get(mm.id, ()):
                g.stall_ns += flushes * c.tlb_shootdown_ns


class Engine:
    def __init__(self, kernel, workload, *, access_model: str = "rate",
                 costs: CostModel | None = None, tick_ns: int = 10 * MS,
                 sample_ns: int = 100 * MS, duration_ns: int | None = None, daemons=(),
                 seed: int = 0, progress=None, latency_model: str = "idle",
                 kswapd: bool = True, flusher: bool = True, solve_only: bool = False):
        if access_model not in ("rate", "exact"):
            raise ConfigError(f"unknown access model {access_model!r} (expected 'rate' or "
                              "'exact')", field="access_model")
        self.kernel, self.workload = kernel, workload
        self.costs = costs or CostModel()
        self.tick_ns, self.sample_ns, self.duration_ns = tick_ns, sample_ns, duration_ns
        if latency_model not in ("loaded", "idle"):
            raise ConfigError(f"unknown latency model {latency_model!r} (expected 'loaded' or "
                              "'idle')", field="latency_model")
        self.latency_model = latency_model
        self.seed = seed
        self.memsys: MemorySystem | None = None       # created in _setup, once groups exist
        self.model = RateModel(seed) if access_model == "rate" else ExactModel(seed)
        self.daemons = list(daemons)
        self.kthreads = []    # the kernel's own threads: kswapd, one per node with memory
        if kswapd:
            from .kswapd import kswapd_daemons

            self.kthreads = kswapd_daemons(kernel, tick_ns)
        if flusher:
            from .flusher import Flusher   # the writeback kworker (mm/page_writeback.py)

            self.kthreads.append(Flusher(kernel.machine.cpu_nodes[0], tick_ns))
        self.progress = progress
        self.accounting = Accounting(self)
        self.groups: list[ThreadGroup] = []
        # the thread groups of each mm (several when a process's threads differ in CPU node,
        # mappings or task policy: ProcessSpec.mm), in workload order
        self.groups_of_mm: dict[int, list[ThreadGroup]] = {}
        self.series: dict[str, list] = {}
        self._next_sample = 0
        self._cycle_ns: dict[int, int] = {}   # start of each daemon's current cycle
        self._vm_last: dict[str, int] = {}
        self._setup(solve_only)

    def all_daemons(self) -> list:
        """The configured daemons (detectors, promotion engines), then the kernel's threads."""
        return self.daemons + self.kthreads

    # ---- setup --------------------------------------------------------------------------------
    def _setup(self, solve_only: bool = False) -> None:
        """Map and populate the workload, solve the loaded model once, attach the access model
        and start the daemons. ``solve_only`` stops after the solve: an engine that is only
        asked for its first solution (the pghot fit) and is never run."""
        k = self.kernel
        k.accounting = self.accounting
        mms = {}
        for gid, spec in enumerate(self.workload.processes):
            mm = mms.get(spec.mm_name)
            if mm is None:      # the process's first thread group creates its address space
                mm = mms[spec.mm_name] = k.spawn(spec.mm_name, memcg=self._memcg(spec.memcg),
                                                 cpu_node=spec.cpu_node)
            task_policy = MemPolicy.make(spec.task_policy, spec.task_nodes, k.machine.nr_nodes,
                                         spec.task_numa_balancing, field="task_policy")
            vmas = []
            with mm.as_task(spec.cpu_node, task_policy):   # its threads map and populate
                for m in spec.mappings:
                    vma = mm.mmap(m.size, kind=m.kind, shared=m.shared, thp=m.thp,
                                  populate=m.populate, policy=m.policy, nodes=list(m.nodes),
                                  numa_balancing=m.numa_balancing)
                    if m.move_to is not None:
                        mm.move_pages(np.arange(vma.start, vma.end, 1 << 21, dtype=np.uint64),
                                      m.move_to)
                    vmas.append(vma)
            g = ThreadGroup(gid, spec, mm, vmas, k.machine)
            g.task_policy = task_policy
            self.groups.append(g)
            self.groups_of_mm.setdefault(mm.id, []).append(g)
        last = self.workload.processes and any(
            p.phases[-1].accesses is None and p.phases[-1].duration_ns is None
            for p in self.workload.processes)
        if last and self.duration_ns is None:
            raise ConfigError("a workload phase has no access count or duration, so the run "
                              "needs a duration", field="duration")
        for g in self.groups:   # nothing maps or moves pages until the daemons start
            g.hold_placement(k)
        try:
            if self.latency_model == "loaded" and MemorySystem.applies(k.machine):
                self.memsys = MemorySystem(self)
                self.memsys.tick(self, self.tick_ns)   # the exact model sizes its first chunk
            if solve_only:
                return
            self.model.attach(self)
            self._bin_tiers = BinTiers(k, self.groups[0]) if self.groups else None
        finally:
            for g in self.groups:
                g.release_placement()
        self.vmstat_setup = k.vmstat.as_dict()  # what populating and placing memory counted
        for d in self.all_daemons():
            d.next_ns, d.busy_until_ns, d.busy_ns = d.period_ns, 0, 0.0
            d.start(self)

    def _memcg(self, path: str):
        k = self.kernel
        if path == "/":
            return k.root_memcg
        for memcg in k.memcgs:
            if memcg.path == path:
                return memcg
        return k.memcg_create(path.strip("/"))

    # ---- the loop -----------------------------------------------------------------------------
    @property
    def now(self) -> int:
        return self.kernel.clock_ns

    def charge(self, ns: float) -> None:
        """Charge CPU time to the running context (a daemon, or a group's faults)."""
        self.accounting.charge(ns)

    def cpu_left_ns(self) -> float:
        """CPU time the running daemon may still use in this run without its work taking
        effect earlier than its CPU reaches it: up to the end of the next tick (the engine's
        resolution), counted from when the run was due (Daemon docstring). Unbounded for a
        daemon that is not a kthread, or outside a daemon run."""
        a = self.accounting
        d = a.current
        if not isinstance(d, Daemon) or not d.kthread:
            return float("inf")
        return self.now + self.tick_ns - (a.run_start_ns + a.run_ns)

    def affordable(self, nr_pages) -> int:
        """How many folios of a queue (their sizes in pages, in queue order) the running
        daemon can migrate within ``cpu_left_ns()`` at the cost model's migration prices; at
        least one, so that work always progresses (a daemon that yields keeps the rest)."""
        nr = np.asarray(nr_pages)
        left = self.cpu_left_ns()
        if nr.size == 0 or not np.isfinite(left):
            return int(nr.size)
        c = self.costs
        cost = np.cumsum(np.where(nr > 1, c.migrate_thp_ns, c.migrate_page_ns))
        return max(1, int(np.searchsorted(cost, left, side="right")))

    def mm_exited(self, mm) -> bool:
        """Whether every thread group of ``mm`` has finished (the process has exited)."""
        return all(g.finished_ns is not None for g in self.groups_of_mm.get(mm.id, ()))

    def done(self) -> bool:
        if self.duration_ns is not None and self.now >= self.duration_ns:
            return True
        return all(g.finished_ns is not None for g in self.groups)

    def run(self) -> "Engine":
        wall = time.perf_counter()
        self._sample()
        while not self.done():
            dt = self.tick_ns
            if self.duration_ns is not None:
                dt = min(dt, self.duration_ns - self.now)
            if self.memsys is not None:
                self.memsys.tick(self, dt)
            for g in self.groups:
                if g.finished_ns is None:
                    self._advance(g, dt)
            self.kernel.clock_ns += dt
            self._run_daemons()
            if self.now >= self._next_sample:
                self._sample()
            if self.progress is not None:
                self.progress(self)
        if self.series["time_ns"][-1] != self.now:
            self._sample()  # the last, partial interval
        self.wall_s = time.perf_counter() - wall
        return self

    def _advance(self, g: ThreadGroup, dt: float) -> None:
        """Run group ``g`` for ``dt`` ns of its threads' time, crossing phase boundaries, as
        its mm's running task (its CPU node and task policy)."""
        with g.mm.as_task(g.spec.cpu_node, g.task_policy):
            self._advance_task(g, dt)

    def _advance_task(self, g: ThreadGroup, dt: float) -> None:
        self.accounting.current = g
        g.mm.lru_gen_bitmap = ~0  # its threads were scheduled: lru_gen_use_mm()
        left = float(dt)
        owed = min(g.stall_ns, left)
        g.stall_ns -= owed
        left -= owed
        while left > 0 and g.phase is not None:
            ph = g.phase
            budget = left
            if ph.duration_ns is not None:
                budget = min(budget, g.phase_start_ns + ph.duration_ns - (self.now + dt - left))
            if ph.idle:       # its threads sleep: the time passes, nothing is accessed
                a, used = 0.0, max(budget, 0.0)
            else:
                a, used = self.model.advance(self, g, budget) if budget > 0 else (0.0, 0.0)
            g.done += a
            g.total += a
            left -= used
            over_time = ph.duration_ns is not None and \
                self.now + dt - left >= g.phase_start_ns + ph.duration_ns
            if g.remaining_in_phase() <= 1e-9 or over_time:
                g.phase_idx += 1
                g.done = 0.0
                g.phase_start_ns = int(self.now + dt - left)
                self.model.on_phase(self, g)
            elif used <= 0:
                break
        self.model.after_advance(self, g)
        mem_cgroup_handle_over_high(self.kernel)    # its threads return to user space
        if left < 0:
            g.stall_ns += -left       # the exact model ran past the tick: owe it next time
        if g.phase is None and g.finished_ns is None:
            g.finished_ns = int(self.now + dt - max(left, 0.0))
        self.accounting.current = None

    def _run_daemons(self) -> None:
        """Run each due daemon once, in order of due time, under the CPU rule of ``Daemon``."""
        now = self.now
        # by due time, then by place in all_daemons() (the place is unique: no daemon is
        # ever compared)
        due = [(d.next_ns, i, d) for i, d in enumerate(self.all_daemons()) if d.next_ns <= now]
        if not due:
            return
        due.sort()
        a = self.accounting
        for _, _, d in due:
            start = d.next_ns
            cycle = self._cycle_ns.setdefault(id(d), start)
            a.current, a.run_start_ns, a.run_ns = d, start, 0.0
            more = d.run(self)
            a.current = None
            d.busy_ns += a.run_ns
            end = start + a.run_ns
            if d.kthread:
                d.busy_until_ns = end
            if more:                  # yielded: resume when the CPU is free, same cycle
                d.next_ns = max(math.ceil(end) if d.kthread else 0, start + 1)
                continue
            del self._cycle_ns[id(d)]
            d.next_ns = cycle + d.period_ns
            if d.kthread:
                d.next_ns = max(d.next_ns, math.ceil(end))

    # ---- metrics ------------------------------------------------------------------------------
    def _sample(self) -> None:
        k = self.kernel
        s = self.series
        served = self.model.served_by_node(self)
        top = list(k.machine.toptier_nodes)
        total = served.sum()
        row = {
            "time_ns": self.now,
            "resident_pages": k.pm.node_present - k.pm.node_free,
            "served": served,
            "fast_tier_hit_ratio": float(served[top].sum() / total) if total else float("nan"),
            "accesses_per_thread": [g.total for g in self.groups],
        }
        for name in ("pgpromote_success", "pgdemote_kswapd", "pgdemote_direct",
                     "pgmigrate_success"):
            v = k.vmstat[name]
            row[name] = v - self._vm_last.get(name, 0)
            self._vm_last[name] = v
        for d in self.all_daemons():
            row[f"cpu_ns.{d.name}"] = self.accounting.cpu_ns.get(d.name, 0.0)
        if self.groups:  # the first process's access heatmap (report/heatmap.py)
            g = self.groups[0]
            row["heatmap"] = self.model.heat(self, g, HEAT_BINS)
            row["heatmap_tier"] = self._bin_tiers.tier_of_bin()
        for key, value in row.items():
            s.setdefault(key, []).append(value)
        self._next_sample = self.now + self.sample_ns

    def daemon_utilisation(self) -> dict:
        """CPU busy time / elapsed simulated time per daemon name (a kthread's is at most 1
        plus one tick's work; a daemon that is not a kthread may use several CPUs)."""
        elapsed = max(self.now, 1)
        return {d.name: d.busy_ns / elapsed
                for d in sorted(self.all_daemons(), key=lambda d: d.name)}

    def results(self) -> dict:
        """Time series as arrays and the run's final figures."""
        series = {k: np.asarray(v) for k, v in self.series.items()}
        finished = [g.finished_ns for g in self.groups]
        final = {
            "runtime_ns": max(finished) if all(f is not None for f in finished) else None,
            "finished_ns": {g.spec.name: g.finished_ns for g in self.groups},
            "accesses_per_thread": {g.spec.name: g.total for g in self.groups},
            "vmstat": self.kernel.vmstat.as_dict(),
            "vmstat_setup": self.vmstat_setup,
            "cpu_ns": dict(sorted(self.accounting.cpu_ns.items())),
            "daemon_utilisation": self.daemon_utilisation(),
            "sim_time_ns": self.now,
        }
        if self.groups:
            g = self.groups[0]
            final["heatmap"] = {"process": g.spec.name, "addr_start": int(g.addrs[0]),
                                "bin_bytes": int(g.n_pages * 4096 // HEAT_BINS)}
        return {"series": series, "final": final}
