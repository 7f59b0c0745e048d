"""A memory device's bandwidth-latency curve family, interpolated (DESIGN §6, issue 12 item 1).

A device (one node's DRAM channels, or its CXL links) has one measured curve per read ratio of
its traffic: loaded latency against the bandwidth it serves (the form the Mess benchmark
publishes). The solver (solve.py) needs the curve both ways: the queueing latency at a bandwidth
(``increment``) and the bandwidth at a queueing latency (``bandwidth_at``, the inverse).

Rules (docs/cost-model.md, "Memory devices"; tests/test_memsys_devices.py pins each one):

- **Monotone.** A measured curve may wiggle (Mess curves do, at low bandwidth and past the
  knee, where bandwidth falls back as latency rises). The model uses its running maximum of
  latency over ascending bandwidth, so latency never falls as the device gets busier; this is
  what makes the closed-loop fixed point unique (solve.py).
- **Below the first point:** flat at the first point's latency (a curve measured from 1 GB/s
  up says nothing below it, and an idle device's latency is its lowest).
- **Beyond the last point:** the device serves no more than the last point's bandwidth, its
  *peak*. The inverse is flat there: any latency past the last point's maps to the peak, so
  the closed loop caps throughput at the peak and the latency rises to what Little's law
  gives for the demand (finite and positive, never negative or infinite). The forward curve
  past the peak continues the last segment's slope; only plots and tests read it there.
- **Between read ratios:** linear interpolation at equal *utilisation* (bandwidth / the
  curve's peak), with the peak itself interpolated linearly. Interpolating at equal bandwidth
  is undefined past the smaller of two curves' peaks (a DRAM curve at 50% reads peaks well
  below the 100% one); at equal utilisation the family stays monotone everywhere. Outside the
  measured ratios the nearest curve is used.
- **Increment.** The solver adds only the curve's rise over its own idle point to the
  machine's cited idle latency matrix (MEMSYS-INTERFACE.md, "Semantics").
- **Duplex.** A "half" device (DRAM, Optane, HBM) serves reads and writes from one budget:
  its effective bandwidth is reads + writes and its read ratio indexes the family. A "full"
  device (a CXL link) has a separate lane set per direction. When its family was measured at
  several read ratios (Mess's CXL curves: total bandwidth peaks at 58% reads, 44 GB/s,
  against 29 GB/s at 90%), the measurement already shows what the duplex link does with a
  mix, so it is used as a half device's is. With a single curve (a read-only measurement),
  each direction is taken to serve its own traffic as that read stream would: the effective
  bandwidth is the busier direction, max(reads, writes), on that curve.
"""

from __future__ import annotations

import numpy as np

GRID = 129                         # utilisation points each curve is resampled on
_U = np.linspace(0.0, 1.0, GRID)


def _monotone(bw, lat):
    """The curve as (bandwidth, latency) with ascending bandwidth and running-max latency."""
    bw = np.asarray(bw, float)
    lat = np.maximum.accumulate(np.asarray(lat, float))
    if bw.size == 0 or np.any(np.diff(bw) <= 0) or np.any(lat <= 0) or bw[0] < 0:
        raise ValueError("a curve needs ascending bandwidths >= 0 and latencies > 0")
    return bw, lat


