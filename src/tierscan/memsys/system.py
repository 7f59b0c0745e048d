"""The loaded latency model per tick (issue 12 items 2-5, 10): the one call the engine makes.

``MemorySystem.tick`` gathers, for every thread group, where its accesses land now (the
phase's page weights summed per node, kept current by the kernel's remap hooks), its LLC and
TLB behaviour (recomputed when the phase changes), and the kernel's traffic of the last tick
(migration copies); it solves the closed loop (solve.py) and hands each group its time per
access served by each node (``ThreadGroup.loaded_ns``), which both access models read through
``ThreadGroup.latency_per_node``: the rate model averages it over its node masses, the exact
model sums it over the accesses it runs. The models' arithmetic is otherwise unchanged, so
``latency_model = "idle"`` (no MemorySystem) is the old model bit for bit.

Per access of a group with write fraction w, LLC data hit ratio h, walks per access t (a
fraction 1 − h_pt of whose references miss the LLC), page tables on node p, on CPU node c:

    memory-time weight at node m:  load  a_l[m] = (1−h)·f_m·(1−w) + t·(1−h_pt)·[m = p]
                                   store a_s[m] = (1−h)·f_m·w
    time:   τ = compute + (h·llc_hit_ns + t·(walk_ns + h_pt·llc_hit_ns)
                           + Σ_m a_l[m]·(load_ns[c][m] + ℓ_m) + a_s[m]·(store_ns[c][m] + ℓ_m)) / mlp
    bytes read from m:    64·((1−h)·f_m·((1−w) + w·[not non-temporal]) + t·(1−h_pt)·[m = p])
    bytes written to m:   64·(1−h)·f_m·w

A store miss reads its line (write-allocate: the RFO) and writes it back later; a
non-temporal store only writes. A write-back is asynchronous: it loads the device but its
latency does not stall the thread.
"""

from __future__ import annotations

import numpy as np

from ..arrays import move_weight_out, node_mass
from . import memo
from .devices import devices_of
from .llc import LINE, LINES_PER_PAGE, LineCache, shared_llc_hits
from .solve import solve
from .tlb import Translation, no_translation, translation


def group_coefficients(f, write_fraction, mlp, compute_ns, load0, store0, *, h=0.0, walks=0.0,
                       h_pt=1.0, pt_node=0, non_temporal=False, llc_hit_ns=0.0, walk_ns=0.0):
    """(τ0, A, rd, wr) of one group for solve(): f = its accesses' share per node; load0 and
    store0 = idle latencies from its CPU node to each node."""
    f = np.asarray(f, float)
    w = float(write_fraction)
    miss = (1.0 - h) * f
    walk_miss = np.zeros(f.size)
    walk_miss[pt_node] = walks * (1.0 - h_pt)
    a_l = miss * (1.0 - w) + walk_miss
    a_s = miss * w
    fixed = h * llc_hit_ns + walks * (walk_ns + h_pt * llc_hit_ns)
    tau0 = compute_ns + (fixed + a_l @ load0 + a_s @ store0) / mlp
    A = (a_l + a_s) / mlp
    rd = LINE * (miss * ((1.0 - w) + (0.0 if non_temporal else w)) + walk_miss)
    wr = LINE * miss * w
    return tau0, A, rd, wr


def time_parts(write_fraction, mlp, load, store, *, walks=0.0, h_pt=1.0, pt_node=0,
               llc_hit_ns=0.0, walk_ns=0.0):
    """(ns per LLC-missing access served by each node, ns per LLC hit, ns every access adds
    for its page walk), each over mlp, with loaded ``load``/``store`` latencies."""
    w = float(write_fraction)
    miss = ((1.0 - w) * load + w * store) / mlp
    walk = walks * (walk_ns + h_pt * llc_hit_ns + (1.0 - h_pt) * load[pt_node]) / mlp
    return miss, llc_hit_ns / mlp, walk


def per_node_ns(f, write_fraction, mlp, load, store, *, h=0.0, **kw):
    """Memory time per access served by each node, with the LLC hits (ratio h) and the walk
    (the same for every node) folded in: what ``latency_per_node`` returns, so that
    f @ it + compute = τ."""
    miss, hit, walk = time_parts(write_fraction, mlp, load, store, **kw)
    return (1.0 - h) * miss + h * hit + walk


