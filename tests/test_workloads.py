"""Workload generators: the distributions (statistically) and the named workload library.

Statistical tolerances. Every statistical check compares an estimate with its exact expected
value and allows Z = 5 standard errors, the standard error being computed in the test from the
sample size (never a hand-tuned constant). For an estimate that is approximately normal, a correct
implementation fails one such check with probability P(|N(0,1)| > 5) = 5.7e-7 over the choice of
seed. The seeds are fixed, so the suite is also reproducible: a failure is a real change in
behaviour (or in numpy's generator streams), never flakiness.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from tierscan.errors import ConfigError
from tierscan.workload.base import Mapping, Phase, ProcessSpec, WorkloadSpec
from tierscan.workload.distributions import DISTRIBUTIONS, HotSet, Uniform, Weights, Zipf
from tierscan.workload.library import (PGHOT_ACCESSES_PER_THREAD, WORKLOADS, make_distribution,
                                       make_workload)

Z = 5.0                     # standard errors allowed; two-sided normal tail 5.7e-7
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


def all_distributions():
    return [Uniform(), Zipf(0.0), Zipf(0.99), Zipf(1.3, scatter=False), Zipf(0.7, seed=5),
            HotSet(0.1, 0.9), HotSet(0.25, 0.0, offset=0.9), HotSet(0.01, 1.0, offset=0.5)]


# ---- weights: shape, normalisation, determinism ---------------------------------------------

@pytest.mark.parametrize("d", all_distributions(), ids=repr)
@pytest.mark.parametrize("n", [1, 2, 3, 7, 100, 4097])
def test_weights_are_a_probability_vector(d, n):
    w = d.weights(n)
    assert w.shape == (n,) and w.dtype == np.float64
    assert (w >= 0).all()
    # float64 summation of n <= 4097 terms: rounding error well under 1e-12.
    assert abs(w.sum() - 1.0) < 1e-12


@pytest.mark.parametrize("d", all_distributions(), ids=repr)
def test_weights_identical_on_repeated_calls_and_read_only(d):
    a = d.weights(1000).copy()
    for other_n in (10, 11, 12, 13, 14, 15):      # push n=1000 out of the per-n cache
        d.weights(other_n)
    assert np.array_equal(d.weights(1000), a)
    assert np.array_equal(d.weights(1000), a)
    with pytest.raises(ValueError):
        d.weights(1000)[0] = 1.0                   # the cached array cannot be corrupted


def test_same_seed_same_weights_and_samples_different_seed_differs():
    n = 5000
    a, b, c = Zipf(1.1, seed=3), Zipf(1.1, seed=3), Zipf(1.1, seed=4)
    assert np.array_equal(a.weights(n), b.weights(n))
    assert not np.array_equal(a.weights(n), c.weights(n))
    sa = a.sample(n, 10_000, np.random.default_rng(42))
    sb = b.sample(n, 10_000, np.random.default_rng(42))
    assert np.array_equal(sa, sb)
    # Different rng seeds give different draws.
    assert not np.array_equal(sa, a.sample(n, 10_000, np.random.default_rng(43)))
    # A pickled copy (e.g. shipped to a sweep worker) drops the cache but not the behaviour.
    p = pickle.loads(pickle.dumps(a))
    assert not p._cache and np.array_equal(p.weights(n), a.weights(n))
    assert a == b and hash(a) == hash(b) and a != c and Zipf(1.1) != HotSet(0.1, 0.9)


def test_scatter_is_a_seeded_permutation_of_ranks():
    n = 10_000
    z = Zipf(1.0, seed=9)
    perm = z.rank_to_page(n)
    assert perm.dtype == np.int64
    assert np.array_equal(np.sort(perm), np.arange(n))         # a permutation
    assert not np.array_equal(perm, np.arange(n))              # that actually scatters
    assert np.array_equal(perm, Zipf(2.0, seed=9).rank_to_page(n))   # depends on the seed only
    # Rank r lives on page perm[r-1] and carries r**-alpha / H_n.
    rw = np.arange(1, n + 1) ** -1.0
    assert np.allclose(z.weights(n)[perm], rw / rw.sum(), rtol=1e-12, atol=0)
    flat = Zipf(1.0, scatter=False)
    assert np.array_equal(flat.rank_to_page(n), np.arange(n))
    assert (np.diff(flat.weights(n)) <= 0).all()
    assert np.allclose(Zipf(0.0).weights(n), 1.0 / n, rtol=1e-12, atol=0)  # alpha 0 = uniform


@pytest.mark.parametrize("dist", [Uniform(), Zipf(0.99, seed=2), HotSet(0.1, 0.9)])
@pytest.mark.parametrize("n, count", [(1 << 17, 5000), (1 << 17, 10), (1000, 5000)])
def test_sample_is_the_inverse_cdf_whichever_search_it_uses(dist, n, count):
    """Large draws search sorted keys (a speed-up); the pages must be exactly the plain
    inverse-CDF pages of the same uniforms, in the same order."""
    got = dist.sample(n, count, np.random.default_rng(7))
    cdf = dist.cdf(n)
    u = np.random.default_rng(7).random(count) * cdf[-1]
    want = np.minimum(np.searchsorted(cdf, u, side="right"), np.flatnonzero(dist.weights(n))[-1])
    assert got.dtype == np.int64 and np.array_equal(got, want)


def test_hotset_layout_wraps_and_weights_are_exact():
    n = 10_000
    h = HotSet(0.05, 0.8, offset=0.98)
    start, count = h.hot_range(n)
    assert (start, count) == (9800, 500)
    hot = h.hot_pages(n)
    assert np.array_equal(hot, np.r_[9800:10_000, 0:300])       # contiguous, wrapping
    w = h.weights(n)
    mask = np.zeros(n, bool)
    mask[hot] = True
    assert np.allclose(w[mask], 0.8 / 500, rtol=1e-12, atol=0)
    assert np.allclose(w[~mask], 0.2 / 9500, rtol=1e-12, atol=0)
    # ceil(hot_fraction * n) without float noise: 0.07 * 100 is 7 pages, not 8.
    assert HotSet(0.07, 0.5).hot_range(100) == (0, 7)
    assert HotSet(0.5, 0.9).hot_range(3) == (0, 2)               # ceil(1.5)
    assert np.array_equal(HotSet(0.5, 0.9).weights(1), [1.0])    # no cold page: uniform


@pytest.mark.parametrize("bad", [dict(hot_fraction=0.0, hot_share=0.5),
                                 dict(hot_fraction=1.0, hot_share=0.5),
                                 dict(hot_fraction=0.1, hot_share=1.5),
                                 dict(hot_fraction=0.1, hot_share=-0.1),
                                 dict(hot_fraction=float("nan"), hot_share=0.5)])
def test_hotset_validates(bad):
    with pytest.raises(ValueError):
        HotSet(**bad)


@pytest.mark.parametrize("alpha", [-0.5, float("inf"), float("nan"), True])
def test_zipf_validates(alpha):
    with pytest.raises(ValueError):
        Zipf(alpha)


# ---- sampling: the algorithm ----------------------------------------------------------------

@pytest.mark.parametrize("d", all_distributions(), ids=repr)
def test_sample_is_inverse_cdf_on_the_callers_rng(d):
    n, count = 777, 5000
    rng = np.random.default_rng(11)
    s = d.sample(n, count, rng)
    assert s.dtype == np.int64 and s.shape == (count,)
    assert s.min() >= 0 and s.max() < n
    # Exactly one rng.random() per draw, from the generator passed in ...
    twin = np.random.default_rng(11)
    u = twin.random(count)
    assert rng.random() == twin.random()
    # ... located in the cumulative weights by searchsorted.
    cdf = np.cumsum(d.weights(n))
    assert np.array_equal(s, np.searchsorted(cdf, u * cdf[-1], side="right"))
    assert d.sample(n, 0, rng).shape == (0,)


def test_zero_weight_pages_are_never_drawn():
    n, rng = 1000, np.random.default_rng(0)
    h1 = HotSet(0.1, 1.0, offset=0.3)
    assert np.isin(h1.sample(n, 20_000, rng), h1.hot_pages(n)).all()
    h0 = HotSet(0.1, 0.0, offset=0.95)                 # the hot set wraps; all draws are cold
    assert not np.isin(h0.sample(n, 20_000, rng), h0.hot_pages(n)).any()
    # alpha = 2000 underflows every weight but rank 1's to exactly 0.
    z = Zipf(2000.0, seed=1)
    assert np.count_nonzero(z.weights(n)) == 1
    assert (z.sample(n, 1000, rng) == z.rank_to_page(n)[0]).all()


# ---- sampling: statistics -------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [0.8, 1.0, 1.2])
def test_zipf_rank_frequency_slope(alpha):
    """Fit log(count) against log(rank) over the top K ranks; the slope must be -alpha.

    Tolerance: count_r ~ Binomial(N, p_r), so by the delta method var(log count_r) ~=
    (1 - p_r) / (N p_r). The OLS slope b = sum(dx_r * y_r) / sum(dx_r^2) (dx = x - mean x) then
    has var(b) = sum(dx_r^2 var_r) / sum(dx_r^2)^2. (The multinomial covariance -N p_i p_j adds
    about +1/N per pair of log counts, which changes var(b) by ~1/N relative: ignored.) The
    bias of log(count) is about -(1 - p)/(2 N p) < 5e-4 here, far below Z * SE.
    Probability of a false failure: 5.7e-7.
    """
    n, N, K = 10_000, 1_000_000, 50
    z = Zipf(alpha, seed=2)
    s = z.sample(n, N, np.random.default_rng(100 + int(alpha * 10)))
    counts = np.bincount(s, minlength=n)[z.rank_to_page(n)][:K]
    assert counts.min() > 100              # every log count is well defined and near-normal
    x, y = np.log(np.arange(1, K + 1)), np.log(counts)
    dx = x - x.mean()
    slope = (dx * y).sum() / (dx * dx).sum()
    p = z.rank_weights(n)[:K]
    var = (1 - p) / (N * p)
    se = math.sqrt((dx * dx * var).sum()) / (dx * dx).sum()
    assert se < 0.01                       # the test can tell alpha from alpha +- 0.05
    assert abs(slope + alpha) <= Z * se, (slope, se)


@pytest.mark.parametrize("offset", [0.0, 0.42, 0.97])
def test_hotset_share(offset):
    """The share of draws landing in the hot set estimates hot_share: a binomial proportion,
    SE = sqrt(p (1 - p) / N). Probability of a false failure: 5.7e-7."""
    n, N, share = 10_000, 200_000, 0.9
    h = HotSet(0.1, share, offset=offset)
    s = h.sample(n, N, np.random.default_rng(7))
    hit = np.isin(s, h.hot_pages(n)).mean()
    se = math.sqrt(share * (1 - share) / N)
    assert abs(hit - share) <= Z * se, (hit, se)


def test_uniform_chi_square():
    """Pearson's X^2 over n pages with N draws is ~ chi^2(n - 1): mean k = n - 1, SD sqrt(2k).
    Allow k +- 5 SD. By the Wilson-Hilferty approximation, with k = 999 the upper bound
    (1222.5) is exceeded with probability ~1.4e-6 and the lower (775.5) ~3e-8: a false-failure
    probability of ~1.5e-6 (the chi^2 tail is slightly heavier than the normal one)."""
    n, N = 1000, 1_000_000
    s = Uniform().sample(n, N, np.random.default_rng(3))
    counts = np.bincount(s, minlength=n)
    expected = N / n
    x2 = ((counts - expected) ** 2 / expected).sum()
    k = n - 1
    assert abs(x2 - k) <= Z * math.sqrt(2 * k), x2


def test_zipf_top_rank_frequency():
    """Rank 1's frequency is a binomial proportion of p_1 = 1 / H_n: 5 SE, P(false) 5.7e-7."""
    n, N = 1000, 500_000
    z = Zipf(1.0, seed=8)
    s = z.sample(n, N, np.random.default_rng(5))
    p1 = 1.0 / np.sum(1.0 / np.arange(1, n + 1))
    f1 = np.mean(s == z.rank_to_page(n)[0])
    assert abs(f1 - p1) <= Z * math.sqrt(p1 * (1 - p1) / N)


