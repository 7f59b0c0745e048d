"""The rate model (DESIGN §5): nothing is done per access.

A group's threads issue accesses at rate R = 1 / (compute + latency / mlp), where the latency is
averaged over where the phase's distribution w puts its accesses now. Page p receives
accesses at λ_p = threads · R · w_p, so its expected accesses between two instants are
w_p · ΔC, with C the group's cumulative access count — placement changes alter R, and C
integrates them without per-page work.

Young bits are drawn lazily when someone looks (``materialize_*``, the kernel's access_source
hook, called by the walk, the rmap and mm.young): an entry whose A bit is clear becomes young
with P = 1 − exp(−Λ), Λ the hazard since the later of its last clear and the last inspection
that found it clear (a Poisson process is memoryless). An entry found young keeps its A bit
set until someone clears it, so every observer sees the same bit. A PMD entry (the non-leaf
accessed bit, or a THP leaf's young bit) draws from the sum of its pages' weights. The two
levels are drawn independently: a non-leaf bit found clear does not condition the PTE bits
under it (docs/fidelity.md).

Phase changes. Every lazily drawn event stays exact when the weights change (``on_phase``):
the hazard Λ since an entry's reference point is cumulative (``Hazards.haz`` banks the old
phase's part; the write hazard that draws the dirty bit likewise, once the write fraction
changes); a pending hint fault keeps its *remaining* hazard, an Exp(1) variable (memoryless),
which is re-spent at the new rate (an entry whose rate was 0 draws it afresh); sampled accesses
(IBS) and the heatmap are drawn from the distribution of the phase in which the accesses were
made, not the one current when someone asks.

Faults during the run (issue 13 item 8): a page with no present mapping (never touched, a
swap entry, or a page-cache page reclaim dropped) takes its next access at E/w_p accesses of
the group from when it became unmapped (E ~ Exp(1)), and a page mapping the zero page takes
its first store at E/(w_p · write fraction). When the group's accesses pass that point the
fault runs through the kernel's fault path (mm access: first touch, swap-in, file read, copy
on write), in the order the accesses came, and its cost stalls the group's threads. So a
workload grows into memory as it runs, and reclaimed pages come back as major faults.
"""

from __future__ import annotations

import numpy as np

from ..arrays import move_weight_out, node_mass, stable_argsort
from ..mm.constants import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PROTNONE
from ..mm.pagetable import PageTable
from ..prefetch import take
from .base import HEAT_BINS, AccessModel, bin_sums, compute_ns, fault_cost_ns, fault_counts
from .exact_kernels import GuideTables
from .rate_kernels import (
    bank_hazards, clear_spans, materialize_kernel, materialize_runs_drawing,
    materialize_runs_reference, pmd_weights, range_pmds,
)

_ANY_BIT = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
# materialize_pte_ranges takes the uniforms of a run of at least this many entries that read
# none (their A bit set: young already, or not present) without drawing them: a skip costs
# about as much as drawing a few hundred
UNREAD_GAP = 1024
_NO_WHAZ = np.empty(0)
# False: materialize_pte_ranges draws the uniforms up front (clear_spans, _uniforms), then the
# numpy form materialize_runs_reference (benchmarks/bench_run.py's reference row)
DRAW_IN_PASS = True


def skip_uniforms(rng, n: int) -> None:
    """Leave ``rng`` where ``rng.random(n)`` would: a PCG64 (default_rng's) is advanced n
    steps (one 64-bit output per double) in O(log n); but ``advance`` also drops the half of
    a 64-bit output kept for the next 32-bit draw, so with one kept, and for other bit
    generators, the n doubles are drawn and thrown away."""
    if n <= 0:
        return
    bg = rng.bit_generator
    if type(bg) is np.random.PCG64 and not bg.state["has_uint32"]:
        bg.advance(n)
    else:
        rng.random(n)


_LOW64 = (1 << 64) - 1


def _pcg_get(g, st, at: int) -> None:
    """st[at], st[at + 1] = the high and low words of PCG64 generator g's 128-bit state."""
    x = g.bit_generator.state["state"]["state"]
    st[at], st[at + 1] = x >> 64, x & _LOW64


def _pcg_set(g, st, at: int) -> None:
    """PCG64 generator g's 128-bit state = st[at], st[at + 1] (its inc and 32-bit buffer
    kept)."""
    d = g.bit_generator.state
    d["state"]["state"] = (int(st[at]) << 64) | int(st[at + 1])
    g.bit_generator.state = d


