"""A key-value store under YCSB-like load: ``make_workload("kvstore", {"workload": "b"})``.

The store keeps a hash index (a bucket array of ``buckets`` pointers, ``bucket_bytes`` each; the
bucket count is the power of two at or above records / load_factor, as hash tables that double
keep it) and the records themselves, ``record_size`` bytes each, laid out in load order (YCSB
loads records 0, 1, 2, ... in turn). An operation on record k reads k's bucket (one access to the
index page holding it) and then the record's pages: a read (YCSB "read") loads each of them, an
update ("update") stores to each, a read-modify-write ("readmodifywrite") loads and then stores
each. Records are chosen by YCSB's request distribution (workload/ycsb.py).

So the page weights are a mixture over index pages and value pages: index page i gets the
probability of the keys whose bucket is on it, value page j that of the records on it (twice
for read-modify-writes), all over the expected accesses per operation. The phase's store
fraction is the expected stores per operation over its accesses: stores land on any page of the
operation with that probability, not only on value pages (docs/fidelity.md; both access models
take one write fraction per phase).

YCSB's core workloads (workloads/workloada..f in the YCSB repository; recordcount 1000,
fieldcount 10, fieldlength 100 by default, requestdistribution zipfian):
A 50% read / 50% update; B 95% read / 5% update; C 100% read; F 50% read / 50%
read-modify-write. D (read latest, 5% insert) and E (short scans, 5% insert) insert records while
they run, which a fixed layout cannot express: they are refused.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from ..configcheck import Checker
from ..units import describe_value
from .base import Mapping, Phase, WorkloadSpec
from .distributions import Weights
from .library import (PAGE_SIZE, PLACEMENT_KEYS, _placed_process, _Reader, _read_placement,
                      register_workload)
from .ycsb import REQUEST_DISTRIBUTIONS, fnvhash64, key_probabilities

__all__ = ["CORE_WORKLOADS", "KVLayout", "kv_page_weights"]

# (read, update, read-modify-write) proportions of YCSB's core workloads
CORE_WORKLOADS = {"a": (0.5, 0.5, 0.0), "b": (0.95, 0.05, 0.0), "c": (1.0, 0.0, 0.0),
                  "f": (0.5, 0.0, 0.5)}
_INSERTING = {"d": "read latest with 5% inserts", "e": "short scans with 5% inserts"}
_MIX = np.uint64(0x9E3779B97F4A7C15)


class KVLayout:
    """Where the index entries and records of ``records`` keys sit, in pages."""

    def __init__(self, records: int, record_size: int, load_factor: float, bucket_bytes: int,
                 seed: int):
        self.records, self.record_size = records, record_size
        self.buckets = 1 << max(0, math.ceil(math.log2(records / load_factor)))
        self.bucket_bytes, self.seed = bucket_bytes, seed
        self.index_pages = -(-self.buckets * bucket_bytes // PAGE_SIZE)
        self.value_pages = -(-records * record_size // PAGE_SIZE)

    @property
    def pages(self) -> int:
        return self.index_pages + self.value_pages

    def bucket_of(self) -> np.ndarray:
        """Each record's bucket: its YCSB key hash, mixed with ``seed`` (splitmix64's
        finaliser), modulo the bucket count."""
        z = fnvhash64(np.arange(self.records)).astype(np.uint64) + \
            np.uint64(self.seed) * _MIX
        with np.errstate(over="ignore"):
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z ^= z >> np.uint64(31)
        return (z % np.uint64(self.buckets)).astype(np.int64)

    def record_pages(self) -> tuple[np.ndarray, np.ndarray]:
        """(first value page, number of value pages) of each record."""
        k = np.arange(self.records, dtype=np.int64)
        first = k * self.record_size // PAGE_SIZE
        last = ((k + 1) * self.record_size - 1) // PAGE_SIZE
        return first, last - first + 1


def kv_page_weights(layout: KVLayout, dist: str, rmw: float, n: int) -> np.ndarray:
    """Expected accesses per operation to each of the n = index + value pages."""
    if n != layout.pages:
        raise ValueError(f"the key-value layout has {layout.pages} pages, not {n}")
    p = key_probabilities(dist, layout.records)
    w = np.zeros(n)
    w[:layout.index_pages] = np.bincount(layout.bucket_of() * layout.bucket_bytes // PAGE_SIZE,
                                         weights=p, minlength=layout.index_pages)
    first, span = layout.record_pages()
    per_value = p * (1.0 + rmw)                   # a read-modify-write touches a page twice
    for j in range(int(span.max())):              # a loop over pages *of one record*
        on = span > j
        w[layout.index_pages:] += np.bincount(first[on] + j, weights=per_value[on],
                                              minlength=layout.value_pages)
    return w


def accesses_per_operation(layout: KVLayout, dist: str, rmw: float) -> tuple[float, float]:
    """(accesses, stores) per operation, in expectation."""
    _, span = layout.record_pages()
    mean_span = float(key_probabilities(dist, layout.records) @ span)
    return 1.0 + (1.0 + rmw) * mean_span, mean_span


_KEYS = ("records", "record_size", "workload", "read", "update", "rmw", "request_distribution",
         "load_factor", "bucket_bytes", "seed", "operations", "duration",
         "threads") + PLACEMENT_KEYS


def _mix(r: _Reader) -> tuple[float, float, float]:
    """(read, update, rmw): a core workload's, or the three proportions given."""
    wl = r._raw("workload", "a")
    if isinstance(wl, str) and wl.lower() in _INSERTING:
        r.fail("workload", f"YCSB workload {wl.upper()} ({_INSERTING[wl.lower()]}) adds records "
                           "while it runs, which this fixed layout cannot express; use a, b, c "
                           "or f, or read/update/rmw")
    if not isinstance(wl, str) or wl.lower() not in CORE_WORKLOADS:
        r.fail("workload", f"expected one of a, b, c, f, got {describe_value(wl)}")
    r.out["workload"] = wl.lower()
    base = CORE_WORKLOADS[wl.lower()]
    given = [r.given(k) for k in ("read", "update", "rmw")]
    if not any(given):
        r.out.update(read=None, update=None, rmw=None)
        return base
    mix = tuple(r.number(k, 0.0, 0, 1) for k in ("read", "update", "rmw"))
    if abs(sum(mix) - 1.0) > 1e-9:
        r.fail("read", f"read + update + rmw must be 1, got {sum(mix):g}")
    return mix


