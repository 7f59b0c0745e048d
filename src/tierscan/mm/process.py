"""Processes: mm_struct, VMAs and the system calls that shape them (mm/mmap.c, mm/mempolicy.c,
mm/madvise.c, mm/migrate.c's move_pages).

Every public method validates its whole input before it changes anything, so a bad call leaves
the model as it was.
"""

from __future__ import annotations

import errno

import numpy as np

from .. import prefetch
from ..arrays import unique
from ..errors import ConfigError, OutOfMemory, SegmentationFault
from .constants import (
    HPAGE_PMD_NR, MMAP_BASE, PAGE_SHIFT, PAGE_SIZE, PG_anon, PMD_SIZE, PTRS_PER_PTE,
    _PAGE_ACCESSED,
)
from .memory import handle_accesses, split_huge_pmds, zap_slots
from contextlib import contextmanager

from .mempolicy import (
    DEFAULT_POLICY, INTERLEAVE_MODES, MemPolicy, interleave_index, interleave_targets,
    policy_nodes,
)
from .mmu import find_vmas, rss_slots, translate_addrs
from .pagetable import PageTable

# vm_flags bits, with the kernel's values (include/linux/mm.h).
VM_READ, VM_WRITE, VM_EXEC, VM_SHARED = 0x1, 0x2, 0x4, 0x8
VM_PFNMAP, VM_LOCKED, VM_IO = 0x400, 0x2000, 0x4000
VM_SEQ_READ, VM_RAND_READ, VM_DONTEXPAND = 0x8000, 0x10000, 0x40000
VM_HUGETLB, VM_MIXEDMAP = 0x400000, 0x10000000
VM_HUGEPAGE, VM_NOHUGEPAGE = 0x20000000, 0x40000000

PROTS = {"rw": VM_READ | VM_WRITE, "r": VM_READ, "none": 0}
TASK_SIZE = 1 << 47  # x86-64 4-level user address space (128 TiB)
MADVICE = {"hugepage", "nohugepage", "sequential", "random", "normal"}
POPULATE_CHUNK = 1 << 30  # bytes MAP_POPULATE faults in at a time (a multiple of PMD_SIZE)


def _addresses(addrs, field: str) -> np.ndarray:
    """User addresses as uint64; a negative or non-integer one is rejected naming it."""
    raw = np.atleast_1d(np.asarray(addrs))
    if raw.dtype.kind not in "iu":
        raise ConfigError(f"expected integer addresses, got {raw.dtype}", field=field)
    if raw.dtype.kind == "i" and raw.size and raw.min() < 0:
        raise SegmentationFault(int(raw.min()) & 0xFFFF_FFFF_FFFF_FFFF, "negative address")
    return raw.astype(np.uint64)


def _per_address(values, n: int, dtype, field: str) -> np.ndarray:
    """A scalar or one value per address."""
    v = np.asarray(values, dtype=dtype)
    if v.ndim and v.shape != (n,):
        raise ConfigError(f"expected one value per address ({n}), got {v.shape[0]}", field=field)
    return np.broadcast_to(v, (n,))


def _pos_int(value, field: str) -> int:
    # An int (or numpy integer), not a bool or a float: mmap(4096.5) and mmap(True) are
    # refused, as C's size_t would never see them.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"expected an integer, got {value!r}", field=field)
    v = int(value)
    if v <= 0:
        raise ConfigError(f"must be positive, got {v}", field=field)
    return v


class VMA:
    """vm_area_struct: [start, end) with its flags, backing file and memory policy."""

    def __init__(self, mm, start, end, flags, file=None, pgoff=0, policy=DEFAULT_POLICY):
        self.mm, self.start, self.end, self.flags = mm, start, end, flags
        self.file, self.pgoff, self.policy = file, pgoff, policy

    @property
    def kind(self) -> str:
        return "anon" if self.file is None or self.file.shmem else "file"

    @property
    def shared(self) -> bool:
        return bool(self.flags & VM_SHARED)

    @property
    def start_slot(self) -> int:
        return PageTable.slot(self.start)

    @property
    def end_slot(self) -> int:
        return PageTable.slot(self.end)

    @property
    def nr_pages(self) -> int:
        return (self.end - self.start) >> PAGE_SHIFT

    def thp_eligible(self, kernel) -> bool:
        """Private anonymous memory under THP "always", or "madvise" with MADV_HUGEPAGE."""
        if self.file is not None or self.flags & VM_NOHUGEPAGE:
            return False
        mode = kernel.sysfs["transparent_hugepage/enabled"]
        return mode == "always" or (mode == "madvise" and bool(self.flags & VM_HUGEPAGE))

    def copy(self, start, end) -> "VMA":
        pgoff = self.pgoff + ((start - self.start) >> PAGE_SHIFT)
        return VMA(self.mm, start, end, self.flags, self.file, pgoff, self.policy)

    def __repr__(self) -> str:
        return (f"VMA({self.start:#x}-{self.end:#x}, {self.kind}, "
                f"{'shared' if self.shared else 'private'}, {self.policy.mode})")


