"""Run results: what one simulation produced, saved as a self-describing JSON file.

A ``RunResult`` has four parts (file format in docs/config.md):

- ``meta``: the tierscan version, the full resolved configuration and its hash, the seed, the
  access model, the simulated time and, optionally, the command line that made it. No wall-clock
  timestamps: the same seed and configuration give byte-identical files.
- ``series``: time series sampled every ``sample``: a ``time_ns`` int64 array and named numeric
  arrays whose first axis is the sample (2-D for per-node series).
- ``final``: end-of-run values (scalars, lists, nested dicts, numpy arrays): runtime, vmstat,
  per-detector overhead...
- ``timing``: what differs between two identical runs (``wall_time_s``); ``save(...,
  include_timing=False)`` leaves it out, and determinism tests compare files written that way.

Saving is atomic (a temporary file in the same directory, then ``os.replace``), so a result file
is either the previous one or the complete new one, never half-written. Loading restores every
value exactly: arrays keep dtype, shape and bits (NaN payloads and -0.0 included); floats are
written by ``repr``. A corrupt or truncated file is a one-line ConfigError naming the file and,
for a JSON syntax error, the character offset.
"""

from __future__ import annotations

import json
import math
import shlex
import struct
from dataclasses import dataclass, field

import numpy as np

from tierscan.configcheck import is_int, read_text
from tierscan.errors import ConfigError
from tierscan.outpath import atomic_write
from tierscan.sim.config import ExperimentConfig, config_from_dict, hash_of
from tierscan.sim.result_schema import check_result

FORMAT = "tierscan-result"
FORMAT_VERSION = 1

# Keys with a meaning in the file format; a user dict in final/meta may not use them.
_ARRAY_TAG, _FLOAT_TAG = "__ndarray__", "__float__"
_RESERVED = (_ARRAY_TAG, _FLOAT_TAG)
_TOP_KEYS = ("format", "format_version", "meta", "series", "final", "timing")
# meta key -> (type check, expected), required
_META_KEYS = {
    "tierscan_version": (lambda v: isinstance(v, str), "a string", True),
    "config": (lambda v: isinstance(v, dict), "a table", True),
    "config_hash": (lambda v: isinstance(v, str), "a string", True),
    "seed": (is_int, "an integer", True),
    "access_model": (lambda v: isinstance(v, str), "a string", True),
    "sim_time_ns": (is_int, "an integer", True),
    "command": (lambda v: isinstance(v, str), "a string", False),
}
_DUMP_ARGS = dict(sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False)


