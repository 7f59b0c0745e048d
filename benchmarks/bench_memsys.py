"""The loaded latency model's cost: one reproduction-like run (pghot RFC v3, full scale by
default) under latency_model = "idle" and "loaded", in one process, and the ratio.

    cd /work/main && PYTHONPATH=src python3 benchmarks/bench_memsys.py
    cd /work/main && PYTHONPATH=src python3 benchmarks/bench_memsys.py --scale 0.125
    cd /work/main && PYTHONPATH=src python3 benchmarks/bench_memsys.py --dram-channels 2 --cxl-devices 2
    (--json PATH: also the figure for bench_all.py's table)

The goal (issues 12 and 15): the memory-timing model adds at most 10% to a run's CPU time. The
figure is the CPU time spent inside the model during the loaded run (its per-tick solve, the
migration-traffic and remap inputs it is fed) over the rest of that run. Whole-run and
per-simulated-tick ratios are printed too but are not the model's cost: the two latency models
simulate different runs (with loaded latencies the run ends at a different time, so it has a
different number of ticks doing a different amount of the same promotion work each). Also
reported: how many closed-loop solves the loaded run made. Exits 1 when the machine has no
curves (the two runs would be the same model).
"""

from __future__ import annotations

import argparse
import sys
import time

from _report import add_json_arg, row, write_rows

from tierscan.experiments.pghot_v3 import SOURCES, config
from tierscan.memsys.system import MemorySystem
from tierscan.sim.config import config_from_dict
from tierscan.sim.run import build_engine


def timed_run(mode, source, scale, latency_model, memory=None):
    """(CPU s of the engine's run, engine, CPU s in memsys): setup (populating memory) is not
    timed. CPU time of this process, not wall time: the figure must not depend on what else the
    (shared) machine runs, and the run is single-threaded."""
    cfg = config_from_dict(config(mode, source, scale=scale, latency_model=latency_model,
                                 memory=memory))
    e = build_engine(cfg)
    spent = [0.0]

    def counted(fn):
        def timed(*args):
            t = time.process_time()
            fn(*args)
            spent[0] += time.process_time() - t
        return timed
    ms = e.memsys
    if ms is not None:
        ms.tick = counted(ms.tick)
        ms.kernel_traffic = counted(ms.kernel_traffic)
        hooks = e.kernel.remap_hooks
        hooks[hooks.index(ms._on_remap)] = counted(ms._on_remap)
    t = time.process_time()
    e.run()
    return time.process_time() - t, e, spent[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", type=int, default=1, choices=(1, 2, 3))
    ap.add_argument("--source", default="numab2", choices=SOURCES)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--dram-channels", type=int, help="memory configuration (default: preset's)")
    ap.add_argument("--cxl-devices", type=int, help="memory configuration (default: preset's)")
    add_json_arg(ap)
    args = ap.parse_args()
    memory = {"dram_channels": args.dram_channels, "cxl_devices": args.cxl_devices}
    idle_s, idle, _ = timed_run(args.mode, args.source, args.scale, "idle", memory)
    loaded_s, loaded, in_memsys = timed_run(args.mode, args.source, args.scale, "loaded", memory)
    if not MemorySystem.applies(loaded.kernel.machine):
        print("the machine has no curves or caches: nothing to compare")
        return 1
    ti, tl = idle.now // idle.tick_ns, loaded.now // loaded.tick_ns
    print(f"pghot-v3 mode {args.mode} {args.source} scale {args.scale}")
    print(f"  idle   : {idle_s:7.2f} s CPU, {ti} ticks ({idle_s / ti * 1e3:.2f} ms per tick)")
    print(f"  loaded : {loaded_s:7.2f} s CPU, {tl} ticks ({loaded_s / tl * 1e3:.2f} ms per tick); "
          f"{loaded.memsys.solves} solves, {in_memsys:.2f} s in memsys "
          f"({in_memsys / max(tl, 1) * 1e6:.0f} us per tick)")
    share = in_memsys / max(loaded_s - in_memsys, 1e-9)
    per_tick = (loaded_s / tl) / (idle_s / ti)
    print(f"  CPU in the memory-timing model / the rest of the loaded run: {share:.3f} "
          f"(goal <= 0.10)")
    print(f"  (not the model's cost, different simulated runs: whole runs loaded/idle "
          f"{loaded_s / idle_s:.3f}, per simulated tick {per_tick:.3f})")
    write_rows(args.json, [row(
        f"memory-timing model's own CPU, Mode {args.mode} {args.source} (scale {args.scale:g})",
        "<= 10% of the run",
        f"{in_memsys:.2f} s of {loaded_s:.2f} s CPU ({in_memsys / max(tl, 1) * 1e6:.0f} us per "
        f"tick); whole runs loaded/idle x{loaded_s / idle_s:.2f}",
        share <= 0.10, f"+{share:.1%} over the rest of the run")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
