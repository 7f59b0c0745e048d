"""Kernel constants and bit layouts the model shares (x86-64 geometry, PTE bits, page flags).

Values follow mglru-spec.md §1 and the x86-64 page-table format. The geometry and PTE bit positions
are general x86 knowledge, marked (unverified) in the spec; they only need to be self-consistent.
"""

import numpy as np

# x86-64 4-level geometry (mglru-spec §1, unverified there).
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PTRS_PER_PTE = 512
PMD_SHIFT = 21
PMD_SIZE = 1 << PMD_SHIFT
PUD_SHIFT = 30
PUD_SIZE = 1 << PUD_SHIFT
P4D_SHIFT = 39
P4D_SIZE = 1 << P4D_SHIFT
HPAGE_PMD_ORDER = PMD_SHIFT - PAGE_SHIFT
HPAGE_PMD_NR = 1 << HPAGE_PMD_ORDER
FIRST_USER_ADDRESS = 0
ULONG_MAX = (1 << 64) - 1

# Where tierscan places mappings: a 512 GiB-aligned base, so PUD/P4D boundaries fall where the
# kernel's would for addresses in that range.
MMAP_BASE = 0x7F00_0000_0000

# x86 PTE/PMD bits (arch/x86/include/asm/pgtable_types.h). PROTNONE shares the GLOBAL bit and is
# only meaningful with PRESENT clear; SPECIAL is software bit 1.
_PAGE_PRESENT = np.uint64(1 << 0)
_PAGE_RW = np.uint64(1 << 1)
_PAGE_USER = np.uint64(1 << 2)
_PAGE_ACCESSED = np.uint64(1 << 5)
_PAGE_DIRTY = np.uint64(1 << 6)
_PAGE_PSE = np.uint64(1 << 7)
_PAGE_PROTNONE = np.uint64(1 << 8)
_PAGE_SPECIAL = np.uint64(1 << 9)
PTE_PFN_SHIFT = np.uint64(PAGE_SHIFT)
PTE_PFN_MASK = np.uint64(((1 << 52) - 1) & ~((1 << PAGE_SHIFT) - 1))
PTE_FLAGS_MASK = np.uint64((1 << PAGE_SHIFT) - 1)

# Folio flags (per pfn, uint16). Names are the kernel's PG_* bits; the bit numbers are ours.
# PG_anon stands for PAGE_MAPPING_ANON in folio->mapping; PG_tail for "has a compound head";
# PG_allocated for "not in the buddy allocator".
PG_referenced = np.uint16(1 << 0)
PG_dirty = np.uint16(1 << 1)
PG_lru = np.uint16(1 << 2)
PG_head = np.uint16(1 << 3)
PG_active = np.uint16(1 << 4)
PG_workingset = np.uint16(1 << 5)
PG_reclaim = np.uint16(1 << 6)
PG_swapbacked = np.uint16(1 << 7)
PG_unevictable = np.uint16(1 << 8)
PG_writeback = np.uint16(1 << 9)
PG_anon = np.uint16(1 << 10)
PG_swapcache = np.uint16(1 << 11)
PG_reserved = np.uint16(1 << 12)
PG_tail = np.uint16(1 << 13)
PG_allocated = np.uint16(1 << 14)
# PG_idle (CONFIG_PAGE_IDLE_FLAG, a real page flag on 64-bit): set by DAMON's mkold, cleared by
# folio_referenced() on a young mapping; free clears it, migration copies it.
PG_idle = np.uint16(1 << 15)

# MGLRU (mglru-spec §1).
MIN_NR_GENS = 2
MAX_NR_GENS = 4
MAX_NR_TIERS = 4
LRU_GEN_WIDTH = 3
LRU_REFS_WIDTH = 2
LRU_GEN_MASK = np.uint8((1 << LRU_GEN_WIDTH) - 1)      # gen+1 in bits 0-2 of lru_gen_refs
LRU_REFS_SHIFT = LRU_GEN_WIDTH
LRU_REFS_MASK = np.uint8(((1 << LRU_REFS_WIDTH) - 1) << LRU_REFS_SHIFT)
MIN_LRU_BATCH = 64
MAX_LRU_BATCH = MIN_LRU_BATCH * 64
NR_HIST_GENS = 1
NR_BLOOM_FILTERS = 2
BLOOM_FILTER_SHIFT = 15
LRU_GEN_ANON, LRU_GEN_FILE = 0, 1
ANON_AND_FILE = 2
MIN_SWAPPINESS, MAX_SWAPPINESS, SWAPPINESS_ANON_ONLY = 0, 200, 201
LRU_GEN_CORE, LRU_GEN_MM_WALK, LRU_GEN_NONLEAF_YOUNG = 0x1, 0x2, 0x4
MM_LEAF_TOTAL, MM_LEAF_YOUNG, MM_NONLEAF_FOUND, MM_NONLEAF_ADDED = 0, 1, 2, 3
NR_MM_STATS = 4

# Zones. One zone per node in this model (docs/fidelity.md); the index keeps the kernel's order.
ZONE_NAMES = ("DMA", "DMA32", "Normal", "Movable")
MAX_NR_ZONES = len(ZONE_NAMES)

HZ = 1000  # jiffies per second
NUMA_NO_NODE = -1
