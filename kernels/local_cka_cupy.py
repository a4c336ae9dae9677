"""GPU op sets of local CKA and of the streaming top-k (the twins of :mod:`local_cka_cpu`).

Registered as ``ops("local_cka", "cupy")`` and ``ops("topk", "cupy")``.  The array code is
written against the array module of its inputs (CuPy on a GPU), so the CPU tests run the very
same functions on NumPy arrays; the per-query median and the RBF base statistics call the Numba
CUDA kernels of :mod:`local_cka_cuda` (run by the simulator on NumPy arrays in the tests).

``sqdist_exact(A, B)``
    explicit differences in row chunks (temporaries of at most ``CHUNK_ELEMS`` float64).
``lower_median_merge(base_sorted, Q)``
    each row's non-zero entries sorted on the device, then one thread per row merges them with
    the sorted base values.
``rbf_base_stats(D, alphas)``
    one thread per (alpha, base row).
``update_rows(S, col0, vals, idx)`` / ``update_cols(S, row0, vals, idx)``
    merge a block into running top-k lists, in place: the block's best k per row by partial
    selection, merged with the running lists, sorted best first.  Ties at the k-th place are
    broken arbitrarily (device selection is not stable).
"""

from __future__ import annotations

import numpy as np

from . import array_module

CHUNK_ELEMS = 1 << 22  # float64 elements of one difference temporary (32 MiB)


# --------------------------------------------------------------------------------------------
# local CKA
# --------------------------------------------------------------------------------------------

def sqdist_exact(A, B, chunk_elems: int = CHUNK_ELEMS):
    """Squared distances by explicit differences (identical rows give exactly 0)."""
    xp = array_module(A)
    out = xp.empty((A.shape[0], B.shape[0]), dtype=np.float64)
    step = max(1, chunk_elems // max(1, B.shape[0] * A.shape[1]))
    for i0 in range(0, A.shape[0], step):
        diff = A[i0:i0 + step, None, :] - B[None, :, :]
        out[i0:i0 + step] = (diff * diff).sum(axis=2)
    return out


def lower_median_merge(base_sorted, Q):
    """Per row: lower median of ``base_sorted`` joined with the row's non-zero entries."""
    from . import local_cka_cuda as kcu

    xp = array_module(Q)
    counts = (Q > 0).sum(axis=1).astype(np.int64)
    Qs = xp.sort(xp.where(Q > 0, Q, xp.inf), axis=1)
    return kcu.lower_median_sorted(xp.ascontiguousarray(base_sorted), xp.ascontiguousarray(Qs),
                                   counts)


def rbf_base_stats(D, alphas):
    """``(R, T, S2)`` of ``exp(-alpha D)`` for each alpha."""
    from . import local_cka_cuda as kcu

    xp = array_module(D)
    return kcu.rbf_base_stats(xp.ascontiguousarray(D), xp.ascontiguousarray(alphas))


# --------------------------------------------------------------------------------------------
# streaming top-k
# --------------------------------------------------------------------------------------------

def _merge_topk(xp, run_v, run_i, blk, offset, k):
    """Merge a block's best ``k`` per row into the running (values, indices) of each row."""
    kk = min(k, blk.shape[1])
    if kk < blk.shape[1]:
        part = xp.argpartition(-blk, kk - 1, axis=1)[:, :kk]
    else:
        part = xp.broadcast_to(xp.arange(blk.shape[1])[None, :], blk.shape)
    vals = xp.take_along_axis(blk, part, axis=1)
    cand_v = xp.concatenate([run_v, vals], axis=1)
    cand_i = xp.concatenate([run_i, part + offset], axis=1)
    if cand_v.shape[1] > k:
        sel = xp.argpartition(-cand_v, k - 1, axis=1)[:, :k]
        cand_v = xp.take_along_axis(cand_v, sel, axis=1)
        cand_i = xp.take_along_axis(cand_i, sel, axis=1)
    return cand_v, cand_i


def _sort_desc(xp, v, i):
    order = xp.argsort(-v, axis=1)
    return xp.take_along_axis(v, order, axis=1), xp.take_along_axis(i, order, axis=1)


def topk_update_rows(S, col0, vals, idx):
    """Merge block ``S`` (rows = the rows of ``vals``) into the top-k lists ``vals``/``idx``."""
    xp = array_module(S)
    v, i = _merge_topk(xp, vals, idx, S, int(col0), vals.shape[1])
    vals[...], idx[...] = _sort_desc(xp, v, i)


def topk_update_cols(S, row0, vals, idx):
    """Merge block ``S`` into the top-k lists of its *columns* (``vals`` is (nc, k))."""
    topk_update_rows(S.T, row0, vals, idx)


class _LocalOps:
    name = "cupy"
    sqdist_exact = staticmethod(sqdist_exact)
    lower_median_merge = staticmethod(lower_median_merge)
    rbf_base_stats = staticmethod(rbf_base_stats)


class _TopkOps:
    name = "cupy"
    update_rows = staticmethod(topk_update_rows)
    update_cols = staticmethod(topk_update_cols)


def local_cka_ops():
    return _LocalOps


def topk_ops():
    return _TopkOps
