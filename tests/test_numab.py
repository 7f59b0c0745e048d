"""NUMA balancing in memory-tiering mode, "numab2" and "numab2-pghot" (promotion-spec §3, §1.2,
§1.5): what task_numa_work marks, the hint-fault latency threshold, the free-space bypass, the
promotion rate limit, the threshold adjustment, synchronous promotion vs. reporting to pghot,
and hint faults in both access models (PTE and THP).

Small scenarios on the laptop machine (node 0: 1 GiB DRAM with the CPUs, node 1: 2 GiB CXL);
workload memory starts on node 1. Most tests drive the detector by hand (mark at one time,
fault at another by ``mm.access``) so that the numbers are exact.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from conftest import machine_dict
from tierscan import Kernel, Machine
from tierscan.errors import ConfigError
from tierscan.hotness.numab import NumaBalancing, pgdat_free_space_enough
from tierscan.jiffies import INITIAL_JIFFIES as J0
from tierscan.mm.constants import _PAGE_PRESENT, _PAGE_PROTNONE
from tierscan.mm.pagetable import pte_pfn
from tierscan.promote.base import HINT_FAULT, PromotionEngine
from tierscan.sim import plugins
from tierscan.sim.config import Component
from tierscan.sim.costs import CostModel
from tierscan.sim.engine import MS, Engine
from tierscan.workload.library import make_workload

PAGE = 4096


def setup(size="16MiB", *, machine=None, model="exact", thp=False, threads=1, daemons=None,
          **kw):
    """An engine (not run) with one uniform group on node 1 and a numab2 detector. Exact-model
    kernels check the model's invariants after every operation (conftest's debug mode)."""
    k = Kernel(machine or Machine.preset("laptop"), seed=0, debug=model == "exact")
    wl = make_workload("uniform", {"size": size, "threads": threads, "duration": "600s",
                                   "thp": thp})
    d = NumaBalancing(**kw)
    e = Engine(k, wl, access_model=model, daemons=[d] + list(daemons or []),
               duration_ns=600_000 * MS)
    return k, e, d, e.groups[0]


def mark_all(k, d, ms=0):
    """One task_numa_work pass at time ``ms`` (numa_next_scan forced due)."""
    k.clock_ns = ms * MS
    t = d.tasks[0]
    t.numa_next_scan = 0
    assert d.task_numa_work(SimpleNamespace(charge=lambda ns: None, costs=CostModel()), t, 0)
    return t


def touch(k, g, first, n, ms):
    """The group's thread loads pages [first, first + n) at time ``ms``."""
    k.clock_ns = ms * MS
    g.mm.access(g.addrs[first:first + n], False, cpu_node=0)


def nodes(k, g, first, n):
    return k.node_of(g.mm.translate(g.addrs[first:first + n]))


def prot_none(g):
    e = g.mm.pt.pte[g.slots]
    return (e & (_PAGE_PRESENT | _PAGE_PROTNONE)) == _PAGE_PROTNONE


# ---- scanning (§3.2) ------------------------------------------------------------------------
def test_tiering_mode_marks_only_slow_tier_pages():
    k, e, d, g = setup("16MiB")
    g.mm.move_pages(g.addrs[:1024], 0)                   # a quarter on the DRAM node
    assert (nodes(k, g, 0, 1024) == 0).all()
    mark_all(k, d, ms=5)
    pn = prot_none(g)
    assert not pn[:1024].any()                           # toptier: never made PROT_NONE
    assert pn[1024:].all()
    marked = pte_pfn(g.mm.pt.pte[g.slots[pn]])
    assert (k.node_of(marked) == 1).all()
    assert k.vmstat["numa_pte_updates"] == 3072
    # the access time of every marked (slow-tier) folio is the marking time
    assert (d.access_time.get(marked) == (J0 + 5) & d.time_mask).all()


