"""Exact batched linear assignment on a GPU (Numba CUDA): one thread block per problem.

Same algorithm as :mod:`qap_cpu` (Jonker–Volgenant / Crouse shortest augmenting paths with
column duals that may be warm-started).  Inside a block the threads share each Dijkstra step: they
relax the reduced costs of the current row over the remaining columns in parallel and reduce to
the closest column (ties: an unassigned column first, then the lowest position), and thread 0
follows the path.  Thousands of small problems (FAQ restarts) run as one launch, one block each.

The result is an exact optimum (same optimal cost as ``scipy.optimize.linear_sum_assignment``);
the kernels run under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) for tests.
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np

if not hasattr(np, "row_stack"):  # pragma: no cover - numba-cuda < 0.2x with NumPy >= 2.5
    # numba-cuda registers an overload for np.row_stack (removed in NumPy 2.5) while compiling
    # its first kernel; give it the alias it expects (identical to np.vstack).
    setattr(np, "row_stack", np.vstack)  # noqa: B010
from numba import cuda  # noqa: E402

_INF = math.inf


def _simulated() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"


@functools.cache
def _kernel(tpb: int):  # pragma: no cover - compiled for the device or simulated
    @cuda.jit
    def sap(C, sign, V, U, col4row, row4col, spc, path, remaining, SR, SC, freel, ok):
        b = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        n = C.shape[1]
        sh_val = cuda.shared.array(tpb, dtype=np.float64)
        sh_flag = cuda.shared.array(tpb, dtype=np.int32)
        sh_pos = cuda.shared.array(tpb, dtype=np.int32)
        sh_f = cuda.shared.array(1, dtype=np.float64)      # minval
        sh_i = cuda.shared.array(3, dtype=np.int32)        # current row, sink, #remaining
        sh_v2 = cuda.shared.array(tpb, dtype=np.float64)
        sh_p2 = cuda.shared.array(tpb, dtype=np.int32)
        sh_a = cuda.shared.array(4, dtype=np.int32)        # ARR: position, end, #free, steps
        for j in range(tid, n, tpb):
            col4row[b, j] = -1
            row4col[b, j] = -1
            U[b, j] = 0.0
            freel[b, j] = j
        if tid == 0:
            sh_a[2] = n
        cuda.syncthreads()
        # ---- augmenting row reduction (see qap_cpu._arr): two passes over the free rows ----
        for _pass in range(2):
            if tid == 0:
                sh_a[0] = 0
                sh_a[1] = sh_a[2]
                sh_a[2] = 0
                sh_a[3] = 0
            cuda.syncthreads()
            while sh_a[0] < sh_a[1]:
                i = freel[b, sh_a[0]]
                u1 = _INF
                u2 = _INF
                j1 = -1
                j2 = -1
                for j in range(tid, n, tpb):
                    h = sign * C[b, i, j] - V[b, j]
                    if h < u2:
                        if h >= u1:
                            u2 = h
                            j2 = j
                        else:
                            u2 = u1
                            j2 = j1
                            u1 = h
                            j1 = j
                sh_val[tid] = u1
                sh_pos[tid] = j1
                sh_v2[tid] = u2
                sh_p2[tid] = j2
                cuda.syncthreads()
                s = tpb // 2
                while s > 0:
                    if tid < s:
                        o = tid + s
                        a1 = sh_val[tid]
                        a2 = sh_v2[tid]
                        b1 = sh_val[o]
                        b2 = sh_v2[o]
                        if a1 <= b1:
                            if b1 < a2:
                                sh_v2[tid] = b1
                                sh_p2[tid] = sh_pos[o]
                        else:
                            ja1 = sh_pos[tid]
                            sh_val[tid] = b1
                            sh_pos[tid] = sh_pos[o]
                            if b2 <= a1:
                                sh_v2[tid] = b2
                                sh_p2[tid] = sh_p2[o]
                            else:
                                sh_v2[tid] = a1
                                sh_p2[tid] = ja1
                    cuda.syncthreads()
                    s //= 2
                if tid == 0:
                    k = sh_a[0] + 1
                    sh_a[3] += 1
                    u1 = sh_val[0]
                    j1 = sh_pos[0]
                    u2 = sh_v2[0]
                    j2 = sh_p2[0]
                    i0 = row4col[b, j1]
                    if j2 >= 0 and u1 < u2:
                        V[b, j1] -= u2 - u1
                    elif i0 >= 0 and j2 >= 0:
                        j1 = j2
                        i0 = row4col[b, j2]
                    if i0 >= 0:
                        col4row[b, i0] = -1
                        if u1 < u2 and sh_a[3] < 4 * n:
                            k -= 1
                            freel[b, k] = i0
                        else:
                            freel[b, sh_a[2]] = i0
                            sh_a[2] += 1
                    row4col[b, j1] = i
                    col4row[b, i] = j1
                    sh_a[0] = k
                cuda.syncthreads()
            # every thread must have left the loop before thread 0 resets sh_a
            cuda.syncthreads()
        for r in range(tid, n, tpb):
            j = col4row[b, r]
            if j >= 0:
                U[b, r] = sign * C[b, r, j] - V[b, j]
        cuda.syncthreads()
        nfree = sh_a[2]
        for f in range(nfree):
            cur = freel[b, f]
            for j in range(tid, n, tpb):
                remaining[b, j] = n - 1 - j
                spc[b, j] = _INF
                SC[b, j] = 0
                SR[b, j] = 0
            if tid == 0:
                sh_f[0] = 0.0
                sh_i[0] = cur
                sh_i[1] = -1
                sh_i[2] = n
            cuda.syncthreads()
            while sh_i[1] == -1:
                i = sh_i[0]
                minval = sh_f[0]
                num_rem = sh_i[2]
                ui = U[b, i]
                best = _INF
                bflag = 2
                bpos = -1
                for it in range(tid, num_rem, tpb):
                    j = remaining[b, it]
                    r = minval + sign * C[b, i, j] - ui - V[b, j]
                    if r < spc[b, j]:
                        path[b, j] = i
                        spc[b, j] = r
                    val = spc[b, j]
                    fl = 0 if row4col[b, j] == -1 else 1
                    if val < best or (val == best and fl < bflag):
                        best = val
                        bflag = fl
                        bpos = it
                sh_val[tid] = best
                sh_flag[tid] = bflag
                sh_pos[tid] = bpos
                cuda.syncthreads()
                s = tpb // 2
                while s > 0:
                    if tid < s:
                        o = tid + s
                        va = sh_val[tid]
                        vb = sh_val[o]
                        take = False
                        if vb < va:
                            take = True
                        elif vb == va:
                            if sh_flag[o] < sh_flag[tid]:
                                take = True
                            elif sh_flag[o] == sh_flag[tid] and sh_pos[o] != -1 and (
                                    sh_pos[tid] == -1 or sh_pos[o] < sh_pos[tid]):
                                take = True
                        if take:
                            sh_val[tid] = vb
                            sh_flag[tid] = sh_flag[o]
                            sh_pos[tid] = sh_pos[o]
                    cuda.syncthreads()
                    s //= 2
                if tid == 0:
                    lowest = sh_val[0]
                    pos = sh_pos[0]
                    if lowest == _INF or pos == -1:
                        ok[b] = 0
                        sh_i[1] = -2
                    else:
                        sh_f[0] = lowest
                        SR[b, i] = 1
                        j = remaining[b, pos]
                        if row4col[b, j] == -1:
                            sh_i[1] = j
                        else:
                            sh_i[0] = row4col[b, j]
                        SC[b, j] = 1
                        num_rem -= 1
                        remaining[b, pos] = remaining[b, num_rem]
                        sh_i[2] = num_rem
                cuda.syncthreads()
            sink = sh_i[1]
            if sink < 0:
                return
            minval = sh_f[0]
            for r in range(tid, n, tpb):
                if SR[b, r] == 1 and r != cur:
                    U[b, r] += minval - spc[b, col4row[b, r]]
                if SC[b, r] == 1:
                    V[b, r] -= minval - spc[b, r]
            cuda.syncthreads()
            if tid == 0:
                U[b, cur] += minval
                j = sink
                while True:
                    i = path[b, j]
                    row4col[b, j] = i
                    nxt = col4row[b, i]
                    col4row[b, i] = j
                    j = nxt
                    if i == cur:
                        break
            cuda.syncthreads()

    return sap


def _threads_for(n: int) -> int:
    if _simulated():
        return 8 if n <= 16 else 16
    if n >= 2048:
        return 512      # 1024 threads exceed the register file for this kernel
    if n >= 256:
        return 256
    return 64


def warmup() -> None:
    """Compile the kernels for every block size used (float32 and float64 costs), the auction's too."""
    for n in (8, 300, 2100):
        for dt in (np.float64, np.float32):
            lap_batch_cuda(np.random.default_rng(0).random((1, n, n)).astype(dt),
                           auction=n == 300)


