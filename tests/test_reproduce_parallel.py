"""`tierscan reproduce --jobs N`: the runs on the sweep's process pool give the serial table and
result files, run for run; Ctrl-C stops the workers without a traceback."""

import math
import os
import signal
import subprocess
import sys
import time

import pytest

from tierscan.cli.main import main
from tierscan.sim.results import RunResult
from tierscan.sweep.pool import run_pool


def _reproduce(tmp_path, capsys, jobs: str, *extra) -> tuple[bytes, str, str, dict]:
    out = tmp_path / f"jobs{jobs}"
    assert main(["reproduce", "pghot-v3", "--scale", "0.002", "--jobs", jobs,
                 "--json", str(out) + ".json", "--json-dir", str(out), *extra]) == 0
    stdout, stderr = capsys.readouterr()
    # a result's timing block is the one part two identical runs differ in (sim/results.py)
    files = {n: RunResult.load(out / n).to_json(include_timing=False)
             for n in sorted(os.listdir(out))}
    return (out.parent / f"jobs{jobs}.json").read_bytes(), stdout, stderr, files


@pytest.mark.parametrize("extra", [("--mode", "all"), ("--mode", "2", "--runs", "2")])
def test_parallel_runs_give_the_serial_table_and_files(tmp_path, capsys, extra):
    table1, stdout1, stderr1, files1 = _reproduce(tmp_path, capsys, "1", *extra)
    table2, stdout2, stderr2, files2 = _reproduce(tmp_path, capsys, "2", *extra)
    assert table1 == table2
    assert stdout1 == stdout2
    assert list(files1) == list(files2) and len(files1) == (15 if "all" in extra else 10)
    assert [n for n in files1 if files1[n] != files2[n]] == []
    # one line per finished run in either form; the parallel one starts with its plan
    assert stderr1.count(" done (") == stderr2.count(" done (") == len(files1)
    assert stderr2.startswith(f"{len(files1)} runs on 2 worker processes")


def test_the_pool_passes_values_and_errors_back():
    got = {}
    run_pool(math.sqrt, [4.0, 9.0, 16.0], 2, got.__setitem__)
    assert got == {0: 2.0, 1: 3.0, 2: 4.0}
    with pytest.raises(ValueError, match="math domain"):
        run_pool(math.sqrt, [4.0, -1.0], 2, lambda i, v: None)
    got.clear()
    run_pool(math.sqrt, [4.0, -1.0], 2, got.__setitem__, on_error=lambda i, e: type(e).__name__)
    assert got == {0: 2.0, 1: "ValueError"}


def _memo_value(key):
    """What the worker's memo holds for ``key``, and whether an array of it is writeable."""
    from tierscan.memsys import memo

    value = memo.cached(key, lambda: "solved in the worker")
    rates = getattr(value, "line_rates", None)
    return value, rates is not None and rates.flags.writeable


def test_workers_start_with_the_callers_memsys_solutions():
    """memsys's memo in the caller (reproduce's fit) is each worker's at its start."""
    import numpy as np

    from tierscan.memsys import memo
    from tierscan.memsys.tlb import Translation

    key, tr_key = ("test-pool", os.getpid()), ("test-pool-tr", os.getpid())
    memo.cached(key, lambda: "solved in the caller")
    memo.cached(tr_key, lambda: Translation(0.5, np.ones(3), None))
    try:
        got = {}
        run_pool(_memo_value, [key, key, tr_key], 2, got.__setitem__)
    finally:
        memo._memo.pop(key)
        memo._memo.pop(tr_key)
    assert got[0] == got[1] == ("solved in the caller", False)
    assert got[2][0].line_rates.tolist() == [1.0, 1.0, 1.0] and got[2][1] is False


def test_ctrl_c_stops_the_workers_without_a_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TIERSCAN_DEBUG="0")
    err_path = tmp_path / "stderr"
    with open(err_path, "w") as err:
        # a foreground program: SIGINT at its default (a suite run in the background ignores
        # it, and the child would inherit that); its own session, so the group is its own
        proc = subprocess.Popen([sys.executable, "-m", "tierscan.cli.main", "reproduce",
                                 "pghot-v3", "--mode", "2", "--scale", "0.05", "--jobs", "2",
                                 "--json-dir", str(tmp_path / "runs")], env=env,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 300
        while " done (" not in err_path.read_text():        # a run has ended, others run
            assert proc.poll() is None and time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)                  # as Ctrl-C does: the whole group
        proc.wait(timeout=60)
        # the workers (and the forkserver) are gone, not left running their runs
        while True:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, "worker processes still running"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = err_path.read_text()
    assert proc.returncode == 130, text
    assert text.endswith("tierscan: interrupted\n") and "Traceback" not in text, text
    assert not [n for n in os.listdir(tmp_path / "runs") if n.endswith(".tmp")]
