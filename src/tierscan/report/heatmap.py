"""Access heatmaps: time x address, colour = accesses, with a marker for the tier.

The input is defined here, independent of how it was recorded:

- ``counts``: a 2-D array ``[T, B]`` of non-negative numbers: the accesses made during sampling
  interval ``t`` to address bin ``b`` (B equal-width bins over the address range, lowest first);
- ``tier_of_bin``: None, or an integer array ``[T, B]``: the memory tier that backed bin ``b``
  during interval ``t`` (0 = the fast tier, 1.. = slower tiers, -1 = unknown, mixed or
  unmapped: no marker);
- optional axes: ``time_ns`` (length T, the end of each interval), ``addr_start`` and
  ``bin_bytes`` (the address of bin 0 and the width of a bin; without ``bin_bytes`` the address
  axis is the bin number).

A result file carries a heatmap as the series ``heatmap`` (``[T, B]``, sampled with
``time_ns``) and, optionally, ``heatmap_tier`` (``[T, B]``) and ``final["heatmap"] =
{"addr_start": ..., "bin_bytes": ...}``; ``heatmap_data(result)`` reads them (None when absent).

``heatmap(counts, tier_of_bin, out_png, ...)`` writes a PNG (log colour scale; slower-tier cells
hatched); ``heatmap_text(counts, tier_of_bin, ...)`` renders the same in the terminal with rich:
shade characters `` ░▒▓█`` for accesses (log scale), green for fast-tier cells and red for
slower-tier cells.
"""

from __future__ import annotations

import math

import numpy as np

from tierscan.arrays import unique
from tierscan.errors import ConfigError
from tierscan.sim.results import RunResult

HEATMAP_SERIES = "heatmap"
HEATMAP_TIER_SERIES = "heatmap_tier"
NO_HEATMAP = ("no heatmap data (the run recorded no 'heatmap' series of accesses per "
              "address bin)")

SHADES = " ░▒▓█"
FAST_STYLE, SLOW_STYLE = "green", "red"


def _check(counts, tier_of_bin, time_ns=None):
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] == 0 or counts.shape[1] == 0:
        raise ConfigError(f"expected a non-empty 2-D array [time, address bin], got shape "
                          f"{counts.shape}", field="heatmap")
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise ConfigError("expected finite, non-negative access counts", field="heatmap")
    if tier_of_bin is not None:
        tier_of_bin = np.asarray(tier_of_bin)
        if tier_of_bin.shape != counts.shape:
            raise ConfigError(f"tier_of_bin has shape {tier_of_bin.shape}, expected "
                              f"{counts.shape} (as the counts)", field="heatmap_tier")
        tier_of_bin = tier_of_bin.astype(np.int64)
    if time_ns is not None:
        time_ns = np.asarray(time_ns, dtype=float).reshape(-1)
        if time_ns.size != counts.shape[0]:
            raise ConfigError(f"time_ns has {time_ns.size} values, expected {counts.shape[0]}",
                              field="time_ns")
    return counts, tier_of_bin, time_ns


def _align(counts, tier, time_ns):
    """What is drawn: interval t's accesses with the tier that backed each bin when interval t
    *began* (the sample at the end of interval t - 1): the tier sampled at the end of an
    interval is after that interval's promotions, and would draw a bin served entirely from
    the slow tier as fast. A first sample with no accesses (taken at the run start, it covers
    no time) is dropped, so the chart starts at the first interval."""
    if tier is not None:
        tier = np.concatenate([tier[:1], tier[:-1]])
    if counts.shape[0] > 1 and not counts[0].any():
        counts = counts[1:]
        tier = None if tier is None else tier[1:]
        time_ns = None if time_ns is None else time_ns[1:]
    return counts, tier, time_ns


def heatmap_data(result: RunResult) -> dict | None:
    """The heatmap a result carries, as keyword arguments for ``heatmap``/``heatmap_text``
    (counts, tier_of_bin, time_ns, addr_start, bin_bytes), or None if it has none."""
    counts = result.series.get(HEATMAP_SERIES)
    if counts is None:
        return None
    extra = result.final.get("heatmap")
    extra = extra if isinstance(extra, dict) else {}
    return {"counts": counts, "tier_of_bin": result.series.get(HEATMAP_TIER_SERIES),
            "time_ns": result.series["time_ns"], "addr_start": int(extra.get("addr_start", 0)),
            "bin_bytes": extra.get("bin_bytes")}


def _time_edges_s(time_ns, T: int) -> tuple[np.ndarray, str]:
    """T + 1 cell edges along time: interval t spans (time_ns[t-1], time_ns[t]]; the first one
    is given the length of the second."""
    if time_ns is None:
        return np.arange(T + 1, dtype=float), "sampling interval"
    t = np.asarray(time_ns, dtype=float) / 1e9
    first = float(t[1] - t[0]) if T > 1 and t[1] > t[0] else 1.0
    return np.concatenate([[t[0] - first], t]), "simulated time (s)"


def _address_axis(B: int, addr_start: int, bin_bytes) -> tuple[np.ndarray, str]:
    if bin_bytes:
        edges = np.arange(B + 1, dtype=float) * int(bin_bytes) / 2**20
        label = "address (MiB)" if not addr_start else f"address − {addr_start:#x} (MiB)"
        return edges, label
    return np.arange(B + 1, dtype=float), "address bin"


