"""The named synthetic workloads: ``make_workload("zipf", {"alpha": 1.2})`` -> WorkloadSpec.

Every workload is a function registered in ``WORKLOADS`` under a lower-case name. It takes the
user's parameter table (from TOML or Python), checks it strictly (an unknown key, a wrong unit
or a value out of range is a ``ConfigError`` naming ``where`` and the dotted field), fills in the
defaults and returns a ``WorkloadSpec`` whose ``params`` is the fully resolved table. Feeding
``spec.params`` back to ``make_workload`` gives an equal spec, so result files can be replayed.

Resolved values are canonical: sizes in bytes (int), durations in nanoseconds (int); an optional
value that is not set resolves to ``None`` (TOML has no null: a Python caller may pass ``None``
for any optional key, meaning "not set").

The parameters and defaults of every workload are documented in docs/workloads.md.
"""

from __future__ import annotations

import math
from typing import Callable

from ..configcheck import Checker, is_int
from ..errors import ConfigError
from ..units import describe_value, parse_duration_ns, parse_size
from .base import Mapping, Phase, ProcessSpec, WorkloadSpec
from .distributions import DISTRIBUTIONS, Gauss, HotSet, Uniform, Zipf

__all__ = ["WORKLOADS", "register_workload", "make_workload", "make_distribution",
           "PGHOT_BENCH_MODES", "PGHOT_ACCESSES_PER_THREAD"]

PAGE_SIZE = 4096
HPAGE_SIZE = 2 << 20

WorkloadBuilder = Callable[..., WorkloadSpec]
WORKLOADS: dict[str, WorkloadBuilder] = {}


def register_workload(name: str):
    """Decorator: register ``fn(params: dict, *, where: str, field: str) -> WorkloadSpec``."""
    def deco(fn):
        if name in WORKLOADS:
            raise ValueError(f"workload {name!r} is already registered")
        WORKLOADS[name] = fn
        return fn
    return deco


# Workloads named "KIND:ARG" (``trace:run.tsw``), built by a layer above this one: the module
# that registers KIND is imported on first use (by name, so this layer imports nothing above it).
PREFIXED_WORKLOADS: dict[str, Callable[..., WorkloadSpec]] = {}
_PREFIX_MODULES = {"trace": "tierscan.trace.replay"}


def register_prefixed_workload(kind: str):
    """Decorator: register ``fn(arg, params, *, where, field)`` for names ``KIND:ARG``."""
    def deco(fn):
        PREFIXED_WORKLOADS[kind] = fn
        return fn
    return deco


def make_workload(name: str, params: dict | None = None, *, where: str | None = None,
                  field: str = "workload") -> WorkloadSpec:
    """Build the workload ``name`` from ``params``. Errors are ConfigError(where=``where``,
    field=``field.KEY``); ``where`` defaults to "<workload NAME>"."""
    if where is None:
        where = f"<workload {name}>"
    kind, sep, arg = name.partition(":") if isinstance(name, str) else ("", "", "")
    if sep and kind in _PREFIX_MODULES:
        import importlib
        importlib.import_module(_PREFIX_MODULES[kind])
        return PREFIXED_WORKLOADS[kind](arg, {} if params is None else params, where=where,
                                        field=field)
    if not isinstance(name, str) or name not in WORKLOADS:
        raise ConfigError(f"unknown workload {describe_value(name)} (expected one of: "
                          f"{', '.join(WORKLOADS)}, trace:PATH)", where=where, field=field or None)
    return WORKLOADS[name]({} if params is None else params, where=where, field=field)


# ---- reading one parameter table -----------------------------------------------------------

