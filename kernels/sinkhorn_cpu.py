"""Sinkhorn–Knopp balancing of a batch of positive matrices on the CPU (Numba).

Same iteration and stopping rule as :func:`fastcka.qap.doubly_stochastic` (and SciPy's FAQ
initialisation): column then row scales, stop when every row and column sum of ``r ∘ P ∘ c`` is
within ``tol`` of 1 (checked on ``P`` itself first), at most ``max_iter`` sweeps.

Each sweep is a *single* pass over the matrix: row ``i`` gives ``r_i = 1 / (P_i · c)`` and, while
still in L1 cache, adds ``r_i P_i`` to the column sums ``rᵀP`` needed by the next sweep and by the
stopping test.  Matrices of a batch are balanced in parallel threads and stay cache-resident across
their sweeps; the NumPy formulation instead streams the whole batch through memory several times
per sweep.  The output can be an affine map ``alpha + beta · (r ∘ P ∘ c)`` (FAQ's randomized start
is ``(J/n + DS(K)) / 2``), written once.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True, error_model="numpy")     # x/0 -> inf, as in the NumPy path
def _balance_one(P, tol, max_iter, alpha, beta, out, r, c, rP):  # pragma: no cover
    n = P.shape[0]
    for j in range(n):
        rP[j] = 0.0
    ok = True
    for i in range(n):
        s = 0.0
        for j in range(n):
            v = P[i, j]
            s += v
            rP[j] += v
        if not abs(s - 1.0) < tol:
            ok = False
    for j in range(n):
        if not abs(rP[j] - 1.0) < tol:
            ok = False
    if ok:
        for i in range(n):
            r[i] = 1.0
        for j in range(n):
            c[j] = 1.0
    else:
        # sweep 0 gives SciPy's initial scales (rP holds the column sums, so c = 1 / colsums);
        # each of the up to max_iter sweeps after it ends with the stopping test
        for sweep in range(max_iter + 1):
            for j in range(n):
                c[j] = 1.0 / rP[j]
                rP[j] = 0.0
            for i in range(n):
                s = 0.0
                for j in range(n):
                    s += P[i, j] * c[j]
                ri = 1.0 / s
                r[i] = ri
                for j in range(n):
                    rP[j] += ri * P[i, j]
            if sweep == 0:
                continue
            # rows of r∘P∘c sum to 1 by construction of r; columns sum to c ∘ (rᵀP)
            done = True
            for j in range(n):
                if not abs(c[j] * rP[j] - 1.0) < tol:
                    done = False
                    break
            if done:
                break
    for i in range(n):
        bi = beta * r[i]
        for j in range(n):
            out[i, j] = alpha + bi * P[i, j] * c[j]


@njit(cache=True, parallel=True, error_model="numpy")
def _balance_batch(P, tol, max_iter, alpha, beta, out):  # pragma: no cover
    k, n, _ = P.shape
    for b in prange(k):
        r = np.empty(n)
        c = np.empty(n)
        rP = np.empty(n)
        _balance_one(P[b], tol, max_iter, alpha, beta, out[b], r, c, rP)


def balance_batch(P: np.ndarray, tol: float = 1e-3, max_iter: int = 1000, alpha: float = 0.0,
                  beta: float = 1.0, out: np.ndarray | None = None) -> np.ndarray:
    """``alpha + beta · DS(P[b])`` for every matrix of a (k, n, n) float64 batch.

    ``out`` (k, n, n; float64 or float32, C-contiguous) may be given; it must not alias ``P``.
    """
    P = np.ascontiguousarray(P, dtype=np.float64)
    if P.ndim != 3 or P.shape[1] != P.shape[2]:
        raise ValueError(f"P must be (k, n, n), got shape {P.shape}")
    if out is None:
        out = np.empty_like(P)
    if P.shape[1]:
        _balance_batch(P, float(tol), int(max_iter), float(alpha), float(beta), out)
    return out
