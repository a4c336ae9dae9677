"""Centered Kernel Alignment (CKA), HSIC and related representation-alignment metrics.

Definitions follow METHOD §1:

- kernels: linear ``K = X Xᵀ``; RBF ``K_ij = exp(−‖x_i − x_j‖² / (2σ²))``;
- bandwidth ``sigma``: ``"paper"`` (σ² = lower median of the non-zero squared distances,
  torch.median semantics), ``"kornblith"`` (σ² = threshold² · NumPy median of all n² squared
  distances, zero diagonal included), or a positive float;
- biased HSIC ``tr(KHLH)/(n−1)²``; unbiased HSIC (Song et al. 2012, n ≥ 4);
- ``CKA = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))`` ("debiased CKA" with the unbiased HSIC).

Squared distances are evaluated in the GEMM form ``‖x_i‖² + ‖x_j‖² − 2 x_i·x_j`` in float64,
clipped at 0, with values below ``1e-12 · (‖x_i‖² + ‖x_j‖²)`` (beyond the resolution of that form:
duplicate rows) set to exactly 0.  "Non-zero squared distances" for the paper bandwidth therefore
excludes the diagonal *and* the distances between duplicate rows, like the reference code's
``dist[dist != 0]``.

Algorithms
----------
- Linear kernel: feature-space forms.  With column-centred X, Y (float64, accumulated over row
  chunks), ``tr(KHLH) = ‖XᵀY‖²_F`` and the unbiased HSIC has a closed form in ``XᵀY`` and the
  row norms (the unbiased HSIC is unchanged by centring the features).  Cost ``O(n·p·q)``, memory
  ``O(p·q)``; when ``n`` is smaller than the feature dimension the Gram path is cheaper and used.
- Other kernels: tile-by-tile accumulation of ``Σ K∘L``, the row sums ``K1``, ``L1`` and the
  diagonals over the upper block triangle (each tile one GEMM per input, then one fused kernel:
  distance → kernel → products → row/column sums).  Memory ``O(n)`` beyond a few tiles.
- The median bandwidths are exact order statistics selected over tiles without n² memory
  (:mod:`fastcka._median`).

Every sum is accumulated in float64, whatever the input dtype.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _median, config
from ._cka_stats import _affs, _kernel_stats, _linear_feature_stats, _Stats
from .backend import Backend, check_matrix, check_same_rows, get_backend
from .errors import InputError

KERNELS = ("linear", "rbf")
ESTIMATORS = ("biased", "unbiased")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def _check_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise InputError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    return kernel


def _check_estimator(estimator: str) -> str:
    if estimator not in ESTIMATORS:
        raise InputError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    return estimator


def _check_sigma(sigma: Any, threshold: float) -> Any:
    if isinstance(sigma, str):
        if sigma not in ("paper", "kornblith"):
            raise InputError(f"sigma must be 'paper', 'kornblith' or a positive float, got {sigma!r}")
    else:
        try:
            s = float(sigma)
        except (TypeError, ValueError):
            raise InputError(f"sigma must be 'paper', 'kornblith' or a positive float, got {sigma!r}") from None
        if not (math.isfinite(s) and s > 0):
            raise InputError(f"sigma must be a positive finite float, got {sigma!r}")
        sigma = s
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise InputError(f"threshold must be a positive float, got {threshold!r}") from None
    if not (math.isfinite(t) and t > 0):
        raise InputError(f"threshold must be a positive finite float, got {threshold!r}")
    return sigma


def _prep(be: Backend, a: Any, name: str, min_rows: int = 2):
    """Validated float64 copy of ``a`` on the backend (float32 inputs are accumulated in float64)."""
    arr = be.asarray(check_matrix(a, name, xp=be.xp, min_rows=min_rows))
    if arr.dtype.kind == "f" and arr.dtype.itemsize >= 4:
        return arr  # float32 stays float32 until a float64 tile or chunk is formed from it
    return arr.astype(be.xp.float64)


def _f64(be: Backend, X: Any):
    return be.xp.ascontiguousarray(X, dtype=be.xp.float64)



def _median_sq(be: Backend, Xs: list, modes: list[tuple[int, str]], progress=None,
               affs=None, moments=None) -> list[float]:
    """Median squared distances of the centred inputs, scaled by ``s²`` of their ``affs``
    (``moments``: :func:`fastcka._median.sqdist_order_stats`)."""
    dev = be.device
    return _median.sqdist_order_stats(
        Xs, modes, xp=be.xp, ops=be.ops("cka"), tile=config.CKA_TILE[dev],
        cap=config.MEDIAN_CAP[dev], dense=config.MEDIAN_DENSE[dev],
        sample_size=config.MEDIAN_SAMPLE[dev],
        sample_chunk=config.MEDIAN_SAMPLE_CHUNK[dev], progress=progress,
        affs=_affs(be, Xs) if affs is None else affs, moments=moments)


def _sigmas(be: Backend, Xs: list, sigma: Any, threshold: float, affs=None,
            moments=None) -> list[float]:
    """σ of each input for the RBF kernel (in the units of the input); ``moments``: a
    :class:`fastcka._rbf_onepass.OnePass` the median pass fills."""
    if not isinstance(sigma, str):
        return [float(sigma)] * len(Xs)
    affs = _affs(be, Xs) if affs is None else affs
    med = _median_sq(be, Xs, [(k, sigma) for k in range(len(Xs))], affs=affs, moments=moments)
    out = []
    for k, m2 in enumerate(med):
        if not m2 > 0:
            raise InputError(f"input {k}: the median squared distance is 0 (mostly duplicate rows); "
                             f"the {sigma!r} bandwidth is undefined — pass a float sigma")
        out.append(math.sqrt(m2) / affs[k][1] * (float(threshold) if sigma == "kornblith" else 1.0))
    return out


# ----------------------------------------------------------------------------------------------
# bandwidths and Gram matrices
# ----------------------------------------------------------------------------------------------

def paper_sigma(X: Any, *, device: str = "auto") -> float:
    """The paper's RBF bandwidth: σ with σ² = lower median of the non-zero squared distances.

    Parameters
    ----------
    X : (n, p) array_like
    device : {"auto", "cpu", "gpu"}

    Returns
    -------
    float

    Notes
    -----
    torch.median semantics: of the ``2P`` non-zero off-diagonal entries of the n×n squared
    distance matrix (``P`` distinct pairs), the lower middle one.  Exact, computed tile by tile
    without n² memory (:mod:`fastcka._median`): one or two GEMM passes over the upper triangle.
    Raises :class:`InputError` when every distance is zero.
    """
    be = get_backend(X, device=device)
    Xd = _prep(be, X, "X")
    (aff,) = _affs(be, [Xd])
    return math.sqrt(_median_sq(be, [Xd], [(0, "paper")], affs=[aff])[0]) / aff[1]


def kornblith_sigma(X: Any, threshold: float = 1.0, *, device: str = "auto") -> float:
    """Kornblith et al.'s RBF bandwidth: σ = threshold · sqrt(median of all n² squared distances).

    The median is NumPy's (mean of the two middle values when n² is even) over the full n×n
    matrix, zero diagonal included; exact and computed without n² memory.
    """
    _check_sigma("kornblith", threshold)
    be = get_backend(X, device=device)
    Xd = _prep(be, X, "X")
    (aff,) = _affs(be, [Xd])
    m2 = _median_sq(be, [Xd], [(0, "kornblith")], affs=[aff])[0]
    return math.sqrt(m2) / aff[1] * float(threshold)


def gram(X: Any, kernel: str = "linear", sigma: Any = "paper", threshold: float = 1.0,
         center: bool = False, *, device: str = "auto") -> Any:
    """The dense n×n kernel (Gram) matrix of X, float64, on the backend of the call.

    Parameters
    ----------
    X : (n, p) array_like
    kernel : {"linear", "rbf"}
    sigma : {"paper", "kornblith"} or float
        RBF bandwidth (ignored for the linear kernel).
    threshold : float
        multiplier of the Kornblith bandwidth.
    center : bool
        return ``H K H`` (H = I − 11ᵀ/n) instead of K.
    device : {"auto", "cpu", "gpu"}

    Returns
    -------
    (n, n) float64 ndarray (NumPy or CuPy)

    Notes
    -----
    Memory O(n²) by construction; CKA itself never forms this matrix for large n.
    """
    _check_kernel(kernel)
    sigma = _check_sigma(sigma, threshold)
    be = get_backend(X, device=device)
    return _gram(be, _prep(be, X, "X", min_rows=1), kernel, sigma, threshold, center)


def _gram(be: Backend, X: Any, kernel: str, sigma: Any, threshold: float, center: bool) -> Any:
    """:func:`gram` of an already-checked array of backend ``be``."""
    Xd = _f64(be, X)
    xp = be.xp
    unit = 1.0
    if kernel == "rbf" or center:
        # centred (and, for extreme magnitudes, rescaled) rows: HKH and distances are
        # translation-invariant, and the GEMM forms keep their digits
        aff = _median.affine(xp, Xd, be.ops("cka") if be.device == "cpu" else None)
        Xd, unit = _median.block64(xp, Xd, 0, Xd.shape[0], aff), aff[1]
    G = Xd @ Xd.T
    if kernel == "rbf":
        if Xd.shape[0] < 2 and isinstance(sigma, str):
            raise InputError("X needs at least 2 rows for a median bandwidth")
        (s,) = _sigmas(be, [Xd], sigma, threshold, [(xp.zeros(Xd.shape[1]), 1.0)])
        s = s if isinstance(sigma, str) else s * unit
        sq = (Xd * Xd).sum(axis=1)
        be.ops("cka").sqdist(G, sq, sq, _median.REL_TOL, True)
        G *= -1.0 / (2.0 * s * s)
        xp.exp(G, out=G)
    elif unit != 1.0:
        G /= unit * unit
    if not bool(xp.array_equal(G, G.T)):
        # a GEMM (CuPy) need not give an exactly symmetric X Xᵀ; callers such as FAQ take their
        # cheaper symmetric path only on exactly symmetric kernels
        G = (G + G.T) * 0.5
    if center:
        # H G H as G − (r_i + r_j) + mean(r): r_i + r_j commutes exactly, so G stays exactly
        # symmetric; row blocks keep the temporary small
        r = G.mean(axis=1)
        m = r.mean()
        step = config.GRAM_CENTER_ROWS
        for i in range(0, G.shape[0], step):
            G[i:i + step] -= r[i:i + step, None] + r[None, :]
        G += m
    return G


# ----------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------

def _use_features(n: int, dims: Sequence[int]) -> bool:
    """Feature-space linear path when it is cheaper than the Gram path (``Σp <= n``) and its
    ``(Σp)²`` cross-covariance is small; otherwise the tiled Gram path (O(n) memory)."""
    tot = sum(dims)
    return tot <= n and tot <= config.CKA_MAX_FEATURE_DIM


def _stats(be: Backend, Xs: list, kernel: str, sigma: Any, threshold: float,
           progress=None, diags: bool = True) -> tuple[_Stats, list[float | None]]:
    """The statistics of the inputs; ``diags=False``: the linear feature path may leave the
    kernel diagonals 0 (only the unbiased estimator reads them)."""
    if kernel == "linear":
        dims = [int(X.shape[1]) for X in Xs]
        if _use_features(int(Xs[0].shape[0]), dims):
            return _linear_feature_stats(be, Xs, diags=diags), [None] * len(Xs)
        return _kernel_stats(be, Xs, [0] * len(Xs), [0.0] * len(Xs), progress), [None] * len(Xs)
    from . import _rbf_onepass  # here: the gram/FAQ paths never load it

    affs = _affs(be, Xs)
    one = _rbf_onepass.OnePass.maybe(be, len(Xs), sigma, threshold)
    sig = _sigmas(be, Xs, sigma, threshold, affs, moments=one)
    gam = [1.0 / (2.0 * (s * aff[1]) ** 2) for s, aff in zip(sig, affs, strict=True)]  # scaled units
    st = one.stats(gam) if one is not None else None  # None: a second pass
    return (st if st is not None else _kernel_stats(be, Xs, [1] * len(Xs), gam, progress, affs),
            sig)


def _cka_from(st: _Stats, a: int, b: int, estimator: str) -> float:
    kl = st.hsic(a, b, estimator)
    kk = st.hsic(a, a, estimator)
    ll = st.hsic(b, b, estimator)
    return _ratio(kl, kk, ll)


def _ratio(kl: float, kk: float, ll: float) -> float:
    if kk < 0 or ll < 0:
        warnings.warn(f"a self-HSIC is negative (HSIC(K,K)={kk:.3g}, HSIC(L,L)={ll:.3g}: both "
                      "estimators are >= 0 in exact arithmetic, so round-off on a (near-)"
                      "degenerate kernel): CKA is undefined, returning NaN", RuntimeWarning, stacklevel=3)
        return math.nan
    den = math.sqrt(kk * ll)
    if den == 0:
        warnings.warn("a kernel has zero HSIC with itself (constant representation): CKA is "
                      "undefined, returning NaN", RuntimeWarning, stacklevel=3)
        return math.nan
    return kl / den


def _prepare_pair(X, Y, estimator, device):
    _check_estimator(estimator)
    be = get_backend(X, Y, device=device)
    min_rows = 4 if estimator == "unbiased" else 2
    Xd = _prep(be, X, "X", min_rows=min_rows)
    Yd = _prep(be, Y, "Y", min_rows=min_rows)
    check_same_rows(Xd, Yd)
    return be, Xd, Yd


def hsic(X: Any, Y: Any, *, kernel: str = "linear", sigma: Any = "paper", threshold: float = 1.0,
         estimator: str = "biased", device: str = "auto") -> float:
    """Hilbert–Schmidt Independence Criterion between paired representations.

    Parameters
    ----------
    X : (n, p) array_like, Y : (n, q) array_like
        Paired rows.
    kernel : {"linear", "rbf"}
    sigma : {"paper", "kornblith"} or float
        RBF bandwidth, each side its own (METHOD §1).
    threshold : float
        Kornblith bandwidth multiplier.
    estimator : {"biased", "unbiased"}
        ``tr(KHLH)/(n−1)²`` or Song et al.'s unbiased estimator (needs n ≥ 4).
    device : {"auto", "cpu", "gpu"}

    Returns
    -------
    float

    Notes
    -----
    Linear: ``O(n·p·q)`` time, ``O(p·q)`` memory.  RBF: ``O(n²·(p+q))`` time over tiles, ``O(n)``
    memory beyond a tile, plus one or two extra tile passes for a median bandwidth.
    """
    _check_kernel(kernel)
    sigma = _check_sigma(sigma, threshold)
    be, Xd, Yd = _prepare_pair(X, Y, estimator, device)
    st, _ = _stats(be, [Xd, Yd], kernel, sigma, threshold, diags=estimator == "unbiased")
    return st.hsic(0, 1, estimator) * st.unit[0] * st.unit[1]


def cka(X: Any, Y: Any, *, kernel: str = "linear", sigma: Any = "paper", threshold: float = 1.0,
        estimator: str = "biased", device: str = "auto") -> float:
    """Centered Kernel Alignment between paired representations X and Y.

    ``CKA = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))`` (METHOD §1); with
    ``estimator="unbiased"`` this is Kornblith's debiased CKA.

    Parameters
    ----------
    X : (n, p) array_like, Y : (n, q) array_like
        Paired rows (float32 inputs are accumulated in float64).
    kernel, sigma, threshold, estimator, device
        See :func:`hsic`.

    Returns
    -------
    float
        In [0, 1] for the biased estimator.  NaN with a :class:`RuntimeWarning` when a self-HSIC
        is zero (a constant representation) or negative.  In exact arithmetic the unbiased
        self-HSIC is ``‖U-centred K‖²_F / (n(n−3)) >= 0``; a negative value can only come from
        round-off on a (near-)degenerate kernel, and is reported, never silently turned into NaN.

    Raises
    ------
    InputError
        non-2-D input, NaN/Inf, different row counts, fewer than 2 rows (4 for "unbiased"),
        bad option values.

    Notes
    -----
    Complexity as :func:`hsic`; the self terms share the same passes over the tiles.

    Examples
    --------
    >>> import numpy as np, fastcka
    >>> X = np.random.default_rng(0).normal(size=(100, 10))
    >>> round(fastcka.cka(X, 2 * X), 6)
    1.0
    """
    _check_kernel(kernel)
    sigma = _check_sigma(sigma, threshold)
    be, Xd, Yd = _prepare_pair(X, Y, estimator, device)
    st, _ = _stats(be, [Xd, Yd], kernel, sigma, threshold, diags=estimator == "unbiased")
    return _cka_from(st, 0, 1, estimator)


def _prep_many(Xs: list, estimator: str, device: str):
    """The backend and the validated inputs of a matrix (same number of rows)."""
    be = get_backend(*Xs, device=device)
    min_rows = 4 if estimator == "unbiased" else 2
    Xd = [_prep(be, X, f"Xs[{k}]", min_rows=min_rows) for k, X in enumerate(Xs)]
    for k in range(1, len(Xd)):
        check_same_rows(Xd[0], Xd[k], "Xs[0]", f"Xs[{k}]")
    return be, Xd


def cka_matrix(Xs: Sequence[Any], *, kernel: str = "linear", sigma: Any = "paper",
               threshold: float = 1.0, estimator: str = "biased", device: str = "auto",
               progress=None, scheduler: Any = None) -> np.ndarray:
    """Pairwise CKA between several paired representations.

    Parameters
    ----------
    Xs : sequence of m (n, p_k) array_like, same n
    kernel, sigma, threshold, estimator, device
        See :func:`cka`.
    scheduler : None, str or fastcka.parallel.Executor
        Compute it on a Dask cluster (:mod:`fastcka.parallel`, the workers on the CPU): one
        task per input (its bandwidth and self statistics), then one task per pair; the
        matrix is the in-process CPU one bit for bit.

    Returns
    -------
    (m, m) float64 ndarray, symmetric, ones on the diagonal (NaN where undefined).

    Notes
    -----
    Each input's Gram statistics (bandwidth, row sums, self-HSIC) are computed once; one pass
    over the tiles accumulates every ``Σ K_a∘K_b`` together (m GEMMs and one fused kernel per
    tile).  Linear: the ``(Σp)×(Σp)`` float64 cross-covariance, one block ``X_aᵀX_b`` per pair,
    ``O(n·(Σp)²)``.  Every entry's sums are formed on their own, so they do not depend on the
    other inputs (what makes the distributed and sharded matrices identical).
    """
    _check_kernel(kernel)
    sigma = _check_sigma(sigma, threshold)
    _check_estimator(estimator)
    Xs = list(Xs)
    if len(Xs) < 1:
        raise InputError("cka_matrix needs at least one input")
    be, Xd = _prep_many(Xs, estimator, device)
    if scheduler is not None and scheduler != "none":
        from .parallel import cka_matrix_stats

        st = cka_matrix_stats([be.to_host(X) for X in Xd], kernel, sigma, threshold,
                              scheduler=scheduler)
    else:
        st, _ = _stats(be, Xd, kernel, sigma, threshold, progress,
                       diags=estimator == "unbiased")
    return _matrix_from(st, estimator)


def _matrix_from(st: _Stats, estimator: str) -> np.ndarray:
    """The CKA matrix of the statistics of m inputs (NaN rows where a self-HSIC is <= 0)."""
    m = len(st.S)
    self_h = [st.hsic(a, a, estimator) for a in range(m)]
    out = np.eye(m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for a in range(m):
            for b in range(a + 1, m):
                out[a, b] = out[b, a] = _ratio(st.hsic(a, b, estimator), self_h[a], self_h[b])
    bad = [a for a in range(m) if not self_h[a] > 0]
    if bad:
        warnings.warn(f"inputs {bad} have a non-positive self-HSIC: their CKA entries are NaN",
                      RuntimeWarning, stacklevel=3)
        for a in bad:
            out[a, :] = out[:, a] = math.nan
    return out


__all__ = ["cka", "hsic", "gram", "cka_matrix", "paper_sigma", "kornblith_sigma"]
