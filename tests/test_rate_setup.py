"""The rate model's per-run set-up (access/rate.py GroupRates, on_phase, change_rates): the
compiled passes against the numpy forms kept beside them, bit for bit (issue 15)."""

import numpy as np
import pytest

from tierscan.access.rate_kernels import (
    bank_hazards, bank_hazards_reference, pmd_weights, pmd_weights_reference,
    range_pmds,
)

# (range_start, range_end) of a group's mappings, in the group's page order: one mapping;
# ascending ones, two sharing a PMD and one not PMD-aligned; the same in descending order
RANGES = [([1 << 20], [(1 << 20) + 3000]),
          ([1000, 1300, 5000, 9 << 9], [1300, 1400, 6100, (9 << 9) + 40]),
          ([9 << 9, 5000, 1300, 1000], [(9 << 9) + 40, 6100, 1400, 1300])]


def group_slots(start, end):
    return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in zip(start, end)])


def bits(a):
    return np.ascontiguousarray(a).view(np.int64)


@pytest.mark.parametrize("mode", ["not kept", "kept", "first kept"])
def test_bank_hazards_is_its_numpy_form(mode):
    """Banked hazards, write hazards and reference points equal the numpy form's bit for bit,
    with entries the bank leaves unchanged (w 0, c_ref == C already) and -0.0 among them (its
    sum with +0.0 is +0.0, which the compiled pass must write)."""
    rng = np.random.default_rng(3)
    n, C = 5000, 40.0
    w0 = np.where(rng.random(n) < 0.3, 0.0, rng.random(n) * 0.01)
    c0 = np.where(rng.random(n) < 0.3, C, rng.random(n) * C)
    h0 = np.where(rng.random(n) < 0.2, -0.0, rng.random(n))
    h0[rng.random(n) < 0.2] = 0.0
    wh0 = np.where(rng.random(n) < 0.2, -0.0, rng.random(n) * 0.3)
    out = []
    for fn in (bank_hazards_reference, bank_hazards):
        c_ref, haz = c0.copy(), h0.copy()
        whaz = np.empty(0) if mode == "not kept" else \
            np.full(n, np.nan) if mode == "first kept" else wh0.copy()
        fn(w0, c_ref, haz, whaz, mode == "first kept", C, 0.25)
        out.append((c_ref, haz, whaz))
    for a, b in zip(*out):
        assert np.array_equal(bits(a), bits(b))
    assert not np.array_equal(bits(out[0][1]), bits(h0))        # the bank did change some
    assert (np.signbit(h0) & ~np.signbit(out[0][1])).any()     # -0.0 became +0.0


@pytest.mark.parametrize("start,end", RANGES)
def test_range_pmds_are_the_slots_distinct_pmds(start, end):
    got = range_pmds(np.array(start, np.int64), np.array(end, np.int64))
    assert got.dtype == np.int64
    assert np.array_equal(got, np.unique(group_slots(start, end) >> 9))


@pytest.mark.parametrize("start,end", RANGES)
def test_pmd_weights_is_its_numpy_form(start, end):
    """Per-PMD sums equal the bincount bit for bit (the ranges: one mapping, ascending ranges
    sharing a PMD, descending ranges). The per-node sums: arrays.node_mass,
    tests/test_tick_paths.py."""
    rng = np.random.default_rng(11)
    start, end = np.array(start, np.int64), np.array(end, np.int64)
    slots = group_slots(start, end)
    n = slots.size
    pmds = range_pmds(start, end)
    w = rng.random(n) ** 4
    w[rng.random(n) < 0.1] = 0.0
    assert np.array_equal(bits(pmd_weights(start, end, pmds, w)),
                          bits(pmd_weights_reference(slots, pmds, w)))


@pytest.mark.parametrize("n,tail", [(1, 0), (7000, 0), (7000, 1), (7000, 1023), (7000, 1024),
                                    (7000, 1025), (7000, 3071), (7000, 6999), (7000, 7000)])
def test_last_nonzero_is_flatnonzeros_last(n, tail):
    """The distributions' highest drawable page: flatnonzero's last index, read from the end
    (trailing zero runs across the doubling blocks' edges; none nonzero: IndexError)."""
    from tierscan.workload.distributions import _last_nonzero

    w = np.random.default_rng(n + tail).random(n) + 0.5
    w[1::3] = 0.0
    w[n - tail:] = 0.0
    if tail == n:
        with pytest.raises(IndexError):
            np.flatnonzero(w)[-1]
        with pytest.raises(IndexError):
            _last_nonzero(w)
    else:
        assert _last_nonzero(w) == int(np.flatnonzero(w)[-1])


def test_first_phase_change_rates_is_the_banking_one():
    """A new group's first change_rates skips the bank (nothing ran): the same state as the
    banking call leaves (weights, reference points, hazards, no write hazard, no hints)."""
    from tierscan.access.rate import Hazards

    w = np.random.default_rng(2).random(3000)
    out = []
    for first in (False, True):
        h = Hazards(w.size)
        h.change_rates(w, 0.0, 0.3, 0.3, np.random.default_rng(1), first)
        out.append(h)
    a, b = out
    for x, y in ((a.w, b.w), (a.c_ref, b.c_ref), (a.haz, b.haz), (a.hint_idx, b.hint_idx),
                 (a.hint_at, b.hint_at)):
        assert np.array_equal(bits(x), bits(y))
    assert a.whaz is None and b.whaz is None and a.settled == b.settled


def test_the_cdf_is_built_when_first_asked_for():
    """weights() alone leaves the table without its CDF; cdf() and sample() build the one
    np.cumsum of the weights gives, once, shared by every holder of the table."""
    from tierscan.workload import distributions as D

    D._SHARED.clear()
    d = D.Zipf(0.9, seed=4)
    w = d.weights(5000)
    t = d._table(5000)
    assert t[1] is None
    a = D.Zipf(0.9, seed=4).sample(5000, 3000, np.random.default_rng(0))
    assert t[1] is not None and np.array_equal(bits(t[1]), bits(np.cumsum(w)))
    assert d.cdf(5000) is t[1] and not t[1].flags.writeable
    assert np.array_equal(a, np.minimum(np.searchsorted(
        np.cumsum(w), np.random.default_rng(0).random(3000) * np.cumsum(w)[-1], side="right"),
        int(np.flatnonzero(w)[-1])))
