"""Checks that need the machine and the built workload, made before any run starts.

The configuration loader checks each section alone; this module checks them together, so that
what would fail minutes into a comparison, or run and mean nothing, is refused (a ConfigError
naming the file and the field) or warned about before the first run:

- a workload whose last phase never ends needs a ``duration``;
- a ``tick`` longer than the ``duration``;
- a node id the machine does not have (``workload.node``, ``cpu_node``), a CPU node without
  CPUs;
- a mapping larger than the machine's memory (when populated) or than the user address space;
- more threads than a Linux system can have (PID_MAX_LIMIT); more than the machine's CPUs is
  a warning (they time-share);
- memory bound to a top-tier node while hot-page sources run: nothing can be promoted (a
  warning: DRAM compared with DRAM);
- an unknown detector or promotion engine name.

``default_slow_node(machine)`` is where single-process workloads put their memory unless told
otherwise: the first node of the slowest tier (config.py applies it when ``node`` is not given).
"""

from __future__ import annotations

from tierscan.errors import ConfigError

PID_MAX_LIMIT = 4 * 1024 * 1024      # include/linux/threads.h, 64-bit: the most tasks Linux allows
TASK_SIZE = 1 << 47                  # x86-64 4-level user address space (mm/process.py)


def default_slow_node(machine) -> int:
    """The first node (lowest id) of the slowest tier (highest tier number)."""
    slowest = max(n.tier for n in machine.nodes)
    return min(n.id for n in machine.nodes if n.tier == slowest)


def _size(n: int) -> str:
    from tierscan.report.tables import fmt_bytes

    return fmt_bytes(n)


def check_runnable(cfg) -> list[str]:
    """Refuse what cannot run or would mean nothing (ConfigError naming ``cfg.source`` and the
    field); return one-line warnings for what runs but is probably not what was meant."""
    from tierscan.workload.library import make_workload

    where = cfg.source
    wpath = cfg.workload.path or "workload"
    spec = make_workload(cfg.workload.name, dict(cfg.workload.params), where=where, field=wpath)
    machine = cfg.machine
    ids = {n.id: n for n in machine.nodes}
    multi = len(spec.processes) > 1
    warnings = []

    def fail(field, message):
        raise ConfigError(message, where=where, field=field)

    def field_of(i, key):
        if key in cfg.workload.params or not multi:
            return f"{wpath}.{key}"
        return f"{wpath}.processes[{i}].{key}"

    never_ends = [p.name for p in spec.processes
                  if p.phases and p.phases[-1].accesses is None
                  and p.phases[-1].duration_ns is None]
    if never_ends and cfg.duration_ns is None:
        fail("duration", f"the last phase of {never_ends[0]!r} has no access count or duration, "
                         "so the run needs one: duration = \"2s\" in the file, --set "
                         "duration=2s, or compare --duration 2s")
    if cfg.duration_ns is not None and cfg.tick_ns > cfg.duration_ns:
        from tierscan.sim.config import format_duration
        fail("tick", f"{format_duration(cfg.tick_ns)} is longer than the duration "
                     f"({format_duration(cfg.duration_ns)}): the run would be one tick")

    memory = sum(n.capacity for n in machine.nodes)
    top_tier = min(n.tier for n in machine.nodes)
    top_bound, all_top = [], True
    for i, p in enumerate(spec.processes):
        if p.threads > PID_MAX_LIMIT:
            fail(field_of(i, "threads"), f"{p.threads:,} threads is more than Linux allows "
                                         f"(PID_MAX_LIMIT = {PID_MAX_LIMIT:,})")
        if p.cpu_node not in ids:
            fail(field_of(i, "cpu_node"), f"no node {p.cpu_node} (the machine has nodes "
                                          f"{', '.join(map(str, sorted(ids)))})")
        cpus = len(ids[p.cpu_node].cpus)
        if not cpus:
            fail(field_of(i, "cpu_node"), f"node {p.cpu_node} has no CPUs to run threads on")
        if p.threads > machine.nr_cpus:
            warnings.append(f"{where}: {field_of(i, 'threads')}: {p.threads:,} threads on a "
                            f"machine with {machine.nr_cpus} CPUs: they time-share")
        for n in p.task_nodes:
            if n not in ids:
                fail(field_of(i, "task_nodes"), f"no node {n} (the machine {machine.name!r} "
                                                f"has nodes {', '.join(map(str, sorted(ids)))})")
        for m in p.mappings:
            for n in m.nodes:
                if n not in ids:
                    fail(field_of(i, "node" if m.policy == "bind" and len(m.nodes) == 1
                                  else "nodes"), f"no node {n} (the machine "
                                              f"{machine.name!r} has nodes "
                                              f"{', '.join(map(str, sorted(ids)))})")
            if m.size > TASK_SIZE:
                fail(field_of(i, "size"), f"{_size(m.size)} is more than a process can map "
                                          f"({_size(TASK_SIZE)} of user address space)")
            if m.populate and m.size > memory:
                fail(field_of(i, "size"), f"{_size(m.size)} does not fit in the machine's "
                                          f"memory ({_size(memory)} on {len(ids)} nodes)")
            if m.nodes and all(ids[n].tier == top_tier for n in m.nodes):
                top_bound.append((i, m.nodes))
            else:
                all_top = False
    # only when no process has memory that can start below the top tier (a thread group on
    # DRAM beside one on CXL is the point of thread-per-tier)
    if (cfg.detectors or cfg.engine) and all_top and top_bound:
        i, nodes = top_bound[0]
        warnings.append(
            f"{where}: {field_of(i, 'node')}: memory is bound to top-tier node(s) "
            f"{', '.join(map(str, nodes))}: there is nothing to promote (the slow "
            f"tier of {machine.name!r} is node {default_slow_node(machine)})")
    _check_plugin_names(cfg)
    return warnings


def _check_plugin_names(cfg) -> None:
    """An unknown detector or promotion engine, found before any run rather than at the first."""
    from tierscan.sim import plugins

    plugins.load_all()
    for comp, registry, kind in [(d, plugins.DETECTORS, "detector") for d in cfg.detectors] + \
            ([(cfg.engine, plugins.ENGINES, "promotion engine")] if cfg.engine else []):
        if comp.name not in registry:
            known = ", ".join(sorted(registry)) or "none registered yet"
            comp.fail("name", f"unknown {kind} {comp.name!r} (known: {known})")
