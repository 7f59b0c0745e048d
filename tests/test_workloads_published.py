"""The published benchmarks as workloads (issue 11 §4): pmbench, abench, a key-value store under
YCSB load, the gauss distribution.

Statistical tolerances (as tests/test_workloads.py). A sampled histogram is compared with the
weights by Pearson's chi-square over the bins expected to get >= 5 draws (the rest pooled into
one bin); the statistic of a correct implementation is ~chi2(df), whose mean is df and standard
deviation sqrt(2·df), and we allow df + 5·sqrt(2·df) (a false failure for df >= 50 has
probability below 1e-5; the seeds are fixed, so a failure is a real change). Means are allowed 5
standard errors. Deterministic quantities (rates, write fractions, exact weights) are checked to
1e-9 relative, or to the stated error of an approximation.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from tierscan import Kernel, Machine
from tierscan.errors import ConfigError
from tierscan.access import rate as rate_mod
from tierscan.sim import engine as engine_mod
from tierscan.sim.engine import MS, Engine
from tierscan.workload import kvstore as kv, pmbench as pm, ycsb
from tierscan.workload.abench import pass_accesses
from tierscan.workload.distributions import Gauss
from tierscan.workload.library import make_distribution, make_workload

PAGE = 4096


def chi_square_ok(counts: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """(statistic, allowed) for ``counts`` drawn from ``weights``."""
    expected = weights / weights.sum() * counts.sum()
    big = expected >= 5
    e = np.append(expected[big], expected[~big].sum())
    o = np.append(counts[big], counts[~big].sum())
    keep = e > 0
    stat = float(((o[keep] - e[keep]) ** 2 / e[keep]).sum())
    df = int(keep.sum()) - 1
    return stat, df + 5 * math.sqrt(2 * df)


# ---- gauss ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mean,stdev,n", [(0.5, 0.1, 500), (0.2, 0.02, 1000), (0.95, 0.3, 64),
                                          (0.5, 0.0004, 1000)])
def test_gauss_weights_are_the_truncated_normal_per_page(mean, stdev, n):
    """Exact expectation: page i gets P(i <= X < i+1) / P(0 <= X < n), X ~ N(mean·n,
    (stdev·n)^2), computed here with math.erf. Within 1e-5 relative (the vectorised tails are
    good to ~1e-6, the centre to 1e-10), or 1e-13 absolute, where the reference's own
    difference of erf values near 1 loses its digits."""
    w = Gauss(mean, stdev).weights(n)
    cdf = [0.5 * (1 + math.erf((i - mean * n) / (stdev * n * math.sqrt(2)))) for i in range(n + 1)]
    ref = np.diff(cdf)
    ref /= ref.sum()
    assert np.allclose(w, ref, rtol=1e-5, atol=1e-13)


def test_gauss_sampling_matches_its_weights():
    d = Gauss(0.3, 0.05)
    n = 2000
    draws = d.sample(n, 300_000, np.random.default_rng(1))
    stat, allowed = chi_square_ok(np.bincount(draws, minlength=n), d.weights(n))
    assert stat <= allowed, (stat, allowed)


def test_gauss_is_a_phase_distribution_with_strict_parameters():
    assert make_distribution({"dist": "gauss", "mean": 0.25, "stdev": 0.05}) == Gauss(0.25, 0.05)
    with pytest.raises(ConfigError, match=r"phases\[0\]\.stdev"):
        make_workload("phases", {"phases": [{"dist": "gauss", "stdev": 0}]})


# ---- pmbench's patterns: weights against pmbench's own algorithms, sampled -------------------

def pmbench_normal_reference(n, stdev, count, rng):
    """pattern.c normal_get_number: polar Box-Muller, (size_t)(y·stdev + n/2), out of range
    (including the negative values the unsigned cast wraps) -> n/2."""
    out = []
    while sum(map(len, out)) < count:
        x = 2 * rng.random((count, 2)) - 1
        w = (x ** 2).sum(axis=1)
        x, w = x[(w < 1) & (w > 0)], w[(w < 1) & (w > 0)]
        y = (x * np.sqrt(-2 * np.log(w) / w)[:, None]).ravel() * stdev
        v = np.trunc(y + n // 2)                      # C's cast truncates toward zero
        v[(v < 0) | (v >= n)] = n // 2
        out.append(v.astype(np.int64))
    return np.concatenate(out)[:count]


def pmbench_normal_ih_reference(n, count, rng):
    """pattern.c normal_ih_get_number: 12 draws in [0, m), sum / 12 + shift, redraw outside."""
    n_user = n - 1
    m = 12 * ((n_user + 5) // 12)
    shift = (n_user - m) // 2
    out = []
    while sum(map(len, out)) < count:
        x = rng.integers(0, m, (count, 12)).sum(axis=1) // 12 + shift
        out.append(x[(x >= 0) & (x <= n_user)])
    return np.concatenate(out)[:count]


@pytest.mark.parametrize("n,stdev", [(1000, 100), (1000, 3), (64, 40), (5000, 1)])
def test_pmbench_normal_matches_pmbench(n, stdev):
    w = pm.normal_weights(stdev, n)
    assert abs(w.sum() - 1) < 1e-6
    draws = pmbench_normal_reference(n, stdev, 400_000, np.random.default_rng(2))
    stat, allowed = chi_square_ok(np.bincount(draws, minlength=n), w)
    assert stat <= allowed, (stat, allowed)


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("n", [997, 4096])
def test_pmbench_normal_ih_matches_pmbench(n, exact, monkeypatch):
    """Both ways of computing it: the exact 12-fold convolution and, for large sets, the
    continuous Irwin-Hall CDF with a continuity correction (forced here by a small limit)."""
    if not exact:
        monkeypatch.setattr(pm, "IH_EXACT_MAX", 16)
    w = pm.normal_ih_weights(n)
    draws = pmbench_normal_ih_reference(n, 400_000, np.random.default_rng(3))
    stat, allowed = chi_square_ok(np.bincount(draws, minlength=n), w)
    assert stat <= allowed, (stat, allowed)


def test_pmbench_read_ratio_and_delay_map_as_pmbench_does():
    # (rand % 1024) < ratio·1024/100 is a load
    assert pm.write_fraction_of_ratio(50) == 0.5
    assert pm.write_fraction_of_ratio(95) == 1 - 972 / 1024
    assert pm.write_fraction_of_ratio(100) == 0.0 and pm.write_fraction_of_ratio(0) == 1.0
    assert pm.delay_ns(10, 2.0) == 0.0           # delay <= 10 is skipped
    assert pm.delay_ns(3000, 3.0) == 1000.0


def test_pmbench_workload_shape():
    spec = make_workload("pmbench", {"mapsize": "64MiB", "setsize": "16MiB", "pattern": "normal",
                                     "shape": 512, "ratio": 95, "delay": 4000, "jobs": 4,
                                     "tsc_ghz": 2.0, "duration": "1s"})
    p = spec.processes[0]
    assert p.threads == 4 and p.mappings[0].size == 64 << 20 and not p.mappings[0].populate
    warm, main = p.phases
    assert warm.accesses == 4096 and warm.compute_ns == 0.0       # warm-up: set pages, no delay
    assert main.compute_ns == 2000.0 and main.duration_ns == 1_000_000_000
    assert main.write_fraction == pm.write_fraction_of_ratio(95)
    w = main.distribution.weights(16384)
    assert w[4096:].sum() == 0 and abs(w[:4096].sum() - 1) < 1e-12   # only the set
    assert make_workload("pmbench", spec.params) == spec
    assert pickle.loads(pickle.dumps(spec)) == spec
    cold = make_workload("pmbench", {"cold": True, "initialize": True})
    assert len(cold.processes[0].phases) == 1 and cold.processes[0].mappings[0].populate


# ---- the key-value store --------------------------------------------------------------------

def ycsb_scrambled_zipfian_reference(keys, count, rng):
    """ScrambledZipfianGenerator.nextValue as YCSB runs it (ZipfianGenerator.nextLong)."""
    theta, items, zetan = ycsb.ZIPFIAN_CONSTANT, ycsb.ITEM_COUNT, ycsb.ZETAN
    alpha = 1 / (1 - theta)
    eta = (1 - (2 / items) ** (1 - theta)) / (1 - (1 + 0.5 ** theta) / zetan)
    u = rng.random(count)
    uz = u * zetan
    rank = np.floor(items * (eta * u - eta + 1) ** alpha).astype(np.int64)
    rank[uz < 1 + 0.5 ** theta] = 1
    rank[uz < 1] = 0
    return ycsb.fnvhash64(rank) % keys


def test_fnvhash64_is_ycsbs():
    """FNV-1a over 8 bytes with Java's wrapping long arithmetic and Math.abs, by hand."""
    def java(v):
        h = 0xCBF29CE484222325
        for _ in range(8):
            h = ((h ^ (v & 0xFF)) * 1099511628211) % (1 << 64)
            v >>= 8
        h = h - (1 << 64) if h >= 1 << 63 else h
        return abs(h)
    vals = [0, 1, 2, 255, 256, 123456789, (1 << 40) + 7]
    assert ycsb.fnvhash64(vals).tolist() == [java(v) for v in vals]


