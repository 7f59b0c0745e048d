"""Tables of a run result: summary, vmstat, numastat-style per-node, and a comparison of runs.

A ``Table`` holds raw values (counts, pages, nanoseconds, ratios) with a unit ("kind") per cell,
and renders them three ways:

- ``to_rich(raw=False)``: a rich table in human units (KiB/MiB/GiB, ns/us/ms/s, 12,345, 87.3%);
  with ``raw=True`` the machine keys and the raw numbers instead;
- ``write_csv(path)`` / ``to_csv()``: raw values, header = the column keys, written atomically;
- ``records()``: a list of dicts of raw values, ready for ``json.dumps`` (NaN becomes None).

Builders: ``summary_table(result)``, ``vmstat_table(result, names=None, node=None)``,
``numastat_table(result)``, ``compare_table({label: result, ...})``. The values they read from a
``RunResult`` are documented in docs/cli.md ("What the tables show").
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from tierscan.report import atomic_write
from tierscan.sim.results import RunResult

PAGE_SIZE = 4096

# kind -> the unit a raw value is in (CSV "unit" column, JSON docs)
UNITS = {"text": "", "count": "", "number": "", "pages": "pages", "bytes": "bytes", "ns": "ns",
         "seconds": "s", "ratio": "ratio", "rate": "1/s"}

# The counters DESIGN §7 names: what a tiering report shows by default, in this order.
TIERING_COUNTERS = (
    "pgpromote_success", "pgpromote_candidate", "pgdemote_kswapd", "pgdemote_direct",
    "numa_pte_updates", "numa_hint_faults", "numa_hint_faults_local", "numa_pages_migrated",
    "pgmigrate_success", "pgmigrate_fail", "thp_migration_success",
)

_MISSING = "—"


# -- formatting ------------------------------------------------------------------------------


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def _fixed3(x: float) -> str:
    """Three significant digits without exponent notation: 1.23, 12.3, 123, 1234."""
    a = abs(x)
    if a < 10:
        return f"{x:.2f}"
    if a < 100:
        return f"{x:.1f}"
    return f"{x:.0f}"


def fmt_count(v) -> str:
    """12,345; a fractional value (rate-model accesses) below 1000 keeps 3 digits."""
    if _is_missing(v):
        return _MISSING
    if isinstance(v, float) and not v.is_integer() and abs(v) < 1000:
        return _fixed3(v)
    return f"{round(v):,}"


def fmt_bytes(n) -> str:
    """Binary units with one decimal: 512 B, 4.0 KiB, 2.0 MiB, 8.0 GiB."""
    if _is_missing(n):
        return _MISSING
    n = float(n)
    for name, mult in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= mult:
            return f"{n / mult:.1f} {name}"
    return f"{n:.0f} B"


def fmt_ns(ns) -> str:
    """A duration: 850 ns, 12.3 us, 1.23 ms, 110.412 s."""
    if _is_missing(ns):
        return _MISSING
    a = abs(ns)
    if a < 1e3:
        return f"{ns:.0f} ns"
    if a < 1e6:
        return f"{_fixed3(ns / 1e3)} us"
    if a < 1e9:
        return f"{_fixed3(ns / 1e6)} ms"
    return f"{ns / 1e9:.3f} s"


def fmt_rate(v) -> str:
    """Events per second with an SI prefix: 950/s, 23.6 k/s, 4.43 M/s."""
    if _is_missing(v):
        return _MISSING
    for name, mult in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= mult:
            return f"{_fixed3(v / mult)} {name}/s"
    return f"{_fixed3(v)}/s"


def fmt_ratio(v) -> str:
    return _MISSING if _is_missing(v) else f"{v:.1%}"


def format_value(value, kind: str, raw: bool = False) -> str:
    """One cell as text: human units, or the raw number with ``raw=True``."""
    if raw:
        if value is None:
            return ""
        if isinstance(value, float):
            return repr(value)
        return str(value)
    if kind == "text":
        return _MISSING if value is None else str(value)
    if kind == "count":
        return fmt_count(value)
    if kind == "pages":
        return fmt_bytes(None if _is_missing(value) else value * PAGE_SIZE)
    if kind == "bytes":
        return fmt_bytes(value)
    if kind == "ns":
        return fmt_ns(value)
    if kind == "seconds":
        return fmt_ns(None if _is_missing(value) else value * 1e9)
    if kind == "ratio":
        return fmt_ratio(value)
    if kind == "rate":
        return fmt_rate(value)
    if kind == "number":
        return _MISSING if _is_missing(value) else f"{value:.4g}"
    raise ValueError(f"unknown kind {kind!r}")


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


# -- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """A value with its own kind (overriding the column's) and, optionally, the text shown in
    human mode (e.g. a metric's label, whose raw form is its key)."""

    value: object
    kind: str = "text"
    text: str | None = None


@dataclass(frozen=True)
class Column:
    key: str                    # CSV header, JSON key, raw-mode header
    label: str | None = None    # human-mode header (default: key)
    kind: str = "text"
    human: bool = True          # shown in human mode (a "unit" column is raw-only)


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: list[list] = field(default_factory=list)

    def _cell(self, row: list, i: int) -> Cell:
        v = row[i]
        return v if isinstance(v, Cell) else Cell(v, self.columns[i].kind)

    def records(self) -> list[dict]:
        """Raw values, one dict per row, keyed by the column keys (NaN -> None)."""
        return [{c.key: _jsonable(self._cell(row, i).value) for i, c in enumerate(self.columns)}
                for row in self.rows]

    def to_rich(self, raw: bool = False):
        """A rich Table. Every string is literal (no rich markup: labels may hold '[...]')."""
        from rich.table import Table as RichTable
        from rich.text import Text

        # A column empty on every row says nothing in human mode (runtime of runs that stopped
        # at their duration, precision that is unknown); records() and raw mode keep it.
        cols = [(i, c) for i, c in enumerate(self.columns)
                if raw or (c.human and (not self.rows or any(
                    not _is_missing(self._cell(row, i).value) for row in self.rows)))]
        t = RichTable(title=Text(self.title, style="table.title"))
        for _, c in cols:
            t.add_column(Text(c.key if raw else (c.label or c.key)),
                         justify="left" if c.kind == "text" else "right")
        for row in self.rows:
            out = []
            for i, _ in cols:
                cell = self._cell(row, i)
                out.append(Text(cell.text if (cell.text is not None and not raw)
                                else format_value(cell.value, cell.kind, raw)))
            t.add_row(*out)
        return t

    def to_csv(self) -> str:
        buf = io.StringIO()
        self._write_csv(buf)
        return buf.getvalue()

    def _write_csv(self, f) -> None:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([c.key for c in self.columns])
        for row in self.rows:
            w.writerow([format_value(self._cell(row, i).value, "", raw=True)
                        for i in range(len(self.columns))])

    def write_csv(self, path) -> str:
        """Write the raw values as CSV, atomically; returns the path."""
        return atomic_write(path, self._write_csv)


# -- reading a result ------------------------------------------------------------------------


def nodes_of(result: RunResult) -> list[dict]:
    """The machine's nodes as stored in the result: dicts with id, kind, tier."""
    return list(result.meta["config"]["machine"]["nodes"])


def top_tier_columns(result: RunResult) -> list[int]:
    return [i for i, n in enumerate(nodes_of(result)) if n["tier"] == 0]


def node_label(node: dict) -> str:
    return f"Node {node['id']} ({node['kind']}, tier {node['tier']})"


def result_label(result: RunResult) -> str:
    """A short label for a run: its detectors ('klruscand+numab2'), with the promotion engine
    in parentheses, or 'no detector'; a component's `version`, when set, follows its name
    ('klruscand v1 (pghot v0)')."""
    cfg = result.meta["config"]
    dets = "+".join(_named(d) for d in cfg.get("detectors") or []) or "no detector"
    engine = cfg.get("engine")
    return f"{dets} ({_named(engine)})" if engine else dets


def _named(component: dict) -> str:
    version = component.get("version")
    return f"{component['name']} {version}" if version else component["name"]


def unique_labels(items: Iterable[tuple[str, RunResult]]) -> dict[str, RunResult]:
    """``{label: result}`` with ``result_label`` labels made unique by the given names
    (e.g. file stems), then by position: [('a.json', r1), ...] -> {'klruscand': r1, ...}."""
    items = list(items)
    labels = [result_label(r) for _, r in items]
    out: dict[str, RunResult] = {}
    for (name, r), label in zip(items, labels):
        if labels.count(label) > 1:
            label = f"{label} [{name}]"
        base, k = label, 2
        while label in out:
            label, k = f"{base} #{k}", k + 1
        out[label] = r
    return out


def overall_hit_ratio(result: RunResult) -> float:
    """Accesses served by the top tier / all accesses, over the whole run (NaN if none)."""
    served = result.series.get("served")
    if served is None or served.ndim != 2:
        return float("nan")
    total = float(served.sum())
    if total <= 0:
        return float("nan")
    return float(served[:, top_tier_columns(result)].sum() / total)


def demotions(vmstat: Mapping) -> int:
    return int(sum(v for k, v in vmstat.items() if k.startswith("pgdemote_")))


def promoted_pages(result: RunResult):
    """Pages moved up to the fast tier: the one definition every table and chart uses.

    ``final.promotion.promoted_pages`` (what the promotion engine or the self-promoting
    detector migrated up: NUMA balancing, DAMON, the oracle, pghot...), else the kernel's
    ``pgpromote_success``, which counts only NUMA-balancing promotions (DAMON's and the
    oracle's migrations are not counted there, as in the kernel). None if neither exists."""
    promo = result.final.get("promotion")
    if isinstance(promo, dict) and promo.get("promoted_pages") is not None:
        return promo["promoted_pages"]
    return (result.final.get("vmstat") or {}).get("pgpromote_success")


def accesses(result: RunResult):
    """Accesses completed by all threads (sum of ``series.served``), or None."""
    served = result.series.get("served")
    return None if served is None else float(served.sum())


def throughput(result: RunResult):
    """Accesses per second of simulated time: what a run bound by ``duration`` achieved."""
    n = accesses(result)
    return None if n is None or not result.sim_time_ns else n / (result.sim_time_ns / 1e9)


def daemon_cpu_ns(result: RunResult) -> dict[str, float]:
    """CPU time each daemon (detectors, promotion engine) was charged over the run."""
    return {k: float(v) for k, v in (result.final.get("cpu_ns") or {}).items()}


def daemon_utilisation(result: RunResult) -> dict[str, float]:
    """Busy time / elapsed simulated time of each daemon (``final["daemon_utilisation"]``;
    for result files written before it existed, CPU time over simulated time)."""
    util = result.final.get("daemon_utilisation")
    if util is not None:
        return {k: float(v) for k, v in util.items()}
    sim = result.sim_time_ns
    return {k: ns / sim if sim else float("nan") for k, ns in daemon_cpu_ns(result).items()}


def time_to_promote(result: RunResult):
    """Time-to-promote data in ``final["promotion"]``: ``("cdf", (ns, cumulative pages))``
    from ``time_to_promote_cdf`` (the exact CDF); else ``("samples", array_ns)`` when
    ``time_to_promote_ns`` is a list/array of per-promotion delays, ``("quantiles",
    {q: ns})`` when it is a table of percentiles (``{"p50": ns, "p90": ns}``), else None."""
    promo = result.final.get("promotion")
    if not isinstance(promo, dict):
        return None
    c = promo.get("time_to_promote_cdf")
    if isinstance(c, dict) and c.get("ns") and len(c["ns"]) == len(c.get("pages") or ()):
        return ("cdf", (np.asarray(c["ns"], float), np.asarray(c["pages"], float)))
    v = promo.get("time_to_promote_ns")
    if isinstance(v, (list, np.ndarray)):
        a = np.asarray(v, dtype=float).reshape(-1)
        a = a[np.isfinite(a)]
        return ("samples", a)
    if isinstance(v, dict):
        qs = {}
        for k, x in v.items():
            key = {"median": "p50", "min": "p0", "max": "p100"}.get(k, k)
            if key.startswith("p") and isinstance(x, (int, float)) and not isinstance(x, bool):
                try:
                    qs[float(key[1:])] = float(x)
                except ValueError:
                    continue
        return ("quantiles", dict(sorted(qs.items()))) if qs else None
    return None


def ttp_quantile(result: RunResult, q: float):
    """The q-th percentile of time-to-promote in ns, or None."""
    ttp = time_to_promote(result)
    if ttp is None:
        return None
    kind, data = ttp
    if kind == "samples":
        return float(np.percentile(data, q)) if data.size else None
    if kind == "cdf":                  # the smallest time by which q% of the pages were promoted
        ns, cum = data
        i = int(np.searchsorted(cum, q / 100 * cum[-1], side="left"))
        return float(ns[min(i, ns.size - 1)])
    return data.get(float(q))


# -- the tables ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    value: object
    kind: str


def _metric_kind(key: str, v) -> str:
    k = key.lower()
    if k.endswith("_ns"):
        return "ns"
    if k.endswith("_s"):
        return "seconds"
    if k.endswith("_bytes"):
        return "bytes"
    if (k in ("precision", "recall", "f1") or k.endswith(("ratio", "fraction", "share"))) \
            and (v is None or isinstance(v, float)):
        return "ratio"
    return "count" if isinstance(v, int) else "number"


def _words(key: str) -> str:
    """'time_to_promote_ns' -> 'time to promote' (the unit shows in the value)."""
    for suffix in ("_ns", "_s", "_bytes"):
        key = key.removesuffix(suffix)
    return key.replace("_", " ")


def _is_figure(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def summary_metrics(result: RunResult) -> list[Metric]:
    """The run summary, one Metric per line (also what ``--json`` prints, by key)."""
    cfg = result.meta["config"]
    final = result.final
    vm = final.get("vmstat") or {}
    sim_ns = result.sim_time_ns
    m = [
        Metric("name", "name", cfg.get("name"), "text"),
        Metric("config_hash", "config hash", result.config_hash, "text"),
        Metric("workload", "workload", cfg["workload"]["name"], "text"),
        Metric("detectors", "detectors",
               ", ".join(d["name"] for d in cfg.get("detectors") or []) or "none", "text"),
        Metric("engine", "promotion engine", (cfg.get("engine") or {}).get("name") or "none",
               "text"),
        Metric("access_model", "access model", result.access_model, "text"),
        Metric("seed", "seed", result.seed, "text"),
        Metric("runtime_ns", "runtime", final.get("runtime_ns"), "ns"),
        Metric("sim_time_ns", "simulated time", sim_ns, "ns"),
        Metric("wall_time_s", "wall time (excl. set-up)", result.wall_time_s, "seconds"),
    ]
    if accesses(result) is not None:
        m.append(Metric("accesses", "accesses (all threads)", accesses(result), "count"))
        m.append(Metric("throughput", "accesses per simulated second", throughput(result),
                        "number"))
    m += [
        Metric("promoted_pages", "promoted pages", promoted_pages(result), "count"),
        Metric("pgpromote_success", "pgpromote_success (NUMA balancing)",
               vm.get("pgpromote_success"), "count"),
        Metric("pgdemote", "demotions", demotions(vm), "count"),
        Metric("pgmigrate_success", "migrations", vm.get("pgmigrate_success"), "count"),
        Metric("fast_tier_hit_ratio", "fast-tier hit ratio", overall_hit_ratio(result), "ratio"),
    ]
    util = daemon_utilisation(result)
    for name, ns in daemon_cpu_ns(result).items():
        m.append(Metric(f"cpu_ns.{name}", f"CPU {name}", ns, "ns"))
        m.append(Metric(f"cpu_share.{name}", f"CPU {name} utilisation (busy / elapsed)",
                        util.get(name, ns / sim_ns if sim_ns else float("nan")), "ratio"))
    ttp = time_to_promote(result)
    if ttp is not None and ttp[0] == "samples":
        for q in (50, 90, 99):
            v = ttp_quantile(result, q)
            if v is not None:
                m.append(Metric(f"time_to_promote_p{q}_ns", f"time to promote, p{q}", v, "ns"))
    promo = final.get("promotion")
    if isinstance(promo, dict):
        for k, v in promo.items():
            if isinstance(v, dict):       # a distribution: count, mean, p10, p50, p90
                for sub, x in v.items():
                    if _is_figure(x):
                        m.append(Metric(f"promotion.{k}.{sub}", f"{_words(k)}, {sub}", x,
                                        "count" if sub == "count" else _metric_kind(k, x)))
            elif k == "quality_note":
                if v is not None:
                    m.append(Metric(f"promotion.{k}", "precision/recall", v, "text"))
            elif _is_figure(v) or v is None:
                m.append(Metric(f"promotion.{k}", _words(k), v, _metric_kind(k, v)))
    return m


def summary_table(result: RunResult, title: str = "run summary") -> Table:
    cols = [Column("metric", "metric"), Column("value", "value"),
            Column("unit", "unit", human=False)]
    rows = [[Cell(x.key, "text", x.label), Cell(x.value, x.kind), UNITS[x.kind]]
            for x in summary_metrics(result)]
    return Table(title, cols, rows)


def vmstat_of(result: RunResult, node: int | None = None) -> dict[str, int]:
    """/proc/vmstat (node None) or /sys/devices/system/node/nodeN/vmstat as a dict.

    Per-node counters are in ``final["vmstat_node"]`` (a list, one dict per node), which
    ``tierscan run`` and ``tierscan sweep`` record; a ConfigError if the result lacks them or
    ``node`` does not exist."""
    from tierscan.errors import ConfigError

    if node is None:
        vm = result.final.get("vmstat")
        if not isinstance(vm, dict):
            raise ConfigError("this result has no vmstat counters (final.vmstat)")
        return {k: vm[k] for k in kernel_order(vm)}
    per_node = result.final.get("vmstat_node")
    if not isinstance(per_node, list):
        raise ConfigError("this result has no per-node vmstat (final.vmstat_node); it was not "
                          "written by `tierscan run` or `tierscan sweep`")
    if not 0 <= node < len(per_node):
        raise ConfigError(f"no node {node} (the machine has nodes 0-{len(per_node) - 1})",
                          field="--node")
    return {k: per_node[node][k] for k in kernel_order(per_node[node])}


def kernel_order(vm: Mapping) -> list[str]:
    """Counter names in /proc/vmstat order (the model's core counters), then the plug-in
    counters (pghot, klruscand, damon...) alphabetically. A saved result stores them sorted."""
    from tierscan.mm.vmstat import VMSTAT_NAMES

    return [k for k in VMSTAT_NAMES if k in vm] + sorted(k for k in vm if k not in VMSTAT_NAMES)


def _tiering_names(vm: Mapping) -> list[str]:
    """The DESIGN §7 counters, then every plug-in counter that is not zero."""
    from tierscan.mm.vmstat import VMSTAT_NAMES

    extra = sorted(k for k in vm if k not in VMSTAT_NAMES and vm[k])
    return [k for k in TIERING_COUNTERS if k in vm] + extra


def vmstat_table(result: RunResult, names: Iterable[str] | None = None,
                 node: int | None = None) -> Table:
    """Counters with the kernel's names: ``names`` (default: the tiering counters of DESIGN §7
    and every plug-in counter that is not zero; ``"all"``: every counter in /proc/vmstat
    order), system-wide or of one node."""
    vm = vmstat_of(result, node)
    if names is None:
        names = _tiering_names(vm)
    elif names == "all":
        names = list(vm)
    else:
        names = list(names)
    title = "vmstat" if node is None else f"node{node} vmstat"
    return Table(title, [Column("name"), Column("value", kind="count")],
                 [[n, vm.get(n)] for n in names])


def numastat_table(result: RunResult) -> Table:
    """numastat-style: one column per node and a Total; rows are accesses served, their share,
    resident memory at the end and at its peak, and per-node promotions/demotions when the
    result has per-node vmstat."""
    nodes = nodes_of(result)
    n = len(nodes)
    cols = [Column("metric", "")] + [Column(f"node{x['id']}", node_label(x), "count")
                                     for x in nodes] + [Column("total", "Total", "count")]
    rows = []

    def row(key, label, values, total, kind):
        rows.append([Cell(key, "text", label)] + [Cell(_jsonable(v), kind) for v in values]
                    + [Cell(_jsonable(total), kind)])

    served = result.series.get("served")
    if served is not None and served.ndim == 2 and served.shape[1] == n:
        per = served.sum(axis=0).astype(float)
        tot = float(per.sum())
        row("served", "accesses served", per.tolist(), tot, "count")
        share = (per / tot).tolist() if tot > 0 else [float("nan")] * n
        row("served_share", "share of accesses", share, 1.0 if tot > 0 else float("nan"),
            "ratio")
    res = result.series.get("resident_pages")
    if res is not None and res.ndim == 2 and res.shape[1] == n and res.shape[0]:
        row("resident_pages", "resident (end)", res[-1].tolist(), int(res[-1].sum()), "pages")
        row("resident_pages_peak", "resident (peak)", res.max(axis=0).tolist(),
            int(res.sum(axis=1).max()), "pages")
    per_node = result.final.get("vmstat_node")
    if isinstance(per_node, list) and len(per_node) == n:
        for name, label in (("pgpromote_success", "promoted to"),
                            ("pgdemote_kswapd", "demoted from (kswapd)"),
                            ("pgdemote_direct", "demoted from (direct)")):
            vals = [d.get(name, 0) for d in per_node]
            row(name, label, vals, sum(vals), "count")
    return Table("per-node (numastat)", cols, rows)


def compare_table(results: Mapping[str, RunResult], title: str = "comparison") -> Table:
    """One row per run (``{label: result}``, e.g. one per detector), the same columns whatever
    the outcome (``records()`` keep every key, None where a value does not apply): runtime
    (None when the run stopped at ``duration``), accesses completed and their rate (never
    empty, the outcome of a duration-bound run), pages promoted (``promoted_pages``), the
    promotion quality (precision, recall: None when unknown or undefined, see
    ``quality_note``), demotions, fast-tier hit ratio, daemon CPU (its total, its share of
    one CPU, and the busiest daemon's utilisation: 1 means a kthread never slept), time to
    promote (p50) and the wall time of the simulation loop (set-up excluded)."""
    cols = [Column("label", "detector"), Column("runtime_ns", "runtime", "ns"),
            Column("accesses", "accesses", "count", human=False),
            Column("throughput", "accesses/s", "rate"),
            Column("sim_time_ns", "simulated", "ns", human=False),
            Column("promoted_pages", "promoted pages", "count"),
            Column("precision", "precision", "ratio"), Column("recall", "recall", "ratio"),
            Column("pgdemote", "demotions", "count"),
            Column("fast_tier_hit_ratio", "fast-tier hits", "ratio"),
            Column("daemon_cpu_ns", "daemon CPU", "ns", human=False),
            Column("daemon_cpu_share", "daemon CPU share", "ratio"),
            Column("max_daemon_utilisation", "busiest daemon", "ratio"),
            Column("time_to_promote_p50_ns", "promote p50", "ns"),
            Column("wall_time_s", "wall (excl. set-up)", "seconds"),
            Column("note", "note", human=False)]
    rows = []
    for label, r in results.items():
        vm = r.final.get("vmstat") or {}
        cpu = sum(daemon_cpu_ns(r).values())
        promo = r.final.get("promotion") if isinstance(r.final.get("promotion"), dict) else {}
        rows.append([label, r.final.get("runtime_ns"), accesses(r), throughput(r),
                     r.sim_time_ns, promoted_pages(r), promo.get("precision"),
                     promo.get("recall"), demotions(vm), overall_hit_ratio(r), cpu,
                     cpu / r.sim_time_ns if r.sim_time_ns else float("nan"),
                     max(daemon_utilisation(r).values(), default=float("nan")),
                     ttp_quantile(r, 50), r.wall_time_s, run_note(r)])
    return Table(title, cols, rows)


def run_note(result: RunResult) -> str | None:
    """Why a figure of the comparison is empty or says little, in one line, or None."""
    promo = result.final.get("promotion")
    notes = []
    if promoted_pages(result) == 0 and result.meta["config"].get("detectors"):
        notes.append(f"nothing promoted in {fmt_ns(result.sim_time_ns)} simulated: the run "
                     "ended before the source promoted a page (a scaled-down or short run "
                     "may end before a first scan, a hint fault or a rate-limit window)")
    if isinstance(promo, dict) and promo.get("quality_note"):
        notes.append(f"precision/recall {promo['quality_note']}")
    return "; ".join(notes) or None


def compare_notes(results: Mapping[str, RunResult]) -> list[str]:
    """'label: note' lines for the runs of a comparison that have one."""
    return [f"{label}: {n}" for label, r in results.items() if (n := run_note(r))]


__all__ = ["Cell", "Column", "Metric", "Table", "TIERING_COUNTERS", "accesses", "compare_notes",
           "compare_table", "promoted_pages", "run_note", "throughput",
           "daemon_cpu_ns", "daemon_utilisation", "fmt_bytes", "fmt_count", "fmt_ns", "fmt_rate", "fmt_ratio", "format_value", "kernel_order",
           "node_label", "nodes_of", "numastat_table", "overall_hit_ratio", "result_label",
           "summary_metrics", "summary_table", "time_to_promote", "ttp_quantile",
           "unique_labels", "vmstat_of", "vmstat_table"]
