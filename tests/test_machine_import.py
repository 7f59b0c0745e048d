"""`tierscan machine import`, its parsers (MLC, Mess), curve cleaning, TOML output, `machine
list`, `machine show` with curves and --plot, and the presets' memory data (docs/machine.md)."""

import os
from pathlib import Path

import numpy as np
import pytest

from tierscan.cli.main import main
from tierscan.errors import ConfigError
from tierscan.machine import Machine, preset_names
from tierscan.machine_import import (MLC_MIX, clean_curve, machine_to_toml, parse_mess,
                                     parse_mlc, read_ratio_of_mix)

DATA = Path(__file__).parent / "data"
MLC = DATA / "mlc_loaded_latency.txt"
MLC_W5 = DATA / "mlc_w5.txt"
MESS = DATA / "mess"


def _one_line(err: str):
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# -- parsers -----------------------------------------------------------------------------------


def test_parse_mlc_reads_the_table_and_the_traffic_line():
    raw = parse_mlc(MLC)
    assert raw.read_ratio == 1.0  # "Using Read-only traffic type"
    assert len(raw.bandwidth_gbps) == 13
    assert raw.bandwidth_gbps[0] == pytest.approx(101.5002)  # MB/sec is 1e6 B/s -> GB/s
    assert raw.latency_ns[-1] == 92.31


def test_parse_mlc_needs_a_ratio_when_the_header_has_none():
    with pytest.raises(ConfigError, match="--read-ratio R or --mix W") as e:
        parse_mlc(MLC_W5)
    assert e.value.where == str(MLC_W5)
    assert parse_mlc(MLC_W5, read_ratio=0.5).read_ratio == 0.5


@pytest.mark.parametrize("w, r", [(2, 2 / 3), (3, 0.75), (4, 0.6), (5, 0.5), (12, 0.8), (1, 1.0)])
def test_mlc_mix_mapping(w, r):
    assert read_ratio_of_mix(w) == pytest.approx(r)


def test_unknown_mix_is_an_error():
    with pytest.raises(ConfigError, match="unknown MLC traffic mix -W7"):
        read_ratio_of_mix(7)
    assert 7 not in MLC_MIX


def test_parse_mlc_header_mix(tmp_path):
    f = tmp_path / "w2.txt"
    f.write_text(MLC.read_text().replace("Using Read-only traffic type",
                                         "Using 2:1 reads-writes traffic"))
    assert parse_mlc(f).read_ratio == pytest.approx(2 / 3)


@pytest.mark.parametrize("edit, line, words", [
    (lambda t: t.replace(" 00100\t121.87", " 00100\t12x.87"), 19, "expected 'delay latency_ns"),
    (lambda t: t.replace(" 00100\t121.87", " 00100\t-121.87"), 19, "latency > 0"),
    (lambda t: t.replace("Delay\t(ns)\tMB/sec\n", "Latency\n"), 12, "expected the 'Delay"),
])
def test_bad_mlc_names_file_and_line(tmp_path, edit, line, words):
    f = tmp_path / "mlc.txt"
    f.write_text(edit(MLC.read_text()))
    with pytest.raises(ConfigError, match=words) as e:
        parse_mlc(f)
    assert e.value.where == f"{f}:{line}"
    assert "\n" not in str(e.value)


def test_mlc_without_table_or_with_two(tmp_path):
    f = tmp_path / "idle.txt"
    f.write_text("Intel(R) Memory Latency Checker - v3.11\nMeasuring idle latencies (in ns)...\n")
    with pytest.raises(ConfigError, match="no loaded-latency table"):
        parse_mlc(f)
    f.write_text(MLC.read_text() * 2)
    with pytest.raises(ConfigError, match="more than one loaded-latency table"):
        parse_mlc(f)


def test_parse_mess_ratio_from_name_and_units():
    raw = parse_mess(MESS / "bwlat_50.txt")
    assert raw.read_ratio == 0.5 and raw.bandwidth_gbps[0] == pytest.approx(44.8002)
    cyc = parse_mess(MESS / "bwlat_50.txt", latency_unit="cycles", cpu_ghz=2.0)
    assert cyc.latency_ns[0] == pytest.approx(230.1 / 2)


