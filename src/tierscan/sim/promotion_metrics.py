"""What a run promoted, how fast, and how well: the promotion figures of a result file.

``promotion_summary(engine, promoter)`` works with any object that records promotions the way
``promote.base.PromotionEngine`` does: ``promoted_pfns`` (head pfns, before migration) and
``promoted_ns`` (when), lists of arrays; optionally ``first_report_ns`` (pfn -> ns of its first
report) and ``promoted_ids`` (see below).

**Page identity.** A pfn changes when a page migrates, so promotions are compared by the page's
identity, which migration copies: ``(owner, index)`` with owner = the mm id and index = the page
slot for an anonymous page, owner = -(file id) and index = the file offset for a page-cache
page (pm.mapping / pm.index, rmap.py). ``page_identities(kernel, pfns)`` gives it per pfn and
``folio_identities(kernel, heads)`` per folio as ``(owner, index of the head, nr_pages)``.

An old pfn is freed by the migration, so its identity must be taken *before* migrating. An engine
that keeps ``promoted_ids`` (a list of ``folio_identities`` arrays parallel to
``promoted_pfns``) gets exact figures; otherwise the recorded pfns are resolved through the
page map at summary time, which is right for pfns still holding the promoted page (new pfns,
or an engine that records them) and leaves freed ones unresolved (counted in
``unresolved_folios``, as one page each).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..arrays import packed_sort, sort_order, unique, unique_inverse
from ..mm.constants import PG_allocated, PG_anon, PG_reserved

KEY_SHIFT = 33          # index is a uint32 page slot / file offset

# the flag tests of page_identities, as plain ints for the compiled pass
_LIVE_MASK = int(PG_allocated | PG_reserved)
_ALLOCATED = int(PG_allocated)
_ANON = int(PG_anon)


# ---- identities ---------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def identity_rows(pfns, flags, mapping, index):
    """page_identities' rows in one pass over ``pfns`` (int64), reading each pfn's flags,
    mapping and index once, without the temporary arrays of its numpy form
    (page_identities_reference: ~10 passes over the oracle's 16.8 M pages)."""
    n = pfns.size
    out = np.zeros((n, 2), np.int64)
    for i in range(n):
        p = pfns[i]
        if p < 0 or p >= flags.size:
            continue
        f = np.int64(flags[p])
        owner = np.int64(mapping[p])
        if (f & _LIVE_MASK) != _ALLOCATED or owner == 0:
            continue
        out[i, 0] = owner if f & _ANON else -owner
        out[i, 1] = index[p]
    return out


def page_identities(kernel, pfns) -> np.ndarray:
    """(n, 2) int64 rows (owner, index) for each pfn; owner 0 where the pfn holds no page. One
    compiled pass (identity_rows); page_identities_reference is its numpy form."""
    pm = kernel.pm
    pfns = np.ascontiguousarray(np.asarray(pfns, np.int64).ravel())
    # (flags is pm.nr_pfns long: the pass's bounds test is the reference's range test)
    return identity_rows(pfns, pm.flags[:pm.nr_pfns], pm.mapping, pm.index)


def page_identities_reference(kernel, pfns) -> np.ndarray:
    """page_identities by numpy: a gather of each per-pfn array and masks."""
    pm = kernel.pm
    pfns = np.asarray(pfns, np.int64)
    out = np.zeros((pfns.size, 2), np.int64)
    ok = (pfns >= 0) & (pfns < pm.nr_pfns)
    every = bool(ok.all())      # (the oracle's 16.8 M pages: one gather of each array, once)
    p = pfns if every else pfns[ok]
    flags = pm.flags[p]
    mapping = pm.mapping[p].astype(np.int64)
    live = ((flags & (PG_allocated | PG_reserved)) == PG_allocated) & (mapping != 0)
    owner = np.where((flags & PG_anon) != 0, mapping, -mapping)
    rows = slice(None) if every else np.flatnonzero(ok)
    out[rows, 0] = np.where(live, owner, 0)
    out[rows, 1] = np.where(live, pm.index[p], 0)
    return out


def folio_identities(kernel, heads) -> np.ndarray:
    """(n, 3) int64 rows (owner, index of the head page, nr_pages) for folio heads: call it
    before migrating them. Owner 0 where the pfn holds no page."""
    heads = np.asarray(heads, np.int64)
    ids = page_identities(kernel, heads)
    nr = np.ones(heads.size, np.int64)
    live = ids[:, 0] != 0
    nr[live] = kernel.pm.folio_nr_pages(heads[live])
    return np.column_stack([ids, nr])


def expand_folios(rows: np.ndarray) -> np.ndarray:
    """Per-page (owner, index) rows of folio rows (owner, head index, nr_pages)."""
    rows = np.asarray(rows, np.int64).reshape(-1, 3)
    nr = rows[:, 2]
    if rows.size == 0:
        return np.empty((0, 2), np.int64)
    owner = np.repeat(rows[:, 0], nr)
    offs = np.arange(int(nr.sum())) - np.repeat(np.cumsum(nr) - nr, nr)
    return np.column_stack([owner, np.repeat(rows[:, 1], nr) + offs])


def identity_keys(ids) -> np.ndarray:
    """One int64 per (owner, index) row, for set operations."""
    ids = np.asarray(ids, np.int64).reshape(-1, 2)
    return ids[:, 0] * (1 << KEY_SHIFT) + ids[:, 1]


@njit(cache=True, nogil=True)
def _folio_page_keys(owner, head, nr):
    out = np.empty(nr.sum(), np.int64)
    k = 0
    for i in range(owner.size):
        key = owner[i] * (1 << KEY_SHIFT) + head[i]
        for j in range(nr[i]):
            out[k] = key + j
            k += 1
    return out


def folio_page_keys(rows) -> np.ndarray:
    """identity_keys of every page of folio rows (owner, head index, nr_pages) in one pass:
    ``identity_keys(expand_folios(rows))`` (folio_page_keys_reference) without its per-page
    (n, 2) rows and temporaries (a Mode 3 run promotes 16.8 M pages)."""
    rows = np.asarray(rows, np.int64).reshape(-1, 3)
    return _folio_page_keys(rows[:, 0], rows[:, 1], rows[:, 2])


def folio_page_keys_reference(rows) -> np.ndarray:
    """folio_page_keys by numpy: the per-page rows (expand_folios), then their keys."""
    return identity_keys(expand_folios(rows))


def distinct(keys: np.ndarray) -> np.ndarray:
    """``unique(keys)``; keys already strictly ascending (one VMA's pages in slot order: the
    oracle's hot set when it holds every candidate) are returned after an O(n) check instead
    of a sort."""
    if keys.size < 2 or bool((keys[1:] > keys[:-1]).all()):
        return keys
    return unique(keys)


@njit(cache=True, nogil=True)
def count_common(a, b) -> int:
    """How many entries of ``a`` are in ``b``, both sorted with distinct entries: one merge of
    the two (count_common_reference is ``np.isin``'s count, which sorts them again)."""
    i = j = n = 0
    while i < a.size and j < b.size:
        if a[i] < b[j]:
            i += 1
        elif a[i] > b[j]:
            j += 1
        else:
            n += 1
            i += 1
            j += 1
    return n


def count_common_reference(a, b) -> int:
    """count_common by numpy: np.isin's count."""
    return int(np.isin(a, b, assume_unique=True).sum())


# ---- the summary --------------------------------------------------------------------------------
QUANTILES = (0.1, 0.5, 0.9)


def weighted_quantiles(values, weights) -> np.ndarray:
    """``np.quantile(np.repeat(values, weights), QUANTILES)`` (the default "linear" method),
    bit for bit, without the repeated array: its order statistics are read off the distinct
    values' cumulative weights, then interpolated with np.quantile's arithmetic (numpy's
    _quantile and _lerp: index (n - 1) q, the upper neighbour's form from gamma 0.5 on).
    A run promotes few folios of many pages (Mode 3: 33 k THPs, 16.8 M pages), where the
    partition of the repeated array cost ~0.25 s CPU a call. ``weights`` sum to >= 1."""
    v = np.asarray(values)
    w = np.asarray(weights, np.int64)
    if v.size > 1 and not (v[1:] >= v[:-1]).all():    # (promotion times come in order)
        order = sort_order(v) if v.dtype.kind in "iu" else np.argsort(v)
        v, w = v[order], w[order]
    v, ends = v.astype(float), np.cumsum(w)     # (ints to floats keep their order)
    n = int(ends[-1])
    virtual = (n - 1) * np.asarray(QUANTILES)
    below = np.floor(virtual)
    gamma = virtual - below
    # from the last index on, np.quantile takes the last value (its a = b there: any gamma)
    below = np.minimum(below, n - 1).astype(np.int64)
    above = np.minimum(below + 1, n - 1)
    a = v[np.searchsorted(ends, below, "right")]
    b = v[np.searchsorted(ends, above, "right")]
    diff = b - a
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)


