"""A machine is data: NUMA nodes, their memory tiers and capacities, CPUs and latencies.

Loaded from TOML (a packaged preset or a user's file) and validated strictly, so that a typo in a
key or a unit is a one-line ConfigError naming the file and the key path, never a silent default.
The schema is documented in docs/machine.md.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from fractions import Fraction
from importlib import resources

import numpy as np

from tierscan.configcheck import Checker, is_int, parse_toml, read_text
from tierscan.errors import ConfigError
from tierscan.units import describe_value as _describe, human_bytes, parse_size

PAGE_SIZE = 4096
HPAGE_SIZE = 2 << 20  # a PMD-mapped THP; node capacities are whole numbers of these

KINDS = ("dram", "cxl", "pmem")
ZONES = ("Normal", "Movable", "DMA32")
# CXL memory is usually onlined ZONE_MOVABLE (so it can be offlined again); DRAM is ZONE_NORMAL.
# pmem is persistent memory (Optane DCPMM) onlined as a KMEM-DAX node: `daxctl
# reconfigure-device --mode=system-ram` onlines it movable unless told --no-movable.
_DEFAULT_ZONE = {"dram": "Normal", "cxl": "Movable", "pmem": "Movable"}

_TOP_KEYS = {"name": True, "capacity_scale": False, "nodes": True, "latency": True, "cpu": False}
_NODE_KEYS = {"id": True, "capacity": True, "cpus": True, "tier": True, "kind": True, "zone": False,
              "memory": False}
_LATENCY_KEYS = {"load_ns": True, "store_ns": True, "distance": True}
_MEMORY_KEYS = {"type": True, "channels": True, "mts": True, "link_width": True, "peak_gbps": False,
                "source": True, "curve": True}
_CURVE_KEYS = {"read_ratio": True, "bandwidth_gbps": True, "latency_ns": True, "source": True}
_CPU_KEYS = {"llc": True, "tlb_4k": True, "tlb_2m": True, "source": True}

MEMORY_TYPES = ("ddr4", "ddr5", "cxl", "optane", "hbm")
# A DRAM channel (and Optane's DDR-T bus, and HBM) carries reads and writes over one bus in turns;
# a CXL link has a separate lane set per direction (PCIe is full duplex).
_DUPLEX = {"ddr4": "half", "ddr5": "half", "optane": "half", "hbm": "half", "cxl": "full"}
# PCIe 5.0 (the physical layer of CXL 1.1/2.0): 32 GT/s per lane, 128b/130b encoding, per
# direction: 32e9 * 128/130 / 8 B/s = 3.938 GB/s per lane. Flit and protocol overheads are
# not subtracted: this is the theoretical peak, as DDR's channels x MT/s x 8 B is.
CXL_GBPS_PER_LANE = 32 * 128 / 130 / 8


def _frozen_array(values) -> np.ndarray:
    arr = np.array(values, dtype=np.float64)
    arr.setflags(write=False)
    return arr


# eq=False: generated equality would compare arrays elementwise; these compare by content.
@dataclass(frozen=True, eq=False)
class Curve:
    """Loaded latency against the bandwidth the device serves, at one read ratio of its traffic."""

    read_ratio: float  # fraction of the device's traffic (bytes) that is reads, in (0, 1]
    bandwidth_gbps: np.ndarray  # ascending, GB/s (1e9 B/s), at the device's `channels`
    latency_ns: np.ndarray  # same length, > 0, non-decreasing: loaded load-to-use latency
    source: str

    def __post_init__(self):
        object.__setattr__(self, "bandwidth_gbps", _frozen_array(self.bandwidth_gbps))
        object.__setattr__(self, "latency_ns", _frozen_array(self.latency_ns))

    def _key(self):
        return (self.read_ratio, self.bandwidth_gbps.tobytes(), self.latency_ns.tobytes(),
                self.source)

    def __eq__(self, other):
        return self._key() == other._key() if isinstance(other, Curve) else NotImplemented

    def __hash__(self):
        return hash(self._key())

    def scaled_bandwidth(self, factor: float) -> Curve:
        return replace(self, bandwidth_gbps=self.bandwidth_gbps * factor)

    def to_dict(self) -> dict:
        return {"read_ratio": self.read_ratio, "bandwidth_gbps": self.bandwidth_gbps.tolist(),
                "latency_ns": self.latency_ns.tolist(), "source": self.source}


@dataclass(frozen=True)
class MemoryDevice:
    """A node's memory configuration and its bandwidth-latency curve family (docs/machine.md)."""

    type: str  # ddr4 | ddr5 | cxl | optane | hbm
    channels: int  # populated DRAM channels, or CXL devices (links) for type cxl
    mts: int  # per-channel transfer rate, MT/s; 0 = not stated
    link_width: int  # CXL lanes per device; 0 for DRAM
    peak_gbps: float  # theoretical peak, given or derived (per direction for a full-duplex link)
    duplex: str  # "half": reads and writes share one bus; "full": one direction each (CXL)
    curves: tuple[Curve, ...]  # sorted by read_ratio
    source: str

    def to_dict(self) -> dict:
        return {"type": self.type, "channels": self.channels, "mts": self.mts,
                "link_width": self.link_width, "peak_gbps": self.peak_gbps,
                "source": self.source, "curve": [c.to_dict() for c in self.curves]}


