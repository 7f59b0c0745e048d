"""Experiment configuration (sim/config.py) and run result files (sim/results.py): strict loading
with one-line errors, overrides, resolved defaults and the config hash; exact, atomic,
deterministic result files."""

import copy
import dataclasses
import json
import os
import pickle
from importlib import resources

import numpy as np
import pytest

import tierscan
from tierscan.errors import ConfigError
from tierscan.machine import Machine
from tierscan import outpath
from tierscan.sim import results as results_mod
from tierscan.sim.config import (Component, ExperimentConfig, config_from_dict, load_config,
                                 parse_override, thaw)
from tierscan.sim.results import RunResult

FULL = """\
name = "mode1-klruscand"
seed = 0
access_model = "rate"
duration = "120s"
tick = "10ms"
sample = "100ms"
faithful_quirks = true

[machine]
preset = "zen5-cxl"
scale = 0.125

[workload]
name = "pghot-bench"
mode = 1

[[detectors]]
name = "klruscand"
interval_ms = 500

[[detectors]]
name = "kscand"
scan_period = "1s"

[engine]
name = "pghot-v3"
threshold = 2

[costs]
hint_fault = "1.2us"
migrate_page_ns = 2500

[sysfs]
"numa/demotion_enabled" = true
"""

MINIMAL = """\
[machine]
preset = "laptop"
[workload]
name = "uniform"
"""


@pytest.fixture
def write(tmp_path):
    def write(text, name="exp.toml"):
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return p
    return write


def config_error(path, overrides=()):
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides)
    msg = str(e.value)
    assert "\n" not in msg, msg                       # one line, for the CLI
    assert msg.startswith(f"{path}: "), msg           # names the file
    return e.value


# -- loading ----------------------------------------------------------------------------------


def test_full_example_loads(write):
    cfg = load_config(write(FULL))
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.name == "mode1-klruscand" and cfg.seed == 0 and cfg.access_model == "rate"
    assert (cfg.duration_ns, cfg.tick_ns, cfg.sample_ns) == (120 * 10**9, 10**7, 10**8)
    assert cfg.faithful_quirks is True
    assert cfg.machine == Machine.preset("zen5-cxl").scaled(0.125)
    assert cfg.workload == Component("pghot-bench", {"mode": 1})
    assert [d.name for d in cfg.detectors] == ["klruscand", "kscand"]
    assert cfg.detectors[0].params == {"interval_ms": 500}
    assert cfg.detectors[1].path == "detectors[1]" and cfg.detectors[1].where.endswith("exp.toml")
    assert cfg.engine.to_dict() == {"name": "pghot-v3", "threshold": 2}
    assert cfg.costs == {"hint_fault": "1.2us", "migrate_page_ns": 2500}
    assert cfg.sysfs == {"numa/demotion_enabled": True}


def test_resolved_fills_defaults(write):
    cfg = load_config(write(MINIMAL))
    assert cfg.resolved() == {
        "name": None, "seed": 0, "access_model": "rate", "latency_model": "loaded",
        "duration": None, "tick": "10ms",
        "sample": "100ms", "faithful_quirks": True,
        "machine": Machine.preset("laptop").to_dict(),
        "workload": {"name": "uniform"}, "detectors": [], "engine": None, "costs": {},
        "sysfs": {},
    }


def test_resolved_is_plain_self_contained_and_reloads(write):
    cfg = load_config(write(FULL))
    r = cfg.resolved()
    json.dumps(r)                                      # plain JSON data
    assert type(r["workload"]) is dict and type(r["detectors"]) is list
    assert r["machine"]["capacity_scale"] == 0.125     # the machine inline, scale included
    assert r["duration"] == "120s"
    again = config_from_dict(r, where="<resolved>")
    assert again == cfg and again.config_hash() == cfg.config_hash()
    r["workload"]["mode"] = 9                          # a copy: the config is unaffected
    assert cfg.workload.params["mode"] == 1


def test_config_is_frozen(write):
    cfg = load_config(write(FULL))
    h = cfg.config_hash()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1
    with pytest.raises(TypeError):
        cfg.workload.params["mode"] = 2
    with pytest.raises(TypeError):
        cfg.sysfs.update(x=1)
    assert cfg.config_hash() == h
    editable = thaw(cfg.workload.params)
    editable["mode"] = 2
    assert cfg.workload.params["mode"] == 1
    assert isinstance(cfg.workload.params, dict)       # still a dict for downstream checkers


