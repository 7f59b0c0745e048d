"""Memory policies (mm/mempolicy.c) and the node order an allocation tries.

``local`` allocates on the faulting CPU's node and falls back along that node's zonelist
(nodes by distance); ``preferred`` starts at ``nodes[0]`` and falls back along its zonelist;
``bind`` uses only ``nodes``, nearest to the faulting CPU first.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

POLICIES = ("local", "preferred", "bind")


@dataclass(frozen=True)
class MemPolicy:
    mode: str = "local"
    nodes: tuple[int, ...] = ()

    @classmethod
    def make(cls, mode: str, nodes, nr_nodes: int) -> "MemPolicy":
        if mode not in POLICIES:
            raise ConfigError(f"unknown policy {mode!r} (expected one of: {', '.join(POLICIES)})",
                              field="policy")
        if nodes is not None and not isinstance(nodes, (list, tuple, range, set)) and \
                not hasattr(nodes, "__array__"):
            raise ConfigError(f"expected a list of node ids, got {nodes!r}", field="nodes")
        nodes = tuple(int(n) for n in (() if nodes is None else list(nodes)))
        for n in nodes:
            if not 0 <= n < nr_nodes:
                raise ConfigError(f"node {n} does not exist (machine has nodes 0-{nr_nodes - 1})",
                                  field="nodes")
        if mode in ("bind", "preferred") and not nodes:
            raise ConfigError(f"policy {mode!r} needs a non-empty nodes list", field="nodes")
        if mode == "local" and nodes:
            raise ConfigError("policy 'local' takes no nodes", field="nodes")
        if mode == "preferred" and len(nodes) != 1:
            raise ConfigError("policy 'preferred' takes exactly one node", field="nodes")
        return cls(mode, tuple(sorted(set(nodes))) if mode == "bind" else nodes)


def zonelist(distance, nid: int) -> list[int]:
    """build_zonelists(): every node, nearest first (ties by node id)."""
    return sorted(range(len(distance)), key=lambda n: (int(distance[nid][n]), n))


def policy_nodes(policy: MemPolicy, distance, local_nid: int) -> list[int]:
    """The nodes an allocation under ``policy`` tries, in order; the first is the preferred one."""
    if policy.mode == "local":
        return zonelist(distance, local_nid)
    if policy.mode == "preferred":
        return zonelist(distance, policy.nodes[0])
    return [n for n in zonelist(distance, local_nid) if n in policy.nodes]