def runs_in_ranges(group, lo, hi):
    """``group``'s pages among the PTE slots of the ranges [lo[r], hi[r]), in that order, as
    runs: run k is the slots s0[k] .. s0[k] + ln[k] - 1, entries i0[k] .. i0[k] + ln[k] - 1 of
    the group (what ``group.index_of`` gives the listed slots, without listing them: the
    group's mappings are disjoint VMAs in address order). Returns (s0, i0, ln), ln > 0."""
    lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    a = np.maximum(lo[:, None], group.range_start[None, :])
    b = np.minimum(hi[:, None], group.range_end[None, :])
    r, g = np.nonzero(b > a)                 # row-major: by range, then by address
    s0 = a[r, g]
    return s0, group.range_base[g] + s0 - group.range_start[g], b[r, g] - s0


def pages_in_ranges(group, lo, hi) -> int:
    """How many of the PTE slots in the ranges [lo, hi) are ``group``'s pages: what
    ``(group.index_of(slots) >= 0).sum()`` counts over those slots, without listing them."""
    return int(runs_in_ranges(group, lo, hi)[2].sum())


def drop_leading(s0, i0, ln, p: int):
    """The runs without their first ``p`` entries."""
    ends = np.cumsum(ln)
    k = int(np.searchsorted(ends, p, "right"))          # the first run not wholly dropped
    cut = p - (int(ends[k - 1]) if k else 0)
    s0, i0, ln = s0[k:].copy(), i0[k:].copy(), ln[k:].copy()
    if ln.size:
        s0[0] += cut
        i0[0] += cut
        ln[0] -= cut
    return s0, i0, ln


class Hazards:
    """The lazy-draw state of one kind of entry (a group's pages, or its PMDs): rate per
    access of the group ``w``, the C of each entry's reference point ``c_ref``, the hazard
    banked from earlier phases ``haz``, and the pending hint faults (entry index and the C at
    which the access comes). ``whaz`` is the write hazard, kept only once a phase change has
    changed the write fraction (until then it is ``haz`` times that fraction).

    ``settled`` = (lo, hi, c): entries lo..hi-1 have their reference point at c and no banked
    hazard (c_ref == c, haz == whaz == 0), as a draw at c leaves them; so a draw of them at c
    again (Λ = 0) changes nothing but the uniforms it takes. Every writer of c_ref/haz/whaz
    keeps it true or drops it (``_unsettle``)."""

    def __init__(self, n: int):
        self.w = np.zeros(n)
        self.c_ref = np.zeros(n)
        self.haz = np.zeros(n)
        self.banked = False      # haz is still all +0.0: no phase change has banked into it
        self.whaz = None
        self.hint_idx = np.empty(0, np.int64)
        self.hint_at = np.empty(0)
        self.settled = None

    def _unsettle(self, C: float) -> None:
        """Reference points are about to move to C (hazard reset or banked): ``settled``
        stays true only if they were at C already."""
        if self.settled is not None and self.settled[2] != C:
            self.settled = None

    def settled_prefix(self, i, C: float) -> int:
        """How many leading entries of ``i`` a draw at C leaves unchanged (``settled``)."""
        st = self.settled
        if st is None or st[2] != C or i.size == 0 or not st[0] <= i[0] < st[1]:
            return 0
        inside = (i >= st[0]) & (i < st[1])
        return i.size if inside.all() else int(np.argmin(inside))

    def settled_prefix_runs(self, i0, ln, C: float) -> int:
        """settled_prefix() of the entries given as runs (i0[k] .. i0[k] + ln[k] - 1)."""
        st = self.settled
        if st is None or st[2] != C or ln.size == 0:
            return 0
        inside = np.where((i0 >= st[0]) & (i0 < st[1]), np.minimum(st[1] - i0, ln), 0)
        whole = inside == ln
        k = ln.size if whole.all() else int(np.argmin(whole))
        return int(inside[:k + 1].sum())

    def settle(self, i, C: float) -> None:
        """Entries ``i`` were just drawn at C (after ``_unsettle(C)``, so what ``settled``
        says still holds): extend it by them when they are one run of consecutive indices
        that joins it, or start it afresh from them when they do not join it."""
        if i.size == 0:
            return
        lo, hi = int(i[0]), int(i[-1]) + 1
        if hi - lo != i.size or (i.size > 1 and not (np.diff(i) == 1).all()):
            return                                   # not one run: keep what holds
        self._settle_run(lo, hi, C)

    def settle_runs(self, i0, ln, C: float) -> None:
        """settle() of the entries given as runs (ln > 0)."""
        if ln.size and (i0[1:] == i0[:-1] + ln[:-1]).all():
            self._settle_run(int(i0[0]), int(i0[-1] + ln[-1]), C)

    def _settle_run(self, lo: int, hi: int, C: float) -> None:
        st = self.settled
        if st is not None and st[2] == C and lo <= st[1] and st[0] <= hi:
            lo, hi = min(lo, st[0]), max(hi, st[1])
        self.settled = (lo, hi, C)

    def hazard(self, i, C: float, write_fraction: float):
        """(Λ, write part of Λ) of entries ``i`` since their reference point."""
        fresh = self.w[i] * (C - self.c_ref[i])
        lam = self.haz[i] + fresh
        wlam = lam * write_fraction if self.whaz is None else \
            self.whaz[i] + fresh * write_fraction
        return lam, wlam

    def referenced(self, i, C: float) -> None:
        """Entries ``i`` were just looked at or accessed: their hazard restarts at C."""
        self._unsettle(C)
        self.haz[i] = 0.0
        if self.whaz is not None:
            self.whaz[i] = 0.0
        self.c_ref[i] = C

    def change_rates(self, w_new, C: float, wf_old: float, wf_new: float, rng,
                     first: bool = False) -> None:
        """A phase change at C: bank the hazard of the old rates, re-spend the remaining
        hazard of pending hint faults at the new rates (not with ``rng=None``: the group has
        finished, no access will come), then take ``w_new``. ``first``: the group's first
        phase, before anything ran (every weight 0, every reference point at C = 0, nothing
        banked, no hint pending): there is nothing to bank, and the new zero arrays are left
        unread and unwritten (at 16 Mi pages, ~0.06 s of page faults)."""
        self._unsettle(C)
        if not first:
            start_whaz = self.whaz is None and wf_new != wf_old
            if start_whaz:
                self.whaz = np.empty(self.w.size)
            bank_hazards(self.w, self.c_ref, self.haz,
                         _NO_WHAZ if self.whaz is None else self.whaz, start_whaz, C, wf_old)
            self.banked = True
        ahead = self.hint_at > C
        if rng is not None and ahead.any():
            i, at = self.hint_idx[ahead], self.hint_at[ahead]
            spent = np.isfinite(at)                   # else the rate was 0: nothing spent
            left = np.empty(i.size)                   # the Exp(1) hazard still to spend
            left[spent] = (at[spent] - C) * self.w[i[spent]]
            left[~spent] = rng.exponential(size=int((~spent).sum()))
            with np.errstate(divide="ignore"):
                self.hint_at[ahead] = C + left / w_new[i]
        self.w = w_new

    def arm(self, i, C: float, rng) -> None:
        """Entries ``i`` were made PROT_NONE at C: their next access comes after E/w of the
        group's accesses, E ~ Exp(1); re-marking an entry redraws it."""
        with np.errstate(divide="ignore"):
            at = C + rng.exponential(size=i.size) / self.w[i]
        keep = ~np.isin(self.hint_idx, i)
        self.hint_idx = np.concatenate([self.hint_idx[keep], i])
        self.hint_at = np.concatenate([self.hint_at[keep], at])

    def take_due(self, C: float):
        """Pop the pending hint faults whose access has come: (entry indices, their C)."""
        due = self.hint_at <= C
        out = self.hint_idx[due], self.hint_at[due]
        self.hint_idx, self.hint_at = self.hint_idx[~due], self.hint_at[~due]
        return out