def test_pickle_and_deepcopy_keep_content(write):
    cfg = load_config(write(FULL))
    for other in (pickle.loads(pickle.dumps(cfg)), copy.deepcopy(cfg)):
        assert other == cfg and hash(other) == hash(cfg)
        with pytest.raises(TypeError):
            other.workload.params["mode"] = 2


def test_machine_file_is_relative_to_the_config(write, tmp_path):
    laptop = (resources.files("tierscan") / "presets" / "laptop.toml").read_text("utf-8")
    (tmp_path / "machines").mkdir()
    (tmp_path / "machines" / "box.toml").write_text(laptop, encoding="utf-8")
    by_file = load_config(write(MINIMAL.replace('preset = "laptop"', 'file = "machines/box.toml"')))
    by_preset = load_config(write(MINIMAL, "p.toml"))
    assert by_file.machine == by_preset.machine
    assert by_file.config_hash() == by_preset.config_hash()  # content, not provenance


def test_inline_machine_equals_preset(write):
    inline = "\n".join(line for line in
                       (resources.files("tierscan") / "presets" / "laptop.toml")
                       .read_text("utf-8").splitlines()
                       if not line.startswith("#"))
    # Put the machine's keys under [machine]: its tables become machine.nodes / machine.latency.
    inline = (inline.replace('name = "laptop"', '[machine]\nname = "laptop"\nscale = 0.5')
              .replace("[[nodes]]", "[[machine.nodes]]").replace("[latency]", "[machine.latency]"))
    cfg = load_config(write(inline + '\n[workload]\nname = "uniform"\n'))
    assert cfg.machine == Machine.preset("laptop").scaled(0.5)


# -- the hash ---------------------------------------------------------------------------------


def test_same_config_same_hash(write, tmp_path):
    a = load_config(write(FULL, "a.toml"))
    b = load_config(write(FULL, "b.toml"))
    assert a.config_hash() == b.config_hash() and a == b and hash(a) == hash(b)
    assert len(a.config_hash()) == 16 and int(a.config_hash(), 16) >= 0
    # Equivalent spellings and explicit defaults resolve to the same configuration.
    same = load_config(write(FULL.replace('tick = "10ms"', 'tick = "10000us"')
                             .replace('duration = "120s"', 'duration = "120000ms"')
                             .replace('faithful_quirks = true', ''), "c.toml"))
    assert same.config_hash() == a.config_hash()


@pytest.mark.parametrize("override", [
    "seed=1", "access_model=exact", "duration=60s", "tick=5ms", "sample=200ms",
    "faithful_quirks=false", "name=other", "machine.scale=0.5", "machine.preset=laptop",
    "workload.mode=2", "workload.name=zipf", "workload.extra=1", "detectors[0].interval_ms=100",
    "detectors[1].name=damon", "detectors[2].name=ibs", "engine.threshold=3",
    "costs.hint_fault=1.3us", "sysfs.\"numa/demotion_enabled\"=false", "sysfs.x=1",
    "workload.mode=1.0",   # a float is not the integer 1
])
def test_any_change_changes_the_hash(write, override):
    path = write(FULL)
    assert load_config(path, [override]).config_hash() != load_config(path).config_hash()


