"""Recording and replaying real programs (trace/): one run of each measurement.

    cd /work/main && PYTHONPATH=src python3 benchmarks/bench_trace.py

Measures, side by side in one process:
  1. recording slowdown against the program run natively, for both backends, compression and
     the .tsw writer included, in CPU time (wall time beside it: the machine may be shared)
     (fast: a CPython dict workload, short and long; lackey: sort on 1,000 lines, because
     lackey is 3000-5000x slower); for the fast backend also where the time goes: valgrind
     with no tool (its floor: JIT translation of the program) and our tool writing to
     /dev/null (instrumentation without our reader);
  2. the lackey parser's accesses/s, against a line-by-line Python reference parse of the same
     text (same pages checked), and the perf-script importer's samples/s against its per-line
     regular expression (same samples checked);
  3. bytes stored per access in the fast recording;
  4. replay accesses/s in the exact model, with and without the LLC filter (memsys/llc.py's
     line cache), and that cache's numba kernel against its Python reference.
Needs valgrind (exit 2 with what to install otherwise).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from tierscan.sim.config import config_from_dict
from tierscan.sim.run import build_engine
from tierscan.trace import build
from tierscan.trace.format import TraceReader
from tierscan.trace.importers import perf_samples, perf_samples_reference
from tierscan.trace.lackey import LackeyParser
from tierscan.memsys.llc import LineCache
from tierscan.trace.record import record

ENV = {**os.environ, "LC_ALL": "C"}


def cpu_s() -> float:
    """CPU seconds used so far by this process and its waited-for children: on a shared
    machine wall time mostly measures the other users, so slowdowns are reported in CPU time
    (wall time beside it)."""
    me, ch = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime


def native_s(cmd, repeat=3) -> tuple[float, float]:
    """(best CPU s, best wall s) of the program run natively."""
    best_cpu = best_wall = float("inf")
    for _ in range(repeat):
        c, t = cpu_s(), time.perf_counter()
        subprocess.run(["setarch", "-R", *cmd], stdout=subprocess.DEVNULL, check=True, env=ENV)
        best_wall = min(best_wall, time.perf_counter() - t)
        best_cpu = min(best_cpu, cpu_s() - c)
    return best_cpu, best_wall


def valgrind_cpu(cmd, tool_args, env=ENV, pass_fds=()) -> float:
    """CPU seconds of the program under valgrind with ``tool_args`` (no reader)."""
    c = cpu_s()
    subprocess.run(["setarch", "-R", "valgrind", "-q", *tool_args, *cmd], pass_fds=pass_fds,
                   stdout=subprocess.DEVNULL, check=True, env=env)
    return cpu_s() - c


def tool_to_null_cpu(cmd, env) -> float:
    """CPU seconds of the program under our Valgrind tool writing its words to /dev/null."""
    with open(os.devnull, "wb") as null:
        return valgrind_cpu(cmd, [f"--tool={build.TOOL}", f"--tsw-fd={null.fileno()}"], env,
                            (null.fileno(),))


def recording(cmd, backend, out) -> tuple[float, float, object]:
    c = cpu_s()
    res = record(cmd, out, backend, stdout=subprocess.DEVNULL)
    return cpu_s() - c, res.wall_s, res


def reference_parse(text: bytes) -> np.ndarray:
    pages = []
    for line in text.split(b"\n"):
        if line[:1] == b" " and line[1:2] in (b"L", b"S", b"M"):
            p = int(line[3:].split(b",")[0], 16) >> 12
            pages += [p, p] if line[1:2] == b"M" else [p]
    return np.array(pages, np.int64)


def replay_rate(path, llc: bool, fast: bool = True) -> tuple[float, float, int]:
    """(trace accesses per CPU s, per wall s, LLC misses) of an exact-model replay; ``fast``
    False: the reference path (one MM.access per batch, ExactModel.fast off)."""
    cfg = config_from_dict({"machine": {"preset": "laptop"},
                            "workload": {"name": f"trace:{path}", "llc": llc},
                            "access_model": "exact", "duration": "100000s"})
    e = build_engine(cfg)
    e.model.fast = fast
    c, t = time.process_time(), time.perf_counter()
    e.run()
    cpu, wall = time.process_time() - c, time.perf_counter() - t
    src = e.workload.processes[0].phases[0].distribution.source
    return src.consumed / cpu, src.consumed / wall, src.misses


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dict-ops", type=int, default=300_000,
                    help="inserts of the CPython workload the fast backend records")
    ap.add_argument("--dict-ops-long", type=int, default=3_000_000,
                    help="inserts of the longer CPython workload (0: skip it)")
    ap.add_argument("--perf-lines", type=int, default=300_000,
                    help="generated 'perf script' lines for the perf importer's parser")
    ap.add_argument("--sort-lines", type=int, default=1_000,
                    help="lines of the sort input the lackey backend records")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        print("bench_trace: valgrind is not installed (apt-get install -y valgrind)")
        return 2
    tmp = tempfile.mkdtemp(prefix="bench_trace.")
    python = shutil.which("python3", path="/usr/bin") or os.path.realpath(sys.executable)
    def dict_prog(ops):
        return [python, "-I", "-S", "-c", f"d = {{}}\nfor i in range({ops}): "
                f"d[i * 7919 % {ops}] = i\nprint(sum(d.values()))"]
    fast_cmd = dict_prog(args.dict_ops)
    nums = os.path.join(tmp, "numbers.txt")
    rng = np.random.default_rng(0)
    with open(nums, "w") as f:
        f.write("\n".join(map(str, rng.integers(0, 10**9, args.sort_lines))) + "\n")
    lackey_cmd = ["sort", "-n", nums]
    os.environ["LC_ALL"] = "C"

    print("1. recording slowdown (CPU under valgrind, compression and writing included, / native)")
    record([python, "-c", "pass"], os.path.join(tmp, "warm.tsw"), "fast",
           stdout=subprocess.DEVNULL)                       # builds the tool if not cached
    fast_tsw = os.path.join(tmp, "fast.tsw")
    tool_env = {**ENV, "VALGRIND_LIB": str(build.tool_dir())}
    runs = [("fast", fast_cmd, fast_tsw), ("lackey", lackey_cmd, os.path.join(tmp, "lackey.tsw"))]
    if args.dict_ops_long:
        runs.insert(1, ("fast", dict_prog(args.dict_ops_long), os.path.join(tmp, "long.tsw")))
    for backend, cmd, out in runs:
        nat_cpu, nat_wall = native_s(cmd)
        cpu, wall, res = recording(cmd, backend, out)
        print(f"   {backend:6s} {' '.join(cmd)[:50]!r}")
        print(f"          native {nat_cpu:.3f} s CPU ({nat_wall:.3f} s wall); recorded "
              f"{cpu:.2f} s CPU ({wall:.2f} s wall); slowdown {cpu / nat_cpu:.1f}x CPU "
              f"({wall / nat_wall:.1f}x wall); {res.accesses:,} accesses, "
              f"{res.accesses / cpu / 1e6:.2f} M/s of CPU")
        if backend == "fast":
            none = valgrind_cpu(cmd, ["--tool=none"])
            tool = tool_to_null_cpu(cmd, tool_env)
            print(f"          where it goes: valgrind --tool=none {none:.2f} s "
                  f"({none / nat_cpu:.1f}x), our tool to /dev/null {tool:.2f} s "
                  f"({tool / nat_cpu:.1f}x), our reader (decode, count, zstd, write) "
                  f"{cpu - tool:.2f} s ({(cpu - tool) / nat_cpu:.1f}x)")
            if out != fast_tsw:
                os.unlink(out)

    print("2. parsers")
    text = subprocess.run(["valgrind", "-q", "--tool=lackey", "--trace-mem=yes", "--log-fd=1",
                           "sort", "-n", nums], capture_output=True, env=ENV).stdout
    t = time.perf_counter()
    p = LackeyParser(merge=False)
    parts = [p.feed(text[i:i + (8 << 20)])[0] for i in range(0, len(text), 8 << 20)]
    parts.append(p.feed(b"", final=True)[0])
    fast_s = time.perf_counter() - t
    got = np.concatenate(parts)
    t = time.perf_counter()
    ref = reference_parse(text)
    ref_s = time.perf_counter() - t
    same = np.array_equal(got, ref)
    print(f"   {len(text) / 1e6:.0f} MB, {p.lines:,} lines, {got.size:,} data accesses: "
          f"vectorised {got.size / fast_s / 1e6:.2f} M accesses/s, reference "
          f"{ref.size / ref_s / 1e6:.2f} M/s, ratio {ref_s / fast_s:.1f}x, same pages: {same}")

    rng = np.random.default_rng(2)
    n = args.perf_lines
    perf_text = "".join(
        f"  {tid}  {sec}.{frac:06d}:          1 cpu/mem-{ev}/P:     {addr:x}\n"
        for tid, sec, frac, ev, addr in zip(
            rng.integers(1, 9999, n).tolist(), rng.integers(0, 99999, n).tolist(),
            rng.integers(0, 10**6, n).tolist(), rng.choice(["loads,ldlat=30", "stores"], n),
            rng.integers(0, 1 << 47, n).tolist())).encode()
    t = time.process_time()
    got_p = perf_samples(perf_text, 1, "bench")
    vec_s = time.process_time() - t
    t = time.process_time()
    ref_p = perf_samples_reference(perf_text, 1, "bench")
    ref_s = time.process_time() - t
    same_p = all(np.array_equal(a, b) for a, b in zip(got_p, ref_p))
    print(f"   perf script importer: {n:,} samples, vectorised {n / vec_s / 1e6:.2f} M samples/s "
          f"CPU, per-line regex {n / ref_s / 1e6:.2f} M/s, ratio {ref_s / vec_s:.1f}x, same "
          f"samples: {same_p}")

    print("3. bytes per access stored")
    with TraceReader(fast_tsw) as r:
        n = r.verify()["records"]["access"]
    print(f"   {os.path.getsize(fast_tsw):,} bytes / {n:,} accesses = "
          f"{os.path.getsize(fast_tsw) / n:.3f} bytes per access")

    print("4. replay in the exact model (laptop preset), accesses of the trace per second")
    replay_rate(fast_tsw, False)                           # compile the kernels
    for llc in (False, True):
        ref_cpu, _, _ = replay_rate(fast_tsw, llc, fast=False)
        cpu, wall, misses = replay_rate(fast_tsw, llc)
        print(f"   LLC filter {'on ' if llc else 'off'}: {cpu / 1e6:6.2f} M accesses per CPU s "
              f"({wall / 1e6:.2f} M/s wall); reference path {ref_cpu / 1e6:.2f} M/s CPU: "
              f"x{cpu / ref_cpu:.1f} ({misses:,} LLC misses of {n:,})")
    lines = np.random.default_rng(1).zipf(1.2, 100_000).astype(np.int64) % 2_000_000
    c = LineCache(1 << 20, 16)
    c.access(lines[:10])                                   # compile
    c = LineCache(1 << 20, 16)
    t = time.process_time()
    a = c.access(lines)
    k_s = time.process_time() - t
    t = time.process_time()
    b = LineCache(1 << 20, 16).reference_access(lines)
    r_s = time.process_time() - t
    ok = np.array_equal(a, b)
    print(f"   LLC line cache (memsys/llc.py) kernel {lines.size / k_s / 1e6:.1f} M/s vs reference "
          f"{lines.size / r_s / 1e6:.2f} M/s: {r_s / k_s:.0f}x, same hits: {ok}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if same and same_p and ok else 1


if __name__ == "__main__":
    sys.exit(main())
