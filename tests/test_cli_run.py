"""`tierscan run`, `vmstat`, `report` and `sweep` end to end on small experiments: a saved
result reproduces the run's numbers; sweeps resume; every bad input is one line, exit 2 (or 1
for a run that fails), never a traceback."""

import contextlib
import csv
import io
import json
import os

import pytest
from rich.console import Console

from tierscan.cli.main import main
from tierscan.cli.run import RunProgress, run_config
from tierscan.report.tables import numastat_table, summary_metrics
from tierscan.sim.config import load_config
from tierscan.sim.results import RunResult

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

RATE = """\
name = "zipf-rate"
duration = "50ms"
[machine]
preset = "laptop"
[workload]
name = "zipf"
size = "16MiB"
threads = 2
"""

EXACT = """\
name = "uniform-exact"
access_model = "exact"
duration = "20ms"
tick = "1ms"
sample = "5ms"
[machine]
preset = "laptop"
[workload]
name = "uniform"
size = "8MiB"
"""

# No duration: the run ends when the phase's accesses are done (progress over accesses).
BY_ACCESSES = """\
[machine]
preset = "laptop"
[workload]
name = "uniform"
size = "8MiB"
accesses = 200000
"""

# No duration, phases that end by time, then by accesses (progress over phases).
BY_PHASES = """\
[machine]
preset = "laptop"
[workload]
name = "hotset"
size = "8MiB"
shift_every = "20ms"
shifts = 2
accesses = 100000
"""


def one_line_error(err: str, code_word: str = "error"):
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"tierscan: {code_word}") or err.startswith("tierscan: "), err


