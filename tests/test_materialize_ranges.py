"""The rate model's young-bit draw of PTE slot ranges (``materialize_pte_ranges``, the walk's
fast path) against the draw of the listed slots (``materialize_ptes``): the same tables,
hazards, settled runs and generator state, bit for bit; and its compiled pass that draws its
own uniforms against the numpy reference."""

from __future__ import annotations

import types

import numpy as np
import pytest
from test_skip_draws import _engine, _random_ops, _same, _snapshot, _state

from tierscan.access.base import ThreadGroup
from tierscan.access import rate
from tierscan.access.rate import RateModel, drop_leading, runs_in_ranges
from tierscan.access.rate_kernels import materialize_runs_reference
from tierscan.mm.constants import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PROTNONE


def _group(starts, sizes):
    starts, sizes = np.asarray(starts, np.int64), np.asarray(sizes, np.int64)
    return types.SimpleNamespace(range_start=starts, range_end=starts + sizes,
                                 range_base=np.concatenate([[0], np.cumsum(sizes)[:-1]]))


def _expand(s0, i0, ln):
    k = np.arange(int(ln.sum())) - np.repeat(np.cumsum(ln) - ln, ln)
    return np.repeat(s0, ln) + k, np.repeat(i0, ln) + k


def _ranges(rng, n_max, top, width):
    """Disjoint ranges in walk order (ascending, as a walk's PTE ranges are)."""
    ends = np.sort(rng.choice(top, 2 * int(rng.integers(0, n_max + 1)), replace=False))
    return ends[0::2].astype(np.int64), np.minimum(ends[1::2], ends[0::2] + width)


