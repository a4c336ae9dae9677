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
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _median
from ._callable_module import make_module_callable
from ._progress import progress
from ._validation import as_rng, check_matrix, check_same_rows
from .backend import Backend, get_backend, numba_enabled
from .errors import InputError

KERNELS = ("linear", "rbf")
MAX_FEATURE_DIM = 8192  # largest Σp of the feature-space linear path ((Σp)² float64: 512 MiB)
ESTIMATORS = ("biased", "unbiased")

#: tunables (tests shrink them so that edge tiles and multi-pass selection run)
CONFIG = {
    "tile_cpu": 2048,
    "tile_gpu": 16384,
    "cap_cpu": 2 ** 24,  # most squared distances collected per median rank (float64 values)
    "cap_gpu": 2 ** 27,
    "sample_cpu": 2 ** 18,
    "sample_gpu": 2 ** 21,
    "chunk_rows": 8192,  # row chunk of the feature-space linear path
}


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def _ops(be: Backend):
    if be.is_gpu:
        from .kernels import cka_cupy

        return cka_cupy.get_ops()
    from .kernels import cka_cpu

    return cka_cpu.get_ops(numba_enabled())


def _tile(be: Backend) -> int:
    return int(CONFIG["tile_gpu"] if be.is_gpu else CONFIG["tile_cpu"])


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


def _affs(be: Backend, Xs: list) -> list:
    """The centre and scale of each input (:func:`fastcka._median.affine`), once per input."""
    return [_median.affine(be.xp, X) for X in Xs]


def _median_sq(be: Backend, Xs: list, modes: list[tuple[int, str]], progress=None,
               affs=None) -> list[float]:
    """Median squared distances of the centred inputs, scaled by ``s²`` of their ``affs``."""
    return _median.sqdist_order_stats(
        Xs, modes, xp=be.xp, ops=_ops(be), tile=_tile(be),
        cap=CONFIG["cap_gpu" if be.is_gpu else "cap_cpu"],
        sample_size=CONFIG["sample_gpu" if be.is_gpu else "sample_cpu"], progress=progress,
        affs=_affs(be, Xs) if affs is None else affs)


def _sigmas(be: Backend, Xs: list, sigma: Any, threshold: float, affs=None) -> list[float]:
    """σ of each input for the RBF kernel (in the units of the input)."""
    if not isinstance(sigma, str):
        return [float(sigma)] * len(Xs)
    affs = _affs(be, Xs) if affs is None else affs
    med = _median_sq(be, Xs, [(k, sigma) for k in range(len(Xs))], affs=affs)
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
    Xd = _f64(be, _prep(be, X, "X", min_rows=1))
    xp = be.xp
    unit = 1.0
    if kernel == "rbf" or center:
        # centred (and, for extreme magnitudes, rescaled) rows: HKH and distances are
        # translation-invariant, and the GEMM forms keep their digits
        aff = _median.affine(xp, Xd)
        Xd, unit = _median.block64(xp, Xd, 0, Xd.shape[0], aff), aff[1]
    G = Xd @ Xd.T
    if kernel == "rbf":
        if Xd.shape[0] < 2 and isinstance(sigma, str):
            raise InputError("X needs at least 2 rows for a median bandwidth")
        (s,) = _sigmas(be, [Xd], sigma, threshold, [(xp.zeros(Xd.shape[1]), 1.0)])
        s = s if isinstance(sigma, str) else s * unit
        sq = (Xd * Xd).sum(axis=1)
        _ops(be).sqdist(G, sq, sq, _median.REL_TOL, True)
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
        step = 1024
        for i in range(0, G.shape[0], step):
            G[i:i + step] -= r[i:i + step, None] + r[None, :]
        G += m
    return G


# ----------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------

