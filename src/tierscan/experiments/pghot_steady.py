"""Steady-state time per access of the pghot RFC v3 benchmark under the loaded model, for each
memory configuration the published facts allow: every page on CXL (NUMAB0), every page on
DRAM (early full promotion), and the best split between them (issue 12 item 9's check).

    python -m tierscan.experiments.pghot_steady
    python -m tierscan.experiments.pghot_steady --sensitivity dram2-cxl2

No simulation: the engine's own pieces (tlb.py, llc.py, solve.py) on the full-scale footprint
(8 GiB, uniform, 4 KiB pages, 64 threads, mlp 10). The ratio DRAM/CXL is what a page promoted at
time zero gains; the split column is the share of accesses on DRAM that minimises the time.
"""

from __future__ import annotations

import sys

import numpy as np

from ..memsys.devices import devices_of
from ..memsys.llc import shared_llc_hits
from ..memsys.solve import solve
from ..memsys.system import group_coefficients
from ..memsys.tlb import translation
from ..sim.costs import CostModel
from ..workload.library import PGHOT_BENCH_MODES
from .memory_configs import pghot_memory_configs
from .pghot_v3 import CPU_NODE, CXL_NODE, LOADED_MLP

THREADS = 64


_CACHES: dict = {}


def caches(cpu, pages: int) -> tuple[float, float, float]:
    """(LLC data hit ratio, walks per access, walk LLC hit ratio) of uniform 4 KiB pages."""
    key = (cpu.llc_bytes, tuple(cpu.tlb_4k), pages)
    if key not in _CACHES:
        w = np.full(pages, 1.0 / pages)
        tr = translation(w, np.arange(pages, dtype=np.int64), np.zeros(pages, bool),
                         cpu.tlb_4k, cpu.tlb_2m)
        ((h, h_pt, _),) = shared_llc_hits([(1.0, w, tr.line_rates)], cpu.llc_bytes)
        _CACHES[key] = (h, tr.walks, h_pt)
    return _CACHES[key]


def per_access(machine, mode: int, dram_share: float, pages: int = 2_097_152) -> float:
    """ns per access per thread with ``dram_share`` of the accesses on node 0, the rest on CXL."""
    c = CostModel()
    h, walks, h_pt = caches(machine.cpu, pages)
    f = np.zeros(machine.nr_nodes)
    f[CPU_NODE], f[CXL_NODE] = dram_share, 1.0 - dram_share
    tau0, A, rd, wr = group_coefficients(
        f, PGHOT_BENCH_MODES[mode][4], LOADED_MLP, c.compute_ns_per_access,
        machine.load_ns[CPU_NODE], machine.store_ns[CPU_NODE], h=h, walks=walks, h_pt=h_pt,
        pt_node=CPU_NODE, llc_hit_ns=c.llc_hit_ns, walk_ns=c.walk_ns)
    return float(solve(devices_of(machine), [THREADS], [tau0], A[None], rd[None],
                       wr[None]).tau[0])


def per_access_all(machine, mode: int, shares) -> list[float]:
    return [per_access(machine, mode, s) for s in shares]


def table():
    rows = []
    for cfg in pghot_memory_configs():
        row = {"config": cfg.label}
        for mode in (1, 2):
            cxl = per_access(cfg.machine, mode, 0.0)
            dram = per_access(cfg.machine, mode, 1.0)
            shares = np.linspace(0, 1, 21)
            taus = [per_access(cfg.machine, mode, s) for s in shares]
            best = int(np.argmin(taus))
            row[mode] = (cxl, dram, dram / cxl, shares[best], taus[best] / cxl)
        rows.append(row)
    return rows


def sensitivity(label: str) -> list[tuple]:
    """(parameter, factor, mode, DRAM/CXL ratio, its change) for each cited curve parameter
    scaled by 0.8 and 1.2 (pghot_sensitivity.perturbed), on one memory configuration."""
    from .memory_configs import pghot_memory_config
    from .pghot_sensitivity import PARAMETERS, perturbed

    base = pghot_memory_config(label).machine
    ref = {m: per_access(base, m, 1.0) / per_access(base, m, 0.0) for m in (1, 2)}
    out = []
    for p in PARAMETERS:
        for f in (0.8, 1.2):
            m_ = perturbed(base, p, f)
            for mode in (1, 2):
                r = per_access(m_, mode, 1.0) / per_access(m_, mode, 0.0)
                out.append((p, f, mode, r, r - ref[mode]))
    return [("base", 1.0, m, ref[m], 0.0) for m in (1, 2)] + out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--sensitivity"]:
        print("parameter          | factor | mode | DRAM/CXL | change")
        for p, f, mode, r, d in sensitivity(argv[1]):
            print(f"{p:<18} | {f:6.1f} | {mode}    | {r:8.3f} | {d:+.3f}")
        return 0
    print("config        | mode | CXL ns | DRAM ns | DRAM/CXL | best DRAM share | best/CXL")
    for row in table():
        for mode in (1, 2):
            cxl, dram, ratio, share, best = row[mode]
            print(f"{row['config']:<13} | {mode}    | {cxl:6.1f} | {dram:7.1f} | {ratio:8.3f} |"
                  f" {share:15.3f} | {best:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
