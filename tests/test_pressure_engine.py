"""Memory pressure in running experiments (issue 13 items 1, 8, 9 and the acceptance list):
kswapd as a daemon, faults during the run in the rate model, swap-in in a run, the pressure
workloads, the steady state of a working set larger than DRAM, ping-pong counting."""

import numpy as np
import pytest
from conftest import machine_dict

from tierscan import ConfigError
from tierscan.hotness.oracle import oracle_hot_set
from tierscan.sim.config import config_from_dict
from tierscan.sim.run import build_engine
from tierscan.workload.library import make_workload

SMALL = machine_dict(["32MiB", "96MiB"])            # 32 MiB DRAM, 96 MiB CXL


def run(workload, detectors=(), engine=None, duration="2s", machine=None, sysfs=None,
        swap=None, debug=False, model="rate", setup=None):
    # a 5 % watermark gap (vm.watermark_scale_factor = 500) so that the PROMO - HIGH headroom
    # kswapd leaves for promotions is not a few dozen pages on these tiny nodes
    doc = {"machine": machine or SMALL, "duration": duration, "workload": workload,
           "detectors": [dict(d) for d in detectors], "access_model": model,
           "sysfs": {"numa/demotion_enabled": True, "vm/watermark_scale_factor": 500,
                     **(sysfs or {})}}
    if engine:
        doc["engine"] = {"name": engine}
    if swap:
        doc["swap"] = swap
    e = build_engine(config_from_dict(doc, "<test>"))
    e.kernel.debug = debug
    if setup is not None:
        setup(e.kernel)
    e.run()
    e.kernel.check()
    return e


def test_kswapd_is_a_daemon_that_demotes_under_promotion_pressure():
    e = run({"name": "cold-filler", "filler": "30MiB", "hot": "8MiB"}, [{"name": "numab2"}],
            duration="6s")
    vm = e.kernel.vmstat
    assert vm["pgpromote_success"] > 0
    assert vm["pgdemote_kswapd"] > 0 and vm["pgsteal_kswapd"] >= vm["pgdemote_kswapd"]
    assert vm["pageoutrun"] > 0
    cpu = e.accounting.cpu_ns
    assert cpu.get("kswapd0", 0) > 0 and "kswapd1" not in cpu   # the CXL node never reclaimed
    assert [d.name for d in e.kthreads] == ["kswapd0", "kswapd1", "flusher"]
    assert e.kernel.sysfs["kernel/numa_balancing"] == 2


def test_rate_model_faults_pages_in_during_the_run():
    e = run({"name": "wss-larger", "size": "16MiB", "alpha": 0.5}, duration="1s")
    res = e.results()["series"]["resident_pages"].sum(axis=1)
    assert res[-1] > res[0] + 1000                   # the working set grew into memory
    vm = e.kernel.vmstat
    assert vm["pgfault"] >= 1000 and vm["pgmajfault"] == 0


def test_run_time_faults_stall_the_threads():
    cold = run({"name": "wss-larger", "size": "16MiB", "alpha": 0.5}, duration="500ms")
    warm = run({"name": "wss-larger", "size": "16MiB", "alpha": 0.5, "populate": True},
               duration="500ms")
    a_cold = cold.results()["final"]["accesses_per_thread"]["wss-larger"]
    a_warm = warm.results()["final"]["accesses_per_thread"]["wss-larger"]
    assert a_cold < a_warm                           # the faults cost the cold run time


def test_swap_in_a_run_brings_pages_back_with_refaults():
    e = run({"name": "wss-larger", "size": "160MiB", "alpha": 0.6}, duration="2s",
            sysfs={"numa/demotion_enabled": False}, swap={"size": "256MiB"})
    vm = e.kernel.vmstat
    assert vm["pswpout"] > 0 and vm["pswpin"] > 0
    assert vm["workingset_refault_anon"] > 0
    # every page read is a fault's own page or one read ahead with it (swap cache, mm/swap.py)
    nr_major = e.kernel.swap.nr_major
    assert vm["pgmajfault"] >= nr_major > 0 and vm["pswpin"] == nr_major + vm["swap_ra"]


