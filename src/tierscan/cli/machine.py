"""`tierscan machine show`: print a machine as numactl -H does, plus its latency table."""

from __future__ import annotations

import argparse
import json
import math

from tierscan.machine import Machine, format_cpu_ranges, preset_names

_EXAMPLES = """\
examples:
  tierscan machine show                          # the default 'laptop' preset
  tierscan machine show --preset zen5-cxl --scale 0.125
  tierscan machine show --file my-box.toml --json

Capacities are in binary units (1 GiB = 2**30 bytes); numactl's "MB" means MiB.
The TOML schema is in docs/machine.md."""


def _scale(text: str) -> float:
    # A usage error (exit 2) at parse time, before anything is loaded.
    try:
        factor = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(factor) or not 0 < factor <= 1:
        raise argparse.ArgumentTypeError(f"expected 0 < FACTOR <= 1, got {text}")
    return factor


def register(subparsers) -> None:
    machine = subparsers.add_parser(
        "machine", help="describe a simulated machine",
        description="Describe a simulated machine (NUMA nodes, tiers, capacities, latencies).",
        epilog="examples:\n  tierscan machine show --preset zen5-cxl",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = machine.add_subparsers(dest="machine_command", metavar="ACTION", required=True)

    show = sub.add_parser(
        "show", help="print the machine as numactl -H does, with its latency table",
        description="Print a machine in `numactl -H` layout, followed by its load/store latencies.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = show.add_mutually_exclusive_group()
    src.add_argument("--preset", metavar="NAME",
                     help=f"a packaged machine: {', '.join(preset_names())} (default: laptop)")
    src.add_argument("--file", metavar="F", help="a machine TOML file")
    show.add_argument("--scale", metavar="FACTOR", type=_scale,
                      help="multiply node capacities by FACTOR (0 < FACTOR <= 1), rounded down to 2 MiB")
    show.add_argument("--json", action="store_true", help="print the machine as JSON instead")
    show.set_defaults(func=run_show)


def load_machine(args) -> Machine:
    """The machine named by --preset/--file/--scale (shared with other subcommands)."""
    machine = Machine.from_toml(args.file) if args.file else Machine.preset(args.preset or "laptop")
    return machine.scaled(args.scale) if args.scale is not None else machine


def run_show(args) -> int:
    machine = load_machine(args)
    if args.json:
        doc = {
            "source": machine.source,
            "name": machine.name,
            "capacity_scale": machine.capacity_scale,
            "nodes": [{"id": n.id, "kind": n.kind, "tier": n.tier, "zone": n.zone,
                       "cpus": format_cpu_ranges(n.cpus), "capacity_bytes": n.capacity,
                       "nominal_capacity_bytes": n.nominal_capacity} for n in machine.nodes],
            "distance": machine.distance.tolist(),
            "load_ns": machine.load_ns.tolist(),
            "store_ns": machine.store_ns.tolist(),
        }
        print(json.dumps(doc, indent=2))
        return 0
    print(machine.numactl_h())
    print()
    print(machine.describe_latency())
    return 0
