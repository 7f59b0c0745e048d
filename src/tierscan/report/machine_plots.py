"""PNG charts of a machine's memory devices: one chart per node, latency against bandwidth, one
line per read ratio (the curve family), with the device's peak marked."""

from __future__ import annotations

import os

from tierscan.machine import Machine
from tierscan.report import ensure_dir
from tierscan.report.plots import _figure, save_figure


def plot_curve_family(machine: Machine, node: int, path) -> str:
    """The curve family of node ``node``'s device as a PNG at ``path``; returns the path."""
    dev = machine.nodes[node].memory
    if dev is None:
        raise ValueError(f"node {node} has no memory device")
    unit = ("device" if dev.type == "cxl" else "channel") + ("s" if dev.channels > 1 else "")
    rate = f" x {dev.mts} MT/s" if dev.mts else (f" x{dev.link_width}" if dev.link_width else "")
    fig, ax = _figure(f"{machine.name} node {node}: {dev.type}, {dev.channels} {unit}{rate}\n"
                      f"(each curve's source is in the TOML; the model adds its rise over its first "
                      f"point to the idle [latency])",
                      "bandwidth served by the device (GB/s)", "loaded latency (ns)")
    ax.title.set_fontsize(10)
    for cv in dev.curves:
        ax.plot(cv.bandwidth_gbps, cv.latency_ns, marker="o", markersize=3,
                label=f"{cv.read_ratio:.0%} reads")
    ax.axvline(dev.peak_gbps, color="gray", linestyle="--", linewidth=1)
    ax.annotate(f"peak {dev.peak_gbps:.0f} GB/s" + (" per direction" if dev.duplex == "full" else ""),
                xy=(dev.peak_gbps, 0.02), xycoords=("data", "axes fraction"), ha="right", va="bottom",
                fontsize=8, color="gray", rotation=90)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(title="traffic mix", fontsize=8)
    return save_figure(fig, path)


def plot_machine(machine: Machine, directory) -> list[str]:
    """One PNG per node with a memory device, ``<name>-node<N>.png`` in ``directory``."""
    ensure_dir(directory, "plot directory")
    return [plot_curve_family(machine, n.id, os.path.join(directory, f"{machine.name}-node{n.id}.png"))
            for n in machine.nodes if n.memory is not None]