class _Reader:
    """Reads one table strictly: the allowed keys are fixed up front, each value is checked as it
    is read, and ``out`` collects the resolved values in reading order."""

    def __init__(self, c: Checker, table, path: str, allowed):
        c.table(table, path, {k: False for k in allowed})
        self.c, self.t, self.path = c, table, path
        self.out: dict = {}

    def field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, message: str):
        self.c.fail(self.field(key), message)

    def given(self, key: str) -> bool:
        return self.t.get(key) is not None

    def _raw(self, key, default):
        v = self.t.get(key)
        return default if v is None else v

    def _put(self, key, v):
        self.out[key] = v
        return v

    def size(self, key, default, unit=PAGE_SIZE):
        v = parse_size(self._raw(key, default), where=self.c.where, field=self.field(key))
        if v % unit:
            self.fail(key, f"expected a multiple of {unit // 1024} KiB, got {v} bytes")
        return self._put(key, v)

    def integer(self, key, default, minimum=0):
        return self._put(key, self.c.int_at_least(self._raw(key, default), self.field(key),
                                                  minimum))

    def opt_integer(self, key, minimum=1):
        if not self.given(key):
            return self._put(key, None)
        return self.integer(key, None, minimum)

    def number(self, key, default, lo, hi, *, lo_open=False, hi_open=False):
        v = self._raw(key, default)
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) \
            and (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)
        if not ok:
            self.fail(key, f"expected a number in {'(' if lo_open else '['}{lo}, {hi}"
                           f"{')' if hi_open else ']'}, got {describe_value(v)}")
        return self._put(key, float(v))

    def boolean(self, key, default):
        return self._put(key, self.c.boolean(self._raw(key, default), self.field(key)))

    def choice(self, key, default, choices):
        return self._put(key, self.c.choice(self._raw(key, default), self.field(key), choices))

    def string(self, key, default):
        return self._put(key, self.c.string(self._raw(key, default), self.field(key)))

    def opt_duration(self, key):
        if not self.given(key):
            return self._put(key, None)
        return self._put(key, parse_duration_ns(self.t[key], where=self.c.where,
                                                field=self.field(key)))

    def memcg(self, key, default="/"):
        v = self.c.string(self._raw(key, default), self.field(key))
        if v != "/" and (not v.startswith("/") or "/" in v[1:]):
            self.fail(key, f"expected \"/\" or \"/NAME\", got {v!r}")
        return self._put(key, v)

    def array(self, key, default):
        return self.c.array(self._raw(key, default), self.field(key))


# ---- the pieces every workload is made of ---------------------------------------------------

# Keys of one process (its placement and its single mapping), with their defaults.
_PROCESS_KEYS = ("size", "threads", "node", "thp", "kind", "shared", "populate", "cpu_node",
                 "memcg", "name", "mlp", "non_temporal", "page_tables", "policy", "nodes",
                 "numa_balancing", "task_policy", "task_nodes", "task_numa_balancing")
# Memory policies (mm/mempolicy.py). ``policy`` is the mapping's (mbind), ``task_policy`` its
# threads' (set_mempolicy, as numactl sets it); "default" has none of its own.
POLICY_MODES = ("default", "local", "preferred", "bind", "preferred-many", "interleave",
                "weighted-interleave")
_NEEDS_NODES = ("preferred", "bind", "preferred-many", "interleave", "weighted-interleave")
# Where a process's page tables live (the kernel allocates them under the *task's* memory
# policy, not the mapping's): "local" = its CPU node (default policy, e.g. mbind() on the
# mapping); "membind" = the node its memory is bound to (a `numactl --membind` run).
PAGE_TABLES = ("local", "membind")
_PHASE_KEYS = ("write_fraction", "accesses", "duration")
_DIST_KEYS = {"uniform": (), "zipf": ("alpha", "scatter", "seed"),
              "hotset": ("hot_fraction", "hot_share", "offset", "seed"),
              "gauss": ("mean", "stdev", "seed")}
DEFAULT_SIZE = "512MiB"   # fits the laptop preset's 2 GiB CXL node and its 1 GiB DRAM node
DEFAULT_NODE = 1          # the laptop preset's CXL node (on zen5-cxl, the CXL node is 2)


def _read_process(r: _Reader, name: str, *, size=DEFAULT_SIZE, threads=1) -> dict:
    r.size("size", size)
    r.integer("threads", threads, 1)
    r.integer("node", DEFAULT_NODE, 0)
    r.boolean("thp", False)
    r.choice("kind", "anon", ("anon", "file"))
    r.boolean("shared", False)
    r.boolean("populate", True)
    r.integer("cpu_node", 0, 0)
    r.memcg("memcg")
    r.string("name", name)
    r.number("mlp", 1.0, 0, math.inf, lo_open=True)
    r.boolean("non_temporal", False)
    r.choice("page_tables", "local", PAGE_TABLES)
    _read_policy(r, "", [r.out["node"]], "bind")
    _read_policy(r, "task_", None, "default")
    return r.out


