"""What a workload is: processes with threads, the mappings they make, and phases of accesses
whose page distribution both access models read (DESIGN §5).

A ``Distribution`` gives, for the n pages of a process's mappings (their pages concatenated in
mapping order), the probability that one access hits each page. The exact model draws
addresses from it; the rate model turns it into per-page access rates. Everything is seeded:
the same seed gives the same weights and the same draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class Distribution(Protocol):
    """A per-page access distribution over ``n`` pages."""

    name: str

    def weights(self, n: int) -> np.ndarray:
        """float64 array of length n, non-negative, summing to 1."""

    def sample(self, n: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` page indices in [0, n) drawn i.i.d. from ``weights(n)`` (int64)."""


@dataclass(frozen=True)
class Mapping:
    """One mmap a process makes before the run (mm.mmap arguments)."""

    size: int
    kind: str = "anon"
    shared: bool = False
    thp: bool = False
    policy: str = "bind"             # its VMA policy (mbind); "default": the task's applies
    nodes: tuple[int, ...] = (0,)
    populate: bool = True
    numa_balancing: bool = False     # MPOL_F_NUMA_BALANCING on the policy
    move_to: int | None = None  # move_pages() every page here after populating (pghot Mode 3)


@dataclass(frozen=True)
class Phase:
    """A stretch of the run with one access pattern. It ends when every thread has done
    ``accesses`` accesses (if set) or after ``duration_ns`` (if set), whichever comes first;
    the last phase may have neither and then runs until the experiment's duration. An ``idle``
    phase keeps the previous phase's distribution (so lazily drawn rates do not change) and
    makes no access for its duration."""

    distribution: Distribution
    write_fraction: float = 0.0
    accesses: int | None = None      # per thread
    duration_ns: int | None = None
    compute_ns: float = 0.0          # the phase's own CPU time between two accesses of a
    #                                  thread (a benchmark's delay loop), on top of the cost
    #                                  model's compute_ns_per_access
    idle: bool = False               # the threads sleep: time passes and nothing is accessed
    #                                  (a pause between passes); needs duration_ns


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    threads: int
    cpu_node: int
    mappings: tuple[Mapping, ...]
    phases: tuple[Phase, ...]
    memcg: str = "/"                 # "/" or "/NAME"
    mlp: float = 1.0                 # memory-level parallelism of each thread
    non_temporal: bool = False       # stores bypass the cache: no line read (write-allocate)
    pgtable_node: int | None = None  # where its page tables live; None: its CPU node (the
    #                                  default task policy); memsys/ charges page walks there
    mm: str | None = None            # thread groups with the same ``mm`` are threads of one
    #                                  process (one address space); None: its own process
    task_policy: str = "default"     # set_mempolicy() of its threads (mode, nodes, flag)
    task_nodes: tuple[int, ...] = ()
    task_numa_balancing: bool = False

    @property
    def mm_name(self) -> str:
        """The process (address space) this thread group belongs to."""
        return self.name if self.mm is None else self.mm


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    processes: tuple[ProcessSpec, ...]
    params: dict = field(default_factory=dict)  # the resolved parameters, for result files
