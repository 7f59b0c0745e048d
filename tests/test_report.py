"""report/: tables (human and raw units, CSV, records), plots (valid PNGs) and heatmaps, on
synthetic results whose every figure is known."""

import csv
import io
import json
import math
import os

import numpy as np
import pytest
from rich.console import Console

from tierscan.errors import ConfigError
from tierscan.report import atomic_write, check_output_dir, check_output_file
from tierscan.report import heatmap as hm
from tierscan.report import plots, tables
from tierscan.report.tables import (compare_table, fmt_bytes, fmt_count, fmt_ns, fmt_ratio,
                                    numastat_table, summary_metrics, summary_table,
                                    unique_labels, vmstat_of, vmstat_table)
from tierscan.sim.config import config_from_dict
from tierscan.sim.results import RunResult

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MS = 1_000_000


def assert_png(path, min_size=5000):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > min_size, (path, len(data))
    assert b"IEND" in data[-16:]


def no_temp_files(directory):
    return [f for f in os.listdir(directory) if f.endswith(".tmp")] == []


def synthetic(name="syn", detectors=("klruscand",), engine="pghot-v3", cpu=True,
              promotion=None, heatmap=False, vmstat_node=True, T=6):
    """A result with known numbers: 2 nodes (laptop), T samples 100 ms apart; each interval
    after the first serves 300 accesses from node 0 and 100 from node 1."""
    doc = {"name": name, "machine": {"preset": "laptop"},
           "workload": {"name": "uniform", "size": "8MiB"},
           "detectors": [{"name": d} for d in detectors]}
    if engine:
        doc["engine"] = {"name": engine}
    cfg = config_from_dict(doc, "<test>")
    t = np.arange(T, dtype=np.int64) * 100 * MS
    served = np.array([[0.0, 0.0]] + [[300.0, 100.0]] * (T - 1))
    series = {
        "time_ns": t,
        "served": served,
        "fast_tier_hit_ratio": np.array([np.nan] + [0.75] * (T - 1)),
        "resident_pages": np.array([[100, 900]] + [[100 + 10 * i, 900 - 10 * i]
                                                   for i in range(1, T)], dtype=np.int64),
        "pgpromote_success": np.array([0] + [10] * (T - 1), dtype=np.int64),
        "pgdemote_kswapd": np.array([0] + [2] * (T - 1), dtype=np.int64),
    }
    vm = {"pgpromote_success": 10 * (T - 1), "pgdemote_kswapd": 2 * (T - 1),
          "pgdemote_direct": 1, "pgmigrate_success": 12 * (T - 1) + 1, "numa_hit": 5,
          "nr_free_pages": 7, "pghot_recorded_accesses": 99, "pghot_zero_counter": 0}
    final = {"runtime_ns": None, "vmstat": vm, "sim_time_ns": int(t[-1])}
    if cpu:
        final["cpu_ns"] = {"klruscand": 5.0 * MS, "kmigrated1": 20.0 * MS}
        series["cpu_ns.klruscand"] = np.linspace(0, 5.0 * MS, T)
    if vmstat_node:
        final["vmstat_node"] = [{k: (v if k != "pgdemote_kswapd" else 0) for k, v in vm.items()},
                                {k: (0 if k != "pgdemote_kswapd" else v) for k, v in vm.items()}]
    if promotion is not None:
        final["promotion"] = promotion
    if heatmap:
        B = 32
        counts = np.zeros((T, B), dtype=np.int64)
        counts[:, :8] = 50
        counts[:, 8:] = 1
        counts[0] = 0
        tier = np.ones((T, B), dtype=np.int64)
        tier[T // 2:, :8] = 0
        tier[:, -1] = -1
        series["heatmap"] = counts
        series["heatmap_tier"] = tier
        final["heatmap"] = {"addr_start": 0x7F0000000000, "bin_bytes": 256 << 10}
    return RunResult.from_run(cfg, series=series, final=final, sim_time_ns=int(t[-1]),
                              wall_time_s=0.25)


def render(table, raw=False, width=200) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(table.to_rich(raw=raw))
    return buf.getvalue()


# -- units -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value, text", [
    (0, "0 B"), (1023, "1023 B"), (4096, "4.0 KiB"), (2 << 20, "2.0 MiB"), (3 << 30, "3.0 GiB"),
    (None, "—"), (float("nan"), "—")])
