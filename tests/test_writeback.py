"""Writeback (issue 13 item 10): the flusher cleans expired dirty page cache so written file
pages become migratable again; writers past dirty_ratio are throttled."""

import numpy as np
from conftest import PAGE, page_addrs

from tierscan.kernel import Kernel
from tierscan.machine import Machine
from tierscan.mm.constants import PG_dirty, _PAGE_DIRTY, _PAGE_RW
from tierscan.mm.migrate import OK, DIRTY_FILE, misplaced_prepare_reasons
from tierscan.mm.page_writeback import global_dirty_limits, wb_state, wb_workfn
from tierscan.mm.pagetable import PageTable
from tierscan.sim.engine import MS, Engine
from tierscan.sim.flusher import Flusher
from tierscan.workload.library import make_workload


def _dirty_shared_file(kernel, mm, pages=8):
    vma = mm.mmap(pages * PAGE, kind="file", shared=True)
    mm.access(page_addrs(vma.start, pages), True)
    pfns = vma.file.pages[:pages]
    return vma, pfns


def test_store_dirties_folio_and_inode(kernel, mm):
    vma, pfns = _dirty_shared_file(kernel, mm)
    assert ((kernel.pm.flags[pfns] & PG_dirty) != 0).all()
    assert vma.file.dirtied_when == kernel.jiffies
    assert kernel.vmstat["nr_dirtied"] == 8
    assert wb_state(kernel).nr_dirty == 8


def test_flusher_writes_back_only_expired_inodes(kernel, mm):
    vma, pfns = _dirty_shared_file(kernel, mm)
    kernel.clock_ns += 10_000 * MS          # 10 s: past the 5 s interval, before the 30 s expiry
    assert wb_workfn(kernel) == 0
    assert ((kernel.pm.flags[pfns] & PG_dirty) != 0).all()
    kernel.clock_ns += 21_000 * MS          # 31 s after the store
    assert wb_workfn(kernel) == 8
    assert ((kernel.pm.flags[pfns] & PG_dirty) == 0).all()
    assert kernel.vmstat["nr_written"] == 8
    assert vma.file.dirtied_when is None
    slots = PageTable.slot(page_addrs(vma.start, 8))
    assert ((mm.pt.pte[slots] & (_PAGE_DIRTY | _PAGE_RW)) == 0).all()   # folio_mkclean
    kernel.check()


def test_written_back_file_page_becomes_migratable(kernel, mm):
    """The defect: a written file page stayed dirty forever, so migrate_misplaced_folio_prepare
    refused it (DIRTY_FILE) for good."""
    _, pfns = _dirty_shared_file(kernel, mm)
    assert (misplaced_prepare_reasons(kernel, pfns, 1) == DIRTY_FILE).all()
    kernel.clock_ns += 31_000 * MS
    wb_workfn(kernel)
    assert (misplaced_prepare_reasons(kernel, pfns, 1) == OK).all()


def test_store_after_writeback_dirties_again(kernel, mm):
    vma, pfns = _dirty_shared_file(kernel, mm, 4)
    kernel.clock_ns += 31_000 * MS
    wb_workfn(kernel)
    mm.access(page_addrs(vma.start, 1), True)    # write-protected: the store faults (do_wp_page)
    assert kernel.pm.flags[pfns[0]] & PG_dirty
    assert not ((kernel.pm.flags[pfns[1:]] & PG_dirty) != 0).any()
    assert vma.file.dirtied_when == kernel.jiffies


def test_background_writeback_above_background_ratio(kernel, mm):
    """dirty_background_ratio 0 (halved from a zero hard limit): everything dirty is written
    at the next pass, expired or not."""
    kernel.sysfs["vm/dirty_background_ratio"] = 1
    bg, _ = global_dirty_limits(kernel)
    n = bg + 64
    _, pfns = _dirty_shared_file(kernel, mm, n)
    assert wb_state(kernel).start_background
    written = wb_workfn(kernel)                 # nothing is expired: background only
    assert written == n                         # one file: written whole
    assert wb_state(kernel).nr_dirty == 0


def _writer(size="8MiB", wf=1.0):
    return make_workload("uniform", {"size": size, "kind": "file", "shared": True,
                                     "write_fraction": wf})


def test_writer_past_dirty_ratio_is_throttled():
    """A writer that dirties more than dirty_ratio of the dirtyable memory stalls in
    balance_dirty_pages; one under the limit does not."""
    def run(ratio):
        k = Kernel(Machine.preset("laptop"), seed=0)
        k.sysfs["vm/dirty_ratio"] = ratio
        k.sysfs["vm/dirty_background_ratio"] = 0
        e = Engine(k, _writer("64MiB"), access_model="exact", duration_ns=200 * MS,
                   daemons=[Flusher()])
        e.run()
        return k, e
    k_hi, e_hi = run(50)
    k_lo, e_lo = run(1)
    assert k_hi.vmstat["balance_dirty_pages_pauses"] == 0
    assert k_lo.vmstat["balance_dirty_pages_pauses"] > 0
    assert e_lo.groups[0].total < e_hi.groups[0].total  # the throttled writer did less
    assert k_lo.vmstat["nr_written"] > 0
    assert e_lo.accounting.cpu_ns["flusher"] > 0


def test_engine_flusher_cleans_and_stores_redirty():
    """In a run the flusher writes expired pages back and the writer's later stores fault
    and dirty them again, so each page is dirtied more than once."""
    k = Kernel(Machine.preset("laptop"), seed=0)
    k.sysfs["vm/dirty_expire_centisecs"] = 20
    k.sysfs["vm/dirty_writeback_centisecs"] = 10
    e = Engine(k, _writer("256KiB", 0.5), access_model="exact", duration_ns=1_000 * MS,
               daemons=[Flusher()])
    e.run()
    assert k.vmstat["nr_written"] > 0
    assert k.vmstat["nr_dirtied"] > 64             # 64 pages, dirtied again after writeback
    assert k.vmstat["balance_dirty_pages_pauses"] == 0


def test_flusher_pass_with_nothing_dirty_counts_no_pages(kernel, mm, monkeypatch):
    """The background check needs the dirty limits (a count over every allocated page) only
    when something is dirty: a background threshold is never below 0. A pass with nothing
    dirty must not count pages; one with dirty pages still does (and writes back)."""
    import tierscan.mm.page_writeback as pw

    calls = []
    real = pw.global_dirty_limits
    monkeypatch.setattr(pw, "global_dirty_limits", lambda k: calls.append(1) or real(k))
    kernel.clock_ns += 10_000 * MS
    assert wb_workfn(kernel) == 0
    assert calls == []
    kernel.sysfs["vm/dirty_background_ratio"] = 1
    n = real(kernel)[0] + 64
    _dirty_shared_file(kernel, mm, n)
    calls.clear()
    assert wb_workfn(kernel) == n
    assert calls
