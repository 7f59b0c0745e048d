"""Workloads that put the fast tier under pressure (issue 13 item 9; docs/workloads.md).

- ``cold-filler``: a process first writes ``filler`` bytes of cold memory (populated before
  the run, never touched again), then runs a hot working set of ``hot`` bytes that it faults
  in during the run (the rate model's run-time first touches). Under the default (local)
  policy the filler fills the CPU's node, so the hot set lands wherever memory is left and the
  detectors, promotion and kswapd's demotion decide where it ends up. With ``window`` smaller
  than ``hot`` only a window of the hot mapping is hot; with ``shift_every`` it moves by
  ``window`` ``shifts`` times ("phase change: the hot set moves"). With ``hot_first`` the hot
  mapping is mapped below the filler, so an address-order scanner (NUMA balancing's 256 MB
  per scan period) reaches it before walking the whole filler.
- ``wss-larger``: one mapping larger than the fast tier, faulted in during the run, zipf over
  it: the working set cannot all be in DRAM.
- ``bind-spill``: one populated mapping bound over every node in ``nodes`` (fast and slow
  together, as with MPOL_BIND and MPOL_F_NUMA_BALANCING), zipf over it: the fast tier fills
  first and the rest spills to the slow tier.

Each is one process whose accesses are a distribution over its pages, so the known hot set
(the oracle's, and the pages with weight) is exact.
"""

from __future__ import annotations

from .base import Mapping, Phase, ProcessSpec, WorkloadSpec
from .distributions import HotSet, Zipf
from .library import _Reader, register_workload
from ..configcheck import Checker

_COMMON = ("threads", "cpu_node", "memcg", "name", "mlp", "write_fraction", "duration",
           "compute_ns")


def _common(r: _Reader, name: str) -> dict:
    r.integer("threads", 1, 1)
    r.integer("cpu_node", 0, 0)
    r.memcg("memcg")
    r.string("name", name)
    r.number("mlp", 1.0, 0, float("inf"), lo_open=True)
    r.number("write_fraction", 0.5, 0, 1)
    r.opt_duration("duration")
    # CPU time between two accesses (Phase.compute_ns); a scaled-down scenario uses it to give
    # each page the access rate it has at full scale (docs/reproductions.md, "Pressure")
    r.number("compute_ns", 0.0, 0, float("inf"))
    return r.out


def _nodes(r: _Reader, default):
    """``nodes``: a non-empty list of node ids (MPOL_BIND), or ``default`` when not given."""
    if not r.given("nodes"):
        r.out["nodes"] = default
        return default
    nodes = r.array("nodes", default)
    if not nodes or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                            for n in nodes):
        r.fail("nodes", f"expected a non-empty list of node ids, got {nodes!r}")
    r.out["nodes"] = list(nodes)
    return list(nodes)


def _process(p: dict, mappings, phases) -> ProcessSpec:
    return ProcessSpec(name=p["name"], threads=p["threads"], cpu_node=p["cpu_node"],
                       mappings=tuple(mappings), phases=tuple(phases), memcg=p["memcg"],
                       mlp=p["mlp"])


@register_workload("cold-filler")
def cold_filler(params: dict, *, where: str, field: str) -> WorkloadSpec:
    """Cold filler written first, then a hot set faulted in during the run."""
    c = Checker(where)
    r = _Reader(c, params, field, _COMMON + ("filler", "hot", "thp", "window", "shift_every",
                                             "shifts", "nodes", "hot_first"))
    filler = r.size("filler", "768MiB")
    hot = r.size("hot", "128MiB")
    if filler <= 0 or hot <= 0:
        r.fail("filler" if filler <= 0 else "hot", "expected a size above 0")
    thp = r.boolean("thp", False)
    window = r.size("window", hot)
    if window > hot:
        r.fail("window", f"expected at most hot ({hot} bytes), got {window}")
    every = r.opt_duration("shift_every")
    shifts = r.integer("shifts", 4, 1)
    nodes = _nodes(r, None)
    hot_first = r.boolean("hot_first", False)
    p = _common(r, "cold-filler")
    total = filler + hot
    policy = ("default", ()) if nodes is None else ("bind", tuple(nodes))
    mappings = [Mapping(size=filler, thp=thp, policy=policy[0], nodes=policy[1], populate=True),
                Mapping(size=hot, thp=thp, policy=policy[0], nodes=policy[1], populate=False)]
    hot_at = 0 if hot_first else filler          # where the hot mapping's bytes start
    if hot_first:
        mappings.reverse()

    def phase(k: int, last: bool) -> Phase:
        start = hot_at + (k * window) % hot
        return Phase(HotSet(window / total, 1.0, start / total), write_fraction=p["write_fraction"],
                     duration_ns=p["duration"] if last else every, compute_ns=p["compute_ns"])

    n = 0 if every is None else shifts
    phases = [phase(k, k == n) for k in range(n + 1)]
    return WorkloadSpec("cold-filler", (_process(p, mappings, phases),), dict(r.out))


@register_workload("wss-larger")
def wss_larger(params: dict, *, where: str, field: str) -> WorkloadSpec:
    """A zipf working set larger than the fast tier, faulted in during the run."""
    c = Checker(where)
    r = _Reader(c, params, field, _COMMON + ("size", "alpha", "thp", "populate"))
    size = r.size("size", "1536MiB")
    alpha = r.number("alpha", 0.99, 0, float("inf"))
    thp = r.boolean("thp", False)
    populate = r.boolean("populate", False)
    p = _common(r, "wss-larger")
    m = Mapping(size=size, thp=thp, policy="default", nodes=(), populate=populate)
    ph = Phase(Zipf(alpha, True, 0), write_fraction=p["write_fraction"],
               duration_ns=p["duration"], compute_ns=p["compute_ns"])
    return WorkloadSpec("wss-larger", (_process(p, [m], [ph]),), dict(r.out))


@register_workload("bind-spill")
def bind_spill(params: dict, *, where: str, field: str) -> WorkloadSpec:
    """A populated zipf mapping bound over fast and slow nodes together."""
    c = Checker(where)
    r = _Reader(c, params, field, _COMMON + ("size", "alpha", "nodes"))
    size = r.size("size", "1536MiB")
    alpha = r.number("alpha", 0.99, 0, float("inf"))
    nodes = _nodes(r, [0, 1])
    p = _common(r, "bind-spill")
    m = Mapping(size=size, policy="bind", nodes=tuple(nodes), populate=True)
    ph = Phase(Zipf(alpha, True, 0), write_fraction=p["write_fraction"],
               duration_ns=p["duration"], compute_ns=p["compute_ns"])
    return WorkloadSpec("bind-spill", (_process(p, [m], [ph]),), dict(r.out))