def test_fmt_bytes(value, text):
    assert fmt_bytes(value) == text


@pytest.mark.parametrize("value, text", [
    (850, "850 ns"), (12_345, "12.3 us"), (1_234_567, "1.23 ms"), (123_000_000, "123 ms"),
    (110_412_000_000, "110.412 s"), (None, "—")])
def test_fmt_ns(value, text):
    assert fmt_ns(value) == text


def test_fmt_count_and_ratio():
    assert fmt_count(12345) == "12,345"
    assert fmt_count(416666.6666) == "416,667"
    assert fmt_count(2.5) == "2.50"
    assert fmt_count(float("nan")) == "—"
    assert fmt_ratio(0.8734) == "87.3%" and fmt_ratio(None) == "—"
    assert tables.format_value(3, "pages") == "12.0 KiB"
    assert tables.format_value(3, "pages", raw=True) == "3"
    assert tables.format_value(0.1, "ratio", raw=True) == "0.1"
    assert tables.format_value(None, "ns", raw=True) == ""


# -- tables ----------------------------------------------------------------------------------


def test_summary_metrics_are_the_result_figures():
    r = synthetic()
    m = {x.key: x.value for x in summary_metrics(r)}
    assert m["name"] == "syn" and m["config_hash"] == r.config_hash
    assert m["detectors"] == "klruscand" and m["engine"] == "pghot-v3"
    assert m["sim_time_ns"] == 500 * MS and m["wall_time_s"] == 0.25
    assert m["runtime_ns"] is None
    assert m["accesses"] == 2000.0
    assert m["pgpromote_success"] == 50
    assert m["pgdemote"] == 11             # pgdemote_kswapd + pgdemote_direct
    assert m["pgmigrate_success"] == 61
    assert m["fast_tier_hit_ratio"] == pytest.approx(0.75)
    assert m["cpu_ns.klruscand"] == 5.0 * MS
    assert m["cpu_share.klruscand"] == pytest.approx(0.01)
    assert m["cpu_share.kmigrated1"] == pytest.approx(0.04)


def test_summary_human_and_raw():
    r = synthetic()
    human = render(summary_table(r))
    assert "fast-tier hit ratio" in human and "75.0%" in human
    assert "simulated time" in human and "500 ms" in human
    assert "CPU klruscand" in human and "5.00 ms" in human and "1.0%" in human
    assert "unit" not in human          # the unit column is raw-only
    raw = render(summary_table(r), raw=True)
    assert "fast_tier_hit_ratio" in raw and "0.75" in raw and "500000000" in raw
    assert "unit" in raw and "ratio" in raw


def test_summary_csv_is_raw_with_units(tmp_path):
    path = summary_table(synthetic()).write_csv(tmp_path / "s.csv")
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    by_key = {row["metric"]: row for row in rows}
    assert by_key["sim_time_ns"] == {"metric": "sim_time_ns", "value": "500000000", "unit": "ns"}
    assert by_key["fast_tier_hit_ratio"]["value"] == "0.75"
    assert by_key["runtime_ns"]["value"] == ""
    assert by_key["cpu_ns.kmigrated1"]["value"] == "20000000.0"
    assert no_temp_files(tmp_path)


