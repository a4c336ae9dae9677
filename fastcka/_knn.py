"""Mutual k-nearest-neighbour alignment and CKNNA (Huh et al. 2024).

References
----------
M. Huh, B. Cheung, T. Wang, P. Isola, "The Platonic Representation Hypothesis", ICML 2024,
arXiv:2405.07987.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import config
from ._cka import _f64, _prepare_pair, _ratio
from .backend import Backend
from .errors import InputError


def _knn_indices(be: Backend, Xn, k: int, block: int | None = None):
    """(n, k) indices of the k largest inner products of each L2-normalised row, self excluded."""
    xp = be.xp
    n = Xn.shape[0]
    block = int(config.KNN_BLOCK if block is None else block)
    out = xp.empty((n, k), dtype=xp.int64)
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        sim = Xn[r0:r1] @ Xn.T
        sim[xp.arange(r1 - r0), xp.arange(r0, r1)] = -xp.inf
        part = xp.argpartition(-sim, k - 1, axis=1)[:, :k]
        out[r0:r1] = part
    return out


def _normalize_rows(xp, X):
    nrm = xp.sqrt((X * X).sum(axis=1, keepdims=True))
    return X / xp.where(nrm > 0, nrm, 1.0)


def _check_k(k: Any, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InputError(f"k must be an integer, got {k!r}")
    if not 1 <= int(k) <= n - 1:
        raise InputError(f"k must be between 1 and n - 1 = {n - 1}, got {k}")
    return int(k)


def mutual_knn(X: Any, Y: Any, k: int = 10, *, device: str = "auto") -> float:
    """Mutual k-nearest-neighbour alignment (Huh et al. 2024).

    Rows are L2-normalised; ``kNN_X(i)`` are the k rows of largest inner product with row i (self
    excluded).  Returns the mean over rows of ``|kNN_X(i) ∩ kNN_Y(i)| / k``, in [0, 1].

    Notes
    -----
    ``O(n²·(p+q))`` time in row blocks, ``O(block·n)`` memory.  Ties between equal similarities
    are broken arbitrarily.
    """
    be, Xd, Yd = _prepare_pair(X, Y, "biased", device)
    n = Xd.shape[0]
    k = _check_k(k, n)
    xp = be.xp
    a = be.to_host(_knn_indices(be, _normalize_rows(xp, _f64(be, Xd)), k))
    b = be.to_host(_knn_indices(be, _normalize_rows(xp, _f64(be, Yd)), k))
    a.sort(axis=1)
    b.sort(axis=1)
    hits = 0
    for i in range(n):
        hits += np.intersect1d(a[i], b[i], assume_unique=True).size
    return hits / (n * k)


def _hsic_unbiased_dense(K: np.ndarray, L: np.ndarray) -> float:
    """Unbiased HSIC of two (not necessarily symmetric) n×n matrices, as Huh et al. define it."""
    n = K.shape[0]
    Kt = K.copy()
    Lt = L.copy()
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    val = (float((Kt * Lt.T).sum()) + float(Kt.sum()) * float(Lt.sum()) / ((n - 1) * (n - 2))
           - 2.0 / (n - 2) * float(Kt.sum(axis=0) @ Lt.sum(axis=1)))
    return val / (n * (n - 3))


def cknna(X: Any, Y: Any, k: int = 10, *, device: str = "auto") -> float:
    """CKNNA: CKA restricted to mutual k-nearest-neighbour pairs (Huh et al. 2024).

    With L2-normalised rows, ``K = XXᵀ``, ``L = YYᵀ`` and the k-NN masks ``M_K``, ``M_L`` (row i
    marks its k nearest rows, self excluded), ``CKNNA = h(M_K∘M_L∘K, M_K∘M_L∘L) /
    sqrt(h(M_K∘K, M_K∘K) · h(M_L∘L, M_L∘L))`` with ``h`` the unbiased HSIC.

    Notes
    -----
    Dense: ``O(n²)`` memory (the masked kernels), so meant for n up to ~20k.  Unlike the
    reference implementation no ``1e-6`` is added to the denominator; a non-positive self term
    gives NaN with a :class:`RuntimeWarning`.  Needs n ≥ 4.
    """
    be, Xd, Yd = _prepare_pair(X, Y, "unbiased", device)
    n = Xd.shape[0]
    k = _check_k(k, n)
    xp = be.xp
    Xn, Yn = _normalize_rows(xp, _f64(be, Xd)), _normalize_rows(xp, _f64(be, Yd))
    K = be.to_host(Xn @ Xn.T)
    L = be.to_host(Yn @ Yn.T)
    ia = be.to_host(_knn_indices(be, Xn, k))
    ib = be.to_host(_knn_indices(be, Yn, k))
    MK = np.zeros((n, n))
    ML = np.zeros((n, n))
    rows = np.repeat(np.arange(n), k)
    MK[rows, ia.ravel()] = 1.0
    ML[rows, ib.ravel()] = 1.0
    M = MK * ML
    kl = _hsic_unbiased_dense(M * K, M * L)
    kk = _hsic_unbiased_dense(MK * K, MK * K)
    ll = _hsic_unbiased_dense(ML * L, ML * L)
    return _ratio(kl, kk, ll)