def test_swap_config_is_checked():
    with pytest.raises(ConfigError, match="swap.size"):
        config_from_dict({"machine": SMALL, "workload": {"name": "uniform"},
                          "swap": {"size": "lots"}}, "<t>")
    with pytest.raises(ConfigError, match="swap"):
        config_from_dict({"machine": SMALL, "workload": {"name": "uniform"},
                          "swap": {"size": "1GiB", "speed": 3}}, "<t>")


def test_pressure_workloads_check_their_parameters():
    with pytest.raises(ConfigError, match="window"):
        make_workload("cold-filler", {"hot": "8MiB", "window": "16MiB"})
    with pytest.raises(ConfigError, match="nodes"):
        make_workload("bind-spill", {"nodes": []})
    spec = make_workload("cold-filler", {"filler": "4MiB", "hot": "4MiB", "window": "1MiB",
                                         "shift_every": "100ms", "shifts": 2})
    assert len(spec.processes[0].phases) == 3
    assert make_workload("cold-filler", spec.params) == spec


def test_bind_spill_fills_fast_then_slow():
    e = run({"name": "bind-spill", "size": "64MiB", "nodes": [0, 1]}, duration="200ms")
    res = e.results()["series"]["resident_pages"][0]
    assert res[0] > 6000 and res[1] > 6000           # both tiers hold part of the mapping


# ---- the steady state of a working set larger than DRAM, detector by detector -------------------
# Measured on this machine and workload (docs/reproductions.md, "Pressure"). kscand and DAMON
# see accesses through A bits sampled every few hundred ms (kscand: one scan per 0.6-5 s;
# DAMON: 5 ms samples aggregated over 100 ms): on zipf 1.1 over 8192 pages at this access rate
# (5.7 M accesses/s) even the coldest page is accessed 43 times a second, so every page is
# young at every look and nothing ranks them. They are tested on the same mapping with a cold
# tail (zipf 2.0: the page of rank 4096 is accessed 0.2 times a second), below, and their
# alpha-1.1 runs stay expected failures with the measured cause. klruscand + pghot-v3 is not
# here: 10 s of it take minutes of wall time at this size (see /work/notes/pressure.md).
A_BIT_BLIND = ("every page is accessed >= 43 times/s, so every kscand scan / DAMON sample finds "
               "it young: kscand queues every CXL page (in address order, so the low addresses "
               "kswapd just demoted come back first: ping-pong), DAMON finds no cold region")
DETECTORS = {
    "oracle": ([{"name": "oracle", "period_ms": 500}], None),
    "numab2": ([{"name": "numab2"}], None),
    "kscand": pytest.param(([{"name": "kscand"}], None),
                           marks=pytest.mark.xfail(reason=A_BIT_BLIND, strict=True)),
    "damon": pytest.param(([{"name": "damon"}], None),
                          marks=pytest.mark.xfail(reason=A_BIT_BLIND, strict=True)),
}
WSS_MACHINE = machine_dict(["16MiB", "64MiB"])
CLASSIC = 0


def dram_share_of_hot_pages(e) -> float:
    """Of the hottest pages that fit in DRAM (half of it), the fraction DRAM holds."""
    g = e.groups[0]
    w = e.model.rates[g.gid].w
    cap = int(e.kernel.pm.node_present[0]) // 2
    hot = np.argsort(-w, kind="stable")[:cap]
    nodes = e.kernel.node_of(g.mm.translate(g.addrs[hot]))
    return float((nodes == 0).mean())


def steady_state_run(dets, engine=None, alpha=1.1, lru=None):
    """10 s of a 32 MiB zipf mapping on 16 MiB of DRAM, populated in address order (zipf with
    scatter puts the hot pages anywhere, so DRAM starts with about its share of them), in
    memory-tiering mode so kswapd keeps the PROMO headroom promotions use (§3.5). Returns the
    engine and (DRAM share of the hottest pages, DRAM share of all pages)."""
    sysfs = {"kernel/numa_balancing": 2}
    if lru is not None:
        sysfs["lru_gen/enabled"] = lru
    e = run({"name": "wss-larger", "size": "32MiB", "alpha": alpha, "populate": True},
            dets, engine, duration="10s", machine=WSS_MACHINE, sysfs=sysfs)
    g = e.groups[0]
    base = float((e.kernel.node_of(g.mm.translate(g.addrs)) == 0).mean())
    return e, dram_share_of_hot_pages(e), base


