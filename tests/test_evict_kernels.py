"""The compiled eviction passes (mm/evict_kernels.py; rmap._site_kinds, migrate._copy_state)
against their numpy forms: the same answers on random folio states, and whole pressure runs
leaving the same kernel state and counters with ``COMPILED`` on and off in evict, rmap and
migrate."""

import numpy as np
import pytest
from conftest import HPAGE, PAGE, assert_same, snapshot

from tierscan import Kernel, Machine
from tierscan.mm import evict, migrate, rmap
from tierscan.mm.constants import (
    PG_anon, PG_dirty, PG_lru, PG_reclaim, PG_referenced, PG_swapbacked, PG_swapcache,
    PG_unevictable, PG_workingset, PG_writeback,
)
from tierscan.mm.evict import GFP_KERNEL, GFP_NOIO, ScanControl
from tierscan.hotness.numab import NumaBalancing
from tierscan.sim.engine import MS, Engine
from tierscan.workload.library import make_workload

_BITS = [PG_referenced, PG_dirty, PG_lru, PG_workingset, PG_reclaim, PG_swapbacked,
         PG_unevictable, PG_writeback, PG_anon, PG_swapcache]


def _random_folios(k, rng, n):
    """``n`` distinct head pfns of node 0 with random flags, gen/refs fields and orders (the
    scan reads nothing else). Not a consistent kernel state: the passes must agree anyway."""
    pm = k.pm
    heads = rng.choice(np.arange(0, int(pm.node_start[1]), 512), n, replace=False)
    heads = heads + rng.integers(0, 512, n) * (rng.random(n) < 0.7)
    bits = rng.random((n, len(_BITS))) < rng.random(len(_BITS))
    pm.flags[heads] = (bits * np.array(_BITS, np.int64)).sum(axis=1).astype(np.uint16)
    # gen+1 in 0..MAX_NR_GENS (0: off the lists), refs bits 0..3
    pm.lru_gen_refs[heads] = (rng.integers(0, 5, n) | rng.integers(0, 4, n) << 3).astype(np.uint8)
    pm.order[heads] = np.where(rng.random(n) < 0.1, 9, 0).astype(np.uint8)
    return heads


