"""The loaded latency model's cost: one reproduction-like run (pghot RFC v3, full scale by
default) under latency_model = "idle" and "loaded", in one process, and the ratio.

    cd /work/main && PYTHONPATH=src python3 benchmarks/bench_memsys.py
    cd /work/main && PYTHONPATH=src python3 benchmarks/bench_memsys.py --scale 0.125
    cd /work/main && PYTHONPATH=src python3 benchmarks/bench_memsys.py --dram-channels 2 --cxl-devices 2
    (--json PATH: also the figure for bench_all.py's table)

The goal (issue 12): the loaded run takes no more than 10% longer per simulated tick (the
two models simulate different run times, so whole-run CPU times are printed too). Also
reported: how many closed-loop solves the loaded run made and the time spent in memsys. Exits 1 when the
machine has no curves (the two runs would be the same model).
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
    if e.memsys is not None:
        tick = e.memsys.tick

        def counted(engine, dt):
            t = time.process_time()
            tick(engine, dt)
            spent[0] += time.process_time() - t
        e.memsys.tick = counted
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
    # the loaded model changes the simulated run time, so compare CPU time per simulated tick
    per_tick = (loaded_s / tl) / (idle_s / ti)
    print(f"  loaded / idle CPU time per simulated tick: {per_tick:.3f} "
          f"(goal <= 1.10); whole runs: {loaded_s / idle_s:.3f}")
    write_rows(args.json, [row(
        f"loaded latency model, Mode {args.mode} {args.source} (scale {args.scale:g})",
        "<= 1.10 x idle per tick",
        f"{loaded_s / tl * 1e3:.2f} vs {idle_s / ti * 1e3:.2f} ms CPU per tick; "
        f"{in_memsys / max(tl, 1) * 1e6:.0f} us in memsys",
        per_tick <= 1.10, f"x{per_tick:.3f} vs the idle model")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