def _read_policy(r: _Reader, prefix: str, default_nodes, default_mode) -> None:
    """``{prefix}policy``, ``{prefix}nodes`` and ``{prefix}numa_balancing``: a mode, its
    nodes (the mapping's default to ``[node]``) and MPOL_F_NUMA_BALANCING, checked as
    mpol_new()/sanitize_mpol_flags() would (node ids against the machine: at placement)."""
    mode = r.choice(f"{prefix}policy", default_mode, POLICY_MODES)
    key = f"{prefix}nodes"
    if r.given(key):
        raw = r.array(key, None)
        for i, n in enumerate(raw):
            r.c.int_at_least(n, f"{r.field(key)}[{i}]", 0)
        nodes = [int(n) for n in raw]
    else:
        nodes = list(default_nodes) if default_nodes is not None and \
            mode in ("bind", "preferred") else []
    if mode in _NEEDS_NODES and not nodes:
        r.fail(key, f"policy {mode!r} needs a non-empty list of nodes")
    if mode in ("default", "local") and nodes:
        r.fail(key, f"policy {mode!r} takes no nodes, got {nodes}")
    if mode == "preferred" and len(nodes) != 1:
        r.fail(key, f"policy 'preferred' takes exactly one node, got {nodes}")
    r.out[key] = nodes
    nb = r.boolean(f"{prefix}numa_balancing", False)
    if nb and mode not in ("bind", "preferred-many"):
        r.fail(f"{prefix}numa_balancing", f"MPOL_F_NUMA_BALANCING needs policy 'bind' or "
                                          f"'preferred-many', not {mode!r}")


# The keys that place one process of a benchmark workload (pmbench, abench, kvstore).
PLACEMENT_KEYS = ("node", "cpu_node", "memcg", "name", "mlp", "thp")


def _read_placement(r: _Reader, name: str, threads_key: str = "threads") -> dict:
    """Read the threads and PLACEMENT_KEYS (as the process keys, same defaults)."""
    return {"threads": r.integer(threads_key, 1, 1), "node": r.integer("node", DEFAULT_NODE, 0),
            "cpu_node": r.integer("cpu_node", 0, 0), "memcg": r.memcg("memcg"),
            "name": r.string("name", name),
            "mlp": r.number("mlp", 1.0, 0, math.inf, lo_open=True),
            "thp": r.boolean("thp", False)}


def _placed_process(p: dict, mappings, phases) -> ProcessSpec:
    """One process from _read_placement's table, its mappings and phases."""
    return ProcessSpec(name=p["name"], threads=p["threads"], cpu_node=p["cpu_node"],
                       mappings=tuple(mappings), phases=tuple(phases), memcg=p["memcg"],
                       mlp=p["mlp"])


def _read_dist(r: _Reader, dist: str):
    """Read the parameters of ``dist`` from ``r`` and build it."""
    if dist == "uniform":
        return Uniform()
    if dist == "zipf":
        return Zipf(r.number("alpha", 0.99, 0, math.inf), r.boolean("scatter", True),
                    r.integer("seed", 0, 0))
    if dist == "hotset":
        return HotSet(r.number("hot_fraction", 0.1, 0, 1, lo_open=True, hi_open=True),
                      r.number("hot_share", 0.9, 0, 1),
                      r.number("offset", 0.0, 0, 1, hi_open=True),
                      r.integer("seed", 0, 0))
    if dist == "gauss":
        return Gauss(r.number("mean", 0.5, 0, 1), r.number("stdev", 0.1, 0, math.inf,
                                                             lo_open=True),
                     r.integer("seed", 0, 0))
    raise AssertionError(dist)  # pragma: no cover - callers check the name


def _read_phase_end(r: _Reader, write_fraction=0.0) -> dict:
    return {"write_fraction": r.number("write_fraction", write_fraction, 0, 1),
            "accesses": r.opt_integer("accesses", 1),
            "duration_ns": r.opt_duration("duration")}


def _dist_name(c: Checker, table: dict, path: str) -> str:
    key = f"{path}.dist" if path else "dist"
    if table.get("dist") is None:
        c.fail(key, f"missing required key (a distribution: {', '.join(DISTRIBUTIONS)})")
    return c.choice(table["dist"], key, tuple(DISTRIBUTIONS))


def _read_phase_table(c: Checker, table, path: str) -> tuple[Phase, dict]:
    """One ``{dist = "...", <dist params>, write_fraction, accesses, duration}`` table."""
    if not isinstance(table, dict):
        c.fail(path, f"expected a table, got {describe_value(table)}")
    dist = _dist_name(c, table, path)
    r = _Reader(c, table, path, ("dist",) + _DIST_KEYS[dist] + _PHASE_KEYS)
    r.out["dist"] = dist
    d = _read_dist(r, dist)
    return Phase(d, **_read_phase_end(r)), r.out


