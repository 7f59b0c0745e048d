"""The loaded model on the pghot machine's memory configurations (experiments/pghot_steady.py):
the mechanisms docs/reproductions.md relies on, checked on the engine's own pieces."""

import numpy as np
import pytest

from tierscan.experiments.memory_configs import pghot_memory_config
from tierscan.experiments.pghot_sensitivity import perturbed
from tierscan.experiments.pghot_steady import per_access

PAGES = 1 << 16


@pytest.fixture(scope="module")
def balanced():
    return pghot_memory_config("dram2-cxl2").machine


def ratio(m, mode):
    return per_access(m, mode, 1.0, PAGES) / per_access(m, mode, 0.0, PAGES)


def test_write_allocate_costs_dram_more_than_the_full_duplex_link(balanced):
    """Mode 1 (50% stores: 1.5x the bytes, DRAM's mixed-traffic curve) gains less from DRAM
    than Mode 2 (loads only): the published pattern (0.963 against 0.649 for klruscand)."""
    assert ratio(balanced, 1) > ratio(balanced, 2) * 1.2


def test_splitting_traffic_beats_full_promotion_when_both_devices_saturate(balanced):
    shares = np.linspace(0, 1, 11)
    taus = [per_access(balanced, 1, s, PAGES) for s in shares]
    best = int(np.argmin(taus))
    assert 0 < best < len(shares) - 1
    assert taus[best] < 0.8 * min(taus[0], taus[-1])


def test_more_dram_bandwidth_means_more_gain(balanced):
    assert ratio(perturbed(balanced, "dram_bandwidth", 1.2), 2) < ratio(balanced, 2)
    assert ratio(perturbed(balanced, "cxl_bandwidth", 1.2), 2) > ratio(balanced, 2)
