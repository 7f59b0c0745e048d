"""Engine speed: the pghot RFC v3 Mode 1 run (64 threads, 8 GiB anon on the CXL node of the
zen5-cxl machine, the full per-thread access count, no promotion) in the rate model, and the
same workload at 1/1000 scale (size and accesses) in the exact model, in one process; the
exact model twice: its compiled pass over all threads (``ExactModel.fast``, the default) and
the reference, one ``MM.access`` per thread with numpy's searchsorted draw, with the same
results checked.

Prints CPU time (time.process_time: on a shared machine wall time mostly measures the
others) and simulated accesses per CPU second for each. Targets: the full-scale rate-model
run under 20 s on a 2-core machine (issue 4); the exact model >= 20 M accesses/s (issue 15).

    PYTHONPATH=src python3 benchmarks/bench_engine.py [--quick]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

from _report import add_json_arg, row, write_rows
from tierscan import Kernel, Machine
from tierscan.access.exact import ExactModel
from tierscan.sim.engine import Engine
from tierscan.workload.library import make_workload


def run(model: str, scale: float, fast: bool = True):
    t0 = time.process_time()
    k = Kernel(Machine.preset("zen5-cxl"), seed=0)
    wl = make_workload("pghot-bench", {"mode": 1, "scale": scale})
    e = Engine(k, wl, access_model=model, seed=0)
    e.model.fast = fast
    t1 = time.process_time()
    e.run()
    t2 = time.process_time()
    res = e.results()
    r = res["final"]
    accesses = sum(r["accesses_per_thread"].values()) * wl.processes[0].threads
    return {"setup_s": t1 - t0, "run_s": t2 - t1, "accesses": accesses,
            "runtime_s": r["runtime_ns"] / 1e9, "pages": wl.processes[0].mappings[0].size >> 12,
            "check": (r["runtime_ns"], r["vmstat"], res["series"]["heatmap"].tolist(),
                      e.groups[0].mm.pt.pte.tobytes())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1/100 scale for the rate model")
    add_json_arg(ap)
    args = ap.parse_args(argv)
    full = 0.01 if args.quick else 1.0
    print("bench_engine: pghot-bench Mode 1 on zen5-cxl, 64 threads, no promotion")
    rows = []
    run("exact", 1e-5)                      # compile the kernels outside the timing
    ref = None
    for model, scale, fast in (("rate", full, True), ("exact", full / 1000, False),
                               ("exact", full / 1000, True)):
        r = run(model, scale, fast)
        if model == "exact" and not fast:
            ref = r
        elif model == "exact":
            speed = r["accesses"] / r["run_s"]
            same = r["check"] == ref["check"]
            rows.append(row(f"exact engine end to end (Mode 1 at scale {scale:g})",
                            ">= 20 M acc/s", f"{speed / 1e6:.1f} M acc/s", speed >= 20e6,
                            f"x{ref['run_s'] / r['run_s']:.1f} vs one MM.access per thread"))
            print(f"  exact fast path vs reference: x{ref['run_s'] / r['run_s']:.1f}, "
                  f"same results: {same}")
            if not same:
                raise SystemExit("bench_engine: the fast exact path differs from its reference")
        wall = r["setup_s"] + r["run_s"]
        label = model if model == "rate" else ("exact" if fast else "ref  ")
        print(f"  {label:5s} scale {scale:<7g} {r['pages']:>9,} pages  "
              f"{r['accesses']:>16,.0f} accesses  simulated {r['runtime_s']:8.3f} s  "
              f"CPU {wall:6.2f} s (setup {r['setup_s']:.2f} s)  "
              f"{r['accesses'] / r['run_s']:>14,.0f} simulated accesses per CPU s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {rss:,.0f} MiB")
    write_rows(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
