"""Sufficient statistics of CKA/HSIC: tile-by-tile kernel sums and the linear feature form.

:func:`kernel_stats` accumulates ``Σ K_a∘K_b``, the row sums and the diagonals of m kernels over
the upper block triangle of the n×n grid (one GEMM per input and tile, then one fused kernel of
the ``"cka"`` kernel family); :func:`linear_feature_stats` gives the same statistics for the
linear kernel from column-centred features in ``O(n·(Σp)²)``.  Every sum is float64.
"""

from __future__ import annotations

import math
import queue
from dataclasses import dataclass

import numpy as np

from . import _median, config
from ._threads import ordered_map, tile_pool
from ._threads import pool_threads as _chunk_threads
from .backend import Backend


def _affs(be: Backend, Xs: list) -> list:
    """The centre and scale of each input (:func:`fastcka._median.affine`), once per input."""
    ops = be.ops("cka") if be.device == "cpu" else None
    return [_median.affine(be.xp, X, ops) for X in Xs]


@dataclass
class _Stats:
    """Sufficient statistics of m symmetric kernels: ``S[a, b] = Σ K_a∘K_b``, row sums, diagonals.

    The linear feature-space form (:func:`_linear_feature_stats`: kernels of column-centred
    features) has all-zero ``rows`` (their row sums are 0): HSIC formulas are unchanged.  ``unit[a]``: input ``a``'s kernel was
    formed from rows scaled by ``s`` (:func:`fastcka._median.affine`); its true kernel is
    ``unit[a] ×`` the one summed here (``1/s²`` linear, 1 RBF).  On the host an RBF kernel is
    summed less the constant :func:`rbf_shift` (its rows and diagonal too; the one-pass sums of
    :mod:`fastcka._rbf_onepass` take it at the sample's bandwidth): every HSIC formula below is
    unchanged by it.
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
    ops = be.ops("cka")
    n = int(Xs[0].shape[0])
    m = len(Xs)
    tile = config.CKA_TILE[be.device]
    affs = _affs(be, Xs) if affs is None else affs
    sq = xp.stack([_median.sqnorms(xp, X, aff=aff) for X, aff in zip(Xs, affs, strict=True)])
    extra = {}
    if be.device == "cpu" and any(int(k) == 1 for k in kinds):
        extra["shifts"] = np.array([rbf_shift(float(sq[a].mean()), g) if int(k) == 1 else 0.0
                                    for a, (k, g) in enumerate(zip(kinds, gammas, strict=True))])
    S = np.zeros((m, m))
    rows = xp.zeros((m, n))
    diags = xp.zeros((m, n))
    tiles = list(_median.upper_tiles(n, tile))
    pool = getattr(ops, "tile", None) if be.device == "cpu" else None
    if pool is not None:
        parts = _pool_sums(Xs, affs, sq, kinds, gammas, extra.get("shifts"), tiles,
                           min(tile, n), pool)
        it = progress(parts, total=len(tiles), desc="kernel sums") if progress else parts
    else:
        it = progress(tiles, total=len(tiles), desc="kernel sums") if progress else tiles
        flat = xp.empty(m * min(tile, n) * min(tile, n))  # one buffer for every tile shape
    for item in it:
        if pool is not None:
            (i0, i1, j0, j1, diag), (St, r, c, d) = item
            _add_tile(S, rows, diags, St, r, c, d, i0, i1, j0, j1, diag)
            continue
        i0, i1, j0, j1, diag = item
        bi, bj = i1 - i0, j1 - j0
        Gs = flat[: m * bi * bj].reshape(m, bi, bj)
        for a, X in enumerate(Xs):  # float64 GEMM on float64 row blocks (float32 converted here)
            A = _median.block64(xp, X, i0, i1, affs[a])
            B = A if diag else _median.block64(xp, X, j0, j1, affs[a])
            xp.matmul(A, B.T, out=Gs[a])
        St, r, c, d = ops.kernel_stats(Gs, xp.ascontiguousarray(sq[:, i0:i1]),
                                       xp.ascontiguousarray(sq[:, j0:j1]), kinds, gammas,
                                       _median.REL_TOL, diag, **extra)
        _add_tile(S, rows, diags, be.to_host(St), r, c, d, i0, i1, j0, j1, diag)
    unit = [1.0 / (aff[1] * aff[1]) if k == 0 else 1.0 for aff, k in zip(affs, kinds, strict=True)]
    return _Stats(n, S, be.to_host(rows).astype(np.float64), be.to_host(diags).astype(np.float64),
                  unit)


def _add_tile(S, rows, diags, St, r, c, d, i0, i1, j0, j1, diag) -> None:
    """Adds one upper tile's sums (an off-diagonal tile stands for its mirror image too)."""
    S += (1.0 if diag else 2.0) * St
    rows[:, i0:i1] += r
    if diag:
        diags[:, i0:i1] = d
    else:
        rows[:, j0:j1] += c


