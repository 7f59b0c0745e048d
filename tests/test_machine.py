"""Machine descriptions: units, TOML validation, presets, scaling and the numactl -H view."""

import copy

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tierscan.errors import ConfigError
from tierscan.machine import HPAGE_SIZE, Machine, format_cpu_ranges, parse_cpu_list, preset_names
from tierscan.units import human_bytes, parse_duration_ns, parse_size

MiB, GiB = 2**20, 2**30

LAPTOP_TOML = """\
name = "laptop"
[[nodes]]
id = 0
capacity = "1GiB"
cpus = [0, 1]
tier = 0
kind = "dram"
[[nodes]]
id = 1
capacity = "2GiB"
cpus = []
tier = 1
kind = "cxl"
[latency]
load_ns  = [[90, 240], [240, 90]]
store_ns = [[90, 250], [250, 90]]
distance = [[10, 20], [20, 10]]
"""


def laptop_dict():
    return Machine.preset("laptop").to_dict()


# -- units ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("8GiB", 8 * GiB), ("8 GiB", 8 * GiB), ("8gib", 8 * GiB), ("4KiB", 4096), ("512B", 512),
    ("128460MiB", 128460 * MiB), ("1.5GiB", 3 * GiB // 2), ("4096", 4096), (4096, 4096),
    ("1TiB", 2**40), (" 2 MiB ", 2 * MiB),
])
def test_parse_size_accepts_iec(text, expected):
    assert parse_size(text, where="f.toml", field="x") == expected


@pytest.mark.parametrize("unit", ["GB", "MB", "G", "KB", "kb", "m", "TB"])
def test_parse_size_rejects_si_and_ambiguous_units(unit):
    with pytest.raises(ConfigError) as e:
        parse_size(f"8 {unit}", where="m.toml", field="nodes[0].capacity")
    msg = str(e.value)
    assert msg.startswith("m.toml: nodes[0].capacity: ambiguous unit")
    assert f"'{unit}'" in msg and "GiB" in msg and "MiB" in msg


@pytest.mark.parametrize("value, words", [
    ("-4KiB", "negative"), (-1, "negative"), (0, "greater than zero"), ("0GiB", "greater than zero"),
    ("1.0000001KiB", "whole number of bytes"), ("lots", "expected a size"), ("8 furlongs", "unknown size unit"),
    (1.5, "got float"), (True, "got boolean"), ([1], "got array"), ("", "expected a size"),
])
def test_parse_size_rejects(value, words):
    with pytest.raises(ConfigError, match=words) as e:
        parse_size(value, where="m.toml", field="a.b")
    assert str(e.value).startswith("m.toml: a.b: ")


def test_parse_size_zero_allowed_when_caller_says():
    assert parse_size("0B", allow_zero=True) == 0


@given(st.integers(min_value=1, max_value=2**20), st.sampled_from(["B", "KiB", "MiB", "GiB"]),
       st.sampled_from(["", " "]))
def test_parse_size_roundtrip(n, unit, space):
    mult = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[unit]
    assert parse_size(f"{n}{space}{unit}") == n * mult
    assert parse_size(f"{n}{space}{unit.upper()}") == n * mult


@pytest.mark.parametrize("text, ns", [
    ("500ms", 500_000_000), ("2s", 2_000_000_000), ("100us", 100_000), ("10ns", 10), (7, 7),
    ("1.5ms", 1_500_000), ("100 MS", 100_000_000),
])
def test_parse_duration(text, ns):
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize("value", ["100", "5min", "-1s", "0.5ns", 0, 2.0])
def test_parse_duration_rejects(value):
    with pytest.raises(ConfigError) as e:
        parse_duration_ns(value, where="w.toml", field="daemon.interval")
    assert str(e.value).startswith("w.toml: daemon.interval: ")


@pytest.mark.parametrize("n, text", [
    (8 * GiB, "8.0 GiB"), (512, "512 B"), (1536 * MiB, "1.5 GiB"), (4096, "4.0 KiB"), (2**40, "1.0 TiB"),
])
def test_human_bytes(n, text):
    assert human_bytes(n) == text


# -- presets -------------------------------------------------------------------------------------


def test_presets_are_listed():
    assert {"laptop", "zen5-cxl"} <= set(preset_names())


