"""The writeback flusher as an engine daemon (the bdi's wb_workfn kworker; mm/page_writeback.py
does the work).

It wakes every tick to honour balance_dirty_pages()'s request for background writeback at
once, and does the periodic old-data flush every ``dirty_writeback_centisecs``. Its CPU time
is ``costs.writeback_cpu_ns`` a page written. A kworker is one CPU: a pass that costs more
than the period delays the next one by the excess (the engine's CPU rule, sim/engine.py
``Daemon``).
"""

from __future__ import annotations

from ..mm.constants import HZ
from ..mm.page_writeback import wb_state, wb_workfn
from .engine import MS, Daemon


class Flusher(Daemon):
    name = "flusher"

    def __init__(self, cpu_node: int = 0, period_ns: int = 10 * MS):
        self.cpu_node = cpu_node
        self.period_ns = int(period_ns)

    def run(self, engine) -> None:
        k = engine.kernel
        wb = wb_state(k)
        interval = int(k.sysfs["vm/dirty_writeback_centisecs"]) * HZ // 100
        if not wb.start_background and not (interval and k.jiffies - wb.last_old_flush >= interval):
            return
        written = wb_workfn(k)
        spent = written * engine.costs.writeback_cpu_ns
        engine.charge(spent)   # a pass longer than the period delays the next (engine rule)
