"""The pghot RFC v3 experiment's bookkeeping (experiments/pghot_v3.py): the fitted access count
and the published orderings. The full-scale runs themselves are in docs/reproductions.md."""

import pytest

from tierscan.experiments.pghot_v3 import (APPROX, ORDERINGS, PUBLISHED, SOURCES,
                                           check_orderings, config, fit_accesses_per_thread)
from tierscan.machine import Machine


def table(times: dict) -> dict:
    return {"modes": {str(m): {s: {"runtime_us": t} for s, t in row.items()}
                      for m, row in times.items()}}


def published_times() -> dict:
    return {m: {s: PUBLISHED[m][s][0] for s in SOURCES} for m in PUBLISHED}


def test_every_ordering_holds_on_the_published_numbers():
    """The orderings are read off the cover letter, so its own numbers must satisfy them."""
    res = check_orderings(table(published_times()))
    assert len(res) == sum(len(v) for v in ORDERINGS.values())
    assert all(r["holds"] for r in res), [r for r in res if not r["holds"]]


@pytest.mark.parametrize("mode, a, b, factor", [
    (2, "klruscand", "ibs", 1 + 2 * APPROX),     # "≈" broken by a 6% gap
    (2, "numab2-pghot", "numab0", 0.95),       # "≪" broken: only 5% faster
    (1, "numab2-pghot", "klruscand", 1.0),     # "<" broken by a tie
])
def test_an_ordering_fails_when_the_gap_breaks_it(mode, a, b, factor):
    times = published_times()
    times[mode][a] = times[mode][b] * factor
    res = check_orderings(table(times))
    failed = [r["ordering"] for r in res if not r["holds"]]
    assert any(r.startswith(a) and r.endswith(b) for r in failed), failed


def test_the_fit_makes_numab0_mode1_take_the_published_time():
    m = Machine.preset("zen5-cxl")
    n = fit_accesses_per_thread(m)
    lat = 0.5 * m.load_ns[0][2] + 0.5 * m.store_ns[0][2]
    assert abs(n * lat / 1000 - PUBLISHED[1]["numab0"][0]) <= lat / 1000
    assert config(1, "numab0", latency_model="idle")["workload"]["accesses_per_thread"] == n
    assert config(3, "klruscand", latency_model="idle")["workload"][
        "accesses_per_thread"] == n   # one fit for all
    # the cited preset (docs/cost-model.md): 130 ns DRAM, 283 ns CXL, store = load, so the fit
    # is round(115,668,771 us / 283 ns) = 408,723,572
    assert (m.load_ns[0][0], m.load_ns[0][2], m.store_ns[0][2]) == (130, 283, 283)
    assert n == 408_723_572


@pytest.mark.parametrize("mode, write_fraction", [(2, 0.0), (3, 0.5)])
def test_fit_each_fits_every_mode_to_its_own_numab0_time(mode, write_fraction):
    m = Machine.preset("zen5-cxl")
    n = config(mode, "numab0", fit="each", latency_model="idle")["workload"][
        "accesses_per_thread"]
    lat = (1 - write_fraction) * m.load_ns[0][2] + write_fraction * m.store_ns[0][2]
    assert abs(n * lat / 1000 - PUBLISHED[mode]["numab0"][0]) <= lat / 1000
    assert n != fit_accesses_per_thread(m)
    with pytest.raises(ValueError, match="fit"):
        config(mode, "numab0", fit="mode3")


@pytest.mark.parametrize("memory", [None, {"dram_channels": 2, "cxl_devices": 2}])
def test_the_loaded_fit_makes_numab0_mode1_take_the_published_time(memory):
    """Under the loaded model the fit divides by the engine's own solved time per access, so
    NUMAB0 Mode 1 (nothing moves) lasts the published time, scaled with the run."""
    from tierscan.experiments.pghot_v3 import machine_for
    from tierscan.sim.config import config_from_dict
    from tierscan.sim.run import run_experiment

    if memory and Machine.preset("zen5-cxl").nodes[0].memory is None:
        pytest.skip("the zen5-cxl preset has no memory configuration yet")
    scale = 0.002
    d = config(1, "numab0", scale=scale, memory=memory)
    assert d["latency_model"] == "loaded"
    if memory:
        assert Machine.from_dict(d["machine"]) == machine_for(memory)
    r = run_experiment(config_from_dict(d))
    assert r.final["runtime_ns"] / 1000 == pytest.approx(PUBLISHED[1]["numab0"][0] * scale,
                                                         rel=2e-3)


@pytest.mark.slow   # full-scale: CI only (`make test` with CI=true); see pyproject
def test_every_run_gets_a_labelled_progress_bar_that_is_closed():
    import io

    from rich.console import Console

    from tierscan.cli.run import RunProgress
    from tierscan.experiments.pghot_v3 import reproduce

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    bars = []

    def bar(mode, source, run):
        bars.append(RunProgress(True, console, min_interval_s=0.0, label=f"mode {mode} {source}"))
        return bars[-1]

    reproduce((2,), scale=0.002, run_progress=bar)
    assert len(bars) == len(SOURCES)
    assert all(b._bar is None and b.engine is not None for b in bars)     # closed, and used
    for s in SOURCES:
        assert f"mode 2 {s}" in buf.getvalue()


@pytest.mark.parametrize("memory, flag", [({"dram_channels": 3}, "--dram-channels"),
                                          ({"cxl_devices": 3}, "--cxl-devices")])
def test_only_configurations_the_published_sizes_allow(memory, flag):
    from tierscan.errors import ConfigError

    with pytest.raises(ConfigError, match=flag):
        config(1, "numab0", scale=0.002, memory=memory)