@dataclass
class _Stats:
    """Sufficient statistics of m symmetric kernels: ``S[a, b] = Σ K_a∘K_b``, row sums, diagonals.

    ``centered_features`` marks the linear feature-space form (kernels of column-centred features,
    whose row sums are 0): HSIC formulas are unchanged.  ``unit[a]``: input ``a``'s kernel was
    formed from rows scaled by ``s`` (:func:`fastcka._median.affine`); its true kernel is
    ``unit[a] ×`` the one summed here (``1/s²`` linear, 1 RBF).
    """

    n: int
    S: np.ndarray
    rows: np.ndarray
    diags: np.ndarray
    unit: list | None = None

    def hsic(self, a: int, b: int, estimator: str) -> float:
        n = self.n
        S = float(self.S[a, b])
        ra, rb = self.rows[a], self.rows[b]
        if estimator == "biased":
            sa, sb = float(ra.sum()), float(rb.sum())
            return (S - 2.0 / n * float(ra @ rb) + sa * sb / (n * n)) / ((n - 1) ** 2)
        da, db = self.diags[a], self.diags[b]
        tr = S - float(da @ db)
        ua, ub = ra - da, rb - db
        sa, sb = float(ua.sum()), float(ub.sum())
        val = tr + sa * sb / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(ua @ ub)
        return val / (n * (n - 3))


def _kernel_stats(be: Backend, Xs: list, kinds: list[int], gammas: list[float],
                  progress=None, affs=None) -> _Stats:
    """Tile-by-tile sums of m kernels (Gram path) of the rows centred and scaled by ``affs``
    (``gammas`` in the scaled units)."""
    xp = be.xp
    ops = _ops(be)
    n = int(Xs[0].shape[0])
    m = len(Xs)
    tile = _tile(be)
    affs = _affs(be, Xs) if affs is None else affs
    sq = xp.stack([_median.sqnorms(xp, X, aff=aff) for X, aff in zip(Xs, affs, strict=True)])
    S = np.zeros((m, m))
    rows = xp.zeros((m, n))
    diags = xp.zeros((m, n))
    tiles = list(_median.upper_tiles(n, tile))
    it = progress(tiles, total=len(tiles), desc="kernel sums") if progress else tiles
    flat = xp.empty(m * min(tile, n) * min(tile, n))  # one buffer for every tile shape
    for i0, i1, j0, j1, diag in it:
        bi, bj = i1 - i0, j1 - j0
        Gs = flat[: m * bi * bj].reshape(m, bi, bj)
        for a, X in enumerate(Xs):  # float64 GEMM on float64 row blocks (float32 converted here)
            A = _median.block64(xp, X, i0, i1, affs[a])
            B = A if diag else _median.block64(xp, X, j0, j1, affs[a])
            xp.matmul(A, B.T, out=Gs[a])
        St, r, c, d = ops.kernel_stats(Gs, xp.ascontiguousarray(sq[:, i0:i1]),
                                       xp.ascontiguousarray(sq[:, j0:j1]), kinds, gammas,
                                       _median.REL_TOL, diag)
        S += (1.0 if diag else 2.0) * be.to_host(St)
        rows[:, i0:i1] += r
        if diag:
            diags[:, i0:i1] = d
        else:
            rows[:, j0:j1] += c
    unit = [1.0 / (aff[1] * aff[1]) if k == 0 else 1.0 for aff, k in zip(affs, kinds, strict=True)]
    return _Stats(n, S, be.to_host(rows).astype(np.float64), be.to_host(diags).astype(np.float64),
                  unit)


def _linear_feature_stats(be: Backend, Xs: list) -> _Stats:
    """Linear-kernel statistics in feature space from column-centred features (float64).

    ``S[a, b] = ‖X_aᵀ X_b‖²_F`` with centred features, row sums 0, diagonals ``‖x_i‖²``:
    ``O(n · (Σ p)²)`` time, ``O((Σ p)²)`` memory.
    """
    xp = be.xp
    n = int(Xs[0].shape[0])
    dims = [int(X.shape[1]) for X in Xs]
    offs = np.concatenate([[0], np.cumsum(dims)])
    affs = _affs(be, Xs)
    C = xp.zeros((int(offs[-1]), int(offs[-1])))
    diags = xp.zeros((len(Xs), n))
    step = int(CONFIG["chunk_rows"])
    Z = xp.empty((min(step, n), int(offs[-1])))
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        Zc = Z[: r1 - r0]
        for a, X in enumerate(Xs):
            Zc[:, offs[a]:offs[a + 1]] = _median.block64(xp, X, r0, r1, affs[a])
            blk = Zc[:, offs[a]:offs[a + 1]]
            diags[a, r0:r1] = (blk * blk).sum(axis=1)
        C += xp.dot(Zc.T, Zc)  # syrk on BLAS backends
    m = len(Xs)
    S = np.zeros((m, m))
    for a in range(m):
        for b in range(a, m):
            blk = C[offs[a]:offs[a + 1], offs[b]:offs[b + 1]]
            S[a, b] = S[b, a] = be.scalar((blk * blk).sum())
    return _Stats(n, S, np.zeros((m, n)), be.to_host(diags).astype(np.float64),
                  [1.0 / (aff[1] * aff[1]) for aff in affs])


