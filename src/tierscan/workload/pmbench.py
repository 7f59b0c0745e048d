"""pmbench (Jisoo Yang, Intel; "pmbench: a micro-benchmark for profiling paging performance"),
as a workload: ``make_workload("pmbench", {"pattern": "normal", "shape": 1536, ...})``.

What pmbench does (read from its source, pmbench.c and pattern.c, v0.7-0.9; docs/workloads.md
cites it): it mmaps ``mapsize`` MiB (private anonymous, not populated), then each of ``jobs``
threads draws page numbers in [0, setsize pages) from the chosen pattern, touches one 4-byte word
of that page (a load, or a store with probability from ``ratio``), and busy-waits ``delay``
TSC cycles after each access when ``delay > 10``. Unless ``--cold``, a warm-up of the same
pattern comes first without the delay. ``-i`` fills the whole map first.

The patterns, as pmbench computes them (their page weights here are exact for its algorithms,
up to pmbench's 31-bit generator):

- ``uniform``: every page of the set equally likely;
- ``normal`` (Box-Muller): page = (size_t)(N(0, s^2) + set/2) with s = (int)shape; a value
  outside [0, set) is replaced by set/2. The cast truncates toward zero, so page 0 also takes
  the values in (-1, 0);
- ``normal_ih`` (Irwin-Hall, pmbench's "gauss"-like pattern with no shape): the sum of 12 draws
  uniform on [0, 12k) (k = (set - 1 + 5) / 12), divided by 12, shifted to centre on the set and
  redrawn when it falls outside: a bell of standard deviation ~set/12 covering the whole set.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from ..configcheck import Checker
from ..units import describe_value
from .base import Mapping, Phase, WorkloadSpec
from .distributions import Weights, normal_interval
from .library import (PAGE_SIZE, PLACEMENT_KEYS, _placed_process, _Reader, _read_placement,
                      register_workload)

__all__ = ["pmbench_normal", "pmbench_normal_ih", "write_fraction_of_ratio", "delay_ns",
           "PATTERNS"]

MIB = 1 << 20
PATTERNS = ("uniform", "normal", "normal_ih")
ORDER = 12                          # pattern.c: Irwin-Hall order
IH_EXACT_MAX = 1 << 22              # beyond this sum length, the continuous Irwin-Hall CDF
TSC_GHZ_DEFAULT = 2.0               # ESTIMATE: pmbench prints its TSC rate ("rdtsc/perfc
#                                     frequency"); set tsc_ghz from that line


def _set_weights(set_pages: int, fn, n: int) -> np.ndarray:
    """Weights over n mapped pages: ``fn(set_pages)`` on the first set_pages, 0 after."""
    if set_pages > n:
        raise ValueError(f"the working set ({set_pages} pages) is larger than the mapping "
                         f"({n} pages)")
    w = np.zeros(n)
    w[:set_pages] = fn(set_pages)
    return w


def normal_weights(stdev: int, n: int) -> np.ndarray:
    """pmbench ``normal`` over n pages: P(page) for page = (size_t)(Y + n/2), Y ~ N(0,
    stdev^2), out-of-range values (and, by the unsigned cast, those <= -1) going to n/2."""
    centre = n // 2
    w = np.zeros(n)
    if stdev <= 0:
        w[centre] = 1.0
        return w
    lo = np.arange(n, dtype=np.float64) - centre     # page k takes Y + centre in [k, k+1)
    w[:] = normal_interval(lo / stdev, (lo + 1) / stdev)
    w[0] = float(normal_interval((-1 - centre) / stdev, (1 - centre) / stdev))
    outside = 1.0 - float(normal_interval((-1 - centre) / stdev, (n - centre) / stdev))
    w[centre] += max(outside, 0.0)
    return w


def _irwin_hall_cdf(t: np.ndarray) -> np.ndarray:
    """CDF of the sum of 12 independent U[0, 1): (1/12!) sum_k (-1)^k C(12,k) (t-k)^12."""
    t = np.clip(np.asarray(t, np.float64), 0.0, ORDER)
    mirror = t > ORDER / 2                          # use the symmetric half (less cancellation)
    x = np.where(mirror, ORDER - t, t)
    out = np.zeros_like(x)
    for k in range(ORDER // 2 + 1):
        d = np.maximum(x - k, 0.0)
        out += (-1) ** k * math.comb(ORDER, k) * d ** ORDER
    out /= math.factorial(ORDER)
    return np.where(mirror, 1.0 - out, out)


def normal_ih_weights(n: int) -> np.ndarray:
    """pmbench ``normal_ih`` over n pages: X = floor(S/12) + shift, S the sum of 12 draws
    uniform on {0..m-1}, m = 12·((n - 1 + 5) // 12), shift = floor((n - 1 - m) / 2); values
    outside [0, n - 1] are redrawn (so the weights are renormalised over the pages)."""
    n_user = n - 1
    m = ORDER * ((n_user + ORDER // 2 - 1) // ORDER)
    shift = (n_user - m) // 2
    if m == 0:
        return np.full(n, 1.0 / n)
    length = ORDER * (m - 1) + 1                    # S in [0, 12(m-1)]
    if length <= IH_EXACT_MAX:                     # exact: 12-fold convolution by FFT
        size = 1 << (length - 1).bit_length()
        f = np.fft.rfft(np.full(m, 1.0 / m), size)
        s = np.maximum(np.fft.irfft(f ** ORDER, size)[:length], 0.0)
        per_x = np.add.reduceat(s, np.arange(0, length, ORDER))   # P(floor(S/12) = x)
    else:                                          # continuous, with continuity correction
        x = np.arange(-(-length // ORDER), dtype=np.float64)
        per_x = np.diff(_irwin_hall_cdf((ORDER * np.append(x, x[-1] + 1) + 5.5) / m))
    pages = np.arange(per_x.size) + shift
    ok = (pages >= 0) & (pages <= n_user)
    w = np.zeros(n)
    np.add.at(w, pages[ok], per_x[ok])
    return w


def pmbench_normal(set_pages: int, shape: float) -> Weights:
    stdev = int(shape)                              # pattern.c: ctx->stdev = (int)param1
    return Weights("pmbench-normal", {"set_pages": set_pages, "stdev": stdev},
                   partial(_set_weights, set_pages, partial(normal_weights, stdev)))


def pmbench_normal_ih(set_pages: int) -> Weights:
    return Weights("pmbench-normal_ih", {"set_pages": set_pages},
                   partial(_set_weights, set_pages, normal_ih_weights))


def pmbench_uniform(set_pages: int) -> Weights:
    return Weights("pmbench-uniform", {"set_pages": set_pages},
                   partial(_set_weights, set_pages, _flat))


def _flat(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


def write_fraction_of_ratio(ratio: int) -> float:
    """pmbench's -r (percent reads): an access is a store unless (rand % 1024) < ratio·1024/100
    (integer division), so the store fraction is 1 - floor(ratio·1024/100)/1024."""
    return 1.0 - (ratio * 1024 // 100) / 1024


def delay_ns(delay_cycles: int, tsc_ghz: float) -> float:
    """pmbench's -d: a busy wait of ``delay`` TSC cycles after every access, skipped when
    delay <= 10 (pmbench.c: ``if (p->delay > 10) sys_delay(p->delay)``)."""
    return delay_cycles / tsc_ghz if delay_cycles > 10 else 0.0


# pattern.c's get_warmup_run: how many accesses each thread makes before measuring
def _warmup(pattern: str, set_pages: int) -> int:
    return {"uniform": 4 * set_pages, "normal": set_pages, "normal_ih": set_pages - 1}[pattern]


_KEYS = ("mapsize", "setsize", "pattern", "shape", "ratio", "delay", "tsc_ghz", "jobs", "cold",
         "initialize", "duration") + PLACEMENT_KEYS


@register_workload("pmbench")
def pmbench(params: dict, *, where: str, field: str) -> WorkloadSpec:
    """pmbench's access loop: a pattern over the first ``setsize`` of a ``mapsize`` map, a
    read ratio, a per-access delay, an optional warm-up."""
    c = Checker(where)
    r = _Reader(c, params, field, _KEYS)
    mapsize = r.size("mapsize", "256MiB")
    setsize = r.size("setsize", "128MiB")
    if setsize > mapsize:
        r.fail("setsize", f"expected at most mapsize ({mapsize} bytes), got {setsize} bytes "
                          "(pmbench: 'mapsize < setsize')")
    if setsize < PAGE_SIZE:
        r.fail("setsize", "expected at least one page")
    pattern = r.choice("pattern", "uniform", PATTERNS)
    shape = r.number("shape", 1.00001, 0, math.inf)      # pmbench.c's default
    ratio = r._raw("ratio", 50)
    if isinstance(ratio, bool) or not isinstance(ratio, int) or not 0 <= ratio <= 100:
        r.fail("ratio", f"expected an integer percentage of reads in [0, 100], got "
                        f"{describe_value(ratio)}")
    r.out["ratio"] = ratio
    delay = r.integer("delay", 0, 0)
    tsc_ghz = r.number("tsc_ghz", TSC_GHZ_DEFAULT, 0, math.inf, lo_open=True)
    cold = r.boolean("cold", False)
    initialize = r.boolean("initialize", False)
    duration = r.opt_duration("duration")
    p = _read_placement(r, "pmbench", threads_key="jobs")

    set_pages = setsize // PAGE_SIZE
    dist = {"uniform": partial(pmbench_uniform, set_pages),
            "normal": partial(pmbench_normal, set_pages, shape),
            "normal_ih": partial(pmbench_normal_ih, set_pages)}[pattern]()
    wf = write_fraction_of_ratio(ratio)
    phases = []
    if not cold and _warmup(pattern, set_pages) > 0:
        phases.append(Phase(dist, write_fraction=wf, accesses=_warmup(pattern, set_pages)))
    phases.append(Phase(dist, write_fraction=wf, duration_ns=duration,
                        compute_ns=delay_ns(delay, tsc_ghz)))
    m = Mapping(size=mapsize, thp=p["thp"], policy="bind", nodes=(p["node"],),
                populate=initialize)
    return WorkloadSpec("pmbench", (_placed_process(p, [m], phases),), dict(r.out))

