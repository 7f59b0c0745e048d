"""Markdown tables of pghot RFC v3 reproductions across memory configurations (issue 12: the
full table for each configuration, beside the idle model's), from the JSON files that
`tierscan reproduce pghot-v3 --json OUT` writes:

    python -m tierscan.experiments.pghot_tables docs/data/pghot-v3/*.json

One table per mode: a row per file (its memory configuration, or "idle model" for a run with
`--latency-model idle`), each source's time ratio to NUMAB0, how many ratios lie within ±10%
of the published ones, how many published orderings hold, and the largest ratio error; the
published row last. Then one summary row per file over all its modes.
"""

from __future__ import annotations

import argparse
import json
import sys

from .pghot_v3 import SOURCES

TOLERANCE = 0.10  # the goal: every time ratio within ±10% of the published one


def label(meta: dict) -> str:
    """A run's row name: its memory configuration and latency model."""
    mem = meta.get("memory") or {}
    d, c = mem.get("dram_channels"), mem.get("cxl_devices")
    name = f"dram{d or 'preset'}-cxl{c or 'preset'}" if (d or c) else "preset (dram8-cxl1)"
    if meta.get("latency_model") == "idle":
        name = f"idle model, {name}"
    if meta.get("fit") == "each":
        name += ", fit each"
    return name


def ratio_errors(run: dict, modes) -> list[float]:
    """Every promoting source's relative error of its time ratio, over ``modes``."""
    return [row[s]["ratio_to_numab0"] / row[s]["published"]["ratio_to_numab0"] - 1
            for m in modes for row in [run["modes"][m]] for s in SOURCES if s != "numab0"]


def summary_cells(run: dict, modes) -> list[str]:
    """within ±10%, orderings held, worst error: over ``modes`` of one run."""
    errs = ratio_errors(run, modes)
    held = [o["holds"] for o in run.get("orderings", []) if str(o["mode"]) in modes]
    within = sum(abs(e) <= TOLERANCE for e in errs)
    return [f"{within}/{len(errs)}", f"{sum(held)}/{len(held)}", f"{max(errs, key=abs):+.0%}"]


def mode_row(run: dict, mode: str) -> list[str] | None:
    """One table row: NUMAB0's time, every other source's ratio, and the summary columns."""
    row = run["modes"].get(mode)
    if row is None:
        return None
    return ([label(run["meta"]), f"{row['numab0']['runtime_us'] / 1e6:.1f}"]
            + [f"{row[s]['ratio_to_numab0']:.3f}" for s in SOURCES if s != "numab0"]
            + summary_cells(run, [mode]))


def published_row(run: dict, mode: str) -> list[str]:
    row = run["modes"][mode]
    return (["*published*", f"*{row['numab0']['published']['runtime_us'] / 1e6:.1f}*"]
            + [f"*{row[s]['published']['ratio_to_numab0']:.3f}*" for s in SOURCES
               if s != "numab0"] + ["", "", ""])


def tables(runs: list[dict]) -> str:
    head = (["configuration", "NUMAB0 (s)"] + [s for s in SOURCES if s != "numab0"]
            + ["within ±10%", "orderings", "worst error"])
    out = []
    for mode in sorted({m for r in runs for m in r["modes"]}):
        rows = [r for r in (mode_row(run, mode) for run in runs) if r is not None]
        first = next(run for run in runs if mode in run["modes"])
        out.append(f"**Mode {mode}** (time ratio to NUMAB0 of the same run)\n")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        out += ["| " + " | ".join(r) + " |" for r in rows + [published_row(first, mode)]]
        out.append("")
    out.append("**All modes** (each run over the modes it ran)\n")
    out.append("| configuration | modes | within ±10% | orderings | worst error |")
    out.append("|---|---|---|---|---|")
    for run in runs:
        modes = sorted(run["modes"])
        out.append("| " + " | ".join([label(run["meta"]), ", ".join(modes)]
                                     + summary_cells(run, modes)) + " |")
    out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="reproduce --json outputs")
    args = ap.parse_args(argv)
    runs = []
    for path in args.files:
        try:
            with open(path) as fh:
                runs.append(json.load(fh))
        except (OSError, ValueError) as e:
            print(f"pghot_tables: {path}: {e}", file=sys.stderr)
            return 2
    print(tables(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
