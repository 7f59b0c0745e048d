"""Shadow entries and refaults (mm/workingset.c; mglru-spec §7.7, §7.8).

When reclaim evicts a folio, ``workingset_eviction`` leaves a shadow entry where the folio was
(the page cache slot of a file folio, the swap slot of an anon one). Under MGLRU it is
lru_gen_eviction's: the memcg, the node, a token (min_seq[type] << LRU_REFS_WIDTH | refs - 1)
and the workingset bit. When the page comes back (a major fault), ``workingset_refault``
hands it to lru_gen_refault: workingset_refault_{anon,file} always (when the lruvec matches),
and, when the token's seq equals the current min_seq (the refault is "recent"), refaulted[]
for the PID controller, workingset_activate_* (the refault is a fault, so folio_add_lru
activates it) and the folio's PG_workingset or refs restored.

Under the classic LRU the token is the eviction counter (workingset_eviction's other branch):
each lruvec's ``nonresident_age`` counts evictions and activations (workingset_age_nonresident,
up the memcg hierarchy); the shadow keeps the age of the target memcg's lruvec (the root's in
global reclaim) at eviction. On refault the refault distance is that lruvec's age now minus the
age at eviction; the refault is recent (workingset_test_recent) when the distance is at most the
workingset size (active file, plus inactive file for anon, plus the anon lists when swap has
room, hierarchical over the memcg's subtree); a recent refault is activated (PG_active, so the
folio joins the active list), ages the lruvec and counts workingset_activate_*, and a folio that
was PG_workingset at eviction gets it back, its cost noted (lru_note_cost_refault) and counts
workingset_restore_*. workingset_refault_* counts every refault with a shadow. bucket_order is
0 (EVICTION_BITS, 35 here, cover every machine preset's pages).

The shadow packs into one int64: bit 0 set (xa_mk_value), then workingset (1 bit), node
(10 bits), memcg id (16 bits), token (the rest).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .constants import LRU_REFS_SHIFT, LRU_REFS_WIDTH, PG_active, PG_workingset
from .lru_gen import folio_lru_refs, folio_type, lru_hist_from_seq, lru_tier_from_refs

_WS_SHIFT, _NODE_SHIFT, _MEMCG_SHIFT, _TOKEN_SHIFT = 1, 2, 12, 28
EVICTION_MASK = (1 << (63 - _TOKEN_SHIFT)) - 1      # the classic eviction counter's bits


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


def workingset_age_nonresident(lruvec, nr: int) -> None:
    """workingset_age_nonresident(): add ``nr`` to the nonresident_age of the lruvec and of
    its memcg's ancestors' lruvecs on the node (evictions and activations age them)."""
    k, memcg = lruvec.kernel, lruvec.memcg
    while memcg is not None:
        lv = k.lruvec(memcg, lruvec.nid)
        lv.nonresident_age = nonresident_age(lv) + int(nr)
        memcg = memcg.parent


def nonresident_age(lruvec) -> int:
    return getattr(lruvec, "nonresident_age", 0)


def classic_eviction(lruvec, heads, target_memcg=None) -> np.ndarray:
    """workingset_eviction()'s classic branch: each folio's shadow holds the nonresident_age
    of the target memcg's lruvec on its node (the root's in global reclaim) read before its
    own pages age it."""
    k = lruvec.kernel
    pm = k.pm
    heads = np.asarray(heads, dtype=np.int64)
    if heads.size == 0:
        return np.empty(0, np.int64)
    target = k.lruvec(target_memcg or k.root_memcg, lruvec.nid)
    nr = pm.folio_nr_pages(heads).astype(np.int64)
    before = nonresident_age(target) + np.cumsum(nr) - nr   # one folio after the other
    workingset_age_nonresident(target, int(nr.sum()))
    ws = (pm.flags[heads] & PG_workingset) != 0
    return pack_shadow(np.full(heads.size, target.memcg.id), np.full(heads.size, lruvec.nid),
                       before & EVICTION_MASK, ws)


def workingset_eviction(lruvec, heads, target_memcg=None) -> np.ndarray:
    """workingset_eviction(): lru_gen_eviction under MGLRU, else the eviction counter
    (classic_eviction) against ``target_memcg`` (sc->target_mem_cgroup; None: root)."""
    from .classic_lru import lru_gen_enabled

    if not lru_gen_enabled(lruvec.kernel):
        return classic_eviction(lruvec, heads, target_memcg)
    return lru_gen_eviction(lruvec, heads)


def workingset_size(kernel, memcg, nid: int, file: bool) -> int:
    """workingset_test_recent()'s workingset size on the eviction lruvec (its page state is
    hierarchical: the memcg's whole subtree): active file; for an anon refault the inactive
    file too; with free swap the active anon, and for a file refault the inactive anon."""
    from .classic_lru import (
        LRU_ACTIVE_ANON, LRU_ACTIVE_FILE, LRU_INACTIVE_ANON, LRU_INACTIVE_FILE, lru_sizes,
    )

    sizes = sum(lru_sizes(kernel.lruvec(m, nid)) for m in memcg.iter_tree())
    size = int(sizes[LRU_ACTIVE_FILE])
    if not file:
        size += int(sizes[LRU_INACTIVE_FILE])
    if kernel.swap is not None and kernel.swap.nr_free() > 0:
        size += int(sizes[LRU_ACTIVE_ANON])
        if file:
            size += int(sizes[LRU_INACTIVE_ANON])
    return size


@njit(cache=True, nogil=True)
def _recent_in_order(eviction, nr, file, age, sizes, ages_it, mask):
    """One refault after the other: distance = (age - eviction) & mask against the size for
    its type; a recent one ages the eviction lruvec when it is the folio's or an ancestor's
    (``ages_it``). Returns the recent mask."""
    out = np.zeros(eviction.size, np.bool_)
    for i in range(eviction.size):
        if ((age - eviction[i]) & mask) <= sizes[file[i]]:
            out[i] = True
            if ages_it:
                age += nr[i]
    return out


def _shadowed(heads, shadows):
    """The folios that replace an evicted page (a non-zero shadow entry), with their shadows."""
    heads = np.asarray(heads, np.int64)
    shadows = np.asarray(shadows, np.int64)
    has = shadows != 0
    return heads[has], shadows[has]


def classic_refault(kernel, heads, shadows) -> None:
    """workingset_refault()'s classic branch for freshly allocated folios (not yet on a
    list) replacing evicted pages with these shadows (0 = none), in fault order."""
    from .classic_lru import lru_note_cost

    pm = kernel.pm
    heads, shadows = _shadowed(heads, shadows)
    if heads.size == 0:
        return
    memcg_ids, nids, evictions, ws = unpack_shadow(shadows)
    types = folio_type(pm, heads)
    nr = pm.folio_nr_pages(heads).astype(np.int64)
    node = pm.node_of(heads)
    vm = kernel.vmstat
    names = ("anon", "file")
    for t in (0, 1):
        sel = types == t
        if sel.any():
            vm.count(f"workingset_refault_{names[t]}", node[sel], nr[sel])
    by_id = kernel.memcgs.by_id
    key = (memcg_ids * 1024 + nids) * 65536 + pm.memcg[heads].astype(np.int64) * 1024 + node
    for kk in np.unique(key):
        sel = np.flatnonzero(key == kk)
        ev_memcg = by_id.get(int(memcg_ids[sel[0]]))
        if ev_memcg is None:                         # the memcg is gone: not counted
            continue
        ev_nid = int(nids[sel[0]])
        ev_lv = kernel.lruvec(ev_memcg, ev_nid)
        lv = kernel.lruvec(by_id[int(pm.memcg[heads[sel[0]]])], int(node[sel[0]]))
        m, ages_it = lv.memcg, False
        while m is not None and not ages_it:
            ages_it = m is ev_memcg and lv.nid == ev_nid
            m = m.parent
        sizes = np.array([workingset_size(kernel, ev_memcg, ev_nid, False),
                          workingset_size(kernel, ev_memcg, ev_nid, True)], np.int64)
        recent = _recent_in_order(evictions[sel], nr[sel], types[sel], nonresident_age(ev_lv),
                                  sizes, ages_it, EVICTION_MASK)
        h, t, n, w = heads[sel][recent], types[sel][recent], nr[sel][recent], ws[sel][recent]
        if h.size == 0:
            continue
        pm.flags[h] |= PG_active                     # folio_set_active: the active list
        workingset_age_nonresident(lv, int(n.sum()))
        pm.flags[h[w]] |= PG_workingset
        for tt in (0, 1):
            mt = t == tt
            if mt.any():
                count_workingset_activate(lv, tt, int(n[mt].sum()))
            if (mt & w).any():
                vm.count(f"workingset_restore_{names[tt]}", lv.nid, int(n[mt & w].sum()))
                lru_note_cost(lv, bool(tt), int(n[mt & w].sum()))   # lru_note_cost_refault


def lru_gen_refault(kernel, heads, shadows) -> None:
    """lru_gen_refault() (§7.8) for freshly allocated folios (not yet on the LRU) that
    replace evicted pages with these shadow entries (0 = none). Counted on the folio's
    lruvec; a shadow from another lruvec (memcg or node) counts nothing."""
    pm = kernel.pm
    heads, shadows = _shadowed(heads, shadows)
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
                count_workingset_activate(lruvec, tt, int(n[m].sum()))
                if w[m].any():
                    vm.count(f"workingset_restore_{names[tt]}", lruvec.nid, int(n[m][w[m]].sum()))
        pm.flags[h[w]] |= PG_workingset
        rest = h[~w]
        pm.lru_gen_refs[rest] = (pm.lru_gen_refs[rest] & ~np.uint8(3 << LRU_REFS_SHIFT)) | \
            ((refs[~w] - 1) << LRU_REFS_SHIFT).astype(np.uint8)


def workingset_refault(kernel, heads, shadows) -> None:
    """workingset_refault(): lru_gen_refault under MGLRU, else classic_refault."""
    from .classic_lru import lru_gen_enabled

    if lru_gen_enabled(kernel):
        lru_gen_refault(kernel, heads, shadows)
    else:
        classic_refault(kernel, heads, shadows)


def count_workingset_activate(lruvec, file: int, n: int) -> None:
    """mod_lruvec_state(lruvec, WORKINGSET_ACTIVATE_BASE + type, n): the node's vmstat, and
    the lruvec's hierarchical state on this node for the memcg and every ancestor (what
    prepare_scan_control() compares with the snapshot to decide on deactivation)."""
    k = lruvec.kernel
    k.vmstat.count(f"workingset_activate_{'file' if file else 'anon'}", lruvec.nid, n)
    memcg = lruvec.memcg
    while memcg is not None:
        k.lruvec(memcg, lruvec.nid).workingset_activate[file] += n
        memcg = memcg.parent