@dataclass(eq=False)
class RunResult:
    """One run's metadata, time series and final values. Build it with ``from_run``."""

    meta: dict
    series: dict = field(default_factory=dict)
    final: dict = field(default_factory=dict)
    timing: dict | None = None

    def __post_init__(self):
        # Normalise to what a load gives back (tuples -> lists, numpy scalars -> Python
        # numbers, arrays -> native-endian C-contiguous copies), so save/load round-trips to ==.
        self.meta = _normalize_table(self.meta, "meta")
        for key, (check, expected, required) in _META_KEYS.items():
            if key not in self.meta:
                if required:
                    raise ValueError(f"meta.{key}: missing (use RunResult.from_run)")
            elif not check(self.meta[key]):
                raise TypeError(f"meta.{key}: expected {expected}, got {self.meta[key]!r}")
        self.series = _normalize_series(self.series)
        self.final = _normalize_table(self.final, "final")
        self.timing = None if self.timing is None else _normalize_table(self.timing, "timing")

    @classmethod
    def from_run(cls, config: ExperimentConfig, *, series: dict, final: dict, sim_time_ns: int,
                 wall_time_s: float | None = None, command: str | list[str] | None = None
                 ) -> RunResult:
        """The result of running ``config``: meta is filled in from it."""
        from tierscan import __version__

        meta = {
            "tierscan_version": __version__,
            "config": config.resolved(),
            "config_hash": config.config_hash(),
            "seed": config.seed,
            "access_model": config.access_model,
            "sim_time_ns": int(sim_time_ns),
        }
        if command is not None:
            meta["command"] = command if isinstance(command, str) else shlex.join(command)
        timing = None if wall_time_s is None else {"wall_time_s": float(wall_time_s)}
        return cls(meta=meta, series=series, final=final, timing=timing)

    # -- views -------------------------------------------------------------------------------

    @property
    def config_hash(self) -> str:
        return self.meta["config_hash"]

    @property
    def seed(self) -> int:
        return self.meta["seed"]

    @property
    def access_model(self) -> str:
        return self.meta["access_model"]

    @property
    def sim_time_ns(self) -> int:
        return self.meta["sim_time_ns"]

    @property
    def wall_time_s(self) -> float | None:
        return None if self.timing is None else self.timing.get("wall_time_s")

    def config(self) -> ExperimentConfig:
        """The configuration, validated again (to re-run it)."""
        return config_from_dict(self.meta["config"], where="<result meta.config>")

    # -- writing -----------------------------------------------------------------------------

    def to_document(self, include_timing: bool = True) -> dict:
        """The JSON document (plain dicts and lists) that ``save`` writes."""
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "meta": _encode(self.meta),
            "series": {name: _encode_array(a) for name, a in self.series.items()},
            "final": _encode(self.final),
        }
        if include_timing and self.timing is not None:
            doc["timing"] = _encode(self.timing)
        return doc

    def to_json(self, include_timing: bool = True) -> str:
        """The file's text: sorted keys, floats by repr, a final newline."""
        return json.dumps(self.to_document(include_timing), **_DUMP_ARGS) + "\n"

    def save(self, path_or_file, include_timing: bool = True) -> None:
        """Write the result as JSON.

        Given a path, the write is atomic: a temporary file in the same directory is written,
        flushed to disk and renamed over ``path``; on any failure the previous file (if any) is
        left untouched and the temporary file removed. Given an open text file, it is written
        to directly (no atomicity). ``include_timing=False`` leaves out the ``timing`` block, so
        that two runs of the same seed and configuration give byte-identical files.
        """
        doc = self.to_document(include_timing)  # any encoding error happens before writing
        if hasattr(path_or_file, "write"):
            json.dump(doc, path_or_file, **_DUMP_ARGS)
            path_or_file.write("\n")
            return
        def write(f):
            json.dump(doc, f, **_DUMP_ARGS)
            f.write("\n")

        atomic_write(path_or_file, write, what="result file")

    # -- reading -----------------------------------------------------------------------------

    @classmethod
    def load(cls, path) -> RunResult:
        """Read a result file; a corrupt, truncated or foreign file is a ConfigError."""
        text, where = read_text(path)
        return cls.from_json(text, where=where)

    @classmethod
    def from_json(cls, text: str, where: str = "<string>") -> RunResult:
        try:
            doc = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as e:
            raise ConfigError(f"corrupt or truncated result file: {e.msg} at line {e.lineno}, "
                              f"column {e.colno} (char offset {e.pos})", where=where) from None
        except _NonStandardJSON as e:
            raise ConfigError(f"corrupt result file: non-standard JSON constant {e.args[0]}",
                              where=where) from None
        return cls._from_document(doc, where)

    @classmethod
    def _from_document(cls, doc, where: str) -> RunResult:
        def fail(field_path, message):
            raise ConfigError(message, where=where, field=field_path or None)

        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            fail("format", f"not a tierscan result file (expected format = {FORMAT!r})")
        for key in doc:
            if key not in _TOP_KEYS:
                fail(key, f"unknown key (expected one of: {', '.join(_TOP_KEYS)})")
        version = doc.get("format_version")
        if not is_int(version) or version < 1:
            fail("format_version", f"expected an integer >= 1, got {version!r}")
        if version > FORMAT_VERSION:
            fail("format_version", f"written by a newer tierscan (format {version}; this one "
                                   f"reads up to {FORMAT_VERSION})")
        for key in ("meta", "series", "final"):
            if not isinstance(doc.get(key), dict):
                fail(key, "missing" if key not in doc else "expected a table")

        meta = _decode(doc["meta"], "meta", fail)
        for key, (check, expected, required) in _META_KEYS.items():
            if key not in meta:
                if required:
                    fail(f"meta.{key}", "missing required key")
            elif not check(meta[key]):
                fail(f"meta.{key}", f"expected {expected}, got {meta[key]!r}")
        try:
            actual = hash_of(meta["config"])
        except (TypeError, ValueError):
            actual = None
        if actual != meta["config_hash"]:
            fail("meta.config_hash", f"{meta['config_hash']!r} does not match the stored "
                                     f"configuration ({actual}); the file was edited or damaged")

        series = {name: _decode_array(obj, f"series.{name}", fail)
                  for name, obj in doc["series"].items()}
        final = _decode(doc["final"], "final", fail)
        timing = doc.get("timing")
        if timing is not None:
            if not isinstance(timing, dict):
                fail("timing", "expected a table")
            timing = _decode(timing, "timing", fail)
            wall = timing.get("wall_time_s")
            if wall is not None and not (isinstance(wall, (int, float)) and
                                         not isinstance(wall, bool) and wall >= 0):
                fail("timing.wall_time_s", f"expected a number >= 0, got {wall!r}")
        # What the readers (tables, plots, vmstat) rely on: checked now, one line naming the
        # field, rather than a crash in `tierscan report` later.
        check_result(meta, series, final, fail, where)
        try:
            return cls(meta=meta, series=series, final=final, timing=timing)
        except ConfigError:
            raise
        except (TypeError, ValueError) as e:  # series shapes that do not fit together
            raise ConfigError(str(e), where=where) from None

    # -- comparison --------------------------------------------------------------------------

    def __eq__(self, other):
        """Exact equality: same values, arrays equal bit for bit with the same dtype and shape."""
        if not isinstance(other, RunResult):
            return NotImplemented
        return (_deep_equal(self.meta, other.meta) and _deep_equal(self.final, other.final)
                and _deep_equal(self.timing, other.timing)
                and _deep_equal(self.series, other.series))

    __hash__ = None

    def __repr__(self):
        return (f"RunResult(config_hash={self.meta.get('config_hash')!r}, "
                f"seed={self.meta.get('seed')}, "
                f"sim_time_ns={self.meta.get('sim_time_ns')}, series={sorted(self.series)}, "
                f"final={sorted(self.final)})")


