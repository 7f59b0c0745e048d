"""Daemons take time (issue 11 §1, second defect): a kthread is one CPU. The CPU time a run
charges advances the daemon's own clock; it is not run again before that clock, and its work
does not take effect earlier than its CPU reaches it (sim/engine.py ``Daemon``)."""

from __future__ import annotations

import numpy as np

from tierscan import Kernel, Machine
from tierscan.sim.config import config_from_dict
from tierscan.sim.costs import CostModel
from tierscan.sim.engine import MS, Daemon, Engine
from tierscan.sim.run import build_engine
from tierscan.workload.library import make_workload

TICK = 10 * MS


class Burner(Daemon):
    """Charges ``cost_ns`` of CPU every run and records when it ran."""

    def __init__(self, name, period_ms, cost_ns, kthread=True):
        self.name, self.period_ns, self.cost_ns, self.kthread = name, period_ms * MS, cost_ns, \
            kthread
        self.ran = []

    def run(self, engine):
        self.ran.append(engine.now)
        engine.charge(self.cost_ns)


class Queue(Daemon):
    """A migrator-like daemon with ``n`` items of ``item_ns`` each: takes what its CPU can
    do before its work would land early, yields with the rest."""

    name = "queue"

    def __init__(self, n, item_ns, period_ms=100):
        self.left, self.item_ns, self.period_ns = n, item_ns, period_ms * MS
        self.done_at = []                      # (time the effect lands, items done)

    def run(self, engine):
        if not self.left:
            return False
        take = min(self.left, max(1, int(engine.cpu_left_ns() // self.item_ns)))
        engine.charge(take * self.item_ns)
        self.left -= take
        self.done_at.append((engine.now, take))
        return self.left > 0


def engine_with(daemons, ms=1000):
    k = Kernel(Machine.preset("laptop"), seed=0)
    wl = make_workload("uniform", {"size": "4MiB", "threads": 1, "duration": f"{ms}ms"})
    return Engine(k, wl, daemons=daemons, duration_ns=ms * MS).run()


def test_a_kthread_that_overruns_its_period_runs_when_its_cpu_is_free():
    """Period 100 ms, 250 ms of CPU a run: it runs at 100, 350, 600, 850 ms (each start is
    the previous start plus its CPU time), busy all the time from 100 ms on."""
    d = Burner("burner", 100, 250 * MS)
    e = engine_with([d])
    assert d.ran == [100 * MS, 350 * MS, 600 * MS, 850 * MS]
    util = e.results()["final"]["daemon_utilisation"]["burner"]
    assert util == d.busy_ns / e.now == 4 * 250 / 1000


def test_a_kthread_within_its_period_keeps_its_period():
    d = Burner("burner", 100, 30 * MS)
    engine_with([d])
    assert d.ran == [t * MS for t in range(100, 1001, 100)]


def test_work_that_is_not_a_kthread_is_not_delayed():
    """NUMA balancing's task_work, IBS's NMIs, the oracle: CPU reported, never serialised."""
    d = Burner("tasks", 100, 250 * MS, kthread=False)
    e = engine_with([d])
    assert len(d.ran) == 10
    assert e.results()["final"]["daemon_utilisation"]["tasks"] == 2.5


def test_a_yielding_daemon_does_one_cpu_of_work_per_unit_of_time():
    """10,000 items of 100 µs (1 s of CPU) queued at 100 ms: the work is spread over a
    second, each run's effect landing no earlier than one tick before the CPU reaches it."""
    d = Queue(10_000, 100_000)
    e = engine_with([d], ms=1500)
    assert d.left == 0
    first = d.done_at[0][0]
    done = 0
    for t, n in d.done_at:
        done += n
        # the CPU has reached at most (t - first + one tick) / 100 µs items by time t
        assert done * 100_000 <= t - first + TICK + 100_000, (t, done)
    last = d.done_at[-1][0]
    assert abs((last - first) - 1000 * MS) <= 2 * TICK
    assert d.busy_ns == 10_000 * 100_000
    assert e.results()["final"]["daemon_utilisation"]["queue"] <= 1.0


def test_kscand_migrator_promotes_no_faster_than_its_cpu():
    """The issue's case, scaled: kscand queues all 16,384 pages of a uniformly accessed
    mapping at its first scan; at 100 µs a migration (1.64 s of CPU) its migrator cannot
    promote them all at once. By any time t, it has promoted at most what one CPU migrates
    from its first run to t plus one tick; it is never charged more CPU than elapsed."""
    cfg = config_from_dict({
        "seed": 0, "machine": {"preset": "laptop"}, "duration": "1s",
        "costs": {"migrate_page_ns": 100_000},
        "workload": {"name": "uniform", "size": "64MiB", "threads": 1},
        "detectors": [{"name": "kscand", "scan_delay_ms": 0}]})
    e = build_engine(cfg).run()
    mig = next(d for d in e.daemons if d.name == "kscand-migrate")
    ns = np.concatenate(mig.promoted_ns)
    assert ns.size > 1000
    t, count = np.unique(ns, return_counts=True)
    done = np.cumsum(count)
    assert (done * 100_000 <= t - t[0] + TICK + 100_000).all(), (t[-1], done[-1])
    assert ns.size < 16384                          # 1.64 s of CPU does not fit in 1 s
    util = e.results()["final"]["daemon_utilisation"]["kscand-migrate"]
    assert util <= 1.0 + TICK / e.now
    assert e.accounting.cpu_ns["kscand-migrate"] <= e.now - t[0] + TICK + 100_000


def promotions_within_cpu(ns, first_run_ns, per_page_ns):
    """By every promotion time t, at most (t - first run + one tick) / price pages moved."""
    t, count = np.unique(ns, return_counts=True)
    return bool((np.cumsum(count) * per_page_ns <= t - first_run_ns + TICK + per_page_ns).all())


def test_kmigrated_walk_yields_and_resumes_within_its_cpu():
    """klruscand reports all 16,384 pages at once; pghot (freq_threshold 0) readies them all;
    at 100 µs a migration kmigrated1 needs 1.64 s of CPU, so its walk yields and resumes,
    and its promotions follow its CPU."""
    cfg = config_from_dict({
        "seed": 0, "machine": {"preset": "laptop"}, "duration": "1s",
        "costs": {"migrate_page_ns": 100_000},
        "workload": {"name": "uniform", "size": "64MiB", "threads": 1},
        "detectors": [{"name": "klruscand", "interval_ms": 100}],
        "engine": {"name": "pghot-v3", "freq_threshold": 0}})
    e = build_engine(cfg).run()
    pghot = next(d for d in e.daemons if d.name == "pghot-v3")
    ns = np.concatenate(pghot.promoted_ns)
    assert 1000 < ns.size < 16384
    assert promotions_within_cpu(ns, 100 * MS, 100_000)
    util = e.results()["final"]["daemon_utilisation"]["kmigrated1"]
    assert 0.5 < util <= 1.0 + TICK / e.now


def test_kpromoted_pass_yields_and_resumes_within_its_cpu():
    """The same with kpromoted v0 (interval 100 ms, freq_threshold 0): its pass over the
    records stops at what its CPU affords and resumes in walk order."""
    cfg = config_from_dict({
        "seed": 0, "machine": {"preset": "laptop"}, "duration": "1s",
        "costs": {"migrate_page_ns": 100_000},
        "workload": {"name": "uniform", "size": "64MiB", "threads": 1},
        "detectors": [{"name": "klruscand", "interval_ms": 100}],
        "engine": {"name": "kpromoted-v0", "interval_ms": 100, "freq_threshold": 0}})
    e = build_engine(cfg).run()
    eng = next(d for d in e.daemons if d.name == "kpromoted-v0")
    ns = np.concatenate(eng.promoted_ns)
    assert 1000 < ns.size < 16384
    assert promotions_within_cpu(ns, 100 * MS, 100_000)
    assert np.unique(np.concatenate(eng.promoted_pfns)).size == ns.size   # each once