def test_distinct_changes_give_distinct_hashes(write):
    path = write(FULL)
    overrides = ["seed=1", "seed=2", "workload.mode=2", "workload.mode=3", "tick=5ms",
                 "detectors[0].interval_ms=100", "detectors[0].interval_ms=200"]
    hashes = {load_config(path).config_hash()} | {load_config(path, [o]).config_hash()
                                                   for o in overrides}
    assert len(hashes) == len(overrides) + 1


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("old, new, field, fragment", [
    ("seed = 0", "seed = 0\nseedd = 1", "seedd", "unknown key (expected one of: name, seed"),
    ("seed = 0", 'seed = "3"', "seed", "expected an integer >= 0, got string '3'"),
    ("seed = 0", "seed = -1", "seed", "expected an integer >= 0"),
    ('name = "mode1-klruscand"', "name = 3", "name", "expected a non-empty string"),
    ("faithful_quirks = true", "faithful_quirks = 1", "faithful_quirks", "expected true or false"),
    ('access_model = "rate"', 'access_model = "trace"', "access_model",
     "expected one of 'rate', 'exact', got string 'trace'"),
    ('access_model = "rate"', "access_model = 1", "access_model", "expected one of"),
    ('tick = "10ms"', 'tick = "10 msec"', "tick", "expected a duration unit"),
    ('duration = "120s"', 'duration = "120"', "duration", "expected a duration unit"),
    ('duration = "120s"', 'duration = "0s"', "duration", "must be greater than zero"),
    ('duration = "120s"', "duration = 1.5", "duration", "expected a duration such as '500ms'"),
    ('sample = "100ms"', 'sample = "15ms"', "sample", "must be a whole number of ticks"),
    ("scale = 0.125", "scale = 2", "machine.scale", "expected a number with 0 < scale <= 1"),
    ("scale = 0.125", "sclae = 0.5", "machine.sclae", "unknown key (expected one of: preset"),
    ('preset = "zen5-cxl"', 'preset = "zen5-cxl"\nfile = "x.toml"', "machine",
     "give only one of preset = \"...\", file = \"...\" or an inline machine table "
     "(found preset and file)"),
    ('preset = "zen5-cxl"', 'preset = "zen5-cxl"\nname = "box"', "machine",
     "(found preset and an inline machine)"),
    ('preset = "zen5-cxl"', "", "machine", "expected preset = \"...\", file = \"...\""),
    ('preset = "zen5-cxl"', 'preset = "zen6"', "machine.preset", "unknown preset 'zen6'"),
    ('preset = "zen5-cxl"', 'file = "nowhere.toml"', "machine.file", "no such file 'nowhere.toml'"),
    ('[workload]\nname = "pghot-bench"', "[workload]", "workload.name", "missing required key"),
    ('[workload]\nname = "pghot-bench"', '[workload]\nname = ""', "workload.name",
     "expected a non-empty string"),
    ('[workload]\nname = "pghot-bench"\nmode = 1', '[workloads]\nname = "x"', "workloads",
     "unknown key"),
    ("mode = 1", "mode = nan", "workload.mode", "expected a finite number, got float nan"),
    ("mode = 1", "start = 1979-05-27", "workload.start",
     "expected a string, number, boolean, array or table, got date"),
    ("mode = 1", "phases = [{at = 1979-05-27T07:32:00}]", "workload.phases[0].at", "got datetime"),
    ('name = "kscand"', 'nam = "kscand"', "detectors[1].name", "missing required key"),
    ('name = "pghot-v3"', "threshold0 = 1", "engine.name", "missing required key"),
    ('hint_fault = "1.2us"', "hint_fault = true", "costs.hint_fault",
     "expected a number or a unit string such as '120ns', got boolean True"),
    ('hint_fault = "1.2us"', "per_node = [1, false]", "costs.per_node[1]",
     "expected a number or a unit string"),
])
def test_bad_input_is_one_line_naming_file_and_key(write, old, new, field, fragment):
    assert old in FULL
    path = write(FULL.replace(old, new, 1))
    e = config_error(path)
    assert e.field == field
    assert str(e).startswith(f"{path}: {field}: "), str(e)
    assert fragment in str(e), str(e)


@pytest.mark.parametrize("first, field, fragment", [
    ('detectors = "klruscand"', "detectors", "expected an array, got string 'klruscand'"),
    ("detectors = [3]", "detectors[0]", "expected a table with name = \"...\", got integer 3"),
    ('engine = "pghot"', "engine", "expected a table with name"),
    ("sysfs = 3", "sysfs", "expected a table, got integer 3"),
    ("costs = [1]", "costs", "expected a table, got array"),
    ('machine = "laptop"', "machine", "expected a table (preset ="),
])
def test_sections_of_the_wrong_type(write, first, field, fragment):
    text = (MINIMAL.replace('[machine]\npreset = "laptop"\n', "") if first.startswith("machine")
            else MINIMAL)
    e = config_error(write(f"{first}\n{text}"))
    assert e.field == field and fragment in str(e), str(e)


