"""Memory policies (mm/mempolicy.py): each mode's node choice against hand-worked cases of
mm/mempolicy.c, set_mempolicy/mbind precedence, the simulated weighted-interleave sysfs, and
mpol_misplaced()."""

import numpy as np
import pytest
from conftest import PAGE, make_kernel, page_addrs

from tierscan import ConfigError, OutOfMemory
from tierscan.mm.constants import MMAP_BASE, PAGE_SHIFT
from tierscan.mm.mempolicy import (
    MemPolicy, interleave_targets, mpol_misplaced, policy_nodes, weighted_interleave_nid,
    zonelist,
)

# Four nodes: 0 and 1 DRAM with CPUs, 2 and 3 CXL. From node 0 the order is 0, 2 (14), 1 (21),
# 3 (24); from node 1 it is 1, 3 (14), 0 (21), 2 (24).
DIST = [[10, 21, 14, 24],
        [21, 10, 24, 14],
        [14, 24, 10, 26],
        [24, 14, 26, 10]]


def four(capacities=("16MiB",) * 4):
    return make_kernel(capacities, cpus=[[0], [1], [], []], kinds=["dram", "dram", "cxl", "cxl"],
                       distance=DIST)


def nodes_of(k, mm, vma, n=None, first=0):
    n = vma.nr_pages if n is None else n
    return k.node_of(mm.translate(page_addrs(vma.start, n, first))).tolist()


def touch(mm, vma, n=None, order=None, cpu=0):
    """Write-fault pages of ``vma`` (all, or the first n) in ``order`` (page indices)."""
    idx = np.arange(vma.nr_pages if n is None else n) if order is None else np.asarray(order)
    mm.access(np.uint64(vma.start) + np.uint64(PAGE) * idx.astype(np.uint64), True, cpu_node=cpu)


def test_zonelists_of_the_test_machine():
    assert zonelist(DIST, 0) == [0, 2, 1, 3]
    assert zonelist(DIST, 1) == [1, 3, 0, 2]


# ---- interleave ----------------------------------------------------------------------------
def test_interleave_follows_the_page_offset_not_the_fault_order():
    """interleave_nid(): node = mask[(vm_pgoff + page offset) mod n] with an anonymous VMA's
    vm_pgoff = vm_start >> PAGE_SHIFT; faulting the pages backwards gives the same nodes (not a
    round robin over faults)."""
    k = four()
    mm = k.spawn("p", cpu_node=0)
    a = mm.mmap(12 * PAGE, policy="interleave", nodes=[3, 1, 2])
    b = mm.mmap(12 * PAGE, policy="interleave", nodes=[1, 2, 3])
    touch(mm, a)
    touch(mm, b, order=np.arange(11, -1, -1))
    base_a, base_b = a.start >> PAGE_SHIFT, b.start >> PAGE_SHIFT
    assert base_a % 3 == (MMAP_BASE >> PAGE_SHIFT) % 3          # 2 MiB aligned at MMAP_BASE
    assert nodes_of(k, mm, a) == [[1, 2, 3][(base_a + i) % 3] for i in range(12)]
    assert nodes_of(k, mm, b) == [[1, 2, 3][(base_b + i) % 3] for i in range(12)]
    assert k.vmstat["numa_interleave"] == 24


def test_interleave_of_a_split_vma_continues_the_offsets():
    """mbind on the tail of a VMA: the tail's vm_pgoff is its own start >> PAGE_SHIFT, so the
    interleave sequence over the two VMAs is the same as over one."""
    k = four()
    mm = k.spawn("p", cpu_node=0)
    v = mm.mmap(8 * PAGE, policy="interleave", nodes=[0, 2])
    mm.mbind(v.start + 3 * PAGE, 5 * PAGE, "interleave", [0, 2])
    assert len(mm.vmas) == 2
    touch(mm, mm.vmas[0])
    touch(mm, mm.vmas[1])
    base = v.start >> PAGE_SHIFT
    assert base % 2 == 0
    assert k.node_of(mm.translate(page_addrs(v.start, 8))).tolist() == [0, 2] * 4


