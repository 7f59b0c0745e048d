"""PNG charts of run results (matplotlib, Agg backend: no display needed).

Every function takes one result or several (``{label: result}``, drawn on one chart with a
legend) and an output path, writes the PNG atomically and returns the path; the two charts that
need data a run may not have (daemon CPU, time to promote) return None without writing when no
result has it. ``plot_all`` writes every chart that applies into a directory.

- ``plot_hit_ratio``: fast-tier hit ratio (share of accesses served by tier-0 nodes) per
  sampling interval, over simulated time;
- ``plot_resident``: resident memory over time (MiB), one panel per node;
- ``plot_promotions``: pages promoted per second (``promotions_per_second``: the definition of
  ``tables.promoted_pages``, so DAMON and the oracle are not drawn idle);
- ``plot_cpu_overhead``: CPU time charged to each daemon (horizontal bars) and its share of one
  CPU;
- ``plot_time_to_promote``: the CDF of time to promote (``final["promotion"]
  ["time_to_promote_cdf"]``, exact; or samples; or percentiles drawn as points).

Many sources stay readable: ``series_style`` gives each series its own colour, dash and marker
(distinct for at least 12 series), markers are spaced with per-series offsets so overlapping
lines still show, and legends sit outside the axes.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # noqa: E402 - must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tierscan.report import atomic_write, ensure_dir  # noqa: E402
from tierscan.report.tables import (PAGE_SIZE, daemon_cpu_ns, fmt_count,  # noqa: E402
                                    fmt_ns, nodes_of, promoted_pages, result_label,
                                    time_to_promote)
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


# Series styles that stay apart for many sources: 12 colours (tab10 and two more, distinct
# for colour-blind readers as far as 12 can be), 4 dash patterns and 7 markers, cycled with
# different periods so no two of the first 12 series share colour, dash and marker.
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#ffd700")
DASHES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def series_style(i: int, n_points: int = 0, n_series: int = 1) -> dict:
    """Keyword arguments for ``ax.plot`` of the i-th series: colour, dash, and markers spaced
    along the line, each series' starting at a different offset, so that lines lying on top
    of each other still show every series' marker."""
    style = {"color": COLORS[i % len(COLORS)], "linestyle": DASHES[i % len(DASHES)],
             "marker": MARKERS[i % len(MARKERS)], "markersize": 5, "linewidth": 1.4}
    if n_points > 0:
        step = max(1, n_points // 8)
        style["markevery"] = (min(i * max(1, step // max(n_series, 1)), n_points - 1), step)
    return style


def _legend_outside(ax, **kw) -> None:
    """The legend right of the axes, never over the data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
              fontsize="small", **kw)


def save_figure(fig, path) -> str:
    """Write ``fig`` as PNG to ``path`` atomically and close it; returns the path."""
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100,
                                                        metadata={"Software": None}),
                            binary=True)
    finally:
        plt.close(fig)


def _figure(title: str, xlabel: str, ylabel: str, *, width: float = 10.0, height: float = 4.5):
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
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
    results = _as_mapping(results)
    drawn = False
    for i, (label, r) in enumerate(results.items()):
        y = r.series.get("fast_tier_hit_ratio")
        if y is None or not np.isfinite(y).any():
            continue
        ax.plot(_seconds(r), y * 100, label=label, **series_style(i, y.size, len(results)))
        drawn = True
    ax.set_ylim(-2, 102)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter())
    if drawn:
        _legend_outside(ax)
    else:
        _no_data(ax, "no accesses recorded")
    return save_figure(fig, out_png)


def plot_resident(results, out_png) -> str:
    """Resident memory over simulated time (MiB): one panel per node, one line per result."""
    results = _as_mapping(results)
    with_series = {label: r for label, r in results.items()
                   if (res := r.series.get("resident_pages")) is not None and res.ndim == 2}
    nodes = nodes_of(next(iter(with_series.values()))) if with_series else []
    n_panels = max(1, max((r.series["resident_pages"].shape[1] for r in with_series.values()),
                          default=1))
    fig, axes = plt.subplots(n_panels, 1, figsize=(10, 2.2 + 2.0 * n_panels), sharex=True,
                             layout="constrained", squeeze=False)
    axes = axes[:, 0]
    fig.suptitle("resident memory per node")
    for n, ax in enumerate(axes):
        node = nodes[n] if n < len(nodes) else {"id": n, "kind": "?", "tier": "?"}
        ax.set_title(f"node {node['id']} ({node['kind']}, tier {node['tier']})",
                     fontsize="medium")
        ax.set_ylabel("resident (MiB)")
        ax.grid(True, alpha=0.3)
        for i, (label, r) in enumerate(results.items()):
            res = r.series.get("resident_pages")
            if label not in with_series or n >= res.shape[1]:
                continue
            ax.plot(_seconds(r), res[:, n] * PAGE_SIZE / 2**20, label=label,
                    **series_style(i, res.shape[0], len(results)))
    axes[-1].set_xlabel("simulated time (s)")
    if with_series:
        _legend_outside(axes[0])
    else:
        _no_data(axes[0], "no resident-memory series")
    return save_figure(fig, out_png)


def promotions_per_second(result: RunResult) -> tuple[np.ndarray, np.ndarray]:
    """(end of each sampling interval in s, pages promoted per second in it), by the one
    definition of ``tables.promoted_pages``: ``pgpromote_success`` per interval when that is
    what the run's promotions are (NUMA balancing, pghot); for sources that migrate without
    counting it (DAMON, the oracle), the pages migrated up: ``pgmigrate_success`` minus the
    demotions (``pgdemote_*``) of the interval."""
    t = result.series["time_ns"]
    if t.size < 2:
        return np.zeros(0), np.zeros(0)
    counted = (result.final.get("vmstat") or {}).get("pgpromote_success", 0)
    promoted = promoted_pages(result)
    p = result.series.get("pgpromote_success")
    if promoted and not counted and result.series.get("pgmigrate_success") is not None:
        demoted = sum((result.series[k] for k in result.series if k.startswith("pgdemote_")),
                      np.zeros(t.size))
        p = np.maximum(result.series["pgmigrate_success"] - demoted, 0)
    if p is None:
        return np.zeros(0), np.zeros(0)
    dt = np.diff(t).astype(float) / 1e9
    ok = dt > 0
    return (t[1:][ok] / 1e9, p[1:][ok] / dt[ok])


def plot_promotions(results, out_png) -> str:
    """Pages promoted per second over simulated time, one step line per result."""
    fig, ax = _figure("pages promoted per second (pgpromote_success, or pages migrated up "
                      "for DAMON/oracle)", "simulated time (s)", "pages promoted / s")
    results = _as_mapping(results)
    drawn = False
    for i, (label, r) in enumerate(results.items()):
        x, y = promotions_per_second(r)
        if x.size == 0:
            continue
        ax.step(x, y, where="pre", label=f"{label} ({fmt_count(promoted_pages(r))} pages)",
                **series_style(i, x.size, len(results)))
        drawn = True
    if drawn:
        _legend_outside(ax)
    else:
        _no_data(ax, "no sampling intervals")
    return save_figure(fig, out_png)


def plot_cpu_overhead(results, out_png) -> str | None:
    """CPU time charged to each daemon of each result: one horizontal bar per (result,
    daemon) that used any, labelled with the time and its share of one CPU over the simulated
    time. None (nothing written) if no result has a daemon."""
    results = _as_mapping(results)
    rows = [(label, d, ns, r.sim_time_ns) for label, r in results.items()
            for d, ns in daemon_cpu_ns(r).items()]
    if not rows:
        return None
    daemons = sorted({d for _, d, _, _ in rows})
    shown = [row for row in rows if row[2] > 0]
    idle = sorted({label for label, r in results.items()
                   if not any(x[0] == label for x in shown)})
    fig, ax = _figure("detector and promotion-engine CPU overhead", "CPU time (ms)", "",
                      height=1.2 + 0.32 * max(len(shown), 1))
    ax.grid(True, axis="x", alpha=0.3)
    ax.grid(False, axis="y")
    y = np.arange(len(shown))[::-1]
    for k, (label, d, ns, sim) in enumerate(shown):
        bar = ax.barh(y[k], ns / 1e6, color=COLORS[daemons.index(d) % len(COLORS)],
                      label=d if d not in ax.get_legend_handles_labels()[1] else None)
        share = f" ({ns / sim:.2%} of a CPU)" if sim else ""
        ax.bar_label(bar, labels=[f"{fmt_ns(ns)}{share}"], padding=3, fontsize="x-small")
    ax.set_yticks(y, [f"{label}: {d}" if len(results) > 1 else d for label, d, _, _ in shown])
    ax.margins(x=0.35)                  # room for the labels right of the longest bar
    if not shown:
        _no_data(ax, "every daemon used 0 ns")
    else:
        _legend_outside(ax, title="daemon")
    if idle:
        ax.set_title(f"detector and promotion-engine CPU overhead (0 ns: {', '.join(idle)})")
    return save_figure(fig, out_png)


def plot_time_to_promote(results, out_png) -> str | None:
    """The CDF of time to promote (from the run start), one curve per result that has it;
    None if none has it. The exact CDF (``time_to_promote_cdf``) or per-promotion samples are
    drawn as steps; a result with only percentiles is drawn as those points, marked and
    labelled as such (not joined into a fake curve)."""
    results = _as_mapping(results)
    data = {label: time_to_promote(r) for label, r in results.items()}
    data = {k: v for k, v in data.items() if v is not None}
    if not data:
        return None
    fig, ax = _figure("time to promote (CDF over promoted pages)",
                      "time from the run start (s)", "share of promoted pages")
    for i, (label, (kind, d)) in enumerate(data.items()):
        style = series_style(list(results).index(label), 0, len(results))
        if kind == "cdf":
            ns, cum = d
            xs = np.concatenate([[0.0], ns / 1e9])
            ys = np.concatenate([[0.0], cum / cum[-1]])
            ax.step(xs, ys, where="post", label=f"{label} ({fmt_count(cum[-1])} pages)",
                    markevery=[len(xs) - 1], **style)
        elif kind == "samples":
            xs = np.sort(d) / 1e9
            ys = np.arange(1, xs.size + 1) / max(xs.size, 1)
            ax.step(xs, ys, where="post", label=f"{label} (n={xs.size:,})",
                    markevery=[xs.size - 1] if xs.size else None, **style)
        else:
            qs = np.array(list(d.keys())) / 100
            xs = np.array(list(d.values())) / 1e9
            style["linestyle"] = "none"
            ax.plot(xs, qs, label=f"{label} (percentiles only)", **style)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    _legend_outside(ax)
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


__all__ = ["COLORS", "FILES", "plot_all", "series_style", "plot_cpu_overhead", "plot_hit_ratio", "plot_promotions",
           "plot_resident", "plot_time_to_promote", "promotions_per_second", "save_figure"]
