"""`tierscan lru-gen`: cat and echo on /sys/kernel/debug/lru_gen of a simulated kernel."""

from __future__ import annotations

import argparse
import errno
import sys

from tierscan.errors import ConfigError, TierscanError
from tierscan.workload.scenario import DEFAULT, build, load_scenario

_EXAMPLES = """\
examples:
  tierscan lru-gen                                  # the built-in scenario, then cat lru_gen
  tierscan lru-gen --full                           # cat lru_gen_full instead
  tierscan lru-gen -w '+ 1 1 3' -w '- 1 1 2 0 1000' # echo commands, then cat
  echo '+ 1 1 3; + 1 1 4' | tierscan lru-gen -w -   # commands from standard input
  tierscan lru-gen --scenario examples/lru-gen.toml --no-quirks

Commands are the kernel's: '+ memcg_id node_id max_gen [swappiness [force_scan]]' ages,
'- memcg_id node_id min_gen [swappiness [nr_to_reclaim]]' evicts; ',', ';' or newlines
separate several. The root memcg's id is 1 (0 with --no-memcg). The scenario format is
documented in src/tierscan/workload/scenario.py."""


class CommandFailed(TierscanError):
    exit_code = 1


# What the lru_gen write errnos mean (mm/vmscan.c lru_gen_seq_write / run_cmd).
_REASONS = {
    errno.EINVAL: "a malformed command, an unknown memcg or node id, or a generation out of "
                  "range",
    errno.ENOMEM: "out of memory",
    errno.EINTR: "interrupted",
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "lru-gen", help="read and write the lru_gen debugfs file of a simulated kernel",
        description="Play a scenario on a simulated kernel, write lru_gen commands to it, and "
                    "print /sys/kernel/debug/lru_gen as the kernel formats it.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", metavar="FILE", help="a scenario TOML (default: built-in)")
    p.add_argument("-w", "--write", metavar="CMDS", action="append", default=[],
                   help="commands to write, in order ('-' reads them from standard input)")
    p.add_argument("--full", action="store_true", help="print lru_gen_full")
    p.add_argument("--no-quirks", action="store_true",
                   help="faithful_quirks=False (mglru-spec §6.5 quirks switched off)")
    p.add_argument("--no-memcg", action="store_true", help="model cgroup_disable=memory")
    p.set_defaults(func=run)


def run(args) -> int:
    spec, where = load_scenario(args.scenario) if args.scenario else (DEFAULT, "<default scenario>")
    k = build(spec, where, faithful_quirks=not args.no_quirks, memcg=not args.no_memcg)
    for cmds in args.write:
        text = sys.stdin.read() if cmds == "-" else cmds
        try:
            k.debugfs.write("lru_gen", text)
        except OSError as e:
            # The kernel's errno, kept, with what it means for this file: a bad command is bad
            # input (exit 2), as echo into the real file fails with the same errno.
            name = errno.errorcode.get(e.errno, str(e.errno))
            why = _REASONS.get(e.errno, "the kernel refused the command")
            raise ConfigError(f"write to lru_gen failed: {e.strerror} ({name}): {why}; "
                              f"see 'tierscan lru-gen --help' for the syntax",
                              where=f"-w {cmds!r}") from None
    sys.stdout.write(k.debugfs.read("lru_gen_full" if args.full else "lru_gen"))
    return 0
