"""The simulated kernel: one machine's memory, processes, memcgs, lruvecs and counters."""

from __future__ import annotations

import numpy as np
from numba import njit

from .arrays import unique
from .errors import ConfigError
from .jiffies import clock_to_jiffies
from .machine import Machine
from .mm.constants import (
    HPAGE_PMD_NR, HPAGE_PMD_ORDER, PAGE_SIZE, PG_allocated, PG_anon, PG_head, PG_reserved,
    PG_tail,
)
from .mm.classic_lru import lru_gen_change_state, lru_gen_enabled, lruvec_add_folio, lruvec_del_folio
from .mm.constants import LRU_GEN_CORE
from .mm.filemap import File
from .mm.kswapd import Kswapd, wakeup_kswapd
from .mm.swap import SwapDevice, swap_cache_release
from .mm.lru_gen import Lruvec, lru_gen_add_folio, lru_gen_del_folio
from .mm.lru_index import lru_index_note
from .mm.memcg import MemcgTree
from .mm.memcontrol import mem_cgroup_uncharge
from .mm.physmem import BLOCK, PhysMem
from .mm.process import MM
from .mm.debugfs import Debugfs
from .mm.fault_kernels import is_zero_pfn
from .mm.sysfs import Sysfs
from .mm.vmscan import LruGenMmList, lru_gen_add_mm, lru_gen_del_mm
from .mm.vmstat import Vmstat


@njit(cache=True, nogil=True)
def _zero_pfn_mask(pfns, zero_pfn, huge_zero_pfn):
    """Kernel.is_zero_pfn_reference's three compares and two ORs in one pass."""
    out = np.empty(pfns.size, np.bool_)
    for i in range(pfns.size):
        out[i] = is_zero_pfn(pfns[i], zero_pfn, huge_zero_pfn)
    return out


