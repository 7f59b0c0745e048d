"""Shared fixtures and helpers for the mm-model tests.

Every kernel here runs with ``debug=True``, so ``Kernel.check()`` (mm/check.py) runs after each
public operation: a test that passes has also passed the invariant checker at every step.

Helpers are plain functions so test modules can ``from conftest import ...`` them (the tests
directory is on sys.path under pytest's default "prepend" import mode).
"""

from __future__ import annotations

import numpy as np
import pytest

from tierscan import Kernel, Machine
from tierscan.mm.lru_gen import lru_gen_from_seq

PAGE = 4096
HPAGE = 2 << 20           # one PMD-mapped THP
HPAGE_NR = 512            # pages in a THP
ZONE_NORMAL, ZONE_MOVABLE = 2, 3   # indexes into ZONE_NAMES ("DMA", "DMA32", "Normal", "Movable")
ANON, FILE = 0, 1         # LRU_GEN_ANON, LRU_GEN_FILE

# x86 PTE/PMD bits (arch/x86/include/asm/pgtable_types.h), written out here rather than imported
# so that a wrong constant in src would show up as a failure.
PRESENT, RW, ACCESSED, DIRTY, PSE, SPECIAL = 1 << 0, 1 << 1, 1 << 5, 1 << 6, 1 << 7, 1 << 9


def addrs(*values) -> np.ndarray:
    """A uint64 address array from ints (or iterables of ints)."""
    out = []
    for v in values:
        if isinstance(v, (list, tuple, range, np.ndarray)):
            out.extend(int(x) for x in v)
        else:
            out.append(int(v))
    return np.array(out, dtype=np.uint64)


def page_addrs(start: int, n: int, first: int = 0) -> np.ndarray:
    """Addresses of pages first .. first+n-1 of a mapping starting at ``start``."""
    return (np.uint64(start) + np.uint64(PAGE) * np.arange(first, first + n, dtype=np.uint64))


def machine_dict(capacities, cpus=None, kinds=None, distance=None, tiers=None) -> dict:
    """A machine in the TOML schema of tierscan.machine (docs/machine.md).

    Defaults: node 0 is DRAM with CPU 0, every other node is CPU-less CXL (ZONE_MOVABLE) in
    tier 1; distance 10 to itself and 20 elsewhere.
    """
    n = len(capacities)
    cpus = cpus or [[0]] + [[] for _ in range(n - 1)]
    kinds = kinds or ["dram"] + ["cxl"] * (n - 1)
    tiers = tiers or [0 if k == "dram" else 1 for k in kinds]
    distance = distance or [[10 if i == j else 20 for j in range(n)] for i in range(n)]
    lat = [[90.0 if i == j else 250.0 for j in range(n)] for i in range(n)]
    return {
        "name": "test",
        "nodes": [{"id": i, "capacity": capacities[i], "cpus": cpus[i], "tier": tiers[i],
                   "kind": kinds[i]} for i in range(n)],
        "latency": {"load_ns": lat, "store_ns": lat, "distance": distance},
    }


def make_kernel(capacities=("16MiB", "16MiB"), **kw) -> Kernel:
    """A debug kernel on a small custom machine (see machine_dict)."""
    return Kernel(Machine.from_dict(machine_dict(list(capacities), **kw)), seed=0, debug=True)


def fault_gen(kernel, memcg=None, nid=0) -> int:
    """The generation a folio faulted now joins: gen(max_seq - 1) (mglru-spec §3.1)."""
    lv = kernel.lruvec(memcg or kernel.root_memcg, nid)
    return lru_gen_from_seq(lv.lrugen.max_seq - 1)


def snapshot(k) -> dict:
    """A deep copy of everything a failed call must leave alone."""
    pm = k.pm
    snap = {name: getattr(pm, name).copy() for name in (
        "flags", "lru_gen_refs", "list_gen", "lru_stamp", "order", "memcg", "mapcount",
        "mapping", "index", "block_free", "node_free")}
    snap["vmstat"] = k.vmstat.as_dict()
    for mid, mm in k.mms.items():
        snap[f"mm{mid}.pte"] = mm.pt.pte.copy()
        snap[f"mm{mid}.pmd"] = mm.pt.pmd.copy()
        snap[f"mm{mid}.vmas"] = [(v.start, v.end, v.flags, v.pgoff, v.policy,
                                  v.file.id if v.file else None) for v in mm.vmas]
    for fid, f in k.files.items():
        snap[f"file{fid}"] = (f.pages.copy(), [(v.mm.id, v.start, v.end) for v in f.i_mmap])
    for key, lv in k._lruvecs.items():
        g = lv.lrugen
        snap[f"lruvec{key}"] = (g.max_seq, tuple(g.min_seq), g.nr_pages.copy())
    return snap


def assert_same(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key in before:
        a, b = before[key], after[key]
        if isinstance(a, np.ndarray):
            assert np.array_equal(a, b), f"{key} changed"
        elif isinstance(a, tuple) and any(isinstance(x, np.ndarray) for x in a):
            assert all(np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y
                       for x, y in zip(a, b)), f"{key} changed"
        else:
            assert a == b, f"{key} changed"


@pytest.fixture
def kernel() -> Kernel:
    """The laptop machine: node 0 DRAM 1 GiB with the CPUs, node 1 CXL 2 GiB (Movable), tier 1."""
    return Kernel(Machine.preset("laptop"), seed=0, debug=True)


@pytest.fixture
def mm(kernel):
    return kernel.spawn("bench")