def test_inline_machine_errors_are_under_machine(write):
    text = MINIMAL.replace('preset = "laptop"', 'name = "box"\n[[machine.nodes]]\nid = 0\n'
                           'capcity = "1GiB"\ncpus = [0]\ntier = 0\nkind = "dram"\n'
                           '[machine.latency]\nload_ns = [[90]]\nstore_ns = [[90]]\n'
                           'distance = [[10]]')
    e = config_error(write(text))
    assert e.field == "machine.nodes[0].capcity" and "unknown key" in str(e)


def test_errors_inside_a_machine_file_name_that_file(write, tmp_path):
    (tmp_path / "box.toml").write_text('name = "box"\nnodes = []\n[latency]\n', encoding="utf-8")
    path = write(MINIMAL.replace('preset = "laptop"', 'file = "box.toml"'))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{tmp_path / 'box.toml'}: nodes: ")


def test_invalid_toml_and_missing_file(write, tmp_path):
    e = config_error(write("seed = \n"))
    assert "invalid TOML" in str(e) and "line 1" in str(e)
    e = config_error(tmp_path / "absent.toml")
    assert str(e) == f"{tmp_path / 'absent.toml'}: no such file"


def test_component_check_keys_names_the_detector_key(write):
    path = write(FULL.replace("interval_ms = 500", "interval_msx = 500"))
    cfg = load_config(path)                            # detector keys pass through ...
    with pytest.raises(ConfigError) as e:              # ... and the detector library rejects them
        cfg.detectors[0].check_keys({"interval_ms": False})
    assert str(e.value) == (f"{path}: detectors[0].interval_msx: unknown key "
                            f"(expected one of: interval_ms)")
    with pytest.raises(ConfigError) as e:
        cfg.workload.fail("mode", "expected 1, 2 or 3")
    assert str(e.value) == f"{path}: workload.mode: expected 1, 2 or 3"


# -- overrides --------------------------------------------------------------------------------


def test_overrides_apply_before_validation(write):
    path = write(FULL.replace('access_model = "rate"', 'access_model = "typo"'))
    cfg = load_config(path, [
        "access_model=exact",                  # fixes the file's bad value: applied first
        "workload.mode=2", "detectors[0].interval_ms=100", "seed=3", 'name="quoted"',
        "duration=60s", 'sysfs."numa/demotion_enabled"=false', "detectors[2].name=damon",
        "detectors[2].regions=[1, 2]", "engine.ratio=1.5", "machine.scale = 0.5",
        "costs.new=7", "workload.label=some words",
    ])
    assert cfg.access_model == "exact" and cfg.seed == 3 and cfg.name == "quoted"
    assert cfg.workload.params == {"mode": 2, "label": "some words"}
    assert cfg.detectors[0].params["interval_ms"] == 100
    assert cfg.detectors[2].to_dict() == {"name": "damon", "regions": [1, 2]}
    assert cfg.duration_ns == 60 * 10**9 and cfg.sysfs["numa/demotion_enabled"] is False
    assert cfg.engine.params["ratio"] == 1.5 and cfg.costs["new"] == 7
    assert cfg.machine == Machine.preset("zen5-cxl").scaled(0.5)  # replaces the file's scale


def test_override_creates_missing_tables(write):
    cfg = load_config(write(MINIMAL), ["engine.name=pghot-v3", "engine.k=1", "seed=2"])
    assert cfg.engine.to_dict() == {"name": "pghot-v3", "k": 1} and cfg.seed == 2


@pytest.mark.parametrize("text, value", [
    ("a=2", 2), ('a="x"', "x"), ("a=true", True), ("a=1.5", 1.5), ("a=exact", "exact"),
    ("a=500ms", "500ms"), ("a = [1, 2]", [1, 2]), ("a={b = 1}", {"b": 1}), ("a=x=y", "x=y"),
    ("a=1 2", "1 2"),
])
def test_override_values_are_toml_or_bare_strings(text, value):
    assert parse_override(text) == (["a"], value)


def test_override_key_paths():
    assert parse_override("detectors[0].interval_ms=1")[0] == ["detectors", 0, "interval_ms"]
    assert parse_override('sysfs."a.b=c"=1')[0] == ["sysfs", "a.b=c"]
    assert parse_override("sysfs.numa/demotion_enabled=1")[0] == ["sysfs", "numa/demotion_enabled"]


