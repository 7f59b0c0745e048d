"""Run one experiment from its configuration and return its stamped result."""

from __future__ import annotations

import gc
import weakref

from ..errors import ConfigError
from ..kernel import Kernel
from ..workload.library import make_workload
from . import plugins
from .config import ExperimentConfig
from .costs import CostModel
from .engine import Engine
from .results import RunResult


def build_engine(cfg: ExperimentConfig, progress=None, *, solve_only: bool = False) -> Engine:
    """The configured machine, workload and daemons, set up and ready to run; with
    ``solve_only`` set up only as far as the loaded model's first solve (Engine)."""
    kernel = Kernel(cfg.machine, seed=cfg.seed, faithful_quirks=cfg.faithful_quirks)
    for key, value in cfg.sysfs.items():
        try:
            kernel.sysfs[key] = value
        except ConfigError as e:
            raise ConfigError(e.message, where=cfg.source, field=f"sysfs.{key}") from None
    if cfg.swap:
        kernel.swapon(cfg.swap["size"], cfg.swap["read_ns"], cfg.swap["write_ns"])
    _apply_memcg_limits(kernel, cfg)
    workload = make_workload(cfg.workload.name, dict(cfg.workload.params), where=cfg.source,
                             field=cfg.workload.path or "workload")
    costs = CostModel().overridden(dict(cfg.costs), where=cfg.source)
    plugins.load_all()
    daemons, promoter = [], None
    if cfg.engine is not None:
        daemons = plugins.build(plugins.ENGINES, "promotion engine", cfg.engine, kernel, costs)
        promoter = daemons[0]
    detectors = []
    for det in cfg.detectors:
        detectors += plugins.build(plugins.DETECTORS, "detector", det, kernel, costs, promoter)
    daemons = detectors + daemons
    return Engine(kernel, workload, access_model=cfg.access_model, costs=costs,
                  latency_model=cfg.latency_model,
                  tick_ns=cfg.tick_ns, sample_ns=cfg.sample_ns, duration_ns=cfg.duration_ns,
                  daemons=daemons, seed=cfg.seed, progress=progress, solve_only=solve_only)


def _apply_memcg_limits(kernel, cfg: ExperimentConfig) -> None:
    """Create the memcgs of [[memcgs]] (parents first) and set their limits in pages."""
    from ..mm.memcg import PAGE_COUNTER_MAX

    for path, lim in cfg.memcgs.items():
        memcg = kernel.root_memcg
        for name in path.strip("/").split("/"):
            child = next((m for m in memcg.children if m.name == name), None)
            memcg = child if child is not None else kernel.memcg_create(name, memcg)
        for key, value in lim.items():
            pages = PAGE_COUNTER_MAX if value == "max" else int(value) >> 12
            setattr(memcg, f"memory_{key}", pages)


def promotion_source(engine):
    """What promoted pages in this run: the promotion engine if there is one, else the first
    detector that migrates by itself (the oracle, DAMON, upstream NUMA balancing)."""
    for d in engine.daemons:
        if getattr(d, "promoted_pfns", None) is not None and not getattr(d, "promoter", None):
            return d
    return None


SIM_LIMIT_ENV = "TIERSCAN_SIM_LIMIT"


def limited(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with its duration capped at ``$TIERSCAN_SIM_LIMIT`` (a duration such as
    "200ms"), when that is set: a smoke-test knob (the docs-examples test runs every documented
    command this way). The result records the capped duration; unset, ``cfg`` is unchanged."""
    import os

    from ..units import parse_duration_ns
    from .config import format_duration

    text = os.environ.get(SIM_LIMIT_ENV)
    if not text:
        return cfg
    limit = parse_duration_ns(text, where=f"${SIM_LIMIT_ENV}", field=None)
    if cfg.duration_ns is not None and cfg.duration_ns <= limit:
        return cfg
    return cfg.with_overrides([f"duration={format_duration(limit)}"])


def run_experiment(cfg: ExperimentConfig, progress=None, command=None) -> RunResult:
    alive: list = []
    result = _run(cfg, progress, command, alive)
    # A finished run's object graph is cyclic (the kernel, its mms, lruvecs and the engine's
    # daemons point at one another), so reference counting alone does not free it and the
    # next run of a sweep or reproduction would be built beside it: collect it now. A short
    # run's graph is still in the young generations, whose collection does not traverse the
    # ~10^5 objects of the imports (a full one costs ~0.05 s CPU); a long run's has been
    # moved to the oldest by the collector, and then the engine or kernel is still alive
    # after the young collection and a full one follows.
    gc.collect(1)
    if any(ref() is not None for ref in alive):
        gc.collect()
    return result


def _run(cfg: ExperimentConfig, progress, command, alive: list) -> RunResult:
    from ..hotness.oracle import heaviest, oracle_candidates, start_free_above_high
    from .promotion_metrics import promotion_summary

    cfg = limited(cfg)
    engine = build_engine(cfg, progress).run()
    alive += [weakref.ref(engine), weakref.ref(engine.kernel)]
    out = engine.results()
    if cfg.memcgs:   # memory.stat of every memcg below the root (tierscan vmstat --memcg)
        from ..mm.memcontrol import memory_stat

        k = engine.kernel
        out["final"]["memory_stat"] = {m.path: memory_stat(k, m) for m in k.memcgs
                                       if m.parent is not None}
    source = promotion_source(engine)
    if source is not None:
        # the hot set is oracle_hot_set's (its default K); the summary needs it as a set
        ids, weights = oracle_candidates(engine)
        hot = heaviest(ids, weights, start_free_above_high(engine), ordered=False)
        # Every lower-tier page fits in the fast tier's free room: "hot" means nothing there.
        fits = hot.shape[0] >= weights.size
        out["final"]["promotion"] = promotion_summary(engine, source, hot_set=hot,
                                                      fits_fast_tier=fits)
    return RunResult.from_run(cfg, series=out["series"], final=out["final"],
                              sim_time_ns=engine.now, wall_time_s=engine.wall_s,
                              command=command)
