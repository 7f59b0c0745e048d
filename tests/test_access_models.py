"""The two access models (DESIGN §5) and the engine around them."""

import numpy as np
import pytest

from tierscan import Kernel, Machine
from tierscan.mm.migrate import migrate_folios
from tierscan.mm.vmscan import lru_gen_scan_lruvec
from tierscan.sim.config import config_from_dict
from tierscan.sim.engine import MS, Daemon, Engine
from tierscan.sim.run import run_experiment
from tierscan.workload.library import make_workload


class SecondSightingPromoter(Daemon):
    """A test-only detector: scan the CXL lruvec with lru_gen_scan_lruvec every period and
    promote a page to node 0 when two consecutive scans found it young."""

    name = "second-sighting"

    def __init__(self, period_ms):
        self.period_ns = period_ms * MS
        self.prev = set()
        self.promoted_at = {}

    def run(self, engine):
        k = engine.kernel
        lv = k.lruvec(k.root_memcg, 1)
        seen = []
        lru_gen_scan_lruvec(lv, lv.lrugen.max_seq, lambda p: (seen.append(p), False)[1],
                            lambda: None)
        now = set(seen)
        hot = np.array(sorted(now & self.prev), dtype=np.int64)
        if hot.size:
            ok = migrate_folios(k, hot, 0)
            for pfn in hot[ok].tolist():
                self.promoted_at[pfn] = engine.now
        self.prev = now - set(hot.tolist())


def run_model(model, seed, period_ms=10, duration_ms=60):
    k = Kernel(Machine.preset("laptop"), seed=seed)
    wl = make_workload("hotset", {"size": "64MiB", "threads": 1, "hot_fraction": 0.1,
                                  "hot_share": 0.9, "duration": f"{duration_ms}ms"})
    det = SecondSightingPromoter(period_ms)
    e = Engine(k, wl, access_model=model, seed=seed, duration_ns=duration_ms * MS,
               daemons=[det]).run()
    return e, det


def test_rate_and_exact_models_agree_on_promotions_and_time_to_promote():
    """Same workload and detector through both models. A cold page's promotion is a
    Bernoulli event with small correlation between pages, so the two counts differ by a
    normal variable with variance ~2·n·p(1-p) (p pooled); we allow 5 sigma (two-sided
    false-failure probability 6e-7). Times to promote are compared as means with 5 standard
    errors of their difference. Hot pages are found young at every scan in both models."""
    results = {}
    for model in ("rate", "exact"):
        e, det = run_model(model, seed=3)
        g = e.groups[0]
        hot_pages = make_workload("hotset", {"size": "64MiB", "hot_fraction": 0.1,
                                             "hot_share": 0.9}).processes[0].phases[0] \
            .distribution.hot_pages(g.n_pages)
        hot_pfns = set(g.mm.translate(g.addrs[hot_pages]).tolist())
        times = np.array(list(det.promoted_at.values())) / MS
        results[model] = (len(det.promoted_at), times, hot_pfns, g.n_pages)
    (n_r, t_r, hot_r, n), (n_e, t_e, _, _) = results["rate"], results["exact"]
    n_hot = len(hot_r)
    assert n_r >= n_hot and n_e >= n_hot          # every hot page promoted in both
    p = (n_r + n_e) / (2 * n)
    assert abs(n_r - n_e) <= 5 * np.sqrt(2 * n * p * (1 - p)), (n_r, n_e)
    se = np.sqrt(t_r.var() / t_r.size + t_e.var() / t_e.size)
    assert abs(t_r.mean() - t_e.mean()) <= 5 * se + 1e-9, (t_r.mean(), t_e.mean())


def test_promotion_speeds_up_the_workload_in_both_models():
    for model in ("rate", "exact"):
        e, det = run_model(model, seed=1, duration_ms=200)
        series = e.results()["series"]
        assert det.promoted_at
        hit = series["fast_tier_hit_ratio"]
        assert np.nanmax(hit[-3:]) > 0.5           # the hot set now hits DRAM


CFG = {"seed": 7, "access_model": "rate", "machine": {"preset": "laptop"},
       "workload": {"name": "zipf", "size": "64MiB", "threads": 2, "accesses": 500000}}


