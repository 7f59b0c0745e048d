"""tierscan compare, reproduce and demo, end to end on small runs, and their bad-input paths."""

import json

import pytest

from tierscan.cli.main import main


def one_line_error(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_compare_prints_one_row_per_source(capsys, tmp_path):
    rc = main(["compare", "--workload", "hotset", "--detectors", "klruscand,oracle,none",
               "--duration", "300ms", "--set", "workload.size=32MiB", "--quiet",
               "--json-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    for source in ("klruscand", "oracle", "none"):
        assert source in out and (tmp_path / f"{source}.json").exists()


@pytest.mark.parametrize("argv,needle", [
    (["compare", "--workload", "zipf", "--detectors", "klruscandx"], "klruscandx"),
    (["compare", "--workload", "nope", "--detectors", "none"], "nope"),
    (["compare", "--workload", "zipf", "--detectors", "none", "--set", "workload.size=8 GB"],
     "GB"),
    (["compare", "--workload", "zipf", "--detectors", " , "], "--detectors"),
    (["reproduce", "pghot-v3", "--scale", "0"], "scale"),
    (["reproduce", "pghot-v3", "--fit", "mode3"], "--fit"),
])
def test_compare_and_reproduce_bad_input_is_one_line_exit_2(capsys, argv, needle):
    assert main(argv) == 2
    assert needle in one_line_error(capsys)


@pytest.mark.slow   # full-scale: CI only (`make test` with CI=true); see pyproject
def test_reproduce_writes_the_issue_json_shape(tmp_path, capsys):
    out = tmp_path / "out.json"
    assert main(["reproduce", "pghot-v3", "--mode", "1", "--scale", "0.002", "--quiet",
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    row = doc["modes"]["1"]
    assert set(row) == {"numab0", "numab2", "numab2-pghot", "klruscand", "ibs"}
    for cell in row.values():
        assert set(cell) == {"runtime_us", "ratio_to_numab0", "promoted", "published"}
        assert set(cell["published"]) == {"runtime_us", "ratio_to_numab0", "promoted"}
    assert row["numab0"]["ratio_to_numab0"] == 1.0
    assert row["numab0"]["published"]["runtime_us"] == 115_668_771
    assert "Mode 1" in capsys.readouterr().out


def test_compare_json_is_one_record_per_source(capsys):
    assert main(["compare", "--workload", "hotset", "--detectors", "oracle,none",
                 "--duration", "200ms", "--set", "workload.size=32MiB", "--quiet", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = doc["compare"]
    assert [r["label"] for r in rows] == ["oracle", "none"]
    assert rows[0]["promoted_pages"] > 0 and rows[1]["promoted_pages"] == 0


def test_demo_runs_and_prints_the_comparison(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "klruscand" in out and "oracle" in out and "promoted" in out


SOURCES = ("numab0", "numab2", "numab2-pghot", "klruscand", "ibs")


@pytest.mark.slow   # full-scale: CI only (`make test` with CI=true); see pyproject
@pytest.mark.parametrize("runs, names", [
    (1, {f"mode2-{s}.json" for s in SOURCES}),
    (2, {f"mode2-{s}-run{r}.json" for s in SOURCES for r in (1, 2)}),
])
def test_reproduce_keeps_every_run_with_json_dir(tmp_path, capsys, runs, names):
    out = tmp_path / "runs"
    # idle model: at scale 0.002 the 16 MiB footprint fits zen5-cxl's 32 MiB LLC, so under the
    # loaded model IBS (L3 misses only) sees no sample and the report has no promotions
    assert main(["reproduce", "pghot-v3", "--mode", "2", "--scale", "0.002", "--quiet",
                 "--latency-model", "idle", "--runs", str(runs), "--json-dir", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == names
    capsys.readouterr()
    assert main(["report", str(out / sorted(names)[0])]) == 0
    assert "promoted pages" in capsys.readouterr().out      # the promotion summary's rows


@pytest.fixture
def no_runs(monkeypatch):
    """Make any run an error, so a test can tell a check made before running from one after."""
    import tierscan.experiments.pghot_v3 as exp

    def refuse(*args, **kwargs):
        raise AssertionError("a run started")
    monkeypatch.setattr(exp, "run_experiment", refuse)


@pytest.mark.parametrize("option, name, needle", [
    ("--json-dir", "runs", "not a directory"),
    ("--json", "out.json", "file"),
])
def test_reproduce_unusable_output_fails_before_running(tmp_path, capsys, no_runs, option,
                                                        name, needle):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["reproduce", "pghot-v3", "--mode", "2", "--scale", "0.002", "--quiet",
                 option, str(blocker / name)]) == 2
    assert needle in one_line_error(capsys)