# ---- the workload library: defaults and strict parameters ----------------------------------

SINGLE = ["uniform", "zipf", "hotset", "phases", "gups"]


def test_registry_names():
    assert set(WORKLOADS) == {"uniform", "zipf", "hotset", "phases", "gups", "pghot-bench",
                              "multi", "cold-filler", "wss-larger", "bind-spill", "pmbench",
                              "abench", "kvstore"}


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_defaults_resolve_and_round_trip(name):
    spec = make_workload(name, {})
    assert isinstance(spec, WorkloadSpec) and spec.name == name
    assert spec.processes and all(isinstance(p, ProcessSpec) for p in spec.processes)
    for p in spec.processes:
        assert all(isinstance(m, Mapping) for m in p.mappings)
        assert all(isinstance(ph, Phase) for ph in p.phases)
        d = p.phases[-1].distribution       # a named distribution, or a workload's own layout
        assert d.name in DISTRIBUTIONS or isinstance(d, Weights)
    # params is the fully resolved table: feeding it back gives the same spec.
    assert make_workload(name, spec.params) == spec
    assert make_workload(name, None) == spec


@pytest.mark.parametrize("name", SINGLE)
def test_single_process_defaults(name):
    spec = make_workload(name, {})
    (p,) = spec.processes
    assert (p.name, p.memcg, p.cpu_node, p.threads, p.mlp) == (name, "/", 0, 1, 1.0)
    (m,) = p.mappings
    assert m == Mapping(size=512 * MiB, kind="anon", shared=False, thp=False, policy="bind",
                        nodes=(1,), populate=True, move_to=None)
    for key in ("size", "threads", "node", "thp", "kind", "shared", "populate", "cpu_node",
                "memcg", "name", "mlp"):
        assert key in spec.params
    assert spec.params["size"] == 512 * MiB and spec.params["node"] == 1


