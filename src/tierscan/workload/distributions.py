"""Per-page access distributions (the ``Distribution`` protocol of workload/base.py, DESIGN §5).

Each class gives, for the n pages of a process's mappings, the probability that one access hits
each page. Both access models read the same object: the rate model multiplies ``weights(n)`` by
the access rate, the exact model draws page indices with ``sample(n, count, rng)``.

Rules every class here keeps:

- deterministic: everything random about the *shape* (the Zipf rank-to-page permutation) comes
  from the ``seed`` given at construction, so ``weights(n)`` is the same array on every call and
  in every process; the *draws* come only from the ``rng`` passed to ``sample``;
- vectorised: no per-page Python loop; the weights and their cumulative sum are computed once per
  ``n`` and cached (a few entries, so a sweep over many sizes does not keep them all), and
  shared with equal distributions built later in the process (the last two tables);
- ``sample`` is inverse-CDF sampling: one ``rng.random()`` per draw, located in the cumulative
  weights with ``np.searchsorted``. Pages of weight zero are never drawn. Because every class
  consumes the rng the same way, two distributions with the same weights give the same draws from
  the same rng state.

``weights`` returns the cached array itself, marked read-only; copy it before changing it.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

__all__ = ["Uniform", "Zipf", "HotSet", "Gauss", "Weights", "normal_interval", "DISTRIBUTIONS"]

_CACHE_ENTRIES = 4  # distinct n kept per distribution object
# tables shared by equal distributions across the runs of one process (a reproduction's fit
# and sources, a sweep worker's runs build their workloads anew): the last few only, they
# can be hundreds of MiB
_SHARED_ENTRIES = 2
_SHARED: OrderedDict = OrderedDict()
_SORTED_SEARCH_MIN_COUNT = 1024      # below this, sorting costs more than it saves
_SORTED_SEARCH_MIN_PAGES = 1 << 16    # a 512 KiB CDF: beyond L2


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer number of pages, got {n!r}")
    return int(n)


def _count_at(x: float) -> float:
    """``x`` (a fraction times a page count) with float noise removed, so that 0.07 * 100 counts
    as 7 pages rather than 7.000000000000001 -> 8 under ceil()."""
    return round(x, 9)


def _last_nonzero(w: np.ndarray) -> int:
    """``int(np.flatnonzero(w)[-1])`` (IndexError if there is none) from the end, a block at
    a time, doubling: the last page is usually nonzero, and flatnonzero lists every index
    (128 MiB and ~0.15 s at 16 Mi pages)."""
    end, step = w.size, 1024
    while end > 0:
        lo = max(end - step, 0)
        nz = np.flatnonzero(w[lo:end])
        if nz.size:
            return lo + int(nz[-1])
        end, step = lo, step * 2
    raise IndexError("no nonzero weight")


class _Tabulated:
    """Shared machinery: weights and cumulative weights per n, cached; inverse-CDF sampling."""

    name = "?"

    def __init__(self):
        self._cache: OrderedDict[int, list] = OrderedDict()

    # Subclasses implement these two.
    def _compute(self, n: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def params(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _table(self, n) -> list:
        """[weights, cumulative weights (None until ``_cdf`` builds them), last drawable page]
        for n pages, shared with every holder of the table."""
        n = _check_n(n)
        t = self._cache.get(n)
        if t is not None:
            self._cache.move_to_end(n)
            return t
        # an equal distribution (same class and parameters: the same weights, module doc) of
        # an earlier run in this process has the table already
        key = (type(self), getattr(self, "name", None), repr(self), n)
        t = _SHARED.get(key)
        if t is None:
            t = _SHARED[key] = self._compute_table(n)
            while len(_SHARED) > _SHARED_ENTRIES:
                _SHARED.popitem(last=False)
        else:
            _SHARED.move_to_end(key)
        self._cache[n] = t
        while len(self._cache) > _CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return t

    def _compute_table(self, n: int) -> list:
        w = np.ascontiguousarray(self._compute(n), dtype=np.float64)
        w /= w.sum()
        last = _last_nonzero(w)  # the highest page that can be drawn
        w.setflags(write=False)
        # the CDF when it is first asked for: a run that never samples (the rate model
        # without IBS) needs only the weights (16 Mi pages: 128 MiB and ~0.06 s of cumsum)
        return [w, None, last]

    @staticmethod
    def _cdf(t: list) -> np.ndarray:
        """The table's cumulative weights, built on first use."""
        if t[1] is None:
            cdf = np.cumsum(t[0])
            cdf.setflags(write=False)
            t[1] = cdf
        return t[1]

    def weights(self, n: int) -> np.ndarray:
        """float64 array of length n, non-negative, summing to 1 (the cached array, read-only)."""
        return self._table(n)[0]

    def cdf(self, n: int) -> np.ndarray:
        """The cumulative weights ``sample`` searches (read-only; the last entry is ~1)."""
        return self._cdf(self._table(n))

    def sample(self, n: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` page indices in [0, n), i.i.d. from ``weights(n)`` (int64), by inverse CDF."""
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"count must be a non-negative integer, got {count!r}")
        t = self._table(n)
        cdf, last = self._cdf(t), t[2]
        u = rng.random(int(count))
        u *= cdf[-1]
        if count >= _SORTED_SEARCH_MIN_COUNT and n >= _SORTED_SEARCH_MIN_PAGES:
            # Searching sorted keys walks the CDF in order instead of missing the cache on
            # every probe: 2-5x faster once the CDF outgrows the caches. Same result.
            order = np.argsort(u)
            idx = np.empty(u.size, dtype=np.intp)
            idx[order] = np.searchsorted(cdf, u[order], side="right")
        else:
            idx = np.searchsorted(cdf, u, side="right")
        # u < cdf[-1] always in exact arithmetic; the clamp covers the rounding of u * cdf[-1]
        # and keeps trailing zero-weight pages undrawable.
        np.minimum(idx, last, out=idx)
        return idx.astype(np.int64, copy=False)

    # Value semantics: two distributions with the same class and parameters are equal, so specs
    # built twice from the same configuration compare equal.
    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self.params() == other.params()

    def __hash__(self):
        return hash((type(self).__name__, tuple(sorted(self.params().items()))))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    # The caches can be hundreds of MiB (64 GiB = 16 Mi pages); never ship them to a worker.
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        return state


class Uniform(_Tabulated):
    """Every page equally likely."""

    name = "uniform"

    def _compute(self, n: int) -> np.ndarray:
        return np.full(n, 1.0 / n)

    def params(self) -> dict:
        return {}


class Zipf(_Tabulated):
    """Zipf's law over page ranks: the page of rank r (1-based) has weight proportional to
    r ** -alpha. With ``scatter`` the ranks are spread over the pages by a permutation seeded with
    ``seed`` (so hot pages are not adjacent); without it rank r is page r - 1. alpha = 0 is
    uniform."""

    name = "zipf"

    def __init__(self, alpha: float, scatter: bool = True, seed: int = 0):
        super().__init__()
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)) \
                or not math.isfinite(alpha) or alpha < 0:
            raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
        if not isinstance(scatter, (bool, np.bool_)):
            raise ValueError(f"scatter must be True or False, got {scatter!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.alpha, self.scatter, self.seed = float(alpha), bool(scatter), int(seed)

    def rank_to_page(self, n: int) -> np.ndarray:
        """int64 array p of length n: the page holding rank r + 1 is p[r]."""
        n = _check_n(n)
        if not self.scatter:
            return np.arange(n, dtype=np.int64)
        return np.random.default_rng(self.seed).permutation(n).astype(np.int64, copy=False)

    def rank_weights(self, n: int) -> np.ndarray:
        """The weight of rank 1..n (non-increasing), before the permutation."""
        n = _check_n(n)
        w = np.arange(1, n + 1, dtype=np.float64) ** -self.alpha
        return w / w.sum()

    def _compute(self, n: int) -> np.ndarray:
        rw = self.rank_weights(n)
        if not self.scatter:
            return rw
        w = np.empty(n)
        w[self.rank_to_page(n)] = rw
        return w

    def params(self) -> dict:
        return {"alpha": self.alpha, "scatter": self.scatter, "seed": self.seed}


class HotSet(_Tabulated):
    """A contiguous hot set: ceil(hot_fraction * n) pages starting at page floor(offset * n)
    (wrapping past the end) receive ``hot_share`` of the accesses, uniformly; the other pages
    share the rest uniformly. ``offset`` may be any finite number (it is taken modulo 1 of the
    pages), so a moving hot set is ``offset = k * shift``.

    Small n: the hot set has at least one page; if it covers every page the distribution is
    uniform (there are no cold pages to give the rest to). ``seed`` is kept for interface
    uniformity and result files; the layout is contiguous and uses no randomness.
    """

    name = "hotset"

    def __init__(self, hot_fraction: float, hot_share: float, offset: float = 0.0, seed: int = 0):
        super().__init__()
        for key, v in (("hot_fraction", hot_fraction), ("hot_share", hot_share),
                       ("offset", offset)):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) \
                    or not math.isfinite(v):
                raise ValueError(f"{key} must be a finite number, got {v!r}")
        if not 0 < hot_fraction < 1:
            raise ValueError(f"hot_fraction must be in (0, 1), got {hot_fraction!r}")
        if not 0 <= hot_share <= 1:
            raise ValueError(f"hot_share must be in [0, 1], got {hot_share!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.hot_fraction, self.hot_share = float(hot_fraction), float(hot_share)
        self.offset, self.seed = float(offset), int(seed)

    def hot_range(self, n: int) -> tuple[int, int]:
        """(first hot page, number of hot pages); the set wraps past page n - 1 to page 0."""
        n = _check_n(n)
        count = min(max(math.ceil(_count_at(self.hot_fraction * n)), 1), n)
        start = math.floor(_count_at(self.offset * n)) % n
        return start, count

    def hot_pages(self, n: int) -> np.ndarray:
        """The hot page indices (int64), in order from the first."""
        start, count = self.hot_range(n)
        return (start + np.arange(count, dtype=np.int64)) % n

    def _compute(self, n: int) -> np.ndarray:
        start, count = self.hot_range(n)
        if count == n:
            return np.full(n, 1.0 / n)
        w = np.full(n, (1.0 - self.hot_share) / (n - count))
        w[self.hot_pages(n)] = self.hot_share / count
        return w

    def params(self) -> dict:
        return {"hot_fraction": self.hot_fraction, "hot_share": self.hot_share,
                "offset": self.offset, "seed": self.seed}


def _erfc(x: np.ndarray) -> np.ndarray:
    """erfc(x) for x >= 0, vectorised (numpy has none): the Chebyshev fit of Numerical Recipes
    (Press et al., 2nd ed., §6.2, ``erfcc``), relative error below 1.2e-7 everywhere."""
    z = np.asarray(x, dtype=np.float64)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    return t * np.exp(poly)


def _erf_series(x: np.ndarray) -> np.ndarray:
    """erf(x) by its Maclaurin series, for |x| <= 3 (60 terms: the truncation is below 1e-20
    and the rounding below 1e-12 absolute)."""
    x = np.asarray(x, dtype=np.float64)
    x2 = x * x
    term, total = x.copy(), x.copy()
    for k in range(1, 60):
        term *= -x2 / k
        total += term / (2 * k + 1)
    return total * (2.0 / math.sqrt(math.pi))


def normal_interval(a, b) -> np.ndarray:
    """P(a <= Z < b) for a standard normal Z, elementwise (a <= b). Intervals wholly beyond
    3·sqrt(2) standard deviations use the tail they lie in (erfc, relative error 1.2e-7, no
    cancellation); the others a difference of erf, each within 1e-12."""
    a, b = np.broadcast_arrays(np.asarray(a, np.float64) / math.sqrt(2.0),
                               np.asarray(b, np.float64) / math.sqrt(2.0))
    out = np.empty(a.shape)
    right, left = a >= 3.0, b <= -3.0
    mid = ~(right | left)
    out[right] = 0.5 * (_erfc(a[right]) - _erfc(b[right]))
    out[left] = 0.5 * (_erfc(-b[left]) - _erfc(-a[left]))
    am, bm = a[mid], b[mid]

    def erf(x):
        big = np.abs(x) > 3.0
        y = np.empty_like(x)
        y[~big] = _erf_series(x[~big])
        y[big] = np.sign(x[big]) * (1.0 - _erfc(np.abs(x[big])))
        return y
    out[mid] = 0.5 * (erf(bm) - erf(am))
    return np.maximum(out, 0.0)


class Gauss(_Tabulated):
    """A Gaussian over the pages, truncated to them and renormalised: page i gets
    P(i <= X < i + 1) for X ~ N(mean·n, (stdev·n)^2), ``mean`` and ``stdev`` being fractions of
    the n pages. A pmbench-style "normal" access pattern with its parameters scaled to the
    mapping (workload/pmbench.py has pmbench's own discretisations)."""

    name = "gauss"

    def __init__(self, mean: float = 0.5, stdev: float = 0.1, seed: int = 0):
        super().__init__()
        for key, v in (("mean", mean), ("stdev", stdev)):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) \
                    or not math.isfinite(v):
                raise ValueError(f"{key} must be a finite number, got {v!r}")
        if not 0 <= mean <= 1:
            raise ValueError(f"mean must be in [0, 1], got {mean!r}")
        if not stdev > 0:
            raise ValueError(f"stdev must be > 0, got {stdev!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.mean, self.stdev, self.seed = float(mean), float(stdev), int(seed)

    def _compute(self, n: int) -> np.ndarray:
        mu, sigma = self.mean * n, self.stdev * n
        edges = (np.arange(n + 1, dtype=np.float64) - mu) / sigma
        w = normal_interval(edges[:-1], edges[1:])
        if not w.sum() > 0:      # every page 40 sigma away: the page nearest the mean
            w[min(int(mu), n - 1)] = 1.0
        return w

    def params(self) -> dict:
        return {"mean": self.mean, "stdev": self.stdev, "seed": self.seed}


class Weights(_Tabulated):
    """Page weights given by a function of n (a workload's own layout: pmbench's patterns, a
    key-value store's index and value pages). ``key`` names it and its parameters, for
    equality and result files; ``fn(n)`` returns the unnormalised weights."""

    def __init__(self, name: str, key: dict, fn):
        super().__init__()
        self.name, self._key, self._fn = name, dict(key), fn

    def _compute(self, n: int) -> np.ndarray:
        return self._fn(n)

    def params(self) -> dict:
        return dict(self._key)

    def __eq__(self, other):
        if not isinstance(other, Weights):
            return NotImplemented
        return self.name == other.name and self._key == other._key

    def __hash__(self):
        return hash((self.name, tuple(sorted(self._key.items()))))


DISTRIBUTIONS = {"uniform": Uniform, "zipf": Zipf, "hotset": HotSet, "gauss": Gauss}
