"""Scheduling overhead per run of a sweep: a Dask LocalCluster against the local process pool,
in one process, on the same grid of tiny runs.

    cd /work/main && PYTHONPATH=src python3 benchmarks/bench_sweep.py [--runs 16] [--workers 2]

Overhead per run = (sweep wall time - the runs' own wall time / workers) / runs: what the
backend adds to each run (start-up, pickling, scheduling, saving, the summary table). Both
backends must produce the same results (config hashes and metrics); the script checks that and
exits 1 otherwise. Needs the cluster extra (pip install 'tierscan[cluster]').
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

EXP = """\
name = "tiny"
duration = "5ms"
[machine]
preset = "laptop"
[workload]
name = "uniform"
size = "4MiB"
"""


def run_backend(root: str, name: str, runs: int, workers: int) -> tuple[float, float, dict]:
    """(sweep wall s, sum of run wall s, {hash: metrics}) for one backend."""
    from tierscan.sweep import load_sweep, run_sweep
    from tierscan.sweep.backends import DaskBackend, PoolBackend
    from tierscan.sweep.pivot import load_summary

    d = os.path.join(root, name)
    os.makedirs(d)
    with open(os.path.join(d, "exp.toml"), "w") as f:
        f.write(EXP)
    with open(os.path.join(d, "s.toml"), "w") as f:
        f.write(f'base = "exp.toml"\n[grid]\nseed = {list(range(runs))}\n')
    sweep = load_sweep(os.path.join(d, "s.toml"))
    out = os.path.join(d, "out")
    os.makedirs(out)
    backend = PoolBackend(workers) if name == "pool" else DaskBackend(f"local:{workers}")
    with backend:
        t = time.perf_counter()
        run_sweep(sweep, out, backend)
        wall = time.perf_counter() - t
    rows = load_summary(out)
    metrics = {r["config_hash"]: {k: v for k, v in r.items() if k != "wall_s"} for r in rows}
    return wall, sum(r["wall_s"] for r in rows), metrics


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as root:
        res = {name: run_backend(root, name, args.runs, args.workers)
               for name in ("pool", "dask")}
    over = {}
    for name, (wall, busy, _) in res.items():
        over[name] = (wall - busy / args.workers) / args.runs
        print(f"{name:>5}: sweep {wall:6.2f} s, runs {busy:6.2f} s, "
              f"overhead {over[name] * 1e3:7.1f} ms per run")
    print(f"Dask LocalCluster / process pool, overhead per run: "
          f"x{over['dask'] / over['pool']:.2f}")
    if res["pool"][2] != res["dask"][2]:
        print("FAIL: the backends' results differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
