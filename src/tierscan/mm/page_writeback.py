"""Dirty page-cache accounting, writeback and writer throttling (mm/page-writeback.c,
fs/fs-writeback.c).

A store through a shared file mapping dirties the folio (folio_mark_dirty) and, when the file
was clean, stamps its inode's ``dirtied_when``. The flusher (wb_workfn, run by sim/flusher.py)
writes back every file dirtied longer than ``dirty_expire_centisecs`` ago each
``dirty_writeback_centisecs`` (wb_check_old_data_flush, the "kupdate" writeback), and, while
more than the background threshold is dirty, the oldest files first (wb_check_background_flush).
A writer that takes the system past ``dirty_ratio`` is paused in balance_dirty_pages().

Model (docs/fidelity.md "Writeback"):
- the write I/O completes at once: a folio written back loses PG_dirty and never shows
  PG_writeback; its mappings are cleaned and write-protected (folio_mkclean), so the exact
  access model's next store faults and dirties it again. The rate model draws dirty PTE bits
  without faulting, so there a written-back page stays clean until the MGLRU walk moves a
  dirty PTE bit to the folio;
- shmem folios are swap-backed and never written back by the flusher (as in the kernel);
- the global dirty count the throttle reads (``WbState.nr_dirty``) is exact after every flusher
  pass and counts the folios folio_mark_dirty() dirtied since (like the kernel's per-CPU
  counters it is approximate in between: dirty bits the MGLRU walk moves to folios are seen at
  the next pass);
- balance_dirty_pages() is reduced to its hard limit: above the dirty threshold the writer
  sleeps for the time the device needs to write the excess (``costs.writeback_io_ns`` a page),
  at most MAX_PAUSE a call, and background writeback is started. The freerun/setpoint
  pos_ratio control between the background and the hard threshold is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .constants import HZ, PG_dirty, PG_reclaim, PG_swapbacked, _PAGE_DIRTY, _PAGE_RW
from .rmap import rmap_walk
from .vmstat import register_vmstat

register_vmstat("nr_dirtied", "nr_written")

MAX_PAUSE_NS = 200_000_000   # MAX_PAUSE = max(HZ/5, 1) jiffies: 200 ms (mm/page-writeback.c)


@dataclass
class WbState:
    """The bdi_writeback of the one backing device (fs/fs-writeback.c struct bdi_writeback)."""
    nr_dirty: int = 0                 # NR_FILE_DIRTY as the throttle sees it (see module doc)
    last_old_flush: int = 0           # wb->last_old_flush, jiffies
    start_background: bool = False    # wb_start_background_writeback() asked for a pass


def wb_state(kernel) -> WbState:
    """The kernel's writeback state, created on first use."""
    wb = getattr(kernel, "_wb", None)
    if wb is None:
        wb = kernel._wb = WbState(last_old_flush=kernel.jiffies)
    return wb


def _centisecs_to_jiffies(cs: int) -> int:
    return int(cs) * HZ // 100


def folio_mark_dirty(kernel, pfns) -> None:
    """folio_mark_dirty() on page-cache folios (mm/page-writeback.c): set PG_dirty; a folio
    that was clean is counted (nr_dirtied, NR_FILE_DIRTY) and its file's inode, if clean,
    gets dirtied_when = jiffies (__mark_inode_dirty). Then balance_dirty_pages_ratelimited()."""
    pm = kernel.pm
    pfns = np.unique(np.asarray(pfns, dtype=np.int64))
    if pfns.size == 0:
        return
    flags = pm.flags[pfns]
    fresh = pfns[(flags & PG_dirty) == 0]
    pm.flags[pfns] = flags | PG_dirty
    fresh = fresh[(pm.flags[fresh] & PG_swapbacked) == 0]   # shmem: no writeback accounting
    if fresh.size == 0:
        return
    kernel.vmstat.count("nr_dirtied", pm.node_of(fresh), 1)
    wb = wb_state(kernel)
    wb.nr_dirty += int(fresh.size)
    for fid in np.unique(pm.mapping[fresh]):
        f = kernel.files.get(int(fid))
        if f is not None and f.dirtied_when is None:
            f.dirtied_when = kernel.jiffies
    balance_dirty_pages(kernel)


def global_dirtyable_memory(kernel) -> int:
    """global_dirtyable_memory(): free pages plus file-LRU pages (the reserves are not
    modelled)."""
    pages = kernel.node_pages()
    return int(pages["free"].sum() + pages["file"].sum())


def global_dirty_limits(kernel) -> tuple[int, int]:
    """global_dirty_limits() -> (background_thresh, dirty_thresh) in pages, from
    dirty_background_ratio and dirty_ratio of the dirtyable memory; a background threshold at
    or above the hard one is halved to it (domain_dirty_limits)."""
    avail = global_dirtyable_memory(kernel)
    thresh = avail * int(kernel.sysfs["vm/dirty_ratio"]) // 100
    bg = avail * int(kernel.sysfs["vm/dirty_background_ratio"]) // 100
    if bg >= thresh:
        bg = thresh // 2
    return bg, thresh