@pytest.mark.parametrize("model", ["rate", "exact"])
def test_same_seed_and_config_give_byte_identical_results(tmp_path, model):
    cfg = config_from_dict(dict(CFG, access_model=model))
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    run_experiment(cfg).save(a, include_timing=False)
    run_experiment(cfg).save(b, include_timing=False)
    assert a.read_bytes() == b.read_bytes()
    c = tmp_path / "c.json"
    run_experiment(config_from_dict(dict(CFG, access_model=model, seed=8))).save(
        c, include_timing=False)
    assert c.read_bytes() != a.read_bytes()


def test_runtime_is_accesses_times_latency_without_promotion():
    """No detector: every access costs the CXL latency (laptop: load 240, store 250 ns),
    so 500k accesses per thread at 50% stores take 500k x 245 ns in both models."""
    for model in ("rate", "exact"):
        cfg = config_from_dict(dict(CFG, access_model=model, workload={
            "name": "uniform", "size": "16MiB", "threads": 2, "accesses": 500000,
            "write_fraction": 0.5}))
        r = run_experiment(cfg)
        assert abs(r.final["runtime_ns"] - 500000 * 245) <= 2 * 245 * 100, model


def test_rate_model_young_bits_follow_the_exponential_law():
    """After dt, a page with rate λ is young with P = 1 - exp(-λ dt): check the fraction of
    young pages seen by mm.young() against it (5 standard errors of a proportion)."""
    k = Kernel(Machine.preset("laptop"), seed=0)
    wl = make_workload("uniform", {"size": "64MiB", "threads": 1, "duration": "1s"})
    e = Engine(k, wl, access_model="rate", seed=0, duration_ns=1000 * MS)
    g = e.groups[0]
    lv = k.lruvec(k.root_memcg, 1)
    lru_gen_scan_lruvec(lv, lv.lrugen.max_seq, lambda p: False, lambda: None)  # clear at t=0
    assert not g.mm.young(g.addrs).any()
    e.duration_ns = 2 * MS
    e.run()
    n = g.n_pages
    lam_dt = g.total / n                    # expected accesses per page since the scan
    frac = g.mm.young(g.addrs).mean()
    p = -np.expm1(-lam_dt)
    assert abs(frac - p) <= 5 * np.sqrt(p * (1 - p) / n), (frac, p)


@pytest.mark.parametrize("model", ["rate", "exact"])
def test_hint_fault_fraction_follows_the_exponential_law(model):
    """All pages made PROT_NONE at t=0; after the run, the fraction that took a hint fault is
    1 - exp(-λ·t) with λ·t the accesses per page (5 standard errors of a proportion). In the
    rate model the fault times are drawn; in the exact model they happen on access."""
    from tierscan.mm.memory import protect_slots_numa

    k = Kernel(Machine.preset("laptop"), seed=0)
    wl = make_workload("uniform", {"size": "16MiB", "threads": 1, "accesses": 4000})
    e = Engine(k, wl, access_model=model, seed=0)
    g = e.groups[0]
    assert protect_slots_numa(g.mm, g.slots) == g.n_pages
    e.run()
    n = g.n_pages
    faults = k.vmstat["numa_hint_faults"]
    p = -np.expm1(-4000 / n)
    assert abs(faults / n - p) <= 5 * np.sqrt(p * (1 - p) / n), (faults / n, p)
    prot = (g.mm.pt.pte[g.slots] & np.uint64(1)) == 0
    assert prot.sum() == n - faults          # the others are still PROT_NONE


