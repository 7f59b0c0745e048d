"""The loaded latency model inside the engine: both access models share one solve, THP beats
4 KiB pages by TLB reach, page tables placed by the task's policy, kernel traffic, and the idle
model kept bit for bit (issue 12 acceptance)."""

import numpy as np
import pytest

from tierscan import Kernel, Machine
from tierscan.sim.config import config_from_dict
from tierscan.sim.engine import MS, Engine
from tierscan.sim.run import run_experiment
from tierscan.workload.library import make_workload


def laptop_loaded(llc="8MiB", tlb_4k=(64, 512), tlb_2m=(32, 512)) -> dict:
    """The laptop preset with curves on both nodes and a CPU (test figures, not a machine)."""
    d = Machine.preset("laptop").to_dict()
    d["nodes"][0]["memory"] = {
        "type": "ddr5", "channels": 1, "mts": 4800, "link_width": 0, "source": "test",
        "curve": [{"read_ratio": 1.0, "bandwidth_gbps": [0, 15, 30, 36],
                   "latency_ns": [90, 95, 130, 300], "source": "test"},
                  {"read_ratio": 0.5, "bandwidth_gbps": [0, 10, 22, 27],
                   "latency_ns": [90, 100, 140, 320], "source": "test"}]}
    d["nodes"][1]["memory"] = {
        "type": "cxl", "channels": 1, "mts": 0, "link_width": 8, "source": "test",
        "curve": [{"read_ratio": 1.0, "bandwidth_gbps": [0, 10, 20, 25],
                   "latency_ns": [240, 250, 300, 500], "source": "test"}]}
    d["cpu"] = {"llc": llc, "tlb_4k": list(tlb_4k), "tlb_2m": list(tlb_2m), "source": "test"}
    return d


def cfg(workload, *, model="rate", latency_model="loaded", machine=None, **extra):
    return config_from_dict({"seed": 5, "access_model": model, "latency_model": latency_model,
                             "machine": machine or laptop_loaded(), "workload": workload,
                             **extra})


TWO = {"name": "multi", "processes": [
    {"name": "a", "size": "32MiB", "threads": 4, "node": 0, "mlp": 6, "dist": "uniform",
     "write_fraction": 0.5, "accesses": 100000},
    {"name": "b", "size": "32MiB", "threads": 4, "node": 1, "mlp": 6, "dist": "zipf",
     "accesses": 100000}]}


def test_exact_and_rate_agree_on_run_time_within_one_percent():
    times = {}
    for model in ("rate", "exact"):
        r = run_experiment(cfg(TWO, model=model))
        times[model] = r.final["finished_ns"]
    for name in ("a", "b"):
        assert times["exact"][name] == pytest.approx(times["rate"][name], rel=0.01), times
    idle = run_experiment(cfg(TWO, latency_model="idle")).final["finished_ns"]
    assert times["rate"]["a"] > idle["a"] * 1.02     # the load is felt: not the idle sum


def test_thp_beats_4k_on_a_random_workload_larger_than_tlb_reach():
    """64 MiB of uniform random accesses: 16,384 pages against 512 4 KiB entries, but 32 THPs
    fit 512 2 MiB entries. The 128 KiB of PTEs fit the 1 MiB LLC, so a 4 KiB walk costs
    walk_ns + llc_hit_ns (17 ns) on a 240 ns access: 7% slower."""
    runtime = {}
    for thp in (False, True):
        for lm in ("loaded", "idle"):
            w = {"name": "uniform", "size": "64MiB", "threads": 2, "node": 1, "thp": thp,
                 "accesses": 200000}
            runtime[thp, lm] = run_experiment(cfg(w, latency_model=lm,
                                                  machine=laptop_loaded(llc="1MiB"))
                                              ).final["runtime_ns"]
    assert runtime[True, "idle"] == runtime[False, "idle"]      # the old model cannot tell
    assert runtime[True, "loaded"] < runtime[False, "loaded"] * 0.95


