"""The LLC and TLB models: Che's approximation against the exact filter, the numba filter
against its reference, and TLB reach per page size."""

import numpy as np
import pytest

from tierscan.memsys.llc import LineCache, llc_hits
from tierscan.memsys.lru import characteristic_time, compress, hit_probability
from tierscan.memsys.tlb import translation


@pytest.mark.parametrize("sets", [64, 48])              # a power of two (masked) or not
def test_numba_filter_matches_its_reference(sets):
    """The recency-ordered kernel against the time-stamp LRU reference: the same hits over
    several calls (state carried), the same lines held; by pages and offsets too."""
    rng = np.random.default_rng(1)
    a, b = LineCache(64 * sets * 4, ways=4), LineCache(64 * sets * 4, ways=4)
    c = LineCache(64 * sets * 4, ways=4)
    for _ in range(3):
        lines = rng.zipf(1.3, 20000) % 5000
        hits = a.access(lines)
        assert 0 < hits.sum() < hits.size
        assert np.array_equal(hits, b.reference_access(lines))
        assert np.array_equal(c.access_pages(lines // 64, (lines % 64).astype(np.uint8)), hits)
    assert a.contents() == b.reference_contents() == c.contents()


@pytest.mark.parametrize("weights", ["uniform", "zipf"])
def test_che_predicts_the_simulated_lru_hit_ratio(weights):
    """Independent references over pages of 64 lines: the analytic hit ratio the rate model
    uses agrees with a set-associative LRU run on the same stream (within 0.02)."""
    n_pages, llc = 2048, 2 << 20                  # 8 MiB of data, a 2 MiB cache
    w = np.ones(n_pages) if weights == "uniform" else 1.0 / np.arange(1, n_pages + 1) ** 0.9
    w /= w.sum()
    h, _ = llc_hits(w, np.zeros(0), llc)
    rng = np.random.default_rng(3)
    pages = rng.choice(n_pages, 400_000, p=w)
    lines = pages * 64 + rng.integers(0, 64, pages.size)
    hit = LineCache(llc).access(lines)
    assert hit[100_000:].mean() == pytest.approx(h, abs=0.02)
    assert 0.0 < h < 1.0


def test_che_edge_cases():
    r, n = compress(np.array([0.5, 0.5, 0.0]))
    assert n.sum() == 2
    assert characteristic_time(r, n, 5) == np.inf              # everything fits
    assert hit_probability(np.array([0.1]), np.inf)[0] == 1.0


def test_tlb_reach_per_page_size():
    """16,384 pages of 4 KiB uniformly: 512 entries hit 1/32 of the time; the same memory as
    32 THPs fits 512 2 MiB entries entirely."""
    n = 16384
    w = np.full(n, 1.0 / n)
    slots = np.arange(n, dtype=np.int64)
    small = translation(w, slots, np.zeros(n, bool), (64, 512), (32, 512))
    huge = translation(w, slots, np.ones(n, bool), (64, 512), (32, 512))
    assert small.walks == pytest.approx(1 - 512 / n, abs=1e-3)
    assert huge.walks == pytest.approx(0.0, abs=1e-9)
    assert small.line_rates.size == n // 8          # one PTE line per 8 pages


def test_translation_compiled_equals_reference():
    """translation's compiled run sums (ascending slots) against translation_reference, bit
    for bit: 4 KiB pages only, THPs only, mixed, ranges with gaps, weights with zeros, and
    slots out of order (the reference itself)."""
    from tierscan.memsys.tlb import translation_reference

    rng = np.random.default_rng(23)
    for case in range(40):
        starts = np.sort(rng.choice(1 << 16, rng.integers(1, 5), replace=False)) << 10
        sizes = rng.integers(1, 40_000, starts.size)       # up to 78 PMDs, 10 PMD lines
        slots = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, sizes)])
        w = rng.random(slots.size) ** 6 * (rng.random(slots.size) < 0.9)
        kind = case % 4
        huge = (np.zeros(slots.size, bool), np.ones(slots.size, bool),
                (slots >> 9) % 3 == 0, rng.random(slots.size) < 0.5)[kind]
        if case % 10 == 9:
            slots = rng.permutation(slots)
        elif case % 10 == 8 and slots.size > 4:        # out of order inside, same ends
            i, j = sorted(rng.choice(np.arange(1, slots.size - 1), 2, replace=False))
            slots[[i, j]] = slots[[j, i]]
        tlb = ((8, 64), (4, 32))[case % 2]
        got = translation(w, slots, huge, tlb, (2, 8))
        ref = translation_reference(w, slots, huge, tlb, (2, 8))
        assert got.walks == ref.walks
        assert got.line_rates.tobytes() == ref.line_rates.tobytes()
        assert got.page_miss.tobytes() == ref.page_miss.tobytes()
