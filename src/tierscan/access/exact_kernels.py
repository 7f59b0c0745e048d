"""Compiled helpers of the exact model's fast path (access/exact.py).

Drawing pages: the tabulated distributions (workload/distributions.py) draw a page by
inverse CDF, ``np.searchsorted(cdf, u, side="right")``, a binary search that misses the
branch predictor on every level (~90 ns a draw on a 2,097-page CDF, half the exact engine's
time). ``draw_pages`` returns the same index for the same ``u`` through a guide table: bucket
``j`` of ``u * K / total`` holds where the search for the bucket's lower edge lands, so a draw
searches only its bucket (one or two entries for K = n). The bucket's bounds are checked
against the CDF itself before the search and widened if float rounding put ``u`` in the
neighbouring bucket, so the result is exactly searchsorted's (tests compare them).
``GuideTables`` keeps the tables; the rate model draws IBS's sampled pages through it too
(``draw_index``).

``draw_index`` first reads a settled-bucket table (``settled_buckets``): one int32 a bucket
(a page each, up to 16 Mi pages), the answer every ``u`` of the bucket gets, or -1 where a
CDF entry lies inside the bucket (those draws search the guide as above). A settled draw is
one read of a table a quarter the size of guide + CDF, with no dependent read and no branchy
search: the pghot IBS runs' uniform distributions (2 Mi and 16 Mi pages) have every bucket
settled (~6 ns a draw against ~20-45 ns on 2 Mi pages, this host).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..arrays import upper_bound
from .. import prefetch as pf
from ..prefetch import prefetch

GUIDE_MAX = 1 << 22      # buckets at most (32 MiB of guide); more pages share buckets
# settled buckets at most (64 MiB of int32): a page each up to 16 Mi pages (pghot Mode 3's
# uniform 16 Mi pages, whose guide buckets hold 4 pages each, all settled)
SETTLED_MAX = 1 << 24
# The tabulated distributions' inverse-CDF ``sample`` (workload/distributions.py, a layer above:
# named, not imported), which the guide-table draws reproduce; any other sampler is called as is.
INVERSE_CDF_SAMPLE = "_Tabulated.sample"


def guide_table(cdf: np.ndarray) -> tuple[np.ndarray, float]:
    """(guide, scale): guide[j] = searchsorted(cdf, j / scale, "right") for j in 0..K."""
    k = int(min(max(cdf.size, 1), GUIDE_MAX))
    scale = k / float(cdf[-1])
    edges = np.arange(k + 1, dtype=np.float64) / scale
    guide = np.searchsorted(cdf, edges, side="right").astype(np.int64)
    guide[-1] = cdf.size
    return guide, scale


def settled_buckets(cdf: np.ndarray, last: int) -> tuple[np.ndarray, float]:
    """(settled, scale): settled[j] = min(searchsorted(cdf, x, "right"), last), the same for
    every x of bucket j = ``_bucket(x, scale, K)``, or -1 where x's answer varies inside
    bucket j. K = min(n, SETTLED_MAX) buckets, as many as the guide's up to GUIDE_MAX and
    more past it: a bucket holding several pages' entries is never settled.

    The answer changes at each CDF entry c: for x < c it leaves c out, for x >= c it counts
    it. Bucket j's answer varies iff some entry c of bucket j has a smaller x in bucket j
    too (the float just below c is in bucket j); an entry that is the first x of its bucket
    is counted by all of the bucket's x. ``_bucket`` never decreases as x grows, so the
    entries of earlier buckets are below every x of bucket j and those of later ones above:
    a settled bucket's answer is the number of entries in buckets <= j (at most ``last``:
    crossing an entry from index ``last`` on changes no answer). One compiled pass
    (``_settle``: ~0.12 s CPU for 16 Mi pages against ~1 s for the numpy form and its
    temporaries, ``settled_buckets_reference``)."""
    k = int(min(max(cdf.size, 1), SETTLED_MAX))
    scale = k / float(cdf[-1])
    settled = np.empty(k, np.int32 if cdf.size < 2 ** 31 else np.int64)
    _settle(cdf, scale, last, settled)
    return settled, scale


def settled_buckets_reference(cdf: np.ndarray, last: int) -> tuple[np.ndarray, float]:
    """settled_buckets by numpy: every entry's bucket and its float below's, compared."""
    k = int(min(max(cdf.size, 1), SETTLED_MAX))
    scale = k / float(cdf[-1])

    def bucket(x):        # _bucket's float multiply and truncation, clipped
        return np.clip((x * scale).astype(np.int64), 0, k - 1)

    b = bucket(cdf)
    varies = b == bucket(np.nextafter(cdf, -np.inf))
    varies[last:] = False     # entries from index ``last`` on move no answer past ``last``
    settled = np.minimum(np.searchsorted(b, np.arange(k), side="right"), last)
    settled[b[varies]] = -1
    return settled.astype(np.int32 if cdf.size < 2 ** 31 else np.int64), scale


@njit(cache=True, nogil=True, inline="always")
def _bucket(x, scale, k):
    """The guide bucket of x (clipped to the k buckets)."""
    j = int(x * scale)
    if j >= k:
        j = k - 1
    elif j < 0:
        j = 0
    return j


@njit(cache=True, nogil=True)
def _settle(cdf, scale, last, settled):
    """settled_buckets' table in one pass over the buckets and the CDF entries: the entries
    of bucket j are those taken while their bucket is <= j (the buckets ascend)."""
    k = settled.size
    n = cdf.size
    i = 0
    for j in range(k):
        varies = False
        while i < n and _bucket(cdf[i], scale, k) <= j:
            if i < last and _bucket(np.nextafter(cdf[i], -np.inf), scale, k) == j:
                varies = True
            i += 1
        settled[j] = -1 if varies else min(i, last)


@njit(cache=True, nogil=True, inline="always")
def _locate(x, cdf, guide, scale, last):
    """min(searchsorted(cdf, x, "right"), last), searching only x's bucket of the guide."""
    n = cdf.size
    k = guide.size - 1
    j = _bucket(x, scale, k)
    lo = guide[j]
    hi = guide[j + 1]
    # the answer is the number of entries <= x: make sure it lies in [lo, hi]
    while lo > 0 and cdf[lo - 1] > x:
        lo -= 1
    while hi < n and cdf[hi] <= x:
        hi += 1
    lo = upper_bound(cdf, x, lo, hi)
    if lo > last:
        lo = last
    return lo


