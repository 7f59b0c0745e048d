"""The memory configurations the pghot machine's published facts allow (issue 12, item 9).

The RFC's cover letter publishes `numactl -H` (node sizes) but not how the memory is built:
DRAM channels populated, DIMM sizes, CXL devices. The bandwidth knee, and so the reproduced
ratios, depend on exactly that. This module derives every configuration the published sizes
allow and builds each as a Machine variant (``Machine.with_memory``), so a reproduction runs all
of them and reports each, instead of picking the one that fits. The derivation is written out in
docs/machine.md ("The pghot machine's memory").

    from tierscan.experiments.memory_configs import pghot_memory_configs
    for cfg in pghot_memory_configs():
        print(cfg.label, cfg.machine.nodes[0].memory.peak_gbps)
"""

from __future__ import annotations

from dataclasses import dataclass

from tierscan.machine import Machine

MiB_PER_GiB = 1024
# struct page is 64 bytes per 4 KiB page (x86-64), so the memmap takes 1/64 of the memory it
# describes; numactl's node size (MemTotal of the node) excludes it.
MEMMAP_FRACTION = 64 / 4096
# Besides the memmap, firmware, the kernel image and boot-time reservations take a little more;
# a node whose size leaves more than this share of the installed memory unexplained is not
# built from that memory (an estimate: the zen5-cxl nodes leave 0.02-0.43%).
MAX_OTHER_RESERVED = 0.02
# DDR5 RDIMM capacities (GiB). JEDEC DDR5 RDIMMs start at 16 GB (x8 devices of 16 Gb, one rank,
# plus ECC); 24/48/96 GB use 24 Gb dies.
DDR5_RDIMM_GIB = (16, 24, 32, 48, 64, 96, 128, 256)
ZEN5_CHANNELS = 12  # DDR5 channels per EPYC 9005 socket
DIMMS_PER_CHANNEL = (1, 2)
# CXL Type 3 memory expander capacities on sale (GiB): e.g. Samsung CMM-D 128/256 GB, Micron
# CZ120 128/256 GB, SK hynix CMM-DDR5 96/128 GB, and 64 GB add-in boards. An estimate of the
# market, stated so the derivation can be rerun with another list.
CXL_DEVICE_GIB = (64, 96, 128, 256, 512)
MAX_CXL_DEVICES = 4  # one NUMA node interleaved over at most 4 expanders: an estimate


def installed_options(node_mib: int, sizes_gib, max_units: int, per_unit=(1,)) -> list[tuple]:
    """(units, per_unit, size_gib) whose installed memory explains a node of ``node_mib`` MiB:
    node_mib <= installed x (1 - memmap) and the remainder within MAX_OTHER_RESERVED."""
    out = []
    for size in sizes_gib:
        for k in per_unit:
            for units in range(1, max_units + 1):
                installed = units * k * size * MiB_PER_GiB
                visible_max = installed * (1 - MEMMAP_FRACTION)
                if visible_max >= node_mib >= visible_max - MAX_OTHER_RESERVED * installed:
                    out.append((units, k, size))
    return out


def dram_channel_options(node_mib: int) -> tuple[int, ...]:
    """Populated DDR5 channel counts (equal RDIMMs, 1 or 2 per channel) that a node of
    ``node_mib`` MiB can be built from."""
    opts = installed_options(node_mib, DDR5_RDIMM_GIB, ZEN5_CHANNELS, DIMMS_PER_CHANNEL)
    return tuple(sorted({ch for ch, _, _ in opts}))


def cxl_device_options(node_mib: int) -> tuple[int, ...]:
    """Counts of equal CXL expanders that a node of ``node_mib`` MiB can be built from."""
    opts = installed_options(node_mib, CXL_DEVICE_GIB, MAX_CXL_DEVICES)
    return tuple(sorted({n for n, _, _ in opts}))


@dataclass(frozen=True)
class MemoryConfig:
    label: str  # "dram4-cxl2": DRAM channels per socket, CXL devices
    dram_channels: int
    cxl_devices: int
    machine: Machine


def pghot_memory_configs(base: Machine | None = None) -> list[MemoryConfig]:
    """Every (DRAM channels, CXL devices) the zen5-cxl node sizes allow, as machine variants.

    Both sockets get the same channel count (each node's size allows the same set; an unequal
    population is possible but nothing suggests it). The CXL devices keep the preset's link
    width. Capacities never change: they are the published facts.
    """
    base = base if base is not None else Machine.preset("zen5-cxl")
    dram_nodes = [n for n in base.nodes if n.memory is not None and n.memory.type != "cxl"]
    cxl_nodes = [n for n in base.nodes if n.memory is not None and n.memory.type == "cxl"]
    channel_sets = [set(dram_channel_options(n.nominal_capacity >> 20)) for n in dram_nodes]
    channels = sorted(set.intersection(*channel_sets)) if channel_sets else []
    device_sets = [set(cxl_device_options(n.nominal_capacity >> 20)) for n in cxl_nodes]
    devices = sorted(set.intersection(*device_sets)) if device_sets else []
    out = []
    for ch in channels:
        for dev in devices:
            m = base
            for n in dram_nodes:
                m = m.with_memory(n.id, channels=ch)
            for n in cxl_nodes:
                m = m.with_memory(n.id, channels=dev)
            out.append(MemoryConfig(f"dram{ch}-cxl{dev}", ch, dev, m))
    return out


def pghot_memory_config(label: str, base: Machine | None = None) -> MemoryConfig:
    """One of ``pghot_memory_configs()`` by its label ("dram4-cxl2"), for a ``--memory`` option."""
    configs = {c.label: c for c in pghot_memory_configs(base)}
    if label not in configs:
        from tierscan.errors import ConfigError
        raise ConfigError(f"unknown memory configuration {label!r} (the facts allow: "
                          f"{', '.join(configs)})", field="memory")
    return configs[label]
