"""Array helpers the hot paths share.

numpy 2's ``np.unique`` finds distinct values with a hash table when it returns nothing but the
values. For the integer keys this model groups by (pfns, identities, node ids; up to millions
of them) that is 5 to 50 times slower than sorting (benchmarks/bench_sample.py), so the model
calls ``unique`` instead.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def upper_bound(a, x, lo, hi):
    """In compiled loops: the first index in [lo, hi) of sorted ``a`` whose entry is above
    ``x`` (hi if none), as ``np.searchsorted(a[lo:hi], x, "right") + lo``."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def unique(a) -> np.ndarray:
    """``np.unique(a)``, the sorted distinct values, found by sorting a copy for integer and
    bool arrays (the same values and dtype); other dtypes go to np.unique (its NaN rules)."""
    a = np.asarray(a)
    if a.dtype.kind not in "biu":
        return np.unique(a)
    s = np.sort(a, axis=None)
    if s.size < 2:
        return s
    keep = np.empty(s.size, dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]
