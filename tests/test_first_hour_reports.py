"""Issue 14, items 3-5: what `compare`/`report` print and plot for many sources, and result
files as input (schema validated on load, `report --plot` all or nothing)."""

import json
import os

import numpy as np
import pytest
from test_report import assert_png, synthetic

from tierscan.cli.main import main
from tierscan.errors import ConfigError
from tierscan.report import heatmap as hm
from tierscan.report import plots
from tierscan.report.tables import compare_table, summary_metrics, time_to_promote
from tierscan.sim.results import RunResult

MS = 1_000_000


def _with(result, **final):
    f = dict(result.final)
    f.update(final)
    return RunResult(meta=result.meta, series=result.series, final=f, timing=result.timing)


# -- item 3: compare output ------------------------------------------------------------------


def test_compare_records_keep_every_key_and_a_duration_bound_run_shows_its_outcome():
    a = synthetic("a")                                   # runtime_ns None: stopped at duration
    b = synthetic("b", detectors=("damon",), engine=None,
                  promotion={"promoted_pages": 7, "precision": None, "recall": None,
                             "time_to_promote_ns": None, "quality_note": "unknown: x"})
    recs = compare_table({"a": a, "b": b}).records()
    assert recs[0].keys() == recs[1].keys()              # the same keys whatever the outcome
    assert "time_to_promote_p50_ns" in recs[0] and recs[0]["time_to_promote_p50_ns"] is None
    assert recs[0]["runtime_ns"] is None
    assert recs[0]["accesses"] == 2000.0                 # 5 intervals x 400 accesses
    assert recs[0]["throughput"] == pytest.approx(2000 / 0.5)
    # one definition of "promoted": DAMON's summary count, not pgpromote_success (50)
    assert recs[1]["promoted_pages"] == 7
    assert recs[1]["precision"] is None and "unknown" in recs[1]["note"]


def test_summary_uses_the_same_promoted_pages_and_labels_the_wall_time():
    r = synthetic("d", detectors=("damon",), engine=None,
                  promotion={"promoted_pages": 7, "quality_note": "undefined: fits"})
    m = {x.key: x for x in summary_metrics(r)}
    assert m["promoted_pages"].value == 7 and m["pgpromote_success"].value == 50
    assert "set-up" in m["wall_time_s"].label
    assert m["promotion.quality_note"].value == "undefined: fits"


def test_a_source_that_promoted_nothing_says_why(capsys, tmp_path):
    r = synthetic("z", promotion={"promoted_pages": 0})
    (tmp_path / "z.json").write_text(r.to_json())
    (tmp_path / "y.json").write_text(synthetic("y").to_json())
    assert main(["report", str(tmp_path / "z.json"), str(tmp_path / "y.json")]) == 0
    out = capsys.readouterr().out
    assert "nothing promoted in 500 ms simulated" in out


def test_time_to_promote_is_the_exact_cdf():
    from tierscan.sim.promotion_metrics import cdf

    c = cdf(np.array([30, 10, 10, 20]) * MS, [1, 512, 1, 2])
    assert c == {"ns": [10 * MS, 20 * MS, 30 * MS], "pages": [513, 515, 516]}
    r = synthetic(promotion={"promoted_pages": 516, "time_to_promote_cdf": c})
    kind, (ns, cum) = time_to_promote(r)
    assert kind == "cdf" and cum[-1] == 516
    from tierscan.report.tables import ttp_quantile
    assert ttp_quantile(r, 50) == 10 * MS and ttp_quantile(r, 100) == 30 * MS


# -- item 4: plots for many sources ----------------------------------------------------------


def test_twelve_series_have_distinct_styles():
    styles = [plots.series_style(i) for i in range(12)]
    keys = {(s["color"], s["linestyle"], s["marker"]) for s in styles}
    assert len(keys) == 12
    assert len({s["color"] for s in styles}) == 12       # colour alone tells 12 apart


def test_promotions_plot_counts_sources_that_do_not_count_pgpromote_success():
    r = synthetic("d", detectors=("damon",), engine=None, promotion={"promoted_pages": 30})
    series = dict(r.series)
    series["pgpromote_success"] = np.zeros(6, np.int64)
    series["pgmigrate_success"] = np.array([0, 8, 8, 8, 8, 8], np.int64)
    vm = dict(r.final["vmstat"], pgpromote_success=0)
    d = RunResult(meta=r.meta, series=series, final=dict(r.final, vmstat=vm), timing=r.timing)
    x, y = plots.promotions_per_second(d)
    assert (y == (8 - 2) / 0.1).all()                    # migrated up = migrations - demotions