@pytest.mark.parametrize("seed", range(40))
def test_scan_window_agrees_with_the_numpy_form(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    k = Kernel(Machine.preset("laptop"), seed=0)
    lv = k.lruvec(k.root_memcg, 0)
    lv.lrugen.min_seq = [int(x) for x in rng.integers(0, 6, 2)]
    n = int(rng.integers(1, 300))
    cand = _random_folios(k, rng, n)
    if rng.random() < 0.5:
        k.pm.pinned = rng.choice(cand, int(rng.integers(1, n + 1)))
    sc = ScanControl(gfp_mask=GFP_KERNEL if rng.random() < 0.5 else GFP_NOIO,
                     reclaim_idx=int(rng.integers(0, 4)))
    tier_idx = int(rng.integers(0, 4))
    isolated = int(rng.integers(0, 64))
    remaining = int(rng.choice([n, n + 1 + int(rng.integers(0, 100))]))
    got = evict._scan_window(lv, cand, sc, tier_idx, isolated, remaining)
    monkeypatch.setattr(evict, "COMPILED", False)
    want = evict._scan_window(lv, cand, sc, tier_idx, isolated, remaining)
    assert got[4] == want[4]
    upto = got[4] if got[4] >= 0 else n
    for a, b in zip(got[:4], want[:4]):
        assert np.array_equal(np.asarray(a)[:upto], np.asarray(b)[:upto])


@pytest.mark.parametrize("seed", range(10))
def test_isolate_taken_agrees_with_isolate_folio(seed, monkeypatch):
    out = []
    for compiled in (True, False):
        rng = np.random.default_rng(seed)
        k = Kernel(Machine.preset("laptop"), seed=0)
        lv = k.lruvec(k.root_memcg, 0)
        heads = _random_folios(k, rng, 200)
        k.pm.flags[heads] |= PG_lru                # isolatable: isolate_folio checks again
        k.pm.list_gen[heads] = 1 + rng.integers(0, 4, heads.size)
        k.pm.lru_stamp[heads] = np.arange(heads.size) + 7
        monkeypatch.setattr(evict, "COMPILED", compiled)
        evict._isolate_taken(lv, heads, ScanControl())
        out.append(snapshot(k))
    assert_same(out[1], out[0])


def _pressure_run(compiled: bool, monkeypatch, swappiness=None, keep=False):
    """benchmarks/bench_pressure.py's run (cold filler over DRAM and CXL, then a hot set,
    numab2, kswapd demoting) at 1/512 scale for 3 simulated seconds."""
    monkeypatch.setattr(evict, "COMPILED", compiled)
    monkeypatch.setattr(rmap, "COMPILED", compiled)
    monkeypatch.setattr(migrate, "COMPILED", compiled)
    scale = 1 / 512
    k = Kernel(Machine.preset("zen5-cxl").scaled(scale), seed=0)
    k.sysfs["numa/demotion_enabled"] = True
    if swappiness is not None:
        k.sysfs["vm/swappiness"] = swappiness
    mib2 = 2 << 20
    wl = make_workload("cold-filler", {"filler": int(200 * 2**30 * scale) // mib2 * mib2,
                                       "hot": int(8 * 2**30 * scale) // mib2 * mib2,
                                       "nodes": [0, 2], "hot_first": True})
    e = Engine(k, wl, daemons=[NumaBalancing(None)], duration_ns=3000 * MS)
    e.run()
    k.check()
    if keep:
        return k
    snap = snapshot(k)
    snap["content"], snap["demoted_ms"] = k.pm.content.copy(), k.pm.demoted_ms.copy()
    return snap, k.vmstat.as_dict()


@pytest.mark.parametrize("swappiness", [None, 200])
def test_a_pressure_run_is_the_same_with_the_numpy_passes(monkeypatch, swappiness):
    """Same kernel state and counters with the compiled passes and with the numpy ones."""
    fast, fast_vm = _pressure_run(True, monkeypatch, swappiness)
    ref, ref_vm = _pressure_run(False, monkeypatch, swappiness)
    assert fast_vm["pgdemote_kswapd"] > 0 and fast_vm["pgscan_kswapd"] > 0
    assert fast_vm == ref_vm
    assert_same(ref, fast)


def test_rmap_walk_finds_the_numpy_forms_sites(monkeypatch):
    """rmap_walk with the compiled _add_sites and with the numpy form, over every allocated
    pfn of a machine after a pressure run (PTE and PMD mappings, demoted and promoted folios)
    and over pfns nothing maps: the same Sites in the same order."""
    k = _pressure_run(True, monkeypatch, keep=True)
    a, b = k.spawn("a"), k.spawn("b")               # THPs, and a file two mms map
    a.mmap(4 * HPAGE, thp=True, populate=True, policy="bind", nodes=[1])
    f = k.open_file("shared", 64 * PAGE)
    for mm in (a, b):
        mm.mmap(64 * PAGE, kind="file", file=f, shared=True, prot="rw", populate=True,
                policy="bind", nodes=[1])
    pm = k.pm
    used = np.flatnonzero((pm.flags & PG_lru) != 0)
    rng = np.random.default_rng(0)
    pfns = np.concatenate([used, rng.choice(pm.nr_pfns, 2000, replace=False)])
    rng.shuffle(pfns)
    got = rmap.rmap_walk(k, pfns)
    monkeypatch.setattr(rmap, "COMPILED", False)
    want = rmap.rmap_walk(k, pfns)
    assert sum(s.slots.size for s in want) > 1000 and any(s.pmd for s in want)
    assert {s.mm for s in want} >= {a, b}
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.mm is b.mm and a.pmd == b.pmd
        assert np.array_equal(a.slots, b.slots) and np.array_equal(a.pos, b.pos)
