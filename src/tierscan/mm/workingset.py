"""Shadow entries and refaults (mm/workingset.c; mglru-spec §7.7, §7.8).

When reclaim evicts a folio, ``workingset_eviction`` leaves a shadow entry where the folio was
(the page cache slot of a file folio, the swap slot of an anon one). Under MGLRU it is
lru_gen_eviction's: the memcg, the node, a token (min_seq[type] << LRU_REFS_WIDTH | refs - 1)
and the workingset bit. When the page comes back (a major fault), ``workingset_refault``
hands it to lru_gen_refault: workingset_refault_{anon,file} always (when the lruvec matches),
and, when the token's seq equals the current min_seq (the refault is "recent"), refaulted[]
for the PID controller, workingset_activate_* (the refault is a fault, so folio_add_lru
activates it) and the folio's PG_workingset or refs restored.

The shadow packs into one int64: bit 0 set (xa_mk_value), then workingset (1 bit), node
(10 bits), memcg id (16 bits), token (the rest). The classic LRU's eviction counter
(workingset_eviction's non-MGLRU branch) belongs beside this when the classic LRU exists.
"""

from __future__ import annotations

import numpy as np

from .constants import LRU_REFS_SHIFT, LRU_REFS_WIDTH, PG_workingset
from .lru_gen import folio_lru_refs, folio_type, lru_hist_from_seq, lru_tier_from_refs

_WS_SHIFT, _NODE_SHIFT, _MEMCG_SHIFT, _TOKEN_SHIFT = 1, 2, 12, 28


def pack_shadow(memcg_ids, nids, tokens, workingset) -> np.ndarray:
    """pack_shadow(): one int64 per folio; never 0 (bit 0 marks a value entry)."""
    return (1 | (np.asarray(workingset, np.int64) << _WS_SHIFT)
            | (np.asarray(nids, np.int64) << _NODE_SHIFT)
            | (np.asarray(memcg_ids, np.int64) << _MEMCG_SHIFT)
            | (np.asarray(tokens, np.int64) << _TOKEN_SHIFT))


def unpack_shadow(shadows):
    """unpack_shadow(): (memcg ids, nids, tokens, workingset) of packed shadows."""
    s = np.asarray(shadows, np.int64)
    return ((s >> _MEMCG_SHIFT) & 0xFFFF, (s >> _NODE_SHIFT) & 0x3FF, s >> _TOKEN_SHIFT,
            ((s >> _WS_SHIFT) & 1).astype(bool))


def lru_gen_eviction(lruvec, heads) -> np.ndarray:
    """lru_gen_eviction() (§7.7): add the folios' pages to evicted[hist(min_seq)][type][tier]
    and return their shadow entries (token = min_seq << LRU_REFS_WIDTH | max(refs - 1, 0))."""
    pm = lruvec.kernel.pm
    g = lruvec.lrugen
    heads = np.asarray(heads, dtype=np.int64)
    if heads.size == 0:
        return np.empty(0, np.int64)
    types = folio_type(pm, heads)
    refs = folio_lru_refs(pm, heads)
    ws = (pm.flags[heads] & PG_workingset) != 0
    tiers = lru_tier_from_refs(refs, ws)
    min_seq = np.asarray(g.min_seq, dtype=np.int64)[types]
    np.add.at(g.evicted, (lru_hist_from_seq(min_seq), types, tiers), pm.folio_nr_pages(heads))
    tokens = (min_seq << LRU_REFS_WIDTH) | np.maximum(refs - 1, 0)
    return pack_shadow(np.full(heads.size, lruvec.memcg.id), np.full(heads.size, lruvec.nid),
                       tokens, ws)


def workingset_eviction(lruvec, heads) -> np.ndarray:
    """workingset_eviction(): the MGLRU branch (lru_gen_eviction); the classic LRU's
    eviction-counter branch is not modelled yet, so under it no shadow entry is left (0)."""
    from .classic_lru import lru_gen_enabled

    if not lru_gen_enabled(lruvec.kernel):
        return np.zeros(np.asarray(heads).size, np.int64)
    return lru_gen_eviction(lruvec, heads)


def lru_gen_refault(kernel, heads, shadows) -> None:
    """lru_gen_refault() (§7.8) for freshly allocated folios (not yet on the LRU) that
    replace evicted pages with these shadow entries (0 = none). Counted on the folio's
    lruvec; a shadow from another lruvec (memcg or node) counts nothing."""
    pm = kernel.pm
    heads = np.asarray(heads, np.int64)
    shadows = np.asarray(shadows, np.int64)
    has = shadows != 0
    heads, shadows = heads[has], shadows[has]
    if heads.size == 0:
        return
    memcg_ids, nids, tokens, ws = unpack_shadow(shadows)
    same = (memcg_ids == pm.memcg[heads]) & (nids == pm.node_of(heads))
    heads, tokens, ws, nids = heads[same], tokens[same], ws[same], nids[same]
    if heads.size == 0:
        return
    types = folio_type(pm, heads)
    nr = pm.folio_nr_pages(heads)
    vm = kernel.vmstat
    names = ("anon", "file")
    for t in (0, 1):
        sel = types == t
        if sel.any():
            vm.count(f"workingset_refault_{names[t]}", nids[sel], nr[sel])
    for key in np.unique(memcg_ids[same] * 1024 + nids):
        lruvec = kernel.lruvec(kernel.memcgs.by_id[int(key) // 1024], int(key) % 1024)
        g = lruvec.lrugen
        sel = (pm.memcg[heads].astype(np.int64) * 1024 + nids) == key
        min_seq = np.asarray(g.min_seq, np.int64)[types[sel]]
        recent = (tokens[sel] >> LRU_REFS_WIDTH) == min_seq
        h, t, n = heads[sel][recent], types[sel][recent], nr[sel][recent]
        if h.size == 0:
            continue
        refs = (tokens[sel][recent] & ((1 << LRU_REFS_WIDTH) - 1)) + 1
        w = ws[sel][recent]
        tiers = lru_tier_from_refs(refs, w)
        np.add.at(g.refaulted, (lru_hist_from_seq(min_seq[recent]), t, tiers), n)
        for tt in (0, 1):
            m = t == tt
            if m.any():  # lru_gen_in_fault(): every refault here is a fault
                vm.count(f"workingset_activate_{names[tt]}", lruvec.nid, int(n[m].sum()))
                if w[m].any():
                    vm.count(f"workingset_restore_{names[tt]}", lruvec.nid, int(n[m][w[m]].sum()))
        pm.flags[h[w]] |= PG_workingset
        rest = h[~w]
        pm.lru_gen_refs[rest] = (pm.lru_gen_refs[rest] & ~np.uint8(3 << LRU_REFS_SHIFT)) | \
            ((refs[~w] - 1) << LRU_REFS_SHIFT).astype(np.uint8)


def workingset_refault(kernel, heads, shadows) -> None:
    """workingset_refault(): the MGLRU branch (lru_gen_refault)."""
    lru_gen_refault(kernel, heads, shadows)
