"""The bad-input catalogue (issue 14): every case is refused with exit 2 (bad input) or 1 (a run
that fails), one line on standard error naming the file and the field (or option), no
traceback, and no output file created, changed or replaced.

Each row: (id, argv, exit code, substrings the message must contain). ``{d}`` is the scratch
directory, which holds good inputs (exp.toml, good.json, sweep.toml, scenario.toml,
machine.toml) and the bad ones written by ``_inputs``; its whole content is compared before and
after each case.
"""

import hashlib
import json
import os
import shutil

import pytest

from tierscan.cli.main import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EXP = """\
name = "cat"
duration = "30ms"
[machine]
preset = "laptop"
[workload]
name = "uniform"
size = "8MiB"
"""


def _inputs(d: str, good_json: str) -> None:
    def w(name, text):
        with open(os.path.join(d, name), "w", encoding="utf-8") as f:
            f.write(text)

    w("exp.toml", EXP)
    w("nodur.toml", EXP.replace('duration = "30ms"\n', ""))
    w("badtoml.toml", "name = \n")
    w("unknownkey.toml", EXP + "colour = 1\n")
    w("badmachine.toml", EXP.replace('preset = "laptop"', 'preset = "cray"'))
    w("badunit.toml", EXP.replace('"8MiB"', '"8 GB"'))
    w("sweep.toml", 'base = "exp.toml"\n[grid]\nseed = [0]\n')
    w("sweep-nobase.toml", "[grid]\nseed = [0]\n")
    w("sweep-badkey.toml", 'base = "exp.toml"\n[grid]\n"workload..x" = [1]\n')
    w("sweep-empty.toml", 'base = "exp.toml"\n[grid]\nseed = []\n')
    w("sweep-missing.toml", 'base = "nothere.toml"\n[grid]\nseed = [0]\n')
    w("sweep-badpoint.toml", 'base = "exp.toml"\n[grid]\n"workload.size" = ["1PiB"]\n')
    w("scenario-bad.toml", '[[process]]\nname = "a"\n[[process.mmap]]\nsize = "8 GB"\n')
    w("machine-bad.toml", 'name = "m"\n[[nodes]]\nid = 0\n')
    shutil.copy(good_json, os.path.join(d, "good.json"))
    doc = json.load(open(good_json, encoding="utf-8"))

    def edited(name, edit):
        x = json.loads(json.dumps(doc))
        edit(x)
        w(name, json.dumps(x))

    edited("lots.json", lambda x: x["final"]["vmstat"].update(pgpromote_success="lots"))
    edited("promostr.json", lambda x: x["final"].update(promotion="fast"))
    edited("negative.json", lambda x: x["final"]["vmstat"].update(pgfault=-1))
    edited("hash.json", lambda x: x["meta"].update(config_hash="0" * 16))
    edited("version.json", lambda x: x.update(format_version=99))
    edited("nodes.json", lambda x: x["final"].update(vmstat_node=[{}]))
    w("truncated.json", open(good_json, encoding="utf-8").read()[:300])
    w("foreign.json", '{"hello": 1}\n')
    w("nan.json", '{"format": NaN}\n')
    w("afile", "x")