# -- normalisation ---------------------------------------------------------------------------


def _normalize_table(d, path: str) -> dict:
    if not isinstance(d, dict):
        raise TypeError(f"{path}: expected a dict, got {type(d).__name__}")
    return _normalize(d, path)


def _normalize(v, path: str):
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if not isinstance(k, str):
                raise TypeError(f"{path}: keys must be strings (JSON has no other), got {k!r}")
            if k in _RESERVED:
                raise ValueError(f"{path}: the key {k!r} is reserved by the result format")
            out[k] = _normalize(x, f"{path}.{k}")
        return out
    if isinstance(v, (list, tuple)):
        return [_normalize(x, f"{path}[{i}]") for i, x in enumerate(v)]
    if isinstance(v, np.ndarray):
        return _check_array(v, path)
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        if isinstance(v, np.floating) and v.dtype.itemsize > 8:
            raise TypeError(f"{path}: {v.dtype} cannot be stored exactly; convert to float64")
        return float(v)
    if v is None or isinstance(v, str):
        return v
    raise TypeError(f"{path}: cannot store {type(v).__name__} in a result file "
                    f"(expected numbers, strings, booleans, None, lists, dicts or arrays)")


def _check_array(a, path: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "biuf" or a.dtype.itemsize > 8:
        raise TypeError(f"{path}: arrays must be bool, integer or float (at most 64-bit), "
                        f"got {a.dtype}")
    return np.array(a, dtype=a.dtype.newbyteorder("="), order="C", copy=True)


def _normalize_series(series) -> dict:
    if not isinstance(series, dict):
        raise TypeError(f"series: expected a dict of arrays, got {type(series).__name__}")
    out = {}
    for name, a in series.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"series: names must be non-empty strings, got {name!r}")
        out[name] = _check_array(a, f"series.{name}")
    if not out:
        return out
    t = out.get("time_ns")
    if t is None:
        raise ValueError("series.time_ns: missing (every time series is sampled at time_ns)")
    if t.dtype != np.int64 or t.ndim != 1:
        raise ValueError(f"series.time_ns: expected a 1-D int64 array, got {t.dtype} with "
                         f"shape {t.shape}")
    for name, a in out.items():
        if a.ndim < 1 or a.shape[0] != t.shape[0]:
            raise ValueError(f"series.{name}: expected {t.shape[0]} samples along the first "
                             f"axis (as time_ns), got shape {a.shape}")
    return out


# -- encoding --------------------------------------------------------------------------------


def _uint_view(a: np.ndarray) -> np.ndarray:
    return a.view(np.dtype(f"uint{a.dtype.itemsize * 8}"))


def _canonical_nan_bits(dtype: np.dtype) -> int:
    return int(_uint_view(np.array([np.nan], dtype=dtype))[0])


def _nonfinite_token(x: float, bits: int, canonical: int) -> str:
    if x == math.inf:
        return "inf"
    if x == -math.inf:
        return "-inf"
    return "nan" if bits == canonical else f"nan:{bits:#x}"


def _encode_array(a: np.ndarray) -> dict:
    flat = a.reshape(-1)
    data = flat.tolist()
    if a.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(flat))
        if bad.size:
            bits, canonical = _uint_view(flat), _canonical_nan_bits(a.dtype)
            for i in bad.tolist():
                data[i] = _nonfinite_token(data[i], int(bits[i]), canonical)
    return {"dtype": a.dtype.name, "shape": list(a.shape), "data": data}