@dataclass(frozen=True)
class CpuCaches:
    """What the CPU caches in front of memory: the LLC one CPU node shares, and TLB reach."""

    llc_bytes: int
    tlb_4k: tuple[int, ...]  # entries per level (L1 dTLB, L2 STLB, ...) for 4 KiB pages
    tlb_2m: tuple[int, ...]  # the same for 2 MiB pages
    source: str

    def to_dict(self) -> dict:
        return {"llc": self.llc_bytes, "tlb_4k": list(self.tlb_4k), "tlb_2m": list(self.tlb_2m),
                "source": self.source}


def derived_peak_gbps(type_: str, channels: int, mts: int, link_width: int) -> float | None:
    """The theoretical peak a configuration implies, or None when it implies none.

    DDR: channels x MT/s x 8 bytes (a 64-bit channel). CXL: devices x lanes x 3.938 GB/s per
    direction (PCIe 5.0). Optane and HBM have no such formula here (Optane's media is far slower
    than its DDR-T bus; HBM channel widths vary), so their peak must be written.
    """
    if type_ in ("ddr4", "ddr5") and mts > 0:
        return channels * mts * 8 / 1000
    if type_ == "cxl" and link_width > 0:
        return channels * link_width * CXL_GBPS_PER_LANE
    return None


@dataclass(frozen=True)
class Node:
    id: int
    capacity: int  # bytes the simulation manages: nominal x scale, rounded down to 2 MiB
    nominal_capacity: int  # bytes as written in the TOML
    cpus: tuple[int, ...]
    tier: int  # 0 = top tier (DRAM); higher = slower
    kind: str  # "dram" | "cxl"
    zone: str  # "Normal" | "Movable" | "DMA32"
    memory: MemoryDevice | None = None  # None: the node runs at its idle latency


