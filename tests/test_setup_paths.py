"""The per-run set-up's fast paths (issue 15: the fixed cost of a run): the memory system's
memo of phase solutions across runs (memsys/memo.py: a run that finds its TLB and LLC
solutions there gives the same result file as one that computes them; keys follow content,
not identity), and the collection of a finished run."""

import gc
import weakref

import numpy as np
import pytest

from tierscan.memsys import memo
from tierscan.sim import run as run_mod
from tierscan.sim.run import run_experiment
from test_memsys_engine import TWO, cfg, laptop_loaded

# two groups on two CPU nodes (two LLCs), and one with THPs mixed in (the PMD-entry lines)
THP = {"name": "multi", "processes": [
    {"name": "a", "size": "8MiB", "threads": 2, "node": 0, "mlp": 4, "dist": "zipf",
     "thp": True, "accesses": 50000},
    {"name": "b", "size": "6MiB", "threads": 3, "node": 0, "mlp": 4, "dist": "uniform",
     "write_fraction": 0.3, "accesses": 50000}]}


@pytest.fixture
def fresh_memo():
    saved = memo.ENABLED
    memo.clear()
    yield
    memo.ENABLED = saved
    memo.clear()


@pytest.mark.parametrize("workload", [TWO, THP], ids=["two-llcs", "thp"])
def test_a_run_from_the_memo_is_the_computed_run(tmp_path, fresh_memo, workload):
    c = cfg(workload, machine=laptop_loaded(llc="1MiB"))
    memo.ENABLED = False
    run_experiment(c).save(tmp_path / "computed.json", include_timing=False)
    memo.ENABLED = True
    run_experiment(c).save(tmp_path / "first.json", include_timing=False)
    hits = memo.stats["hits"]
    run_experiment(c).save(tmp_path / "hit.json", include_timing=False)
    assert memo.stats["hits"] > hits            # the second run found its solutions
    computed = (tmp_path / "computed.json").read_bytes()
    assert (tmp_path / "first.json").read_bytes() == computed
    assert (tmp_path / "hit.json").read_bytes() == computed


def test_another_machine_misses(fresh_memo):
    run_experiment(cfg(TWO, machine=laptop_loaded(llc="1MiB")))
    misses = memo.stats["misses"]
    run_experiment(cfg(TWO, machine=laptop_loaded(llc="1MiB", tlb_4k=(64, 1024))))
    assert memo.stats["misses"] > misses        # other TLB entries: another TLB solution


def test_digest_follows_content_dtype_and_shape():
    a = np.arange(12, dtype=np.float64)
    assert memo.digest(a) == memo.digest(a.copy())
    b = a.copy()
    b[7] = np.nextafter(b[7], 100.0)
    assert memo.digest(b) != memo.digest(a)
    assert memo.digest(a.astype(np.int64)) != memo.digest(a.view(np.int64))
    assert memo.digest(a.reshape(3, 4)) != memo.digest(a)
    assert memo.digest(a[::2]) == memo.digest(np.ascontiguousarray(a[::2]))
    assert memo.digest(1, 2) != memo.digest(12) != memo.digest((1, 2))


@pytest.mark.parametrize("old", [False, True], ids=["young-graph", "graph-in-oldest-gen"])
def test_a_finished_run_is_freed(monkeypatch, old):
    """run_experiment frees the run's cyclic graph with the collector off, whether the graph
    is still young (the generation-1 collection frees it) or was moved to the oldest
    generation during the run (then a full collection must follow)."""
    refs = []
    build = run_mod.build_engine

    def tracked(*a, **kw):
        e = build(*a, **kw)
        refs.extend([weakref.ref(e), weakref.ref(e.kernel)])
        if old:
            gc.collect()          # what a long run's automatic collections do to its objects
        return e

    monkeypatch.setattr(run_mod, "build_engine", tracked)
    gc.collect()
    gc.disable()
    try:
        run_experiment(cfg(TWO, latency_model="idle"))
        assert refs and all(r() is None for r in refs)
    finally:
        gc.enable()


@pytest.mark.parametrize("starts", [[0, 32885760, 65882112, 131928064], [0, 10, 10, 20],
                                    [0, 64], [0, 5, 9, 9, 9, 30]])
