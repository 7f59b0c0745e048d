"""The engine tick loop's fast paths (engine3, issue 15) against the forms they replaced, in one
process, on the state of a pghot-v3 Mode 3 engine (64 GiB of THPs at scale 1): MM.rss (NUMA
balancing's scan-size rules), the flusher's pass with nothing dirty, the heatmap's per-bin
weights of a phase, a hint-fault batch's dedupe and time order, the memsys solve's grid.

    cd /work/main && PYTHONPATH=src python3 benchmarks/bench_tick.py [--scale S] [--repeat N]

See benchmarks/README.md. Every fast path must give the reference's exact result; the script
checks that and exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from _report import add_json_arg, cpu_s, row, write_rows
from tierscan.access.base import bin_sums, bin_sums_reference
from tierscan.arrays import (
    first_occurrences, first_occurrences_reference, stable_argsort,
)
from tierscan.experiments.pghot_v3 import config
from tierscan.memsys.solve import _GRID, _grid
from tierscan.mm.page_writeback import global_dirty_limits, wb_workfn
from tierscan.sim.config import config_from_dict
from tierscan.sim.run import build_engine


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = cpu_s()
        out = fn()
        best = min(best, cpu_s() - t)
    return best, out


def compare(rows, figure, fast, ref, repeat, same, unit="ms", scale=1e3) -> bool:
    """Time both (best of ``repeat``, CPU), add a row, return whether the results agree."""
    t_ref, r_ref = best_of(ref, repeat)
    t_fast, r_fast = best_of(fast, repeat)
    ok = same(r_fast, r_ref)
    rows.append(row(figure, "-", f"{t_fast * scale:.2f} {unit}" + ("" if ok else " (DIFFERS)"),
                    None, f"x{t_ref / max(t_fast, 1e-9):.1f} vs {t_ref * scale:.2f} {unit}"))
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.25,
                    help="pghot-v3 Mode 3 footprint scale (1 = 64 GiB; default 0.25)")
    ap.add_argument("--repeat", type=int, default=3)
    add_json_arg(ap)
    args = ap.parse_args(argv)
    e = build_engine(config_from_dict(config(3, "numab0", scale=args.scale)))
    k, g = e.kernel, e.groups[0]
    rows, ok = [], True
    eq = np.array_equal

    ok &= compare(rows, f"MM.rss of {g.n_pages:,} THP-mapped pages (compiled pass)",
                  lambda: g.mm.rss(), lambda: g.mm.rss_reference(), args.repeat,
                  lambda a, b: a == b)
    # the flusher's pass with nothing dirty no longer computes the dirty limits: the
    # reference is the pass plus what it used to compute
    k.clock_ns += 10 * 10**9
    ok &= compare(rows, "flusher pass (wb_workfn) with nothing dirty",
                  lambda: wb_workfn(k), lambda: (wb_workfn(k), global_dirty_limits(k))[0],
                  args.repeat, lambda a, b: a == b == 0)
    w = e.model.rates[g.gid].w
    ok &= compare(rows, f"heatmap bin weights of a phase ({g.n_pages:,} pages, bin_sums)",
                  lambda: bin_sums(g.n_pages, 64, w), lambda: bin_sums_reference(g, 64, w),
                  args.repeat, lambda a, b: a.tobytes() == b.tobytes())
    rng = np.random.default_rng(1)
    heads = rng.choice(k.pm.nr_pfns, 16_000, replace=False).astype(np.int64)
    ok &= compare(rows, "hint-fault batch dedupe, 16,000 distinct heads (first_occurrences)",
                  lambda: first_occurrences(heads), lambda: first_occurrences_reference(heads),
                  args.repeat * 10, eq, "us", 1e6)
    at = rng.random(65_536) * 1e9
    ok &= compare(rows, "due hint faults' time order, 65,536 (stable_argsort)",
                  lambda: stable_argsort(at), lambda: np.argsort(at, kind="stable"),
                  args.repeat * 10, eq, "us", 1e6)
    pairs = rng.random((2_000, 2)).cumsum(axis=1)
    ok &= compare(rows, "memsys solve grid, 2,000 rounds (_grid vs np.linspace)",
                  lambda: [_grid(a, b) for a, b in pairs],
                  lambda: [np.linspace(a, b, _GRID) for a, b in pairs], args.repeat,
                  lambda x, y: all(p.tobytes() == q.tobytes() for p, q in zip(x, y)))
    for r in rows:
        print(f"{r['figure']}: {r['measured']} ({r['ratio']})")
    write_rows(args.json, rows)
    if not ok:
        print("a fast path differs from its reference", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
