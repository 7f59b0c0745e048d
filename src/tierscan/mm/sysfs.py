"""Kernel knobs the model reads: /sys/kernel/mm/... (keys are paths below /sys/kernel/mm/) and
the vm sysctls (keys "vm/..." for /proc/sys/vm/...). Writing here changes only the simulated
kernel, never the machine tierscan runs on.

``sysfs[key] = value`` is the Python form (validated, ConfigError on bad values);
``read(key)``/``write(key, text)`` are the text forms, with the kernel's store semantics and
OSError(EINVAL) on bad text.
"""

from __future__ import annotations

import errno
import os

from ..errors import ConfigError


def _one_of(*choices):
    def check(key, value):
        if value not in choices:
            raise ConfigError(f"invalid value {value!r} (expected one of: "
                              f"{', '.join(map(str, choices))})", field=key)
        return value
    return check


def _uint(key, value):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise ConfigError(f"expected an unsigned 32-bit integer, got {value!r}", field=key)
    return value


def _range(lo, hi):
    def check(key, value):
        _uint(key, value)
        if not lo <= value <= hi:
            raise ConfigError(f"expected {lo}..{hi}, got {value}", field=key)
        return value
    return check


def _lru_gen_enabled(key, value):
    """enabled_store(): every bit is a capability; only 0x1-0x4 exist (NR_LRU_GEN_CAPS = 3).
    Clearing LRU_GEN_CORE switches to the classic LRU (the kernel's handler,
    lru_gen_change_state, is registered by the Kernel)."""
    return _uint(key, value) & 0x7


KNOBS = {
    "transparent_hugepage/enabled": ("madvise", _one_of("always", "madvise", "never")),
    "transparent_hugepage/use_zero_page": (1, _one_of(0, 1)),
    # writeback sysctls (mm/page-writeback.c defaults; mm/page_writeback.py)
    "vm/dirty_ratio": (20, _range(0, 100)),
    "vm/dirty_background_ratio": (10, _range(0, 100)),
    "vm/dirty_expire_centisecs": (3000, _uint),
    "vm/dirty_writeback_centisecs": (500, _uint),
    "lru_gen/enabled": (0x7, _lru_gen_enabled),
    "lru_gen/min_ttl_ms": (0, _uint),
    "numa/demotion_enabled": (False, _one_of(False, True)),
    "vm/swappiness": (60, _range(0, 200)),
    # mm/swap.c page_cluster: swap readahead reads up to 2^page-cluster slots (default 3;
    # the sysctl's range is 0..page_cluster_max = 31)
    "vm/page-cluster": (3, _range(0, 31)),
    # mm/page_alloc.c: watermark_scale_factor 1..3000 (default 10); watermark_boost_factor
    # (default 15000) has no effect in the model (mm/kswapd.py: no watermark boosting)
    "vm/watermark_scale_factor": (10, _range(1, 3000)),
    "vm/watermark_boost_factor": (15000, _uint),
    # /proc/sys/kernel/numa_balancing: NUMA_BALANCING_NORMAL (1) | MEMORY_TIERING (2); NUMA
    # balancing detectors set it when they start
    "kernel/numa_balancing": (0, _range(0, 3)),
}


# /sys/kernel/mm/mempolicy/weighted_interleave/nodeN (6.9+): one u8 weight per node, 1..255
# (node_store() refuses 0); unset, weighted interleave uses 1 (no iw_table). Per-node keys, so
# they are checked by pattern, and only written ones appear in as_dict().
IW_PREFIX = "mempolicy/weighted_interleave/node"
IW_DEFAULT = 1


def _iw_node(key: str) -> int | None:
    """N for a key mempolicy/weighted_interleave/nodeN, else None."""
    if key.startswith(IW_PREFIX) and key[len(IW_PREFIX):].isdigit():
        return int(key[len(IW_PREFIX):])
    return None


class Sysfs:
    def __init__(self, nr_nodes: int | None = None):
        self._values = {k: default for k, (default, _) in KNOBS.items()}
        self._on_change: dict[str, list] = {}
        self.nr_nodes = nr_nodes

    def _known(self, key: str) -> bool:
        nid = _iw_node(key)
        if nid is None:
            return key in KNOBS
        return self.nr_nodes is None or nid < self.nr_nodes

    def interleave_weight(self, nid: int) -> int:
        """The weighted-interleave weight of node ``nid`` (mm/mempolicy.py)."""
        return self._values.get(f"{IW_PREFIX}{int(nid)}", IW_DEFAULT)

    def on_change(self, key: str, fn) -> None:
        """Call ``fn(value)`` after every store to ``key`` (the sysctl's handler)."""
        self._on_change.setdefault(key, []).append(fn)

    def __getitem__(self, key: str):
        if _iw_node(key) is not None and self._known(key):
            return self._values.get(key, IW_DEFAULT)
        if key not in self._values:
            raise KeyError(f"unknown knob {key!r}")
        return self._values[key]

    def __setitem__(self, key: str, value) -> None:
        if not self._known(key):
            if _iw_node(key) is not None:
                raise ConfigError(f"no node {_iw_node(key)} (the machine has nodes 0-"
                                  f"{self.nr_nodes - 1})", field=key)
            raise ConfigError(f"unknown knob (known: {', '.join(KNOBS)}, "
                              f"{IW_PREFIX}N)", field=key)
        check = _range(1, 255) if _iw_node(key) is not None else KNOBS[key][1]
        self._values[key] = check(key, value)
        for fn in self._on_change.get(key, ()):
            fn(self._values[key])

    def as_dict(self) -> dict:
        return dict(self._values)

    def read(self, key: str) -> str:
        """The file's text, as cat prints it."""
        value = self[key]
        if key == "lru_gen/enabled":
            return f"0x{value:04x}\n"  # every capability is present on x86 (mglru-spec §8.1)
        if key == "transparent_hugepage/enabled":
            return " ".join(f"[{m}]" if m == value else m
                            for m in ("always", "madvise", "never")) + "\n"
        return f"{value}\n"

    def write(self, key: str, text: str) -> int:
        """echo TEXT > file: the kernel's parsing; OSError(EINVAL) on bad text."""
        from .debugfs import kstrtouint

        if not self._known(key):
            raise OSError(errno.ENOENT, f"{key}: {os.strerror(errno.ENOENT)}")
        if key == "lru_gen/enabled" and text[:1].lower() in ("y", "n"):
            value = 0x7 if text[:1].lower() == "y" else 0
        elif key == "transparent_hugepage/enabled":
            value = text.strip()
        else:
            value = kstrtouint(text)
            if value is None:
                raise OSError(errno.EINVAL, f"{key}: {os.strerror(errno.EINVAL)}")
        try:
            self[key] = value
        except ConfigError as e:
            raise OSError(errno.EINVAL, str(e)) from None
        return len(text)
