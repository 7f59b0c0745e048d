"""The oracle and "none" detectors (hotness/oracle.py) and the promotion figures of a run
(sim/promotion_metrics.py)."""

import numpy as np
import pytest

from conftest import machine_dict
from tierscan import Kernel, Machine
from tierscan.errors import ConfigError
from tierscan.hotness.oracle import (Oracle, group_page_identities, oracle_hot_set,
                                     page_weights, start_free_above_high)
from tierscan.mm.migrate import migrate_folios
from tierscan.mm.physmem import WMARK_HIGH
from tierscan.sim import plugins
from tierscan.sim.config import Component
from tierscan.sim.costs import CostModel
from tierscan.sim.engine import MS, Engine
from tierscan.sim.promotion_metrics import (expand_folios, folio_identities, page_identities,
                                            promotion_summary)
from tierscan.workload.library import make_workload


def small_kernel(dram="16MiB", cxl="64MiB"):
    return Kernel(Machine.from_dict(machine_dict([dram, cxl])), seed=0, debug=True)


def engine(wl, daemons=(), model="rate", duration_ms=50, kernel=None):
    k = kernel or small_kernel()
    return Engine(k, wl, access_model=model, seed=0, duration_ns=duration_ms * MS,
                  daemons=list(daemons))


def promoted_identities(oracle):
    return expand_folios(np.concatenate(oracle.promoted_ids))


@pytest.mark.parametrize("model", ["rate", "exact"])
def test_oracle_promotes_the_hottest_pages_and_never_more_than_fits(model):
    wl = make_workload("zipf", {"size": "32MiB", "threads": 1, "duration": "1s"})
    o = Oracle(period_ms=0)
    e = engine(wl, [o], model=model)
    k = e.kernel
    budget = k.pm.allowance(0, WMARK_HIGH)
    assert budget == start_free_above_high(e) > 0
    e.run()
    g = e.groups[0]
    ids = promoted_identities(o)
    assert ids.shape[0] == budget                           # exactly what fits ...
    assert k.pm.node_free[0] >= k.pm.watermarks[0, WMARK_HIGH]   # ... above the high mark
    # the promoted pages are the heaviest: no page left on CXL weighs more than one promoted
    w = page_weights(g)
    pos = g.index_of(ids[:, 1])
    on_dram = k.node_of(g.mm.translate(g.addrs)) == 0
    assert on_dram[pos].all() and on_dram.sum() == budget
    assert w[pos].min() >= w[~on_dram].max()
    # promoted in order of weight, at the first tick
    assert (np.diff(w[pos]) <= 0).all()
    assert set(np.concatenate(o.promoted_ns).tolist()) == {10 * MS}
    # a later pass finds no room: promotion_summary agrees with the oracle's own hot set
    s = promotion_summary(e, o)
    assert s["promoted_pages"] == s["hot_set_pages"] == s["true_positives"] == budget
    assert s["precision"] == s["recall"] == 1.0


def test_oracle_with_thps_counts_512_and_stays_within_the_budget():
    wl = make_workload("zipf", {"size": "32MiB", "threads": 1, "thp": True, "duration": "1s"})
    o = Oracle(period_ms=20)
    e = engine(wl, [o])
    k = e.kernel
    budget = k.pm.allowance(0, WMARK_HIGH)
    e.run()
    s = promotion_summary(e, o)
    assert s["promoted_thps"] == s["promoted_folios"] == budget // 512
    assert s["promoted_pages"] == 512 * s["promoted_folios"] <= budget
    assert k.pm.node_free[0] >= k.pm.watermarks[0, WMARK_HIGH]


def test_oracle_follows_a_moving_hot_set_while_room_remains():
    """64 MiB DRAM: the first hot set (10% of 32 MiB) fits; after the shift the next pass
    promotes the new hot pages into the room left."""
    wl = make_workload("hotset", {"size": "32MiB", "threads": 1, "hot_fraction": 0.1,
                                  "hot_share": 1.0, "shift_every": "100ms", "shifts": 1,
                                  "duration": "1s"})
    o = Oracle(period_ms=50)
    e = engine(wl, [o], kernel=small_kernel("64MiB", "64MiB"), duration_ms=200)
    e.run()
    g = e.groups[0]
    on_dram = e.kernel.node_of(g.mm.translate(g.addrs)) == 0
    hot = [ph.distribution.hot_pages(g.n_pages) for ph in g.spec.phases]
    assert on_dram[np.concatenate(hot)].all()
    assert on_dram.sum() == np.union1d(*hot).size               # zero weights stay


