"""`tierscan machine show|list|import`: describe machines, list the presets, and turn measured
bandwidth-latency curves (Intel MLC, Mess) into a machine TOML."""

from __future__ import annotations

import argparse
import json
import math
import os
import stat

from tierscan.errors import ConfigError
from tierscan.machine import Machine, format_cpu_ranges, preset_names
from tierscan.units import human_bytes

_EXAMPLES = """\
examples:
  tierscan machine show                          # the default 'laptop' preset
  tierscan machine show --preset zen5-cxl --scale 0.125
  tierscan machine show --file my-box.toml --json
  tierscan machine show --preset zen5-cxl --plot curves/   # one PNG per node's curve family

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
        epilog="examples:\n  tierscan machine show --preset zen5-cxl\n  tierscan machine list\n"
               "  tierscan machine import --preset zen5-cxl --node 0 -o box.toml mlc.txt\n"
               "(docs/machine.md)",
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
    show.add_argument("--plot", metavar="DIR",
                      help="also draw each node's curve family (latency vs bandwidth, one line per "
                           "read ratio) as DIR/NAME-nodeN.png")
    show.set_defaults(func=run_show)

    lst = sub.add_parser(
        "list", help="list the packaged presets",
        description="List the packaged machine presets, one line each.",
        epilog="examples:\n  tierscan machine list\n  tierscan machine list --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    lst.add_argument("--json", action="store_true", help="print the list as JSON")
    lst.set_defaults(func=run_list)

    _register_import(sub)


def load_machine(args) -> Machine:
    """The machine named by --preset/--file/--scale (shared with other subcommands)."""
    machine = Machine.from_toml(args.file) if args.file else Machine.preset(args.preset or "laptop")
    return machine.scaled(args.scale) if args.scale is not None else machine


def run_show(args) -> int:
    if args.plot is not None:
        from tierscan.report import check_output_dir
        check_output_dir(args.plot, "plot directory")
    machine = load_machine(args)
    if args.plot is not None:
        from tierscan.report.machine_plots import plot_machine
        paths = plot_machine(machine, args.plot)
        if not paths:
            raise ConfigError("no node has a memory device ([nodes.memory]) to plot",
                              where=machine.source)
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
        d = machine.to_dict()
        doc["memory"] = [n.get("memory") for n in d["nodes"]]
        doc["cpu"] = d.get("cpu")
        print(json.dumps(doc, indent=2))
        return 0
    print(machine.numactl_h())
    print()
    print(machine.describe_latency())
    memory = machine.describe_memory()
    if memory:
        print()
        print(memory)
    if args.plot is not None:
        for path in paths:
            print(f"wrote {path}")
    return 0


def _summary(machine: Machine) -> str:
    parts = []
    for n in machine.nodes:
        dev = n.memory
        what = n.kind.upper() if dev is None else (
            f"{dev.type.upper()} {dev.channels}x{dev.mts}" if dev.mts else
            f"{dev.type.upper()} {dev.channels} dev" + (f" x{dev.link_width}" if dev.link_width else ""))
        parts.append(f"{n.id}:{what} {human_bytes(n.nominal_capacity)}"
                     + ("" if n.cpus else " (no cpus)") + f" t{n.tier}")
    return "; ".join(parts)


def run_list(args) -> int:
    rows = []
    for name in preset_names():
        m = Machine.preset(name)
        rows.append({"name": name, "nodes": m.nr_nodes, "cpus": m.nr_cpus,
                     "curves": any(n.memory is not None for n in m.nodes),
                     "cpu_caches": m.cpu is not None, "summary": _summary(m)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'preset':<{width}}  curves  nodes (id:memory capacity tier)")
    for r in rows:
        print(f"{r['name']:<{width}}  {'yes' if r['curves'] else 'no':<6}  {r['summary']}")
    return 0


# -- import ------------------------------------------------------------------------------------

_IMPORT_EXAMPLES = """\
examples:
  # MLC loaded-latency runs (one file per traffic mix) for node 0 of a preset:
  mlc --loaded_latency > ro.txt; mlc --loaded_latency -W5 > w5.txt
  tierscan machine import --preset zen5-cxl --node 0 -o box.toml ro.txt
  tierscan machine import --file box.toml --node 0 --mix 5 -o box.toml w5.txt
  # Mess benchmark curves (a directory of bwlat_<N>.txt, N = percent reads) for node 2:
  tierscan machine import --file box.toml --node 2 --type cxl --channels 1 --link-width 8 \\
      -o box.toml mess/cxl/