def balance_dirty_pages(kernel) -> None:
    """balance_dirty_pages() at its hard limit (see the module doc): past dirty_thresh the
    dirtying task sleeps for the device time of the excess, capped at MAX_PAUSE, and
    background writeback is started; past the background threshold only the latter."""
    wb = wb_state(kernel)
    bg, thresh = global_dirty_limits(kernel)
    if wb.nr_dirty <= bg:
        return
    wb.start_background = True       # wb_start_background_writeback()
    acc = kernel.accounting
    if wb.nr_dirty > thresh and acc is not None:
        pause = (wb.nr_dirty - thresh) * acc.engine.costs.writeback_io_ns
        acc.charge(min(pause, MAX_PAUSE_NS))
        kernel.vmstat.count("balance_dirty_pages_pauses", 0, 1)


register_vmstat("balance_dirty_pages_pauses")   # tierscan's: writer pauses taken


def _dirty_file_pages(kernel, f) -> np.ndarray:
    """The pfns of file ``f``'s page cache that are PG_dirty (a shmem file has none here)."""
    if f.shmem:
        return np.empty(0, np.int64)
    cached = f.pages[f.pages >= 0]
    return cached[(kernel.pm.flags[cached] & PG_dirty) != 0]


def folio_clear_dirty_for_io(kernel, pfns) -> None:
    """folio_clear_dirty_for_io() with the I/O done at once: folio_mkclean() cleans and
    write-protects every mapping (the next store faults and dirties the folio again), then
    PG_dirty is cleared. (pageout() in mm/evict.py does the same for reclaim.)"""
    pm = kernel.pm
    for s in rmap_walk(kernel, pfns):
        table = s.mm.pt.pmd if s.pmd else s.mm.pt.pte
        table[s.slots] &= ~(_PAGE_DIRTY | _PAGE_RW)
    pm.flags[pfns] &= ~(PG_dirty | PG_reclaim)


def writeback_inodes(kernel, files) -> int:
    """__writeback_single_inode() of each file: write back all its dirty pages and mark the
    inode clean. Returns the pages written (counted in nr_written)."""
    written = 0
    for f in files:
        pfns = _dirty_file_pages(kernel, f)
        if pfns.size:
            folio_clear_dirty_for_io(kernel, pfns)
            kernel.vmstat.count("nr_written", kernel.pm.node_of(pfns), 1)
            written += int(pfns.size)
        f.dirtied_when = None
    return written


def wb_workfn(kernel) -> int:
    """wb_workfn() -> wb_do_writeback(): the periodic old-data flush (wb_check_old_data_flush,
    once per dirty_writeback_centisecs: files dirtied more than dirty_expire_centisecs ago)
    and background writeback (wb_check_background_flush: oldest files first until the dirty
    count is at or below the background threshold). Returns the pages written."""
    wb = wb_state(kernel)
    now = kernel.jiffies
    files = [f for f in kernel.files.values() if not f.shmem]
    dirty = {f.id: _dirty_file_pages(kernel, f).size for f in files}
    for f in files:
        # a file whose pages were dirtied without folio_mark_dirty (the MGLRU walk moving a
        # PTE dirty bit) is stamped when the flusher first sees it
        if dirty[f.id] and f.dirtied_when is None:
            f.dirtied_when = now
        elif not dirty[f.id]:
            f.dirtied_when = None
    wb.nr_dirty = int(sum(dirty.values()))
    written = 0
    interval = _centisecs_to_jiffies(kernel.sysfs["vm/dirty_writeback_centisecs"])
    if interval and now - wb.last_old_flush >= interval:
        wb.last_old_flush = now
        expire = _centisecs_to_jiffies(kernel.sysfs["vm/dirty_expire_centisecs"])
        old = [f for f in files if dirty[f.id] and f.dirtied_when <= now - expire]
        n = writeback_inodes(kernel, old)
        written += n
        wb.nr_dirty -= n
    # wb_check_background_flush(): only while more is dirty than the background threshold,
    # which is never below 0; with nothing dirty the limits (a count over every allocated
    # page, 0.2 s with 64 GiB of THPs) are not computed, as they could not be passed
    bg = global_dirty_limits(kernel)[0] if wb.nr_dirty > 0 else 0
    if wb.nr_dirty > bg:
        for f in sorted((f for f in files if f.dirtied_when is not None),
                        key=lambda f: (f.dirtied_when, f.id)):
            if wb.nr_dirty <= bg:
                break
            n = writeback_inodes(kernel, [f])
            written += n
            wb.nr_dirty -= n
    wb.start_background = False
    return written
