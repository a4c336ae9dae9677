"""Sinkhorn–Knopp balancing (:func:`doubly_stochastic`), the array code of FAQ's randomized
starts where the engine has no balancing kernel.

A randomized start (Vogelstein et al. 2015, Algorithm 1 line 1; SciPy's ``P0="randomized"``) is
``(J + DS(K)) / 2`` with ``J = 11ᵀ/n'`` the barycentre and ``DS(K)`` a uniform random matrix
balanced to doubly-stochastic by Sinkhorn–Knopp iterations (drawn in :mod:`._faq`, which calls
the registry's kernel directly where there is one: this module then does not run).

References
----------
R. Sinkhorn, P. Knopp, "Concerning nonnegative matrices and doubly stochastic matrices",
Pacific J. Math. 21 (1967) 343–348, doi:10.2140/pjm.1967.21.343.

J. T. Vogelstein et al., "Fast approximate quadratic programming for graph matching",
PLoS ONE 10 (2015) e0121002, doi:10.1371/journal.pone.0121002.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_backend, is_cupy_array


def doubly_stochastic(P: Any, tol: float = 1e-3, max_iter: int = 1000) -> Any:
    """Sinkhorn–Knopp balancing of positive matrices, one (n, n) or a batch (k, n, n).

    Column then row rescaling, ``r ∘ P ∘ c``, until every row and column sum of a matrix is
    within ``tol`` of 1 (checked first on ``P`` itself; each matrix of a batch stops on its own,
    as if balanced alone) or ``max_iter`` sweeps.  Works on NumPy or CuPy arrays.

    Notes
    -----
    Only the scale vectors are iterated: two batched matrix-vector products per sweep
    (``P c`` and ``rᵀ P``), and the balanced matrix is formed once at the end.  O(k n²) time per
    sweep, one output array of P's size.  On the CPU (float64, Numba enabled) a fused kernel does
    each sweep in one cache-resident pass per matrix (:mod:`fastcka.kernels.qap_cpu`).
    """
    single = P.ndim == 2
    be = get_backend(P, device="gpu" if is_cupy_array(P) else "cpu")
    balance_batch = be.ops("sinkhorn")
    if balance_batch is not None and P.dtype == np.float64:
        out = balance_batch(P[None] if single else P, tol, max_iter)
        return out[0] if single else out
    xp = be.xp
    P3 = P[None] if single else P

    def within(v):
        return (xp.abs(v - 1) < tol).all(axis=1)

    active = ~(within(P3.sum(axis=2)) & within(P3.sum(axis=1)))
    rr = xp.ones(P3.shape[:2], dtype=P3.dtype)
    cc = xp.ones(P3.shape[:2], dtype=P3.dtype)
    c = 1.0 / P3.sum(axis=1)                                    # SciPy's initial scales
    r = 1.0 / xp.matmul(P3, c[:, :, None])[:, :, 0]
    rP = xp.matmul(r[:, None, :], P3)[:, 0, :]
    for _ in range(max_iter):
        if not bool(active.any()):
            break
        c = 1.0 / rP
        r = 1.0 / xp.matmul(P3, c[:, :, None])[:, :, 0]
        a = active[:, None]
        rr = xp.where(a, r, rr)
        cc = xp.where(a, c, cc)
        rP = xp.matmul(r[:, None, :], P3)[:, 0, :]
        # rows of r∘P∘c sum to 1 by construction of r; columns sum to c ∘ (rᵀP)
        active = active & ~within(c * rP)
    out = rr[:, :, None] * P3 * cc[:, None, :]
    return out[0] if single else out
