"""The `tierscan` command: argparse subcommands and the one place errors become exit codes.

Each subcommand lives in a module exposing ``register(subparsers)``, which adds its parser and
sets ``func`` (called with the parsed args, returning an exit code). To add a subcommand, write
the module and list it in ``_SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from tierscan.errors import TierscanError

PROG = "tierscan"

# (module, optional): an optional module may not exist yet, and the CLI must still work without it.
_SUBCOMMANDS = (
    ("tierscan.cli.machine", False),
    ("tierscan.cli.demo", True),
    ("tierscan.cli.lru_gen", False),
    ("tierscan.cli.reproduce", False),
    ("tierscan.cli.compare", False),
    ("tierscan.cli.run", False),
    ("tierscan.cli.vmstat", False),
    ("tierscan.cli.report", False),
    ("tierscan.cli.sweep", False),
    ("tierscan.cli.record", False),
    ("tierscan.cli.trace", False),
)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the standard's rule for bad input), pointing to
    --help instead of printing the usage block. Subcommand parsers inherit the class."""

    def error(self, message):
        command = self.prog[len(PROG):].strip()          # "run" for "tierscan run"
        where = f"{command}: " if command else ""
        self.exit(2, f"{PROG}: error: {where}{message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog=PROG,
        description="Simulate Linux tiered-memory (DRAM + CXL) page management.",
        epilog="Run 'tierscan COMMAND --help' for a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module, optional in _SUBCOMMANDS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            # Skip only when the subcommand module itself is missing; a missing dependency *inside*
            # it is a real bug and must not hide the command silently.
            if optional and e.name == module:
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        try:
            args, extra = parser.parse_known_args(argv)
            if extra:
                # An option the subcommand does not know: point to that subcommand's --help,
                # not to 'tierscan --help' (argparse reports leftovers from the top parser).
                _subparser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
        except SystemExit as e:
            # argparse exits 2 on a usage error (after printing usage) and 0 for --help; return the
            # code instead so main() can be called from tests and other code.
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        # The command line as typed, for result files' meta.command.
        args.argv = list(sys.argv[1:] if argv is None else argv)
        code = int(args.func(args) or 0)
        sys.stdout.flush()          # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        # The reader went away (`tierscan vmstat r.json | head -1`): stop quietly, as Unix tools
        # do (they die of SIGPIPE: status 128 + 13). Files are saved before anything is printed.
        _discard_stdout()
        return 141
    except TierscanError as err:
        _error(f"error: {err}")
        return err.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as err:  # noqa: BLE001 - the promise is: no traceback reaches a user
        if os.environ.get("TIERSCAN_DEBUG") == "1":
            raise
        _error(f"internal error: {type(err).__name__}: {err} (set TIERSCAN_DEBUG=1 for the traceback)")
        return 1


def _subparser(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The innermost subcommand parser the arguments reached ('tierscan machine show')."""
    found = parser
    while True:
        actions = [a for a in found._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions:
            return found
        chosen = getattr(args, actions[0].dest, None)
        if chosen not in actions[0].choices:
            return found
        found = actions[0].choices[chosen]


def _discard_stdout() -> None:
    """Point standard output at /dev/null so the interpreter's final flush of the unwritable
    buffer does not print 'Exception ignored ... BrokenPipeError'."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):    # no real file descriptor (a test's captured stdout)
        pass


def _error(message: str) -> None:
    # One line, always: a multi-line message would look like a traceback and break `2>&1 | grep`.
    print(f"{PROG}: " + " ".join(message.splitlines()), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
