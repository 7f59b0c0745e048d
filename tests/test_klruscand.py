"""klruscand (hotness/klruscand.py; mglru-spec §9, promotion-spec §2): the invariants of §9
checked on engine runs in both access models, with a promoter that only records its calls."""

import numpy as np
import pytest

from conftest import machine_dict
from tierscan import Kernel, Machine
from tierscan.errors import ConfigError
from tierscan.hotness import klruscand as kmod
from tierscan.hotness.klruscand import Klruscand, lower_tier_nodes
from tierscan.jiffies import INITIAL_JIFFIES as J0
from tierscan.mm.constants import HZ
from tierscan.promote.base import PGTABLE_SCAN
from tierscan.sim import plugins
from tierscan.sim.config import Component
from tierscan.sim.costs import CostModel
from tierscan.sim.engine import MS, Engine
from tierscan.workload.library import make_workload


class RecordingPromoter:
    """Records every record_access call with the kernel's jiffies at the call."""

    def __init__(self, kernel=None):
        self.kernel = kernel
        self.calls = []

    def record_access(self, pfns, nid, src, now_jiffies):
        at = self.kernel.jiffies if self.kernel is not None else None
        nodes = self.kernel.node_of(pfns) if self.kernel is not None else None
        self.calls.append(dict(pfns=np.array(pfns), nid=nid, src=src, now=now_jiffies, at=at,
                               nodes=nodes))

    @property
    def pfns(self):
        return np.concatenate([c["pfns"] for c in self.calls]) if self.calls else np.empty(0)


def three_node_kernel():
    """DRAM (tier 0, CPU), CXL tier 1, CXL tier 2: two lower-tier nodes."""
    d = machine_dict(["32MiB", "64MiB", "64MiB"], tiers=[0, 1, 2])
    return Kernel(Machine.from_dict(d), seed=0)


def run(kernel, workload, det, model="rate", duration_ms=400, seed=0):
    e = Engine(kernel, workload, access_model=model, seed=seed, duration_ns=duration_ms * MS,
               daemons=[det])
    return e.run()


def multi_workload():
    return make_workload("multi", {"processes": [
        {"name": "a", "memcg": "/a", "size": "16MiB", "node": 1, "dist": "zipf",
         "duration": "1s"},
        {"name": "b", "memcg": "/b", "size": "16MiB", "node": 2, "dist": "uniform",
         "duration": "1s"},
        {"name": "c", "size": "8MiB", "node": 0, "dist": "uniform", "duration": "1s"},
    ]})


@pytest.mark.parametrize("model", ["rate", "exact"])
def test_reports_lower_tier_pfns_and_never_changes_max_seq(model):
    k = three_node_kernel()
    p = RecordingPromoter(k)
    det = Klruscand(p, interval_ms=100)
    seqs = {}
    e = Engine(k, multi_workload(), access_model=model, seed=1, duration_ns=450 * MS,
               daemons=[det])
    for lv in k.lruvecs():
        seqs[(lv.memcg.id, lv.nid)] = (lv.lrugen.max_seq, tuple(lv.lrugen.min_seq))
    e.run()
    assert det.stats["passes"] == 4
    assert p.calls, "nothing reported"
    for c in p.calls:
        assert c["src"] == PGTABLE_SCAN and c["nid"] == -1
        assert set(c["nodes"].tolist()) <= {1, 2}          # never the top tier
    # both lower-tier nodes and both their memcgs were reported from
    assert set(np.concatenate([c["nodes"] for c in p.calls]).tolist()) == {1, 2}
    for lv in k.lruvecs():
        assert (lv.lrugen.max_seq, tuple(lv.lrugen.min_seq)) == seqs[(lv.memcg.id, lv.nid)]
    # a pass reports a folio at most once (no page is accessed during the instantaneous pass)
    for pass_no in range(det.stats["passes"]):
        t = J0 + (pass_no + 1) * 100
        pf = np.concatenate([c["pfns"] for c in p.calls if c["now"] == t])
        assert np.unique(pf).size == pf.size