def test_uniform_zipf_hotset_parameters():
    u = make_workload("uniform", {"size": "64MiB", "threads": 4, "write_fraction": 0.25,
                                  "accesses": 1000, "node": 2, "thp": True})
    (p,) = u.processes
    assert p.threads == 4 and p.mappings[0].size == 64 * MiB and p.mappings[0].thp
    assert p.mappings[0].nodes == (2,)
    assert p.phases == (Phase(Uniform(), write_fraction=0.25, accesses=1000),)
    z = make_workload("zipf", {"alpha": 1.2, "scatter": False, "duration": "2s"})
    assert z.processes[0].phases == (Phase(Zipf(1.2, scatter=False), duration_ns=2 * 10**9),)
    assert z.params["duration"] == 2 * 10**9 and z.params["accesses"] is None
    h = make_workload("hotset", {"hot_fraction": 0.2, "hot_share": 0.95, "offset": 0.5})
    assert h.processes[0].phases[0].distribution == HotSet(0.2, 0.95, offset=0.5)
    assert h.params["shift_every"] is None and h.params["shift_by"] == 0.2


def test_hotset_shifting_phases():
    spec = make_workload("hotset", {"hot_fraction": 0.1, "shift_every": 1000, "shift_by": 0.25,
                                    "shifts": 3, "accesses": 50})
    ph = spec.processes[0].phases
    assert len(ph) == 4
    assert [p.distribution.offset for p in ph] == [0.0, 0.25, 0.5, 0.75]
    assert [p.accesses for p in ph] == [1000, 1000, 1000, 50]
    n = 1000
    for a, b in zip(ph, ph[1:]):           # shift_by >= hot_fraction: consecutive sets disjoint
        assert not np.isin(a.distribution.hot_pages(n), b.distribution.hot_pages(n)).any()
    timed = make_workload("hotset", {"shift_every": "250ms", "shifts": 2})
    assert [p.duration_ns for p in timed.processes[0].phases] == [250_000_000, 250_000_000, None]
    assert [p.accesses for p in timed.processes[0].phases] == [None, None, None]
    assert timed.params["shift_every"] == "250000000ns"
    assert make_workload("hotset", timed.params) == timed
    with pytest.raises(ConfigError) as e:
        make_workload("hotset", {"shift_every": "100"})        # a duration needs its unit
    assert e.value.field == "workload.shift_every"


