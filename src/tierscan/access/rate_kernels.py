"""The rate model's lazy young-bit draw (rate.py ``_materialize``) as one compiled loop, with
its numpy form beside it as the reference (tests/test_perf_paths.py checks they agree bit for
bit). The walk asks for millions of entries per scan, and the numpy form makes a dozen
temporaries of that size.

Both take the same uniforms (drawn by the caller from the model's generator, so the random
stream is the same), and both read every entry's old state before writing any, so a slot
given twice is handled as numpy's fancy indexing handles it. ``whaz`` is the write hazard of
``Hazards`` (rate.py), or an empty array where it is not kept (Λ_w = Λ × write fraction).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from ..mm.constants import _PAGE_ACCESSED, _PAGE_DIRTY

_A, _D = int(_PAGE_ACCESSED), int(_PAGE_DIRTY)


def materialize_reference(table, slots, present_mask, i, haz, whaz, c_ref, w, C,
                          write_fraction, u):
    """Draw the A (and D) bits of present entries (some bit of ``present_mask`` set) whose A
    bit is clear: P(young) = 1 - exp(-Λ), P(dirty | young) = (1 - exp(-Λ_w)) / P(young); then
    make C their reference point. ``u``: (2, len(slots)) uniforms."""
    fresh = w[i] * (C - c_ref[i])
    lam = haz[i] + fresh
    wlam = lam * write_fraction if whaz.size == 0 else whaz[i] + fresh * write_fraction
    e = table[slots]
    clear = ((e & np.uint64(present_mask)) != 0) & ((e & _PAGE_ACCESSED) == 0)
    p_young = -np.expm1(-lam)
    young = u[0] < p_young
    p_dirty = np.divide(-np.expm1(-wlam), p_young, out=np.zeros_like(lam), where=p_young > 0)
    dirty = u[1] < p_dirty
    table[slots[clear & young]] |= _PAGE_ACCESSED
    table[slots[clear & young & dirty]] |= _PAGE_DIRTY
    haz[i] = 0.0
    if whaz.size:
        whaz[i] = 0.0
    c_ref[i] = C


@njit(cache=True, nogil=True)
def materialize_kernel(table, slots, present_mask, i, haz, whaz, c_ref, w, C, write_fraction,
                       u):
    """materialize_reference() as a loop: the same arithmetic in the same order."""
    n = slots.size
    bits = np.zeros(n, np.uint64)
    for k in range(n):                      # read everything first (numpy's semantics)
        e = table[slots[k]]
        if (e & present_mask) == 0 or (e & np.uint64(_A)) != 0:
            continue
        j = i[k]
        fresh = w[j] * (C - c_ref[j])
        lam = haz[j] + fresh
        if whaz.size == 0:
            wlam = lam * write_fraction
        else:
            wlam = whaz[j] + fresh * write_fraction
        p_young = -math.expm1(-lam)
        if not u[0, k] < p_young:
            continue
        bits[k] = np.uint64(_A)
        p_dirty = -math.expm1(-wlam) / p_young if p_young > 0 else 0.0
        if u[1, k] < p_dirty:
            bits[k] |= np.uint64(_D)
    for k in range(n):
        if bits[k]:
            table[slots[k]] |= bits[k]
    for k in range(n):
        haz[i[k]] = 0.0
        if whaz.size:
            whaz[i[k]] = 0.0
        c_ref[i[k]] = C


def materialize_runs_reference(table, s0, i0, ln, present_mask, haz, whaz, c_ref, w, C,
                               write_fraction, u):
    """materialize_reference() of the entries given as runs: run r is the slots s0[r] ..
    s0[r] + ln[r] - 1 with the entries i0[r] .. i0[r] + ln[r] - 1 (a walk's PTE ranges)."""
    starts = np.cumsum(ln) - ln
    k = np.arange(int(ln.sum())) - np.repeat(starts, ln)
    materialize_reference(table, np.repeat(s0, ln) + k, present_mask, np.repeat(i0, ln) + k,
                          haz, whaz, c_ref, w, C, write_fraction, u)


@njit(cache=True, nogil=True)
def clear_spans(table, s0, ln, present_mask, min_gap, out_a, out_b):
    """The entries of the runs whose draw reads a uniform (present, A bit clear: the others
    read none), as spans [out_a[k], out_b[k]) of positions in the runs' order; a gap of fewer
    than ``min_gap`` unread entries stays inside a span. Returns how many spans (room for
    sum(ln) // min_gap + 1)."""
    k, ns, a, last = 0, 0, -1, -1
    for r in range(s0.size):
        sr = np.uint64(s0[r])
        for q in range(np.uint64(ln[r])):
            e = table[sr + q]        # unsigned: no negative-index wrap-around (2.2 vs 3.1 ns)
            if (e & present_mask) != 0 and (e & np.uint64(_A)) == 0:
                if a < 0:
                    a = k
                elif k - last > min_gap:
                    out_a[ns], out_b[ns] = a, last + 1
                    ns += 1
                    a = k
                last = k
            k += 1
    if a >= 0:
        out_a[ns], out_b[ns] = a, last + 1
        ns += 1
    return ns


@intrinsic
def _mul_64x64(typingctx, a, b):
    """The (high, low) 64-bit halves of the 128-bit product of two uint64 (one multiply)."""
    if not (isinstance(a, types.Integer) and isinstance(b, types.Integer)):
        return None
    ret = types.UniTuple(types.uint64, 2)

    def codegen(context, builder, sig, args):
        i128, i64 = ir.IntType(128), ir.IntType(64)
        prod = builder.mul(builder.zext(args[0], i128), builder.zext(args[1], i128))
        hi = builder.trunc(builder.lshr(prod, ir.Constant(i128, 64)), i64)
        return context.make_tuple(builder, ret, [hi, builder.trunc(prod, i64)])

    return ret(types.uint64, types.uint64), codegen


@njit(cache=True, nogil=True, inline="always")
def pcg64_double(hi, lo, inc_hi, inc_lo):
    """numpy's PCG64 ``random()``: one step of the 128-bit LCG (state = state * M + inc,
    pcg64.h's default multiplier), the XSL-RR output of the new state, its top 53 bits as a
    double. Returns the new state (hi, lo) and the double."""
    ph, pl = _mul_64x64(lo, np.uint64(4865540595714422341))
    nh = ph + lo * np.uint64(2549297995355413924) + hi * np.uint64(4865540595714422341)
    nl = pl + inc_lo
    nh = nh + inc_hi + np.uint64(nl < pl)
    x = nh ^ nl
    rot = nh >> np.uint64(58)
    out = (x >> rot) | (x << ((np.uint64(64) - rot) & np.uint64(63)))
    return nh, nl, np.float64(out >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, nogil=True)
def pcg64_fill(st, out):
    """``out`` filled by pcg64_double from the state st = (hi, lo, inc_hi, inc_lo), which
    is left after the last (for tests: numpy's random(out=out) from the same state)."""
    hi, lo = st[0], st[1]
    for i in range(out.size):
        hi, lo, out[i] = pcg64_double(hi, lo, st[2], st[3])
    st[0], st[1] = hi, lo


@njit(cache=True, nogil=True)
def materialize_runs_drawing(table, s0, i0, ln, present_mask, haz, whaz, c_ref, w, C,
                             write_fraction, st, r, q, k, c, min_gap):
    """materialize_runs_reference() in one pass, drawing its own uniforms from the model's
    PCG64 (numpy's stream, pcg64_double): st = (row 0's state hi, lo, row 1's hi, lo, inc hi,
    lo), row 1
    being the same generator n doubles on (the draw's (2, n) layout), both at column ``c``.
    An entry that reads (present, A bit clear) at column k takes row 0's and row 1's double
    k, after the columns between (read by none) are drawn and dropped; a gap of at least
    ``min_gap`` such columns is left to the caller, which takes it without drawing
    (skip_uniforms): the pass then returns at that entry. Starts at run r, offset q, column
    k (where a pass returned, or 0, 0, 0); leaves the states in ``st``. Returns (r, q, k, c):
    the entry it stopped at (r == len(s0): the end) and the states' column. The same
    doubles as _uniforms' (2, n) array in the same places, and the reference's arithmetic in
    the same order: its results bit for bit. One pass is numpy's read-then-write because runs
    give each slot and entry once. P(young) and P(dirty) are computed again only when their
    inputs change: neighbouring pages of one weight, last drawn together, have the same Λ (a
    uniform workload's whole range), and expm1 of the same double is the same double. The
    two rows' steps are independent, so the core overlaps them. An empty ``haz`` stands for
    all +0.0 (nothing banked): not read (0.0 + fresh, the same double) nor written."""
    h0, l0, h1, l1, ih, il = st[0], st[1], st[2], st[3], st[4], st[5]
    lam0, p_young = np.nan, 0.0
    wlam0, py0, p_dirty = np.nan, np.nan, 0.0
    while r < s0.size:
        sr, jr = np.uint64(s0[r]), np.uint64(i0[r])
        while q < ln[r]:
            s, j = sr + np.uint64(q), jr + np.uint64(q)
            e = table[s]
            if (e & present_mask) != 0 and (e & np.uint64(_A)) == 0:
                if k - c >= min_gap:
                    st[0], st[1], st[2], st[3] = h0, l0, h1, l1
                    return r, q, k, c
                while c < k:                      # a short gap: drawn, not read
                    h0, l0, _ = pcg64_double(h0, l0, ih, il)
                    h1, l1, _ = pcg64_double(h1, l1, ih, il)
                    c += 1
                h0, l0, u0 = pcg64_double(h0, l0, ih, il)
                h1, l1, u1 = pcg64_double(h1, l1, ih, il)
                c += 1
                fresh = w[j] * (C - c_ref[j])
                lam = (haz[j] if haz.size else 0.0) + fresh
                if lam != lam0:
                    lam0, p_young = lam, -math.expm1(-lam)
                if u0 < p_young:
                    if whaz.size == 0:
                        wlam = lam * write_fraction
                    else:
                        wlam = whaz[j] + fresh * write_fraction
                    if wlam != wlam0 or p_young != py0:
                        wlam0, py0 = wlam, p_young
                        p_dirty = -math.expm1(-wlam) / p_young if p_young > 0 else 0.0
                    if u1 < p_dirty:
                        table[s] = e | np.uint64(_A | _D)
                    else:
                        table[s] = e | np.uint64(_A)
            if haz.size:
                haz[j] = 0.0
            if whaz.size:
                whaz[j] = 0.0
            c_ref[j] = C
            k += 1
            q += 1
        r += 1
        q = 0
    st[0], st[1], st[2], st[3] = h0, l0, h1, l1
    return r, q, k, c


# ---- the per-run set-up (rate.py GroupRates, Hazards.change_rates) ---------------------------
# At 16 Mi pages (a 64 GiB mapping) the numpy forms below cost ~0.1-0.2 s each in temporaries;
# the compiled passes give the same arrays in one pass each.

@njit(cache=True, nogil=True, inline="always")
def _bits_differ(a, b):
    """a and b are not the same float bit for bit (apart from NaN payloads): -0.0 != 0.0."""
    return a != b or math.copysign(1.0, a) != math.copysign(1.0, b)


def bank_hazards_reference(w, c_ref, haz, whaz, start_whaz, C, wf_old):
    """A phase change at C banks the hazard of the old rates ``w``: haz += w · (C − c_ref),
    c_ref = C, and the write hazard ``whaz`` += that times the old write fraction, or with
    ``start_whaz`` whaz = (haz + that) · wf_old (its first keeping); an empty ``whaz`` is not
    kept. In place."""
    fresh = w * (C - c_ref)
    if start_whaz:
        whaz[:] = (haz + fresh) * wf_old
    elif whaz.size:
        whaz += fresh * wf_old
    haz += fresh
    c_ref[:] = C


@njit(cache=True, nogil=True)
def bank_hazards(w, c_ref, haz, whaz, start_whaz, C, wf_old):
    """bank_hazards_reference in one pass. An entry the bank leaves the same bit for bit (w 0,
    or c_ref == C already: a new group's zeros) is not written, so the pages of a freshly
    allocated (zero, not yet touched) array are not faulted in."""
    keep_whaz = whaz.size > 0
    for i in range(w.size):
        h = haz[i]
        fresh = w[i] * (C - c_ref[i])
        if start_whaz:
            whaz[i] = (h + fresh) * wf_old
        elif keep_whaz:
            x = whaz[i] + fresh * wf_old
            if _bits_differ(x, whaz[i]):
                whaz[i] = x
        x = h + fresh
        if _bits_differ(x, h):
            haz[i] = x
        if _bits_differ(C, c_ref[i]):
            c_ref[i] = C


def range_pmds(range_start, range_end) -> np.ndarray:
    """The PMDs (slot >> 9) of the page slots of the ranges [range_start[r], range_end[r]),
    sorted and distinct: ``np.unique`` of the slots' PMDs without listing the slots."""
    first, last = np.asarray(range_start) >> 9, (np.asarray(range_end) - 1) >> 9
    return np.unique(np.concatenate([np.arange(a, b + 1, dtype=np.int64)
                                     for a, b in zip(first, last)] + [np.empty(0, np.int64)]))


def pmd_weights_reference(slots, pmds, w):
    """Σ w over a group's pages (``slots``) in each of its PMDs ``pmds`` (sorted), by numpy:
    each page's PMD by a search, then a bincount."""
    return np.bincount(np.searchsorted(pmds, slots >> 9), weights=w, minlength=pmds.size)


@njit(cache=True, nogil=True)
def pmd_weights(range_start, range_end, pmds, w):
    """pmd_weights_reference in one pass over the pages of the ranges (the group's slots, in
    order), a PMD's stretch of each range at a time: each PMD's sum is taken page by page
    in page order, as np.bincount takes it, so the same floats, with no test per page, and
    one stretch's running sum does not wait for the previous one's."""
    out = np.zeros(pmds.size)
    j = 0
    for r in range(range_start.size):
        s, end = range_start[r], range_end[r]
        while s < end:
            p = s >> 9
            stop = min(end, (p + 1) << 9)
            k = np.searchsorted(pmds, p)
            acc = out[k]                # (a PMD two ranges share: the sum goes on)
            for i in range(j, j + stop - s):
                acc += w[i]
            out[k] = acc
            j += stop - s
            s = stop
    return out
