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

from .base import AccessModel, fault_cost_ns, fault_counts, page_bins


class ExactModel(AccessModel):
    name = "exact"

    def __init__(self, seed: int, max_chunk: int = 1 << 20):
        self.seed, self.max_chunk = seed, max_chunk
        self.rngs: dict[tuple[int, int], np.random.Generator] = {}
        self.cost: dict[int, float] = {}
        self.last: dict[int, np.ndarray] = {}
        self.last_writes: dict[int, np.ndarray] = {}
        self._heat_pages: dict[int, list] = {}   # page indices run since the last heat()
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
        nodes = engine.kernel.node_of(group.mm.translate(group.addrs))
        lat = group.latency_per_node()
        per_page = np.where(nodes >= 0, lat[np.maximum(nodes, 0)], lat.max())
        self.cost[group.gid] = engine.costs.compute_ns_per_access + float(w @ per_page)

    def advance(self, engine, group, budget_ns: float) -> tuple[float, float]:
        k = engine.kernel
        ph = group.phase
        n = int(max(1, min(budget_ns / self.cost[group.gid], group.remaining_in_phase(),
                           self.max_chunk)))
        if hasattr(ph.distribution, "take"):
            return self._advance_stream(engine, group, n)
        lat = group.latency_per_node()
        c = engine.costs
        total, chunks, chunk_writes = 0.0, [], []
        for t in range(group.threads):
            rng = self.rngs[(group.gid, t)]
            pages = ph.distribution.sample(group.n_pages, n, rng)
            self._heat_pages.setdefault(group.gid, []).append(pages)
            addrs = group.addrs[pages]
            writes = rng.random(n) < ph.write_fraction
            before = fault_counts(k)
            served = group.mm.access(addrs, writes, cpu_node=group.spec.cpu_node)
            ms = getattr(engine, "memsys", None)       # the loaded model's LLC filter
            mem = None if ms is None else ms.exact_ns(engine, group, t, addrs)
            mem = float(served @ lat) if mem is None else mem
            total += mem + n * c.compute_ns_per_access + fault_cost_ns(k, c, before)
            self._served += served
            chunks.append(addrs)
            chunk_writes.append(writes)
        used = total / group.threads
        self.cost[group.gid] = used / n
        if self.sampled:      # accesses since the last sample() (a tick may run several advances)
            self._keep_for_sampling(group, chunks, chunk_writes)
        return float(n), used

    def _advance_stream(self, engine, group, n: int) -> tuple[float, float]:
        """A recorded trace (trace/replay.py): the group's threads take n accesses each from
        one interleaved stream, in recorded order, and run them in that order; only the ones
        that missed the trace's cache filter reach memory, the others cost compute time only.
        Each thread is charged a share of the time (the threads ran in parallel)."""
        k, c = engine.kernel, engine.costs
        before_consumed = getattr(group, "_stream_consumed", 0)
        pages, writes, consumed = group.phase.distribution.take(n * group.threads)
        ran = consumed - before_consumed
        group._stream_consumed = consumed
        if ran == 0:          # the trace ended: finish the phase
            return float(group.remaining_in_phase()), 0.0
        self._heat_pages.setdefault(group.gid, []).append(pages)
        addrs = group.addrs[pages]
        before = fault_counts(k)
        served = group.mm.access(addrs, writes, cpu_node=group.spec.cpu_node)
        wf = float(writes.mean()) if writes.size else 0.0
        lat = ((1 - wf) * group.load_ns + wf * group.store_ns) / group.spec.mlp
        total = float(served @ lat) + ran * c.compute_ns_per_access + \
            fault_cost_ns(k, c, before)
        self._served += served
        used = total / group.threads
        per_thread = ran / group.threads
        self.cost[group.gid] = max(used / per_thread, 1e-3)
        if self.sampled:
            self._keep_for_sampling(group, [addrs], [writes])
        return per_thread, used

    def _keep_for_sampling(self, group, chunks, chunk_writes) -> None:
        self.last[group.gid] = np.concatenate([self.last.get(group.gid, np.empty(0, np.uint64)),
                                               *chunks])
        self.last_writes[group.gid] = np.concatenate(
            [self.last_writes.get(group.gid, np.empty(0, bool)), *chunk_writes])

    def served_by_node(self, engine) -> np.ndarray:
        out, self._served = self._served, np.zeros_like(self._served)
        return out

    def heat(self, engine, group, bins: int) -> np.ndarray:
        """Accesses per bin since the last call, counted from the addresses run."""
        pages = self._heat_pages.pop(group.gid, [])
        idx = np.concatenate(pages) if pages else np.empty(0, np.int64)
        return np.bincount(page_bins(group, bins)[idx], minlength=bins).astype(float)

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
