"""The cost model: every figure the engine charges, named, documented and overridable
(DESIGN §6; docs/cost-model.md gives the source or the reasoning for each default).

Load and store latencies per (cpu node, memory node) come from the machine; everything else
is here. Under the idle latency model (and on machines without curves or caches) a workload
thread's time per access is

    compute_ns + ((1 - w) * load_ns[c][m] + w * store_ns[c][m]) / mlp

averaged over where its accesses land (w = its write fraction, mlp = its memory-level
parallelism; memsys/ solves the loaded model's instead, docs/cost-model.md "Memory system");
faults, hint faults, migrations in its context and TLB shootdowns add stall time
to the threads that take them. Daemons are charged per page-table entry they scan and per
folio they migrate; their CPU time is reported as detector overhead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..configcheck import Checker
from ..units import parse_duration_ns


@dataclass(frozen=True)
class CostModel:
    compute_ns_per_access: float = 0.0     # CPU work between two memory accesses
    fault_ns: float = 1_000.0              # a first-touch (minor) page fault, anon or page cache
    major_fault_ns: float = 50_000.0       # reading a file page from storage
    hint_fault_ns: float = 1_500.0         # a NUMA hint fault, excluding any migration it does
    migrate_page_ns: float = 1_200.0       # unmap + copy + remap of one 4 KiB page (CPU)
    migrate_thp_ns: float = 120_000.0      # the same for a 2 MiB THP
    copy_gbps: float = 10.0                # copy bandwidth the migration CPU time assumes
    tlb_shootdown_ns: float = 2_500.0      # per shootdown, charged to every thread of the mm
    scan_pte_ns: float = 1.5               # a PTE (or PMD entry) visited by a page-table scan
    scan_young_pte_ns: float = 25.0        # a young entry cleared and its folio updated
    numa_scan_pte_ns: float = 3.0          # a PTE changed to PROT_NONE by task_numa_work
    sample_ns: float = 300.0               # handling one hardware access sample (IBS NMI)
    writeback_cpu_ns: float = 1_000.0      # the flusher cleaning and submitting one 4 KiB page
    writeback_io_ns: float = 4_000.0       # the device writing one 4 KiB page (~1 GB/s)
    # loaded latency model only (memsys/, docs/cost-model.md "Memory system"):
    llc_hit_ns: float = 12.0               # an access (or page-walk reference) the LLC serves
    walk_ns: float = 5.0                   # a TLB miss's walk above its last reference
    reclaim_page_ns: float = 500.0         # reclaim: one isolated page through shrink_folio_list

    def overridden(self, overrides: dict, where: str = "<costs>") -> "CostModel":
        """A copy with ``overrides`` applied; unknown names or bad values name the key."""
        c = Checker(where)
        known = {f.name for f in fields(self)}
        values = asdict(self)
        for key, value in overrides.items():
            if key not in known:
                c.fail(f"costs.{key}", f"unknown cost (expected one of: {', '.join(sorted(known))})")
            if key.endswith("_ns") and isinstance(value, str):  # "1.5us" as well as 1500
                value = parse_duration_ns(value, where=where, field=f"costs.{key}",
                                          allow_zero=True)
            values[key] = c.number_in(value, f"costs.{key}", 0.0, 1e12)
        return CostModel(**values)

    def as_dict(self) -> dict:
        return asdict(self)
