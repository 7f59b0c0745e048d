"""`tierscan vmstat`: the /proc/vmstat of a saved run, as `cat /proc/vmstat` prints it."""

from __future__ import annotations

import argparse

from tierscan.cli.args import int_at_least
import json
import sys

_EXAMPLES = """\
examples:
  tierscan vmstat runs/exp.json                       # every counter, 'name value' lines
  tierscan vmstat runs/exp.json | grep -E 'pgpromote|pgdemote'
  tierscan vmstat runs/exp.json --node 1              # /sys/devices/system/node/node1/vmstat
  tierscan vmstat runs/exp.json --json | jq .pgpromote_success
  tierscan vmstat runs/small.json --memcg /small      # /sys/fs/cgroup/small/memory.stat

Counters carry the kernel's names (pgpromote_success, pgdemote_kswapd, numa_hint_faults, ...)
and the values at the end of the run. Per-node counters are in results written by
`tierscan run` and `tierscan sweep`."""


_node = int_at_least(0, "a node number")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "vmstat", help="print the vmstat counters of a saved result",
        description="Print the /proc/vmstat counters of a saved run (one 'name value' line\n"
                    "each), system-wide or of one node.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("result", metavar="RESULT.json", help="a result file (tierscan run --json)")
    p.add_argument("--node", metavar="N", type=_node, help="the counters of node N only")
    p.add_argument("--json", action="store_true", help="print a JSON object instead")
    p.add_argument("--memcg", metavar="PATH",
                   help="print memory.stat of the memcg PATH instead (runs with [[memcgs]])")
    p.set_defaults(func=run)


def run(args) -> int:
    from tierscan.errors import ConfigError
    from tierscan.report.tables import vmstat_of
    from tierscan.sim.results import RunResult

    result = RunResult.load(args.result)
    if args.memcg is not None:
        stats = result.final.get("memory_stat") or {}
        if args.memcg not in stats:
            raise ConfigError(f"no memory.stat for memcg {args.memcg!r} (memcgs in this run: "
                              f"{', '.join(stats) or 'none; set [[memcgs]] in the config'})",
                              where=args.result, field="memcg")
        text = stats[args.memcg]
        if args.json:
            print(json.dumps({k: int(v) for k, v in (ln.split(" ") for ln in text.splitlines())},
                             indent=2))
        else:
            sys.stdout.write(text)
        return 0
    try:
        vm = vmstat_of(result, args.node)
    except ConfigError as e:
        raise ConfigError(e.message, where=args.result, field=e.field) from None
    if args.json:
        print(json.dumps(vm, indent=2))
    else:
        sys.stdout.write("".join(f"{k} {v}\n" for k, v in vm.items()))
    return 0