def test_laptop_preset():
    m = Machine.preset("laptop")
    assert m.name == "laptop" and m.source == "<preset laptop>"
    assert [n.capacity for n in m.nodes] == [1 * GiB, 2 * GiB]
    assert m.nodes[0].cpus == (0, 1) and m.nodes[1].cpus == ()
    assert [(n.kind, n.tier, n.zone) for n in m.nodes] == [("dram", 0, "Normal"), ("cxl", 1, "Movable")]
    assert m.distance.tolist() == [[10, 20], [20, 10]]
    assert m.load_ns.tolist() == [[90, 240], [240, 90]]
    assert m.store_ns.tolist() == [[90, 250], [250, 90]]
    assert (m.nr_nodes, m.cpu_nodes, m.toptier_nodes, m.lower_tier_nodes, m.nr_cpus) == (2, (0,), (0,), (1,), 2)
    assert m.capacity_scale == 1.0


def test_zen5_preset_exact_capacities_and_distances():
    m = Machine.preset("zen5-cxl")
    assert [n.nominal_capacity for n in m.nodes] == [128460 * MiB, 128893 * MiB, 257993 * MiB]
    # Rounded down to whole 2 MiB huge pages for the simulation.
    assert [n.capacity for n in m.nodes] == [128460 * MiB, 128892 * MiB, 257992 * MiB]
    assert m.distance.tolist() == [[10, 32, 50], [32, 10, 60], [255, 255, 10]]
    assert m.nodes[0].cpus == tuple(range(0, 96)) + tuple(range(192, 288))
    assert m.nodes[1].cpus == tuple(range(96, 192)) + tuple(range(288, 384))
    assert m.nr_cpus == 384 and m.cpu_nodes == (0, 1)
    assert m.toptier_nodes == (0, 1) and m.lower_tier_nodes == (2,)
    assert m.load_ns.shape == (3, 3) and m.load_ns.dtype == np.float64
    assert m.distance.dtype.kind == "i"


def test_preset_equals_same_toml_file(tmp_path):
    f = tmp_path / "laptop.toml"
    f.write_text(LAPTOP_TOML)
    m = Machine.from_toml(f)
    assert m == Machine.preset("laptop") and m.source == str(f)


def test_unknown_preset_lists_known():
    with pytest.raises(ConfigError) as e:
        Machine.preset("zen9")
    msg = str(e.value)
    assert msg.startswith("<preset zen9>: ") and "laptop" in msg and "zen5-cxl" in msg
    assert e.value.exit_code == 2


def test_preset_name_cannot_escape_the_package():
    with pytest.raises(ConfigError, match="unknown preset"):
        Machine.preset("../errors")


def test_machine_is_immutable():
    m = Machine.preset("laptop")
    with pytest.raises(ValueError):
        m.load_ns[0, 0] = 1.0
    with pytest.raises(AttributeError):
        m.name = "x"


def test_to_dict_roundtrip():
    for name in preset_names():
        m = Machine.preset(name).scaled(0.25)
        assert Machine.from_dict(m.to_dict()) == m


# -- scaling -------------------------------------------------------------------------------------


def test_scaled_rounds_down_to_2mib():
    m = Machine.preset("zen5-cxl").scaled(0.125)
    assert m.capacity_scale == 0.125
    # 128893 MiB / 8 = 16111.625 MiB -> 16110 MiB (the 2 MiB multiple below).
    assert [n.capacity for n in m.nodes] == [16056 * MiB, 16110 * MiB, 32248 * MiB]
    assert [n.nominal_capacity for n in m.nodes] == [128460 * MiB, 128893 * MiB, 257993 * MiB]
    assert all(n.capacity % HPAGE_SIZE == 0 for n in m.nodes)
    assert Machine.preset("zen5-cxl").capacity_scale == 1.0  # the original is untouched


def test_scaled_composes_from_nominal():
    m = Machine.preset("laptop")
    assert m.scaled(0.5).scaled(0.5) == m.scaled(0.25)
    assert m.scaled(0.5).scaled(0.5).capacity_scale == 0.25


def test_scaled_decimal_factor_is_exact():
    # 0.1 as a binary float is a hair below 1/10; 20 MiB x 0.1 must still give 2 MiB, not 0.
    d = laptop_dict()
    d["nodes"][0]["capacity"] = "20MiB"
    assert Machine.from_dict(d).scaled(0.1).nodes[0].capacity == 2 * MiB


