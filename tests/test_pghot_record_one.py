"""pghot v3 record_access with one nid and one time for the whole call (klruscand's batches,
NUMA hint faults: ``PghotV3._record_one``) against the general form given the same values as
per-report arrays: the same return value, records, first reports, READY blocks, kmigrated
activation and vmstat counters, through every filter."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import PAGE, machine_dict, page_addrs

from tierscan import Kernel, Machine
from tierscan.promote.pghot import PghotV3
from tierscan.sim.engine import MS

# the laptop (1 GiB DRAM with the CPUs, 2 GiB CXL) with a second CXL node: two lower-tier
# nodes, so that reports move between them (the one-nid pass keeps the last one's pfn range)
MACHINES = {"laptop": lambda: Machine.preset("laptop"),
            "two-cxl": lambda: Machine.from_dict(machine_dict(["1GiB", "2GiB", "2GiB"],
                                                              cpus=[[0, 1], [], []]))}


def _kernel(machine="laptop"):
    """A kernel and a pool of report pfns: order-0 and THP pages on each lower node (runs
    of consecutive pfns), DRAM pages, lower-tier pfns off the LRU, pfns outside memory."""
    k = Kernel(MACHINES[machine](), seed=0, debug=True)
    pfns, free = [], []
    for nid in k.machine.lower_tier_nodes:
        cxl = k.spawn("c").mmap(300 * PAGE, populate=True, policy="bind", nodes=[nid])
        thp = k.spawn("t").mmap(1024 * PAGE, thp=True, populate=True, policy="bind",
                                nodes=[nid])
        pfns += [v.mm.translate(page_addrs(v.start, n)) for v, n in ((cxl, 300), (thp, 1024))]
        lo, hi = k.pm.node_range(nid)
        free.append(lo + np.flatnonzero(k.pm.flags[lo:hi] == 0)[:20])     # not on an LRU
    dram = k.spawn("d").mmap(64 * PAGE, populate=True, policy="bind", nodes=[0])
    pfns.append(dram.mm.translate(page_addrs(dram.start, 64)))
    return k, np.concatenate(pfns + free + [[-1, k.pm.nr_pfns + 5]])


def _reports(rng, pool, n):
    """n reports: random pool pfns (repeats included), or a slice of the pool (runs of
    consecutive pfns, as a walk reports them)."""
    if rng.random() < 0.5:
        return rng.choice(pool, n)
    a = int(rng.integers(0, pool.size))
    return np.resize(np.roll(pool, -a), n)


def _activated(e):
    """The nodes the call activated (then cleared, as their kmigrated does on waking), so
    that each call's activations are compared."""
    nodes = tuple(int(n) for n in np.flatnonzero(e.activate))
    e.activate[:] = False
    return nodes


def _state(e):
    k = e.kernel
    vm = {n: k.vmstat.node(n).tolist() for n in ("pghot_recorded_accesses",
                                                 "pghot_recorded_pgtscans",
                                                 "pghot_recorded_hintfaults",
                                                 "pghot_recorded_hwhints")}
    ns1 = None if e._first.ns1 is None else e._first.ns1.copy()
    return (e.records.copy(), ns1, e._block_ready.copy(), e._ready_bits.copy(),
            e.activate.copy(), vm)


def _assert_same_state(a_state, b_state):
    for a, b in zip(a_state, b_state):
        if isinstance(a, dict):
            assert a == b
        else:
            assert (a is None and b is None) or np.array_equal(a, b)


@pytest.mark.parametrize("machine", ["laptop", "two-cxl"])
@pytest.mark.parametrize("literal", [False, True])
@pytest.mark.parametrize("sources", [None, ["pgtscan", "hintfault"]])
def test_one_nid_one_time_is_the_general_form(monkeypatch, literal, sources, machine):
    params = {"literal": literal, "freq_threshold": 2}
    if sources is not None:
        params["sources"] = sources
    runs = []
    for as_arrays in (False, True):
        k, pool = _kernel(machine)
        e = PghotV3(k, **params)
        monkeypatch.setattr(e, "one_nid_pass", not as_arrays)   # arrays: the general form
        rng = np.random.default_rng(3)
        got = []
        for step in range(60):
            k.clock_ns = (10 + 40 * step) * MS
            pfns = _reports(rng, pool, int(rng.integers(0, 400)))
            nid = int(rng.choice([-1, -7, 0, 1, 2, 5, 1023, 1024, 4000]))
            src = str(rng.choice(["pgtscan", "hintfault", "hwhints"]))
            now = k.jiffies
            if as_arrays:
                got.append(e.record_access(pfns, np.full(pfns.size, nid), src,
                                           np.full(pfns.size, now)))
            else:
                got.append(e.record_access(pfns, nid, src, now))
            got.append(_activated(e))
        runs.append((got, _state(e)))
    (got_one, st_one), (got_arr, st_arr) = runs
    assert got_one == got_arr
    assert sum(got_one[::2]) > 1000                      # records were updated ...
    assert st_one[2].any() and any(got_one[1::2])         # ... some became READY
    _assert_same_state(st_one, st_arr)


@pytest.mark.parametrize("machine", ["laptop", "two-cxl"])
@pytest.mark.parametrize("literal", [False, True])
@pytest.mark.parametrize("sources", [None, ["pgtscan", "hintfault"]])
def test_one_nid_with_a_time_per_report_is_the_general_form(monkeypatch, literal, sources,
                                                           machine):
    """IBS's drained windows: one nid array (every report the same nid) with a time per
    report, through the one-nid pass and through the general form (one_nid_pass False);
    calls with mixed nids take the general form in both."""
    params = {"literal": literal, "freq_threshold": 2}
    if sources is not None:
        params["sources"] = sources
    runs = []
    for fast in (True, False):
        k, pool = _kernel(machine)
        e = PghotV3(k, **params)
        monkeypatch.setattr(e, "one_nid_pass", fast)
        rng = np.random.default_rng(4)
        got = []
        for step in range(60):
            k.clock_ns = (10 + 40 * step) * MS
            n = int(rng.integers(0, 400))
            pfns = _reports(rng, pool, n)
            nids = np.full(n, int(rng.choice([-1, -7, 0, 1, 2, 5, 1023, 1024, 4000])))
            if step % 7 == 3 and n:
                nids[rng.integers(0, n)] = 1                            # mixed nids
            src = str(rng.choice(["pgtscan", "hintfault", "hwhints"]))
            nows = k.jiffies - 9 + np.sort(rng.integers(0, 10, n))      # a 10-jiffy window
            got.append(e.record_access(pfns, nids, src, nows))
            got.append(_activated(e))
        runs.append((got, _state(e)))
    (got_fast, st_fast), (got_ref, st_ref) = runs
    assert got_fast == got_ref
    assert sum(got_fast[::2]) > 1000 and st_fast[2].any() and any(got_fast[1::2])
    _assert_same_state(st_fast, st_ref)
