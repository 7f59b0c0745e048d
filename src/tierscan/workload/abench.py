"""An abench/cbench-like workload: passes over a region with a pause between passes.

The kscand RFC postings (Raghavendra K T, AMD; promotion-spec §4 [S23]) evaluate their A-bit
scanner with "abench" and "cbench": a process whose memory sits on the CXL node and is accessed
over and over. Their sources and parameters were not found (promotion-spec §8 "The Cbench and
Abench sources were not found"), so this is the shape only, with every default an ESTIMATE:

- ``iterations`` passes; in each, the threads together touch every page of ``size`` about
  ``touches_per_page`` times (default 64: every cache line of a 4 KiB page once), as
  ``touches_per_page`` uniform accesses per page in the exact model's random order (a sequential
  sweep touches the same pages the same number of times; only the order inside a pass differs,
  which page-level detectors do not see at scan intervals longer than a pass);
- between two passes the threads sleep for ``delay`` (an idle phase: no access, no device load).
"""

from __future__ import annotations

import math

from ..configcheck import Checker
from ..units import parse_duration_ns
from .base import Mapping, Phase, WorkloadSpec
from .distributions import Uniform
from .library import (PAGE_SIZE, PLACEMENT_KEYS, _placed_process, _Reader, _read_placement,
                      register_workload)

_KEYS = ("size", "iterations", "delay", "touches_per_page", "write_fraction", "threads",
         "populate") + PLACEMENT_KEYS


def pass_accesses(size: int, touches_per_page: float, threads: int) -> int:
    """Accesses per thread in one pass: the threads share the pass's touches."""
    return max(1, math.ceil(size // PAGE_SIZE * touches_per_page / threads))


@register_workload("abench")
def abench(params: dict, *, where: str, field: str) -> WorkloadSpec:
    """``iterations`` passes over one region, ``delay`` of sleep between two passes."""
    c = Checker(where)
    r = _Reader(c, params, field, _KEYS)
    size = r.size("size", "1GiB")
    iterations = r.integer("iterations", 10, 1)
    delay = r.out["delay"] = 1_000_000_000 if not r.given("delay") else parse_duration_ns(
        r.t["delay"], where=where, field=r.field("delay"), allow_zero=True)   # ESTIMATE: 1 s
    touches = r.number("touches_per_page", 64, 0, math.inf, lo_open=True)
    wf = r.number("write_fraction", 0.0, 0, 1)
    p = _read_placement(r, "abench")
    populate = r.boolean("populate", True)
    n = pass_accesses(size, touches, p["threads"])
    sweep = Uniform()
    phases = []
    for i in range(iterations):
        if i and delay:
            phases.append(Phase(sweep, write_fraction=wf, duration_ns=delay, idle=True))
        phases.append(Phase(sweep, write_fraction=wf, accesses=n))
    m = Mapping(size=size, thp=p["thp"], policy="bind", nodes=(p["node"],), populate=populate)
    return WorkloadSpec("abench", (_placed_process(p, [m], phases),), dict(r.out))
