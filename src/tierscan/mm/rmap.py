"""Reverse mapping: from pfns to the page-table entries that map them (mm/rmap.c).

Anon folios record their owner mm and page slot (folio->mapping = anon_vma, folio->index);
file folios record their file and offset, and the file's i_mmap lists every VMA mapping it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import unique
from numba import njit

from .constants import (
    PG_anon, PTE_PFN_MASK, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_PSE, _PAGE_SPECIAL,
)
from .pagetable import pte_pfn, pte_present


@dataclass
class Sites:
    """Entries of one mm that map some of the queried pfns.

    ``slots`` are page slots (PTEs) or PMD slots (``pmd=True``, a THP mapped by a PMD leaf,
    found once for each of its queried pages); ``pos`` indexes the queried pfn array.
    """

    mm: object
    pmd: bool
    slots: np.ndarray
    pos: np.ndarray


def _groups(keys: np.ndarray):
    if keys.size == 0:
        return
    k0 = keys[0]
    if (keys == k0).all():           # one owner (a batch of one mm's anon folios): no sort
        yield int(k0), np.arange(keys.size)
        return
    for key in unique(keys):
        yield int(key), np.flatnonzero(keys == key)


def rmap_walk(kernel, pfns: np.ndarray) -> list[Sites]:
    """rmap_walk(): every PTE and PMD leaf mapping any of ``pfns``."""
    pm = kernel.pm
    pfns = np.asarray(pfns, dtype=np.int64)
    out: list[Sites] = []
    anon = (pm.flags[pfns] & PG_anon) != 0
    for mm_id, pos in _groups(pm.mapping[pfns] * anon - (~anon)):
        if mm_id < 0 or mm_id not in kernel.mms:
            continue
        mm = kernel.mms[mm_id]
        mine = pfns if pos.size == pfns.size else pfns[pos]   # one owner: pos is every pfn
        _add_sites(out, mm, pm.index[mine].astype(np.int64), mine, pos, kernel)
    filepos = np.flatnonzero(~anon)
    for fid, sel in _groups(pm.mapping[pfns[filepos]]):
        f = kernel.files.get(fid)
        if f is None:
            continue
        pos = filepos[sel]
        offs = pm.index[pfns[pos]].astype(np.int64)
        for vma in f.i_mmap:
            inside = (offs >= vma.pgoff) & (offs < vma.pgoff + vma.nr_pages)
            slots = vma.start_slot + offs[inside] - vma.pgoff
            _add_sites(out, vma.mm, slots, pfns[pos[inside]], pos[inside], kernel)
    return out


def _add_sites(out, mm, slots, pfns, pos, kernel) -> None:
    """The PMD leaves and PTEs of ``mm`` at ``slots`` that map ``pfns``, appended to ``out``
    (PMD leaves first). One compiled pass (_site_kinds); ``COMPILED = False`` selects the
    numpy form, _add_sites_reference."""
    if not COMPILED:
        _add_sites_reference(out, mm, slots, pfns, pos, kernel)
        return
    pt = mm.pt
    kind = np.empty(slots.size, np.int8)
    _site_kinds(slots, pfns, pt.pte, pt.pmd, kind)
    leaf = kind == 1
    if slots.size and leaf.all():    # PMD-mapped THPs only: no selection to copy
        out.append(Sites(mm, True, slots >> 9, pos))
        return
    if leaf.any():
        out.append(Sites(mm, True, slots[leaf] >> 9, pos[leaf]))
    hit = kind == 2
    if hit.any():
        out.append(Sites(mm, False, slots[hit], pos[hit]))


COMPILED = True

# plain ints, entries through np.uint64 at the use site (as walk_kernels.py)
_PRESENT = int(_PAGE_PRESENT | _PAGE_PROTNONE)
_PSE, _SPECIAL, _PFN = int(_PAGE_PSE), int(_PAGE_SPECIAL), int(PTE_PFN_MASK)


@njit(cache=True, nogil=True)
def _site_kinds(slots, pfns, pte, pmd, kind):
    """Per page slot: 1 when a PMD leaf (pmd_is_leaf) maps its pfn there, else 2 when a
    present, non-special PTE does, else 0 (also for slots beyond the table)."""
    for i in range(slots.size):
        s = slots[i]
        kind[i] = 0
        if s >= pte.size:
            continue
        e = pmd[s >> 9]
        if (e & np.uint64(_PSE)) and (e & np.uint64(_PRESENT)) and \
                np.int64((e & np.uint64(_PFN)) >> np.uint64(12)) + (s & 511) == pfns[i]:
            kind[i] = 1
            continue
        e = pte[s]
        if (e & np.uint64(_PRESENT)) and not (e & np.uint64(_SPECIAL)) and \
                np.int64((e & np.uint64(_PFN)) >> np.uint64(12)) == pfns[i]:
            kind[i] = 2


def _add_sites_reference(out, mm, slots, pfns, pos, kernel) -> None:
    """_add_sites() in numpy."""
    pt = mm.pt
    ok = slots < pt.pte.size
    slots, pfns, pos = slots[ok], pfns[ok], pos[ok]
    pmds = slots >> 9
    leaf = pt.pmd_is_leaf(pmds) & (pte_pfn(pt.pmd[pmds]) + (slots & 511) == pfns)
    if leaf.any():
        out.append(Sites(mm, True, pmds[leaf], pos[leaf]))
    e = pt.pte[slots]
    hit = ~leaf & pte_present(e) & ((e & _PAGE_SPECIAL) == 0) & (pte_pfn(e) == pfns)
    if hit.any():
        out.append(Sites(mm, False, slots[hit], pos[hit]))


def folio_mappers(kernel, pfn: int) -> list[tuple[object, int]]:
    """(mm, address) of every mapping of one pfn, for users and tests."""
    from .pagetable import PageTable

    res = []
    for s in rmap_walk(kernel, np.array([pfn])):
        for slot in s.slots.tolist():
            page_slot = (slot << 9) + (pfn & 511) if s.pmd else slot  # a THP page's own address
            res.append((s.mm, int(PageTable.addr(page_slot))))
    return res
