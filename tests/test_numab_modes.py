"""NUMA balancing modes 1 (NUMA_BALANCING_NORMAL, classic) and 3 (NORMAL | MEMORY_TIERING),
hotness/numab_classic.py: what mode 1 and 3 mark, the last_cpupid two-stage filter of
should_numa_migrate_memory, task_numa_fault / task_numa_placement (numa_preferred_nid,
update_task_scan_period), the counters, and the sysctl/source-name consistency check.

Hand-made fault sequences: the detector marks at one time (mark_all) and a thread of the
group faults at another from a chosen CPU node (``mm.access(..., cpu_node=n)``).
Machines: the laptop (node 0 DRAM with the CPUs, node 1 CXL) and "3n" (nodes 0 and 1 DRAM,
each with a CPU, node 2 CPU-less CXL).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from conftest import machine_dict
from tierscan import Kernel, Machine
from tierscan.errors import ConfigError
from tierscan.hotness.numab import NumaBalancing
from tierscan.hotness.numab_classic import (
    CPUPID_UNSET, NUMA_NO_NODE, cpu_pid_to_cpupid, numa_nearest_node,
)
from tierscan.mm.constants import _PAGE_PRESENT, _PAGE_PROTNONE
from tierscan.sim.config import config_from_dict
from tierscan.sim.costs import CostModel
from tierscan.sim.engine import MS, Engine
from tierscan.sim.run import build_engine
from tierscan.workload.library import make_workload


def three_nodes() -> Machine:
    return Machine.from_dict(machine_dict(["64MiB", "64MiB", "64MiB"], cpus=[[0], [1], []],
                                          kinds=["dram", "dram", "cxl"]))


def setup(mode, size="4MiB", *, node=1, machine=None, debug=True, **kw):
    """An engine (not run) with one uniform group whose memory is on ``node``."""
    k = Kernel(machine or Machine.preset("laptop"), seed=0, debug=debug)
    wl = make_workload("uniform", {"size": size, "threads": 1, "duration": "600s",
                                   "node": node})
    d = NumaBalancing(mode=mode, **kw)
    e = Engine(k, wl, access_model="exact", daemons=[d], duration_ns=600_000 * MS)
    return k, e, d, e.groups[0]


def mark_all(k, d, ms):
    """One task_numa_work pass at time ``ms`` (numa_next_scan forced due). A small VMA is
    covered whole, so every pass starts a new scan sequence."""
    k.clock_ns = ms * MS
    t = d.tasks[0]
    t.numa_next_scan = 0
    assert d.task_numa_work(SimpleNamespace(charge=lambda ns: None, costs=CostModel()), t, 0)
    return t


def touch(k, g, first, n, ms, cpu=0):
    k.clock_ns = ms * MS
    g.mm.access(g.addrs[first:first + n], False, cpu_node=cpu)


def nodes(k, g, first=0, n=None):
    n = g.n_pages - first if n is None else n
    return k.node_of(g.mm.translate(g.addrs[first:first + n]))


def prot_none(g):
    e = g.mm.pt.pte[g.slots]
    return (e & (_PAGE_PRESENT | _PAGE_PROTNONE)) == _PAGE_PROTNONE


def heads(k, g, first, n):
    return k.pm.folio_head(g.mm.translate(g.addrs[first:first + n]))


# ---- marking ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode,marks_dram", [(1, True), (2, False), (3, True)])
def test_normal_bit_marks_toptier_pages_too(mode, marks_dram):
    k, e, d, g = setup(mode, "4MiB")
    g.mm.move_pages(g.addrs[:256], 0)                    # a quarter on DRAM
    mark_all(k, d, ms=5)
    pn = prot_none(g)
    assert pn[256:].all()
    assert pn[:256].all() == marks_dram and pn[:256].any() == marks_dram
    assert k.sysfs["kernel/numa_balancing"] == mode
    # access-time stamps only with the tiering bit (folio_use_access_time)
    stamped = d.access_time.get(heads(k, g, 256, 1))[0] != d.time_mask
    assert stamped == bool(mode & 2)


# ---- mode 1: classic rules, not tiering rules -------------------------------------------
def test_mode1_moves_a_slow_page_on_its_second_fault_whatever_its_latency():
    """Mode 1: a CXL page's first fault finds an invalid last_cpupid and only records it
    (should_numa_migrate_memory's !cpupid_valid check); the next fault migrates it to the
    faulting CPU's node with no latency test and no rate limit. No pgpromote_* counter moves;
    numa_pages_migrated does. Mode 2 on the same sequence refuses every fault (latency 5 s
    >= the 1-s threshold; the laptop's DRAM is never free-space-enough)."""
    moved = {}
    for mode in (1, 2):
        k, e, d, g = setup(mode, "4MiB")
        n = g.n_pages
        mark_all(k, d, ms=0)
        touch(k, g, 0, n, ms=5000)
        assert (nodes(k, g) == 1).all()                  # first fault: nothing moves
        assert k.vmstat["numa_hint_faults"] == n and k.vmstat["numa_hint_faults_local"] == 0
        mark_all(k, d, ms=5010)
        touch(k, g, 0, n, ms=10_010)                     # latency 5 s again
        moved[mode] = int((nodes(k, g) == 0).sum())
        if mode == 1:
            assert d.stats["classic_refused_invalid"] == n
            assert k.vmstat["numa_pages_migrated"] == n
            assert k.vmstat["pgpromote_candidate"] == 0 and k.vmstat["pgpromote_success"] == 0
            # the moved pages are now local: marked again, they fault as local faults
            mark_all(k, d, ms=10_020)
            touch(k, g, 0, n, ms=10_030)
            assert k.vmstat["numa_hint_faults_local"] == n
            assert k.vmstat["numa_hint_faults"] == 3 * n
        else:
            assert d.stats["latency_refused"] == 2 * n
    assert moved == {1: 1024, 2: 0}


def test_mode1_two_stage_filter_needs_two_faults_from_the_destination_node():
    """A DRAM page whose last fault came from another node is refused (the last_cpupid's node
    is not the destination), and its last_cpupid becomes this fault's; the next fault from the
    same node migrates it. The task is past its early lifetime (preferred node set,
    numa_scan_seq > 4)."""
    k, e, d, g = setup(1, "4MiB", node=1, machine=three_nodes())
    t = d.tasks[0]
    tf = d.classic.task(t)
    other = cpu_pid_to_cpupid(1, 77)                    # last fault: another task on node 1
    d.classic.last_cpupid.set(heads(k, g, 0, 10), other)
    mark_all(k, d, ms=0)
    t.placement_seq = t.numa_scan_seq = 5                # past the early lifetime; no
    tf.preferred_nid = 0                                 # placement in this test
    touch(k, g, 0, 10, ms=10, cpu=0)
    assert (nodes(k, g, 0, 10) == 1).all()              # stage 1: refused
    assert d.stats["classic_refused_node"] == 10
    assert (d.classic.last_cpupid.get(heads(k, g, 0, 10)) == cpu_pid_to_cpupid(0, g.gid + 1)).all()
    # pages never faulted before (last_cpupid unset) migrate at their first fault
    touch(k, g, 10, 10, ms=10, cpu=0)
    assert (nodes(k, g, 10, 10) == 0).all()
    mark_all(k, d, ms=2000)                              # after scan_delay: the VMA is
    t.placement_seq = t.numa_scan_seq                    # not new any more
    assert t.numa_scan_seq > 4
    touch(k, g, 0, 10, ms=2010, cpu=0)
    assert (nodes(k, g, 0, 10) == 0).all()              # stage 2: same node twice, moved
    assert k.vmstat["numa_pages_migrated"] == 20
    assert k.vmstat["pgpromote_success"] == 0


def test_mode1_early_lifetime_migrates_a_private_fault_at_once():
    """Early in a task's life (no preferred node) a fault on a page this task faulted last
    from another node migrates at once: the early rule comes before the two-stage filter."""
    k, e, d, g = setup(1, "4MiB", node=1, machine=three_nodes())
    pid = g.gid + 1
    d.classic.last_cpupid.set(heads(k, g, 0, 10), cpu_pid_to_cpupid(1, pid))
    mark_all(k, d, ms=0)
    touch(k, g, 0, 10, ms=10, cpu=0)
    assert d.classic.task(d.tasks[0]).preferred_nid in (NUMA_NO_NODE, 0)
    assert (nodes(k, g, 0, 10) == 0).all()


# ---- mode 3: both branches ----------------------------------------------------------------
def test_mode3_promotes_slow_pages_by_tiering_and_moves_remote_dram_pages_by_classic():
    results = {}
    for mode in (1, 2, 3):
        k, e, d, g = setup(mode, "4MiB", node=1, machine=three_nodes())
        g.mm.move_pages(g.addrs[512:], 2)                # half on the CXL node
        mark_all(k, d, ms=0)
        touch(k, g, 0, 1024, ms=5, cpu=0)                # latency 5 ms: hot for tiering
        results[mode] = (int((nodes(k, g, 0, 512) == 0).sum()),
                         int((nodes(k, g, 512, 512) == 0).sum()),
                         k.vmstat["pgpromote_candidate"], k.vmstat["pgpromote_success"],
                         k.vmstat["numa_pages_migrated"])
    # (DRAM pages moved, CXL pages promoted, candidates, pgpromote_success, migrated)
    assert results[3] == (512, 512, 512, 512, 1024)
    assert results[2] == (0, 512, 512, 512, 512)         # toptier pages not even marked
    assert results[1] == (512, 0, 0, 0, 512)             # CXL: first fault only arms cpupid


def test_mode3_follows_the_tiering_step():
    """Mode 3's slow-tier faults use the tiering series step: "base" promotes a fault far past
    the threshold, "auto-threshold" (default) refuses it."""
    for step, promoted in (("base", 512), ("auto-threshold", 0)):
        k, e, d, g = setup(3, "4MiB", node=1, machine=three_nodes(), tiering_step=step)
        g.mm.move_pages(g.addrs[512:], 2)
        mark_all(k, d, ms=0)
        touch(k, g, 0, 1024, ms=5000, cpu=0)
        assert int((nodes(k, g, 512, 512) == 0).sum()) == promoted
        assert (nodes(k, g, 0, 512) == 0).all()          # classic side unchanged


# ---- task_numa_fault / task_numa_placement --------------------------------------------------
def test_preferred_nid_follows_the_fault_counts():
    """task_numa_placement at the first counted fault of each scan sequence: the window decays
    by half and takes the faults buffered since (counted on the folio's node, or on the target
    when it migrated); numa_preferred_nid is the node with most."""
    k, e, d, g = setup(1, "4MiB", node=1, machine=three_nodes())
    t = d.tasks[0]
    tf = d.classic.task(t)
    n = g.n_pages
    mark_all(k, d, ms=0)                                 # sequence 1
    touch(k, g, 0, n, ms=10, cpu=1)                      # local faults on node 1
    assert tf.preferred_nid == NUMA_NO_NODE              # placement saw an empty buffer
    assert tf.membuf[1].sum() == n and k.vmstat["numa_hint_faults_local"] == n
    mark_all(k, d, ms=3000)                              # sequence 2
    touch(k, g, 0, n, ms=3010, cpu=1)
    assert tf.preferred_nid == 1 and tf.mem[1].sum() == n
    # the memory then faults from node 0 (early lifetime, first remote fault: moves at once)
    mark_all(k, d, ms=6000)                              # sequence 3
    touch(k, g, 0, n, ms=6010, cpu=0)
    assert (nodes(k, g) == 0).all()
    assert tf.preferred_nid == 1 and tf.mem[1].sum() == n + n // 2
    assert tf.membuf[0].sum() == n                       # counted on the destination node
    mark_all(k, d, ms=9000)                              # sequence 4: decay, node 0 wins
    touch(k, g, 0, 1, ms=9010, cpu=0)
    assert tf.mem[1].sum() == (n + n // 2) // 2 and tf.mem[0].sum() == n
    assert tf.preferred_nid == 0
    assert d.stats["placements"] == 4


def test_preferred_nid_of_cxl_faults_is_the_nearest_cpu_node():
    m = Machine.from_dict(machine_dict(["64MiB", "64MiB", "64MiB"], cpus=[[0], [1], []],
                                       kinds=["dram", "dram", "cxl"],
                                       distance=[[10, 20, 30], [20, 10, 25], [30, 25, 10]]))
    assert numa_nearest_node(m, 2) == 1
    assert numa_nearest_node(m, 0) == 0
    assert numa_nearest_node(m, NUMA_NO_NODE) == NUMA_NO_NODE


def test_scan_period_adapts_to_private_local_faults():
    """update_task_scan_period(): all faults private and local -> ps_ratio 10 >= 7, the
    period grows by 3 slots of period / 10; no counted local or shared fault -> doubled."""
    k, e, d, g = setup(1, "4MiB", node=1, machine=three_nodes())
    t = d.tasks[0]
    t.scan_period[:] = 1000
    mark_all(k, d, ms=0)
    touch(k, g, 0, 100, ms=10, cpu=1)                    # placement with an empty buffer:
    assert (t.scan_period == 2000).all()                 # local + shared == 0: slower
    mark_all(k, d, ms=3000)
    touch(k, g, 0, 100, ms=3010, cpu=1)                  # 100 private local faults counted
    assert (t.scan_period == 2000 + 3 * 200).all()


def test_mode1_faults_on_an_unbalanced_node_do_not_wake_kswapd():
    """migrate_misplaced_folio_prepare wakes kswapd on an unbalanced target only in tiering
    mode; mode 1 just refuses."""
    woken = {}
    for mode in (1, 2):
        k, e, d, g = setup(mode, "4MiB", tiering_step="base", debug=False)  # free count
        calls = []                                                          # forged below
        k.wakeup_kswapd = lambda nid, order=0: calls.append(nid)
        pm = k.pm
        hog = pm.node_free[0] - pm.watermarks[0, 2]      # leave DRAM at its HIGH mark
        k.pm.node_free[0] -= hog
        try:
            for ms in (0, 10):
                mark_all(k, d, ms=ms)
                touch(k, g, 0, 10, ms=ms + 5)
        finally:
            k.pm.node_free[0] += hog
        woken[mode] = bool(calls)
    assert woken == {1: False, 2: True}


# ---- configuration -------------------------------------------------------------------------
def _cfg(name, sysfs=None):
    d = {"machine": {"preset": "laptop", "scale": 0.0625},
         "workload": {"name": "uniform", "size": "8MiB"}, "duration": "1s",
         "detectors": [{"name": name}]}
    if sysfs:
        d["sysfs"] = sysfs
    return config_from_dict(d)


@pytest.mark.parametrize("name,mode", [("numab1", 1), ("numab2", 2), ("numab3", 3)])
def test_source_names_select_the_mode(name, mode):
    e = build_engine(_cfg(name))
    assert e.daemons[0].mode == mode and e.daemons[0].name == name


def test_a_conflicting_sysctl_is_a_one_line_error():
    with pytest.raises(ConfigError) as ei:
        build_engine(_cfg("numab1", {"kernel/numa_balancing": 2}))
    msg = str(ei.value)
    assert "\n" not in msg and "numab1" in msg and "kernel/numa_balancing" in msg
    e = build_engine(_cfg("numab3", {"kernel/numa_balancing": 3}))
    assert e.daemons[0].mode == 3


def test_numab1_refuses_tiering_knobs():
    d = {"machine": {"preset": "laptop", "scale": 0.0625},
         "workload": {"name": "uniform", "size": "8MiB"}, "duration": "1s",
         "detectors": [{"name": "numab1", "tiering_step": "base"}]}
    with pytest.raises(ConfigError) as ei:
        build_engine(config_from_dict(d))
    assert "tiering_step" in str(ei.value) and "\n" not in str(ei.value)
    d["detectors"][0]["name"] = "numab3"
    assert build_engine(config_from_dict(d)).daemons[0].step == 0


def test_pghot_needs_the_tiering_bit():
    with pytest.raises(ValueError):
        NumaBalancing(SimpleNamespace(), pghot=True, mode=1)
    with pytest.raises(ValueError):
        NumaBalancing(mode=4)


def test_unset_cpupid_constant_reads_as_unset():
    from tierscan.hotness.numab_classic import cpupid_pid_unset, cpupid_valid
    assert cpupid_pid_unset(np.array([CPUPID_UNSET]))[0]
    assert not cpupid_valid(np.array([CPUPID_UNSET]))[0]
    c = cpu_pid_to_cpupid(1, 5)
    assert cpupid_valid(np.array([c]))[0] and not cpupid_pid_unset(np.array([c]))[0]


def test_scan_period_shortens_for_shared_remote_faults():
    """Shared (last fault by another pid) and remote faults: ps_ratio = lr_ratio = 0, so the
    period shrinks by 7 slots of period / 10 (down to task_scan_min)."""
    k, e, d, g = setup(1, "4MiB", node=1, machine=three_nodes())
    t = d.tasks[0]
    t.scan_period[:] = 4000
    mark_all(k, d, ms=0)
    touch(k, g, 0, 1, ms=10, cpu=0)                      # empty-buffer placement: doubled
    assert (t.scan_period == 8000).all()
    d.classic.last_cpupid.set(heads(k, g, 100, 100), cpu_pid_to_cpupid(0, 77))
    touch(k, g, 100, 100, ms=20, cpu=0)                  # shared, remote; migrated to node 0
    assert (nodes(k, g, 100, 100) == 0).all()
    mark_all(k, d, ms=3000)
    assert d.classic.task(t).locality.tolist() == [101, 0, 0]   # remote, local, failed
    touch(k, g, 200, 1, ms=3010, cpu=0)                  # the placement
    assert (t.scan_period == 8000 - 7 * 800).all()


# ---- kscand beside NUMA balancing (brief item 3) --------------------------------------------
def test_kscand_beside_numab2_takes_the_headroom_first():
    """examples/kscand-abench-numab2.toml scaled: kscand's first scan fills DRAM to its HIGH
    watermark before NUMAB2's first hint faults, so every NUMAB2 candidate fails prepare's
    balance test (not a defect: migrate_balanced_pgdat). Delaying kscand reverses the race."""
    from tierscan.sim.config import load_config
    from tierscan.mm.physmem import WMARK_HIGH

    base = ['duration="1200ms"', "machine.scale=0.0625", 'workload.size="96MiB"']
    out = {}
    for extra in ([], ["detectors[1].scan_delay_ms=3000"]):
        e = build_engine(load_config("examples/kscand-abench-numab2.toml", base + extra))
        e.run()
        numab = e.daemons[0]
        k = e.kernel
        mig = next(d for d in e.daemons if d.name == "kscand-migrate")
        assert k.pm.node_free[0] <= k.pm.watermarks[0, WMARK_HIGH] + 1    # DRAM is full
        out[bool(extra)] = (numab.stats["promoted"], mig.stats["migrated"],
                            numab.stats["not_migrated"] == numab.stats["candidates"] > 0)
    assert out[False] == (0, out[False][1], True) and out[False][1] > 0
    assert out[True][0] > 0 and out[True][1] == 0
