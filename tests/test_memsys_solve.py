"""The closed loop (memsys/solve.py): convergence, uniqueness, saturation, MLP, sharing, and the
traffic a store miss causes (memsys/system.py)."""

import numpy as np
import pytest

from tierscan.memsys.devices import DeviceModel
from tierscan.memsys.solve import BG_CAP, solve
from tierscan.memsys.system import group_coefficients

DRAM = DeviceModel([(1.0, [0, 60, 100, 115, 120], [110, 120, 160, 250, 400]),
                    (0.5, [0, 40, 70, 80], [110, 125, 170, 420])], duplex="half")
CXL = DeviceModel([(1.0, [0, 20, 35, 40], [250, 260, 320, 600])], duplex="full")
LOAD = np.array([110.0, 250.0])


def coefs(f, w=0.0, mlp=1.0, **kw):
    return group_coefficients(np.asarray(f, float), w, mlp, 0.0, LOAD, LOAD, **kw)


def run(groups, devices=(DRAM, CXL), **kw):
    T = np.array([g[0] for g in groups], float)
    cs = [coefs(*g[1:]) for g in groups]
    tau0 = np.array([c[0] for c in cs])
    A, rd, wr = (np.array([c[i] for c in cs]) for i in (1, 2, 3))
    return solve(list(devices), T, tau0, A, rd, wr, **kw), (T, tau0, A, rd, wr)


def residual(sol, devices, inputs):
    """How far the solution is from closing the loop, per device (ns of latency)."""
    T, tau0, A, rd, wr = inputs
    assert np.allclose(sol.tau, tau0 + A @ sol.ell)
    out = []
    for m, dev in enumerate(devices):
        b, r = dev.effective(sol.read[m], sol.write[m])
        if b >= dev.peak(r) * (1 - 1e-6):        # saturated: serving the peak
            out.append(abs(b - dev.peak(r)) / dev.peak(r) * 100)
        else:
            out.append(abs(dev.increment(b, r) - sol.ell[m]))
    return max(out)


@pytest.mark.parametrize("groups", [
    [(64, [0, 1], 0.5, 1.0)],
    [(64, [0.3, 0.7], 0.5, 4.0)],
    [(32, [1, 0], 0.0, 8.0), (32, [0.2, 0.8], 0.5, 2.0)],
    [(16, [0.5, 0.5], 0.3, 30.0), (48, [0.9, 0.1], 0.0, 10.0), (8, [0, 1], 1.0, 3.0)],
])
def test_fixed_point_converges_and_is_unique(groups):
    sol, inputs = run(groups)
    assert sol.sweeps < 60
    assert residual(sol, (DRAM, CXL), inputs) < 0.05
    assert np.all(sol.ell >= 0) and np.all(np.isfinite(sol.ell))
    # the same point from far away: a large warm start, and from zero
    for start in ([0.0, 0.0], [5000.0, 5000.0], [0.0, 900.0]):
        other, _ = run(groups, ell0=np.array(start))
        assert other.tau == pytest.approx(sol.tau, rel=1e-4)


def test_random_monotone_families_have_one_fixed_point():
    rng = np.random.default_rng(7)
    for _ in range(20):
        devs = []
        for duplex in ("half", "full"):
            curves = []
            for r in (0.5, 1.0):
                bw = np.concatenate([[0], np.sort(rng.uniform(1, 100, 5))])
                lat = 100 + np.cumsum(rng.uniform(0, 60, 6))
                curves.append((r, bw, lat))
            devs.append(DeviceModel(curves, duplex=duplex))
        groups = [(int(rng.integers(1, 64)), rng.dirichlet([1, 1]), rng.uniform(0, 1),
                   rng.uniform(1, 20)) for _ in range(3)]
        sol, inputs = run(groups, devices=devs)
        assert residual(sol, devs, inputs) < 0.05
        other, _ = run(groups, devices=devs, ell0=np.array([3000.0, 3000.0]))
        assert other.tau == pytest.approx(sol.tau, rel=1e-4)


def test_time_falls_with_mlp_until_the_device_saturates():
    taus = []
    mlps = [1, 2, 4, 8, 16, 32, 64, 128]
    for mlp in mlps:
        sol, _ = run([(64, [1, 0], 0.0, float(mlp))])
        taus.append(sol.tau[0])
    floor = 64 * 64 / DRAM.peak(1.0)          # ns per access when serving the peak
    assert all(t >= floor * (1 - 1e-6) for t in taus)
    assert taus[0] > taus[1] > taus[2] > taus[3]           # below the knee: faster
    assert taus[-1] == pytest.approx(floor, rel=1e-3)      # past it: pinned at the peak
    assert taus[-2] == pytest.approx(floor, rel=1e-3)
    sat, _ = run([(64, [1, 0], 0.0, 128.0)])
    assert sat.read[0] == pytest.approx(DRAM.peak(1.0), rel=1e-3)
    assert np.isfinite(sat.ell[0]) and sat.ell[0] > 0


