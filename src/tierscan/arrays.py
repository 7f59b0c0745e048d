"""Array helpers the hot paths share.

numpy 2's ``np.unique`` finds distinct values with a hash table when it returns nothing but the
values. For the integer keys this model groups by (pfns, identities, node ids; up to millions
of them) that is 5 to 50 times slower than sorting (benchmarks/bench_sample.py), so the model
calls ``unique`` instead, and ``unique_inverse`` where it also needs each value's group.
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


@njit(cache=True, nogil=True, inline="always")
def page_index(s, range_start, range_end, range_base):
    """In compiled loops: ThreadGroup.index_of of one page slot (its place among the pages
    of the disjoint ranges [range_start, range_end) numbered from range_base, -1 if none)."""
    r = upper_bound(range_start, s, 0, range_start.size) - 1
    if r < 0 or s >= range_end[r]:
        return -1
    return range_base[r] + s - range_start[r]


@njit(cache=True, nogil=True)
def move_weight_out(node_mass, src, slots, range_start, range_end, range_base, w):
    """A remap or unmap hook's first step for one thread group (a group's pages are the page
    slots of its ranges [range_start, range_end), numbered from range_base: ThreadGroup
    .index_of): subtract each of ``slots`` that is the group's page's weight from the mass of
    its node ``src`` in slot order, as ``np.subtract.at(node_mass, src[ok], w[idx[ok]])``
    does, and return those weights in that order (what ``w[idx[ok]]`` gives) and each slot's
    place among the group's pages, -1 if none (``idx``). move_weight_out_reference is the
    numpy form."""
    n = slots.size
    out = np.empty(n)
    idx = np.empty(n, np.int64)
    k = 0
    for j in range(n):
        i = page_index(slots[j], range_start, range_end, range_base)
        idx[j] = i
        if i < 0:
            continue
        node_mass[src[j]] -= w[i]
        out[k] = w[i]
        k += 1
    return out[:k], idx


def move_weight_out_reference(node_mass, src, group, slots, w):
    idx = group.index_of(slots)
    ok = idx >= 0
    np.subtract.at(node_mass, np.asarray(src)[ok], w[idx[ok]])
    return w[idx[ok]], idx


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


def first_occurrences(a) -> np.ndarray:
    """``a`` without the repeats of a value, each kept at its first place, in ``a``'s order:
    ``a[np.sort(np.unique(a, return_index=True)[1])]`` (first_occurrences_reference). Batches
    of folio heads rarely repeat one, so a plain sort (no stable argsort) first checks that
    none does and returns ``a`` itself then."""
    a = np.asarray(a)
    if a.size < 2:
        return a
    s = np.sort(a)
    if (s[1:] != s[:-1]).all():
        return a
    return first_occurrences_reference(a)


def first_occurrences_reference(a) -> np.ndarray:
    _, first = np.unique(a, return_index=True)
    return a[np.sort(first)]


def stable_argsort(a) -> np.ndarray:
    """``np.argsort(a, kind="stable")`` of a 1-D array, found by the faster unstable sort
    (2-4 times, 10^4-10^5 floats): a permutation that sorts keys no two of which are equal is
    the only one, so the unstable order is the stable one unless two sorted neighbours are
    equal (or NaN, which sorts last and equals nothing), when the stable sort is used."""
    a = np.asarray(a)
    order = np.argsort(a)
    if a.size < 2:
        return order
    s = a[order]
    if (s[1:] == s[:-1]).any() or (s.dtype.kind in "fc" and np.isnan(s[-1])):
        return np.argsort(a, kind="stable")
    return order


@njit(cache=True, nogil=True)
def _packed_keys(a, lo, bits):
    """Each key's offset from ``lo`` above ``bits`` bits holding its index, in one pass (the
    numpy form is four: astype, subtract, shift, or with an arange)."""
    out = np.empty(a.size, np.int64)
    for i in range(a.size):
        out[i] = ((np.int64(a[i]) - lo) << bits) | i
    return out


def packed_sort(a):
    """``(packed, lo, bits)``: a 1-D integer array's keys sorted with their indexes, each as
    ``(key - lo) << bits | index`` in one int64 (ascending by key, equal keys by index), or
    None when the keys leave no room for the index bits (or are not integers). np.sort of
    the packed keys is numpy's vectorised sort, ~5 times argsort's at 2 M random keys."""
    a = np.asarray(a)
    n = a.size
    if a.ndim != 1 or a.dtype.kind not in "iu":
        return None
    lo = int(a.min()) if n else 0
    hi = int(a.max()) if n else 0
    bits = max(n - 1, 0).bit_length()
    if hi - lo >= 1 << (63 - bits):
        return None
    if a.dtype.kind == "u":     # (offset in their own type: they may not fit an int64)
        a, lo_arg = a - a.dtype.type(lo), 0
    else:
        lo_arg = lo
    packed = _packed_keys(a, lo_arg, bits)
    packed.sort()
    return packed, lo, bits


def sort_order(a) -> np.ndarray:
    """``np.argsort(a, kind="stable")`` of a 1-D integer array, read off packed_sort; keys
    that leave no room for the index bits, and other dtypes, go to np.argsort (which is also
    the reference the tests compare with)."""
    a = np.asarray(a)
    if a.size > 1:
        p = packed_sort(a)
        if p is not None:
            packed, _, bits = p
            packed &= (1 << bits) - 1
            return packed
    return np.argsort(a, kind="stable")


# unique_inverse counts into a table instead of sorting when the keys span at most this many
# values per key (or _DENSE_MIN in all): the table costs O(span), the sort O(n log n)
_DENSE_PER_KEY = 4
_DENSE_MIN = 1 << 16


def unique_inverse(a) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(a, return_inverse=True)`` for a 1-D array: the sorted distinct values and
    each entry's index among them. Keys in ascending order take one pass; integer keys of a
    narrow range (page-table lines, binned rates) are ranked through a presence table in
    linear time; the result is the same arrays np.unique returns (values in a's dtype,
    indices as intp)."""
    a = np.asarray(a)
    if a.ndim == 1 and a.size > 1 and a.dtype.kind in "biu" and (a[1:] >= a[:-1]).all():
        # ascending already (a group's page slots, their PMDs): the values where a run
        # starts, and each entry's run by a running count
        new = np.empty(a.size, dtype=bool)
        new[0] = True
        np.not_equal(a[1:], a[:-1], out=new[1:])
        return a[new], np.cumsum(new, dtype=np.intp) - 1
    if a.ndim == 1 and a.size and a.dtype.kind in "iu" and a.dtype.itemsize <= 8 and \
            not (a.dtype.kind == "u" and a.dtype.itemsize == 8):
        lo, hi = int(a.min()), int(a.max())
        span = hi - lo + 1
        if span <= max(_DENSE_PER_KEY * a.size, _DENSE_MIN):
            off = a.astype(np.intp) - lo
            present = np.zeros(span, dtype=bool)
            present[off] = True
            rank = np.cumsum(present, dtype=np.intp) - 1
            return (np.flatnonzero(present) + lo).astype(a.dtype), rank[off]
    return np.unique(a, return_inverse=True)
