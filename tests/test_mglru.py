"""MGLRU aging, the walk and the seed patch's scan (mglru-spec §2.6, §3, §4, §5, §6.6).

Quirk tests are named after the spec's Q-numbers; every quirk is the spec's own reading of the
code (marked "derived" in §6.5), so the tests say so in their names.
"""

import errno

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tierscan import Kernel, Machine
from tierscan.jiffies import INITIAL_JIFFIES
from tierscan.mm.constants import (
    MM_LEAF_TOTAL, MM_LEAF_YOUNG, MM_NONLEAF_ADDED, MM_NONLEAF_FOUND, PG_referenced,
    PG_workingset, PMD_SIZE,
)
from tierscan.mm.lru_gen import folio_lru_gen, lru_gen_from_seq
from tierscan.mm.vmscan import (
    LruGenMmWalk, hash_64, lru_gen_scan_lruvec, try_to_inc_max_seq,
)

PAGE = 4096


def kernel(quirks=True, caps=0x7):
    k = Kernel(Machine.preset("laptop"), seed=0, faithful_quirks=quirks, debug=True)
    k.sysfs["lru_gen/enabled"] = caps
    return k


def cxl_anon(k, mm, size, **kw):
    return mm.mmap(size, populate=True, policy="bind", nodes=[1], **kw)


def pages(vma):
    return np.arange(vma.start, vma.end, PAGE, dtype=np.uint64)


class Recorder:
    """A klruscand-like callback pair with a batch of ``cap`` pfns (v1 or v2 contract)."""

    def __init__(self, cap, contract="v2"):
        self.cap, self.contract = cap, contract
        self.batch, self.log, self.flushes, self.refused = [], [], 0, 0
        self.called_while_full = 0

    def cb(self, pfn):
        if self.contract == "v1":
            if len(self.batch) >= self.cap:
                self.refused += 1
                return -errno.EAGAIN
            self.batch.append(pfn)
            return 0
        if len(self.batch) >= self.cap:
            self.called_while_full += 1
        self.batch.append(pfn)
        return len(self.batch) >= self.cap

    def flush(self):
        self.log.extend(self.batch)
        self.batch = []
        self.flushes += 1

    def scan(self, lv, **kw):
        return lru_gen_scan_lruvec(lv, lv.lrugen.max_seq, self.cb, self.flush,
                                   contract=self.contract, **kw)


# ---- initialisation and placement (§2.6, §3.1) -------------------------------------------------
def test_lruvec_initial_state_is_max_seq_3_min_seq_0_mm_seq_2():
    k = kernel()
    lv = k.lruvec(k.root_memcg, 1)
    assert (lv.lrugen.max_seq, lv.lrugen.min_seq, lv.mm_state.seq) == (3, [0, 0], 2)
    assert lv.lrugen.timestamps == [INITIAL_JIFFIES] * 4     # jiffies at boot


def test_faulted_pages_land_in_max_seq_minus_1_without_referenced():
    k = kernel()
    mm = k.spawn("a")
    v = cxl_anon(k, mm, 4 << 20)
    heads = mm.translate(pages(v))
    assert (folio_lru_gen(k.pm, heads) == lru_gen_from_seq(2)).all()
    assert not (k.pm.flags[heads] & (PG_referenced | PG_workingset)).any()


# ---- the scan never ages (§6.6 #1) -------------------------------------------------------------
def test_scan_with_accessed_cb_never_changes_max_seq_or_min_seq():
    k = kernel()
    mm = k.spawn("a")
    cxl_anon(k, mm, 8 << 20)
    lv = k.lruvec(k.root_memcg, 1)
    before = (lv.lrugen.max_seq, list(lv.lrugen.min_seq))
    for _ in range(3):
        Recorder(100).scan(lv)
    assert (lv.lrugen.max_seq, lv.lrugen.min_seq) == before


def test_folio_found_young_twice_by_scans_moves_to_gen_of_max_seq():
    k = kernel()
    mm = k.spawn("a")
    v = cxl_anon(k, mm, 4 << 20)
    lv = k.lruvec(k.root_memcg, 1)
    Recorder(10**6).scan(lv)          # first sighting: PG_referenced only
    hot = pages(v)[::3]
    mm.access(hot, False)
    Recorder(10**6).scan(lv)          # second sighting: promoted
    gens = folio_lru_gen(k.pm, mm.translate(pages(v)))
    is_hot = np.zeros(gens.size, bool)
    is_hot[::3] = True
    assert (gens[is_hot] == lru_gen_from_seq(lv.lrugen.max_seq)).all()
    assert (gens[~is_hot] == lru_gen_from_seq(lv.lrugen.max_seq - 1)).all()
    assert (k.pm.flags[mm.translate(hot)] & PG_workingset).all()


