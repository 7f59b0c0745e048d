"""Registries of the pluggable parts an experiment names: hot-page detectors and promotion
engines. Each registers a factory under a lower-case name; the engine knows none by name.

A promotion-engine factory is called as ``factory(component, kernel, costs)``; a detector
factory as ``factory(component, kernel, costs, promoter)``, where ``promoter`` is the built
promotion engine (or None). ``component`` is the config ``Component`` (its ``params``, and
``fail``/``check_keys`` for errors naming the file and key path). Each returns a list of
``Daemon`` objects to run; a promotion engine's list starts with the engine itself.
"""

from __future__ import annotations

import importlib

DETECTORS: dict[str, object] = {}
ENGINES: dict[str, object] = {}

# the modules that register the built-in plug-ins (imported on first use)
BUILTIN = ("tierscan.hotness.klruscand", "tierscan.hotness.numab", "tierscan.hotness.ibs",
           "tierscan.hotness.kscand", "tierscan.hotness.damon", "tierscan.hotness.oracle",
           "tierscan.promote.pghot", "tierscan.promote.kpromoted", "tierscan.promote.direct",
           "tierscan.promote.pghot_hashheap")


def load_all() -> None:
    """Import the built-in plug-in modules that exist (each registers itself)."""
    for name in BUILTIN:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise


def register_detector(name: str):
    def deco(factory):
        DETECTORS[name] = factory
        return factory
    return deco


def register_engine(name: str):
    def deco(factory):
        ENGINES[name] = factory
        return factory
    return deco


def build(registry: dict, kind: str, component, kernel, costs, *extra) -> list:
    if component.name not in registry:
        known = ", ".join(sorted(registry)) or "none registered yet"
        component.fail("name", f"unknown {kind} {component.name!r} (known: {known})")
    return list(registry[component.name](component, kernel, costs, *extra))
