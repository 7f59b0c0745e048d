"""Generated sequences of mmap / munmap / access / move_pages / mbind / madvise against a shadow
model of what must hold, on a debug kernel (Kernel.check() runs after every operation).

The shadow keeps, independently of tierscan, the mapped ranges of each mm, which pages were
written or read, and which file pages were written through a shared mapping. After every step:

- the model maps exactly the shadow's ranges;
- every page a private mapping wrote is backed by its own anon page (never the zero page), with
  the identity (mm, slot) of its address; every page read is present;
- every page written through a shared mapping is the page-cache page, marked dirty;
- pages are conserved per node: free + pages reachable from page tables and page caches +
  reserved zero pages == the node's pages; and pgalloc_* - pgfree == pages in use.

Failed calls (bad ranges, segfaults) must leave the whole model unchanged.

The machine is the laptop scaled by 1/64 (16 MiB DRAM + 32 MiB CXL) so that fallback, bind
pressure, OOM and ENOMEM happen with VMAs of 4 KiB-8 MiB, and so that check() stays fast.
"""

import errno

import numpy as np
from conftest import HPAGE, PAGE, assert_same, machine_dict, snapshot
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tierscan import ConfigError, Kernel, Machine, OutOfMemory, SegmentationFault
from tierscan.mm.constants import PG_anon, PG_dirty
from tierscan.mm.pagetable import PageTable
from tierscan.mm.physmem import WMARK_MIN

MAX_PAGES = 2048                       # 8 MiB
MAX_LIVE_PAGES = 8 * 1024              # 32 MiB mapped at most, across both mms
NR_RESERVED = 1 + 512                  # the zero page and the huge zero page, on node 0