def test_oracle_hot_set_is_top_k_by_weight_among_pages_that_start_on_the_lower_tier():
    wl = make_workload("multi", {"processes": [
        {"name": "hot", "size": "8MiB", "threads": 4, "node": 1, "dist": "zipf"},
        {"name": "cold", "size": "8MiB", "threads": 1, "node": 1, "dist": "uniform"},
        {"name": "dram", "size": "4MiB", "threads": 8, "node": 0, "dist": "uniform"},
    ]})
    e = engine(wl)
    hot = oracle_hot_set(e, k=3000)
    assert hot.shape == (3000, 2)
    weight, ident = [], []
    for g in e.groups[:2]:
        weight.append(page_weights(g))
        ident.append(group_page_identities(e, g))
    weight, ident = np.concatenate(weight), np.concatenate(ident)
    key = {tuple(r): w for r, w in zip(ident.tolist(), weight.tolist())}
    w_hot = np.array([key[tuple(r)] for r in hot.tolist()])
    assert (np.diff(w_hot) <= 0).all()                           # heaviest first
    chosen = {tuple(r) for r in hot.tolist()}
    assert max(w for r, w in key.items() if r not in chosen) <= w_hot.min()
    dram_mm = e.groups[2].mm.id
    assert dram_mm not in set(hot[:, 0].tolist())                # already on the top tier
    # identities are (mm id, page slot) for anon pages
    g = e.groups[0]
    assert (group_page_identities(e, g) == np.column_stack(
        [np.full(g.n_pages, g.mm.id), g.slots])).all()
    # K defaults to the free room above the high watermark at the start
    assert oracle_hot_set(e).shape[0] == start_free_above_high(e)


def test_identities_survive_migration_and_cover_file_pages():
    wl = make_workload("multi", {"processes": [
        {"name": "a", "size": "4MiB", "node": 1, "dist": "uniform"},
        {"name": "f", "size": "4MiB", "node": 1, "kind": "file", "shared": True,
         "dist": "uniform"}]})
    e = engine(wl)
    k = e.kernel
    for g in e.groups:
        pfns = g.mm.translate(g.addrs)
        before = page_identities(k, pfns)
        assert (before == group_page_identities(e, g)).all()
        assert migrate_folios(k, pfns[:10], 0).all()
        after = page_identities(k, g.mm.translate(g.addrs[:10]))
        assert (after == before[:10]).all()
        assert (page_identities(k, pfns[:10])[:, 0] == 0).all()     # the old pfns are free
    fid_owner = group_page_identities(e, e.groups[1])[:, 0]
    assert (fid_owner < 0).all()                                     # -(file id)


class FakePromoter:
    def __init__(self):
        self.promoted_pfns, self.promoted_ns, self.first_report_ns = [], [], {}


def test_promotion_summary_on_a_constructed_case():
    """Hot set = the 100 heaviest pages. Promote 60 of them and 20 others, in two batches:
    precision 60/80, recall 60/100, whichever way the engine recorded the pages."""
    wl = make_workload("zipf", {"size": "16MiB", "threads": 1})
    e = engine(wl)
    k = e.kernel
    g = e.groups[0]
    hot = oracle_hot_set(e, k=100)
    others = np.setdiff1d(g.slots, hot[:, 1])[:20]
    slots = np.concatenate([hot[:60, 1], others])
    addrs = g.addrs[g.index_of(slots)]
    old = g.mm.translate(addrs)
    with_ids, new_pfns, old_only = FakePromoter(), FakePromoter(), FakePromoter()
    with_ids.promoted_ids = []
    for part, t in ((slice(0, 50), 1_000), (slice(50, 80), 5_000)):
        ids = folio_identities(k, old[part])
        assert migrate_folios(k, old[part], 0).all()
        for p in (with_ids, new_pfns, old_only):
            p.promoted_ns.append(np.full(ids.shape[0], t * MS))
        with_ids.promoted_pfns.append(old[part])
        with_ids.promoted_ids.append(ids)
        old_only.promoted_pfns.append(old[part])
        new_pfns.promoted_pfns.append(g.mm.translate(addrs[part]))
    with_ids.first_report_ns = {int(p): 500 * MS for p in old[:10]}
    for p, source in ((with_ids, "promoted_ids"), (new_pfns, "pfn_now")):
        s = promotion_summary(e, p, hot_set=hot)
        assert s["identity_source"] == source and s["unresolved_folios"] == 0
        assert (s["promoted_folios"], s["promoted_pages"], s["unique_pages"]) == (80, 80, 80)
        assert (s["hot_set_pages"], s["true_positives"]) == (100, 60)
        assert s["precision"] == pytest.approx(0.75) and s["recall"] == pytest.approx(0.6)
        ttp = s["time_to_promote_ns"]
        assert ttp["count"] == 80
        assert ttp["mean"] == pytest.approx((50 * 1000 + 30 * 5000) / 80 * MS)
        assert ttp["p10"] == 1000 * MS and ttp["p90"] == 5000 * MS
        # the default hot set: the top K with K the room above the high watermark (the engine
        # has not run, so "the start" is now)
        assert promotion_summary(e, p)["hot_set_pages"] == start_free_above_high(e) > 100
    s = promotion_summary(e, with_ids, hot_set=hot)
    assert s["report_to_promote_ns"] == {"count": 10, "mean": 500 * MS, "p10": 500 * MS,
                                         "p50": 500 * MS, "p90": 500 * MS}
    # old pfns without identities are free now: unresolved, and the quality figures unknown
    # (issue 14: a recall of 0.0% for pages that were promoted is worse than none)
    s = promotion_summary(e, old_only, hot_set=hot)
    assert s["unresolved_folios"] == 80 and s["promoted_pages"] == 80
    assert s["true_positives"] is s["unique_pages"] is s["precision"] is s["recall"] is None
    assert s["quality_note"].startswith("unknown: 80 of 80 promoted folios")
    # the whole workload in the fast tier: undefined rather than a trivial 100%
    s = promotion_summary(e, with_ids, hot_set=hot, fits_fast_tier=True)
    assert s["precision"] is None and "fits in the fast tier" in s["quality_note"]


