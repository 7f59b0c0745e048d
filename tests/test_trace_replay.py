"""Replaying .tsw traces: the layout, both access models, the LLC filter (memsys's line
cache), loops, damage."""

from __future__ import annotations

import numpy as np
import pytest

from tierscan.sim.config import config_from_dict
from tierscan.sim.run import build_engine
from tierscan.trace.format import Header, TraceFormatError, TraceWriter
from tierscan.access.exact import ExactModel
from tierscan.workload.library import make_workload

HEAP, FILE = 0x4000000, 0x7f0000000000


def write_access_trace(path, n=60_000, seed=0, threads=2):
    """Accesses to a 64-page heap (zipf-ish) and an 8-page file mapping, two threads."""
    rng = np.random.default_rng(seed)
    heap = (HEAP >> 12) + np.minimum(rng.zipf(1.5, n), 64) - 1
    file = (FILE >> 12) + rng.integers(0, 8, n)
    pages = np.where(rng.random(n) < 0.8, heap, file)
    h = Header(source="test", vmas=[[HEAP, HEAP + 64 * 4096, "heap"],
                                    [FILE, FILE + 16 * 4096, "file"]])
    with TraceWriter(path, h, chunk_records=7_000) as w:
        w.add(pages, rng.random(n) < 0.3, 1 + (np.arange(n) // 100) % threads, np.arange(n) * 3)
    return pages


def engine_for(path, model, **params):
    cfg = config_from_dict({"machine": {"preset": "laptop"},
                            "workload": {"name": f"trace:{path}", **params},
                            "access_model": model, "duration": "2s"})
    return build_engine(cfg)


def test_layout_follows_recorded_vmas(tmp_path):
    p = tmp_path / "t.tsw"
    pages = write_access_trace(p)
    spec = make_workload(f"trace:{p}")
    proc = spec.processes[0]
    assert proc.threads == 2
    kinds = [m.kind for m in proc.mappings]
    sizes = [m.size // 4096 for m in proc.mappings]
    heap_used = np.unique(pages[pages < FILE >> 12])
    assert kinds == ["anon", "file"]
    assert sizes == [heap_used.max() - heap_used.min() + 1, 8]
    assert spec.params["loops"] == 1 and spec.name == f"trace:{p}"


@pytest.mark.parametrize("llc", [False, True])
def test_exact_replay_runs_every_access_in_order(tmp_path, llc):
    p = tmp_path / "t.tsw"
    pages = write_access_trace(p)
    e = engine_for(p, "exact", llc=llc, loops=2, llc_size="64KiB", llc_ways=4).run()
    src = e.workload.processes[0].phases[0].distribution.source
    g = e.groups[0]
    assert g.finished_ns is not None
    assert src.consumed == 2 * pages.size
    if llc:
        # a 1,024-line cache in front of 72 pages of 64 lines: compulsory misses, hits too
        assert np.unique(pages).size <= src.misses < src.consumed
    else:
        assert src.misses == src.consumed
    # every page the trace touched is mapped and was accessed (present in the page tables);
    # hits too reach the page tables: every access is served by a node
    assert (g.mm.translate(g.addrs) >= 0).all()
    assert sum(s.sum() for s in e.series["served"]) == src.consumed


def test_llc_hits_cost_the_hit_time_and_still_set_the_accessed_bit(tmp_path):
    """One page read 50,000 times: one miss, then hits at llc_hit_ns (12 ns) instead of the
    CXL node's 240 ns; the page is young although all but one access hit the cache."""
    p = tmp_path / "one.tsw"
    n = 50_000
    with TraceWriter(p, Header(source="test", vmas=[[HEAP, HEAP + 4096, "heap"]])) as w:
        w.add(np.full(n, HEAP >> 12), np.zeros(n, bool), np.ones(n, int), np.arange(n))
    runtime = {}
    for llc in (False, True):
        e = engine_for(p, "exact", llc=llc).run()
        g = e.groups[0]
        runtime[llc] = g.finished_ns
        src = e.workload.processes[0].phases[0].distribution.source
        assert src.misses == (64 if llc else n)        # the page's 64 lines, once each
        assert g.mm.young(g.addrs).all()
    assert runtime[False] == pytest.approx(n * 240, rel=0.01)
    assert runtime[True] < runtime[False] / 10


@pytest.mark.parametrize("llc", [False, True])
def test_fast_stream_replay_is_the_reference_bit_for_bit(tmp_path, monkeypatch, llc):
    """The compiled pass over a trace's accesses gives MM.access's results, faults included
    (every other page PROT_NONE at the start: NUMA hint faults on their first access)."""
    from tierscan.mm.memory import protect_slots_numa

    p = tmp_path / "t.tsw"
    write_access_trace(p)
    out = {}
    for fast in (True, False):
        monkeypatch.setattr(ExactModel, "fast", fast)
        cfg = config_from_dict({
            "machine": {"preset": "laptop"}, "access_model": "exact", "duration": "2s",
            "workload": {"name": f"trace:{p}", "llc": llc, "llc_size": "64KiB",
                         "llc_ways": 4, "loops": 3},
            "detectors": [{"name": "numab2"}]})
        e = build_engine(cfg)
        g = e.groups[0]
        assert protect_slots_numa(g.mm, g.slots[::2]) > 0
        e.run()
        assert e.kernel.vmstat["numa_hint_faults"] > 0
        res = e.results()
        out[fast] = (res["final"]["runtime_ns"], res["final"]["vmstat"],
                     [a.tolist() for a in res["series"]["served"]],
                     e.groups[0].mm.pt.pte.tobytes())
    assert out[True] == out[False]


def test_rate_replay_follows_window_weights(tmp_path):
    p = tmp_path / "t.tsw"
    pages = write_access_trace(p)
    spec = make_workload(f"trace:{p}", {"windows": 4})
    phases = spec.processes[0].phases
    assert len(phases) == 4 and sum(ph.accesses for ph in phases) * 2 >= pages.size
    w = phases[0].distribution.weights(72)
    first = pages[:15_000]
    hot = (HEAP >> 12)                      # the zipf head: the most accessed page
    assert w.argmax() == 0 and w[0] == pytest.approx((first == hot).mean(), rel=1e-9)
    e = engine_for(p, "rate").run()
    assert e.groups[0].finished_ns is not None


def test_region_trace_replays_in_rate_model(tmp_path):
    p = tmp_path / "r.tsw"
    with TraceWriter(p, Header(source="damo", kind="region", clock="ns",
                               duration=300_000_000)) as w:
        w.add_regions([0, 0], [HEAP, HEAP + 0x10000], [HEAP + 0x10000, HEAP + 0x40000], [20, 0])
        w.add_regions([100_000_000], [HEAP], [HEAP + 0x40000], [5])
    spec = make_workload(f"trace:{p}", {"time_scale": 2.0})
    ph = spec.processes[0].phases
    assert [x.duration_ns for x in ph] == [200_000_000, 400_000_000]
    w0 = ph[0].distribution.weights(64)
    assert w0[:16].sum() == pytest.approx(1.0) and w0[16:].sum() == 0
    e = engine_for(p, "rate", time_scale=2.0).run()
    assert e.now >= 600_000_000 or e.groups[0].finished_ns == pytest.approx(600_000_000, rel=0.05)


def test_damaged_trace_fails_before_the_run(tmp_path):
    p = tmp_path / "t.tsw"
    write_access_trace(p)
    raw = bytearray(p.read_bytes())
    raw[-200] ^= 1                          # inside the last (summary) chunk
    p.write_bytes(bytes(raw))
    with pytest.raises(TraceFormatError, match=f"{p}: offset \\d+: .*checksum mismatch"):
        make_workload(f"trace:{p}")


def test_layout_index_kernel_matches_its_reference(tmp_path):
    p = tmp_path / "t.tsw"
    pages = write_access_trace(p, n=30_000)
    from tierscan.trace.format import TraceReader
    from tierscan.trace.replay import Layout, _ranges_of

    with TraceReader(p) as r:
        starts, lens, kinds = _ranges_of(r.summary()["page"], sorted(r.header.vmas), 12)
    layout = Layout(starts, lens, kinds)
    assert len(starts) == 2
    assert np.array_equal(layout.index(pages), layout.index_reference(pages))
    idx = layout.index(pages)
    assert idx.min() >= 0 and idx.max() < layout.n_pages
    assert np.unique(idx).size == np.unique(pages).size     # one index per distinct page


def test_line_offsets_kernel_matches_its_reference():
    from tierscan.trace.replay import line_offsets, line_offsets_reference

    a = line_offsets(1_000_003, 200_000, 0x7357)
    assert np.array_equal(a, line_offsets_reference(1_000_003, 200_000, 0x7357))
    counts = np.bincount(a, minlength=64)
    assert counts.min() > 0.9 * a.size / 64 and counts.max() < 1.1 * a.size / 64   # uniform


def test_llc_outcome_of_an_access_does_not_depend_on_batching(tmp_path):
    """The line an access references is a function of its position in the trace, so the
    stream's pages, writes and LLC hits are the same whatever sizes the engine takes it in."""
    p = tmp_path / "t.tsw"
    write_access_trace(p)
    runs = []
    for sizes in ([1_000] * 70, [7, 23_456, 3, 9_000, 40_000]):
        src = engine_for(p, "exact", llc_size="64KiB", llc_ways=4).workload.processes[0] \
            .phases[0].distribution.source
        got = [src.take(k)[:3] for k in sizes]
        runs.append([np.concatenate([g[i] for g in got]) for i in range(3)])
        assert runs[-1][0].size == 60_000
    for a, b in zip(*runs):
        assert np.array_equal(a, b)
    assert 0 < runs[0][2].sum() < runs[0][2].size


def test_layout_index_of_deltas_matches_index(tmp_path):
    from tierscan.trace.replay import Layout

    lay = Layout([10, 100, 5000], [20, 50, 7], ["anon", "heap", "file"])
    rng = np.random.default_rng(4)
    pages = np.concatenate([rng.integers(10, 30, 500), rng.integers(100, 150, 500),
                            rng.integers(5000, 5007, 500)])
    rng.shuffle(pages)
    idx, last = lay.index_deltas(np.diff(pages, prepend=7), 7)
    assert last == pages[-1]
    assert np.array_equal(idx, lay.index_reference(pages))