@njit(cache=True, nogil=True)
def _count_used_pages(flags, order, block_free, a, b, block, state_mask, allocated, anon_bit):
    """Over the pfns [a, b) (whole blocks) of the blocks with an allocated page: the pages
    allocated and not reserved, the anon ones among them, and the anon ones in a large folio
    (node_pages_reference's masks, counted)."""
    used = anon = thp = 0
    for blk in range(a // block, b // block):
        if block_free[blk] >= block:
            continue
        for p in range(blk * block, (blk + 1) * block):
            f = flags[p]
            if (f & state_mask) == allocated:
                used += 1
                if f & anon_bit:
                    anon += 1
                    if order[p] > 0:
                        thp += 1
    return used, anon, thp


class Kernel:
    """A booted kernel on ``machine``.

    ``faithful_quirks`` reproduces the posted patches' quirks (mglru-spec §6.5);
    ``memcg=False`` models cgroup_disable=memory; ``debug`` runs ``check()`` after every
    operation (the test suite turns it on).
    """

    def __init__(self, machine: Machine, seed: int = 0, *, faithful_quirks: bool = True,
                 memcg: bool = True, debug: bool = False):
        if not isinstance(machine, Machine):
            raise ConfigError(f"expected a Machine, got {type(machine).__name__}", field="machine")
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) \
                or seed < 0:
            raise ConfigError(f"expected an integer >= 0, got {seed!r}", field="seed")
        self.machine, self.seed = machine, int(seed)
        self.faithful_quirks, self.debug = bool(faithful_quirks), bool(debug)
        self.fast_walk = True  # False: the sequential walk only (the fast path's reference)
        self.rng = np.random.default_rng(self.seed)
        self.clock_ns = 0
        self.pm = PhysMem(machine)
        self.vmstat = Vmstat(machine.nr_nodes)
        self.vmstat._state = self._fill_state_counters
        self.sysfs = Sysfs(machine.nr_nodes)
        self.debugfs = Debugfs(self)
        self.memcgs = MemcgTree(enabled=memcg)
        self._lruvecs: dict[tuple[int, int], Lruvec] = {}
        self._mm_lists: dict[int, LruGenMmList] = {}
        self._add_lruvecs(self.memcgs.root)
        self.mms: dict[int, MM] = {}
        self.files: dict[int, File] = {}
        self._next_mm_id = 1
        self.kswapd = [Kswapd(nid) for nid in range(machine.nr_nodes)]
        self.swap = SwapDevice(0)        # no swap until swapon()
        self._next_content = 1           # content tags handed out so far (0 = none)
        # tierscan's ping-pong window: a promotion this soon after a demotion is counted in
        # tierscan_promote_pingpong (a tierscan definition, not a kernel one)
        self.pingpong_window_ns = 10_000_000_000
        self.numa_hint_fault_hook = None  # set by NUMA balancing: fn(mm, pfns, writes, cpu_nid)
        # Set by the engine above mm/: the rate model (access_source) draws young bits lazily
        # when the walk, the rmap or mm.young() look at entries, and the time of the hint fault
        # of each page made PROT_NONE; remap hooks hear of every page that changes node;
        # accounting is charged for migrations (CPU and TLB shootdowns).
        self.access_source = None
        self.remap_hooks: list = []
        # unmap hooks hear of pages of an mm that left memory (swapped out, or a page-cache
        # page dropped): fn(mm, page_slots, src_nids); the rate model arms their refault.
        self.unmap_hooks: list = []
        self.accounting = None
        # The zero page and the huge zero page are reserved frames on node 0, as in the kernel.
        self.zero_pfn = 0
        self.huge_zero_pfn = HPAGE_PMD_NR
        self.pm.reserve(np.array([self.zero_pfn]), 0)
        self.pm.reserve(np.array([self.huge_zero_pfn]), HPAGE_PMD_ORDER)
        self.sysfs.on_change("vm/watermark_scale_factor", self._setup_per_zone_wmarks)
        self.sysfs.on_change("lru_gen/enabled",
                             lambda v: lru_gen_change_state(self, bool(v & LRU_GEN_CORE)))

    def _setup_per_zone_wmarks(self, _value=None) -> None:
        """setup_per_zone_wmarks() again after vm.watermark_scale_factor changed."""
        self.pm.watermarks = self.pm.setup_watermarks(
            int(self.sysfs["vm/watermark_scale_factor"]))

    def swapon(self, size: int, read_ns: float = 80_000.0, write_ns: float = 2_000.0) -> None:
        """swapon(): give the kernel a swap area of ``size`` bytes (replacing an empty one)."""
        if self.swap.nr_slots and self.swap.nr_free() != self.swap.nr_slots:
            raise ConfigError("swapon: the current swap area is in use", field="swap")
        self.swap = SwapDevice(size, read_ns, write_ns)

    def new_content_tags(self, count: int) -> np.ndarray:
        """Fresh content tags: the identity of data a page comes to hold (a new anon page,
        or a file page read from storage for the first time)."""
        tags = np.arange(self._next_content, self._next_content + count, dtype=np.int64)
        self._next_content += count
        return tags.astype(np.uint32)

    # ---- time -------------------------------------------------------------------------------
    @property
    def jiffies(self) -> int:
        """The tick count, from INITIAL_JIFFIES (2^32 - 300 s at boot, as the kernel starts:
        include/linux/jiffies.h); compare with tierscan.jiffies.time_after() and friends."""
        return clock_to_jiffies(self.clock_ns)

    # ---- processes, files, memcgs --------------------------------------------------------
    @property
    def root_memcg(self):
        return self.memcgs.root

    def memcg_create(self, name: str, parent=None):
        """mkdir in the cgroup tree: a new memcg with a lruvec on every node."""
        memcg = self.memcgs.create(name, parent)
        self._add_lruvecs(memcg)
        return memcg

    def _add_lruvecs(self, memcg) -> None:
        for nid in range(self.machine.nr_nodes):
            self._lruvecs[(memcg.id, nid)] = Lruvec(self, memcg, nid)
        self._mm_lists[memcg.id] = LruGenMmList()

    def mm_list(self, memcg) -> LruGenMmList:
        """get_mm_list(): the memcg's FIFO of mm_structs."""
        return self._mm_lists[memcg.id]

    def lruvecs(self):
        """Every lruvec, memcgs in mem_cgroup_iter() order, nodes ascending."""
        for memcg in self.memcgs:
            for nid in range(self.machine.nr_nodes):
                yield self._lruvecs[(memcg.id, nid)]

    def lruvec(self, memcg, nid: int) -> Lruvec:
        key = (memcg.id, int(nid))
        if key not in self._lruvecs:
            raise ConfigError(f"no lruvec for memcg {memcg.id} node {nid}", field="lruvec")
        return self._lruvecs[key]

    def spawn(self, name: str, memcg=None, cpu_node: int = 0) -> MM:
        """fork+exec of a process whose threads run on ``cpu_node``; returns its mm."""
        memcg = memcg or self.root_memcg
        if memcg.id not in self.memcgs.by_id or self.memcgs.by_id[memcg.id] is not memcg:
            raise ConfigError(f"memcg {memcg!r} does not belong to this kernel", field="memcg")
        if cpu_node not in self.machine.cpu_nodes:
            raise ConfigError(f"node {cpu_node} has no CPUs (CPU nodes: "
                              f"{list(self.machine.cpu_nodes)})", field="cpu_node")
        mm = MM(self, self._next_mm_id, name, memcg, int(cpu_node))
        self._next_mm_id += 1
        self.mms[mm.id] = mm
        lru_gen_add_mm(self, mm)
        return mm

    def remove_mm(self, mm: MM) -> None:
        lru_gen_del_mm(self, mm)
        self.mms.pop(mm.id, None)

    def open_file(self, name: str, size: int, shmem: bool = False) -> File:
        """A file of ``size`` bytes (rounded up to pages) whose page cache mms can share."""
        if int(size) <= 0:
            raise ConfigError(f"file size must be positive, got {size}", field="file.size")
        fid = len(self.files) + 1
        f = File(fid, name, -(-int(size) // PAGE_SIZE), shmem=shmem)
        self.files[fid] = f
        return f

    # ---- folio lifecycle --------------------------------------------------------------------
    def _by_lruvec(self, heads: np.ndarray):
        """Group folios by the lruvec (memcg, node) they belong to."""
        heads = np.asarray(heads, dtype=np.int64)
        key = self.pm.memcg[heads].astype(np.int64) * 1024 + self.pm.node_of(heads)
        if key.size and key.min() == key.max():     # one lruvec (a fault, a migration)
            k = int(key[0])
            yield self._lruvecs[(k // 1024, k % 1024)], heads
            return
        for k in unique(key):
            yield self._lruvecs[(int(k) // 1024, int(k) % 1024)], heads[key == k]

    def lru_add(self, heads) -> None:
        """folio_add_lru(): onto the MGLRU generations, or the classic lists when
        lru_gen/enabled has LRU_GEN_CORE clear (mm/classic_lru.py)."""
        add = lru_gen_add_folio if lru_gen_enabled(self) else lruvec_add_folio
        for lv, sub in self._by_lruvec(heads):
            add(lv, sub)

    def lru_del(self, heads) -> None:
        delete = lru_gen_del_folio if lru_gen_enabled(self) else lruvec_del_folio
        for lv, sub in self._by_lruvec(heads):
            delete(lv, sub)

    def free_pages(self, heads) -> None:
        """Return folios to the allocator (they must be off the LRU and unmapped)."""
        heads = np.asarray(heads, dtype=np.int64)
        if heads.size:
            swap_cache_release(self, heads)
            self.vmstat.count("pgfree", self.pm.node_of(heads), self.pm.folio_nr_pages(heads))
            mem_cgroup_uncharge(self, heads)
            self.pm.free(heads)

    def release_unmapped(self, pfns) -> None:
        """After a zap: free anon folios that lost their last mapping; a THP that is still
        partly mapped is split and its unmapped pages freed (the deferred split, done now)."""
        pm = self.pm
        heads = unique(pm.folio_head(np.asarray(pfns, dtype=np.int64)))
        heads = heads[(pm.flags[heads] & PG_anon) != 0]
        if heads.size == 0:
            return
        nr = pm.folio_nr_pages(heads)
        mapped = np.add.reduceat(pm.mapcount[pm.folio_pfns(heads)].astype(np.int64),
                                 np.concatenate([[0], np.cumsum(nr)[:-1]]))
        partial = heads[(mapped > 0) & (nr > 1)]
        if partial.size:
            sub = pm.folio_pfns(partial)  # order-0 pages once split
            self.split_folios(partial)
            heads = np.concatenate([heads[mapped == 0], sub[pm.mapcount[sub] == 0]])
        else:
            heads = heads[mapped == 0]
        self.lru_del(heads)
        self.free_pages(heads)

    def split_folios(self, heads) -> None:
        """split_huge_page(): every page of each large folio becomes an order-0 folio with the
        head's flags, generation and list position (lru_add_split_folio)."""
        pm = self.pm
        heads = np.asarray(heads, dtype=np.int64)
        pfns = pm.folio_pfns(heads)
        head_of = np.repeat(heads, pm.folio_nr_pages(heads))
        for name in ("flags", "lru_gen_refs", "list_gen", "lru_stamp"):
            arr = getattr(pm, name)
            arr[pfns] = arr[head_of]
        pm.flags[pfns] &= ~(PG_head | PG_tail)
        pm.order[pfns] = 0
        lru_index_note(pm, pfns)             # the pages join the lists at the head's place
        self.vmstat.count("thp_split_page", pm.node_of(heads), 1)

    def folio_mapped_shared(self, heads) -> np.ndarray:
        """folio_maybe_mapped_shared(): some page of the folio has more than one mapping."""
        pm = self.pm
        heads = np.asarray(heads, dtype=np.int64)
        nr = pm.folio_nr_pages(heads)
        if heads.size == 0:
            return np.zeros(0, bool)
        most = np.maximum.reduceat(pm.mapcount[pm.folio_pfns(heads)],
                                   np.concatenate([[0], np.cumsum(nr)[:-1]]))
        return most > 1

    def wakeup_kswapd(self, nid: int, order: int = 0) -> None:
        """wakeup_kswapd() on node ``nid`` (mm/kswapd.py)."""
        wakeup_kswapd(self, nid, order)

    def notify_unmap(self, mm, page_slots, src_nids) -> None:
        """Tell the unmap hooks that these pages of ``mm`` left memory."""
        for hook in self.unmap_hooks:
            hook(mm, page_slots, src_nids)

    # ---- queries ------------------------------------------------------------------------------
    def is_zero_pfn(self, pfns) -> np.ndarray:
        """is_zero_pfn() or a page of the huge zero page. One compiled pass for int64 pfns
        (the rate model asks it of every page of a group at a phase change: 16 Mi in Mode 3,
        16 vs 60 ms); is_zero_pfn_reference is its numpy form, used for other types."""
        pfns = np.asarray(pfns)
        if pfns.dtype == np.int64 and pfns.ndim == 1:
            return _zero_pfn_mask(pfns, self.zero_pfn, self.huge_zero_pfn)
        return self.is_zero_pfn_reference(pfns)

    def is_zero_pfn_reference(self, pfns) -> np.ndarray:
        pfns = np.asarray(pfns)
        return (pfns == self.zero_pfn) | ((pfns >= self.huge_zero_pfn) &
                                          (pfns < self.huge_zero_pfn + HPAGE_PMD_NR))

    def materialize_ptes(self, mm, slots) -> None:
        """Let the access model set the young bits it owes before someone reads these PTEs."""
        if self.access_source is not None:
            self.access_source.materialize_ptes(mm, slots)

    def materialize_pmds(self, mm, pmd_slots) -> None:
        if self.access_source is not None:
            self.access_source.materialize_pmds(mm, pmd_slots)

    def node_of(self, pfns) -> np.ndarray:
        """Node of each pfn; -1 for -1 ("not present")."""
        return self.pm.node_of(pfns)

    def rmap(self, pfn: int):
        """[(mm, address), ...] for every mapping of ``pfn``."""
        from .mm.rmap import folio_mappers

        return folio_mappers(self, int(pfn))

    def node_pages(self) -> dict[str, np.ndarray]:
        """Per-node page counts: total, free, anon, file (and THP-backed anon).

        Only 2 MiB blocks the allocator has handed pages out of (block_free < BLOCK) are read,
        in one compiled pass a node (_count_used_pages; Mode 3's 16 Mi pages: ~10 numpy
        passes before): a run uses a few thousand of a large machine's blocks, and this runs
        at every metrics sample. ``node_pages_reference`` counts over every pfn (the same
        counts)."""
        pm = self.pm
        anon, used, thp = (np.zeros(pm.nr_nodes, dtype=np.int64) for _ in range(3))
        for nid in range(pm.nr_nodes):
            a, b = pm.node_range(nid)
            used[nid], anon[nid], thp[nid] = _count_used_pages(
                pm.flags, pm.order, pm.block_free, a, b, BLOCK, int(PG_allocated | PG_reserved),
                int(PG_allocated), int(PG_anon))
        return {"total": pm.node_present.copy(), "free": pm.node_free.copy(), "anon": anon,
                "file": used - anon, "anon_thp": thp}

    def node_pages_reference(self) -> dict[str, np.ndarray]:
        """node_pages() by reading every pfn of every node: the fast path's reference."""
        pm = self.pm
        bounds = list(zip(pm.node_start[:-1].tolist(), pm.node_start[1:].tolist()))

        def per_node(mask):            # nodes are contiguous pfn ranges
            return np.array([np.count_nonzero(mask[a:b]) for a, b in bounds], dtype=np.int64)

        used = (pm.flags & (PG_allocated | PG_reserved)) == PG_allocated
        anon = used & ((pm.flags & PG_anon) != 0)
        out = {"total": pm.node_present.copy(), "free": pm.node_free.copy(),
               "anon": per_node(anon)}
        out["file"] = per_node(used) - out["anon"]
        out["anon_thp"] = per_node(anon & (pm.order > 0))
        return out

    def _fill_state_counters(self, c) -> None:
        pages = self.node_pages()
        c["nr_free_pages"][:] = pages["free"]
        c["nr_anon_pages"][:] = pages["anon"]
        c["nr_file_pages"][:] = pages["file"]
        c["nr_anon_transparent_hugepages"][:] = pages["anon_thp"] // HPAGE_PMD_NR

    def numastat(self) -> str:
        return self.vmstat.numastat()

    # ---- invariants ---------------------------------------------------------------------------
    def check(self) -> None:
        """Raise InvariantError if any model invariant is broken (DESIGN §9)."""
        from .mm.check import check_kernel

        check_kernel(self)

    def after_op(self) -> None:
        if self.debug:
            self.check()
