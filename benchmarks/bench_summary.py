"""The run summary's oracle hot set and promotion summary (sim/run.py's end of a run) against
the forms they replaced, in one process on one finished pghot-v3 run: the per-pfn identities,
the hot set (a selection vs the 3-key lexsort of every candidate) and promotion_summary (its
distinct keys without a sort when ascending vs always sorting). Checks that both give the same
hot set and summary. CPU seconds, the best of three.

    PYTHONPATH=src python3 benchmarks/bench_summary.py [MODE SOURCE SCALE]   # default 3 klruscand 0.5
"""

from __future__ import annotations

import sys
import time

import numpy as np

from tierscan.arrays import unique
from tierscan.experiments.pghot_v3 import config
from tierscan.hotness import oracle
from tierscan.mm.constants import PG_allocated, PG_anon, PG_reserved
from tierscan.sim import promotion_metrics as pm_
from tierscan.sim.config import config_from_dict
from tierscan.sim.run import build_engine, promotion_source


def page_identities_reference(kernel, pfns) -> np.ndarray:
    """page_identities before 1874d36: each per-pfn array gathered once per use."""
    pm = kernel.pm
    pfns = np.asarray(pfns, np.int64)
    out = np.zeros((pfns.size, 2), np.int64)
    ok = (pfns >= 0) & (pfns < pm.nr_pfns)
    p = pfns[ok]
    flags = pm.flags[p]
    live = ((flags & PG_allocated) != 0) & ((flags & PG_reserved) == 0) & (pm.mapping[p] != 0)
    owner = np.where((flags & PG_anon) != 0, pm.mapping[p].astype(np.int64),
                     -pm.mapping[p].astype(np.int64))
    out[np.flatnonzero(ok), 0] = np.where(live, owner, 0)
    out[np.flatnonzero(ok), 1] = np.where(live, pm.index[p].astype(np.int64), 0)
    return out


def hot_set_reference(engine):
    """The hot set as sim/run.py took it before 1874d36: every candidate ranked by lexsort."""
    ids, weights = oracle.oracle_candidates(engine)
    every = ids[np.lexsort((ids[:, 1], ids[:, 0], -weights))]
    hot = every[:max(oracle.start_free_above_high(engine), 0)]
    return hot, hot.shape[0] >= every.shape[0]


def hot_set(engine):
    ids, weights = oracle.oracle_candidates(engine)
    hot = oracle.heaviest(ids, weights, oracle.start_free_above_high(engine), ordered=False)
    return hot, hot.shape[0] >= weights.size


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
    pfns = np.where(e.kernel.is_zero_pfn(pfns), -1, pfns)
    print(f"mode {mode} {source} scale {scale:g}: {g.n_pages:,} pages")
    same = True
    t_ref, a = best(lambda: page_identities_reference(e.kernel, pfns))
    t_new, b = best(lambda: pm_.page_identities(e.kernel, pfns))
    same &= bool((a == b).all())
    print(f"  page_identities    {t_ref:.3f} -> {t_new:.3f} s CPU (x{t_ref / t_new:.2f})")
    t_ref, (hot_ref, fits_ref) = best(lambda: hot_set_reference(e))
    t_new, (hot_new, fits_new) = best(lambda: hot_set(e))
    same &= fits_ref == fits_new and \
        bool((unique(pm_.identity_keys(hot_ref)) == unique(pm_.identity_keys(hot_new))).all())
    print(f"  oracle hot set     {t_ref:.3f} -> {t_new:.3f} s CPU (x{t_ref / t_new:.2f})")
    distinct = pm_.distinct
    try:
        pm_.distinct = unique
        t_ref, s_ref = best(lambda: pm_.promotion_summary(e, src, hot_set=hot_ref,
                                                          fits_fast_tier=fits_ref))
    finally:
        pm_.distinct = distinct
    t_new, s_new = best(lambda: pm_.promotion_summary(e, src, hot_set=hot_new,
                                                      fits_fast_tier=fits_new))
    same &= s_ref == s_new
    print(f"  promotion_summary  {t_ref:.3f} -> {t_new:.3f} s CPU (x{t_ref / t_new:.2f})")
    print("same identities, hot sets and summaries" if same else "RESULTS DIFFER")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
