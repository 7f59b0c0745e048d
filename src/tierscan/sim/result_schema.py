"""The values a result file's readers rely on, checked when it is loaded.

A result file is input too: a hand-edited one (``"lots"`` for a counter, a string for
``final.promotion``, a negative count) must be refused on load with one line naming the field,
not crash ``tierscan report`` later. ``check_result(meta, series, final, fail)`` checks:

- ``meta.config``: a valid experiment configuration (the hash only proves it is unchanged);
- ``final``: the keys tierscan writes (runtime, vmstat counters, per-node counters, daemon CPU,
  the promotion summary, the heatmap axis); other keys, which plug-ins may add, only need to be
  JSON values, as the format already guarantees;
- ``series``: the known series' shapes (per-node series have one column per node) and signs.

``fail(field, message)`` raises (RunResult passes one that makes a ConfigError naming the file).
"""

from __future__ import annotations

import math

import numpy as np

from tierscan.configcheck import is_int


def _count(v) -> bool:
    return is_int(v) and v >= 0


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
        and v >= 0


def _ratio(v) -> bool:
    return v is None or (_number(v) and v <= 1)


def _opt(check):
    return lambda v: v is None or check(v)


def _distribution(v) -> bool:
    return v is None or (isinstance(v, dict) and all(
        _count(x) if k == "count" else _number(x) for k, x in v.items()))


def _cdf(v) -> bool:
    if v is None:
        return True
    if not isinstance(v, dict) or set(v) != {"ns", "pages"}:
        return False
    ns, pages = v["ns"], v["pages"]
    return isinstance(ns, list) and isinstance(pages, list) and len(ns) == len(pages) \
        and all(_count(x) for x in ns) and all(_count(x) for x in pages) \
        and all(a <= b for a, b in zip(pages, pages[1:]))


# final.promotion key -> (check, what it must be)
_PROMOTION = {
    "promoted_folios": (_count, "an integer >= 0"),
    "promoted_thps": (_count, "an integer >= 0"),
    "promoted_pages": (_count, "an integer >= 0"),
    "unique_pages": (_opt(_count), "an integer >= 0 or null"),
    "hot_set_pages": (_opt(_count), "an integer >= 0 or null"),
    "true_positives": (_opt(_count), "an integer >= 0 or null"),
    "unresolved_folios": (_opt(_count), "an integer >= 0 or null"),
    "precision": (_ratio, "a number in [0, 1] or null"),
    "recall": (_ratio, "a number in [0, 1] or null"),
    "time_to_promote_ns": (_distribution,
                           "null or a table of count (integer) and non-negative numbers"),
    "report_to_promote_ns": (_distribution,
                             "null or a table of count (integer) and non-negative numbers"),
    "time_to_promote_cdf": (_cdf, "null or {ns: [integers], pages: [non-decreasing integers]} "
                                  "of equal length"),
    "identity_source": (lambda v: isinstance(v, str), "a string"),
    "quality_note": (_opt(lambda v: isinstance(v, str)), "a string or null"),
}


def _table_of(check):
    return lambda v: isinstance(v, dict) and all(check(x) for x in v.values())


# final key -> (check, what it must be); a table's entries are checked one by one below
_FINAL = {
    "runtime_ns": (_opt(_count), "an integer >= 0 or null"),
    "sim_time_ns": (_count, "an integer >= 0"),
    "vmstat": (dict, _count, "an integer >= 0"),
    "vmstat_setup": (dict, _count, "an integer >= 0"),
    "cpu_ns": (dict, _number, "a finite number >= 0"),
    "accesses_per_thread": (dict, _number, "a finite number >= 0"),
    "finished_ns": (dict, _opt(_count), "an integer >= 0 or null"),
}