@given(st.floats(min_value=0.01, max_value=1.0))
def test_scaled_never_exceeds_nominal_times_factor(factor):
    m = Machine.preset("zen5-cxl").scaled(factor)
    for n in m.nodes:
        assert n.capacity % HPAGE_SIZE == 0
        assert n.nominal_capacity * factor - HPAGE_SIZE - 1 < n.capacity <= n.nominal_capacity * factor + 1


@pytest.mark.parametrize("factor", [0, -0.5, 1.5, float("nan"), "0.5", True])
def test_scaled_rejects_bad_factor(factor):
    with pytest.raises(ConfigError) as e:
        Machine.preset("laptop").scaled(factor)
    assert str(e.value).startswith("<preset laptop>: capacity_scale: ")


def test_scale_below_one_huge_page_rejected():
    with pytest.raises(ConfigError, match="less than 2 MiB"):
        Machine.preset("laptop").scaled(0.001)


def test_capacity_scale_in_toml():
    d = laptop_dict()
    d["capacity_scale"] = 0.5
    m = Machine.from_dict(d, where="x.toml")
    assert m.capacity_scale == 0.5 and m.nodes[0].capacity == 512 * MiB


# -- validation: every bad input names the file and the field -----------------------------------


def _set(path, value):
    """A mutation of the laptop dict: path like 'nodes.0.capacity'; value None deletes."""
    def mutate(d):
        *parents, last = path.split(".")
        for p in parents:
            d = d[int(p)] if isinstance(d, list) else d[p]
        if isinstance(d, list):
            last = int(last)
        if value is _DELETE:
            del d[last]
        else:
            d[last] = value
    return mutate


_DELETE = object()

BAD_INPUTS = [
    # (mutation, field the error must name, words the message must contain)
    (_set("nodes.1.capcity", "1GiB"), "nodes[1].capcity", "unknown key (expected one of: id, capacity"),
    (_set("colour", "red"), "colour", "unknown key"),
    (_set("latency.load", []), "latency.load", "unknown key"),
    (_set("name", _DELETE), "name", "missing required key"),
    (_set("nodes.0.tier", _DELETE), "nodes[0].tier", "missing required key"),
    (_set("latency.distance", _DELETE), "latency.distance", "missing required key"),
    (_set("latency", _DELETE), "latency", "missing required key"),
    (_set("name", 3), "name", "expected a non-empty string"),
    (_set("nodes", []), "nodes", "at least one"),
    (_set("nodes", {"id": 0}), "nodes", "at least one"),
    (_set("latency", [1]), "latency", "expected a table"),
    (_set("nodes.1.id", 2), "nodes[1].id", "expected 1 (ids must be 0..N-1 in order)"),
    (_set("nodes.1.id", "1"), "nodes[1].id", "got string '1'"),
    (_set("nodes.0.capacity", "8 GB"), "nodes[0].capacity", "ambiguous unit 'GB'"),
    (_set("nodes.0.capacity", "1MiB"), "nodes[0].capacity", "at least 2 MiB"),
    (_set("nodes.0.capacity", 4 * MiB + 512), "nodes[0].capacity", "multiple of 4 KiB"),
    (_set("nodes.0.capacity", 0), "nodes[0].capacity", "greater than zero"),
    (_set("nodes.0.capacity", 1.5), "nodes[0].capacity", "got float"),
    (_set("nodes.0.tier", -1), "nodes[0].tier", "integer >= 0"),
    (_set("nodes.0.tier", 0.5), "nodes[0].tier", "integer >= 0"),
    (_set("nodes.0.kind", "hbm"), "nodes[0].kind", "expected one of 'dram', 'cxl', 'pmem'"),
    (_set("nodes.0.zone", "normal"), "nodes[0].zone", "expected one of 'Normal', 'Movable', 'DMA32'"),
    (_set("nodes.0.cpus", "0-x"), "nodes[0].cpus", "expected ranges like"),
    (_set("nodes.0.cpus", "3-1"), "nodes[0].cpus", "runs backwards"),
    (_set("nodes.0.cpus", [0, -1]), "nodes[0].cpus[1]", "integer >= 0"),
    (_set("nodes.0.cpus", [0, 0]), "nodes[0].cpus", "cpu 0 is listed twice"),
    (_set("nodes.0.cpus", 2), "nodes[0].cpus", "expected an array of CPU numbers"),
    (_set("nodes.1.cpus", [1]), "nodes[1].cpus", "cpu 1 is also listed on node 0"),
    (_set("nodes.0.cpus", []), "nodes", "no node has cpus"),
    (_set("nodes.0.tier", 1), "nodes", "no node has tier = 0"),
    (_set("latency.load_ns", [[90, 240], [240]]), "latency.load_ns", "expected 2x2 matrix, got 2 rows of lengths 2, 1"),
    (_set("latency.load_ns", [[90], [240]]), "latency.load_ns", "expected 2x2 matrix, got 2x1"),
    (_set("latency.store_ns", [[90, 1, 2]] * 3), "latency.store_ns", "expected 2x2 matrix, got 3x3"),
    (_set("latency.store_ns", [90, 240]), "latency.store_ns", "expected 2x2 matrix, got integer 90 at row 0"),
    (_set("latency.store_ns", "fast"), "latency.store_ns", "expected 2x2 matrix"),
    (_set("latency.store_ns", []), "latency.store_ns", "got an empty array"),
    (_set("latency.load_ns.0.1", 0), "latency.load_ns[0][1]", "latency in ns > 0"),
    (_set("latency.load_ns.1.0", -5.0), "latency.load_ns[1][0]", "latency in ns > 0"),
    (_set("latency.load_ns.1.0", "90ns"), "latency.load_ns[1][0]", "latency in ns > 0"),
    (_set("latency.distance.0.1", 5), "latency.distance[0][1]", "integer >= 10"),
    (_set("latency.distance.0.1", 20.0), "latency.distance[0][1]", "integer >= 10"),
    (_set("latency.distance.1.1", 12), "latency.distance[1][1]", "distance to itself must be 10"),
    (_set("capacity_scale", 2), "capacity_scale", "0 < factor <= 1"),
    (_set("capacity_scale", "half"), "capacity_scale", "0 < factor <= 1"),
]


