"""Output paths (issue 14, item 1): nothing but a regular file is ever replaced, symlinks are
written through, every output is checked before any work, parents are created for files as
for directories, file sets appear together, and a closed standard output loses nothing.

Device nodes: only /dev/null and /dev/full are pointed at (never created)."""

import os
import stat
import subprocess
import sys

import pytest

from tierscan.cli.main import main
from tierscan.errors import ConfigError
from tierscan.outpath import (atomic_batch, atomic_write, check_output_dir, check_output_file,
                              check_output_files)

EXP = """\
duration = "30ms"
[machine]
preset = "laptop"
[workload]
name = "uniform"
size = "8MiB"
"""


@pytest.fixture
def exp(tmp_path):
    p = tmp_path / "exp.toml"
    p.write_text(EXP)
    return p


def _device_untouched(path="/dev/full"):
    st = os.lstat(path)
    assert stat.S_ISCHR(st.st_mode), f"{path} is no longer a character device"


@pytest.mark.parametrize("device", ["/dev/null", "/dev/full"])
def test_a_device_is_never_replaced(device, tmp_path):
    with pytest.raises(ConfigError, match="character device"):
        atomic_write(device, lambda f: f.write("x"))
    with pytest.raises(ConfigError, match="character device"):
        check_output_file(device)
    _device_untouched(device)
    link = tmp_path / "link.json"
    link.symlink_to(device)
    with pytest.raises(ConfigError, match="character device"):
        atomic_write(link, lambda f: f.write("x"))
    assert link.is_symlink()
    _device_untouched(device)


def test_a_symlink_is_written_through(tmp_path):
    target = tmp_path / "real" / "out.json"
    target.parent.mkdir()
    target.write_text("old\n")
    os.chmod(target, 0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write(link, lambda f: f.write("new\n"))
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640       # the old file's mode is kept
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "later.json")
    atomic_write(dangling, lambda f: f.write("x"))
    assert dangling.is_symlink() and (tmp_path / "later.json").read_text() == "x"


def test_directories_fifos_and_loops_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        atomic_write(tmp_path, lambda f: f.write("x"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="FIFO"):
        check_output_file(fifo)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(ConfigError, match="loop"):
        check_output_file(loop)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="not a directory"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(ConfigError, match="not a directory"):
        check_output_file(tmp_path / "file" / "x.json")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "hit_ratio.png").mkdir()
    with pytest.raises(ConfigError, match="hit_ratio.png.*directory"):
        check_output_files(tmp_path / "d", ["resident.png", "hit_ratio.png"])


def test_unwritable_places_are_refused_before_work_even_as_root():
    with pytest.raises(ConfigError, match="/proc"):
        check_output_file("/proc/tierscan-test.json")
    with pytest.raises(ConfigError, match="/proc"):
        check_output_dir("/proc/tierscan-test-dir")


def test_a_file_gets_its_parents_like_a_directory(tmp_path):
    check_output_file(tmp_path / "a" / "b" / "x.json")
    assert not (tmp_path / "a").exists()           # checking creates nothing
    atomic_write(tmp_path / "a" / "b" / "x.json", lambda f: f.write("x"))
    assert (tmp_path / "a" / "b" / "x.json").read_text() == "x"


def test_a_batch_is_all_or_nothing(tmp_path):
    (tmp_path / "a.txt").write_text("old a")
    with pytest.raises(RuntimeError):
        with atomic_batch():
            atomic_write(tmp_path / "a.txt", lambda f: f.write("new a"))
            atomic_write(tmp_path / "b.txt", lambda f: f.write("new b"))
            raise RuntimeError("the third file failed")
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]          # no temporary file left
    assert (tmp_path / "a.txt").read_text() == "old a"
    with atomic_batch():
        atomic_write(tmp_path / "a.txt", lambda f: f.write("new a"))
        assert (tmp_path / "a.txt").read_text() == "old a"    # renamed only at the end
    assert (tmp_path / "a.txt").read_text() == "new a"


# -- the subcommands: checked before any run -------------------------------------------------


@pytest.fixture
def no_runs(monkeypatch):
    """Fail the test if anything runs a simulation."""
    from tierscan.sim.engine import Engine

    def boom(*a, **k):
        raise AssertionError("a run started before the output paths were checked")

    # On the class: modules that imported run_experiment by name still reach it.
    monkeypatch.setattr(Engine, "run", boom)


def _blocked_dir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    (d / "hit_ratio.png").mkdir()               # a directory where a file would go
    (d / "klruscand.json").mkdir()
    (d / "index.csv").mkdir()
    (d / "compare.csv").mkdir()
    return d


@pytest.mark.parametrize("argv", [
    ["run", "{exp}", "--json", "/dev/full"],
    ["run", "{exp}", "--json", "/proc/x.json"],
    ["run", "{exp}", "--plot", "/proc/x"],
    ["run", "{exp}", "--plot", "{out}"],
    ["compare", "--workload", "uniform", "--detectors", "klruscand,none",
     "--set", "workload.size=8MiB", "--duration", "30ms", "--json-dir", "{out}"],
    ["compare", "--workload", "uniform", "--detectors", "none", "--set", "workload.size=8MiB",
     "--duration", "30ms", "--plot", "{out}"],
    ["compare", "--workload", "uniform", "--detectors", "none", "--set", "workload.size=8MiB",
     "--duration", "30ms", "--json-dir", "/proc/x"],
    ["reproduce", "pghot-v3", "--mode", "1", "--json", "/dev/null"],
    ["sweep", "{sweep}", "--out", "{out}"],
    ["sweep", "{sweep}", "--out", "/proc/x"],
])
def test_subcommands_refuse_bad_outputs_before_running(argv, exp, tmp_path, no_runs, capsys):
    out = _blocked_dir(tmp_path)
    sweep = tmp_path / "s.toml"
    sweep.write_text('base = "exp.toml"\n[grid]\nseed = [0]\n')
    before = sorted(os.listdir(tmp_path))
    argv = [a.format(exp=exp, out=out, sweep=sweep) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write" in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == before
    _device_untouched("/dev/full")


def test_report_checks_every_plot_and_csv_file_first(exp, tmp_path, capsys):
    res = tmp_path / "r.json"
    assert main(["run", str(exp), "--json", str(res), "-q"]) == 0
    out = _blocked_dir(tmp_path)
    for opt in ("--plot", "--csv"):
        assert main(["report", str(res), opt, str(out)]) == 2
        assert "directory" in capsys.readouterr().err
        assert sorted(os.listdir(out)) == ["compare.csv", "hit_ratio.png", "index.csv",
                                           "klruscand.json"]


def test_json_creates_its_directory(exp, tmp_path, capsys):
    out = tmp_path / "runs" / "x.json"
    assert main(["run", str(exp), "--json", str(out), "-q"]) == 0
    assert out.is_file()


def test_a_closed_pipe_keeps_the_result_and_is_quiet(exp, tmp_path):
    """`tierscan run exp.toml --json out.json | head -1`: out.json is written, no message."""
    out = tmp_path / "out.json"
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "src"))
    cmd = f"{sys.executable} -m tierscan.cli.main run {exp} --json {out} | head -1"
    p = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}; echo status=$?"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert out.is_file()
    assert "Traceback" not in p.stderr and "Exception ignored" not in p.stderr
    assert "error" not in p.stderr
    assert "status=141" in p.stdout or "status=0" in p.stdout
