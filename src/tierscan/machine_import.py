"""Measured bandwidth-latency curves into a machine: parsers for Intel MLC and Mess curve files.

``tierscan machine import`` (cli/machine.py) is a thin wrapper over this module:

- ``parse_mess(path)``: a Mess benchmark curve file ``bwlat_<N>.txt`` (two whitespace-separated
  columns, bandwidth in MB/s and latency; ``N`` is the percentage of reads, per the Mess
  simulator's data/README.md).
- ``parse_mlc(path)``: the loaded-latency table Intel MLC prints for ``--loaded_latency``
  (``Inject Delay / Latency(ns) / Bandwidth(MB/sec)``), with the read ratio taken from the
  header MLC prints ("Using Read-only traffic type") or from ``mlc -W`` (``MLC_MIX``).
- ``clean_curve``: measured points into the schema's form (strictly ascending bandwidth,
  non-decreasing latency, at most ``max_points``), reporting what it changed.
- ``machine_with_curves``: a machine (a preset or a TOML file) with one node's device replaced.
- ``machine_to_toml``: any Machine as TOML that ``Machine.from_toml`` reads back equal.

Every bad input is a one-line ConfigError naming the file and line (``where="f.txt:12"``).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass

import numpy as np

from tierscan.configcheck import read_text
from tierscan.errors import ConfigError
from tierscan.machine import Machine

# mlc -W<n>: the read:write mix of the load-generating threads, as MLC's documentation lists it
# (2 = 2:1, 3 = 3:1, 4 = 3:2, 5 = 1:1, 12 = 4:1 read-write). The read ratio is reads / (reads +
# writes) of that mix. MLC does not say whether a store's read-for-ownership is counted in its
# bandwidth; where it matters, measure with -W and pass --read-ratio explicitly.
MLC_MIX = {1: (1, 0), 2: (2, 1), 3: (3, 1), 4: (3, 2), 5: (1, 1), 12: (4, 1)}

_MESS_NAME = re.compile(r"^bwlat_(\d+)\.txt$")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_MLC_ROW = re.compile(rf"^\s*(\d+)\s+({_NUMBER})\s+({_NUMBER})\s*$")


@dataclass(frozen=True)
class RawCurve:
    """Points as measured: bandwidth in GB/s (1e9 B/s), latency in ns, in file order."""

    read_ratio: float
    bandwidth_gbps: np.ndarray
    latency_ns: np.ndarray
    path: str
    kind: str  # "mess" | "mlc"


def is_mess_name(name: str) -> bool:
    """True for a Mess curve file name, bwlat_<N>.txt."""
    return _MESS_NAME.match(name) is not None


def read_ratio_of_mix(w: int) -> float:
    """The read ratio of ``mlc -W<w>`` (see MLC_MIX)."""
    if w not in MLC_MIX:
        known = ", ".join(f"{k} ({r}:{wr})" for k, (r, wr) in sorted(MLC_MIX.items()))
        raise ConfigError(f"unknown MLC traffic mix -W{w} (known: {known}); give --read-ratio",
                          field="--mix")
    r, wr = MLC_MIX[w]
    return r / (r + wr)


def _lines(path) -> tuple[list[str], str]:
    text, where = read_text(path)
    return text.splitlines(), where


def parse_mess(path, *, latency_unit: str = "ns", cpu_ghz: float | None = None) -> RawCurve:
    """One Mess curve file. ``latency_unit="cycles"`` converts with ``cpu_ghz`` (the Mess
    simulator's data/README.md gives latency in CPU cycles for its Standalone/data curves; the
    ZSim memory_curve files are in ns)."""
    where = os.fspath(path)
    m = _MESS_NAME.match(os.path.basename(where))
    if not m:
        raise ConfigError("not a Mess curve file name: expected bwlat_<N>.txt, N = percent reads",
                          where=where)
    pct = int(m[1])
    if not 0 < pct <= 100:
        raise ConfigError(f"read percentage {pct} is outside 1..100 (a curve of only writes has "
                          f"no read ratio in (0, 1])", where=where)
    if latency_unit == "cycles" and not (cpu_ghz and cpu_ghz > 0):
        raise ConfigError("latency in cycles needs the CPU frequency the curve was measured at",
                          field="--cpu-ghz")
    lines, where = _lines(path)
    bw, lat = [], []
    for k, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            b, t = float(parts[0]), float(parts[1])
            if not (math.isfinite(b) and math.isfinite(t)):
                raise ValueError
        except ValueError:
            raise ConfigError(f"expected two numbers (bandwidth MB/s, latency), got {line.strip()!r}",
                              where=f"{where}:{k}") from None
        if t <= 0:
            raise ConfigError(f"latency must be > 0, got {parts[1]}", where=f"{where}:{k}")
        bw.append(b / 1000.0)  # MB/s -> GB/s
        lat.append(t / cpu_ghz if latency_unit == "cycles" else t)
    if len(bw) < 2:
        raise ConfigError(f"expected at least 2 points, found {len(bw)}", where=where)
    return RawCurve(pct / 100.0, np.array(bw), np.array(lat), where, "mess")


def parse_mlc(path, *, read_ratio: float | None = None) -> RawCurve:
    """The loaded-latency table of an Intel MLC report (``mlc --loaded_latency`` or a full run).

    The table starts at the header line beginning "Inject" (MLC prints "Inject  Latency
    Bandwidth" then "Delay  (ns)  MB/sec", sometimes a line of "="), and its rows are
    ``delay latency_ns bandwidth_MBps``. MLC's "MB/sec" is 1e6 bytes/s (it prints so).
    """
    lines, where = _lines(path)
    starts = [k for k, line in enumerate(lines) if line.strip().startswith("Inject")]
    if not starts:
        raise ConfigError("no loaded-latency table (a line starting 'Inject' followed by "
                          "'Delay (ns) MB/sec') found; is this `mlc --loaded_latency` output?",
                          where=where)
    if len(starts) > 1:
        raise ConfigError(f"more than one loaded-latency table (lines {starts[0] + 1} and "
                          f"{starts[1] + 1}); split the file, one traffic mix per file",
                          where=where)
    head = starts[0]
    if head + 1 >= len(lines) or not lines[head + 1].strip().startswith("Delay"):
        raise ConfigError("expected the 'Delay (ns) MB/sec' line after 'Inject'",
                          where=f"{where}:{head + 2}")
    ratio = read_ratio if read_ratio is not None else _mlc_traffic(lines[:head], where)
    bw, lat = [], []
    k = head + 2
    if k < len(lines) and set(lines[k].strip()) == {"="}:
        k += 1
    for k in range(k, len(lines)):
        line = lines[k]
        if not line.strip():
            break
        m = _MLC_ROW.match(line)
        if not m:
            if bw and not re.match(r"^\s*\d", line):
                break  # the table ended: MLC goes on to the next measurement
            raise ConfigError(f"expected 'delay latency_ns bandwidth_MBps', got {line.strip()!r}",
                              where=f"{where}:{k + 1}")
        t, b = float(m[2]), float(m[3])
        if t <= 0 or b < 0:
            raise ConfigError(f"expected latency > 0 and bandwidth >= 0, got {line.strip()!r}",
                              where=f"{where}:{k + 1}")
        lat.append(t)
        bw.append(b / 1000.0)
    if len(bw) < 2:
        raise ConfigError(f"the loaded-latency table has {len(bw)} rows; at least 2 needed",
                          where=f"{where}:{head + 1}")
    return RawCurve(ratio, np.array(bw), np.array(lat), where, "mlc")


def _mlc_traffic(header: list[str], where: str) -> float:
    """The read ratio MLC's header states for the table that follows it (the last "Using
    ... traffic" or read:write line before the table)."""
    for line in reversed(header):
        low = line.lower()
        if "read-only traffic" in low or "all reads" in low:
            return 1.0
        m = re.search(r"(\d+)\s*:\s*(\d+)\s+reads?-writes?", low) or \
            re.search(r"(\d+)r\s*:\s*(\d+)w", low)
        if m and "using" in low:
            r, w = int(m[1]), int(m[2])
            if r > 0:
                return r / (r + w)
        if low.strip().startswith("measuring"):
            break  # the traffic line belongs to this measurement's own header
    raise ConfigError("cannot tell the traffic's read ratio from the MLC header; give "
                      "--read-ratio R or --mix W (the -W value MLC ran with)", where=where)


def clean_curve(bw, lat, *, max_points: int = 16) -> tuple[np.ndarray, np.ndarray, str]:
    """Measured points into the schema's form; returns (bandwidth, latency, what changed).

    1. Points with negative bandwidth (measurement noise at idle) are dropped.
    2. Points are taken in order of rising latency and a point is kept only if it serves more
       bandwidth than every point kept before it. This drops the part of a curve past its
       bandwidth maximum, where a saturated device serves *less* bandwidth at higher latency
       (the Mess curves' "wave"), and noise that would make latency fall as bandwidth rises.
    3. The curve is thinned (Ramer-Douglas-Peucker on bandwidth and latency each scaled to
       [0, 1]) to at most ``max_points``, always keeping the first and last point.
    """
    bw, lat = np.asarray(bw, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    n0 = len(bw)
    keep = bw >= 0
    bw, lat = bw[keep], lat[keep]
    dropped_neg = n0 - len(bw)
    order = np.lexsort((bw, lat))  # by latency, ties by bandwidth
    bw, lat = bw[order], lat[order]
    running = np.maximum.accumulate(bw)
    prev = np.concatenate(([-np.inf], running[:-1]))
    env = bw > prev
    bw, lat = bw[env], lat[env]
    dropped_env = len(env) - len(bw)
    if len(bw) < 2:
        raise ConfigError("fewer than 2 usable points after cleaning (all bandwidths negative "
                          "or none rising)")
    idx = _thin(bw, lat, max_points)
    note = (f"{n0} points: {dropped_neg} with negative bandwidth dropped, {dropped_env} past the "
            f"bandwidth maximum or out of order dropped, thinned to {len(idx)}")
    return np.round(bw[idx], 3), np.round(lat[idx], 2), note


def _thin(x: np.ndarray, y: np.ndarray, max_points: int) -> np.ndarray:
    if max_points < 2:
        raise ConfigError(f"expected --points >= 2, got {max_points}", field="--points")
    if len(x) <= max_points:
        return np.arange(len(x))
    sx = (x - x[0]) / max(x[-1] - x[0], 1e-12)
    sy = (y - y.min()) / max(np.ptp(y), 1e-12)
    eps = 1e-3
    while True:
        idx = _rdp(sx, sy, eps)
        if len(idx) <= max_points:
            return idx
        eps *= 1.5


def _rdp(x: np.ndarray, y: np.ndarray, eps: float) -> np.ndarray:
    """Ramer-Douglas-Peucker on at most a few hundred points: the indices kept, ascending."""
    keep = np.zeros(len(x), dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, len(x) - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        dx, dy = x[b] - x[a], y[b] - y[a]
        seg = np.hypot(dx, dy) or 1e-12
        d = np.abs(dy * (x[a + 1:b] - x[a]) - dx * (y[a + 1:b] - y[a])) / seg
        k = int(np.argmax(d))
        if d[k] > eps:
            keep[a + 1 + k] = True
            stack += [(a, a + 1 + k), (a + 1 + k, b)]
    return np.flatnonzero(keep)


def curve_table(raw: RawCurve, *, bandwidth_scale: float = 1.0, max_points: int = 16,
                source: str | None = None) -> tuple[dict, str]:
    """One ``[[nodes.memory.curve]]`` table from a parsed file, and a note of what cleaning did."""
    bw, lat, note = clean_curve(raw.bandwidth_gbps * bandwidth_scale, raw.latency_ns,
                                max_points=max_points)
    if source is None:
        source = f"{'Mess curve' if raw.kind == 'mess' else 'Intel MLC --loaded_latency'} " \
                 f"{os.path.basename(raw.path)}"
        if bandwidth_scale != 1.0:
            source += f", bandwidth x {bandwidth_scale:g}"
    return {"read_ratio": raw.read_ratio, "bandwidth_gbps": bw.tolist(),
            "latency_ns": lat.tolist(), "source": source}, note


def machine_with_curves(base: Machine, node: int, curves: list[dict], device: dict) -> Machine:
    """``base`` with node ``node``'s memory replaced by ``device`` (schema keys: type, channels,
    mts, link_width, optional peak_gbps, source) carrying ``curves``; validated as any TOML."""
    if not 0 <= node < base.nr_nodes:
        raise ConfigError(f"no node {node} (the machine has nodes 0..{base.nr_nodes - 1})",
                          field="--node")
    ratios = [c["read_ratio"] for c in curves]
    dup = next((r for r in ratios if ratios.count(r) > 1), None)
    if dup is not None:
        raise ConfigError(f"two curves have read ratio {dup:g}; give one file per traffic mix")
    d = base.to_dict()
    d["nodes"][node]["memory"] = dict(device, curve=sorted(curves, key=lambda c: c["read_ratio"]))
    return Machine.from_dict(d, where=base.source)


# -- TOML out ----------------------------------------------------------------------------------


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        # JSON string escapes are TOML basic-string escapes (ensure_ascii=False keeps non-ASCII
        # as itself, so no surrogate pairs, which TOML rejects).
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {type(v).__name__}")


def _size(nbytes: int) -> str:
    for unit, mult in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes % mult == 0:
            return f"{nbytes // mult}{unit}"
    return str(nbytes)


def memory_toml(mem: dict) -> str:
    """One node's ``[nodes.memory]`` table and its curves (schema keys, as in to_dict())."""
    out = ["[nodes.memory]"]
    for key in ("type", "channels", "mts", "link_width", "peak_gbps", "source"):
        if key in mem:
            out.append(f"{key} = {_toml_value(mem[key])}")
    for curve in mem["curve"]:
        out += ["", "[[nodes.memory.curve]]"]
        for key in ("read_ratio", "bandwidth_gbps", "latency_ns", "source"):
            out.append(f"{key} = {_toml_value(curve[key])}")
    return "\n".join(out)


def machine_to_toml(machine: Machine, header: str = "") -> str:
    """The machine as a TOML document (docs/machine.md schema); comments from ``header``."""
    d = machine.to_dict()
    out = [f"# {line}".rstrip() for line in header.splitlines()]
    out.append(f"name = {_toml_value(d['name'])}")
    if d["capacity_scale"] != 1.0:
        out.append(f"capacity_scale = {_toml_value(d['capacity_scale'])}")
    for node in d["nodes"]:
        out += ["", "[[nodes]]"]
        for key in ("id", "capacity", "cpus", "tier", "kind", "zone"):
            value = _size(node[key]) if key == "capacity" else node[key]
            out.append(f"{key} = {_toml_value(value)}")
        if node.get("memory") is not None:
            out += ["", memory_toml(node["memory"])]
    out += ["", "[latency]", "# row = CPU node, column = memory node"]
    for key in ("load_ns", "store_ns", "distance"):
        out.append(f"{key} = {_toml_value(d['latency'][key])}")
    if "cpu" in d:
        out += ["", "[cpu]"]
        for key in ("llc", "tlb_4k", "tlb_2m", "source"):
            value = _size(d["cpu"][key]) if key == "llc" else d["cpu"][key]
            out.append(f"{key} = {_toml_value(value)}")
    return "\n".join(out) + "\n"
