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

KINDS = ("dram", "cxl")
ZONES = ("Normal", "Movable", "DMA32")
# CXL memory is usually onlined ZONE_MOVABLE (so it can be offlined again); DRAM is ZONE_NORMAL.
_DEFAULT_ZONE = {"dram": "Normal", "cxl": "Movable"}

_TOP_KEYS = {"name": True, "capacity_scale": False, "nodes": True, "latency": True}
_NODE_KEYS = {"id": True, "capacity": True, "cpus": True, "tier": True, "kind": True, "zone": False}
_LATENCY_KEYS = {"load_ns": True, "store_ns": True, "distance": True}


@dataclass(frozen=True)
class Node:
    id: int
    capacity: int  # bytes the simulation manages: nominal x scale, rounded down to 2 MiB
    nominal_capacity: int  # bytes as written in the TOML
    cpus: tuple[int, ...]
    tier: int  # 0 = top tier (DRAM); higher = slower
    kind: str  # "dram" | "cxl"
    zone: str  # "Normal" | "Movable" | "DMA32"


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
                and self.capacity_scale == other.capacity_scale
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

        machine = cls(name=name, nodes=tuple(nodes), distance=distance, load_ns=load,
                      store_ns=store, capacity_scale=1.0, source=where)
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

    def to_dict(self) -> dict:
        """The machine in the TOML schema; ``Machine.from_dict(m.to_dict()) == m``."""
        return {
            "name": self.name,
            "capacity_scale": self.capacity_scale,
            "nodes": [{"id": n.id, "capacity": n.nominal_capacity, "cpus": format_cpu_ranges(n.cpus),
                       "tier": n.tier, "kind": n.kind, "zone": n.zone} for n in self.nodes],
            "latency": {"load_ns": self.load_ns.tolist(), "store_ns": self.store_ns.tolist(),
                        "distance": self.distance.tolist()},
        }

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
        # capacity is filled in (scaled, rounded down to 2 MiB) by Machine.scaled().
        return Node(id=i, capacity=_round_down(nominal), nominal_capacity=nominal,
                    cpus=tuple(sorted(cpus)), tier=tier, kind=kind, zone=zone)

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
