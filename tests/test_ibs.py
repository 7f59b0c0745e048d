"""IBS hardware sampling (hotness/ibs.py; promotion-spec §1.2, §5.1)."""

import numpy as np
import pytest

from conftest import machine_dict
from tierscan import Kernel, Machine
from tierscan.errors import ConfigError
from tierscan.hotness.ibs import Ibs
from tierscan.promote.base import HW_HINTS
from tierscan.sim import plugins
from tierscan.sim.config import Component
from tierscan.sim.costs import CostModel
from tierscan.sim.engine import MS, Engine
from tierscan.workload.library import make_workload


class RecordingPromoter:
    def __init__(self, kernel):
        self.kernel = kernel
        self.calls = []

    def record_access(self, pfns, nid, src, now_jiffies):
        self.calls.append(dict(pfns=np.array(pfns), nid=np.broadcast_to(nid, np.shape(pfns)),
                               src=src, now=now_jiffies, at=self.kernel.jiffies,
                               nodes=self.kernel.node_of(pfns)))

    def all(self, key):
        return np.concatenate([c[key] for c in self.calls]) if self.calls else np.empty(0)


def run(kernel, wl, det, model="rate", duration_ms=200, seed=0):
    return Engine(kernel, wl, access_model=model, seed=seed, duration_ns=duration_ms * MS,
                  daemons=[det]).run()


def accesses(e):
    return sum(g.total * g.threads for g in e.groups)


def test_sample_count_is_accesses_over_the_period():
    """Samples are a Poisson count with mean accesses x ops_per_access / sample_period; allow
    5 standard deviations."""
    for period, opa in ((10_000, 1.0), (2_000, 4.0)):
        k = Kernel(Machine.preset("laptop"), seed=0)
        det = Ibs(RecordingPromoter(k), sample_period=period, ops_per_access=opa, ring_size=10**6)
        wl = make_workload("uniform", {"size": "64MiB", "threads": 4, "duration": "1s"})
        e = run(k, wl, det, duration_ms=1000)
        mean = accesses(e) * opa / period
        n = k.vmstat["hwhint_nr_events"]
        assert abs(n - mean) <= 5 * np.sqrt(mean), (n, mean)
        assert k.vmstat["hwhint_buffer_full"] == 0
        assert n == k.vmstat["hwhint_useful_samples"] == det.stats["reported"]
        assert e.accounting.cpu_ns["ibs"] == n * CostModel().sample_ns


def test_sample_count_in_the_exact_model():
    k = Kernel(Machine.preset("laptop"), seed=0)
    det = Ibs(RecordingPromoter(k), sample_period=100, ring_size=10**6)
    wl = make_workload("uniform", {"size": "16MiB", "threads": 1, "duration": "1s"})
    e = run(k, wl, det, model="exact", duration_ms=100)
    mean = accesses(e) * det.per_access
    n = k.vmstat["hwhint_nr_events"]
    assert abs(n - mean) <= 5 * np.sqrt(mean), (n, mean)


@pytest.mark.parametrize("model", ["rate", "exact"])
def test_samples_are_workload_pages_reported_as_hwhints(model):
    k = Kernel(Machine.preset("laptop"), seed=0)
    p = RecordingPromoter(k)
    det = Ibs(p, sample_period=200)
    wl = make_workload("zipf", {"size": "16MiB", "threads": 2, "duration": "1s"})
    e = run(k, wl, det, model=model, duration_ms=100)
    g = e.groups[0]
    assert p.calls
    assert set(p.all("pfns").tolist()) <= set(g.mm.translate(g.addrs).tolist())
    assert {c["src"] for c in p.calls} == {HW_HINTS}
    # sample times: jiffies of the access, no later than the drain that delivers them, and in
    # time order
    nows = [c["now"] for c in p.calls]
    assert nows == sorted(nows)
    for c in p.calls:
        assert c["at"] - 10 - 10 <= c["now"] < c["at"]