@pytest.mark.parametrize("override, fragment", [
    ("seed", "expected key=value"),
    ("=3", "bad key ''"),
    ("workload..mode=2", "bad key 'workload..mode'"),
    ("detectors[x].a=1", "bad key"),
    ("seed=", "missing value after '='"),
    ("seed=1\nname=x", "must be one line"),
    ("detectors[5].interval_ms=1", "index 5 is out of range (detectors has 2 entries; use [2]"),
    ("seed.x=1", "seed is not a table (it is integer 0)"),
    ("workload[0]=1", "workload is not an array"),
])
def test_bad_override_names_it(write, override, fragment):
    path = write(FULL)
    e = config_error(path, [override])
    assert f"--set {override!r}: " in str(e) and fragment in str(e), str(e)


@pytest.mark.parametrize("override, field, fragment", [
    ("seed=-1", "seed", "expected an integer >= 0, got integer -1 (from --set 'seed=-1')"),
    ("access_model=fast", "access_model", "(from --set 'access_model=fast')"),
    ("detectors[0].name=", None, "missing value"),
    ("tick=7ms", "sample", "must be a whole number of ticks (tick = 7ms), got 100ms"),
    ("workload.when=2024-01-01", "workload.when", "(from --set 'workload.when=2024-01-01')"),
    ("seedd=1", "seedd", "unknown key"),
    ("machine.file=x.toml", "machine", "found preset and file"),
])
def test_override_values_are_validated_like_the_file(write, override, field, fragment):
    e = config_error(write(FULL), [override])
    assert e.field == field and fragment in str(e), str(e)


def test_with_overrides(write):
    cfg = load_config(write(FULL))
    other = cfg.with_overrides(["seed=7"])
    assert other.seed == 7 and other.config_hash() != cfg.config_hash()
    assert other.with_overrides(["seed=0"]) == cfg


def test_config_from_dict_does_not_modify_its_input():
    d = {"machine": {"preset": "laptop"}, "workload": {"name": "w", "xs": [1]}}
    snapshot = copy.deepcopy(d)
    cfg = config_from_dict(d, "<test>", overrides=["workload.xs[1]=2"])
    assert d == snapshot and cfg.workload.params["xs"] == [1, 2]
    with pytest.raises(ConfigError) as e:
        config_from_dict({"machine": {"preset": "laptop"}}, "<test>")
    assert str(e.value) == "<test>: workload: missing required key"


# -- results ----------------------------------------------------------------------------------


def _negative_nan():
    with np.errstate(invalid="ignore"):
        return np.float64(0.0) / np.float64(0.0)   # x86 gives the sign-bit NaN


def make_result(cfg, wall=1.25, command=("tierscan", "run", "exp.toml")):
    n = 6
    t = np.arange(n, dtype=np.int64) * cfg.sample_ns
    hit = np.array([0.5, np.nan, _negative_nan(), -0.0, np.inf, 5e-324])
    payload_nan = np.array([0x7FF0000000000001], dtype=np.uint64).view(np.float64)[0]
    f32 = np.array([1.1, np.nan, -np.inf, 3, 4, 0], dtype=np.float32)
    f32.view(np.uint32)[5] = 0xFF800001               # a signalling NaN with a payload
    return RunResult.from_run(
        cfg,
        series={
            "time_ns": t,
            "fast_tier_hit_ratio": hit,
            "promoted": np.array([0, 1, 2, 3, 2**62, -(2**63)], dtype=np.int64),
            "free_pages": np.arange(n * 3, dtype=np.uint64).reshape(n, 3) + (2**64 - 100),
            "f32": f32,
            "flag": np.array([True, False] * 3),
            "i8": np.array([-128, 127, 0, 1, 2, 3], dtype=np.int8),
            "big_endian": np.arange(n, dtype=">i4"),
            "weird_nan": np.array([payload_nan, 1 / 3, 0.1, 1e300, -1e-300, 2.0]),
        },
        final={
            "runtime_ns": np.int64(123_456_789_012),
            "vmstat": {"pgpromote_success": 42, "pgdemote_kswapd": np.uint64(7)},
            "overhead": {"klruscand": {"cpu_ns": 1.5e9, "ptes": 10**20}},
            "ratio": np.float64(1 / 3), "undefined": float("nan"), "neg": -float("inf"),
            "pair": (1, "two"), "none": None, "unicode": "µs ✓", "ok": np.bool_(True),
            "per_node": np.array([[1.0, 2.0], [3.0, np.nan]]),
            "empty": np.zeros((0, 3), dtype=np.float32),
        },
        sim_time_ns=int(t[-1]), wall_time_s=wall, command=list(command))


