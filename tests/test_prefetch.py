"""tierscan.prefetch: the prefetching passes give what the loops without prefetches give, at
every prefetch distance (a prefetch is a hint; these tests catch a pass whose prologue or
look-ahead indexes got into the values)."""

import numpy as np
import pytest

from tierscan import prefetch


@pytest.mark.parametrize("ahead", [0, 1, 16, 1 << 20])
@pytest.mark.parametrize("dtype", [np.uint64, np.int8, np.float64])
def test_take_is_numpys_gather(monkeypatch, ahead, dtype):
    monkeypatch.setattr(prefetch, "ahead", ahead)
    rng = np.random.default_rng(ahead)
    a = rng.integers(0, 100, 50_000).astype(dtype)
    for n in (0, 1, 5, 17, 40_000):
        idx = rng.integers(0, a.size, n)
        got = prefetch.take(a, idx)
        assert got.dtype == a.dtype and np.array_equal(got, a[idx]), n


@pytest.mark.parametrize("ahead", [1, 16, 1 << 20])
def test_pghot_record_update_is_the_same_with_prefetches(monkeypatch, ahead):
    """pghot's record update (_pghot_update) over reports that repeat records, with hint and
    IBS sources, literal and intended masks: the same words and READY flags as without
    prefetches (ahead 0, the loop as it was)."""
    from tierscan.promote.pghot import (
        MASKS_INTENDED, MASKS_LITERAL, PGHOT_FREQ_MAX, _pghot_update,
    )

    for literal, masks in ((False, MASKS_INTENDED), (True, MASKS_LITERAL)):
        for hint in (False, True):
            words = []
            for a in (0, ahead):
                rec = np.zeros(3000, np.int64)
                r = np.random.default_rng(int(literal) * 2 + int(hint))
                ready = []
                for call in range(40):
                    n = int(r.integers(0, 600))
                    idx = r.integers(0, 3000, n)
                    nids = r.integers(-1, 3, n)
                    nows = 4_294_000_000 + call * 300 + np.sort(r.integers(0, 300, n))
                    out = np.zeros(n, bool)
                    _pghot_update(rec, idx, nids, nows, 5000, 2, literal, hint, 0, *masks,
                                  PGHOT_FREQ_MAX, out, a)
                    ready.append(out)
                words.append((rec, np.concatenate(ready)))
            (r0, o0), (r1, o1) = words
            assert np.array_equal(r0, r1) and np.array_equal(o0, o1), (literal, hint)
            assert o0.any() and (r0 != 0).any()


def test_no_prefetch_for_tables_a_core_keeps_in_l2(monkeypatch):
    monkeypatch.setattr(prefetch, "ahead", 16)
    assert prefetch.distance(prefetch.SMALL_BYTES - 1) == 0
    assert prefetch.distance(prefetch.SMALL_BYTES) == 16
    monkeypatch.setattr(prefetch, "ahead", 0)
    assert prefetch.distance(1 << 40) == 0
