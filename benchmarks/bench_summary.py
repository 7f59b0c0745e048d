"""The run summary's oracle hot set and promotion summary (sim/run.py's end of a run) against
the forms they replaced, in one process on one finished pghot-v3 run: the per-pfn identities
(one compiled pass vs the numpy form), the hot set's candidates (those identities, and no copy
when every page is one) and promotion_summary (the promoted pages' keys in one pass, the
common keys by a merge instead of np.isin, the quantiles from the folios' cumulative pages
instead of a partition of every page's time, and none of the identity figures computed when
the summary does not report them; the first-report lookup by a merge of packed sorts).
Checks that both give the same identities, hot sets and summaries. CPU seconds, the best
of three.

    PYTHONPATH=src python3 benchmarks/bench_summary.py [MODE SOURCE SCALE]   # default 3 klruscand 0.5
"""

from __future__ import annotations

import sys
import time

import numpy as np

from tierscan.arrays import unique
from tierscan.experiments.pghot_v3 import config
from tierscan.hotness import oracle
from tierscan.sim import promotion_metrics as pm_
from tierscan.sim.config import config_from_dict
from tierscan.sim.run import build_engine, promotion_source


def candidates_before(engine):
    """oracle_candidates before this round: the numpy identities, the zero pages masked out,
    every group's rows copied through its keep mask and concatenated."""
    ids, weights = [], []
    k = engine.kernel
    for g in engine.groups:
        phases = g.spec.phases
        if not phases:
            continue
        w = oracle.page_weights(g, phases[0])
        keep = oracle._start_on_lower_tier(engine, g) & (w > 0)
        pfns = g.mm.translate(g.addrs)
        rows = pm_.page_identities_reference(k, np.where(k.is_zero_pfn(pfns), -1, pfns))
        assert (rows[:, 0] != 0).all()      # (no VMA fallback in these runs)
        ids.append(rows[keep])
        weights.append(w[keep])
    return np.concatenate(ids), np.concatenate(weights)


def hot_set(candidates, engine):
    ids, weights = candidates(engine)
    hot = oracle.heaviest(ids, weights, oracle.start_free_above_high(engine), ordered=False)
    return hot, hot.shape[0] >= weights.size


def summary_before(engine, promoter, *, hot_set, fits_fast_tier):
    """promotion_summary before this round (its numpy forms, every figure computed)."""
    pfns, ns, rows, source = pm_.promoted_folios(engine, promoter)
    unresolved = rows[:, 0] == 0
    nr = rows[:, 2]
    keys = pm_.distinct(pm_.folio_page_keys_reference(rows[~unresolved]))
    hot = pm_.distinct(pm_.identity_keys(hot_set))
    tp = pm_.count_common_reference(keys, hot)
    start = pm_.run_start_ns(engine)
    rep = pm_.lookup_reference(getattr(promoter, "first_report_ns", None) or {}, pfns, -1)
    has = rep >= 0
    note = None
    if unresolved.any():
        note = (f"unknown: {int(unresolved.sum()):,} of {pfns.size:,} promoted folios were "
                "recorded by pfns freed before the end of the run (identity lost)")
    elif fits_fast_tier:
        note = "undefined: the whole workload fits in the fast tier"
    dist = pm_.distribution_reference
    out = {
        "promoted_folios": int(pfns.size),
        "promoted_thps": int((nr > 1).sum()),
        "promoted_pages": int(nr.sum()),
        "unique_pages": int(keys.size),
        "time_to_promote_ns": dist(ns - start, nr),
        "time_to_promote_cdf": pm_.cdf(ns - start, nr),
        "report_to_promote_ns": dist((ns - rep)[has], nr[has]),
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


def best(f, n: int = 3) -> tuple[float, object]:
    times = []
    for _ in range(n):
        t = time.process_time()
        r = f()
        times.append(time.process_time() - t)
    return min(times), r


def main(argv) -> int:
    mode, source, scale = (int(argv[0]), argv[1], float(argv[2])) if argv else (3, "klruscand", 0.5)
    e = build_engine(config_from_dict(config(mode, source, scale=scale))).run()
    src = promotion_source(e)
    g = e.groups[0]
    pfns = g.mm.translate(g.addrs)
    print(f"mode {mode} {source} scale {scale:g}: {g.n_pages:,} pages")
    same = True
    t_ref, a = best(lambda: pm_.page_identities_reference(e.kernel, pfns))
    t_new, b = best(lambda: pm_.page_identities(e.kernel, pfns))
    same &= bool((a == b).all())
    print(f"  page_identities    {t_ref:.3f} -> {t_new:.3f} s CPU (x{t_ref / t_new:.2f})")
    t_ref, (hot_ref, fits_ref) = best(lambda: hot_set(candidates_before, e))
    t_new, (hot_new, fits_new) = best(lambda: hot_set(oracle.oracle_candidates, e))
    same &= fits_ref == fits_new and \
        bool((unique(pm_.identity_keys(hot_ref)) == unique(pm_.identity_keys(hot_new))).all())
    print(f"  oracle hot set     {t_ref:.3f} -> {t_new:.3f} s CPU (x{t_ref / t_new:.2f})")
    t_ref, s_ref = best(lambda: summary_before(e, src, hot_set=hot_ref, fits_fast_tier=fits_ref))
    t_new, s_new = best(lambda: pm_.promotion_summary(e, src, hot_set=hot_new,
                                                      fits_fast_tier=fits_new))
    same &= s_ref == s_new
    print(f"  promotion_summary  {t_ref:.3f} -> {t_new:.3f} s CPU (x{t_ref / t_new:.2f})"
          f"{'  (fits the fast tier: no identity figures)' if fits_new else ''}")
    print("same identities, hot sets and summaries" if same else "RESULTS DIFFER")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
