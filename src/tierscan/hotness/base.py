"""What a hotness detector is: a daemon that finds accessed pages and reports them to the
promotion engine (``self.promoter.record_access``), or, for upstream NUMA balancing, migrates
on its own. Detectors are registered in sim/plugins.py as
``factory(component, kernel, costs, promoter) -> [daemons]``."""

from __future__ import annotations

from ..sim.engine import Daemon


class Detector(Daemon):
    name = "detector"

    def __init__(self, promoter=None):
        self.promoter = promoter
