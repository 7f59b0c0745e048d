"""`tierscan demo`: a real, small experiment on the embedded laptop machine.

A 2-thread process (one thread per CPU of the laptop machine) on the DRAM node works on 256 MiB
that starts on the CXL node, with 10% of its pages taking 90% of its accesses, 12 M accesses per
thread (about 3 s on CXL alone). Five
hot-page sources run on the same workload: klruscand and IBS reporting into pghot v3, upstream NUMA balancing in
tiering mode, the oracle, and none. The table shows what each promoted, how fast, at what
CPU cost, and what the workload gained.
"""

from __future__ import annotations

import argparse

SOURCES = "klruscand,numab2,ibs,oracle,none"


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="compare five hot-page sources on the laptop machine",
                              description=__doc__, epilog="examples:\n  tierscan demo\n"
                              "  tierscan demo --model exact --seed 1",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--model", choices=["rate", "exact"], default="rate", help="access model")
    p.set_defaults(func=run)


def run(args) -> int:
    from tierscan.cli import compare

    ns = argparse.Namespace(
        workload="hotset", detectors=SOURCES, machine="laptop", engine="pghot-v3",
        model=args.model, duration=None, seed=args.seed, plot=None, json_dir=None, raw=False,
        json=False, quiet=True,
        overrides=["workload.size=256MiB", "workload.threads=2", "workload.hot_fraction=0.1",
                   "workload.hot_share=0.9", "workload.accesses=12000000"])
    print("tierscan demo: 2 threads on DRAM node 0, 256 MiB starting on CXL node 1, 10% of the "
          "pages take 90% of the accesses; 12 M accesses per thread")
    return compare.run(ns)