def test_phases_workload():
    spec = make_workload("phases", {"size": "16MiB", "phases": [
        {"dist": "uniform", "accesses": 10, "write_fraction": 1.0},
        {"dist": "zipf", "alpha": 0.5, "duration": "1ms"},
        {"dist": "hotset", "hot_fraction": 0.3, "hot_share": 0.6}]})
    ph = spec.processes[0].phases
    assert ph == (Phase(Uniform(), 1.0, accesses=10), Phase(Zipf(0.5), duration_ns=10**6),
                  Phase(HotSet(0.3, 0.6)))
    assert spec.params["phases"][1] == {"dist": "zipf", "alpha": 0.5, "scatter": True, "seed": 0,
                                        "write_fraction": 0.0, "accesses": None,
                                        "duration": 10**6}
    for bad, fld in [({"phases": []}, "workload.phases"),
                     ({"phases": [{"alpha": 1}]}, "workload.phases[0].dist"),
                     ({"phases": [{"dist": "pareto"}]}, "workload.phases[0].dist"),
                     ({"phases": [{"dist": "uniform", "alpha": 1}]}, "workload.phases[0].alpha"),
                     ({"phases": [{"dist": "zipf"}, {"dist": "uniform"}]}, "workload.phases[0]"),
                     ({"write_fraction": 0.5}, "workload.write_fraction")]:
        with pytest.raises(ConfigError) as e:
            make_workload("phases", bad)
        assert e.value.field == fld


