"""The rate model's ``skip_draws``: the uniforms a re-materialization takes, without the draw.

The walk's fast path re-materializes, after a stop, entries it drew at the same instant
(``vmscan_fast._advance_draws``): those draws change nothing but take two uniforms per entry
from the access model's generator, and the committed results depend on that stream. Result
files alone do not catch a miscount (notes/walk.md), so these tests compare generator states.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

from tierscan.access.base import ThreadGroup
from tierscan.access.rate import RateModel, pages_in_ranges, skip_uniforms


def _state(rng):
    return repr(rng.bit_generator.state)       # comparable (Philox's holds arrays)


@pytest.mark.parametrize("make", [lambda: np.random.default_rng([7, 0x5A7E]),
                                  lambda: np.random.Generator(np.random.Philox(3))])
@pytest.mark.parametrize("half_kept", [False, True])
@pytest.mark.parametrize("n", [0, 1, 7, 100_003])
def test_skip_uniforms_leaves_the_generator_where_random_does(make, half_kept, n):
    """Same state as drawing n doubles, and the same numbers afterwards: PCG64 by advance(),
    also when a 32-bit half is kept for the next bounded draw (which advance() would drop),
    and other bit generators."""
    a, b = make(), make()
    for g in (a, b):
        g.random(5)
        if half_kept:
            g.integers(0, 10)        # a bounded draw below 2**32 keeps a 32-bit half
    if half_kept and isinstance(a.bit_generator, np.random.PCG64):
        assert a.bit_generator.state["has_uint32"] == 1          # the case this test is about
    a.random(n)
    skip_uniforms(b, n)
    assert _state(a) == _state(b)
    assert np.array_equal(a.integers(0, 10, 50), b.integers(0, 10, 50))
    assert np.array_equal(a.random(50), b.random(50))


def test_pages_in_ranges_counts_what_index_of_finds():
    """A group of several VMAs and ranges inside, across and outside them."""
    rng = np.random.default_rng(1)
    starts = np.array([100, 700, 5000, 9000], np.int64)
    sizes = np.array([300, 1000, 1, 512], np.int64)
    g = types.SimpleNamespace(range_start=starts, range_end=starts + sizes,
                              range_base=np.concatenate([[0], np.cumsum(sizes)[:-1]]))
    for _ in range(200):
        lo = np.sort(rng.integers(0, 10_000, rng.integers(0, 6)))
        hi = lo + rng.integers(0, 2000, lo.size)
        slots = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)] + [np.empty(0, int)])
        want = int((ThreadGroup.index_of(g, slots) >= 0).sum())
        assert pages_in_ranges(g, lo, hi) == want


def _engine(batch_size=None, scale=0.005):
    from tierscan.experiments.pghot_v3 import config
    from tierscan.sim.config import config_from_dict
    from tierscan.sim.run import build_engine

    d = config(1, "klruscand", scale=scale)
    if batch_size is not None:
        d["detectors"][0]["batch_size"] = batch_size
    d["duration"] = "1s"
    return build_engine(config_from_dict(d))


def _snapshot(model, mm):
    out = [_state(model.rng), mm.pt.pte.copy(), mm.pt.pmd.copy()]
    for _, r in model.by_mm[mm.id]:
        for hz in (r.pages, r.pmd):
            out += [hz.haz.copy(), hz.c_ref.copy(),
                    None if hz.whaz is None else hz.whaz.copy()]
    return out


def _same(a, b):
    return all((x is None and y is None) or np.array_equal(x, y) if not isinstance(x, str)
               else x == y for x, y in zip(a, b))


def test_skip_draws_is_a_redraw_at_the_same_instant():
    """Entries materialized at this C: materializing them again (PTE ranges in and beyond the
    group's pages, their PMDs, and PMDs that are not the group's) changes nothing but the
    generator, and skip_draws leaves the generator, tables and hazards exactly so."""
    e = _engine()
    e.run()
    model = e.kernel.access_source
    assert isinstance(model, RateModel)
    g, r = model.by_mm[next(iter(model.by_mm))][0]
    mm = g.mm
    s0 = int(g.range_start[0])
    lo = np.array([s0 - 100, s0 + 512, s0 + 4096], np.int64)     # the first starts outside
    hi = np.array([s0 + 300, s0 + 3000, int(g.range_end[-1]) + 50], np.int64)
    pmds = np.concatenate([r.pmds[:5], [int(r.pmds[-1]) + 7]])     # the last is not the group's
    slots = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)])
    model.materialize_pmds(mm, pmds)
    model.materialize_ptes(mm, slots)
    before, start = _snapshot(model, mm), model.rng.bit_generator.state
    model.materialize_pmds(mm, pmds)
    model.materialize_ptes(mm, slots)
    again = _snapshot(model, mm)
    assert again[0] != before[0]                 # the redraw took uniforms ...
    assert _same(again[1:], before[1:])          # ... and changed nothing else
    for i, part in ((1, "pte"), (2, "pmd")):     # (the entries have young bits to lose)
        assert np.count_nonzero(before[i]), part
    model.rng.bit_generator.state = start
    model.skip_draws(mm, pmds, lo, hi)
    assert _same(_snapshot(model, mm), again)


@pytest.mark.parametrize("batch_size", [300, 1000])
def test_klruscand_run_leaves_the_generator_where_materializing_does(monkeypatch, batch_size):
    """A klruscand run whose batch fills mid-walk (the fast path stops and resumes): the same
    results and the same final generator state as the fast path that materializes again."""
    from tierscan.mm import vmscan_fast

    stops = [0]
    real = vmscan_fast._advance_draws

    def counting(*a):
        stops[0] += 1
        return real(*a)

    monkeypatch.setattr(vmscan_fast, "_advance_draws", counting)
    runs = []
    for skip in (True, False):
        if not skip:
            monkeypatch.delattr(RateModel, "skip_draws")
        e = _engine(batch_size).run()
        runs.append((_state(e.kernel.access_source.rng), repr(e.results())))
    assert stops[0] >= 4                      # stops in both runs
    assert runs[0] == runs[1]


def _random_ops(model, seed, n_ops=300):
    """Materialize random runs of PTEs and PMDs of the group (some reaching beyond it),
    between which C moves, entries are referenced, a phase changes the rates, and A bits
    are cleared as a walk clears them: the calls a pass and its resumed walks make."""
    rng = np.random.default_rng(seed)
    g, r = model.by_mm[next(iter(model.by_mm))][0]
    mm = g.mm
    s0, s1 = int(g.range_start[0]), int(g.range_end[-1])
    seen = [r.C]
    for _ in range(n_ops):
        op = rng.integers(0, 10)
        a = int(rng.integers(s0 - 600, s1))
        b = a + int(rng.integers(0, 3000))
        if op < 5:
            model.materialize_ptes(mm, np.arange(a, b))
        elif op == 5:
            p = int(rng.integers(0, r.pmds.size))
            model.materialize_pmds(mm, r.pmds[p:p + int(rng.integers(1, 12))])
        elif op == 6:                # C moves on, or back to an earlier value (a draw
            seen.append(r.C)         # ahead of C, at kswapd's _c_now, then one at C)
            r.C = float(rng.choice([r.C + rng.random() * 1e5, seen[rng.integers(len(seen))]]))
        elif op == 7:
            idx = g.index_of(np.arange(a, b))
            r.pages.referenced(idx[idx >= 0], r.C)
        elif op == 8 and rng.random() < 0.3:
            r.pages.change_rates(r.pages.w * rng.random(), r.C, 0.3,
                                 float(rng.choice([0.3, 0.5])), model.rng)
        else:
            s = np.arange(max(a, s0), min(b, s1))
            mm.pt.pte[s] &= ~np.uint64(_A)
        yield op


_A = 1 << 5          # _PAGE_ACCESSED (x86)


@pytest.fixture(scope="module")
def twin_models():
    """Two rate models in the same state (two identical engines after a short run)."""
    return [_engine().run().kernel.access_source for _ in range(2)]


def _on_both(models, scenario, count=None):
    """Run ``scenario(model)`` on the first model with settled prefixes skipped (their
    length added to ``count``), on the second with every entry drawn by the kernel
    (``settled_prefix`` forced to 0); both must end in the same state."""
    from tierscan.access import rate

    real = rate.Hazards.settled_prefix

    def counting(self, i, C):
        p = real(self, i, C)
        if count is not None:
            count[0] += p
        return p

    out = []
    for model, prefix in zip(models, (counting, lambda self, i, C: 0)):
        rate.Hazards.settled_prefix = prefix
        try:
            out.append(list(scenario(model)))
        finally:
            rate.Hazards.settled_prefix = real
    assert out[0] == out[1]
    g0, g1 = (next(iter(mo.by_mm.values()))[0][0] for mo in models)
    assert _same(_snapshot(models[0], g0.mm), _snapshot(models[1], g1.mm))


def test_settled_entries_are_skipped_bit_for_bit(twin_models):
    """Materialize with the settled prefix skipped vs every entry drawn by the kernel: after
    random sequences of calls, the same tables, hazards and generator state; and the skip
    did happen."""
    skipped = [0]
    for seed in range(3):
        _on_both(twin_models, lambda m: _random_ops(m, seed), skipped)
    assert skipped[0] > 10_000


@pytest.mark.parametrize("move", ["referenced", "change_rates"])
def test_settled_is_dropped_when_reference_points_move(twin_models, move):
    """Entries drawn at C1; then, at C2, some are referenced (or a phase change banks every
    hazard); then a draw at C1 again (as a draw ahead of C at kswapd's _c_now and one at C
    can follow each other): they are no longer settled at C1 and must be drawn."""
    def scenario(model):
        g, r = model.by_mm[next(iter(model.by_mm))][0]
        slots = np.arange(int(g.range_start[0]), int(g.range_start[0]) + 3000)
        c1 = r.C
        model.materialize_ptes(g.mm, slots)
        r.C = c1 + 5e4
        if move == "referenced":
            r.pages.referenced(g.index_of(slots[:1000]), r.C)
        else:
            r.pages.change_rates(r.pages.w * 0.5, r.C, 0.3, 0.3, model.rng)
        r.C = c1
        model.materialize_ptes(g.mm, slots)
        yield _state(model.rng)

    skipped = [0]
    _on_both(twin_models, scenario, skipped)


@pytest.mark.parametrize("source", ["numab2", "numab2-pghot"])
def test_rate_model_hint_faults_are_distinct(monkeypatch, source):
    """The rate model's due hint faults reach do_numa_hint_faults once per entry
    (``distinct=True`` skips the per-slot dedupe): a NUMAB2 run gives the same results and
    generator state as with the dedupe, and every call it made had distinct slots."""
    from tierscan.experiments.pghot_v3 import config
    from tierscan.mm import memory
    from tierscan.sim.config import config_from_dict
    from tierscan.sim.run import build_engine

    real = memory.do_numa_hint_faults
    calls = [0]                                          # slots given as distinct

    def checked(mm, slots, is_write, cpu_nid, distinct=False):
        if distinct:
            calls[0] += slots.size
            assert np.unique(slots).size == slots.size
        return real(mm, slots, is_write, cpu_nid, distinct=distinct)

    def dedupe(mm, slots, is_write, cpu_nid, distinct=False):
        return real(mm, slots, is_write, cpu_nid)

    runs = []
    for fn in (checked, dedupe):
        monkeypatch.setattr(memory, "do_numa_hint_faults", fn)
        d = config(1, source, scale=0.01)
        d["duration"] = "3s"
        e = build_engine(config_from_dict(d)).run()
        runs.append((_state(e.kernel.access_source.rng), repr(e.results())))
    assert calls[0] > 1000                           # faults taken
    assert runs[0] == runs[1]