def test_scan_budget_256mb_per_pass_resumes_at_the_offset_and_wraps():
    k, e, d, g = setup("512MiB", model="rate")
    t = mark_all(k, d, ms=10)
    vma = g.mm.vmas[0]
    assert k.vmstat["numa_pte_updates"] == 65536         # scan_size = 256 MB of pages
    assert prot_none(g)[:65536].all() and not prot_none(g)[65536:].any()
    assert t.numa_scan_offset == vma.start + (256 << 20)
    mark_all(k, d, ms=20)
    assert prot_none(g).all()
    assert k.vmstat["numa_pte_updates"] == 131072
    seq = t.numa_scan_seq
    for ms in (30, 40, 50):                              # nothing left to mark: the scan runs
        mark_all(k, d, ms=ms)                            # to the end and wraps
    assert t.numa_scan_seq > seq
    assert k.vmstat["numa_pte_updates"] == 131072


def test_scan_skips_unmarkable_space_with_the_virtual_budget():
    """Address space with nothing to mark costs only the 8x virtual budget: 2 GB a pass."""
    k = Kernel(Machine.preset("laptop"), seed=0)
    mm = k.spawn("sparse")
    vma = mm.mmap(3 << 30)                               # never touched: no PTEs
    d = NumaBalancing()
    eng = SimpleNamespace(kernel=k, groups=[SimpleNamespace(mm=mm, threads=1, finished_ns=None)],
                          now=0, charge=lambda ns: None, costs=CostModel())
    d.start(eng)
    t = d.tasks[0]
    t.numa_next_scan = 0
    assert d.task_numa_work(eng, t, 0)
    assert t.numa_scan_offset == vma.start + (2 << 30)
    assert k.vmstat["numa_pte_updates"] == 0


def test_task_scan_start_and_max_follow_the_rss():
    d = NumaBalancing()
    mb = 256                                             # pages per MB
    assert d.task_scan_start(256 * mb) == 1000
    assert d.task_scan_start(512 * mb) == 500
    assert d.task_scan_start(1024 * mb) == 250
    assert d.task_scan_start(2560 * mb) == 100
    assert d.task_scan_start(8192 * mb) == 100           # the 1000 / (2560 / 256) floor
    assert d.task_scan_max(512 * mb) == 30000


def test_main_thread_period_becomes_task_scan_start_and_stays():
    """The main thread (node_stamp 0) switches to task_scan_start() at its first expiry, and
    slow-tier faults never adapt it afterwards (§3.2 tiering-only caveat)."""
    k, e, d, g = setup("512MiB", model="rate", main_thread_runs=True)
    e.duration_ns = 990 * MS
    e.run()
    assert d.stats["passes"] == 0                        # scan_delay: nothing before 1 s
    e.duration_ns = 1020 * MS
    e.run()
    t = d.tasks[0]
    assert d.stats["passes"] == 1 and t.scan_period[0] == 500
    assert t.numa_next_scan == J0 + 1010 + 500
    e.duration_ns = 3200 * MS
    e.run()
    assert t.scan_period[0] == 500
    assert 4 <= d.stats["passes"] <= 5


def test_worker_threads_keep_the_scan_delay_period():
    """clone(CLONE_VM) threads start with a nonzero node_stamp (init_numa_balancing), so they
    never take task_scan_start(): with only workers running, an 8-thread mm over 1 GiB
    (task_scan_start would be 250 ms) is still scanned once per second. (Every promotion here
    happens in scan sequence 0, before the first placement could double the period.)"""
    k, e, d, g = setup("1GiB", model="rate", threads=8)
    t = d.tasks[0]
    # min(task_scan_max() read as ns [sic], 1000 ms * mm_users) + 2 ticks
    assert (t.node_stamp == d.task_scan_max(d._rss(g.mm)) + 2 * 1_000_000).all()
    e.duration_ns = 10_500 * MS
    e.run()
    assert (t.scan_period == 1000).all()
    assert 9 <= d.stats["passes"] <= 10                  # at 1, 2, ..., 10 s
    assert k.vmstat["numa_pte_updates"] <= 10 * 65536    # 256 MB a pass


def test_a_running_main_thread_scans_more_often():
    k, e, d, g = setup("1GiB", model="rate", threads=8, main_thread_runs=True)
    t = d.tasks[0]
    assert t.node_stamp[0] == 0 and (t.node_stamp[1:] > 0).all()
    e.duration_ns = 10_500 * MS
    e.run()
    assert t.scan_period[0] == 250 and (t.scan_period[1:] == 1000).all()
    assert d.stats["passes"] >= 20                       # workers' 1-s gates still win some


