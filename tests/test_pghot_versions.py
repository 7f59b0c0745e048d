"""pghot v1 / v2 (promote/pghot_hashheap.py; promotion-spec §1.6) and the one-name engine
selection ``[engine] name = "pghot"``, ``version`` = v0..v3: each version is told apart by a
behaviour its posting defines."""

import numpy as np
import pytest
from test_promote import FakeEngine, at, big_dram, cxl_pages, laptop, report, vm

from tierscan.errors import ConfigError
from tierscan.promote.pghot_hashheap import PghotHashHeap, PghotV2
from tierscan.sim import plugins
from tierscan.sim.config import Component


def engine_of(version, k, **params):
    plugins.load_all()
    comp = Component("pghot", {"version": version, **params}, path="engine", where="exp.toml")
    return plugins.build(plugins.ENGINES, "engine", comp, k, None)


def run_threads(daemons, k, ms):
    """Every promotion thread of the engine, once, at ``ms``."""
    at(k, ms)
    for d in daemons[1:]:
        d.run(FakeEngine(k))


@pytest.mark.parametrize("version, reports_needed", [("v0", 2), ("v1", 2), ("v2", 2),
                                                     ("v3", 3)])
def test_reports_a_page_needs_by_version(version, reports_needed):
    """v0 (intended rule), v1 and v2: frequency >= 2 (KPRMOTED_FREQ_THRESHOLD); v3: READY
    when frequency > 2. The same reports 100 ms apart, then each version's threads run."""
    for n in (reports_needed - 1, reports_needed):
        k = big_dram()
        mm, addrs, pfns = cxl_pages(k, 8)
        ds = engine_of(version, k)
        report(ds[0], pfns, [1000 + 100 * i for i in range(n)])
        run_threads(ds, k, 1000 + 100 * n)
        promoted = (k.node_of(mm.translate(addrs)) == 0).all()
        assert promoted == (n == reports_needed), (version, n)


def test_v1_heap_pops_the_hottest_first_and_batches():
    """kpromoted pops the heap's tops by frequency, ``batch`` (1024) records per wake-up."""
    k = big_dram()
    mm, addrs, pfns = cxl_pages(k, 12)
    e, thread = engine_of("v1", k, batch=4)
    report(e, pfns[:4], [1000, 1010])               # frequency 2
    report(e, pfns[4:8], [1000, 1010, 1020, 1030])  # frequency 4
    report(e, pfns[8:], [1000])                     # 1: hash only, never in the heap
    assert vm(k, "pghot_records_hash") == 12 and vm(k, "pghot_records_heap") == 8
    assert e.heap_nr[0] == 8
    run_threads([e, thread], k, 1040)
    nodes = k.node_of(mm.translate(addrs))
    assert nodes.tolist() == [1] * 4 + [0] * 4 + [1] * 4
    run_threads([e, thread], k, 1060)
    assert (k.node_of(mm.translate(addrs)) == 0).sum() == 8
    assert not e.in_heap.any() and e.heap_nr[0] == 0


def test_v1_drops_stale_and_misplaced_records():
    """phi_is_pfn_hot(): last reported more than 2 windows ago, or already on the target."""
    k = big_dram()
    mm, addrs, pfns = cxl_pages(k, 6)
    e, thread = engine_of("v1", k)
    report(e, pfns[:3], [1000, 1100])
    report(e, pfns[3:], [1000, 1100], nid=1)        # target node 1: where they are
    run_threads([e, thread], k, 1100 + 10_001)
    assert vm(k, "kpromoted_cold_old") == 3 and vm(k, "kpromoted_dropped") == 3
    assert (k.node_of(mm.translate(addrs)) == 1).all()
    assert not e.present[e.lower.index(pfns[:3], np.ones(3, np.int64))].any()


def test_hint_faults_are_a_source_from_v2_on():
    """v1 knows only HW_HINTS and PGTABLE_SCAN (-EINVAL after counting the access); v2 made
    NUMAB2 a pure source."""
    for cls, taken in ((PghotHashHeap, 0), (PghotV2, 4)):
        k = big_dram()
        mm, addrs, pfns = cxl_pages(k, 4)
        e = cls(k)
        report(e, pfns, [1000], src="hintfault")
        assert vm(k, "pghot_recorded_accesses") == 4
        assert vm(k, "pghot_recorded_hintfaults") == taken


def test_v2_frequency_saturates_at_3_bits():
    k = big_dram()
    mm, addrs, pfns = cxl_pages(k, 2)
    v1, v2 = PghotHashHeap(k), PghotV2(k)
    for e in (v1, v2):
        report(e, pfns, range(1000, 1012))
    i = v1.lower.index(pfns, np.ones(2, np.int64))
    assert v1.freq[i].tolist() == [12, 12] and v2.freq[i].tolist() == [7, 7]


def test_v2_admission_refuses_stale_records_when_dram_is_not_free_enough():
    """v2 moved NUMAB2's admission into pghot: with the target short of free space, a record
    last reported more than the 5000-ms threshold ago is refused. v1 has no admission: it
    promotes it (it is not yet 2 windows old)."""
    for version, moved in (("v1", 4), ("v2", 0)):
        k = laptop()                                 # 1 GiB DRAM: never free-space-enough
        mm, addrs, pfns = cxl_pages(k, 4)
        ds = engine_of(version, k)
        report(ds[0], pfns, [1000, 1100])
        run_threads(ds, k, 1100 + 6000)
        assert (k.node_of(mm.translate(addrs)) == 0).sum() == moved, version
        if version == "v2":
            assert vm(k, "pghot_kmigrated_refused_latency") == 4


def test_bad_version_is_one_line_error_naming_the_field():
    with pytest.raises(ConfigError) as ei:
        engine_of("v4", laptop())
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith("exp.toml: engine.version:") and "'v3'" in msg
    # the chosen engine's own keys are checked under the same path
    with pytest.raises(ConfigError) as ei:
        engine_of("v1", laptop(), literal=True)
    assert str(ei.value).startswith("exp.toml: engine.literal: unknown key")