def _use_features(n: int, dims: Sequence[int]) -> bool:
    """Feature-space linear path when it is cheaper than the Gram path (``Σp <= n``) and its
    ``(Σp)²`` cross-covariance is small; otherwise the tiled Gram path (O(n) memory)."""
    tot = sum(dims)
    return tot <= n and tot <= MAX_FEATURE_DIM


def _stats(be: Backend, Xs: list, kernel: str, sigma: Any, threshold: float,
           progress=None) -> tuple[_Stats, list[float | None]]:
    if kernel == "linear":
        dims = [int(X.shape[1]) for X in Xs]
        if _use_features(int(Xs[0].shape[0]), dims):
            return _linear_feature_stats(be, Xs), [None] * len(Xs)
        return _kernel_stats(be, Xs, [0] * len(Xs), [0.0] * len(Xs), progress), [None] * len(Xs)
    affs = _affs(be, Xs)
    sig = _sigmas(be, Xs, sigma, threshold, affs)
    gam = [1.0 / (2.0 * (s * aff[1]) ** 2) for s, aff in zip(sig, affs, strict=True)]  # scaled units
    return _kernel_stats(be, Xs, [1] * len(Xs), gam, progress, affs), sig


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
    st, _ = _stats(be, [Xd, Yd], kernel, sigma, threshold)
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
    st, _ = _stats(be, [Xd, Yd], kernel, sigma, threshold)
    return _cka_from(st, 0, 1, estimator)


def cka_matrix(Xs: Sequence[Any], *, kernel: str = "linear", sigma: Any = "paper",
               threshold: float = 1.0, estimator: str = "biased", device: str = "auto",
               progress=None) -> np.ndarray:
    """Pairwise CKA between several paired representations.

    Parameters
    ----------
    Xs : sequence of m (n, p_k) array_like, same n
    kernel, sigma, threshold, estimator, device
        See :func:`cka`.

    Returns
    -------
    (m, m) float64 ndarray, symmetric, ones on the diagonal (NaN where undefined).

    Notes
    -----
    Each input's Gram statistics (bandwidth, row sums, self-HSIC) are computed once; one pass
    over the tiles accumulates every ``Σ K_a∘K_b`` together (m GEMMs and one fused kernel per
    tile).  Linear: one ``(Σp)×(Σp)`` float64 cross-covariance, ``O(n·(Σp)²)``.
    """
    _check_kernel(kernel)
    sigma = _check_sigma(sigma, threshold)
    _check_estimator(estimator)
    Xs = list(Xs)
    if len(Xs) < 1:
        raise InputError("cka_matrix needs at least one input")
    be = get_backend(*Xs, device=device)
    min_rows = 4 if estimator == "unbiased" else 2
    Xd = [_prep(be, X, f"Xs[{k}]", min_rows=min_rows) for k, X in enumerate(Xs)]
    for k in range(1, len(Xd)):
        check_same_rows(Xd[0], Xd[k], "Xs[0]", f"Xs[{k}]")
    st, _ = _stats(be, Xd, kernel, sigma, threshold, progress)
    m = len(Xd)
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
                      RuntimeWarning, stacklevel=2)
        for a in bad:
            out[a, :] = out[:, a] = math.nan
    return out


# ----------------------------------------------------------------------------------------------
# mutual k-NN and CKNNA (Huh et al. 2024)
# ----------------------------------------------------------------------------------------------

def _knn_indices(be: Backend, Xn, k: int, block: int = 2048):
    """(n, k) indices of the k largest inner products of each L2-normalised row, self excluded."""
    xp = be.xp
    n = Xn.shape[0]
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


# ----------------------------------------------------------------------------------------------
# permutation test
# ----------------------------------------------------------------------------------------------

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
        from ._validation import compact_repr

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
        K = gram(Xd, "rbf", sig[0], device=be.device)
        L = gram(Yd, "rbf", sig[1], device=be.device)
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


__all__ = ["cka", "hsic", "gram", "cka_matrix", "mutual_knn", "cknna", "cka_permutation_test",
           "paper_sigma", "kornblith_sigma", "PermutationResult"]


make_module_callable(__name__, cka)