# (id, argv, exit code, substrings of the message)
CASES = [
    # run: the experiment file and --set
    ("run-missing-file", ["run", "{d}/none.toml"], 2, ["none.toml", "no such file"]),
    ("run-bad-toml", ["run", "{d}/badtoml.toml"], 2, ["badtoml.toml", "invalid TOML"]),
    ("run-unknown-key", ["run", "{d}/unknownkey.toml"], 2, ["unknownkey.toml", "colour"]),
    ("run-bad-preset", ["run", "{d}/badmachine.toml"], 2, ["badmachine.toml", "machine.preset"]),
    ("run-bad-unit", ["run", "{d}/badunit.toml"], 2, ["badunit.toml", "workload.size"]),
    ("run-no-duration", ["run", "{d}/nodur.toml"], 2, ["nodur.toml", "duration"]),
    ("run-tick-too-long", ["run", "{d}/exp.toml", "--set", "tick=1s", "--set", "sample=1s"], 2,
     ["exp.toml", "tick", "longer than the duration"]),
    ("run-node-5", ["run", "{d}/exp.toml", "--set", "workload.node=5"], 2,
     ["exp.toml", "workload.node", "no node 5"]),
    ("run-cpu-node-1", ["run", "{d}/exp.toml", "--set", "workload.cpu_node=1"], 2,
     ["exp.toml", "workload.cpu_node", "no CPUs"]),
    ("run-1-pib", ["run", "{d}/exp.toml", "--set", "workload.size=1PiB"], 2,
     ["exp.toml", "workload.size", "user address space"]),
    ("run-too-big", ["run", "{d}/exp.toml", "--set", "workload.size=64GiB"], 2,
     ["exp.toml", "workload.size", "does not fit"]),
    ("run-threads", ["run", "{d}/exp.toml", "--set", "workload.threads=100000000"], 2,
     ["exp.toml", "workload.threads", "PID_MAX_LIMIT"]),
    ("run-threads-0", ["run", "{d}/exp.toml", "--set", "workload.threads=0"], 2,
     ["exp.toml", "workload.threads"]),
    ("run-unterminated", ["run", "{d}/exp.toml", "--set", 'name="abc'], 2,
     ["exp.toml", "name=\"abc", "TOML string"]),
    ("run-unterminated-array", ["run", "{d}/exp.toml", "--set", "seed=[1, 2"], 2,
     ["exp.toml", "TOML array"]),
    ("run-set-bad-key", ["run", "{d}/exp.toml", "--set", "workload..size=1"], 2,
     ["exp.toml", "bad key"]),
    ("run-set-no-equals", ["run", "{d}/exp.toml", "--set", "seed"], 2,
     ["exp.toml", "expected key=value"]),
    ("run-set-seed", ["run", "{d}/exp.toml", "--set", "seed=-1"], 2, ["exp.toml", "seed"]),
    ("run-set-access-model", ["run", "{d}/exp.toml", "--set", "access_model=trace"], 2,
     ["exp.toml", "access_model"]),
    ("run-set-detector", ["run", "{d}/exp.toml", "--set", "detectors[0].name=magic"], 2,
     ["exp.toml", "detectors[0].name", "unknown detector"]),
    ("run-set-engine", ["run", "{d}/exp.toml", "--set", "engine.name=magic"], 2,
     ["exp.toml", "engine.name"]),
    ("run-set-workload", ["run", "{d}/exp.toml", "--set", "workload.name=magic"], 2,
     ["exp.toml", "workload"]),
    ("run-set-index", ["run", "{d}/exp.toml", "--set", "detectors[3].interval_ms=1"], 2,
     ["exp.toml", "out of range"]),
    ("run-json-device", ["run", "{d}/exp.toml", "--json", "/dev/full"], 2,
     ["/dev/full", "character device"]),
    ("run-json-null", ["run", "{d}/exp.toml", "--json", "/dev/null"], 2,
     ["/dev/null", "character device"]),
    ("run-json-dir", ["run", "{d}/exp.toml", "--json", "{d}"], 2, ["is a directory"]),
    ("run-json-under-file", ["run", "{d}/exp.toml", "--json", "{d}/afile/x.json"], 2,
     ["afile", "not a directory"]),
    ("run-json-proc", ["run", "{d}/exp.toml", "--json", "/proc/x.json"], 2, ["/proc"]),
    ("run-plot-file", ["run", "{d}/exp.toml", "--plot", "{d}/afile"], 2,
     ["afile", "not a directory"]),
    ("run-unknown-option", ["run", "{d}/exp.toml", "--bogus"], 2,
     ["run", "--bogus", "tierscan run --help"]),
    ("run-out-of-memory", ["run", "{d}/exp.toml", "--set", "workload.size=3GiB",
                           "--set", "workload.node=1"], 1, ["out of memory"]),
    # compare
    ("compare-no-duration", ["compare", "--workload", "zipf", "--detectors", "numab2,none"], 2,
     ["compare numab2", "duration"]),
    ("compare-unknown-source", ["compare", "--workload", "zipf", "--detectors", "magic",
                                "--duration", "1s"], 2, ["compare magic", "unknown detector"]),
    ("compare-empty", ["compare", "--workload", "zipf", "--detectors", ",",
                       "--duration", "1s"], 2, ["--detectors"]),
    ("compare-bad-set", ["compare", "--workload", "zipf", "--detectors", "none",
                         "--duration", "1s", "--set", "workload.alphx=1"], 2,
     ["compare none", "workload.alphx"]),
    ("compare-bad-machine", ["compare", "--workload", "zipf", "--detectors", "none",
                             "--duration", "1s", "--machine", "cray"], 2,
     ["compare none", "machine.preset"]),
    ("compare-bad-duration", ["compare", "--workload", "zipf", "--detectors", "none",
                              "--duration", "soon"], 2, ["compare none", "duration"]),
    ("compare-json-dir-device", ["compare", "--workload", "zipf", "--detectors", "none",
                                 "--duration", "10ms", "--json-dir", "/dev/null"], 2,
     ["/dev/null", "not a directory"]),
    ("compare-plot-proc", ["compare", "--workload", "zipf", "--detectors", "none",
                           "--duration", "10ms", "--plot", "/proc/plots"], 2, ["/proc"]),
    ("compare-unknown-option", ["compare", "--workload", "zipf", "--detectors", "none",
                                "--bogus"], 2, ["tierscan compare --help"]),
    # reproduce
    ("reproduce-scale", ["reproduce", "pghot-v3", "--scale", "2"], 2, ["--scale", "SCALE"]),
    ("reproduce-scale-nan", ["reproduce", "pghot-v3", "--scale", "nan"], 2, ["--scale"]),
    ("reproduce-runs", ["reproduce", "pghot-v3", "--runs", "0"], 2, ["--runs", ">= 1"]),
    ("reproduce-mode", ["reproduce", "pghot-v3", "--mode", "4"], 2, ["--mode"]),
    ("reproduce-json-device", ["reproduce", "pghot-v3", "--mode", "1", "--json", "/dev/full"],
     2, ["/dev/full", "character device"]),
    ("reproduce-json-dir-file", ["reproduce", "pghot-v3", "--mode", "1",
                                 "--json-dir", "{d}/afile"], 2, ["afile", "not a directory"]),
    ("reproduce-experiment", ["reproduce", "pghot-v9"], 2, ["experiment"]),
    # sweep
    ("sweep-missing", ["sweep", "{d}/none.toml"], 2, ["none.toml"]),
    ("sweep-no-base", ["sweep", "{d}/sweep-nobase.toml"], 2, ["sweep-nobase.toml", "base"]),
    ("sweep-bad-key", ["sweep", "{d}/sweep-badkey.toml"], 2, ["sweep-badkey.toml", "grid"]),
    ("sweep-empty-list", ["sweep", "{d}/sweep-empty.toml"], 2, ["sweep-empty.toml", "grid"]),
    ("sweep-base-missing", ["sweep", "{d}/sweep-missing.toml"], 2,
     ["sweep-missing.toml", "base"]),
    ("sweep-bad-point", ["sweep", "{d}/sweep-badpoint.toml"], 2,
     ["sweep-badpoint.toml", "grid point 1", "workload.size"]),
    ("sweep-jobs-0", ["sweep", "{d}/sweep.toml", "--jobs", "0"], 2, ["--jobs"]),
    ("sweep-out-file", ["sweep", "{d}/sweep.toml", "--out", "{d}/afile"], 2,
     ["afile", "not a directory"]),
    # report
    ("report-lots", ["report", "{d}/lots.json"], 2,
     ["lots.json", "final.vmstat.pgpromote_success"]),
    ("report-promotion-string", ["report", "{d}/promostr.json"], 2,
     ["promostr.json", "final.promotion"]),
    ("report-negative", ["report", "{d}/negative.json"], 2, ["negative.json", "final.vmstat.pgfault"]),
    ("report-hash", ["report", "{d}/hash.json"], 2, ["hash.json", "meta.config_hash"]),
    ("report-version", ["report", "{d}/version.json"], 2, ["version.json", "format_version"]),
    ("report-nodes", ["report", "{d}/nodes.json"], 2, ["nodes.json", "final.vmstat_node"]),
    ("report-truncated", ["report", "{d}/truncated.json"], 2, ["truncated.json", "char offset"]),
    ("report-foreign", ["report", "{d}/foreign.json"], 2, ["foreign.json", "format"]),
    ("report-nan", ["report", "{d}/nan.json"], 2, ["nan.json", "NaN"]),
    ("report-missing", ["report", "{d}/none.json"], 2, ["none.json"]),
    ("report-csv-file", ["report", "{d}/good.json", "--csv", "{d}/afile"], 2,
     ["afile", "not a directory"]),
    ("report-plot-proc", ["report", "{d}/good.json", "--plot", "/proc/p"], 2, ["/proc"]),
    ("report-one-bad-of-two", ["report", "{d}/good.json", "{d}/lots.json", "--plot", "{d}/p"],
     2, ["lots.json"]),
    # vmstat
    ("vmstat-lots", ["vmstat", "{d}/lots.json"], 2, ["lots.json", "final.vmstat"]),
    ("vmstat-node-7", ["vmstat", "{d}/good.json", "--node", "7"], 2, ["good.json", "--node"]),
    ("vmstat-node-neg", ["vmstat", "{d}/good.json", "--node", "-1"], 2, ["--node"]),
    ("vmstat-truncated", ["vmstat", "{d}/truncated.json"], 2, ["truncated.json"]),
    # lru-gen
    ("lru-gen-syntax", ["lru-gen", "-w", "junk"], 2, ["-w 'junk'", "EINVAL"]),
    ("lru-gen-gen", ["lru-gen", "-w", "+ 1 1 99"], 2, ["-w '+ 1 1 99'", "EINVAL"]),
    ("lru-gen-memcg", ["lru-gen", "-w", "+ 9 1 3"], 2, ["EINVAL"]),
    ("lru-gen-scenario", ["lru-gen", "--scenario", "{d}/scenario-bad.toml"], 2,
     ["scenario-bad.toml", "process[0].mmap[0].size"]),
    ("lru-gen-scenario-missing", ["lru-gen", "--scenario", "{d}/none.toml"], 2, ["none.toml"]),
    # machine
    ("machine-preset", ["machine", "show", "--preset", "cray"], 2, ["cray"]),
    ("machine-scale", ["machine", "show", "--scale", "2"], 2, ["--scale"]),
    ("machine-file", ["machine", "show", "--file", "{d}/machine-bad.toml"], 2,
     ["machine-bad.toml", "latency"]),
    ("machine-file-missing", ["machine", "show", "--file", "{d}/none.toml"], 2, ["none.toml"]),
    ("machine-unknown-option", ["machine", "show", "--bogus"], 2,
     ["tierscan machine show --help"]),
]