def test_many_source_plots_put_legends_outside(tmp_path, monkeypatch):
    results = {f"source{i}": synthetic(f"s{i}", promotion={"promoted_pages": i})
               for i in range(12)}
    seen = []
    real = plots._legend_outside

    def spy(ax, **kw):
        real(ax, **kw)
        ax.figure.canvas.draw()
        legend, axes = ax.get_legend().get_window_extent(), ax.get_window_extent()
        seen.append(legend.x0 >= axes.x1)                # right of the data, not over it

    monkeypatch.setattr(plots, "_legend_outside", spy)
    written, _ = plots.plot_all(results, tmp_path)
    assert len(written) == 4 and all(assert_png(p) is None for p in written)
    assert len(seen) == 4 and all(seen)                  # hit ratio, resident, promotions, CPU


def test_cpu_overhead_has_no_label_for_idle_daemons(tmp_path):
    a = synthetic("a")
    idle = _with(synthetic("b"), cpu_ns={"klruscand": 0.0})
    fig_path = plots.plot_cpu_overhead({"busy": a, "idle": idle}, tmp_path / "cpu.png")
    assert_png(fig_path)


def test_heatmap_draws_the_tier_an_interval_began_with(monkeypatch, tmp_path):
    """A bin on the slow tier for all of interval t, promoted at its end, is drawn slow."""
    counts = np.array([[0, 0], [5, 5], [5, 5]], float)
    tier = np.array([[1, 1], [0, 1], [0, 0]])            # bin 0 promoted at the end of t=1
    c, t, time = hm._align(counts, tier, np.array([0, 100, 200]) * MS)
    assert c.shape == (2, 2) and time.tolist() == [100 * MS, 200 * MS]   # no empty column
    assert t.tolist() == [[1, 1], [0, 1]]
    assert_png(hm.heatmap(counts, tier, tmp_path / "h.png", time_ns=np.array([0, 1, 2]) * MS))


# -- item 5: result files are input too ------------------------------------------------------


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["final"]["vmstat"].update(pgpromote_success="lots"),
     "final.vmstat.pgpromote_success"),
    (lambda d: d["final"].update(promotion="fast"), "final.promotion"),
    (lambda d: d["final"]["vmstat"].update(numa_hit=-1), "final.vmstat.numa_hit"),
    (lambda d: d["final"].update(runtime_ns="soon"), "final.runtime_ns"),
    (lambda d: d["final"].update(cpu_ns={"klruscand": "x"}), "final.cpu_ns.klruscand"),
    (lambda d: d["final"].update(vmstat_node=[{}]), "final.vmstat_node"),
    (lambda d: d["final"].update(promotion={"precision": 1.5}), "final.promotion.precision"),
    (lambda d: d["final"].update(heatmap={"bin_bytes": 0}), "final.heatmap.bin_bytes"),
    (lambda d: d["timing"].update(wall_time_s=-2), "timing.wall_time_s"),
    (lambda d: d["series"]["served"].update(shape=[6, 1], data=[0.0] * 6), "series.served"),
])
def test_a_hand_edited_result_is_refused_on_load(edit, field, tmp_path, capsys):
    doc = json.loads(synthetic().to_json())
    edit(doc)
    p = tmp_path / "r.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=f"r.json: {field}: expected"):
        RunResult.load(p)
    assert main(["report", str(p), "--plot", str(tmp_path / "plots")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and field in err and "internal error" not in err
    assert not (tmp_path / "plots").exists()


def test_report_plot_writes_all_pngs_or_none(tmp_path, monkeypatch, capsys):
    r = synthetic(promotion={"promoted_pages": 3, "time_to_promote_ns": {"p50": 2e6}})
    p = tmp_path / "r.json"
    r.save(p)
    out = tmp_path / "plots"

    def boom(*a, **k):
        raise ConfigError("the sixth chart failed")

    monkeypatch.setattr(plots, "plot_time_to_promote", boom)
    assert main(["report", str(p), "--plot", str(out)]) == 2
    assert not out.exists() or os.listdir(out) == []
