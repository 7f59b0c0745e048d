"""Per-mm page tables as dense uint64 arrays (DESIGN §4).

One array holds every PTE of the mm's address span, indexed by page slot
``(addr - MMAP_BASE) >> PAGE_SHIFT``; a second holds one PMD entry per 2 MiB slot. A PTE table in
the kernel's sense is the 512-entry slice of one PMD slot, so the walk gets it as a view. A PMD
entry is PRESENT with PSE for a THP leaf (its pfn in the entry) and PRESENT without PSE when it
points to a PTE table; ACCESSED on a non-leaf entry is the x86 non-leaf accessed bit.

The arrays grow by doubling as the address span grows; np.zeros keeps untouched parts unbacked.
"""

from __future__ import annotations

import numpy as np

from .constants import (
    MMAP_BASE, PAGE_SHIFT, PTE_PFN_MASK, PTE_PFN_SHIFT, PTRS_PER_PTE, _PAGE_PRESENT,
    _PAGE_PROTNONE, _PAGE_PSE,
)


def mk_pte(pfns, bits) -> np.ndarray:
    """pfn_pte(): an entry for each pfn carrying the given flag bits."""
    return (np.asarray(pfns, dtype=np.uint64) << PTE_PFN_SHIFT) | np.uint64(bits)


def pte_pfn(entries) -> np.ndarray:
    return ((np.asarray(entries, dtype=np.uint64) & PTE_PFN_MASK) >> PTE_PFN_SHIFT).astype(np.int64)


def pte_present(entries) -> np.ndarray:
    """pte_present(): PRESENT, or PROTNONE (a NUMA hint entry is still a mapping)."""
    return (np.asarray(entries) & (_PAGE_PRESENT | _PAGE_PROTNONE)) != 0


def _grown(arr: np.ndarray, size: int) -> np.ndarray:
    if size <= arr.size:
        return arr
    out = np.zeros(size, arr.dtype)
    out[: arr.size] = arr
    return out


def _pmd_leaf(e: np.ndarray) -> np.ndarray:
    return ((e & _PAGE_PSE) != 0) & ((e & (_PAGE_PRESENT | _PAGE_PROTNONE)) != 0)