def test_after_aging_folios_found_young_twice_are_in_the_walked_generation():
    """The walk promotes into gen(max_seq) of its time; inc_max_seq then opens an empty one, so
    they sit at new max_seq - 1 (§4.5 invariant)."""
    k = kernel(quirks=False)
    mm = k.spawn("a")
    v = cxl_anon(k, mm, 4 << 20)
    lv = k.lruvec(k.root_memcg, 1)
    assert try_to_inc_max_seq(lv, lv.lrugen.max_seq, 200, False)
    hot = pages(v)[1::4]
    mm.access(hot, True)
    seq = lv.lrugen.max_seq
    assert try_to_inc_max_seq(lv, seq, 200, False)
    assert lv.lrugen.max_seq == seq + 1
    assert (folio_lru_gen(k.pm, mm.translate(hot)) == lru_gen_from_seq(seq)).all()
    assert lv.lrugen.nr_pages[lru_gen_from_seq(seq + 1)].sum() == 0
    assert lv.mm_state.seq == seq


def test_aging_fails_when_seq_not_above_mm_state_seq():
    k = kernel()
    k.spawn("a")
    lv = k.lruvec(k.root_memcg, 1)
    assert not try_to_inc_max_seq(lv, lv.mm_state.seq, 200, True)
    assert lv.lrugen.max_seq == 3


def test_aging_with_mm_walk_off_only_bumps_mm_state_seq():
    k = kernel(caps=0x1)
    mm = k.spawn("a")
    v = cxl_anon(k, mm, 2 << 20)
    lv = k.lruvec(k.root_memcg, 1)
    assert try_to_inc_max_seq(lv, 3, 200, True)
    assert (lv.lrugen.max_seq, lv.mm_state.seq) == (4, 3)
    assert mm.young(pages(v)).all()  # iterate_mm_list_nowalk touched no PTE


# ---- v2: exactly the young set, each once (§6.6 #3) -------------------------------------------
@settings(max_examples=30, deadline=None)
@given(k_batch=st.integers(1, 300), seed=st.integers(0, 2**16), quirks=st.booleans(),
       sizes=st.lists(st.integers(1, 700), min_size=1, max_size=3))
def test_v2_interrupted_scan_reports_each_young_page_once_and_clears_it(k_batch, seed, quirks,
                                                                        sizes):
    """Cap 0x4 keeps a non-leaf batch pending during every PTE walk, so no flush can take Q1's
    path; without THPs Q2 cannot occur. Then the reported set is exact for any k."""
    k = kernel(quirks=quirks)
    mm = k.spawn("a")
    vmas = [cxl_anon(k, mm, n * PAGE) for n in sizes]
    lv = k.lruvec(k.root_memcg, 1)
    Recorder(10**7).scan(lv)            # clear the fault-time young bits
    rng = np.random.default_rng(seed)
    allp = np.concatenate([pages(v) for v in vmas])
    touched = allp[rng.random(allp.size) < 0.4]
    mm.access(touched, rng.random(touched.size) < 0.5)
    young = set(mm.translate(allp[mm.young(allp)]).tolist())
    rec = Recorder(k_batch)
    rec.scan(lv)
    rec.flush()
    assert sorted(rec.log) == sorted(young)           # exact set, each once
    assert not mm.young(allp).any()
    assert rec.called_while_full == 0


# ---- v1: one access lost per refusal (§6.3, §6.6 #4) -----------------------------------------
@pytest.mark.parametrize("quirks", [True, False])
def test_v1_loses_exactly_one_access_per_refused_pfn_as_posted(quirks):
    k = kernel(quirks=quirks)
    mm = k.spawn("a")
    v = cxl_anon(k, mm, 6 << 20)
    lv = k.lruvec(k.root_memcg, 1)
    Recorder(10**7).scan(lv)
    touched = pages(v)[::2]
    mm.access(touched, False)
    young = set(mm.translate(touched).tolist())
    rec = Recorder(100, contract="v1")
    rec.scan(lv)
    rec.flush()
    assert len(rec.log) == len(set(rec.log))
    lost = young - set(rec.log)
    assert rec.refused > 0
    if quirks:
        assert len(lost) == rec.refused
        assert not mm.young(pages(v)).any()          # the lost pages' A bits are gone too
    else:
        assert lost == set()


