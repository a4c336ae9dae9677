"""Numba CUDA kernels of local CKA (the GPU twins of :mod:`local_cka_cpu`).

Written so that ``NUMBA_ENABLE_CUDASIM=1`` runs them on the CPU (tests use the simulator on
tiny sizes).  On a GPU the wrappers accept CuPy arrays (``__cuda_array_interface__``) and
return device arrays of the same library as their inputs; under the simulator they take and
return NumPy arrays.

Kernels
-------
``median_merge_kernel``
    one thread per query row: the lower median of the union of the sorted base values and the
    row's ``counts[i]`` sorted leading entries (two-sorted-arrays selection, O(log p)).
``rbf_rowsum_kernel``
    one thread per (alpha, base row): ``R[u, a] = sum_b exp(-alpha_u D[a, b])`` and the row sum
    of the squares ``R2[u, a]`` (so ``T = R.sum(1)``, ``S2 = R2.sum(1)``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda  # module level: the simulator swaps this name when CUDASIM is on

from . import array_module

_KERNELS = None

THREADS = 128


def _numpy_compat() -> None:
    """Some numba-cuda releases still call ``np.row_stack`` (removed in NumPy 2.5) while
    compiling a first kernel (seen on the GPU image): alias it to ``np.vstack`` if absent."""
    if not hasattr(np, "row_stack"):
        setattr(np, "row_stack", np.vstack)  # noqa: B010


def _build():
    global _KERNELS
    if _KERNELS is not None:
        return _KERNELS
    _numpy_compat()

    @cuda.jit
    def median_merge_kernel(base, qsorted, counts, out):  # pragma: no cover - device code
        i = cuda.grid(1)
        if i >= qsorted.shape[0]:
            return
        nq = counts[i]
        nb = base.shape[0]
        n = nb + nq
        if n == 0:
            out[i] = math.nan
            return
        j = (n - 1) // 2 + 1
        lo = j - nb
        if lo < 0:
            lo = 0
        hi = nq
        if j < hi:
            hi = j
        while lo < hi:
            t = (lo + hi) // 2
            if qsorted[i, t] < base[j - t - 1]:
                lo = t + 1
            else:
                hi = t
        t = lo
        best = -math.inf
        if t > 0:
            best = qsorted[i, t - 1]
        if j - t > 0 and base[j - t - 1] > best:
            best = base[j - t - 1]
        out[i] = best

    @cuda.jit
    def rbf_rowsum_kernel(D, alphas, R, R2):  # pragma: no cover - device code
        a, u = cuda.grid(2)
        p = D.shape[0]
        if a >= p or u >= alphas.shape[0]:
            return
        al = alphas[u]
        s = 0.0
        s2 = 0.0
        for b in range(p):
            e = math.exp(-al * D[a, b])
            s += e
            s2 += e * e
        R[u, a] = s
        R2[u, a] = s2

    _KERNELS = (median_merge_kernel, rbf_rowsum_kernel)
    return _KERNELS


def _simulated() -> bool:
    from numba import config

    return bool(getattr(config, "ENABLE_CUDASIM", False))


def lower_median_sorted(base_sorted, qsorted, counts):
    """Per-row lower median of ``base_sorted`` joined with ``qsorted[i, :counts[i]]``.

    Parameters
    ----------
    base_sorted : (M,) float64, ascending, all > 0
    qsorted : (q, p) float64, each row ascending; only the first ``counts[i]`` entries count
    counts : (q,) int64

    Returns
    -------
    (q,) float64 on the inputs' device (``nan`` where the union is empty).
    """
    median_merge_kernel, _ = _build()
    xp = array_module(qsorted)
    q = qsorted.shape[0]
    out = xp.empty(q, dtype=np.float64)
    if q == 0:
        return out
    blocks = (q + THREADS - 1) // THREADS
    median_merge_kernel[blocks, THREADS](base_sorted, qsorted, counts, out)
    return out


def rbf_base_stats(D, alphas):
    """``(R, T, S2)`` of ``exp(-alpha D)`` for each alpha; ``D`` symmetric with zero diagonal."""
    _, rbf_rowsum_kernel = _build()
    xp = array_module(D)
    p, m = D.shape[0], alphas.shape[0]
    R = xp.empty((m, p), dtype=np.float64)
    R2 = xp.empty((m, p), dtype=np.float64)
    if m and p:
        tx, ty = 32, 4
        grid = ((p + tx - 1) // tx, (m + ty - 1) // ty)
        rbf_rowsum_kernel[grid, (tx, ty)](D, alphas, R, R2)
    return R, R.sum(axis=1), R2.sum(axis=1)