Inputs are recognised by name: bwlat_<N>.txt (or a directory of them) is a Mess curve, anything
else an MLC report. An imported curve replaces the node's curve of the same read ratio; the
others are kept (--replace drops them). The device (type, channels, ...) is kept unless given;
changing it needs --replace, since the old curves were measured on the old configuration.
Bandwidth must be what THIS node served: an MLC run over a whole 2-socket system needs
--bandwidth-scale 0.5. The output is re-emitted TOML, so the base file's comments are not kept.
Schema and mapping of MLC's -W: docs/machine.md."""


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return v


def _ratio(text: str) -> float:
    v = _positive_float(text)
    if v > 1:
        raise argparse.ArgumentTypeError(f"expected a read ratio in (0, 1], got {text}")
    return v


def _register_import(sub) -> None:
    imp = sub.add_parser(
        "import", help="turn measured curves (Intel MLC, Mess) into a machine TOML",
        description="Replace one node's bandwidth-latency curves in a machine with measured ones "
                    "and write the machine as TOML.",
        epilog=_IMPORT_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    base = imp.add_mutually_exclusive_group(required=True)
    base.add_argument("--preset", metavar="NAME", help="start from a packaged machine")
    base.add_argument("--file", metavar="F", help="start from (merge into) a machine TOML file")
    imp.add_argument("--node", type=int, required=True, metavar="N",
                     help="the node the curves belong to")
    imp.add_argument("-o", "--output", required=True, metavar="OUT.toml",
                     help="where to write the machine (may be the --file itself)")
    imp.add_argument("inputs", nargs="+", metavar="INPUT",
                     help="MLC reports or Mess curve files / directories")
    imp.add_argument("--read-ratio", type=_ratio, metavar="R",
                     help="the read ratio of a single MLC input (overrides its header)")
    imp.add_argument("--mix", type=int, metavar="W",
                     help="the -W value the MLC inputs ran with (2, 3, 4, 5, 12; docs/machine.md)")
    imp.add_argument("--latency-unit", choices=("ns", "cycles"), default="ns",
                     help="Mess latency column unit (default ns; Mess' Standalone/data curves are "
                          "in cycles)")
    imp.add_argument("--cpu-ghz", type=_positive_float, metavar="F",
                     help="CPU clock the Mess curve was measured at, for --latency-unit cycles")
    imp.add_argument("--bandwidth-scale", type=_positive_float, default=1.0, metavar="F",
                     help="multiply measured bandwidth by F (e.g. 0.5 for a 2-socket MLC run)")
    imp.add_argument("--points", type=int, default=16, metavar="N",
                     help="keep at most N points per curve (default 16)")
    imp.add_argument("--type", dest="mem_type", metavar="T",
                     help="memory type: ddr4, ddr5, cxl, optane, hbm")
    imp.add_argument("--channels", type=int, metavar="C", help="DRAM channels or CXL devices")
    imp.add_argument("--mts", type=int, metavar="M", help="per-channel MT/s")
    imp.add_argument("--link-width", type=int, metavar="L", help="CXL lanes per device")
    imp.add_argument("--peak-gbps", type=_positive_float, metavar="P", help="theoretical peak")
    imp.add_argument("--source", metavar="TEXT", help="where the configuration comes from")
    imp.add_argument("--name", metavar="NAME", help="rename the machine")
    imp.add_argument("--replace", action="store_true",
                     help="drop the node's existing curves (default: keep those of other read "
                          "ratios, so one MLC run per traffic mix can be added in turn)")
    imp.set_defaults(func=run_import)


def check_new_file(path: str) -> str:
    """Refuse to replace anything but a regular file, and never write through a symlink; then
    the usual output checks. Done before any input is read."""
    from tierscan.report import check_output_file
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise ConfigError(f"cannot write output: {e.strerror or e}", where=path) from None
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise ConfigError("is a symbolic link; refusing to write through or replace it",
                          where=path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise ConfigError("exists and is not a regular file; refusing to replace it", where=path)
    return check_output_file(path, "machine TOML")


def _expand(inputs) -> list[tuple[str, str]]:
    """(path, "mess" | "mlc") for each input; a directory means its bwlat_*.txt files."""
    from tierscan.machine_import import is_mess_name
    out = []
    for path in inputs:
        if os.path.isdir(path):
            files = sorted(f for f in os.listdir(path) if is_mess_name(f))
            if not files:
                raise ConfigError("no Mess curve files (bwlat_<N>.txt) in this directory",
                                  where=path)
            out += [(os.path.join(path, f), "mess") for f in files]
        else:
            out.append((path, "mess" if is_mess_name(os.path.basename(path)) else "mlc"))
    return out


def run_import(args) -> int:
    from tierscan.machine_import import (curve_table, machine_to_toml, machine_with_curves,
                                         parse_mess, parse_mlc, read_ratio_of_mix)
    from tierscan.sim.results import atomic_write
    out = check_new_file(args.output)
    if args.points < 2:
        raise ConfigError(f"expected an integer >= 2, got {args.points}", field="--points")
    base = Machine.from_toml(args.file) if args.file else Machine.preset(args.preset)
    if not 0 <= args.node < base.nr_nodes:
        raise ConfigError(f"no node {args.node} (the machine has nodes 0..{base.nr_nodes - 1})",
                          field="--node")
    inputs = _expand(args.inputs)
    mlc_inputs = [p for p, kind in inputs if kind == "mlc"]
    if args.read_ratio is not None and (len(mlc_inputs) != 1 or len(inputs) != 1):
        raise ConfigError("--read-ratio applies to a single MLC input; give one file per run",
                          field="--read-ratio")
    ratio = args.read_ratio
    if args.mix is not None:
        if ratio is not None:
            raise ConfigError("give --read-ratio or --mix, not both", field="--mix")
        ratio = read_ratio_of_mix(args.mix)
    curves, notes = [], []
    for path, kind in inputs:
        raw = (parse_mess(path, latency_unit=args.latency_unit, cpu_ghz=args.cpu_ghz)
               if kind == "mess" else parse_mlc(path, read_ratio=ratio))
        table, note = curve_table(raw, bandwidth_scale=args.bandwidth_scale,
                                  max_points=args.points)
        curves.append(table)
        notes.append(f"{path}: read ratio {raw.read_ratio:g}, {note}")
    old = base.nodes[args.node].memory
    given = {"type": args.mem_type, "channels": args.channels, "mts": args.mts,
             "link_width": args.link_width}
    if old is None:
        if args.mem_type is None or args.channels is None:
            raise ConfigError(f"node {args.node} has no memory device in the base machine: give "
                              f"--type and --channels (and --mts for DRAM, --link-width for cxl)",
                              field="--type")
        device = {"type": args.mem_type, "channels": args.channels, "mts": args.mts or 0,
                  "link_width": args.link_width or 0}
    else:
        device = {k: getattr(old, k) for k in given}
        device.update({k: v for k, v in given.items() if v is not None})
        same = all(device[k] == getattr(old, k) for k in given)
        if same:
            device["peak_gbps"] = old.peak_gbps  # unchanged configuration, unchanged peak
            if not args.replace:  # keep the measured mixes not re-imported
                new = {c["read_ratio"] for c in curves}
                curves += [c.to_dict() for c in old.curves if c.read_ratio not in new]
        elif not args.replace:
            raise ConfigError(f"node {args.node}'s device changes ({', '.join(k for k in given if device[k] != getattr(old, k))}), so its other curves no longer apply: "
                              f"give --replace to drop them", field="--replace")
    if args.peak_gbps is not None:
        device["peak_gbps"] = args.peak_gbps
    files = ", ".join(os.path.basename(p) for p, _ in inputs)
    device["source"] = args.source or (old.source if old is not None else
                                       f"measured: {files} (tierscan machine import)")
    machine = machine_with_curves(base, args.node, curves, device)
    if args.name:
        d = machine.to_dict()
        d["name"] = args.name
        machine = Machine.from_dict(d, where=machine.source)
    header = (f"Machine {machine.name!r}: node {args.node}'s curves imported by "
              f"`tierscan machine import` from {files}.\nBase: "
              f"{args.file or '<preset ' + args.preset + '>'}. Schema: docs/machine.md.")
    atomic_write(out, lambda f: f.write(machine_to_toml(machine, header)), what="machine TOML")
    for note in notes:
        print(note)
    print(f"wrote {out}")
    return 0