# ---- PMD-mapped THPs report the head pfn once (§5.7, §6.6 #2) ---------------------------------
def test_thp_is_reported_once_by_its_head_pfn_and_promoted_as_one_folio():
    k = kernel()
    k.sysfs["transparent_hugepage/enabled"] = "always"
    mm = k.spawn("a")
    v = cxl_anon(k, mm, 8 << 20)
    heads = mm.translate(np.arange(v.start, v.end, PMD_SIZE, dtype=np.uint64))
    assert (heads % 512 == 0).all() and (k.pm.order[heads] == 9).all()
    rec = Recorder(10**6)
    lv = k.lruvec(k.root_memcg, 1)
    rec.scan(lv)
    rec.flush()
    assert sorted(rec.log) == sorted(heads.tolist())
    assert not mm.young(pages(v)).any()


def test_scan_reports_only_pages_of_its_node_and_memcg():
    k = kernel()
    other = k.memcg_create("other")
    mm = k.spawn("a")
    mm2 = k.spawn("b", memcg=other)
    v1 = cxl_anon(k, mm, 2 << 20)
    v0 = mm.mmap(2 << 20, populate=True, policy="bind", nodes=[0])
    v2 = cxl_anon(k, mm2, 2 << 20)
    rec = Recorder(10**6)
    rec.scan(k.lruvec(k.root_memcg, 1))
    rec.flush()
    assert set(rec.log) == set(mm.translate(pages(v1)).tolist())
    assert mm.young(pages(v0)).all() and mm2.young(pages(v2)).all()  # untouched


def test_flush_cb_runs_at_least_once_per_visited_mm():
    k = kernel()
    for i in range(3):
        cxl_anon(k, k.spawn(f"p{i}"), 1 << 20)
    rec = Recorder(10**6)
    rec.scan(k.lruvec(k.root_memcg, 1))
    assert rec.flushes >= 3


def test_skipped_vma_keeps_its_young_bits():
    k = kernel()
    mm = k.spawn("a")
    seq_vma = cxl_anon(k, mm, 2 << 20)
    mm.madvise(seq_vma.start, 2 << 20, "sequential")   # !vma_has_recency()
    v = cxl_anon(k, mm, 2 << 20)
    rec = Recorder(10**6)
    rec.scan(k.lruvec(k.root_memcg, 1))
    rec.flush()
    assert mm.young(pages(seq_vma)).all()
    assert len(rec.log) == 512 and not mm.young(pages(v)).any()


# ---- density counters persist across a resume (§6.1, §6.4) ------------------------------------
def test_nr_total_pte_persists_across_a_resume_in_the_same_pmd():
    k = kernel(caps=0x3)                 # no non-leaf batch: the early-return path
    mm = k.spawn("a")
    cxl_anon(k, mm, 2 << 20)
    lv = k.lruvec(k.root_memcg, 1)
    walk = LruGenMmWalk()
    seen = []
    rec = Recorder(10)
    def flush():
        seen.append((walk.nr_total_pte, walk.nr_young_pte))
        rec.flush()
    lru_gen_scan_lruvec(lv, lv.lrugen.max_seq, rec.cb, flush, walk=walk)
    # flushes after 10, 20, ... young PTEs of the one table: the counts carry over
    assert seen[0] == (10, 10) and seen[1] == (20, 20)
    assert walk.mm_stats.sum() == 0 and lv.mm_state.stats[0, MM_NONLEAF_FOUND] == 1


# ---- Bloom filter (§2.5, §5.6) -----------------------------------------------------------------
def test_hash_64_matches_the_golden_ratio_definition():
    x = 0xFFFF_8880_1234_5008
    want = ((x * 0x61C8864680B583EB) % 2**64) >> 34
    assert int(hash_64(np.uint64(x), 30)) == want


