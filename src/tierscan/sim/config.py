"""Experiment configuration: one TOML file says which machine, workload, detectors, promotion
engine, cost overrides and simulated-kernel knobs a run uses (schema in docs/config.md).

Loading is strict, through the shared checker (configcheck): an unknown key, a wrong type or a bad
unit is a one-line ConfigError naming the file and the dotted key path. ``--set key=value``
overrides are applied to the parsed document before validation, so they are checked exactly like
the file. The sections owned by other libraries (the workload's parameters, each detector's and
the engine's, ``[costs]``, ``[sysfs]``) are passed through as read-only dicts; each ``Component``
remembers its file and key path so that the library validating it later can name them too.

``ExperimentConfig.resolved()`` is the full configuration with every default filled in and the
machine inlined (``Machine.to_dict()``), so a result file is self-contained; ``config_hash()`` is
the first 16 hex digits of the sha256 of its canonical JSON. ``config_from_dict(cfg.resolved())``
gives back an equal configuration with the same hash.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Iterable

from tierscan.configcheck import Checker, load_toml
from tierscan.errors import ConfigError
from tierscan.machine import Machine
from tierscan.units import describe_value, parse_duration_ns

ACCESS_MODELS = ("rate", "exact")

DEFAULT_SEED = 0
DEFAULT_ACCESS_MODEL = "rate"
# "loaded": memsys/ (device curves, closed loop, TLB, LLC) wherever the machine describes them;
# "idle": the idle-latency sum of docs/cost-model.md, exactly as before memsys existed.
LATENCY_MODELS = ("loaded", "idle")
DEFAULT_LATENCY_MODEL = "loaded"
DEFAULT_TICK_NS = 10_000_000        # 10 ms
DEFAULT_SAMPLE_NS = 100_000_000     # 100 ms
DEFAULT_FAITHFUL_QUIRKS = True

# key -> required
_TOP_KEYS = {
    "name": False, "seed": False, "access_model": False, "latency_model": False, "duration": False, "tick": False,
    "sample": False, "faithful_quirks": False, "machine": True, "workload": True,
    "detectors": False, "engine": False, "costs": False, "sysfs": False, "swap": False,
    "memcgs": False,
}
_SWAP_KEYS = {"size": True, "read_ns": False, "write_ns": False}
_MACHINE_REF_KEYS = {"preset": False, "file": False, "scale": False}
# Keys that make [machine] an inline machine (docs/machine.md) rather than a reference.
_MACHINE_INLINE_KEYS = ("name", "nodes", "latency", "capacity_scale", "cpu")


# -- read-only containers --------------------------------------------------------------------


class FrozenDict(dict):
    """A dict that refuses mutation, so that a frozen ExperimentConfig (and its hash) cannot be
    changed behind its back. It is still a ``dict`` for isinstance checks and json;
    ``thaw()`` gives an ordinary mutable deep copy (copy.copy/deepcopy return the object itself,
    as for a tuple)."""

    __slots__ = ()

    def _readonly(self, *args, **kwargs):
        raise TypeError("configuration sections are read-only; edit thaw(section) (a plain "
                        "copy), or use ExperimentConfig.with_overrides()")

    __setitem__ = __delitem__ = __ior__ = _readonly
    clear = pop = popitem = setdefault = update = _readonly

    def __hash__(self):
        return hash(canonical_json(self))

    def __copy__(self):
        return self  # immutable, like a tuple

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return (_make_frozen_dict, (thaw(self),))


class FrozenList(list):
    """The list counterpart of FrozenDict."""

    __slots__ = ()

    def _readonly(self, *args, **kwargs):
        raise TypeError("configuration sections are read-only; edit thaw(section) (a plain "
                        "copy), or use ExperimentConfig.with_overrides()")

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _readonly
    append = extend = insert = pop = remove = clear = sort = reverse = _readonly

    def __hash__(self):
        return hash(canonical_json(self))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return (_make_frozen_list, (thaw(self),))


def _make_frozen_dict(d):
    return freeze(d)


def _make_frozen_list(v):
    return freeze(v)


def freeze(v):
    """A read-only deep copy of a TOML-like value (dicts -> FrozenDict, lists -> FrozenList)."""
    if isinstance(v, dict):
        out = FrozenDict()
        for k, x in v.items():
            dict.__setitem__(out, k, freeze(x))
        return out
    if isinstance(v, (list, tuple)):
        out = FrozenList()
        list.extend(out, (freeze(x) for x in v))
        return out
    return v


def thaw(v):
    """A plain mutable deep copy (dict / list) of a frozen or plain value."""
    if isinstance(v, dict):
        return {k: thaw(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [thaw(x) for x in v]
    return v


def canonical_json(obj) -> str:
    """The one JSON text of a value: sorted keys, no spaces, floats by repr, no NaN/Infinity."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def hash_of(obj) -> str:
    """First 16 hex digits of the sha256 of ``canonical_json(obj)`` (the config hash)."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:16]


# -- key paths -------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_\-/]+")


def join_key(path: str, key: str) -> str:
    """``path.key`` as errors print it; keys that are not bare words are quoted: sysfs."a.b"."""
    k = key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
    return f"{path}.{k}" if path else k


def format_duration(ns: int) -> str:
    """The canonical spelling of a duration: the largest unit that divides it ("10ms")."""
    for unit, mult in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if ns % mult == 0:
            return f"{ns // mult}{unit}"
    return f"{ns}ns"


# -- the configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    """A named, pluggable part of an experiment (the workload, a detector, the engine) and its
    parameters, passed through unvalidated. ``where``/``path`` are the file and the key path it
    came from ("detectors[1]"), for the owning library's own error messages."""

    name: str
    params: FrozenDict = field(default_factory=FrozenDict)
    path: str = field(default="", compare=False)
    where: str = field(default="<dict>", compare=False)

    def __post_init__(self):
        if not isinstance(self.params, FrozenDict):
            object.__setattr__(self, "params", freeze(dict(self.params)))

    def to_dict(self) -> dict:
        """The TOML table this component was written as: ``{"name": ..., **params}``."""
        return {"name": self.name, **thaw(self.params)}

    def field_path(self, key: str) -> str:
        return join_key(self.path, key)

    def fail(self, key: str, message: str):
        """Raise ConfigError naming the file and this component's key: ``detectors[1].x: ...``."""
        raise ConfigError(message, where=self.where, field=self.field_path(key) if key else
                          (self.path or None))

    def check_keys(self, allowed: dict[str, bool]) -> FrozenDict:
        """Reject unknown and missing parameters (``allowed`` maps key -> required), e.g.
        ``exp.toml: detectors[1].interval_msx: unknown key (expected one of: interval_ms)``."""
        Checker(self.where).table(self.params, self.path, allowed)
        return self.params

    def checker(self) -> Checker:
        """A configcheck.Checker for this component's file; pass ``self.field_path(key)``."""
        return Checker(self.where)


