"""Fast paths against the references kept beside them (issue 15): each must give the
reference's exact result."""

import numpy as np
import pytest
from conftest import HPAGE, PAGE, machine_dict

from tierscan import Kernel, Machine


# prefetch distances the prefetching passes are checked at (tierscan.prefetch.ahead): off,
# the smallest, the default, and more than any call's length
AHEADS = [0, 1, 16, 1 << 20]


@pytest.fixture(params=AHEADS)
def ahead(request, monkeypatch):
    from tierscan import prefetch

    monkeypatch.setattr(prefetch, "ahead", request.param)
    return request.param


def mixed_kernel(with_mm: bool = False):
    """A kernel with anon order-0 and THP memory, file pages and a freed range on both nodes
    (and its mm, with ``with_mm``)."""
    k = Kernel(Machine.preset("laptop"), seed=0)
    mm = k.spawn("p")
    a = mm.mmap(64 * HPAGE, kind="anon", thp=True, populate=True, policy="bind", nodes=[1])
    mm.mmap(3000 * PAGE, kind="anon", populate=True, policy="bind", nodes=[0])
    mm.mmap(700 * PAGE, kind="file", populate=True, policy="bind", nodes=[1])
    mm.munmap(a.start + 5 * HPAGE, 3 * HPAGE + 17 * PAGE)
    return (k, mm) if with_mm else k


def test_node_pages_matches_reading_every_pfn():
    k = mixed_kernel()
    fast, ref = k.node_pages(), k.node_pages_reference()
    assert fast.keys() == ref.keys()
    for key in ref:
        assert fast[key].tolist() == ref[key].tolist(), key
    assert fast["anon_thp"][1] > 0 and fast["file"][1] > 0 and fast["anon"][0] > 0


def test_is_zero_pfn_matches_the_numpy_form():
    """Both zero pages' pfns and their neighbours, -1 (not present), random pfns, a strided
    view, other integer types (the numpy form) and an empty array."""
    k = Kernel(Machine.preset("laptop"), seed=0)
    z, hz = k.zero_pfn, k.huge_zero_pfn
    edges = np.array([-1, z - 1, z, z + 1, hz - 1, hz, hz + 1, hz + 511, hz + 512, hz + 513])
    rnd = np.random.default_rng(0).integers(-1, 4 * hz, 5000)
    for pfns in (edges, rnd, rnd[::3], rnd.astype(np.int32), np.empty(0, np.int64)):
        got, want = k.is_zero_pfn(pfns), k.is_zero_pfn_reference(pfns)
        assert got.dtype == want.dtype and got.tolist() == want.tolist()
    assert k.is_zero_pfn(edges).tolist() == [False, False, True, False, False, True, True, True,
                                             False, False]


def test_translate_kernel_matches_numpy_reference(ahead):
    """MM.translate's compiled pass gives translate_reference's pfns: THP leaves, PTEs, NUMA
    hint (PROT_NONE) entries of both sizes, unmapped holes, addresses outside any VMA."""
    from tierscan.mm.memory import change_prot_numa

    _, mm = mixed_kernel(with_mm=True)
    for vma in list(mm.vmas)[:2]:
        change_prot_numa(vma, vma.start, vma.start + (vma.end - vma.start) // 2,
                         skip_toptier=False)
    lo, hi = int(mm._starts.min()), int(mm._ends.max())
    rng = np.random.default_rng(6)
    addrs = np.concatenate([np.arange(lo - 4 * PAGE, hi + 4 * PAGE, PAGE),
                            rng.integers(lo, hi, 5000), [0, PAGE, 1 << 62]]).astype(np.uint64)
    fast, ref = mm.translate(addrs), mm.translate_reference(addrs)
    assert fast.tolist() == ref.tolist()
    assert (ref >= 0).sum() > 3000 and (ref < 0).sum() > 3 * HPAGE // PAGE
    huge = mm.pt.pmd_is_leaf(mm.pt.slot(addrs[ref >= 0]) >> 9)
    assert huge.any() and (~huge).any()
    assert mm.pt.pmd[mm.pt.pmd != 0].size and (mm.pt.pte & np.uint64(1 << 8)).any()


