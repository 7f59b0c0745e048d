"""Fast paths against the references kept beside them (issue 15): each must give the
reference's exact result."""

import numpy as np
from conftest import HPAGE, PAGE

from tierscan import Kernel, Machine


def mixed_kernel() -> Kernel:
    """A kernel with anon order-0 and THP memory, file pages and a freed range on both nodes."""
    k = Kernel(Machine.preset("laptop"), seed=0)
    mm = k.spawn("p")
    a = mm.mmap(64 * HPAGE, kind="anon", thp=True, populate=True, policy="bind", nodes=[1])
    mm.mmap(3000 * PAGE, kind="anon", populate=True, policy="bind", nodes=[0])
    mm.mmap(700 * PAGE, kind="file", populate=True, policy="bind", nodes=[1])
    mm.munmap(a.start + 5 * HPAGE, 3 * HPAGE + 17 * PAGE)
    return k


def test_node_pages_matches_reading_every_pfn():
    k = mixed_kernel()
    fast, ref = k.node_pages(), k.node_pages_reference()
    assert fast.keys() == ref.keys()
    for key in ref:
        assert fast[key].tolist() == ref[key].tolist(), key
    assert fast["anon_thp"][1] > 0 and fast["file"][1] > 0 and fast["anon"][0] > 0


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