def test_ring_overflow_drops_are_counted():
    k = Kernel(Machine.preset("laptop"), seed=0)
    p = RecordingPromoter(k)
    det = Ibs(p, sample_period=20, ring_size=40, drain_ms=5)
    wl = make_workload("uniform", {"size": "16MiB", "threads": 3, "duration": "1s"})
    run(k, wl, det, duration_ms=100)
    vm = k.vmstat
    full, events = vm["hwhint_buffer_full"], vm["hwhint_nr_events"]
    # ~2080 samples per thread per 5 ms window against 40 slots
    assert full > 0.9 * events
    assert events == full + vm["hwhint_useful_samples"] + vm["hwhint_non_lru"]
    assert vm["hwhint_useful_samples"] == det.stats["reported"] == p.all("pfns").size
    # per 5 ms drain window at most ring_size samples per thread's ring
    t = np.repeat([c["now"] for c in p.calls], [c["pfns"].size for c in p.calls])
    per_window = np.bincount(t // 5)
    assert per_window.max() <= 40 * 3
    assert per_window[per_window > 0].min() == 40 * 3       # every ring filled up


def test_nid_quirk():
    """v3 never fills the sample's nid (0); the intent is the sampling CPU's node."""
    d = machine_dict(["32MiB", "32MiB", "64MiB"], cpus=[[0], [1], []],
                     kinds=["dram", "dram", "cxl"])
    for quirk, want in ((True, 0), (False, 1)):
        k = Kernel(Machine.from_dict(d), seed=0)
        p = RecordingPromoter(k)
        det = Ibs(p, sample_period=500, nid_quirk=quirk)
        wl = make_workload("uniform", {"size": "16MiB", "threads": 1, "node": 2,
                                       "cpu_node": 1, "duration": "1s"})
        run(k, wl, det, duration_ms=50)
        assert p.calls and set(p.all("nid").tolist()) == {want}


def test_toptier_samples_reach_pghot_unless_dropped_in_the_handler():
    for drop in (False, True):
        k = Kernel(Machine.preset("laptop"), seed=0)
        p = RecordingPromoter(k)
        det = Ibs(p, sample_period=500, drop_toptier=drop)
        wl = make_workload("multi", {"processes": [
            {"name": "dram", "size": "8MiB", "node": 0, "dist": "uniform", "duration": "1s"},
            {"name": "cxl", "size": "8MiB", "node": 1, "dist": "uniform", "duration": "1s"}]})
        run(k, wl, det, duration_ms=50)
        nodes = set(p.all("nodes").tolist())
        assert nodes == ({1} if drop else {0, 1})
        vm = k.vmstat
        assert vm["hwhint_dram_accesses"] > 0 and vm["hwhint_cxl_accesses"] > 0
        assert vm["hwhint_dram_accesses"] + vm["hwhint_cxl_accesses"] == \
            vm["hwhint_nr_events"] - vm["hwhint_non_lru"]


def test_registered_with_strict_parameters():
    plugins.load_all()
    k = Kernel(Machine.preset("laptop"), seed=0)
    p = RecordingPromoter(k)
    (det,) = plugins.build(plugins.DETECTORS, "detector", Component("ibs"), k, CostModel(), p)
    assert (det.sample_period, det.ops_per_access, det.ring_size, det.drain_ns,
            det.nid_quirk, det.drop_toptier, det.sample_stores) == \
               (10_000, 10.0, 150, 10 * MS, True, False, False)
    for bad, field in (({"sample_period": 0}, "sample_period"), ({"ring": 5}, "ring"),
                       ({"ops_per_access": 0}, "ops_per_access"), ({"drain_ms": 0}, "drain_ms"),
                       ({"nid_quirk": "yes"}, "nid_quirk")):
        with pytest.raises(ConfigError) as ei:
            plugins.build(plugins.DETECTORS, "detector",
                          Component("ibs", bad, path="detectors[1]", where="exp.toml"),
                          k, CostModel(), p)
        assert str(ei.value).startswith(f"exp.toml: detectors[1].{field}:")


@pytest.mark.parametrize("model", ["rate", "exact"])
def test_stores_are_not_sampled_unless_asked(model):
    """With ``sample_stores = false`` (the default) only loads are sampled: a store-only
    workload raises no sample at all, a half-store one about half as many as with stores."""
    def samples(write_fraction, sample_stores):
        k = Kernel(Machine.preset("laptop"), seed=0)
        det = Ibs(RecordingPromoter(k), sample_period=100, ring_size=10**6,
                  sample_stores=sample_stores)
        wl = make_workload("uniform", {"size": "16MiB", "threads": 2, "duration": "1s",
                                       "write_fraction": write_fraction})
        e = run(k, wl, det, model=model, duration_ms=100)
        return k.vmstat["hwhint_nr_events"], accesses(e) * det.per_access

    assert samples(1.0, False)[0] == 0
    n, mean = samples(1.0, True)
    assert abs(n - mean) <= 5 * np.sqrt(mean)
    n, mean = samples(0.5, False)
    assert abs(n - mean / 2) <= 5 * np.sqrt(mean / 2), (n, mean)


def test_drain_hands_over_the_finished_windows_in_time_order():
    """The irq_work drain: the samples of every finished drain window, in time order (stable
    for equal times, as two groups' samples interleave), the rest kept for a later drain;
    per-report jiffies in one call, or one call per jiffy."""
    from tierscan.jiffies import clock_to_jiffies

    class PerReport(RecordingPromoter):
        per_report_jiffies = True

    k = Kernel(Machine.from_dict(machine_dict(["32MiB", "64MiB"])), seed=0)
    rng = np.random.default_rng(4)
    for promoter in (PerReport(k), RecordingPromoter(k)):
        ibs = Ibs(promoter)
        t_all, p_all = [], []
        for tick in range(6):                          # two groups a tick, 10-ms ticks
            for g in range(2):
                t = tick * 10 * MS + np.sort(rng.integers(0, 10 * MS, 40))
                t[5:8] = t[5]                          # equal times
                p = rng.integers(0, 10_000, 40)
                ibs._queue(p, np.full(40, g), t)
                t_all.append(t)
                p_all.append(p)
            if tick % 3 != 1:                          # drains skip some ticks
                ibs._drain((tick + 1) * 10 * MS)
        t_all, p_all = np.concatenate(t_all), np.concatenate(p_all)
        done = t_all < 6 * 10 * MS
        order = np.argsort(t_all[done], kind="stable")
        assert np.array_equal(promoter.all("pfns"), p_all[done][order])
        jiffies = np.concatenate([np.broadcast_to(c["now"], c["pfns"].shape)
                                  for c in promoter.calls])
        assert np.array_equal(jiffies, clock_to_jiffies(t_all[done][order]))
        assert ibs.pending[0].size == 0 and ibs.stats["reported"] == done.sum()