def assert_bitwise_equal(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_meta_describes_the_run(write):
    cfg = load_config(write(FULL))
    r = make_result(cfg)
    assert r.meta == {
        "tierscan_version": tierscan.__version__, "config": cfg.resolved(),
        "config_hash": cfg.config_hash(), "seed": 0, "access_model": "rate",
        "sim_time_ns": 5 * 10**8, "command": "tierscan run exp.toml",
    }
    assert r.timing == {"wall_time_s": 1.25} and r.wall_time_s == 1.25
    assert r.config() == cfg


def test_save_load_round_trip_is_exact(write, tmp_path):
    cfg = load_config(write(FULL))
    r = make_result(cfg)
    path = tmp_path / "run.json"
    r.save(path)
    back = RunResult.load(path)
    assert back == r
    assert set(back.series) == set(r.series)
    for name in r.series:
        assert_bitwise_equal(back.series[name], r.series[name])
    assert back.series["big_endian"].dtype == np.dtype("int32")    # native order, same values
    assert back.series["big_endian"].tolist() == list(range(6))
    assert back.series["fast_tier_hit_ratio"].view(np.uint64)[2] == 0xFFF8000000000000
    assert back.meta == r.meta and back.timing == r.timing
    assert_bitwise_equal(back.final["per_node"], r.final["per_node"])
    assert back.final["empty"].shape == (0, 3) and back.final["empty"].dtype == np.float32
    plain = {k: v for k, v in back.final.items() if k not in ("per_node", "empty", "undefined")}
    assert plain == {
        "runtime_ns": 123_456_789_012, "vmstat": {"pgpromote_success": 42, "pgdemote_kswapd": 7},
        "overhead": {"klruscand": {"cpu_ns": 1.5e9, "ptes": 10**20}}, "ratio": 1 / 3,
        "neg": -float("inf"), "pair": [1, "two"], "none": None, "unicode": "µs ✓", "ok": True,
    }
    assert np.isnan(back.final["undefined"])
    assert type(back.final["runtime_ns"]) is int and type(back.final["ok"]) is bool
    # Writing what was read gives the same bytes.
    assert back.to_json() == r.to_json() == path.read_text(encoding="utf-8")


def test_file_format_is_plain_sorted_json(write, tmp_path):
    cfg = load_config(write(FULL))
    path = tmp_path / "run.json"
    make_result(cfg).save(path)
    text = path.read_text(encoding="utf-8")
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert list(doc) == sorted(doc) and list(doc["meta"]) == sorted(doc["meta"])
    assert doc["format"] == "tierscan-result" and doc["format_version"] == 1
    assert doc["series"]["free_pages"]["dtype"] == "uint64"
    assert doc["series"]["free_pages"]["shape"] == [6, 3]
    assert len(doc["series"]["free_pages"]["data"]) == 18
    assert doc["series"]["fast_tier_hit_ratio"]["data"][:5] == [
        0.5, "nan", "nan:0xfff8000000000000", -0.0, "inf"]
    assert doc["final"]["undefined"] == {"__float__": "nan"}
    assert doc["timing"] == {"wall_time_s": 1.25}
    assert text.endswith("}\n")


def test_same_seed_and_config_give_identical_files_without_timing(write, tmp_path):
    cfg = load_config(write(FULL))
    a, b = make_result(cfg, wall=1.0), make_result(cfg, wall=9.0)
    a.save(tmp_path / "a.json", include_timing=False)
    b.save(tmp_path / "b.json", include_timing=False)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    a.save(tmp_path / "a2.json")
    b.save(tmp_path / "b2.json")
    assert (tmp_path / "a2.json").read_bytes() != (tmp_path / "b2.json").read_bytes()
    back = RunResult.load(tmp_path / "a.json")
    assert back.timing is None and back.wall_time_s is None
    assert "timing" not in json.loads(a.to_json(include_timing=False))


def test_save_to_an_open_file(write, tmp_path):
    cfg = load_config(write(MINIMAL))
    r = RunResult.from_run(cfg, series={}, final={"x": 1}, sim_time_ns=0)
    with open(tmp_path / "r.json", "w", encoding="utf-8") as f:
        r.save(f)
    assert (tmp_path / "r.json").read_text(encoding="utf-8") == r.to_json()
    assert RunResult.load(tmp_path / "r.json") == r


@pytest.mark.parametrize("cut", [0, 1, 100, 1000, -2])
def test_truncated_file_gives_the_offset(write, tmp_path, cut):
    cfg = load_config(write(FULL))
    text = make_result(cfg).to_json()
    path = tmp_path / "run.json"
    path.write_text(text[:cut], encoding="utf-8")
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text[:cut])
    with pytest.raises(ConfigError) as e:
        RunResult.load(path)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: corrupt or truncated result file: ")
    assert msg.endswith(f"(char offset {expected.value.pos})")


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d.pop("format"), "format: not a tierscan result file"),
    (lambda d: d.update(extra=1), "extra: unknown key"),
    (lambda d: d.update(format_version=2), "format_version: written by a newer tierscan"),
    (lambda d: d["meta"].pop("seed"), "meta.seed: missing required key"),
    (lambda d: d["meta"].update(seed="0"), "meta.seed: expected an integer"),
    (lambda d: d["meta"]["config"].update(seed=1), "meta.config_hash: '"),
    (lambda d: d["series"]["promoted"]["data"].pop(), "series.promoted.data: expected 6 values"),
    (lambda d: d["series"]["promoted"].update(dtype="object"), "series.promoted.dtype: expected"),
    (lambda d: d["series"]["promoted"].update(shape=[6, -1]), "series.promoted.shape"),
    (lambda d: d["series"]["promoted"]["data"].__setitem__(0, 1.5),
     "series.promoted.data: expected integers"),
    (lambda d: d["series"]["promoted"]["data"].__setitem__(0, 2**63),
     "series.promoted.data: a value is out of range for dtype int64"),
    (lambda d: d["series"]["f32"]["data"].__setitem__(0, "NaN!"), "series.f32.data: expected"),
    (lambda d: d["series"]["flag"]["data"].__setitem__(0, 1),
     "series.flag.data: expected booleans"),
    (lambda d: d["series"]["flag"].update(shape=[3, 2], data=[True] * 6),
     "series.flag: expected 6 samples along the first axis"),
    (lambda d: d["series"].pop("time_ns"), "series.time_ns: missing"),
    (lambda d: d["final"].update(x={"__float__": "zero"}), "final.x: expected 'nan'"),
    (lambda d: d["final"].update(x={"__float__": "nan", "y": 1}), "final.x: a table with"),
])
def test_damaged_file_names_file_and_field(write, tmp_path, edit, fragment):
    cfg = load_config(write(FULL))
    doc = json.loads(make_result(cfg).to_json())
    edit(doc)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        RunResult.load(path)
    assert str(e.value).startswith(f"{path}: ") and fragment in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_not_utf8_or_nonstandard_json(tmp_path):
    p = tmp_path / "bad.json"
    p.write_bytes(b'{"format": "\xff"}')
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(bad byte at offset 12\)"):
        RunResult.load(p)
    p.write_text('{"format": NaN}', encoding="utf-8")
    with pytest.raises(ConfigError, match="non-standard JSON constant NaN"):
        RunResult.load(p)
    with pytest.raises(ConfigError, match="no such file"):
        RunResult.load(tmp_path / "absent.json")