def assert_steady_state_with_the_hot_pages_in_dram(e, share, base):
    assert share > base + 0.1, (share, base)          # the detector moved the hot ones up
    hit = e.results()["series"]["fast_tier_hit_ratio"]
    assert np.nanmean(hit[-10:]) > hit[1] + 0.1          # better than where it started
    assert np.nanstd(hit[-10:]) < 0.05                  # steady


@pytest.mark.parametrize("setup", list(DETECTORS.values()), ids=list(DETECTORS))
def test_working_set_larger_than_dram_reaches_a_steady_state_with_the_hot_pages_in_dram(setup):
    dets, engine = setup
    e, share, base = steady_state_run(dets, engine)
    assert_steady_state_with_the_hot_pages_in_dram(e, share, base)
    assert e.kernel.vmstat["pgdemote_kswapd"] > 0


@pytest.mark.parametrize("lru", [None, CLASSIC], ids=["mglru", "classic"])
@pytest.mark.parametrize("det", ["kscand", "damon"])
def test_a_bit_detectors_reach_the_steady_state_on_a_working_set_with_a_cold_tail(det, lru):
    if det == "kscand" and lru == CLASSIC:
        pytest.skip("kscand promotes only PG_active folios on the classic LRU: see "
                    "test_kscand_on_the_classic_lru_promotes_nothing_from_an_unreclaimed_tier")
    e, share, base = steady_state_run([{"name": det}], alpha=2.0, lru=lru)
    assert_steady_state_with_the_hot_pages_in_dram(e, share, base)
    vm = e.kernel.vmstat
    if det == "kscand":                                   # room made by kswapd's demotion
        assert vm["pgdemote_kswapd"] > 0 and vm["pgpromote_success"] > 0
    else:                                                 # by DAMON's own migrate_cold
        (d,) = e.daemons
        assert d.promotions()[0].size > 0 and d.demotions()[0].size > 0


def test_kscand_on_the_classic_lru_promotes_nothing_from_an_unreclaimed_tier():
    """is_hot_page() on the classic LRU is folio_test_active() (with CONFIG_LRU_GEN=y and
    lru_gen disabled, lru_gen_is_active() of gen -1: false as well). Mapped anon folios become
    active only through reclaim's folio_check_references(), and nothing reclaims the CXL node
    here, so every folio kscand queues is refused as not hot: kernel behaviour, not a bug."""
    e, share, base = steady_state_run([{"name": "kscand"}], alpha=2.0, lru=CLASSIC)
    mig = next(d for d in e.daemons if d.name == "kscand-migrate")
    assert mig.stats["tried"] > 1000 and mig.stats["not_hot"] == mig.stats["tried"]
    assert e.kernel.vmstat["pgpromote_success"] == 0


def test_kscand_migration_list_entries_are_checked_against_the_current_mapping():
    """The suspicion that kscand promotes stale pfns (a folio demoted or freed after it was
    queued, its pfn reused) was wrong: kmigrated_promote_folio's re-check (the slot still
    maps that folio) refuses them; on the alpha-1.1 run none was stale, every refusal was the
    unbalanced DRAM node, and the promotions are in the list's (address) order."""
    e, _, _ = steady_state_run([{"name": "kscand"}])
    mig = next(d for d in e.daemons if d.name == "kscand-migrate")
    assert mig.stats["tried"] > 10_000 and mig.stats["not_mapped"] == 0
    assert mig.stats["not_migrated"] > mig.stats["migrated"] > 0
    scan = next(d for d in e.daemons if d.name == "kscand")
    assert scan.stats["young"] == scan.stats["entries"]       # every page young at every scan