def _pool_sums(Xs, affs, sq, kinds, gammas, shifts, tiles, edge: int, pool):
    """``(tile, sums)`` of every tile in order, from the host's tile pool
    (:func:`fastcka._threads.tile_pool`): each thread forms a tile's m Gram blocks on one BLAS
    thread and sums them with the one-thread kernel; the caller adds them in tile order (the
    bits do not depend on the number of threads)."""
    m = len(Xs)
    dims = sum(int(X.shape[1]) for X in Xs)
    threads, free = tile_pool(len(tiles), edge * edge, dims, lambda: np.empty(m * edge * edge))

    def work(t):
        i0, i1, j0, j1, diag = t
        flat = free.get()
        try:
            Gs = flat[: m * (i1 - i0) * (j1 - j0)].reshape(m, i1 - i0, j1 - j0)
            for a, X in enumerate(Xs):
                A = _median.block64(np, X, i0, i1, affs[a])
                B = A if diag else _median.block64(np, X, j0, j1, affs[a])
                np.matmul(A, B.T, out=Gs[a])
            return pool.kernel_stats(Gs, np.ascontiguousarray(sq[:, i0:i1]),
                                     np.ascontiguousarray(sq[:, j0:j1]), kinds, gammas,
                                     _median.REL_TOL, diag, shifts)
        finally:
            free.put(flat)

    return zip(tiles, ordered_map(work, tiles, threads), strict=True)


def rbf_shift(mean_sqnorm: float, gamma: float) -> float:
    """The constant taken off every value of an RBF kernel before its sums (host path): the
    kernel at the mean squared distance of centred rows (``2·mean ‖x̃_i‖²``), a value near the
    kernel's typical one.  HSIC, biased and unbiased, is unchanged by any constant shift
    (``H(K − c11ᵀ)H = HKH``; the U-statistic is translation-invariant), but the raw sums
    ``Σ K∘L`` and the row sums then stay small: without it they cancel in the HSIC formula by
    ~10³ (paper σ) and CKA lost ~3 digits, 2.3e-12 at n = 20k.  A function of the input and
    its bandwidth alone, so every path (in-process, shards, matrix) takes the same shift."""
    return math.exp(-2.0 * gamma * mean_sqnorm)


