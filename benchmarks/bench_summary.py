"""The run summary's oracle hot set and promotion summary (sim/run.py's end of a run) with
their passes in numpy (the _reference forms: the per-pfn identities, the promoted pages' keys,
the common keys by np.isin, the quantiles from every page's repeated time, the first-report
lookup by binary searches, distinct keys always sorted) against the passes now, in one process
on one finished pghot-v3 run, as tests/test_summary_paths.py compares them. The numpy form
runs today's code around those passes: no copy of the candidates when every page is one, and
no identity figures computed when the summary does not report them (fits the fast tier), so
only the passes differ. Checks that both give the same identities, hot sets and summaries.
CPU seconds, the best of three.

    PYTHONPATH=src python3 benchmarks/bench_summary.py [MODE SOURCE SCALE]   # default 3 klruscand 0.5
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack, contextmanager
from unittest import mock

from tierscan.arrays import unique
from tierscan.experiments.pghot_v3 import config
from tierscan.hotness import oracle
from tierscan.sim import promotion_metrics as pm_
from tierscan.sim.config import config_from_dict
from tierscan.sim.run import build_engine, promotion_source


@contextmanager
def numpy_forms():
    """The summary's passes swapped for their numpy forms (the oracle imports page_identities
    by name: its binding too)."""
    with ExitStack() as stack:
        for name in ("page_identities", "folio_page_keys", "count_common", "distribution",
                     "lookup"):
            stack.enter_context(mock.patch.object(pm_, name, getattr(pm_, f"{name}_reference")))
        stack.enter_context(mock.patch.object(oracle, "page_identities",
                                              pm_.page_identities_reference))
        stack.enter_context(mock.patch.object(pm_, "distinct", unique))
        yield


def hot_set(engine):
    ids, weights = oracle.oracle_candidates(engine)
    hot = oracle.heaviest(ids, weights, oracle.start_free_above_high(engine), ordered=False)
    return hot, hot.shape[0] >= weights.size


def in_numpy(f):
    """``f`` run with the numpy forms."""
    def run():
        with numpy_forms():
            return f()
    return run


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
    t_ref, (hot_ref, fits_ref) = best(in_numpy(lambda: hot_set(e)))
    t_new, (hot_new, fits_new) = best(lambda: hot_set(e))
    same &= fits_ref == fits_new and \
        bool((unique(pm_.identity_keys(hot_ref)) == unique(pm_.identity_keys(hot_new))).all())
    print(f"  oracle hot set     {t_ref:.3f} -> {t_new:.3f} s CPU (x{t_ref / t_new:.2f})")
    t_ref, s_ref = best(in_numpy(lambda: pm_.promotion_summary(e, src, hot_set=hot_ref,
                                                               fits_fast_tier=fits_ref)))
    t_new, s_new = best(lambda: pm_.promotion_summary(e, src, hot_set=hot_new,
                                                      fits_fast_tier=fits_new))
    same &= s_ref == s_new
    print(f"  promotion_summary  {t_ref:.3f} -> {t_new:.3f} s CPU (x{t_ref / t_new:.2f})"
          f"{'  (fits the fast tier: no identity figures in either)' if fits_new else ''}")
    print("same identities, hot sets and summaries" if same else "RESULTS DIFFER")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