@dataclass(frozen=True, eq=False)
class ExperimentConfig:
    """A validated experiment. Build it with ``load_config`` or ``config_from_dict``.

    Equality and hashing are by content (``resolved()``), not by where it was loaded from.
    """

    machine: Machine
    workload: Component
    detectors: tuple[Component, ...] = ()
    engine: Component | None = None
    seed: int = DEFAULT_SEED
    access_model: str = DEFAULT_ACCESS_MODEL
    latency_model: str = DEFAULT_LATENCY_MODEL
    duration_ns: int | None = None       # None: run until the workload's phases end
    tick_ns: int = DEFAULT_TICK_NS
    sample_ns: int = DEFAULT_SAMPLE_NS
    faithful_quirks: bool = DEFAULT_FAITHFUL_QUIRKS
    name: str | None = None
    costs: FrozenDict = field(default_factory=FrozenDict)
    sysfs: FrozenDict = field(default_factory=FrozenDict)
    swap: FrozenDict = field(default_factory=FrozenDict)   # {} = no swap device
    # [[memcgs]]: path -> {min, low, high, max} in bytes or "max" (mm/memcontrol.py)
    memcgs: FrozenDict = field(default_factory=FrozenDict)
    source: str = "<dict>"               # the file (or "<dict>") it was loaded from

    def __post_init__(self):
        object.__setattr__(self, "detectors", tuple(self.detectors))
        for attr in ("costs", "sysfs", "swap", "memcgs"):
            v = getattr(self, attr)
            if not isinstance(v, FrozenDict):
                object.__setattr__(self, attr, freeze(dict(v)))

    def resolved(self) -> dict:
        """The full configuration as a plain dict (a fresh copy), defaults filled in, durations
        in their canonical spelling, the machine inlined as ``Machine.to_dict()``. It is itself a
        valid input: ``config_from_dict(cfg.resolved()) == cfg``."""
        return {
            "name": self.name,
            "seed": self.seed,
            "access_model": self.access_model,
            "latency_model": self.latency_model,
            "duration": None if self.duration_ns is None else format_duration(self.duration_ns),
            "tick": format_duration(self.tick_ns),
            "sample": format_duration(self.sample_ns),
            "faithful_quirks": self.faithful_quirks,
            "machine": self.machine.to_dict(),
            "workload": self.workload.to_dict(),
            "detectors": [d.to_dict() for d in self.detectors],
            "engine": None if self.engine is None else self.engine.to_dict(),
            "costs": thaw(self.costs),
            "sysfs": thaw(self.sysfs),
            # only with a swap device, so configs without one keep their hash
            **({"swap": thaw(self.swap)} if self.swap else {}),
            # only with memcg limits, for the same reason
            **({"memcgs": [{"path": path, **thaw(lim)} for path, lim in self.memcgs.items()]}
               if self.memcgs else {}),
        }

    def config_hash(self) -> str:
        """sha256 of the canonical JSON (sorted keys) of ``resolved()``, first 16 hex digits."""
        return hash_of(self.resolved())

    def with_overrides(self, overrides: Iterable[str]) -> ExperimentConfig:
        """A new configuration with ``key=value`` overrides applied (as ``--set`` does)."""
        return _build(self.resolved(), self.source, None, list(overrides))

    def __eq__(self, other):
        if not isinstance(other, ExperimentConfig):
            return NotImplemented
        return canonical_json(self.resolved()) == canonical_json(other.resolved())

    def __hash__(self):
        return hash(self.config_hash())


