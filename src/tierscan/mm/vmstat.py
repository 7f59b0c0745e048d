"""/proc/vmstat counters with the kernel's names, kept per node, and numastat-style tables.

Every counter is a per-node int64 array; ``vmstat[name]`` is the system-wide sum, as /proc/vmstat
prints it. Events without a natural node (pgfault) are counted on the node of the CPU that took
them, like the per-cpu counters they are in the kernel.
"""

from __future__ import annotations

import numpy as np

# The counters the model maintains. Order is /proc/vmstat's where it has them.
VMSTAT_NAMES = (
    "nr_free_pages", "nr_anon_pages", "nr_file_pages", "nr_mapped", "nr_shmem",
    "nr_anon_transparent_hugepages",
    "numa_hit", "numa_miss", "numa_foreign", "numa_interleave", "numa_local", "numa_other",
    "pgpromote_success", "pgpromote_candidate", "pgdemote_kswapd", "pgdemote_direct",
    "pgdemote_khugepaged",
    "pgalloc_dma", "pgalloc_dma32", "pgalloc_normal", "pgalloc_movable",
    "pgfree", "pgactivate", "pgdeactivate", "pgfault", "pgmajfault",
    "pgscan_kswapd", "pgscan_direct", "pgsteal_kswapd", "pgsteal_direct",
    "numa_pte_updates", "numa_huge_pte_updates", "numa_hint_faults", "numa_hint_faults_local",
    "numa_pages_migrated",
    "pgmigrate_success", "pgmigrate_fail", "thp_migration_success", "thp_migration_fail",
    "thp_migration_split",
    "thp_fault_alloc", "thp_fault_fallback", "thp_split_pmd", "thp_split_page",
    "thp_zero_page_alloc",
    "workingset_refault_anon", "workingset_refault_file", "workingset_activate_anon",
    "workingset_activate_file", "workingset_restore_anon", "workingset_restore_file",
    "pswpin", "pswpout",
    "allocstall_dma", "allocstall_dma32", "allocstall_normal", "allocstall_movable",
    "pageoutrun", "kswapd_low_wmark_hit_quickly", "kswapd_high_wmark_hit_quickly",
)

# Counters of optional subsystems (pghot, klruscand, IBS...) that their modules register.
EXTRA_NAMES: list[str] = []


def register_vmstat(*names: str) -> None:
    """Add counters (kernel names) that a plug-in module maintains."""
    for name in names:
        if name not in VMSTAT_NAMES and name not in EXTRA_NAMES:
            EXTRA_NAMES.append(name)


# State counters that are derived from the model, not counted as events.
STATE_NAMES = ("nr_free_pages", "nr_anon_pages", "nr_file_pages", "nr_mapped", "nr_shmem",
               "nr_anon_transparent_hugepages")


class Vmstat:
    def __init__(self, nr_nodes: int):
        self.nr_nodes = nr_nodes
        self._c = {name: np.zeros(nr_nodes, dtype=np.int64) for name in VMSTAT_NAMES}
        self._state = None  # callable filling STATE_NAMES on demand

    def _arr(self, name: str) -> np.ndarray:
        if name not in self._c:
            if name not in EXTRA_NAMES:
                raise KeyError(f"unknown vmstat counter {name!r}")
            self._c[name] = np.zeros(self.nr_nodes, dtype=np.int64)
        return self._c[name]

    def count(self, name: str, nid, amount=1) -> None:
        """Add ``amount`` to counter ``name`` on node(s) ``nid`` (scalars or matching arrays)."""
        arr = self._c.get(name)
        if arr is None:
            arr = self._arr(name)
        if type(nid) is int and type(amount) is int:     # the common call, without np.ndim
            arr[nid] += amount
        elif np.ndim(nid) == 0 and np.ndim(amount) == 0:
            arr[int(nid)] += int(amount)
        else:
            np.add.at(arr, np.asarray(nid, dtype=np.int64), amount)

    def node(self, name: str) -> np.ndarray:
        """Per-node values of a counter (a copy)."""
        if name in STATE_NAMES and self._state is not None:
            self._state(self._c)
        return self._arr(name).copy()

    def __getitem__(self, name: str) -> int:
        return int(self.node(name).sum())

    def __contains__(self, name: str) -> bool:
        return name in VMSTAT_NAMES or name in EXTRA_NAMES

    def as_dict(self) -> dict[str, int]:
        if self._state is not None:   # once for all the state counters, not once for each
            self._state(self._c)
        return {name: int(self._arr(name).sum()) for name in (*VMSTAT_NAMES, *EXTRA_NAMES)}

    def text(self) -> str:
        """The /proc/vmstat format: one "name value" line per counter."""
        return "".join(f"{k} {v}\n" for k, v in self.as_dict().items())

    def numastat(self) -> str:
        """numastat(8)'s default table: numa_hit .. other_node, one column per node."""
        rows = (("numa_hit", "numa_hit"), ("numa_miss", "numa_miss"),
                ("numa_foreign", "numa_foreign"), ("interleave_hit", "numa_interleave"),
                ("local_node", "numa_local"), ("other_node", "numa_other"))
        head = " " * 26 + "".join(f"{'node' + str(n):>16}" for n in range(self.nr_nodes))
        lines = [head, " " * 26 + "".join(f"{'-' * 15:>16}" for _ in range(self.nr_nodes))]
        for label, name in rows:
            lines.append(f"{label:<26}" + "".join(f"{v:>16}" for v in self.node(name)))
        return "\n".join(lines) + "\n"