def test_node_of_compiled_is_its_numpy_form(starts):
    """PhysMem.node_of's compiled pass against node_of_reference (searchsorted): pfns in,
    at and around every node start, negative and past the last pfn, empty nodes, any shape."""
    from tierscan.mm.physmem import PhysMem

    pm = PhysMem.__new__(PhysMem)
    pm.node_start = np.array(starts, np.int64)
    pm.nr_pfns = int(pm.node_start[-1])
    rng = np.random.default_rng(len(starts))
    edges = np.concatenate([pm.node_start + d for d in (-1, 0, 1)])
    pfns = np.concatenate([edges, rng.integers(-3, pm.nr_pfns + 3, 5000), [-1, -(1 << 40)]])
    for x in (pfns, pfns.reshape(2, -1)[:, ::3], pfns[:0], np.int64(5), [7, -1]):
        got, ref = pm.node_of(x), pm.node_of_reference(x)
        assert got.dtype == ref.dtype and got.shape == ref.shape
        assert np.array_equal(got, ref)


def test_counts_without_sorting_counts_what_add_at_counts():
    """physmem._counts: keys in runs (ascending or descending, the allocator's blocks) are
    counted without a sort; anything else is sorted first. Either way ``a[keys] += n`` adds
    what np.add.at(a, keys, 1) adds."""
    from tierscan.mm.physmem import _counts

    rng = np.random.default_rng(3)
    runs = np.repeat(np.array([3, 7, 8, 20]), [5, 1, 512, 2])
    cases = [runs, runs[::-1], np.repeat(np.array([9, 2, 40]), 3),      # not monotonic
             np.array([5, 5, 6, 5]), rng.integers(0, 30, 400), np.array([4]), np.array([], int)]
    for keys in cases:
        a, b = np.zeros(64, np.int64), np.zeros(64, np.int64)
        uniq, n = _counts(keys)
        assert uniq.size == np.unique(keys).size
        a[uniq] += n
        np.add.at(b, keys, 1)
        assert np.array_equal(a, b), keys


def test_pmd_is_leaf_by_table_is_per_entry():
    """PageTable.pmd_is_leaf over more slots than the PMD table has reads each entry once;
    the same mask as testing every slot's entry."""
    from tierscan.mm.constants import _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_PSE
    from tierscan.mm.pagetable import PageTable, _pmd_leaf

    pt = PageTable()
    pt.ensure(64 * 512)
    rng = np.random.default_rng(4)
    bits = np.array([0, _PAGE_PSE, _PAGE_PSE | _PAGE_PRESENT, _PAGE_PSE | _PAGE_PROTNONE,
                     _PAGE_PRESENT], np.uint64)
    pt.pmd[:] = bits[rng.integers(0, bits.size, pt.pmd.size)]
    few = rng.integers(0, pt.pmd.size, 7)
    many = rng.integers(0, pt.pmd.size, 3 * pt.pmd.size)
    for slots in (few, many, np.repeat(np.arange(pt.pmd.size), 2)):
        assert np.array_equal(pt.pmd_is_leaf(slots), _pmd_leaf(pt.pmd[slots]))
    assert pt.pmd_is_leaf(many).any() and not pt.pmd_is_leaf(many).all()


def test_set_up_holds_the_placement_only_while_it_runs():
    """The groups' (pfn, node) pairs are computed once for the set-up's models and released
    before the run: afterwards placement() reads the page tables again."""
    from tierscan.sim.run import build_engine

    e = build_engine(cfg(THP, machine=laptop_loaded(llc="1MiB")))
    for g in e.groups:
        assert g._placement is None
        pfns, nodes = g.placement(e.kernel)
        assert np.array_equal(pfns, g.mm.translate(g.addrs))
        assert np.array_equal(nodes, e.kernel.node_of(pfns))
        assert (pfns >= 0).all()


def test_first_per_key_is_unique_in_first_access_order():
    """memory.first_per_key: ascending keys by one pass, others by np.unique; both give
    np.unique(return_index) reordered by first occurrence."""
    from tierscan.mm.memory import first_per_key

    rng = np.random.default_rng(5)
    for keys in (np.sort(rng.integers(0, 50, 300)), rng.integers(0, 50, 300),
                 np.repeat([4, 9, 9, 30], 3), np.array([7]), np.array([], np.int64),
                 np.array([3, 3, 2, 2, 5])):
        uniq, idx = np.unique(keys, return_index=True)
        order = np.argsort(idx, kind="stable")
        got = first_per_key(keys)
        assert got[0].tolist() == uniq[order].tolist() and got[1].tolist() == idx[order].tolist()