def _check_phase_ends(c: Checker, phases, path: str):
    for i, ph in enumerate(phases[:-1]):
        if ph.accesses is None and ph.duration_ns is None:
            c.fail(f"{path}[{i}]", "every phase but the last needs accesses or duration "
                                   "(it would never end)")


def _read_phases(c: Checker, r: _Reader, key: str, default) -> tuple[tuple[Phase, ...], list]:
    tables = r.array(key, default)
    if not tables:
        r.fail(key, "expected at least one phase")
    read = [_read_phase_table(c, t, f"{r.field(key)}[{i}]") for i, t in enumerate(tables)]
    phases = tuple(p for p, _ in read)
    _check_phase_ends(c, phases, r.field(key))
    return phases, [res for _, res in read]


def _process_spec(p: dict, phases, mm: str | None = None) -> ProcessSpec:
    m = Mapping(size=p["size"], kind=p["kind"], shared=p["shared"], thp=p["thp"],
                policy=p["policy"], nodes=tuple(p["nodes"]), populate=p["populate"],
                numa_balancing=p["numa_balancing"])
    return ProcessSpec(name=p["name"], threads=p["threads"], cpu_node=p["cpu_node"],
                       mappings=(m,), phases=tuple(phases), memcg=p["memcg"], mlp=p["mlp"],
                       non_temporal=p["non_temporal"],
                       pgtable_node=p["node"] if p["page_tables"] == "membind" else None,
                       mm=mm, task_policy=p["task_policy"], task_nodes=tuple(p["task_nodes"]),
                       task_numa_balancing=p["task_numa_balancing"])


def _single(name: str, params, where: str, field: str, dist: str | None,
            extra: tuple[str, ...] = ()) -> tuple[_Reader, dict, object]:
    """Read a one-process workload's table: process keys, then ``dist``'s parameters and the
    phase keys (when ``dist`` is given), then ``extra``."""
    c = Checker(where)
    keys = _PROCESS_KEYS + ((_DIST_KEYS[dist] + _PHASE_KEYS) if dist else ()) + extra
    r = _Reader(c, params, field, keys)
    proc = _read_process(r, name)
    d = _read_dist(r, dist) if dist else None
    return r, proc, d


def make_distribution(params: dict, *, where: str = "<distribution>", field: str = ""):
    """A distribution from a table ``{dist = "zipf", alpha = 1.1, ...}`` (phase keys refused)."""
    c = Checker(where)
    if not isinstance(params, dict):
        c.fail(field, f"expected a table, got {describe_value(params)}")
    dist = _dist_name(c, params, field)
    r = _Reader(c, params, field, ("dist",) + _DIST_KEYS[dist])
    return _read_dist(r, dist)


# ---- the workloads --------------------------------------------------------------------------

@register_workload("uniform")
def uniform(params: dict, *, where: str, field: str) -> WorkloadSpec:
    """Every page of one mapping equally likely."""
    r, proc, d = _single("uniform", params, where, field, "uniform")
    phase = Phase(d, **_read_phase_end(r))
    return WorkloadSpec("uniform", (_process_spec(proc, [phase]),), dict(r.out))


@register_workload("zipf")
def zipf(params: dict, *, where: str, field: str) -> WorkloadSpec:
    """Zipf(alpha) over the pages of one mapping, ranks scattered by a seeded permutation."""
    r, proc, d = _single("zipf", params, where, field, "zipf")
    phase = Phase(d, **_read_phase_end(r))
    return WorkloadSpec("zipf", (_process_spec(proc, [phase]),), dict(r.out))


@register_workload("hotset")
def hotset(params: dict, *, where: str, field: str) -> WorkloadSpec:
    """A contiguous hot set; with ``shift_every`` it moves by ``shift_by`` ``shifts`` times."""
    r, proc, d = _single("hotset", params, where, field, "hotset",
                         ("shift_every", "shift_by", "shifts"))
    end = _read_phase_end(r)
    # shift_every: an integer is accesses per thread; a string is a duration with its unit.
    every_acc = every_ns = None
    if not r.given("shift_every"):
        r.out["shift_every"] = None
    elif is_int(r.t["shift_every"]):
        every_acc = r.integer("shift_every", None, 1)
    elif isinstance(r.t["shift_every"], str):
        every_ns = parse_duration_ns(r.t["shift_every"], where=r.c.where,
                                     field=r.field("shift_every"))
        r.out["shift_every"] = f"{every_ns}ns"
    else:
        r.fail("shift_every", "expected an integer number of accesses per thread or a duration "
                              f"such as '500ms', got {describe_value(r.t['shift_every'])}")
    shift_by = r.number("shift_by", d.hot_fraction, 0, 1, lo_open=True)
    shifts = r.integer("shifts", 4, 1)
    if r.out["shift_every"] is None:
        phases = [Phase(d, **end)]
    else:
        phases = [Phase(HotSet(d.hot_fraction, d.hot_share, d.offset + k * shift_by, d.seed),
                        write_fraction=end["write_fraction"], accesses=every_acc,
                        duration_ns=every_ns) for k in range(shifts)]
        phases.append(Phase(HotSet(d.hot_fraction, d.hot_share, d.offset + shifts * shift_by,
                                   d.seed), **end))
    return WorkloadSpec("hotset", (_process_spec(proc, phases),), dict(r.out))


