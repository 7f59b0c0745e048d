"""jiffies as the kernel keeps them (include/linux/jiffies.h): they start at INITIAL_JIFFIES,
(unsigned long)(unsigned int)(-300*HZ), and every comparison survives the wrap."""

import numpy as np
import pytest

from tierscan import Kernel, Machine
from tierscan.hotness.numab import NumaBalancing, PromotionState
from tierscan.jiffies import (
    INITIAL_JIFFIES, ULONG_MASK, clock_to_jiffies, jiffies_to_clock_ns, jiffies_to_msecs,
    time_after, time_after_eq, time_before, time_before_eq,
)
from tierscan.promote.pghot import PghotV3
from tierscan.sim.engine import MS


def test_jiffies_start_at_initial_jiffies():
    k = Kernel(Machine.preset("laptop"), seed=0)
    assert INITIAL_JIFFIES == 2**32 - 300_000 == 4_294_667_296
    assert k.jiffies == INITIAL_JIFFIES
    k.clock_ns = 1500 * MS
    assert k.jiffies == INITIAL_JIFFIES + 1500
    assert jiffies_to_clock_ns(k.jiffies) == k.clock_ns
    j = clock_to_jiffies(np.array([0, 7 * MS]))
    assert j.tolist() == [INITIAL_JIFFIES, INITIAL_JIFFIES + 7]
    # the low 32 bits, and every unsigned-int ms count, wrap five minutes after boot
    assert jiffies_to_msecs(clock_to_jiffies(300_000 * MS - MS)) == 2**32 - 1
    assert jiffies_to_msecs(clock_to_jiffies(300_000 * MS)) == 0


def test_jiffies_to_clock_ns_of_an_array_is_the_scalar_form_per_value():
    j = INITIAL_JIFFIES + np.array([0, 1, 7, 1500, 10**9], np.int64)
    assert jiffies_to_clock_ns(j).tolist() == [jiffies_to_clock_ns(int(x)) for x in j]
    with pytest.raises(ValueError):            # before boot: wraps past int64
        jiffies_to_clock_ns(np.array([INITIAL_JIFFIES - 3, INITIAL_JIFFIES], np.int64))
    assert jiffies_to_clock_ns(np.empty(0, np.int64)).size == 0


def test_time_after_is_wrap_safe():
    top = ULONG_MASK                                   # the last value before the 64-bit wrap
    assert time_after(2, top) and time_before(top, 2)  # 2 comes 3 ticks after ULONG_MAX
    assert not time_after(top, 2) and not time_before(2, top)
    assert time_after_eq(5, 5) and time_before_eq(5, 5)
    assert time_after_eq(0, top) and not time_after_eq(top, 0)
    # a plain comparison gets it backwards
    assert not 2 > top


def test_numab_threshold_steps_across_the_millisecond_wrap():
    """numa_promotion_adjust_threshold() keeps now and nbp_th_start in unsigned ints: the step
    after the 300-s wrap of jiffies_to_msecs() still comes 60 s after the previous one."""
    k = Kernel(Machine.preset("laptop"), seed=0)
    d = NumaBalancing()
    d.kernel, d.state = k, PromotionState(k.machine.nr_nodes)
    steps = []
    for ms in range(0, 600_001, 1000):
        k.clock_ns = ms * MS
        before = int(d.state.nbp_th_start[0])
        d.numa_promotion_adjust_threshold(0, 256, 1000)
        if int(d.state.nbp_th_start[0]) != before:
            steps.append(ms)
    assert steps[0] == 0                             # at boot, not 60 s late
    assert np.diff(steps).tolist() == [61_000] * (len(steps) - 1)
    assert any(a < 300_000 < b for a, b in zip(steps, steps[1:]))   # across the wrap
    assert len(steps) == 10


def test_pghot_threshold_and_rate_limit_across_the_millisecond_wrap():
    k = Kernel(Machine.preset("laptop"), seed=0)
    e = PghotV3(k)
    steps = []
    for ms in range(0, 600_001, 1000):
        k.clock_ns = ms * MS
        before = int(e.nbp_th_start[0])
        e.adjust_threshold(0, 256, 5000, jiffies_to_msecs(k.jiffies))
        if int(e.nbp_th_start[0]) != before:
            steps.append(ms)
    assert steps[0] == 0 and np.diff(steps).tolist() == [61_000] * (len(steps) - 1)
    assert len(steps) == 10
