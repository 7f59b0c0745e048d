"""The engine tick loop's fast paths (issue 15, engine3) against their plain forms: each is
compared with the reference kept beside it, on states built to reach every branch."""

from types import SimpleNamespace

import numpy as np
from conftest import HPAGE, PAGE, addrs, page_addrs

from tierscan.mm.memory import change_prot_numa


def _mixed_mm(kernel, mm):
    """An mm with every kind of mapping rss() tells apart: 4 KiB anon pages, THPs (one made
    PROT_NONE), the zero page and the huge zero page, shared file pages, never-touched slots."""
    a = mm.mmap(64 * PAGE)
    mm.access(page_addrs(a.start, 20), True)                 # anon pages
    mm.access(page_addrs(a.start, 10, first=30), False)      # reads: the zero page
    t = mm.mmap(3 * HPAGE, thp=True)
    mm.access(addrs(t.start, t.start + HPAGE), True)         # two THPs
    mm.access(addrs(t.start + 2 * HPAGE), False)             # the huge zero page
    f = mm.mmap(16 * PAGE, kind="file", shared=True)
    mm.access(page_addrs(f.start, 7), False)                 # page-cache pages
    change_prot_numa(t, t.start, t.start + HPAGE, skip_toptier=False)   # a PROT_NONE THP
    change_prot_numa(a, a.start, a.start + 8 * PAGE, skip_toptier=False)
    return mm


def test_rss_compiled_equals_reference(kernel, mm):
    _mixed_mm(kernel, mm)
    got = mm.rss()
    assert got == mm.rss_reference()
    assert got == {"anon": 20 + 2 * 512, "file": 7}


def test_rss_counts_a_tail_page_by_its_own_flags(kernel, mm):
    """The reference reads each mapped page's flags, not its head's: so does the pass."""
    from tierscan.mm.constants import PG_anon

    t = mm.mmap(HPAGE, thp=True)
    mm.access(addrs(t.start), True)
    head = int(mm.translate(addrs(t.start))[0])
    kernel.pm.flags[head + 3] &= ~PG_anon
    assert mm.rss() == mm.rss_reference() == {"anon": 511, "file": 1}
    kernel.pm.flags[head + 3] |= PG_anon


def test_first_occurrences_equals_reference():
    from tierscan.arrays import first_occurrences, first_occurrences_reference

    rng = np.random.default_rng(7)
    cases = [np.empty(0, np.int64), np.array([5], np.int64), np.array([3, 3], np.int64),
             rng.permutation(10_000).astype(np.int64)]                   # distinct
    for n, span in ((50, 20), (2_000, 1_500), (20_000, 10**9)):
        cases.append(rng.integers(0, span, n))                         # repeats (or not)
    for a in cases:
        got, ref = first_occurrences(a), first_occurrences_reference(a)
        assert got.dtype == ref.dtype and np.array_equal(got, ref)


def test_stable_argsort_equals_numpys_stable_sort():
    from tierscan.arrays import stable_argsort

    rng = np.random.default_rng(3)
    cases = [np.empty(0), np.array([1.0]), rng.random(5_000) * 1e9,        # no ties
             np.repeat(rng.random(300), 3)[rng.permutation(900)],            # ties
             np.array([0.0, -0.0, 1.0, -0.0, 0.0]),                          # equal zeros
             np.array([2.0, np.nan, 1.0, np.nan, np.inf, 0.5]),              # NaNs last
             np.where(rng.random(5_000) < 0.1, np.nan, rng.random(5_000)),   # many NaNs
             rng.integers(0, 50, 1_000), rng.permutation(4_000)]
    for a in cases:
        got, ref = stable_argsort(a), np.argsort(a, kind="stable")
        assert got.dtype == ref.dtype and np.array_equal(got, ref), a[:8]


def test_solve_grid_is_numpys_linspace_bit_for_bit():
    from tierscan.memsys.solve import _GRID, _grid, _unit

    rng = np.random.default_rng(11)
    lo = rng.random(2_000) * 10.0 ** rng.integers(-6, 6, 2_000)
    hi = lo + rng.random(2_000) * 10.0 ** rng.integers(-12, 6, 2_000)
    pairs = list(zip(lo, hi)) + [(0.0, 1e-9), (3.5, 3.5), (5e-324, 1e-323), (0.0, 7.25),
                                 (np.float64(2.0), np.float64(4.0)), (-1.0, 1.0)]
    for a, b in pairs:
        assert _grid(a, b).tobytes() == np.linspace(a, b, _GRID).tobytes(), (a, b)
    for n in (2, 33, 64):
        assert _unit(n).tobytes() == np.linspace(0.0, 1.0, n).tobytes()


