"""The IBS run's fast paths (issue 15): one pghot-v3 reproduction run (Mode 1 IBS by default)
with every fast path below swapped for the reference kept beside it, and the same run with
the fast paths, in one process, CPU seconds (time.process_time). The two result files
(without their timing block) must be byte-identical; exit 1 if not.

Fast paths (each with its reference):
- kmigrated's READY scan: ``PghotV3._walk_ready`` reads the READY bits of the flagged blocks
  from where the walk resumes, only as far as the walk's CPU reaches (reference: every READY
  record of the node on every wake, the records read, ``_walk_ready_reference``; the walk's
  CPU per pfn is still computed once).
- kmigrated's migration of 4 KiB pages without the page-by-page rmap walk
  (``rmap.pte_mapped_pages``, ``migrate._move_pte_pages``; reference: ``migrate.BY_FOLIO =
  False``).
- the rate model's sampled pages: ``RateModel._draw`` through a settled-bucket table and a
  guide table (exact_kernels.draw_index; reference: the distribution's own inverse-CDF
  ``sample``, a binary search over the CDF per draw).
- the IBS rings: ``Ibs._push`` as one compiled pass over the samples in time order
  (reference: ``_push_sorted``, a lexsort by ring, window and time).
- the IBS handler's filter chain: ``Ibs._filter`` as one compiled pass (reference:
  ``_filter_reference``, its numpy form).
- pghot's report filter: ``lower_tier_lru_heads`` as one compiled pass (reference:
  ``lower_tier_lru_heads_reference``, its numpy form).
- pghot's first-report times: ``FirstReports.seen`` as one compiled pass in report order
  with each report's ns computed at once (reference: ``seen_reference``, np.unique of the
  fresh records and of their jiffies).
- pghot's record update of a drained window (one nid, a time per report) in the one-nid
  compiled pass (``PghotV3._record_one``; reference: the general form's numpy passes around
  ``lower_tier_lru_heads``, ``FirstReports.seen`` and ``_pghot_update``,
  ``one_nid_pass = False``).
- the prefetches of the per-sample passes (``tierscan.prefetch``: the pages' addresses, the
  handler's filter, pghot's filter, record update and first reports; the draw has none);
  the references run with ``prefetch.ahead = 0``.

``--compare prefetch`` times the prefetches alone: the fast paths with ``prefetch.ahead = 0``
against the same with the default distance, in the order off, on, on, off (a later run in a
process is cheaper), each figure the mean of its two runs.

    cd /work/main && PYTHONPATH=src python3 benchmarks/bench_ibs.py [--source ibs]
        [--scale 0.25] [--json PATH] [--breakdown] [--compare prefetch]

``--breakdown`` runs only the fast paths, once, and prints the CPU seconds spent in each of
the run's main steps (each function's own calls, callees included; nested rows overlap), a
profile without cProfile's per-call overhead.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import sys

from _report import add_json_arg, cpu_s, mean_of, report_same_run, timed_run

from tierscan import prefetch
from tierscan.access.rate import RateModel
from tierscan.experiments.pghot_v3 import SOURCES, config
from tierscan.memsys.system import MemorySystem
from tierscan.hotness.ibs import Ibs
from tierscan.mm import migrate
from tierscan.promote import pghot
from tierscan.promote.pghot import FirstReports, PghotV3


def _walk_ready_reference(self, nid, start, p1, engine, step_ns=None):
    return self._walk_ready_reference(nid, start)


# (owner, attribute, the reference to put in its place)
REFERENCES = [
    (PghotV3, "_walk_ready", _walk_ready_reference),
    (RateModel, "_draw", RateModel._draw_reference),
    (Ibs, "_push", Ibs._push_sorted),
    (Ibs, "_filter", Ibs._filter_reference),
    (FirstReports, "seen", FirstReports.seen_reference),
    (pghot, "lower_tier_lru_heads", pghot.lower_tier_lru_heads_reference),
    (PghotV3, "one_nid_pass", False),
    (migrate, "BY_FOLIO", False),
]


@contextlib.contextmanager
def references(prefetch_only: bool = False):
    """Every fast path above replaced by its reference for the duration (with
    ``prefetch_only``, only the prefetches turned off)."""
    refs = [] if prefetch_only else REFERENCES
    saved = [(owner, name, owner.__dict__[name]) for owner, name, _ in refs]
    ahead = prefetch.ahead
    try:
        for owner, name, ref in refs:
            setattr(owner, name, ref)
        prefetch.ahead = 0
        yield
    finally:
        prefetch.ahead = ahead
        for owner, name, fast in saved:
            setattr(owner, name, fast)


# the steps --breakdown times: (owner, method)
STEPS = [(Ibs, "run"), (RateModel, "sample"), (RateModel, "_draw"), (Ibs, "_filter"),
         (Ibs, "_push"), (Ibs, "_drain"), (PghotV3, "record_access"), (FirstReports, "seen"),
         (PghotV3, "kmigrated_do_work"), (PghotV3, "_walk_ready"), (PghotV3, "_ready_in"),
         (PghotV3, "_promote"),
         (PghotV3, "_run_queue"), (MemorySystem, "tick"), (RateModel, "after_advance")]


@contextlib.contextmanager
def breakdown(spent: collections.Counter):
    """CPU seconds of each STEPS method (callees included) added to ``spent``."""
    def timing(name, f):
        def timed_call(*a, **kw):
            t = cpu_s()
            try:
                return f(*a, **kw)
            finally:
                spent[name] += cpu_s() - t
        return timed_call

    saved = [(owner, name, owner.__dict__[name]) for owner, name in STEPS]
    try:
        for owner, name, f in saved:
            setattr(owner, name, timing(f"{owner.__name__}.{name}", f))
        yield
    finally:
        for owner, name, f in saved:
            setattr(owner, name, f)


def timed(cfg: dict, reference: bool, prefetch_only: bool = False) -> tuple[float, str]:
    """(CPU s, result JSON without timing) of one run."""
    with references(prefetch_only) if reference else contextlib.nullcontext():
        return timed_run(cfg)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="ibs",
                    choices=[s for s in SOURCES if s not in ("numab0", "numab2")])
    ap.add_argument("--mode", type=int, choices=(1, 2, 3), default=1)
    ap.add_argument("--scale", type=float, default=0.25)
    ap.add_argument("--breakdown", action="store_true",
                    help="time the fast run's main steps instead of comparing")
    ap.add_argument("--compare", choices=("references", "prefetch"), default="references",
                    help="against every reference (default) or the prefetches off only")
    add_json_arg(ap)
    args = ap.parse_args(argv)
    cfg = config(args.mode, args.source, scale=args.scale)   # the fit (an engine of its own)
    timed(config(args.mode, args.source, scale=0.01), reference=False)   # compiled kernels
    if args.breakdown:
        spent = collections.Counter()
        with breakdown(spent):
            total, _ = timed(cfg, reference=False)
        print(f"Mode {args.mode} {args.source}, scale {args.scale:g}: {total:.2f} s CPU")
        for name, s in spent.most_common():
            print(f"  {name:28s} {s:7.2f} s")
        return 0
    if args.compare == "prefetch":
        runs = [timed(cfg, ref, prefetch_only=True) for ref in (True, False, False, True)]
        return report_same_run(args.json, "IBS run's prefetches",
                               f"Mode {args.mode} {args.source}, scale {args.scale:g}",
                               mean_of(runs[0], runs[3]), mean_of(runs[1], runs[2]),
                               "no prefetch", "prefetches", "no prefetch")
    ref, fast = timed(cfg, reference=True), timed(cfg, reference=False)
    return report_same_run(args.json, "IBS run's fast paths",
                           f"Mode {args.mode} {args.source}, scale {args.scale:g}", ref, fast,
                           "references", "fast paths", "the references")


if __name__ == "__main__":
    sys.exit(main())
