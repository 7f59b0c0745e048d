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
    HPAGE_PMD_NR, HPAGE_PMD_ORDER, PG_anon, PTE_PFN_MASK, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_PSE, _PAGE_SPECIAL,
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


def pmd_mapped_thps(kernel, heads):
    """rmap_walk of whole folios in the common case of a THP migration: when every folio of
    ``heads`` is an anon THP of one mm mapped by one PMD leaf, (that mm, each folio's PMD
    slot); None otherwise (the caller walks their pages). rmap_walk of the folios' pages
    (folio_pfns) then finds the one site Sites(mm, True, np.repeat(slots, HPAGE_PMD_NR),
    np.arange(pages)): every page is anon with the mm's id as its mapping and its index a
    slot under the folio's PMD leaf, which maps that page (_whole_pmd_thps checks each page
    as _site_kinds does). A folio costs one pass over its pages instead of a dozen numpy
    passes over per-page index arrays."""
    return _slots_in_one_mm(kernel, heads, _whole_pmd_thps)


def _slots_in_one_mm(kernel, heads, check):
    """(mm, a slot per folio) when the compiled ``check`` finds every folio of ``heads`` where
    its by-folio path expects it in the mm whose id the first head's mapping holds (the only
    mm it can be); None otherwise, or when there are no heads or no such mm."""
    heads = np.asarray(heads, np.int64)
    if heads.size == 0:
        return None
    pm = kernel.pm
    mm = kernel.mms.get(int(pm.mapping[heads[0]]))
    if mm is None:
        return None
    slots = np.empty(heads.size, np.int64)
    if not check(heads, pm.flags, pm.mapping, pm.index, pm.order, mm.pt.pte, mm.pt.pmd, slots):
        return None
    return mm, slots


_ANON = int(PG_anon)


@njit(cache=True, nogil=True)
def _whole_pmd_thps(heads, flags, mapping, index, order, pte, pmd, slots):
    """Whether each folio is an aligned THP whose every page is anon, of the first head's
    mapping, and found by _site_kinds as kind 1 (a PMD leaf at its index's PMD maps it),
    with every page's index under the same PMD; fills ``slots`` with that PMD per folio.
    ``pte`` (the mm's PTE table) only bounds the indexes."""
    nr_slots = pte.size
    m0 = mapping[heads[0]]
    for i in range(heads.size):
        h = heads[i]
        if order[h] != HPAGE_PMD_ORDER or h & (HPAGE_PMD_NR - 1) or index[h] >= nr_slots:
            return False
        pmd_slot = np.int64(index[h]) >> 9
        e = pmd[pmd_slot]
        if not ((e & np.uint64(_PSE)) and (e & np.uint64(_PRESENT))):
            return False
        base = np.int64((e & np.uint64(_PFN)) >> np.uint64(12))
        for p in range(h, h + HPAGE_PMD_NR):
            s = np.int64(index[p])
            if not (flags[p] & _ANON) or mapping[p] != m0 or s >= nr_slots or \
                    s >> 9 != pmd_slot or base + (s & 511) != p:
                return False
        slots[i] = pmd_slot
    return True


def pte_mapped_pages(kernel, heads):
    """rmap_walk of whole folios in the common case of a 4 KiB page migration (every
    promotion of Modes 1 and 2): when every folio of ``heads`` is an anon order-0 page of
    one mm mapped by the PTE at its index, (that mm, each page's slot); None otherwise (the
    caller walks the pages). rmap_walk of ``heads`` then finds the one site Sites(mm, False,
    slots, np.arange(heads.size)): every page is anon with the mm's id as its mapping, and
    _site_kinds finds kind 2 at its index (_pte_mapped_pages checks each page as it does).
    One pass over the pages instead of a dozen numpy passes over per-page arrays."""
    return _slots_in_one_mm(kernel, heads, _pte_mapped_pages)


@njit(cache=True, nogil=True)
def _pte_mapped_pages(heads, flags, mapping, index, order, pte, pmd, slots):
    """Whether each folio is an order-0 anon page of the first head's mapping whose index
    is a slot where _site_kinds finds kind 2 (no PMD leaf maps the page there, a present,
    non-special PTE does); fills ``slots`` with the indexes."""
    m0 = mapping[heads[0]]
    for i in range(heads.size):
        p = heads[i]
        if order[p] != 0 or not (flags[p] & _ANON) or mapping[p] != m0:
            return False
        s = np.int64(index[p])
        if s < 0 or s >= pte.size:
            return False
        e = pmd[s >> 9]
        if (e & np.uint64(_PSE)) and (e & np.uint64(_PRESENT)) and \
                np.int64((e & np.uint64(_PFN)) >> np.uint64(12)) + (s & 511) == p:
            return False
        e = pte[s]
        if not ((e & np.uint64(_PRESENT)) and not (e & np.uint64(_SPECIAL)) and
                np.int64((e & np.uint64(_PFN)) >> np.uint64(12)) == p):
            return False
        slots[i] = s
    return True


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