def test_reports_are_stamped_with_the_flush_time():
    k = Kernel(Machine.preset("laptop"), seed=0)
    p = RecordingPromoter(k)
    det = Klruscand(p, interval_ms=100, batch_size=500)      # several flushes per pass
    wl = make_workload("zipf", {"size": "64MiB", "threads": 2, "duration": "1s"})
    run(k, wl, det, duration_ms=300)
    assert len(p.calls) > det.stats["passes"]
    for c in p.calls:
        assert c["now"] == c["at"]                           # jiffies when flush_cb ran
    # the passes ran at 100, 200 and 300 ms: every report carries one of those times
    assert sorted({c["now"] for c in p.calls}) == [J0 + 100 * HZ // 1000 * (i + 1)
                                                     for i in range(3)]


def test_each_period_visits_every_lower_tier_node_and_memcg_once(monkeypatch):
    k = three_node_kernel()
    det = Klruscand(RecordingPromoter(k), interval_ms=50)
    visits, walks = [], []
    real = kmod.lru_gen_scan_lruvec

    def spy(lruvec, seq, accessed_cb, flush_cb, **kw):
        visits.append((k.clock_ns, lruvec.nid, lruvec.memcg.id))
        walks.append(kw["walk"])
        assert seq == lruvec.lrugen.max_seq
        return real(lruvec, seq, accessed_cb, flush_cb, **kw)

    monkeypatch.setattr(kmod, "lru_gen_scan_lruvec", spy)
    resets = []
    real_reset = det.walk.reset
    det.walk.reset = lambda: (resets.append((k.clock_ns, len(visits))), real_reset())
    e = Engine(k, multi_workload(), access_model="rate", seed=0, duration_ns=200 * MS,
               daemons=[det])
    memcgs = [m.id for m in k.memcgs]
    assert len(memcgs) == 3                                   # root, /a, /b
    e.run()
    assert lower_tier_nodes(k) == [1, 2]
    expected = [(n, m) for n in (1, 2) for m in memcgs]
    times = sorted({t for t, _, _ in visits})
    assert times == [50 * MS, 100 * MS, 150 * MS, 200 * MS]
    for t in times:
        assert [(n, m) for tt, n, m in visits if tt == t] == expected
    assert all(w is det.walk for w in walks)                  # one walk struct for the thread
    # the walk struct is zeroed after each node: after visits 3 and 6 of every pass
    assert [(t, n % 6) for t, n in resets] == [(t, r) for t in times for r in (3, 0)]


@pytest.mark.parametrize("contract", ["v1", "v2"])
@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_batched_callback_equals_per_pfn_and_batches_stay_bounded(contract, batch_size):
    results = []
    for batched in (True, False):
        k = Kernel(Machine.preset("laptop"), seed=0)
        p = RecordingPromoter(k)
        det = Klruscand(p, interval_ms=100, batch_size=batch_size, contract=contract,
                        batched=batched)
        wl = make_workload("hotset", {"size": "4MiB", "threads": 1, "duration": "1s",
                                      "hot_fraction": 0.2})
        run(k, wl, det, duration_ms=200)
        assert all(c["pfns"].size <= batch_size for c in p.calls)
        assert det.stats["max_pending"] <= batch_size
        assert det.stats["warn_full"] == 0                    # never called while full
        results.append(([c["pfns"].tolist() for c in p.calls], [c["now"] for c in p.calls],
                        det.stats["leaf_total"], det.stats["refused"]))
    assert results[0] == results[1]
    if contract == "v1" and batch_size < 1000:
        assert results[0][3] > 0                              # v1 refused (and lost) pfns


@pytest.mark.parametrize("model", ["rate", "exact"])
def test_hot_pages_are_reported_every_pass_in_both_models(model):
    """A page of the 10% hot set gets ~9 of every 10 accesses spread over 410 pages: it is
    young at every 100 ms pass, so it is reported in each of the 3 passes."""
    k = Kernel(Machine.preset("laptop"), seed=0)
    p = RecordingPromoter(k)
    det = Klruscand(p, interval_ms=100)
    wl = make_workload("hotset", {"size": "16MiB", "threads": 1, "duration": "1s",
                                  "hot_fraction": 0.1, "hot_share": 0.9})
    e = run(k, wl, det, model=model, duration_ms=300)
    g = e.groups[0]
    hot = wl.processes[0].phases[0].distribution.hot_pages(g.n_pages)
    hot_pfns = g.mm.translate(g.addrs[hot])
    counts = {}
    for pfn in p.pfns.tolist():
        counts[pfn] = counts.get(pfn, 0) + 1
    assert all(counts.get(pfn, 0) == 3 for pfn in hot_pfns.tolist())