# eq=False: the generated __eq__ would compare numpy arrays elementwise and fail; see __eq__.
@dataclass(frozen=True, eq=False)
class Machine:
    name: str
    nodes: tuple[Node, ...]
    distance: np.ndarray  # int, N x N, numactl -H distances
    load_ns: np.ndarray  # float, N x N, row = CPU node, column = memory node
    store_ns: np.ndarray
    capacity_scale: float = 1.0
    source: str = "<dict>"  # the file or "<preset NAME>" it came from, for error messages
    cpu: CpuCaches | None = None  # None: no TLB or LLC effect

    def __post_init__(self):
        # Frozen means frozen: take read-only copies so no caller can edit a shared preset.
        for attr, dtype in (("distance", np.int64), ("load_ns", np.float64), ("store_ns", np.float64)):
            arr = np.array(getattr(self, attr), dtype=dtype)
            arr.setflags(write=False)
            object.__setattr__(self, attr, arr)

    def __eq__(self, other):
        # Provenance (source) is not content: a preset equals the same machine loaded from a file.
        if not isinstance(other, Machine):
            return NotImplemented
        return (self.name == other.name and self.nodes == other.nodes
                and self.capacity_scale == other.capacity_scale and self.cpu == other.cpu
                and all(np.array_equal(getattr(self, a), getattr(other, a))
                        for a in ("distance", "load_ns", "store_ns")))

    __hash__ = None  # mutable-looking arrays inside; machines are not dict keys

    # -- views -------------------------------------------------------------------------------

    @property
    def nr_nodes(self) -> int:
        return len(self.nodes)

    @property
    def cpu_nodes(self) -> tuple[int, ...]:
        return tuple(n.id for n in self.nodes if n.cpus)

    @property
    def toptier_nodes(self) -> tuple[int, ...]:
        return tuple(n.id for n in self.nodes if n.tier == 0)

    @property
    def lower_tier_nodes(self) -> tuple[int, ...]:
        return tuple(n.id for n in self.nodes if n.tier > 0)

    @property
    def nr_cpus(self) -> int:
        return sum(len(n.cpus) for n in self.nodes)

    # -- constructors ------------------------------------------------------------------------

    @classmethod
    def preset(cls, name: str) -> Machine:
        """The packaged machine ``name`` (see ``preset_names()``)."""
        known = preset_names()
        if name not in known:
            raise ConfigError(f"unknown preset {name!r} (known presets: {', '.join(known)})",
                              where=f"<preset {name}>")
        text = (resources.files("tierscan") / "presets" / f"{name}.toml").read_text("utf-8")
        return cls._from_text(text, where=f"<preset {name}>")

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> Machine:
        text, where = read_text(path)
        return cls._from_text(text, where=where)

    @classmethod
    def _from_text(cls, text: str, where: str) -> Machine:
        return cls.from_dict(parse_toml(text, where), where=where)

    @classmethod
    def from_dict(cls, d: dict, where: str = "<dict>") -> Machine:
        """Validate a parsed TOML document (schema in docs/machine.md) and build the machine."""
        c = _Checker(where)
        c.table(d, "", _TOP_KEYS)
        name = d["name"]
        if not isinstance(name, str) or not name.strip():
            c.fail("name", f"expected a non-empty string, got {_describe(name)}")

        raw_nodes = d["nodes"]
        if not isinstance(raw_nodes, list) or not raw_nodes:
            c.fail("nodes", "expected at least one [[nodes]] table")
        nodes = [c.node(raw, i) for i, raw in enumerate(raw_nodes)]
        n = len(nodes)

        seen: dict[int, int] = {}  # cpu -> node, so a CPU listed on two nodes is caught
        for node in nodes:
            for cpu in node.cpus:
                if cpu in seen:
                    c.fail(f"nodes[{node.id}].cpus", f"cpu {cpu} is also listed on node {seen[cpu]}")
                seen[cpu] = node.id
        if not seen:
            c.fail("nodes", "no node has cpus (at least one node must run the workload)")
        if not any(node.tier == 0 for node in nodes):
            c.fail("nodes", "no node has tier = 0 (at least one top-tier node is required)")

        lat = d["latency"]
        c.table(lat, "latency", _LATENCY_KEYS)
        distance = c.matrix(lat["distance"], "latency.distance", n, c.distance_entry)
        load = c.matrix(lat["load_ns"], "latency.load_ns", n, c.latency_entry)
        store = c.matrix(lat["store_ns"], "latency.store_ns", n, c.latency_entry)

        cpu = c.cpu(d["cpu"]) if "cpu" in d else None
        machine = cls(name=name, nodes=tuple(nodes), distance=distance, load_ns=load,
                      store_ns=store, capacity_scale=1.0, source=where, cpu=cpu)
        # scaled() validates capacity_scale too; at 1.0 it just rounds down to 2 MiB.
        return machine.scaled(d.get("capacity_scale", 1.0))

    # -- derived machines --------------------------------------------------------------------

    def scaled(self, factor: float) -> Machine:
        """A copy with every node's capacity multiplied by ``factor`` (0 < factor <= 1).

        Scaling composes (``m.scaled(0.5).scaled(0.5)`` has capacity_scale 0.25) and is always
        computed from the nominal capacity, rounded down to a 2 MiB multiple, so it never
        accumulates rounding error.
        """
        if (isinstance(factor, bool) or not isinstance(factor, (int, float))
                or not math.isfinite(factor) or not 0 < factor <= 1):
            raise ConfigError(f"expected a number with 0 < factor <= 1, got {_describe(factor)}",
                              where=self.source, field="capacity_scale")
        scale = self.capacity_scale * factor
        # Fraction(repr(x)) is the decimal the user wrote (0.1 is exactly 1/10), so a capacity
        # that scales to an exact 2 MiB multiple is not rounded one huge page too low.
        exact = Fraction(repr(float(scale)))
        nodes = []
        for node in self.nodes:
            cap = _round_down(int(node.nominal_capacity * exact))
            if cap < HPAGE_SIZE:
                raise ConfigError(
                    f"scaling node {node.id} ({human_bytes(node.nominal_capacity)}) by {scale:g} "
                    f"leaves less than 2 MiB", where=self.source, field="capacity_scale")
            nodes.append(replace(node, capacity=cap))
        return replace(self, nodes=tuple(nodes), capacity_scale=float(scale))

    def with_memory(self, node: int, *, channels: int) -> Machine:
        """A configuration variant: node ``node``'s device with ``channels`` populated.

        Every curve's bandwidth axis and the peak scale by channels / old channels; latencies are
        unchanged (the same utilisation gives the same queueing). For a CXL node ``channels``
        counts devices (links) interleaved. Capacity is unchanged: the published capacity is a
        fact, the configuration is what the facts leave open (docs/machine.md, "Memory
        configurations").
        """
        if not is_int(node) or not 0 <= node < self.nr_nodes:
            raise ConfigError(f"no node {node!r} (the machine has nodes 0..{self.nr_nodes - 1})",
                              where=self.source, field="node")
        dev = self.nodes[node].memory
        if dev is None:
            raise ConfigError(f"node {node} has no [nodes.memory] to reconfigure",
                              where=self.source, field=f"nodes[{node}].memory")
        if not is_int(channels) or channels < 1:
            raise ConfigError(f"expected an integer >= 1, got {_describe(channels)}",
                              where=self.source, field=f"nodes[{node}].memory.channels")
        f = channels / dev.channels
        base = re.sub(r" \(variant: \d+ (channels|devices)\)$", "", dev.source)
        unit = "devices" if dev.type == "cxl" else "channels"
        new = replace(dev, channels=channels, peak_gbps=dev.peak_gbps * f,
                      source=f"{base} (variant: {channels} {unit})",
                      curves=tuple(c.scaled_bandwidth(f) for c in dev.curves))
        nodes = list(self.nodes)
        nodes[node] = replace(nodes[node], memory=new)
        return replace(self, nodes=tuple(nodes))

    def to_dict(self) -> dict:
        """The machine in the TOML schema; ``Machine.from_dict(m.to_dict()) == m``.

        ``memory`` and ``cpu`` appear only when present, so a machine without them serializes
        (and hashes, in a result's config) exactly as before they existed.
        """
        nodes = []
        for n in self.nodes:
            nd = {"id": n.id, "capacity": n.nominal_capacity, "cpus": format_cpu_ranges(n.cpus),
                  "tier": n.tier, "kind": n.kind, "zone": n.zone}
            if n.memory is not None:
                nd["memory"] = n.memory.to_dict()
            nodes.append(nd)
        d = {
            "name": self.name,
            "capacity_scale": self.capacity_scale,
            "nodes": nodes,
            "latency": {"load_ns": self.load_ns.tolist(), "store_ns": self.store_ns.tolist(),
                        "distance": self.distance.tolist()},
        }
        if self.cpu is not None:
            d["cpu"] = self.cpu.to_dict()
        return d

    # -- text views --------------------------------------------------------------------------

    def numactl_h(self, free_bytes=None) -> str:
        """The machine as ``numactl -H`` prints it ("MB" means MiB, as in numactl).

        ``free_bytes`` (one per node) defaults to the full capacity, as on a fresh machine.
        """
        free = [n.capacity for n in self.nodes] if free_bytes is None else list(free_bytes)
        if len(free) != self.nr_nodes:
            raise ValueError(f"free_bytes: expected {self.nr_nodes} values, got {len(free)}")
        ids = [n.id for n in self.nodes]
        lines = [f"available: {self.nr_nodes} nodes ({format_cpu_ranges(ids, sep='-')})"]
        for node, f in zip(self.nodes, free):
            lines.append(f"node {node.id} cpus:" + "".join(f" {c}" for c in node.cpus))
            lines.append(f"node {node.id} size: {node.capacity >> 20} MB")
            lines.append(f"node {node.id} free: {int(f) >> 20} MB")
        # numactl prints these with printf("% 3d "), hence the odd widths and trailing spaces.
        lines.append("node distances:")
        lines.append("node " + "".join(f"{i: 3d} " for i in ids))
        for i, row in zip(ids, self.distance.tolist()):
            lines.append(f"{i: 3d}: " + "".join(f"{d: 3d} " for d in row))
        if self.capacity_scale != 1.0:
            nominal = ", ".join(f"node {n.id} {n.nominal_capacity >> 20} MB" for n in self.nodes)
            lines.append(f"# capacities scaled by {self.capacity_scale:g} for simulation "
                         f"(nominal: {nominal})")
        elif any(n.capacity != n.nominal_capacity for n in self.nodes):
            nominal = ", ".join(f"node {n.id} {n.nominal_capacity >> 20} MB"
                                for n in self.nodes if n.capacity != n.nominal_capacity)
            lines.append(f"# capacities rounded down to 2 MiB multiples for simulation "
                         f"(nominal: {nominal})")
        return "\n".join(lines)

    def describe_latency(self) -> str:
        """Load and store latency tables (ns), row = CPU node, column = memory node."""
        ids = [n.id for n in self.nodes]
        lines = []
        for title, m in (("load", self.load_ns), ("store", self.store_ns)):
            lines.append(f"{title} latency (ns), row = CPU node, column = memory node")
            lines.append("node " + "".join(f"{i:>6d}" for i in ids))
            for node, row in zip(self.nodes, m.tolist()):
                note = "" if node.cpus else "   (no cpus: the memory's view)"
                lines.append(f"{node.id:3d}: " + "".join(f"{v:>6g}" for v in row) + note)
        return "\n".join(lines)


    def describe_memory(self) -> str:
        """Each node's memory device and its curves as small tables ("" if none has one)."""
        lines = []
        for node in self.nodes:
            dev = node.memory
            if dev is None:
                continue
            unit = ("device" if dev.type == "cxl" else "channel") + ("s" if dev.channels > 1 else "")
            rate = f" x {dev.mts} MT/s" if dev.mts else ""
            lanes = f" x{dev.link_width}" if dev.link_width else ""
            lines.append(f"node {node.id}: {dev.type}, {dev.channels} {unit}{rate}{lanes}, peak "
                         f"{dev.peak_gbps:.1f} GB/s, {dev.duplex} duplex")
            lines.append(f"  source: {dev.source}")
            for cv in dev.curves:
                lines.append(f"  read ratio {cv.read_ratio:g}: {cv.source}")
                lines.append("    GB/s " + "".join(f"{b:>8.1f}" for b in cv.bandwidth_gbps))
                lines.append("    ns   " + "".join(f"{t:>8.1f}" for t in cv.latency_ns))
        if self.cpu is not None:
            c = self.cpu
            lines.append(f"cpu: LLC {human_bytes(c.llc_bytes)}, TLB entries per level 4 KiB "
                         f"{list(c.tlb_4k)}, 2 MiB {list(c.tlb_2m)}")
            lines.append(f"  source: {c.source}")
        if not lines:
            return ""
        return "memory devices: loaded latency (ns) against the bandwidth each serves (GB/s)\n" \
            + "\n".join(lines)


