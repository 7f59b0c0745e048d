"""Che's approximation of an LRU cache under independent references (Che, Tung and Wang, IEEE
JSAC 20(7), 2002; Fricker, Robert and Roberts, ITC 2012, on why it is accurate).

Items i with reference probabilities λ_i (per reference of the stream) share a cache of C
items. An item stays cached for the cache's *characteristic time* t after its last reference,
where t solves Σ_i (1 − exp(−λ_i t)) = C; item i then hits with probability 1 − exp(−λ_i t).
Used for the TLB (items: pages, capacity: entries) and the LLC (items: 64-byte lines).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..arrays import dense_span, unique_inverse

_BINS_PER_E = 256     # rates within a factor e^(1/256) share one representative (compress)


def compress(rates, counts=None):
    """(rates, multiplicities) with equal rates, and nearly equal ones (0.4%), merged:
    an LRU model of millions of pages then costs a few thousand exponentials. ``counts``: the
    items each rate stands for (one each by default; a scalar that is a power of two, such as
    a page's 64 lines, stands for every rate alike)."""
    rates = np.asarray(rates, float)
    if counts is not None and np.ndim(counts) == 0 and not _power_of_two(float(counts)):
        counts = np.full(rates.size, float(counts))
    per_item = counts is not None and np.ndim(counts) > 0
    keep = rates > 0
    if per_item:
        counts = np.asarray(counts, float)
        keep &= counts > 0
    elif counts is not None and not counts > 0:
        keep[:] = False
    if not keep.all():
        rates = rates[keep]
        counts = counts[keep] if per_item else counts
    if rates.size == 0:
        return rates, np.zeros(0)
    key = np.log(rates)
    key *= _BINS_PER_E
    np.round(key, out=key)
    lo, hi = key.min(), key.max()
    if dense_span(hi - lo + 1, key.size):
        # (as arrays.unique_inverse ranks keys) one compiled pass into a table of every bin in
        # the span (no key-rank array): the same sums in the same order as the bincounts below
        c = float(counts) if counts is not None and not per_item else 1.0
        mass, n = _bin_sums(key, int(lo), int(hi - lo) + 1, rates,
                            counts if per_item else np.zeros(0), c)
        return mass / n, n
    uniq, inv = unique_inverse(key.astype(np.int64))
    if per_item:
        n = np.bincount(inv, weights=counts, minlength=uniq.size)
        mass = np.bincount(inv, weights=counts * rates, minlength=uniq.size)
    else:
        # the same sums as with an array of counts: adding c, a power of two (1 by default),
        # k times is exactly k·c, and c·r is exact, so the bins' sums are the same floats
        c = 1.0 if counts is None else float(counts)
        n = np.bincount(inv, minlength=uniq.size) * c
        mass = np.bincount(inv, weights=rates if c == 1.0 else c * rates, minlength=uniq.size)
    return mass / n, n


# a pass of sums in order: numba (DESIGN §4); its reference is compress's bincount form (which
# bins too wide a span), compared in tests/test_perf_paths.py
@njit(cache=True, nogil=True)
def _bin_sums(key, lo, span, rates, counts, c):
    """(mass, n) of the bins present, in ascending key: per-item ``counts`` (when given) or
    ``c`` per rate, each bin's sums taken in the rates' order from 0 (np.bincount's order;
    n as bincount's integer count times c when counts are not per item)."""
    per_item = counts.size > 0
    items = np.zeros(span, np.int64)
    n = np.zeros(span)
    mass = np.zeros(span)
    for i in range(key.size):
        b = np.int64(key[i]) - lo
        items[b] += 1
        if per_item:
            n[b] += counts[i]
            mass[b] += counts[i] * rates[i]
        else:
            mass[b] += rates[i] if c == 1.0 else c * rates[i]
    k = 0
    for b in range(span):
        if items[b]:
            n[k] = n[b] if per_item else items[b] * c
            mass[k] = mass[b]
            k += 1
    return mass[:k].copy(), n[:k].copy()


def _power_of_two(c: float) -> bool:
    return c > 0 and math.frexp(c)[0] == 0.5


def characteristic_time(rates, counts, capacity: float) -> float:
    """t with Σ counts·(1 − exp(−rates·t)) = capacity; inf when everything fits."""
    if counts.sum() <= capacity or rates.size == 0:
        return np.inf
    if capacity <= 0:
        return 0.0
    lo, hi = 0.0, capacity / float((counts * rates).sum())   # occupancy(hi) <= capacity
    while (counts * -np.expm1(-rates * hi)).sum() < capacity:
        lo, hi = hi, hi * 2
    for _ in range(60):                                       # bisection to 2^-60 relative
        mid = 0.5 * (lo + hi)
        if (counts * -np.expm1(-rates * mid)).sum() < capacity:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return 0.5 * (lo + hi)


def hit_probability(rates, t: float):
    """Probability that a reference to an item of each rate hits, given characteristic time t."""
    rates = np.asarray(rates, float)
    if np.isinf(t):
        return np.ones_like(rates)
    p = rates * -t                  # = -rates * t exactly; in place below: one array, not three
    np.expm1(p, out=p)
    return np.negative(p, out=p)