@njit(cache=True, nogil=True)
def _integer_sums(v, w):
    """(OR of |v|, sum |v| w as a float and as an int64, sum v w, sum w) in one pass:
    repeated_mean's numpy passes (repeated_mean_reference). The int64 sums wrap past 2^63;
    the float one tells when they may have."""
    bits = 0
    magnitude_f = 0.0
    magnitude = 0
    total = 0
    count = 0
    for i in range(v.size):
        x = v[i]
        a = -x if x < 0 else x
        bits |= a
        magnitude_f += float(a) * float(w[i])
        magnitude += a * w[i]
        total += x * w[i]
        count += w[i]
    return bits, magnitude_f, magnitude, total, count


def repeated_mean(values, weights) -> float | None:
    """``np.repeat(values, weights).mean()`` bit for bit without the repeated array, for
    integer values, when every partial sum of any order is exact: each value is a multiple
    of the lowest set bit ``low`` of them all, so is every partial sum, and all are below
    sum(|value| x weight) < 2^53 low, exactly representable. numpy's pairwise sum then is
    the exact total in float64, and its mean that divided by the count. None when the bound
    does not hold (or the values are not integers): the caller repeats them. A promotion's
    time is a tick's multiple of 2^7 ns (10 ms ticks: 10^7 = 2^7 x 78125), so a run's
    16.8 M pages' times stay under the bound."""
    v = np.asarray(values)
    if v.dtype.kind not in "iu" or v.size == 0 or \
            (v.dtype.kind == "u" and v.dtype.itemsize == 8):
        return None
    bits, magnitude_f, magnitude, total, count = _integer_sums(
        v.astype(np.int64, copy=False), np.asarray(weights, np.int64))
    low = bits & -bits
    if low == 0:                    # every value 0
        return 0.0
    if magnitude_f >= 2.0 ** 61 or magnitude >= (1 << 53) * low:
        return None     # (past 2^61 the exact int64 sums could have wrapped)
    return float(np.float64(total) / count)


