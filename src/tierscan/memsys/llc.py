"""The last-level-cache filter (issue 12 item 5), analytic form for the rate model.

The LLC holds 64-byte lines of data and of page tables, shared by the group's threads on one
CPU node. An access to page p references one of its 64 lines uniformly (the phase's
distribution is per page; within a page nothing is known, so every line is equally likely);
each TLB miss adds a reference to a page-table line (tlb.py). Che's approximation (lru.py)
over both populations gives the hit ratio of data references and of walk references.

What a hit means for the detectors (docs/cost-model.md, "LLC filter"): a hit costs
``llc_hit_ns`` instead of a memory access and moves no device traffic. It does *not* hide the
access from the A bit or from a NUMA hint fault: the A bit is set by the page walker, whether
or not the data then hits the cache, and a PROT_NONE entry faults on any access. Only the IBS
sampling path, filtered to L3 misses, sees misses only: its samples are thinned by the miss
ratio.
"""

from __future__ import annotations

import numpy as np

from .lru import characteristic_time, compress, hit_probability

LINE = 64
LINES_PER_PAGE = 4096 // LINE


def llc_hits(w, line_rates, llc_bytes: int) -> tuple[float, float]:
    """(data hit ratio, walk-reference hit ratio) of a stream with page weights ``w`` and
    page-table line reference rates ``line_rates`` (per access) in an LLC of ``llc_bytes``."""
    w = np.asarray(w, float)
    line_rates = np.asarray(line_rates, float)
    data_r, data_n = compress(w / LINES_PER_PAGE, np.full(w.size, float(LINES_PER_PAGE)))
    pt_r, pt_n = compress(line_rates)
    t = characteristic_time(np.concatenate([data_r, pt_r]), np.concatenate([data_n, pt_n]),
                            llc_bytes / LINE)
    h_data = float(w @ hit_probability(w / LINES_PER_PAGE, t)) / max(w.sum(), 1e-300)
    walks = line_rates.sum()
    h_pt = float(line_rates @ hit_probability(line_rates, t)) / walks if walks > 0 else 1.0
    return h_data, h_pt
