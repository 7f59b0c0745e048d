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
