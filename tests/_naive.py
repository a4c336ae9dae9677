"""Naive float64 references shared by the CKA and local-CKA tests: n×n matrices, explicit H."""

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