class MM:
    """mm_struct: an address space, its page tables and its VMAs."""

    def __init__(self, kernel, mm_id: int, name: str, memcg, cpu_node: int):
        self.kernel, self.id, self.name, self.memcg = kernel, mm_id, name, memcg
        self.cpu_node = cpu_node
        # the running task's policy (set_mempolicy); several thread groups of one mm each
        # have their own and swap it in while they run (``as_task``)
        self.task_policy = DEFAULT_POLICY
        self.pt = PageTable()
        self.vmas: list[VMA] = []
        self._starts = np.empty(0, np.uint64)
        self._ends = np.empty(0, np.uint64)
        self.lru_gen_bitmap = ~0  # lru_gen_use_mm(): "used since the last walk", all nodes

    def __repr__(self) -> str:
        return f"MM({self.id}, {self.name!r}, memcg={self.memcg.path}, cpu_node={self.cpu_node})"

    # ---- VMA bookkeeping ------------------------------------------------------------------
    def _reindex(self) -> None:
        self.vmas.sort(key=lambda v: v.start)
        self._starts = np.array([v.start for v in self.vmas], dtype=np.uint64)
        self._ends = np.array([v.end for v in self.vmas], dtype=np.uint64)
        self._vflags = np.array([v.flags for v in self.vmas], dtype=np.int64)

    def find_vma_index(self, addrs: np.ndarray) -> np.ndarray:
        """Index into self.vmas of the VMA holding each address, -1 where none does."""
        return find_vmas(np.ascontiguousarray(addrs, dtype=np.uint64), self._starts, self._ends)

    def find_vma(self, addr: int) -> VMA | None:
        idx = self.find_vma_index(np.array([addr], dtype=np.uint64))[0]
        return self.vmas[idx] if idx >= 0 else None

    def get_unmapped_area(self, length: int) -> int:
        """First 2 MiB-aligned gap from MMAP_BASE up that fits ``length`` (bottom-up layout)."""
        addr = MMAP_BASE
        for vma in self.vmas:
            if addr + length <= vma.start:
                break
            addr = max(addr, -(-vma.end // PMD_SIZE) * PMD_SIZE)
        return addr

    def _split_at(self, addr: int) -> None:
        """__split_vma(): make ``addr`` a VMA boundary, splitting a THP mapping astride it."""
        vma = self.find_vma(addr)
        if vma is None or vma.start == addr:
            return
        if addr % PMD_SIZE:
            split_huge_pmds(self, np.array([PageTable.slot(addr) >> 9]))
        tail = vma.copy(addr, vma.end)
        vma.end = addr
        self.vmas.append(tail)
        if tail.file is not None:
            tail.file.i_mmap.append(tail)
        self._reindex()

    def _range(self, addr, length, what: str) -> tuple[int, int]:
        addr, length = int(addr), _pos_int(length, f"{what}.length")
        if not 0 <= addr < TASK_SIZE:
            raise ConfigError(f"address {addr:#x} is outside user space (EINVAL)",
                              field=f"{what}.addr")
        if addr % PAGE_SIZE:
            raise ConfigError(f"address {addr:#x} is not page aligned (EINVAL)", field=f"{what}.addr")
        return addr, addr + (-(-length // PAGE_SIZE)) * PAGE_SIZE

    def _vmas_in(self, start: int, end: int, what: str) -> list[VMA]:
        """Split at the range edges and return the VMAs inside; the range must be fully mapped."""
        covered = sum(min(v.end, end) - max(v.start, start) for v in self.vmas
                      if v.start < end and v.end > start)
        if covered != end - start:
            raise ConfigError(f"range {start:#x}-{end:#x} is not fully mapped (ENOMEM)", field=what)
        self._split_at(start)
        self._split_at(end)
        return [v for v in self.vmas if start <= v.start and v.end <= end]

    # ---- system calls ---------------------------------------------------------------------
    def mmap(self, length, kind="anon", *, shared=False, thp=False, populate=False,
             policy=None, nodes=None, file=None, offset=0, prot="rw",
             numa_balancing=False) -> VMA:
        """mmap(2), then mbind(2) with ``policy``/``nodes``/``numa_balancing`` before any page
        is touched (None: no VMA policy, the task's applies). ``kind`` is "anon" or "file"; a
        file mapping uses ``file`` (from Kernel.open_file) or a new file of ``length`` bytes.
        ``thp`` is MADV_HUGEPAGE."""
        k = self.kernel
        self._alive("mmap")
        length = _pos_int(length, "mmap.length")
        length = -(-length // PAGE_SIZE) * PAGE_SIZE
        if kind not in ("anon", "file"):
            raise ConfigError(f"unknown kind {kind!r} (expected 'anon' or 'file')", field="mmap.kind")
        if prot not in PROTS:
            raise ConfigError(f"unknown prot {prot!r} (expected one of: {', '.join(PROTS)})",
                              field="mmap.prot")
        pol = MemPolicy.make(policy, nodes, k.machine.nr_nodes, numa_balancing,
                             field="mmap.policy")
        if kind == "anon" and file is not None:
            raise ConfigError("an anonymous mapping takes no file", field="mmap.file")
        if offset % PAGE_SIZE or offset < 0:
            raise ConfigError(f"offset {offset} is not a non-negative multiple of {PAGE_SIZE}",
                              field="mmap.offset")
        if kind == "file" and file is None:
            file = k.open_file(f"{self.name}-{len(k.files)}", offset + length)
        elif kind == "anon" and shared:
            file = k.open_file(f"shmem-{self.name}-{len(k.files)}", length, shmem=True)
        pgoff = offset >> PAGE_SHIFT
        if file is not None and pgoff + (length >> PAGE_SHIFT) > file.size_pages:
            raise ConfigError(f"mapping runs past the end of {file.name!r} "
                              f"({file.size} bytes)", field="mmap.length")
        flags = PROTS[prot] | (VM_SHARED if shared else 0) | (VM_HUGEPAGE if thp else 0)
        start = self.get_unmapped_area(length)
        if start + length > TASK_SIZE:
            raise ConfigError(f"no room for {length} bytes below TASK_SIZE (ENOMEM)",
                              field="mmap.length")
        vma = VMA(self, start, start + length, flags, file, pgoff, pol)
        self.pt.ensure(vma.end_slot)
        self.vmas.append(vma)
        if file is not None:
            file.i_mmap.append(vma)
        self._reindex()
        if populate and prot != "none":
            try:
                self._populate(vma)
                from .memcontrol import mem_cgroup_handle_over_high

                mem_cgroup_handle_over_high(k)       # the return to user space
            except OutOfMemory:
                self.munmap(vma.start, length)  # the caller never gets the VMA: undo it
                raise
        k.after_op()
        return vma

    def _populate(self, vma: VMA) -> None:
        """MAP_POPULATE (populate_vma_page_range): write faults on private writable mappings,
        read faults otherwise; touches every page once, in address order."""
        write = bool(vma.flags & VM_WRITE) and not vma.shared
        # In pieces of POPULATE_CHUNK bytes (at aligned addresses, so no PMD is split between
        # two), so the fault path's temporaries stay a piece's size instead of ~200 bytes a
        # page. The pieces fault what the whole would in the same order only where one fault
        # phase allocates everything: not for stores to a private file mapping, where the
        # whole range's page-cache reads come before all its copy-on-write pages.
        edges = [vma.start, vma.end]
        if vma.file is None or not write:
            step = POPULATE_CHUNK
            edges[1:1] = range(-(-vma.start // step) * step, vma.end, step)
        for lo, hi in zip(edges[:-1], edges[1:]):
            if hi > lo:
                addrs = np.arange(lo, hi, PAGE_SIZE, dtype=np.uint64)
                self._access(addrs, np.full(addrs.size, write), self.cpu_node,
                             count_access=False)

    def munmap(self, addr, length) -> None:
        """munmap(2): unmap the range; anon folios with no mappings left are freed."""
        start, end = self._range(addr, length, "munmap")
        if not any(v.start < end and v.end > start for v in self.vmas):
            return                # nothing mapped there: Linux returns 0 (do_vmi_munmap)
        self._split_at(start)
        self._split_at(end)
        doomed = [v for v in self.vmas if start <= v.start and v.end <= end]
        lost = [zap_slots(self, v.start_slot, v.end_slot) for v in doomed]
        for v in doomed:
            self.vmas.remove(v)
            if v.file is not None:
                v.file.i_mmap.remove(v)
        self._reindex()
        # only where VMAs went: page-table slots start at mmap_base, the range may not
        self._free_pgtables(min(v.start for v in doomed), max(v.end for v in doomed))
        if lost:
            self.kernel.release_unmapped(np.concatenate(lost))
        self.kernel.after_op()

    def _free_pgtables(self, start: int, end: int) -> None:
        """free_pgtables(): drop PMD entries no VMA covers any more."""
        p0 = PageTable.slot(start) >> 9
        p1 = min(-(-PageTable.slot(end) // PTRS_PER_PTE), self.pt.pmd.size)
        pmds = np.arange(p0, p1)
        lo = PageTable.addr(pmds << 9)
        hi = lo + np.uint64(PMD_SIZE)
        still = np.zeros(pmds.size, bool)
        for v in self.vmas:
            still |= (np.uint64(v.start) < hi) & (np.uint64(v.end) > lo)
        self.pt.pmd[pmds[~still]] = 0
        self.pt.free_upper_tables(
            p0 >> 9, -(-p1 // PTRS_PER_PTE),
            lambda a, b: any(v.start < b and v.end > a for v in self.vmas))

    def _alive(self, what: str) -> None:
        """A system call on an mm that has exited (mm.exit()) is a caller's error."""
        if self.kernel.mms.get(self.id) is not self:
            raise ConfigError(f"mm {self.id} ({self.name!r}) has exited", field=what)

    def exit(self) -> None:
        """exit_mmap(): unmap everything and leave the kernel's lists."""
        for v in list(self.vmas):
            self.munmap(v.start, v.end - v.start)
        self.kernel.remove_mm(self)

    def mbind(self, addr, length, policy, nodes=None, *, move=False,
              numa_balancing=False) -> None:
        """mbind(2): the VMA policy of the range, which overrides the task's (set_mempolicy);
        "default" removes it. ``move`` is MPOL_MF_MOVE: migrate this mm's exclusively mapped
        pages that the new policy does not allow to its preferred node (interleave: to each
        page's interleave node). ``numa_balancing`` is MPOL_F_NUMA_BALANCING."""
        start, end = self._range(addr, length, "mbind")
        pol = MemPolicy.make(policy, nodes, self.kernel.machine.nr_nodes, numa_balancing,
                             field="mbind.policy")
        vmas = self._vmas_in(start, end, "mbind")
        for v in vmas:
            v.policy = pol
        if move and pol.nodes:
            for v in vmas:
                self._mbind_move(v, pol)
        self.kernel.after_op()

    def _mbind_move(self, vma, pol) -> None:
        """MPOL_MF_MOVE for one VMA: pages outside the policy's nodes go to its first node
        (interleave: each page's interleave target)."""
        addrs = np.arange(vma.start, vma.end, PAGE_SIZE, dtype=np.uint64)
        pfns = self.translate(addrs)
        nids = self.kernel.node_of(pfns)
        bad = (pfns >= 0) & ~self.kernel.is_zero_pfn(pfns) & ~np.isin(nids, pol.nodes)
        if pol.mode in INTERLEAVE_MODES:
            slots = PageTable.slot(addrs[bad])
            target = interleave_targets(pol, interleave_index(vma, slots), self.kernel.sysfs)
        else:
            target = np.full(int(bad.sum()), policy_nodes(
                pol, self.kernel.machine.distance, self.cpu_node)[0])
        self._move(addrs[bad], target)

    def set_mempolicy(self, policy, nodes=None, *, numa_balancing=False) -> None:
        """set_mempolicy(2) for the mm's running task: the policy its faults use in every VMA
        without a policy of its own ("default" restores the system default)."""
        self.task_policy = MemPolicy.make(policy, nodes, self.kernel.machine.nr_nodes,
                                          numa_balancing, field="set_mempolicy.policy")

    @contextmanager
    def as_task(self, cpu_node: int, policy: MemPolicy):
        """Run the body as a task of this mm on ``cpu_node`` with task policy ``policy`` (one
        thread group of several sharing the mm: current->mempolicy and its CPU)."""
        saved = self.cpu_node, self.task_policy
        self.cpu_node, self.task_policy = cpu_node, policy
        try:
            yield self
        finally:
            self.cpu_node, self.task_policy = saved

    def madvise(self, addr, length, advice: str) -> None:
        """madvise(2) for MADV_HUGEPAGE/NOHUGEPAGE/SEQUENTIAL/RANDOM/NORMAL (flags only)."""
        if advice not in MADVICE:
            raise ConfigError(f"unknown advice {advice!r} (expected one of: "
                              f"{', '.join(sorted(MADVICE))})", field="madvise.advice")
        start, end = self._range(addr, length, "madvise")
        set_bits, clear_bits = {
            "hugepage": (VM_HUGEPAGE, VM_NOHUGEPAGE), "nohugepage": (VM_NOHUGEPAGE, VM_HUGEPAGE),
            "sequential": (VM_SEQ_READ, VM_RAND_READ), "random": (VM_RAND_READ, VM_SEQ_READ),
            "normal": (0, VM_SEQ_READ | VM_RAND_READ)}[advice]
        for v in self._vmas_in(start, end, "madvise"):
            v.flags = (v.flags & ~clear_bits) | set_bits
        self._reindex()
        self.kernel.after_op()

    def move_pages(self, addrs, nodes) -> np.ndarray:
        """move_pages(2): migrate the folio behind each address to its node. Returns the status
        array: the node a page is on afterwards, or -errno (EFAULT: no VMA; ENOENT: not present
        or the zero page; EACCES: mapped by more than one mm; ENODEV: bad node; ENOMEM)."""
        addrs = _addresses(addrs, "move_pages.addrs")
        nodes = _per_address(nodes, addrs.size, np.int64, "move_pages.nodes")
        status = self._move(addrs, nodes)
        self.kernel.after_op()
        return status

    def _move(self, addrs, nodes) -> np.ndarray:
        from .migrate import migrate_folios

        k = self.kernel
        status = np.zeros(addrs.size, dtype=np.int64)
        pfns = self.translate(addrs)
        no_vma = self.find_vma_index(addrs) < 0
        status[no_vma] = -errno.EFAULT
        absent = ~no_vma & ((pfns < 0) | k.is_zero_pfn(pfns))
        status[absent] = -errno.ENOENT
        bad_node = ~no_vma & ~absent & ((nodes < 0) | (nodes >= k.machine.nr_nodes))
        status[bad_node] = -errno.ENODEV
        todo = status == 0
        # do_pages_move(): runs of consecutive addresses with one target node, in order; a
        # later run sees the effect of the earlier ones (a THP moved twice ends on the last)
        run_start = np.flatnonzero(np.concatenate([[True], nodes[1:] != nodes[:-1]]))
        for lo, hi in zip(run_start, np.append(run_start[1:], addrs.size)):
            sel = np.zeros(addrs.size, bool)
            sel[lo:hi] = todo[lo:hi]
            if not sel.any():
                continue
            nid = int(nodes[lo])
            pfns = self.translate(addrs[sel])
            heads = k.pm.folio_head(pfns)
            shared = k.folio_mapped_shared(heads)
            idx = np.flatnonzero(sel)
            status[idx[shared]] = -errno.EACCES
            move = ~shared & (k.node_of(pfns) != nid)
            uheads = unique(heads[move])
            ok = migrate_folios(k, uheads, nid)
            failed = move & np.isin(heads, uheads[~ok])
            status[idx[failed]] = -errno.ENOMEM
            status[idx[~shared & ~failed]] = nid
        return status

    # ---- the access path ------------------------------------------------------------------
    def _check_access(self, addrs: np.ndarray, is_write: np.ndarray) -> np.ndarray:
        vidx = self.find_vma_index(addrs)
        bad = np.flatnonzero(vidx < 0)
        if bad.size:
            raise SegmentationFault(int(addrs[bad[0]]))
        rw = VM_READ | VM_WRITE
        if ((self._vflags & rw) != rw).any():  # only then can a permission fail
            vflags = self._vflags[vidx]
            denied = ((vflags & VM_READ) == 0) | (is_write & ((vflags & VM_WRITE) == 0))
            if denied.any():
                i = int(np.flatnonzero(denied)[0])
                raise SegmentationFault(int(addrs[i]), "store to a read-only mapping"
                                        if is_write[i] else "access to a PROT_NONE mapping")
        return vidx

    def access(self, addrs, is_write=False, *, cpu_node: int | None = None) -> np.ndarray:
        """Apply loads/stores in program order: take the faults they need, set the young and
        dirty bits, and return the number of accesses served by each node."""
        addrs = _addresses(addrs, "access.addrs")
        is_write = _per_address(is_write, addrs.size, bool, "access.is_write")
        cpu = self.cpu_node if cpu_node is None else int(cpu_node)
        if cpu not in self.kernel.machine.cpu_nodes:
            raise ConfigError(f"node {cpu} has no CPUs (CPU nodes: "
                              f"{list(self.kernel.machine.cpu_nodes)})", field="access.cpu_node")
        counts = self._access(addrs, is_write, cpu)
        from .memcontrol import mem_cgroup_handle_over_high

        mem_cgroup_handle_over_high(self.kernel)   # the return to user space
        self.kernel.after_op()
        return counts

    def _access(self, addrs, is_write, cpu_nid, count_access=True) -> np.ndarray:
        vidx = self._check_access(addrs, is_write)
        self.lru_gen_bitmap = ~0  # the mm ran: lru_gen_use_mm()
        slots = PageTable.slot(addrs)
        return handle_accesses(self, slots, np.ascontiguousarray(is_write), vidx, cpu_nid)

    def translate(self, addrs) -> np.ndarray:
        """The pfn mapped at each address; -1 where nothing is mapped. The zero page is a real
        reserved pfn (Kernel.zero_pfn), as in the kernel. One compiled pass
        (mmu.translate_addrs); translate_reference is its numpy form."""
        addrs = np.ascontiguousarray(np.atleast_1d(np.asarray(addrs, dtype=np.uint64)))
        return translate_addrs(addrs, self._starts, self._ends, self.pt.pte, self.pt.pmd,
                               prefetch.ahead)

    def translate_reference(self, addrs) -> np.ndarray:
        """MM.translate in numpy: find_vma_index, then PageTable.translate_slots."""
        addrs = np.atleast_1d(np.asarray(addrs, dtype=np.uint64))
        pfns = np.full(addrs.size, -1, dtype=np.int64)
        inside = self.find_vma_index(addrs) >= 0
        pfns[inside] = self.pt.translate_slots(PageTable.slot(addrs[inside]))
        return pfns

    def young(self, addrs) -> np.ndarray:
        """The accessed bit of the entry mapping each address (the PMD leaf for a THP)."""
        addrs = np.atleast_1d(np.asarray(addrs, dtype=np.uint64))
        out = np.zeros(addrs.size, bool)
        present = self.translate(addrs) >= 0
        slots = PageTable.slot(addrs[present])
        pmds = slots >> 9
        self.kernel.materialize_pmds(self, unique(pmds))
        self.kernel.materialize_ptes(self, slots[~self.pt.pmd_is_leaf(pmds)])
        leaf = self.pt.pmd_is_leaf(pmds)
        entry = np.where(leaf, self.pt.pmd[pmds], self.pt.pte[slots])
        out[present] = (entry & _PAGE_ACCESSED) != 0
        return out

    def rss(self) -> dict[str, int]:
        """Resident pages of this mm by kind (anon and file), like /proc/PID/status. One
        compiled pass per VMA (mmu.rss_slots); rss_reference is its numpy form."""
        k, pt = self.kernel, self.pt
        out = {"anon": 0, "file": 0}
        anon_bit = np.asarray(PG_anon, k.pm.flags.dtype)
        for v in self.vmas:
            anon, other = rss_slots(int(v.start_slot), int(v.end_slot), pt.pte, pt.pmd,
                                    k.pm.flags, anon_bit, int(k.zero_pfn),
                                    int(k.huge_zero_pfn), HPAGE_PMD_NR)
            out["anon"] += int(anon)
            out["file"] += int(other)
        return out

    def rss_reference(self) -> dict[str, int]:
        """MM.rss in numpy: every slot of every VMA translated, then counted."""
        k = self.kernel
        out = {"anon": 0, "file": 0}
        for v in self.vmas:
            pfns = self.pt.translate_slots(np.arange(v.start_slot, v.end_slot))
            real = (pfns >= 0) & ~k.is_zero_pfn(pfns)
            anon = (k.pm.flags[pfns[real]] & PG_anon) != 0
            out["anon"] += int(anon.sum())
            out["file"] += int((~anon).sum())
        return out