def test_save_is_atomic(write, tmp_path, monkeypatch):
    cfg = load_config(write(FULL))
    path = tmp_path / "out" / "run.json"
    path.parent.mkdir()
    make_result(cfg, wall=1.0).save(path)
    before = path.read_bytes()
    real_dump = json.dump

    def dump_then_fail(obj, f, **kw):   # write part of the document, then die
        f.write(json.dumps(obj, **kw)[:500])
        raise RuntimeError("simulated crash mid-write")

    monkeypatch.setattr(json, "dump", dump_then_fail)
    newer = make_result(cfg.with_overrides(["seed=9"]), wall=2.0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        newer.save(path)
    assert path.read_bytes() == before                 # the previous file is intact
    assert os.listdir(path.parent) == ["run.json"]     # and no temporary file is left
    assert RunResult.load(path).seed == 0

    monkeypatch.setattr(json, "dump", real_dump)

    def replace_fails(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outpath.os, "replace", replace_fails)
    with pytest.raises(ConfigError, match="cannot write result file: No space left on device"):
        newer.save(path)
    assert path.read_bytes() == before and os.listdir(path.parent) == ["run.json"]

    monkeypatch.undo()
    newer.save(path)                                   # and a successful save replaces it
    assert RunResult.load(path) == newer


def test_save_into_an_impossible_directory_is_a_config_error(write, tmp_path):
    r = RunResult.from_run(load_config(write(MINIMAL)), series={}, final={}, sim_time_ns=0)
    (tmp_path / "no").write_text("a file, not a directory")
    with pytest.raises(ConfigError) as e:
        r.save(tmp_path / "no" / "such" / "run.json")
    assert str(e.value).startswith(f"{tmp_path / 'no' / 'such' / 'run.json'}: cannot write")
    r.save(tmp_path / "new" / "dir" / "run.json")          # missing parents are created
    assert RunResult.load(tmp_path / "new" / "dir" / "run.json") == r


@pytest.mark.parametrize("series, final, error, fragment", [
    ({"x": np.zeros(3)}, {}, ValueError, "series.time_ns: missing"),
    ({"time_ns": np.zeros(3)}, {}, ValueError, "series.time_ns: expected a 1-D int64 array"),
    ({"time_ns": np.zeros(3, np.int64), "x": np.zeros(4)}, {}, ValueError,
     "series.x: expected 3 samples"),
    ({"time_ns": np.zeros(3, np.int64), "x": np.array(["a", "b", "c"])}, {}, TypeError,
     "series.x: arrays must be bool, integer or float"),
    ({}, {"vmstat": {0: 1}}, TypeError, "final.vmstat: keys must be strings"),
    ({}, {"x": {"__ndarray__": 1}}, ValueError, "reserved"),
    ({}, {"x": object()}, TypeError, "final.x: cannot store object"),
    ({}, {"x": np.zeros(2, dtype=complex)}, TypeError, "final.x: arrays must be"),
])
def test_invalid_results_are_rejected_when_built(write, series, final, error, fragment):
    cfg = load_config(write(MINIMAL))
    with pytest.raises(error, match=None) as e:
        RunResult.from_run(cfg, series=series, final=final, sim_time_ns=0)
    assert fragment in str(e.value)


def test_machine_memory_and_cpu_survive_resolve_and_result_files(tmp_path):
    """The machine's memory devices and CPU caches are part of the stamped config (docs/machine.md)."""
    from test_machine import memory_dict
    machine = memory_dict()
    cfg = config_from_dict({"machine": machine, "workload": {"name": "uniform"}})
    assert cfg.machine.nodes[0].memory.curves[0].read_ratio == 0.5 and cfg.machine.cpu is not None
    assert config_from_dict(cfg.resolved()) == cfg
    plain = config_from_dict({"machine": Machine.preset("laptop").to_dict(),
                              "workload": {"name": "uniform"}})
    assert plain.config_hash() != cfg.config_hash()
    path = tmp_path / "run.json"
    make_result(cfg).save(path)
    assert RunResult.load(path).config() == cfg


def test_a_run_whose_slow_node_empties_saves_a_result_that_loads(tmp_path):
    """Mode 1 klruscand at 1/50 promotes every page off the CXL node; the rate model's node
    masses are float sums kept by the remap hooks, and the emptied node's mass ends at
    -6.9e-9. The served series took that share as it was (a negative count), and loading the
    saved result refused it ("expected values >= 0")."""
    from tierscan.experiments.pghot_v3 import config
    from tierscan.sim.run import run_experiment

    res = run_experiment(config_from_dict(config(1, "klruscand", scale=0.02)))
    served = np.asarray(res.series["served"])
    assert served[-1, 2] == 0 and (served >= 0).all()      # node 2, the CXL node, emptied
    res.save(tmp_path / "r.json")
    assert np.array_equal(np.asarray(RunResult.load(tmp_path / "r.json").series["served"]),
                          served)
