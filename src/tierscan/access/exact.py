"""The exact model (DESIGN §5): every access goes through mm.access in program order.

Each thread draws its addresses from the phase's distribution with its own random stream and
runs them through the MMU model, which sets young and dirty bits, takes faults (first touch,
copy-on-write, NUMA hint) and reports the node that served each access. A thread's time is
the latency of those nodes plus compute plus what its faults cost. Per tick a group's
threads run the same number of accesses, sized from the last measured cost per access, and
the group advances by their mean time. This is the ground truth the rate model is checked
against; it is meant for small runs and recorded traces.
"""

from __future__ import annotations

import numpy as np

from ..mm.mmu import replay_segments
from .base import AccessModel, compute_ns, fault_cost_ns, fault_counts, page_bins
from .exact_kernels import GuideTables, draw_pages
NO_CLASSES = np.empty(0, np.uint8)


class ExactModel(AccessModel):
    name = "exact"
    fast = True      # the compiled pass over all threads (False: one MM.access per thread)

    def __init__(self, seed: int, max_chunk: int = 1 << 20):
        self.seed, self.max_chunk = seed, max_chunk
        self.rngs: dict[tuple[int, int], np.random.Generator] = {}
        self.cost: dict[int, float] = {}
        self.last: dict[int, np.ndarray] = {}
        self.last_writes: dict[int, np.ndarray] = {}
        self._heat: dict[int, np.ndarray] = {}   # accesses per page since the last heat()
        self._guides = GuideTables()
        self._served = None

    def attach(self, engine) -> None:
        k = engine.kernel
        self._served = np.zeros(k.machine.nr_nodes)
        for g in engine.groups:
            for t in range(g.threads):
                self.rngs[(g.gid, t)] = np.random.default_rng([self.seed, g.gid, t])
            self.on_phase(engine, g)

    def on_phase(self, engine, group) -> None:
        """Start from the expected cost of the phase's distribution on today's placement."""
        ph = group.phase
        if ph is None:
            return
        w = ph.distribution.weights(group.n_pages)
        nodes = group.placement(engine.kernel)[1]
        lat = group.latency_per_node()
        per_page = np.where(nodes >= 0, lat[np.maximum(nodes, 0)], lat.max())
        self.cost[group.gid] = compute_ns(engine, group) + float(w @ per_page)

    def advance(self, engine, group, budget_ns: float) -> tuple[float, float]:
        ph = group.phase
        n = int(max(1, min(budget_ns / self.cost[group.gid], group.remaining_in_phase(),
                           self.max_chunk)))
        if hasattr(ph.distribution, "take"):
            return self._advance_stream(engine, group, n)
        if self.fast:
            return self._advance_fast(engine, group, n)
        k = engine.kernel
        lat = group.latency_per_node()
        c = engine.costs
        think = compute_ns(engine, group)
        total, chunks, chunk_writes = 0.0, [], []
        for t in range(group.threads):
            rng = self.rngs[(group.gid, t)]
            pages = ph.distribution.sample(group.n_pages, n, rng)
            self._count_heat(group, pages)
            addrs = group.addrs[pages]
            writes = rng.random(n) < ph.write_fraction
            before = fault_counts(k)
            served = group.mm.access(addrs, writes, cpu_node=group.spec.cpu_node)
            ms = getattr(engine, "memsys", None)       # the loaded model's LLC filter
            mem = None if ms is None else ms.exact_ns(engine, group, t, addrs)
            mem = float(served @ lat) if mem is None else mem
            total += mem + n * think + fault_cost_ns(k, c, before)
            self._served += served
            chunks.append(addrs)
            chunk_writes.append(writes)
        used = total / group.threads
        self.cost[group.gid] = used / n
        if self.sampled:      # accesses since the last sample() (a tick may run several advances)
            self._keep_for_sampling(group, chunks, chunk_writes)
        return float(n), used

    def _advance_fast(self, engine, group, n: int) -> tuple[float, float]:
        """``advance`` with the same draws, the same order and the same results (tests compare
        the two), in one compiled pass over all threads' accesses: each thread draws its n
        pages and stores from its own stream as before; ``replay_segments`` runs the threads'
        batches one after the other while no access needs the kernel; a thread whose batch
        does (a fault) runs through ``MM.access`` as before, then the pass resumes with the
        next thread. A thread whose batch took no fault pays no fault time, as before."""
        k, c, ph = engine.kernel, engine.costs, group.phase
        T = group.threads
        pages = np.empty(T * n, np.int64)
        writes = np.empty(T * n, np.bool_)
        for t in range(T):
            rng = self.rngs[(group.gid, t)]
            sl = slice(t * n, (t + 1) * n)
            pages[sl] = self._draw(ph.distribution, group, n, rng)
            writes[sl] = rng.random(n) < ph.write_fraction
        addrs = group.addrs[pages] if self.sampled else None
        lat = group.latency_per_node()
        ms = getattr(engine, "memsys", None)
        mm = group.mm
        ends = np.arange(1, T + 1, dtype=np.int64) * n
        counts = np.zeros((T, 1, k.machine.nr_nodes), np.int64)
        compute = n * compute_ns(engine, group)
        total, t = 0.0, 0
        direct = self._direct_ok(k, group)
        while t < T:
            stop = t                             # not direct: thread t through MM.access
            if direct:
                mm.lru_gen_bitmap = ~0           # the mm ran: lru_gen_use_mm()
                stop = replay_segments(pages, writes, ends, t, group.addrs, group.slots,
                                       mm._starts, mm._ends, mm.pt.pte, mm.pt.pmd,
                                       k.pm.node_start, counts, NO_CLASSES)
            for u in range(t, stop):             # these threads took no fault
                mem = None if ms is None else ms.exact_ns(engine, group, u,
                                                           group.addrs[pages[u * n:(u + 1) * n]])
                mem = float(counts[u, 0] @ lat) if mem is None else mem
                total += mem + compute + 0.0
                self._served += counts[u, 0]
            if stop < T:                         # thread ``stop`` needs the kernel: as before
                sl = slice(stop * n, (stop + 1) * n)
                a = group.addrs[pages[sl]]
                before = fault_counts(k)
                served = mm.access(a, writes[sl], cpu_node=group.spec.cpu_node)
                mem = None if ms is None else ms.exact_ns(engine, group, stop, a)
                mem = float(served @ lat) if mem is None else mem
                total += mem + compute + fault_cost_ns(k, c, before)
                self._served += served
                direct = self._direct_ok(k, group)
            t = stop + 1
        if direct and k.debug:
            k.after_op()
        used = total / T
        self.cost[group.gid] = used / n
        if self.sampled:
            self._keep_for_sampling(group, [addrs], [writes])
        return float(n), used

    def _direct_ok(self, k, group) -> bool:
        """Whether the compiled pass may run the group's accesses without ``MM.access``'s
        checks: every VMA readable and writable (no permission can fail), the CPU node valid,
        and no memcg over its limit waiting for a return to user space."""
        from ..mm.process import VM_READ, VM_WRITE

        mm = group.mm
        rw = VM_READ | VM_WRITE
        return (not ((mm._vflags & rw) != rw).any()
                and group.spec.cpu_node in k.machine.cpu_nodes
                and not getattr(k, "_memcg_over_high", None))

    def _draw(self, dist, group, n: int, rng) -> np.ndarray:
        """``dist.sample(group.n_pages, n, rng)``, through a guide table (exact_kernels.py)
        when the distribution samples as the tabulated ones do; counts the heat."""
        t = self._guides.get(dist, group.n_pages)
        if t is None:
            pages = dist.sample(group.n_pages, n, rng)
            self._count_heat(group, pages)
            return pages
        out = np.empty(n, np.int64)
        draw_pages(GuideTables.uniforms(t, n, rng), *t, self._heat_counts(group), out,
                   GuideTables.ahead(t))
        return out

    def _heat_counts(self, group) -> np.ndarray:
        h = self._heat.get(group.gid)
        if h is None:
            h = self._heat[group.gid] = np.zeros(group.n_pages, np.int64)
        return h

    def _count_heat(self, group, pages) -> None:
        self._heat_counts(group)[:] += np.bincount(pages, minlength=group.n_pages)

    def _advance_stream(self, engine, group, n: int) -> tuple[float, float]:
        """A recorded trace (trace/replay.py): the group's threads take n accesses each from
        one interleaved stream, in recorded order, and run them in that order. Every access
        reaches the page tables (an LLC hit does not hide it from the A bit or a hint fault,
        memsys/llc.py); the trace's LLC filter says which ones memory serves: a hit costs
        ``llc_hit_ns``, a miss its node's latency. Each thread is charged a share of the time
        (the threads ran in parallel)."""
        k, c = engine.kernel, engine.costs
        before_consumed = getattr(group, "_stream_consumed", 0)
        pages, writes, hit, consumed = group.phase.distribution.take(n * group.threads)
        ran = consumed - before_consumed
        group._stream_consumed = consumed
        if ran == 0:          # the trace ended: finish the phase
            return float(group.remaining_in_phase()), 0.0
        self._count_heat(group, pages)
        served, missed, fault_ns = self._run_stream(engine, group, pages, writes, hit)
        wf = float(writes.mean()) if writes.size else 0.0
        lat = ((1 - wf) * group.load_ns + wf * group.store_ns) / group.spec.mlp
        total = float(missed @ lat) + int(ran - missed.sum()) * c.llc_hit_ns + \
            ran * c.compute_ns_per_access + fault_ns
        self._served += served
        used = total / group.threads
        per_thread = ran / group.threads
        self.cost[group.gid] = max(used / per_thread, 1e-3)
        if self.sampled:      # IBS keeps L3 misses only: the sampler sees the misses
            miss = ~hit
            self._keep_for_sampling(group, [group.addrs[pages[miss]]], [writes[miss]])
        return per_thread, used

    def _run_stream(self, engine, group, pages, writes, hit):
        """Run a trace's accesses (in one compiled pass while none needs the kernel, else
        through MM.access): (accesses served per node, LLC misses per node, fault time)."""
        k, mm = engine.kernel, group.mm
        cls = (~hit).view(np.uint8)
        if self.fast and self._direct_ok(k, group):
            counts = np.zeros((1, 2, k.machine.nr_nodes), np.int64)
            mm.lru_gen_bitmap = ~0
            if replay_segments(pages, writes, np.array([pages.size]), 0, group.addrs,
                               group.slots, mm._starts, mm._ends, mm.pt.pte, mm.pt.pmd,
                               k.pm.node_start, counts, cls) == 1:
                if k.debug:
                    k.after_op()
                return counts[0].sum(0), counts[0, 1], 0.0
        addrs = group.addrs[pages]
        before = fault_counts(k)
        served = mm.access(addrs, writes, cpu_node=group.spec.cpu_node)
        fault_ns = fault_cost_ns(k, engine.costs, before)
        if hit.all():
            return served, np.zeros_like(served), fault_ns
        nodes = k.node_of(mm.translate(addrs[~hit]))
        return served, np.bincount(nodes, minlength=k.machine.nr_nodes), fault_ns

    def _keep_for_sampling(self, group, chunks, chunk_writes) -> None:
        self.last[group.gid] = np.concatenate([self.last.get(group.gid, np.empty(0, np.uint64)),
                                               *chunks])
        self.last_writes[group.gid] = np.concatenate(
            [self.last_writes.get(group.gid, np.empty(0, bool)), *chunk_writes])

    def served_by_node(self, engine) -> np.ndarray:
        out, self._served = self._served, np.zeros_like(self._served)
        return out

    def heat(self, engine, group, bins: int) -> np.ndarray:
        """Accesses per bin since the last call, counted from the pages run."""
        counts = self._heat.pop(group.gid, None)
        if counts is None:
            return np.zeros(bins)
        return np.bincount(page_bins(group, bins), weights=counts, minlength=bins)

    def sample(self, engine, group, per_access: float, dt_ns: float,
               loads_only: bool = False) -> np.ndarray:
        """Pfns of a Bernoulli(per_access) sample of the accesses (or only the loads) the group
        ran since the last call."""
        last = self.last.pop(group.gid, None)
        writes = self.last_writes.pop(group.gid, None)
        if last is None or last.size == 0:
            return np.empty(0, np.int64)
        rng = self.rngs[(group.gid, 0)]
        keep = rng.random(last.size) < per_access
        if loads_only:
            keep &= ~writes
        picked = last[keep]
        return group.mm.translate(picked)