def test_bloom_filter_makes_same_generation_scans_skip_sparse_tables():
    """An aging walk files dense tables in the next generation's filter; both later scans of
    that generation test it and skip the sparse tables (MM_NONLEAF_FOUND counts the rest)."""
    k = kernel(caps=0x3)                 # without the non-leaf test the filter decides
    mm = k.spawn("a")
    dense, sparse = cxl_anon(k, mm, 4 << 20), cxl_anon(k, mm, 4 << 20)
    lv = k.lruvec(k.root_memcg, 1)
    assert try_to_inc_max_seq(lv, 3, 200, False)       # clears the fault-time bits
    mm.access(pages(dense), False)
    mm.access(pages(sparse)[::16], False)              # 32 of 512 young: 32*8 < 512
    assert try_to_inc_max_seq(lv, 4, 200, False)       # builds filters[5 % 2]
    for _ in range(2):
        mm.access(pages(dense), False)
        mm.access(pages(sparse)[::16], False)
        before = lv.mm_state.stats[0].copy()
        rec = Recorder(10**6)
        rec.scan(lv)
        rec.flush()
        delta = lv.mm_state.stats[0] - before
        assert delta[MM_NONLEAF_FOUND] == 2 and delta[MM_NONLEAF_ADDED] == 2  # dense only
        assert mm.young(pages(sparse)[::16]).all()                            # skipped
        assert len(rec.log) == 1024


def test_nonleaf_young_bit_skips_untouched_tables_without_the_bloom_filter():
    k = kernel(caps=0x7)
    mm = k.spawn("a")
    a, _ = cxl_anon(k, mm, 2 << 20), cxl_anon(k, mm, 2 << 20)
    lv = k.lruvec(k.root_memcg, 1)
    Recorder(10**6).scan(lv)             # new mm: force-scanned, non-leaf bits left set
    mm.lru_gen_bitmap = ~0               # the mm ran (a context switch sets it, §2.3)
    Recorder(10**6).scan(lv)             # clears the non-leaf bits it batches
    mm.access(pages(a)[:5], False)
    before = lv.mm_state.stats[0].copy()
    rec = Recorder(10**6)
    rec.scan(lv)
    delta = lv.mm_state.stats[0] - before
    assert delta[MM_NONLEAF_FOUND] == 1       # only a's table had its non-leaf bit set
    assert delta[MM_LEAF_TOTAL] == 512 and delta[MM_LEAF_YOUNG] == 5


# ---- quirks (§6.5, all derived) ---------------------------------------------------------------
@pytest.mark.parametrize("quirks", [True, False])
def test_q1_derived_flush_on_last_pte_of_pmd_resumes_at_ulong_max(quirks):
    """§6.6 #8: one VMA, no THP, cap 0x4 off, a batch filling on the 512th PTE of the first
    table: as posted only that table is reported; the rest keeps its A bits (late, not lost)."""
    k = kernel(quirks=quirks, caps=0x3)
    mm = k.spawn("a")
    v = cxl_anon(k, mm, 8 << 20)
    rec = Recorder(512)
    rec.scan(k.lruvec(k.root_memcg, 1))
    rec.flush()
    rest = pages(v)[512:]
    if quirks:
        assert sorted(rec.log) == sorted(mm.translate(pages(v)[:512]).tolist())
        assert mm.young(rest).all()
    else:
        assert len(rec.log) == 2048 and not mm.young(rest).any()


@pytest.mark.parametrize("quirks", [True, False])
def test_q2_derived_thp_flush_without_later_bit_overshoots_past_next_vma(quirks):
    k = kernel(quirks=quirks)
    mm = k.spawn("a")
    thp = cxl_anon(k, mm, 8 << 20, thp=True)
    small = cxl_anon(k, mm, 1 << 20)               # right after, within 65 PMDs
    assert small.start - thp.end < 65 * PMD_SIZE
    rec = Recorder(4)                              # fills on the 4th and last THP
    rec.scan(k.lruvec(k.root_memcg, 1))
    rec.flush()
    assert len([p for p in rec.log if k.pm.order[p] == 9]) == 4
    if quirks:
        assert mm.young(pages(small)).all() and len(rec.log) == 4
    else:
        assert not mm.young(pages(small)).any() and len(rec.log) == 4 + 256


@pytest.mark.parametrize("quirks", [True, False])
def test_q3_derived_scan_bumps_mm_state_seq_and_blocks_aging(quirks):
    k = kernel(quirks=quirks)
    cxl_anon(k, k.spawn("a"), 1 << 20)
    lv = k.lruvec(k.root_memcg, 1)
    assert lv.mm_state.seq == lv.lrugen.max_seq - 1
    Recorder(10**6).scan(lv)
    if quirks:
        assert lv.mm_state.seq == lv.lrugen.max_seq
        assert not try_to_inc_max_seq(lv, lv.lrugen.max_seq, 200, False)
        with pytest.raises(OSError) as e:
            k.debugfs.write("lru_gen", f"+ 1 1 {lv.lrugen.max_seq} 200")
        assert e.value.errno == errno.EEXIST
    else:
        assert k.debugfs.write("lru_gen", f"+ 1 1 {lv.lrugen.max_seq} 200") > 0
        assert lv.lrugen.max_seq == 4


