"""What every benchmark hands to bench_all.py: rows of (figure, goal, measured, ratio, met),
written as JSON with ``--json PATH``. bench_all.py prints them as one table."""

from __future__ import annotations

import json
import resource
import time


def row(figure: str, goal: str, measured: str, met: bool | None, ratio: str = "") -> dict:
    """One line of the table. ``ratio``: the fast path against its reference in the same
    process ("x3.1 vs numpy reference"); ``met`` None where the figure has no goal."""
    return {"figure": figure, "goal": goal, "measured": measured, "ratio": ratio, "met": met}


def write_rows(path: str | None, rows: list[dict]) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)


def add_json_arg(ap) -> None:
    ap.add_argument("--json", metavar="PATH", help="also write the figures for bench_all.py")


def cpu_s() -> float:
    """CPU seconds of this process (user + system). On a shared machine wall time mostly
    measures the other processes; CPU time is what a run costs."""
    return time.process_time()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def vm_status(field: str) -> int:
    """A field of /proc/self/status in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def timed_run(cfg: dict) -> tuple[float, str]:
    """(CPU s, result file without its timing block) of one run of a configuration dict."""
    import io

    from tierscan.sim.config import config_from_dict
    from tierscan.sim.run import run_experiment

    t = cpu_s()
    res = run_experiment(config_from_dict(cfg))
    spent = cpu_s() - t
    out = io.StringIO()
    res.save(out, include_timing=False)
    return spent, out.getvalue()


def mean_of(a: tuple[float, str], b: tuple[float, str]) -> tuple[float, str]:
    """Mean CPU of two ``timed_run`` runs of one form, and their result (a text that matches
    no result file when the two differ, so the report says DIFFERENT). Benchmarks that run
    each form early and late in one process (a later run is cheaper) report these means."""
    return (a[0] + b[0]) / 2, a[1] if a[1] == b[1] else "the two runs of one form differ"


def report_same_run(json_path: str | None, figure: str, what: str, ref: tuple[float, str],
                    fast: tuple[float, str], ref_name: str, fast_name: str,
                    versus: str) -> int:
    """Print and write (``--json``) a run timed with a reference path and with the fast one
    (``timed_run``'s pairs); exit status 1 unless their results are byte-identical."""
    (ref_s, ref_out), (fast_s, fast_out) = ref, fast
    same = ref_out == fast_out
    print(f"{what}: {ref_name} {ref_s:.2f} s CPU, {fast_name} {fast_s:.2f} s CPU "
          f"(x{ref_s / fast_s:.2f}); results {'identical' if same else 'DIFFERENT'}")
    write_rows(json_path, [row(
        f"{figure}, {what}", "-",
        f"{fast_s:.1f} s CPU ({'same result' if same else 'RESULT DIFFERS'})", None,
        f"x{ref_s / fast_s:.2f} vs {versus}")])
    return 0 if same else 1