def prot_numa_scans(seed: int) -> list:
    """change_prot_numa over random ranges of a three-node layout: order-0 anon on every node,
    THPs (one split to PTEs), the zero page and the huge zero page, shared file pages (some
    dirty), a private file mapping two processes map (mapcount 2 on some pages, 1 on others),
    ranges scanned twice (entries PROT_NONE already); with and without skip_toptier. Returns
    each call's result, then the page tables and counters."""
    from tierscan.mm.memory import PMD_TABLE, PTE_BASE, change_prot_numa
    from tierscan.mm.pagetable import mk_pte

    rng = np.random.default_rng(seed)
    k = Kernel(Machine.from_dict(machine_dict(["64MiB", "64MiB", "64MiB"], cpus=[[0], [], []],
                                              tiers=[0, 1, 1])), seed=0)
    p, q = k.spawn("p"), k.spawn("q")
    for nid in range(3):
        p.mmap(int(rng.integers(200, 900)) * PAGE, "anon", populate=True, policy="bind",
               nodes=[nid])
    t = p.mmap(6 * HPAGE, "anon", thp=True, populate=True, policy="bind", nodes=[1])
    p.munmap(t.start + 2 * HPAGE + 5 * PAGE, 3 * PAGE)            # splits that THP's PMD
    z = p.mmap(3 * HPAGE, "anon", thp=True)
    p.access(np.arange(z.start, z.start + 2 * HPAGE, 97 * PAGE, dtype=np.uint64), False)
    zp = p.mmap(300 * PAGE, "anon")
    p.access(np.arange(zp.start, zp.end, 3 * PAGE, dtype=np.uint64), False)  # the zero page
    f = k.open_file("f", 800 * PAGE)
    fs = p.mmap(800 * PAGE, "file", file=f, shared=True, populate=True, policy="bind",
                nodes=[2])
    p.access(np.arange(fs.start, fs.start + 300 * PAGE, 2 * PAGE, dtype=np.uint64), True)
    g = k.open_file("g", 600 * PAGE)
    pg = p.mmap(600 * PAGE, "file", file=g, policy="bind", nodes=[1])
    p.access(np.arange(pg.start, pg.end, PAGE, dtype=np.uint64), False)
    qg = q.mmap(600 * PAGE, "file", file=g)
    q.access(np.arange(qg.start, qg.start + 400 * PAGE, PAGE, dtype=np.uint64), False)
    # zero-page entries without _PAGE_SPECIAL (which the fault path always sets), so that the
    # zero-page test is reached
    hole = p.mmap(40 * PAGE, "anon")
    s = p.pt.slot(hole.start)
    p.pt.alloc_upper_tables(np.array([s >> 9, (s + 39) >> 9]))
    p.pt.pmd[[s >> 9, (s + 39) >> 9]] = PMD_TABLE
    p.pt.pte[s:s + 20] = mk_pte(np.full(20, k.zero_pfn), PTE_BASE)
    p.pt.pte[s + 20:s + 40] = mk_pte(k.huge_zero_pfn + np.arange(20) * 31, PTE_BASE)
    out = []
    for mm in (p, q):
        for vma in list(mm.vmas):     # part of each VMA, then all of it (part already done)
            a, b = sorted(rng.integers(vma.start // PAGE, vma.end // PAGE + 1, 2).tolist())
            for lo, hi in ((a * PAGE, b * PAGE), (vma.start, vma.end)):
                r = change_prot_numa(vma, lo, hi, skip_toptier=bool(rng.integers(0, 2)))
                out.append((r.nr_updated, r.nr_huge, r.heads.tolist(), r.nr_scanned))
    for mm in (p, q):
        out += [mm.pt.pte.copy(), mm.pt.pmd.copy()]
    return out + [k.vmstat.as_dict()]


@pytest.mark.parametrize("seed", range(6))
def test_change_prot_numa_compiled_matches_the_numpy_form(monkeypatch, seed):
    from tierscan.mm import memory

    fast = prot_numa_scans(seed)
    assert sum(r[0] for r in fast if isinstance(r, tuple)) > 0
    monkeypatch.setattr(memory, "COMPILED", False)
    ref = prot_numa_scans(seed)
    for a, b in zip(fast, ref):
        if isinstance(a, np.ndarray):
            assert np.array_equal(a, b)
        else:
            assert a == b


def test_the_fit_engine_stops_after_the_first_solve_with_the_same_solution():
    """build_engine(solve_only=True) (the pghot fit's engine) solves what a full set-up does,
    and skips the rest of the set-up (no access model attached)."""
    from tierscan.experiments.pghot_v3 import config
    from tierscan.sim.config import config_from_dict
    from tierscan.sim.run import build_engine

    cfg = config_from_dict(config(1, "numab0", scale=0.005))
    full, fit = build_engine(cfg), build_engine(cfg, solve_only=True)
    assert fit.memsys.solution.tau.tolist() == full.memsys.solution.tau.tolist()
    assert full.kernel.access_source is full.model and fit.kernel.access_source is None


def _compress_reference(rates, counts=None):
    """memsys.lru.compress before this round: counts as an array, masked copies, np.unique."""
    rates = np.asarray(rates, float)
    counts = np.ones(rates.size) if counts is None else np.asarray(counts, float)
    keep = (rates > 0) & (counts > 0)
    rates, counts = rates[keep], counts[keep]
    if rates.size == 0:
        return rates, counts
    key = np.round(np.log(rates) * 256).astype(np.int64)
    uniq, inv = np.unique(key, return_inverse=True)
    n = np.bincount(inv, weights=counts, minlength=uniq.size)
    mass = np.bincount(inv, weights=counts * rates, minlength=uniq.size)
    return mass / n, n


def test_compress_matches_the_former_form():
    """Che's rate bins: per-item counts, none, and a scalar count (a power of two, or not)
    give the former arrays bit for bit, zero and NaN rates dropped; bins summed in a table
    (the compiled pass) and, spanning too wide a range, by bincount."""
    from tierscan.memsys.lru import compress

    rng = np.random.default_rng(7)
    w = rng.zipf(1.3, 50_000).astype(float)
    w /= w.sum()
    w[::97] = 0.0
    w[5] = np.nan
    cnt = rng.integers(0, 5, w.size).astype(float)
    for counts, full in ((None, None), (cnt, cnt), (64.0, np.full(w.size, 64.0)),
                         (3.0, np.full(w.size, 3.0)), (0.0, np.zeros(w.size))):
        wide = 10.0 ** -rng.uniform(0, 300, 5_000)      # bins too wide for the table
        for rates in (w, w[:0], np.full(10, 2.5e-9), wide):
            got = compress(rates, counts if np.ndim(counts) == 0 else counts[:rates.size])
            ref = _compress_reference(rates, None if full is None else full[:rates.size])
            for a, b in zip(got, ref):
                assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _only_ready(e, idx):
    """pghot's records ``idx`` READY and no other: the records, their blocks' flags and their
    READY bits, as the record passes leave them."""
    e.records[idx] = np.uint64(1 << 63)
    e._block_ready[:] = False
    e._block_ready[idx // 512] = True
    e._ready_bits[:] = 0
    np.bitwise_or.at(e._ready_bits, idx // 64, np.uint64(1) << (idx % 64).astype(np.uint64))


def test_lookup_matches_dict_get():
    from tierscan.sim.promotion_metrics import lookup

    rng = np.random.default_rng(3)
    table = {int(k): int(v) for k, v in zip(rng.integers(0, 1000, 400), rng.integers(0, 9, 400))}
    keys = rng.integers(-5, 1200, 3000)
    assert lookup(table, keys, -1).tolist() == [table.get(int(k), -1) for k in keys]
    assert lookup({}, keys, -1).tolist() == [-1] * keys.size
    assert lookup(table, keys[:0], -1).size == 0


def test_unique_matches_numpy():
    from tierscan.arrays import unique

    rng = np.random.default_rng(4)
    for a in (rng.integers(0, 50, 1000), rng.permutation(5000).astype(np.int32),
              rng.integers(0, 3, 7).astype(np.uint8), np.zeros(0, np.int64),
              np.array([True, False, True]), rng.integers(0, 9, (4, 5)), np.array(7)):
        u, ref = unique(a), np.unique(a)
        assert u.dtype == ref.dtype and u.tolist() == ref.tolist()
    f = np.array([2.0, np.nan, 1.0, np.nan])
    assert np.array_equal(unique(f), np.unique(f), equal_nan=True)


def test_unique_inverse_matches_numpy():
    """The presence-table path (narrow integer ranges) and the fallbacks give np.unique's
    values, dtypes and inverse exactly."""
    from tierscan.arrays import unique_inverse

    rng = np.random.default_rng(5)
    for a in (rng.integers(-5000, 5000, 20000), rng.integers(0, 1 << 40, 100),
              np.array([3], np.int32), rng.integers(0, 300, 100).astype(np.uint16),
              rng.integers(0, 1 << 62, 1000).astype(np.uint64), -np.arange(10),
              np.zeros(0, np.int64), rng.random(50)):
        u, inv = unique_inverse(a)
        ref, ref_inv = np.unique(a, return_inverse=True)
        assert u.dtype == ref.dtype and inv.dtype == ref_inv.dtype
        assert np.array_equal(u, ref) and np.array_equal(inv, ref_inv)


def test_materialize_kernel_matches_numpy_reference():
    """The compiled young-bit draw gives the numpy form's table, hazards and reference points
    bit for bit, present or not, A set or clear, repeated slots included."""
    from tierscan.access.rate_kernels import materialize_kernel, materialize_reference
    from tierscan.mm.constants import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PROTNONE

    rng = np.random.default_rng(5)
    n, m = 4000, 3000
    bits = rng.choice(np.array([0, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_PRESENT | _PAGE_ACCESSED,
                                _PAGE_PRESENT | _PAGE_DIRTY], np.uint64), n)
    table0 = (rng.integers(1, 1 << 30, n).astype(np.uint64) << np.uint64(12)) | bits
    slots = rng.integers(0, n, m)                      # with repeats
    i = rng.integers(0, 500, m)
    haz0, c0, w = rng.random(500) * 2, rng.random(500) * 50, rng.random(500) * 0.05
    u = rng.random((2, m))
    mask = _PAGE_PRESENT | _PAGE_PROTNONE
    for whaz0 in (np.empty(0), rng.random(500) * 0.5):     # write hazard not kept / kept
        out = []
        for fn in (materialize_reference, materialize_kernel):
            table, haz, whaz, c_ref = table0.copy(), haz0.copy(), whaz0.copy(), c0.copy()
            fn(table, slots, np.uint64(mask), i, haz, whaz, c_ref, w, 60.0, 0.3, u)
            out.append((table, haz, whaz, c_ref))
        for a, b in zip(*out):
            assert np.array_equal(a, b)
        t1 = out[0][0]
        assert (t1 & _PAGE_DIRTY != table0 & _PAGE_DIRTY).sum() > 10   # some became dirty
    assert (t1 != table0).sum() > 100                   # the draw did set bits


def test_walk_scan_ranges_matches_numpy_reference():
    """The walk's compiled young-PTE scan finds the numpy form's slots, pfns and per-range
    counts: entries not present, old, special, the zero page, off the node, on a THP tail
    (its head's gen and memcg read), off the LRU or of another memcg; empty ranges too."""
    from tierscan.mm.constants import (
        _PAGE_ACCESSED, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_SPECIAL,
    )
    from tierscan.mm.walk_kernels import scan_ranges, scan_ranges_reference

    rng = np.random.default_rng(9)
    n, npfn, node_lo, node_hi, zero_pfn = 6000, 4096, 512, 3584, 700
    bits = rng.choice(np.array([0, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_PRESENT | _PAGE_ACCESSED,
                                _PAGE_PROTNONE | _PAGE_ACCESSED,
                                _PAGE_PRESENT | _PAGE_ACCESSED | _PAGE_SPECIAL], np.uint64),
                      n, p=[0.1, 0.1, 0.05, 0.6, 0.1, 0.05])
    pfns = rng.integers(0, npfn, n)
    pfns[rng.random(n) < 0.02] = zero_pfn
    pte = (pfns.astype(np.uint64) << np.uint64(12)) | bits
    order = np.zeros(npfn, np.uint8)
    order[1024:1024 + 512] = 9                         # a THP: its tails read the head's
    lru_gen_refs = rng.choice(np.array([0, 1, 2, 3], np.uint8), npfn, p=[0.1, 0.3, 0.3, 0.3])
    memcg = rng.choice(np.array([1, 2], np.uint16), npfn, p=[0.9, 0.1])
    memcg[1024], lru_gen_refs[1024] = 1, 2
    lo = np.array([0, 100, 100, 700, 5000, 5990], np.int64)
    hi = np.array([90, 100, 612, 4000, 5500, 6000], np.int64)
    out = np.empty(n, np.int64), np.empty(n, np.int64)
    per_range = np.empty(lo.size, np.int64)
    k = scan_ranges(lo, hi, pte, order, lru_gen_refs, memcg, node_lo, node_hi, 1, zero_pfn,
                    out[0], out[1], per_range, n)
    slots, found, counts = scan_ranges_reference(lo, hi, pte, order, lru_gen_refs, memcg,
                                                 node_lo, node_hi, 1, zero_pfn)
    assert out[0][:k].tolist() == slots.tolist() and out[1][:k].tolist() == found.tolist()
    assert per_range.tolist() == counts.tolist()
    assert k > 500 and ((found >= 1024) & (found < 1536)).sum() > 20 and counts[1] == 0
    for limit in (0, 1, int(counts[0]), int(counts[0]) + 1, k - 1, k, k + 1):
        # only the first ``limit`` found: the reference's prefix, its ranges' counts cut there
        j = scan_ranges(lo, hi, pte, order, lru_gen_refs, memcg, node_lo, node_hi, 1,
                        zero_pfn, out[0], out[1], per_range, limit)
        assert j == min(limit, k) and out[0][:j].tolist() == slots[:j].tolist()
        cut = np.minimum(np.cumsum(counts), j)
        assert per_range.tolist() == np.diff(cut, prepend=0).tolist()


def test_a_finished_run_frees_what_it_held():
    """Two identical runs in one process, the cyclic collector off (as between its automatic
    passes): after the first returns, its memory is back, and the second peaks no higher."""
    import gc
    import tracemalloc

    from tierscan.sim.config import config_from_dict
    from tierscan.sim.run import run_experiment

    cfg = config_from_dict({"seed": 1, "machine": {"preset": "laptop"},
                            "workload": {"name": "zipf", "size": "64MiB", "threads": 2,
                                         "accesses": 200000},
                            "detectors": [{"name": "klruscand"}],
                            "engine": {"name": "pghot-v3"}})
    run_experiment(cfg)                       # warm-up: imports, numba, caches
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        peaks, held = [], []
        for _ in range(2):
            tracemalloc.reset_peak()
            run_experiment(cfg)
            current, peak = tracemalloc.get_traced_memory()
            peaks.append(peak - base)
            held.append(current - base)
    finally:
        tracemalloc.stop()
        gc.enable()
    assert peaks[0] > 10 << 20                # the run did hold memory (the laptop's pfns)
    assert max(held) < 0.05 * peaks[0], (held, peaks)
    assert peaks[1] < 1.05 * peaks[0], peaks


def test_first_by_slot_fast_path_for_ordered_slots():
    """Slots given once each in ascending order (MAP_POPULATE) skip the grouping and give
    what the grouping gives."""
    from tierscan.mm import memory

    rng = np.random.default_rng(6)
    slots = np.cumsum(rng.integers(1, 4, 500))
    w = rng.random(500) < 0.5
    fast = memory.first_by_slot(slots, w)
    ref = memory.first_by_slot(np.concatenate([slots, slots[:1]]), np.concatenate([w, [False]]))
    for a, b in zip(fast, ref):
        assert a.dtype == b.dtype and a.tolist() == b.tolist()


def kernel_state(k):
    """Everything populating can change: per-pfn arrays, allocator, page tables, vmstat,
    lruvec sizes, files' page caches."""
    pm = k.pm
    state = {n: getattr(pm, n).copy() for n in ("flags", "lru_gen_refs", "list_gen", "lru_stamp",
                                                "order", "memcg", "mapcount", "mapping",
                                                "index", "block_free", "node_free")}
    state["vmstat"] = k.vmstat.as_dict()
    for mm in k.mms.values():
        state[f"pte{mm.id}"], state[f"pmd{mm.id}"] = mm.pt.pte.copy(), mm.pt.pmd.copy()
    for lv in k.lruvecs():
        state[f"nr_pages{lv.memcg.id}.{lv.nid}"] = lv.lrugen.nr_pages.copy()
    for fid, f in k.files.items():
        state[f"file{fid}"] = f.pages.copy()
    state["kswapd"] = [(kd.state, kd.woken, kd.order) for kd in k.kswapd]
    state["content"] = pm.content.copy()
    return state


def assert_same_state(a: dict, b: dict) -> None:
    """Two kernel_state()s (plus any extra entries) are equal, entry by entry."""
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert np.array_equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def test_populate_in_pieces_is_populate_at_once(monkeypatch):
    """MAP_POPULATE by POPULATE_CHUNK pieces leaves the state faulting everything at once does:
    anon, THP, file and shared mappings, an unaligned start, and a node that fills up (the
    fallback to the next node and the kswapd wake-up happen at the same page)."""
    from tierscan.mm import process

    def build():
        k = Kernel(Machine.preset("laptop"), seed=0)
        mm = k.spawn("p")
        mm.mmap(5 * PAGE, kind="anon", populate=True)                 # start unaligned
        mm.mmap(37 * HPAGE + 9 * PAGE, kind="anon", thp=True, populate=True, nodes=[1],
                policy="bind")
        mm.mmap(3000 * PAGE, kind="file", populate=True)
        mm.mmap(2100 * PAGE, kind="anon", shared=True, populate=True)
        mm.mmap(1100 * (1 << 20), kind="anon", populate=True, policy="preferred", nodes=[0])
        return kernel_state(k)

    whole = build()
    monkeypatch.setattr(process, "POPULATE_CHUNK", 2 * HPAGE)
    pieces = build()
    assert_same_state(whole, pieces)
    assert whole["kswapd"][0]                  # node 0 did fill up


class _LoopRings:
    """IBS's former per-run Python loop over (ring, window) runs: the reference for _push."""

    def __init__(self, ring_size, drain_ns):
        self.ring_size, self.drain_ns = ring_size, drain_ns
        self.ring_window, self.ring_fill = {}, {}

    def push(self, gid, thread, pfns, t):
        n = pfns.size
        kept = np.zeros(n, bool)
        if n == 0:
            return kept
        window = t // self.drain_ns
        ring = gid * (1 << 20) + thread
        order = np.lexsort((t, window, ring))
        r, w = ring[order], window[order]
        new = np.r_[True, (r[1:] != r[:-1]) | (w[1:] != w[:-1])]
        starts = np.flatnonzero(new)
        rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
        base = np.zeros(n, np.int64)
        for s, e in zip(starts, np.r_[starts[1:], n]):
            key, win = int(r[s]), int(w[s])
            if self.ring_window.get(key) == win:
                base[s:e] = self.ring_fill[key]
            else:
                self.ring_window[key], self.ring_fill[key] = win, 0
            self.ring_fill[key] = min(self.ring_size, self.ring_fill[key] + (e - s))
        kept[order] = base + rank < self.ring_size
        return kept


def test_ibs_ring_push_matches_the_loop():
    """The ring fill (the compiled pass for samples in time order, the sorting form for
    others, and the sorting form alone) keeps the samples the per-run loop kept, call after
    call, with windows that straddle calls and rings that overflow."""
    from tierscan.hotness.ibs import Ibs

    ibs, by_sort = Ibs(ring_size=5, drain_ms=10.0), Ibs(ring_size=5, drain_ms=10.0)
    ref = _LoopRings(5, ibs.drain_ns)
    rng = np.random.default_rng(7)
    start, dropped = 0, 0
    for call in range(60):
        n = int(rng.integers(0, 60))
        gid = int(rng.integers(0, 2))
        threads = 6 if gid == 0 else 9
        t = start + np.sort(rng.integers(0, 7_000_000, n))     # 7 ms ticks, 10 ms windows
        thread = rng.integers(0, threads, n)
        if call % 5 == 4:                                       # not in time order
            perm = rng.permutation(n)
            t, thread = t[perm], thread[perm]
        pfns = np.arange(n)
        a, b = ibs._push(gid, thread, pfns, t), ref.push(gid, thread, pfns, t)
        assert a.tolist() == b.tolist(), call
        assert by_sort._push_sorted(gid, thread, pfns, t).tolist() == b.tolist(), call
        dropped += int((~b).sum())
        start += 7_000_000
    assert dropped > 0                                          # some rings did fill



def test_pghot_reports_with_per_report_jiffies_equal_one_call_per_jiffy():
    """IBS hands pghot a drained window in one call with each report's jiffies: records,
    first-report times, READY flags and counters are those of one call per jiffy."""
    from test_promote import cxl_pages, laptop

    from tierscan.promote.pghot import PghotV3

    from tierscan.jiffies import INITIAL_JIFFIES

    rng = np.random.default_rng(8)
    windows = []                                      # 10-jiffy drain windows over 12 s
    for start in range(INITIAL_JIFFIES, INITIAL_JIFFIES + 12_000, 10):
        n = int(rng.integers(0, 20))
        windows.append((np.sort(rng.integers(start, start + 10, n)), rng.integers(0, 64, n)))
    out = []
    for batched in (False, True):
        k = laptop()
        _, _, pfns = cxl_pages(k, 64)
        e = PghotV3(k, literal=True)
        for jiffies, which in windows:
            rep = pfns[which]
            if rep.size == 0:
                continue
            if batched:
                e.record_access(rep, np.full(rep.size, -1), "hwhints", jiffies)
                continue
            cuts = np.flatnonzero(np.diff(jiffies)) + 1
            for a, b in zip(np.r_[0, cuts], np.r_[cuts, rep.size]):
                e.record_access(rep[a:b], -1, "hwhints", int(jiffies[a]))
        out.append((e.records.copy(), e._first.ns1.copy(), e.activate.copy(),
                    e._block_ready.copy(), e._ready_bits.copy(), k.vmstat.as_dict()))
    for a, b in zip(*out):
        assert a == b if isinstance(a, dict) else np.array_equal(a, b)
    assert (out[0][0].view(np.int64) < 0).any()        # some records became READY


class _Recorder:
    """Remap hook and migration accounting that log every call (their sums are floating
    point: a queued migration must make the same calls, in the same order)."""

    def __init__(self):
        self.calls = []

    def hook(self, mm, slots, src, dst):
        self.calls.append(("remap", mm.id, np.asarray(slots).tolist(),
                           np.asarray(src).tolist(), dst))

    def migrated(self, order, count, mms, flushes=1, src_nids=None, dst_nid=None):
        self.calls.append(("migrated", order, count, sorted(m.id for m in mms), flushes,
                           np.asarray(src_nids).tolist(), dst_nid))


def _queue_kernel():
    """DRAM with partly used 2 MiB blocks; on the CXL node THPs, order-0 anon and file pages
    of two processes; the folios to migrate shuffled (THPs in several batches), cut into
    batches of 100."""
    from conftest import machine_dict

    k = Kernel(Machine.from_dict(machine_dict(["64MiB", "64MiB"])), seed=0)
    rec = _Recorder()
    k.remap_hooks.append(rec.hook)
    k.accounting = rec
    a = k.spawn("a")
    d = a.mmap(1500 * PAGE, kind="anon", populate=True, policy="bind", nodes=[0])
    a.munmap(d.start + 300 * PAGE, 700 * PAGE)                    # partial blocks on DRAM
    a.mmap(4 * HPAGE, kind="anon", thp=True, populate=True, policy="bind", nodes=[1])
    a.mmap(700 * PAGE, kind="anon", populate=True, policy="bind", nodes=[1])
    b = k.spawn("b")
    b.mmap(3 * HPAGE, kind="anon", thp=True, populate=True, policy="bind", nodes=[1])
    b.mmap(400 * PAGE, kind="file", populate=True, policy="bind", nodes=[1])
    lo, hi = k.pm.node_range(1)
    flags = k.pm.flags[lo:hi]
    from tierscan.mm.constants import PG_allocated, PG_lru, PG_tail
    heads = np.flatnonzero(((flags & PG_lru) != 0) & ((flags & PG_tail) == 0) &
                           ((flags & PG_allocated) != 0)) + lo
    assert (k.pm.order[heads] == 9).sum() == 7
    heads = np.random.default_rng(9).permutation(heads)
    return k, rec, np.array_split(heads, -(-heads.size // 100))


def test_migration_queue_is_one_batch_at_a_time():
    """Batches queued and migrated together leave the state, counters, remap-hook calls and
    charges of migrate_misplaced_folios_batch called for each in turn (order-0 pages filling
    partly used blocks while THPs take whole ones), and while they wait node_free reads as
    after each batch."""
    from tierscan.mm.migrate import MigrationQueue, migrate_misplaced_folios_batch

    k, rec, batches = _queue_kernel()
    free_after = []
    for b in batches:
        assert migrate_misplaced_folios_batch(k, b, 0).all()
        free_after.append(k.pm.node_free.copy())
    seq, seq_calls = kernel_state(k), rec.calls

    k, rec, batches = _queue_kernel()
    q = MigrationQueue(k)
    for b, free in zip(batches, free_after):
        assert q.add(b, 0)
        assert k.pm.node_free.tolist() == free.tolist()
    assert rec.calls == []                                  # nothing migrated yet
    oks = q.run()
    assert [ok.size for ok in oks] == [b.size for b in batches] and all(ok.all() for ok in oks)
    assert q.batches == [] and q.run() == []
    assert_same_state(seq, kernel_state(k))
    # each kind in its order (hooks and charges touch separate state: the queue makes every
    # hook call, then every charge)
    for kind in ("remap", "migrated"):
        assert [c for c in rec.calls if c[0] == kind] == [c for c in seq_calls if c[0] == kind]
    assert sum(c[0] == "migrated" and c[1] == 9 for c in seq_calls) > 1   # THPs in batches
    assert seq["vmstat"]["thp_migration_success"] == 7


def test_migration_queue_refuses_what_would_not_be_the_same():
    """No queueing of a batch for another target, one already on the target, or pages past
    the target's MIN watermark; a refused batch changes nothing."""
    from tierscan.mm.migrate import MigrationQueue
    from tierscan.mm.physmem import WMARK_MIN

    k, _, batches = _queue_kernel()
    q = MigrationQueue(k)
    assert q.add(batches[0], 0)
    free = k.pm.node_free.copy()
    assert not q.add(batches[1], 1)                         # another target
    q2 = MigrationQueue(k)
    assert not q2.add(batches[1], 1)                        # already there
    assert k.pm.node_free.tolist() == free.tolist() and len(q.batches) == 1
    k, _, batches = _queue_kernel()
    small = np.concatenate(batches)
    small = small[k.pm.order[small] == 0]
    k.pm.node_free[0] = k.pm.watermarks[0, WMARK_MIN] + 150   # room for 150 pages
    q = MigrationQueue(k)
    assert q.add(small[:100], 0) and q.add(small[100:150], 0)
    assert not q.add(small[150:151], 0) and len(q.batches) == 2


def _queue_adds(monkeypatch, compiled: bool):
    """MigrationQueue.add of batches that join and of one of each kind it refuses (a folio
    already on the target, not present (-1), of another memcg, of an order other than 0 and
    9); what each add returned and node_free and the queue's counts after it."""
    from tierscan.mm import migrate

    monkeypatch.setattr(migrate, "COMPILED", compiled)
    k, _, batches = _queue_kernel()
    pm = k.pm
    from tierscan.mm.constants import PG_lru
    dram = np.arange(pm.node_start[1])        # a folio already there, else like batch 1's
    on_dram = dram[((pm.flags[dram] & PG_lru) != 0) & (pm.order[dram] == 0) &
                   (pm.memcg[dram] == pm.memcg[batches[1][0]])][:3]
    odd_memcg = batches[2].copy()
    odd_order = batches[3].copy()
    small = odd_order[pm.order[odd_order] == 0]
    q = migrate.MigrationQueue(k)
    seen = []
    for b, change in ((batches[0], None), (np.r_[batches[1][:5], on_dram[:1]], None),
                      (np.r_[batches[1][:5], -1], None),
                      (odd_memcg, ("memcg", odd_memcg[-1], 3)),
                      (odd_order, ("order", small[-1], 2)), (batches[4], None),
                      (batches[5], None)):
        if change is not None:
            name, at, value = change
            old = getattr(pm, name)[at]
            getattr(pm, name)[at] = value
        seen.append((q.add(b, 0), pm.node_free.tolist(), q.n0, q.n9, len(q.batches)))
        if change is not None:
            getattr(pm, name)[at] = old
    return seen


def test_queue_add_compiled_is_the_numpy_form(monkeypatch):
    """MigrationQueue.add's compiled pass (_queue_batch) accepts and refuses the same batches
    as its numpy form and leaves the same node_free and counts."""
    fast = _queue_adds(monkeypatch, True)
    ref = _queue_adds(monkeypatch, False)
    assert [s[0] for s in ref] == [True, False, False, False, False, True, True]
    assert fast == ref


def test_kmigrated_queue_gives_the_per_batch_results(monkeypatch):
    """A kmigrated wake whose batches fill the DRAM node part way (admission refuses the
    rest as unbalanced, and the last batches do not fit the queue) ends as with every batch
    migrated at its flush: while batches wait, admission reads the free pages they took."""
    from conftest import machine_dict
    from test_promote import FakeEngine, at

    from tierscan.mm import migrate
    from tierscan.promote.pghot import PghotV3

    runs = []
    real_run = migrate.MigrationQueue.run

    def counted_run(self):
        runs.append(len(self.batches))
        return real_run(self)

    def run(queue: bool):
        if queue:
            monkeypatch.setattr(migrate.MigrationQueue, "run", counted_run)
        else:
            monkeypatch.setattr(migrate.MigrationQueue, "add", lambda self, h, nid: False)
        k = Kernel(Machine.from_dict(machine_dict(["32MiB", "64MiB"])), seed=0, debug=True)
        mm = k.spawn("p")
        mm.mmap(2 * HPAGE, kind="anon", thp=True, populate=True, policy="bind", nodes=[1])
        vma = mm.mmap(9000 * PAGE, kind="anon", populate=True, policy="bind", nodes=[1])
        pfns = mm.translate(vma.start + np.arange(9000) * PAGE)
        thps = mm.translate(mm.vmas[0].start + np.arange(2) * HPAGE)
        e = PghotV3(k, batch=256)
        for t in (1000, 1001, 1002):
            e.record_access(np.concatenate([thps, pfns]), -1, "hintfault", at(k, t))
        at(k, 1100)
        fe = FakeEngine(k)
        e.kmigrated[0].run(fe)
        monkeypatch.undo()
        st = kernel_state(k)
        st["records"] = e.records.copy()
        st["promoted"] = np.concatenate(e.promoted_pfns)
        st["first"] = dict(e.first_report_ns)
        st["cpu"] = fe.cpu_ns
        return st

    per_batch, queued = run(False), run(True)
    assert_same_state(per_batch, queued)
    vm = per_batch["vmstat"]
    assert 4000 < vm["pgpromote_success"] < 9000                 # DRAM filled part way
    assert vm["pgmigrate_prepare_fail_unbalanced"] > 0
    assert max(runs) >= 10                                        # batches did wait together


@pytest.mark.parametrize("ready_bits", [True, False])
def test_kmigrated_reads_ready_records_only_as_far_as_its_walk_goes(monkeypatch, ready_bits):
    """kmigrated reads the READY records from where its walk resumes, in growing chunks, up
    to the first folio its CPU cannot afford (_walk_ready): the walk's stop and the records
    it consumes are those of reading every READY record of the node (the reference, which
    reads the records), for THPs, base pages and pages off the LRU, budgets from none to
    unbounded; the READY scan by the records' READY bits (_ready_landed_bits) and by the
    records (_ready_landed, ``ready_bits = False``)."""
    from types import SimpleNamespace

    from tierscan.mm.constants import PG_allocated, PG_lru
    from tierscan.promote.pghot import PghotV3
    from tierscan.sim.costs import CostModel

    k = mixed_kernel()
    e = PghotV3(k, literal=True)
    p0, p1 = k.pm.node_range(1)
    rng = np.random.default_rng(3)
    used = np.arange(p0, p1)[(k.pm.flags[p0:p1] & PG_allocated) != 0]
    off_lru = rng.choice(used, 50, replace=False)
    k.pm.flags[off_lru] &= ~np.uint16(PG_lru)
    costs = CostModel()
    seen_stops = set()
    monkeypatch.setattr(PghotV3, "ready_bits", ready_bits)
    for trial in range(60):
        e.records[:] = 0
        pick = rng.choice(used, int(rng.integers(1, 3000)), replace=False)
        start = int(rng.choice([p0, int(rng.choice(used)), int(rng.integers(p0, p1))]))
        pick = np.union1d(pick, [start] if trial % 2 else pick[:0])   # READY at start
        idx = e.lower.index(pick, k.node_of(pick))
        _only_ready(e, idx)
        left = float(rng.choice([0.0, 1e3, 1e5, 1e6, 1e7, np.inf]) * rng.random())
        engine = SimpleNamespace(cpu_left_ns=lambda: left, costs=costs)
        i_ref, h_ref = e._walk_ready_reference(1, start)
        stop_ref = e._walk_stop(start, p1, h_ref, engine)
        i, h = e._walk_ready(1, start, p1, engine)
        stop = e._walk_stop(start, p1, h, engine)
        assert stop == stop_ref, trial
        assert i.size <= i_ref.size
        assert h.tolist() == h_ref[:h.size].tolist() and i.tolist() == i_ref[:i.size].tolist()
        assert h[h < stop].tolist() == h_ref[h_ref < stop_ref].tolist(), trial
        seen_stops.add(stop == p1)
    assert seen_stops == {True, False}       # walks that finished and walks that yielded


def test_rate_model_sample_draws_are_the_distributions_own(ahead):
    """The rate model draws sampled pages through a guide table (RateModel._draw): the same
    pages, from the same uniforms, as the distribution's own inverse-CDF ``sample`` (large
    draws over large CDFs take its sorted-search path), and the generator is left in the same
    state; a distribution with a sampler of its own is called as is."""
    from tierscan.access.rate import RateModel
    from tierscan.workload.distributions import HotSet, Uniform, Weights, Zipf

    class Odd(Uniform):
        def sample(self, n, count, rng):
            return np.full(count, n - 1, np.int64) - rng.integers(0, 2, count)

    tail_zero = Weights("tail", {}, lambda n: np.r_[np.ones(n - n // 4), np.zeros(n // 4)])
    for dist in (Uniform(), Zipf(0.99), HotSet(0.1, 0.9, offset=0.95), tail_zero, Odd()):
        for n, count in ((1, 10), (2097, 5000), (1 << 17, 3000), (1 << 17, 1)):
            fast, ref = RateModel(7), RateModel(7)
            a = [fast._draw(dist, n, count) for _ in range(3)]
            b = [ref._draw_reference(dist, n, count) for _ in range(3)]
            for x, y in zip(a, b):
                assert x.dtype == np.int64 and np.array_equal(x, y), (dist, n, count)
            assert fast.rng.random() == ref.rng.random()


def test_first_reports_compiled_pass_is_the_sorting_reference(ahead):
    """pghot's first-report times with one jiffies value per report (IBS's drained
    windows): the compiled in-order pass sets what the sorting reference sets, for repeated
    records, records reported before, ascending windows and unordered ones."""
    from tierscan.jiffies import INITIAL_JIFFIES
    from tierscan.promote.pghot import FirstReports

    rng = np.random.default_rng(5)
    fast, ref = FirstReports(5000), FirstReports(5000)
    j = INITIAL_JIFFIES
    for call in range(80):
        n = int(rng.integers(1, 400))
        idx = rng.integers(0, 5000, n)
        nows = j + np.sort(rng.integers(0, 10, n))
        if call % 4 == 3:
            nows = rng.permutation(nows)
        fast.seen(idx, nows)
        ref.seen_reference(idx, nows)
        assert np.array_equal(fast.ns1, ref.ns1), call
        if call % 10 == 9:                       # promoted pfns are forgotten
            gone = rng.integers(0, 5000, 300)
            fast.ns1[gone] = ref.ns1[gone] = 0
        j += 10
    assert (fast.ns1 > 0).sum() > 2000


def test_first_report_times_read_as_the_dict_updates_gave():
    """PghotV3.first_report_ns (FirstReportTimes: the promotions' arrays, merged at the
    first read) reads as the dict that one dict.update per promotion built (its former
    form): pfns promoted again take their latest time, reads between promotions, and
    the arrays promotion_metrics.lookup reads (arrays())."""
    from tierscan.promote.pghot import FirstReportTimes
    from tierscan.sim.promotion_metrics import lookup

    rng = np.random.default_rng(8)
    fast, ref = FirstReportTimes(), {}
    assert not fast and len(fast) == 0
    for call in range(40):
        pfns = rng.choice(3000, int(rng.integers(0, 200)), replace=False)
        ns = rng.integers(0, 10**12, pfns.size)
        fast.add(pfns, ns)
        ref.update(zip(pfns.tolist(), ns.tolist()))
        if call % 7 == 6:
            assert dict(fast) == ref and fast == ref
    keys = rng.integers(-5, 3100, 5000)
    assert np.array_equal(lookup(fast, keys, -1), lookup(ref, keys, -1))
    assert dict(zip(fast.keys(), fast.values())) == ref
    k, v = fast.arrays()
    assert k.dtype == v.dtype == np.int64 and np.all(np.diff(k) > 0)
    assert dict(zip(k.tolist(), v.tolist())) == ref
    assert sorted(fast) == sorted(ref) and len(fast) == len(ref) > 2000
    some = list(ref)[:50]
    assert [fast[p] for p in some] == [ref[p] for p in some]
    assert 3001 not in fast and fast.get(-1) is None


def test_kmigrated_ready_scan_ends_past_the_walks_reach():
    """_walk_ready reads the block flags only up to a little past the walk's reach: a
    budget that ends the reach just before, at or just past a READY folio (which is then
    affordable or, with its migration, not: the walk stops at it) gives the stop and the
    records of reading every READY record of the node (the reference)."""
    from types import SimpleNamespace

    from tierscan.mm.constants import PG_allocated, PG_lru
    from tierscan.promote.pghot import PghotV3
    from tierscan.sim.costs import CostModel

    k = mixed_kernel()
    e = PghotV3(k)
    p0, p1 = k.pm.node_range(1)
    rng = np.random.default_rng(8)
    used = np.arange(p0, p1)[((k.pm.flags[p0:p1] & PG_allocated) != 0) &
                             ((k.pm.flags[p0:p1] & PG_lru) != 0)]
    heads = np.unique(k.pm.folio_head(used))
    costs = CostModel()
    stopped_at_ready = 0
    for trial in range(200):
        e.records[:] = 0
        pick = np.sort(rng.choice(heads, int(rng.integers(1, 5)), replace=False))
        start = int(rng.integers(p0, pick[0] + 1))
        idx = e.lower.index(pick, k.node_of(pick))
        _only_ready(e, idx)
        step_ns = e._step_ns(start, p1)
        h = int(rng.choice(pick))
        left = step_ns * (h - start + int(rng.integers(-1100, 1100)))
        engine = SimpleNamespace(cpu_left_ns=lambda: left, costs=costs)
        i_ref, h_ref = e._walk_ready_reference(1, start)
        stop_ref = e._walk_stop(start, p1, h_ref, engine)
        i, got = e._walk_ready(1, start, p1, engine)
        stop = e._walk_stop(start, p1, got, engine)
        assert stop == stop_ref, trial
        assert got[got < stop].tolist() == h_ref[h_ref < stop_ref].tolist(), trial
        stopped_at_ready += stop in pick.tolist()
    assert stopped_at_ready > 10         # walks that stopped at a READY folio they reached


def test_kmigrated_take_records_is_its_numpy_form():
    """kmigrated's test-and-clear of the records it consumed (_take_records) gives the words,
    records, READY bits and block READY flags of its numpy form: blocks left with READY
    records before, after and between the consumed ones, blocks emptied, one record a block
    and many."""
    from tierscan.promote.pghot import _take_records, take_records_reference

    rng = np.random.default_rng(12)
    for trial in range(30):
        rec = rng.integers(0, 1 << 40, 64 * 512)
        ready = rng.random(rec.size) < rng.choice([0.001, 0.02, 0.3])
        rec[ready] |= np.int64(-1) << 63
        idx = np.flatnonzero(ready & (rng.random(rec.size) < rng.random()))
        fast_rec, ref_rec = rec.copy(), rec.copy()
        fast_ready = rng.random(64) < 0.5
        ref_ready = fast_ready.copy()
        fast_bits = np.packbits(ready, bitorder="little").view(np.uint64)  # bit r: record r
        ref_bits = fast_bits.copy()
        words = np.empty(idx.size, np.int64)
        _take_records(fast_rec, idx, 512, words, fast_ready, fast_bits)
        assert np.array_equal(words,
                              take_records_reference(ref_rec, idx, 512, ref_ready, ref_bits))
        assert np.array_equal(fast_rec, ref_rec) and np.array_equal(fast_ready, ref_ready)
        assert np.array_equal(fast_bits, ref_bits)
        assert np.array_equal(fast_bits, np.packbits(fast_rec < 0, bitorder="little").view(
            np.uint64))                              # still one bit per READY record


def test_ibs_handler_filter_is_its_numpy_form(ahead):
    """The IBS handler's filter chain as one compiled pass keeps and counts the samples its
    numpy form does: unmapped pfns, the zero pages, THP tails (their head's LRU flag), free
    and off-LRU pages, DRAM and CXL nodes, with and without drop_toptier."""
    from tierscan.hotness.ibs import Ibs
    from tierscan.mm.constants import PG_lru

    k = mixed_kernel()
    rng = np.random.default_rng(11)
    used = np.flatnonzero(k.pm.flags & PG_lru)
    k.pm.flags[rng.choice(used, 300, replace=False)] &= ~np.uint16(PG_lru)
    pfns = np.concatenate([rng.integers(-1, k.pm.nr_pfns, 20_000), [-1, k.zero_pfn],
                           k.huge_zero_pfn + np.arange(0, 520, 7), rng.choice(used, 5000)])
    tier = np.array([n.tier for n in k.machine.nodes])
    seen = set()
    for drop in (False, True):
        ibs = Ibs(drop_toptier=drop)
        fast = ibs._filter(k, pfns, tier, 0)
        ref = ibs._filter_reference(k, pfns, tier, 0)
        assert np.array_equal(fast[0], ref[0]) and fast[1:] == ref[1:], drop
        seen.add(ref[1:])
    assert all(min(counts) > 0 for counts in seen)


def test_lower_tier_lru_heads_compiled_pass_is_its_numpy_form(ahead):
    """pghot's report filter (pfn valid, on a lower tier, folio on an LRU; heads of THP
    tails) as one compiled pass: the same mask, heads and nodes as its numpy form."""
    from tierscan.mm.constants import PG_lru
    from tierscan.promote.pghot import (
        LowerTierPfns, lower_tier_lru_heads, lower_tier_lru_heads_reference,
    )

    k = mixed_kernel()
    rng = np.random.default_rng(12)
    used = np.flatnonzero(k.pm.flags & PG_lru)
    k.pm.flags[rng.choice(used, 300, replace=False)] &= ~np.uint16(PG_lru)
    pfns = np.concatenate([rng.integers(-3, k.pm.nr_pfns + 5, 20_000), rng.choice(used, 5000),
                           [k.pm.nr_pfns, -1]])
    lower = LowerTierPfns(k)
    fast = lower_tier_lru_heads(k, lower, pfns)
    ref = lower_tier_lru_heads_reference(k, lower, pfns)
    for a, b in zip(fast, ref):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert 0 < ref[0].sum() < pfns.size and (ref[1] != pfns[ref[0]]).any()   # THP tails


def _kmigrated_wake(monkeypatch, fast: bool, machine, targets_of, literal=False, **params):
    """The state after one kmigrated wake over 9,000 CXL pages (two THPs first, every fifth
    page-cache page dirty) with the admission windows in their fast
    form or in the reference forms (PghotV3.fast_wake, migrate.split_sites_reference)."""
    from conftest import machine_dict
    from test_promote import FakeEngine, at

    from tierscan.mm.constants import PG_dirty
    from tierscan.promote.pghot import PghotV3

    from tierscan.mm import migrate

    monkeypatch.setattr(PghotV3, "fast_wake", fast)
    if not fast:
        monkeypatch.setattr(migrate, "split_sites", migrate.split_sites_reference)
    k = Kernel(Machine.from_dict(machine_dict(**machine)), seed=0)   # isolated folios: no checks
    cxl = len(machine["capacities"]) - 1
    mm = k.spawn("p")
    mm.mmap(2 * HPAGE, kind="anon", thp=True, populate=True, policy="bind", nodes=[cxl])
    anon = mm.mmap(7200 * PAGE, kind="anon", populate=True, policy="bind", nodes=[cxl])
    file = mm.mmap(1800 * PAGE, kind="file", shared=True, populate=True, policy="bind",
                   nodes=[cxl])                        # page cache
    pfns = np.concatenate([mm.translate(anon.start + np.arange(7200) * PAGE),
                           mm.translate(file.start + np.arange(1800) * PAGE)])
    k.pm.flags[pfns[7200::5]] |= PG_dirty
    thps = mm.translate(mm.vmas[0].start + np.arange(2) * HPAGE)
    pages = np.concatenate([thps, pfns])
    e = PghotV3(k, literal=literal, **params)
    for t in (1000, 1001, 1002):
        e.record_access(pages, targets_of(pages), "hintfault", at(k, t))
    at(k, 1100)
    fe = FakeEngine(k)
    e.kmigrated[0].run(fe)
    st = kernel_state(k)
    st["records"] = e.records.copy()
    st["block_ready"] = e._block_ready.copy()
    st["ready_bits"] = e._ready_bits.copy()
    st["promoted"] = np.concatenate(e.promoted_pfns or [np.zeros(0, np.int64)])
    st["cpu"] = fe.cpu_ns
    st["success_by_node"] = k.vmstat.node("pgpromote_success")
    for name in ("nbp_threshold", "nbp_th_start", "nbp_th_nr_cand", "nbp_rl_start",
                 "nbp_rl_nr_cand"):
        st[name] = getattr(e, name).copy()
    return st


@pytest.mark.parametrize("case", ["one DRAM node", "two DRAM nodes", "two, literal",
                                  "rate limit"])
def test_kmigrated_fast_wake_is_the_reference(monkeypatch, case):
    """kmigrated's admission windows with the wake's prepare refusals computed once and the
    single-destination steps (PghotV3.fast_wake) end a wake as the reference form, which
    selects each destination's folios and judges prepare per window: one destination that
    fills up part way (unbalanced refusals), two destinations interleaved (target changes cut
    batches; as posted they do not), and a rate limit that refuses part of the candidates."""
    one = {"capacities": ["32MiB", "64MiB"]}
    two = {"capacities": ["24MiB", "16MiB", "64MiB"], "cpus": [[0], [1], []],
           "kinds": ["dram", "dram", "cxl"]}
    # as posted, admission passes only through the free-space shortcut (quirk (b))
    roomy = dict(two, capacities=["1200MiB", "1200MiB", "64MiB"])
    alternate = lambda p: (p // 700) % 2                        # noqa: E731
    machine, targets, kw = {
        "one DRAM node": (one, lambda p: -1, {"batch": 256}),
        "two DRAM nodes": (two, alternate, {"batch": 200}),
        "two, literal": (roomy, alternate, {"batch": 200, "literal": True}),
        "rate limit": (one, lambda p: -1, {"rate_limit_MBps": 12}),
    }[case]
    ref = _kmigrated_wake(monkeypatch, False, machine, targets, **kw)
    fast = _kmigrated_wake(monkeypatch, True, machine, targets, **kw)
    assert_same_state(ref, fast)
    vm = ref["vmstat"]
    assert vm["pgpromote_success"] > 1000
    assert vm["pgmigrate_prepare_fail_dirty_file"] > 0
    if case == "rate limit":
        assert vm["pghot_kmigrated_refused_ratelimit"] > 0
    elif case == "two, literal":
        assert vm["pgpromote_candidate_nrl"] > 1000
    else:
        assert vm["pgmigrate_prepare_fail_unbalanced"] > 0
    if case == "two DRAM nodes":
        assert (ref["success_by_node"][:2] > 0).all()


def test_split_sites_is_the_per_chunk_mask():
    """move_folios' chunks of rmap sites by searchsorted are the reference's per-chunk masks:
    sites of anon, THP and file pages queried in a shuffled order, chunks that some
    sites miss, and a site whose pos is not ascending (split by the reference)."""
    from tierscan.mm.constants import PG_lru, PG_tail
    from tierscan.mm.migrate import split_sites, split_sites_reference
    from tierscan.mm.rmap import Sites, rmap_walk

    k = mixed_kernel()
    pm = k.pm
    heads = np.flatnonzero((pm.flags & PG_lru) != 0)
    heads = heads[(pm.flags[heads] & PG_tail) == 0]
    rng = np.random.default_rng(3)
    heads = rng.permutation(heads)[:3000]
    pfns = pm.folio_pfns(heads)
    sites = rmap_walk(k, pfns)
    assert len(sites) >= 2 and any(s.pmd for s in sites)
    s0 = sites[0]
    sites.append(Sites(s0.mm, s0.pmd, s0.slots[::-1].copy(), s0.pos[::-1].copy()))
    for page_at in (np.array([0, pfns.size]), np.array([0, 1, 700, 700, 2100, pfns.size]),
                    np.r_[0, np.sort(rng.choice(pfns.size, 40, replace=False)), pfns.size]):
        fast, ref = split_sites(sites, page_at), split_sites_reference(sites, page_at)
        assert len(fast) == len(ref) == page_at.size - 1
        for a, b in zip(fast, ref):
            assert [(x.mm, x.pmd) for x in a] == [(x.mm, x.pmd) for x in b]
            for x, y in zip(a, b):
                assert np.array_equal(x.slots, y.slots) and np.array_equal(x.pos, y.pos)


def test_walk_steps_read_once_are_the_reference():
    """kmigrated's walk steps over [start, stop) from one read of the block heads (_WalkSteps)
    are _walk_steps' for starts inside and between THPs and every kind of stop."""
    from conftest import machine_dict

    from tierscan.promote.pghot import PghotV3, _WalkSteps

    k = Kernel(Machine.from_dict(machine_dict(["32MiB", "64MiB"])), seed=0)
    mm = k.spawn("p")
    mm.mmap(3 * HPAGE + 5 * PAGE, kind="anon", populate=True, policy="bind", nodes=[1])
    mm.mmap(9 * HPAGE, kind="anon", thp=True, populate=True, policy="bind", nodes=[1])
    mm.mmap(700 * PAGE, kind="anon", populate=True, policy="bind", nodes=[1])
    thps = mm.translate(mm.vmas[1].start + np.arange(9) * HPAGE)
    k.split_folios(thps[[2]])                 # a full block that no longer holds a THP
    mm.munmap(mm.vmas[1].start + 5 * HPAGE, HPAGE)   # a freed THP: its block is free again
    e = PghotV3(k)
    p0, p1 = k.pm.node_range(1)
    assert np.count_nonzero(k.pm.order[p0:p1:512]) == 7
    blocks = k.pm.block_free[p0 // 512:p1 // 512]
    assert (blocks == 0).sum() > 7 and (blocks == 512).any()   # full blocks without a THP
    rng = np.random.default_rng(0)
    for start in [p0, p0 + 1, p0 + 512, p0 + 1800, *rng.integers(p0, p1, 20).tolist()]:
        steps = _WalkSteps(k.pm, start, p1)
        for stop in [start, start + 1, p1, *rng.integers(start, p1 + 1, 30).tolist()]:
            assert steps.upto(stop) == e._walk_steps(start, stop)