@pytest.mark.parametrize("mutate, field, words", BAD_INPUTS, ids=[b[1] + ":" + b[2][:20] for b in BAD_INPUTS])
def test_bad_dict_names_where_and_field(mutate, field, words):
    d = copy.deepcopy(laptop_dict())
    mutate(d)
    with pytest.raises(ConfigError) as e:
        Machine.from_dict(d, where="box.toml")
    msg = str(e.value)
    assert msg.startswith(f"box.toml: {field}: "), msg
    assert words in msg, msg
    assert "\n" not in msg
    assert (e.value.where, e.value.field, e.value.exit_code) == ("box.toml", field, 2)


def test_bad_file_names_file_and_field(tmp_path):
    f = tmp_path / "box.toml"
    f.write_text(LAPTOP_TOML.replace('capacity = "2GiB"', 'capcity = "2GiB"'))
    with pytest.raises(ConfigError) as e:
        Machine.from_toml(f)
    assert str(e.value).startswith(f"{f}: nodes[1].capcity: unknown key (expected one of: ")


def test_missing_file(tmp_path):
    f = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as e:
        Machine.from_toml(f)
    assert str(e.value) == f"{f}: no such file"


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        Machine.from_toml(tmp_path)


def test_toml_syntax_error_names_file_and_line(tmp_path):
    f = tmp_path / "broken.toml"
    f.write_text('name = "x"\n[[nodes]]\nid = = 0\n')
    with pytest.raises(ConfigError) as e:
        Machine.from_toml(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}: invalid TOML: ") and "line 3" in msg


