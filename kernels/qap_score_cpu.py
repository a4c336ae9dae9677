"""QAP objectives of many permutations at once (Numba, CPU): FAQ's restarts scored in float64.

``perm_objectives(A, B, perms)`` gives, for every row ``p`` of ``perms``, the objective
``Σ_ij A[i, j] · B[p_i, p_j]`` (SciPy's ``fun``, ``trace(Aᵀ P B Pᵀ)``) and the sum of the
terms' magnitudes ``Σ_ij |A[i, j] · B[p_i, p_j]|``, in one pass over ``A`` per permutation and
without the two n×n gathers ``B[p][:, p]`` of the array formulation (which also makes a
temporary of each).  Permutations are scored in parallel threads.

The value is a plain running float64 sum (row by row), not NumPy's pairwise sum: it differs from
``numpy.sum(A * B[p][:, p])`` by rounding, at most ``(n² + 1) · eps · Σ|terms|``
(Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §4.2, the recursive sum
bound, plus one rounding of each product).  The library uses that bound to decide which
permutations it must rescore with the array formulation (:func:`fastcka.qap._faq._objectives`).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True)
def _one(A, B, p):  # pragma: no cover
    n = A.shape[0]
    val = 0.0
    mag = 0.0
    for i in range(n):
        Bi = B[p[i]]
        row = 0.0
        rmag = 0.0
        for j in range(n):
            t = A[i, j] * Bi[p[j]]
            row += t
            rmag += abs(t)
        val += row
        mag += rmag
    return val, mag


@njit(cache=True, parallel=True)
def _many(A, B, perms, val, mag):  # pragma: no cover
    for r in prange(perms.shape[0]):
        val[r], mag[r] = _one(A, B, perms[r])


def perm_objectives(A: np.ndarray, B: np.ndarray, perms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(objective, Σ|terms|) of each permutation row of ``perms`` (r, n) on square ``A``, ``B``.

    Both float64; ``A`` and ``B`` are converted to float64 C-contiguous, ``perms`` to int64.
    """
    A = np.ascontiguousarray(A, dtype=np.float64)
    B = np.ascontiguousarray(B, dtype=np.float64)
    perms = np.ascontiguousarray(perms, dtype=np.int64)
    if A.ndim != 2 or A.shape != B.shape or A.shape[0] != A.shape[1]:
        raise ValueError(f"A and B must be square and of one shape, got {A.shape} and {B.shape}")
    if perms.ndim != 2 or perms.shape[1] != A.shape[0]:
        raise ValueError(f"perms must be (r, {A.shape[0]}), got {perms.shape}")
    val = np.empty(len(perms))
    mag = np.empty(len(perms))
    if len(perms):
        _many(A, B, perms, val, mag)
    return val, mag


def rounding_bound(n: int, mag: np.ndarray) -> np.ndarray:
    """Bound on ``|perm_objectives value - exact objective|`` for n×n matrices: (n²+1)·eps·mag."""
    return (float(n) * n + 1.0) * np.finfo(np.float64).eps * np.asarray(mag)


def numba_ops():
    return perm_objectives
