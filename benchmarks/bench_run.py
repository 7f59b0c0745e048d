"""Whole runs of the pghot RFC v3 reproduction (zen5-cxl, 131.9 M pfns, 8 GiB on the CXL
node): the fixed cost of one run, memory across runs in one process, the MGLRU walk inside
a real klruscand run, Mode 1's five sources (and the peak RSS across them) and --mode all.
CPU seconds of this process (time.process_time), because on a shared machine wall time
mostly measures the others; --mode all, which runs on a process pool, also its wall time.

    cd /work/main && PYTHONPATH=src python3 benchmarks/bench_run.py [--quick] [--fixed-only]
        [--json PATH]

See benchmarks/README.md.
"""

from __future__ import annotations

import time

_CPU0 = time.process_time()     # before the imports: the import cost is part of a run's

import argparse  # noqa: E402
import gc  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from _report import add_json_arg, cpu_s, row, vm_status, write_rows  # noqa: E402

import tierscan.access.rate as rate  # noqa: E402
from tierscan.access.rate_kernels import materialize_kernel, materialize_reference  # noqa: E402
from tierscan.experiments.pghot_v3 import SOURCES, config, reproduce  # noqa: E402
from tierscan.hotness.klruscand import Klruscand  # noqa: E402
from tierscan.memsys import memo  # noqa: E402
from tierscan.sim.config import config_from_dict  # noqa: E402
from tierscan.sim.run import build_engine, run_experiment  # noqa: E402
from tierscan.sweep.pool import usable_cores  # noqa: E402

IMPORT_CPU = time.process_time() - _CPU0
GiB = 1 << 30


def fixed_cost_config(scale: float, mode: int = 1) -> dict:
    """Mode 1 NUMAB0 with 1,000 accesses per thread: building the machine, populating and
    placing 8 GiB, and the summary, with (almost) no simulated time (``mode``: another
    mode's NUMAB0 run, for setup_steps.py)."""
    d = config(mode, "numab0", scale=scale)
    d["workload"]["accesses_per_thread"] = 1000
    return d


def first_cost() -> float:
    """CPU s of what only the first run of a process pays: the configuration's fit (an engine
    set up as far as its first solve, once per process: pghot_v3._FITS), including numba's
    start at the first compiled call (its target context; the kernels come from its on-disk
    cache)."""
    t = cpu_s()
    config(1, "numab0")
    return cpu_s() - t


def fixed_cost(scale: float) -> tuple[list[float], list[int]]:
    """CPU s of two identical runs in one process, and VmHWM (peak RSS) after each, with the
    cyclic garbage collector off so only reference counting frees a finished run."""
    cpu, hwm = [], []
    gc.collect()
    gc.disable()
    try:
        for _ in range(2):
            t = cpu_s()
            run_experiment(config_from_dict(fixed_cost_config(scale)))
            cpu.append(cpu_s() - t)
            hwm.append(vm_status("VmHWM"))
    finally:
        gc.enable()
    return cpu, hwm


def fixed_cost_without_memo(scale: float) -> float:
    """CPU s of the fixed-cost run with memsys's memo of phase solutions off: what the first
    run of a process without a fit pays (the memo answers every later run's first solve)."""
    memo.ENABLED = False
    try:
        t = cpu_s()
        run_experiment(config_from_dict(fixed_cost_config(scale)))
        return cpu_s() - t
    finally:
        memo.ENABLED = True


def walk_in_run(scale: float, seconds: int, kernel, draw_in_pass: bool = True
                ) -> tuple[int, float]:
    """PTEs the klruscand scan passes walked in the first ``seconds`` of Mode 1, and their CPU
    s (the passes include the walk, the young-bit draws and pghot's record updates), with
    ``kernel`` drawing the young bits of listed slots, and the walk's ranges drawn in the
    compiled pass (``draw_in_pass``, rate.DRAW_IN_PASS) or by the numpy form."""
    rate.materialize_kernel, rate.DRAW_IN_PASS = kernel, draw_in_pass
    try:
        d = config(1, "klruscand", scale=scale)
        d["duration"] = f"{seconds}s"
        e = build_engine(config_from_dict(d))
        det = next(x for x in e.daemons if isinstance(x, Klruscand))
        stats = [0, 0.0]
        scan = det.scan_pass

        def timed(k):
            t = cpu_s()
            total, young = scan(k)
            stats[0] += total
            stats[1] += cpu_s() - t
            return total, young

        det.scan_pass = timed
        e.run()
        return stats[0], stats[1]
    finally:
        rate.materialize_kernel, rate.DRAW_IN_PASS = materialize_kernel, True


def mode1(scale: float) -> tuple[dict[str, float], list[int]]:
    """CPU s of each of Mode 1's five runs in one process, and (VmHWM, VmRSS) after each:
    the peak so far, and what stays resident once a run is over."""
    out, hwm = {}, []
    for source in SOURCES:
        t = cpu_s()
        run_experiment(config_from_dict(config(1, source, scale=scale)))
        out[source] = cpu_s() - t
        hwm.append((vm_status("VmHWM"), vm_status("VmRSS")))
        print(f"  mode 1 {source:13s} {out[source]:7.1f} s CPU, VmHWM {hwm[-1][0] / GiB:.2f} "
              f"GiB, VmRSS after {hwm[-1][1] / GiB:.2f} GiB", flush=True)
    return out, hwm