def _solve_device(dC, maximize: bool, dV):
    """Launch on Numba device arrays: dC (k, n, n), dV (k, n) float64 (updated in place)."""
    k, n = dC.shape[0], dC.shape[1]
    col4row = cuda.device_array((k, n), dtype=np.int64)
    if n == 0 or k == 0:
        return col4row
    row4col = cuda.device_array((k, n), dtype=np.int64)
    U = cuda.device_array((k, n), dtype=np.float64)
    spc = cuda.device_array((k, n), dtype=np.float64)
    path = cuda.device_array((k, n), dtype=np.int64)
    remaining = cuda.device_array((k, n), dtype=np.int64)
    SR = cuda.device_array((k, n), dtype=np.int8)
    SC = cuda.device_array((k, n), dtype=np.int8)
    freel = cuda.device_array((k, n), dtype=np.int64)
    ok = cuda.to_device(np.ones(k, dtype=np.int8))
    tpb = _threads_for(n)
    _kernel(tpb)[k, tpb](dC, -1.0 if maximize else 1.0, dV, U, col4row, row4col, spc, path,
                         remaining, SR, SC, freel, ok)
    if not ok.copy_to_host().all():  # pragma: no cover - finite dense costs are always feasible
        raise ValueError("cost matrix is infeasible")
    return col4row