def test_promoting_faults_double_the_period_once_per_scan_sequence():
    """A fault that promotes passes the toptier target to task_numa_fault, so the statistics
    path runs: at the first such fault of a new scan sequence the period doubles (capped by
    task_scan_max) and numa_next_scan moves out by it. Faults of the same sequence do not."""
    m = Machine.from_dict(machine_dict(["4GiB", "2GiB"]))
    k, e, d, g = setup("16MiB", machine=m, threads=2)
    t = mark_all(k, d, ms=0)                             # the pass reaches the end: seq 1
    assert t.numa_scan_seq == 1 and (t.scan_period == 1000).all()
    touch(k, g, 0, 100, ms=10)
    assert k.vmstat["pgpromote_success"] == 100
    assert (t.scan_period == 2000).all() and t.numa_next_scan == J0 + 10 + 2000
    touch(k, g, 100, 100, ms=20)                         # same sequence: no second doubling
    assert (t.scan_period == 2000).all()
    mark_all(k, d, ms=30)                                # sequence 2
    touch(k, g, 200, 100, ms=40)
    assert (t.scan_period == 4000).all()


def test_promoting_faults_of_sequence_0_leave_the_period_alone():
    """p->numa_scan_seq starts equal to the mm's (0): no placement before the first wrap."""
    m = Machine.from_dict(machine_dict(["4GiB", "2GiB"]))
    k, e, d, g = setup("512MiB", machine=m, threads=2)
    t = mark_all(k, d, ms=0)                             # 256 MB of 512: no wrap yet
    assert t.numa_scan_seq == 0
    touch(k, g, 0, 100, ms=10)
    assert k.vmstat["pgpromote_success"] == 100
    assert (t.scan_period == 1000).all()


def test_the_period_update_is_capped_by_task_scan_max():
    m = Machine.from_dict(machine_dict(["4GiB", "2GiB"]))
    k, e, d, g = setup("16MiB", machine=m, threads=2)
    t = mark_all(k, d, ms=0)                             # sequence 1
    t.scan_period[:] = 50_000
    touch(k, g, 0, 100, ms=10)
    assert d.task_scan_max(d._rss(g.mm)) == 60_000
    assert (t.scan_period == 60_000).all()


def test_reported_faults_update_the_period_too():
    """With pghot, every reported fault passes the toptier target to task_numa_fault."""
    k = Kernel(Machine.preset("laptop"), seed=0, debug=True)
    wl = make_workload("uniform", {"size": "16MiB", "threads": 2, "duration": "600s"})
    d = NumaBalancing(Recorder(), pghot=True)
    e = Engine(k, wl, access_model="exact", daemons=[d], duration_ns=600_000 * MS)
    g = e.groups[0]
    t = mark_all(k, d, ms=0)                             # sequence 1
    touch(k, g, 0, 100, ms=10)
    assert k.vmstat["pgpromote_success"] == 0            # reported, not migrated
    assert (t.scan_period == 2000).all()


def test_faults_that_do_not_promote_leave_the_period_alone():
    k, e, d, g = setup("16MiB", threads=2)               # laptop: never free-space-enough
    t = mark_all(k, d, ms=0)                             # sequence 1
    assert t.numa_scan_seq == 1
    touch(k, g, 0, 100, ms=5000)                         # latency 4980 ms: refused
    assert k.vmstat["pgpromote_success"] == 0 and k.vmstat["numa_hint_faults"] >= 100
    assert (t.scan_period == 1000).all()


# ---- the hint-fault latency threshold (§3.3) ---------------------------------------------
def test_promotes_only_under_the_latency_threshold_when_short_of_space():
    k, e, d, g = setup("16MiB")
    assert not pgdat_free_space_enough(k, 0)             # 1 GiB DRAM: never "enough"
    mark_all(k, d, ms=0)
    # the first candidate after boot takes the first threshold step (the unsigned-int ms
    # clock starts 2^32 - 300,000 ahead of nbp_th_start = 0): too few candidates, 1000 -> 1125
    touch(k, g, 0, 100, ms=1124)                         # latency 1124 < 1125
    touch(k, g, 100, 100, ms=1125)                       # latency 1125: refused (N4)
    assert (nodes(k, g, 0, 100) == 0).all()
    assert (nodes(k, g, 100, 100) == 1).all()
    assert k.vmstat["numa_hint_faults"] == 200
    assert k.vmstat["pgpromote_candidate"] == 100        # only those past the threshold
    assert k.vmstat["pgpromote_success"] == 100
    assert k.vmstat["numa_pages_migrated"] == 100
    assert k.vmstat["pgpromote_candidate_nrl"] == 0
    # the fault swapped the stamp to the fault time: an unmarked refault would see latency 0
    pfns = g.mm.translate(g.addrs[100:101])
    assert d.access_time.get(pfns)[0] == (J0 + 1125) & d.time_mask