class GroupRates:
    """Per-page and per-PMD state of one thread group."""

    def __init__(self, group):
        self.pmds = range_pmds(group.range_start, group.range_end)   # its pages' PMDs
        self.pages = Hazards(group.n_pages)
        self.pmd = Hazards(self.pmds.size)
        self.C = 0.0                    # accesses issued by the group so far (all threads)
        self.node_mass = None           # Σ w_p over the pages on each node
        self.bin_w = None               # Σ w_p per heatmap bin (per phase)
        self.heat_banked = None         # expected accesses per bin from earlier phases
        self.write_fraction = None      # the current phase's (None before the first)
        self.phase = None               # the phase whose weights are ``w``
        self.unsampled: list = []       # [phase, accesses] not yet offered to sample()
        self.miss_slots = np.empty(0, np.int64)     # unmapped pages waiting for an access
        self.miss_at = np.empty(0)                  # ... and the C at which it comes
        self.miss_write = np.empty(0, bool)         # the fault is a store (a zero-page COW)

    @property
    def w(self):
        return self.pages.w

    def pmd_index(self, pmd_slots):
        i = np.searchsorted(self.pmds, pmd_slots)
        i = np.minimum(i, self.pmds.size - 1)
        return np.where(self.pmds[i] == pmd_slots, i, -1)