def _encode(v):
    if isinstance(v, dict):
        return {k: _encode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_encode(x) for x in v]
    if isinstance(v, np.ndarray):
        return {_ARRAY_TAG: _encode_array(v)}
    if isinstance(v, float) and not math.isfinite(v):
        bits = struct.unpack("<Q", struct.pack("<d", v))[0]
        return {_FLOAT_TAG: _nonfinite_token(v, bits, _canonical_nan_bits(np.dtype(np.float64)))}
    return v


# -- decoding --------------------------------------------------------------------------------


class _NonStandardJSON(Exception):
    pass


def _reject_constant(name):
    raise _NonStandardJSON(name)


_ALLOWED_DTYPES = {np.dtype(t).name: np.dtype(t) for t in (
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
    np.float16, np.float32, np.float64)}


def _token_bits(token, dtype: np.dtype):
    """The bit pattern of a non-finite token in ``dtype``, or None if it is not one."""
    if token == "inf":
        return int(_uint_view(np.array([np.inf], dtype=dtype))[0])
    if token == "-inf":
        return int(_uint_view(np.array([-np.inf], dtype=dtype))[0])
    if token == "nan":
        return _canonical_nan_bits(dtype)
    if isinstance(token, str) and token.startswith("nan:0x"):
        try:
            bits = int(token[4:], 16)
        except ValueError:
            return None
        width = dtype.itemsize * 8
        if bits >= 1 << width:
            return None
        if not np.isnan(np.array([bits], dtype=f"uint{width}").view(dtype)[0]):
            return None
        return bits
    return None


def _decode_array(obj, path: str, fail) -> np.ndarray:
    if not isinstance(obj, dict) or set(obj) != {"dtype", "shape", "data"}:
        fail(path, "expected an array as {\"dtype\": ..., \"shape\": [...], \"data\": [...]}")
    dtype = _ALLOWED_DTYPES.get(obj["dtype"]) if isinstance(obj["dtype"], str) else None
    if dtype is None:
        fail(f"{path}.dtype", f"expected one of {', '.join(_ALLOWED_DTYPES)}, got {obj['dtype']!r}")
    shape = obj["shape"]
    if not isinstance(shape, list) or not all(is_int(n) and n >= 0 for n in shape):
        fail(f"{path}.shape", f"expected a list of non-negative integers, got {shape!r}")
    data = obj["data"]
    size = math.prod(shape)
    if not isinstance(data, list) or len(data) != size:
        got = f"{len(data)} values" if isinstance(data, list) else repr(type(data).__name__)
        fail(f"{path}.data", f"expected {size} values for shape {tuple(shape)}, got {got}")

    patches = []
    if dtype.kind == "b":
        ok = all(type(x) is bool for x in data)
        want = "booleans"
    elif dtype.kind in "iu":
        ok = all(type(x) is int for x in data)
        want = "integers"
    else:
        ok, want = True, "numbers or 'nan'/'inf'/'-inf'"
        for i, x in enumerate(data):
            if type(x) is float or type(x) is int:
                continue
            bits = _token_bits(x, dtype)
            if bits is None:
                ok = False
                break
            patches.append((i, bits))
        if patches:
            data = list(data)
            for i, _ in patches:
                data[i] = 0.0
    if not ok:
        fail(f"{path}.data", f"expected {want} for dtype {dtype.name}")
    try:
        with np.errstate(over="raise"):
            a = np.array(data, dtype=dtype).reshape(shape)
    except (OverflowError, ValueError, FloatingPointError):
        fail(f"{path}.data", f"a value is out of range for dtype {dtype.name}")
    if patches:
        flat = _uint_view(a.reshape(-1))
        for i, bits in patches:
            flat[i] = bits
    return a


def _decode(v, path: str, fail):
    if isinstance(v, dict):
        if _ARRAY_TAG in v or _FLOAT_TAG in v:
            if len(v) != 1:
                fail(path, f"a table with {_ARRAY_TAG!r} or {_FLOAT_TAG!r} must have no other key")
            if _ARRAY_TAG in v:
                return _decode_array(v[_ARRAY_TAG], path, fail)
            bits = _token_bits(v[_FLOAT_TAG], np.dtype(np.float64))
            if bits is None:
                fail(path, f"expected 'nan', 'inf' or '-inf', got {v[_FLOAT_TAG]!r}")
            return struct.unpack("<d", struct.pack("<Q", bits))[0]
        return {k: _decode(x, f"{path}.{k}", fail) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode(x, f"{path}[{i}]", fail) for i, x in enumerate(v)]
    return v


# -- comparison ------------------------------------------------------------------------------


def _deep_equal(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return a == b


__all__ = ["FORMAT", "FORMAT_VERSION", "RunResult"]
