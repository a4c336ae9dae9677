"""CPU kernels of local CKA (Numba, parallel, cached), each with a plain NumPy twin.

The library (:mod:`fastcka.local_cka`) chooses between the Numba kernel and its NumPy twin
(``FASTCKA_DISABLE_NUMBA=1`` selects the twins).  Every kernel works in float64.

Kernels
-------
``sqdist_exact(A, B)``
    squared Euclidean distances by explicit differences (no ``|a|^2 + |b|^2 - 2ab``
    cancellation, so identical rows give exactly 0).
``lower_median_merge(base_sorted, Q)``
    per query row: the lower median of the union of a sorted vector of base values and the row's
    non-zero entries (the reference code's per-pair median bandwidth).
``rbf_base_stats(D, alphas)``
    for each inverse bandwidth ``alpha``: the row sums ``R`` of ``K = exp(-alpha D)``, its total
    ``T`` and its squared Frobenius norm ``S2``.
``topk_update_rows(S, col0, vals, idx)`` / ``topk_update_cols(S, row0, vals, idx)``
    merge a score block into running top-k lists (kept sorted, best first) of its rows / of its
    columns, in one pass over the block: a value enters only when it beats the current k-th,
    so the cost is one comparison per score once the lists fill.  Ties keep the earlier index
    (blocks must be fed in increasing index order), i.e. the order of a stable sort.
"""

from __future__ import annotations

import numpy as np

try:  # numba is a hard dependency, but keep the NumPy twins importable without it
    import numba
    from numba import njit, prange

    HAVE_NUMBA = True
except Exception:  # pragma: no cover - numba missing or broken
    HAVE_NUMBA = False

# --------------------------------------------------------------------------------------------
# NumPy twins (also the reference semantics of the Numba kernels)
# --------------------------------------------------------------------------------------------


