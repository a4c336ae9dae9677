"""Numba CUDA tile kernels of the CKA engine (shared-memory tiling).

One kernel does the whole fused tile step for a pair of inputs: each ``TPB × TPB`` thread block
stages ``TPB``-wide feature slices of its row block of X (and Y) and of its column block in
shared memory, accumulates the squared distances (direct difference form) and inner products of
its ``TPB × TPB`` pairs, applies the kernels, and reduces ``k·l``, ``k²``, ``l²`` over the block
(shared-memory tree, then one atomic add per block) and the row sums (atomic adds).  Every pair
``(i, j)`` of the n×n grid is visited (diagonal included), so the row sums are those of the full
symmetric matrices; float64 throughout.

Written to run identically under ``NUMBA_ENABLE_CUDASIM=1`` (the CPU simulator, used by the
normal test run on tiny sizes) and on a real GPU.  Importing this module imports numba.cuda (``import fastcka`` does not import it).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float64

TPB = 8  # threads per block edge (shared tiles TPB x TPB)
KIND_LINEAR = 0
KIND_RBF = 1


def _numpy_compat() -> None:
    """Some numba-cuda releases still reference ``np.row_stack`` (an alias of ``np.vstack``
    removed from NumPy 2.5) when they compile a first kernel; restore the alias if it is gone."""
    if not hasattr(np, "row_stack"):
        setattr(np, "row_stack", np.vstack)  # noqa: B010


@functools.lru_cache(maxsize=1)
def _kernels():
    # ``cuda`` must be a module global of the kernels: the simulator swaps it there
    _numpy_compat()
    tpb = TPB
    # shared-array shapes must be compile-time constants on a real GPU (the simulator accepts
    # any int): compute the product here, outside the kernel
    tpb2 = TPB * TPB

    @cuda.jit
    def pair_stats(X, Y, kx, ky, gx, gy, S, rk, rl):
        """S[0] += Σ k·l, S[1] += Σ k², S[2] += Σ l²; rk[i] += Σ_j k_ij; rl[i] += Σ_j l_ij."""
        n = X.shape[0]
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        i = cuda.blockIdx.y * tpb + ty  # row
        j = cuda.blockIdx.x * tpb + tx  # column
        sa = cuda.shared.array((tpb, tpb), float64)
        sb = cuda.shared.array((tpb, tpb), float64)
        red = cuda.shared.array((3, tpb2), float64)
        k = 0.0
        lval = 0.0
        for side in range(2):
            A = X if side == 0 else Y
            p = A.shape[1]
            dist = 0.0
            dot = 0.0
            for f0 in range(0, p, tpb):
                # row block slice: sa[ty][f] = A[i, f0+f]; column block slice: sb[tx][f] = A[j, f0+f]
                f = f0 + tx
                sa[ty, tx] = A[i, f] if (i < n and f < p) else 0.0
                jr = cuda.blockIdx.x * tpb + ty
                f2 = f0 + tx
                sb[ty, tx] = A[jr, f2] if (jr < n and f2 < p) else 0.0
                cuda.syncthreads()
                for ff in range(tpb):
                    a = sa[ty, ff]
                    b = sb[tx, ff]
                    diff = a - b
                    dist += diff * diff
                    dot += a * b
                cuda.syncthreads()
            kind = kx if side == 0 else ky
            gam = gx if side == 0 else gy
            val = dot if kind == 0 else math.exp(-gam * dist)
            if side == 0:
                k = val
            else:
                lval = val
        valid = i < n and j < n
        if not valid:
            k = 0.0
            lval = 0.0
        t = ty * tpb + tx
        red[0, t] = k * lval
        red[1, t] = k * k
        red[2, t] = lval * lval
        if valid:
            cuda.atomic.add(rk, i, k)
            cuda.atomic.add(rl, i, lval)
        cuda.syncthreads()
        s = tpb2 // 2
        while s > 0:
            if t < s:
                red[0, t] += red[0, t + s]
                red[1, t] += red[1, t + s]
                red[2, t] += red[2, t + s]
            cuda.syncthreads()
            s //= 2
        if t == 0:
            cuda.atomic.add(S, 0, red[0, 0])
            cuda.atomic.add(S, 1, red[1, 0])
            cuda.atomic.add(S, 2, red[2, 0])

    @cuda.jit
    def sqdist(X, D):
        """D[i, j] = ‖x_i − x_j‖² (shared-memory tiled, direct difference form)."""
        n, p = X.shape
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        i = cuda.blockIdx.y * tpb + ty
        j = cuda.blockIdx.x * tpb + tx
        sa = cuda.shared.array((tpb, tpb), float64)
        sb = cuda.shared.array((tpb, tpb), float64)
        acc = 0.0
        for f0 in range(0, p, tpb):
            f = f0 + tx
            sa[ty, tx] = X[i, f] if (i < n and f < p) else 0.0
            jr = cuda.blockIdx.x * tpb + ty
            sb[ty, tx] = X[jr, f] if (jr < n and f < p) else 0.0
            cuda.syncthreads()
            for ff in range(tpb):
                diff = sa[ty, ff] - sb[tx, ff]
                acc += diff * diff
            cuda.syncthreads()
        if i < n and j < n:
            D[i, j] = acc

    return pair_stats, sqdist


def _grid(n: int) -> tuple[int, int]:
    b = (n + TPB - 1) // TPB
    return (b, b)


def sqdist_cuda(X: np.ndarray) -> np.ndarray:
    """All squared distances of the rows of X on the CUDA device (or simulator); (n, n)."""
    _, kern = _kernels()
    X = np.ascontiguousarray(X, dtype=np.float64)
    n = X.shape[0]
    dX = cuda.to_device(X)
    dD = cuda.device_array((n, n), dtype=np.float64)
    kern[_grid(n), (TPB, TPB)](dX, dD)
    return dD.copy_to_host()


def pair_stats_cuda(X: np.ndarray, Y: np.ndarray, kinds=(KIND_RBF, KIND_RBF),
                    gammas=(1.0, 1.0)):
    """Fused kernel sums of a pair on the CUDA device (or simulator).

    Parameters
    ----------
    X : (n, p), Y : (n, q) array_like
    kinds : (int, int) — 0 linear, 1 rbf
    gammas : (float, float) — ``1/(2σ²)`` of each rbf side

    Returns
    -------
    S : (3,) ``[Σ K∘L, Σ K∘K, Σ L∘L]`` ; rk, rl : (n,) row sums of K and L
    """
    kern, _ = _kernels()
    X = np.ascontiguousarray(X, dtype=np.float64)
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    n = X.shape[0]
    dS = cuda.to_device(np.zeros(3))
    drk = cuda.to_device(np.zeros(n))
    drl = cuda.to_device(np.zeros(n))
    kern[_grid(n), (TPB, TPB)](cuda.to_device(X), cuda.to_device(Y), int(kinds[0]), int(kinds[1]),
                               float(gammas[0]), float(gammas[1]), dS, drk, drl)
    return dS.copy_to_host(), drk.copy_to_host(), drl.copy_to_host()