def mode_all(scale: float, jobs: int) -> tuple[float, float]:
    """Wall s of `reproduce pghot-v3 --mode all --jobs JOBS` (Modes 1-3, five sources each,
    on JOBS worker processes) and its CPU s: this process's (the configurations and the fit)
    plus every worker's own CPU when its last run ended (a worker's clock starts at its fork
    from the pool's forkserver, which has imported tierscan once: that import is not in it)."""
    workers: dict[int, float] = {}

    def seen(mode, source, run, info):
        if info["pid"] != os.getpid():
            workers[info["pid"]] = max(workers.get(info["pid"], 0.0), info["process_cpu_s"])

    t, w = cpu_s(), time.perf_counter()
    reproduce((1, 2, 3), scale=scale, jobs=jobs, progress=seen)
    return time.perf_counter() - w, cpu_s() - t + sum(workers.values())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="Mode 1 and the walk at 1/20 scale (the fixed cost stays full scale)")
    ap.add_argument("--no-mode-all", action="store_true",
                    help="leave out --mode all (at full scale ~3x Mode 1)")
    ap.add_argument("--jobs", type=int, default=usable_cores(),
                    help="worker processes of --mode all (default: the usable CPUs, "
                         f"{usable_cores()})")
    ap.add_argument("--fixed-only", action="store_true",
                    help="only the fixed cost of one run and memory across runs")
    ap.add_argument("--walk-seconds", type=int, default=5,
                    help="simulated seconds of the klruscand run (default 5: 10 passes)")
    add_json_arg(ap)
    args = ap.parse_args(argv)
    scale = 0.05 if args.quick else 1.0
    rows = []
    # without cached bytecode (PYTHONDONTWRITEBYTECODE, a read-only tree) every import
    # compiles its source: ~0.4 s more CPU than a normal installation
    pyc = "no bytecode cache" if sys.dont_write_bytecode else "bytecode cache on"
    print(f"bench_run: imports {IMPORT_CPU:.2f} s CPU ({pyc})")
    first = first_cost()
    print(f"once per process: the fit, with numba's start, {first:.2f} s CPU")

    cpu, hwm = fixed_cost(1.0)
    fixed = IMPORT_CPU + cpu[1]
    cold = fixed_cost_without_memo(1.0)
    print(f"fixed cost (Mode 1 NUMAB0, 1,000 accesses a thread, full scale): runs {cpu[0]:.2f} "
          f"and {cpu[1]:.2f} s CPU (+ imports {IMPORT_CPU:.2f} s); VmHWM after each "
          f"{hwm[0] / GiB:.2f} and {hwm[1] / GiB:.2f} GiB; a run computing its phase "
          f"solutions (memsys memo off) {cold:.2f} s CPU")
    rows.append(row("fixed cost of one run (imports, machine, populate 8 GiB, summary)",
                    "< 1 s", f"{fixed:.2f} s CPU (run {cpu[1]:.2f} + imports {IMPORT_CPU:.2f}"
                    f", {pyc}; once per process: the fit with numba's start {first:.2f}; "
                    f"a run without memsys's memo {cold:.2f})", fixed < 1.0))
    grow = (hwm[1] - hwm[0]) / GiB
    rows.append(row("peak RSS growth from a 2nd identical run in one process (gc off)",
                    "none", f"{grow:+.2f} GiB (peak {hwm[0] / GiB:.2f} GiB after the 1st)",
                    grow < 0.05))
    if args.fixed_only:
        write_rows(args.json, rows)
        return 0

    ptes, t_fast = walk_in_run(scale, args.walk_seconds, materialize_kernel)
    ptes_ref, t_ref = walk_in_run(scale, args.walk_seconds, materialize_reference,
                                  draw_in_pass=False)
    same = ptes == ptes_ref
    print(f"walk in a klruscand run (Mode 1, scale {scale:g}, {args.walk_seconds} s): "
          f"{ptes:,} PTEs in {t_fast:.2f} s CPU; with the numpy young-bit draw {t_ref:.2f} s "
          f"({'same PTE count' if same else 'DIFFERENT PTE COUNT'})")
    rows.append(row(f"MGLRU walk inside a klruscand run (scale {scale:g})", ">= 100 M PTE/s",
                    f"{ptes / t_fast / 1e6:.1f} M PTE/s", ptes / t_fast >= 100e6,
                    f"x{t_ref / t_fast:.2f} vs numpy young-bit draw"))

    times, hwm = mode1(scale)
    total = sum(times.values())
    rows.append(row(f"reproduce pghot-v3 --mode 1, five sources (scale {scale:g})",
                    "<= 20 s" if scale == 1 else "(goal at scale 1)",
                    f"{total:.1f} s CPU (" + ", ".join(f"{s} {t:.1f}" for s, t in times.items())
                    + ")", total <= 20 if scale == 1 else None))
    kept = (hwm[-1][1] - hwm[0][1]) / GiB
    rows.append(row(f"--mode 1's five runs in one process: resident after each (scale {scale:g})",
                    "no growth after the first", f"{kept:+.2f} GiB (VmRSS " +
                    ", ".join(f"{h[1] / GiB:.2f}" for h in hwm) + " GiB; peak VmHWM " +
                    f"{hwm[-1][0] / GiB:.2f} GiB)", kept < 0.1))
    if not args.no_mode_all:
        # the one wall-time figure: the goal is the parallel run's wall time on 2 cores (the
        # machine's load counts, so the row says the jobs and the CPU behind it)
        wall, cpu = mode_all(scale, args.jobs)
        print(f"reproduce pghot-v3 --mode all --jobs {args.jobs} (scale {scale:g}): "
              f"{wall:.1f} s wall, {cpu:.1f} s CPU in all processes")
        rows.append(row(f"reproduce pghot-v3 --mode all --jobs {args.jobs} (scale {scale:g})",
                        "<= 60 s" if scale == 1 else "(goal at scale 1)",
                        f"{wall:.1f} s wall ({cpu:.1f} s CPU in all processes)",
                        wall <= 60 if scale == 1 else None))
    write_rows(args.json, rows)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
