"""The free block of one seeded QAP, on the compute device: dense or factored.

With the ``m`` seeds first (rows of ``A`` by ``perm_A``, of ``B`` by ``perm_B``), the seeded
objective of Fishkind et al. (2019) splits into a constant (seeds against seeds), a linear term
``trace(Cᵀ P)`` with ``C = A₂₁ B₂₁ᵀ + A₁₂ᵀ B₁₂ (+ S₂₂)`` and the quadratic term
``trace(A₂₂ᵀ P B₂₂ Pᵀ)`` over the ``n' = n - m`` free nodes.  The Frank–Wolfe loop only ever
needs ``C``, ``M(P) = A₂₂ P B₂₂ᵀ`` (and ``A₂₂ᵀ P B₂₂`` when asymmetric) for a stack of
doubly-stochastic ``P`` or of permutations ``Q``, and the barycentre's ``M(J)``: the two
dataclasses here give exactly that, for dense matrices and for feature matrices ``X``, ``Y``
standing for the kernels ``XXᵀ``, ``YYᵀ`` (never formed).

References
----------
D. E. Fishkind, S. Adali, H. G. Patsolic, L. Meng, D. Singh, V. Lyzinski, C. E. Priebe,
"Seeded graph matching", Pattern Recognition 87 (2019) 203–215, doi:10.1016/j.patcog.2018.09.014.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import Backend

# A (or B) whose max |A - Aᵀ| is at most this times max |A| counts as symmetric (rounding left
# by centring, e.g. H K H) and is iterated on as (A + Aᵀ) / 2 with the one-GEMM iteration
SYMMETRY_RTOL = 1e-12


def _lmul(xp, W, X):
    """W @ X[r] for every r of the stack X (k, a, b); W (c, a): one batched ``matmul``."""
    return xp.matmul(W, X)


def _rmul(xp, X, W):
    """X[r] @ W for every r of the stack X (k, a, b); W (b, c).  One (k·a)×b GEMM."""
    k, a, b = X.shape
    if not X.flags.c_contiguous if hasattr(X, "flags") else False:
        X = xp.ascontiguousarray(X)
    return (X.reshape(k * a, b) @ W).reshape(k, a, W.shape[1])


@dataclass
class DenseProblem:
    """Free block of a dense problem: ``A₂₂``, ``B₂₂`` (and transposes, C-contiguous), ``C``."""

    A22: Any
    B22T: Any
    A22T: Any
    B22: Any
    C: Any
    symmetric: bool
    linear: bool            # C is not identically zero (seeds or S)
    dtype: np.dtype
    xp: Any
    cache: dict = field(default_factory=dict)   # results shared by the problem's batches
    factored = False

    @property
    def n(self) -> int:
        return self.A22.shape[0]

    def apply(self, P, transpose=False):
        """A₂₂ P B₂₂ᵀ (or A₂₂ᵀ P B₂₂) for a stack P (k, n, n): two GEMMs per restart."""
        W, R = (self.A22T, self.B22) if transpose else (self.A22, self.B22T)
        Y = _rmul(self.xp, P, R)
        if self.xp is not np:
            return _lmul(self.xp, W, Y)
        # on the CPU W·Y[r] for all r as one tall GEMM, (Y[r]ᵀ Wᵀ)ᵀ over the stacked Y[r]ᵀ:
        # ~1.4× faster than k batched n×n products at n = 500
        k, a, b = Y.shape
        Yt = np.ascontiguousarray(Y.transpose(0, 2, 1))
        del Y
        return (Yt.reshape(k * b, a) @ W.T).reshape(k, b, W.shape[0]).transpose(0, 2, 1)

    def apply_perm(self, cols, transpose=False):
        """A₂₂ Q B₂₂ᵀ for permutations Q (Q[i, cols[i]] = 1): a row gather plus one GEMM."""
        if transpose:
            return self.xp.matmul(self.A22T, self.B22[cols])
        return self.xp.matmul(self.A22, self.B22T[cols])

    def barycenter_factors(self, transpose=False):
        """(u, w) with A₂₂ J B₂₂ᵀ = u wᵀ / n, J = 11ᵀ/n."""
        if transpose:
            return self.A22.sum(axis=0), self.B22.sum(axis=0)
        return self.A22.sum(axis=1), self.B22.sum(axis=1)


@dataclass
class FactoredProblem:
    """Free block of a factored problem: features ``X₂``, ``Y₂`` (kernels ``X₂X₂ᵀ``, ``Y₂Y₂ᵀ``)."""

    X2: Any
    Y2: Any
    C: Any
    linear: bool
    dtype: np.dtype
    xp: Any
    cache: dict = field(default_factory=dict)
    factored = True
    symmetric = True        # linear kernels are symmetric

    @property
    def n(self) -> int:
        return self.X2.shape[0]

    def apply(self, P, transpose=False):
        """X₂ (X₂ᵀ P Y₂) Y₂ᵀ for a stack P: (p×n')(n'×q) products, never an n'×n' kernel."""
        xp = self.xp
        W = _rmul(xp, _lmul(xp, self.X2.T, P), self.Y2)            # X2ᵀ P Y2  (k, p, q)
        return _rmul(xp, _lmul(xp, self.X2, W), self.Y2.T)

    def apply_perm(self, cols, transpose=False):
        xp = self.xp
        W = _lmul(xp, self.X2.T, self.Y2[cols])                      # X2ᵀ Q Y2  (k, p, q)
        return _rmul(xp, _lmul(xp, self.X2, W), self.Y2.T)

    def barycenter_factors(self, transpose=False):
        return self.X2 @ self.X2.sum(axis=0), self.Y2 @ self.Y2.sum(axis=0)


Problem = DenseProblem | FactoredProblem


def barycenter_M(pr: Problem, transpose=False):
    """A₂₂ J B₂₂ᵀ with J = 11ᵀ/n: rank one, O(n²)."""
    u, w = pr.barycenter_factors(transpose)
    return pr.xp.outer(u, w) / pr.n


def near_symmetric(xp, M) -> bool:
    """max |M - Mᵀ| <= SYMMETRY_RTOL * max |M| (exactly symmetric for an all-zero M)."""
    if M.size == 0:
        return True
    return float(xp.abs(M - M.T).max()) <= SYMMETRY_RTOL * float(xp.abs(M).max())


def build_problem(be: Backend, A, B, S, perm_A, perm_B, m, dtype, factored) -> Problem:
    """The free block of ``A``, ``B`` (rows/columns reordered seeds first) in ``dtype`` on ``be``."""
    xp = be.xp
    pa = be.asarray(perm_A)
    pb = be.asarray(perm_B)
    linear = bool(m) or S is not None
    if factored:
        X = be.asarray(A, dtype)[pa]
        Y = be.asarray(B, dtype)[pb]
        X1, X2 = X[:m], X[m:]
        Y1, Y2 = Y[:m], Y[m:]
        # linear term of the free block: A21 B21ᵀ + A12ᵀ B12 = 2 X2 (X1ᵀ Y1) Y2ᵀ
        C = 2.0 * (X2 @ (X1.T @ Y1)) @ Y2.T if m else xp.zeros((len(X2), len(Y2)), dtype)
        if S is not None:
            C = C + be.asarray(S, dtype)[pa[m:]][:, pb[m:]]
        return FactoredProblem(X2=X2, Y2=Y2, C=C, linear=linear, dtype=dtype, xp=xp)
    Ad = be.asarray(A, dtype)[pa][:, pa]
    Bd = be.asarray(B, dtype)[pb][:, pb]
    sym = near_symmetric(xp, Ad) and near_symmetric(xp, Bd)
    if sym:  # rounding-level asymmetry: iterate on the symmetric parts
        Ad = 0.5 * (Ad + Ad.T) if not bool(xp.array_equal(Ad, Ad.T)) else Ad
        Bd = 0.5 * (Bd + Bd.T) if not bool(xp.array_equal(Bd, Bd.T)) else Bd
    A12, A21, A22 = Ad[:m, m:], Ad[m:, :m], Ad[m:, m:]
    B12, B21, B22 = Bd[:m, m:], Bd[m:, :m], Bd[m:, m:]
    # Fishkind et al. 2019: the seeded objective's linear term, A₂₁ B₂₁ᵀ + A₁₂ᵀ B₁₂
    C = A21 @ B21.T + A12.T @ B12 if m else xp.zeros_like(A22)
    if S is not None:
        C = C + be.asarray(S, dtype)[pa[m:]][:, pb[m:]]
    c = xp.ascontiguousarray
    return DenseProblem(A22=c(A22), B22T=c(B22.T), A22T=c(A22.T), B22=c(B22), C=c(C),
                        symmetric=sym, linear=linear, dtype=dtype, xp=xp)


def pad_pair(xp, A, B, padding: str):
    """``A``, ``B`` zero-padded to a common size (``"adopted"``: ``2X - 1`` first), float64."""
    A = A.astype(np.float64)
    B = B.astype(np.float64)
    if padding == "adopted":
        A = 2.0 * A - 1.0
        B = 2.0 * B - 1.0
    n = max(len(A), len(B))

    def pad(X):
        out = xp.zeros((n, n))
        out[:len(X), :len(X)] = X
        return out

    return pad(A), pad(B)