def _linear_feature_stats(be: Backend, Xs: list, pairs: list[tuple[int, int]] | None = None,
                          affs=None, diags: bool = True) -> _Stats:
    """Linear-kernel statistics in feature space from column-centred features (float64).

    ``S[a, b] = ‖X_aᵀ X_b‖²_F`` with centred features, row sums 0, diagonals ``‖x_i‖²``:
    ``O(n · (Σ p)²)`` time, ``O((Σ p)²)`` memory.  Each ``X_aᵀ X_b`` is its own GEMM (``a = b``
    a SYRK) per chunk of :func:`chunk_rows` rows, added up in chunk order, so an entry does not
    depend on the other inputs: ``pairs`` (``a <= b``, default all) computes only those entries
    (the others stay 0) and gives the bits the whole matrix gives
    (:func:`fastcka.parallel.cka_matrix_stats`).  ``diags=False`` leaves the diagonals 0 (only
    the unbiased estimator reads them; ``S`` is the same bits).

    On the CPU the chunks run on a pool of threads with one BLAS thread each (the chunks'
    products are added in chunk order: the bits do not depend on the number of threads).  The
    BLAS library's own threads on these GEMM shapes (a few hundred columns, long K) lose most
    of their speed as soon as the machine has other work (measured in ``bench/cka.py``).
    Row blocks and products live in buffers made once per thread, not once per chunk.
    """
    xp = be.xp
    n = int(Xs[0].shape[0])
    m = len(Xs)
    dims = [int(X.shape[1]) for X in Xs]
    pairs = ([(a, b) for a in range(m) for b in range(a, m)] if pairs is None
             else [tuple(p) for p in pairs])
    need = sorted({a for p in pairs for a in p})
    affs = _affs(be, Xs) if affs is None else affs
    C = {p: xp.zeros((dims[p[0]], dims[p[1]])) for p in pairs}
    D = xp.zeros((m, n))
    step = chunk_rows(n)
    starts = list(range(0, n, step))
    threads = _chunk_threads(be, len(starts), n * sum(dims[a] * dims[b] for a, b in pairs))
    free: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(threads + 1 if threads > 1 else 1):
        free.put(({a: xp.empty((min(step, n), dims[a])) for a in need},
                  {p: xp.empty((dims[p[0]], dims[p[1]])) for p in pairs}))

    rows64 = getattr(be.ops("cka"), "rows64", None) if be.device == "cpu" else None
    rows64 = rows64 or (lambda X, r0, r1, mu, s, out: _rows64(xp, X, r0, r1, (mu, s), out))

    def chunk(r0):
        r1 = min(n, r0 + step)
        bufs, prods = free.get()
        blk = {a: rows64(Xs[a], r0, r1, affs[a][0], affs[a][1], bufs[a]) for a in need}
        if diags:
            for a in need:
                D[a, r0:r1] = (blk[a] * blk[a]).sum(axis=1)
        for a, b in pairs:
            xp.dot(blk[a].T, blk[b], out=prods[a, b])  # syrk on BLAS backends where a == b
        return bufs, prods

    def add(done):
        for p in pairs:
            C[p] += done[1][p]
        free.put(done)

    for done in ordered_map(chunk, starts, threads):
        add(done)
    S = np.zeros((m, m))
    for (a, b), c in C.items():
        S[a, b] = S[b, a] = be.scalar((c * c).sum())
    return _Stats(n, S, np.zeros((m, n)), be.to_host(D).astype(np.float64),
                  [1.0 / (aff[1] * aff[1]) for aff in affs])


def chunk_rows(n: int) -> int:
    """Rows per chunk of the linear feature path: at most ``CKA_CHUNK_ROWS``, the chunks as
    even as they can be and their number a multiple of ``CKA_CHUNK_GROUP`` (a pool of 2 or 4
    threads gets them in equal shares).  A function of n alone: the bits of the sums depend on
    the chunks, never on the number of threads."""
    n = max(1, int(n))
    most = max(1, int(config.CKA_CHUNK_ROWS))
    k = -(-n // most)
    if k > 1:
        group = max(1, int(config.CKA_CHUNK_GROUP))
        k = min(n, -(-k // group) * group)
    return -(-n // k)


def _rows64(xp, X, r0: int, r1: int, aff, buf):
    """:func:`fastcka._median.block64` of rows ``r0:r1`` (the same bits) written into ``buf``."""
    B = buf[: r1 - r0]
    xp.subtract(X[r0:r1], aff[0], out=B, dtype=xp.float64)
    if aff[1] != 1.0:
        B *= aff[1]
    return B
