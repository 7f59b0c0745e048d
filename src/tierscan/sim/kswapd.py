"""kswapd as engine daemons: one kthread per node with memory (mm/kswapd.py does the work).

Each tick the daemon runs one pass of the kswapd() loop; the reclaim it does (pages scanned,
migrations of demotion, swap writes) is charged to it as kernel CPU time. It is a kthread
(Daemon's CPU rule, sim/engine.py): a pass that costs more than the tick delays the next, so
the work runs at one CPU's speed.
"""

from __future__ import annotations

from ..mm.kswapd import kswapd_run
from .engine import MS, Daemon


class KswapdDaemon(Daemon):
    period_ns = 10 * MS
    kthread = True
    # the rate model lets the workload's accesses go on during a pass (Accounting.run_ns)
    workload_runs_meanwhile = True

    def __init__(self, nid: int, cpu_node: int, period_ns: int = 10 * MS):
        self.nid = nid
        self.name = f"kswapd{nid}"
        self.cpu_node = cpu_node
        self.period_ns = int(period_ns)

    def run(self, engine) -> None:
        kswapd_run(engine.kernel, self.nid, engine.now)


def kswapd_daemons(kernel, period_ns: int = 10 * MS) -> list[KswapdDaemon]:
    """kswapd_run() at boot: a kswapd for every node with memory, bound to the node's CPUs
    (any CPU node for a memory-only node, whose cpumask is empty)."""
    m = kernel.machine
    cpu_nodes = list(m.cpu_nodes)
    return [KswapdDaemon(nid, nid if nid in cpu_nodes else cpu_nodes[0], period_ns)
            for nid in range(m.nr_nodes) if kernel.pm.node_present[nid] > 0]
