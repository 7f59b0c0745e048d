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
set until someone clears it, so every observer sees the same bit. Λ carries over phase
changes in ``haz``. A PMD entry (the non-leaf accessed bit, or a THP leaf's young bit) draws
from the sum of its pages' weights. The two levels are drawn independently: a non-leaf bit
found clear does not condition the PTE bits under it (docs/fidelity.md).
"""

from __future__ import annotations

import numpy as np

from ..mm.constants import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PROTNONE
from .base import AccessModel, page_bins


class GroupRates:
    """Per-page and per-PMD state of one thread group."""

    def __init__(self, group):
        n = group.n_pages
        self.w = np.zeros(n)
        self.c_ref = np.zeros(n)        # C at the page's last reference
        self.haz = np.zeros(n)          # hazard accumulated in earlier phases
        self.pmds = np.unique(group.slots >> 9)
        self.page_pmd = np.searchsorted(self.pmds, group.slots >> 9)
        self.pmd_w = np.zeros(self.pmds.size)
        self.pmd_c_ref = np.zeros(self.pmds.size)
        self.pmd_haz = np.zeros(self.pmds.size)
        self.C = 0.0                    # accesses issued by the group so far (all threads)
        self.hint_slots = np.empty(0, np.int64)     # PROT_NONE pages waiting for an access
        self.hint_at = np.empty(0)                  # ... and the C at which it comes
        self.hint_pmds = np.empty(0, np.int64)      # PROT_NONE THP leaves (PMD slots)
        self.hint_pmd_at = np.empty(0)
        self.node_mass = None           # Σ w_p over the pages on each node
        self.bin_w = None               # Σ w_p per heatmap bin (per phase)
        self.write_fraction = 0.0

    def pmd_index(self, pmd_slots):
        i = np.searchsorted(self.pmds, pmd_slots)
        i = np.minimum(i, self.pmds.size - 1)
        return np.where(self.pmds[i] == pmd_slots, i, -1)


class RateModel(AccessModel):
    name = "rate"

    def __init__(self, seed: int):
        self.rng = np.random.default_rng([seed, 0x5A7E])
        self.rates: dict[int, GroupRates] = {}
        self.by_mm: dict[int, tuple] = {}
        self.unsampled: dict[int, float] = {}   # accesses since the last sample(), per group
        self._heat_c: dict[int, float] = {}     # C at the last heat() call, per group
        self._served = None

    # ---- setup --------------------------------------------------------------------------------
    def attach(self, engine) -> None:
        k = engine.kernel
        self._served = np.zeros(k.machine.nr_nodes)
        for g in engine.groups:
            self.rates[g.gid] = GroupRates(g)
            self.by_mm[g.mm.id] = (g, self.rates[g.gid])
            self.on_phase(engine, g)
        k.access_source = self
        k.remap_hooks.append(self._on_remap)

    def on_phase(self, engine, group) -> None:
        """Carry the hazard of the old weights over, then take the new phase's weights."""
        r = self.rates[group.gid]
        r.haz += r.w * (r.C - r.c_ref)
        r.c_ref[:] = r.C
        r.pmd_haz += r.pmd_w * (r.C - r.pmd_c_ref)
        r.pmd_c_ref[:] = r.C
        ph = group.phase
        if ph is None:
            r.w = np.zeros_like(r.w)
        else:
            r.w = np.asarray(ph.distribution.weights(group.n_pages), float)
            r.write_fraction = ph.write_fraction
        r.pmd_w = np.bincount(r.page_pmd, weights=r.w, minlength=r.pmds.size)
        r.bin_w = None
        nodes = engine.kernel.node_of(group.mm.translate(group.addrs))
        r.node_mass = np.bincount(np.maximum(nodes, 0), weights=r.w * (nodes >= 0),
                                  minlength=engine.kernel.machine.nr_nodes)

    def _on_remap(self, mm, page_slots, src_nids, dst_nid) -> None:
        """Pages of ``mm`` moved between nodes: move their weight in the node masses."""
        hit = self.by_mm.get(mm.id)
        if hit is None:
            return
        g, r = hit
        idx = g.index_of(page_slots)
        ok = idx >= 0
        np.subtract.at(r.node_mass, np.asarray(src_nids)[ok], r.w[idx[ok]])
        r.node_mass[dst_nid] += r.w[idx[ok]].sum()

    # ---- time -----------------------------------------------------------------------------------
    def ns_per_access(self, engine, group) -> float:
        r = self.rates[group.gid]
        mass = r.node_mass / max(r.node_mass.sum(), 1e-300)
        return engine.costs.compute_ns_per_access + float(mass @ group.latency_per_node())

    def advance(self, engine, group, budget_ns: float) -> tuple[float, float]:
        """Accesses per thread in ``budget_ns``; work does not depend on how many."""
        r = self.rates[group.gid]
        cost = self.ns_per_access(engine, group)
        a = min(budget_ns / cost, group.remaining_in_phase())
        r.C += a * group.threads
        self._served += a * group.threads * r.node_mass / max(r.node_mass.sum(), 1e-300)
        self.unsampled[group.gid] = self.unsampled.get(group.gid, 0.0) + a * group.threads
        return a, a * cost

    def served_by_node(self, engine) -> np.ndarray:
        out, self._served = self._served, np.zeros_like(self._served)
        return out

    def heat(self, engine, group, bins: int) -> np.ndarray:
        """Expected accesses per bin since the last call: ΔC times each bin's weight."""
        r = self.rates[group.gid]
        last = self._heat_c.get(group.gid, 0.0)
        self._heat_c[group.gid] = r.C
        if r.bin_w is None or r.bin_w.size != bins:
            r.bin_w = np.bincount(page_bins(group, bins), weights=r.w, minlength=bins)
        return (r.C - last) * r.bin_w

    # ---- lazy young bits (the kernel's access_source) ------------------------------------------
    def materialize_ptes(self, mm, slots) -> None:
        hit = self.by_mm.get(mm.id)
        if hit is None or len(slots) == 0:
            return
        g, r = hit
        slots = np.asarray(slots, np.int64)
        idx = g.index_of(slots)
        ok = idx >= 0
        e = mm.pt.pte[slots[ok]]
        present = (e & (_PAGE_PRESENT | _PAGE_PROTNONE)) != 0
        self._materialize(mm.pt.pte, slots[ok], present, idx[ok], r.haz, r.c_ref, r.w, r)

    def materialize_pmds(self, mm, pmd_slots) -> None:
        hit = self.by_mm.get(mm.id)
        if hit is None or len(pmd_slots) == 0:
            return
        _, r = hit
        pmd_slots = np.asarray(pmd_slots, np.int64)
        i = r.pmd_index(pmd_slots)
        ok = i >= 0
        present = mm.pt.pmd[pmd_slots[ok]] != 0
        self._materialize(mm.pt.pmd, pmd_slots[ok], present, i[ok], r.pmd_haz, r.pmd_c_ref,
                          r.pmd_w, r)

    def _materialize(self, table, slots, present, i, haz, c_ref, w, r) -> None:
        """Draw the A (and D) bits of present entries whose A bit is clear from the hazard
        since their reference point, then make now their reference point."""
        clear = present & ((table[slots] & _PAGE_ACCESSED) == 0)
        young, dirty = self._draw(haz[i] + w[i] * (r.C - c_ref[i]), r.write_fraction)
        table[slots[clear & young]] |= _PAGE_ACCESSED
        table[slots[clear & young & dirty]] |= _PAGE_DIRTY
        haz[i] = 0.0
        c_ref[i] = r.C

    def _draw(self, lam, write_fraction):
        """P(young) = 1 - exp(-Λ); given young, dirty with P(a write among them)."""
        u = self.rng.random((2, lam.size))
        p_young = -np.expm1(-lam)
        young = u[0] < p_young
        p_dirty = np.divide(-np.expm1(-lam * write_fraction), p_young,
                            out=np.zeros_like(lam), where=p_young > 0)
        return young, u[1] < p_dirty

    # ---- NUMA hint faults ---------------------------------------------------------------------
    def arm_hint_faults(self, mm, slots, pmd: bool = False) -> None:
        """Entries just made PROT_NONE: draw when each is next accessed, E/w accesses of the
        group from now with E ~ Exp(1) (the hazard after marking, DESIGN §5). ``slots`` are
        page slots, or PMD slots of THP leaves with ``pmd`` (whose rate is the sum of their
        pages' weights, as for their young bit)."""
        hit = self.by_mm.get(mm.id)
        if hit is None or len(slots) == 0:
            return
        g, r = hit
        slots = np.asarray(slots, np.int64)
        if pmd:
            idx = r.pmd_index(slots)
            w = r.pmd_w
        else:
            idx = g.index_of(slots)
            w = r.w
        ok = idx >= 0
        slots, idx = slots[ok], idx[ok]
        with np.errstate(divide="ignore"):
            at = r.C + self.rng.exponential(size=idx.size) / w[idx]
        if pmd:
            keep = ~np.isin(r.hint_pmds, slots)     # re-marking redraws
            r.hint_pmds = np.concatenate([r.hint_pmds[keep], slots])
            r.hint_pmd_at = np.concatenate([r.hint_pmd_at[keep], at])
        else:
            keep = ~np.isin(r.hint_slots, slots)
            r.hint_slots = np.concatenate([r.hint_slots[keep], slots])
            r.hint_at = np.concatenate([r.hint_at[keep], at])

    def after_advance(self, engine, group) -> None:
        """Take the hint faults whose access came during the group's last advance, in the
        order they happened (PTE and THP faults interleaved): restore the entry, tell NUMA
        balancing, set the young bit (an event drawn for one observer is an access every
        observer sees)."""
        from ..mm.memory import do_numa_hint_faults

        r = self.rates[group.gid]
        due = r.hint_at <= r.C
        pdue = r.hint_pmd_at <= r.C
        if not (due.any() or pdue.any()):
            return
        pt = group.mm.pt
        slots, pmds = r.hint_slots[due], r.hint_pmds[pdue]
        at = np.concatenate([r.hint_at[due], r.hint_pmd_at[pdue]])
        r.hint_slots, r.hint_at = r.hint_slots[~due], r.hint_at[~due]
        r.hint_pmds, r.hint_pmd_at = r.hint_pmds[~pdue], r.hint_pmd_at[~pdue]
        # a PTE fault needs the entry still PROT_NONE (and no THP over it); a PMD fault needs a
        # PROT_NONE leaf (split or remapped entries lost their pending fault)
        live = ~pt.pmd_is_leaf(slots >> 9) & \
            ((pt.pte[slots] & (_PAGE_PRESENT | _PAGE_PROTNONE)) == _PAGE_PROTNONE)
        plive = pt.pmd_is_leaf(pmds) & ((pt.pmd[pmds] & _PAGE_PRESENT) == 0)
        is_pmd = np.concatenate([np.zeros(slots.size, bool), np.ones(pmds.size, bool)])
        fault = np.concatenate([slots, pmds << 9])   # a THP faults at its first page
        keep = np.concatenate([live, plive])
        order = np.argsort(at[keep], kind="stable")
        fault, is_pmd = fault[keep][order], is_pmd[keep][order]
        if fault.size == 0:
            return
        writes = self.rng.random(fault.size) < r.write_fraction
        do_numa_hint_faults(group.mm, fault, writes, group.spec.cpu_node)
        ps, pw = fault[~is_pmd], writes[~is_pmd]
        pt.pte[ps] |= _PAGE_ACCESSED
        pt.pte[ps[pw]] |= _PAGE_DIRTY
        idx = group.index_of(ps)
        r.haz[idx] = 0.0
        r.c_ref[idx] = r.C
        hp, hw = fault[is_pmd] >> 9, writes[is_pmd]
        if hp.size:
            pt.pmd[hp] |= _PAGE_ACCESSED
            pt.pmd[hp[hw]] |= _PAGE_DIRTY
            i = r.pmd_index(hp)
            r.pmd_haz[i] = 0.0
            r.pmd_c_ref[i] = r.C
        group.stall_ns += fault.size * engine.costs.hint_fault_ns / group.threads

    # ---- sampled events (IBS-like) ------------------------------------------------------------
    def sample(self, engine, group, per_access: float, dt_ns: float,
               loads_only: bool = False) -> np.ndarray:
        """Pfns hit by sampled accesses: a Poisson number of samples over the accesses the
        group made since the last call, each drawn from the phase's distribution. A phase's
        stores are independent of the page, so dropping them thins the rate by its load
        fraction."""
        ph = group.phase
        a = self.unsampled.pop(group.gid, 0.0)
        if ph is None or a <= 0:
            return np.empty(0, np.int64)
        if loads_only:
            a *= 1.0 - ph.write_fraction
        n = self.rng.poisson(a * per_access)
        pages = ph.distribution.sample(group.n_pages, int(n), self.rng)
        return group.mm.translate(group.addrs[pages])
