"""The interface both access models implement, and the thread groups they advance (DESIGN §5).

A ``ThreadGroup`` is one process's threads. They run the same phases on the same pages, so
the model advances them together: ``done`` counts accesses per thread in the current phase.
Its pages are the process's mappings concatenated in order; ``index_of`` maps page slots of
its mm back to positions in that list, which is how per-page state follows the page tables.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..arrays import page_index
from ..mm.mempolicy import DEFAULT_POLICY
from ..mm.pagetable import PageTable


class ThreadGroup:
    def __init__(self, gid: int, spec, mm, vmas, machine):
        self.gid, self.spec, self.mm = gid, spec, mm
        self.threads = spec.threads
        starts = [v.start_slot for v in vmas]
        sizes = [v.nr_pages for v in vmas]
        self.range_start = np.array(starts, np.int64)
        self.range_end = self.range_start + np.array(sizes, np.int64)
        self.range_base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.n_pages = int(sum(sizes))
        self.slots = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, sizes)])
        self.addrs = PageTable.addr(self.slots)
        self.phase_idx = 0
        self.done = 0.0              # accesses per thread in the current phase
        self.phase_start_ns = 0
        self.total = 0.0             # accesses per thread over the run
        self.finished_ns: int | None = None
        self.stall_ns = 0.0          # time each thread owes to faults and shootdowns
        self.load_ns = np.asarray(machine.load_ns[spec.cpu_node], float)
        self.store_ns = np.asarray(machine.store_ns[spec.cpu_node], float)
        self.loaded_ns: np.ndarray | None = None   # set each tick by memsys (loaded model)
        self.task_policy = DEFAULT_POLICY   # its threads' set_mempolicy (the engine sets it)
        self._placement = None       # (pfns, nodes) while the engine's set-up holds them fixed
        self._bins: dict[int, np.ndarray] = {}     # page_bins per bin count

    def placement(self, kernel) -> tuple[np.ndarray, np.ndarray]:
        """(pfn, node) of each of the group's pages now (-1 where none is mapped). During the
        engine's set-up, which maps nothing between its first solve and the daemons' start,
        the pair is computed once for every model that asks (read-only arrays then)."""
        if self._placement is not None:
            return self._placement
        pfns = self.mm.translate(self.addrs)
        return pfns, kernel.node_of(pfns)

    def hold_placement(self, kernel) -> None:
        """Compute ``placement`` once and answer it until ``release_placement`` (nothing may
        map, unmap or migrate the group's pages in between)."""
        pfns, nodes = self.placement(kernel)
        pfns.setflags(write=False)
        nodes.setflags(write=False)
        self._placement = pfns, nodes

    def release_placement(self) -> None:
        self._placement = None

    @property
    def phase(self):
        return self.spec.phases[self.phase_idx] if self.phase_idx < len(self.spec.phases) else None

    def latency_per_node(self) -> np.ndarray:
        """Average ns per access served by each node, for the current phase's mix: the loaded
        model's figure for this tick (memsys/system.py) when it runs, else the idle sum."""
        if self.loaded_ns is not None:
            return self.loaded_ns
        w = self.phase.write_fraction
        return ((1 - w) * self.load_ns + w * self.store_ns) / self.spec.mlp

    def index_of(self, slots: np.ndarray) -> np.ndarray:
        """Position of each page slot in this group's page list, -1 if it is not one of ours."""
        slots = np.asarray(slots, np.int64)
        if self.range_start.size == 1:      # one mapping (most workloads): no search
            start, end = int(self.range_start[0]), int(self.range_end[0])
            return np.where((slots >= start) & (slots < end), slots - start, -1)
        r = np.searchsorted(self.range_start, slots, side="right") - 1
        ok = (r >= 0)
        ok[ok] = slots[ok] < self.range_end[r[ok]]
        return np.where(ok, self.range_base[np.maximum(r, 0)] + slots - self.range_start[
            np.maximum(r, 0)], -1)

    def remaining_in_phase(self) -> float:
        ph = self.phase
        return float("inf") if ph is None or ph.accesses is None else ph.accesses - self.done


class AccessModel:
    """Advances the workload's threads through simulated time.

    ``advance(engine, group, budget_ns)`` runs one group's threads for at most ``budget_ns``
    of their time in the current phase and returns (accesses per thread, ns used). The
    engine handles phases, stalls and completion; a model only turns time into accesses.
    ``sample(engine, group, n_per_access, dt_ns)`` returns pfns hit by hardware-sampled
    accesses (IBS) in the last ``dt_ns``; a sampling detector sets ``sampled = True`` when it
    starts, so that a model which must keep the accesses for it (the exact model) does so only
    then.
    """

    name = "abstract"
    sampled = False

    def attach(self, engine) -> None:
        """Called once the workload's memory is mapped."""

    def on_phase(self, engine, group) -> None:
        """Called when ``group`` enters a new phase."""

    def advance(self, engine, group, budget_ns: float) -> tuple[float, float]:
        raise NotImplementedError

    def after_advance(self, engine, group) -> None:
        """Deliver the events the group's last advance caused (the rate model's hint faults)."""

    def sample(self, engine, group, per_access: float, dt_ns: float,
               loads_only: bool = False) -> np.ndarray:
        """Pfns hit by a thinning of the group's accesses since the last call: each access is
        kept with probability ``per_access``; with ``loads_only``, stores never are."""
        raise NotImplementedError

    def served_by_node(self, engine) -> np.ndarray:
        """Accesses per memory node since the last call (for the hit-ratio series)."""
        raise NotImplementedError

    def heat(self, engine, group, bins: int) -> np.ndarray:
        """Accesses of ``group`` per bin of its pages (``bins`` equal slices of its page list)
        since the last call, for the heatmap series."""
        raise NotImplementedError


HEAT_BINS = 64


def compute_ns(engine, group) -> float:
    """CPU time a thread of ``group`` spends between two accesses: the cost model's
    ``compute_ns_per_access`` plus its phase's own ``compute_ns`` (a benchmark's delay)."""
    ph = group.phase
    return engine.costs.compute_ns_per_access + (0.0 if ph is None else ph.compute_ns)

# the vmstat counters whose growth during an access batch the batch's threads pay for
FAULT_COUNTERS = ("pgfault", "pgmajfault", "numa_hint_faults", "pswpin")


def fault_counts(kernel) -> list[int]:
    return [kernel.vmstat[name] for name in FAULT_COUNTERS] + [kernel.swap.nr_major]


def fault_cost_ns(kernel, costs, before: list[int]) -> float:
    """What the faults counted since ``before`` (fault_counts) cost the faulting threads:
    every fault fault_ns; a major fault major_fault_ns more, except a swap-in, which waits
    the swap device's read_ns instead (once per fault that read: the readahead pages come in
    the same I/O); a NUMA hint fault hint_fault_ns."""
    d = [now - b for now, b in zip(fault_counts(kernel), before)]
    return (d[0] * costs.fault_ns + (d[1] - d[4]) * costs.major_fault_ns
            + d[4] * kernel.swap.read_ns + d[2] * costs.hint_fault_ns)


def page_bins(group, bins: int = HEAT_BINS) -> np.ndarray:
    """The heatmap bin of each of the group's pages (read-only; computed once per group and
    bin count: the rate model and BinTiers both ask at set-up)."""
    kept = getattr(group, "_bins", None)       # None: not a ThreadGroup (tests)
    out = None if kept is None else kept.get(bins)
    if out is None:
        out = np.arange(group.n_pages) * bins // max(group.n_pages, 1)
        out.setflags(write=False)
        if kept is not None:
            kept[bins] = out
    return out


@njit(cache=True, nogil=True)
def bin_sums(n_pages, bins, w):
    """``np.bincount(page_bins(group, bins), weights=w, minlength=bins)`` for a group of
    ``n_pages`` pages (bin_sums_reference), in one pass without the two per-page temporaries
    (134 MB each for Mode 3's 16.8 M pages): bincount's own order, each bin's sum taken page
    by page in ascending order, so the same floats."""
    out = np.zeros(bins)
    d = max(n_pages, 1)
    for i in range(n_pages):
        out[i * bins // d] += w[i]
    return out


def bin_sums_reference(group, bins: int, w) -> np.ndarray:
    return np.bincount(page_bins(group, bins), weights=w, minlength=bins)


def bin_sizes(n_pages: int, bins: int) -> np.ndarray:
    """``np.bincount(page_bins(group, bins), minlength=bins)`` without the pages: bin b
    starts at the first page i with i * bins // n >= b, i.e. i = ceil(b * n / bins)."""
    d = max(n_pages, 1)
    b = np.arange(bins + 1, dtype=np.int64)
    return np.diff(np.minimum(-(-b * d // bins), n_pages))


@njit(cache=True, nogil=True)
def bin_tier_moves(fast, nbins, n_pages, is_top, src, slots, range_start, range_end,
                   range_base, into_top):
    """BinTiers' remap hook in one pass: for each moved slot that is one of the group's pages
    (page i, in bin i * nbins // n_pages), in slot order, add (moved into the top tier) -
    (came from it) to its bin's count, as ``np.add.at`` of those deltas does
    (BinTiers._on_remap_reference)."""
    d = max(n_pages, 1)
    for j in range(slots.size):
        i = page_index(slots[j], range_start, range_end, range_base)
        if i >= 0:
            fast[i * nbins // d] += into_top - is_top[src[j]]


class BinTiers:
    """Which tier backs each heatmap bin of a group's pages, kept current by the kernel's
    remap hooks (migrations), so a sample costs O(bins), not O(pages). Pages that fault in
    after the start count on the node they faulted to only once they migrate."""

    def __init__(self, kernel, group, bins: int = HEAT_BINS):
        self.group, self.top = group, np.asarray(kernel.machine.toptier_nodes)
        # whether each node is top tier, indexed by node id; the extra last entry (False)
        # answers for -1 (not mapped): np.isin(nids, top) by one gather
        self.is_top = np.zeros(kernel.machine.nr_nodes + 1, bool)
        self.is_top[self.top.astype(np.int64)] = True
        # page i is in bin i * bins // n (page_bins), computed where needed rather than kept
        # per page (16 Mi pages in Mode 3): the bins' sizes from where each starts, the top-tier
        # pages per bin by bin_sums (sums of 0s and 1s: exact in any order)
        self.nbins = bins
        self.size = np.maximum(bin_sizes(group.n_pages, bins), 1)
        is_top = self.is_top.astype(np.float64)
        self.fast = bin_sums(group.n_pages, bins, is_top[group.placement(kernel)[1]])
        kernel.remap_hooks.append(self._on_remap)

    def _on_remap(self, mm, page_slots, src_nids, dst_nid) -> None:
        if mm is not self.group.mm:
            return
        g = self.group
        bin_tier_moves(self.fast, self.nbins, g.n_pages, self.is_top,
                       np.asarray(src_nids, np.int64), np.asarray(page_slots, np.int64),
                       g.range_start, g.range_end, g.range_base, float(dst_nid in self.top))

    def _on_remap_reference(self, mm, page_slots, src_nids, dst_nid) -> None:
        """_on_remap in numpy (bin_tier_moves is its compiled form)."""
        if mm is not self.group.mm:
            return
        idx = self.group.index_of(page_slots)
        ok = idx >= 0
        delta = float(dst_nid in self.top) - self.is_top[np.asarray(src_nids)[ok]]
        np.add.at(self.fast, idx[ok] * self.nbins // max(self.group.n_pages, 1), delta)

    def tier_of_bin(self) -> np.ndarray:
        """0 where most of the bin's pages are on the top tier, else 1."""
        return np.where(self.fast / self.size >= 0.5, 0, 1)