def test_page_tables_follow_the_task_policy():
    """Bound to CXL with `numactl --membind` semantics, page walks go to CXL; with the
    default task policy, to the CPU's DRAM node. A tiny LLC makes the walks miss."""
    t = {}
    for pt in ("local", "membind"):
        w = {"name": "uniform", "size": "64MiB", "threads": 2, "node": 1, "page_tables": pt,
             "accesses": 100000}
        t[pt] = run_experiment(cfg(w, machine=laptop_loaded(llc="64KiB"))).final["runtime_ns"]
    assert t["membind"] > t["local"] * 1.1


def test_idle_model_is_bit_identical_to_the_machine_without_curves():
    base = run_experiment(config_from_dict({"seed": 5, "machine": {"preset": "laptop"},
                                            "latency_model": "idle", "workload": TWO}))
    idle = run_experiment(cfg(TWO, latency_model="idle"))
    assert idle.final["finished_ns"] == base.final["finished_ns"]
    assert idle.final["vmstat"] == base.final["vmstat"]
    for key in ("served", "fast_tier_hit_ratio", "accesses_per_thread"):
        assert np.array_equal(idle.series[key], base.series[key], equal_nan=True)
    # a machine without curves or caches runs the idle sum under "loaded" as well
    plain = run_experiment(config_from_dict({"seed": 5, "machine": {"preset": "laptop"},
                                             "workload": TWO}))
    assert plain.final["finished_ns"] == base.final["finished_ns"]


def test_migration_copies_load_both_devices_in_the_next_tick():
    k = Kernel(Machine.from_dict(laptop_loaded()), seed=1)
    wl = make_workload("uniform", {"size": "64MiB", "threads": 4, "node": 1, "mlp": 4,
                                   "accesses": 10**9})
    e = Engine(k, wl, latency_model="loaded", duration_ns=50 * MS)
    g = e.groups[0]
    e.memsys.tick(e, e.tick_ns)
    quiet = g.latency_per_node().copy()
    # a promotion storm: 20,000 pages copied CXL -> DRAM in one 10 ms tick (8 GB/s)
    e.accounting.migrated(0, 20000, [], src_nids=np.ones(20000, np.int64), dst_nid=0)
    e.memsys.tick(e, e.tick_ns)
    assert e.memsys.solution.read[1] > 8.0 and e.memsys.solution.write[0] == pytest.approx(
        20000 * 4096 / (10 * MS))
    assert g.latency_per_node()[1] > quiet[1]
    e.memsys.tick(e, e.tick_ns)                     # the storm is over
    assert g.latency_per_node()[1] == pytest.approx(quiet[1])


def test_latency_model_is_validated():
    from tierscan.errors import ConfigError
    with pytest.raises(ConfigError, match="latency_model"):
        cfg(TWO, latency_model="fast")


def test_ibs_sees_only_llc_misses():
    """IBS's L3-miss filter: with the loaded model its samples are thinned by the group's LLC
    miss ratio. 32 MiB in a 16 MiB LLC: about half the accesses hit; the sample count is the
    misses over the period (5 standard deviations)."""
    from test_ibs import RecordingPromoter     # tests/ is on sys.path (pytest's prepend mode)

    from tierscan.hotness.ibs import Ibs

    k = Kernel(Machine.from_dict(laptop_loaded(llc="16MiB")), seed=0)
    det = Ibs(RecordingPromoter(k), sample_period=2000, ops_per_access=1.0, ring_size=10**6)
    wl = make_workload("uniform", {"size": "32MiB", "threads": 2, "duration": "300ms"})
    e = Engine(k, wl, latency_model="loaded", duration_ns=300 * MS, daemons=[det]).run()
    miss = e.memsys.llc_miss_ratio(e.groups[0])
    assert 0.3 < miss < 0.7
    mean = sum(g.total * g.threads for g in e.groups) * miss / 2000
    n = k.vmstat["hwhint_nr_events"]
    assert abs(n - mean) <= 5 * np.sqrt(mean), (n, mean)
