"""Che's approximation of an LRU cache under independent references (Che, Tung and Wang, IEEE
JSAC 20(7), 2002; Fricker, Robert and Roberts, ITC 2012, on why it is accurate).

Items i with reference probabilities λ_i (per reference of the stream) share a cache of C
items. An item stays cached for the cache's *characteristic time* t after its last reference,
where t solves Σ_i (1 − exp(−λ_i t)) = C; item i then hits with probability 1 − exp(−λ_i t).
Used for the TLB (items: pages, capacity: entries) and the LLC (items: 64-byte lines).
"""

from __future__ import annotations

import numpy as np

from ..arrays import unique_inverse

_BINS_PER_E = 256     # rates within a factor e^(1/256) share one representative (compress)


def compress(rates, counts=None):
    """(rates, multiplicities) with equal rates, and nearly equal ones (0.4%), merged:
    an LRU model of millions of pages then costs a few thousand exponentials."""
    rates = np.asarray(rates, float)
    counts = np.ones(rates.size) if counts is None else np.asarray(counts, float)
    keep = (rates > 0) & (counts > 0)
    rates, counts = rates[keep], counts[keep]
    if rates.size == 0:
        return rates, counts
    key = np.round(np.log(rates) * _BINS_PER_E).astype(np.int64)
    uniq, inv = unique_inverse(key)
    n = np.bincount(inv, weights=counts, minlength=uniq.size)
    mass = np.bincount(inv, weights=counts * rates, minlength=uniq.size)
    return mass / n, n


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
    return -np.expm1(-rates * t)
