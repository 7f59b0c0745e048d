"""The reproduction tables (experiments/pghot_tables.py) read reproduce's JSON correctly."""

import json

from tierscan.experiments.pghot_tables import main, mode_row, tables
from tierscan.experiments.pghot_v3 import SOURCES


def run(ratios, *, memory=None, latency_model="loaded", holds=(True, False, False, False)):
    """A reproduce --json shaped result for Mode 1 with the given ratio per source."""
    published = {"numab0": 1.0, "numab2": 0.890, "numab2-pghot": 0.930, "klruscand": 0.963,
                 "ibs": 0.892}
    row = {s: {"runtime_us": 100e6 * ratios[s], "ratio_to_numab0": ratios[s], "promoted": 1,
               "published": {"runtime_us": 115.7e6 * published[s],
                             "ratio_to_numab0": published[s], "promoted": 1}}
           for s in SOURCES}
    return {"meta": {"memory": memory, "latency_model": latency_model, "fit": "mode1"},
            "modes": {"1": row},
            "orderings": [{"mode": 1, "ordering": str(i), "holds": h} for i, h in enumerate(holds)]}


def test_row_counts_ratios_within_ten_percent_and_orderings():
    r = run({"numab0": 1.0, "numab2": 0.89, "numab2-pghot": 0.93 * 1.11, "klruscand": 0.963 * 0.5,
             "ibs": 0.892 * 1.09}, memory={"dram_channels": 2, "cxl_devices": 4})
    cells = mode_row(r, "1")
    assert cells[0] == "dram2-cxl4"
    assert cells[1] == "100.0"
    assert cells[-3:] == ["2/4", "1/4", "-50%"]   # numab2 and ibs within; klruscand is worst


def test_idle_runs_are_labelled_and_published_row_last(tmp_path):
    files = []
    for i, lm in enumerate(("loaded", "idle")):
        p = tmp_path / f"r{i}.json"
        p.write_text(json.dumps(run({s: 1.0 for s in SOURCES}, latency_model=lm)))
        files.append(str(p))
    text = tables([json.loads(open(f).read()) for f in files])
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert lines[1].startswith("| preset (dram8-cxl1) |")
    assert lines[2].startswith("| idle model, preset (dram8-cxl1) |")
    assert lines[3].startswith("| *published* | *115.7* | *0.890* |")
    assert main(files) == 0


def test_unreadable_file_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err


def test_summary_row_counts_over_every_mode():
    r = run({"numab0": 1.0, "numab2": 0.89, "numab2-pghot": 0.93, "klruscand": 0.963 * 2,
             "ibs": 0.892}, holds=(True, True, False, True))
    r["modes"]["2"] = r["modes"]["1"]
    r["orderings"] += [{"mode": 2, "ordering": "x", "holds": True}]
    last = tables([r]).strip().splitlines()[-1]
    assert last == "| preset (dram8-cxl1) | 1, 2 | 6/8 | 4/5 | +100% |"


def test_documented_tables_are_the_shipped_runs(capsys):
    """docs/reproductions.md's loaded-model tables are what the documented command prints from
    the shipped JSON (docs/data/pghot-v3/*.json, in the shell's sorted glob order)."""
    import glob
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files = sorted(glob.glob(os.path.join(root, "docs", "data", "pghot-v3", "*.json")))
    assert len(files) >= 12
    assert main(files) == 0
    printed = capsys.readouterr().out.strip()
    with open(os.path.join(root, "docs", "reproductions.md"), encoding="utf-8") as fh:
        assert printed in fh.read()
