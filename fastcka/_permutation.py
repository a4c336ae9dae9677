"""Permutation test of CKA: the observed alignment against row-permuted pairings."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _median
from ._cka import _check_kernel, _check_sigma, _gram, _prepare_pair, _ratio, _stats
from ._cka_stats import _affs, _Stats
from ._progress import progress
from .backend import as_rng
from .errors import InputError


@dataclass
class PermutationResult:
    """Result of :func:`cka_permutation_test`.

    Attributes
    ----------
    statistic : float — the observed CKA
    null_mean, null_std : float — mean and standard deviation of CKA under row permutations
    p_value : float — ``(1 + #{null >= statistic}) / (1 + n_permutations)``
    n_permutations : int
    null : (n_permutations,) ndarray
    """

    def __repr__(self) -> str:
        from ._repr import compact_repr

        return compact_repr(self)


    statistic: float
    null_mean: float
    null_std: float
    p_value: float
    n_permutations: int
    null: np.ndarray

    def as_dict(self) -> dict:
        return {"statistic": self.statistic, "null_mean": self.null_mean,
                "null_std": self.null_std, "p_value": self.p_value,
                "n_permutations": self.n_permutations}


def cka_permutation_test(X: Any, Y: Any, *, n_permutations: int = 1000, rng: Any = None,
                         kernel: str = "linear", sigma: Any = "paper", threshold: float = 1.0,
                         estimator: str = "biased", device: str = "auto") -> PermutationResult:
    """Permutation test of CKA: is the observed alignment larger than for unpaired rows?

    The rows of Y are permuted at random (breaking the pairing, keeping both representations),
    CKA is recomputed for each permutation, and the one-sided p-value is
    ``(1 + #{null >= observed}) / (1 + n_permutations)``.

    Parameters
    ----------
    X, Y : (n, p), (n, q) array_like
    n_permutations : int ≥ 1
    rng : None, int, Generator — seed of the permutations (pass it for reproducibility)
    kernel, sigma, threshold, estimator, device : see :func:`cka`

    Returns
    -------
    PermutationResult

    Notes
    -----
    Self-HSICs and bandwidths do not change under a permutation, so only the cross term is
    recomputed.  Linear: ``Σ`` over permutations of one ``(p×n)(n×q)`` GEMM each.  RBF: the two
    n×n kernels are formed once (``2·n²`` float64: meant for n up to ~20k) and each permutation
    costs ``O(n²)``.
    """
    _check_kernel(kernel)
    sigma = _check_sigma(sigma, threshold)
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, (int, np.integer)) \
            or n_permutations < 1:
        raise InputError(f"n_permutations must be a positive integer, got {n_permutations!r}")
    gen = as_rng(rng)
    be, Xd, Yd = _prepare_pair(X, Y, estimator, device)
    xp = be.xp
    n = Xd.shape[0]
    st, sig = _stats(be, [Xd, Yd], kernel, sigma, threshold)
    kk, ll = st.hsic(0, 0, estimator), st.hsic(1, 1, estimator)
    obs = _ratio(st.hsic(0, 1, estimator), kk, ll)
    null = np.empty(int(n_permutations))
    if kernel == "linear":  # centred and scaled as the statistics were
        ax, ay = _affs(be, [Xd, Yd])
        Xc, Yc = _median.block64(xp, Xd, 0, n, ax), _median.block64(xp, Yd, 0, n, ay)
        dx = be.to_host((Xc * Xc).sum(axis=1))
        dy = be.to_host((Yc * Yc).sum(axis=1))
        for t in progress(range(n_permutations), desc="permutations", unit="perm"):
            p = gen.permutation(n)
            C = Xc.T @ Yc[xp.asarray(p)]
            S = be.scalar((C * C).sum())
            stp = _Stats(n, np.array([[0.0, S], [S, 0.0]]), np.zeros((2, n)),
                         np.stack([dx, dy[p]]))
            null[t] = _ratio(stp.hsic(0, 1, estimator), kk, ll)
    else:
        K = _gram(be, Xd, "rbf", sig[0], threshold, False)  # Xd, Yd checked above
        L = _gram(be, Yd, "rbf", sig[1], threshold, False)
        rk = be.to_host(K.sum(axis=1))
        rl = be.to_host(L.sum(axis=1))
        ones = np.ones(n)
        for t in progress(range(n_permutations), desc="permutations", unit="perm"):
            p = gen.permutation(n)
            pd = xp.asarray(p)
            S = be.scalar((K * L[pd][:, pd]).sum())
            stp = _Stats(n, np.array([[0.0, S], [S, 0.0]]), np.stack([rk, rl[p]]),
                         np.stack([ones, ones]))
            null[t] = _ratio(stp.hsic(0, 1, estimator), kk, ll)
    # an undefined statistic has no p-value (NaN compares false: it would count as never reached)
    p_value = (1.0 + float(np.count_nonzero(null >= obs))) / (1.0 + n_permutations) \
        if math.isfinite(obs) else math.nan
    return PermutationResult(float(obs), float(np.nanmean(null)), float(np.nanstd(null)),
                             p_value, int(n_permutations), null)
