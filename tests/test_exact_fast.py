"""The exact model's fast path (ExactModel.fast: guide-table draws and one compiled pass over
all threads) gives the results of its reference (one MM.access per thread, numpy's
searchsorted draw) bit for bit, faults and detectors included (issue 15)."""

import numpy as np
import pytest

from tierscan.access import exact_kernels
from tierscan.access.exact import ExactModel
from tierscan.access.exact_kernels import (GuideTables, draw_index, draw_pages, guide_table,
                                           settled_buckets, settled_buckets_reference)
from tierscan.mm.mmu import replay, replay_segments
from tierscan.sim.config import config_from_dict
from tierscan.sim.run import run_experiment
from tierscan.workload.distributions import HotSet, Uniform, Zipf

from test_memsys_engine import TWO, laptop_loaded


@pytest.mark.parametrize("dist", [Uniform(), Zipf(0.99), Zipf(1.3, scatter=False),
                                  HotSet(0.1, 0.9, offset=0.95)])
@pytest.mark.parametrize("n", [1, 3, 2097, 70_000])
@pytest.mark.parametrize("ahead", [0, 1, 16, 1 << 20])     # prefetch distances
def test_guide_table_draws_are_searchsorted_draws(dist, n, ahead):
    cdf = dist.cdf(n)
    guide, scale = guide_table(cdf)
    last = int(np.flatnonzero(dist.weights(n))[-1])
    ref = dist.sample(n, 50_000, np.random.default_rng(n))
    u = np.random.default_rng(n).random(50_000) * cdf[-1]
    got, counts = np.empty(u.size, np.int64), np.zeros(n, np.int64)
    draw_pages(u, cdf, guide, scale, last, counts, got, ahead)
    assert np.array_equal(got, ref)
    assert np.array_equal(counts, np.bincount(ref, minlength=n))


def test_guide_table_search_survives_rounding_at_bucket_edges():
    """Draws exactly on, and one ulp around, every CDF entry and bucket edge."""
    dist = Zipf(1.1, scatter=False)
    cdf = dist.cdf(500)
    guide, scale = guide_table(cdf)
    edges = np.concatenate([cdf, np.arange(501) / scale])
    u = np.concatenate([edges, np.nextafter(edges, 0), np.nextafter(edges, 2)])
    u = np.clip(u, 0, np.nextafter(cdf[-1], 0))
    got = np.empty(u.size, np.int64)
    draw_pages(u, cdf, guide, scale, 499, np.zeros(500, np.int64), got, 16)
    assert np.array_equal(got, np.minimum(np.searchsorted(cdf, u, side="right"), 499))


def _settled_draws(dist, n, u):
    cdf = dist.cdf(n)
    guide, scale = guide_table(cdf)
    last = int(np.flatnonzero(dist.weights(n))[-1])
    settled, settled_scale = settled_buckets(cdf, last)
    got = np.empty(u.size, np.int64)
    draw_index(u, cdf, guide, scale, last, settled, settled_scale, got)
    return got, settled, np.minimum(np.searchsorted(cdf, u, side="right"), last)


@pytest.mark.parametrize("dist", [Uniform(), Zipf(0.99), Zipf(1.3, scatter=False),
                                  HotSet(0.1, 0.9, offset=0.95)])
@pytest.mark.parametrize("n", [1, 3, 2097, 4096, 70_000])
def test_settled_bucket_draws_are_searchsorted_draws(dist, n):
    """draw_index (a settled bucket's answer, else the bucket's search) against numpy's
    searchsorted: random draws, and draws on, and one ulp around, every CDF entry and bucket
    edge (where a bucket is settled or not)."""
    cdf = dist.cdf(n)
    _, scale = guide_table(cdf)
    edges = np.concatenate([cdf, np.arange(min(n, 1 << 22) + 1) / scale])
    u = np.concatenate([np.random.default_rng(n).random(50_000) * cdf[-1], edges,
                        np.nextafter(edges, 0), np.nextafter(edges, 2)])
    u = np.clip(u, 0, np.nextafter(cdf[-1], 0))
    got, settled, ref = _settled_draws(dist, n, u)
    assert np.array_equal(got, ref)
    assert n < 1000 or (settled >= 0).any()       # both paths taken


