"""The per-run set-up's fast paths (issue 15: the fixed cost of a run): the memory system's
memo of phase solutions across runs (memsys/memo.py: a run that finds its TLB and LLC
solutions there gives the same result file as one that computes them; keys follow content,
not identity), and the collection of a finished run."""

import gc
import weakref

import numpy as np
import pytest

from tierscan.memsys import memo
from tierscan.sim import run as run_mod
from tierscan.sim.run import run_experiment
from test_memsys_engine import TWO, cfg, laptop_loaded

# two groups on two CPU nodes (two LLCs), and one with THPs mixed in (the PMD-entry lines)
THP = {"name": "multi", "processes": [
    {"name": "a", "size": "8MiB", "threads": 2, "node": 0, "mlp": 4, "dist": "zipf",
     "thp": True, "accesses": 50000},
    {"name": "b", "size": "6MiB", "threads": 3, "node": 0, "mlp": 4, "dist": "uniform",
     "write_fraction": 0.3, "accesses": 50000}]}


@pytest.fixture
def fresh_memo():
    saved = memo.ENABLED
    memo.clear()
    yield
    memo.ENABLED = saved
    memo.clear()


@pytest.mark.parametrize("workload", [TWO, THP], ids=["two-llcs", "thp"])
def test_a_run_from_the_memo_is_the_computed_run(tmp_path, fresh_memo, workload):
    c = cfg(workload, machine=laptop_loaded(llc="1MiB"))
    memo.ENABLED = False
    run_experiment(c).save(tmp_path / "computed.json", include_timing=False)
    memo.ENABLED = True
    run_experiment(c).save(tmp_path / "first.json", include_timing=False)
    hits = memo.stats["hits"]
    run_experiment(c).save(tmp_path / "hit.json", include_timing=False)
    assert memo.stats["hits"] > hits            # the second run found its solutions
    computed = (tmp_path / "computed.json").read_bytes()
    assert (tmp_path / "first.json").read_bytes() == computed
    assert (tmp_path / "hit.json").read_bytes() == computed


def test_another_machine_misses(fresh_memo):
    run_experiment(cfg(TWO, machine=laptop_loaded(llc="1MiB")))
    misses = memo.stats["misses"]
    run_experiment(cfg(TWO, machine=laptop_loaded(llc="1MiB", tlb_4k=(64, 1024))))
    assert memo.stats["misses"] > misses        # other TLB entries: another TLB solution


def test_digest_follows_content_dtype_and_shape():
    a = np.arange(12, dtype=np.float64)
    assert memo.digest(a) == memo.digest(a.copy())
    b = a.copy()
    b[7] = np.nextafter(b[7], 100.0)
    assert memo.digest(b) != memo.digest(a)
    assert memo.digest(a.astype(np.int64)) != memo.digest(a.view(np.int64))
    assert memo.digest(a.reshape(3, 4)) != memo.digest(a)
    assert memo.digest(a[::2]) == memo.digest(np.ascontiguousarray(a[::2]))
    assert memo.digest(1, 2) != memo.digest(12) != memo.digest((1, 2))


@pytest.mark.parametrize("old", [False, True], ids=["young-graph", "graph-in-oldest-gen"])
def test_a_finished_run_is_freed(monkeypatch, old):
    """run_experiment frees the run's cyclic graph with the collector off, whether the graph
    is still young (the generation-1 collection frees it) or was moved to the oldest
    generation during the run (then a full collection must follow)."""
    refs = []
    build = run_mod.build_engine

    def tracked(*a, **kw):
        e = build(*a, **kw)
        refs.extend([weakref.ref(e), weakref.ref(e.kernel)])
        if old:
            gc.collect()          # what a long run's automatic collections do to its objects
        return e

    monkeypatch.setattr(run_mod, "build_engine", tracked)
    gc.collect()
    gc.disable()
    try:
        run_experiment(cfg(TWO, latency_model="idle"))
        assert refs and all(r() is None for r in refs)
    finally:
        gc.enable()
