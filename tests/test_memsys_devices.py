"""Curve interpolation and extrapolation rules (memsys/devices.py docstring)."""

import numpy as np
import pytest

from tierscan.memsys.devices import DeviceModel


def dram():
    # a half-duplex device: 100% reads peak at 100 GB/s, 50% reads at 60 GB/s
    return DeviceModel([(1.0, [0, 50, 90, 100], [100, 110, 150, 300]),
                        (0.5, [0, 30, 55, 60], [100, 120, 170, 320])], duplex="half")


def test_interpolates_between_points():
    d = dram()
    assert d.latency(25, 1.0) == pytest.approx(105.0, abs=0.3)
    assert d.latency(0, 1.0) == 100.0
    assert d.latency(100, 1.0) == pytest.approx(300.0)
    assert d.increment(50, 1.0) == pytest.approx(10.0, abs=0.3)


def test_below_first_point_is_flat():
    d = DeviceModel([(1.0, [5, 50, 100], [120, 130, 200])])
    assert d.latency(0.0) == 120.0 and d.latency(4.0) == 120.0


def test_running_max_makes_curves_monotone():
    d = DeviceModel([(1.0, [0, 10, 20, 30], [100, 95, 140, 130])])
    grid = np.linspace(0, 30, 301)
    lat = [d.latency(b) for b in grid]
    assert np.all(np.diff(lat) >= -1e-9)
    assert d.latency(30) == pytest.approx(140.0)


def test_past_the_peak_forward_continues_and_inverse_caps():
    d = dram()
    # forward: finite, increasing, the last segment's slope continued
    assert d.latency(110, 1.0) > d.latency(100, 1.0) > 0
    assert np.isfinite(d.latency(1e6, 1.0))
    # inverse: any rise at or past the last point's gives exactly the peak, never more
    inc = d.increment(100, 1.0)
    assert d.bandwidth_at([inc, inc * 2, 1e9], 1.0) == pytest.approx([100, 100, 100])
    assert d.bandwidth_at([0.0], 1.0)[0] == pytest.approx(0.0, abs=1e-3)


def test_inverse_undoes_forward():
    d = dram()
    for bw in (10, 40, 75, 95):
        for r in (1.0, 0.75, 0.5):
            assert d.bandwidth_at([d.increment(bw * d.peak(r) / 100, r)], r)[0] == \
                pytest.approx(bw * d.peak(r) / 100, rel=2e-3)


def test_read_ratio_interpolates_at_equal_utilisation():
    d = dram()
    assert d.peak(0.75) == pytest.approx(80.0)
    # halfway in ratio: the latency at 50% utilisation is the mean of both curves' there
    mid = 0.5 * (d.latency(50, 1.0) + d.latency(30, 0.5))
    assert d.latency(40, 0.75) == pytest.approx(mid, rel=1e-3)
    # outside the measured ratios: the nearest curve
    assert d.latency(20, 0.2) == d.latency(20, 0.5)


def test_duplex_effective_bandwidth():
    half = dram()
    assert half.effective(30, 10) == (40, 0.75)
    full = DeviceModel([(1.0, [0, 40], [250, 400])], duplex="full")
    # full duplex with a read-only curve: the busier direction, on it
    assert full.effective(30, 10) == (30, 1.0) and full.effective(10, 35) == (35, 1.0)
    # full duplex measured at several mixes: the measurement knows what the link does
    mixed = DeviceModel([(1.0, [0, 40], [250, 400]), (0.5, [0, 60], [250, 450])], duplex="full")
    assert mixed.effective(30, 10) == (40, 0.75) and mixed.peak(0.5) == 60.0


def test_bad_curves_are_rejected():
    with pytest.raises(ValueError):
        DeviceModel([(1.0, [0, 10, 5], [100, 110, 120])])
    with pytest.raises(ValueError):
        DeviceModel([(1.0, [0, 10], [0, 110])])
    with pytest.raises(ValueError):
        DeviceModel([], duplex="half")