@pytest.mark.parametrize("dist", [Uniform(), Zipf(0.99), HotSet(0.1, 0.9, offset=0.95)])
@pytest.mark.parametrize("n", [2048, 4096, 70_000])
def test_settled_buckets_finer_than_the_guide_and_capped(dist, n, monkeypatch):
    """More pages than guide buckets (the settled table has its own, finer buckets) and than
    settled buckets (several pages a bucket): GUIDE_MAX and SETTLED_MAX made small."""
    monkeypatch.setattr(exact_kernels, "GUIDE_MAX", 1000)
    monkeypatch.setattr(exact_kernels, "SETTLED_MAX", 4096)
    cdf = dist.cdf(n)
    last = int(np.flatnonzero(dist.weights(n))[-1])
    settled, scale = settled_buckets(cdf, last)
    assert settled.size == min(n, 4096)
    ref_settled, ref_scale = settled_buckets_reference(cdf, last)
    assert np.array_equal(settled, ref_settled) and scale == ref_scale
    edges = np.concatenate([cdf, np.arange(settled.size + 1) / scale])
    u = np.concatenate([np.random.default_rng(n).random(50_000) * cdf[-1], edges,
                        np.nextafter(edges, 0), np.nextafter(edges, 2)])
    u = np.clip(u, 0, np.nextafter(cdf[-1], 0))
    got, settled, ref = _settled_draws(dist, n, u)
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("dist", [Uniform(), Zipf(0.99), Zipf(1.3, scatter=False),
                                  HotSet(0.1, 0.9, offset=0.95)])
@pytest.mark.parametrize("n", [1, 3, 2097, 4096, 70_000])
def test_settled_buckets_compiled_pass_is_its_numpy_form(dist, n):
    cdf = dist.cdf(n)
    last = int(np.flatnonzero(dist.weights(n))[-1])
    settled, scale = settled_buckets(cdf, last)
    ref, ref_scale = settled_buckets_reference(cdf, last)
    assert settled.dtype == ref.dtype and np.array_equal(settled, ref) and scale == ref_scale


def test_settled_buckets_of_a_power_of_two_uniform_are_all_settled():
    """The IBS run's distribution (uniform over 2 Mi pages; here 64 Ki): its CDF entries
    are exact multiples of 1/n on the bucket edges, so every bucket is settled and no draw
    searches; and a non-power-of-two n has buckets that are not."""
    u = np.random.default_rng(1).random(100_000)
    got, settled, ref = _settled_draws(Uniform(), 1 << 16, u)
    assert np.array_equal(got, ref) and (settled >= 0).all()
    got, settled, ref = _settled_draws(Uniform(), 70_001, u * Uniform().cdf(70_001)[-1])
    assert np.array_equal(got, ref) and (settled < 0).any()


def test_guide_tables_draw_is_the_distributions_sample():
    """GuideTables.draw (the rate model's sampled pages): dist.sample bit for bit, the same
    uniforms taken from the generator."""
    tables = GuideTables()
    for dist in (Uniform(), Zipf(0.99)):
        for n in (5000, 1 << 16):
            a, b = np.random.default_rng(n), np.random.default_rng(n)
            for count in (0, 1, 3000):
                assert np.array_equal(tables.draw(dist, n, count, a), dist.sample(n, count, b))
            assert a.random() == b.random()