@pytest.mark.parametrize("name, text, where_line, words", [
    ("bwlat_50.txt", "1.0 2.0\n3.0\n", 2, "expected two numbers"),
    ("bwlat_50.txt", "1.0 2.0\n3.0 x\n", 2, "expected two numbers"),
    ("bwlat_50.txt", "1.0 2.0\n3.0 0\n", 2, "latency must be > 0"),
    ("bwlat_50.txt", "\n1.0 2.0\n3.0 nan\n", 3, "expected two numbers"),
    ("bwlat_0.txt", "1 2\n3 4\n", None, "outside 1..100"),
    ("bwlat_150.txt", "1 2\n3 4\n", None, "outside 1..100"),
    ("curve.txt", "1 2\n3 4\n", None, "bwlat_<N>.txt"),
    ("bwlat_50.txt", "1 2\n", None, "at least 2 points"),
])
def test_bad_mess_names_file_and_line(tmp_path, name, text, where_line, words):
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ConfigError, match=words) as e:
        parse_mess(f)
    assert e.value.where == (str(f) if where_line is None else f"{f}:{where_line}")


def test_mess_cycles_need_a_clock():
    with pytest.raises(ConfigError, match="CPU frequency"):
        parse_mess(MESS / "bwlat_50.txt", latency_unit="cycles")


# -- cleaning ----------------------------------------------------------------------------------


def test_clean_curve_drops_noise_and_the_wave_past_the_maximum():
    # idle noise (negative bandwidth), a dip in latency, and a saturated tail whose bandwidth
    # falls while latency rises (as Mess curves have)
    bw = [-0.5, 1.0, 10.0, 12.0, 20.0, 30.0, 29.0, 28.0]
    lat = [99.0, 100.0, 105.0, 103.0, 120.0, 200.0, 260.0, 300.0]
    b, t, note = clean_curve(bw, lat)
    assert b.tolist() == [1.0, 12.0, 20.0, 30.0]
    assert t.tolist() == [100.0, 103.0, 120.0, 200.0]
    assert "1 with negative bandwidth dropped" in note and "3 past" in note
    assert np.all(np.diff(b) > 0) and np.all(np.diff(t) >= 0)


def test_clean_curve_thins_but_keeps_the_ends_and_the_knee():
    bw = np.linspace(0, 100, 200)
    lat = 100 + 1e4 / np.maximum(105 - bw, 1e-3) - 1e4 / 105  # a knee near 100 GB/s
    b, t, _ = clean_curve(bw, lat, max_points=10)
    assert len(b) <= 10 and b[0] == 0 and b[-1] == 100
    # the kept polyline stays within a few percent of the measured curve everywhere
    assert np.max(np.abs(np.interp(bw, b, t) - lat) / lat) < 0.05


def test_cleaned_real_curves_validate():
    raw = parse_mess(MESS / "bwlat_100.txt")
    b, t, _ = clean_curve(raw.bandwidth_gbps, raw.latency_ns)
    d = Machine.preset("laptop").to_dict()
    d["nodes"][1]["memory"] = {"type": "cxl", "channels": 1, "mts": 0, "link_width": 16,
                               "source": "t", "curve": [{"read_ratio": 1.0, "bandwidth_gbps":
                                                         b.tolist(), "latency_ns": t.tolist(),
                                                         "source": "t"}]}
    Machine.from_dict(d)


# -- TOML out ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", preset_names())
def test_machine_to_toml_round_trips_every_preset(name, tmp_path):
    m = Machine.preset(name)
    f = tmp_path / "m.toml"
    f.write_text(machine_to_toml(m, "a header\nline two"))
    assert Machine.from_toml(f) == m
    assert f.read_text().startswith("# a header\n# line two\n")