def _snapshot(d: str) -> dict:
    out = {}
    for root, dirs, files in os.walk(d):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            digest = hashlib.sha256(open(p, "rb").read()).hexdigest() \
                if os.path.isfile(p) and not os.path.islink(p) else None
            out[os.path.relpath(p, d)] = (st.st_mode, st.st_mtime_ns, digest)
    return out


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    d = tmp_path_factory.mktemp("catalogue")
    good = d / "made.json"
    assert main(["run", "--quiet", str(_write(d / "seed.toml", EXP)), "--json", str(good)]) == 0
    _inputs(str(d), str(good))
    os.unlink(good)
    os.unlink(d / "seed.toml")
    return str(d)


def _write(p, text):
    p.write_text(text)
    return p


def test_the_catalogue_is_big_enough():
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)
    commands = {c[1][0] for c in CASES}
    assert {"run", "compare", "reproduce", "sweep", "report", "vmstat", "lru-gen",
            "machine"} <= commands


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, scratch, capsys):
    _, argv, code, needles = case
    argv = [a.format(d=scratch) for a in argv]
    before = _snapshot(scratch)
    assert main(argv) == code
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("tierscan: error: "), err
    assert "Traceback" not in err and "internal error" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert "<compare>" not in err and "<dict>" not in err
    assert _snapshot(scratch) == before                  # nothing created, changed, replaced
    for dev in ("/dev/null", "/dev/full"):
        assert os.path.exists(dev) and not os.path.isfile(dev)