def repeated_mean_reference(values, weights) -> float | None:
    v = np.asarray(values)
    w = np.asarray(weights, np.int64)
    if v.dtype.kind not in "iu" or v.size == 0 or \
            (v.dtype.kind == "u" and v.dtype.itemsize == 8):
        return None
    v = v.astype(np.int64)
    bits = int(np.bitwise_or.reduce(np.abs(v)))
    low = bits & -bits
    if low == 0:
        return 0.0
    if float(np.abs(v).astype(float) @ w.astype(float)) >= 2.0 ** 61:
        return None
    if int(np.abs(v) @ w) >= (1 << 53) * low:
        return None
    return float(np.float64(int(v @ w)) / int(w.sum()))


def distribution(values, weights=None) -> dict | None:
    """count, mean and p10/p50/p90 of ``values`` (each repeated ``weights`` times), from the
    distinct values and their weights (repeated_mean, weighted_quantiles) where exact;
    distribution_reference is the form that repeats them."""
    w = np.ones(np.size(values), np.int64) if weights is None else \
        np.asarray(weights, np.int64)
    count = int(w.sum())
    if count == 0:
        return None
    mean = repeated_mean(values, w)
    if mean is None:
        mean = float(np.repeat(np.asarray(values, float), w).mean())
    q = weighted_quantiles(values, w)
    return {"count": count, "mean": mean, "p10": float(q[0]), "p50": float(q[1]),
            "p90": float(q[2])}


def distribution_reference(values, weights=None) -> dict | None:
    v = np.asarray(values, float)
    if weights is not None:
        v = np.repeat(v, np.asarray(weights, np.int64))
    if v.size == 0:
        return None
    q = np.quantile(v, QUANTILES)
    return {"count": int(v.size), "mean": float(v.mean()), "p10": float(q[0]),
            "p50": float(q[1]), "p90": float(q[2])}