def test_ycsb_rank_probabilities_are_a_distribution():
    head = 1 << 16
    p = ycsb.zipfian_rank_probabilities(0, head)
    assert p[0] == pytest.approx(1 / ycsb.ZETAN, rel=1e-9) and np.all(p >= 0)
    assert p.sum() + ycsb.zipfian_tail(head) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("keys", [500, 3000])
def test_scrambled_zipfian_key_frequencies_match_ycsb(keys):
    p = ycsb.key_probabilities("zipfian", keys)
    draws = ycsb_scrambled_zipfian_reference(keys, 500_000, np.random.default_rng(4))
    stat, allowed = chi_square_ok(np.bincount(draws, minlength=keys), p)
    assert stat <= allowed, (stat, allowed)


def test_kvstore_page_frequencies_match_operations():
    """Workload C (reads only), 4 KiB records: every operation touches one index page and one
    value page, so both parts are multinomial over operations."""
    layout = kv.KVLayout(records=2000, record_size=4096, load_factor=1.0, bucket_bytes=64,
                         seed=0)
    w = kv.kv_page_weights(layout, "zipfian", 0.0, layout.pages)
    keys = ycsb_scrambled_zipfian_reference(2000, 400_000, np.random.default_rng(5))
    ip = layout.bucket_of()[keys] * 64 // PAGE
    vp = layout.record_pages()[0][keys]
    for counts, part in ((np.bincount(ip, minlength=layout.index_pages),
                          w[:layout.index_pages]),
                         (np.bincount(vp, minlength=layout.value_pages),
                          w[layout.index_pages:])):
        stat, allowed = chi_square_ok(counts, part)
        assert stat <= allowed, (stat, allowed)


