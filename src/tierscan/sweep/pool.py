"""The local process pool that sweeps (PoolBackend) and `tierscan reproduce` run on.

Workers are forked from a forkserver (no threads of the caller's, such as a progress bar's,
with tierscan already imported once), ignore Ctrl-C (the caller handles it and stops them),
take $TIERSCAN_SIM_LIMIT as the caller has it when the pool starts, and start with the
caller's memsys phase solutions (memsys/memo.py: reproduce's fit solved Mode 1's first phase in
the caller; a few MiB to pickle against ~0.2 s of CPU to solve it again in each worker).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed

from tierscan.memsys import memo
from tierscan.sim.run import SIM_LIMIT_ENV


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):      # no affinity call on this platform
        return os.cpu_count() or 1


def _mp_context():
    import multiprocessing

    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["tierscan.sweep.runner", "tierscan.cli.run",
                                    "tierscan.sim.run"])
        return ctx
    return multiprocessing.get_context("spawn")


def _worker_init(sim_limit: str | None, memo_entries: list) -> None:
    """Workers ignore Ctrl-C: the caller handles it and stops them (an idle worker
    interrupted in its queue would otherwise print a traceback). They also take the caller's
    $TIERSCAN_SIM_LIMIT as it is now: a forkserver keeps the environment it started with, so
    a later pool in the same process would otherwise run with an earlier one's cap. They start
    with the caller's memsys memo (``memo_entries``)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sim_limit is None:
        os.environ.pop(SIM_LIMIT_ENV, None)
    else:
        os.environ[SIM_LIMIT_ENV] = sim_limit
    memo.load(memo_entries)


def run_pool(fn, items: list, jobs: int, on_done, on_error=None) -> None:
    """``fn(item)`` for every item on ``min(jobs, len(items))`` worker processes, started in
    the items' order (put the longest first so the workers end together). ``on_done(i,
    value)`` runs in this process as each one ends, in the order they end. An exception from a
    run or a dead worker goes to ``on_error(i, exc)``, whose return value is passed on as the
    run's value; without ``on_error`` it is raised. Ctrl-C, an exception or a bug stops the
    workers at once (runs in progress are lost)."""
    if not items:
        return
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(items)), mp_context=_mp_context(),
                               initializer=_worker_init,
                               initargs=(os.environ.get(SIM_LIMIT_ENV), memo.entries()))
    try:
        futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
        for fut in as_completed(futures):
            try:
                value = fut.result()
            except Exception as e:  # noqa: BLE001 - e.g. a worker killed (BrokenProcessPool)
                if on_error is None:
                    raise
                value = on_error(futures[fut], e)
            on_done(futures[fut], value)
    except BaseException:
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