def test_runs_are_what_index_of_finds():
    """A group of several VMAs; ranges inside, across and outside them: the runs list the
    group's slots of the ranges in order with their index_of positions."""
    rng = np.random.default_rng(1)
    g = _group([100, 700, 5000, 9000], [300, 1000, 1, 512])
    for _ in range(300):
        lo, hi = _ranges(rng, 6, 10_000, 2500)
        slots = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)] + [np.empty(0, int)])
        idx = ThreadGroup.index_of(g, slots)
        s0, i0, ln = runs_in_ranges(g, lo, hi)
        assert (ln > 0).all()
        s, i = _expand(s0, i0, ln)
        assert np.array_equal(s, slots[idx >= 0]) and np.array_equal(i, idx[idx >= 0])
        for p in (0, 1, int(ln.sum()) // 2, int(ln.sum())):
            if p <= ln.sum():
                d = drop_leading(s0, i0, ln, p)
                assert (d[2] > 0).all()
                assert all(np.array_equal(a, b[p:]) for a, b in zip(_expand(*d), (s, i)))


@pytest.mark.parametrize("repeats", [False, True])
def test_runs_kernel_matches_numpy_reference(repeats, monkeypatch):
    """The compiled pass over runs that draws its own uniforms (RateModel._draw_runs,
    materialize_runs_drawing) gives the numpy form's table, hazards and reference points bit
    for bit (present or not, A set or clear, write hazard kept or not), leaving the
    generator where the (2, n) draw does;
    with ``repeats``, hazards drawn from a few values, so that neighbours share Λ (whose
    P(young) the kernel reuses) and some share Λ but not the write hazard."""
    rng = np.random.default_rng(5)
    n, m = 6000, 4900                                 # slots, the group's entries
    bits = rng.choice(np.array([0, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_PRESENT | _PAGE_ACCESSED,
                                _PAGE_PRESENT | _PAGE_DIRTY], np.uint64), n)
    table0 = (rng.integers(1, 1 << 30, n).astype(np.uint64) << np.uint64(12)) | bits
    g = _group([0, 1500, 4000], [1000, 2000, 1900])
    lo = np.array([50, 900, 1400, 3000, 3990, 5500], np.int64)
    hi = np.array([600, 1200, 2100, 3999, 4700, 5600], np.int64)
    s0, i0, ln = runs_in_ranges(g, lo, hi)
    assert ln.size == 6
    k = int(ln.sum())

    def values(scale, few):
        if not repeats:
            return rng.random(m) * scale
        return np.repeat(rng.random(few) * scale, -(-m // few))[:m]

    haz0, c0, w = values(2, 7), values(50, 40), values(0.05, 8)
    if repeats:
        w[:m // 2] = 0.0         # Λ = haz: Λ changes where the write hazard does not
    u = np.random.default_rng(77).random((2, k))
    mask = np.uint64(_PAGE_PRESENT | _PAGE_PROTNONE)
    monkeypatch.setattr(rate, "UNREAD_GAP", 2)

    def drawing(table, s0, i0, ln, mask, haz, whaz, c_ref, w, C, wf, u):
        """RateModel._draw_runs (materialize_runs_drawing) from the generator that drew u,
        gaps of 2 unread columns or more left to it; its state must end where u's draw
        left that generator."""
        model = RateModel(0)
        model.rng = np.random.default_rng(77)
        hz = types.SimpleNamespace(haz=haz, c_ref=c_ref, w=w)
        model._draw_runs(table, s0, i0, ln, int(ln.sum()), 0, hz, whaz, C, wf)
        after = np.random.default_rng(77)
        after.random((2, k))
        assert model.rng.bit_generator.state == after.bit_generator.state

    for whaz0 in (np.empty(0), values(0.5, 3), values(0.5, 300)):
        out = []
        for fn in (materialize_runs_reference, drawing):
            table, haz, whaz, c_ref = table0.copy(), haz0.copy(), whaz0.copy(), c0.copy()
            fn(table, s0, i0, ln, mask, haz, whaz, c_ref, w, 60.0, 0.3, u)
            out.append((table, haz, whaz, c_ref))
        for a, b in zip(out[0], out[1]):
            assert np.array_equal(a, b)
        t1 = out[0][0]
        assert (t1 & _PAGE_DIRTY != table0 & _PAGE_DIRTY).sum() > 10    # some became dirty
        assert (t1 != table0).sum() > 100                                # bits were set


@pytest.fixture(scope="module")
def twin_models():
    return [_engine().run().kernel.access_source for _ in range(2)]


@pytest.mark.parametrize("seed, gap", [(0, 1024), (1, 8), (2, 1)])
def test_ranges_draw_as_the_listed_slots_do(twin_models, seed, gap, monkeypatch):
    """Random call sequences (C moving forth and back, references, phase changes, A bits
    cleared) on two models in the same state: one materializes PTEs as ranges (several per
    call, some beyond the group), the other as the listed slots. Same tables, hazards,
    settled runs and generator state after each call; settled prefixes were skipped, and
    (``gap``: rate.UNREAD_GAP) uniforms that no draw reads were taken without drawing
    (materialize_runs_drawing's gaps)."""

    skipped, gaps = [0], [0, 0]
    real, real_draw = rate.Hazards.settled_prefix_runs, rate.materialize_runs_drawing

    def counting(self, i0, ln, C):
        p = real(self, i0, ln, C)
        skipped[0] += p
        return p

    def counting_draw(table, s0, *a):
        r, q, k, c = real_draw(table, s0, *a)
        gaps[0] += r < s0.size              # a gap left to the caller: taken without drawing
        gaps[1] += k - c                    # its columns (at the end: those after the last)
        return r, q, k, c

    monkeypatch.setattr(rate.Hazards, "settled_prefix_runs", counting)
    monkeypatch.setattr(rate, "materialize_runs_drawing", counting_draw)
    monkeypatch.setattr(rate, "UNREAD_GAP", gap)
    calls = []
    for model, by_ranges in zip(twin_models, (True, False)):
        real_ptes = model.materialize_ptes

        def ptes(mm, slots, model=model, by_ranges=by_ranges, real_ptes=real_ptes):
            # _random_ops asks for one run [a, b): cut it into back-to-back ranges (a
            # walk's whole tables) or ranges with gaps, the same slots either way
            a, b = (int(slots[0]), int(slots[-1]) + 1) if len(slots) else (0, 0)
            pick = np.random.default_rng(abs(a * 7 + b))
            cuts = np.sort(pick.integers(a, b + 1, 6))
            if pick.random() < 0.5:
                lo, hi = np.array([a, *cuts]), np.array([*cuts, b])
            else:
                lo, hi = np.array([a, *cuts[1::2]]), np.array([*cuts[0::2], b])
            for x in pick.integers(a, b + 1, 3):  # stretches young already: no draw reads
                y = int(x) + int(pick.integers(0, 2500))  # their uniforms
                pte = mm.pt.pte[int(x):y]
                pte[pte & np.uint64(_PAGE_PRESENT) != 0] |= np.uint64(_PAGE_ACCESSED)
            if by_ranges:
                model.materialize_pte_ranges(mm, lo, hi)
            else:
                real_ptes(mm, np.concatenate([np.arange(x, y) for x, y in zip(lo, hi)]))
            g, r = next(iter(model.by_mm.values()))[0]
            calls.append((by_ranges, _state(model.rng), r.pages.settled))

        model.materialize_ptes = ptes
        try:
            list(_random_ops(model, seed, n_ops=200))
        finally:
            del model.materialize_ptes
    half = len(calls) // 2
    assert half > 50
    assert [c[1:] for c in calls[:half]] == [c[1:] for c in calls[half:]]
    g0, g1 = (next(iter(mo.by_mm.values()))[0][0] for mo in twin_models)
    assert _same(_snapshot(twin_models[0], g0.mm), _snapshot(twin_models[1], g1.mm))
    assert skipped[0] > 1000
    assert gaps[0] >= 2 and gaps[1] > 10_000


def test_settled_prefix_and_settle_of_runs_are_those_of_the_listed_entries():
    """Random runs (ascending or not, the first outside the settled run and a later one
    inside it, ...) and settled runs: the same prefix and the same settled run after."""
    from tierscan.access.rate import Hazards

    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(3000):
        k = int(rng.integers(1, 5))
        i0 = rng.integers(0, 400, k)
        if rng.random() < 0.5:
            i0 = np.sort(i0)
        ln = rng.integers(1, 120, k)
        if rng.random() < 0.3:                      # back to back
            i0 = int(i0[0]) + np.cumsum(ln) - ln
        i = _expand(i0, i0, ln)[1]
        a, b = Hazards(1), Hazards(1)
        lo = int(rng.integers(0, 400))
        st = (lo, lo + int(rng.integers(1, 300)), 2.0)
        a.settled = b.settled = st
        C = float(rng.choice([2.0, 3.0]))
        p = a.settled_prefix(i, C)
        assert b.settled_prefix_runs(i0, ln, C) == p
        hits += 0 < p < i.size
        a.settle(i, C)
        b.settle_runs(i0, ln, C)
        assert a.settled == b.settled
    assert hits > 100


@pytest.mark.parametrize("gap", [1, 8, 1024])
def test_spans_draw_every_uniform_a_draw_reads(gap):
    """clear_spans covers every entry whose draw reads a uniform (present, A clear), and
    _uniforms with those spans gives them the same uniforms as the full (2, n) draw, and
    leaves the generator where the full draw does (settled prefix or not)."""
    from tierscan.access.rate import RateModel
    from tierscan.access.rate_kernels import clear_spans

    rng = np.random.default_rng(11)
    for _ in range(40):
        n_slots = 20_000
        present = rng.random(n_slots) < 0.9
        young = np.zeros(n_slots, bool)
        for x in rng.integers(0, n_slots, 8):          # long stretches young already
            young[x:x + int(rng.integers(0, 5000))] = True
        young |= rng.random(n_slots) < 0.2
        table = (present * np.uint64(_PAGE_PRESENT)) | (young * np.uint64(_PAGE_ACCESSED))
        g = _group([0, 9000], [7000, 11_000])
        s0, i0, ln = runs_in_ranges(g, *_ranges(rng, 5, n_slots, 8000))
        n = int(ln.sum())
        p = int(rng.integers(0, n + 1)) if rng.random() < 0.5 else 0
        d = drop_leading(s0, i0, ln, p)
        room = (n - p) // gap + 1
        a, b = np.empty(room, np.int64), np.empty(room, np.int64)
        k = clear_spans(table, d[0], d[2], np.uint64(_PAGE_PRESENT), gap, a, b)
        s = _expand(*d)[0]
        reads = np.flatnonzero(present[s] & ~young[s])          # positions a draw reads
        inside = np.zeros(n - p, bool)
        for x, y in zip(a[:k], b[:k]):
            inside[x:y] = True
        assert inside[reads].all()
        full, part = RateModel(3), RateModel(3)
        ahead = int(rng.integers(0, 3))
        for m in (full, part):
            m.rng.random(ahead)
        u_full = full._uniforms(n, p).copy()
        u_part = part._uniforms(n, p, zip(a[:k].tolist(), b[:k].tolist()))
        assert _state(full.rng) == _state(part.rng)
        assert np.array_equal(u_full[:, reads], u_part[:, reads])
        assert gap > 1 or inside.sum() == reads.size        # gap 1: nothing else drawn


def test_pcg64_double_is_numpys_random():
    """The walk's draw steps numpy's PCG64 itself (rate_kernels.pcg64_double): the same
    doubles as Generator.random() and the same state after, from states of several seeds
    (rotations of every amount occur over 200,000 steps)."""
    from tierscan.access.rate import _pcg_get
    from tierscan.access.rate_kernels import pcg64_fill

    for seed in (0, 1, [7, 0x5A7E], 2**63 + 5):
        g = np.random.default_rng(seed)
        g.random(int(np.random.default_rng(seed).integers(0, 9)))
        st = np.empty(4, np.uint64)
        _pcg_get(g, st, 0)
        inc = g.bit_generator.state["state"]["inc"]
        st[2], st[3] = inc >> 64, inc & ((1 << 64) - 1)
        out = np.empty(200_000)
        pcg64_fill(st, out)
        assert np.array_equal(out, g.random(out.size))
        x = g.bit_generator.state["state"]["state"]
        assert (int(st[0]), int(st[1])) == (x >> 64, x & ((1 << 64) - 1))