@pytest.mark.parametrize("quirks", [True, False])
def test_q4_derived_scan_consumes_the_mm_usage_bit(quirks):
    k = kernel(quirks=quirks)
    mm = k.spawn("a")
    cxl_anon(k, mm, 1 << 20)
    Recorder(10**6).scan(k.lruvec(k.root_memcg, 1))
    assert bool(mm.lru_gen_bitmap & (1 << 1)) is (not quirks)


@pytest.mark.parametrize("quirks", [True, False])
def test_q5_derived_force_scan_sticks_to_a_reused_walk_struct(quirks):
    """klruscand reuses one walk struct for every memcg of a node: the first memcg's new mm
    sets force_scan, which then also bypasses the second memcg's Bloom filter."""
    k = kernel(quirks=quirks, caps=0x3)
    cg = k.memcg_create("b")
    mm_b = k.spawn("b", memcg=cg)
    sparse = cxl_anon(k, mm_b, 2 << 20)
    lv_b = k.lruvec(cg, 1)
    assert try_to_inc_max_seq(lv_b, 3, 200, False)
    mm_b.access(pages(sparse)[::16], False)
    assert try_to_inc_max_seq(lv_b, 4, 200, False)     # the sparse table is not filed
    cxl_anon(k, k.spawn("a"), 1 << 20)                 # a new mm in the root memcg
    mm_b.access(pages(sparse)[::16], False)
    walk = LruGenMmWalk()
    rec = Recorder(10**6)
    lru_gen_scan_lruvec(k.lruvec(k.root_memcg, 1), 3, rec.cb, rec.flush, walk=walk)
    assert walk.force_scan
    rec_b = Recorder(10**6)
    lru_gen_scan_lruvec(lv_b, lv_b.lrugen.max_seq, rec_b.cb, rec_b.flush, walk=walk)
    rec_b.flush()
    assert len(rec_b.log) == (32 if quirks else 0)


@pytest.mark.parametrize("quirks", [True, False])
def test_q6_derived_aging_during_a_scan_cascades_ebusy(quirks):
    k = kernel(quirks=quirks)
    mms = [k.spawn(f"p{i}") for i in range(3)]
    for mm in mms:
        cxl_anon(k, mm, 1 << 20)
    lv = k.lruvec(k.root_memcg, 1)
    rec = Recorder(10**6)
    aged = []
    def flush():
        rec.flush()
        if not aged:
            aged.append(try_to_inc_max_seq(lv, lv.lrugen.max_seq, 200, True))
    lru_gen_scan_lruvec(lv, 3, rec.cb, flush)
    assert aged == [True] and lv.lrugen.max_seq == 4
    # faithful: the scan keeps iterating (-EBUSY each) and closes another iteration (Q3)
    assert lv.mm_state.seq == (4 if quirks else 3)


@pytest.mark.parametrize("quirks", [True, False])
def test_q7_derived_interrupted_table_is_counted_on_partial_density(quirks):
    k = kernel(quirks=quirks, caps=0x7)
    mm = k.spawn("a")
    v = cxl_anon(k, mm, 2 << 20)
    lv = k.lruvec(k.root_memcg, 1)
    Recorder(10**6).scan(lv)             # the new mm's forced scan: no non-leaf batch
    mm.access(pages(v), False)
    before = lv.mm_state.stats[0, MM_NONLEAF_FOUND]
    Recorder(100).scan(lv)               # the table sits in the non-leaf batch: fall-through
    found = lv.mm_state.stats[0, MM_NONLEAF_FOUND] - before
    # 512 young PTEs in batches of 100 interrupt the table 5 times (fall-through path)
    assert found == (6 if quirks else 1)


def test_mm_stats_leaf_young_never_exceeds_leaf_total():
    k = kernel()
    mm = k.spawn("a")
    v = cxl_anon(k, mm, 6 << 20)
    lv = k.lruvec(k.root_memcg, 1)
    for i in range(3):
        mm.access(pages(v)[i::5], False)
        Recorder(37).scan(lv)
    s = lv.mm_state.stats[0]
    assert s[MM_LEAF_YOUNG] <= s[MM_LEAF_TOTAL] and s[MM_NONLEAF_ADDED] <= s[MM_NONLEAF_FOUND]
