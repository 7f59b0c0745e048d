"""`tierscan record -o OUT.tsw -- CMD ARGS...`: record a real program's page accesses."""

from __future__ import annotations

import argparse

_EXAMPLES = """\
examples:
  tierscan record -o sort.tsw -- sort -n numbers.txt
  tierscan record --with lackey -o sort-lackey.tsw -- sort -n numbers.txt
  tierscan trace info sort.tsw

The program runs under valgrind with address randomisation off (setarch -R). --with fast
(default) builds tierscan's small Valgrind tool with gcc on first use and caches it under
$XDG_CACHE_HOME/tierscan (~/.cache/tierscan); if that is not possible it says why in one line and
uses lackey, which is 3000-5000x slower than the program alone."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "record", help="record a program's page accesses into a .tsw trace",
        description="Run CMD under valgrind and stream every data access, at page granularity,\n"
                    "into a .tsw trace (docs/trace-format.md).",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", metavar="OUT.tsw", required=True)
    p.add_argument("--with", dest="backend", choices=("fast", "lackey"), default="fast",
                   help="recording backend (default: fast)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS",
                   help="the program to record")
    p.set_defaults(func=run)


def run(args) -> int:
    from tierscan.trace.record import record
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    res = record(cmd, args.output, args.backend)
    print(f"{res.path}: {res.accesses:,} accesses to {res.pages:,} pages "
          f"({res.backend}, {res.wall_s:.1f} s, {res.bytes / max(res.accesses, 1):.3f} bytes per "
          f"access, program exit status {res.exit_code})")
    return 0
