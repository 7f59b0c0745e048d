"""`tierscan demo`: a small real run on the default machine, printed as tables.

A process on the DRAM node maps memory bound to the CXL node, touches a skewed set of its pages,
and the per-node tables show where the memory lives and which node served the accesses.
"""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from tierscan import Kernel, Machine


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run a small experiment on the laptop machine",
                              description=__doc__)
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=run)


def run(args) -> int:
    console = Console()
    k = Kernel(Machine.preset("laptop"), seed=args.seed)
    mm = k.spawn("demo", cpu_node=0)
    cxl = mm.mmap(256 << 20, kind="anon", populate=True, policy="bind", nodes=[1])
    dram = mm.mmap(64 << 20, kind="anon", policy="local")
    rng = np.random.default_rng(args.seed)
    # 80% of accesses go to the first 10% of the CXL mapping, the rest spread over both mappings
    n = 1_000_000
    hot = rng.random(n) < 0.8
    pages = np.where(hot, rng.integers(0, 6553, n), rng.integers(0, 65536, n))
    addrs = np.where(pages < 65536 - 16384,
                     cxl.start + pages.astype(np.uint64) * 4096,
                     dram.start + (pages - (65536 - 16384)).astype(np.uint64) * 4096).astype(np.uint64)
    served = mm.access(addrs, rng.random(n) < 0.5)
    k.check()

    console.print(f"[bold]tierscan demo[/] — {n:,} accesses by a process on node 0 "
                  f"({k.machine.name} machine)")
    t = Table(title="accesses served per node")
    t.add_column("node"); t.add_column("tier"); t.add_column("accesses", justify="right")
    t.add_column("share", justify="right")
    for node in k.machine.nodes:
        t.add_row(str(node.id), f"{node.kind} (tier {node.tier})", f"{served[node.id]:,}",
                  f"{served[node.id] / n:.1%}")
    console.print(t)
    console.print(k.meminfo_table())
    console.print(k.numastat())
    for name in ("pgfault", "thp_fault_alloc", "pgalloc_normal", "pgalloc_movable"):
        console.print(f"{name} {k.vmstat[name]}")
    return 0
