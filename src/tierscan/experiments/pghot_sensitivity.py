"""How much each reproduced pghot RFC v3 ratio moves when one cited curve parameter moves ±20%
(issue 12 acceptance: the sensitivity table in docs/reproductions.md).

    python -m tierscan.experiments.pghot_sensitivity --dram-channels 2 --cxl-devices 2 \\
        --modes 1 2 --scale 0.125 --json sens.json

Parameters: each device class's (DRAM nodes 0-1, CXL node 2) bandwidth axis and loaded-latency
rise (every curve's latency above its idle point), scaled by 0.8 and 1.2, one at a time, the
fit redone each time (the fitted count stays the only fitted value). Prints one row per
(parameter, factor) with every source's ratio to NUMAB0 minus the unperturbed ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from ..sim.config import config_from_dict
from ..sim.run import run_experiment
from .pghot_v3 import CXL_NODE, DRAM_NODES, SOURCES, config, machine_for

PARAMETERS = ("dram_bandwidth", "dram_latency_rise", "cxl_bandwidth", "cxl_latency_rise")


def perturbed(machine, parameter: str, factor: float):
    """The machine with one curve parameter of one device class scaled by ``factor``."""
    kind, what = parameter.split("_", 1)
    nodes = list(machine.nodes)
    for nid in (DRAM_NODES if kind == "dram" else (CXL_NODE,)):
        dev = nodes[nid].memory
        if what == "bandwidth":
            curves = tuple(c.scaled_bandwidth(factor) for c in dev.curves)
            dev = replace(dev, curves=curves, peak_gbps=dev.peak_gbps * factor)
        else:
            curves = tuple(replace(c, latency_ns=c.latency_ns[0] + (c.latency_ns -
                                                                    c.latency_ns[0]) * factor)
                           for c in dev.curves)
            dev = replace(dev, curves=curves)
        nodes[nid] = replace(nodes[nid], memory=dev)
    return replace(machine, nodes=tuple(nodes))


def ratios(machine, mode: int, scale: float) -> dict:
    """Every source's run time over NUMAB0's, on ``machine``."""
    times = {}
    for source in SOURCES:
        d = config(mode, source, scale=scale, machine=machine)
        times[source] = run_experiment(config_from_dict(d)).final["runtime_ns"]
    return {s: t / times["numab0"] for s, t in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dram-channels", type=int)
    ap.add_argument("--cxl-devices", type=int)
    ap.add_argument("--modes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--scale", type=float, default=0.125)
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)
    base = machine_for({"dram_channels": args.dram_channels, "cxl_devices": args.cxl_devices})
    out = {"scale": args.scale, "dram_channels": args.dram_channels,
           "cxl_devices": args.cxl_devices, "modes": {}}
    for mode in args.modes:
        ref = ratios(base, mode, args.scale)
        rows = {"base": ref}
        print(f"mode {mode} base: " + " ".join(f"{s} {r:.3f}" for s, r in ref.items()),
              flush=True)
        for p in PARAMETERS:
            for f in (0.8, 1.2):
                r = ratios(perturbed(base, p, f), mode, args.scale)
                rows[f"{p} x{f}"] = {s: r[s] - ref[s] for s in SOURCES}
                print(f"mode {mode} {p} x{f}: " + " ".join(
                    f"{s} {r[s] - ref[s]:+.3f}" for s in SOURCES), flush=True)
        out["modes"][str(mode)] = rows
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
