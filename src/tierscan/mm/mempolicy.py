"""Memory policies (mm/mempolicy.c): which node each page of an allocation starts at, and
where it may fall back.

Modes (the names a config or ``mmap``/``mbind``/``set_mempolicy`` takes):

- ``default`` (MPOL_DEFAULT): no policy of its own. A VMA without one uses its task's policy
  (get_vma_policy -> get_task_policy); a task without one uses the system default,
  preferred_node_policy[], i.e. local allocation with MPOL_F_MOF | MPOL_F_MORON (NUMA
  balancing may move its pages).
- ``local`` (MPOL_LOCAL): the faulting CPU's node, falling back along its zonelist.
- ``preferred`` (MPOL_PREFERRED): ``nodes[0]`` first, then that node's zonelist.
- ``bind`` (MPOL_BIND): only ``nodes``; the zonelist of the faulting CPU's node filtered to
  the mask (policy_nodemask: nid = numa_node_id(), nodemask = pol->nodes), so the nearest
  node of the mask to the CPU comes first and the fallback stays within the mask.
- ``preferred-many`` (MPOL_PREFERRED_MANY, alloc_pages_preferred_many): try the mask in the
  local zonelist's order without direct reclaim (__GFP_DIRECT_RECLAIM cleared, kswapd still
  woken), then any node from the local zonelist with the normal slow path.
- ``interleave`` (MPOL_INTERLEAVE): page ``ilx`` goes to the (ilx mod n)-th node of the mask
  in node-id order (interleave_nid/offset_il_node), falling back along that node's zonelist
  (nodemask NULL). For a fault, ilx = (vm_pgoff >> order) + ((addr - vm_start) >> (PAGE_SHIFT +
  order)) (get_vma_policy), where an anonymous private VMA's vm_pgoff is vm_start >>
  PAGE_SHIFT (do_mmap) and a file VMA's is its file offset in pages.
- ``weighted-interleave`` (MPOL_WEIGHTED_INTERLEAVE, 6.9+, weighted_interleave_nid): as
  interleave, but node n of the mask takes weight[n] consecutive indices of each cycle of
  sum(weights); the weights are /sys/kernel/mm/mempolicy/weighted_interleave/nodeN of the
  *simulated* kernel (mm/sysfs.py; 1 when unset, as with no iw_table). [Read from kernel
  knowledge of 6.9's mm/mempolicy.c; the public corpus searched has no copy: unverified.]

``numa_balancing`` is MPOL_F_NUMA_BALANCING (bind, and preferred-many since 6.12 [unverified
version]): sanitize_mpol_flags() sets MPOL_F_MOF | MPOL_F_MORON, so task_numa_work scans the
VMA (vma_policy_mof) and mpol_misplaced() moves a faulting page towards the faulting CPU's node
when that node is in the mask (``mpol_misplaced`` below). Without it a non-default policy has no
MOF: NUMA balancing leaves its pages alone (with a detector's ``honor_mempolicy = true``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

POLICIES = ("default", "local", "preferred", "bind", "preferred-many", "interleave",
            "weighted-interleave")
_MASK_MODES = ("bind", "preferred-many", "interleave", "weighted-interleave")
INTERLEAVE_MODES = ("interleave", "weighted-interleave")
# mempolicy.c sanitize_mpol_flags(): MPOL_F_NUMA_BALANCING only with these modes
NUMA_BALANCING_MODES = ("bind", "preferred-many")
WEIGHT_MAX = 255   # the sysfs node weights are u8, 1..255 (a write of 0 is -EINVAL)


@dataclass(frozen=True)
class MemPolicy:
    """struct mempolicy: a mode, its node mask (sorted, except ``preferred``'s one node) and
    MPOL_F_NUMA_BALANCING."""

    mode: str = "default"
    nodes: tuple[int, ...] = ()
    numa_balancing: bool = False

    @classmethod
    def make(cls, mode, nodes, nr_nodes: int, numa_balancing: bool = False,
             field: str = "policy") -> "MemPolicy":
        """mpol_new() + sanitize_mpol_flags(): validate and build; ConfigError names
        ``field`` (the mode) or ``field``'s sibling ``nodes``/``numa_balancing``."""
        base = field.rpartition(".")[0]
        nfield = f"{base}.nodes" if base else "nodes"
        if mode is None:
            mode = "default"
        if mode not in POLICIES:
            raise ConfigError(f"unknown policy {mode!r} (expected one of: {', '.join(POLICIES)})",
                              field=field)
        if nodes is not None and not isinstance(nodes, (list, tuple, range, set)) and \
                not hasattr(nodes, "__array__"):
            raise ConfigError(f"expected a list of node ids, got {nodes!r}", field=nfield)
        nodes = tuple(int(n) for n in (() if nodes is None else list(nodes)))
        for n in nodes:
            if not 0 <= n < nr_nodes:
                raise ConfigError(f"node {n} does not exist (machine has nodes 0-{nr_nodes - 1})",
                                  field=nfield)
        if mode in _MASK_MODES + ("preferred",) and not nodes:
            raise ConfigError(f"policy {mode!r} needs a non-empty nodes list", field=nfield)
        if mode in ("local", "default") and nodes:
            raise ConfigError(f"policy {mode!r} takes no nodes", field=nfield)
        if mode == "preferred" and len(nodes) != 1:
            raise ConfigError("policy 'preferred' takes exactly one node", field=nfield)
        if numa_balancing and mode not in NUMA_BALANCING_MODES:
            raise ConfigError(f"numa_balancing (MPOL_F_NUMA_BALANCING) needs policy 'bind' or "
                              f"'preferred-many', not {mode!r} (EINVAL)",
                              field=f"{base}.numa_balancing" if base else "numa_balancing")
        return cls(mode, tuple(sorted(set(nodes))) if mode in _MASK_MODES else nodes,
                   bool(numa_balancing))

    @property
    def is_default(self) -> bool:
        return self.mode == "default"

    @property
    def mof(self) -> bool:
        """MPOL_F_MOF (and MPOL_F_MORON, always set with it here): the system default policy
        and MPOL_F_NUMA_BALANCING have it, every other policy not."""
        return self.is_default or self.numa_balancing


DEFAULT_POLICY = MemPolicy()


def get_vma_policy(vma, task_policy: MemPolicy | None = None) -> MemPolicy:
    """get_vma_policy(): the VMA's own policy, else the task's (set_mempolicy), else the
    system default. ``task_policy`` is the faulting task's; None means the mm's current task
    (MM.task_policy)."""
    if not vma.policy.is_default:
        return vma.policy
    if task_policy is None:
        task_policy = vma.mm.task_policy
    return task_policy


def zonelist(distance, nid: int) -> list[int]:
    """build_zonelists(): every node, nearest first (ties by node id)."""
    return sorted(range(len(distance)), key=lambda n: (int(distance[nid][n]), n))


def policy_nodes(policy: MemPolicy, distance, local_nid: int) -> list[int]:
    """Every node an allocation under ``policy`` may use, in the order the first page tries
    them (for interleave: the local zonelist; the nodes per page are ``interleave_targets``)."""
    if policy.mode in ("local", "default") or policy.mode in INTERLEAVE_MODES or \
            policy.mode == "preferred-many":
        return zonelist(distance, local_nid)
    if policy.mode == "preferred":
        return zonelist(distance, policy.nodes[0])
    return [n for n in zonelist(distance, local_nid) if n in policy.nodes]


def interleave_index(vma, slots, order: int = 0) -> np.ndarray:
    """The interleave index of each page slot of ``vma`` (get_vma_policy's ilx): vm_pgoff >>
    order plus the page offset in the VMA >> order. An anonymous private VMA's vm_pgoff is
    its start address >> PAGE_SHIFT (do_mmap); a file or shmem VMA's is its file offset."""
    from .constants import MMAP_BASE, PAGE_SHIFT

    slots = np.asarray(slots, np.int64)
    pgoff = vma.pgoff if vma.file is not None else (MMAP_BASE >> PAGE_SHIFT) + vma.start_slot
    return (pgoff >> order) + ((slots - vma.start_slot) >> order)


def interleave_weights(policy: MemPolicy, sysfs=None) -> np.ndarray:
    """The weight of each node of the mask: 1 for interleave; for weighted interleave the
    simulated sysfs weight (1 when unset)."""
    if policy.mode != "weighted-interleave" or sysfs is None:
        return np.ones(len(policy.nodes), np.int64)
    return np.array([sysfs.interleave_weight(n) for n in policy.nodes], np.int64)


def weighted_interleave_nid(policy: MemPolicy, ilx: int, sysfs=None) -> int:
    """weighted_interleave_nid() (interleave_nid() with every weight 1) for one index, as the
    kernel's loop: the reference ``interleave_targets`` is tested and benchmarked against."""
    weights = [int(w) for w in interleave_weights(policy, sysfs)]
    target = ilx % sum(weights)
    i = 0
    while target:
        if target < weights[i]:
            break
        target -= weights[i]
        i = (i + 1) % len(weights)          # next_node_in()
    return policy.nodes[i]


def interleave_targets(policy: MemPolicy, ilx, sysfs=None) -> np.ndarray:
    """interleave_nid() / weighted_interleave_nid() for an array of interleave indices: the
    node each page starts at (vectorised: ilx mod the weight total located in the cumulative
    weights of the mask's nodes in node-id order)."""
    nodes = np.asarray(policy.nodes, np.int64)
    w = interleave_weights(policy, sysfs)
    cum = np.cumsum(w)
    target = np.asarray(ilx, np.int64) % int(cum[-1])
    return nodes[np.searchsorted(cum, target, side="right")]


def mpol_misplaced(policy: MemPolicy, cur_nid, this_nid: int) -> np.ndarray:
    """mpol_misplaced() for folios on ``cur_nid`` faulting on a CPU of ``this_nid``: the node
    each should move to, or -1 (NUMA_NO_NODE) where it stays. Without MPOL_F_MOF nothing
    moves. With MORON (the default policy, MPOL_F_NUMA_BALANCING) the target is the CPU's
    node, for bind only when that node is in the mask; should_numa_migrate_memory() is the
    caller's. The interleave and preferred cases without MORON are unreachable here (no MOF).
    [mpol_misplaced read in the public corpus (5.x form); the MORON bind branch from 6.x.]"""
    cur = np.asarray(cur_nid, np.int64)
    out = np.full(cur.shape, -1, np.int64)
    if not policy.mof:
        return out
    if policy.mode == "bind" and this_nid not in policy.nodes:
        return out                            # MPOL_BIND with MORON: thisnid outside the mask
    if policy.mode == "preferred-many" and this_nid not in policy.nodes:
        # mpol_preferred_should_numa_migrate() (6.12+, unverified): the CPU's node outside the
        # mask migrates only folios that are outside it too
        out[~np.isin(cur, policy.nodes) & (cur != this_nid)] = this_nid
        return out
    out[cur != this_nid] = this_nid
    return out
