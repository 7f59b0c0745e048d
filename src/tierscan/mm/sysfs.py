"""Sysfs knobs the model reads (/sys/kernel/mm/...), validated on write like the kernel's
store handlers. Keys are paths below /sys/kernel/mm/. Writing here changes only the simulated
kernel, never the machine tierscan runs on."""

from __future__ import annotations

from ..errors import ConfigError


def _one_of(*choices):
    def check(key, value):
        if value not in choices:
            raise ConfigError(f"invalid value {value!r} (expected one of: "
                              f"{', '.join(map(str, choices))})", field=key)
        return value
    return check


def _uint(key, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"expected a non-negative integer, got {value!r}", field=key)
    return value


def _bits(mask):
    def check(key, value):
        value = _uint(key, value)
        if value & ~mask:
            raise ConfigError(f"invalid bits {value:#x} (valid mask {mask:#x})", field=key)
        return value
    return check


KNOBS = {
    "transparent_hugepage/enabled": ("madvise", _one_of("always", "madvise", "never")),
    "transparent_hugepage/use_zero_page": (1, _one_of(0, 1)),
    "lru_gen/enabled": (0x7, _bits(0x7)),
    "lru_gen/min_ttl_ms": (0, _uint),
}


class Sysfs:
    def __init__(self):
        self._values = {k: default for k, (default, _) in KNOBS.items()}

    def __getitem__(self, key: str):
        if key not in self._values:
            raise KeyError(f"unknown sysfs knob {key!r}")
        return self._values[key]

    def __setitem__(self, key: str, value) -> None:
        if key not in KNOBS:
            raise ConfigError(f"unknown knob (known: {', '.join(KNOBS)})", field=key)
        self._values[key] = KNOBS[key][1](key, value)

    def as_dict(self) -> dict:
        return dict(self._values)