def test_kvstore_mixture_and_store_fraction_by_hand():
    """Three records of 6000 bytes (uniform keys), read-modify-write half the time: record 0
    is value pages 0-1, record 1 pages 1-2, record 2 pages 2-4 (bytes 12000-17999)."""
    layout = kv.KVLayout(records=3, record_size=6000, load_factor=1.0, bucket_bytes=8, seed=0)
    assert (layout.index_pages, layout.value_pages, layout.buckets) == (1, 5, 4)
    w = kv.kv_page_weights(layout, "uniform", 0.5, layout.pages)
    third = 1 / 3
    assert np.allclose(w, [1.0, 1.5 * third, 3.0 * third, 3.0 * third, 1.5 * third,
                           1.5 * third])
    spec = make_workload("kvstore", {"records": 3, "record_size": 6000, "workload": "f",
                                     "request_distribution": "uniform"})
    ph = spec.processes[0].phases[0]
    span = 2 + 2 + 3                                    # value pages per record
    per_op = 1 + 1.5 * span / 3
    assert ph.write_fraction == pytest.approx(0.5 * (span / 3) / per_op, rel=1e-12)
    assert [m.size for m in spec.processes[0].mappings] == [PAGE, 5 * PAGE]


def test_kvstore_workload_round_trips_and_pickles():
    spec = make_workload("kvstore", {"records": 5000, "workload": "b", "threads": 2,
                                     "operations": 1000})
    assert make_workload("kvstore", spec.params) == spec
    again = pickle.loads(pickle.dumps(spec))
    n = sum(m.size for m in spec.processes[0].mappings) // PAGE
    assert np.array_equal(again.processes[0].phases[0].distribution.weights(n),
                          spec.processes[0].phases[0].distribution.weights(n))


# ---- bad parameters -------------------------------------------------------------------------

@pytest.mark.parametrize("name,params,field", [
    ("pmbench", {"mapsize": "16MiB", "setsize": "32MiB"}, "workload.setsize"),
    ("pmbench", {"ratio": 101}, "workload.ratio"),
    ("pmbench", {"ratio": 50.5}, "workload.ratio"),
    ("pmbench", {"pattern": "pareto"}, "workload.pattern"),
    ("pmbench", {"delay": -1}, "workload.delay"),
    ("pmbench", {"tsc_ghz": 0}, "workload.tsc_ghz"),
    ("pmbench", {"jobs": 0}, "workload.jobs"),
    ("abench", {"iterations": 0}, "workload.iterations"),
    ("abench", {"delay": "1 parsec"}, "workload.delay"),
    ("abench", {"touches_per_page": 0}, "workload.touches_per_page"),
    ("kvstore", {"workload": "d"}, "workload.workload"),
    ("kvstore", {"workload": "z"}, "workload.workload"),
    ("kvstore", {"read": 0.5, "update": 0.4}, "workload.read"),
    ("kvstore", {"records": 0}, "workload.records"),
    ("kvstore", {"request_distribution": "latest"}, "workload.request_distribution"),
    ("kvstore", {"records": 100, "thp": True}, "workload.thp"),
    ("kvstore", {"recordcount": 100}, "workload.recordcount"),
])
def test_bad_parameters_are_one_line_errors_naming_the_field(name, params, field):
    with pytest.raises(ConfigError) as e:
        make_workload(name, params, where="exp.toml")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"exp.toml: {field}: "), msg


