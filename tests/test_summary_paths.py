"""The run summary's fast paths (sim/promotion_metrics.py, hotness/oracle.py) against the numpy
forms kept beside them (issue 15): each must give the reference's exact result."""

import numpy as np
import pytest
from conftest import HPAGE, PAGE

from tierscan import Kernel, Machine
from tierscan.sim import promotion_metrics as pmx


def mixed_kernel():
    """Anon order-0 and THP pages, file pages and a freed range on both nodes."""
    k = Kernel(Machine.preset("laptop"), seed=0)
    mm = k.spawn("p")
    a = mm.mmap(64 * HPAGE, kind="anon", thp=True, populate=True, policy="bind", nodes=[1])
    mm.mmap(3000 * PAGE, kind="anon", populate=True, policy="bind", nodes=[0])
    mm.mmap(700 * PAGE, kind="file", shared=True, populate=True, policy="bind", nodes=[1])
    mm.munmap(a.start + 5 * HPAGE, 3 * HPAGE + 17 * PAGE)
    return k, mm


def test_page_identities_pass_matches_numpy_reference():
    """Live anon, THP and file pages, free and reserved pfns (the zero pages: owner 0, which
    group_page_identities relies on), pfns below 0 and beyond the last."""
    k, mm = mixed_kernel()
    n = k.pm.nr_pfns
    mapped = mm.translate(np.concatenate([np.arange(v.start, v.end, PAGE) for v in mm.vmas]))
    rng = np.random.default_rng(3)
    pfns = np.concatenate([np.arange(-3, 2048), mapped, rng.integers(0, n, 20000),
                           [n - 1, n, n + 7, -(1 << 40)]])
    fast, ref = pmx.page_identities(k, pfns), pmx.page_identities_reference(k, pfns)
    assert fast.dtype == ref.dtype and fast.shape == ref.shape == (pfns.size, 2)
    assert (fast == ref).all()
    assert (ref[:, 0] > 0).sum() > 1000 and (ref[:, 0] < 0).sum() > 100     # anon and file
    zero = [k.zero_pfn, k.huge_zero_pfn, k.huge_zero_pfn + HPAGE // PAGE - 1]
    assert (pmx.page_identities(k, zero) == 0).all()
    assert pmx.page_identities(k, pfns[:0]).shape == (0, 2)


def test_folio_page_keys_match_expanded_rows():
    rng = np.random.default_rng(4)
    rows = np.column_stack([rng.integers(-50, 50, 300), rng.integers(0, 1 << 32, 300),
                            rng.choice([1, 1, 2, 512], 300)])
    fast, ref = pmx.folio_page_keys(rows), pmx.folio_page_keys_reference(rows)
    assert fast.dtype == ref.dtype and fast.tolist() == ref.tolist()
    assert pmx.folio_page_keys(rows[:0]).size == 0


def test_count_common_matches_isin():
    rng = np.random.default_rng(5)
    for n, m in [(0, 10), (10, 0), (1000, 3000), (3000, 1000), (500, 500)]:
        a = np.unique(rng.integers(-2000, 2000, n))
        b = np.unique(rng.integers(-2000, 2000, m))
        assert pmx.count_common(a, b) == pmx.count_common_reference(a, b)
    a = np.arange(100)
    assert pmx.count_common(a, a) == 100 and pmx.count_common(a, a + 100) == 0


def test_distribution_matches_the_repeated_values_quantiles():
    """Every quantile at both sides of gamma 0.5 and exactly on it, a single value, values of
    ns magnitude (where a + d*g and b - d*(1-g) round differently), weights of 0, unweighted."""
    rng = np.random.default_rng(6)
    cases = [([5.0], [1]), ([5.0], [7]), ([1.0, 2.0], [1, 1]), ([3.0, 1.0, 2.0], [0, 2, 3]),
             ([1229205.718, 495829.065], [1, 1]),     # gamma 0.5: only b - d/2 is numpy's
             (np.arange(11.0), None), (np.arange(3.0), [2, 0, 1]), ([], [])]
    for _ in range(300):
        n = int(rng.integers(1, 40))
        v = rng.integers(0, 30 * 10**9, n) * rng.choice([1.0, 1e-3])
        w = rng.integers(0, 600, n)
        w[0] = max(w[0], 1)
        cases.append((v, w))
    for v, w in cases:
        assert pmx.distribution(v, w) == pmx.distribution_reference(v, w), (v, w)
    assert pmx.distribution([4.0], [0]) is None


def test_mean_of_repeated_integers_is_numpys_or_none():
    """repeated_mean: numpy's mean of the repeated values where every partial sum is exact
    (ns multiples of 2^7 far beyond 2^53 in all; negative values; zeros), None past the bound
    (odd values whose float sum rounds) or for float values."""
    rng = np.random.default_rng(7)
    big = [(rng.integers(0, 3 * 10**10 // 10**7, 33000) * 10**7, np.full(33000, 512)),
           (rng.integers(-10**6, 10**6, 5000), rng.integers(0, 3, 5000)),
           (np.zeros(9, np.int64), np.arange(9)), (np.array([7]), np.array([1]))]
    for v, w in big:
        want = np.repeat(v.astype(float), w).mean()
        assert pmx.repeated_mean(v, w) == pmx.repeated_mean_reference(v, w) == want
    assert float(np.abs(big[0][0]) @ big[0][1]) > 2.0 ** 53      # beyond the plain bound
    odd = np.array([2**52 + 1, 3, 2**51 + 7])
    w = np.array([3, 1, 2])
    assert np.repeat(odd.astype(float), w).sum() != int(odd @ w)     # (the float sum rounds)
    assert pmx.repeated_mean(odd, w) is None is pmx.repeated_mean_reference(odd, w)
    huge = np.array([1 << 62, 1 << 61])     # (int64 sums wrap: the float sum says so)
    assert pmx.repeated_mean(huge, [4, 1]) is None is pmx.repeated_mean_reference(huge, [4, 1])
    assert pmx.distribution(odd, w) == pmx.distribution_reference(odd, w)
    assert pmx.repeated_mean(np.array([1.5, 2.0]), np.array([1, 1])) is None


@pytest.mark.parametrize("mode", [1, 3])
def test_summary_of_a_run_matches_its_numpy_forms(mode, monkeypatch):
    """The hot set and promotion_summary of a small pghot-v3 klruscand run (Mode 1: 4K pages,
    the hot set smaller than the candidates; Mode 3: THPs, every candidate fits) with the
    passes swapped for their numpy forms."""
    from tierscan.experiments.pghot_v3 import config
    from tierscan.hotness.oracle import oracle_hot_set
    from tierscan.sim.config import config_from_dict
    from tierscan.sim.run import build_engine, promotion_source

    cfg = config(mode, "klruscand", scale=0.02)
    e = build_engine(config_from_dict(cfg)).run()
    src = promotion_source(e)
    hot = oracle_hot_set(e, ordered=False)
    fast = pmx.promotion_summary(e, src, hot_set=hot, fits_fast_tier=mode == 3)
    assert fast["promoted_pages"] > 0 and fast["report_to_promote_ns"]
    if mode == 1:
        assert fast["true_positives"] > 0 and fast["quality_note"] is None
    from tierscan.hotness import oracle
    for name in ("page_identities", "folio_page_keys", "count_common", "distribution",
                 "lookup"):
        monkeypatch.setattr(pmx, name, getattr(pmx, f"{name}_reference"))
    # the oracle imports page_identities by name: swap its binding too, or its hot set would
    # compare the compiled pass with itself
    monkeypatch.setattr(oracle, "page_identities", pmx.page_identities_reference)
    assert (oracle_hot_set(e, ordered=False) == hot).all()
    assert pmx.promotion_summary(e, src, hot_set=hot, fits_fast_tier=mode == 3) == fast


def test_sort_order_is_the_stable_argsort():
    """arrays.sort_order: the packed sort's permutation is np.argsort's stable one (repeats in
    index order), for negative and unsigned keys, and keys of a narrow range far from 0 (whose
    packed form would overflow without their offset from the minimum); keys too wide to pack
    go to argsort."""
    from tierscan.arrays import sort_order

    rng = np.random.default_rng(8)
    for a in (rng.integers(0, 50, 100_000), rng.integers(-(1 << 40), 1 << 40, 5000),
              rng.integers(0, 1 << 16, 3000).astype(np.uint16), np.arange(7, 0, -1),
              rng.integers(0, 1 << 62, 1000),
              rng.integers(0, 4, 999).astype(np.uint64) + np.uint64(1 << 63),
              rng.integers(0, 100, 9000) + (1 << 49) - 50, np.array([3]), np.zeros(0, np.int64),
              rng.integers(-3, 3, 257).astype(np.int8), rng.random(100)):
        got, want = sort_order(a), np.argsort(a, kind="stable")
        assert got.dtype == want.dtype and got.tolist() == want.tolist(), a.dtype


def test_merge_lookup_matches_the_numpy_form():
    """lookup's merge of the packed sorts against lookup_reference and dict.get: repeated and
    missing keys, negative keys, a one-entry table, keys too wide to pack (the numpy form)."""
    rng = np.random.default_rng(10)
    keys = rng.integers(-500, 5000, 20000)
    for table in ({int(x): int(y) for x, y in zip(rng.integers(-300, 4000, 3000),
                                                   rng.integers(0, 1 << 40, 3000))},
                  {7: 1}, {1 << 62: 3, -(1 << 62): 4, 5: 6}):
        for q in (keys, np.r_[keys, 1 << 62, -(1 << 62)], keys[:1]):
            got = pmx.lookup(table, q, -1)
            assert got.tolist() == pmx.lookup_reference(table, q, -1).tolist() == \
                [table.get(int(x), -1) for x in q]