def test_damon_promotion_into_a_full_dram_wakes_kswapd():
    """__damon_pa_migrate_folio_list() allocates with (GFP_HIGHUSER_MOVABLE & ~__GFP_RECLAIM)
    | GFP_NOWAIT: __GFP_KSWAPD_RECLAIM stays, so a promotion finding DRAM full wakes its
    kswapd, which demotes and makes room (before: nothing woke it and DAMON promoted
    nothing, every migration failing on the full node)."""
    e = run({"name": "wss-larger", "size": "32MiB", "alpha": 1.1, "populate": True},
            [{"name": "damon"}], duration="3s", machine=WSS_MACHINE,
            sysfs={"kernel/numa_balancing": 2})
    (d,) = e.daemons
    assert e.kernel.vmstat["pgdemote_kswapd"] > 0
    assert d.promotions()[0].size > 0


def test_ping_pong_is_counted_when_demoted_pages_come_back():
    def wss(window_ns):
        return run({"name": "wss-larger", "size": "32MiB", "alpha": 1.1, "populate": True},
                   [{"name": "numab2"}], duration="10s", machine=WSS_MACHINE,
                   sysfs={"kernel/numa_balancing": 2},
                   setup=lambda k: setattr(k, "pingpong_window_ns", window_ns)).kernel.vmstat
    vm = wss(10_000_000_000)
    assert vm["pgdemote_kswapd"] > 0 and vm["pgpromote_success"] > 0
    assert 0 < vm["tierscan_promote_pingpong"] <= vm["pgpromote_success"]
    assert wss(0)["tierscan_promote_pingpong"] == 0   # nothing comes back that fast


def test_accesses_before_anything_is_mapped_are_served_by_no_node():
    """Bound to the CXL node and only storing (no zero page, which sits on node 0), the hot
    set faults in during the run: no access is ever served by the CPU's DRAM node (before:
    the accesses of the ticks before the first fault were counted there, as if the unmapped
    pages were local)."""
    e = run({"name": "cold-filler", "filler": "4MiB", "hot": "4MiB", "nodes": [1],
             "write_fraction": 1.0}, duration="100ms")
    served = np.asarray(e.results()["series"]["served"])
    assert served[:, 1].sum() > 0 and served[:, 0].sum() == 0


def test_cold_filler_hot_first_maps_the_hot_set_below_the_filler():
    e = run({"name": "cold-filler", "filler": "8MiB", "hot": "4MiB", "hot_first": True},
            duration="20ms")
    g = e.groups[0]
    w = e.model.rates[g.gid].w
    hot = g.addrs[w > 0]
    assert hot.size == 1024 and hot.max() < g.addrs[w == 0].min()
    assert make_workload("cold-filler", {"hot_first": True}).params["hot_first"] is True


# ---- the pressure scenario at full-scale per-page access rates ------------------------------------
# docs/reproductions.md "Pressure" runs the laptop machine at 1/32 (32 MiB DRAM) with a 48 MiB
# zipf-1.1 working set: it stands for 1.5 GiB on the 1 GiB laptop. Shrinking the footprint but
# not the thread's access rate gives each page 32x (at the zipf tail ~53x) the accesses it gets
# at full scale. A thread's rate does not depend on its footprint here (the same per-node
# latencies, the same DRAM share in proportion), so the scenario gives the thread compute time
# between accesses instead: compute_ns = t * (1/scale - 1), with t the per-access time without
# it, makes the thread's rate scale x the full-scale one and each page's rate the full-scale
# rate of the pages it stands for.
PRESSURE_SCALE = 1 / 32
FULL_PAGES = (1536 << 20) >> 12                      # 1.5 GiB of 4 KiB pages
SCALED_PAGES = FULL_PAGES // 32
PRESSURE_COMPUTE_NS = 5400                           # docs/reproductions.md, "Pressure"
KSCAND_MIN_PERIOD_S = 0.6                            # kscand's fastest scan period (§4)


def pressure_scenario(compute_ns=0.0, duration="20ms", dets=(), engine=None, lru=None):
    """examples/pressure.toml at 1/32 with the 48 MiB working set."""
    sysfs = {"kernel/numa_balancing": 2, "vm/watermark_scale_factor": 200}
    if lru is not None:
        sysfs["lru_gen/enabled"] = lru
    return run({"name": "wss-larger", "size": "48MiB", "alpha": 1.1, "populate": True,
                "compute_ns": compute_ns}, dets, engine, duration=duration,
               machine={"preset": "laptop", "scale": PRESSURE_SCALE}, sysfs=sysfs)