def test_replay_segments_counts_per_segment_and_stops_where_replay_does():
    rng = np.random.default_rng(0)
    n_slots = 4096
    pfns = rng.permutation(20_000)[:n_slots].astype(np.uint64)
    pte = (pfns << np.uint64(12)) | np.uint64(0x1 | 0x2 | 0x4)      # present, rw, user
    pte[rng.random(n_slots) < 0.002] = 0                              # a few not present
    ro = rng.random(n_slots) < 0.01
    pte[ro] &= ~np.uint64(0x2)                                        # a few read-only
    pmd = np.full(n_slots // 512, 0x67, np.uint64)
    node_start = np.array([0, 10_000], np.int64)
    slots = np.arange(n_slots, dtype=np.int64)
    addrs = (slots.astype(np.uint64) << np.uint64(12)) + np.uint64(1 << 40)
    pages = rng.integers(0, n_slots, 6000)
    writes = rng.random(6000) < 0.3
    ends = np.array([1000, 2500, 4000, 6000], np.int64)
    p2, m2 = pte.copy(), pmd.copy()
    counts = np.zeros((4, 2, 2), np.int64)
    cls = (pages % 3 == 0).astype(np.uint8)
    stop = replay_segments(pages, writes, ends, 0, addrs, slots, addrs[:1],
                           addrs[-1:] + np.uint64(4096), pte, pmd, node_start, counts, cls)
    first = replay(pages, writes, 0, p2, m2, node_start, np.zeros(2, np.int64))
    assert first >= 0 and stop == np.searchsorted(ends, first, side="right")
    for s in range(stop):                  # whole segments as replay counts them
        a = 0 if s == 0 else ends[s - 1]
        for k in (0, 1):
            c = np.zeros(2, np.int64)
            m = cls[a:ends[s]] == k
            assert replay(pages[a:ends[s]][m], writes[a:ends[s]][m], 0, p2.copy(), m2.copy(),
                          node_start, c) == -1
            assert np.array_equal(c, counts[s, k])
    assert np.array_equal(pte, p2) and np.array_equal(pmd, m2)   # same bits set up to the stop
    # an address outside every VMA stops the pass too
    counts[:] = 0
    assert replay_segments(pages, writes, ends, 0, addrs, slots, addrs[1:2],
                           addrs[-1:], pte, pmd, node_start, counts, cls[:0]) == 0


L = {"preset": "laptop"}
RUNS = {
    "zipf": {"seed": 7, "machine": L, "workload": {"name": "zipf", "size": "32MiB",
                                                   "threads": 2, "accesses": 200000}},
    "numab2 hint faults": {"seed": 3, "machine": L, "duration": "200ms", "workload": {
        "name": "hotset", "size": "32MiB", "threads": 4, "hot_fraction": 0.1,
        "hot_share": 0.9}, "detectors": [{"name": "numab2"}]},
    "ibs + pghot (sampled)": {"seed": 5, "machine": L, "duration": "200ms", "workload": {
        "name": "zipf", "size": "32MiB", "threads": 3}, "detectors": [{"name": "ibs"}],
        "engine": {"name": "pghot-v3"}},
    "loaded model with LLC": {"seed": 5, "latency_model": "loaded",
                              "machine": laptop_loaded(), "workload": TWO},
}


@pytest.mark.parametrize("name", list(RUNS))
@pytest.mark.parametrize("direct", [True, False])
def test_fast_path_gives_the_reference_results_bit_for_bit(name, direct, tmp_path,
                                                           monkeypatch):
    """direct=False: the compiled pass refused (a read-only VMA, a memcg over memory.high):
    every thread through MM.access inside the fast path."""
    if not direct:
        monkeypatch.setattr(ExactModel, "_direct_ok", lambda self, k, g: False)
    calls = {}
    real = ExactModel._advance_fast

    def counted(self, *a):
        calls["fast"] = calls.get("fast", 0) + 1
        return real(self, *a)

    monkeypatch.setattr(ExactModel, "_advance_fast", counted)
    cfg = config_from_dict(dict(RUNS[name], access_model="exact"))
    run_experiment(cfg).save(tmp_path / "fast.json", include_timing=False)
    assert calls.get("fast", 0) > 0
    monkeypatch.setattr(ExactModel, "fast", False)
    before = calls["fast"]
    run_experiment(cfg).save(tmp_path / "ref.json", include_timing=False)
    assert calls["fast"] == before               # the reference never took the fast path
    assert (tmp_path / "fast.json").read_bytes() == (tmp_path / "ref.json").read_bytes()