def _auction_warm_start(dC, maximize: bool, dV, cost_range: float, auction) -> None:
    """Replace the warm-start duals dV by ``-p`` of an ε-scaling auction started from ``p = -dV``.

    ``auction``: True, or a dict of :func:`auction_cuda.auction_device` keyword arguments.
    """
    from .auction_cuda import auction_device

    kw = auction if isinstance(auction, dict) else {}
    p = -dV.copy_to_host()                            # k·n numbers: the round trip is cheap
    # duals carried across many warm starts may drift by a constant; prices are shift-invariant,
    # and keeping them near the cost range keeps ε visible in float64
    p -= p.min(axis=1, keepdims=True) if p.size else 0.0
    price = cuda.to_device(p)
    auction_device(dC, maximize, price, cost_range, **kw)
    dV.copy_to_device(-price.copy_to_host())


def lap_batch_cuda(C: np.ndarray, maximize: bool = False, v0: np.ndarray | None = None,
                   auction: bool | dict = False):
    """Solve k dense n×n assignment problems exactly on the GPU (host arrays in and out).

    Parameters
    ----------
    C : (k, n, n) or (n, n) float array
    maximize : bool
    v0 : (k, n) float64, optional
        Warm-start column duals (of the minimisation of ``±C``).
    auction : bool or dict
        First improve the warm start with the row-parallel ε-scaling auction of
        :mod:`auction_cuda` (for a few large problems); the result stays exact.  A dict gives
        the auction's keyword arguments (ε schedule, ...).

    Returns
    -------
    cols : (k, n) int64, v : (k, n) float64
        Assignment (``cols[b, i]`` = column of row ``i``) and final column duals.

    Notes
    -----
    One thread block per problem; memory ~ 6 k·n words of work space besides ``C``.
    """
    C = np.asarray(C)
    single = C.ndim == 2
    if single:
        C = C[None]
    if C.ndim != 3 or C.shape[1] != C.shape[2]:
        raise ValueError(f"C must be (k, n, n) or (n, n) (square problems), got shape {C.shape}")
    if not np.isfinite(C).all():
        raise ValueError("C contains NaN or Inf")
    if C.dtype not in (np.float32, np.float64):
        C = C.astype(np.float64)
    k, n, _ = C.shape
    dV = cuda.to_device(np.zeros((k, n)) if v0 is None else np.asarray(v0, np.float64).reshape(k, n))
    dC = cuda.to_device(np.ascontiguousarray(C))
    if auction and C.size:
        _auction_warm_start(dC, maximize, dV, float(C.max() - C.min()), auction)
    cols = _solve_device(dC, maximize, dV).copy_to_host()
    v = dV.copy_to_host()
    if single:
        return cols[0], v[0]
    return cols, v


def lap_batch_device(G, maximize: bool = False, v0=None, auction: bool | dict = False, *,
                     checked: bool = False):
    """As :func:`lap_batch_cuda` for CuPy arrays, without leaving the device.

    Returns ``(cols, v)`` as CuPy arrays (``v0`` is not modified).  ``checked=True``: the caller
    guarantees a C-contiguous ``G`` and gives up ``v0`` (a C-contiguous (k, n) float64 CuPy
    array, then updated in place and returned as ``v``): no copy.
    """
    import cupy as cp

    if not checked:
        G = cp.ascontiguousarray(G)
    k, n = G.shape[0], G.shape[1]
    if v0 is None:
        V = cp.zeros((k, n), dtype=cp.float64)
    else:
        V = v0 if checked else cp.array(v0, dtype=cp.float64)
    dG, dV = cuda.as_cuda_array(G), cuda.as_cuda_array(V)
    if auction and G.size:
        _auction_warm_start(dG, maximize, dV, float(G.max() - G.min()), auction)
    cols = _solve_device(dG, maximize, dV)
    return cp.asarray(cols), V