# -- loading ---------------------------------------------------------------------------------


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Read and validate an experiment TOML file, after applying ``--set key=value`` overrides.

    A relative ``machine.file`` is taken relative to the directory of ``path``.
    """
    doc, where = load_toml(path)
    base_dir = os.path.dirname(os.path.abspath(os.fspath(path)))
    return _build(doc, where, base_dir, list(overrides))


def config_from_dict(d: dict, where: str = "<dict>", *, overrides: Iterable[str] = (),
                     base_dir: str | os.PathLike | None = None) -> ExperimentConfig:
    """Validate a parsed document (``d`` is not modified). ``where`` names it in errors;
    ``base_dir`` (default: the current directory) anchors a relative ``machine.file``."""
    if not isinstance(d, dict):
        raise ConfigError(f"expected a table, got {describe_value(d)}", where=where)
    return _build(thaw(d), where, base_dir, list(overrides))


def _build(doc: dict, where: str, base_dir, overrides: list[str]) -> ExperimentConfig:
    applied = [(ov, apply_override(doc, ov, where)) for ov in overrides]
    try:
        return _validate(doc, where, base_dir)
    except ConfigError as e:
        # An error inside an overridden value says which --set put it there.
        if e.where == where and e.field:
            for ov, path in reversed(applied):
                if e.field == path or e.field.startswith((path + ".", path + "[")):
                    raise ConfigError(f"{e.message} (from --set {ov!r})", where=where,
                                      field=e.field) from None
        raise


def _validate(d: dict, where: str, base_dir) -> ExperimentConfig:
    c = Checker(where)
    c.table(d, "", _TOP_KEYS)

    name = d.get("name")
    if name is not None:
        c.string(name, "name")
    seed = c.int_at_least(d.get("seed", DEFAULT_SEED), "seed", 0)
    access_model = c.choice(d.get("access_model", DEFAULT_ACCESS_MODEL), "access_model",
                            ACCESS_MODELS)
    latency_model = c.choice(d.get("latency_model", DEFAULT_LATENCY_MODEL), "latency_model",
                             LATENCY_MODELS)
    duration = d.get("duration")
    duration_ns = None if duration is None else \
        parse_duration_ns(duration, where=where, field="duration")
    tick_ns = parse_duration_ns(d.get("tick", DEFAULT_TICK_NS), where=where, field="tick")
    sample_ns = parse_duration_ns(d.get("sample", DEFAULT_SAMPLE_NS), where=where, field="sample")
    if sample_ns % tick_ns:
        # Metrics are sampled in the tick loop: any other interval would jitter.
        c.fail("sample", f"must be a whole number of ticks (tick = {format_duration(tick_ns)}), "
                         f"got {format_duration(sample_ns)}")
    quirks = c.boolean(d.get("faithful_quirks", DEFAULT_FAITHFUL_QUIRKS), "faithful_quirks")

    machine = _machine(c, d["machine"], base_dir)
    workload = _with_default_node(_component(c, d["workload"], "workload"), machine)
    raw_detectors = c.array(d.get("detectors", []), "detectors")
    detectors = tuple(_component(c, raw, f"detectors[{i}]") for i, raw in enumerate(raw_detectors))
    raw_engine = d.get("engine")
    engine = None if raw_engine is None else _component(c, raw_engine, "engine")

    costs = d.get("costs", {})
    if not isinstance(costs, dict):
        c.fail("costs", f"expected a table, got {describe_value(costs)}")
    for k, v in costs.items():
        _check_cost(c, v, join_key("costs", k))
    sysfs = d.get("sysfs", {})
    if not isinstance(sysfs, dict):
        c.fail("sysfs", f"expected a table, got {describe_value(sysfs)}")
    for k, v in sysfs.items():
        _check_value(c, v, join_key("sysfs", k))

    return ExperimentConfig(
        machine=machine, workload=workload, detectors=detectors, engine=engine, seed=seed,
        access_model=access_model, latency_model=latency_model, duration_ns=duration_ns, tick_ns=tick_ns,
        sample_ns=sample_ns, faithful_quirks=quirks, name=name, costs=freeze(costs),
        sysfs=freeze(sysfs), swap=freeze(_swap(c, d.get("swap"))),
        memcgs=freeze(_memcgs(c, d.get("memcgs"))), source=where)


_MEMCG_KEYS = {"path": True, "min": False, "low": False, "high": False, "max": False}


def _memcgs(c: Checker, raw) -> dict:
    """[[memcgs]]: path = "/NAME" (the workloads' memcg), and memory.min/low/high/max as
    sizes or "max" (docs/config.md)."""
    from tierscan.units import parse_size

    if raw is None:
        return {}
    out = {}
    for i, t in enumerate(c.array(raw, "memcgs")):
        where = f"memcgs[{i}]"
        c.table(t, where, _MEMCG_KEYS)
        path = c.string(t["path"], f"{where}.path")
        parts = path.split("/")
        if path[:1] != "/" or path == "/" or not all(parts[1:]):
            c.fail(f"{where}.path", f"expected \"/NAME\" or \"/A/B\" below the root, got {path!r}")
        if path in out:
            c.fail(f"{where}.path", f"{path} is given twice")
        lim = {}
        for key in ("min", "low", "high", "max"):
            if key in t:
                v = t[key]
                lim[key] = "max" if v == "max" else parse_size(
                    v, where=c.where, field=f"{where}.{key}", allow_zero=True)
        out[path] = lim
    return out


def _swap(c: Checker, raw) -> dict:
    """[swap]: size (bytes or "8GiB"), read_ns and write_ns (mm/swap.py; defaults there)."""
    from tierscan.units import parse_size

    if raw is None:
        return {}
    c.table(raw, "swap", _SWAP_KEYS)
    out = {"size": parse_size(raw["size"], where=c.where, field="swap.size")}
    for key, default in (("read_ns", 80_000.0), ("write_ns", 2_000.0)):
        v = raw.get(key, default)
        if isinstance(v, str):
            v = parse_duration_ns(v, where=c.where, field=f"swap.{key}", allow_zero=True)
        out[key] = c.number_in(v, f"swap.{key}", 0.0, 1e12)
    return out


def _machine(c: Checker, raw, base_dir) -> Machine:
    if not isinstance(raw, dict):
        c.fail("machine", f"expected a table (preset = \"...\", file = \"...\" or an inline "
                          f"machine), got {describe_value(raw)}")
    scale = raw.get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not math.isfinite(scale) or not 0 < scale <= 1):
        c.fail("machine.scale",
               f"expected a number with 0 < scale <= 1, got {describe_value(scale)}")

    given = [k for k in ("preset", "file") if k in raw]
    inline = [k for k in _MACHINE_INLINE_KEYS if k in raw]
    if len(given) + bool(inline) > 1:
        found = " and ".join(given + (["an inline machine"] if inline else []))
        c.fail("machine", f"give only one of preset = \"...\", file = \"...\" or an inline "
                          f"machine table (found {found})")
    if inline:
        body = {k: v for k, v in raw.items() if k != "scale"}
        try:
            machine = Machine.from_dict(body, where=c.where)
        except ConfigError as e:  # put the inline machine's key paths under "machine."
            raise ConfigError(e.message, where=c.where,
                              field=f"machine.{e.field}" if e.field else "machine") from None
    else:
        c.table(raw, "machine", _MACHINE_REF_KEYS)
        if not given:
            c.fail("machine", "expected preset = \"...\", file = \"...\" or an inline machine "
                              "table (docs/machine.md)")
        if "preset" in raw:
            preset = c.string(raw["preset"], "machine.preset")
            try:
                machine = Machine.preset(preset)
            except ConfigError as e:
                raise ConfigError(e.message, where=c.where, field="machine.preset") from None
        else:
            file = c.string(raw["file"], "machine.file")
            full = file if os.path.isabs(file) or base_dir is None else \
                os.path.join(os.fspath(base_dir), file)
            if not os.path.isfile(full):
                c.fail("machine.file", f"no such file {file!r}"
                       + ("" if full == file else f" (looked for {full})"))
            # Errors inside the machine file name that file and its own key paths.
            machine = Machine.from_toml(full)
    if scale is not None:
        try:
            machine = machine.scaled(scale)
        except ConfigError as e:
            raise ConfigError(e.message, where=c.where, field="machine.scale") from None
    return machine


def _with_default_node(workload: Component, machine: Machine) -> Component:
    """Memory goes to the slow tier unless ``node`` says otherwise: a one-process workload's
    ``node`` defaults to node 1 (the laptop's CXL node), which on other machines may be DRAM
    (zen5-cxl's second socket: DRAM compared with DRAM, nothing promoted). There the default
    follows the machine, written into the configuration (so the result file and its hash say
    where the memory went); where node 1 is already the slow node nothing changes. The same
    holds for each process (thread group) of ``multi`` without a ``node``."""
    from tierscan.sim.precheck import default_slow_node
    from tierscan.workload.library import DEFAULT_NODE, DEFAULT_PROCESSES, make_workload

    node = default_slow_node(machine)
    if "node" in workload.params or node == DEFAULT_NODE:
        return workload
    params = {**thaw(workload.params), "node": node}
    try:      # workloads that take a top-level `node` (not pghot-bench, not multi)
        make_workload(workload.name, params, where=workload.where, field=workload.path)
    except ConfigError:
        params = _with_default_process_nodes(thaw(workload.params), node, DEFAULT_PROCESSES)
        try:  # multi: its processes' tables
            make_workload(workload.name, params, where=workload.where, field=workload.path)
        except ConfigError:
            return workload
    return Component(name=workload.name, params=freeze(params), path=workload.path,
                     where=workload.where)


def _with_default_process_nodes(params: dict, node: int, default_processes) -> dict:
    """``params`` with ``node`` in each table of ``processes`` (the library's defaults when
    absent) that does not set one; unchanged when ``processes`` is not a list of tables."""
    procs = params.get("processes", default_processes)
    if not isinstance(procs, list) or not all(isinstance(p, dict) for p in procs):
        return params
    return {**params, "processes": [p if "node" in p else {**p, "node": node} for p in procs]}


def _component(c: Checker, raw, path: str) -> Component:
    if not isinstance(raw, dict):
        c.fail(path, f"expected a table with name = \"...\", got {describe_value(raw)}")
    if "name" not in raw:
        c.fail(join_key(path, "name"), "missing required key")
    name = c.string(raw["name"], join_key(path, "name"))
    params = {k: v for k, v in raw.items() if k != "name"}
    for k, v in params.items():
        _check_value(c, v, join_key(path, k))
    return Component(name=name, params=freeze(params), path=path, where=c.where)


def _check_value(c: Checker, v, path: str):
    """A passed-through value must be a TOML string, number, boolean, array or table, with
    finite floats (so it has one JSON form), and string keys."""
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                c.fail(path, f"expected string keys, got {describe_value(k)}")
            _check_value(c, x, join_key(path, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            _check_value(c, x, f"{path}[{i}]")
    elif isinstance(v, float):
        if not math.isfinite(v):
            c.fail(path, f"expected a finite number, got {describe_value(v)}")
    elif not isinstance(v, (str, int, bool)):
        c.fail(path, f"expected a string, number, boolean, array or table, "
                     f"got {describe_value(v)}")


def _check_cost(c: Checker, v, path: str):
    """Cost overrides are numbers or unit strings ("120ns", "8GiB"), possibly in arrays or
    tables (per-node values); the cost model checks the units and the names."""
    if isinstance(v, dict):
        for k, x in v.items():
            _check_cost(c, x, join_key(path, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            _check_cost(c, x, f"{path}[{i}]")
    elif isinstance(v, float) and not math.isfinite(v):
        c.fail(path, f"expected a finite number, got {describe_value(v)}")
    elif isinstance(v, bool) or not isinstance(v, (int, float, str)) or v == "":
        c.fail(path, f"expected a number or a unit string such as '120ns', "
                     f"got {describe_value(v)}")


# -- overrides -------------------------------------------------------------------------------

_SEGMENT = re.compile(r'\s*(?:([A-Za-z0-9_\-/]+)|"([^"\\]*)")((?:\[\d+\])*)\s*')


def parse_override(text: str, where: str | None = None) -> tuple[list, object]:
    """Split ``key=value`` into a key path (a list of str keys and int indexes) and a value.

    The value is parsed as a TOML value (``2``, ``"x"``, ``true``, ``1.5``, ``[1, 2]``,
    ``{a = 1}``); anything that is not one is taken as a bare string (``exact``, ``500ms``).
    """
    def bad(msg):
        raise ConfigError(f"--set {text!r}: {msg}", where=where)

    if not isinstance(text, str):
        raise ConfigError(f"--set: expected a 'key=value' string, got {describe_value(text)}",
                          where=where)
    if "\n" in text or "\r" in text:
        bad("must be one line")
    # The first '=' outside a quoted key segment separates key and value.
    in_quotes, eq = False, -1
    for i, ch in enumerate(text):
        if ch == '"':
            in_quotes = not in_quotes
        elif ch == "=" and not in_quotes:
            eq = i
            break
    if eq < 0:
        bad("expected key=value, e.g. workload.mode=2 or detectors[0].interval_ms=100")
    key_text, raw = text[:eq], text[eq + 1:].strip()

    keys: list = []
    pos = 0
    while True:
        m = _SEGMENT.match(key_text, pos)
        if not m:
            bad(f"bad key {key_text.strip()!r} (expected dotted keys like workload.mode "
                f"or detectors[0].interval_ms)")
        keys.append(m[1] if m[1] is not None else m[2])
        keys.extend(int(i) for i in re.findall(r"\[(\d+)\]", m[3]))
        pos = m.end()
        if pos == len(key_text):
            break
        if key_text[pos] != ".":
            bad(f"bad key {key_text.strip()!r} (expected dotted keys like workload.mode "
                f"or detectors[0].interval_ms)")
        pos += 1

    if raw == "":
        bad("missing value after '='")
    import tomllib   # here, not at import (configcheck.parse_toml)

    try:
        doc = tomllib.loads(f"v = {raw}")
        value = doc["v"] if list(doc) == ["v"] else raw
    except tomllib.TOMLDecodeError as e:
        # A bare word is a string, but something that starts like a TOML string, array or
        # table and does not parse is a mistake ('name="abc' is not the name '"abc').
        if raw[0] in "\"'[{":
            what = {"\"": "string", "'": "string", "[": "array", "{": "inline table"}[raw[0]]
            bad(f"the value {raw!r} starts a TOML {what} but is not one "
                f"({str(e).split(' (at ')[0].lower()})")
        value = raw
    return keys, value


def format_key_path(keys: list) -> str:
    out = ""
    for k in keys:
        out = f"{out}[{k}]" if isinstance(k, int) else join_key(out, k)
    return out


def apply_override(doc: dict, text: str, where: str | None = None) -> str:
    """Apply one ``key=value`` to a parsed document in place; returns the key path.

    Missing tables on the way are created; ``detectors[N]`` with N equal to the number of
    detectors appends a new one.
    """
    keys, value = parse_override(text, where)

    def bad(msg):
        raise ConfigError(f"--set {text!r}: {msg}", where=where)

    node = doc
    for depth, k in enumerate(keys):
        last = depth == len(keys) - 1
        here = format_key_path(keys[:depth]) or "the document"
        if isinstance(k, int):
            if not isinstance(node, list):
                bad(f"{here} is not an array (it is {describe_value(node)})")
            if k > len(node):
                n = len(node)
                bad(f"index {k} is out of range ({here} has {n} entr{'y' if n == 1 else 'ies'}; "
                    f"use [{n}] to add one)")
            if last:
                if k == len(node):
                    node.append(value)
                else:
                    node[k] = value
            else:
                if k == len(node):
                    node.append([] if isinstance(keys[depth + 1], int) else {})
                node = node[k]
        else:
            if not isinstance(node, dict):
                bad(f"{here} is not a table (it is {describe_value(node)})")
            if last:
                node[k] = value
            else:
                if k not in node or node[k] is None:
                    node[k] = [] if isinstance(keys[depth + 1], int) else {}
                node = node[k]
    return format_key_path(keys)


__all__ = ["ACCESS_MODELS", "Component", "ExperimentConfig", "FrozenDict", "FrozenList",
           "apply_override", "canonical_json", "config_from_dict", "format_duration", "freeze",
           "hash_of", "join_key", "load_config", "parse_override", "thaw"]