def thread_rate(e) -> float:
    """Accesses per second of the scenario's one thread."""
    return e.results()["final"]["accesses_per_thread"]["wss-larger"] / (e.now / 1e9)


def test_the_scaled_pressure_scenario_gives_each_page_its_full_scale_access_rate():
    from tierscan.workload.distributions import Zipf

    plain = pressure_scenario()
    rate = thread_rate(plain)                        # the full-scale thread's rate too
    t_ns = 1e9 / rate
    # the documented compute time is t * (1/scale - 1) for the measured t (within 5 %)
    assert PRESSURE_COMPUTE_NS == pytest.approx(t_ns * (1 / PRESSURE_SCALE - 1), rel=0.05)
    dilated = thread_rate(pressure_scenario(PRESSURE_COMPUTE_NS))
    assert dilated == pytest.approx(rate * PRESSURE_SCALE, rel=0.05)

    z = Zipf(1.1)
    full = rate * z.rank_weights(FULL_PAGES)         # accesses/s per page, hottest first
    small = rate * z.rank_weights(SCALED_PAGES)
    small_dilated = dilated * z.rank_weights(SCALED_PAGES)
    q = np.array([0.5, 0.9, 1.0])                    # the median, 90th-percentile, coldest page
    at = lambda r: r[np.minimum((q * r.size).astype(int), r.size - 1)]
    # full scale: a cold tail, the median page accessed less than once per kscand scan period
    assert at(full)[0] * KSCAND_MIN_PERIOD_S < 1 and at(full)[2] < 0.6
    # the scaled-down scenario without the compute time: every page accessed more than ten
    # times per kscand period, so every scan finds every page young (the scale artifact)
    assert small[-1] * KSCAND_MIN_PERIOD_S > 10
    assert (at(small) / at(full) > 30).all()
    # with it: within a factor 2 of full scale at every quantile (zipf is not self-similar:
    # the tail ratio is 32**0.1 * H(1.5 GiB) / H(48 MiB) = 1.66)
    ratio = at(small_dilated) / at(full)
    assert ((ratio > 1) & (ratio < 2)).all(), ratio


# The steady state at full-scale per-page rates, every detector under both LRUs (10 s runs of
# 20-70 s wall each: slow). Measured causes of the expected failures:
KSCAND_BLIND = ("at full-scale rates zipf 1.1 is still flat at kscand's period: the median page "
                "is accessed ~1.8 times/s, so ~72 % of the entries are young at every 0.6-s "
                "scan; kscand queues nearly every CXL page in address order and the migrator "
                "promotes what the PROMO headroom takes (3,213 of 42,940 tried)")
PGHOT_SLOW = ("pghot v3 makes a record READY at the third hint fault (freq > 2), and NUMA "
              "balancing in mode 2 doubles the scan period at every pass (no fault statistics "
              "for slow-tier pages): passes at 1, 3, 7, 15 s, so in 10 s the only READY burst "
              "comes at ~7 s (see test_numab2_pghot_promotes_in_bursts_three_numa_passes_apart), "
              "and the ~3,200 pages it promotes are those touched since the last pass, nearly "
              "every CXL page at these rates, not the hottest: hit ratio 0.405 -> 0.394 (MGLRU), "
              "0.405 -> 0.413 (classic) by 10 s")
IBS_SPARSE = ("IBS samples one op in a fixed number: at this thread's rate (full-scale per-page "
              "rates) 930 samples in 10 s, 247 on CXL; pghot's READY needs 3 samples of a page "
              "within 5 s, which only the ~24 hottest CXL pages get. They carry most of zipf's "
              "head (hit ratio 0.405 -> 0.80), but the DRAM share of the 4,096 hottest pages "
              "does not move (0.562 -> 0.562)")
KSCAND_CLASSIC = ("is_hot_page() on the classic LRU is folio_test_active(), and mapped anon folios "
                  "become active only through reclaim's folio_check_references(). Here nothing "
                  "reclaims: with no promotion there is no pressure on DRAM after populate "
                  "(pgscan_kswapd 0, pgactivate 0 in 10 s), so every folio kscand queues is "
                  "refused as not hot and nothing is promoted: kernel behaviour (see "
                  "test_kscand_on_the_classic_lru_promotes_nothing_from_an_unreclaimed_tier)")
