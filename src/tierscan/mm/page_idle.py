"""PG_young (include/linux/page_idle.h; a real page flag with CONFIG_PAGE_IDLE_FLAG on 64-bit).

A page-idle user that clears a young A bit (DAMON's damon_ptep_mkold/damon_pmdp_mkold, kscand's
page_idle_clear_pte_refs) sets PG_young on the folio, so that reclaim does not lose that access:
folio_referenced_one() ends with ``if (folio_test_clear_young(folio)) referenced++``. Without
it, a scanner clearing A bits makes every folio look unreferenced to kswapd, which then demotes
hot folios as readily as cold ones.

The flag is kept by the folio's identity (``kernel.page_young``, a per-folio field that
follows the folio through migration as folio_migrate_flags() copies it). The first user
installs the field; while none has, nothing is young and reclaim reads nothing.
"""

from __future__ import annotations

import numpy as np


def install_page_young(kernel, make_field) -> None:
    """Give the kernel its PG_young store (``make_field()``: a bool per-folio field with
    get/set) unless it has one: the page-idle users share one flag, as in the kernel."""
    if getattr(kernel, "page_young", None) is None:
        kernel.page_young = make_field()


def folio_set_young(kernel, heads) -> None:
    """folio_set_young() on each folio (head pfns)."""
    heads = np.asarray(heads, dtype=np.int64)
    if heads.size:
        kernel.page_young.set(heads, True)


def folio_test_clear_young(kernel, heads) -> np.ndarray:
    """folio_test_clear_young() on each folio (head pfns): which were young; they no longer
    are. All False while no page-idle user has run."""
    heads = np.asarray(heads, dtype=np.int64)
    field = getattr(kernel, "page_young", None)
    if field is None or heads.size == 0:
        return np.zeros(heads.size, bool)
    young = field.get(heads).astype(bool)
    if young.any():
        field.set(heads[young], False)
    return young
