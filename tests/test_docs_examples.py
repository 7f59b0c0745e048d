"""Every command the documentation shows runs (issue 14, item 2), so none can rot.

Collected automatically, so new docs and new subcommands are covered without editing this file:

- every line of a shell code block (```sh, ```console, ```bash or a bare ```) in README.md and
  docs/*.md that starts with `tierscan `, `$ tierscan `, `make ` or `echo ... | tierscan`;
- every `tierscan ...` line of every subcommand's --help epilogue (nested ones included).

They run in order, in one scratch directory holding a copy of examples/ (so later commands find
what earlier ones wrote: `run --json runs/exp.json`, then `report runs/exp.json`), plus the
placeholder files the docs name for the reader's own files. `tierscan ...` runs in this process
(the rest of a pipeline, `| jq ...`, through bash). Scaled down, never rewritten: with
TIERSCAN_SIM_LIMIT=100ms, the documented smoke-test knob that caps every run's simulated time
(a command that is wrong as written still fails: a missing duration is checked before the cap
applies). Only `reproduce` gets `--scale 0.002` appended, a documented option (its runs end by
access count, not time).

Lines that cannot run here are in SKIP, each with the reason; synopsis lines (`[--json OUT]`,
`(--help)`) are not commands.
"""

import contextlib
import glob
import io
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Commands that genuinely cannot run in a test: (substring of the line, why).
SKIP = [
    ("make demo", "builds .venv (pip install); `tierscan demo` is run instead"),
    ("make test", "builds .venv and runs this very suite"),
    ("--scheduler tcp://", "needs a running Dask scheduler at that address"),
    ("tierscan machine import", "its inputs are measurement files from a real machine (mlc, "
                                "mess); tests/test_machine_import.py runs it on tests/data"),
    ("mlc ", "runs Intel MLC on real hardware"),
    ("--mode all", "the full reproduction (three modes x five sources; `--mode N` lines run)"),
    ("examples/pressure.toml", "minutes of wall time each (the pressure table of "
                               "docs/reproductions.md); tests/test_pressure_engine.py runs "
                               "the same workload smaller"),
    ("runs/pressure-", "reads the results of the examples/pressure.toml runs above"),
    ("sqlite.tsw", "recorded by `tierscan record -- sqlite3 ...` in the lines before it "
                   "(docs/reproductions.md; needs valgrind and sqlite3)"),
]

# Files the docs name as the reader's own (not shipped): created from the examples.
PLACEHOLDERS = {
    "exp.toml": "examples/exp.toml",
    "sweep.toml": "examples/sweep.toml",
    "my.toml": "examples/lru-gen.toml",
    "my-box.toml": "src/tierscan/presets/laptop.toml",
    "box.toml": "src/tierscan/presets/zen5-cxl.toml",    # what `machine import -o box.toml`
                                                         # makes: a machine with memory curves
}

_FENCE = re.compile(r"^```(\w*)")
_COMMAND = re.compile(r"^(tierscan |make |echo .*\|\s*tierscan )")


def _is_synopsis(line: str) -> bool:
    """A usage line, not a command: [--options], (--help), ..., or alternatives a|b outside
    quotes (`trace import lackey|csv IN`; a quoted 'pgpromote|pgdemote' is a real argument)."""
    code = re.sub(r"'[^']*'|\"[^\"]*\"", "", line.split(" #")[0])
    return ("[--" in line or "(--help)" in line or "[...]" in line or "..." in code
            or re.search(r"\w\|\w", code) is not None)


def doc_commands(path: str) -> list[tuple[str, str]]:
    out, inside, lang = [], False, None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            m = _FENCE.match(line.strip())
            if m:
                inside, lang = not inside, m.group(1)
                continue
            if not inside or lang not in ("", "sh", "shell", "console", "bash"):
                continue
            text = line.strip()
            text = text[2:] if text.startswith("$ ") else text
            if _COMMAND.match(text) and not _is_synopsis(text):
                out.append((f"{os.path.relpath(path, ROOT)}:{n}", text))
    return out


def help_commands() -> list[tuple[str, str]]:
    import argparse

    from tierscan.cli.main import build_parser

    out, seen = [], set()

    def walk(parser):
        if id(parser) in seen:
            return
        seen.add(id(parser))
        lines = (parser.epilog or "").splitlines()
        i = 0
        while i < len(lines):
            text = lines[i].strip()
            while text.endswith("\\") and i + 1 < len(lines):      # continuation lines
                i += 1
                text = text[:-1].rstrip() + " " + lines[i].strip()
            if _COMMAND.match(text) and not _is_synopsis(text):
                out.append((f"{parser.prog} --help", text))
            i += 1
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)

    walk(build_parser())
    return out


def all_commands() -> list[tuple[str, str]]:
    docs = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs",
                                                                            "*.md")))
    return [c for p in docs for c in doc_commands(p)] + help_commands()


def skipped(text: str):
    return next((why for needle, why in SKIP if needle in text), None)


