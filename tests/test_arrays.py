"""arrays.upper_bound / page_index (numba intrinsics) against their former @njit forms, and
that a compiled loop calling them keeps no reference counting of the array arguments (the
reason they are intrinsics: arrays.py)."""

import numpy as np
from numba import njit

from tierscan.arrays import (page_index, page_index_reference, upper_bound,
                             upper_bound_reference)


def _upper_bounds_kernel(search):
    @njit
    def upper_bounds(a, xs, lo, hi, out):
        for j in range(xs.size):
            out[j] = search(a, xs[j], lo, hi)
    return upper_bounds


def _page_indexes_kernel(index):
    @njit
    def page_indexes(slots, range_start, range_end, range_base, out):
        for j in range(slots.size):
            out[j] = index(slots[j], range_start, range_end, range_base)
    return page_indexes


# the loops write into an argument: with the former forms, the shape (memsys3's measurement)
# whose loop kept an NRT_incref/decref of each searched array per element
UPPER_BOUNDS = {f: _upper_bounds_kernel(f) for f in (upper_bound, upper_bound_reference)}
PAGE_INDEXES = {f: _page_indexes_kernel(f) for f in (page_index, page_index_reference)}


def _upper_bounds(search, a, xs, lo, hi):
    out = np.empty(xs.size, np.int64)
    UPPER_BOUNDS[search](a, xs, lo, hi, out)
    return out


def _page_indexes(index, slots, range_start, range_end, range_base):
    out = np.empty(slots.size, np.int64)
    PAGE_INDEXES[index](slots, range_start, range_end, range_base, out)
    return out


def _ranges(rng, n):
    start = np.sort(rng.choice(1 << 20, n, replace=False)).astype(np.int64)
    end = np.minimum(start + rng.integers(1, 5000, n), np.r_[start[1:], 1 << 21])
    base = np.concatenate([[0], np.cumsum(end - start)[:-1]]).astype(np.int64)
    return start, end, base


def test_upper_bound_matches_its_former_form_and_searchsorted():
    rng = np.random.default_rng(15)
    ints = np.sort(rng.integers(0, 100, 200))               # runs of equal entries
    floats = np.sort(rng.random(300))
    floats[10:20] = floats[10]
    for a, xs in ((ints, rng.integers(-5, 105, 5000)),
                  (ints.astype(np.int32), rng.integers(-5, 105, 5000)),
                  (floats, np.r_[rng.random(5000), floats, -1.0, 2.0, np.nan]),
                  (ints[:0], np.arange(3))):
        for lo, hi in ((0, a.size), (a.size // 3, a.size // 2), (5, 5)):
            if hi > a.size:
                continue
            got = _upper_bounds(upper_bound, a, xs, lo, hi)
            assert np.array_equal(got, _upper_bounds(upper_bound_reference, a, xs, lo, hi))
            if not np.isnan(xs.astype(float)).any():
                assert np.array_equal(got, np.searchsorted(a[lo:hi], xs, "right") + lo)


def test_page_index_matches_its_former_form():
    rng = np.random.default_rng(16)
    for n in (0, 1, 7, 200):
        start, end, base = _ranges(rng, n)
        slots = np.r_[rng.integers(-10, 1 << 21, 20000), start, end - 1, end]
        got = _page_indexes(page_index, slots, start, end, base)
        assert np.array_equal(got, _page_indexes(page_index_reference, slots, start, end,
                                                 base))
        if n:
            assert (got >= 0).any() and (got < 0).any()


def _increfs_in_body(kernel) -> int:
    """NRT_incref calls in a compiled kernel itself, not in its wrappers."""
    return sum(ir.split("define")[1].count("NRT_incref") for ir in kernel.inspect_llvm().values())


def test_compiled_loops_keep_no_reference_counting_of_the_searched_arrays():
    # a kernel's own array arguments are increfed at most once, on entry (5 here): any further
    # NRT_incref is one in the loop body. The former page_index form (a called numba function
    # with several returns) keeps one per array per element (8 in all), so the test fails with
    # it. upper_bound has no such half: its former form keeps none either in every loop shape
    # tried (a direct loop, two searches, early continues, mmu.find_vmas / translate_addrs
    # compiled with either form), and inside a helper with several returns both forms get the
    # helper's increfs; what it adds there is nothing the test could tell apart.
    a = np.arange(5, dtype=np.int64)
    for index in (page_index, page_index_reference):
        _page_indexes(index, a, a, a + 1, a)
    compiled = _increfs_in_body(PAGE_INDEXES[page_index])
    assert compiled <= 5
    assert compiled < _increfs_in_body(PAGE_INDEXES[page_index_reference])