class DeviceModel:
    """One node's curve family. ``curves``: (read_ratio, bandwidth_gbps, latency_ns) triples."""

    def __init__(self, curves, duplex: str = "half", name: str = ""):
        if duplex not in ("half", "full"):
            raise ValueError(f"duplex must be 'half' or 'full', got {duplex!r}")
        if not curves:
            raise ValueError("a device needs at least one curve")
        curves = sorted(curves, key=lambda c: c[0])
        self.name, self.duplex = name, duplex
        self.ratios = np.array([c[0] for c in curves], float)
        self.peaks = np.empty(len(curves))
        self.lat = np.empty((len(curves), GRID))    # latency at utilisation _U, per curve
        self.raw = []                               # the monotone measured points
        for i, (_, bw, lat) in enumerate(curves):
            bw, lat = _monotone(bw, lat)
            self.raw.append((bw, lat))
            self.peaks[i] = bw[-1]
            self.lat[i] = np.interp(_U * bw[-1], bw, lat)
        if np.any(self.peaks <= 0):
            raise ValueError("a curve's last point must have bandwidth > 0")
        self.per_direction = duplex == "full" and len(curves) == 1
        # the lookup table per ratio: strictly ascending latency for the inverse (ties are
        # broken by a negligible ramp, 1e-9 ns per grid step)
        self._lat_inv = np.maximum.accumulate(self.lat, axis=1) + np.arange(GRID) * 1e-9

    @classmethod
    def from_memory(cls, memory, name: str = "") -> "DeviceModel":
        """From a machine node's ``memory`` (tierscan.machine.MemoryDevice)."""
        return cls([(c.read_ratio, c.bandwidth_gbps, c.latency_ns) for c in memory.curves],
                   duplex=memory.duplex, name=name)

    # ---- the family at one read ratio -----------------------------------------------------------
    def at_ratio(self, r: float, *, strict: bool = True) -> tuple[float, np.ndarray]:
        """(peak GB/s, latency at each utilisation of the grid) at read ratio ``r``; with
        ``strict`` the latencies carry the tie-breaking ramp the inverse needs."""
        table = self._lat_inv if strict else self.lat
        if self.ratios.size == 1 or r <= self.ratios[0]:
            return float(self.peaks[0]), table[0]
        if r >= self.ratios[-1]:
            return float(self.peaks[-1]), table[-1]
        j = int(np.searchsorted(self.ratios, r))
        t = (r - self.ratios[j - 1]) / (self.ratios[j] - self.ratios[j - 1])
        return (float((1 - t) * self.peaks[j - 1] + t * self.peaks[j]),
                (1 - t) * table[j - 1] + t * table[j])

    def effective(self, read_gbps: float, write_gbps: float) -> tuple[float, float]:
        """(bandwidth the curve is read at, read ratio indexing the family) for this traffic."""
        if self.per_direction:
            return max(read_gbps, write_gbps), float(self.ratios[-1])
        total = read_gbps + write_gbps
        return total, (read_gbps / total if total > 0 else 1.0)

    def latency(self, bw: float, r: float = 1.0) -> float:
        """Loaded latency (ns) at bandwidth ``bw`` and read ratio ``r``; past the peak the last
        segment's slope continues (for plots and tests: the solver never serves past it)."""
        peak, lat = self.at_ratio(r, strict=False)
        u = bw / peak
        if u <= 1.0:
            return float(np.interp(u, _U, lat))
        slope = (lat[-1] - lat[-2]) / (_U[-1] - _U[-2])
        return float(lat[-1] + slope * (u - 1.0))

    def idle(self, r: float = 1.0) -> float:
        return float(self.at_ratio(r, strict=False)[1][0])

    def increment(self, bw: float, r: float = 1.0) -> float:
        """The curve's rise over its idle point at ``bw`` (what the solver adds to load_ns)."""
        return self.latency(bw, r) - self.idle(r)

    def bandwidth_at(self, increments, r: float = 1.0):
        """The inverse: the bandwidth (GB/s) at which the rise over idle is ``increments``
        (array); the peak for any rise at or past the last point's."""
        peak, lat = self.at_ratio(r)
        return np.interp(np.asarray(increments, float) + lat[0], lat, _U) * peak

    def peak(self, r: float = 1.0) -> float:
        return self.at_ratio(r)[0]


def devices_of(machine) -> list:
    """A DeviceModel per node (None for a node without ``memory``)."""
    out = []
    for node in machine.nodes:
        mem = getattr(node, "memory", None)
        out.append(None if mem is None else DeviceModel.from_memory(mem, name=f"node{node.id}"))
    return out
