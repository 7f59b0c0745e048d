"""YCSB's request distributions over record numbers (brianfrankcooper/YCSB, core/.../generator):
which key an operation asks for, as probabilities over the ``keys`` records.

``zipfian`` is what YCSB's CoreWorkload uses for ``requestdistribution=zipfian``: a
ScrambledZipfianGenerator, i.e. a ZipfianGenerator over ITEM_COUNT ranks with the zipfian
constant 0.99 and the precomputed ZETAN, whose rank is hashed onto the keys as
``fnvhash64(rank) % keys``. The ZipfianGenerator draws a rank by Gray et al.'s method ("Quickly
generating billion-record synthetic databases", SIGMOD 1994): u uniform in [0, 1); rank 0 if
u·zetan < 1, rank 1 if u·zetan < 1 + 0.5^theta, else floor(items·(eta·u - eta + 1)^alpha).
Here each rank's probability is that method's exact measure of u (closed form), so the key
probabilities are YCSB's own, not those of an ideal Zipf law. Ranks below ``head_ranks`` are
hashed one by one; the probability of the ranks beyond (ITEM_COUNT is 1e16) is spread evenly
over the keys, which is what hashing billions of ranks of tiny weight onto them does.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

__all__ = ["ZETAN", "ZIPFIAN_CONSTANT", "ITEM_COUNT", "fnvhash64", "zipfian_rank_probabilities",
           "key_probabilities", "REQUEST_DISTRIBUTIONS"]

# ScrambledZipfianGenerator.java (YCSB master): ZETAN, USED_ZIPFIAN_CONSTANT, ITEM_COUNT. ZETAN is
# zeta(1e10, 0.99), kept when ITEM_COUNT grew from 1e10 to 1e16; the generator uses it as given.
ZETAN = 26.46902820178302
ZIPFIAN_CONSTANT = 0.99
ITEM_COUNT = 10_000_000_000_000_000
FNV_OFFSET_BASIS_64 = np.uint64(0xCBF29CE484222325)     # site.ycsb.Utils
FNV_PRIME_64 = np.uint64(1099511628211)
REQUEST_DISTRIBUTIONS = ("zipfian", "uniform")
_CHUNK = 1 << 20


def fnvhash64(values) -> np.ndarray:
    """YCSB's Utils.fnvhash64 of each value (int64 >= 0): FNV-1a over its 8 low-to-high bytes,
    then Math.abs of the signed result."""
    x = np.asarray(values, dtype=np.int64).astype(np.uint64)
    h = np.full(x.shape, FNV_OFFSET_BASIS_64, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for _ in range(8):
            h ^= x & np.uint64(0xFF)
            h *= FNV_PRIME_64
            x >>= np.uint64(8)
    return np.abs(h.view(np.int64))


def _gray_constants(items=ITEM_COUNT, theta=ZIPFIAN_CONSTANT, zetan=ZETAN):
    a = 1.0 - theta                                     # 1 / alpha
    zeta2 = 1.0 + 0.5 ** theta
    eta = (1.0 - (2.0 / items) ** a) / (1.0 - zeta2 / zetan)
    return a, eta, zeta2 / zetan


def _g(x: float, items=ITEM_COUNT) -> float:
    """The u below which the formula's rank is <= x."""
    a, eta, _ = _gray_constants(items)
    return (((x + 1) / items) ** a - 1.0 + eta) / eta


def zipfian_rank_probabilities(first: int, count: int, items=ITEM_COUNT) -> np.ndarray:
    """P(rank = r) for r in [first, first + count) under YCSB's ZipfianGenerator."""
    a, eta, u1 = _gray_constants(items)
    r = np.arange(first, first + count, dtype=np.float64)
    # formula part, for r >= 8 (where G(r - 1) > u1): G(r) - G(r - 1), without cancellation
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.exp(a * (np.log(r) - math.log(items))) * np.expm1(a * np.log1p(1.0 / r)) / eta
    for i in range(max(first, 0), min(first + count, 8)):   # the first ranks, with their cuts
        lo = u1 if i == 0 else max(_g(i - 1, items), u1)
        p[i - first] = max(_g(i, items), u1) - lo
        if i == 0:
            p[0] += 1.0 / ZETAN
        elif i == 1:
            p[i - first] += u1 - 1.0 / ZETAN
    return p


def zipfian_tail(head_ranks: int, items=ITEM_COUNT) -> float:
    """P(rank >= head_ranks) = 1 - G(head_ranks - 1)."""
    a, eta, _ = _gray_constants(items)
    return -math.expm1(a * math.log(head_ranks / items)) / eta


def head_ranks_for(keys: int) -> int:
    """Ranks hashed one by one: 16 per key, between 2^16 and 2^22."""
    return int(min(1 << 22, max(1 << 16, 16 * keys)))


@lru_cache(maxsize=4)
def key_probabilities(dist: str, keys: int) -> np.ndarray:
    """P(an operation asks for record k), k in [0, keys) (cached, read-only)."""
    if dist == "uniform":
        p = np.full(keys, 1.0 / keys)
        p.setflags(write=False)
        return p
    if dist != "zipfian":
        raise ValueError(f"unknown request distribution {dist!r}")
    head = head_ranks_for(keys)
    assert _g(7) > _gray_constants()[2]            # the closed form holds from rank 8 on
    p = np.zeros(keys)
    for start in range(0, head, _CHUNK):
        n = min(_CHUNK, head - start)
        pr = zipfian_rank_probabilities(start, n)
        p += np.bincount(fnvhash64(np.arange(start, start + n)) % keys, weights=pr,
                         minlength=keys)
    p += zipfian_tail(head) / keys
    p.setflags(write=False)
    return p
