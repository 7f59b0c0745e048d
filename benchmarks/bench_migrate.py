"""Folio migration by folio against the former page-by-page walk (mm/migrate.BY_FOLIO), in one
process, CPU seconds (time.process_time):

- per call: one pghot-v3 Mode 3 run (64 GiB of THPs; kmigrated moves ~83 THPs a call; or
  with ``--mode 1`` or ``2``, 4 KiB pages, by rmap.pte_mapped_pages: ``--skip-setup``) whose
  move_folios calls after the set-up's take the two forms in turn (folio, page, page,
  folio, ...): the median CPU of a call in each form and their ratio, also without the
  time spent in the remap hooks (other models' code, the same calls in both forms). Both
  forms leave the same state (tests/test_migrate.py), so the run is the run either way;
- the set-up's move_pages (all 32,768 THPs to the CXL node in one migrate_folios call):
  the engine built up to its first solve after an untimed build, eight times (A B B A
  B A A B);
- with ``--whole``: whole runs after an untimed one, page, folio, folio, page (result files
  without their timing block checked byte-identical; exit 1 if not).

    cd /work/main && PYTHONPATH=src python3 benchmarks/bench_migrate.py [--source klruscand]
        [--mode 3] [--scale 1] [--skip-run] [--skip-setup] [--whole] [--json PATH]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time

from _report import add_json_arg, row, timed_run, write_rows

from tierscan.experiments.pghot_v3 import SOURCES, config
from tierscan.mm import migrate, process
from tierscan.sim.config import config_from_dict
from tierscan.sim.run import build_engine, run_experiment

ORDER = (True, False, False, True)     # BY_FOLIO of consecutive calls (A B B A)


def per_call(cfg) -> tuple[dict, dict, float]:
    """CPU s of each move_folios call after the first, by form; the part of each spent in
    the remap hooks (the memory model's, the rate model's, the heat-map bins': not
    migration code, and the same calls in both forms); and the whole run's CPU s."""
    real = migrate.move_folios
    spent: dict[bool, list[float]] = {True: [], False: []}
    in_hooks: dict[bool, list[float]] = {True: [], False: []}
    calls, hooks = [0], [0.0]

    def timed_hook(hook):
        def timed(*a):
            t = time.process_time()
            try:
                return hook(*a)
            finally:
                hooks[0] += time.process_time() - t
        timed.timed = True
        return timed

    @functools.wraps(real)
    def alternating(kernel, *a, **kw):
        calls[0] += 1
        kernel.remap_hooks[:] = [h if getattr(h, "timed", False) else timed_hook(h)
                                 for h in kernel.remap_hooks]
        form = True if calls[0] == 1 else ORDER[(calls[0] - 2) % len(ORDER)]
        migrate.BY_FOLIO = form
        hooks[0] = 0.0
        t = time.process_time()
        try:
            return real(kernel, *a, **kw)
        finally:
            if calls[0] > 1:
                spent[form].append(time.process_time() - t)
                in_hooks[form].append(hooks[0])
            migrate.BY_FOLIO = True

    migrate.move_folios = alternating
    try:
        t = time.process_time()
        run_experiment(cfg)
        return spent, in_hooks, time.process_time() - t
    finally:
        migrate.move_folios = real


