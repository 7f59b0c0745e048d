"""Sweeps on Dask and their summary table: a real scheduler and workers (subprocesses on 127.0.0.1), a worker killed
mid-run, a LocalCluster, an interrupted cluster sweep resumed, --collect, and the summary table
read back by pandas and DuckDB. Every grid point must end with exactly one result whose config
hash and metrics equal the local pool's, bit for bit."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tierscan.cli.main import main

distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")

EXP = """\
name = "zipf-rate"
duration = "200ms"
[machine]
preset = "laptop"
[workload]
name = "zipf"
size = "16MiB"
threads = 2
[[detectors]]
name = "klruscand"
interval_ms = 20
"""
SWEEP = 'base = "exp.toml"\n[grid]\nseed = [0, 1, 2, 3]\n"workload.alpha" = [0.9, 1.2]\n'
DEADLINE_S = 240


def _env() -> dict:
    import tierscan

    src = os.path.dirname(os.path.dirname(os.path.abspath(tierscan.__file__)))
    return dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
                TIERSCAN_DEBUG="0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory):
    """The grid run once on the local pool: the reference every backend must equal."""
    d = tmp_path_factory.mktemp("pool")
    (d / "exp.toml").write_text(EXP)
    (d / "s.toml").write_text(SWEEP)
    assert main(["sweep", str(d / "s.toml"), "--jobs", "2", "--out", str(d / "out"), "-q"]) == 0
    return d / "out"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "exp.toml").write_text(EXP)
    (tmp_path / "s.toml").write_text(SWEEP)
    return tmp_path


def _metrics(out) -> dict:
    """{config_hash: row without its wall time} of a sweep's summary table, checked against the
    result files: one result per run, nothing else."""
    table = pd.read_parquet(out / "summary.parquet")
    rows = {}
    for rec in table.drop(columns=["wall_s"]).to_dict("records"):
        rows[rec["config_hash"]] = json.dumps(rec, sort_keys=True, default=str)
    results = sorted(n for n in os.listdir(out) if n.endswith(".json"))
    assert results == sorted(f"{h}.json" for h in rows)
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    return rows


@pytest.fixture
def pool_rows(pool_dir):
    return _metrics(pool_dir)


class Cluster:
    """A scheduler and two single-threaded workers (no nanny: a killed worker stays dead, so its
    run must move to the other one), always torn down."""

    def __init__(self, tmp_path):
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs = []
        self.tmp = tmp_path

    def _start(self, *args):
        p = subprocess.Popen([sys.executable, "-m", *args], env=_env(), cwd=self.tmp,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def __enter__(self):
        self._start("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                    str(self.port), "--no-dashboard")
        for _ in range(2):
            self._start("distributed.cli.dask_worker", self.address, "--nthreads", "1",
                        "--no-nanny", "--no-dashboard", "--host", "127.0.0.1")
        self.client = distributed.Client(self.address, timeout=60)
        self.client.wait_for_workers(2, timeout=60)
        return self

    def __exit__(self, *exc):
        try:
            self.client.close()
        finally:
            for p in self.procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=30)


def _sweep_proc(files, out, *extra):
    """The sweep as a foreground program: SIGINT at its default (a suite launched in the
    background ignores SIGINT, which the child would otherwise inherit and Ctrl-C would not
    reach it)."""
    return subprocess.Popen([sys.executable, "-m", "tierscan.cli.main", "sweep",
                             str(files / "s.toml"), "--out", str(out), *extra],
                            env=_env(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait(proc, until, what):
    deadline = time.monotonic() + DEADLINE_S
    while not until():
        assert proc.poll() is None, (what, proc.communicate())
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow   # a real scheduler and workers: CI only (`make test` with CI=true)
def test_cluster_survives_a_killed_worker(files, pool_rows):
    out = files / "cluster"
    with Cluster(files) as cluster:
        pids = cluster.client.run(os.getpid)            # worker address -> pid
        proc = _sweep_proc(files, out, "--scheduler", cluster.address)
        try:
            busy = []

            def running():
                busy[:] = [w for w, keys in cluster.client.processing().items()
                           if any(str(k).startswith("tierscan-run-") for k in keys)]
                return bool(busy)

            _wait(proc, running, "a run to start on a worker")
            os.kill(pids[busy[0]], signal.SIGKILL)        # mid-run
            stdout, stderr = proc.communicate(timeout=DEADLINE_S)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == 0, stderr
    assert "8 ran, 0 already done, 0 failed" in stdout
    assert _metrics(out) == pool_rows


@pytest.mark.slow
def test_local_cluster_collect_and_resume(files, pool_rows, capsys):
    out = files / "local"
    # Interrupted after its first result, then resumed: only the missing runs run.
    proc = _sweep_proc(files, out, "--scheduler", "local:2")
    try:
        _wait(proc, lambda: out.exists() and any(n.endswith(".json") for n in os.listdir(out)),
              "the first result")
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    done = {n for n in os.listdir(out) if n.endswith(".json")}
    assert 1 <= len(done) < 8
    mtimes = {n: os.stat(out / n).st_mtime_ns for n in done}
    assert main(["sweep", str(files / "s.toml"), "--out", str(out), "--scheduler", "local:2",
                 "--collect"]) == 0
    stdout = capsys.readouterr().out
    assert f"{8 - len(done)} ran, {len(done)} already done, 0 failed" in stdout
    assert {n: os.stat(out / n).st_mtime_ns for n in done} == mtimes   # not rewritten
    assert _metrics(out) == pool_rows


def test_summary_reads_in_pandas_and_duckdb(pool_dir):
    duckdb = pytest.importorskip("duckdb")
    path = pool_dir / "summary.parquet"
    df = pd.read_parquet(path)
    assert list(df.columns[:2]) == ["seed", "workload.alpha"]
    assert str(df["seed"].dtype) == "int64" and str(df["workload.alpha"].dtype) == "float64"
    assert (df["status"] == "ok").all() and len(df) == 8
    con = duckdb.connect()
    n, mean_alpha, total = con.execute(
        f"SELECT count(*), avg(\"workload.alpha\"), sum(accesses) FROM '{path}'").fetchone()
    assert (n, mean_alpha) == (8, pytest.approx(1.05)) and total == pytest.approx(
        df["accesses"].sum())


@pytest.mark.parametrize("value, needle", [
    ("local:0", "local:N with N >= 1"), ("local:x", "local:N"), ("tcp://a b", "scheduler address"),
])
def test_bad_scheduler(files, value, needle, capsys):
    assert main(["sweep", str(files / "s.toml"), "--scheduler", value]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_collect_needs_a_scheduler(files, capsys):
    assert main(["sweep", str(files / "s.toml"), "--collect", "--out", str(files / "o")]) == 2
    assert "--collect goes with --scheduler" in capsys.readouterr().err
    assert not (files / "o").exists()


def test_missing_dask_names_the_extra(files, monkeypatch, capsys):
    import builtins

    real = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    assert main(["sweep", str(files / "s.toml"), "--scheduler", "local:1",
                 "--out", str(files / "o")]) == 2
    err = capsys.readouterr().err
    assert "tierscan[cluster]" in err and len(err.strip().splitlines()) == 1


def test_report_pivots_the_summary(pool_dir, tmp_path, capsys):
    """The pivot's cells are the means of the metric over the runs of each (row, column) pair,
    computed here from the result files themselves."""
    from tierscan.sim.results import RunResult
    from tierscan.sweep.summary import metrics_of

    per = {}
    for name in os.listdir(pool_dir):
        if name.endswith(".json"):
            r = RunResult.load(pool_dir / name)
            key = (r.meta["config"]["workload"]["alpha"], r.seed)
            per[key] = metrics_of(r)["daemon_cpu_ns"]
    assert main(["report", str(pool_dir), "--rows", "workload.alpha", "--cols", "seed",
                 "--metric", "daemon_cpu_ns", "--json", "--plot", str(tmp_path / "p"),
                 "--csv", str(tmp_path / "c")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [rec["workload.alpha"] for rec in doc["pivot"]] == [0.9, 1.2]
    for rec in doc["pivot"]:
        for seed in range(4):
            assert rec[f"seed={seed}"] == per[(rec["workload.alpha"], seed)]
    assert (tmp_path / "p" / "sweep-daemon_cpu_ns.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "c" / "pivot.csv").read_text().startswith("workload.alpha,seed=0,")

    # Averaged over seeds when only rows are given (no columns other than the metric).
    assert main(["report", str(pool_dir), "--rows", "workload.alpha", "--cols", "seed",
                 "--metric", "accesses"]) == 0
    assert "accesses (mean over runs)" in capsys.readouterr().out


@pytest.mark.parametrize("extra, needle", [
    (["--rows", "nope"], "--rows: no grid parameter 'nope' (parameters: seed, workload.alpha)"),
    (["--metric", "speed"], "--metric: unknown metric 'speed'"),
])
def test_report_sweep_bad_input(pool_dir, extra, needle, capsys):
    assert main(["report", str(pool_dir), *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_report_directory_without_summary(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a sweep output directory" in capsys.readouterr().err


def test_pool_workers_take_the_sweeps_sim_limit_as_it_is_now(tmp_path, monkeypatch):
    """The pool's forkserver keeps the environment it started with: a sweep run after another
    one with $TIERSCAN_SIM_LIMIT set (the docs-examples test does that in-process) ran with the
    old cap (100 ms runs where the config says 200 ms) until workers took the current value."""
    (tmp_path / "exp.toml").write_text(EXP)
    (tmp_path / "s.toml").write_text('base = "exp.toml"\n[grid]\nseed = [0, 1]\n')

    def sim_times(env_limit, out):
        if env_limit is None:
            monkeypatch.delenv("TIERSCAN_SIM_LIMIT", raising=False)
        else:
            monkeypatch.setenv("TIERSCAN_SIM_LIMIT", env_limit)
        assert main(["sweep", str(tmp_path / "s.toml"), "--jobs", "2", "--out",
                     str(tmp_path / out), "-q"]) == 0
        return sorted(pd.read_parquet(tmp_path / out / "summary.parquet")["sim_time_ns"])

    assert sim_times("100ms", "capped") == [100_000_000] * 2
    assert sim_times(None, "full") == [200_000_000] * 2