def test_two_groups_on_one_node_slow_each_other():
    alone, _ = run([(32, [1, 0], 0.0, 8.0)])
    shared, _ = run([(32, [1, 0], 0.0, 8.0), (32, [1, 0], 0.0, 8.0)])
    apart, _ = run([(32, [1, 0], 0.0, 8.0), (32, [0, 1], 0.0, 8.0)])
    assert shared.tau[0] > alone.tau[0] * 1.05
    assert shared.tau[0] == pytest.approx(shared.tau[1])
    assert apart.tau[0] == pytest.approx(alone.tau[0], rel=1e-6)


def test_write_allocate_doubles_store_traffic():
    _, _, rd, wr = coefs([1, 0], w=1.0)
    assert rd[0] == 64 and wr[0] == 64          # RFO read + write-back per store miss
    _, _, rd_nt, wr_nt = coefs([1, 0], w=1.0, non_temporal=True)
    assert rd_nt[0] == 0 and wr_nt[0] == 64
    assert (rd[0] + wr[0]) == 2 * (rd_nt[0] + wr_nt[0])
    _, _, rd, wr = coefs([1, 0], w=0.5)
    assert rd[0] + wr[0] == 96                  # pghot Mode 1: 1.5x the bytes of a load


def test_full_duplex_link_absorbs_write_backs():
    # the same bytes on a half-duplex DRAM slow loads; a CXL link's write direction is free
    reads_only, _ = run([(64, [0, 1], 0.0, 16.0)])
    mixed, _ = run([(64, [0, 1], 0.5, 16.0)])
    assert mixed.tau[0] == pytest.approx(reads_only.tau[0], rel=1e-3)
    d_reads, _ = run([(64, [1, 0], 0.0, 16.0)])
    d_mixed, _ = run([(64, [1, 0], 0.5, 16.0)])
    assert d_mixed.tau[0] > d_reads.tau[0] * 1.1


def test_background_traffic_slows_and_is_capped():
    quiet, _ = run([(64, [0, 1], 0.0, 4.0)])
    busy, _ = run([(64, [0, 1], 0.0, 4.0)], bg_r=np.array([0.0, 20.0]))
    assert busy.tau[0] > quiet.tau[0]
    storm, _ = run([(64, [0, 1], 0.0, 4.0)], bg_r=np.array([0.0, 1e6]))
    assert np.isfinite(storm.tau[0]) and storm.tau[0] > busy.tau[0]
    assert storm.read[1] == pytest.approx(CXL.peak(), rel=1e-3)
    assert BG_CAP < 1


def test_a_node_without_curves_stays_idle():
    sol, _ = run([(64, [0.5, 0.5], 0.0, 64.0)], devices=(None, CXL))
    assert sol.ell[0] == 0.0 and sol.ell[1] > 0


def test_compiled_one_group_solve_equals_numpy_form():
    """The compiled one-group solve (solve.COMPILED) against the numpy form, bit for bit: every
    1-D solve of random single-group loops (cold and warm starts, write-backs and non-temporal
    stores, background traffic, demand past a device's peak, a full-duplex link with its
    per-direction rule, ratios between and outside the measured curves)."""
    from tierscan.memsys import solve as sv

    rng = np.random.default_rng(17)
    cxl2 = DeviceModel([(0.34, [0, 10, 30, 44], [240, 250, 300, 700]),
                        (0.9, [0, 12, 25, 29], [240, 255, 320, 650])], duplex="full")
    fields = ("ell", "tau", "read", "write", "ratio")
    cases = 0
    for devices in ((DRAM, CXL), (DRAM, cxl2), (DRAM, None, cxl2)):
        n = len(devices)
        for _ in range(60):
            f = rng.random(n) * (rng.random(n) < 0.8)
            f = f / f.sum() if f.sum() > 0 else np.eye(n)[0]
            c = group_coefficients(f, rng.random() * (rng.random() < 0.7),
                                   10 ** rng.uniform(0, 1.5), rng.uniform(0, 30),
                                   LOAD[np.arange(n) % 2], LOAD[np.arange(n) % 2] * 1.1,
                                   h=rng.random() * 0.5,
                                   walks=rng.random() * 0.1, h_pt=rng.random(),
                                   non_temporal=bool(rng.random() < 0.3))
            T = np.array([float(2 ** rng.integers(0, 9))])
            bg = rng.random(n) * rng.integers(0, 60) * (rng.random(n) < 0.5)
            ell0 = None if rng.random() < 0.3 else rng.random(n) * 10.0 ** rng.uniform(-2, 4)
            args = (list(devices), T, np.array([c[0]]), c[1][None], c[2][None], c[3][None],
                    bg, bg * rng.random(), ell0)
            try:
                sv.COMPILED = False
                ref = sv.solve(*args)
            finally:
                sv.COMPILED = True
            got = sv.solve(*args)
            assert got.sweeps == ref.sweeps
            for k in fields:
                assert getattr(got, k).tobytes() == getattr(ref, k).tobytes(), k
            cases += 1
    assert cases == 180