def setup_move(cfg, form: bool) -> float:
    """CPU s of the set-up's move_pages with BY_FOLIO = ``form``."""
    real = process.MM.move_pages
    spent = [0.0]

    def timed(self, *a, **kw):
        t = time.process_time()
        try:
            return real(self, *a, **kw)
        finally:
            spent[0] += time.process_time() - t

    process.MM.move_pages, migrate.BY_FOLIO = timed, form
    try:
        build_engine(cfg, solve_only=True)
    finally:
        process.MM.move_pages, migrate.BY_FOLIO = real, True
    return spent[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="klruscand",
                    choices=[s for s in SOURCES if s not in ("numab0", "numab2-pghot")])
    ap.add_argument("--mode", type=int, choices=(1, 2, 3), default=3)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--skip-run", action="store_true", help="only the set-up's move_pages")
    ap.add_argument("--skip-setup", action="store_true", help="only the per-call figures")
    ap.add_argument("--whole", action="store_true",
                    help="also four whole runs, page, folio, folio, page")
    add_json_arg(ap)
    args = ap.parse_args(argv)
    rows = []
    cfg = config_from_dict(config(args.mode, args.source, scale=args.scale))   # the fit first
    run_experiment(config_from_dict(config(args.mode, args.source, scale=0.01)))   # numba's start
    if not args.skip_setup:
        # an untimed build first: the first one in a process also pays for touching the
        # per-pfn arrays' memory, which later builds reuse
        setup_move(cfg, True)
        runs = {False: [], True: []}
        for form in (False, True, True, False, True, False, False, True):
            runs[form].append(setup_move(cfg, form))
        page, folio = statistics.median(runs[False]), statistics.median(runs[True])
        print(f"set-up move_pages (Mode {args.mode} {args.source}, scale {args.scale:g}): "
              f"median by folio {folio:.3f} s CPU, by page {page:.3f} s (x{page / folio:.2f}); "
              f"runs {[round(x, 3) for x in runs[True]]} vs {[round(x, 3) for x in runs[False]]}")
        rows.append(row(f"set-up move_pages of Mode {args.mode}'s folios by folio "
                        f"({args.source}, scale {args.scale:g})", "-",
                        f"{folio:.3f} s CPU (median of 4)", None,
                        f"x{page / folio:.2f} vs the page-by-page walk"))
    if not args.skip_run:
        spent, in_hooks, total = per_call(cfg)
        folio, page = (statistics.median(spent[f]) for f in (True, False))
        own = {f: statistics.median(x - h for x, h in zip(spent[f], in_hooks[f]))
               for f in (True, False)}
        hooks = statistics.median(in_hooks[True] + in_hooks[False])
        print(f"move_folios after the set-up (Mode {args.mode} {args.source}, scale "
              f"{args.scale:g}, run {total:.1f} s CPU): median by folio {folio * 1e3:.3f} ms "
              f"a call "
              f"({len(spent[True])} calls, {sum(spent[True]):.3f} s), by page "
              f"{page * 1e3:.3f} ms ({len(spent[False])} calls, {sum(spent[False]):.3f} s): "
              f"x{page / folio:.2f}; without the remap hooks (median {hooks * 1e3:.3f} ms a "
              f"call) {own[True] * 1e3:.3f} vs {own[False] * 1e3:.3f} ms: "
              f"x{own[False] / own[True]:.2f}")
        rows.append(row(f"kmigrated's move_folios call, Mode {args.mode} {args.source} (scale "
                        f"{args.scale:g})", "-", f"{folio * 1e3:.3f} ms CPU (median; remap "
                        f"hooks {hooks * 1e3:.3f} ms of it)", None,
                        f"x{page / folio:.2f} vs the page-by-page walk"))
    if args.whole:
        # a first full-scale run fills the memo of phase solutions (memsys/memo.py), which
        # makes later runs cheaper: untimed, so that neither form has it
        timed_run(config(args.mode, args.source, scale=args.scale))
        runs = {False: [], True: []}
        for form in (False, True, True, False):
            migrate.BY_FOLIO = form
            try:
                runs[form].append(timed_run(config(args.mode, args.source, scale=args.scale)))
            finally:
                migrate.BY_FOLIO = True
        results = {text for pair in runs.values() for _, text in pair}
        page, folio = (statistics.mean(t for t, _ in runs[f]) for f in (False, True))
        print(f"whole run (Mode {args.mode} {args.source}, scale {args.scale:g}): by folio "
              f"{folio:.2f} s CPU, by page {page:.2f} s (x{page / folio:.2f}); runs "
              f"{[round(t, 2) for t, _ in runs[True]]} vs {[round(t, 2) for t, _ in runs[False]]}"
              f"; results {'identical' if len(results) == 1 else 'DIFFER'}")
        if len(results) != 1:
            return 1
    write_rows(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