def test_promotion_figures_from_a_distribution():
    promo = {"promoted_pages": 512, "precision": 0.8, "recall": None, "identity_source": "ids",
             "time_to_promote_ns": {"count": 512, "mean": 1.2e8, "p10": 5e7, "p50": 1e8,
                                    "p90": 2e8},
             "report_to_promote_ns": None}
    r = synthetic(promotion=promo)
    m = {x.key: x for x in summary_metrics(r)}
    assert m["promotion.precision"].kind == "ratio" and m["promotion.precision"].value == 0.8
    assert m["promotion.recall"].value is None
    assert m["promotion.time_to_promote_ns.p50"].kind == "ns"
    assert m["promotion.time_to_promote_ns.count"].kind == "count"
    assert m["promotion.time_to_promote_ns.p50"].label == "time to promote, p50"
    assert "promotion.identity_source" not in m
    assert tables.ttp_quantile(r, 50) == 1e8
    assert tables.time_to_promote(r) == ("quantiles", {10.0: 5e7, 50.0: 1e8, 90.0: 2e8})
    human = render(summary_table(r))
    assert "time to promote, p90" in human and "200 ms" in human and "80.0%" in human


def test_promotion_samples_give_percentiles():
    r = synthetic(promotion={"time_to_promote_ns": list(range(1, 101))})
    kind, data = tables.time_to_promote(r)
    assert kind == "samples" and data.size == 100
    m = {x.key: x.value for x in summary_metrics(r)}
    assert m["time_to_promote_p50_ns"] == pytest.approx(50.5)
    assert m["time_to_promote_p99_ns"] == pytest.approx(99.01)


def test_numastat_table_per_node():
    r = synthetic()
    rec = {row["metric"]: row for row in numastat_table(r).records()}
    assert rec["served"] == {"metric": "served", "node0": 1500.0, "node1": 500.0,
                             "total": 2000.0}
    assert rec["served_share"]["node0"] == 0.75
    assert rec["resident_pages"] == {"metric": "resident_pages", "node0": 150, "node1": 850,
                                     "total": 1000}
    assert rec["resident_pages_peak"]["node0"] == 150 and rec["resident_pages_peak"]["node1"] == 900
    assert rec["pgpromote_success"]["node0"] == 50 and rec["pgdemote_kswapd"]["node1"] == 10
    human = render(numastat_table(r))
    assert "Node 0 (dram, tier 0)" in human and "Node 1 (cxl, tier 1)" in human
    assert "3.3 MiB" in human    # 850 pages


def test_numastat_without_per_node_vmstat():
    rec = [row["metric"] for row in numastat_table(synthetic(vmstat_node=False)).records()]
    assert rec == ["served", "served_share", "resident_pages", "resident_pages_peak"]


def test_vmstat_kernel_order_and_nodes():
    r = synthetic()
    vm = vmstat_of(r)
    # the file stores keys sorted; /proc/vmstat order comes back, plug-in counters last
    assert list(vm) == ["nr_free_pages", "numa_hit", "pgpromote_success", "pgdemote_kswapd",
                        "pgdemote_direct", "pgmigrate_success", "pghot_recorded_accesses",
                        "pghot_zero_counter"]
    assert vmstat_of(r, 1)["pgdemote_kswapd"] == 10
    with pytest.raises(ConfigError, match="no node 2"):
        vmstat_of(r, 2)
    with pytest.raises(ConfigError, match="no per-node vmstat"):
        vmstat_of(synthetic(vmstat_node=False), 0)
    names = [row["name"] for row in vmstat_table(r).records()]
    assert names[:4] == ["pgpromote_success", "pgdemote_kswapd", "pgdemote_direct",
                         "pgmigrate_success"]
    assert "pghot_recorded_accesses" in names and "pghot_zero_counter" not in names
    assert [row["name"] for row in vmstat_table(r, names="all").records()] == list(vm)


