"""The per-list LRU index (mm/lru_index.py): reclaim reads what it takes, not the node's pfn
range, and gives exactly what the whole-range reference gives."""

import numpy as np
import pytest
from conftest import machine_dict

from tierscan.mm.lru_index import LruIndex, lru_index
from tierscan.mm.evict import ScanControl

CLASSIC = 0


def _run(reference: bool, lru: int, detector):
    from test_pressure_engine import WSS_MACHINE, run

    def setup(k):
        if reference:
            k.pm.lru_index = False
    return run({"name": "wss-larger", "size": "32MiB", "alpha": 1.1, "populate": True},
               [detector], None, duration="2s", machine=WSS_MACHINE, debug=True,
               sysfs={"kernel/numa_balancing": 2, "lru_gen/enabled": lru}, setup=setup)


@pytest.mark.parametrize("lru", [0x7, CLASSIC], ids=["mglru", "classic"])
def test_indexed_reclaim_matches_the_whole_range_reference(lru):
    fast, ref = _run(False, lru, {"name": "numab2"}), _run(True, lru, {"name": "numab2"})
    assert fast.kernel.pm.lru_index and ref.kernel.pm.lru_index is False
    vm_f, vm_r = fast.kernel.vmstat, ref.kernel.vmstat
    assert vm_f["pgdemote_kswapd"] > 0                     # reclaim ran
    for name in ("pgscan_kswapd", "pgsteal_kswapd", "pgdemote_kswapd", "pgpromote_success",
                 "pgrefill", "pgactivate", "pgdeactivate", "pgfault"):
        assert vm_f[name] == vm_r[name], name
    g_f, g_r = fast.groups[0], ref.groups[0]
    assert np.array_equal(g_f.mm.translate(g_f.addrs), g_r.mm.translate(g_r.addrs))


def test_evicting_a_batch_reads_a_batch_not_the_node():
    from test_pressure_engine import run
    from tierscan.mm import vmscan
    from tierscan.mm.evict import evict_folios

    e = run({"name": "wss-larger", "size": "48MiB", "alpha": 1.1, "populate": True},
            duration="10ms", machine=machine_dict(["64MiB", "256MiB"]))
    k = e.kernel
    lv = k.lruvec(k.root_memcg, 0)
    for _ in range(2):                                  # two older generations to evict from
        assert vmscan.try_to_inc_max_seq(lv, lv.lrugen.max_seq, 60, True)
    lru_index(k.pm)
    reads = []
    orig = LruIndex._valid

    def counting(self, key, stamps, pfns):
        reads.append(pfns.size)
        return orig(self, key, stamps, pfns)

    LruIndex._valid = counting
    try:
        evict_folios(64, lv, ScanControl(proactive=True), 60)
    finally:
        LruIndex._valid = orig
    on_node = int(k.pm.node_present[0] - k.pm.node_free[0])
    assert on_node > 10_000
    assert k.vmstat["pgdemote_direct"] + k.vmstat["pgsteal_direct"] > 0
    assert 0 < sum(reads) < 1_000, (sum(reads), on_node)   # 64 + the empty-list probes
    k.check()


@pytest.mark.parametrize("lru", [0x7, CLASSIC], ids=["mglru", "classic"])
def test_the_one_entry_check_agrees_with_the_array_check(lru):
    """LruIndex._valid_one (empty()'s scalar fast path) gives _valid's answer for every pfn of
    a machine under reclaim: with its own list key, a neighbouring key and a wrong stamp; and
    bucket_key's compiled pass gives the numpy form's key for every pfn."""
    from tierscan.mm.lru_index import bucket_key, bucket_key_reference

    e = _run(False, lru, {"name": "numab2"})
    pm = e.kernel.pm
    idx = lru_index(pm)
    pfns = np.arange(pm.nr_pfns, dtype=np.int64)
    keys = bucket_key(pm, pfns)
    # the compiled keys are the numpy form's, for every pfn (on a list or not)
    assert np.array_equal(keys, bucket_key_reference(pm, pfns))
    on = np.flatnonzero(keys >= 0)
    rng = np.random.default_rng(0)
    sample = np.concatenate([on[rng.choice(on.size, 300, replace=False)],
                             rng.choice(pm.nr_pfns, 300, replace=False)])
    stamps = pm.lru_stamp[sample].astype(np.int64)
    seen = 0
    for key in {int(k) for k in keys[on]}:
        for st in (stamps, stamps + 1):
            want = idx._valid(key, st, sample)
            got = [idx._valid_one(key, int(s), int(p)) for s, p in zip(st, sample)]
            assert got == want.tolist(), key
            seen += int(want.sum())
    assert seen > 100                    # the sample holds valid entries, not only refusals
