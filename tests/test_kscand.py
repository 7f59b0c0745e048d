"""kscand (promotion-spec §4): the per-mm period/size adaptation table and its clamps, V3's
second-consecutive-observation rule (and V2's rule), queuing each folio at most once per scan,
the migrator's re-checks (still mapped, still hot) and target node, never migrating a toptier
folio, A bits drawn by the rate model before the test and cleared after, and runs in both
access models.

The laptop machine: node 0 1 GiB DRAM with the CPUs, node 1 2 GiB CXL; workload memory starts
on node 1. Most tests call the scanner and the migrator by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import machine_dict
from tierscan import Kernel, Machine
from tierscan.errors import ConfigError
from tierscan.hotness.kscand import (
    SCAN_PERIOD_MAX_MS, SCAN_PERIOD_MIN_MS, SCAN_SIZE_MAX, SCAN_SIZE_MIN, Kscand,
    kscand_update_mmslot_info,
)
from tierscan.mm.constants import _PAGE_ACCESSED
from tierscan.mm.memory import split_huge_pmds
from tierscan.mm.vmscan import inc_max_seq
from tierscan.sim import plugins
from tierscan.sim.config import Component
from tierscan.sim.costs import CostModel
from tierscan.sim.engine import MS, Engine
from tierscan.workload.library import make_workload

MB, GB = 1 << 20, 1 << 30


def setup(size="4MiB", *, model="exact", machine=None, workload=None, costs=None, seed=0,
          **kw):
    k = Kernel(machine or Machine.preset("laptop"), seed=seed, debug=model == "exact")
    wl = workload or make_workload("uniform", {"size": size, "duration": "600s"})
    d = Kscand(**kw)
    d.log_queued = True
    e = Engine(k, wl, access_model=model, daemons=[d, d.migrator], costs=costs,
               duration_ns=600_000 * MS)
    return k, e, d, e.groups[0]


def clear_young(g):
    g.mm.pt.pte[g.slots] &= ~_PAGE_ACCESSED


def queued_pages(d, g):
    """Page indexes (in the group's page list) of the last scan's queued folios."""
    _, heads = d.queued_log[-1]
    pfns = g.mm.translate(g.addrs)
    return np.flatnonzero(np.isin(pfns, heads))


# ---- the adaptation table (§4) ----------------------------------------------------------
def test_adaptation_table_cases():
    # X = 0, Y = 0: period +15%, size halved
    assert kscand_update_mmslot_info(2000, 1 * GB, 0, 0) == (2300, 512 * MB, 0)
    # X > 0, Y > 0: period -15%, size doubled; total = Y + (X >> 4)
    assert kscand_update_mmslot_info(2000, 1 * GB, 1000, 1000) == (1700, 2 * GB, 1062)
    # X > 0, Y = 0 (X >> 4 below 256): period x8, size unchanged
    assert kscand_update_mmslot_info(2000, 1 * GB, 1000, 0) == (5000, 1 * GB, 0)
    assert kscand_update_mmslot_info(600, 1 * GB, 1000, 0) == (4800, 1 * GB, 0)
    # X = 0, Y > 0: period /8, size to the maximum
    assert kscand_update_mmslot_info(4000, 1 * GB, 0, 300) == (600, 4 * GB, 300)
    assert kscand_update_mmslot_info(5000, 256 * MB, 0, 300) == (625, 4 * GB, 300)
    # totals below 256 count as 0 (KSCAND_IGNORE_SCAN_THR)
    assert kscand_update_mmslot_info(2000, 1 * GB, 0, 255) == (2300, 512 * MB, 0)
    assert kscand_update_mmslot_info(2000, 1 * GB, 0, 256) == (600, 4 * GB, 256)
    # the code picks the case on (X, total): a large X keeps "both > 0" although Y = 0
    assert kscand_update_mmslot_info(2000, 1 * GB, 8192, 0) == (1700, 2 * GB, 512)


def test_adaptation_clamps():
    p, s, x = 2000, 1 * GB, 0
    for _ in range(20):                                  # idle mm: slower, smaller
        p, s, x = kscand_update_mmslot_info(p, s, x, 0)
    assert (p, s) == (SCAN_PERIOD_MAX_MS, SCAN_SIZE_MIN) == (5000, 256 * MB)
    for _ in range(20):                                  # busy mm: faster, bigger
        p, s, x = kscand_update_mmslot_info(p, s, x, 10_000)
    assert (p, s) == (SCAN_PERIOD_MIN_MS, SCAN_SIZE_MAX) == (600, 4 * GB)
    rng = np.random.default_rng(1)
    for y in rng.choice([0, 10, 255, 256, 1000, 100_000], size=2000):
        p, s, x = kscand_update_mmslot_info(p, s, x, int(y))
        assert 600 <= p <= 5000 and 256 * MB <= s <= 4 * GB


# ---- the scan: who gets queued ---------------------------------------------------------------
@pytest.mark.parametrize("version", ["v2", "v3"])
def test_second_consecutive_observation_rule(version):
    """Scan 1 finds every A bit clear, then pages 0-99 are touched, scan 2, then pages 0-49
    are touched, scan 3. V3 queues a page only when its entry is young now and the previous
    visit also found it young (its folio was not idle): at scan 3 only pages 0-49. V2 queues
    every folio that is not idle (all of them at the first scan, since fresh folios are not
    idle) or was ever young (the young flag is sticky)."""
    k, e, d, g = setup("4MiB", version=version)
    slot = d.slots[0]
    clear_young(g)
    d.scan_mm(e, slot)
    q1 = queued_pages(d, g)
    g.mm.access(g.addrs[:100])
    d.scan_mm(e, slot)
    q2 = queued_pages(d, g)
    g.mm.access(g.addrs[:50])
    d.scan_mm(e, slot)
    q3 = queued_pages(d, g)
    if version == "v3":
        assert q1.size == 0 and q2.size == 0
        assert (q3 == np.arange(50)).all()
    else:
        assert q1.size == g.n_pages
        assert (q2 == np.arange(100)).all()
        assert (q3 == np.arange(100)).all()
    # every scan cleared the A bits it found set
    assert not (g.mm.pt.pte[g.slots] & _PAGE_ACCESSED).any()
    assert k.vmstat["nr_kscand_mm_scans"] == 3


def test_v3_first_observation_of_a_never_scanned_folio_counts():
    """A folio no scan has marked idle yet is "not idle before": a young first visit queues
    it (fresh PTEs are young, so the first scan after populating queues everything)."""
    k, e, d, g = setup("4MiB")
    d.scan_mm(e, d.slots[0])
    assert queued_pages(d, g).size == g.n_pages


def test_a_folio_is_queued_at_most_once_per_scan():
    """A THP mapped by 512 PTEs (split PMD) is one folio: queued once, not 512 times."""
    wl = make_workload("uniform", {"size": "4MiB", "thp": True, "duration": "600s"})
    k, e, d, g = setup(workload=wl)
    pmds = np.unique(g.slots >> 9)
    assert g.mm.pt.pmd_is_leaf(pmds).all()
    split_huge_pmds(g.mm, pmds)
    d.scan_mm(e, d.slots[0])
    _, heads = d.queued_log[-1]
    assert heads.size == 2 == np.unique(heads).size
    assert k.vmstat["nr_kscand_migadded"] == 2
    assert d.stats["entries"] == 1024


def test_thp_leaf_is_one_entry_and_its_pmd_a_bit_is_cleared():
    wl = make_workload("uniform", {"size": "4MiB", "thp": True, "duration": "600s"})
    k, e, d, g = setup(workload=wl)
    pmds = np.unique(g.slots >> 9)
    d.scan_mm(e, d.slots[0])
    assert d.stats["entries"] == 2 and d.stats["young"] == 2
    assert not (g.mm.pt.pmd[pmds] & _PAGE_ACCESSED).any()
    d.migrator.run(e)
    assert k.vmstat["thp_migration_success"] == 2
    assert k.vmstat["pgpromote_success"] == 1024


def test_toptier_folios_are_scanned_but_never_queued():
    k, e, d, g = setup("4MiB", version="v2")
    g.mm.move_pages(g.addrs[:256], 0)
    d.scan_mm(e, d.slots[0])                             # v2: every fresh folio is accessed
    q = queued_pages(d, g)
    assert (q == np.arange(256, 1024)).all()
    assert k.vmstat["nr_kscand_toptier"] == 256
    assert d.slots[0].target_node == 0                   # the toptier node it scanned most


# ---- the migrator -----------------------------------------------------------------------
def test_migrator_promotes_queued_folios_to_the_target():
    k, e, d, g = setup("4MiB")
    d.scan_mm(e, d.slots[0])
    assert d.slots[0].pending() == 1024
    e.accounting.current = d.migrator                    # as the engine does for a daemon
    d.migrator.run(e)
    e.accounting.current = None
    assert d.slots[0].pending() == 0
    assert (k.node_of(g.mm.translate(g.addrs)) == 0).all()
    assert k.vmstat["nr_kscand_migrated"] == 1024
    assert k.vmstat["pgpromote_success"] == 1024 == k.vmstat["numa_pages_migrated"]
    assert e.accounting.cpu_ns["kscand-migrate"] > 0     # the kthread pays for the copies


def test_migrator_rechecks_hotness_and_the_mapping():
    k, e, d, g = setup("4MiB")
    d.scan_mm(e, d.slots[0])
    g.mm.move_pages(g.addrs[:24], 0)                     # moved meanwhile: a new folio
    lv = k.lruvec(k.root_memcg, 1)
    for _ in range(2):                                   # age twice: the gen goes inactive
        assert inc_max_seq(lv, lv.lrugen.max_seq, 200)
    d.migrator.run(e)
    st = d.migrator.stats
    assert st["not_mapped"] == 24
    assert st["not_hot"] == 1000
    assert st["migrated"] == 0
    assert k.vmstat["nr_kscand_migrate_failed"] == 1024
    assert k.vmstat["pgpromote_success"] == 0


def test_migrator_target_is_the_toptier_node_scanned_most():
    m = Machine.from_dict(machine_dict(["64MiB", "64MiB", "256MiB"], cpus=[[0], [1], []],
                                       kinds=["dram", "dram", "cxl"]))
    wl = make_workload("uniform", {"size": "4MiB", "node": 2, "duration": "600s"})
    k, e, d, g = setup(machine=m, workload=wl, version="v2")
    g.mm.move_pages(g.addrs[:100], 0)
    g.mm.move_pages(g.addrs[100:400], 1)
    d.scan_mm(e, d.slots[0])
    assert d.slots[0].target_node == 1
    d.migrator.run(e)
    assert (k.node_of(g.mm.translate(g.addrs[400:])) == 1).all()
    # with no toptier page scanned, the sysfs target_node
    k, e, d, g = setup(machine=m, workload=wl, target_node=1)
    d.scan_mm(e, d.slots[0])
    assert d.slots[0].target_node == 1


def test_config_errors():
    k = Kernel(Machine.preset("laptop"), seed=0)
    with pytest.raises(ConfigError, match="not a toptier node"):
        plugins.build(plugins.DETECTORS, "detector", Component("kscand", {"target_node": 1}),
                      k, CostModel(), None)
    with pytest.raises(ConfigError, match="version"):
        plugins.build(plugins.DETECTORS, "detector", Component("kscand", {"version": "v4"}),
                      k, CostModel(), None)
    scanner, migrator = plugins.build(plugins.DETECTORS, "detector", Component("kscand"), k,
                                      CostModel(), None)
    assert (scanner.name, migrator.name) == ("kscand", "kscand-migrate")
    assert scanner.period_ns == migrator.period_ns == 20 * MS
    assert scanner.scan_period_ms == 2000 and scanner.scan_size == GB
    assert scanner.version == "v3" and scanner.mms_to_scan == 4096


# ---- resume address ---------------------------------------------------------------------
@pytest.mark.parametrize("faithful", [True, False])
def test_resume_address_after_vmas_without_page_tables(faithful):
    """The posted code resumes just past the last PTE any walk visited. When the scan stops
    in a VMA with no page tables, that address lies in an earlier VMA, so the next scan starts
    at the same empty VMA again and a VMA after it is never reached. With faithful quirks off
    the scan resumes after the last VMA walked."""
    k, e, d, g = setup("4MiB")
    k.faithful_quirks = faithful
    mm = g.mm
    mm.mmap(600 * MB)                                    # never touched: no page tables
    third = mm.mmap(4 * MB, populate=True)
    slot = d.slots[0]
    slot.scan_size = 256 * MB
    reached = []
    for _ in range(3):
        d.scan_mm(e, slot)
        slot.scan_size = 256 * MB
        reached.append(slot.address)
    third_pages = mm.translate(np.arange(third.start, third.end, 4096, dtype=np.uint64))
    scanned_third = not (mm.pt.pte[mm.pt.slot(third.start):mm.pt.slot(third.end)]
                         & _PAGE_ACCESSED).any()
    if faithful:
        assert reached == [g.mm.vmas[0].end] * 3
        assert not scanned_third                          # its A bits were never cleared
    else:
        assert scanned_third
    assert (k.node_of(third_pages) >= 0).all()


# ---- whole runs ---------------------------------------------------------------------------
def hotset(size, duration="600s"):
    return make_workload("hotset", {"size": size, "hot_fraction": 0.05, "hot_share": 0.99,
                                    "duration": duration})


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_rate_model_a_bits_are_drawn_before_the_test(version):
    """Accesses slowed to 10k/s over 64 MiB: a hot page (5% of pages, 99% of accesses) is
    touched ~12 times a second, a cold one once in ~150 s. The scan reads the A bits the rate
    model draws. V3 promotes essentially only the hot set; V2 promotes every page (the first
    scan finds every fresh folio not idle)."""
    k, e, d, g = setup(workload=hotset("64MiB"), model="rate", version=version,
                       costs=CostModel(compute_ns_per_access=100_000))
    clear_young(g)                                       # populating left them young
    w = g.phase.distribution.weights(g.n_pages)
    hot = w > np.median(w)
    e.duration_ns = 3000 * MS
    e.run()
    on_top = k.node_of(g.mm.translate(g.addrs)) == 0
    if version == "v3":
        assert on_top[hot].mean() > 0.95
        assert on_top[~hot].mean() < 0.03
    else:
        assert on_top.all()
    # every folio migrated came from a lower tier (none from the top tier)
    old = np.concatenate(d.migrator.promoted_pfns)
    assert (k.node_of(old) == 1).all()


@pytest.mark.parametrize("model", ["rate", "exact"])
def test_runs_keep_the_invariants(model):
    k, e, d, g = setup(workload=hotset("8MiB"), model=model, scan_delay_ms=100)
    seen = []

    def check(engine):
        for s in d.slots:
            assert 600 <= s.scan_period <= 5000
            assert 256 * MB <= s.scan_size <= 4 * GB
        seen.append(engine.now)

    e.progress = check
    e.duration_ns = (3000 if model == "rate" else 800) * MS
    e.run()
    assert seen
    assert k.vmstat["nr_kscand_mm_scans"] >= 2
    assert k.vmstat["pgpromote_success"] > 0
    assert k.vmstat["pgpromote_success"] == k.vmstat["nr_kscand_migrated"]
    old = np.concatenate(d.migrator.promoted_pfns)
    assert (k.node_of(old) == 1).all()                   # no toptier folio migrated
    for mm_id, heads in d.queued_log:                    # once per folio per scan
        assert heads.size == np.unique(heads).size
    assert e.accounting.cpu_ns["kscand"] > 0
    k.check()


# ---- versions (docs/detectors.md "Versions") --------------------------------------------
def test_versions_set_the_posted_sleeps_and_period_floor():
    k = Kernel(Machine.preset("laptop"), seed=0)
    built = {v: plugins.build(plugins.DETECTORS, "detector", Component("kscand", {"version": v}),
                              k, CostModel(), None) for v in ("v1", "v2", "v3")}
    # kmmscand_scan_sleep_ms = 16; kmmmigrated: msleep(20) + a 20-ms wait
    assert (built["v1"][0].period_ns, built["v1"][1].period_ns) == (16 * MS, 40 * MS)
    for v in ("v2", "v3"):
        assert (built[v][0].period_ns, built[v][1].period_ns) == (20 * MS, 20 * MS)
    # an explicit knob still wins over the version
    s, m = plugins.build(plugins.DETECTORS, "detector",
                         Component("kscand", {"version": "v1", "scan_sleep_ms": 5}), k,
                         CostModel(), None)
    assert s.period_ns == 5 * MS and m.period_ns == 40 * MS
    # KMMSCAND_SCAN_PERIOD_MIN = 500 in V1, 600 from V2 on
    assert kscand_update_mmslot_info(600, GB, 1000, 1000, 500)[0] == 510
    assert kscand_update_mmslot_info(600, GB, 1000, 1000)[0] == SCAN_PERIOD_MIN_MS == 600


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_v1_period_floor_in_a_scan(version):
    k, e, d, g = setup("4MiB", version=version)
    slot = d.slots[0]
    slot.scan_period, slot.scan_delta = 600, 10_000    # X > 0, and Y = 1024 pages > 256
    d.scan_mm(e, slot)
    assert slot.scan_period == (510 if version == "v1" else 600)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_v1_migrator_has_no_hotness_recheck(version):
    """V2's kmigrated re-checks that a queued folio is still hot (an active MGLRU
    generation); V1's kmmmigrated does not, so folios that went cold are still promoted."""
    k, e, d, g = setup("4MiB", version=version)
    d.scan_mm(e, d.slots[0])
    lv = k.lruvec(k.root_memcg, 1)
    for _ in range(2):                                   # age twice: the gen goes inactive
        assert inc_max_seq(lv, lv.lrugen.max_seq, 200)
    d.migrator.run(e)
    st = d.migrator.stats
    if version == "v1":
        assert st["not_hot"] == 0 and st["migrated"] == 1024
        assert k.vmstat["pgpromote_success"] == 1024
    else:
        assert st["not_hot"] == 1024 and st["migrated"] == 0


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_v1_one_global_list_drained_across_mms(version):
    """V1 splices every scan onto one list that one kmmmigrated cycle drains for every mm;
    V2 keeps a list per mm and drains one mm per cycle."""
    wl = make_workload("multi", {"processes": [
        {"name": "a", "size": "2MiB", "dist": "uniform", "node": 1},
        {"name": "b", "size": "2MiB", "dist": "uniform", "node": 1}]})
    k, e, d, g = setup(workload=wl, version=version)
    for slot in d.slots:
        d.scan_mm(e, slot)
    if version == "v1":
        assert [s.pending() for s in d.slots] == [0, 0]
        assert [h.size for _, h, _ in d.global_list] == [512, 512]
    else:
        assert [s.pending() for s in d.slots] == [512, 512]
    d.migrator.run(e)
    assert d.migrator.stats["migrated"] == (1024 if version == "v1" else 512)


def test_bad_version_is_one_line_error_naming_the_field():
    k = Kernel(Machine.preset("laptop"), seed=0)
    with pytest.raises(ConfigError) as ei:
        plugins.build(plugins.DETECTORS, "detector",
                      Component("kscand", {"version": "kmmscand"}, path="detectors[0]",
                                where="exp.toml"), k, CostModel(), None)
    msg = str(ei.value)
    assert "\n" not in msg and "detectors[0].version" in msg and "'v1'" in msg