def test_gups():
    spec = make_workload("gups", {"size": "64MiB", "threads": 4})
    (ph,) = spec.processes[0].phases
    updates = 4 * (64 * MiB // 8) // 4           # HPCC: 4 updates per 8-byte word, split
    assert spec.params["updates"] == updates
    assert ph == Phase(Uniform(), write_fraction=0.5, accesses=2 * updates)
    spec = make_workload("gups", {"updates": 1000, "write_fraction": 0.4})
    assert spec.processes[0].phases[0].accesses == 2000
    assert spec.processes[0].phases[0].write_fraction == 0.4


def test_multi_processes_and_memcgs():
    spec = make_workload("multi", {"processes": [
        {"name": "db", "memcg": "/db", "cpu_node": 0, "threads": 8, "size": "1GiB",
         "dist": "zipf", "alpha": 1.1},
        {"name": "batch", "memcg": "/batch", "threads": 2, "size": "2GiB", "dist": "uniform",
         "write_fraction": 0.5},
        {"memcg": "/db", "size": "4MiB", "phases": [
            {"dist": "hotset", "hot_fraction": 0.5, "hot_share": 1.0, "accesses": 5},
            {"dist": "uniform"}]}]})
    a, b, c = spec.processes
    assert (a.name, a.memcg, a.threads, a.mappings[0].size) == ("db", "/db", 8, GiB)
    assert a.phases == (Phase(Zipf(1.1)),)
    assert (b.name, b.memcg, b.phases[0].write_fraction) == ("batch", "/batch", 0.5)
    assert (c.name, c.memcg, len(c.phases)) == ("p2", "/db", 2)
    assert make_workload("multi", spec.params) == spec
    for bad, fld in [({"processes": []}, "workload.processes"),
                     ({"processes": [{"size": "1MiB"}]}, "workload.processes[0].dist"),
                     ({"processes": [{"dist": "uniform", "size": "1 GB"}]},
                      "workload.processes[0].size"),
                     ({"processes": [{"dist": "uniform"}, {"dist": "zipf", "name": "p0"}]},
                      "workload.processes[1].name"),
                     ({"processes": [{"dist": "uniform", "memcg": "db"}]},
                      "workload.processes[0].memcg"),
                     ({"processes": [{"dist": "uniform", "speed": 3}]},
                      "workload.processes[0].speed")]:
        with pytest.raises(ConfigError) as e:
            make_workload("multi", bad)
        assert e.value.field == fld


def _field_of(name, params):
    with pytest.raises(ConfigError) as e:
        make_workload(name, params)
    assert e.value.where == f"<workload {name}>"
    return e.value.field


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_unknown_key_rejected(name):
    assert _field_of(name, {"sise": "8GiB"}) == "workload.sise"


@pytest.mark.parametrize("name", SINGLE)
def test_wrong_unit_rejected(name):
    assert _field_of(name, {"size": "8 GB"}) == "workload.size"


@pytest.mark.parametrize("name", SINGLE + ["pghot-bench"])
def test_negative_value_rejected(name):
    assert _field_of(name, {"threads": -1}) == "workload.threads"


@pytest.mark.parametrize("name,params,fld", [
    ("uniform", {"size": "-8GiB"}, "size"),
    ("uniform", {"size": 5000}, "size"),                       # not a whole number of pages
    ("uniform", {"accesses": -5}, "accesses"),
    ("uniform", {"accesses": 1.5}, "accesses"),
    ("uniform", {"duration": "-1ms"}, "duration"),
    ("uniform", {"duration": "10"}, "duration"),              # no unit
    ("uniform", {"write_fraction": 1.5}, "write_fraction"),
    ("uniform", {"node": -1}, "node"),
    ("uniform", {"thp": "yes"}, "thp"),
    ("uniform", {"kind": "shm"}, "kind"),
    ("uniform", {"memcg": "a/b"}, "memcg"),
    ("uniform", {"mlp": 0}, "mlp"),
    ("zipf", {"alpha": -0.5}, "alpha"),
    ("zipf", {"seed": -1}, "seed"),
    ("hotset", {"hot_fraction": 0}, "hot_fraction"),
    ("hotset", {"hot_fraction": 1.0}, "hot_fraction"),
    ("hotset", {"hot_share": 1.1}, "hot_share"),
    ("hotset", {"shift_every": -3}, "shift_every"),
    ("hotset", {"shift_every": 10, "shifts": 0}, "shifts"),
    ("gups", {"updates": 0}, "updates"),
    ("pghot-bench", {"mode": 4}, "mode"),
    ("pghot-bench", {"mode": "1"}, "mode"),
    ("pghot-bench", {"scale": 0}, "scale"),
    ("pghot-bench", {"scale": 1.5}, "scale"),
    ("pghot-bench", {"accesses_per_thread": -1}, "accesses_per_thread"),
    ("pghot-bench", {"cxl_node": 0}, "cxl_node"),               # same as cpu_node
])
def test_bad_values_name_their_field(name, params, fld):
    assert _field_of(name, params) == f"workload.{fld}"


def test_error_names_where_and_field_prefix():
    with pytest.raises(ConfigError) as e:
        make_workload("zipf", {"alpha": -1}, where="exp.toml", field="run.workload")
    assert (e.value.where, e.value.field) == ("exp.toml", "run.workload.alpha")
    assert str(e.value).startswith("exp.toml: run.workload.alpha: ")
    with pytest.raises(ConfigError) as e:
        make_workload("pareto", {})
    assert e.value.field == "workload" and "zipf" in e.value.message
    with pytest.raises(ConfigError):
        make_workload("uniform", ["size"])


def test_make_distribution():
    assert make_distribution({"dist": "zipf", "alpha": 1.5}) == Zipf(1.5)
    assert make_distribution({"dist": "uniform"}) == Uniform()
    with pytest.raises(ConfigError) as e:
        make_distribution({"dist": "zipf", "accesses": 3}, field="d")
    assert e.value.field == "d.accesses"


# ---- pghot-bench: promotion-spec §7.1 --------------------------------------------------------

# mode: (bytes, kind, shared, thp, write_fraction, policy, nodes, move_to)
PGHOT_TABLE = {
    1: (8 * GiB, "anon", False, False, 0.5, "bind", (2,), None),
    2: (8 * GiB, "file", True, False, 0.0, "bind", (2,), None),
    3: (64 * GiB, "anon", False, True, 0.5, "default", (), 2),
}


@pytest.mark.parametrize("mode", [1, 2, 3])
def test_pghot_bench_modes_match_spec(mode):
    size, kind, shared, thp, wf, policy, nodes, move_to = PGHOT_TABLE[mode]
    spec = make_workload("pghot-bench", {"mode": mode})
    (p,) = spec.processes
    assert (p.threads, p.cpu_node, p.memcg) == (64, 0, "/")        # 64 threads on node 0
    (m,) = p.mappings
    assert m == Mapping(size=size, kind=kind, shared=shared, thp=thp, policy=policy,
                        nodes=nodes, populate=True, move_to=move_to)
    # 8 GiB = 2,097,152 base pages; 64 GiB = 32,768 THPs (the counters in §7.1).
    assert m.size // (4 * KiB) == 2_097_152 if mode < 3 else m.size // (2 * MiB) == 32_768
    (ph,) = p.phases
    assert ph == Phase(Uniform(), write_fraction=wf, accesses=PGHOT_ACCESSES_PER_THREAD)
    assert spec.params == {"mode": mode, "threads": 64, "accesses_per_thread": 436_000_000,
                           "scale": 1.0, "cxl_node": 2, "cpu_node": 0, "mlp": 1.0,
                           "page_tables": "local"}


@pytest.mark.parametrize("mode", [1, 2, 3])
def test_pghot_bench_scale(mode):
    spec = make_workload("pghot-bench", {"mode": mode, "scale": 1 / 64, "cxl_node": 1,
                                         "threads": 4})
    (p,) = spec.processes
    m = p.mappings[0]
    assert m.size == PGHOT_TABLE[mode][0] // 64
    assert p.phases[0].accesses == round(436_000_000 / 64) and p.threads == 4
    assert (m.nodes, m.move_to) == (((1,), None) if mode < 3 else ((), 1))
    tiny = make_workload("pghot-bench", {"mode": mode, "scale": 1e-12}).processes[0]
    assert tiny.mappings[0].size == (2 * MiB if mode == 3 else 4 * KiB)   # one unit at least
    assert tiny.phases[0].accesses == 1