def test_compare_table_one_row_per_run():
    a = synthetic("a", detectors=("klruscand",))
    b = synthetic("b", detectors=("numab2",), engine=None, cpu=False,
                  promotion={"time_to_promote_ns": {"p50": 3e6}})
    labelled = unique_labels([("a", a), ("b", b)])
    assert list(labelled) == ["klruscand (pghot-v3)", "numab2"]
    t = compare_table(labelled)
    recs = t.records()
    assert [r["label"] for r in recs] == ["klruscand (pghot-v3)", "numab2"]
    assert recs[0]["daemon_cpu_ns"] == 25.0 * MS and recs[1]["daemon_cpu_ns"] == 0
    assert recs[0]["time_to_promote_p50_ns"] is None and recs[1]["time_to_promote_p50_ns"] == 3e6
    # no promotion summary in run a: pgpromote_success stands in
    assert recs[0]["promoted_pages"] == 50 and recs[0]["pgdemote"] == 11
    json.dumps(recs, allow_nan=False)
    csv_text = t.to_csv()
    assert csv_text.splitlines()[0].startswith("label,runtime_ns,accesses,throughput,sim_time_ns,"
                                               "promoted_pages")


def test_labels_are_unique_and_literal():
    a, b = synthetic("a"), synthetic("b")
    labelled = unique_labels([("x", a), ("y", b), ("y", b)])
    assert list(labelled) == ["klruscand (pghot-v3) [x]", "klruscand (pghot-v3) [y]",
                              "klruscand (pghot-v3) [y] #2"]
    out = render(compare_table(labelled))
    assert "[x]" in out and "[y]" in out     # not swallowed as rich markup


def test_records_turn_nan_into_none():
    r = synthetic()
    r.series["served"][:] = 0
    rec = {row["metric"]: row for row in numastat_table(r).records()}
    assert rec["served_share"]["node0"] is None
    assert math.isnan(tables.overall_hit_ratio(r))


# -- output paths ----------------------------------------------------------------------------


