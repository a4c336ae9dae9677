"""Naive float64 references shared by the tests: n×n matrices, explicit H, explicit loops.

Each function is the textbook definition, written for clarity, never for speed: CKA/HSIC with the
explicit centring matrix, the kernels and their bandwidths, local CKA pair by pair, the k nearest
neighbours by a full sort, CKNNA, and top-k by a full stable argsort; for the QAP solvers the
objective of a permutation, padding by hand, plain Sinkhorn balancing, the LAP optimum over all
permutations and SciPy's FAQ iteration in exact rational arithmetic.
"""

from __future__ import annotations

import math

import numpy as np


def sqd(X):
    """All squared Euclidean distances between the rows of X."""
    X = np.asarray(X, dtype=np.float64)
    return ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)


def lower_median_nonzero(D):
    """torch.median of the non-zero entries: the lower middle one."""
    v = np.sort(D[D != 0])
    return v[(v.size - 1) // 2]


def naive_hsic(K, L, unbiased=False):
    n = K.shape[0]
    if not unbiased:
        H = np.eye(n) - np.ones((n, n)) / n
        return np.trace(K @ H @ L @ H) / (n - 1) ** 2
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0)
    np.fill_diagonal(L, 0)
    return (np.trace(K @ L) + K.sum() * L.sum() / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (K @ L).sum()) / (n * (n - 3))


def naive_cka(K, L, unbiased=False):
    return naive_hsic(K, L, unbiased) / math.sqrt(naive_hsic(K, K, unbiased) * naive_hsic(L, L, unbiased))


def naive_kernel(X, kernel, sigma="paper", threshold=1.0, base=None):
    """Linear or RBF kernel of X; σ "paper", "kornblith", "base" (paper σ of ``base``) or a number."""
    X = np.asarray(X, dtype=np.float64)
    if kernel == "linear":
        return X @ X.T
    D = sqd(X)
    if sigma == "paper":
        s2 = lower_median_nonzero(D)
    elif sigma == "kornblith":
        s2 = threshold ** 2 * np.median(D)
    elif sigma == "base":
        s2 = lower_median_nonzero(sqd(base))
    else:
        s2 = float(sigma) ** 2
    return np.exp(-D / (2 * s2))


def naive_local_cka(Sq, Tq, Sb, Tb, kernel, sigma):
    """Local CKA of every (source query i, target query j): CKA of the p + 1 points of each side."""
    out = np.empty((Sq.shape[0], Tq.shape[0]))
    for i in range(Sq.shape[0]):
        K = naive_kernel(np.vstack([Sq[i:i + 1], Sb]), kernel, sigma, base=Sb)
        for j in range(Tq.shape[0]):
            L = naive_kernel(np.vstack([Tq[j:j + 1], Tb]), kernel, sigma, base=Tb)
            out[i, j] = naive_cka(K, L)
    return out


def naive_knn_sets(X, k):
    """Cosine k nearest neighbours of every row (itself excluded, stable ties) and the cosine matrix."""
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = Xn @ Xn.T
    np.fill_diagonal(S, -np.inf)
    return [set(np.argsort(-S[i], kind="stable")[:k]) for i in range(len(X))], Xn @ Xn.T


def naive_cknna(X, Y, k):
    """CKNNA (Huh et al. 2024): unbiased HSIC of cosine kernels masked to mutual k-NN pairs."""
    def masked(X):
        sets, K = naive_knn_sets(X, k)
        M = np.zeros_like(K)
        for i, s in enumerate(sets):
            M[i, list(s)] = 1
        return M, K

    def hs(K, L):  # Huh et al.'s unbiased HSIC (matrices need not be symmetric)
        n = K.shape[0]
        K, L = K.copy(), L.copy()
        np.fill_diagonal(K, 0)
        np.fill_diagonal(L, 0)
        return (np.sum(K * L.T) + K.sum() * L.sum() / ((n - 1) * (n - 2))
                - 2 * np.sum(K @ L) / (n - 2)) / (n * (n - 3))

    MK, K = masked(X)
    ML, L = masked(Y)
    return hs(MK * ML * K, MK * ML * L) / math.sqrt(hs(MK * K, MK * K) * hs(ML * L, ML * L))


