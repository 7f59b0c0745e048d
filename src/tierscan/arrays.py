"""Array helpers the hot paths share.

numpy 2's ``np.unique`` finds distinct values with a hash table when it returns nothing but the
values. For the integer keys this model groups by (pfns, identities, node ids; up to millions
of them) that is 5 to 50 times slower than sorting (benchmarks/bench_sample.py), so the model
calls ``unique`` instead, and ``unique_inverse`` where it also needs each value's group.
"""

from __future__ import annotations

import operator

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import load_item, make_array


# upper_bound and page_index are numba intrinsics (their loop written in LLVM IR here) rather
# than @njit(inline="always") functions: a called or inlined numba function binds its array
# arguments to new variables, each an atomic NRT_incref at the call and NRT_decref at its
# returns, and numba's reference-count pruning cannot remove those around the search's loop or
# across the callee's several returns. Every caller's loop then paid them per element: 36 vs
# 22 ns an element in a page_index loop on 64 ranges, move_weight_out x12 (memsys3, thpmig).
# An intrinsic takes the arrays' LLVM values as they are, so no reference counting is emitted
# (tests/test_arrays.py checks a page_index loop has none and its former form some; the former
# upper_bound, one return, kept none in the loops tried: its intrinsic is the same search as
# page_index's). The former @njit forms are kept as upper_bound_reference /
# page_index_reference and compared element for element in the tests.

def _search_right(context, builder, aty, ary_value, xty, x_value, lo, hi):
    """LLVM IR of upper_bound's loop: the first index in [lo, hi) (intp values) of the sorted
    1-d array ``ary_value`` (numba type ``aty``) whose entry is above ``x_value``; the
    comparison is numba's ``<=`` of the entry and x (the typed signature it resolves to)."""
    le_sig = context.typing_context.resolve_function_type(operator.le, (aty.dtype, xty), {})
    le = context.get_function(operator.le, le_sig)
    ary = make_array(aty)(context, builder, value=ary_value)
    x = context.cast(builder, x_value, xty, le_sig.args[1])
    lo_ptr = cgutils.alloca_once_value(builder, lo)
    hi_ptr = cgutils.alloca_once_value(builder, hi)
    test = builder.append_basic_block("upper_bound.test")
    step = builder.append_basic_block("upper_bound.step")
    done = builder.append_basic_block("upper_bound.done")
    builder.branch(test)
    builder.position_at_end(test)
    lo_v, hi_v = builder.load(lo_ptr), builder.load(hi_ptr)
    builder.cbranch(builder.icmp_signed("<", lo_v, hi_v), step, done)
    builder.position_at_end(step)
    mid = builder.ashr(builder.add(lo_v, hi_v), lo_v.type(1))
    entry = load_item(context, builder, aty,
                      cgutils.get_item_pointer(context, builder, aty, ary, [mid],
                                               wraparound=False))
    entry = context.cast(builder, entry, aty.dtype, le_sig.args[0])
    with builder.if_else(le(builder, (entry, x))) as (at_or_below, above):
        with at_or_below:
            builder.store(builder.add(mid, mid.type(1)), lo_ptr)
        with above:
            builder.store(mid, hi_ptr)
    builder.branch(test)
    builder.position_at_end(done)
    return builder.load(lo_ptr)


def _is_int_index(t) -> bool:
    """An integer type whose values numba's arithmetic with int64 keeps in int64 (uint64
    would go to float64, which no caller has)."""
    return isinstance(t, types.Integer) and (t.signed or t.bitwidth < 64)


@intrinsic
def upper_bound(typingctx, a, x, lo, hi):
    """In compiled loops: the first index in [lo, hi) of sorted ``a`` whose entry is above
    ``x`` (hi if none), as ``np.searchsorted(a[lo:hi], x, "right") + lo``
    (upper_bound_reference)."""
    if not (isinstance(a, types.Array) and a.ndim == 1 and _is_int_index(lo)
            and _is_int_index(hi)):
        return None

    def codegen(context, builder, sig, args):
        a_v, x_v, lo_v, hi_v = args
        return _search_right(context, builder, a, a_v, x, x_v,
                             context.cast(builder, lo_v, lo, types.intp),
                             context.cast(builder, hi_v, hi, types.intp))

    return types.intp(a, x, lo, hi), codegen


