"""Where a sweep's runs execute: a local process pool (the default) or a Dask cluster.

Both take the same tasks and report each one's outcome through ``on_done(index, outcome)`` as it
ends, so saving, resuming, the index and the summary table behave the same on every backend.

Dask (``pip install tierscan[cluster]``): ``DaskBackend("tcp://host:8786")`` uses a running
scheduler; ``DaskBackend("local:N")`` starts a LocalCluster of N single-threaded worker
processes. A worker that dies mid-run (killed, out of memory) has its run rescheduled on another
worker by the scheduler; after ``allowed_failures`` deaths the run is marked failed with the
reason (Dask's KilledWorker). Run errors never reach Dask: ``run_point`` returns them.
"""

from __future__ import annotations

import logging

from tierscan.errors import ConfigError
from tierscan.sweep.pool import run_pool
from tierscan.sweep.runner import run_point

CLUSTER_EXTRA = "pip install 'tierscan[cluster]'"


def failed(message: str) -> dict:
    return {"ok": False, "exit_code": 1, "wall_s": 0.0, "metrics": None, "message": message}


class PoolBackend:
    """A local process pool of ``jobs`` workers (one run in-process when jobs == 1)."""

    def __init__(self, jobs: int):
        self.jobs = jobs
        self.slots = jobs
        self.label = f"{jobs} local process{'es' if jobs > 1 else ''}"
        self.dashboard = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, tasks: list, on_done) -> None:
        if not tasks:
            return
        if self.jobs == 1 or len(tasks) == 1:
            for i, task in enumerate(tasks):
                on_done(i, run_point(task))
            return
        run_pool(run_point, tasks, self.jobs, on_done,
                 on_error=lambda i, e: failed(f"worker failed: {type(e).__name__}: {e}"))


def parse_scheduler(text: str) -> str:
    """``local:N`` or a scheduler address (``tcp://host:port``, ``host:port``); a usage error
    otherwise."""
    if text.startswith("local:"):
        n = text[len("local:"):]
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"expected local:N with N >= 1 workers, got {text!r}")
        return text
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"expected a scheduler address such as tcp://10.0.0.5:8786 or "
                         f"local:N, got {text!r}")
    return text


class DaskBackend:
    """Runs tasks on a Dask distributed cluster (``address``) or a LocalCluster (``local:N``)."""

    def __init__(self, address: str, *, allowed_failures: int = 3, timeout_s: float = 30.0):
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ConfigError(f"--scheduler needs Dask, which is not installed ({CLUSTER_EXTRA})",
                              where="--scheduler") from None
        self.address = address
        self.allowed_failures = allowed_failures
        self.timeout_s = timeout_s
        self.client = self.cluster = None
        self.slots = 1
        self.label = address
        self.dashboard = None

    def __enter__(self):
        import dask
        from distributed import Client, LocalCluster

        # A run is one Python thread holding the GIL: one thread per worker. The failure bound
        # is the scheduler's: it applies to a LocalCluster we start; a running scheduler
        # keeps its own `distributed.scheduler.allowed-failures`.
        with dask.config.set({"distributed.scheduler.allowed-failures": self.allowed_failures,
                              "distributed.worker.daemon": False}):
            try:
                if self.address.startswith("local:"):
                    n = int(self.address.split(":", 1)[1])
                    self.cluster = LocalCluster(n_workers=n, threads_per_worker=1,
                                                processes=True, host="127.0.0.1",
                                                dashboard_address="127.0.0.1:0",
                                                silence_logs=logging.ERROR)
                    self.client = Client(self.cluster, timeout=self.timeout_s)
                else:
                    self.client = Client(self.address, timeout=self.timeout_s)
            except (OSError, TimeoutError) as e:
                self.__exit__(None, None, None)
                raise ConfigError(f"cannot reach the Dask scheduler: {e}",
                                  where=self.address) from None
        info = self.client.scheduler_info()
        self.slots = max(1, sum(w.get("nthreads", 1) for w in info["workers"].values()))
        self.label = f"Dask at {info.get('address', self.address)} " \
                     f"({len(info['workers'])} workers)"
        try:
            self.dashboard = self.client.dashboard_link
        except Exception:  # noqa: BLE001 - no dashboard (bokeh missing): nothing to show
            self.dashboard = None
        return self

    def __exit__(self, *exc):
        for closable in (self.client, self.cluster):
            if closable is not None:
                try:
                    closable.close()
                except Exception:  # noqa: BLE001 - tearing down; the results are saved
                    pass
        self.client = self.cluster = None
        return False

    def execute(self, tasks: list, on_done) -> None:
        from distributed import as_completed as dask_completed

        if not tasks:
            return
        # Distinct keys per run (its config hash): a resubmitted sweep never collides with
        # another client's tasks of other runs, and the dashboard names each run.
        futures = {self.client.submit(run_point, task, key=f"tierscan-run-{task.config_hash}",
                                      pure=False): i for i, task in enumerate(tasks)}
        try:
            for fut in dask_completed(futures):
                if fut.status == "finished":
                    outcome = fut.result()
                else:
                    exc = fut.exception()
                    name = type(exc).__name__
                    if name == "KilledWorker":
                        outcome = failed("its workers died while running it more often than "
                                         "the scheduler's allowed-failures (killed or out "
                                         "of memory)")
                    else:
                        outcome = failed(f"worker failed: {name}: {exc}")
                on_done(futures[fut], outcome)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def make_backend(scheduler: str | None, jobs: int):
    return PoolBackend(jobs) if scheduler is None else DaskBackend(scheduler)


__all__ = ["CLUSTER_EXTRA", "DaskBackend", "PoolBackend", "make_backend", "parse_scheduler"]