def assert_png(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == PNG_SIGNATURE and len(data) > 5000, path


@pytest.fixture
def write(tmp_path):
    def write(text, name="exp.toml"):
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return str(p)
    return write


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each small experiment run once through the CLI: (config path, result path, stdout)."""
    d = tmp_path_factory.mktemp("runs")
    out = {}
    for key, text in (("rate", RATE), ("exact", EXACT)):
        cfg = d / f"{key}.toml"
        cfg.write_text(text, encoding="utf-8")
        res = d / f"{key}.json"
        cap = io.StringIO()
        with contextlib.redirect_stdout(cap):
            code = main(["run", str(cfg), "--json", str(res), "--raw"])
        assert code == 0
        out[key] = (str(cfg), str(res), cap.getvalue())
    return out


# -- run -> JSON -> vmstat / report ----------------------------------------------------------


@pytest.mark.parametrize("model", ["rate", "exact"])
def test_saved_result_is_the_run(saved, model):
    cfg_path, res_path, stdout = saved[model]
    r = RunResult.load(res_path)
    cfg = load_config(cfg_path)
    assert r.config_hash == cfg.config_hash() and r.access_model == model
    assert r.meta["command"].startswith(f"tierscan run {cfg_path} --json")
    assert r.sim_time_ns == cfg.duration_ns
    assert r.final["vmstat"]["pgfault"] > 0
    # per-node counters add up to the system-wide ones
    per_node = r.final["vmstat_node"]
    assert len(per_node) == 2
    for name, value in r.final["vmstat"].items():
        assert sum(n[name] for n in per_node) == value, name
    # the printed summary shows the result's own numbers
    m = {x.key: x.value for x in summary_metrics(r)}
    assert "│ sim_time_ns " in stdout and str(cfg.duration_ns) in stdout
    assert repr(m["accesses"]) in stdout
    assert m["accesses"] == pytest.approx(float(r.series["served"].sum()))


@pytest.mark.parametrize("model", ["rate", "exact"])
def test_vmstat_reproduces_the_counters(saved, model, capsys):
    _, res_path, _ = saved[model]
    r = RunResult.load(res_path)
    assert main(["vmstat", res_path]) == 0
    lines = capsys.readouterr().out.splitlines()
    parsed = dict(line.split(" ") for line in lines)
    assert {k: int(v) for k, v in parsed.items()} == r.final["vmstat"]
    assert lines[0].startswith("nr_free_pages ")         # /proc/vmstat order, not sorted
    assert main(["vmstat", res_path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == r.final["vmstat"]
    for node in (0, 1):
        assert main(["vmstat", res_path, "--node", str(node), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == r.final["vmstat_node"][node]


@pytest.mark.parametrize("model", ["rate", "exact"])
def test_report_reproduces_the_run(saved, model, capsys):
    _, res_path, run_stdout = saved[model]
    r = RunResult.load(res_path)
    assert main(["report", res_path, "--raw"]) == 0
    out = capsys.readouterr().out
    # the same summary and per-node tables as `tierscan run` printed, then vmstat
    assert out.startswith(run_stdout)
    assert "pgpromote_success" in out[len(run_stdout):]

    assert main(["report", res_path, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (entry,) = doc["results"]
    assert entry["file"] == res_path and entry["vmstat"] == r.final["vmstat"]
    summary = entry["summary"]
    assert summary["config_hash"] == r.config_hash
    assert summary["sim_time_ns"] == r.sim_time_ns
    assert summary["pgpromote_success"] == r.final["vmstat"]["pgpromote_success"]
    assert summary["accesses"] == pytest.approx(float(r.series["served"].sum()))
    assert summary["wall_time_s"] == r.wall_time_s
    served = {row["metric"]: row for row in entry["numastat"]}["served"]
    assert [served["node0"], served["node1"]] == pytest.approx(
        r.series["served"].sum(axis=0).tolist())
    assert entry["numastat"] == numastat_table(r).records()
    assert doc["compare"][0]["sim_time_ns"] == r.sim_time_ns


def test_report_several_results_csv_and_plots(saved, tmp_path, capsys):
    rate, exact = saved["rate"][1], saved["exact"][1]
    assert main(["report", rate, exact, "--csv", str(tmp_path / "csv"),
                 "--plot", str(tmp_path / "plots")]) == 0
    out, err = capsys.readouterr()
    assert "comparison" in out and "no detector [rate]" in out and "no detector [exact]" in out
    assert sorted(os.listdir(tmp_path / "csv")) == [
        "compare.csv", "exact-numastat.csv", "exact-summary.csv", "exact-vmstat.csv",
        "rate-numastat.csv", "rate-summary.csv", "rate-vmstat.csv"]
    rows = list(csv.DictReader(open(tmp_path / "csv" / "compare.csv", encoding="utf-8")))
    assert [row["label"] for row in rows] == ["no detector [rate]", "no detector [exact]"]
    r = RunResult.load(rate)
    assert int(rows[0]["sim_time_ns"]) == r.sim_time_ns
    vm = {row["name"]: int(row["value"]) for row in
          csv.DictReader(open(tmp_path / "csv" / "rate-vmstat.csv", encoding="utf-8"))}
    assert vm == r.final["vmstat"]
    pngs = sorted(os.listdir(tmp_path / "plots"))
    assert pngs == ["heatmap-exact.png", "heatmap-rate.png", "hit_ratio.png", "promotions.png",
                    "resident.png"]
    for p in pngs:
        assert_png(tmp_path / "plots" / p)
    assert "skipped cpu_overhead.png" in err and "Traceback" not in err


def test_report_heatmap_is_drawn_in_the_terminal(saved, capsys):
    assert main(["report", saved["rate"][1], "--heatmap"]) == 0
    out = capsys.readouterr().out
    assert "accesses, log scale" in out and "fast tier" in out


def test_report_heatmap_missing_is_one_line(saved, tmp_path, capsys):
    r = RunResult.load(saved["rate"][1])
    del r.series["heatmap"], r.series["heatmap_tier"]
    res = str(tmp_path / "no-heatmap.json")
    r.save(res)
    assert main(["report", res, "--heatmap"]) == 0
    err = capsys.readouterr().err
    assert err == f"{res}: no heatmap data (the run recorded no 'heatmap' series of accesses " \
                  "per address bin)\n"


def test_run_plot_quiet_and_no_progress_when_not_a_tty(write, tmp_path, capsys):
    cfg = write(RATE)
    assert main(["run", cfg, "--plot", str(tmp_path / "p"), "--quiet",
                 "--set", "duration=30ms"]) == 0
    out, err = capsys.readouterr()
    assert err == ""                                   # --quiet: no 'wrote ...' notes
    assert "run summary" in out and "simulating" not in out and "30.0 ms" in out
    for name in ("hit_ratio.png", "resident.png", "promotions.png"):
        assert_png(tmp_path / "p" / name)


def test_run_with_daemons_plots_cpu_overhead(write, tmp_path, capsys):
    from tierscan.sim import plugins
    plugins.load_all()
    if "klruscand" not in plugins.DETECTORS or "pghot-v3" not in plugins.ENGINES:
        pytest.skip("klruscand / pghot-v3 not available")
    cfg = write(RATE + '[[detectors]]\nname = "klruscand"\ninterval_ms = 20\n'
                       '[engine]\nname = "pghot-v3"\n')
    assert main(["run", cfg, "--set", "duration=100ms", "--json", str(tmp_path / "r.json"),
                 "--plot", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    r = RunResult.load(tmp_path / "r.json")
    assert r.final["cpu_ns"] and "CPU klruscand" in out
    assert_png(tmp_path / "p" / "cpu_overhead.png")


@pytest.mark.parametrize("text, mode, detail", [
    (RATE, "time", "simulated"),
    (BY_ACCESSES, "accesses", "accesses per thread"),
    (BY_PHASES, "phases", "phase "),
])
def test_progress_bar(write, text, mode, detail):
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    with RunProgress(True, console, min_interval_s=0.0) as progress:
        r = run_config(load_config(write(text)), progress)
    assert progress._mode == mode
    assert "simulating" in buf.getvalue() and detail in buf.getvalue()
    assert progress.engine is not None and "vmstat_node" in r.final


# -- bad input -------------------------------------------------------------------------------


@pytest.fixture
def bad_paths(tmp_path, saved):
    cfg = tmp_path / "exp.toml"
    cfg.write_text(RATE, encoding="utf-8")
    good = saved["rate"][1]
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text(open(good, encoding="utf-8").read()[:700], encoding="utf-8")
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"hello": 1}\n', encoding="utf-8")
    a_file = tmp_path / "a_file"
    a_file.write_text("x", encoding="utf-8")
    return {"cfg": str(cfg), "good": good, "corrupt": str(corrupt), "foreign": str(foreign),
            "a_file": str(a_file), "tmp": str(tmp_path)}


@pytest.mark.parametrize("argv, code, needle", [
    (["run", "{tmp}/missing.toml"], 2, "missing.toml: no such file"),
    (["run", "{cfg}", "--set", "seedd=1"], 2, "seedd: unknown key"),
    (["run", "{cfg}", "--set", "workload..mode=1"], 2, "bad key"),
    (["run", "{cfg}", "--set", "noequals"], 2, "expected key=value"),
    (["run", "{cfg}", "--set", "duration=soon"], 2, "duration: expected a duration"),
    (["run", "{cfg}", "--set", "workload.name=nosuch"], 2, "unknown workload"),
    (["run", "{cfg}", "--set", "detectors[0].name=nosuch"], 2, "unknown detector"),
    (["run", "{cfg}", "--json", "{a_file}/out.json"], 2, "is not a directory"),
    (["run", "{cfg}", "--json", "{a_file}/sub/out.json"], 2, "is not a directory"),
    (["run", "{cfg}", "--json", "{tmp}"], 2, "is a directory"),
    (["run", "{cfg}", "--plot", "{a_file}"], 2, "not a directory"),
    (["run", "{cfg}", "--set", "workload.size=3GiB"], 1, "out of memory"),
    (["vmstat", "{corrupt}"], 2, "corrupt or truncated result file"),
    (["vmstat", "{foreign}"], 2, "not a tierscan result file"),
    (["vmstat", "{tmp}/missing.json"], 2, "no such file"),
    (["vmstat", "{good}", "--node", "7"], 2, "no node 7"),
    (["report", "{corrupt}"], 2, "char offset"),
    (["report", "{good}", "{foreign}"], 2, "not a tierscan result file"),
    (["report", "{good}", "--csv", "{a_file}"], 2, "not a directory"),
])
def test_bad_input_is_one_line(bad_paths, argv, code, needle, capsys):
    argv = [a.format(**bad_paths) for a in argv]
    before = set(os.listdir(bad_paths["tmp"]))
    assert main(argv) == code
    out, err = capsys.readouterr()
    one_line_error(err)
    assert needle in err, err
    assert set(os.listdir(bad_paths["tmp"])) == before       # nothing written half-way


@pytest.mark.parametrize("argv", [
    ["run"], ["vmstat"], ["report"], ["sweep"], ["vmstat", "x.json", "--node", "-1"],
    ["vmstat", "x.json", "--node", "one"], ["sweep", "s.toml", "--jobs", "0"],
    ["run", "x.toml", "--bogus"],
])
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    one_line_error(err)
    assert "--help" in err


@pytest.mark.parametrize("command", ["run", "vmstat", "report", "sweep"])
def test_help_has_examples(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"tierscan {command} " in out


# -- sweep -----------------------------------------------------------------------------------


SWEEP = """\
base = "exp.toml"
[grid]
seed = [0, 1]
"workload.alpha" = [0.9, 1.2]
"""


def mtimes(d):
    return {f: os.stat(os.path.join(d, f)).st_mtime_ns for f in os.listdir(d)
            if f.endswith(".json")}


def test_sweep_runs_the_grid_and_resumes(write, tmp_path, capsys):
    base = write(RATE.replace('"50ms"', '"20ms"'))
    sweep = write(SWEEP, "sweep.toml")
    out = tmp_path / "out"
    assert main(["sweep", sweep, "--jobs", "2", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "4 ran, 0 already done, 0 failed" in stdout

    expected = {}
    for seed in (0, 1):
        for alpha in (0.9, 1.2):
            cfg = load_config(base, [f"seed={seed}", f"workload.alpha={alpha}"])
            expected[(str(seed), str(alpha))] = cfg.config_hash()
    files = mtimes(out)
    assert sorted(files) == sorted(f"{h}.json" for h in expected.values())
    for name in files:
        r = RunResult.load(out / name)
        assert f"{r.config_hash}.json" == name and "vmstat_node" in r.final
    rows = list(csv.DictReader(open(out / "index.csv", encoding="utf-8")))
    assert [list(row) for row in rows][0] == ["point", "seed", "workload.alpha", "config_hash",
                                              "file", "status"]
    assert [(row["seed"], row["workload.alpha"]) for row in rows] == [
        ("0", "0.9"), ("0", "1.2"), ("1", "0.9"), ("1", "1.2")]
    for row in rows:
        assert row["config_hash"] == expected[(row["seed"], row["workload.alpha"])]
        assert row["file"] == f"{row['config_hash']}.json" and row["status"] == "ok"
    index_text = (out / "index.csv").read_text(encoding="utf-8")

    # Again: every run is already there, nothing is re-run or rewritten.
    assert main(["sweep", sweep, "--jobs", "2", "--out", str(out)]) == 0
    assert "0 ran, 4 already done" in capsys.readouterr().out
    assert mtimes(out) == files
    assert (out / "index.csv").read_text(encoding="utf-8") == index_text   # deterministic

    # Interrupted: one result lost; only that one runs again.
    lost = rows[2]["file"]
    os.unlink(out / lost)
    assert main(["sweep", sweep, "--out", str(out), "--dry-run"]) == 0
    assert "3 done, 1 to run" in capsys.readouterr().out
    assert lost not in os.listdir(out)                 # --dry-run writes nothing
    assert main(["sweep", sweep, "--jobs", "2", "--out", str(out)]) == 0
    assert "1 ran, 3 already done" in capsys.readouterr().out
    after = mtimes(out)
    assert sorted(after) == sorted(files)
    assert {f: t for f, t in after.items() if f != lost} == \
        {f: t for f, t in files.items() if f != lost}
    assert (out / "index.csv").read_text(encoding="utf-8") == index_text


def test_sweep_inline_base_fixed_overrides_and_duplicates(write, tmp_path, capsys):
    sweep = write('set = ["duration=10ms"]\n'
                  '[base]\nname = "inline"\n[base.machine]\npreset = "laptop"\n'
                  '[base.workload]\nname = "uniform"\nsize = "8MiB"\n'
                  '[grid]\naccess_model = ["rate", "exact"]\nseed = [0, 0]\n', "s.toml")
    out = tmp_path / "o"
    assert main(["sweep", sweep, "--jobs", "1", "--out", str(out)]) == 0
    assert "sweep: 2 runs: 2 ran" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "index.csv", encoding="utf-8")))
    assert len(rows) == 4 and rows[0]["file"] == rows[1]["file"] != rows[2]["file"]
    r = RunResult.load(out / rows[2]["file"])
    assert r.access_model == "exact" and r.sim_time_ns == 10_000_000
    assert r.meta["config"]["name"] == "inline"


def test_sweep_default_out_dir(write, tmp_path, monkeypatch, capsys):
    write(RATE.replace('"50ms"', '"10ms"'))
    sweep = write('base = "exp.toml"\n[grid]\nseed = [3]\n', "tiny.toml")
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", sweep, "-j", "1", "-q"]) == 0
    assert capsys.readouterr().out == ""
    names = os.listdir(tmp_path / "tiny-runs")
    assert {"index.csv", "summary.parquet"} <= set(names) and \
        sum(n.endswith(".json") for n in names) == 1


def test_sweep_failed_run_exit_1(write, tmp_path, capsys):
    write(RATE.replace('"50ms"', '"10ms"'))
    sweep = write('base = "exp.toml"\n[grid]\n"workload.size" = ["8MiB", "3GiB"]\n', "s.toml")
    out = tmp_path / "o"
    assert main(["sweep", sweep, "--jobs", "1", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("tierscan: ") for line in lines)
    assert "run 2 (workload.size=3GiB) failed: out of memory" in lines[0]
    assert "1 of 2 runs failed" in lines[1]
    rows = list(csv.DictReader(open(out / "index.csv", encoding="utf-8")))
    assert [row["status"] for row in rows] == ["ok", "failed"]
    assert os.path.exists(out / rows[0]["file"]) and not os.path.exists(out / rows[1]["file"])


@pytest.mark.parametrize("text, needle", [
    ('base = "exp.toml"\n[grid]\n"workload..alpha" = [1]\n', 'grid."workload..alpha": bad key'),
    ('base = "exp.toml"\n[grid]\n"seed[" = [1]\n', "bad key"),
    ('base = "exp.toml"\n[grid]\nseed = 1\n', "grid.seed: expected a non-empty list"),
    ('base = "exp.toml"\n[grid]\nseed = []\n', "grid.seed: expected a non-empty list"),
    ('base = "exp.toml"\n[grid]\nseedd = [1]\n', "grid point 1 (seedd=1)"),
    ('base = "exp.toml"\n[grid]\n"workload.name" = ["zipf", "nosuch"]\n',
     "grid point 2 (workload.name=nosuch)"),
    ('base = "missing.toml"\n[grid]\nseed = [1]\n', "base: no such file 'missing.toml'"),
    ('base = 3\n[grid]\nseed = [1]\n', "base: expected a path"),
    ('base = "exp.toml"\n', "grid: missing required key"),
    ('base = "exp.toml"\ngrids = {}\n[grid]\nseed = [1]\n', "grids: unknown key"),
    ('base = "exp.toml"\nset = [1]\n[grid]\nseed = [1]\n', "set[0]: expected a 'key=value'"),
    ('base = "exp.toml"\n[grid\n', "invalid TOML"),
])
def test_bad_sweep_files(write, tmp_path, text, needle, capsys):
    write(RATE)
    sweep = write(text, "s.toml")
    out = tmp_path / "out"
    assert main(["sweep", sweep, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    one_line_error(err)
    assert needle in err, err
    assert not out.exists()                           # validated before anything is written


def test_sweep_interrupted_keeps_finished_runs(write, tmp_path):
    """Ctrl-C: finished runs stay saved, running ones are stopped at once, the index says
    which are missing, and the next invocation runs only those."""
    import signal
    import subprocess
    import sys
    import time

    write(RATE)
    sweep = write('base = "exp.toml"\n[grid]\nduration = ["10ms", "3600s", "3601s"]\n', "s.toml")
    out = tmp_path / "out"
    short = load_config(str(tmp_path / "exp.toml"), ["duration=10ms"]).config_hash()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TIERSCAN_DEBUG="0")
    # preexec_fn: a foreground program starts with SIGINT at its default; a suite launched in
    # the background (`make test &`) ignores SIGINT, which the child would inherit.
    proc = subprocess.Popen([sys.executable, "-m", "tierscan.cli.main", "sweep", sweep,
                             "--jobs", "2", "--out", str(out)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not (out / f"{short}.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)          # as Ctrl-C does: the whole group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130 and err == "tierscan: interrupted\n"
    rows = list(csv.DictReader(open(out / "index.csv", encoding="utf-8")))
    assert [row["status"] for row in rows] == ["ok", "missing", "missing"]
    assert sorted(os.listdir(out)) == sorted([f"{short}.json", "index.csv", "summary.parquet",
                                              ".rows"])                  # no temp files
    assert os.listdir(out / ".rows") == [f"{short}.json"]
    assert main(["sweep", sweep, "--out", str(out), "--dry-run"]) == 0
