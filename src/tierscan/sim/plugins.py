"""Registries of the pluggable parts an experiment names: hot-page detectors and promotion
engines. Each registers a factory under a lower-case name; the engine knows none by name.

A factory is called as ``factory(component, kernel, costs)`` with the config ``Component``
(its ``params``, and ``fail``/``check_keys`` for errors naming the file and key path) and
returns a list of ``Daemon`` objects to run.
"""

from __future__ import annotations

DETECTORS: dict[str, object] = {}
ENGINES: dict[str, object] = {}


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


def build(registry: dict, kind: str, component, kernel, costs) -> list:
    if component.name not in registry:
        known = ", ".join(sorted(registry)) or "none registered yet"
        component.fail("name", f"unknown {kind} {component.name!r} (known: {known})")
    return list(registry[component.name](component, kernel, costs))
