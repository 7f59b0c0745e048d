"""Building tierscan's Valgrind tool (valgrind/tsw_main.c) on first use, and caching it.

Valgrind tools are static executables linked against the core library the distribution ships
(Debian's ``valgrind`` package: headers in /usr/include/valgrind, libcoregrind-*.a and
libvex-*.a under /usr/lib/<triplet>/valgrind), at the text address Valgrind's own
``link_tool_exe_linux`` uses (0x58000000 on amd64). The launcher finds a tool as
``$VALGRIND_LIB/<name>-<platform>``, so the cache directory holds our binary beside links to the
installed tools, preload objects and suppressions; ``valgrind --tool=tsw`` with ``VALGRIND_LIB``
pointing there runs it. The cache key covers the C source, the valgrind version and the
compiler, so an upgrade of either rebuilds.
"""

from __future__ import annotations

import glob
import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

TOOL = "tsw"
SOURCE = Path(__file__).with_name("valgrind") / "tsw_main.c"
_PLATFORMS = {"x86_64": "amd64-linux"}
_LINK_ADDR = {"amd64-linux": "0x58000000"}
_DEFINES = {"amd64-linux": ["-DVGA_amd64=1", "-DVGO_linux=1", "-DVGP_amd64_linux=1",
                            "-DVGPV_amd64_linux_vanilla=1"]}


class BuildUnavailable(Exception):
    """Why the fast tool cannot be built here (the caller falls back to lackey)."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tierscan"


def _find(patterns) -> str | None:
    for pat in patterns:
        hits = sorted(glob.glob(pat))
        if hits:
            return hits[0]
    return None


def _valgrind_dirs(plat: str) -> tuple[str, str]:
    """(directory of libcoregrind-PLAT.a, directory of the installed tools)."""
    lib = _find([f"/usr/lib/*/valgrind/libcoregrind-{plat}.a", f"/usr/lib*/valgrind/libcoregrind-{plat}.a",
                 f"/usr/local/lib*/valgrind/libcoregrind-{plat}.a"])
    tools = _find([f"/usr/libexec/valgrind/lackey-{plat}", f"/usr/lib/*/valgrind/lackey-{plat}",
                   f"/usr/lib*/valgrind/lackey-{plat}", f"/usr/local/libexec/valgrind/lackey-{plat}"])
    if lib is None:
        raise BuildUnavailable(f"no libcoregrind-{plat}.a (valgrind's static tool libraries)")
    if tools is None:
        raise BuildUnavailable(f"no installed lackey-{plat} (valgrind's tool directory)")
    return os.path.dirname(lib), os.path.dirname(tools)


def _version(cmd) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def tool_dir() -> Path:
    """A VALGRIND_LIB directory holding the built tool; builds it if the cache has none.
    Raises BuildUnavailable with the reason when that is not possible."""
    plat = _PLATFORMS.get(platform.machine())
    if plat is None:
        raise BuildUnavailable(f"the fast tool is built for x86_64 only, not {platform.machine()}")
    if not os.path.isfile("/usr/include/valgrind/pub_tool_basics.h"):
        raise BuildUnavailable("no valgrind tool headers in /usr/include/valgrind")
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BuildUnavailable("gcc is not installed")
    libdir, toolsdir = _valgrind_dirs(plat)
    key = hashlib.sha256(SOURCE.read_bytes() + _version(["valgrind", "--version"]).encode()
                         + _version([gcc, "--version"]).encode() + libdir.encode()).hexdigest()
    out = cache_root() / f"valgrind-{key[:16]}"
    exe = out / f"{TOOL}-{plat}"
    if exe.is_file():
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    obj = tmp / "tsw.o"
    compile_cmd = [gcc, "-O2", "-m64", "-std=gnu99", "-I/usr/include/valgrind", *_DEFINES[plat],
                   "-fno-stack-protector", "-fno-builtin", "-fno-strict-aliasing", "-fno-pie",
                   "-c", str(SOURCE), "-o", str(obj)]
    link_cmd = [gcc, "-o", str(tmp / exe.name), str(obj), "-static", "-nodefaultlibs",
                "-nostartfiles", "-u", "_start", "-Wl,--build-id=none",
                f"-Wl,-Ttext-segment={_LINK_ADDR[plat]}", "-no-pie",
                f"{libdir}/libcoregrind-{plat}.a", f"{libdir}/libvex-{plat}.a",
                *glob.glob(f"{libdir}/libgcc-sup-{plat}.a"), "-lgcc"]
    for cmd in (compile_cmd, link_cmd):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            shutil.rmtree(tmp, ignore_errors=True)
            first = (r.stderr.strip().splitlines() or ["?"])[0]
            raise BuildUnavailable(f"building the valgrind tool failed: {first}")
    obj.unlink()
    for f in os.listdir(toolsdir):          # the launcher looks for everything in VALGRIND_LIB
        if not (tmp / f).exists():
            os.symlink(os.path.join(toolsdir, f), tmp / f)
    try:
        os.rename(tmp, out)
    except OSError:                          # another process built it first
        shutil.rmtree(tmp, ignore_errors=True)
    return out