class _GroupState:
    def __init__(self, g):
        self.phase_idx = -1
        self.w = np.zeros(g.n_pages)
        self.node_mass = None
        self.h, self.walks, self.h_pt = 0.0, 0.0, 1.0
        self.coef = None
        self.tr = None            # its Translation (tlb.py) in this phase
        self.w_key = None         # content keys (memo.py) of w and of tr in this phase
        self.tr_key = None
        self.llc_lines = 0.0      # LLC lines it occupies (the shared Che solution)
        self.version = 0          # bumped whenever coef is recomputed (the solve's cache key)


def _kept(tr: Translation) -> Translation:
    """What the memo keeps of a phase's Translation: its walks and page-table line rates
    (read-only, shared by every run that hits), without the per-page miss probabilities,
    which the model does not read (0.1 GiB at 16 Mi pages)."""
    tr.line_rates.setflags(write=False)
    return Translation(tr.walks, tr.line_rates, None)


class MemorySystem:
    """Per-tick closed-loop solve for the engine's groups on the kernel's machine."""

    def __init__(self, engine, *, page_walks: bool = True):
        k = engine.kernel
        self.machine = k.machine
        self.devices = devices_of(self.machine)
        self.cpu = getattr(self.machine, "cpu", None)
        self.page_walks = page_walks
        self.state = {g.gid: _GroupState(g) for g in engine.groups}
        self.by_mm = engine.groups_of_mm          # mm id -> its thread groups
        n = self.machine.nr_nodes
        self.kernel_read = np.zeros(n)        # bytes the kernel moved since the last solve
        self.kernel_write = np.zeros(n)
        self._traffic = False                 # whether kernel_traffic came since the last tick
        self._no_traffic = np.zeros(n)        # a tick's background traffic without any (most
        self._no_traffic.setflags(write=False)  # ticks; dividing zeros was half their cost)
        self.solution = None
        self._key = None
        self.solves = 0
        self._last_tau: dict[int, float] = {}
        self.parts: dict[int, tuple] = {}     # gid -> time_parts of this tick (exact model)
        self.caches: dict[int, LineCache] = {}  # gid -> its part of the LLC (exact model)
        self._line_rngs: dict[tuple, np.random.Generator] = {}
        self.seed = getattr(engine, "seed", 0)
        k.remap_hooks.append(self._on_remap)

    @staticmethod
    def applies(machine) -> bool:
        """Whether the machine has anything the loaded model adds (curves, caches)."""
        return getattr(machine, "cpu", None) is not None or any(
            getattr(n, "memory", None) is not None for n in machine.nodes)

    # ---- inputs ---------------------------------------------------------------------------------
    def _on_remap(self, mm, page_slots, src_nids, dst_nid) -> None:
        slots = src = None
        for g in self.by_mm.get(mm.id, ()):
            s = self.state[g.gid]
            if s.node_mass is None:
                continue
            if slots is None:
                slots = np.asarray(page_slots, np.int64)
                src = np.asarray(src_nids, np.int64)
            moved, _ = move_weight_out(s.node_mass, src, slots, g.range_start, g.range_end,
                                       g.range_base, s.w)
            s.node_mass[dst_nid] += moved.sum()
            s.coef = None

    def kernel_traffic(self, src_nids, dst_nid: int, bytes_each: int) -> None:
        """Migration copies: each folio's bytes read from its node and written to dst_nid."""
        np.add.at(self.kernel_read, np.asarray(src_nids, np.int64), float(bytes_each))
        self.kernel_write[dst_nid] += float(bytes_each) * np.size(src_nids)
        self._traffic = True

    def _phase(self, engine, g, s) -> None:
        """A new phase: its weights, where they land, and its LLC and TLB behaviour."""
        s.phase_idx = g.phase_idx
        s.coef = None
        ph = g.phase
        k = engine.kernel
        s.w = np.zeros(g.n_pages) if ph is None else \
            np.asarray(ph.distribution.weights(g.n_pages), float)
        s.node_mass = node_mass(g.placement(k)[1], s.w, self.machine.nr_nodes)
        s.h, s.walks, s.h_pt = 0.0, 0.0, 1.0
        s.tr = None
        if self.cpu is None or ph is None:
            return
        s.w_key = memo.digest(s.w)
        if self.page_walks:
            huge = g.mm.pt.pmd_is_leaf(g.slots >> 9)
            # g.slots is the concatenation of its ranges: the ranges are its key
            slots_key = memo.digest("slots", g.range_start, g.range_end)
            tlb_4k, tlb_2m = self.cpu.tlb_4k, self.cpu.tlb_2m
            s.tr_key = ("tlb", memo.digest(s.w_key, slots_key, huge, tuple(tlb_4k),
                                           tuple(tlb_2m)))
            s.tr = memo.cached(s.tr_key, lambda: _kept(translation(s.w, g.slots, huge, tlb_4k,
                                                                    tlb_2m)))
        else:
            s.tr_key = ("none", g.n_pages)
            s.tr = no_translation(g.n_pages)
        s.walks = s.tr.walks

    def _share_llc(self, engine, cpu_node: int, running) -> None:
        """The LLC of one CPU node, shared by the running groups there: one Che solution over
        all their lines, each group's references weighted by its threads' access rate (from
        the last solve; threads over idle time per access before the first)."""
        groups = [g for g in running if g.spec.cpu_node == cpu_node and
                  self.state[g.gid].tr is not None]
        if not groups:
            return
        rate = []
        for g in groups:
            tau = self._last_tau.get(g.gid)
            if tau is None:
                s = self.state[g.gid]
                f = s.node_mass / max(s.node_mass.sum(), 1e-300)
                tau = engine.costs.compute_ns_per_access + g.phase.compute_ns + \
                    float(f @ self.machine.load_ns[cpu_node]) / g.spec.mlp
            rate.append(g.threads / tau)
        total = sum(rate)
        states = [self.state[g.gid] for g in groups]
        streams = [(r / total, s.w, s.tr.line_rates) for r, s in zip(rate, states)]
        llc = self.cpu.llc_bytes
        key = ("llc", llc, tuple((share, s.w_key, s.tr_key) for (share, _, _), s in
                                 zip(streams, states)))
        hits = memo.cached(key, lambda: tuple(shared_llc_hits(streams, llc)))
        for g, (h, h_pt, occ) in zip(groups, hits):
            s = self.state[g.gid]
            s.llc_lines = occ
            if (s.h, s.h_pt) != (h, h_pt):
                s.h, s.h_pt, s.coef = h, h_pt, None

    def _coefficients(self, engine, g, s):
        spec, c = g.spec, engine.costs
        ph = g.phase
        f = s.node_mass / max(s.node_mass.sum(), 1e-300)
        cpu = spec.cpu_node
        pt = getattr(spec, "pgtable_node", None)
        pt = cpu if pt is None else pt
        kw = dict(h=s.h, walks=s.walks, h_pt=s.h_pt, pt_node=pt, llc_hit_ns=c.llc_hit_ns,
                  walk_ns=c.walk_ns)
        coef = group_coefficients(f, ph.write_fraction, spec.mlp,
                                  c.compute_ns_per_access + ph.compute_ns,
                                  self.machine.load_ns[cpu], self.machine.store_ns[cpu],
                                  non_temporal=getattr(spec, "non_temporal", False), **kw)
        return f, kw, coef

    # ---- the tick -------------------------------------------------------------------------------
    def tick(self, engine, dt_ns: float) -> None:
        """Solve this tick's loop and give every running group its loaded time per access."""
        running = [g for g in engine.groups if g.finished_ns is None and g.phase is not None
                   and not g.phase.idle]        # a sleeping group loads no device
        if self._traffic:
            bg_r = self.kernel_read / dt_ns        # bytes per ns = GB/s
            bg_w = self.kernel_write / dt_ns
            self.kernel_read[:] = 0.0
            self.kernel_write[:] = 0.0
            self._traffic = False
        else:           # no copy since the last tick: the zeros the division would give
            bg_r = bg_w = self._no_traffic
        rows = []
        changed = set()
        for g in running:
            s = self.state[g.gid]
            if s.phase_idx != g.phase_idx:
                self._phase(engine, g, s)
                changed.add(g.spec.cpu_node)
        if self.cpu is not None:
            for cpu in changed:
                self._share_llc(engine, cpu, running)
        for g in running:
            s = self.state[g.gid]
            if s.coef is None:
                s.coef = self._coefficients(engine, g, s)
                s.version += 1
            rows.append(s.coef)
        if not rows:
            return
        key = (tuple((g.gid, self.state[g.gid].version) for g in running),
               bg_r.tobytes(), bg_w.tobytes())
        if key == self._key:
            return                  # same inputs, same solution: every group keeps its figures
        T = np.array([g.threads for g in running], float)
        tau0 = np.array([r[2][0] for r in rows])
        A, rd, wr = (np.array([r[2][i] for r in rows]) for i in (1, 2, 3))
        prev = None if self.solution is None else self.solution.ell
        self.solution = solve(self.devices, T, tau0, A, rd, wr, bg_r, bg_w, ell0=prev)
        self._key = key
        self.solves += 1
        self._last_tau.update({g.gid: t for g, t in zip(running, self.solution.tau)})
        ell = self.solution.ell
        for g, (f, kw, _) in zip(running, rows):
            cpu = g.spec.cpu_node
            args = (g.phase.write_fraction, g.spec.mlp, self.machine.load_ns[cpu] + ell,
                    self.machine.store_ns[cpu] + ell)
            g.loaded_ns = per_node_ns(f, *args, **kw)
            kw = dict(kw)
            kw.pop("h")
            self.parts[g.gid] = time_parts(*args, **kw)

    def exact_ns(self, engine, g, thread: int, addrs) -> float | None:
        """Memory time of the exact model's accesses ``addrs`` (already run through mm.access)
        by one thread of ``g``: each access's line goes through the LLC of the group's CPU node;
        a hit costs the hit time, a miss its node's loaded time. None without a ``[cpu]``
        (then the per-node figure is exact already). A hit or miss is drawn per access by the
        group's part of its CPU node's LLC (llc.py explains why a part)."""
        if self.cpu is None or g.gid not in self.parts:
            return None
        miss_ns, hit_ns, walk_ns = self.parts[g.gid]
        size = int(round(self.state[g.gid].llc_lines)) * LINE
        cache = self.caches.get(g.gid)
        key = (g.gid, thread)
        rng = self._line_rngs.get(key)
        if rng is None:       # its own stream: the exact model's draws stay as they were
            rng = self._line_rngs[key] = np.random.default_rng([self.seed, g.gid, thread, 64])
        if cache is None or cache.size != size:       # its share of the LLC (see llc.py)
            cache = self.caches[g.gid] = LineCache(size)
            # warmed with twice its size in lines drawn from the phase: the steady state the
            # analytic ratio describes (a cold start would add a transient the rate model lacks)
            warm = g.phase.distribution.sample(g.n_pages, 2 * size // LINE, rng)
            wp = g.mm.translate(g.addrs[warm]).astype(np.int64)
            cache.access(wp[wp >= 0] * LINES_PER_PAGE + rng.integers(0, LINES_PER_PAGE,
                                                                      int((wp >= 0).sum())))
        pfns = g.mm.translate(addrs).astype(np.int64)
        ok = pfns >= 0
        lines = pfns * LINES_PER_PAGE + rng.integers(0, LINES_PER_PAGE, pfns.size)
        hit = cache.access(lines[ok])
        nodes = engine.kernel.node_of(pfns[ok][~hit])
        missed = np.bincount(nodes, minlength=self.machine.nr_nodes)
        return float(missed @ miss_ns) + hit.sum() * hit_ns + \
            (~ok).sum() * float(miss_ns.max()) + pfns.size * walk_ns

    def llc_miss_ratio(self, g) -> float:
        """Share of the group's data accesses that miss the LLC (what IBS's L3-miss filter
        passes)."""
        return 1.0 - self.state[g.gid].h