def test_cpu_cost_is_charged_from_mm_stats_and_an_overrun_skips_the_sleep():
    k = Kernel(Machine.preset("laptop"), seed=0)
    costs = CostModel(scan_pte_ns=2.0, scan_young_pte_ns=30.0)
    det = Klruscand(RecordingPromoter(k), interval_ms=100, costs=costs)
    wl = make_workload("uniform", {"size": "16MiB", "threads": 1, "duration": "1s"})
    e = run(k, wl, det, duration_ms=200)
    s = det.stats
    assert s["leaf_young"] == s["reported"] > 0
    assert e.accounting.cpu_ns["klruscand"] == 2.0 * s["leaf_total"] + 30.0 * s["leaf_young"]
    assert s["overruns"] == 0
    # a pass that costs more than the interval: the next one starts when it ends
    k = Kernel(Machine.preset("laptop"), seed=0)
    slow = CostModel(scan_pte_ns=50_000.0)                  # 4096 PTEs -> ~205 ms a pass
    det = Klruscand(RecordingPromoter(k), interval_ms=100, costs=slow)
    e = Engine(k, wl, access_model="rate", seed=0, duration_ns=600 * MS, daemons=[det])
    e.run()
    assert det.stats["overruns"] == det.stats["passes"] >= 2
    assert det.stats["passes"] < 6                            # not every 100 ms


def test_registered_with_strict_parameters():
    plugins.load_all()
    k = Kernel(Machine.preset("laptop"), seed=0)
    comp = Component("klruscand", {"interval_ms": 2000, "batch_size": 64, "contract": "v1",
                                   "batched": False}, path="detectors[0]", where="exp.toml")
    p = RecordingPromoter(k)
    (det,) = plugins.build(plugins.DETECTORS, "detector", comp, k, CostModel(), p)
    assert isinstance(det, Klruscand) and det.promoter is p
    assert (det.period_ns, det.batch_size, det.contract, det.batched) == (2000 * MS, 64, "v1",
                                                                          False)
    (det,) = plugins.build(plugins.DETECTORS, "detector", Component("klruscand"), k,
                           CostModel(), p)
    assert (det.period_ns, det.batch_size, det.contract, det.batched) == (500 * MS, 131072,
                                                                          "v2", True)
    for bad, field in (({"interval_msx": 1}, "interval_msx"), ({"contract": "v3"}, "contract"),
                       ({"batch_size": 0}, "batch_size"), ({"interval_ms": 0}, "interval_ms"),
                       ({"batched": 1}, "batched")):
        with pytest.raises(ConfigError) as ei:
            plugins.build(plugins.DETECTORS, "detector",
                          Component("klruscand", bad, path="detectors[0]", where="exp.toml"),
                          k, CostModel(), p)
        assert str(ei.value).startswith(f"exp.toml: detectors[0].{field}:")


@pytest.mark.parametrize("version,interval_ms,contract", [
    ("v1", 4000, "v1"), ("pghot-v1", 100, "v1"), ("v2", 2000, "v2"), ("v3", 500, "v2")])
def test_version_sets_the_posted_interval_and_contract(version, interval_ms, contract):
    """mglru-spec §9 version table: one ``version`` name selects the posted interval and
    callback contract; explicit keys override the version's defaults."""
    plugins.load_all()
    k = Kernel(Machine.preset("laptop"), seed=0)
    p = RecordingPromoter(k)
    (det,) = plugins.build(plugins.DETECTORS, "detector",
                           Component("klruscand", {"version": version}), k, CostModel(), p)
    assert (det.period_ns, det.contract, det.batch_size) == (interval_ms * MS, contract, 2 << 16)
    (det,) = plugins.build(plugins.DETECTORS, "detector",
                           Component("klruscand", {"version": version, "interval_ms": 250,
                                                   "contract": "v2"}), k, CostModel(), p)
    assert (det.period_ns, det.contract) == (250 * MS, "v2")


def test_unknown_version_is_a_one_line_error():
    plugins.load_all()
    k = Kernel(Machine.preset("laptop"), seed=0)
    with pytest.raises(ConfigError) as ei:
        plugins.build(plugins.DETECTORS, "detector",
                      Component("klruscand", {"version": "v4"}, path="detectors[0]",
                                where="exp.toml"), k, CostModel(), RecordingPromoter(k))
    msg = str(ei.value)
    assert msg.startswith("exp.toml: detectors[0].version: expected one of 'v1', 'pghot-v1'")
    assert "\n" not in msg