@njit(cache=True, nogil=True, inline="always")
def _prefetch_draws(u, i, ahead, cdf, guide, scale, counts):
    """Prefetch draw i + ahead's guide bucket, and draw i + ahead/2's CDF entry and count
    (at the bucket's first page, the draw's own entry or next to it), once its bucket has
    arrived: the draws' cache misses overlap (tierscan.prefetch)."""
    k = guide.size - 1
    if i + ahead < u.size:
        prefetch(guide, _bucket(u[i + ahead], scale, k))
    half = ahead // 2
    if half and 0 <= i + half < u.size:
        g = guide[_bucket(u[i + half], scale, k)]
        prefetch(cdf, g)
        if counts.size:
            prefetch(counts, g)


@njit(cache=True, nogil=True)
def draw_pages(u, cdf, guide, scale, last, counts, out, ahead):
    """out[i] = min(searchsorted(cdf, u[i], "right"), last); counts[out[i]] += 1. With
    ``ahead`` > 0 the draws ahead are prefetched (_prefetch_draws)."""
    for i in range(-ahead, u.size):
        if ahead:
            _prefetch_draws(u, i, ahead, cdf, guide, scale, counts)
        if i >= 0:
            lo = _locate(u[i], cdf, guide, scale, last)
            out[i] = lo
            counts[lo] += 1


@njit(cache=True, nogil=True)
def draw_index(u, cdf, guide, scale, last, settled, settled_scale, out):
    """out[i] = min(searchsorted(cdf, u[i], "right"), last) (draw_pages without counting):
    ``settled``'s entry for u[i]'s settled bucket (settled_buckets), or where it is -1 the
    search of u[i]'s guide bucket. No prefetches: the settled reads are independent of each
    other, so the core overlaps their misses by itself (prefetching them measured no faster;
    the former form, a search per draw with the guide and CDF prefetched as draw_pages does,
    was ~2x slower with its prefetches than without on this host's 2 Mi-page uniform draw).
    The reference is searchsorted (the distribution's own ``sample``;
    tests/test_exact_fast.py)."""
    k = settled.size
    for i in range(u.size):
        s = settled[_bucket(u[i], settled_scale, k)]
        out[i] = s if s >= 0 else _locate(u[i], cdf, guide, scale, last)


class GuideTables:
    """The guide table of each (tabulated distribution, page count) drawn from, made at its
    first draw and kept (the distribution objects are kept too, so an id is never reused).
    ``draw`` is ``dist.sample(n, count, rng)`` bit for bit: the same uniforms from ``rng``,
    the same pages. A distribution whose ``sample`` is not the tabulated inverse CDF
    returns None from ``get``."""

    def __init__(self):
        self._tables: dict = {}
        self._settled: dict = {}

    def get(self, dist, n: int):
        """(cdf, guide, scale, last) of ``dist`` over ``n`` pages, or None."""
        if getattr(type(dist).sample, "__qualname__", "") != INVERSE_CDF_SAMPLE:
            return None
        key = (id(dist), n)
        t = self._tables.get(key)
        if t is None:
            cdf = dist.cdf(n)
            last = int(np.flatnonzero(dist.weights(n))[-1])
            t = self._tables[key] = (dist, cdf, *guide_table(cdf), last)
        return t[1:]

    def settled(self, dist, n: int, table) -> tuple[np.ndarray, float]:
        """The settled-bucket table and its scale (settled_buckets) of ``table`` =
        get(dist, n), made at its first use (only draw_index reads it)."""
        key = (id(dist), n)
        s = self._settled.get(key)
        if s is None:
            cdf, _, _, last = table
            s = self._settled[key] = settled_buckets(cdf, last)
        return s

    @staticmethod
    def ahead(table) -> int:
        """The prefetch distance of draws from ``table`` (none while it fits a core's L2)."""
        return pf.distance(table[0].nbytes + table[1].nbytes)

    @staticmethod
    def uniforms(table, count: int, rng) -> np.ndarray:
        """The uniforms of ``count`` draws, scaled as the tabulated ``sample`` scales them."""
        u = rng.random(count)
        u *= table[0][-1]
        return u

    def draw(self, dist, n: int, count: int, rng) -> np.ndarray:
        """``dist.sample(n, count, rng)``: through the guide table where there is one."""
        t = self.get(dist, n)
        if t is None:
            return dist.sample(n, count, rng)
        out = np.empty(count, np.int64)
        draw_index(self.uniforms(t, count, rng), *t, *self.settled(dist, n, t), out)
        return out
