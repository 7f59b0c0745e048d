"""``tierscan record``: run a program under Valgrind and stream its page accesses into a .tsw.

Two backends produce the same stream: ``fast`` (tierscan's own tool, valgrind/tsw_main.c,
binary words on a pipe) and ``lackey`` (Valgrind's lackey, text on a pipe, parsed by the
vectorised parser). Nothing is buffered beyond one pipe read and one chunk; the program runs
under ``setarch -R`` so its addresses repeat between runs and between backends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from ..errors import TierscanError
from . import build
from .format import RECORD_ZSTD_LEVEL, Header, TraceWriter
from .lackey import LackeyParser
from .words import WordDecoder

READ_BYTES = 8 << 20
BACKENDS = ("fast", "lackey")


class ToolMissing(TierscanError):
    """A program recording needs is not installed."""

    exit_code = 2


class RecordFailed(TierscanError):
    """Valgrind failed (not the program: its exit status is kept in the trace)."""


@dataclass
class RecordResult:
    path: str
    backend: str
    accesses: int
    pages: int
    wall_s: float
    exit_code: int
    bytes: int


def _need(cmd: str, package: str) -> str:
    path = shutil.which(cmd)
    if path is None:
        raise ToolMissing(f"{cmd} is not installed: install the Debian/Ubuntu package "
                          f"'{package}' (apt-get install -y {package})")
    return path


def merge_vmas(vmas) -> list:
    """One sorted, non-overlapping list of [start, end, kind]: the exit-time layout wins over
    mmap/brk events seen while running (they arrive first); touching ranges of one kind merge."""
    out: list[list] = []
    for start, end, kind in sorted(([int(s), int(e), k] for s, e, k in vmas),
                                   key=lambda v: (v[0], v[1])):
        if out and start <= out[-1][1] and kind == out[-1][2]:
            out[-1][1] = max(out[-1][1], end)
        elif out and start < out[-1][1]:
            if end > out[-1][1]:
                out.append([out[-1][1], end, kind])
        else:
            out.append([start, end, kind])
    return out


def _widen_pipe(fd: int) -> None:
    """Ask for a 1 MiB pipe buffer (Linux F_SETPIPE_SZ), so the tool blocks less often."""
    try:
        import fcntl
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except OSError:
        pass


def record(cmd: list[str], out: str, backend: str = "fast", notice=None,
           stdout=None, stderr=None, on_start=None) -> RecordResult:
    """Record ``cmd`` into ``out``. ``notice`` gets one line when the fast tool cannot be used;
    ``on_start(proc)`` is called once the program runs (a server's driver starts there)."""
    if not cmd:
        raise TierscanError("record: no command given (usage: tierscan record -o OUT -- CMD ...)")
    valgrind = _need("valgrind", "valgrind")
    setarch = _need("setarch", "util-linux")
    env = dict(os.environ)
    libdir = None
    try:
        libdir = build.tool_dir()
    except build.BuildUnavailable as why:
        if backend == "fast":
            (notice or (lambda m: print(m, file=sys.stderr)))(
                f"tierscan: cannot build the fast recording tool ({why}); using lackey "
                "(3000-5000x slower)")
            backend = "lackey"
    if libdir is not None:
        # Both backends run with the same VALGRIND_LIB so the program sees the same environment
        # (and so the same stack addresses).
        env["VALGRIND_LIB"] = str(libdir)
    r, w = os.pipe()
    header = Header(source=f"valgrind-{backend}", command=list(cmd),
                    extra={"backend": backend})
    writer = TraceWriter(out, header, level=RECORD_ZSTD_LEVEL, background=True)
    if backend == "fast":
        vg = [f"--tool={build.TOOL}", f"--tsw-fd={w}"]
        decoder = WordDecoder(writer)
        feed = decoder.feed                       # decodes, counts and hands chunks to writer
    else:
        vg = ["--tool=lackey", "--trace-mem=yes", f"--log-fd={w}"]
        parser = LackeyParser()
        decoder = None

        def feed(piece):
            cols = parser.feed(piece)
            writer.add(*cols)
            return cols[0].size
    argv = [setarch, "-R", valgrind, "-q", *vg, *cmd]
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(argv, pass_fds=(w,), env=env, stdout=stdout, stderr=stderr)
    except OSError as e:
        os.close(r), os.close(w)
        writer.abort()
        raise RecordFailed(f"cannot start valgrind: {e}") from None
    os.close(w)
    accesses = 0
    try:
        if on_start is not None:
            on_start(proc)
        _widen_pipe(r)
        # a buffered read of READ_BYTES blocks until that much arrived (or EOF): few, large
        # pieces for the vectorised decoders instead of one per 64 KiB pipe buffer, read into
        # one reused buffer (the decoders copy what they keep)
        buf = bytearray(READ_BYTES)
        view = memoryview(buf)
        with os.fdopen(r, "rb", buffering=READ_BYTES) as pipe:
            while True:
                got = pipe.readinto(buf)
                if not got:
                    break
                accesses += feed(view[:got])
        if backend == "lackey":
            cols = parser.feed(b"", final=True)
            accesses += cols[0].size
            writer.add(*cols)
        code = proc.wait()
        wall = time.perf_counter() - t0
        if accesses == 0:
            raise RecordFailed(f"valgrind recorded no accesses (exit status {code}); "
                               f"command: {' '.join(cmd)}")
        if decoder is not None:
            header.vmas = merge_vmas(decoder.vmas)
        header.extra.update(exit_code=code, wall_s=round(wall, 3))
        writer.close()
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        writer.abort()
        raise
    return RecordResult(out, backend, accesses, int(writer.distinct_pages), wall, code,
                        os.path.getsize(out))
