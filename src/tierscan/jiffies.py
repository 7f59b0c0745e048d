"""The kernel's tick clock (include/linux/jiffies.h, kernel/time/time.c) on a 64-bit kernel.

``jiffies`` is an unsigned long that starts at INITIAL_JIFFIES, ``(unsigned long)(unsigned
int)(-300*HZ)``: 2^32 - 300,000 with HZ = 1000, so that its low 32 bits (``jiffies_32``, and
every ``unsigned int`` millisecond count derived from it) wrap five minutes after boot. Code
that compares jiffies uses the wrap-safe ``time_after()`` family; code that keeps
``jiffies_to_msecs()`` in an ``unsigned int`` subtracts modulo 2^32.
"""

from __future__ import annotations

import numpy as np

from .mm.constants import HZ               # CONFIG_HZ of the modelled kernels: 1000

MSEC_PER_SEC = 1000
NSEC_PER_SEC = 1_000_000_000
ULONG_MASK = (1 << 64) - 1
UINT_MASK = (1 << 32) - 1
INITIAL_JIFFIES = (-300 * HZ) & UINT_MASK   # 4,294,667,296


def clock_to_jiffies(clock_ns, initial: int = INITIAL_JIFFIES):
    """jiffies after ``clock_ns`` of uptime (one tick per 1/HZ s), as an unsigned long. An
    int64 array of uptimes gives an int64 array (no run reaches the 64-bit wrap)."""
    if isinstance(clock_ns, np.ndarray):
        return initial + clock_ns.astype(np.int64) * HZ // NSEC_PER_SEC
    return (initial + int(clock_ns) * HZ // NSEC_PER_SEC) & ULONG_MASK


def jiffies_to_clock_ns(j, initial: int = INITIAL_JIFFIES):
    """The uptime (ns) at which jiffies reached ``j``: for results, which record ns. An int64
    array of jiffies at or after ``initial`` (every jiffies of a run) gives an int64 array;
    earlier ones (a wrapped uptime) do not fit one."""
    if isinstance(j, np.ndarray):
        d = j.astype(np.int64) - initial
        if d.size and (d.min() < 0 or d.max() >= (1 << 63) // NSEC_PER_SEC):
            raise ValueError("jiffies before boot (or after 292 years) as an int64 array")
        return d * NSEC_PER_SEC // HZ
    return ((int(j) - initial) & ULONG_MASK) * NSEC_PER_SEC // HZ


def _signed(x: int) -> int:
    x &= ULONG_MASK
    return x - (1 << 64) if x >> 63 else x


def time_after(a: int, b: int) -> bool:
    """time_after(a, b): ``(long)((b) - (a)) < 0``, true if a is after b, across a wrap."""
    return _signed(int(b) - int(a)) < 0


def time_before(a: int, b: int) -> bool:
    """time_before(a, b) = time_after(b, a)."""
    return time_after(b, a)


def time_after_eq(a: int, b: int) -> bool:
    """time_after_eq(a, b): ``(long)((a) - (b)) >= 0``."""
    return _signed(int(a) - int(b)) >= 0


def time_before_eq(a: int, b: int) -> bool:
    """time_before_eq(a, b) = time_after_eq(b, a)."""
    return time_after_eq(b, a)


def jiffies_to_msecs(j: int) -> int:
    """jiffies_to_msecs(): an ``unsigned int`` (HZ = 1000: the low 32 bits of j)."""
    return (int(j) * (MSEC_PER_SEC // HZ)) & UINT_MASK


def msecs_to_jiffies(ms: int) -> int:
    """msecs_to_jiffies() with HZ = 1000: the identity."""
    return int(ms) * HZ // MSEC_PER_SEC
