"""`tierscan machine show` and the CLI's error handling: exit codes and one-line errors."""

import json

import pytest

from tierscan.cli import main as cli_main
from tierscan.cli.main import main
from tierscan.errors import ConfigError


def _one_line_error(err: str):
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("tierscan: ")


def test_show_default_is_laptop(capsys):
    assert main(["machine", "show"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("available: 2 nodes (0-1)\nnode 0 cpus: 0 1\n")
    assert "load latency (ns)" in out and "store latency (ns)" in out
    assert err == ""


def test_show_zen5_scaled(capsys):
    assert main(["machine", "show", "--preset", "zen5-cxl", "--scale", "0.125"]) == 0
    out = capsys.readouterr().out
    assert "node 0 size: 16056 MB" in out
    assert "# capacities scaled by 0.125 for simulation (nominal: node 0 128460 MB" in out


def test_show_json(capsys):
    assert main(["machine", "show", "--preset", "zen5-cxl", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["name"] == "zen5-cxl" and doc["source"] == "<preset zen5-cxl>"
    assert doc["nodes"][1]["nominal_capacity_bytes"] == 128893 * 2**20
    assert doc["nodes"][0]["cpus"] == "0-95,192-287"
    assert doc["distance"][2] == [255, 255, 10]


def test_show_file(tmp_path, capsys):
    from tierscan.machine import Machine
    f = tmp_path / "box.toml"
    f.write_text("""
name = "box"
[[nodes]]
id = 0
capacity = "64 MiB"
cpus = "0-3"
tier = 0
kind = "dram"
[latency]
load_ns = [[80]]
store_ns = [[85.5]]
distance = [[10]]
""")
    assert main(["machine", "show", "--file", str(f)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("available: 1 nodes (0)\nnode 0 cpus: 0 1 2 3\nnode 0 size: 64 MB\n")
    assert "85.5" in out
    assert Machine.from_toml(f).nr_cpus == 4


def test_unknown_preset_exit_2(capsys):
    assert main(["machine", "show", "--preset", "zen9"]) == 2
    out, err = capsys.readouterr()
    _one_line_error(err)
    assert err.startswith("tierscan: error: <preset zen9>: unknown preset 'zen9'")
    assert "zen5-cxl" in err and out == ""


def test_missing_file_exit_2(tmp_path, capsys):
    f = tmp_path / "none.toml"
    assert main(["machine", "show", "--file", str(f)]) == 2
    err = capsys.readouterr().err
    _one_line_error(err)
    assert err.strip() == f"tierscan: error: {f}: no such file"


def test_bad_field_exit_2(tmp_path, capsys):
    f = tmp_path / "bad.toml"
    f.write_text('name = "b"\n[[nodes]]\nid = 0\ncapacity = "8 GB"\ncpus = [0]\ntier = 0\nkind = "dram"\n'
                 '[latency]\nload_ns = [[1]]\nstore_ns = [[1]]\ndistance = [[10]]\n')
    assert main(["machine", "show", "--file", str(f)]) == 2
    err = capsys.readouterr().err
    _one_line_error(err)
    assert f"{f}: nodes[0].capacity: ambiguous unit 'GB'" in err


def test_toml_syntax_error_exit_2(tmp_path, capsys):
    f = tmp_path / "syntax.toml"
    f.write_text("name = \n")
    assert main(["machine", "show", "--file", str(f)]) == 2
    err = capsys.readouterr().err
    _one_line_error(err)
    assert "invalid TOML" in err and "line 1" in err


@pytest.mark.parametrize("argv", [
    [], ["nosuch"], ["machine"], ["machine", "show", "--scale", "2"], ["machine", "show", "--scale", "x"],
    ["machine", "show", "--preset", "laptop", "--file", "f.toml"],
])
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["machine", "show", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--preset" in out and "tierscan machine show --preset zen5-cxl" in out


def _raising(exc):
    def func(args):
        raise exc
    return func


def _patch_show(monkeypatch, exc):
    import tierscan.cli.machine as m
    monkeypatch.setattr(m, "run_show", _raising(exc))


def test_internal_error_one_line_exit_1(monkeypatch, capsys):
    _patch_show(monkeypatch, RuntimeError("boom\nsecond line"))
    monkeypatch.delenv("TIERSCAN_DEBUG", raising=False)
    assert main(["machine", "show"]) == 1
    err = capsys.readouterr().err
    _one_line_error(err)
    assert err.strip() == ("tierscan: internal error: RuntimeError: boom second line "
                           "(set TIERSCAN_DEBUG=1 for the traceback)")


def test_internal_error_reraised_in_debug(monkeypatch):
    _patch_show(monkeypatch, RuntimeError("boom"))
    monkeypatch.setenv("TIERSCAN_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["machine", "show"])


def test_keyboard_interrupt_exit_130(monkeypatch, capsys):
    _patch_show(monkeypatch, KeyboardInterrupt())
    assert main(["machine", "show"]) == 130
    _one_line_error(capsys.readouterr().err)


def test_tierscan_error_uses_its_exit_code(monkeypatch, capsys):
    _patch_show(monkeypatch, ConfigError("bad", where="w", field="f"))
    assert main(["machine", "show"]) == 2
    assert capsys.readouterr().err == "tierscan: error: w: f: bad\n"


def test_missing_optional_subcommand_is_skipped(monkeypatch):
    # cli/demo.py may not exist yet (or ever, in a trimmed install): the CLI must still build.
    monkeypatch.setattr(cli_main, "_SUBCOMMANDS", cli_main._SUBCOMMANDS + (("tierscan.cli.nosuch", True),))
    parser = cli_main.build_parser()
    assert parser.parse_args(["machine", "show"]).func is not None


def test_missing_required_subcommand_is_not_hidden(monkeypatch, capsys):
    monkeypatch.setattr(cli_main, "_SUBCOMMANDS", (("tierscan.cli.nosuch", False),))
    monkeypatch.delenv("TIERSCAN_DEBUG", raising=False)
    assert main(["machine", "show"]) == 1
    assert "internal error: ModuleNotFoundError" in capsys.readouterr().err
