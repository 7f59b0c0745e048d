"""PNG charts of run results (matplotlib, Agg backend: no display needed).

Every function takes one result or several (``{label: result}``, drawn on one chart with a
legend) and an output path, writes the PNG atomically and returns the path; the two charts that
need data a run may not have (daemon CPU, time to promote) return None without writing when no
result has it. ``plot_all`` writes every chart that applies into a directory.

- ``plot_hit_ratio``: fast-tier hit ratio (share of accesses served by tier-0 nodes) per
  sampling interval, over simulated time;
- ``plot_resident``: resident memory per node over time (MiB);
- ``plot_promotions``: promotions per second (``pgpromote_success`` per interval / interval);
- ``plot_cpu_overhead``: CPU time charged to each daemon (bars, ms) and its share of one CPU;
- ``plot_time_to_promote``: the CDF of time to promote (``final["promotion"]
  ["time_to_promote_ns"]``, samples or percentiles).
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # noqa: E402 - must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tierscan.report import atomic_write, ensure_dir  # noqa: E402
from tierscan.report.tables import (PAGE_SIZE, daemon_cpu_ns, nodes_of,  # noqa: E402
                                    result_label, time_to_promote)
from tierscan.sim.results import RunResult  # noqa: E402

# file name of each chart in plot_all's directory
FILES = {
    "hit_ratio": "hit_ratio.png",
    "resident": "resident.png",
    "promotions": "promotions.png",
    "cpu_overhead": "cpu_overhead.png",
    "time_to_promote": "time_to_promote.png",
}


def _as_mapping(results) -> dict[str, RunResult]:
    if isinstance(results, RunResult):
        return {result_label(results): results}
    return dict(results)


def _seconds(result: RunResult) -> np.ndarray:
    return result.series["time_ns"].astype(float) / 1e9


def save_figure(fig, path) -> str:
    """Write ``fig`` as PNG to ``path`` atomically and close it; returns the path."""
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100,
                                                        metadata={"Software": None}),
                            binary=True)
    finally:
        plt.close(fig)


def _figure(title: str, xlabel: str, ylabel: str):
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def plot_hit_ratio(results, out_png) -> str:
    """Fast-tier hit ratio over simulated time, one line per result."""
    fig, ax = _figure("fast-tier hit ratio", "simulated time (s)", "accesses served by tier 0")
    drawn = False
    for label, r in _as_mapping(results).items():
        y = r.series.get("fast_tier_hit_ratio")
        if y is None or not np.isfinite(y).any():
            continue
        ax.plot(_seconds(r), y * 100, marker="." if y.size < 50 else None, label=label)
        drawn = True
    ax.set_ylim(-2, 102)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter())
    if drawn:
        ax.legend(loc="best", fontsize="small")
    else:
        _no_data(ax, "no accesses recorded")
    return save_figure(fig, out_png)


def plot_resident(results, out_png) -> str:
    """Resident memory per node over simulated time (MiB); one line per (result, node)."""
    fig, ax = _figure("resident memory per node", "simulated time (s)", "resident (MiB)")
    drawn = False
    results = _as_mapping(results)
    for label, r in results.items():
        res = r.series.get("resident_pages")
        if res is None or res.ndim != 2:
            continue
        nodes = nodes_of(r)
        for i in range(res.shape[1]):
            node = nodes[i] if i < len(nodes) else {"id": i, "kind": "?", "tier": "?"}
            name = f"node {node['id']} ({node['kind']}, tier {node['tier']})"
            ax.plot(_seconds(r), res[:, i] * PAGE_SIZE / 2**20,
                    label=name if len(results) == 1 else f"{label}: {name}",
                    linestyle="-" if node.get("tier") == 0 else "--")
            drawn = True
    if drawn:
        ax.legend(loc="best", fontsize="small")
    else:
        _no_data(ax, "no resident-memory series")
    return save_figure(fig, out_png)


def promotions_per_second(result: RunResult) -> tuple[np.ndarray, np.ndarray]:
    """(end of each sampling interval in s, promotions per second in it)."""
    t = result.series["time_ns"]
    p = result.series.get("pgpromote_success")
    if p is None or t.size < 2:
        return np.zeros(0), np.zeros(0)
    dt = np.diff(t).astype(float) / 1e9
    ok = dt > 0
    return (t[1:][ok] / 1e9, p[1:][ok] / dt[ok])


def plot_promotions(results, out_png) -> str:
    """Promotions per second over simulated time, one step line per result."""
    fig, ax = _figure("promotions per second", "simulated time (s)", "pgpromote_success / s")
    drawn = False
    for label, r in _as_mapping(results).items():
        x, y = promotions_per_second(r)
        if x.size == 0:
            continue
        ax.step(x, y, where="pre", label=label)
        drawn = True
    if drawn:
        ax.legend(loc="best", fontsize="small")
    else:
        _no_data(ax, "no sampling intervals")
    return save_figure(fig, out_png)


def plot_cpu_overhead(results, out_png) -> str | None:
    """CPU time charged to each daemon (grouped bars, ms), annotated with its share of one
    CPU over the simulated time. None (nothing written) if no result has a daemon."""
    results = _as_mapping(results)
    cpu = {label: daemon_cpu_ns(r) for label, r in results.items()}
    daemons = sorted({d for c in cpu.values() for d in c})
    if not daemons:
        return None
    fig, ax = _figure("detector and promotion-engine CPU overhead", "daemon", "CPU time (ms)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.grid(False, axis="x")
    width = 0.8 / len(results)
    x = np.arange(len(daemons))
    for k, (label, r) in enumerate(results.items()):
        ms = np.array([cpu[label].get(d, 0.0) / 1e6 for d in daemons])
        bars = ax.bar(x + (k - (len(results) - 1) / 2) * width, ms, width, label=label)
        sim = r.sim_time_ns
        if sim:
            ax.bar_label(bars, labels=[f"{v * 1e6 / sim:.2%}" for v in ms], fontsize="x-small")
    ax.set_xticks(x, daemons)
    if len(results) > 1:
        ax.legend(loc="best", fontsize="small")
    return save_figure(fig, out_png)


def plot_time_to_promote(results, out_png) -> str | None:
    """CDF of time to promote, one curve per result that has it; None if none has it."""
    data = {label: time_to_promote(r) for label, r in _as_mapping(results).items()}
    data = {k: v for k, v in data.items() if v is not None}
    if not data:
        return None
    fig, ax = _figure("time to promote (CDF)", "time to promote (ms)", "share of promotions")
    for label, (kind, d) in data.items():
        if kind == "samples":
            xs = np.sort(d) / 1e6
            ys = np.arange(1, xs.size + 1) / max(xs.size, 1)
            ax.step(xs, ys, where="post", label=f"{label} (n={xs.size:,})")
        else:
            qs = np.array(list(d.keys())) / 100
            xs = np.array(list(d.values())) / 1e6
            ax.plot(xs, qs, marker="o", label=f"{label} (percentiles)")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.legend(loc="best", fontsize="small")
    return save_figure(fig, out_png)


def plot_all(results, out_dir) -> tuple[list[str], list[str]]:
    """Write every chart that applies into ``out_dir`` (created if needed). Returns (paths
    written, one-line notes on the charts skipped for lack of data)."""
    ensure_dir(out_dir, "plot directory")
    results = _as_mapping(results)
    written, skipped = [], []
    path = lambda key: os.path.join(os.fspath(out_dir), FILES[key])  # noqa: E731
    written.append(plot_hit_ratio(results, path("hit_ratio")))
    written.append(plot_resident(results, path("resident")))
    written.append(plot_promotions(results, path("promotions")))
    p = plot_cpu_overhead(results, path("cpu_overhead"))
    if p:
        written.append(p)
    else:
        skipped.append(f"{FILES['cpu_overhead']}: no daemon CPU time recorded "
                       "(no detector or promotion engine in the run)")
    p = plot_time_to_promote(results, path("time_to_promote"))
    if p:
        written.append(p)
    else:
        skipped.append(f"{FILES['time_to_promote']}: no time-to-promote data "
                       "(final.promotion.time_to_promote_ns)")
    return written, skipped


__all__ = ["FILES", "plot_all", "plot_cpu_overhead", "plot_hit_ratio", "plot_promotions",
           "plot_resident", "plot_time_to_promote", "promotions_per_second", "save_figure"]