class RateModel(AccessModel):
    name = "rate"

    def __init__(self, seed: int):
        self.rng = np.random.default_rng([seed, 0x5A7E])
        self._ubuf = np.empty(0)                # _uniforms' buffer
        # _draw_runs' second position in the stream (its state is set from rng's)
        self._row1 = np.random.Generator(np.random.PCG64())
        self.rates: dict[int, GroupRates] = {}
        self.by_mm: dict[int, list[tuple]] = {}   # mm id -> [(group, rates)] of its groups
        self._heat_c: dict[int, float] = {}     # C at the last heat() call, per group
        self._served = None
        self._engine = None
        self._guides = GuideTables()

    # ---- setup --------------------------------------------------------------------------------
    def attach(self, engine) -> None:
        self._engine = engine
        k = engine.kernel
        self._served = np.zeros(k.machine.nr_nodes)
        for g in engine.groups:
            self.rates[g.gid] = GroupRates(g)
            self.by_mm.setdefault(g.mm.id, []).append((g, self.rates[g.gid]))
            self.on_phase(engine, g)
        k.access_source = self
        k.remap_hooks.append(self._on_remap)
        k.unmap_hooks.append(self._on_unmap)

    def on_phase(self, engine, group) -> None:
        """Take the new phase's weights; every lazily drawn event carries over (module doc)."""
        r = self.rates[group.gid]
        ph = group.phase
        if ph is None:       # np.zeros leaves the pages unwritten until someone writes them
            w = np.zeros(r.w.size)
        else:
            w = np.asarray(ph.distribution.weights(group.n_pages), float)
        wf_old = r.write_fraction
        wf = wf_old if ph is None else ph.write_fraction
        first = wf_old is None
        if first:                      # the first phase (attach)
            wf_old = wf
        else:                          # bank the old phase's heat before its weights go
            r.heat_banked = self._heat_since(
                group, r, HEAT_BINS if r.bin_w is None else r.bin_w.size)
        rng = None if ph is None else self.rng
        nr_nodes = engine.kernel.machine.nr_nodes
        if ph is None:      # the group is done: no page has weight, no first access will come
            w_pmd, r.node_mass = np.zeros(r.pmds.size), np.zeros(nr_nodes)
        else:               # a PMD's weight (its pages'), and the pages' weight on each node
            pfns, nodes = group.placement(engine.kernel)
            w_pmd = pmd_weights(group.range_start, group.range_end, r.pmds, w)
            r.node_mass = node_mass(nodes, w, nr_nodes)
        r.pages.change_rates(w, r.C, wf_old, wf, rng, first)
        r.pmd.change_rates(w_pmd, r.C, wf_old, wf, rng, first)
        r.write_fraction, r.phase, r.bin_w = wf, ph, None
        if ph is None:
            r.miss_slots, r.miss_at, r.miss_write = np.empty(0, np.int64), np.empty(0), \
                np.empty(0, bool)
            return
        # the new weights redraw every pending first access (memoryless, as for hint faults)
        r.miss_slots, r.miss_at, r.miss_write = np.empty(0, np.int64), np.empty(0), \
            np.empty(0, bool)
        self._arm_faults(group, r, group.slots[pfns < 0])
        zero = engine.kernel.is_zero_pfn(pfns)
        if zero.any() and wf > 0:
            self._arm_faults(group, r, group.slots[zero], store=True)

    def _leave_nodes(self, mm, page_slots, src_nids):
        """Take the weight of these pages of ``mm`` off their nodes' masses (one compiled pass,
        arrays.move_weight_out). Yields (group, rates, the weights taken off in slot order,
        which slots are the group's pages) for each thread group of ``mm`` (none for an mm
        without one)."""
        groups = self.by_mm.get(mm.id, ())
        if not groups:
            return
        slots = np.asarray(page_slots, np.int64)
        src = np.asarray(src_nids, np.int64)
        for g, r in groups:
            moved, idx = move_weight_out(r.node_mass, src, slots, g.range_start, g.range_end,
                                         g.range_base, r.w)
            yield g, r, moved, idx >= 0

    def _on_remap(self, mm, page_slots, src_nids, dst_nid) -> None:
        """Pages of ``mm`` moved between nodes: move their weight in the node masses."""
        for _, r, moved, _ in self._leave_nodes(mm, page_slots, src_nids):
            r.node_mass[dst_nid] += moved.sum()

    def _on_unmap(self, mm, page_slots, src_nids) -> None:
        """Pages of ``mm`` left memory (swapped out, or dropped from the page cache): take
        their weight off their nodes and draw when each is accessed again."""
        for g, r, _, ok in self._leave_nodes(mm, page_slots, src_nids):
            self._arm_faults(g, r, np.asarray(page_slots, np.int64)[ok])

    def _arm_faults(self, group, r, slots, store: bool = False, pending: bool = True) -> None:
        """Draw the access (or, with ``store``, the store) that will fault each page: E/w
        accesses of the group from now, E ~ Exp(1); pages of weight 0 never fault.
        ``pending=False``: the caller knows none of ``slots`` has a draw pending, so the
        search of the pending list for them (np.isin over up to millions of entries at a
        200-GiB scale, on every re-arm) is skipped; a debug kernel still checks it."""
        if slots.size == 0:
            return
        idx = group.index_of(slots)
        rate = r.w[idx] * ((r.write_fraction or 0.0) if store else 1.0)
        live = rate > 0
        slots, rate = slots[live], rate[live]
        at = r.C + self.rng.exponential(size=slots.size) / rate
        if pending:
            keep = ~np.isin(r.miss_slots, slots)
        else:
            keep = slice(None)
            if group.mm.kernel.debug and np.isin(r.miss_slots, slots).any():
                raise AssertionError("rate model: a page re-armed with a draw pending")
        r.miss_slots = np.concatenate([r.miss_slots[keep], slots])
        r.miss_at = np.concatenate([r.miss_at[keep], at])
        r.miss_write = np.concatenate([r.miss_write[keep], np.full(slots.size, store)])

    def _take_faults(self, engine, group, r) -> None:
        """Run the faults whose access came during the group's last advance through the
        kernel's fault path, in access order; charge them to the group's threads."""
        due = r.miss_at <= r.C
        if not due.any():
            return
        order = stable_argsort(r.miss_at[due])
        slots, store = r.miss_slots[due][order], r.miss_write[due][order]
        r.miss_slots, r.miss_at = r.miss_slots[~due], r.miss_at[~due]
        r.miss_write = r.miss_write[~due]
        writes = store | (self.rng.random(slots.size) < (r.write_fraction or 0.0))
        k = engine.kernel
        before = fault_counts(k)
        addrs = PageTable.addr(slots)
        idx = group.index_of(slots)
        old = k.node_of(group.mm.translate(addrs))        # a zero-page COW was mapped already
        np.subtract.at(r.node_mass, old[old >= 0], r.w[idx[old >= 0]])
        group.mm._access(addrs, writes, group.spec.cpu_node)
        group.stall_ns += fault_cost_ns(k, engine.costs, before) / group.threads
        # the pages are mapped now: their weight serves from their node, their A bit is set
        pfns = group.mm.translate(addrs)
        nodes = k.node_of(pfns)
        mapped = nodes >= 0
        np.add.at(r.node_mass, nodes[mapped], r.w[idx[mapped]])
        r.pages.referenced(idx, r.C)
        zero = k.is_zero_pfn(pfns) & ((r.write_fraction or 0.0) > 0)
        if zero.any():                    # a read mapped the zero page: its store is to come
            # these slots were taken off the pending list above, and the fault path re-arms
            # only pages it unmaps (reclaim), never one it leaves on the zero page
            self._arm_faults(group, r, slots[zero], store=True, pending=False)

    # ---- time -----------------------------------------------------------------------------------
    def _mass_share(self, engine, group, r) -> np.ndarray:
        """Where the group's accesses are served: the weights of its mapped pages per node.
        While nothing is mapped yet (every access faults first), the CPU's own node for their
        cost (a first touch allocates there by default); ``advance`` then counts them as
        served by no node."""
        total = r.node_mass.sum()
        if total > 0:
            return r.node_mass / total
        share = np.zeros_like(r.node_mass)
        share[group.spec.cpu_node] = 1.0
        return share

    def ns_per_access(self, engine, group) -> float:
        r = self.rates[group.gid]
        return self._ns_per_access(engine, group, self._mass_share(engine, group, r))

    @staticmethod
    def _ns_per_access(engine, group, share) -> float:
        return compute_ns(engine, group) + float(share @ group.latency_per_node())

    def advance(self, engine, group, budget_ns: float) -> tuple[float, float]:
        """Accesses per thread in ``budget_ns``; work does not depend on how many."""
        r = self.rates[group.gid]
        share = self._mass_share(engine, group, r)   # for the cost and for what is served
        cost = self._ns_per_access(engine, group, share)
        a = min(budget_ns / cost, group.remaining_in_phase())
        r.C += a * group.threads
        if r.node_mass.sum() > 0:
            # while nothing is mapped every access is a first-touch fault: no node served it
            # (the faults are charged as faults; the pages land where the allocator puts them)
            # a node all of whose pages left keeps the float residue of the remap hooks' mass
            # sums (~1e-9, either sign): it served nothing, and a count is never negative
            self._served += a * group.threads * np.maximum(share, 0.0)
        if r.unsampled and r.unsampled[-1][0] is r.phase:
            r.unsampled[-1][1] += a * group.threads
        else:
            r.unsampled.append([r.phase, a * group.threads])
        return a, a * cost

    def served_by_node(self, engine) -> np.ndarray:
        out, self._served = self._served, np.zeros_like(self._served)
        return out

    def _heat_since(self, group, r, bins: int) -> np.ndarray:
        """Expected accesses per bin since the last heat() call, banked phases included."""
        if r.bin_w is None or r.bin_w.size != bins:
            r.bin_w = bin_sums(group.n_pages, bins, r.w)
        out = (r.C - self._heat_c.get(group.gid, 0.0)) * r.bin_w
        self._heat_c[group.gid] = r.C
        if r.heat_banked is not None and r.heat_banked.size == bins:
            out = out + r.heat_banked
        r.heat_banked = None
        return out

    def heat(self, engine, group, bins: int) -> np.ndarray:
        """Expected accesses per bin since the last call: ΔC times each bin's weight, per
        phase."""
        return self._heat_since(group, self.rates[group.gid], bins)

    # ---- lazy young bits (the kernel's access_source) ------------------------------------------
    def materialize_ptes(self, mm, slots) -> None:
        if len(slots) == 0:
            return
        for g, r in self.by_mm.get(mm.id, ()):     # each group draws its own pages' bits
            s = np.asarray(slots, np.int64)
            idx = g.index_of(s)
            ok = idx >= 0
            if not ok.all():
                s, idx = s[ok], idx[ok]
            self._materialize(mm.pt.pte, s, _PAGE_PRESENT | _PAGE_PROTNONE, idx, r.pages, r,
                              self._c_now(g, r))

    def materialize_pmds(self, mm, pmd_slots) -> None:
        if len(pmd_slots) == 0:
            return
        for g, r in self.by_mm.get(mm.id, ()):
            p = np.asarray(pmd_slots, np.int64)
            i = r.pmd_index(p)
            ok = i >= 0
            self._materialize(mm.pt.pmd, p[ok], _ANY_BIT, i[ok], r.pmd, r,  # present:
                              self._c_now(g, r))                          # not empty

    def _c_now(self, group, r) -> float:
        """The group's access count "now". Inside a pass of a daemon whose work the workload
        overlaps (kswapd: Accounting.run_ns) it is C plus the accesses the group's threads
        make meanwhile, at the group's current rate: they run on other CPUs, so a hot page is
        young again between two agings of one kswapd pass, as on a real machine. An entry
        looked at then is referenced a little ahead of C; a later draw before C catches up
        sees a negative fresh hazard, i.e. a little less than it should (docs/fidelity.md)."""
        engine = self._engine
        if engine is None or group.phase is None:
            return r.C
        a = engine.accounting
        if a.run_ns <= 0 or not getattr(a.current, "workload_runs_meanwhile", False):
            return r.C
        return r.C + a.run_ns * group.threads / self.ns_per_access(engine, group)

    def _materialize(self, table, slots, present_mask, i, hz: Hazards, r, c_now) -> None:
        """Draw the A (and D) bits of present entries (some bit of ``present_mask`` set) whose
        A bit is clear from the hazard since their reference point, then make now their
        reference point: P(young) = 1 - exp(-Λ); given young, dirty with P(a write among
        them) = (1 - exp(-Λ_w)) / (1 - exp(-Λ)), Λ_w the hazard of the writes. One compiled
        loop (rate_kernels.py, beside its numpy reference); the uniforms come from the
        model's generator as before: (2, n), the first row for the young bits.

        Leading entries drawn at this C already (``Hazards.settled``: the walk resumed after
        a stop draws again from where it stopped) would change nothing: their uniforms are
        skipped, not drawn, and the kernel runs on the rest."""
        c_now, n = float(c_now), slots.size
        p = hz.settled_prefix(i, c_now)
        u = self._uniforms(n, p)
        slots, i = slots[p:], i[p:]
        hz._unsettle(c_now)
        materialize_kernel(table, slots, np.uint64(present_mask), i, hz.haz,
                           _NO_WHAZ if hz.whaz is None else hz.whaz, hz.c_ref, hz.w,
                           c_now, float(r.write_fraction), u)
        hz.settle(i, c_now)

    def materialize_pte_ranges(self, mm, lo, hi) -> None:
        """materialize_ptes(mm, every slot of the disjoint ranges [lo[r], hi[r]) in order):
        the same draws from the same uniforms, the slots given as ranges (the walk's fast
        path asks for up to a PUD of PTEs at once: no slot list, no index lookup, one pass)."""
        lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
        if not (hi - lo).sum():                    # materialize_ptes() of no slots
            return
        for g, r in self.by_mm.get(mm.id, ()):
            s0, i0, ln = runs_in_ranges(g, lo, hi)
            hz, c_now = r.pages, float(self._c_now(g, r))
            n, present = int(ln.sum()), np.uint64(_PAGE_PRESENT | _PAGE_PROTNONE)
            p = hz.settled_prefix_runs(i0, ln, c_now)
            if p:
                s0, i0, ln = drop_leading(s0, i0, ln, p)
            whaz = _NO_WHAZ if hz.whaz is None else hz.whaz
            if DRAW_IN_PASS:
                hz._unsettle(c_now)
                self._draw_runs(mm.pt.pte, s0, i0, ln, n, p, hz, whaz, c_now,
                                float(r.write_fraction))
            else:                  # the numpy form: uniforms first
                room = (n - p) // UNREAD_GAP + 1
                a, b = np.empty(room, np.int64), np.empty(room, np.int64)
                k = clear_spans(mm.pt.pte, s0, ln, present, UNREAD_GAP, a, b)
                u = self._uniforms(n, p, zip(a[:k].tolist(), b[:k].tolist()))
                hz._unsettle(c_now)
                materialize_runs_reference(mm.pt.pte, s0, i0, ln, present, hz.haz, whaz,
                                           hz.c_ref, hz.w, c_now, float(r.write_fraction), u)
            hz.settle_runs(i0, ln, c_now)

    def _draw_runs(self, table, s0, i0, ln, n: int, p: int, hz: Hazards, whaz, C: float,
                   write_fraction: float) -> None:
        """The draw of n entries, the first p settled (dropped from the runs), in one compiled
        pass that draws its own uniforms from the model's PCG64 (rate_kernels.
        materialize_runs_drawing, numpy's stream): the generator ends where _uniforms(n, p,
        spans) and the draw leave it, with the same doubles read, without the (2, n - p)
        buffer and the pass that finds the spans (clear_spans). Row 0 is the stream's doubles
        [p, n), row 1 [n + p, 2n): the pass steps a state at each; gaps of at least
        UNREAD_GAP columns no entry reads are taken without drawing (skip_uniforms, on the
        model's generator and a second one holding row 1's state), and the stream is left
        where row 1 ends."""
        g0, g1 = self.rng, self._row1
        skip_uniforms(g0, p)
        g1.bit_generator.state = g0.bit_generator.state
        skip_uniforms(g1, n)
        st = np.empty(6, np.uint64)
        _pcg_get(g0, st, 0)
        _pcg_get(g1, st, 2)
        inc = g0.bit_generator.state["state"]["inc"]
        st[4], st[5] = inc >> 64, inc & _LOW64
        m = n - p
        # nothing banked: the pass neither reads nor writes haz (all +0.0; an empty array
        # says so), so the walk does not fault in its zero pages (bench_run's walk row on
        # fresh arrays: 484 instead of 969 page faults in the pass, the rest c_ref's)
        haz = hz.haz if getattr(hz, "banked", True) else np.empty(0)
        r = q = k = c = 0
        present = np.uint64(_PAGE_PRESENT | _PAGE_PROTNONE)
        while True:
            r, q, k, c = materialize_runs_drawing(table, s0, i0, ln, present, haz, whaz,
                                                  hz.c_ref, hz.w, C, write_fraction, st,
                                                  r, q, k, c, UNREAD_GAP)
            if r >= s0.size:
                break
            for g, at in ((g0, 0), (g1, 2)):
                _pcg_set(g, st, at)
                skip_uniforms(g, k - c)
                _pcg_get(g, st, at)
            c = k
        _pcg_set(g1, st, 2)
        skip_uniforms(g1, m - c)
        g0.bit_generator.state = g1.bit_generator.state

    def _uniforms(self, n: int, p: int, spans=None) -> np.ndarray:
        """The (2, n - p) uniforms of a draw of n entries whose first p are settled: the
        draw's (2, n) layout from the generator (row 0 the young bits), the settled entries'
        columns taken without drawing (skip p, draw n - p, skip p, draw n - p). With
        ``spans`` ([a, b) of columns 0 .. n - p, ascending) only those columns are drawn
        and the rest taken without drawing: the caller's draw reads no other (the others
        are left as they were). Drawn into a buffer kept across calls (valid until the next
        call): a walk's PUD range is 4 MiB of them, and fresh pages cost about as much as
        drawing."""
        m = n - p
        if self._ubuf.size < 2 * m:
            self._ubuf = np.empty(2 * m)
        u = self._ubuf[:2 * m].reshape(2, m)
        if spans is None and not p:
            self.rng.random(out=u)                   # = rng.random((2, n))
            return u
        spans = [(0, m)] if spans is None else list(spans)
        for row in u:
            skip_uniforms(self.rng, p)
            at = 0
            for a, b in spans:
                skip_uniforms(self.rng, a - at)
                self.rng.random(out=row[a:b])
                at = b
            skip_uniforms(self.rng, m - at)
        return u

    def skip_draws(self, mm, pmd_slots, lo, hi) -> None:
        """Take from the generator the uniforms that ``materialize_pmds(mm, pmd_slots)`` and
        then ``materialize_ptes`` of the PTE slot ranges [lo, hi) would take, without drawing:
        for callers whose entries were all materialized at this same C already (the walk's
        fast path after a stop: zero hazard, so P(young) = 0, no bit is set and no reference
        point moves). Two uniforms per entry of each group, as ``_materialize`` takes them."""
        n = 0
        p = np.asarray(pmd_slots, np.int64)
        lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
        for g, r in self.by_mm.get(mm.id, ()):
            if p.size:
                n += int((r.pmd_index(p) >= 0).sum())
            if lo.size:
                n += pages_in_ranges(g, lo, hi)
        skip_uniforms(self.rng, 2 * n)

    # ---- NUMA hint faults ---------------------------------------------------------------------
    def arm_hint_faults(self, mm, slots, pmd: bool = False) -> None:
        """Entries just made PROT_NONE: draw when each is next accessed, E/w accesses of the
        group from now with E ~ Exp(1) (the hazard after marking, DESIGN §5; a phase change
        re-spends what is left of E at the new rate). ``slots`` are page slots, or PMD slots
        of THP leaves with ``pmd`` (whose rate is the sum of their pages' weights, as for
        their young bit)."""
        if len(slots) == 0:
            return
        slots = np.asarray(slots, np.int64)
        for g, r in self.by_mm.get(mm.id, ()):
            idx = r.pmd_index(slots) if pmd else g.index_of(slots)
            (r.pmd if pmd else r.pages).arm(idx[idx >= 0], r.C, self.rng)

    def after_advance(self, engine, group) -> None:
        """Take the hint faults whose access came during the group's last advance, in the
        order they happened (PTE and THP faults interleaved): restore the entry, tell NUMA
        balancing, set the young bit (an event drawn for one observer is an access every
        observer sees)."""
        from ..mm.memory import do_numa_hint_faults   # looked up per call: tests replace it

        r = self.rates[group.gid]
        self._take_faults(engine, group, r)
        if not ((r.pages.hint_at <= r.C).any() or (r.pmd.hint_at <= r.C).any()):
            return
        pt = group.mm.pt
        pidx, p_at = r.pages.take_due(r.C)
        hidx, h_at = r.pmd.take_due(r.C)
        slots, pmds = group.slots[pidx], r.pmds[hidx]
        at = np.concatenate([p_at, h_at])
        # a PTE fault needs the entry still PROT_NONE (and no THP over it); a PMD fault needs a
        # PROT_NONE leaf (split or remapped entries lost their pending fault)
        live = ~pt.pmd_is_leaf(slots >> 9) & \
            ((pt.pte[slots] & (_PAGE_PRESENT | _PAGE_PROTNONE)) == _PAGE_PROTNONE)
        plive = pt.pmd_is_leaf(pmds) & ((pt.pmd[pmds] & _PAGE_PRESENT) == 0)
        is_pmd = np.concatenate([np.zeros(slots.size, bool), np.ones(pmds.size, bool)])
        fault = np.concatenate([slots, pmds << 9])   # a THP faults at its first page
        keep = np.concatenate([live, plive])
        order = stable_argsort(at[keep])
        fault, is_pmd = fault[keep][order], is_pmd[keep][order]
        if fault.size == 0:
            return
        writes = self.rng.random(fault.size) < r.write_fraction
        # one fault per entry: take_due pops each pending entry once, a PTE fault's slot is
        # under no THP, and a THP faults at its first slot
        do_numa_hint_faults(group.mm, fault, writes, group.spec.cpu_node, distinct=True)
        ps, pw = fault[~is_pmd], writes[~is_pmd]
        pt.pte[ps] |= _PAGE_ACCESSED
        pt.pte[ps[pw]] |= _PAGE_DIRTY
        r.pages.referenced(group.index_of(ps), r.C)
        hp, hw = fault[is_pmd] >> 9, writes[is_pmd]
        if hp.size:
            pt.pmd[hp] |= _PAGE_ACCESSED
            pt.pmd[hp[hw]] |= _PAGE_DIRTY
            r.pmd.referenced(r.pmd_index(hp), r.C)
        group.stall_ns += fault.size * engine.costs.hint_fault_ns / group.threads

    # ---- sampled events (IBS-like) ------------------------------------------------------------
    def sample(self, engine, group, per_access: float, dt_ns: float,
               loads_only: bool = False) -> np.ndarray:
        """Pfns hit by sampled accesses: a Poisson number of samples over the accesses the
        group made since the last call, each drawn from the distribution of the phase it was
        made in. A phase's stores are independent of the page, so dropping them thins the rate
        by its load fraction."""
        r = self.rates[group.gid]
        segments, r.unsampled = r.unsampled, []
        pages = []
        for ph, a in segments:
            if ph is None or a <= 0:
                continue
            if loads_only:
                a *= 1.0 - ph.write_fraction
            n = self.rng.poisson(a * per_access)
            pages.append(self._draw(ph.distribution, group.n_pages, int(n)))
        if not pages:
            return np.empty(0, np.int64)
        # the pages' addresses gathered with prefetches (a random read of a table of 8 bytes a
        # page per sample: group.addrs[idx], the same values)
        return group.mm.translate(take(group.addrs, np.concatenate(pages)))

    def _draw(self, dist, n_pages: int, count: int) -> np.ndarray:
        """``dist.sample(n_pages, count, self.rng)`` (the reference, ``_draw_reference``), bit
        for bit: the tabulated distributions through a guide table kept per distribution
        (exact_kernels.GuideTables), O(1) a draw instead of a binary search over a CDF of
        n_pages entries that misses the cache at every level."""
        return self._guides.draw(dist, n_pages, count, self.rng)

    def _draw_reference(self, dist, n_pages: int, count: int) -> np.ndarray:
        return dist.sample(n_pages, count, self.rng)
