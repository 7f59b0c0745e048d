"""Scripted scenarios: processes, their mappings and rounds of accesses, from a TOML file.

Used by ``tierscan lru-gen`` to put a kernel into a known state before reading or writing the
lru_gen debugfs file. Schema (every key checked; sizes in IEC units)::

    machine = "laptop"                  # a preset, or [machine] inline as in docs/machine.md
    seed = 0
    [[process]]
    name = "bench"
    cpu_node = 0
    memcg = "/"                         # "/" or "/name" (created on first use)
    [[process.mmap]]
    size = "64MiB"
    kind = "anon"                       # or "file"
    shared = false
    thp = false
    policy = "bind"                     # local | preferred | bind
    nodes = [1]
    populate = true
    [[process.touch]]                   # a round of random accesses
    mmap = 0                            # index into this process's mmaps
    fraction = 0.25                     # share of its pages touched (each once)
    writes = 0.5                        # share of those that are stores
    after_ms = 1000                     # simulated time before the round
"""

from __future__ import annotations

import numpy as np

from ..configcheck import Checker, load_toml
from ..errors import ConfigError
from ..kernel import Kernel
from ..machine import Machine
from ..units import parse_size

DEFAULT = {
    "machine": "laptop",
    "seed": 0,
    "process": [{
        "name": "bench", "cpu_node": 0, "memcg": "/",
        "mmap": [
            {"size": "64MiB", "kind": "anon", "policy": "bind", "nodes": [1], "populate": True},
            {"size": "16MiB", "kind": "file", "shared": True, "policy": "bind", "nodes": [1],
             "populate": True},
        ],
        "touch": [{"mmap": 0, "fraction": 0.25, "writes": 0.5, "after_ms": 1000},
                  {"mmap": 1, "fraction": 0.5, "writes": 0.0, "after_ms": 500}],
    }],
}

_TOP = {"machine": False, "seed": False, "process": True}
_PROC = {"name": True, "cpu_node": False, "memcg": False, "mmap": True, "touch": False}
_MMAP = {"size": True, "kind": False, "shared": False, "thp": False, "policy": False,
         "nodes": False, "populate": False}
_TOUCH = {"mmap": True, "fraction": True, "writes": False, "after_ms": False}


def load_scenario(path) -> tuple[dict, str]:
    return load_toml(path)


def build(spec: dict, where: str = "<default scenario>", **kernel_kw) -> Kernel:
    """Boot a kernel and play the scenario on it; every error names the key path."""
    c = Checker(where)
    c.table(spec, "", _TOP)
    m = spec.get("machine", "laptop")
    machine = Machine.preset(c.string(m, "machine")) if isinstance(m, str) else \
        Machine.from_dict(m, where=where)
    seed = c.int_at_least(spec.get("seed", 0), "seed", 0)
    k = Kernel(machine, seed=seed, **kernel_kw)
    rng = np.random.default_rng(seed)
    procs = c.array(spec["process"], "process")
    plan = []
    for i, p in enumerate(procs):
        path = f"process[{i}]"
        c.table(p, path, _PROC)
        mm = k.spawn(c.string(p["name"], f"{path}.name"), memcg=_memcg(k, c, p, path),
                     cpu_node=c.int_at_least(p.get("cpu_node", 0), f"{path}.cpu_node", 0))
        vmas = [_mmap(mm, c, raw, f"{path}.mmap[{j}]")
                for j, raw in enumerate(c.array(p["mmap"], f"{path}.mmap"))]
        for j, t in enumerate(c.array(p.get("touch", []), f"{path}.touch")):
            plan.append(_touch_round(c, t, f"{path}.touch[{j}]", mm, vmas))
    for after_ms, mm, vma, fraction, writes in plan:
        k.clock_ns += int(after_ms * 1_000_000)
        pages = np.arange(vma.start, vma.end, 4096, dtype=np.uint64)
        picked = pages[rng.random(pages.size) < fraction]
        mm.access(picked, rng.random(picked.size) < writes)
    return k


def _memcg(k, c, p, path):
    name = p.get("memcg", "/")
    c.string(name, f"{path}.memcg")
    if name == "/":
        return k.root_memcg
    if not name.startswith("/") or "/" in name[1:]:
        c.fail(f"{path}.memcg", f"expected \"/\" or \"/NAME\", got {name!r}")
    for memcg in k.memcgs:
        if memcg.path == name:
            return memcg
    return k.memcg_create(name[1:])


def _mmap(mm, c, raw, path):
    c.table(raw, path, _MMAP)
    size = parse_size(raw["size"], where=c.where, field=f"{path}.size")
    nodes = c.array(raw.get("nodes", []), f"{path}.nodes")
    try:
        return mm.mmap(size, kind=c.choice(raw.get("kind", "anon"), f"{path}.kind",
                                           ("anon", "file")),
                       shared=c.boolean(raw.get("shared", False), f"{path}.shared"),
                       thp=c.boolean(raw.get("thp", False), f"{path}.thp"),
                       populate=c.boolean(raw.get("populate", False), f"{path}.populate"),
                       policy=raw.get("policy", "local"), nodes=nodes)
    except ConfigError as e:  # name the scenario file and key path instead of mmap()'s
        c.fail(f"{path}.{(e.field or 'size').split('.')[-1]}", e.message)


def _touch_round(c, t, path, mm, vmas):
    c.table(t, path, _TOUCH)
    idx = c.int_at_least(t["mmap"], f"{path}.mmap", 0)
    if idx >= len(vmas):
        c.fail(f"{path}.mmap", f"no mmap {idx} (this process has {len(vmas)})")
    return (c.number_in(t.get("after_ms", 0), f"{path}.after_ms", 0, 1e9), mm, vmas[idx],
            c.number_in(t["fraction"], f"{path}.fraction", 0, 1),
            c.number_in(t.get("writes", 0.0), f"{path}.writes", 0, 1))