class PageTable:
    """The PTE and PMD entries of one mm."""

    def __init__(self):
        self.pte = np.zeros(PTRS_PER_PTE, dtype=np.uint64)
        self.pmd = np.zeros(1, dtype=np.uint64)
        # whether the PMD table under each PUD entry (the PUD table under each P4D entry)
        # exists: the upper entry is present from the first allocation below it until
        # free_pgtables() frees the table, even when every entry in the table is none
        self.pud_table = np.zeros(1, dtype=bool)
        self.p4d_table = np.zeros(1, dtype=bool)
        # Not a kernel structure: the content tag of the data the program holds at each page
        # slot (0: none yet). Migration, swap-out and swap-in must keep the page mapped there
        # carrying this tag; Kernel.check() compares them (DESIGN §9).
        self.content = np.zeros(PTRS_PER_PTE, dtype=np.uint32)

    @staticmethod
    def slot(addr) -> np.ndarray | int:
        """Page slot of an address (an int, or an array for arrays)."""
        if isinstance(addr, np.ndarray):
            return ((addr - np.uint64(MMAP_BASE)) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
        return (int(addr) - MMAP_BASE) >> PAGE_SHIFT

    @staticmethod
    def addr(slot) -> np.ndarray | int:
        if isinstance(slot, np.ndarray):
            return (slot.astype(np.uint64) << np.uint64(PAGE_SHIFT)) + np.uint64(MMAP_BASE)
        return MMAP_BASE + (int(slot) << PAGE_SHIFT)

    def ensure(self, end_slot: int) -> None:
        """Grow the arrays to cover page slots [0, end_slot)."""
        need = -(-end_slot // PTRS_PER_PTE) * PTRS_PER_PTE
        if need <= self.pte.size:
            return
        size = max(need, 2 * self.pte.size)
        pte = np.zeros(size, dtype=np.uint64)
        pte[: self.pte.size] = self.pte
        pmd = np.zeros(size // PTRS_PER_PTE, dtype=np.uint64)
        pmd[: self.pmd.size] = self.pmd
        content = np.zeros(size, dtype=np.uint32)
        content[: self.content.size] = self.content
        self.pte, self.pmd, self.content = pte, pmd, content
        self.pud_table = _grown(self.pud_table, -(-pmd.size // PTRS_PER_PTE))
        self.p4d_table = _grown(self.p4d_table, -(-self.pud_table.size // PTRS_PER_PTE))

    def alloc_upper_tables(self, pmd_slots) -> None:
        """__pud_alloc() / __pmd_alloc(): the tables holding these PMD entries exist, so their
        P4D and PUD entries are present (called where PMD entries are installed)."""
        pud = np.asarray(pmd_slots, np.int64) >> 9
        self.pud_table[pud] = True
        self.p4d_table[pud >> 9] = True

    def pud_present(self, pud_index: int) -> bool:
        """pud_present(): the PMD table under this PUD entry exists (or, for entries written
        without alloc_upper_tables, one of its entries is not none)."""
        lo = pud_index * PTRS_PER_PTE
        if pud_index < self.pud_table.size and self.pud_table[pud_index]:
            return True
        return lo < self.pmd.size and bool(self.pmd[lo:lo + PTRS_PER_PTE].any())

    def p4d_present(self, p4d_index: int) -> bool:
        """p4d_present(): the PUD table under this P4D entry exists (or a PUD is present)."""
        if p4d_index < self.p4d_table.size and self.p4d_table[p4d_index]:
            return True
        lo = p4d_index * PTRS_PER_PTE * PTRS_PER_PTE
        return lo < self.pmd.size and bool(self.pmd[lo:lo + PTRS_PER_PTE * PTRS_PER_PTE].any())

    def free_upper_tables(self, pud_lo: int, pud_hi: int, covered) -> None:
        """free_pgtables()'s free_pmd_range / free_pud_range: the PMD tables of PUDs
        [pud_lo, pud_hi) and the PUD tables of their P4Ds that no VMA reaches any more
        (``covered(lo_addr, hi_addr)`` says whether a VMA overlaps a range) are freed."""
        for pud in range(pud_lo, min(pud_hi, self.pud_table.size)):
            a = self.addr(pud << 18)
            if not covered(a, a + (1 << 30)):
                self.pud_table[pud] = False
        for p4d in range(pud_lo >> 9, min(-(-pud_hi // PTRS_PER_PTE), self.p4d_table.size)):
            a = self.addr(p4d << 27)
            if not covered(a, a + (1 << 39)):
                self.p4d_table[p4d] = False

    def pmd_is_leaf(self, pmd_slots) -> np.ndarray:
        """pmd_trans_huge(): a THP leaf, including one made PROT_NONE for a NUMA hint."""
        pmd_slots = np.asarray(pmd_slots)
        if pmd_slots.size > self.pmd.size:    # many pages' PMDs: test each entry once
            return _pmd_leaf(self.pmd)[pmd_slots]
        return _pmd_leaf(self.pmd[pmd_slots])

    def translate_slots(self, slots: np.ndarray) -> np.ndarray:
        """pfn mapped at each page slot, -1 where nothing is mapped (PTE or PMD leaf)."""
        pmd_slots = slots >> 9
        leaf = self.pmd_is_leaf(pmd_slots)
        pte = self.pte[slots]
        pfn = np.where(pte_present(pte), pte_pfn(pte), -1)
        if leaf.any():
            pfn[leaf] = pte_pfn(self.pmd[pmd_slots[leaf]]) + (slots[leaf] & (PTRS_PER_PTE - 1))
        return pfn

    def nbytes(self) -> int:
        return self.pte.nbytes + self.pmd.nbytes