def check_result(meta: dict, series: dict, final: dict, fail, where: str) -> None:
    """Refuse (through ``fail(field, message)``) what the readers of a result cannot use."""
    from tierscan.errors import ConfigError
    from tierscan.sim.config import config_from_dict

    try:
        cfg = config_from_dict(meta["config"], where=f"{where}: meta.config")
    except ConfigError as e:
        raise ConfigError(e.message, where=e.where, field=e.field) from None
    nr_nodes = cfg.machine.nr_nodes

    for key, spec in _FINAL.items():
        if key not in final:
            continue
        v = final[key]
        if spec[0] is dict:
            _, check, what = spec
            if not isinstance(v, dict):
                fail(f"final.{key}", f"expected a table, got {_describe(v)}")
            for k, x in v.items():
                if not check(x):
                    fail(f"final.{key}.{k}", f"expected {what}, got {_describe(x)}")
        elif not spec[0](v):
            fail(f"final.{key}", f"expected {spec[1]}, got {_describe(v)}")

    per_node = final.get("vmstat_node")
    if per_node is not None:
        if not isinstance(per_node, list) or len(per_node) != nr_nodes:
            fail("final.vmstat_node", f"expected a list of {nr_nodes} tables (one per node), "
                                      f"got {_describe(per_node)}")
        for n, t in enumerate(per_node):
            if not isinstance(t, dict):
                fail(f"final.vmstat_node[{n}]", f"expected a table, got {_describe(t)}")
            for k, x in t.items():
                if not _count(x):
                    fail(f"final.vmstat_node[{n}].{k}", f"expected an integer >= 0, "
                                                        f"got {_describe(x)}")

    promo = final.get("promotion")
    if promo is not None:
        if not isinstance(promo, dict):
            fail("final.promotion", f"expected a table, got {_describe(promo)}")
        for k, (check, what) in _PROMOTION.items():
            if k in promo and not check(promo[k]):
                fail(f"final.promotion.{k}", f"expected {what}, got {_describe(promo[k])}")

    heat = final.get("heatmap")
    if heat is not None:
        if not isinstance(heat, dict):
            fail("final.heatmap", f"expected a table, got {_describe(heat)}")
        if "addr_start" in heat and not _count(heat["addr_start"]):
            fail("final.heatmap.addr_start", f"expected an integer >= 0, "
                                             f"got {_describe(heat['addr_start'])}")
        if heat.get("bin_bytes") is not None and not (is_int(heat["bin_bytes"])
                                                      and heat["bin_bytes"] > 0):
            fail("final.heatmap.bin_bytes", f"expected an integer > 0, "
                                            f"got {_describe(heat['bin_bytes'])}")

    _check_series(series, nr_nodes, fail)


def _check_series(series: dict, nr_nodes: int, fail) -> None:
    t = series.get("time_ns")
    if t is not None and t.size > 1 and (np.diff(t) < 0).any():
        fail("series.time_ns", "expected non-decreasing sample times")
    for name in ("served", "resident_pages"):
        a = series.get(name)
        if a is not None and (a.ndim != 2 or a.shape[1] != nr_nodes):
            fail(f"series.{name}", f"expected one column per node ({nr_nodes}), got shape "
                                   f"{a.shape}")
    for name in ("served", "resident_pages", "heatmap", "pgpromote_success",
                 "pgmigrate_success", "pgdemote_kswapd", "pgdemote_direct"):
        a = series.get(name)
        if a is not None and a.dtype.kind == "f" and not np.isfinite(a).all():
            fail(f"series.{name}", "expected finite values")
        if a is not None and a.dtype.kind in "if" and (a < 0).any():
            fail(f"series.{name}", "expected values >= 0")
    hm, tier = series.get("heatmap"), series.get("heatmap_tier")
    if hm is not None and hm.ndim != 2:
        fail("series.heatmap", f"expected a 2-D array [time, address bin], got shape {hm.shape}")
    if tier is not None and (hm is None or tier.shape != hm.shape):
        fail("series.heatmap_tier", "expected the shape of series.heatmap")


def _describe(v) -> str:
    from tierscan.units import describe_value

    return describe_value(v)