def sqdist_exact_numpy(A: np.ndarray, B: np.ndarray, chunk_elems: int = 1 << 22) -> np.ndarray:
    """Squared distances ``D[i, j] = sum_k (A[i, k] - B[j, k])**2`` by explicit differences.

    Memory: row chunks of ``A`` keep the ``chunk x nb x d`` temporary under ``chunk_elems``.
    """
    A = np.ascontiguousarray(A, dtype=np.float64)
    B = np.ascontiguousarray(B, dtype=np.float64)
    na, nb, d = A.shape[0], B.shape[0], A.shape[1]
    out = np.empty((na, nb))
    step = max(1, chunk_elems // max(1, nb * d))
    for i0 in range(0, na, step):
        diff = A[i0:i0 + step, None, :] - B[None, :, :]
        out[i0:i0 + step] = np.einsum("ijk,ijk->ij", diff, diff)
    return out


def _kth_of_union(base: np.ndarray, q: np.ndarray, nq: int, k: int) -> float:
    """The ``k``-th smallest (0-based) of the union of ``base`` and ``q[:nq]``, both sorted.

    Plain Python for the NumPy fallback; the Numba kernels compile this same function.
    """
    j = k + 1  # number of smallest elements taken
    nb = base.shape[0]
    lo, hi = max(0, j - nb), min(nq, j)
    while lo < hi:  # smallest t with not (q[t] < base[j-t-1])
        t = (lo + hi) // 2
        if q[t] < base[j - t - 1]:
            lo = t + 1
        else:
            hi = t
    t = lo
    best = -np.inf
    if t > 0:
        best = q[t - 1]
    if j - t > 0 and base[j - t - 1] > best:
        best = base[j - t - 1]
    return best


def lower_median_merge_numpy(base_sorted: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Lower median of ``base_sorted`` (sorted, all > 0) joined with each row's non-zero entries.

    Parameters
    ----------
    base_sorted : (M,) float64, ascending, strictly positive
    Q : (q, p) float64, non-negative

    Returns
    -------
    (q,) float64; ``nan`` for a row whose union is empty.
    """
    out = np.empty(Q.shape[0])
    for i in range(Q.shape[0]):
        row = np.sort(Q[i][Q[i] > 0])
        n = base_sorted.shape[0] + row.shape[0]
        out[i] = np.nan if n == 0 else _kth_of_union(base_sorted, row, row.shape[0], (n - 1) // 2)
    return out


def rbf_base_stats_numpy(D: np.ndarray, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                          np.ndarray]:
    """Row sums, total and squared Frobenius norm of ``exp(-alpha D)`` for each alpha.

    Parameters
    ----------
    D : (p, p) float64, symmetric, zero diagonal
    alphas : (m,) float64

    Returns
    -------
    R : (m, p), T : (m,), S2 : (m,)
    """
    m, p = alphas.shape[0], D.shape[0]
    R = np.empty((m, p))
    T = np.empty(m)
    S2 = np.empty(m)
    for u in range(m):
        E = np.exp(-alphas[u] * D)
        R[u] = E.sum(axis=1)
        T[u] = R[u].sum()
        S2[u] = np.einsum("ij,ij->", E, E)
    return R, T, S2


# --------------------------------------------------------------------------------------------
# Numba kernels
# --------------------------------------------------------------------------------------------

if HAVE_NUMBA:

    # reassociation lets the reduction vectorise (SIMD); identical rows still give exactly 0
    _FM = {"reassoc", "contract"}

    @njit(cache=True, fastmath=_FM, inline="always")
    def _sqdist_row_nb(a, B, j0, out_row):  # pragma: no cover - compiled
        for j in range(j0, B.shape[0]):
            s = 0.0
            for k in range(a.shape[0]):
                t = a[k] - B[j, k]
                s += t * t
            out_row[j] = s

    @njit(parallel=True, cache=True, fastmath=_FM)
    def _sqdist_exact_nb(A, B):  # pragma: no cover - compiled
        # register blocks of 2 rows of A x 4 rows of B: each loaded value serves 4 or 2 of the
        # 8 sums (the one-pair loop was load-bound: 2 loads per difference), 1.5-1.9x at
        # 500 x 320 x 384..1280; every entry is still the sum of (a_k - b_k)^2, so identical
        # rows give exactly 0
        na, nb, d = A.shape[0], B.shape[0], A.shape[1]
        out = np.empty((na, nb))
        nb4 = nb - nb % 4
        for h in prange((na + 1) // 2):
            i = 2 * h
            if i + 1 == na:  # the odd last row
                _sqdist_row_nb(A[i], B, 0, out[i])
                continue
            a, c = A[i], A[i + 1]
            for j in range(0, nb4, 4):
                b0, b1, b2, b3 = B[j], B[j + 1], B[j + 2], B[j + 3]
                s0 = s1 = s2 = s3 = u0 = u1 = u2 = u3 = 0.0
                for k in range(d):
                    x, y = a[k], c[k]
                    v0, v1, v2, v3 = b0[k], b1[k], b2[k], b3[k]
                    t = x - v0
                    s0 += t * t
                    t = x - v1
                    s1 += t * t
                    t = x - v2
                    s2 += t * t
                    t = x - v3
                    s3 += t * t
                    t = y - v0
                    u0 += t * t
                    t = y - v1
                    u1 += t * t
                    t = y - v2
                    u2 += t * t
                    t = y - v3
                    u3 += t * t
                out[i, j], out[i, j + 1], out[i, j + 2], out[i, j + 3] = s0, s1, s2, s3
                out[i + 1, j], out[i + 1, j + 1], out[i + 1, j + 2], out[i + 1, j + 3] = (
                    u0, u1, u2, u3)
            _sqdist_row_nb(a, B, nb4, out[i])
            _sqdist_row_nb(c, B, nb4, out[i + 1])
        return out

    @njit(parallel=True, cache=True, fastmath=_FM)
    def _sqdist_self_nb(A):  # pragma: no cover - compiled
        n, d = A.shape
        out = np.zeros((n, n))
        for i in prange(n):
            for j in range(i + 1, n):
                s = 0.0
                for k in range(d):
                    t = A[i, k] - A[j, k]
                    s += t * t
                out[i, j] = s
        for i in range(n):
            for j in range(i + 1, n):
                out[j, i] = out[i, j]
        return out

    _kth_of_union_nb = njit(cache=True)(_kth_of_union)

    @njit(parallel=True, cache=True)
    def _lower_median_merge_nb(base_sorted, Q):  # pragma: no cover - compiled
        nq, p = Q.shape
        out = np.empty(nq)
        for i in prange(nq):
            row = np.empty(p)
            m = 0
            for a in range(p):
                v = Q[i, a]
                if v > 0.0:
                    row[m] = v
                    m += 1
            srt = np.sort(row[:m])
            n = base_sorted.shape[0] + m
            if n == 0:
                out[i] = np.nan
            else:
                out[i] = _kth_of_union_nb(base_sorted, srt, m, (n - 1) // 2)
        return out

    @njit(parallel=True, cache=True)
    def _rbf_base_stats_nb(D, alphas):  # pragma: no cover - compiled
        m, p = alphas.shape[0], D.shape[0]
        R = np.empty((m, p))
        T = np.empty(m)
        S2 = np.empty(m)
        for u in prange(m):
            al = alphas[u]
            for a in range(p):
                R[u, a] = 1.0  # exp(-alpha * 0) on the diagonal
            s2 = float(p)
            for a in range(p):
                acc = 0.0
                for b in range(a + 1, p):
                    e = np.exp(-al * D[a, b])
                    acc += e
                    R[u, b] += e
                    s2 += 2.0 * e * e
                R[u, a] += acc
            t = 0.0
            for a in range(p):
                t += R[u, a]
            T[u] = t
            S2[u] = s2
        return R, T, S2

    @njit(cache=True, inline="always")
    def _insert(gv, gi, v, j):  # pragma: no cover - compiled
        k = gv.shape[0]
        pos = k - 1
        while pos > 0 and gv[pos - 1] < v:
            gv[pos] = gv[pos - 1]
            gi[pos] = gi[pos - 1]
            pos -= 1
        gv[pos] = v
        gi[pos] = j

    @njit(parallel=True, cache=True)
    def _topk_rows_nb(S, col0, vals, idx):  # pragma: no cover - compiled
        nr, nc = S.shape
        k = vals.shape[1]
        for r in prange(nr):
            gv = vals[r]
            gi = idx[r]
            thr = gv[k - 1]
            for c in range(nc):
                v = S[r, c]
                if v > thr:
                    _insert(gv, gi, v, col0 + c)
                    thr = gv[k - 1]

    @njit(parallel=True, cache=True)
    def _topk_cols_nb(S, row0, vals, idx):  # pragma: no cover - compiled
        nr, nc = S.shape
        k = vals.shape[1]
        width = 32
        nchunk = (nc + width - 1) // width
        for ch in prange(nchunk):
            c0 = ch * width
            c1 = min(nc, c0 + width)
            for r in range(nr):
                for c in range(c0, c1):
                    v = S[r, c]
                    if v > vals[c, k - 1]:
                        _insert(vals[c], idx[c], v, row0 + r)

    def numba_threads() -> int:
        return int(numba.get_num_threads())


def sqdist_exact(A: np.ndarray, B: np.ndarray, *, use_numba: bool = True) -> np.ndarray:
    """Exact squared distances (Numba when available and ``use_numba``). Shape ``(na, nb)``."""
    same = A is B
    A = np.ascontiguousarray(A, dtype=np.float64)
    B = A if same else np.ascontiguousarray(B, dtype=np.float64)
    if use_numba and HAVE_NUMBA:
        if same:
            return _sqdist_self_nb(A)
        return _sqdist_exact_nb(A, B)
    return sqdist_exact_numpy(A, B)


def lower_median_merge(base_sorted: np.ndarray, Q: np.ndarray, *, use_numba: bool = True
                       ) -> np.ndarray:
    """Per-row lower median of ``base_sorted`` joined with the row's non-zero entries."""
    base_sorted = np.ascontiguousarray(base_sorted, dtype=np.float64)
    Q = np.ascontiguousarray(Q, dtype=np.float64)
    if use_numba and HAVE_NUMBA:
        return _lower_median_merge_nb(base_sorted, Q)
    return lower_median_merge_numpy(base_sorted, Q)


def rbf_base_stats(D: np.ndarray, alphas: np.ndarray, *, use_numba: bool = True):
    """``(R, T, S2)`` of ``exp(-alpha D)`` for each alpha (see module docstring)."""
    D = np.ascontiguousarray(D, dtype=np.float64)
    alphas = np.ascontiguousarray(alphas, dtype=np.float64)
    if use_numba and HAVE_NUMBA:
        return _rbf_base_stats_nb(D, alphas)
    return rbf_base_stats_numpy(D, alphas)


def topk_update_rows_numpy(S, col0, vals, idx):
    """NumPy twin of the row merge (full stable sort of running + block values)."""
    k = vals.shape[1]
    cand_v = np.concatenate([vals, S], axis=1)
    cand_i = np.concatenate([idx, col0 + np.broadcast_to(np.arange(S.shape[1]), S.shape)], axis=1)
    order = np.argsort(-cand_v, axis=1, kind="stable")[:, :k]
    vals[:] = np.take_along_axis(cand_v, order, axis=1)
    idx[:] = np.take_along_axis(cand_i, order, axis=1)


def topk_update_rows(S, col0: int, vals, idx, *, use_numba: bool = True) -> None:
    """Merge block ``S`` (rows = the rows of ``vals``) into sorted top-k lists, in place.

    Parameters
    ----------
    S : (nr, nc) float64 block; column c is global index ``col0 + c``
    vals : (nr, k) float64, each row sorted descending (``-inf`` = empty slot)
    idx : (nr, k) int64
    """
    if use_numba and HAVE_NUMBA:
        _topk_rows_nb(np.ascontiguousarray(S), int(col0), vals, idx)
    else:
        topk_update_rows_numpy(S, col0, vals, idx)


def topk_update_cols(S, row0: int, vals, idx, *, use_numba: bool = True) -> None:
    """Merge block ``S`` into the sorted top-k lists of its *columns* (``vals`` is (nc, k))."""
    if use_numba and HAVE_NUMBA:
        _topk_cols_nb(np.ascontiguousarray(S), int(row0), vals, idx)
    else:
        topk_update_rows_numpy(np.ascontiguousarray(S.T), row0, vals, idx)


# --------------------------------------------------------------------------------------------
# op sets of the registry (fastcka.kernels.ops("local_cka" | "topk", "numba" | "numpy"))
# --------------------------------------------------------------------------------------------

class _LocalOps:
    """``sqdist_exact(A, B)``, ``lower_median_merge(base_sorted, Q)``, ``rbf_base_stats(D, a)``."""

    def __init__(self, name: str, use_numba: bool):
        self.name, self.use_numba = name, use_numba

    def sqdist_exact(self, A, B):
        return sqdist_exact(A, B, use_numba=self.use_numba)

    def lower_median_merge(self, base_sorted, Q):
        return lower_median_merge(base_sorted, Q, use_numba=self.use_numba)

    def rbf_base_stats(self, D, alphas):
        return rbf_base_stats(D, alphas, use_numba=self.use_numba)


class _TopkOps:
    """``update_rows(S, col0, vals, idx)`` / ``update_cols(S, row0, vals, idx)``, in place."""

    def __init__(self, name: str, use_numba: bool):
        self.name, self.use_numba = name, use_numba

    def update_rows(self, S, col0, vals, idx):
        topk_update_rows(S, col0, vals, idx, use_numba=self.use_numba)

    def update_cols(self, S, row0, vals, idx):
        topk_update_cols(S, row0, vals, idx, use_numba=self.use_numba)


def numba_ops() -> _LocalOps:
    return _LocalOps("numba", True)


def numpy_ops() -> _LocalOps:
    return _LocalOps("numpy", False)


def numba_topk_ops() -> _TopkOps:
    return _TopkOps("numba", True)


def numpy_topk_ops() -> _TopkOps:
    return _TopkOps("numpy", False)
