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


class PageTable:
    """The PTE and PMD entries of one mm."""

    def __init__(self):
        self.pte = np.zeros(PTRS_PER_PTE, dtype=np.uint64)
        self.pmd = np.zeros(1, dtype=np.uint64)

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
        self.pte, self.pmd = pte, pmd

    def pmd_is_leaf(self, pmd_slots) -> np.ndarray:
        """pmd_trans_huge(): a THP leaf, including one made PROT_NONE for a NUMA hint."""
        e = self.pmd[pmd_slots]
        return ((e & _PAGE_PSE) != 0) & ((e & (_PAGE_PRESENT | _PAGE_PROTNONE)) != 0)

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
