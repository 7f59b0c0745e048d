"""Several thread groups in one mm (ProcessSpec.mm / multi's ``mm`` key): one address space
and its page tables shared, each group with its own CPU node, mappings and task policy;
NUMA balancing's per-mm and per-task state; workload placement keys and their errors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import machine_dict

from tierscan import Kernel, Machine
from tierscan.errors import ConfigError
from tierscan.hotness.numab import NumaBalancing
from tierscan.sim.config import config_from_dict
from tierscan.sim.engine import MS, Engine
from tierscan.sim.precheck import check_runnable
from tierscan.sim.run import run_experiment
from tierscan.workload.library import make_workload

# node 0: DRAM + CPU 0, node 1: DRAM + CPU 1, node 2: CXL (no CPU)
MACHINE = machine_dict(["64MiB", "64MiB", "128MiB"], cpus=[[0], [1], []],
                       kinds=["dram", "dram", "cxl"], tiers=[0, 0, 1],
                       distance=[[10, 21, 14], [21, 10, 24], [14, 24, 10]])


def two_groups(**extra):
    """Process "app": thread group "near" (CPU node 0, its mapping bound to DRAM node 0) and
    "far" (CPU node 1, no VMA policy: its task policy binds it to CXL node 2)."""
    return make_workload("multi", {"processes": [
        {"name": "near", "mm": "app", "cpu_node": 0, "size": "4MiB", "node": 0,
         "threads": 2, "dist": "uniform", "write_fraction": 0.5, "duration": "200ms"},
        {"name": "far", "mm": "app", "cpu_node": 1, "size": "8MiB", "policy": "default",
         "task_policy": "bind", "task_nodes": [2], "threads": 3, "dist": "uniform",
         "write_fraction": 0.5, "duration": "200ms", **extra}]})


def engine(wl, model="exact", daemons=()):
    k = Kernel(Machine.from_dict(MACHINE), seed=0, debug=model == "exact")
    return k, Engine(k, wl, access_model=model, daemons=list(daemons), duration_ns=200 * MS)


@pytest.mark.parametrize("model", ["exact", "rate"])
def test_two_groups_share_one_mm_and_its_page_tables(model):
    k, e = engine(two_groups(), model)
    near, far = e.groups
    assert near.mm is far.mm and len(k.mms) == 1
    assert e.groups_of_mm[near.mm.id] == [near, far]
    mm = near.mm
    assert [v.nr_pages for v in mm.vmas] == [1024, 2048]
    assert k.node_of(mm.translate(near.addrs)).tolist() == [0] * 1024
    assert k.node_of(mm.translate(far.addrs)).tolist() == [2] * 2048
    assert mm.vmas[1].policy.is_default            # the task policy placed it, not mbind
    assert mm.task_policy.is_default and mm.cpu_node == 0   # swapped back after setup
    e.run()
    k.check()
    assert near.total > 0 and far.total > 0
    # each group's accesses ran on its own CPU node: "far" is remote to both of its pages'
    # nodes' latencies, so it made fewer accesses per thread in the same time
    assert far.total < near.total


def test_a_migration_stalls_every_group_of_the_mm():
    k, e = engine(two_groups())
    near, far = e.groups
    e.accounting.migrated(0, 1, [near.mm])
    assert near.stall_ns == far.stall_ns == e.costs.tlb_shootdown_ns


def test_task_policy_of_the_running_group_places_its_faults():
    """Faults during a group's run use its task policy: "far" faults (populate = false) land
    on node 2 although the mm's first group runs on node 0 with the default policy."""
    wl = two_groups(populate=False)
    k, e = engine(wl, "rate")
    far = e.groups[1]
    assert (far.mm.translate(far.addrs) == -1).all()
    e.run()
    nodes = k.node_of(far.mm.translate(far.addrs))
    assert set(nodes[nodes >= 0].tolist()) == {2}


def test_numa_balancing_state_per_mm_and_per_task():
    """numa_next_scan, numa_scan_seq/offset and the VMA states are the mm's (one object for
    both groups); node_stamp and scan_period are each task's. The second group's threads are
    further clones: their stamps continue the first group's mm_users count."""
    d = NumaBalancing()
    k, e = engine(two_groups(), daemons=[d])
    t_near, t_far = d.tasks
    assert t_near.shared is t_far.shared and t_near.shared.nr_threads == 5
    t_near.numa_next_scan = 123
    assert t_far.numa_next_scan == 123
    assert t_near.scan_period is not t_far.scan_period
    alone = NumaBalancing().init_numa_balancing(5, d._rss(t_near.mm))
    assert np.concatenate([t_near.node_stamp, t_far.node_stamp]).tolist() == alone.tolist()
    assert d.by_mm[t_near.mm.id] == [t_near, t_far]


def test_numa_balancing_one_scan_per_period_for_the_whole_mm():
    d = NumaBalancing(scan_delay_ms=0)
    k, e = engine(two_groups(), "rate", daemons=[d])
    e.run()
    assert d.tasks[0].shared.numa_scan_seq >= 1
    # the groups' passes add up to the mm's: each pass was one task's
    assert sum(t.passes for t in d.tasks) == d.stats["passes"] > 0


# ---- workload keys --------------------------------------------------------------------------
def test_one_mm_one_memcg():
    with pytest.raises(ConfigError, match=r"one mm, one memcg") as e:
        make_workload("multi", {"processes": [
            {"name": "a", "mm": "app", "dist": "uniform"},
            {"name": "b", "mm": "app", "memcg": "/other", "dist": "uniform"}]})
    assert e.value.field == "workload.processes[1].memcg"


