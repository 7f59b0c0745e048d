"""One grid point's run, as a worker (a local process or a Dask worker) executes it.

``run_point`` never raises for a run that fails: it returns an outcome dict, so one bad grid
point is reported and the others go on. It is idempotent: a run whose result file is already
there (a retry after the worker that saved it died before answering) is not run again, so
nothing is written twice.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from tierscan.errors import TierscanError


@dataclass(frozen=True)
class Task:
    """What a worker needs: the resolved configuration (plain data), its expected hash, where
    its result goes (an absolute path the worker can write), and whether to return the result
    to the client instead of saving it (``collect``: clusters without a shared file system)."""
    resolved: dict
    where: str
    config_hash: str
    out_path: str
    collect: bool = False


def run_point(task: Task) -> dict:
    """Run one configuration. Returns {"ok", "message", "exit_code", "wall_s", "metrics",
    "worker", "reused"} and, with ``collect``, "result_json" (the result file's text)."""
    from tierscan.sweep.summary import metrics_of

    t0 = time.perf_counter()
    base = {"worker": f"{socket.gethostname()}:{os.getpid()}", "reused": False}
    try:
        from tierscan.sim.results import RunResult

        if not task.collect and os.path.exists(task.out_path):
            result = RunResult.load(task.out_path)
            return {**base, "ok": True, "message": "", "exit_code": 0, "reused": True,
                    "wall_s": result.wall_time_s or 0.0, "metrics": metrics_of(result)}
        from tierscan.cli.run import run_config
        from tierscan.sim.config import config_from_dict

        cfg = config_from_dict(task.resolved, task.where)
        if cfg.config_hash() != task.config_hash:
            raise RuntimeError(f"configuration hash changed in the worker "
                               f"({cfg.config_hash()} != {task.config_hash})")
        result = run_config(cfg)
        out = {**base, "ok": True, "message": "", "exit_code": 0,
               "metrics": metrics_of(result)}
        if task.collect:
            out["result_json"] = result.to_json()
        else:
            result.save(task.out_path)
        out["wall_s"] = time.perf_counter() - t0
        return out
    except Exception as e:  # noqa: BLE001 - a failed run is reported, the sweep goes on
        if isinstance(e, TierscanError):
            msg, code = str(e), e.exit_code
        else:
            msg, code = f"internal error: {type(e).__name__}: {e}", 1
        return {**base, "ok": False, "message": " ".join(msg.splitlines()), "exit_code": code,
                "wall_s": time.perf_counter() - t0, "metrics": None}
