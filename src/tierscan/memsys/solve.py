"""The closed loop (DESIGN §6, issue 12 item 3): each group's access rate and each device's
latency, solved together per tick.

Each thread of group g keeps ``mlp`` misses in flight, so one access takes

    τ_g = τ0_g + Σ_m A[g,m] · ℓ_m            (ns per access per thread)

where τ0_g is its time with every device idle (compute, idle latencies, LLC hits, page walks,
all over mlp) and ℓ_m is device m's queueing increment over its idle latency; A[g,m] is the
share of the group's memory time spent at m, over mlp. Its threads then move

    R_m = Σ_g T_g · rd[g,m] / τ_g + bg_r[m],  W_m = Σ_g T_g · wr[g,m] / τ_g + bg_w[m]

bytes per ns (= GB/s) read from and written to m (rd/wr: bytes per access; bg: kernel traffic
such as migration copies). The device's curve ties ℓ_m to its traffic: ℓ_m = curve_m(R_m, W_m)
− curve_m(0). In inverse form, the loop is closed when for every device

    D_m(ℓ) = curve_m⁻¹(ℓ_m) − B_m(ℓ) = 0       (B_m: R+W, or max(R, W) for a full-duplex link)

**Uniqueness.** curve⁻¹ is non-decreasing (devices.py makes every curve monotone) and B_m
falls strictly as any ℓ_k rises (every group that uses m slows down). When the bytes a group
moves at a node are proportional to its latency weight there (equal load and store
latencies, each node's read ratio held fixed), B_m = ∂Ψ/∂ℓ_m with Ψ(ℓ) = Σ_g T_g κ_g log τ_g(ℓ),
concave; D is then the gradient of the strictly convex F(ℓ) = Σ_m ∫₀^ℓm curve_m⁻¹ − Ψ(ℓ),
whose unique minimiser (projected on ℓ ≥ 0) is the unique fixed point. For a single device
it is simpler still: D_m is strictly increasing in ℓ_m, so the root is unique whatever the
traffic mix.

**Algorithm.** Gauss-Seidel over the devices that carry traffic: each sweep solves every
device's own equation D_m(ℓ_m; others fixed) = 0 exactly (it is strictly increasing in ℓ_m)
by a vectorised grid bisection, then recomputes the read ratios. Exact coordinate
minimisation of a strictly convex C¹ function converges to its minimiser. Convergence
criterion: every group's τ and every device's read ratio change by less than ``TOL``
(relative) in a sweep, at most ``MAX_SWEEPS`` sweeps (the result reports how many it took).

**Saturation.** curve⁻¹ is flat at the device's peak past its last measured point, so a demand
beyond the peak raises ℓ until the devices serve exactly the peak (Little's law), finite.
Background traffic is capped at ``BG_CAP`` of the peak, so kernel copies alone can never
leave the workload no bandwidth at all (a guard; kernel traffic is bounded by the daemons'
CPU time long before that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .devices import GRID

COMPILED = True     # False: one group's sweeps run in numpy too (_solve_one)
TOL = 1e-6
MAX_SWEEPS = 60
BG_CAP = 0.9
_GRID = 33
_ROUNDS = 4         # grid refinements per 1-D solve: (1/32)^4 of the bracket, then linear
_WARM = 0.02        # a warm start first tries the bracket x0 (1 ± _WARM) ...
_WARM_ROUNDS = 2    # ... refined twice: (1/32)^2 of it


@dataclass
class Solution:
    ell: np.ndarray       # queueing increment per node (ns)
    tau: np.ndarray       # ns per access per thread, per group
    read: np.ndarray      # GB/s read from each node
    write: np.ndarray     # GB/s written to each node
    ratio: np.ndarray     # read ratio per node (1 where idle)
    sweeps: int


def _traffic(T, tau, rd, wr, bg_r, bg_w):
    x = T / tau
    return x @ rd + bg_r, x @ wr + bg_w


def solve(devices, T, tau0, A, rd, wr, bg_r=None, bg_w=None, ell0=None) -> Solution:
    """The fixed point for groups (rows of A/rd/wr) on nodes (columns; ``devices[m]`` None
    for a node without curves). ``ell0`` warm-starts the iteration (a previous solution)."""
    T, tau0 = np.asarray(T, float), np.asarray(tau0, float)
    A, rd, wr = (np.asarray(a, float) for a in (A, rd, wr))
    n = A.shape[1]
    bg_r = np.zeros(n) if bg_r is None else np.asarray(bg_r, float).copy()
    bg_w = np.zeros(n) if bg_w is None else np.asarray(bg_w, float).copy()
    for m, dev in enumerate(devices):          # the guard: kernel traffic leaves room
        if dev is not None:
            b_eff, r = dev.effective(bg_r[m], bg_w[m])
            cap = BG_CAP * dev.peak(r)
            if b_eff > cap:
                bg_r[m] *= cap / b_eff
                bg_w[m] *= cap / b_eff
    ell = np.zeros(n) if ell0 is None else np.asarray(ell0, float).copy()
    active = [m for m, d in enumerate(devices) if d is not None and
              (A[:, m].any() or bg_r[m] > 0 or bg_w[m] > 0)]
    for m in range(n):
        if m not in active:
            ell[m] = 0.0
    tau = tau0 + A @ ell
    read, write = _traffic(T, tau, rd, wr, bg_r, bg_w)
    ratio = _ratios(devices, read, write)
    if COMPILED and T.size == 1 and active:     # the sweeps below in one compiled call
        tau_1, sweeps = _sweeps_one_group(*_packed(devices), _unit(GRID),
                                          np.array(active, np.int64), T[0], tau[0], A[0],
                                          rd[0], wr[0], bg_r, bg_w, ell, read, write, ratio)
        return Solution(ell, np.array([tau_1]), read, write, ratio, sweeps)
    sweeps = 0
    while active and sweeps < MAX_SWEEPS:
        sweeps += 1
        old_tau, old_ratio = tau, ratio
        for m in active:
            rest = tau - A[:, m] * ell[m]
            ell[m] = _solve_one(devices[m], T, rest, A[:, m], rd[:, m], wr[:, m], bg_r[m],
                                bg_w[m], ratio[m], ell[m])
            tau = rest + A[:, m] * ell[m]
        read, write = _traffic(T, tau, rd, wr, bg_r, bg_w)
        ratio = _ratios(devices, read, write)
        if np.all(np.abs(tau - old_tau) <= TOL * tau) and \
                np.all(np.abs(ratio - old_ratio) <= TOL):
            break
    return Solution(ell, tau, read, write, ratio, sweeps)


def _ratios(devices, read, write) -> np.ndarray:
    out = np.ones(len(devices))
    for m, dev in enumerate(devices):
        if dev is not None:
            out[m] = dev.effective(read[m], write[m])[1]
    return out


_STEPS = np.arange(_GRID, dtype=float)
_UNIT: dict[int, np.ndarray] = {}       # np.linspace(0, 1, n) per n (read only)


def _grid(lo, hi) -> np.ndarray:
    """``np.linspace(lo, hi, _GRID)`` bit for bit, without its generic set-up (it is most of
    a grid round's cost on these tiny arrays): numpy's own steps, arange(num) · step + lo
    with the last point set to hi (a zero step, numpy's denormal case: arange / div · delta).
    tests/test_tick_paths.py compares the two."""
    delta = float(hi) - float(lo)
    step = delta / (_GRID - 1)
    if step == 0:
        y = _STEPS / (_GRID - 1)
        y *= delta
    else:
        y = _STEPS * step
    y += lo
    y[-1] = hi
    return y


def _unit(n: int) -> np.ndarray:
    u = _UNIT.get(n)
    if u is None:
        u = _UNIT[n] = np.linspace(0.0, 1.0, n)
        u.flags.writeable = False
    return u


def _solve_one(dev, T, rest, a, rd, wr, bg_r, bg_w, r, x0=0.0) -> float:
    """The root of curve⁻¹(x) − B(x) = 0 in x ≥ 0, others' increments held (``rest``: each
    group's τ without this node's increment). Strictly increasing in x, so bisection. (One
    group with COMPILED: _sweeps_one_group calls _solve_one_group, this arithmetic compiled.)"""
    peak, lat = dev.at_ratio(r)
    u_grid = _unit(lat.size)
    x_last = float(lat[-1] - lat[0])
    full = dev.per_direction
    rd_T, wr_T = rd * T, wr * T

    def excess(x):                              # x: (k,) candidate increments
        inv = 1.0 / (rest[:, None] + a[:, None] * x[None, :])
        R = rd_T @ inv + bg_r
        W = wr_T @ inv + bg_w
        b = np.maximum(R, W) if full else R + W
        return np.interp(x + lat[0], lat, u_grid) * peak - b     # dev.bandwidth_at, inlined

    if x0 > 0:                                  # warm start: a narrow bracket first
        lo, hi = x0 * (1 - _WARM), x0 * (1 + _WARM)
        e_lo, e_hi = excess(np.array([lo, hi]))
        if e_lo < 0 <= e_hi:
            return _refine(excess, lo, hi, _WARM_ROUNDS)
    lo, hi = 0.0, max(x_last, 1e-9)
    if excess(np.array([0.0]))[0] >= 0:
        return 0.0
    while excess(np.array([hi]))[0] < 0:       # demand above the peak at the last point:
        lo, hi = hi, hi * 2                     # the root lies past it, where the inverse is flat
        if hi > 1e12:
            return hi
    return _refine(excess, lo, hi, _ROUNDS)


def _refine(excess, lo, hi, rounds) -> float:
    """Grid bisection of an increasing function with excess(lo) < 0 <= excess(hi): each round
    evaluates _GRID points at once and keeps the cell holding the root; then one linear step."""
    for _ in range(rounds):
        xs = _grid(lo, hi)
        e = excess(xs)
        i = int(np.argmax(e >= 0))              # the first candidate at or past the root
        if i == 0:
            return float(lo)
        lo, hi = xs[i - 1], xs[i]
    e_lo, e_hi = excess(np.array([lo, hi]))
    return float(lo + (hi - lo) * (-e_lo) / (e_hi - e_lo)) if e_hi > e_lo else float(hi)


# ---- the one-group solve, compiled (its numpy form: _solve_one, _refine, _grid) ----
# A few dozen tiny numpy calls per 1-D solve were most of a tick's solve (~15 us each, 400 us a
# solve); the same arithmetic on scalars, in the same order, gives the same floats
# (tests/test_memsys_solve.py compares the two on 180 random one-group solves).

@njit(cache=True, nogil=True)
def _interp(x, xp, fp):
    """np.interp(x, xp, fp) of one x on strictly ascending, finite xp (numpy's formula; its
    fall-backs for a non-finite slope never apply to these tables)."""
    n = xp.size
    if x < xp[0]:
        return fp[0]
    if x >= xp[n - 1]:
        return fp[n - 1]
    lo, hi = 0, n - 1                           # xp[lo] <= x < xp[hi]
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if xp[mid] <= x:
            lo = mid
        else:
            hi = mid
    slope = (fp[lo + 1] - fp[lo]) / (xp[lo + 1] - xp[lo])
    return slope * (x - xp[lo]) + fp[lo]


@njit(cache=True, nogil=True)
def _excess_one(x, peak, lat, u_grid, full, rd_T, wr_T, rest, a, bg_r, bg_w):
    inv = 1.0 / (rest + a * x)
    R = 0.0 + rd_T * inv + bg_r                 # numpy's matmul: a sum of one term from 0
    W = 0.0 + wr_T * inv + bg_w
    b = max(R, W) if full else R + W
    return _interp(x + lat[0], lat, u_grid) * peak - b


@njit(cache=True, nogil=True)
def _refine_one(lo, hi, rounds, peak, lat, u_grid, full, rd_T, wr_T, rest, a, bg_r, bg_w):
    xs = np.empty(_GRID)
    for _ in range(rounds):
        delta = hi - lo                         # _grid(lo, hi)
        step = delta / (_GRID - 1)
        for i in range(_GRID):
            xs[i] = (i / (_GRID - 1) * delta if step == 0 else i * step) + lo
        xs[_GRID - 1] = hi
        first = 0                               # np.argmax(e >= 0): 0 when none is
        for i in range(_GRID):
            if _excess_one(xs[i], peak, lat, u_grid, full, rd_T, wr_T, rest, a, bg_r,
                           bg_w) >= 0:
                first = i
                break
        if first == 0:
            return lo
        lo, hi = xs[first - 1], xs[first]
    e_lo = _excess_one(lo, peak, lat, u_grid, full, rd_T, wr_T, rest, a, bg_r, bg_w)
    e_hi = _excess_one(hi, peak, lat, u_grid, full, rd_T, wr_T, rest, a, bg_r, bg_w)
    return lo + (hi - lo) * (-e_lo) / (e_hi - e_lo) if e_hi > e_lo else hi


@njit(cache=True, nogil=True)
def _solve_one_group(peak, lat, u_grid, full, T, rest, a, rd, wr, bg_r, bg_w, x0):
    rd_T, wr_T = rd * T, wr * T
    if x0 > 0:
        lo, hi = x0 * (1 - _WARM), x0 * (1 + _WARM)
        e_lo = _excess_one(lo, peak, lat, u_grid, full, rd_T, wr_T, rest, a, bg_r, bg_w)
        e_hi = _excess_one(hi, peak, lat, u_grid, full, rd_T, wr_T, rest, a, bg_r, bg_w)
        if e_lo < 0 <= e_hi:
            return _refine_one(lo, hi, _WARM_ROUNDS, peak, lat, u_grid, full, rd_T, wr_T,
                               rest, a, bg_r, bg_w)
    lo, hi = 0.0, max(lat[lat.size - 1] - lat[0], 1e-9)
    if _excess_one(0.0, peak, lat, u_grid, full, rd_T, wr_T, rest, a, bg_r, bg_w) >= 0:
        return 0.0
    while _excess_one(hi, peak, lat, u_grid, full, rd_T, wr_T, rest, a, bg_r, bg_w) < 0:
        lo, hi = hi, hi * 2
        if hi > 1e12:
            return hi
    return _refine_one(lo, hi, _ROUNDS, peak, lat, u_grid, full, rd_T, wr_T, rest, a, bg_r,
                       bg_w)


_PACKED: dict = {}      # the device arrays of a devices list (kept with the list's models)


def _packed(devices) -> tuple:
    """(curves, ratios, peaks, tables, per_direction) per node, padded to the most curves:
    DeviceModel's arrays in the form the compiled sweeps read (a node without curves: 0)."""
    key = tuple(id(d) for d in devices)
    hit = _PACKED.get(key)
    if hit is not None:
        return hit[1]
    n, c = len(devices), max((d.ratios.size for d in devices if d is not None), default=1)
    curves = np.zeros(n, np.int64)
    ratios, peaks = np.zeros((n, c)), np.zeros((n, c))
    tables = np.zeros((n, c, GRID))
    per_direction = np.zeros(n, np.bool_)
    for m, d in enumerate(devices):
        if d is not None:
            k = curves[m] = d.ratios.size
            ratios[m, :k], peaks[m, :k], tables[m, :k] = d.ratios, d.peaks, d._lat_inv
            per_direction[m] = d.per_direction
    packed = (curves, ratios, peaks, tables, per_direction)
    if len(_PACKED) >= 8:
        _PACKED.clear()
    _PACKED[key] = (tuple(devices), packed)      # the models stay alive: their ids stay theirs
    return packed


@njit(cache=True, nogil=True)
def _at_ratio(curves, ratios, peaks, tables, r):
    """DeviceModel.at_ratio(r) (strict tables) of one node's padded arrays."""
    if curves == 1 or r <= ratios[0]:
        return peaks[0], tables[0]
    if r >= ratios[curves - 1]:
        return peaks[curves - 1], tables[curves - 1]
    j = 1
    while ratios[j] < r:                # np.searchsorted(ratios, r): the first >= r
        j += 1
    t = (r - ratios[j - 1]) / (ratios[j] - ratios[j - 1])
    return (1 - t) * peaks[j - 1] + t * peaks[j], (1 - t) * tables[j - 1] + t * tables[j]


@njit(cache=True, nogil=True)
def _sweeps_one_group(curves, ratios, peaks, tables, per_direction, u_grid, active, T, tau,
                      a, rd, wr, bg_r, bg_w, ell, read, write, ratio):
    """solve()'s Gauss-Seidel sweeps for one group, its arithmetic in its order (a sum over
    the group's one row is 0 plus its term, as numpy's matmul gives); ell, read, write and
    ratio updated in place; returns (tau, sweeps)."""
    n = ell.size
    sweeps = 0
    old_ratio = np.empty(n)
    while sweeps < MAX_SWEEPS:
        sweeps += 1
        old_tau = tau
        old_ratio[:] = ratio
        for m in active:
            rest = tau - a[m] * ell[m]
            peak, lat = _at_ratio(curves[m], ratios[m], peaks[m], tables[m], ratio[m])
            ell[m] = _solve_one_group(peak, lat, u_grid, per_direction[m], T, rest, a[m],
                                      rd[m], wr[m], bg_r[m], bg_w[m], ell[m])
            tau = rest + a[m] * ell[m]
        x = T / tau
        for m in range(n):
            read[m] = 0.0 + x * rd[m] + bg_r[m]
            write[m] = 0.0 + x * wr[m] + bg_w[m]
        converged = abs(tau - old_tau) <= TOL * tau
        for m in range(n):
            if curves[m] == 0:
                ratio[m] = 1.0
            elif per_direction[m]:
                ratio[m] = ratios[m, curves[m] - 1]
            else:
                total = read[m] + write[m]
                ratio[m] = read[m] / total if total > 0 else 1.0
            converged &= abs(ratio[m] - old_ratio[m]) <= TOL
        if converged:
            break
    return tau, sweeps
