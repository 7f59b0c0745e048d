"""`tierscan trace info|cut`: look inside a .tsw trace, and cut a subset out of one."""

from __future__ import annotations

import argparse
import json

_EXAMPLES = """\
examples:
  tierscan trace info run.tsw                    # header, records, pages, bytes per access
  tierscan trace info run.tsw --json
  tierscan trace cut run.tsw --time 0:5000000 -o head.tsw          # the first 5 M instructions
  tierscan trace cut run.tsw --address 0x4000000:0x5000000 -o heap.tsw
  tierscan trace import csv accesses.csv -o accesses.tsw     # lines: address,R|W[,time_ns]

--time is in the trace's clock unit (instructions for recordings, ns for imported timed traces);
--address is in bytes (decimal or 0x hex). Either side of START:END may be left out."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "trace", help="inspect or cut a recorded .tsw trace",
        description="Inspect (info) or cut a subset out of (cut) a .tsw trace (docs/trace-format.md).",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="trace_command", metavar="ACTION", required=True)
    i = sub.add_parser("info", help="describe a trace (checks every chunk's checksum)")
    i.add_argument("file", metavar="FILE.tsw")
    i.add_argument("--json", action="store_true", help="print a JSON object")
    i.set_defaults(func=run_info)
    c = sub.add_parser("cut", help="write the part of a trace within a time and address range")
    c.add_argument("file", metavar="FILE.tsw")
    c.add_argument("--time", metavar="A:B", default=":", help="clock range, END exclusive")
    c.add_argument("--address", metavar="X:Y", default=":", help="byte address range")
    c.add_argument("-o", "--output", metavar="OUT.tsw", required=True)
    c.set_defaults(func=run_cut)
    m = sub.add_parser("import", help="convert a trace made elsewhere into .tsw")
    m.add_argument("format", choices=("lackey", "csv", "perf", "damo"),
                   help="lackey log, CSV (address,R|W[,time_ns]), perf script of perf mem "
                        "samples (-F tid,time,addr,event), damo JSON records")
    m.add_argument("file", metavar="IN")
    m.add_argument("-o", "--output", metavar="OUT.tsw", required=True)
    m.set_defaults(func=run_import)


def run_info(args) -> int:
    from tierscan.trace.ops import info
    d = info(args.file)
    if args.json:
        print(json.dumps(d, indent=1))
        return 0
    rec = d["records"]
    print(f"file        {d['file']} ({d['bytes']:,} bytes)")
    print(f"source      {d['source']} ({d['kind']}-level), page size {d['page_size']}")
    if d["command"]:
        print(f"command     {' '.join(d['command'])}")
    print(f"records     {rec['access']:,} accesses, {rec['region']:,} regions "
          f"in {sum(d['chunks'].values())} chunks (checksums ok)")
    if d["kind"] == "access":
        print(f"pages       {d['distinct_pages']:,} distinct, {d['written_pages']:,} written")
        if d["bytes_per_access"] is not None:
            print(f"stored      {d['bytes_per_access']:.3f} bytes per access")
    print(f"threads     {d['threads']}")
    print(f"duration    {d['duration']:,} {d['clock'] if d['kind'] == 'access' else 'ns'}")
    print(f"vmas        {d['vmas']}")
    return 0


def run_cut(args) -> int:
    from tierscan.trace.ops import cut, parse_range
    t = parse_range(args.time, "--time", lambda s: int(s, 0))
    a = parse_range(args.address, "--address", lambda s: int(s, 0))
    n = cut(args.file, args.output, t, a)
    print(f"{args.output}: {n:,} records")
    return 0


def run_import(args) -> int:
    from tierscan.trace.importers import IMPORTERS
    n = IMPORTERS[args.format](args.file, args.output)
    print(f"{args.output}: {n:,} records")
    return 0