def test_promotion_summary_counts_a_thp_as_512_pages():
    p = FakePromoter()
    p.promoted_pfns = [np.array([4096, 9000])]
    p.promoted_ns = [np.array([10, 20])]
    p.promoted_ids = [np.array([[3, 1024, 512], [3, 7, 1]])]
    wl = make_workload("uniform", {"size": "4MiB", "threads": 1})
    e = engine(wl)
    hot = np.array([[3, 1024 + i] for i in range(100)] + [[3, 8]])
    s = promotion_summary(e, p, hot_set=hot)
    assert (s["promoted_folios"], s["promoted_thps"], s["promoted_pages"]) == (2, 1, 513)
    assert (s["true_positives"], s["hot_set_pages"]) == (100, 101)
    assert s["precision"] == pytest.approx(100 / 513)
    assert s["time_to_promote_ns"]["count"] == 513
    assert s["time_to_promote_ns"]["mean"] == pytest.approx((512 * 10 + 20) / 513)


def test_registered_oracle_and_none():
    plugins.load_all()
    k = small_kernel()
    (o,) = plugins.build(plugins.DETECTORS, "detector", Component("oracle", {"period_ms": 0}),
                         k, CostModel(), None)
    assert isinstance(o, Oracle) and o.once
    (o,) = plugins.build(plugins.DETECTORS, "detector", Component("oracle"), k, CostModel(),
                         None)
    assert o.period_ns == 100 * MS and not o.once
    assert plugins.build(plugins.DETECTORS, "detector", Component("none"), k, CostModel(),
                         None) == []
    for name, bad, field in (("oracle", {"period": 1}, "period"),
                             ("oracle", {"period_ms": -1}, "period_ms"),
                             ("none", {"x": 1}, "x")):
        with pytest.raises(ConfigError) as ei:
            plugins.build(plugins.DETECTORS, "detector",
                          Component(name, bad, path="detectors[0]", where="exp.toml"),
                          k, CostModel(), None)
        assert str(ei.value).startswith(f"exp.toml: detectors[0].{field}:")


@pytest.mark.parametrize("seed", range(4))
def test_heaviest_unordered_selects_the_sorted_first_k(seed):
    """heaviest(..., ordered=False) (a selection, what the run summary uses) holds the same
    rows as the first k of the full ranking, also where k cuts through equal weights (ties go
    to the smallest identities, owner first) and for k of 0, n and beyond."""
    from tierscan.hotness.oracle import heaviest

    rng = np.random.default_rng(seed)
    n = 5000
    owner = rng.choice([-7, -2, 3, 5, 11], n)          # files (negative) and mms
    ids = np.unique(np.column_stack([owner, rng.integers(0, 1 << 32, n)]), axis=0)
    ids = ids[rng.permutation(ids.shape[0])]
    weights = rng.choice([0.5, 1.0, 2.0, 3.5], ids.shape[0])   # many ties
    order = np.lexsort((ids[:, 1], ids[:, 0], -weights))
    for k in [0, 1, 7, 1200, 2500, ids.shape[0] - 1, ids.shape[0], ids.shape[0] + 9]:
        got = heaviest(ids, weights, k, ordered=False)
        want = ids[order[:k]]
        assert (heaviest(ids, weights, k) == want).all()
        assert got.shape == want.shape
        assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, want.tolist())), k