def test_output_path_checks(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert check_output_file(tmp_path / "new.json")
    with pytest.raises(ConfigError, match="is not a directory"):
        check_output_file(f / "x.json")
    # a missing parent is created when the file is written (as for --plot's directory)
    assert check_output_file(tmp_path / "no" / "x.json")
    assert not (tmp_path / "no").exists()
    with pytest.raises(ConfigError, match="is a directory"):
        check_output_file(tmp_path)
    assert check_output_dir(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()          # checked, not created
    with pytest.raises(ConfigError, match="not a directory"):
        check_output_dir(f / "sub")


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    p = tmp_path / "t.csv"
    atomic_write(p, lambda f: f.write("old\n"))

    def boom(f):
        f.write("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(p, boom)
    assert p.read_text() == "old\n" and no_temp_files(tmp_path)


# -- plots -----------------------------------------------------------------------------------


def test_each_plot_is_a_png(tmp_path):
    results = {"klruscand": synthetic("a"), "numab2": synthetic("b", cpu=False)}
    for fn, name in ((plots.plot_hit_ratio, "h.png"), (plots.plot_resident, "r.png"),
                     (plots.plot_promotions, "p.png"), (plots.plot_cpu_overhead, "c.png")):
        path = fn(results, tmp_path / name)
        assert str(path) == str(tmp_path / name)
        assert_png(path)
    assert_png(plots.plot_hit_ratio(synthetic(), tmp_path / "single.png"))
    assert no_temp_files(tmp_path)


def test_promotions_per_second():
    x, y = plots.promotions_per_second(synthetic())
    assert np.allclose(x, [0.1, 0.2, 0.3, 0.4, 0.5]) and np.allclose(y, 100.0)


def test_plots_without_data_are_skipped(tmp_path):
    r = synthetic(detectors=(), engine=None, cpu=False)
    assert plots.plot_cpu_overhead(r, tmp_path / "c.png") is None
    assert plots.plot_time_to_promote(r, tmp_path / "t.png") is None
    written, skipped = plots.plot_all(r, tmp_path / "out")
    assert sorted(os.path.basename(p) for p in written) == ["hit_ratio.png", "promotions.png",
                                                            "resident.png"]
    assert len(skipped) == 2 and all("\n" not in s for s in skipped)
    assert not (tmp_path / "c.png").exists()


def test_plot_all_with_every_chart(tmp_path):
    samples = synthetic("a", promotion={"time_to_promote_ns": np.arange(1, 1000) * 1e5})
    quantiles = synthetic("b", promotion={"time_to_promote_ns": {"p10": 1e6, "p50": 5e6,
                                                                 "p90": 2e7}})
    written, skipped = plots.plot_all({"a": samples, "b": quantiles}, tmp_path / "p")
    assert skipped == []
    assert sorted(os.path.basename(p) for p in written) == sorted(plots.FILES.values())
    for p in written:
        assert_png(p)


# -- heatmaps --------------------------------------------------------------------------------


def test_heatmap_png(tmp_path):
    data = hm.heatmap_data(synthetic(heatmap=True))
    assert data["counts"].shape == (6, 32) and data["bin_bytes"] == 256 << 10
    assert_png(hm.heatmap(out_png=tmp_path / "h.png", **data))
    counts = np.arange(12).reshape(3, 4)
    assert_png(hm.heatmap(counts, None, tmp_path / "plain.png"))
    assert_png(hm.heatmap(np.zeros((1, 1)), np.ones((1, 1)), tmp_path / "tiny.png"),
               min_size=1000)
    assert no_temp_files(tmp_path)


def test_heatmap_text_shades_and_tiers():
    data = hm.heatmap_data(synthetic(heatmap=True))
    text = hm.heatmap_text(width=60, height=8, **data)
    lines = text.plain.splitlines()
    assert lines[0] == "address 0x7f0000800000" and lines[9] == "address 0x7f0000000000"
    rows = lines[1:9]
    # sample 0 (no access: taken at the run start) is dropped: 5 intervals, 12 characters each
    assert all(len(row) == 60 for row in rows)
    assert set("".join(rows)) <= set(hm.SHADES)
    assert rows[-1] == "█" * 60                   # the hot low addresses
    assert rows[0] == "░" * 60
    styles = {str(span.style) for span in text.spans}
    assert hm.FAST_STYLE in styles and hm.SLOW_STYLE in styles
    assert "fast tier" in lines[-1] and "log scale (4 to 200 per cell)" in lines[-1]


def test_heatmap_text_without_tiers():
    text = hm.heatmap_text(np.ones((200, 300)), width=40, height=10)
    rows = text.plain.splitlines()[1:11]
    assert all(row == "█" * 40 for row in rows)
    assert "fast tier" not in text.plain


@pytest.mark.parametrize("counts, tier, match", [
    (np.ones(5), None, "2-D array"),
    (np.zeros((0, 3)), None, "2-D array"),
    (-np.ones((2, 2)), None, "non-negative"),
    (np.full((2, 2), np.nan), None, "finite"),
    (np.ones((2, 2)), np.ones((2, 3)), "tier_of_bin has shape"),
])
def test_heatmap_bad_input(counts, tier, match, tmp_path):
    with pytest.raises(ConfigError, match=match):
        hm.heatmap_text(counts, tier)
    with pytest.raises(ConfigError, match=match):
        hm.heatmap(counts, tier, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_no_heatmap_data():
    assert hm.heatmap_data(synthetic()) is None
    assert "\n" not in hm.NO_HEATMAP


def test_result_label_names_each_components_version():
    """A run's label keeps the version it chose ('klruscand v1 (pghot v0)'), so runs of two
    versions of one source are told apart in compare tables and plot legends."""
    r = synthetic(detectors=("klruscand",), engine="pghot")
    assert tables.result_label(r) == "klruscand (pghot)"
    r.meta["config"]["detectors"][0]["version"] = "v1"
    r.meta["config"]["engine"]["version"] = "v0"
    assert tables.result_label(r) == "klruscand v1 (pghot v0)"