def test_machine_to_toml_keeps_scale_and_odd_strings(tmp_path):
    d = Machine.preset("laptop-loaded").to_dict()
    d["name"] = 'quote " back\\slash ünï'
    m = Machine.from_dict(d).scaled(0.5)
    f = tmp_path / "m.toml"
    f.write_text(machine_to_toml(m), encoding="utf-8")
    assert Machine.from_toml(f) == m


# -- the CLI -----------------------------------------------------------------------------------


def test_import_mlc_then_merge_another_mix(tmp_path, capsys):
    out = tmp_path / "box.toml"
    assert main(["machine", "import", "--preset", "laptop", "--node", "0", "--type", "ddr5",
                 "--channels", "2", "--mts", "4800", "--bandwidth-scale", "0.5",
                 "-o", str(out), str(MLC)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    m = Machine.from_toml(out)
    dev = m.nodes[0].memory
    assert (dev.type, dev.channels, dev.peak_gbps) == ("ddr5", 2, 76.8)
    assert [c.read_ratio for c in dev.curves] == [1.0]
    assert dev.curves[0].bandwidth_gbps[-1] == pytest.approx(101.5002 / 2, abs=1e-3)
    assert m.nodes[1] == Machine.preset("laptop").nodes[1]  # other nodes untouched
    # a second run with another mix is added beside the first
    assert main(["machine", "import", "--file", str(out), "--node", "0", "--mix", "5",
                 "--bandwidth-scale", "0.5", "-o", str(out), str(MLC_W5)]) == 0
    assert [c.read_ratio for c in Machine.from_toml(out).nodes[0].memory.curves] == [0.5, 1.0]
    # --replace keeps only the new one
    assert main(["machine", "import", "--file", str(out), "--node", "0", "--mix", "5",
                 "--bandwidth-scale", "0.5", "--replace", "-o", str(out), str(MLC_W5)]) == 0
    assert [c.read_ratio for c in Machine.from_toml(out).nodes[0].memory.curves] == [0.5]


def test_import_mess_directory_into_a_cxl_node(tmp_path, capsys):
    out = tmp_path / "box.toml"
    assert main(["machine", "import", "--preset", "laptop", "--node", "1", "--type", "cxl",
                 "--channels", "1", "--link-width", "16", "--name", "my-box", "-o", str(out),
                 str(MESS)]) == 0
    m = Machine.from_toml(out)
    assert m.name == "my-box"
    dev = m.nodes[1].memory
    assert dev.duplex == "full" and [c.read_ratio for c in dev.curves] == [0.5, 1.0]
    assert "bwlat_50.txt" in dev.curves[0].source


def test_import_changing_the_device_needs_replace(tmp_path, capsys):
    out = tmp_path / "box.toml"
    assert main(["machine", "import", "--preset", "laptop-loaded", "--node", "0", "--channels",
                 "4", "-o", str(out), str(MESS / "bwlat_50.txt")]) == 2
    err = capsys.readouterr().err
    _one_line(err)
    assert "--replace" in err and not out.exists()
    assert main(["machine", "import", "--preset", "laptop-loaded", "--node", "0", "--channels",
                 "4", "--replace", "-o", str(out), str(MESS / "bwlat_50.txt")]) == 0
    dev = Machine.from_toml(out).nodes[0].memory
    assert dev.channels == 4 and dev.peak_gbps == pytest.approx(4 * 4800 * 8 / 1000)


@pytest.mark.parametrize("args, words", [
    (["--node", "5"], "no node 5"),
    (["--node", "0"], "give --type and --channels"),
    (["--node", "0", "--type", "ddr5", "--channels", "2", "--mts", "4800", "--mix", "7"],
     "unknown MLC traffic mix"),
    (["--node", "0", "--type", "ddr5", "--channels", "2", "--mts", "4800", "--points", "1"],
     "--points"),
    (["--node", "0", "--type", "ddr5", "--channels", "2"], "give peak_gbps or mts > 0"),
    (["--node", "0", "--type", "ddr3", "--channels", "2", "--mts", "1600"], "expected one of"),
])
def test_import_bad_options_are_one_line(tmp_path, capsys, args, words):
    out = tmp_path / "box.toml"
    code = main(["machine", "import", "--preset", "laptop", "-o", str(out), *args, str(MLC)])
    err = capsys.readouterr().err
    assert code == 2 and words in err, err
    _one_line(err)
    assert not out.exists()


def test_import_bad_input_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bwlat_70.txt"
    bad.write_text("100 90\n200 oops\n")
    out = tmp_path / "box.toml"
    assert main(["machine", "import", "--preset", "laptop-loaded", "--node", "1", "-o", str(out),
                 str(bad)]) == 2
    err = capsys.readouterr().err
    _one_line(err)
    assert f"{bad}:2: expected two numbers" in err and not out.exists()


def test_import_output_checks_come_first_and_refuse_non_regular_files(tmp_path, capsys):
    target = tmp_path / "real.toml"
    target.write_text("keep me\n")
    link = tmp_path / "link.toml"
    link.symlink_to(target)
    missing_input = str(tmp_path / "nope.txt")  # never read: the output check fails first
    for out, words in ((link, "symbolic link"), (tmp_path, "not a regular file"),
                       (target / "dir.toml", "ot a directory")):
        assert main(["machine", "import", "--preset", "laptop", "--node", "0", "-o", str(out),
                     missing_input]) == 2
        err = capsys.readouterr().err
        _one_line(err)
        assert words in err, err
    assert target.read_text() == "keep me\n" and link.is_symlink()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert main(["machine", "import", "--preset", "laptop", "--node", "0", "-o", str(fifo),
                 missing_input]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_machine_list(capsys):
    assert main(["machine", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("preset")
    names = [line.split()[0] for line in out[1:]]
    assert names == list(preset_names())
    assert {"zen5-cxl", "genoa-cxl", "spr-cxl", "clx-optane", "dram-2s", "laptop",
            "laptop-loaded"} <= set(names)
    assert main(["machine", "list", "--json"]) == 0


def test_show_prints_curves_and_plots(tmp_path, capsys):
    d = tmp_path / "plots"
    assert main(["machine", "show", "--preset", "clx-optane", "--plot", str(d)]) == 0
    out = capsys.readouterr().out
    assert "node 1: optane, 6 channels x 2666 MT/s, peak 39.4 GB/s, half duplex" in out
    assert "read ratio 0.78:" in out and "    GB/s " in out and "    ns   " in out
    pngs = sorted(os.listdir(d))
    assert pngs == ["clx-optane-node0.png", "clx-optane-node1.png"]
    assert (d / pngs[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_plot_without_curves_is_an_error(tmp_path, capsys):
    assert main(["machine", "show", "--preset", "laptop", "--plot", str(tmp_path)]) == 2
    _one_line(capsys.readouterr().err)


def test_show_json_carries_memory_and_cpu(capsys):
    import json
    assert main(["machine", "show", "--preset", "zen5-cxl", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["memory"][2]["type"] == "cxl" and doc["cpu"]["tlb_4k"] == [96, 4096]


# -- the presets' memory data ------------------------------------------------------------------


CURVED = ("zen5-cxl", "genoa-cxl", "spr-cxl", "clx-optane", "dram-2s", "laptop-loaded")


@pytest.mark.parametrize("name", CURVED)
def test_every_curve_and_device_has_a_source_and_every_node_a_device(name):
    m = Machine.preset(name)
    assert m.cpu is not None and m.cpu.source
    for node in m.nodes:
        assert node.memory is not None and node.memory.source
        for cv in node.memory.curves:
            assert cv.source.strip()
            # a curve is either measured (names its file) or says it is an estimate
            assert "bwlat_" in cv.source or "estimate" in cv.source


def test_zen5_keeps_its_cited_idle_latencies():
    m = Machine.preset("zen5-cxl")
    assert m.load_ns.tolist() == [[130, 283, 283], [283, 130, 436], [283, 436, 283]]
    assert m.store_ns.tolist() == m.load_ns.tolist()
    assert [n.nominal_capacity >> 20 for n in m.nodes] == [128460, 128893, 257993]


def test_zen5_dram_curves_are_graviton3_scaled_to_ddr5_6000():
    """The derivation stated in the preset: Mess graviton3-ddr5 x 6000/4800, latency unchanged."""
    m = Machine.preset("zen5-cxl")
    dev = m.nodes[0].memory
    assert (dev.channels, dev.mts, dev.peak_gbps) == (8, 6000, 384.0)
    top = dev.curves[-1]
    assert top.read_ratio == 1.0
    # bwlat_100.txt's maximum: 284524.23 MB/s at 282.41 ns
    assert top.bandwidth_gbps[-1] == pytest.approx(284.5242 * 1.25, abs=1e-3)
    assert top.latency_ns[-1] == pytest.approx(282.41)
    assert m.nodes[1].memory == dev


def test_laptop_stays_curve_less():
    m = Machine.preset("laptop")
    assert m.cpu is None and all(n.memory is None for n in m.nodes)


def test_with_memory_on_a_preset_moves_the_knee_only():
    m = Machine.preset("zen5-cxl")
    v = m.with_memory(0, channels=2)
    a, b = m.nodes[0].memory.curves[-1], v.nodes[0].memory.curves[-1]
    assert np.allclose(b.bandwidth_gbps, a.bandwidth_gbps / 4)
    assert np.array_equal(b.latency_ns, a.latency_ns)
    assert v.nodes[1].memory == m.nodes[1].memory


def test_presets_in_the_docs_table():
    doc = (Path(__file__).parents[1] / "docs" / "machine.md").read_text()
    for name in preset_names():
        assert f"`{name}`" in doc, name


# -- item 9: the pghot machine's memory configurations ----------------------------------------


def test_twelve_equal_rdimms_cannot_make_node_0():
    from tierscan.experiments.memory_configs import (DDR5_RDIMM_GIB, MEMMAP_FRACTION,
                                                     dram_channel_options, installed_options)
    # the smallest DDR5 RDIMM is 16 GiB: 12 of them leave 193536 MiB after the memmap
    assert 12 * 16 * 1024 * (1 - MEMMAP_FRACTION) == 193536 > 128460
    assert all(units < 12 for units, _, _ in installed_options(128460, DDR5_RDIMM_GIB, 12, (1, 2)))
    assert dram_channel_options(128460) == (1, 2, 4, 8)
    assert dram_channel_options(128893) == (1, 2, 4, 8)
    # a 12-channel node of 12 x 16 GiB would be allowed, so the rule can say yes
    assert 12 in dram_channel_options(193000)


def test_cxl_node_allows_one_two_or_four_devices():
    from tierscan.experiments.memory_configs import cxl_device_options
    assert cxl_device_options(257993) == (1, 2, 4)


def test_pghot_memory_configs_are_variants_of_the_preset():
    from tierscan.experiments.memory_configs import pghot_memory_configs
    configs = pghot_memory_configs()
    assert [c.label for c in configs] == [f"dram{d}-cxl{x}" for d in (1, 2, 4, 8)
                                          for x in (1, 2, 4)]
    base = Machine.preset("zen5-cxl")
    for c in configs:
        m = c.machine
        assert [n.nominal_capacity for n in m.nodes] == [n.nominal_capacity for n in base.nodes]
        assert m.nodes[0].memory.channels == m.nodes[1].memory.channels == c.dram_channels
        assert m.nodes[2].memory.channels == c.cxl_devices
        assert m.nodes[0].memory.peak_gbps == pytest.approx(c.dram_channels * 6000 * 8 / 1000)
        assert np.array_equal(m.load_ns, base.load_ns)
    assert len({c.machine.nodes[0].memory.peak_gbps for c in configs}) == 4


def test_pghot_memory_config_by_label():
    from tierscan.experiments.memory_configs import pghot_memory_config
    c = pghot_memory_config("dram4-cxl2")
    assert (c.dram_channels, c.cxl_devices) == (4, 2)
    with pytest.raises(ConfigError, match="dram12-cxl1.*allow: dram1-cxl1"):
        pghot_memory_config("dram12-cxl1")
