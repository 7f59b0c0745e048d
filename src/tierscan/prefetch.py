"""A software prefetch for compiled loops over random indexes (numba has none).

The IBS run's per-sample passes (the rate model's guide-table draw, the handler's filter
chain, pghot's record update) each read a few entries of tables far larger than the caches
(a 2 Mi-page CDF and guide, pm.order/flags over 72 M pfns, 64.5 M pghot records) at random
positions. One iteration's reads depend on each other (the guide bucket, then the CDF; the
folio order, then the head's flags), so the core keeps only a few iterations' misses in
flight and each sample costs about one memory latency (~100 ns CPU a draw in a full-scale
run). ``prefetch(a, i)`` asks the cache for ``a[i]`` a few iterations ahead (LLVM's
``llvm.prefetch``, a read hint with high locality): several samples' misses then overlap.
A prefetch never faults and changes no value: results are those of the loop without it.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# How many iterations ahead the passes ask for a sample's first table entry (measured on the
# guide-table draw over 2 Mi pages: 8 to 64 give the same ~x1.7); a second, dependent read
# is asked for half as far ahead, once the first has arrived. The passes take it as an
# argument read from here at each call: 0 turns the prefetches off (benchmarks/bench_ibs.py
# times the run both ways; the results are the same).
ahead = 16
# Tables below this size stay in a core's L2 (1 MiB on the EPYC measured), where a prefetch
# only costs its instructions: guide-table draws (exact_kernels.draw_pages, incl. the
# uniforms, ns a draw without / with): 2,097 pages 24 / 38; 65,536 pages (1 MiB of CDF
# and guide) 63.5 / 59.6; 262,144 pages 143 / 92; 1 Mi pages 160 / 112.
SMALL_BYTES = 1 << 20


def distance(nbytes: int) -> int:
    """The prefetch distance for a pass over tables of ``nbytes``: 0 below SMALL_BYTES."""
    return ahead if nbytes >= SMALL_BYTES else 0


@intrinsic
def prefetch(typingctx, arr, idx):
    """In compiled code: hint that ``arr[idx]`` (1-D array, integer index) will be read soon.
    No bounds check is needed (a prefetch of any address is harmless) and nothing is read."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        aryty, idxty = sig.args
        ary = context.make_array(aryty)(context, builder, args[0])
        i = context.cast(builder, args[1], idxty, types.intp)
        byte_ptr = ir.IntType(8).as_pointer()
        ptr = builder.bitcast(builder.gep(ary.data, [i]), byte_ptr)
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32])
        # llvm.prefetch.p0 (opaque pointers) or .p0i8 (typed ones, older llvmlite)
        fn = cgutils.get_or_insert_function(
            builder.module, fnty, "llvm.prefetch." + byte_ptr.intrinsic_name)
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])     # read, keep in all levels, data
        return context.get_dummy_value()

    return types.void(arr, idx), codegen


@njit(cache=True, nogil=True, inline="always")
def prefetch_folio(pfns, first, second, order, flags):
    """For a loop over ``pfns`` that reads each pfn's folio head flags (folio_test_lru() and
    the like): prefetch pfns[first]'s ``order`` entry, and pfns[second]'s head's ``flags``
    entry (``second`` < ``first``: its order has arrived by then). Negative pfns and
    indexes past ``pfns`` are skipped."""
    if first < pfns.size:
        q = pfns[first]
        if q >= 0:
            prefetch(order, q)
    if second < pfns.size:
        q = pfns[second]
        if q >= 0 and q < order.size:
            prefetch(flags, q & ~((np.int64(1) << np.int64(order[q])) - 1))


def take(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``a[idx]`` for a 1-D ``a`` and int64 indexes within it (not checked), gathered by one
    compiled pass that prefetches ``ahead`` entries on (numpy's gather waits on each miss)."""
    out = np.empty(idx.size, a.dtype)
    _take(a, np.ascontiguousarray(idx, np.int64), out, ahead)
    return out


@njit(cache=True, nogil=True)
def _take(a, idx, out, ahead):
    n = idx.size
    for i in range(min(ahead, n)):
        prefetch(a, idx[i])
    for i in range(n):
        if ahead and i + ahead < n:
            prefetch(a, idx[i + ahead])
        out[i] = a[idx[i]]