def test_interleave_thp_uses_the_pmd_index():
    """For a THP, ilx = (vm_pgoff >> 9) + (offset >> 9): consecutive THPs alternate."""
    k = four(("64MiB",) * 4)
    k.sysfs["transparent_hugepage/enabled"] = "always"
    mm = k.spawn("p", cpu_node=0)
    v = mm.mmap(8 << 21, policy="interleave", nodes=[0, 2], populate=True)
    heads = mm.translate(np.uint64(v.start) + np.uint64(2 << 20) * np.arange(8, dtype=np.uint64))
    first = ((v.start >> PAGE_SHIFT) >> 9) % 2
    assert k.node_of(heads).tolist() == [[0, 2][(first + i) % 2] for i in range(8)]
    assert (k.pm.order[heads] == 9).all()


def test_interleave_falls_back_along_the_target_nodes_zonelist():
    """A full target node: its pages fall back along *its* zonelist (nodemask NULL), the other
    target's pages are unaffected."""
    k = four(("16MiB", "16MiB", "4MiB", "16MiB"))
    mm = k.spawn("p", cpu_node=1)
    filler = mm.mmap(4 << 20, policy="bind", nodes=[2])
    touch(mm, filler, n=int(k.pm.allowance(2, 1)), cpu=1)  # node 2 down to its LOW mark
    v = mm.mmap(64 * PAGE, policy="interleave", nodes=[1, 2])
    touch(mm, v, cpu=1)
    got = np.array(nodes_of(k, mm, v))
    target = interleave_targets(MemPolicy.make("interleave", [1, 2], 4),
                                (v.start >> PAGE_SHIFT) + np.arange(64))
    assert (got[target == 1] == 1).all()
    # node 2 is at LOW: the fast path skips it, the MIN pass may take a few; the rest follow
    # node 2's zonelist 2, 0, 1, 3: node 0 (not node 1, the CPU's, nor 3)
    spilled = got[(target == 2) & (got != 2)]
    assert spilled.size > 0 and (spilled == 0).all()


# ---- weighted interleave -------------------------------------------------------------------
def test_weighted_interleave_order_in_a_cycle():
    """weighted_interleave_nid(): target = ilx mod sum(w); node n of the mask (in id order)
    takes w[n] consecutive targets: weights 3 (node 0) and 1 (node 2) give 0, 0, 0, 2."""
    k = four()
    k.sysfs["mempolicy/weighted_interleave/node0"] = 3
    pol = MemPolicy.make("weighted-interleave", [2, 0], 4)
    assert interleave_targets(pol, np.arange(8), k.sysfs).tolist() == [0, 0, 0, 2] * 2
    k.sysfs["mempolicy/weighted_interleave/node2"] = 2
    assert interleave_targets(pol, np.arange(5), k.sysfs).tolist() == [0, 0, 0, 2, 2]


def test_weighted_interleave_ratio_over_many_pages():
    k = four(("64MiB",) * 4)
    k.sysfs["mempolicy/weighted_interleave/node1"] = 5
    k.sysfs["mempolicy/weighted_interleave/node3"] = 2
    mm = k.spawn("p", cpu_node=0)
    v = mm.mmap(7 * 1000 * PAGE, policy="weighted-interleave", nodes=[1, 3], populate=True)
    n = np.bincount(nodes_of(k, mm, v), minlength=4)
    assert n.tolist() == [0, 5000, 0, 2000]


def test_unset_weights_interleave_evenly():
    k = four()
    mm = k.spawn("p", cpu_node=0)
    v = mm.mmap(1000 * PAGE, policy="weighted-interleave", nodes=[0, 1], populate=True)
    assert np.bincount(nodes_of(k, mm, v), minlength=4).tolist() == [500, 500, 0, 0]


def test_weight_knobs_are_checked():
    k = four()
    with pytest.raises(ConfigError, match="expected 1..255") as e:
        k.sysfs["mempolicy/weighted_interleave/node1"] = 0
    assert e.value.field == "mempolicy/weighted_interleave/node1"
    with pytest.raises(ConfigError, match="no node 4"):
        k.sysfs["mempolicy/weighted_interleave/node4"] = 2
    with pytest.raises(OSError):
        k.sysfs.write("mempolicy/weighted_interleave/node0", "0")
    assert k.sysfs.write("mempolicy/weighted_interleave/node0", "7\n") == 2
    assert k.sysfs["mempolicy/weighted_interleave/node0"] == 7
    assert k.sysfs["mempolicy/weighted_interleave/node3"] == 1      # unset: 1
    assert "mempolicy/weighted_interleave/node3" not in k.sysfs.as_dict()


