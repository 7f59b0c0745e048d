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

from ..arrays import unique
from ..mm.constants import PG_allocated, PG_anon, PG_reserved

KEY_SHIFT = 33          # index is a uint32 page slot / file offset


# ---- identities ---------------------------------------------------------------------------------
def page_identities(kernel, pfns) -> np.ndarray:
    """(n, 2) int64 rows (owner, index) for each pfn; owner 0 where the pfn holds no page."""
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


def distinct(keys: np.ndarray) -> np.ndarray:
    """``unique(keys)``; keys already strictly ascending (one VMA's pages in slot order: the
    oracle's hot set when it holds every candidate) are returned after an O(n) check instead
    of a sort."""
    if keys.size < 2 or bool((keys[1:] > keys[:-1]).all()):
        return keys
    return unique(keys)


# ---- the summary --------------------------------------------------------------------------------
def distribution(values, weights=None) -> dict | None:
    """count, mean and p10/p50/p90 of ``values`` (each repeated ``weights`` times)."""
    v = np.asarray(values, float)
    if weights is not None:
        v = np.repeat(v, np.asarray(weights, np.int64))
    if v.size == 0:
        return None
    q = np.quantile(v, [0.1, 0.5, 0.9])
    return {"count": int(v.size), "mean": float(v.mean()), "p10": float(q[0]),
            "p50": float(q[1]), "p90": float(q[2])}


def cdf(values, weights) -> dict | None:
    """The exact empirical CDF of ``values`` (each counted ``weights`` times), compactly:
    ``{"ns": distinct values ascending, "pages": cumulative weight up to each}`` (promotions
    happen on ticks, so there are few distinct values). None when empty."""
    v = np.asarray(values, np.int64)
    if v.size == 0:
        return None
    uniq, inv = np.unique(v, return_inverse=True)
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


def lookup(table: dict, keys: np.ndarray, missing: int) -> np.ndarray:
    """``[table.get(k, missing) for k in keys]`` for an int -> int dict, as int64, without a
    Python call per key (a run can promote millions of pfns)."""
    out = np.full(keys.size, missing, np.int64)
    if not table or keys.size == 0:
        return out
    k = np.fromiter(table.keys(), np.int64, len(table))
    v = np.fromiter(table.values(), np.int64, len(table))
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
    pages = expand_folios(rows[~unresolved])
    keys = distinct(identity_keys(pages))
    if hot_set is None:
        from ..hotness.oracle import oracle_hot_set

        hot_set = oracle_hot_set(engine)
    hot = distinct(identity_keys(hot_set))
    tp = int(np.isin(keys, hot, assume_unique=True).sum())
    start = run_start_ns(engine)
    rep = lookup(getattr(promoter, "first_report_ns", None) or {}, pfns, -1)
    has = rep >= 0
    note = None
    if unresolved.any():
        note = (f"unknown: {int(unresolved.sum()):,} of {pfns.size:,} promoted folios were "
                "recorded by pfns freed before the end of the run (identity lost)")
    elif fits_fast_tier:
        note = "undefined: the whole workload fits in the fast tier"
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