@intrinsic
def page_index(typingctx, s, range_start, range_end, range_base):
    """In compiled loops: ThreadGroup.index_of of one page slot (its place among the pages
    of the disjoint ranges [range_start, range_end) numbered from range_base, -1 if none;
    page_index_reference)."""
    arrays_ = (range_start, range_end, range_base)
    if not (_is_int_index(s) and all(isinstance(t, types.Array) and t.ndim == 1
                                     and _is_int_index(t.dtype) for t in arrays_)):
        return None

    def codegen(context, builder, sig, args):
        s_v, start_v, end_v, base_v = args
        intp = context.get_value_type(types.intp)

        def entry(aty, value, r):
            ary = make_array(aty)(context, builder, value=value)
            ptr = cgutils.get_item_pointer(context, builder, aty, ary, [r], wraparound=False)
            return context.cast(builder, load_item(context, builder, aty, ptr), aty.dtype,
                                types.intp)

        slot = context.cast(builder, s_v, s, types.intp)
        n = make_array(range_start)(context, builder, value=start_v).shape
        n = builder.extract_value(n, 0)
        r = builder.sub(_search_right(context, builder, range_start, start_v, types.intp, slot,
                                      intp(0), n), intp(1))
        out = cgutils.alloca_once_value(builder, intp(-1))
        with builder.if_then(builder.icmp_signed(">=", r, intp(0))):
            with builder.if_then(builder.icmp_signed("<", slot, entry(range_end, end_v, r))):
                place = builder.sub(builder.add(entry(range_base, base_v, r), slot),
                                    entry(range_start, start_v, r))
                builder.store(place, out)
        return builder.load(out)

    return types.intp(s, range_start, range_end, range_base), codegen


@njit(cache=True, nogil=True, inline="always")
def upper_bound_reference(a, x, lo, hi):
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True, inline="always")
def page_index_reference(s, range_start, range_end, range_base):
    r = upper_bound_reference(range_start, s, 0, range_start.size) - 1
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


@njit(cache=True, nogil=True)
def node_mass(nodes, w, nr_nodes):
    """The weight of a group's pages on each node (``nodes``: each page's, -1 where none is
    mapped; memsys's and the rate model's at a phase change): node_mass_reference's sums in
    one pass, each node's taken page by page in page order as np.bincount takes it, so the
    same floats. The running sum of the current node stays in a register while the next
    page is on the same node (its store and reload are the loop's latency otherwise: 16 Mi
    pages in runs, 67 -> 14 ms). The reference adds an unmapped page's 0.0 to node 0, which
    leaves a sum of weights (>= 0) unchanged, so it is skipped."""
    out = np.zeros(nr_nodes)
    nd, acc = -1, 0.0               # the current node and its running sum
    for i in range(nodes.size):
        x = nodes[i]
        if x >= 0:
            if x != nd:
                if nd >= 0:
                    out[nd] = acc
                nd, acc = x, out[x]
            acc += w[i]
    if nd >= 0:
        out[nd] = acc
    return out


def node_mass_reference(nodes, w, nr_nodes):
    """node_mass by numpy: a bincount, unmapped pages (node -1) adding 0.0 to node 0."""
    return np.bincount(np.maximum(nodes, 0), weights=w * (nodes >= 0), minlength=nr_nodes)


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


def dense_span(span, n: int) -> bool:
    """Is a table of ``span`` entries cheaper than sorting ``n`` keys that span them (the
    choice unique_inverse makes, and memsys.lru.compress's bin sums)?"""
    return span <= max(_DENSE_PER_KEY * n, _DENSE_MIN)


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
        if dense_span(span, a.size):
            off = a.astype(np.intp) - lo
            present = np.zeros(span, dtype=bool)
            present[off] = True
            rank = np.cumsum(present, dtype=np.intp) - 1
            return (np.flatnonzero(present) + lo).astype(a.dtype), rank[off]
    return np.unique(a, return_inverse=True)