def _runs(column: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of True in a 1-D bool array."""
    d = np.diff(np.concatenate([[0], column.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def heatmap(counts, tier_of_bin, out_png, *, time_ns=None, addr_start: int = 0,
            bin_bytes: int | None = None, title: str = "access heatmap") -> str:
    """Write the heatmap as a PNG and return its path. Cells in a slower tier (tier >= 1) are
    hatched in red; zero-access cells are left blank; colour is log-scaled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Patch

    from tierscan.report.plots import save_figure

    counts, tier, time_ns = _align(*_check(counts, tier_of_bin, time_ns))
    T, B = counts.shape
    x, xlabel = _time_edges_s(time_ns, T)
    y, ylabel = _address_axis(B, addr_start, bin_bytes)

    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(y[0], y[-1])
    cmap = matplotlib.colormaps["viridis"]
    positive = counts[counts > 0]
    if positive.size:
        lo, hi = float(positive.min()), float(positive.max())
        norm = LogNorm(vmin=lo, vmax=max(hi, lo * 1.0001))
        mesh = ax.pcolormesh(x, y, np.ma.masked_less_equal(counts.T, 0), cmap=cmap, norm=norm)
        fig.colorbar(mesh, ax=ax, label="accesses per bin per interval")
    else:
        ax.text(0.5, 0.5, "no accesses", ha="center", va="center", transform=ax.transAxes)

    if tier is not None:
        # One hatched rectangle per run of slower-tier bins in each interval: exact cell edges.
        verts = []
        for t in range(T):
            for b0, b1 in _runs(tier[t] > 0):
                verts.append([(x[t], y[b0]), (x[t + 1], y[b0]), (x[t + 1], y[b1]),
                              (x[t], y[b1])])
        if verts:
            ax.add_collection(PolyCollection(verts, facecolors="none", edgecolors="red",
                                             linewidths=0, hatch="///"))
        # Both tiers in the legend, below the axes (never over the data).
        ax.legend(handles=[Patch(facecolor="white", edgecolor="0.5",
                                 label="fast tier (tier 0): plain"),
                           Patch(facecolor="white", edgecolor="red", hatch="///",
                                 label="slower tier (tier >= 1): hatched")],
                  loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize="small",
                  title="tier backing the bin when the interval began",
                  title_fontsize="small")
    return save_figure(fig, out_png)


def _blocks(n: int, out: int) -> np.ndarray:
    """Start indices of ``out`` near-equal blocks of ``range(n)`` (out <= n)."""
    return unique(np.linspace(0, n, out + 1).astype(int)[:-1])


def _resample(a: np.ndarray, n0: int, n1: int) -> np.ndarray:
    """Sum ``a`` over near-equal blocks: at most ``n0`` along axis 0 and ``n1`` along axis 1."""
    b0 = _blocks(a.shape[0], min(n0, a.shape[0]))
    b1 = _blocks(a.shape[1], min(n1, a.shape[1]))
    return np.add.reduceat(np.add.reduceat(a, b0, axis=0), b1, axis=1)


def heatmap_text(counts, tier_of_bin=None, *, width: int = 72, height: int = 16, time_ns=None,
                 addr_start: int = 0, bin_bytes: int | None = None):
    """The heatmap as a rich ``Text``: one row per address block (highest address on top), one
    column per time block, shade = accesses (log scale), colour = tier. ``str(text)`` or
    ``text.plain`` is the uncoloured form."""
    from rich.text import Text

    counts, tier, time_ns = _align(*_check(counts, tier_of_bin, time_ns))
    T, B = counts.shape
    width, height = max(int(width), 1), max(int(height), 1)
    grid = _resample(counts, width, height)          # [cols(time), rows(addr)]
    slow = known = None
    if tier is not None:
        known_cells = (tier >= 0).astype(float)
        known = _resample(known_cells, width, height)
        slow = _resample((tier > 0).astype(float), width, height)
    rep = max(1, width // grid.shape[0])  # widen short runs so the chart is readable
    positive = grid[grid > 0]
    vmin, vmax = (float(positive.min()), float(positive.max())) if positive.size else (0.0, 0.0)
    span = math.log(vmax / vmin) if positive.size and vmax > vmin else 0.0

    def level(v: float) -> int:
        """0 for no access, else 1..4 on a log scale from the smallest to the largest cell."""
        if v <= 0:
            return 0
        if span == 0:
            return 4
        return 1 + min(3, int(4 * math.log(v / vmin) / span))

    text = Text()
    if bin_bytes:
        top, bottom = f"{addr_start + B * int(bin_bytes):#x}", f"{addr_start:#x}"
    else:
        top, bottom = f"bin {B}", "bin 0"
    text.append(f"address {top}\n", style="dim")
    for r in range(grid.shape[1] - 1, -1, -1):
        for c in range(grid.shape[0]):
            style = None
            if slow is not None and known[c, r] > 0:
                style = SLOW_STYLE if slow[c, r] * 2 >= known[c, r] else FAST_STYLE
            text.append(SHADES[level(grid[c, r])] * rep, style=style)
        text.append("\n")
    text.append(f"address {bottom}\n", style="dim")
    if time_ns is not None:
        axis = f"time {time_ns[0] / 1e9:g} s → {time_ns[-1] / 1e9:g} s"
    else:
        axis = f"time: {T} sampling intervals"
    text.append(f"{axis} ({T} x {B} cells shown as {grid.shape[0]} x {grid.shape[1]})\n",
                style="dim")
    text.append(f"{SHADES[1:]} accesses, log scale ({vmin:,.0f} to {vmax:,.0f} per cell)")
    if tier is not None:
        text.append("   ")
        text.append("██", style=FAST_STYLE)
        text.append(" fast tier  ")
        text.append("██", style=SLOW_STYLE)
        text.append(" slower tier")
    return text


__all__ = ["HEATMAP_SERIES", "HEATMAP_TIER_SERIES", "NO_HEATMAP", "heatmap", "heatmap_data",
           "heatmap_text"]