def preset_names() -> tuple[str, ...]:
    """The names of the packaged presets, sorted."""
    folder = resources.files("tierscan") / "presets"
    return tuple(sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml")))


def parse_cpu_list(value: str) -> tuple[int, ...]:
    """Parse numactl-style ranges "0-95,192-287" (or "" for none); raises ValueError."""
    cpus: list[int] = []
    for part in value.split(","):
        part = part.strip()
        if not part and value.strip() == "":
            continue
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not m:
            raise ValueError(f"bad range {part!r}")
        lo = int(m[1])
        hi = int(m[2]) if m[2] is not None else lo
        if hi < lo:
            raise ValueError(f"range {part!r} runs backwards")
        cpus.extend(range(lo, hi + 1))
    return tuple(cpus)


def format_cpu_ranges(cpus, sep: str = "-") -> str:
    """The inverse of parse_cpu_list: (0, 1, 2, 5) -> "0-2,5"."""
    out, items = [], sorted(cpus)
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        out.append(str(items[i]) if i == j else f"{items[i]}{sep}{items[j]}")
        i = j + 1
    return ",".join(out)


def _round_down(nbytes: int) -> int:
    return nbytes - nbytes % HPAGE_SIZE


class _Checker(Checker):
    """The machine schema's own checks on top of the shared ones."""

    def node(self, raw, i: int) -> Node:
        path = f"nodes[{i}]"
        self.table(raw, path, _NODE_KEYS)
        node_id = raw["id"]
        if not is_int(node_id) or node_id != i:
            self.fail(f"{path}.id", f"expected {i} (ids must be 0..N-1 in order), got {_describe(node_id)}")

        field = f"{path}.capacity"
        nominal = parse_size(raw["capacity"], where=self.where, field=field)
        if nominal < HPAGE_SIZE:
            self.fail(field, f"must be at least 2 MiB, got {human_bytes(nominal)}")
        if nominal % PAGE_SIZE:
            self.fail(field, f"must be a multiple of 4 KiB (the page size), got {nominal} bytes")

        cpus = raw["cpus"]
        field = f"{path}.cpus"
        if isinstance(cpus, str):
            try:
                cpus = parse_cpu_list(cpus)
            except ValueError as e:
                self.fail(field, f"{e} in {raw['cpus']!r} (expected ranges like \"0-95,192-287\")")
        elif isinstance(cpus, list):
            for k, cpu in enumerate(cpus):
                self.int_at_least(cpu, f"{field}[{k}]", 0)
        else:
            self.fail(field, f"expected an array of CPU numbers or a string like \"0-95,192-287\", "
                             f"got {_describe(cpus)}")
        if len(set(cpus)) != len(cpus):
            dup = next(c for c in cpus if list(cpus).count(c) > 1)
            self.fail(field, f"cpu {dup} is listed twice")

        tier = self.int_at_least(raw["tier"], f"{path}.tier", 0)
        kind = self.choice(raw["kind"], f"{path}.kind", KINDS)
        zone = self.choice(raw.get("zone", _DEFAULT_ZONE[kind]), f"{path}.zone", ZONES)
        memory = self.memory(raw["memory"], f"{path}.memory") if "memory" in raw else None
        # capacity is filled in (scaled, rounded down to 2 MiB) by Machine.scaled().
        return Node(id=i, capacity=_round_down(nominal), nominal_capacity=nominal,
                    cpus=tuple(sorted(cpus)), tier=tier, kind=kind, zone=zone, memory=memory)

    def memory(self, raw, path: str) -> MemoryDevice:
        self.table(raw, path, _MEMORY_KEYS)
        type_ = self.choice(raw["type"], f"{path}.type", MEMORY_TYPES)
        channels = self.int_at_least(raw["channels"], f"{path}.channels", 1)
        mts = self.int_at_least(raw["mts"], f"{path}.mts", 0)
        link_width = self.int_at_least(raw["link_width"], f"{path}.link_width", 0)
        if type_ != "cxl" and link_width:
            self.fail(f"{path}.link_width", f"must be 0 for type {type_!r} (lanes are a CXL "
                                            f"link's), got {link_width}")
        derived = derived_peak_gbps(type_, channels, mts, link_width)
        if "peak_gbps" in raw:
            peak = self.positive(raw["peak_gbps"], f"{path}.peak_gbps", "a bandwidth in GB/s")
        elif derived is None:
            how = {"ddr4": "mts > 0", "ddr5": "mts > 0", "cxl": "link_width > 0"}.get(type_)
            self.fail(f"{path}.peak_gbps", "missing required key (nothing to derive it from: "
                      + (f"give peak_gbps or {how})" if how else f"type {type_!r} needs it)"))
        else:
            peak = derived
        source = self.string(raw["source"], f"{path}.source")
        duplex = _DUPLEX[type_]
        raw_curves = raw["curve"]
        if not isinstance(raw_curves, list) or not raw_curves:
            self.fail(f"{path}.curve", "expected at least one [[nodes.memory.curve]] table")
        # A full-duplex link carries up to its peak in each direction at once.
        limit = peak * (2 if duplex == "full" else 1)
        curves = [self.curve(rc, f"{path}.curve[{k}]", limit) for k, rc in enumerate(raw_curves)]
        seen: dict[float, int] = {}
        for k, cv in enumerate(curves):
            if cv.read_ratio in seen:
                self.fail(f"{path}.curve[{k}].read_ratio", f"read_ratio {cv.read_ratio:g} is also "
                          f"given by curve[{seen[cv.read_ratio]}]")
            seen[cv.read_ratio] = k
        return MemoryDevice(type=type_, channels=channels, mts=mts, link_width=link_width,
                            peak_gbps=float(peak), duplex=duplex,
                            curves=tuple(sorted(curves, key=lambda cv: cv.read_ratio)),
                            source=source)

    def curve(self, raw, path: str, limit_gbps: float) -> Curve:
        self.table(raw, path, _CURVE_KEYS)
        r = raw["read_ratio"]
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) \
                or not 0 < r <= 1:
            self.fail(f"{path}.read_ratio", f"expected a number in (0, 1], got {_describe(r)}")
        bw = self.numbers(raw["bandwidth_gbps"], f"{path}.bandwidth_gbps", 0.0, "a bandwidth >= 0")
        lat = self.numbers(raw["latency_ns"], f"{path}.latency_ns", None, "a latency in ns > 0")
        if len(bw) < 2:
            self.fail(f"{path}.bandwidth_gbps", f"expected at least 2 points, got {len(bw)}")
        if len(lat) != len(bw):
            self.fail(f"{path}.latency_ns", f"must be the same length as bandwidth_gbps "
                                            f"({len(bw)}), got {len(lat)}")
        for k in range(1, len(bw)):
            if not bw[k] > bw[k - 1]:
                self.fail(f"{path}.bandwidth_gbps[{k}]", f"must be greater than the point before "
                          f"({bw[k - 1]:g}), got {bw[k]:g} (the axis is strictly ascending)")
            if lat[k] < lat[k - 1]:
                self.fail(f"{path}.latency_ns[{k}]", f"must not be less than the point before "
                          f"({lat[k - 1]:g}), got {lat[k]:g} (loaded latency never falls as "
                          f"bandwidth rises; `tierscan machine import` cleans measured curves)")
        if bw[-1] > limit_gbps * (1 + 1e-9):
            self.fail(f"{path}.bandwidth_gbps[{len(bw) - 1}]", f"{bw[-1]:g} GB/s exceeds the "
                      f"device's peak ({limit_gbps:g} GB/s); GB/s means 1e9 B/s, not MB/s")
        source = self.string(raw["source"], f"{path}.source")
        return Curve(read_ratio=float(r), bandwidth_gbps=bw, latency_ns=lat, source=source)

    def numbers(self, v, field: str, minimum: float | None, what: str) -> list[float]:
        """An array of finite numbers, each >= minimum (or > 0 when minimum is None)."""
        self.array(v, field)
        for k, x in enumerate(v):
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) \
                    or (x <= 0 if minimum is None else x < minimum):
                self.fail(f"{field}[{k}]", f"expected {what}, got {_describe(x)}")
        return [float(x) for x in v]

    def positive(self, v, field: str, what: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            self.fail(field, f"expected {what} > 0, got {_describe(v)}")
        return float(v)

    def cpu(self, raw) -> CpuCaches:
        self.table(raw, "cpu", _CPU_KEYS)
        llc = parse_size(raw["llc"], where=self.where, field="cpu.llc")
        tlbs = []
        for key in ("tlb_4k", "tlb_2m"):
            entries = self.array(raw[key], f"cpu.{key}")
            if not entries:
                self.fail(f"cpu.{key}", "expected entries per TLB level (at least one level)")
            tlbs.append(tuple(self.int_at_least(e, f"cpu.{key}[{k}]", 1)
                              for k, e in enumerate(entries)))
        source = self.string(raw["source"], "cpu.source")
        return CpuCaches(llc_bytes=llc, tlb_4k=tlbs[0], tlb_2m=tlbs[1], source=source)

    def matrix(self, v, field: str, n: int, entry) -> list[list]:
        want = f"expected {n}x{n} matrix"
        if not isinstance(v, list):
            self.fail(field, f"{want} (an array of {n} arrays), got {_describe(v)}")
        bad = next((k for k, row in enumerate(v) if not isinstance(row, list)), None)
        if bad is not None:
            self.fail(field, f"{want}, got {_describe(v[bad])} at row {bad}")
        lengths = [len(row) for row in v]
        if len(v) != n or any(length != n for length in lengths):
            if not v:
                got = "an empty array"
            elif len(set(lengths)) == 1:
                got = f"{len(v)}x{lengths[0]}"
            else:
                got = f"{len(v)} rows of lengths {', '.join(map(str, lengths))}"
            self.fail(field, f"{want}, got {got}")
        return [[entry(x, f"{field}[{r}][{k}]", r == k) for k, x in enumerate(row)]
                for r, row in enumerate(v)]

    def distance_entry(self, x, field: str, diagonal: bool) -> int:
        self.int_at_least(x, field, 10)
        if diagonal and x != 10:
            self.fail(field, f"a node's distance to itself must be 10, got {x}")
        return x

    def latency_entry(self, x, field: str, diagonal: bool) -> float:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x <= 0:
            self.fail(field, f"expected a latency in ns > 0, got {_describe(x)}")
        return float(x)
