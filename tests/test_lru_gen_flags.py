"""Folio flag transitions, aging predicates and the walk's lock and resched paths
(mglru-spec §2.1, §3.4–§3.7, §4.1, §5.5–§5.8)."""

import errno

import numpy as np
import pytest

from tierscan import Kernel, Machine
from tierscan.mm.constants import (
    MM_NONLEAF_ADDED, PG_referenced, PG_workingset, PMD_SIZE, PUD_SIZE,
)
from tierscan.mm.lru_gen import (
    folio_inc_gen, folio_lru_gen, folio_lru_refs, folio_update_gen, lru_gen_from_seq,
    lru_gen_inc_refs, lru_gen_set_refs, lru_tier_from_refs,
)
from tierscan.mm.vmscan import (
    LruGenMmWalk, lru_gen_scan_lruvec, should_run_aging, try_to_inc_max_seq,
)
from tierscan.mm.walk_kernels import commit_young

PAGE = 4096


def setup(n_pages=64, **kw):
    k = Kernel(Machine.preset("laptop"), seed=0, debug=True, **kw)
    mm = k.spawn("a")
    v = mm.mmap(n_pages * PAGE, populate=True, policy="bind", nodes=[1])
    heads = mm.translate(np.arange(v.start, v.end, PAGE, dtype=np.uint64))
    return k, mm, v, heads, k.lruvec(k.root_memcg, 1)


@pytest.mark.parametrize("refs,ws,tier", [(0, 0, 0), (1, 0, 0), (2, 0, 1), (3, 0, 2),
                                          (4, 0, 2), (0, 1, 3), (4, 1, 3)])
def test_lru_tier_from_refs(refs, ws, tier):
    assert lru_tier_from_refs(np.array([refs]), np.array([ws]))[0] == tier


def test_lru_gen_inc_refs_counts_up_then_sets_workingset():
    k, mm, v, heads, lv = setup(1)
    pm, h = k.pm, heads[:1]
    assert folio_lru_refs(pm, h)[0] == 0
    for want in (1, 2, 3, 4):
        lru_gen_inc_refs(pm, h)
        assert folio_lru_refs(pm, h)[0] == want
    assert not pm.flags[h[0]] & PG_workingset
    lru_gen_inc_refs(pm, h)                 # refs bits saturated: workingset
    assert pm.flags[h[0]] & PG_workingset and folio_lru_refs(pm, h)[0] == 4


def test_lru_gen_set_refs_second_call_activates():
    k, mm, v, heads, lv = setup(1)
    assert not lru_gen_set_refs(k.pm, heads)[0]
    assert k.pm.flags[heads[0]] & PG_referenced
    assert lru_gen_set_refs(k.pm, heads)[0]
    assert k.pm.flags[heads[0]] & PG_workingset and not k.pm.flags[heads[0]] & PG_referenced


def test_folio_update_gen_numpy_and_walk_kernel_agree():
    """lru_gen.folio_update_gen and the walk's compiled copy (commit_young) implement one
    rule: run both over the same folios in the same flag states and compare."""
    k, mm, v, heads, lv = setup(64)
    pm = k.pm
    rng = np.random.default_rng(0)
    pm.flags[heads[rng.random(64) < 0.5]] |= PG_referenced
    pm.flags[heads[rng.random(64) < 0.3]] |= PG_workingset
    flags0, refs0 = pm.flags.copy(), pm.lru_gen_refs.copy()
    gen = lru_gen_from_seq(lv.lrugen.max_seq)
    old = folio_update_gen(pm, heads, gen)
    flags1, refs1 = pm.flags.copy(), pm.lru_gen_refs.copy()
    pm.flags[:], pm.lru_gen_refs[:] = flags0, refs0
    nr = np.zeros((4, 2, 4), np.int64)
    table = np.full(heads.size, np.uint64(0x20))
    moved = commit_young(table, np.arange(heads.size), heads, np.arange(1, heads.size + 1), gen,
                         pm.flags, pm.lru_gen_refs, pm.order, int(pm.node_zone[1]), nr)
    assert (pm.flags == flags1).all() and (pm.lru_gen_refs == refs1).all()
    assert moved == int(((old >= 0) & (old != gen)).sum())
    assert (table & np.uint64(0x20) == 0).all()
    pm.flags[:], pm.lru_gen_refs[:] = flags0, refs0   # leave the kernel consistent


def test_folio_inc_gen_moves_one_gen_past_min_seq_unless_promoted():
    k, mm, v, heads, lv = setup(4, faithful_quirks=False)
    try_to_inc_max_seq(lv, 3, 200, True)
    try_to_inc_max_seq(lv, 4, 200, True)
    pm = k.pm
    g = lv.lrugen
    # folios faulted at max_seq 3 sit in gen 2; after two agings min_seq = 2
    assert g.min_seq == [2, 2] and (folio_lru_gen(pm, heads) == 2).all()
    promoted = heads[:1]
    folio_update_gen(pm, promoted, lru_gen_from_seq(g.max_seq))   # first: referenced only
    folio_update_gen(pm, promoted, lru_gen_from_seq(g.max_seq))   # second: moves
    lv.lrugen.nr_pages[2, 0, int(pm.node_zone[1])] -= 1
    lv.lrugen.nr_pages[lru_gen_from_seq(g.max_seq), 0, int(pm.node_zone[1])] += 1
    new = folio_inc_gen(lv, heads, reclaiming=False)
    assert new[0] == lru_gen_from_seq(g.max_seq)          # already promoted: unchanged
    assert (new[1:] == 3).all()                           # (old + 1) % 4
    assert not (pm.flags[heads[1:]] & PG_referenced).any()
    k.check()


