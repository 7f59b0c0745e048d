"""`tierscan record`'s own errors and fallbacks (the recordings themselves: test_trace_record)."""

from __future__ import annotations

import shutil

import pytest

from tierscan.cli.main import main
from tierscan.trace import build, record as record_mod
from tierscan.trace.format import TraceReader


def test_missing_valgrind_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))          # nothing on PATH: no valgrind
    out = tmp_path / "x.tsw"
    assert main(["record", "-o", str(out), "--", "true"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "valgrind is not installed" in err and "apt-get install -y valgrind" in err
    assert not out.exists()


def test_record_without_a_command_is_an_error(tmp_path, capsys):
    assert main(["record", "-o", str(tmp_path / "x.tsw")]) != 0
    assert "no command given" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed "
                    "(.ci/run installs it: apt-get install -y valgrind)")
def test_fast_tool_unavailable_falls_back_to_lackey_with_one_line(tmp_path, monkeypatch):
    def unavailable():
        raise build.BuildUnavailable("gcc is not installed")
    monkeypatch.setattr(build, "tool_dir", unavailable)
    notices = []
    res = record_mod.record(["true"], str(tmp_path / "t.tsw"), "fast", notice=notices.append)
    assert res.backend == "lackey" and len(notices) == 1
    assert "gcc is not installed" in notices[0] and "using lackey" in notices[0]
    with TraceReader(res.path) as r:
        assert r.header.source == "valgrind-lackey" and r.verify()["records"]["access"] > 0


@pytest.mark.skipif(shutil.which("valgrind") is None or shutil.which("gcc") is None,
                    reason="valgrind or gcc is not installed")
def test_tool_is_built_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    d = build.tool_dir()
    assert d.parent == tmp_path / "tierscan" and (d / "tsw-amd64-linux").is_file()
    assert (d / "vgpreload_core-amd64-linux.so").exists()
    mtime = (d / "tsw-amd64-linux").stat().st_mtime_ns
    assert build.tool_dir() == d and (d / "tsw-amd64-linux").stat().st_mtime_ns == mtime