# ---- both access models: rates, delays, pauses, per-page counts ------------------------------

def run(spec, model, duration_ms, *, seed=0, monkeypatch=None, per_page=False):
    if per_page:      # the heatmap, one bin per page of the (single) group
        n = sum(m.size for m in spec.processes[0].mappings) // PAGE
        monkeypatch.setattr(engine_mod, "HEAT_BINS", n)
        monkeypatch.setattr(rate_mod, "HEAT_BINS", n)      # what it banks at phase changes
    k = Kernel(Machine.preset("laptop"), seed=seed)
    e = Engine(k, spec, access_model=model, seed=seed, duration_ns=duration_ms * MS,
               sample_ns=10 * duration_ms * MS, kswapd=False, flusher=False).run()
    if per_page:
        return e, np.sum([row for row in e.series["heatmap"]], axis=0)
    return e, None


@pytest.mark.parametrize("model", ["rate", "exact"])
def test_pmbench_delay_lowers_the_access_rate_as_stated(model):
    """A thread's access takes compute + latency; the delay adds delay/tsc_ghz ns to the
    compute. Everything sits on node 1 of the laptop (90 ns loads... 240 ns from node 0, 250
    for stores), so accesses per thread in 50 ms are 50e6 / (245 + delay_ns) exactly (up to
    one access of the last chunk in the exact model)."""
    base = {"mapsize": "8MiB", "setsize": "8MiB", "cold": True, "initialize": True,
            "ratio": 50, "tsc_ghz": 2.0}
    totals = {}
    for delay in (0, 1000):            # 0 and 500 ns
        e, _ = run(make_workload("pmbench", dict(base, delay=delay)), model, 50)
        totals[delay] = e.groups[0].total
    lat = 0.5 * 240 + 0.5 * 250
    assert totals[0] == pytest.approx(50e6 / lat, rel=2e-3)
    assert totals[1000] == pytest.approx(50e6 / (lat + 500), rel=2e-3)


@pytest.mark.parametrize("model", ["rate", "exact"])
def test_abench_pauses_between_passes(model):
    """3 passes over 4 MiB (64 touches per page) with 20 ms pauses: the group finishes at 3
    passes' time + 2 pauses, having made 3 passes' accesses, none during a pause."""
    spec = make_workload("abench", {"size": "4MiB", "iterations": 3, "delay": "20ms"})
    e, _ = run(spec, model, 200)
    g = e.groups[0]
    n = pass_accesses(4 << 20, 64, 1)
    assert g.total == pytest.approx(3 * n, abs=1e-6)
    pass_ns = n * 240.0                                   # loads only, from node 0 to node 1
    assert g.finished_ns == pytest.approx(3 * pass_ns + 2 * 20 * MS, rel=0.01)


def test_idle_phase_makes_no_access(monkeypatch):
    """The heatmap of a run that is paused for its second half holds only the first half."""
    spec = make_workload("abench", {"size": "1MiB", "iterations": 2, "delay": "500ms"})
    e, heat = run(spec, "rate", 400, monkeypatch=monkeypatch, per_page=True)
    assert heat.sum() == pytest.approx(e.groups[0].total, rel=1e-9)
    assert e.groups[0].phase_idx == 1 and e.groups[0].phase.idle


@pytest.mark.parametrize("name,params", [
    ("pmbench", {"mapsize": "4MiB", "setsize": "4MiB", "pattern": "normal", "shape": 100,
                 "cold": True, "initialize": True, "ratio": 70}),
    ("pmbench", {"mapsize": "4MiB", "setsize": "2MiB", "pattern": "normal_ih", "cold": True,
                 "initialize": True}),
    ("kvstore", {"records": 3000, "record_size": 1000, "workload": "a"}),
    ("abench", {"size": "2MiB", "iterations": 2, "delay": "5ms", "touches_per_page": 20}),
])
def test_rate_and_exact_models_agree_on_per_page_counts(name, params, monkeypatch):
    """Same workload, both models, 30 ms, one thread. The exact model's per-page counts are a
    multinomial draw (accesses are i.i.d. from the phase's weights) whose expectation is the
    rate model's per-page counts scaled to the exact total: chi-square as above. The totals
    agree within 1% (both run at the same latencies; the exact model's chunks end a tick
    late by less than one chunk)."""
    spec = make_workload(name, params)
    _, rate = run(spec, "rate", 30, monkeypatch=monkeypatch, per_page=True)
    _, exact = run(spec, "exact", 30, monkeypatch=monkeypatch, per_page=True)
    assert exact.sum() == pytest.approx(rate.sum(), rel=0.01)
    stat, allowed = chi_square_ok(exact, rate)
    assert stat <= allowed, (stat, allowed)