def test_non_utf8_file(tmp_path):
    f = tmp_path / "bin.toml"
    f.write_bytes(b'name = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        Machine.from_toml(f)


def test_zone_defaults_and_override():
    d = laptop_dict()
    for node in d["nodes"]:
        del node["zone"]
    d["nodes"][0]["zone"] = "DMA32"
    m = Machine.from_dict(d)
    assert [n.zone for n in m.nodes] == ["DMA32", "Movable"]


def test_capacity_rounded_down_to_2mib_on_load():
    d = laptop_dict()
    d["nodes"][0]["capacity"] = "3MiB"
    n = Machine.from_dict(d).nodes[0]
    assert (n.capacity, n.nominal_capacity) == (2 * MiB, 3 * MiB)


def test_cpu_ranges():
    assert parse_cpu_list("0-2,5, 7 - 8") == (0, 1, 2, 5, 7, 8)
    assert parse_cpu_list("") == ()
    assert format_cpu_ranges((5, 0, 1, 2, 7, 8)) == "0-2,5,7-8"
    assert format_cpu_ranges(()) == ""


# -- text views ----------------------------------------------------------------------------------


def _cpus(*ranges):
    return " ".join(str(c) for lo, hi in ranges for c in range(lo, hi + 1))


def test_numactl_h_zen5():
    # Written by hand from numactl's format: "% 3d " columns leave trailing spaces.
    expected = "\n".join([
        "available: 3 nodes (0-2)",
        "node 0 cpus: " + _cpus((0, 95), (192, 287)),
        "node 0 size: 128460 MB",
        "node 0 free: 128460 MB",
        "node 1 cpus: " + _cpus((96, 191), (288, 383)),
        "node 1 size: 128892 MB",
        "node 1 free: 128892 MB",
        "node 2 cpus:",
        "node 2 size: 257992 MB",
        "node 2 free: 257992 MB",
        "node distances:",
        "node   0   1   2 ",
        "  0:  10  32  50 ",
        "  1:  32  10  60 ",
        "  2:  255  255  10 ",
        "# capacities rounded down to 2 MiB multiples for simulation "
        "(nominal: node 1 128893 MB, node 2 257993 MB)",
    ])
    assert Machine.preset("zen5-cxl").numactl_h() == expected


def test_numactl_h_laptop_scaled_and_free():
    m = Machine.preset("laptop").scaled(0.125)
    expected = "\n".join([
        "available: 2 nodes (0-1)",
        "node 0 cpus: 0 1",
        "node 0 size: 128 MB",
        "node 0 free: 100 MB",
        "node 1 cpus:",
        "node 1 size: 256 MB",
        "node 1 free: 0 MB",
        "node distances:",
        "node   0   1 ",
        "  0:  10  20 ",
        "  1:  20  10 ",
        "# capacities scaled by 0.125 for simulation (nominal: node 0 1024 MB, node 1 2048 MB)",
    ])
    assert m.numactl_h(free_bytes=[100 * MiB, 0]) == expected


def test_numactl_h_laptop_unscaled_has_no_note():
    out = Machine.preset("laptop").numactl_h()
    assert "#" not in out and out.endswith("  1:  20  10 ")


def test_describe_latency():
    out = Machine.preset("laptop").describe_latency()
    assert out.splitlines()[:4] == [
        "load latency (ns), row = CPU node, column = memory node",
        "node      0     1",
        "  0:     90   240",
        "  1:    240    90   (no cpus: the memory's view)",
    ]
    assert "store latency" in out and "250" in out


# -- memory devices, curves and CPU caches (docs/machine.md, "Memory devices") -----------------


def _curve(r, bw, lat, source="test"):
    return {"read_ratio": r, "bandwidth_gbps": bw, "latency_ns": lat, "source": source}


def memory_dict():
    """The laptop with a 2-channel DDR5 node 0, a 1-device CXL node 1 and CPU caches."""
    d = laptop_dict()
    d["nodes"][0]["memory"] = {
        "type": "ddr5", "channels": 2, "mts": 4800, "link_width": 0, "source": "test dimms",
        # given out of read_ratio order on purpose: the family is sorted on load
        "curve": [_curve(1.0, [0, 40, 70], [90, 100, 160]),
                  _curve(0.5, [0, 30, 60], [95, 110, 200])]}
    d["nodes"][1]["memory"] = {
        "type": "cxl", "channels": 1, "mts": 0, "link_width": 8, "source": "test expander",
        "curve": [_curve(1.0, [0.0, 20.0, 30.0], [240, 260, 400])]}
    d["cpu"] = {"llc": "32MiB", "tlb_4k": [72, 3072], "tlb_2m": [72, 3072], "source": "test cpu"}
    return d


def test_memory_devices_load():
    m = Machine.from_dict(memory_dict())
    dram, cxl = m.nodes[0].memory, m.nodes[1].memory
    assert (dram.type, dram.channels, dram.mts, dram.duplex) == ("ddr5", 2, 4800, "half")
    assert dram.peak_gbps == pytest.approx(2 * 4800 * 8 / 1000)  # derived: 76.8 GB/s
    assert [c.read_ratio for c in dram.curves] == [0.5, 1.0]  # sorted
    assert dram.curves[1].latency_ns.tolist() == [90, 100, 160]
    assert dram.curves[0].bandwidth_gbps.dtype == np.float64
    with pytest.raises(ValueError):
        dram.curves[0].bandwidth_gbps[0] = 1.0  # read-only
    assert cxl.duplex == "full"
    assert cxl.peak_gbps == pytest.approx(8 * 32 * 128 / 130 / 8)  # PCIe 5.0 x8, one direction
    assert m.cpu.llc_bytes == 32 * MiB and m.cpu.tlb_4k == (72, 3072) and m.cpu.source == "test cpu"


def test_memory_round_trips_through_to_dict_and_scaling():
    m = Machine.from_dict(memory_dict())
    again = Machine.from_dict(m.to_dict())
    assert again == m
    assert again.nodes[0].memory == m.nodes[0].memory and again.cpu == m.cpu
    assert m.scaled(0.5).nodes[0].memory == m.nodes[0].memory  # capacity scaling keeps devices
    assert m.scaled(0.5).cpu == m.cpu
    assert m != Machine.preset("laptop")  # memory and cpu are content, not provenance
    no_cpu = dict(m.to_dict())
    del no_cpu["cpu"]
    assert Machine.from_dict(no_cpu) != m


def test_machine_without_memory_serializes_as_before():
    d = Machine.preset("laptop").to_dict()
    assert "cpu" not in d and all("memory" not in n for n in d["nodes"])


def test_given_peak_overrides_derived():
    d = memory_dict()
    d["nodes"][0]["memory"]["peak_gbps"] = 70.0
    assert Machine.from_dict(d).nodes[0].memory.peak_gbps == 70.0


def test_with_memory_scales_bandwidth_not_latency():
    m = Machine.from_dict(memory_dict())
    v = m.with_memory(0, channels=8)
    dev = v.nodes[0].memory
    assert dev.channels == 8 and dev.peak_gbps == pytest.approx(4 * 76.8)
    assert dev.curves[1].bandwidth_gbps.tolist() == [0, 160, 280]
    assert dev.curves[1].latency_ns.tolist() == [90, 100, 160]
    assert dev.source == "test dimms (variant: 8 channels)"
    assert v.nodes[1] == m.nodes[1] and v.cpu == m.cpu and m.nodes[0].memory.channels == 2
    back = v.with_memory(0, channels=2)
    assert back.nodes[0].memory.source == "test dimms (variant: 2 channels)"
    assert back.nodes[0].memory.curves == m.nodes[0].memory.curves  # curves keep their source
    assert Machine.from_dict(v.to_dict()) == v
    cxl = m.with_memory(1, channels=4).nodes[1].memory
    assert cxl.curves[0].bandwidth_gbps.tolist() == [0, 80, 120]
    assert cxl.source == "test expander (variant: 4 devices)"


@pytest.mark.parametrize("node, channels, field, words", [
    (0, 0, "nodes[0].memory.channels", "integer >= 1"),
    (0, 2.0, "nodes[0].memory.channels", "integer >= 1"),
    (5, 2, "node", "no node 5"),
])
def test_with_memory_rejects(node, channels, field, words):
    with pytest.raises(ConfigError, match=words) as e:
        Machine.from_dict(memory_dict(), where="m.toml").with_memory(node, channels=channels)
    assert e.value.field == field


def test_with_memory_needs_a_device():
    with pytest.raises(ConfigError, match="node 0 has no"):
        Machine.preset("laptop").with_memory(0, channels=2)


MEMORY_BAD_INPUTS = [
    (_set("nodes.0.memory.typ", "ddr5"), "nodes[0].memory.typ", "unknown key"),
    (_set("nodes.0.memory.type", "ddr3"), "nodes[0].memory.type", "expected one of 'ddr4', 'ddr5'"),
    (_set("nodes.0.memory.channels", 0), "nodes[0].memory.channels", "integer >= 1"),
    (_set("nodes.0.memory.mts", _DELETE), "nodes[0].memory.mts", "missing required key"),
    (_set("nodes.0.memory.mts", 0), "nodes[0].memory.peak_gbps", "give peak_gbps or mts > 0"),
    (_set("nodes.1.memory.link_width", 0), "nodes[1].memory.peak_gbps", "link_width > 0"),
    (_set("nodes.0.memory.link_width", 8), "nodes[0].memory.link_width", "must be 0 for type 'ddr5'"),
    (_set("nodes.0.memory.peak_gbps", 0), "nodes[0].memory.peak_gbps", "bandwidth in GB/s > 0"),
    (_set("nodes.0.memory.source", ""), "nodes[0].memory.source", "non-empty string"),
    (_set("nodes.0.memory.curve", []), "nodes[0].memory.curve", "at least one"),
    (_set("nodes.0.memory.curve.1.read_ratio", 0), "nodes[0].memory.curve[1].read_ratio", "(0, 1]"),
    (_set("nodes.0.memory.curve.1.read_ratio", 1.0), "nodes[0].memory.curve[1].read_ratio",
     "also given by curve[0]"),
    (_set("nodes.0.memory.curve.1.latency_ns", [95, 110]), "nodes[0].memory.curve[1].latency_ns",
     "must be the same length as bandwidth_gbps (3), got 2"),
    (_set("nodes.0.memory.curve.1.bandwidth_gbps", [0, 60, 30]),
     "nodes[0].memory.curve[1].bandwidth_gbps[2]", "strictly ascending"),
    (_set("nodes.0.memory.curve.1.bandwidth_gbps", [0, 0, 30]),
     "nodes[0].memory.curve[1].bandwidth_gbps[1]", "strictly ascending"),
    (_set("nodes.0.memory.curve.1.latency_ns", [95, 90, 200]),
     "nodes[0].memory.curve[1].latency_ns[1]", "must not be less than the point before"),
    (_set("nodes.0.memory.curve.1.latency_ns", [95, 0, 200]),
     "nodes[0].memory.curve[1].latency_ns[1]", "latency in ns > 0"),
    (_set("nodes.0.memory.curve.1.bandwidth_gbps", [-1, 30, 60]),
     "nodes[0].memory.curve[1].bandwidth_gbps[0]", "bandwidth >= 0"),
    (_set("nodes.0.memory.curve.1.bandwidth_gbps", [0, "30", 60]),
     "nodes[0].memory.curve[1].bandwidth_gbps[1]", "got string '30'"),
    (_set("nodes.0.memory.curve.1.bandwidth_gbps", [0, 1]), "nodes[0].memory.curve[1].latency_ns",
     "same length"),
    (_set("nodes.0.memory.curve.1.bandwidth_gbps", [0]), "nodes[0].memory.curve[1].bandwidth_gbps",
     "at least 2 points"),
    (_set("nodes.0.memory.curve.1.bandwidth_gbps", [0, 30000, 60000]),
     "nodes[0].memory.curve[1].bandwidth_gbps[2]", "exceeds the device's peak (76.8 GB/s)"),
    (_set("nodes.0.memory.curve.1.source", _DELETE), "nodes[0].memory.curve[1].source",
     "missing required key"),
    (_set("nodes.0.memory", "ddr5"), "nodes[0].memory", "expected a table"),
    (_set("cpu.llc", "32MB"), "cpu.llc", "ambiguous unit"),
    (_set("cpu.tlb_4k", []), "cpu.tlb_4k", "at least one level"),
    (_set("cpu.tlb_2m", [72, 0]), "cpu.tlb_2m[1]", "integer >= 1"),
    (_set("cpu.l3", 1), "cpu.l3", "unknown key"),
    (_set("cpu.source", _DELETE), "cpu.source", "missing required key"),
]


@pytest.mark.parametrize("mutate, field, words", MEMORY_BAD_INPUTS,
                         ids=[b[1] + ":" + b[2][:20] for b in MEMORY_BAD_INPUTS])
def test_bad_memory_names_where_and_field(mutate, field, words):
    d = memory_dict()
    mutate(d)
    with pytest.raises(ConfigError) as e:
        Machine.from_dict(d, where="box.toml")
    msg = str(e.value)
    assert msg.startswith(f"box.toml: {field}: "), msg
    assert words in msg, msg
    assert "\n" not in msg


def test_cxl_full_duplex_may_carry_twice_its_peak_in_total():
    d = memory_dict()
    # x8 link: 31.5 GB/s per direction; 50 GB/s in total is possible at a 50/50 mix
    d["nodes"][1]["memory"]["curve"] = [_curve(0.5, [0, 50], [240, 400])]
    assert Machine.from_dict(d).nodes[1].memory.curves[0].bandwidth_gbps[-1] == 50
    d["nodes"][1]["memory"]["curve"] = [_curve(0.5, [0, 70], [240, 400])]
    with pytest.raises(ConfigError, match="exceeds"):
        Machine.from_dict(d)