@pytest.mark.parametrize("params, field, fragment", [
    ({"policy": "interleave"}, "workload.nodes", "needs a non-empty list of nodes"),
    ({"policy": "local", "nodes": [0]}, "workload.nodes", "takes no nodes"),
    ({"policy": "preferred", "nodes": [0, 1]}, "workload.nodes", "exactly one node"),
    ({"policy": "spread"}, "workload.policy", "expected one of"),
    ({"policy": "interleave", "nodes": [0, 1], "numa_balancing": True},
     "workload.numa_balancing", "MPOL_F_NUMA_BALANCING"),
    ({"task_policy": "bind"}, "workload.task_nodes", "needs a non-empty list"),
    ({"nodes": [0, -1]}, "workload.nodes[1]", ">= 0"),
])
def test_policy_keys_name_the_field(params, field, fragment):
    with pytest.raises(ConfigError, match=fragment) as e:
        make_workload("uniform", params)
    assert e.value.field == field
    assert "\n" not in str(e.value)


def test_policy_keys_resolve_and_replay():
    spec = make_workload("uniform", {"policy": "weighted-interleave", "nodes": [2, 0]})
    (m,) = spec.processes[0].mappings
    assert (m.policy, m.nodes) == ("weighted-interleave", (2, 0))
    assert make_workload("uniform", spec.params) == spec
    plain = make_workload("uniform", {"node": 2}).processes[0].mappings[0]
    assert (plain.policy, plain.nodes, plain.numa_balancing) == ("bind", (2,), False)


def test_a_node_the_machine_lacks_is_refused_before_the_run():
    cfg = config_from_dict({"machine": {"preset": "laptop"}, "duration": "1s",
                            "workload": {"name": "uniform", "policy": "interleave",
                                         "nodes": [0, 5], "task_policy": "default"}})
    with pytest.raises(ConfigError, match="no node 5") as e:
        check_runnable(cfg)
    assert e.value.field == "workload.nodes"
    cfg = config_from_dict({"machine": {"preset": "laptop"}, "duration": "1s",
                            "workload": {"name": "uniform", "task_policy": "bind",
                                         "task_nodes": [7]}})
    with pytest.raises(ConfigError, match="no node 7") as e:
        check_runnable(cfg)
    assert e.value.field == "workload.task_nodes"


def test_weights_from_the_sysfs_table_of_the_config():
    cfg = config_from_dict({
        "machine": {"preset": "laptop"}, "duration": "100ms",
        "workload": {"name": "uniform", "size": "8MiB", "policy": "weighted-interleave",
                     "nodes": [0, 1], "accesses": 1},
        "sysfs": {"mempolicy/weighted_interleave/node0": 3}})
    vm = run_experiment(cfg).final["vmstat_setup"]
    assert vm["numa_interleave"] == 2048
    bad = config_from_dict({"machine": {"preset": "laptop"}, "duration": "100ms",
                            "workload": {"name": "uniform"},
                            "sysfs": {"mempolicy/weighted_interleave/node2": 3}})
    with pytest.raises(ConfigError, match="no node 2") as e:
        run_experiment(bad)
    assert e.value.field == "sysfs.mempolicy/weighted_interleave/node2"


def test_hint_faults_promote_towards_the_faulting_threads_node():
    """The default policy's MORON target is the faulting CPU's node: "far" runs on node 1, so
    its CXL pages go to node 1, never to node 0 where the mm's first group runs."""
    wl = make_workload("multi", {"processes": [
        {"name": "near", "mm": "app", "cpu_node": 0, "size": "4MiB", "node": 0,
         "dist": "uniform", "duration": "3s"},
        {"name": "far", "mm": "app", "cpu_node": 1, "size": "8MiB", "node": 2,
         "dist": "uniform", "duration": "3s"}]})
    d = NumaBalancing(scan_delay_ms=0)
    k = Kernel(Machine.from_dict(MACHINE), seed=0)
    e = Engine(k, wl, access_model="rate", daemons=[d], duration_ns=3000 * MS)
    e.run()
    far = e.groups[1]
    nodes = k.node_of(far.mm.translate(far.addrs))
    assert (nodes == 1).sum() > 0 and (nodes == 0).sum() == 0
    assert int(k.vmstat.node("pgpromote_success")[1]) == int((nodes == 1).sum())


def test_multi_processes_default_to_the_machines_slow_node():
    """The slow tier is the default memory node for every process of ``multi`` too (zen5-cxl:
    node 2; node 1 there is the second DRAM socket). An explicit node is kept."""
    cfg = config_from_dict({"machine": {"preset": "zen5-cxl"}, "duration": "1s",
                            "workload": {"name": "multi", "processes": [
                                {"name": "a", "dist": "uniform"},
                                {"name": "b", "dist": "uniform", "node": 0}]}})
    spec = make_workload("multi", dict(cfg.workload.params))
    assert [p.mappings[0].nodes for p in spec.processes] == [(2,), (0,)]
    default = config_from_dict({"machine": {"preset": "zen5-cxl"}, "duration": "1s",
                                "workload": {"name": "multi"}})
    spec = make_workload("multi", dict(default.workload.params))
    assert {p.mappings[0].nodes for p in spec.processes} == {(2,)}


def test_nothing_to_promote_warning_only_when_no_process_can_start_below_the_top_tier():
    def warnings(processes):
        cfg = config_from_dict({"machine": {"preset": "zen5-cxl"}, "duration": "1s",
                                "detectors": [{"name": "numab2"}],
                                "workload": {"name": "multi", "processes": processes}})
        return check_runnable(cfg)
    dram = {"name": "a", "mm": "app", "node": 0, "dist": "uniform"}
    cxl = {"name": "b", "mm": "app", "node": 2, "dist": "uniform"}
    assert warnings([dram, cxl]) == []
    (w,) = warnings([dram])
    assert "node: memory is bound to top-tier node(s) 0" in w and "nothing to promote" in w