def test_heat_bin_sums_equal_bincount():
    from types import SimpleNamespace

    from tierscan.access.base import bin_sums, bin_sums_reference

    rng = np.random.default_rng(5)
    for n, bins in ((1, 64), (63, 64), (1_000, 64), (100_003, 64), (4_096, 7), (0, 64)):
        w = rng.random(n) ** 8 * 10.0 ** rng.integers(-8, 8, n)     # wide range: rounding shows
        g = SimpleNamespace(n_pages=n)
        got, ref = bin_sums(n, bins, w), bin_sums_reference(g, bins, w)
        assert got.tobytes() == ref.tobytes()


def _groups(rng):
    """Stand-ins for thread groups: one range, and several disjoint ranges (index_of's two
    forms)."""
    from tierscan.access.base import ThreadGroup

    out = []
    for starts, sizes in (([1_000], [700]), ([50, 400, 2_000, 5_000], [100, 300, 512, 37])):
        g = ThreadGroup.__new__(ThreadGroup)
        g.range_start = np.array(starts, np.int64)
        g.range_end = g.range_start + np.array(sizes, np.int64)
        g.range_base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        g.n_pages = int(sum(sizes))
        out.append(g)
    return out


def test_remap_hooks_compiled_equal_numpy():
    """The rate model's and memsys's weight moves (arrays.move_weight_out) and BinTiers'
    bin counts (bin_tier_moves) against their numpy forms: same floats, same order."""
    from tierscan.access.base import BinTiers
    from tierscan.arrays import move_weight_out, move_weight_out_reference

    rng = np.random.default_rng(9)
    for g in _groups(rng):
        w = rng.random(g.n_pages) ** 6 * 10.0 ** rng.integers(-9, 9, g.n_pages)
        for _ in range(20):
            slots = rng.integers(0, 6_000, rng.integers(0, 3_000))
            src = rng.integers(0, 4, slots.size)
            a = rng.random(4) * 1e3
            b = a.copy()
            moved, idx = move_weight_out(a, src, slots, g.range_start, g.range_end,
                                         g.range_base, w)
            moved_ref, idx_ref = move_weight_out_reference(b, src, g, slots, w)
            assert a.tobytes() == b.tobytes() and moved.tobytes() == moved_ref.tobytes()
            assert np.array_equal(idx, idx_ref)
            bt = BinTiers.__new__(BinTiers)
            bt.group, bt.top = SimpleNamespace(mm=None, **vars(g)), np.array([0, 1])
            bt.group.index_of = g.index_of
            bt.is_top = np.array([True, True, False, False, False])
            bt.nbins = 64
            bt.fast = rng.random(64) * 100
            ref = bt.fast.copy()
            dst = int(rng.integers(0, 4))
            bt._on_remap(None, slots, src, dst)
            got, bt.fast = bt.fast, ref
            bt._on_remap_reference(None, slots, src, dst)
            assert got.tobytes() == bt.fast.tobytes()


def test_node_mass_equals_bincount():
    """The per-node weight of a group's pages (arrays.node_mass, memsys's and the rate
    model's) against the bincount form, bit for bit: nodes in runs (the running sum kept
    across pages) and at random, unmapped pages, empty nodes, wide-ranging weights."""
    from tierscan.arrays import node_mass, node_mass_reference

    rng = np.random.default_rng(13)
    for n in (0, 1, 7, 1_000, 100_003):
        w = rng.random(n) ** 8 * 10.0 ** rng.integers(-12, 3, n)
        runs = np.repeat(rng.integers(-1, 3, n // 50 + 1), 50)[:n]
        for nodes in (rng.integers(-1, 3, n), runs, np.full(n, -1), np.full(n, 2)):
            for nr in (3, 5):
                got, ref = node_mass(nodes, w, nr), node_mass_reference(nodes, w, nr)
                assert got.tobytes() == ref.tobytes()