def test_hot_threshold_ms_is_a_knob():
    k, e, d, g = setup("16MiB", hot_threshold_ms=200)
    mark_all(k, d, ms=0)
    touch(k, g, 0, 10, ms=199)
    touch(k, g, 10, 10, ms=250)
    assert k.vmstat["pgpromote_success"] == 10
    assert (nodes(k, g, 10, 10) == 1).all()


def test_free_space_bypass_promotes_regardless_of_latency():
    m = Machine.from_dict(machine_dict(["4GiB", "2GiB"]))
    k, e, d, g = setup("16MiB", machine=m)
    assert pgdat_free_space_enough(k, 0)
    d.state.nbp_threshold[0] = 500
    mark_all(k, d, ms=0)
    touch(k, g, 0, 4096, ms=50_000)                      # latency 50 s >> threshold
    assert (nodes(k, g, 0, 4096) == 0).all()
    assert k.vmstat["pgpromote_candidate_nrl"] == 4096   # N1
    assert k.vmstat["pgpromote_candidate"] == 0
    assert k.vmstat["pgpromote_success"] == 4096
    assert d.state.nbp_threshold[0] == 0                 # "workload changed": reset


def test_free_space_bypass_ends_when_free_memory_drops_to_the_mark():
    """I6: candidates count as _nrl only while free > PROMO + max(1 GiB, present/16); the rest
    of the same batch goes through the threshold and the rate limit."""
    m = Machine.from_dict(machine_dict(["1040MiB", "2GiB"]))
    k, e, d, g = setup("16MiB", machine=m)
    pm = k.pm
    room = int(pm.node_free[0] - pm.watermarks[0, 3] - 262144)
    assert 0 < room < 4096
    mark_all(k, d, ms=0)
    touch(k, g, 0, 4096, ms=10)
    assert k.vmstat["pgpromote_candidate_nrl"] == room
    assert k.vmstat["pgpromote_candidate"] == 4096 - room
    assert not pgdat_free_space_enough(k, 0)


# ---- the rate limit (§1.5, §3.3) -----------------------------------------------------------
def test_rate_limit_caps_promoted_pages_per_one_second_window():
    k, e, d, g = setup("16MiB", promote_rate_limit_mbps=1)   # 1 MB/s = 256 pages/s
    assert d.rate_limit_pages == 256
    mark_all(k, d, ms=0)
    touch(k, g, 0, 4096, ms=10)         # the first candidate opens a window (the ms clock
    assert k.vmstat["pgpromote_candidate"] == 4096      # is far past nbp_rl_start = 0)
    assert k.vmstat["pgpromote_success"] == 256
    mark_all(k, d, ms=1200)
    touch(k, g, 0, 4096, ms=1500)       # a new window opens at its first candidate
    assert k.vmstat["pgpromote_success"] == 256 + 256    # N5: <= limit + one folio
    mark_all(k, d, ms=1600)
    touch(k, g, 0, 4096, ms=2400)       # same window: nothing more
    assert k.vmstat["pgpromote_success"] == 512
    mark_all(k, d, ms=2450)
    touch(k, g, 0, 4096, ms=2501)       # > 1000 ms after 1500: a new window
    assert k.vmstat["pgpromote_success"] == 768
    assert k.vmstat["numa_pages_migrated"] == 768