def _sandbox(tmp: str) -> None:
    """examples/, the placeholder files, and the inputs the docs assume the reader made before:
    results (runs/a.json, runs/b.json, runs/small.json with a memcg), an access CSV and a trace
    (run.tsw)."""
    shutil.copytree(os.path.join(ROOT, "examples"), os.path.join(tmp, "examples"))
    for name, src in PLACEHOLDERS.items():
        shutil.copy(os.path.join(ROOT, src), os.path.join(tmp, name))
    with open(os.path.join(tmp, "accesses.csv"), "w") as f:
        f.write("".join(f"{0x7f0000000000 + 4096 * (i % 64):#x},{'RW'[i % 2]},{i * 1000}\n"
                        for i in range(512)))
    for argv in (["run", "examples/exp.toml", "-q", "--json", "runs/a.json"],
                 ["run", "examples/exp.toml", "-q", "--set", "seed=1", "--json", "runs/b.json"],
                 ["run", "examples/memcg-limit.toml", "-q", "--json", "runs/small.json"],
                 ["trace", "import", "csv", "accesses.csv", "-o", "run.tsw"]):
        code, _, err = _tierscan(argv, None)
        assert code == 0, (argv, err)


def _tierscan(args: list[str], stdin_text: str | None) -> tuple[int, str, str]:
    """Run `tierscan ARGS` in this process (a subprocess per command would spend most of the
    test importing numpy and numba), globs expanded as the shell would."""
    from tierscan.cli.main import main

    argv = []
    for a in args:
        matches = sorted(glob.glob(a)) if any(ch in a for ch in "*?[") else []
        argv.extend(matches or [a])
    out, err = io.StringIO(), io.StringIO()
    old_in = sys.stdin
    try:
        if stdin_text is not None:
            sys.stdin = io.StringIO(stdin_text)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        sys.stdin = old_in
    return code, out.getvalue(), err.getvalue()


def run_line(text: str) -> tuple[int, str]:
    """Run one documented line in the current directory: ``tierscan ...`` in this process,
    the rest of a pipeline (``| jq ...``, ``| grep ...``) and ``echo ... |`` through bash.
    Returns (exit status, standard error)."""
    parts = [p.strip() for p in re.split(r"\s\|\s", text.split(" # ")[0].split("  #")[0])]
    stdin_text = None
    if parts[0].startswith("echo "):
        stdin_text = subprocess.run(["bash", "-c", parts[0]], capture_output=True, text=True,
                                    check=True).stdout
        parts = parts[1:]
    args = shlex.split(parts[0])
    assert args[0] == "tierscan", text
    code, out, err = _tierscan(args[1:], stdin_text)
    if code == 0 and len(parts) > 1:
        p = subprocess.run(["bash", "-c", " | ".join(parts[1:])], input=out, text=True,
                           capture_output=True, timeout=60)
        code, err = p.returncode, err + p.stderr
    return code, err


def _scaled(text: str) -> str:
    """reproduce's runs end by access count, not time: shrink them with --scale."""
    if re.match(r"tierscan reproduce ", text) and "--scale" not in text:
        code, sep, comment = text.partition(" #")
        head, pipe, tail = code.partition(" | ")
        return f"{head.rstrip()} --scale 0.002{' | ' + tail if pipe else ''}"
    return text


def test_the_collector_finds_the_docs_and_the_help():
    cmds = all_commands()
    where = {w.split(":")[0] for w, _ in cmds}
    assert "README.md" in where and "docs/cli.md" in where
    assert any(w.endswith("run --help") for w, _ in cmds)
    assert any(w.endswith("machine show --help") for w, _ in cmds)   # nested subcommands
    assert not any(_is_synopsis(t) for _, t in cmds)
    assert _is_synopsis("tierscan trace import lackey|csv|perf|damo IN -o OUT.tsw")
    assert not _is_synopsis("tierscan vmstat runs/exp.json | grep -E 'pgpromote|pgdemote'")
    assert _scaled("tierscan reproduce pghot-v3 --mode 2 --json-dir runs/  # x") == \
        "tierscan reproduce pghot-v3 --mode 2 --json-dir runs/ --scale 0.002"


@pytest.mark.slow   # about a minute of CPU (sweeps, Dask, reproduce): CI runs it (pyproject)
def test_every_documented_command_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TIERSCAN_SIM_LIMIT", "100ms")
    _sandbox(str(tmp_path))
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.delenv("TIERSCAN_DEBUG", raising=False)
    # worker processes (sweep pools, Dask) import this tree's tierscan, not an installed one
    monkeypatch.setenv("PYTHONPATH", os.path.join(ROOT, "src"))
    failures, ran = [], 0
    for where, text in all_commands():
        if skipped(text) or text.startswith("make "):
            continue                      # `make` lines are all in SKIP; never run them here
        ran += 1
        with monkeypatch.context() as m:
            if text.startswith("tierscan reproduce"):       # ends by accesses: --scale instead
                m.delenv("TIERSCAN_SIM_LIMIT")
            code, err = run_line(_scaled(text))
        if code not in (0, 141) or "Traceback" in err:
            tail = (err.strip().splitlines() or [""])[-1]
            failures.append(f"{where}: {text}\n    exit {code}: {tail}")
    assert ran >= 30
    assert not failures, "documented commands that fail:\n" + "\n".join(failures)
