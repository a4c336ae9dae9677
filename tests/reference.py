"""Naive float64 references shared by the tests: n×n matrices, explicit H, explicit loops.

Each function is the textbook definition, written for clarity, never for speed: CKA/HSIC with the
explicit centring matrix, the kernels and their bandwidths, local CKA pair by pair, the k nearest
neighbours by a full sort, CKNNA, and top-k by a full stable argsort.
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