def test_rate_limit_caps_promotion_rate_in_a_run():
    k, e, d, g = setup("64MiB", model="rate", promote_rate_limit_mbps=1, scan_delay_ms=100)
    e.duration_ns = 6000 * MS
    e.run()
    promoted = k.vmstat["pgpromote_success"]
    times = np.concatenate(d.promoted_ns) / MS
    assert promoted > 0
    # windows open at most every 1001 ms after the first candidate
    windows = int((6000 - times.min()) // 1001) + 1
    assert promoted <= windows * 257
    assert k.vmstat["pgpromote_candidate"] > promoted    # the limit refused candidates
    assert d.stats["rate_limited"] > 0


# ---- threshold adjustment (§1.5, §3.4) -----------------------------------------------------
def test_threshold_adjustment_moves_towards_the_rate_limit():
    k, e, d, g = setup("16MiB", promote_rate_limit_mbps=1)   # ref_cand = 256 * 60 = 15360
    s = d.state
    rl = d.rate_limit_pages

    def adjust(ms, candidates):
        k.clock_ns = ms * MS
        k.vmstat.count("pgpromote_candidate", 0, candidates)
        d.numa_promotion_adjust_threshold(0, rl, 1000)
        return int(s.nbp_threshold[0])

    # at boot the unsigned-int ms clock is 2^32 - 300,000, 60 s past nbp_th_start = 0
    assert adjust(0, 0) == 1125                          # too few candidates: raise (slower)
    assert adjust(60_000, 0) == 1125                     # not yet 60 s since that step
    assert adjust(60_001, 0) == 1250
    assert adjust(90_000, 0) == 1250                     # at most once per 60 s
    assert adjust(120_002, 20_000) == 1125               # too many (> 1.1 x 15360): lower
    assert adjust(180_003, 15_360) == 1125               # within +-10%: keep
    th = [adjust(180_004 + 60_001 * i, 10**6) for i in range(1, 12)]
    assert th[-1] == 125 and min(th) == 125              # floor: one unit
    th = [adjust(900_000 + 60_001 * i, 0) for i in range(1, 20)]
    assert th[-1] == 2000 and max(th) == 2000            # ceiling: 2 x hot_threshold_ms
    assert all(x % 125 == 0 for x in th)                 # N2


def test_threshold_falls_in_a_run_where_the_rate_limit_binds():
    """1 MB/s against 16384 slow pages all faulting within ms of their marking: ~16k
    candidates a second, far above ref_cand = 256 * 60 per minute. The first step, at the
    first candidate after boot, sees no candidates yet and raises the threshold one unit; the
    next, 60 s later, lowers it by one."""
    k, e, d, g = setup("64MiB", model="rate", promote_rate_limit_mbps=1)
    e.duration_ns = 59_000 * MS
    e.run()
    assert d.state.nbp_threshold[0] == 1125              # the step at the first candidate
    e.duration_ns = 90_000 * MS
    e.run()
    assert d.state.nbp_threshold[0] == 1000
    assert k.vmstat["pgpromote_candidate"] > 16896


# ---- pghot source (§1.2) -------------------------------------------------------------------
class Recorder(PromotionEngine):
    name = "recorder"

    def __init__(self):
        super().__init__()
        self.calls = []

    def record_access(self, pfns, nid, src, now_jiffies):
        self.calls.append((np.array(pfns, np.int64), nid, src, now_jiffies))


@pytest.mark.parametrize("model", ["rate", "exact"])
def test_numab2_pghot_reports_hint_faults_instead_of_migrating(model):
    rec = Recorder()
    k = Kernel(Machine.preset("laptop"), seed=0)
    wl = make_workload("uniform", {"size": "16MiB", "duration": "1s"})
    d = NumaBalancing(rec, pghot=True, scan_delay_ms=100)
    assert d.name == "numab2-pghot"
    e = Engine(k, wl, access_model=model, daemons=[d, rec], duration_ns=400 * MS)
    g = e.groups[0]
    before = g.mm.translate(g.addrs).copy()
    e.run()
    assert rec.calls
    faults = k.vmstat["numa_hint_faults"]
    reported = np.concatenate([c[0] for c in rec.calls])
    assert reported.size == faults                       # one report per faulted folio
    assert all(c[1] == 0 and c[2] == HINT_FAULT for c in rec.calls)
    assert all(J0 + 100 <= c[3] <= J0 + 400 for c in rec.calls)    # jiffies of the fault
    assert (k.node_of(reported) == 1).all()              # lower-tier head pfns
    assert np.isin(reported, before).all()
    assert k.vmstat["pgpromote_success"] == 0 and k.vmstat["numa_pages_migrated"] == 0
    assert k.vmstat["pgpromote_candidate"] == 0
    assert (g.mm.translate(g.addrs) == before).all()     # nothing moved


def test_numab2_pghot_needs_an_engine():
    k = Kernel(Machine.preset("laptop"), seed=0)
    with pytest.raises(ConfigError, match="promotion engine"):
        plugins.build(plugins.DETECTORS, "detector", Component("numab2-pghot"), k,
                      CostModel(), None)
    with pytest.raises(ConfigError, match="scan_size_mb"):
        plugins.build(plugins.DETECTORS, "detector",
                      Component("numab2", {"scan_size_mb": 0}), k, CostModel(), None)
    with pytest.raises(ConfigError, match="unknown key"):
        plugins.build(plugins.DETECTORS, "detector",
                      Component("numab2", {"hot_treshold_ms": 5}), k, CostModel(), None)
    [d] = plugins.build(plugins.DETECTORS, "detector",
                        Component("numab2", {"promote_rate_limit_mbps": 100}), k,
                        CostModel(), None)
    assert d.name == "numab2" and d.rate_limit_pages == 100 * 256
    assert d.hot_threshold_ms == 1000 and d.scan_size_mb == 256


# ---- both access models, PTEs and THPs -----------------------------------------------------
@pytest.mark.parametrize("model", ["rate", "exact"])
@pytest.mark.parametrize("thp", [False, True])
def test_hint_faults_go_through_the_hook_in_both_models(model, thp):
    k, e, d, g = setup("16MiB", model=model, thp=thp, scan_delay_ms=100)
    seen = []
    hook = k.numa_hint_fault_hook

    def spy(mm, pfns, writes, cpu_nid):
        seen.append(k.node_of(pfns))
        hook(mm, pfns, writes, cpu_nid)

    k.numa_hint_fault_hook = spy
    e.duration_ns = 400 * MS
    e.run()
    faults = k.vmstat["numa_hint_faults"]
    assert faults > 0
    assert d.stats["faults"] == faults                   # every fault reached the detector
    assert (np.concatenate(seen) == 1).all()             # N3: only slow-tier pages fault
    assert k.vmstat["numa_hint_faults_local"] == 0
    if thp:
        assert k.vmstat["numa_huge_pte_updates"] == 8
        assert k.vmstat["numa_pte_updates"] == 8 * 512
        assert k.vmstat["thp_migration_success"] == k.vmstat["pgpromote_success"] // 512 > 0
    else:
        assert k.vmstat["numa_huge_pte_updates"] == 0
    assert k.vmstat["pgpromote_success"] > 0
    assert k.vmstat["pgpromote_success"] == k.vmstat["numa_pages_migrated"]
    # migrations ran in the faulting group's context; the scan is the detector's CPU time
    assert e.accounting.cpu_ns["numab2"] > 0
    k.check()


def test_scan_cost_can_be_charged_to_the_task():
    k, e, d, g = setup("16MiB", model="rate", scan_delay_ms=100, scan_cost="task")
    e.duration_ns = 300 * MS
    e.run()
    assert d.stats["passes"] >= 1
    assert e.accounting.cpu_ns.get("numab2", 0.0) == 0.0


def test_everything_hot_is_promoted_in_a_full_run():
    """Uniform access over 64 MiB: each page is touched within ms of its marking, so
    everything is promoted by the first pass's faults (replay target (a), §7.1)."""
    k, e, d, g = setup("64MiB", model="rate", threads=2)
    e.duration_ns = 3000 * MS
    e.run()
    assert k.vmstat["pgpromote_success"] == 16384
    assert (nodes(k, g, 0, 16384) == 0).all()
    assert d.stats["latency_refused"] == 0


def test_vma_pids_forced_scans_one_skipped_vma_per_pass():
    """task_numa_work() (kernel/sched/fair.c, 6.8+): when the VMA loop ends and a VMA was
    skipped because vma_is_accessed() said no, it retries from numa_scan_offset with
    vma_pids_forced and scans the first such VMA, then stops (one forced VMA per pass). Without
    it, VMAs with no recent faults wait for numa_scan_seq > prev_scan_seq + nr_threads."""
    k = Kernel(Machine.preset("laptop"), seed=0)
    mm = k.spawn("p")
    a = mm.mmap(4 << 20, populate=True, policy="bind", nodes=[1])
    b = mm.mmap(4 << 20, populate=True, policy="bind", nodes=[1])
    d = NumaBalancing()
    eng = SimpleNamespace(kernel=k, groups=[SimpleNamespace(mm=mm, threads=8, finished_ns=None)],
                          now=0, charge=lambda ns: None, costs=CostModel())
    d.start(eng)
    t = d.tasks[0]
    slots = {v: np.arange(v.start_slot, v.end_slot) for v in (a, b)}

    def marked(v):
        e = mm.pt.pte[slots[v]]
        return bool(((e & (_PAGE_PRESENT | _PAGE_PROTNONE)) == _PAGE_PROTNONE).all())

    def scan(ms):
        k.clock_ns = ms * MS
        t.numa_next_scan = 0
        assert d.task_numa_work(eng, t, 0)

    scan(2000)
    scan(3000)                                  # sequences 0 and 1 scan every VMA
    assert t.numa_scan_seq == 2 and marked(a) and marked(b)
    for v in (a, b):                            # present again, with no hint fault taken
        e = mm.pt.pte[slots[v]]
        mm.pt.pte[slots[v]] = (e & ~_PAGE_PROTNONE) | _PAGE_PRESENT
    scan(4000)                                  # both skipped: a is forced
    assert marked(a) and not marked(b)
    assert t.numa_scan_offset == a.end
    scan(5000)                                  # b is skipped, then forced
    assert marked(b)


# ---- the tiering series, step by step (tiering_step) ---------------------------------------
def test_base_step_promotes_every_faulting_slow_page():
    """"base" (5.18): no latency test, no free-space test: a fault far past the threshold
    still promotes."""
    for step, promoted in (("base", 10), ("hot-selection", 0)):
        k, e, d, g = setup("16MiB", hot_threshold_ms=200, tiering_step=step)
        mark_all(k, d, ms=0)
        touch(k, g, 0, 10, ms=5_000)
        assert k.vmstat["pgpromote_success"] == promoted, step
        assert d.stats["latency_refused"] == 10 - promoted


def test_hot_selection_step_keeps_the_threshold_fixed():
    """Without the auto-threshold patch nbp_threshold never moves from hot_threshold_ms: the
    full series raises it to 1125 ms at the first candidate after boot (see
    test_threshold_adjustment_moves_towards_the_rate_limit), so a 1050-ms fault promotes only
    there."""
    for step, promoted in (("rate-limit", 0), ("hot-selection", 0), ("auto-threshold", 10)):
        k, e, d, g = setup("16MiB", tiering_step=step)
        mark_all(k, d, ms=0)
        touch(k, g, 0, 10, ms=1_050)
        assert k.vmstat["pgpromote_success"] == promoted, step
        assert int(d.state.nbp_threshold[0]) == (1125 if step == "auto-threshold" else 0)


def test_rate_limit_step_limits_and_earlier_steps_do_not():
    """1 MB/s = 256 pages per 1-s window; 1024 hot faults in one window."""
    for step in ("hot-selection", "rate-limit"):
        k, e, d, g = setup("16MiB", promote_rate_limit_mbps=1, tiering_step=step)
        mark_all(k, d, ms=0)
        touch(k, g, 0, 1024, ms=10)
        assert k.vmstat["pgpromote_candidate"] == 1024, step
        moved = k.vmstat["pgpromote_success"]
        if step == "rate-limit":
            assert moved == 256 and d.stats["rate_limited"] == 768
        else:
            assert moved == 1024 and d.stats["rate_limited"] == 0


def test_tiering_step_is_validated():
    plugins.load_all()
    k = Kernel(Machine.preset("laptop"), seed=0)
    (d,) = plugins.build(plugins.DETECTORS, "detector",
                         Component("numab2", {"tiering_step": "base"}), k, CostModel(), None)
    assert d.step == 0
    with pytest.raises(ConfigError) as ei:
        plugins.build(plugins.DETECTORS, "detector",
                      Component("numab2", {"tiering_step": "v2"}, path="detectors[0]",
                                where="exp.toml"), k, CostModel(), None)
    assert str(ei.value).startswith("exp.toml: detectors[0].tiering_step: expected one of "
                                    "'base', 'hot-selection'")