def test_folio_pfns_of_one_size_is_folio_by_folio():
    """PhysMem.folio_pfns for folios of one order (the THP path without repeat) against the
    general form, mixed orders included."""
    from tierscan.mm.physmem import PhysMem

    pm = PhysMem.__new__(PhysMem)
    pm.order = np.zeros(1 << 14, np.uint8)
    heads = np.array([512 * 7, 512, 512 * 20], np.int64)
    pm.order[heads] = 9
    got = pm.folio_pfns(heads)
    assert got.dtype == np.int64
    assert got.tolist() == [h + i for h in heads.tolist() for i in range(512)]
    pm.order[5] = 2
    mixed = np.array([512, 5], np.int64)
    assert pm.folio_pfns(mixed).tolist() == list(range(512, 1024)) + [5, 6, 7, 8]


def test_unique_inverse_of_ascending_keys_is_numpy_s():
    """arrays.unique_inverse's one-pass path for ascending keys (a group's page slots and
    their PMDs, GroupRates) gives np.unique's values, dtypes and inverse exactly."""
    from tierscan.arrays import unique_inverse

    rng = np.random.default_rng(8)
    slots = np.concatenate([np.arange(100, 1700), np.arange(5000, 5300)])
    for a in (slots >> 9, slots, np.sort(rng.integers(-90, 90, 500)),
              np.sort(rng.integers(0, 1 << 63, 300, dtype=np.uint64)),
              np.array([False, False, True]), np.array([7, 7], np.int16), np.array([2, 1])):
        u, inv = unique_inverse(a)
        ref, ref_inv = np.unique(a, return_inverse=True)
        assert u.dtype == ref.dtype and inv.dtype == ref_inv.dtype
        assert np.array_equal(u, ref) and np.array_equal(inv, ref_inv)


def test_equal_distributions_share_their_table():
    """A distribution built again with the same parameters (a later run's workload) takes
    the table an equal one computed; other parameters or sizes compute their own."""
    from tierscan.workload.distributions import HotSet, Weights, Zipf

    a, b = Zipf(0.9, seed=3), Zipf(0.9, seed=3)
    assert b.weights(5000) is a.weights(5000)
    fresh = Zipf(0.9, seed=3)._compute_table(5000)[0]
    assert np.array_equal(a.weights(5000), fresh)
    for other in (Zipf(0.9, seed=4), Zipf(0.9 + 1e-12, seed=3), HotSet(0.1, 0.9)):
        w = other.weights(5000)
        assert w is not a.weights(5000) and np.array_equal(w, other._compute_table(5000)[0])
    assert Zipf(0.9, seed=3).weights(5001).size == 5001
    ones = Weights("flat", {"k": 1}, lambda n: np.ones(n))
    twos = Weights("ramp", {"k": 1}, lambda n: np.arange(1.0, n + 1))
    assert not np.array_equal(ones.weights(10), twos.weights(10))   # the name tells them apart


def test_bin_sizes_and_heat_tiers_without_per_page_bins():
    """base.bin_sizes is bincount(page_bins) for any page and bin count; BinTiers' top-tier
    sums by bin_sums equal bincount's over page_bins, also after a remap hook."""
    from types import SimpleNamespace

    from tierscan.access.base import BinTiers, bin_sizes, page_bins
    from tierscan.sim.run import build_engine

    for n, bins in ((0, 64), (1, 64), (63, 64), (64, 64), (1000, 64), (100_003, 64), (10, 7)):
        ref = np.bincount(page_bins(SimpleNamespace(n_pages=n), bins), minlength=bins)
        got = bin_sizes(n, bins)
        assert got.dtype == ref.dtype and got.tolist() == ref.tolist(), (n, bins)
    e = build_engine(cfg(THP, machine=laptop_loaded(llc="1MiB")))
    k, g = e.kernel, e.groups[1]
    t = BinTiers(k, g, bins=7)
    nodes = k.node_of(g.mm.translate(g.addrs))
    top = np.isin(nodes, k.machine.toptier_nodes)
    pb = page_bins(g, 7)
    assert np.array_equal(t.fast, np.bincount(pb, weights=top, minlength=7))
    assert np.array_equal(t.size, np.maximum(np.bincount(pb, minlength=7), 1))
    moved = g.slots[::3]
    src = nodes[::3]
    t._on_remap(g.mm, moved, src, 1)
    top[::3] = 1 in k.machine.toptier_nodes
    assert np.array_equal(t.fast, np.bincount(pb, weights=top, minlength=7))