def topk_full(S, k):
    """Column indices of the k largest entries of every row, ties in index order."""
    return np.argsort(-S, axis=1, kind="stable")[:, :k]


# ---------------------------------------------------------------- QAP and LAP (fastcka.qap)

def naive_qap_objective(A, B, perm, S=None):
    """trace(Aᵀ P B Pᵀ) (+ trace(Sᵀ P)) of the permutation ``perm``: Σ A ∘ B[perm][:, perm]."""
    val = float(np.sum(A * B[perm][:, perm]))
    if S is not None:
        val += float(S[np.arange(len(perm)), perm].sum())
    return val


def naive_pad(A, B, padding):
    """The smaller graph padded with isolated nodes (``"adopted"``: Fishkind et al.'s 2X - 1)."""
    n = max(len(A), len(B))
    if padding == "adopted":
        A, B = 2 * A - 1, 2 * B - 1

    def pad(X):
        out = np.zeros((n, n))
        out[:len(X), :len(X)] = X
        return out
    return pad(A), pad(B)


def naive_sinkhorn(P, tol=1e-3, max_iter=1000):
    """SciPy's FAQ initialisation balancing, written out plainly."""
    c = 1 / P.sum(axis=0)
    r = 1 / (P @ c)
    out = P
    for _ in range(max_iter):
        if (np.abs(out.sum(axis=1) - 1) < tol).all() and (np.abs(out.sum(axis=0) - 1) < tol).all():
            break
        c = 1 / (r @ P)
        r = 1 / (P @ c)
        out = r[:, None] * P * c
    return out


def naive_lap_optimum(C, maximize=False):
    """Optimal total of the assignment problem on C, over all n! permutations (n ≤ 8)."""
    import itertools

    n = C.shape[0]
    totals = [sum(C[i, p[i]] for i in range(n)) for p in itertools.permutations(range(n))]
    return max(totals) if maximize else min(totals)


def exact_faq(A, B, maximize, maxiter=30, tol=0.03):
    """SciPy's FAQ (barycentre start, no seeds) in exact rational arithmetic: the line search
    and its endpoint rule (ties go to the full step) carry no rounding.

    Returns (col_ind, iterations, number of iterations with an exact endpoint tie a + b = 0).
    """
    from fractions import Fraction

    from scipy.optimize import linear_sum_assignment

    n = len(A)
    A = [[Fraction(int(x)) for x in r] for r in A]
    B = [[Fraction(int(x)) for x in r] for r in B]
    P = [[Fraction(1, n)] * n for _ in range(n)]

    def mm(X, Y):
        return [[sum(X[i][k] * Y[k][j] for k in range(n)) for j in range(n)] for i in range(n)]

    def tr(X):
        return [list(r) for r in zip(*X, strict=True)]

    def g(X, Y):
        M = mm(mm(A, Y), tr(B))
        return sum(X[i][j] * M[i][j] for i in range(n) for j in range(n))

    s = 1 if maximize else -1
    ties = nit = 0
    while nit < maxiter:
        nit += 1
        G = [[u + v for u, v in zip(r1, r2, strict=True)]
             for r1, r2 in zip(mm(mm(A, P), tr(B)), mm(mm(tr(A), P), B), strict=True)]
        _, cols = linear_sum_assignment(np.array(G, dtype=float), maximize=maximize)
        R = [[Fraction(int(cols[i] == j)) - P[i][j] for j in range(n)] for i in range(n)]
        a, b = g(R, R), g(P, R) + g(R, P)
        ties += a + b == 0
        if a * s < 0 and 0 <= -b / (2 * a) <= 1:
            t = -b / (2 * a)
        else:
            t = Fraction(1) if (a + b) * s >= 0 else Fraction(0)
        P = [[P[i][j] + t * R[i][j] for j in range(n)] for i in range(n)]
        if float(t) * math.sqrt(float(sum(x * x for r in R for x in r))) / math.sqrt(n) < tol:
            break
    _, col = linear_sum_assignment(np.array(P, dtype=float), maximize=True)
    return col, nit, ties