# ---- bind, preferred, preferred-many -------------------------------------------------------
def test_bind_nearest_mask_node_to_the_cpu_first_and_no_fallback_outside():
    k = four(("16MiB", "16MiB", "8MiB", "16MiB"))
    assert policy_nodes(MemPolicy.make("bind", [1, 2], 4), DIST, 0) == [2, 1]
    assert policy_nodes(MemPolicy.make("bind", [0, 2], 4), DIST, 1) == [0, 2]
    mm = k.spawn("p", cpu_node=0)
    v = mm.mmap(6000 * PAGE, policy="bind", nodes=[1, 2])
    touch(mm, v)
    n = np.bincount(nodes_of(k, mm, v), minlength=4)
    assert n[0] == 0 and n[3] == 0                      # never outside the mask
    assert n[2] > 1900 and n[1] == 6000 - n[2]          # node 2 (nearest) filled first
    big = mm.mmap(64 << 20, policy="bind", nodes=[1, 2])
    with pytest.raises(OutOfMemory, match=r"nodes \[2, 1\]"):
        touch(mm, big)


def test_preferred_falls_back_along_the_preferred_nodes_zonelist():
    assert policy_nodes(MemPolicy.make("preferred", [3], 4), DIST, 0) == [3, 1, 0, 2]


def test_preferred_many_tries_the_mask_then_anywhere_from_the_local_zonelist():
    """alloc_pages_preferred_many(): the mask {1, 3} in node 0's zonelist order (1 at 21,
    then 3 at 24); once both are short, node 0's zonelist, whose first node is 0."""
    k = four(("16MiB", "4MiB", "16MiB", "4MiB"))
    mm = k.spawn("p", cpu_node=0)
    v = mm.mmap(3000 * PAGE, policy="preferred-many", nodes=[3, 1])
    touch(mm, v)
    got = np.array(nodes_of(k, mm, v))
    n1, n3 = int((got == 1).sum()), int((got == 3).sum())
    assert n1 > 0 and n3 > 0 and got[0] == 1               # node 1 first (nearer)
    # (the LOW pass takes 1 then 3, the MIN pass 1 then 3 again): then node 0, never 2
    last_mask = np.flatnonzero(got != 0).max()
    assert last_mask == n1 + n3 - 1 and (got[last_mask + 1:] == 0).all()
    assert (got == 2).sum() == 0
    # in the mask, no direct reclaim: each mask node is left at its MIN mark, not below
    for nid in (1, 3):
        assert int(k.pm.node_free[nid]) >= int(k.pm.watermarks[nid, 0]) - 1


# ---- mbind over set_mempolicy ---------------------------------------------------------------
def test_mbind_overrides_set_mempolicy_and_default_restores_it():
    k = four()
    mm = k.spawn("p", cpu_node=0)
    mm.set_mempolicy("bind", [2])
    a = mm.mmap(4 * PAGE)                               # no VMA policy: the task's
    b = mm.mmap(4 * PAGE, policy="bind", nodes=[3])     # mbind: its own
    c = mm.mmap(8 * PAGE)
    mm.mbind(c.start, 8 * PAGE, "preferred", [1])
    mm.mbind(c.start + 4 * PAGE, 4 * PAGE, "default")   # MPOL_DEFAULT: back to the task's
    for v in (a, b):
        touch(mm, v)
    mm.access(page_addrs(c.start, 8), True)             # both halves of the split VMA
    assert nodes_of(k, mm, a) == [2] * 4
    assert nodes_of(k, mm, b) == [3] * 4
    assert nodes_of(k, mm, c, 8) == [1] * 4 + [2] * 4
    mm.set_mempolicy("default")
    d = mm.mmap(2 * PAGE)
    touch(mm, d)
    assert nodes_of(k, mm, d) == [0, 0]                 # local allocation


def test_a_tasks_policy_is_swapped_in_by_as_task():
    k = four()
    mm = k.spawn("p", cpu_node=0)
    v = mm.mmap(8 * PAGE)
    with mm.as_task(1, MemPolicy.make("interleave", [2, 3], 4)):
        touch(mm, v, n=4, cpu=1)
    touch(mm, v, order=np.arange(4, 8))
    base = v.start >> PAGE_SHIFT
    assert nodes_of(k, mm, v) == [[2, 3][(base + i) % 2] for i in range(4)] + [0] * 4
    assert mm.task_policy.is_default and mm.cpu_node == 0


