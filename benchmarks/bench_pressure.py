"""Memory-pressure speed (issue 13): on the zen5-cxl machine, 200 GiB of cold filler written
first, bound to node 0 (DRAM) and node 2 (CXL) (it fills node 0, then spills to CXL), then an 8 GiB hot set faulted in during the
run, with NUMA balancing tiering (numab2), demotion on and kswapd on every node, for 60 s of
simulated time. Target: under 2 minutes of wall time at --scale 1 (a benchmark, not a test).

--scale s shrinks the machine (Machine.scaled) and both sizes by s, so the pressure is the
same in proportion; the default 1/64 is what a 2-core shared machine finishes in minutes.
Prints setup and run wall time, the simulated run, and the reclaim counters.

The fast path's reclaim reads its lists through the per-list index (mm/lru_index.py). With
``--reference-scale r`` (default 1/256) the same run at scale r is made twice in this process,
with the index and with the whole-range reference (``PhysMem.lru_index = False``: every
reclaim call scans the node's pfn range), checks that both give the same counters, and prints
the ratio of their run times. ``--reference-scale 0`` skips it.

Eviction's per-folio passes are compiled (mm/evict_kernels.py, rmap's site test, migrate's
state copy). With ``--numpy-scale r`` (default 1/64, 10 s) the same run at scale r is made
with them and with their numpy forms (``COMPILED = False`` in evict, rmap, migrate), twice
each in the order compiled, numpy, numpy, compiled (a shared machine's load drifts), checks
that all give the same counters and prints the median CPU time of an ``evict_folios`` call
in each. ``--numpy-scale 0`` skips it. Every run prints
its ``evict_folios`` calls and the median call's CPU time.

    PYTHONPATH=src python3 benchmarks/bench_pressure.py [--scale 0.015625] [--duration 60]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np

from tierscan import Kernel, Machine
from tierscan.hotness.numab import NumaBalancing
from tierscan.mm import evict, migrate, reclaim, rmap
from tierscan.sim.engine import MS, Engine
from tierscan.workload.library import make_workload

COUNTERS = ("pgfault", "pgpromote_success", "pgdemote_kswapd", "pgdemote_direct",
            "pgscan_kswapd", "pgsteal_kswapd", "allocstall_movable", "pageoutrun",
            "kswapd_low_wmark_hit_quickly", "tierscan_promote_pingpong")


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _EvictTimer:
    """Reclaim's evict_folios calls and the CPU time of each (process_time around it). The
    figure is the median call: the first call also builds the LRU index (mm/lru_index.py)."""

    def __init__(self):
        self.times: list[float] = []

    def __enter__(self):
        self.orig = reclaim.evict_folios

        def timed(*a, **kw):
            t = time.process_time()
            try:
                return self.orig(*a, **kw)
            finally:
                self.times.append(time.process_time() - t)

        reclaim.evict_folios = timed
        return self

    def __exit__(self, *exc):
        reclaim.evict_folios = self.orig

    @property
    def calls(self) -> int:
        return len(self.times)

    def per_call_ms(self) -> float:
        return float(np.median(self.times)) * 1e3 if self.times else 0.0


def _set_compiled(on: bool) -> None:
    """Eviction's compiled passes (evict_kernels, rmap's site test, migrate's state copy) or
    their numpy forms."""
    evict.COMPILED = rmap.COMPILED = migrate.COMPILED = on


def run(scale: float, duration_s: float, reference: bool = False, compiled: bool = True) -> dict:
    _set_compiled(compiled)
    t0 = time.perf_counter()
    c0 = _cpu_s()
    k = Kernel(Machine.preset("zen5-cxl").scaled(scale), seed=0)
    if reference:
        k.pm.lru_index = False       # every reclaim call scans the node's whole pfn range
    k.sysfs["numa/demotion_enabled"] = True
    gib = 1 << 30
    filler = int(200 * gib * scale) // (2 << 20) * (2 << 20)
    hot = int(8 * gib * scale) // (2 << 20) * (2 << 20)
    # bound to node 0's DRAM and the CXL node: node 1's DRAM would otherwise hold it all
    # hot_first: the hot mapping below the filler, so NUMA balancing's 256 MB scan window
    # reaches it in the first seconds instead of after walking 200 GiB of filler (at full
    # scale it otherwise never promotes within 60 s, and nothing reclaims)
    wl = make_workload("cold-filler", {"filler": filler, "hot": hot, "nodes": [0, 2],
                                       "hot_first": True})
    e = Engine(k, wl, daemons=[NumaBalancing(None)], duration_ns=int(duration_s * 1000) * MS)
    t1, p1 = time.perf_counter(), time.process_time()
    with _EvictTimer() as ev:
        e.run()
    t2, p2 = time.perf_counter(), time.process_time()
    _set_compiled(True)
    cpu_s = _cpu_s() - c0
    out = e.results()
    return {"setup_s": t1 - t0, "run_s": t2 - t1, "cpu_s": cpu_s, "run_cpu_s": p2 - p1, "filler": filler, "hot": hot,
            "vm": {c: out["final"]["vmstat"].get(c, 0) for c in COUNTERS},
            "cpu": out["final"]["cpu_ns"],
            "hit": float(out["series"]["fast_tier_hit_ratio"][-1]),
            "evict_calls": ev.calls, "evict_ms": ev.per_call_ms()}


def compare(scale: float, duration_s: float) -> None:
    """The same run with the LRU index and with the whole-range reference: same counters,
    and the ratio of run (not setup) CPU times (wall time on a shared machine measures the
    other users)."""
    fast = run(scale, duration_s)
    ref = run(scale, duration_s, reference=True)
    if fast["vm"] != ref["vm"]:
        raise SystemExit(f"index and reference disagree: {fast['vm']} vs {ref['vm']}")
    print(f"reference: zen5-cxl x {scale:g}, {duration_s:g} s simulated: run {fast['run_cpu_s']:.2f} "
          f"CPU s with the LRU index, {ref['run_cpu_s']:.2f} CPU s scanning whole pfn ranges "
          f"(x{ref['run_cpu_s'] / fast['run_cpu_s']:.1f}); same counters "
          f"(pgdemote_kswapd {fast['vm']['pgdemote_kswapd']:,})")


def compare_numpy(scale: float, duration_s: float) -> None:
    """The same run with eviction's compiled passes and with their numpy forms (ABBA): same
    counters, and the median CPU time of an evict_folios call in each."""
    runs = [run(scale, duration_s, compiled=c) for c in (True, False, False, True)]
    if any(r["vm"] != runs[0]["vm"] for r in runs):
        raise SystemExit("compiled and numpy eviction disagree: "
                         + "; ".join(str(r["vm"]) for r in runs))
    fast = [r["evict_ms"] for r in runs if r is runs[0] or r is runs[3]]
    ref = [runs[1]["evict_ms"], runs[2]["evict_ms"]]
    print(f"numpy passes: zen5-cxl x {scale:g}, {duration_s:g} s simulated, "
          f"{runs[0]['evict_calls']:,} evict_folios calls: compiled "
          f"{fast[0]:.2f}, {fast[1]:.2f} ms CPU a call, numpy {ref[0]:.2f}, {ref[1]:.2f} "
          f"(x{sum(ref) / sum(fast):.2f}); same counters "
          f"(pgdemote_kswapd {runs[0]['vm']['pgdemote_kswapd']:,})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1 / 64)
    ap.add_argument("--duration", type=float, default=60.0, help="simulated seconds")
    ap.add_argument("--reference-scale", type=float, default=1 / 256,
                    help="scale of the index-vs-whole-range comparison (0: skip it)")
    ap.add_argument("--reference-duration", type=float, default=10.0)
    ap.add_argument("--numpy-scale", type=float, default=1 / 64,
                    help="scale of the compiled-vs-numpy eviction comparison (0: skip it)")
    ap.add_argument("--numpy-duration", type=float, default=10.0)
    args = ap.parse_args(argv)
    if args.reference_scale > 0:
        compare(args.reference_scale, args.reference_duration)
    if args.numpy_scale > 0:
        compare_numpy(args.numpy_scale, args.numpy_duration)
    r = run(args.scale, args.duration)
    print(f"bench_pressure: zen5-cxl x {args.scale:g}, filler {r['filler'] / 2**30:.2f} GiB, "
          f"hot {r['hot'] / 2**30:.3f} GiB, {args.duration:g} s simulated, numab2 + kswapd")
    print(f"  wall {r['setup_s'] + r['run_s']:.1f} s (setup {r['setup_s']:.1f} s, "
          f"run {r['run_s']:.1f} s), CPU {r['cpu_s']:.1f} s (run {r['run_cpu_s']:.1f} s); fast-tier hit ratio at "
          f"the end {r['hit']:.3f}")
    print("  " + ", ".join(f"{k} {v:,}" for k, v in r["vm"].items()))
    print(f"  evict_folios: {r['evict_calls']:,} calls, {r['evict_ms']:.2f} ms CPU a call (median)")
    print("  CPU: " + ", ".join(f"{k} {v / 1e6:,.1f} ms" for k, v in r["cpu"].items()))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {rss:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