# -- the Python API --------------------------------------------------------------------------


def _api_cases():
    from tierscan import Kernel, Machine

    def kernel():
        return Kernel(Machine.preset("laptop"), seed=0)

    def after_exit():
        mm = kernel().spawn("p")
        mm.exit()
        mm.mmap(4096)

    return [
        ("kernel-seed-str", lambda: Kernel(Machine.preset("laptop"), seed="x"), "seed"),
        ("kernel-seed-neg", lambda: Kernel(Machine.preset("laptop"), seed=-1), "seed"),
        ("kernel-machine", lambda: Kernel("laptop"), "machine"),
        ("mmap-float", lambda: kernel().spawn("p").mmap(4096.5), "mmap.length"),
        ("mmap-bool", lambda: kernel().spawn("p").mmap(True), "mmap.length"),
        ("mmap-zero", lambda: kernel().spawn("p").mmap(0), "mmap.length"),
        ("mmap-kind", lambda: kernel().spawn("p").mmap(4096, kind="heap"), "mmap.kind"),
        ("mmap-after-exit", after_exit, "mmap"),
        ("munmap-unaligned", lambda: kernel().spawn("p").munmap(4097, 4096), "munmap.addr"),
        ("preset", lambda: Machine.preset("cray"), "cray"),
    ]


@pytest.mark.parametrize("name", [c[0] for c in _api_cases()])
def test_python_api_bad_input(name):
    from tierscan.errors import ConfigError

    _, call, field = next(c for c in _api_cases() if c[0] == name)
    with pytest.raises(ConfigError) as e:
        call()
    assert field in str(e.value) and "\n" not in str(e.value)


def test_munmap_of_nothing_mapped_returns_like_linux():
    from tierscan import Kernel, Machine

    mm = Kernel(Machine.preset("laptop"), seed=0).spawn("p")
    assert mm.munmap(0x1000, 4096) is None                # below mmap_base: nothing, no error
    vma = mm.mmap(8192)
    mm.munmap(vma.start - 10 * 4096, 12 * 4096)           # a range that starts below the VMA
    assert mm.vmas == []