@pytest.mark.parametrize("model", ["rate", "exact"])
def test_migration_cancels_pending_hint_faults(model):
    """A PROT_NONE page that migrates is mapped present again (remove_migration_pte builds
    the entry from vm_page_prot, mm/migrate.c): neither model takes its pending hint fault."""
    from tierscan.mm.memory import protect_slots_numa

    k = Kernel(Machine.preset("laptop"), seed=0)
    wl = make_workload("uniform", {"size": "16MiB", "threads": 1, "accesses": 4000})
    e = Engine(k, wl, access_model=model, seed=0)
    g = e.groups[0]
    assert protect_slots_numa(g.mm, g.slots) == g.n_pages
    pfns = g.mm.translate(g.addrs)
    half = pfns[: g.n_pages // 2]
    dst = 1 - int(k.node_of(half[:1])[0])
    assert migrate_folios(k, half, dst).all()
    e.run()
    n = g.n_pages - half.size
    faults = k.vmstat["numa_hint_faults"]
    p = -np.expm1(-4000 / g.n_pages)
    assert 0 < faults <= n
    assert abs(faults / n - p) <= 5 * np.sqrt(p * (1 - p) / n), (faults / n, p)


# ---- the rate model's lazy draws across phase changes (issue 11 §1) -------------------------

def _two_phase_engine(first: dict, second: dict, n_first: int, n_second: int, size="16MiB"):
    """A rate-model engine (not run) whose one thread runs ``n_first`` accesses of ``first``
    and then ``n_second`` of ``second``; every A and D bit cleared at t = 0."""
    from tierscan.mm.constants import _PAGE_ACCESSED, _PAGE_DIRTY

    k = Kernel(Machine.preset("laptop"), seed=0)
    wl = make_workload("phases", {"size": size, "threads": 1, "phases": [
        dict(first, accesses=n_first), dict(second, accesses=n_second)]})
    e = Engine(k, wl, access_model="rate", seed=0)
    g = e.groups[0]
    g.mm.pt.pte[g.slots] &= ~np.uint64(_PAGE_ACCESSED | _PAGE_DIRTY)
    return k, e, g


def _within(frac, p, n):
    return abs(frac - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12


def test_rate_model_young_bits_integrate_the_rate_over_phases():
    """Half A is hot in phase 1 and cold (rate 0) in phase 2, half B the reverse: a page's
    young bit, drawn once at the end, must carry the hazard of both phases, 1 - exp(-Λ) with
    Λ the accesses it received in either."""
    n_acc = 4096
    k, e, g = _two_phase_engine({"dist": "hotset", "hot_fraction": 0.5, "hot_share": 1.0},
                                {"dist": "hotset", "hot_fraction": 0.5, "hot_share": 1.0,
                                 "offset": 0.5}, n_acc, n_acc)
    e.run()
    half = g.n_pages // 2
    young = g.mm.young(g.addrs)
    p = -np.expm1(-n_acc / half)
    for part in (young[:half], young[half:]):
        assert _within(part.mean(), p, half), (part.mean(), p)


def test_rate_model_dirty_bits_follow_the_write_fraction_of_each_phase():
    """Phase 1 only loads, phase 2 only stores, uniformly: a page is dirty iff it was accessed
    in phase 2, P = 1 - exp(-n2/N), though it is young with 1 - exp(-(n1+n2)/N)."""
    from tierscan.mm.constants import _PAGE_DIRTY

    n1 = n2 = 2048
    k, e, g = _two_phase_engine({"dist": "uniform", "write_fraction": 0.0},
                                {"dist": "uniform", "write_fraction": 1.0}, n1, n2)
    e.run()
    n = g.n_pages
    young = g.mm.young(g.addrs)
    dirty = (g.mm.pt.pte[g.slots] & np.uint64(_PAGE_DIRTY)) != 0
    assert _within(young.mean(), -np.expm1(-(n1 + n2) / n), n)
    assert _within(dirty.mean(), -np.expm1(-n2 / n), n), dirty.mean()


def test_rate_model_samples_come_from_the_phase_the_accesses_were_made_in():
    """One sample() call after both phases: half the accesses were made in phase 1 on half A,
    so half the samples land there (5 standard errors of a proportion)."""
    k, e, g = _two_phase_engine({"dist": "hotset", "hot_fraction": 0.5, "hot_share": 1.0},
                                {"dist": "hotset", "hot_fraction": 0.5, "hot_share": 1.0,
                                 "offset": 0.5}, 100_000, 100_000)
    e.run()
    pfns = e.model.sample(e, g, 0.05, 0.0)
    first_half = set(g.mm.translate(g.addrs[:g.n_pages // 2]).tolist())
    frac = np.isin(pfns, list(first_half)).mean()
    assert pfns.size > 5000 and _within(frac, 0.5, pfns.size), (pfns.size, frac)


def test_rate_model_heatmap_counts_each_phase_with_its_own_weights():
    from tierscan.access.base import HEAT_BINS

    k, e, g = _two_phase_engine({"dist": "hotset", "hot_fraction": 0.5, "hot_share": 1.0},
                                {"dist": "hotset", "hot_fraction": 0.5, "hot_share": 1.0,
                                 "offset": 0.5}, 1000, 3000)
    e.sample_ns = 10 ** 12          # one metrics sample at the start, one at the end
    e.run()
    heat = np.sum(e.results()["series"]["heatmap"], axis=0)
    assert np.isclose(heat[:HEAT_BINS // 2].sum(), 1000)
    assert np.isclose(heat[HEAT_BINS // 2:].sum(), 3000)