def cdf(values, weights) -> dict | None:
    """The exact empirical CDF of ``values`` (each counted ``weights`` times), compactly:
    ``{"ns": distinct values ascending, "pages": cumulative weight up to each}`` (promotions
    happen on ticks, so there are few distinct values). None when empty."""
    v = np.asarray(values, np.int64)
    if v.size == 0:
        return None
    uniq, inv = unique_inverse(v)      # (one pass: promotion times come in order)
    per = np.bincount(inv, weights=np.asarray(weights, np.int64)).astype(np.int64)
    return {"ns": uniq.tolist(), "pages": np.cumsum(per).tolist()}


def _concat(parts, dtype, width=None) -> np.ndarray:
    parts = [np.asarray(p, dtype) for p in (parts or [])]
    if not parts:
        return np.empty((0, width) if width else 0, dtype)
    return np.concatenate([p.reshape(-1, width) if width else p.ravel() for p in parts])


def promoted_folios(engine, promoter) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(pfns, ns, folio identity rows, source) of every promotion ``promoter`` recorded."""
    pfns = _concat(getattr(promoter, "promoted_pfns", []), np.int64)
    ns = _concat(getattr(promoter, "promoted_ns", []), np.int64)
    if ns.size != pfns.size:
        raise ValueError(f"promoted_ns has {ns.size} entries for {pfns.size} promoted_pfns")
    rows = _concat(getattr(promoter, "promoted_ids", None), np.int64, 3)
    if rows.shape[0] == pfns.size and pfns.size:
        return pfns, ns, rows, "promoted_ids"
    if rows.shape[0]:
        raise ValueError(f"promoted_ids has {rows.shape[0]} rows for {pfns.size} pfns")
    kernel = engine.kernel
    heads = pfns.copy()
    ok = (heads >= 0) & (heads < kernel.pm.nr_pfns)
    heads[ok] = kernel.pm.folio_head(heads[ok])
    return pfns, ns, folio_identities(kernel, heads), "pfn_now"


@njit(cache=True, nogil=True)
def _merge_lookup(table_packed, table_lo, table_bits, values, keys_packed, keys_lo, keys_bits,
                  out):
    """out[i] = values[j] where keys[i] == table[j]: one walk of the table's and the keys'
    packed sorts (arrays.packed_sort) side by side, reading both in order."""
    table_mask = (np.int64(1) << table_bits) - 1
    keys_mask = (np.int64(1) << keys_bits) - 1
    j = 0
    m = table_packed.size
    for t in range(keys_packed.size):
        key = (keys_packed[t] >> keys_bits) + keys_lo
        while j < m and (table_packed[j] >> table_bits) + table_lo < key:
            j += 1
        if j < m and (table_packed[j] >> table_bits) + table_lo == key:
            out[keys_packed[t] & keys_mask] = values[table_packed[j] & table_mask]


def lookup(table: dict, keys: np.ndarray, missing: int) -> np.ndarray:
    """``[table.get(k, missing) for k in keys]`` for an int -> int dict, as int64, without a
    Python call per key (a run can promote millions of pfns): the table's keys and the
    queries sorted (packed_sort), then matched in one merge (_merge_lookup); lookup_reference
    is the numpy form (binary searches of the sorted queries), which also takes keys that
    do not pack."""
    keys = np.asarray(keys, np.int64)
    if not table or keys.size == 0:
        return np.full(keys.size, missing, np.int64)
    k, v = table_arrays(table)
    table_sorted, queries = packed_sort(k), packed_sort(keys)
    if table_sorted is None or queries is None:
        return lookup_reference(table, keys, missing)
    out = np.full(keys.size, missing, np.int64)
    _merge_lookup(*table_sorted, v, *queries, out)
    return out


def table_arrays(table) -> tuple[np.ndarray, np.ndarray]:
    """The keys and values of an int -> int table as int64 arrays in the same order: a table
    kept as arrays hands them over (``arrays()``: pghot's FirstReportTimes, ~2 M promoted pfns
    in an IBS run, not turned into lists and back), a dict is read once."""
    arrays = getattr(table, "arrays", None)
    if arrays is not None:
        return arrays()
    return (np.fromiter(table.keys(), np.int64, len(table)),
            np.fromiter(table.values(), np.int64, len(table)))


def lookup_reference(table: dict, keys: np.ndarray, missing: int) -> np.ndarray:
    """lookup by numpy: binary searches of the sorted table for the sorted keys (any int64
    keys, packed or not)."""
    out = np.full(keys.size, missing, np.int64)
    if not table or keys.size == 0:
        return out
    k, v = table_arrays(table)
    order = np.argsort(k)
    k, v = k[order], v[order]
    # the keys are searched in sorted order: a binary search per random key misses the cache
    # at every step (2 M promoted pfns: ~2.3 s CPU; sorted, the sort and search ~0.35 s)
    at = np.argsort(keys)
    sk = keys[at]
    i = np.minimum(np.searchsorted(k, sk), k.size - 1)
    hit = k[i] == sk
    out[at[hit]] = v[i[hit]]
    return out


def run_start_ns(engine) -> int:
    t = getattr(engine, "series", {}).get("time_ns")
    return int(t[0]) if t else 0


def promotion_summary(engine, promoter, *, hot_set=None, fits_fast_tier: bool = False) -> dict:
    """The promotion figures of a run (plain ints, floats and None, for result files).

    - ``promoted_folios``, ``promoted_thps``, ``promoted_pages`` (a THP counts 512),
      ``unique_pages`` (distinct identities; a page promoted, demoted and promoted again
      counts once);
    - ``time_to_promote_ns``: ns from the run start to each promoted page's promotion
      (count, mean, p10, p50, p90, per page), and ``time_to_promote_cdf`` its exact CDF
      (``cdf``); ``report_to_promote_ns``: the same from the
      folio's first report, for the folios the engine recorded one of (None if none);
    - ``hot_set_pages``, ``true_positives``, ``precision`` (share of the promoted pages in the
      hot set) and ``recall`` (share of the hot set promoted) against ``hot_set`` (identity
      rows; default ``oracle_hot_set(engine)``); None when a denominator is 0;
    - ``identity_source`` ("promoted_ids" or "pfn_now") and ``unresolved_folios``;
    - ``quality_note``: None, or why ``unique_pages``/``true_positives``/``precision``/
      ``recall`` are None: some promotions could not be resolved to a page (their pfn was freed
      before the summary: a wrong 0% would be worse than none), or the whole workload fits in
      the fast tier (``fits_fast_tier``: every page is "hot", so the figures say nothing).
    """
    pfns, ns, rows, source = promoted_folios(engine, promoter)
    unresolved = rows[:, 0] == 0
    nr = rows[:, 2]
    if hot_set is None:
        from ..hotness.oracle import oracle_hot_set

        hot_set = oracle_hot_set(engine)
    hot = distinct(identity_keys(hot_set))
    start = run_start_ns(engine)
    rep = lookup(getattr(promoter, "first_report_ns", None) or {}, pfns, -1)
    has = rep >= 0
    note = None
    if unresolved.any():
        note = (f"unknown: {int(unresolved.sum()):,} of {pfns.size:,} promoted folios were "
                "recorded by pfns freed before the end of the run (identity lost)")
    elif fits_fast_tier:
        note = "undefined: the whole workload fits in the fast tier"
    if note is None:
        keys = distinct(folio_page_keys(rows[~unresolved]))
        tp = count_common(keys, hot)
    else:   # the figures of the promoted pages' identities are not reported (None below)
        keys, tp = np.empty(0, np.int64), 0
    out = {
        "promoted_folios": int(pfns.size),
        "promoted_thps": int((nr > 1).sum()),
        "promoted_pages": int(nr.sum()),
        "unique_pages": int(keys.size),
        "time_to_promote_ns": distribution(ns - start, nr),
        "time_to_promote_cdf": cdf(ns - start, nr),
        "report_to_promote_ns": distribution((ns - rep)[has], nr[has]),
        "hot_set_pages": int(hot.size),
        "true_positives": tp,
        "precision": tp / keys.size if keys.size else None,
        "recall": tp / hot.size if hot.size else None,
        "identity_source": source,
        "unresolved_folios": int(unresolved.sum()),
        "quality_note": note,
    }
    if note is not None:
        out.update(unique_pages=None, true_positives=None, precision=None, recall=None)
    return out