@register_workload("kvstore")
def kvstore(params: dict, *, where: str, field: str) -> WorkloadSpec:
    """A hash index plus records, under a YCSB operation mix and request distribution."""
    c = Checker(where)
    r = _Reader(c, params, field, _KEYS)
    records = r.integer("records", 1_500_000, 1)
    record_size = r.integer("record_size", 1000, 1)
    read, update, rmw = _mix(r)
    dist = r.choice("request_distribution", "zipfian", REQUEST_DISTRIBUTIONS)
    load_factor = r.number("load_factor", 1.0, 0, math.inf, lo_open=True)
    bucket_bytes = r.integer("bucket_bytes", 8, 1)
    seed = r.integer("seed", 0, 0)
    operations = r.opt_integer("operations", 1)
    duration = r.opt_duration("duration")
    p = _read_placement(r, "kvstore")
    threads, thp = p["threads"], p["thp"]

    layout = KVLayout(records, record_size, load_factor, bucket_bytes, seed)
    per_op, value_pages = accesses_per_operation(layout, dist, rmw)
    wf = (update + rmw) * value_pages / per_op
    weights = Weights("kvstore", {"records": records, "record_size": record_size,
                                  "load_factor": load_factor, "bucket_bytes": bucket_bytes,
                                  "seed": seed, "dist": dist, "rmw": rmw},
                      partial(kv_page_weights, layout, dist, rmw))
    accesses = None if operations is None else max(1, math.ceil(operations * per_op / threads))
    unit = (2 << 20) if thp else PAGE_SIZE
    mappings = tuple(Mapping(size=-(-pages * PAGE_SIZE // unit) * unit, thp=thp, policy="bind",
                             nodes=(p["node"],), populate=True)
                     for pages in (layout.index_pages, layout.value_pages))
    if thp and any(m.size != p * PAGE_SIZE for m, p in
                   zip(mappings, (layout.index_pages, layout.value_pages))):
        r.fail("thp", "the index and the records must each be a whole number of 2 MiB pages "
                      "with thp (choose records, record_size and bucket_bytes to match)")
    phase = Phase(weights, write_fraction=wf, accesses=accesses, duration_ns=duration)
    return WorkloadSpec("kvstore", (_placed_process(p, mappings, [phase]),), dict(r.out))