def test_should_run_aging():
    k, mm, v, heads, lv = setup(8, faithful_quirks=False)
    g = lv.lrugen
    # 4 gens, min_seq 0: ems + 2 <= max_seq, so not needed; nr counts the evictable pages
    needed, nr = should_run_aging(lv, g.max_seq, 200)
    assert (needed, nr) == (False, 8)
    for seq in (3, 4):
        try_to_inc_max_seq(lv, seq, 200, True)
    g.min_seq = [g.max_seq - 1, g.max_seq - 1]   # only two gens left
    assert should_run_aging(lv, g.max_seq, 200) == (True, 0)
    g.min_seq = [g.max_seq - 2, g.max_seq - 2]   # three gens: ems + 2 == max_seq
    assert should_run_aging(lv, g.max_seq, 200)[0]


def test_need_resched_pte_budget_ends_a_round_at_a_pud_boundary():
    """walk_pud_range checks need_resched() after each PUD: a budget of 1 PTE ends the round
    after the first PUD, resuming at the next one (-EAGAIN), so a two-PUD mm takes two
    rounds and flush_cb runs between them."""
    k = Kernel(Machine.preset("laptop"), seed=0, debug=True)
    mm = k.spawn("a")
    v = mm.mmap(PUD_SIZE + PMD_SIZE, populate=False, policy="bind", nodes=[1])
    mm.access(np.array([v.start, v.start + PUD_SIZE], dtype=np.uint64), True)
    lv = k.lruvec(k.root_memcg, 1)
    flushes = []
    walk = LruGenMmWalk(pte_budget=1)
    got = []
    lru_gen_scan_lruvec(lv, lv.lrugen.max_seq, lambda p: (got.append(p), False)[1],
                        lambda: flushes.append(len(got)), walk=walk)
    assert flushes == [1, 2] and len(got) == 2


def test_ptl_trylock_failure_keeps_the_table_suitable():
    """A PTE table whose PTL cannot be taken is not walked but is kept in the next Bloom
    filter (walk_pte_range returns suitable = true, mglru-spec §5.8)."""
    k, mm, v, heads, lv = setup(512)
    walk = LruGenMmWalk(trylock=lambda what: what != "ptl")
    got = []
    lru_gen_scan_lruvec(lv, lv.lrugen.max_seq, lambda p: (got.append(p), False)[1],
                        lambda: None, walk=walk)
    assert got == [] and mm.young(np.arange(v.start, v.end, PAGE, dtype=np.uint64)).all()
    assert lv.mm_state.stats[0, MM_NONLEAF_ADDED] == 1


def test_pmd_lock_failure_drops_the_thp_batch():
    k = Kernel(Machine.preset("laptop"), seed=0, debug=True)
    mm = k.spawn("a")
    v = mm.mmap(4 * PMD_SIZE, populate=True, thp=True, policy="bind", nodes=[1])
    lv = k.lruvec(k.root_memcg, 1)
    walk = LruGenMmWalk(trylock=lambda what: what != "pmd")
    got = []
    lru_gen_scan_lruvec(lv, lv.lrugen.max_seq, lambda p: (got.append(p), False)[1],
                        lambda: None, walk=walk)
    assert got == []
    assert mm.young(np.arange(v.start, v.end, PMD_SIZE, dtype=np.uint64)).all()


def test_mmap_lock_failure_makes_try_walk_mm_return_ebusy():
    from tierscan.mm.vmscan import try_walk_mm
    k, mm, v, heads, lv = setup(8)
    walk = LruGenMmWalk(lruvec=lv, seq=lv.lrugen.max_seq, trylock=lambda what: what != "mmap")
    assert try_walk_mm(mm, walk) == -errno.EBUSY
    walk.seq -= 1
    assert try_walk_mm(mm, walk) == -errno.EBUSY  # stale seq


def test_max_lru_batch_ends_an_aging_round_at_a_pud_boundary(monkeypatch):
    """More than MAX_LRU_BATCH (4096) folios promoted in one PUD: walk_pud_range stops at
    the PUD boundary and try_walk_mm applies the batch (reset_batch_size), so the promoting
    walk applies two batches instead of one."""
    from tierscan.mm import vmscan
    applied = []
    real = vmscan.reset_batch_size
    monkeypatch.setattr(vmscan, "reset_batch_size",
                        lambda walk: (applied.append(walk.batched), real(walk))[1])
    k = Kernel(Machine.preset("laptop"), seed=0, debug=True, faithful_quirks=False)
    mm = k.spawn("a")
    v = mm.mmap(PUD_SIZE + 32 * PMD_SIZE, populate=False, policy="bind", nodes=[1])
    first = np.arange(v.start, v.start + 5000 * PAGE, PAGE, dtype=np.uint64)
    second = np.arange(v.start + PUD_SIZE, v.start + PUD_SIZE + 8 * PAGE, PAGE, dtype=np.uint64)
    mm.access(np.concatenate([first, second]), True)
    lv = k.lruvec(k.root_memcg, 1)
    assert try_to_inc_max_seq(lv, 3, 200, True)          # first sighting
    mm.access(np.concatenate([first, second]), True)
    applied.clear()
    assert try_to_inc_max_seq(lv, 4, 200, True)          # promotes 5008 folios
    assert applied == [5000, 8]
    gens = folio_lru_gen(k.pm, mm.translate(np.concatenate([first, second])))
    assert (gens == lru_gen_from_seq(4)).all()
    k.check()
