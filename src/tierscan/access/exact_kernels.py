"""Compiled helpers of the exact model's fast path (access/exact.py).

Drawing pages: the tabulated distributions (workload/distributions.py) draw a page by
inverse CDF, ``np.searchsorted(cdf, u, side="right")``, a binary search that misses the
branch predictor on every level (~90 ns a draw on a 2,097-page CDF, half the exact engine's
time). ``draw_pages`` returns the same index for the same ``u`` through a guide table: bucket
``j`` of ``u * K / total`` holds where the search for the bucket's lower edge lands, so a draw
searches only its bucket (one or two entries for K = n). The bucket's bounds are checked
against the CDF itself before the search and widened if float rounding put ``u`` in the
neighbouring bucket, so the result is exactly searchsorted's (tests compare them).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..arrays import upper_bound

GUIDE_MAX = 1 << 22      # buckets at most (32 MiB of guide); more pages share buckets


def guide_table(cdf: np.ndarray) -> tuple[np.ndarray, float]:
    """(guide, scale): guide[j] = searchsorted(cdf, j / scale, "right") for j in 0..K."""
    k = int(min(max(cdf.size, 1), GUIDE_MAX))
    scale = k / float(cdf[-1])
    edges = np.arange(k + 1, dtype=np.float64) / scale
    guide = np.searchsorted(cdf, edges, side="right").astype(np.int64)
    guide[-1] = cdf.size
    return guide, scale


@njit(cache=True, nogil=True)
def draw_pages(u, cdf, guide, scale, last, counts, out):
    """out[i] = min(searchsorted(cdf, u[i], "right"), last); counts[out[i]] += 1."""
    n = cdf.size
    k = guide.size - 1
    for i in range(u.size):
        x = u[i]
        j = int(x * scale)
        if j >= k:
            j = k - 1
        elif j < 0:
            j = 0
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
        out[i] = lo
        counts[lo] += 1