REAL_RATES = {
    "numab2-mglru": (([{"name": "numab2"}], None), None),
    "numab2-classic": (([{"name": "numab2"}], None), CLASSIC),
    "damon-mglru": (([{"name": "damon"}], None), None),
    "damon-classic": (([{"name": "damon"}], None), CLASSIC),
    "ibs-mglru": pytest.param((([{"name": "ibs"}], "pghot-v3"), None),
                              marks=pytest.mark.xfail(reason=IBS_SPARSE, strict=True)),
    "ibs-classic": pytest.param((([{"name": "ibs"}], "pghot-v3"), CLASSIC),
                                marks=pytest.mark.xfail(reason=IBS_SPARSE, strict=True)),
    "klruscand-mglru": (([{"name": "klruscand"}], "pghot-v3"), None),
    "kscand-mglru": pytest.param((([{"name": "kscand"}], None), None),
                                 marks=pytest.mark.xfail(reason=KSCAND_BLIND, strict=True)),
    "numab2-pghot-mglru": pytest.param((([{"name": "numab2-pghot"}], "pghot-v3"), None),
                                       marks=pytest.mark.xfail(reason=PGHOT_SLOW, strict=True)),
    "kscand-classic": pytest.param((([{"name": "kscand"}], None), CLASSIC),
                                   marks=pytest.mark.xfail(reason=KSCAND_CLASSIC, strict=True)),
    "numab2-pghot-classic": pytest.param((([{"name": "numab2-pghot"}], "pghot-v3"), CLASSIC),
                                         marks=pytest.mark.xfail(reason=PGHOT_SLOW, strict=True)),
}


@pytest.mark.slow
@pytest.mark.parametrize("setup", list(REAL_RATES.values()), ids=list(REAL_RATES))
def test_pressure_scenario_at_full_scale_rates_reaches_the_steady_state(setup):
    (dets, engine), lru = setup
    e = pressure_scenario(PRESSURE_COMPUTE_NS, "10s", dets, engine, lru)
    g = e.groups[0]
    base = float((e.kernel.node_of(g.mm.translate(g.addrs)) == 0).mean())
    assert_steady_state_with_the_hot_pages_in_dram(e, dram_share_of_hot_pages(e), base)


@pytest.mark.slow
def test_numab2_pghot_promotes_in_bursts_three_numa_passes_apart():
    """Where numab2-pghot's candidates go (diagnosed with counters): pghot v3 makes a record
    READY at its third hint fault (freq > 2; hint-fault records never expire), and NUMA
    balancing in mode 2 records no fault statistics for slow-tier pages, so
    update_task_scan_period() doubles the period at every pass (1, 2, 4, 8 s): passes at 1, 3
    and 7 s. Nothing is promoted before the third pass; then every CXL page the workload
    touched after each pass is READY at once (all of them, at these rates), kmigrated promotes
    as fast as kswapd makes PROMO headroom, and the rest of the burst is refused unbalanced
    with its record cleared (§1.4 step 2). The promoted pages are a sample of the CXL pages,
    not the hottest."""
    e = pressure_scenario(PRESSURE_COMPUTE_NS, "8s", [{"name": "numab2-pghot"}], "pghot-v3")
    vm = e.kernel.vmstat
    (numab,) = [d for d in e.daemons if d.name == "numab2-pghot"]
    assert [int(p) for t in numab.tasks for p in t.scan_period] == [8000]
    assert numab.stats["passes"] == 3
    s = e.results()["series"]
    t = np.asarray(s["time_ns"]) / 1e9
    promoted = np.asarray(s["pgpromote_success"])
    assert promoted[t < 7.0].sum() == 0 and promoted.sum() > 0
    assert vm["pghot_kmigrated_ready"] == vm["pgpromote_candidate"]
    # every hint fault is on a CXL page, one per pass; READY ones are those of the 3rd pass
    assert vm["pghot_kmigrated_ready"] <= vm["numa_hint_faults"] // 3 + 1
    assert vm["pgpromote_success"] + vm["pgmigrate_prepare_fail_unbalanced"] >= \
        0.9 * vm["pghot_kmigrated_ready"]
