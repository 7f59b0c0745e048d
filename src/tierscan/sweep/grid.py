"""Sweep files and their grids: every grid point resolved and validated before anything runs.

A sweep file (TOML) names a base experiment and a grid:

    base = "exp.toml"            # a path (relative to the sweep file), or an inline [base] table
    set = ["duration=2s"]        # optional: overrides applied to every run, before the grid
    [grid]                       # keys are --set keys, values are lists
    seed = [0, 1, 2]
    "detectors[0].interval_ms" = [100, 500, 2000]

Every combination is a Point; a bad key, value or workload is a ConfigError naming the sweep file
and the grid point.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass

from tierscan.errors import ConfigError

_SWEEP_KEYS = {"base": True, "grid": True, "set": False}


def toml_value(v) -> str:
    """A TOML value's text, such that ``parse_override(f"k={toml_value(v)}")`` gives ``v``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)   # JSON string escapes are TOML basic-string escapes
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise ValueError(f"cannot use {type(v).__name__} values ({v!r}) in a grid")


def display_value(v) -> str:
    """A grid value as index.csv and the progress lines show it: strings bare."""
    return v if isinstance(v, str) else toml_value(v)


@dataclass
class Point:
    index: int                 # 1-based position in the grid
    params: dict               # grid key -> value
    cfg: object                # ExperimentConfig
    config_hash: str

    @property
    def file(self) -> str:
        return f"{self.config_hash}.json"

    def describe(self) -> str:
        return ", ".join(f"{k}={display_value(v)}" for k, v in self.params.items()) or "base"


@dataclass
class Sweep:
    where: str
    grid: dict
    points: list


def load_sweep(path) -> Sweep:
    """Read and validate a sweep file and every configuration of its grid (nothing runs)."""
    from tierscan.configcheck import Checker, load_toml
    from tierscan.sim.config import config_from_dict, join_key, parse_override
    from tierscan.units import describe_value

    doc, where = load_toml(path)
    c = Checker(where)
    c.table(doc, "", _SWEEP_KEYS)
    sweep_dir = os.path.dirname(os.path.abspath(os.fspath(path)))

    base = doc["base"]
    if isinstance(base, str):
        if not base:
            c.fail("base", "expected a path to an experiment file, got an empty string")
        full = base if os.path.isabs(base) else os.path.join(sweep_dir, base)
        if not os.path.isfile(full):
            c.fail("base", f"no such file {base!r}" + ("" if full == base else
                                                        f" (looked for {full})"))
        base_doc, base_where = load_toml(full)
        base_dir = os.path.dirname(os.path.abspath(full))
    elif isinstance(base, dict):
        base_doc, base_where, base_dir = base, f"{where} [base]", sweep_dir
    else:
        c.fail("base", f"expected a path to an experiment file or a [base] table, got "
                       f"{describe_value(base)}")

    fixed = c.array(doc.get("set", []), "set")
    for i, ov in enumerate(fixed):
        if not isinstance(ov, str):
            c.fail(f"set[{i}]", f"expected a 'key=value' string, got {describe_value(ov)}")

    grid = doc["grid"]
    if not isinstance(grid, dict):
        c.fail("grid", f"expected a table of --set keys to lists, got {describe_value(grid)}")
    for key, values in grid.items():
        field = join_key("grid", key)
        try:
            parse_override(f"{key}=0")
        except ConfigError:
            c.fail(field, "bad key (expected a --set key such as workload.mode or "
                          "\"detectors[0].interval_ms\", quoted when it has brackets)")
        if not isinstance(values, list) or not values:
            c.fail(field, f"expected a non-empty list of values, got {describe_value(values)}")
        for i, v in enumerate(values):
            try:
                toml_value(v)
            except ValueError as e:
                c.fail(f"{field}[{i}]", str(e))

    keys = list(grid)
    points = []
    for i, combo in enumerate(itertools.product(*(grid[k] for k in keys)), start=1):
        params = dict(zip(keys, combo))
        overrides = list(fixed) + [f"{k}={toml_value(v)}" for k, v in params.items()]
        point = Point(i, params, None, "")
        try:
            cfg = config_from_dict(base_doc, base_where, overrides=overrides, base_dir=base_dir)
            prevalidate(cfg)
        except ConfigError as e:
            raise ConfigError(f"grid point {i} ({point.describe()}): {e}", where=where) from None
        point.cfg, point.config_hash = cfg, cfg.config_hash()
        points.append(point)
    return Sweep(where, grid, points)


def prevalidate(cfg) -> None:
    """Catch what only building the run would otherwise find, before any run starts: an unknown
    or misconfigured workload, a node the machine lacks, a missing duration, an unknown
    detector or promotion engine (sim.precheck.check_runnable; its warnings are not repeated
    for every grid point)."""
    from tierscan.sim.precheck import check_runnable

    check_runnable(cfg)