class SVMA:
    """A shadow VMA: [start, end) with what a fault there should do."""

    def __init__(self, start, end, kind, shared, prot, file, pgoff):
        self.start, self.end, self.kind, self.shared = start, end, kind, shared
        self.prot, self.file, self.pgoff = prot, file, pgoff

    def pages(self):
        return range(self.start, self.end, PAGE)

    def npages(self):
        return (self.end - self.start) // PAGE

    def cut(self, s, e):
        """The parts of this VMA outside [s, e)."""
        out = []
        if self.start < s:
            out.append(SVMA(self.start, min(self.end, s), self.kind, self.shared, self.prot,
                            self.file, self.pgoff))
        if self.end > e:
            lo = max(self.start, e)
            out.append(SVMA(lo, self.end, self.kind, self.shared, self.prot, self.file,
                            self.pgoff + (lo - self.start) // PAGE))
        return out


def merged(ranges):
    out = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [tuple(r) for r in out]


MACHINES = {
    # DRAM + two CXL nodes, the second nearer to the CPUs (fallback order 0, 2, 1)
    "cxl2": machine_dict(["16MiB", "16MiB", "16MiB"],
                         distance=[[10, 30, 20], [30, 10, 20], [20, 20, 10]]),
    # two DRAM nodes with CPUs and one CXL node
    "2s": machine_dict(["16MiB", "16MiB", "32MiB"], cpus=[[0], [1], []],
                       kinds=["dram", "dram", "cxl"],
                       distance=[[10, 21, 30], [21, 10, 30], [30, 30, 10]]),
}


class MMModel(RuleBasedStateMachine):
    @initialize(which=st.sampled_from(["laptop", "laptop", "cxl2", "2s"]))
    def boot(self, which):
        # mostly the scaled laptop, sometimes a three-node machine (see MACHINES)
        machine = (Machine.preset("laptop").scaled(1 / 64) if which == "laptop"
                   else Machine.from_dict(MACHINES[which]))
        self.k = Kernel(machine, seed=0, debug=True)
        self.nn = machine.nr_nodes
        self.cpu_nodes = list(machine.cpu_nodes)
        # the second process runs on the last CPU node (node 1 on the "2s" machine)
        self.mms = [self.k.spawn("a"), self.k.spawn("b", cpu_node=self.cpu_nodes[-1])]
        self.svmas = [[], []]
        self.written = [set(), set()]
        self.touched = [set(), set()]
        self.dirty = set()                # (file id, offset) written through a shared mapping
        # To start from, so every rule has something to work on: an anon mapping each, and one
        # small file both map (shared in a, private in b), so pages mapped twice are common.
        common = self.k.open_file("common", 32 * PAGE)
        for i, (mm, shared) in enumerate(zip(self.mms, (True, False))):
            v = mm.mmap(64 * PAGE)
            self.svmas[i].append(SVMA(v.start, v.end, "anon", False, "rw", None, 0))
            v = mm.mmap(32 * PAGE, kind="file", file=common, shared=shared)
            self.svmas[i].append(SVMA(v.start, v.end, "file", shared, "rw", common, 0))
            mm.access(np.arange(v.start, v.start + 4 * PAGE, PAGE, dtype=np.uint64), False)
            self.touched[i].update(range(v.start, v.start + 4 * PAGE, PAGE))

    # ---- helpers -----------------------------------------------------------------------------
    def live_pages(self):
        return sum(v.npages() for vs in self.svmas for v in vs)

    def svma_at(self, i, addr):
        for v in self.svmas[i]:
            if v.start <= addr < v.end:
                return v
        return None

    def expect_unchanged(self, call, exc):
        before = snapshot(self.k)
        try:
            call()
        except exc as e:
            assert "\n" not in str(e)
        else:
            raise AssertionError(f"expected {exc.__name__}")
        self.k.check()
        assert_same(before, snapshot(self.k))

    def huge_zero(self, pfns):
        hz = self.k.huge_zero_pfn
        return (pfns >= hz) & (pfns < hz + 512)

    def same_pages(self, a, b):
        """Page arrays equal up to splitting a huge zero PMD, which maps the (small) zero page
        in every PTE (__split_huge_zero_page_pmd)."""
        zero = self.k.zero_pfn
        return np.array_equal(np.where(self.huge_zero(a), zero, a),
                              np.where(self.huge_zero(b), zero, b))

    def policy(self, data):
        nn = self.nn
        return data.draw(st.sampled_from(
            [("local", None), ("bind", [0]), ("bind", [0])]
            + [("bind", [n]) for n in range(1, nn)] + [("preferred", [n]) for n in range(nn)]
            + [("bind", list(range(nn))), ("bind", [0, nn - 1])]), label="policy")

    # ---- rules -------------------------------------------------------------------------------
    @precondition(lambda self: self.live_pages() < MAX_LIVE_PAGES)
    @rule(data=st.data(), i=st.integers(0, 1), npages=st.integers(1, MAX_PAGES),
          kind=st.sampled_from(["anon", "anon", "file"]), shared=st.booleans(),
          thp=st.booleans(), populate=st.integers(0, 4),
          prot=st.sampled_from(["rw"] * 6 + ["r", "none"]))
    def mmap(self, data, i, npages, kind, shared, thp, populate, prot):
        k, mm = self.k, self.mms[i]
        policy = self.policy(data)
        populate = populate == 0
        file, pgoff = None, 0
        if kind == "file":
            reuse = [f for f in k.files.values() if f.size_pages >= npages]
            if reuse and data.draw(st.integers(0, 3), label="reuse file") > 0:
                file = data.draw(st.sampled_from(reuse), label="file")
                pgoff = data.draw(st.integers(0, file.size_pages - npages), label="pgoff")
        length = npages * PAGE - data.draw(st.integers(0, PAGE - 1), label="short")
        try:
            vma = mm.mmap(length, kind=kind, shared=shared, thp=thp, populate=populate,
                          policy=policy[0], nodes=policy[1], file=file, offset=pgoff * PAGE,
                          prot=prot)
        except OutOfMemory:
            # MAP_POPULATE ran out of memory: the mapping is undone before the error
            # (test_syscalls.py::test_mmap_populate_oom_leaves_no_vma); vmas_match_shadow
            # checks that no VMA was left behind.
            event("mmap: populate OOM")
            self.k.check()
            return
        assert vma.start % HPAGE == 0 and vma.end - vma.start == npages * PAGE
        assert all(v.end <= vma.start or v.start >= vma.end for v in self.svmas[i])
        sv = SVMA(vma.start, vma.end, kind, shared, prot, vma.file, vma.pgoff)
        self.svmas[i].append(sv)
        if populate and prot != "none":
            private_w = prot == "rw" and not shared
            for a in sv.pages():
                self.touched[i].add(a)
                if private_w:
                    self.written[i].add(a)

    @rule(data=st.data(), i=st.integers(0, 1))
    def munmap(self, data, i):
        if not self.svmas[i]:
            return
        v = data.draw(st.sampled_from(self.svmas[i]), label="vma")
        first = data.draw(st.integers(0, v.npages() - 1), label="first")
        # up to past the end, so a range may cover a gap, the next VMA, or run past the mm's
        # page tables (test_syscalls.py::test_munmap_past_the_page_table_span)
        n = data.draw(st.integers(1, v.npages() - first + 600), label="n")
        s, e = v.start + first * PAGE, v.start + (first + n) * PAGE
        self.mms[i].munmap(s, n * PAGE)
        self.svmas[i] = [p for w in self.svmas[i] for p in
                         ([w] if w.end <= s or w.start >= e else w.cut(s, e))]
        self.written[i] = {a for a in self.written[i] if not s <= a < e}
        self.touched[i] = {a for a in self.touched[i] if not s <= a < e}
        assert (self.mms[i].translate(np.arange(s, e, PAGE, dtype=np.uint64)) == -1).all()

    @rule(data=st.data(), i=st.integers(0, 1), n=st.integers(1, 48))
    def access(self, data, i, n):
        """Scattered loads and stores (any byte offset), now and then one stray address."""
        vmas = self.svmas[i]
        if not vmas:
            return
        picks = []
        for _ in range(n):
            v = data.draw(st.sampled_from(vmas), label="vma")
            page = data.draw(st.integers(0, v.npages() - 1), label="page")
            off = data.draw(st.integers(0, PAGE - 1), label="offset")
            picks.append(v.start + page * PAGE + off)
        if data.draw(st.integers(0, 9), label="stray") == 0:
            picks.insert(data.draw(st.integers(0, len(picks)), label="where"),
                         data.draw(st.integers(0, 1 << 47), label="stray addr"))
        w = data.draw(st.lists(st.booleans(), min_size=len(picks), max_size=len(picks)),
                      label="writes")
        # threads of an mm may run on any CPU node
        cpu = data.draw(st.sampled_from([None] + self.cpu_nodes), label="cpu_node")
        self.do_access(i, picks, w, cpu)

    @rule(data=st.data(), i=st.integers(0, 1), write=st.booleans())
    def touch_range(self, data, i, write):
        """Every page of a range, in order (memory pressure: fallback, OOM, THP)."""
        if not self.svmas[i]:
            return
        s, e = self.draw_range(data, i, overrun=False)
        picks = list(range(s, e, PAGE))
        self.do_access(i, picks, [write] * len(picks))

    def do_access(self, i, picks, w, cpu=None):
        mm = self.mms[i]
        a = np.array(picks, dtype=np.uint64)
        w = np.array(w, dtype=bool)
        bad = False
        for addr, wr in zip(picks, w):
            v = self.svma_at(i, addr)
            if v is None or v.prot == "none" or (wr and v.prot == "r"):
                bad = True
        if bad:
            event("access: segfault")
            self.expect_unchanged(lambda: mm.access(a, w, cpu_node=cpu), SegmentationFault)
            return
        try:
            counts = mm.access(a, w, cpu_node=cpu)
        except OutOfMemory:
            event("access: OOM")
            self.k.check()          # a failed fault must still leave a consistent model
            return
        event("access: ok")
        assert counts.sum() == a.size
        # every fault the batch needed is resolved: replaying it takes none, and each access is
        # then served by the node of the page it maps
        faults = self.k.vmstat["pgfault"]
        again = mm.access(a, w, cpu_node=cpu)
        assert self.k.vmstat["pgfault"] == faults
        assert (again == np.bincount(self.k.node_of(mm.translate(a)), minlength=self.nn)).all()
        for addr, wr in zip(picks, w):
            page = addr - addr % PAGE
            v = self.svma_at(i, addr)
            self.touched[i].add(page)
            if wr and not v.shared:
                self.written[i].add(page)
            elif wr:
                self.dirty.add((v.file.id, v.pgoff + (page - v.start) // PAGE))

    @rule(data=st.data(), i=st.integers(0, 1), n=st.integers(1, 16), mixed=st.booleans())
    def move_pages(self, data, i, n, mixed):
        """move_pages(2) with one target for all, or a target per address (runs of equal
        targets are processed in order, so a folio named twice ends on the later target)."""
        k, mm = self.k, self.mms[i]
        if not self.svmas[i]:
            return
        picks = []
        for _ in range(n):
            kind = data.draw(st.integers(0, 7), label="which")
            if kind == 0:
                picks.append(data.draw(st.integers(0, 1 << 47), label="addr") & ~(PAGE - 1))
            elif kind < 5 and self.touched[i]:
                picks.append(data.draw(st.sampled_from(sorted(self.touched[i])), label="page"))
            else:
                v = data.draw(st.sampled_from(self.svmas[i]), label="vma")
                picks.append(v.start + data.draw(st.integers(0, v.npages() - 1)) * PAGE)
        targets = list(range(self.nn)) + [self.nn - 1, self.nn + 3, -1]
        if mixed:
            dest = np.array(data.draw(st.lists(st.sampled_from(targets), min_size=n, max_size=n),
                                      label="nodes"), dtype=np.int64)
        else:
            dest = np.full(n, data.draw(st.sampled_from(targets), label="node"), dtype=np.int64)
        a = np.array(picks, dtype=np.uint64)
        pfns = mm.translate(a)
        before_nodes = k.node_of(pfns)
        # expected status, from the shadow and the state before the call
        inside = np.array([self.svma_at(i, int(x)) is not None for x in a])
        # any page of the huge zero page counts as the zero page
        # (test_migrate.py::test_move_pages_huge_zero_subpage_is_enoent)
        absent = inside & ((pfns < 0) | (pfns == k.zero_pfn) | self.huge_zero(pfns))
        real = inside & ~absent
        badnode = real & ((dest < 0) | (dest >= self.nn))
        movable = real & ~badnode
        heads = np.full(n, -1, np.int64)
        heads[real] = k.pm.folio_head(pfns[real])
        shared = np.zeros(n, bool)
        shared[movable] = k.folio_mapped_shared(heads[movable])
        status = mm.move_pages(a, dest)
        for code in np.unique(status):
            event(f"move_pages status {code}")
        assert (status[~inside] == -errno.EFAULT).all()
        assert (status[absent] == -errno.ENOENT).all()
        assert (status[badnode] == -errno.ENODEV).all()
        assert (status[shared] == -errno.EACCES).all()
        ok = movable & ~shared
        assert ((status[ok] == dest[ok]) | (status[ok] == -errno.ENOMEM)).all(), (status, dest)
        # where each folio ends: the last target it was moved to, else where it was
        after = k.node_of(mm.translate(a))
        for j in np.flatnonzero(ok):
            same = np.flatnonzero(ok & (heads == heads[j]))
            moved = same[status[same] >= 0]
            want = status[moved[-1]] if moved.size else before_nodes[j]
            assert after[j] == want, (j, status, dest)
        # an address that was not to be moved keeps its page, unless it shares the folio of
        # one that was (a THP named twice, once with a bad node)
        rest = ~ok & ~np.isin(heads, heads[ok])
        assert (mm.translate(a[rest]) == pfns[rest]).all(), (a, pfns, status, dest)

    @rule(data=st.data(), i=st.integers(0, 1), move=st.booleans())
    def mbind(self, data, i, move):
        k, mm = self.k, self.mms[i]
        if not self.svmas[i]:
            return
        policy = self.policy(data)
        s, e = self.draw_range(data, i)
        covered = self.fully_mapped(i, s, e)
        if not covered:
            event("mbind: range not mapped")
            self.expect_unchanged(lambda: mm.mbind(s, e - s, *policy, move=move), ConfigError)
            return
        event(f"mbind: move={move}")
        a = np.arange(s, e, PAGE, dtype=np.uint64)
        pfns = mm.translate(a)
        allowed = policy[1] or []
        real = (pfns >= 0) & (pfns != k.zero_pfn) & ~self.huge_zero(pfns)
        need = int((real & ~np.isin(k.node_of(pfns), allowed)).sum())
        # the node MPOL_MF_MOVE migrates to: the allowed node nearest the mm's CPU node
        cpu = mm.cpu_node
        target = (min(allowed, key=lambda n: (int(k.machine.distance[cpu][n]), n))
                  if allowed else None)
        room = target is not None and k.pm.allowance(target, WMARK_MIN) >= need + 1024
        mm.mbind(s, e - s, *policy, move=move)
        assert [(v.start, v.end) for v in mm.vmas if s <= v.start and v.end <= e] and all(
            v.policy.mode == policy[0] for v in mm.vmas if s <= v.start and v.end <= e)
        after = mm.translate(a)
        if move and policy[0] != "local" and room:
            excl = real.copy()
            excl[real] = ~k.folio_mapped_shared(k.pm.folio_head(after[real]))
            assert np.isin(k.node_of(after[excl]), allowed).all()
        elif not move or policy[0] == "local":
            assert self.same_pages(after, pfns)

    @rule(data=st.data(), i=st.integers(0, 1),
          advice=st.sampled_from(["hugepage", "hugepage", "nohugepage", "random"]))
    def madvise(self, data, i, advice):
        mm = self.mms[i]
        if not self.svmas[i]:
            return
        s, e = self.draw_range(data, i)
        if not self.fully_mapped(i, s, e):
            event("madvise: range not mapped")
            self.expect_unchanged(lambda: mm.madvise(s, e - s, advice), ConfigError)
            return
        event("madvise: ok")
        pfns = mm.translate(np.arange(s, e, PAGE, dtype=np.uint64))
        mm.madvise(s, e - s, advice)
        # madvise changes flags only (a split PMD keeps its pages)
        assert self.same_pages(mm.translate(np.arange(s, e, PAGE, dtype=np.uint64)), pfns)

    @rule(i=st.integers(0, 1))
    def exit_and_respawn(self, i):
        self.mms[i].exit()
        assert self.mms[i].id not in self.k.mms
        self.mms[i] = self.k.spawn(f"re{i}", cpu_node=self.cpu_nodes[-1 if i else 0])
        self.svmas[i], self.written[i], self.touched[i] = [], set(), set()

    def draw_range(self, data, i, overrun=True):
        """A page range inside one VMA (mostly), or one running past it (sometimes)."""
        v = data.draw(st.sampled_from(self.svmas[i]), label="vma")
        if not overrun and data.draw(st.integers(0, 2), label="whole?") == 0:
            return v.start, v.end
        first = data.draw(st.integers(0, v.npages() - 1), label="first")
        limit = v.npages() - first
        if overrun and data.draw(st.integers(0, 5), label="overrun?") == 0:
            limit += 600
        n = data.draw(st.integers(1, limit), label="n")
        return v.start + first * PAGE, v.start + (first + n) * PAGE

    def fully_mapped(self, i, s, e):
        return sum(max(0, min(v.end, e) - max(v.start, s)) for v in self.svmas[i]) == e - s

    # ---- invariants --------------------------------------------------------------------------
    @invariant()
    def vmas_match_shadow(self):
        if not hasattr(self, "k"):
            return
        for mm, svmas in zip(self.mms, self.svmas):
            assert merged((v.start, v.end) for v in mm.vmas) == \
                merged((v.start, v.end) for v in svmas)

    @invariant()
    def written_pages_are_kept(self):
        if not hasattr(self, "k"):
            return
        k, pm = self.k, self.k.pm
        for i, mm in enumerate(self.mms):
            w = np.array(sorted(self.written[i]), dtype=np.uint64)
            if w.size:
                pfns = mm.translate(w)
                assert (pfns >= 0).all() and (pfns != k.zero_pfn).all()
                assert not self.huge_zero(pfns).any()
                assert (pm.flags[pfns] & PG_anon).all()
                assert (pm.mapping[pfns] == mm.id).all()
                assert (pm.index[pfns] == PageTable.slot(w)).all()
                assert len(np.unique(pfns)) == w.size
            t = np.array(sorted(self.touched[i]), dtype=np.uint64)
            if t.size:
                assert (mm.translate(t) >= 0).all()
        for fid, off in self.dirty:
            pfn = k.files[fid].pages[off]
            assert pfn >= 0 and pm.flags[pfn] & PG_dirty

    @invariant()
    def pages_are_conserved(self):
        if not hasattr(self, "k"):
            return
        k, pm = self.k, self.k.pm
        used = [np.empty(0, np.int64)]
        for mm in self.mms:
            for v in mm.vmas:
                used.append(mm.translate(np.arange(v.start, v.end, PAGE, dtype=np.uint64)))
        used += [f.pages for f in k.files.values()]
        used = np.unique(np.concatenate(used))
        used = used[(used >= 0) & (used != k.zero_pfn) & ~self.huge_zero(used)]
        per_node = np.bincount(k.node_of(used), minlength=self.nn)
        reserved = np.zeros(self.nn, np.int64)
        reserved[0] = NR_RESERVED
        assert (pm.node_free + per_node + reserved == pm.node_present).all()
        allocs = sum(k.vmstat[f"pgalloc_{z}"] for z in ("dma", "dma32", "normal", "movable"))
        assert allocs - k.vmstat["pgfree"] == used.size

    def teardown(self):
        if hasattr(self, "k"):
            self.k.check()
            self.pages_are_conserved()
            for mm in self.mms:
                mm.exit()
            # with every mm gone, only page-cache pages and the zero pages remain in use
            cached = sum(int((f.pages >= 0).sum()) for f in self.k.files.values())
            assert self.k.pm.node_free.sum() + cached + NR_RESERVED == self.k.pm.nr_pfns


MMModel.TestCase.settings = settings(max_examples=40, deadline=None, stateful_step_count=50,
                                     suppress_health_check=[HealthCheck.too_slow,
                                                            HealthCheck.filter_too_much])
TestMMModel = pytest.mark.slow(MMModel.TestCase)   # 40 x 50 steps: CI only; see pyproject