DEFAULT_PHASES = [
    {"dist": "zipf", "alpha": 0.99, "accesses": 1_000_000},
    {"dist": "hotset", "hot_fraction": 0.1, "hot_share": 0.9},
]


@register_workload("phases")
def phases(params: dict, *, where: str, field: str) -> WorkloadSpec:
    """One mapping, a sequence of phases each with its own distribution."""
    r, proc, _ = _single("phases", params, where, field, None, ("phases",))
    ph, resolved = _read_phases(r.c, r, "phases", DEFAULT_PHASES)
    r.out["phases"] = resolved
    return WorkloadSpec("phases", (_process_spec(proc, ph),), dict(r.out))


@register_workload("gups")
def gups(params: dict, *, where: str, field: str) -> WorkloadSpec:
    """Giga-updates: uniform random read-modify-write of 8-byte words of one table."""
    c = Checker(where)
    keys = _PROCESS_KEYS + ("updates", "write_fraction")
    r = _Reader(c, params, field, keys)
    proc = _read_process(r, "gups")
    # HPCC RandomAccess: 4 x (table size in 8-byte words) updates in all, split over threads.
    default_updates = -(-4 * (proc["size"] // 8) // proc["threads"])
    updates = r.integer("updates", default_updates, 1)
    wf = r.number("write_fraction", 0.5, 0, 1)
    # One update = one load + one store: 2 accesses, half of them stores by default.
    phase = Phase(Uniform(), write_fraction=wf, accesses=2 * updates)
    return WorkloadSpec("gups", (_process_spec(proc, [phase]),), dict(r.out))


# pghot RFC v3 microbenchmark (promotion-spec §7.1, [S1] = lore message-id
# 20251110052343.208768-1-bharata@amd.com).
PGHOT_BENCH_MODES = {
    # mode: (footprint, kind, shared, thp, write_fraction)
    1: (8 << 30, "anon", False, False, 0.5),   # anon 4K, MAP_POPULATE, 50% loads 50% stores
    2: (8 << 30, "file", True, False, 0.0),    # file mmap MAP_POPULATE|MAP_SHARED, 100% loads
    3: (64 << 30, "anon", False, True, 0.5),   # 2M THP (MADV_HUGEPAGE), move_pages to CXL, 50/50
}
# PLACEHOLDER: the cover letter does not give the per-thread access count. The reproduction
# fits its own (DESIGN §6: to the NUMAB0 Mode 1 runtime; 408,723,572 on zen5-cxl's 283 ns,
# experiments/pghot_v3.py); this default is only of that order. Do not quote it as data.
PGHOT_ACCESSES_PER_THREAD = 436_000_000


@register_workload("pghot-bench")
def pghot_bench(params: dict, *, where: str, field: str) -> WorkloadSpec:
    """The pghot RFC v3 microbenchmark, Modes 1-3, exactly as promotion-spec §7.1."""
    c = Checker(where)
    r = _Reader(c, params, field, ("mode", "threads", "accesses_per_thread", "scale",
                                   "cxl_node", "cpu_node", "mlp", "page_tables"))
    mode = r._raw("mode", 1)
    if not is_int(mode) or mode not in PGHOT_BENCH_MODES:
        r.fail("mode", f"expected 1, 2 or 3, got {describe_value(mode)}")
    r.out["mode"] = mode
    threads = r.integer("threads", 64, 1)
    apt = r.integer("accesses_per_thread", PGHOT_ACCESSES_PER_THREAD, 1)
    scale = r.number("scale", 1.0, 0, 1, lo_open=True)
    cxl = r.integer("cxl_node", 2, 0)
    cpu = r.integer("cpu_node", 0, 0)
    mlp = r.number("mlp", 1.0, 0, math.inf, lo_open=True)
    # Modes 1-2 are provisioned on the CXL node; the cover letter does not say how. "membind"
    # (numactl --membind) puts the page tables there too; "local" keeps them on the CPU node.
    page_tables = r.choice("page_tables", "local", PAGE_TABLES)
    if cxl == cpu:
        r.fail("cxl_node", f"the CXL node has no CPUs; it cannot also be cpu_node ({cpu})")
    full, kind, shared, thp, wf = PGHOT_BENCH_MODES[mode]
    unit = HPAGE_SIZE if thp else PAGE_SIZE
    size = max(unit, int(full * scale) // unit * unit)
    accesses = max(1, round(apt * scale))
    if thp:
        # Mode 3: the THPs are first faulted in under the default (local) policy, i.e. on the
        # CPU's node, then move_pages() moves every page to the CXL node.
        m = Mapping(size=size, kind=kind, shared=shared, thp=True, policy="default", nodes=(),
                    populate=True, move_to=cxl)
    else:
        # Modes 1-2: provisioned directly on the CXL node.
        m = Mapping(size=size, kind=kind, shared=shared, thp=False, policy="bind", nodes=(cxl,),
                    populate=True)
    proc = ProcessSpec(name="pghot-bench", threads=threads, cpu_node=cpu, mappings=(m,),
                       phases=(Phase(Uniform(), write_fraction=wf, accesses=accesses),),
                       memcg="/", mlp=mlp,
                       pgtable_node=cxl if page_tables == "membind" and not thp else None)
    return WorkloadSpec("pghot-bench", (proc,), dict(r.out))


DEFAULT_PROCESSES = [
    {"name": "hot", "memcg": "/hot", "size": "256MiB", "dist": "zipf"},
    {"name": "cold", "memcg": "/cold", "size": "256MiB", "dist": "uniform"},
]


@register_workload("multi")
def multi(params: dict, *, where: str, field: str) -> WorkloadSpec:
    """Several processes (separate mms, possibly separate memcgs) running together. Each table
    has the process keys plus either ``dist`` and its parameters (one phase) or ``phases``,
    and ``mm``: tables with the same ``mm`` are thread groups of one process (one address
    space, one memcg), each with its own threads, CPU node, mapping and task policy."""
    c = Checker(where)
    r = _Reader(c, params, field, ("processes",))
    tables = r.array("processes", DEFAULT_PROCESSES)
    if not tables:
        r.fail("processes", "expected at least one process")
    procs, resolved, names, mms = [], [], set(), {}
    for i, t in enumerate(tables):
        path = f"{r.field('processes')}[{i}]"
        if not isinstance(t, dict):
            c.fail(path, f"expected a table, got {describe_value(t)}")
        if t.get("phases") is not None:
            pr = _Reader(c, t, path, _PROCESS_KEYS + ("phases", "mm"))
            p = _read_process(pr, f"p{i}")
            ph, pres = _read_phases(c, pr, "phases", None)
            pr.out["phases"] = pres
        else:
            dist = _dist_name(c, t, path)
            pr = _Reader(c, t, path, _PROCESS_KEYS + ("dist", "mm") + _DIST_KEYS[dist] +
                         _PHASE_KEYS)
            p = _read_process(pr, f"p{i}")
            pr.out["dist"] = dist
            d = _read_dist(pr, dist)
            ph = (Phase(d, **_read_phase_end(pr)),)
        if p["name"] in names:
            c.fail(f"{path}.name", f"duplicate process name {p['name']!r}")
        names.add(p["name"])
        mm = pr.string("mm", p["name"]) if pr.given("mm") else pr._put("mm", None)
        first = mms.setdefault(p["name"] if mm is None else mm, (i, p["memcg"]))
        if first[1] != p["memcg"]:
            c.fail(f"{path}.memcg", f"a thread group of mm {mm!r} in memcg {p['memcg']!r}, but "
                                    f"processes[{first[0]}] of the same mm is in "
                                    f"{first[1]!r} (one mm, one memcg)")
        procs.append(_process_spec(p, ph, mm))
        resolved.append(dict(pr.out))
    return WorkloadSpec("multi", tuple(procs), {"processes": resolved})


from . import pressure  # noqa: E402,F401  (registers cold-filler, wss-larger, bind-spill)
from . import pmbench, abench, kvstore  # noqa: E402,F401  (published benchmarks, issue 11 §4)