def test_mbind_move_interleaves_existing_pages():
    k = four()
    mm = k.spawn("p", cpu_node=0)
    v = mm.mmap(6 * PAGE, populate=True)
    assert nodes_of(k, mm, v) == [0] * 6
    mm.mbind(v.start, 6 * PAGE, "interleave", [2, 3], move=True)
    base = v.start >> PAGE_SHIFT
    assert nodes_of(k, mm, v) == [[2, 3][(base + i) % 2] for i in range(6)]


# ---- validation ----------------------------------------------------------------------------
@pytest.mark.parametrize("args, field, fragment", [
    (("interleave", []), "mbind.nodes", "needs a non-empty nodes list"),
    (("weighted-interleave", [7]), "mbind.nodes", "node 7 does not exist"),
    (("random", [0]), "mbind.policy", "unknown policy 'random'"),
    (("local", [0]), "mbind.nodes", "takes no nodes"),
])
def test_bad_policies_name_the_field(args, field, fragment):
    k = four()
    mm = k.spawn("p")
    v = mm.mmap(PAGE)
    with pytest.raises(ConfigError, match=fragment) as e:
        mm.mbind(v.start, PAGE, *args)
    assert e.value.field == field
    assert "\n" not in str(e.value)


def test_numa_balancing_flag_only_with_bind_or_preferred_many():
    k = four()
    mm = k.spawn("p")
    with pytest.raises(ConfigError, match="numa_balancing") as e:
        mm.set_mempolicy("interleave", [0, 2], numa_balancing=True)
    assert e.value.field == "set_mempolicy.numa_balancing"
    mm.set_mempolicy("bind", [0, 2], numa_balancing=True)
    assert mm.task_policy.mof


# ---- mpol_misplaced -------------------------------------------------------------------------
def test_mpol_misplaced_cases():
    cur = np.array([0, 1, 2, 3])
    default = MemPolicy()
    bind = MemPolicy.make("bind", [0, 2], 4)
    bind_nb = MemPolicy.make("bind", [0, 2], 4, numa_balancing=True)
    pm = MemPolicy.make("preferred-many", [1, 2], 4, numa_balancing=True)
    # the default policy (MOF|MORON): towards the faulting CPU's node
    assert mpol_misplaced(default, cur, 0).tolist() == [-1, 0, 0, 0]
    # a policy without MOF never moves
    assert mpol_misplaced(bind, cur, 0).tolist() == [-1, -1, -1, -1]
    assert mpol_misplaced(MemPolicy.make("local", [], 4), cur, 0).tolist() == [-1] * 4
    # MPOL_F_NUMA_BALANCING on bind: towards the CPU's node when it is in the mask
    assert mpol_misplaced(bind_nb, cur, 0).tolist() == [-1, 0, 0, 0]
    assert mpol_misplaced(bind_nb, cur, 1).tolist() == [-1, -1, -1, -1]
    # preferred-many: CPU node in the mask moves everything there; outside it, only folios
    # outside the mask move
    assert mpol_misplaced(pm, cur, 1).tolist() == [1, -1, 1, 1]
    assert mpol_misplaced(pm, cur, 0).tolist() == [-1, -1, -1, 0]


@pytest.mark.parametrize("weights", [(1, 1, 1), (3, 1, 2), (255, 1, 7), (1,)])
def test_vectorised_targets_match_the_kernel_loop(weights):
    """interleave_targets() against weighted_interleave_nid()'s loop, index by index."""
    k = make_kernel(("16MiB",) * 4)
    nodes = [3, 0, 2][:len(weights)]
    for nid, w in zip(sorted(nodes), weights):
        k.sysfs[f"mempolicy/weighted_interleave/node{nid}"] = w
    for mode in ("interleave", "weighted-interleave"):
        pol = MemPolicy.make(mode, nodes, 4)
        ilx = np.random.default_rng(1).integers(0, 1 << 40, 2000)
        ref = [weighted_interleave_nid(pol, int(i), k.sysfs) for i in ilx]
        assert interleave_targets(pol, ilx, k.sysfs).tolist() == ref
