"""CuPy tile kernels of the CKA engine (real GPU only).

The same operations and semantics as :mod:`kernels.cka_cpu` (see its notes: GEMM-form squared
distances with the 1e-12 relative zero threshold, exact histogram-bin predicates), written as:

- ``sqdist``: an :class:`cupy.ElementwiseKernel`, in place on the cuBLAS Gram tile;
- ``hist``: a RawKernel with a shared-memory histogram, warp-reduced counters and
  ``atomicMin/atomicMax`` on the bit patterns of the (positive) values;
- ``collect``: a RawKernel appending window values with warp-aggregated atomics;
- ``kernel_stats``: one fused RawKernel per tile (distance → kernel → all ``Σ K_a∘K_b`` →
  row/column sums), float64 throughout, for up to ``MAX_FUSED`` inputs; more inputs use an
  elementwise kernel plus one cuBLAS GEMM ``(m × t)(t × m)`` for the products.

CuPy is imported lazily; importing this module on a machine without a GPU is fine, calling its
functions is not.
"""

from __future__ import annotations

import functools
import math

import numpy as np

MAX_FUSED = 8
_ROWS = 32  # rows per block of the fused stats kernel
_THREADS = 256

_COMMON = r"""
__device__ __forceinline__ int fk_bin(double v, double lo, double inv_w, int nbins) {
    double x = (v - lo) * inv_w;
    if (x <= 0.0) return 0;
    if (x > (double)nbins) return nbins + 1;
    return (int)ceil(x);
}
__device__ __forceinline__ bool fk_in_chain(double v, const double* chain, int nchain) {
    if (v == 0.0) return false;
    for (int k = 0; k < nchain; ++k) {
        if (fk_bin(v, chain[4 * k], chain[4 * k + 1], (int)chain[4 * k + 2]) != (int)chain[4 * k + 3])
            return false;
    }
    return true;
}
__device__ __forceinline__ double fk_sqdist(double g, double s, double rel_tol) {
    double d = s - 2.0 * g;   // 2g is exact: one rounding whether or not an FMA is used
    return (d <= rel_tol * s) ? 0.0 : d;
}
"""

_HIST_SRC = _COMMON + r"""
extern "C" __global__ void fk_hist(const double* D, long long bi, long long bj, int diag,
        const double* chain, int nchain, double lo, double inv_w, int nbins, double clo, double chi,
        unsigned long long* hist, unsigned long long* cnt, unsigned long long* ext) {
    extern __shared__ unsigned int sh[];
    for (int t = threadIdx.x; t < nbins + 2; t += blockDim.x) sh[t] = 0u;
    __syncthreads();
    unsigned long long nz = 0, nle = 0, nco = 0, nlow = 0, nhigh = 0;
    unsigned long long bmin = 0x7FF0000000000000ULL, bmax = 0ULL;
    long long total = bi * bj;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        long long i = e / bj, j = e - (e / bj) * bj;
        if (diag && j <= i) continue;
        double v = D[e];
        if (v == 0.0) { nz++; continue; }
        if (!fk_in_chain(v, chain, nchain)) continue;
        int b = fk_bin(v, lo, inv_w, nbins);
        if (b == 0) nlow++;
        else if (b == nbins + 1) nhigh++;
        else atomicAdd(&sh[b], 1u);
        if (v <= clo) nle++; else if (v <= chi) nco++;
        unsigned long long bits = (unsigned long long)__double_as_longlong(v);
        bmin = bits < bmin ? bits : bmin;
        bmax = bits > bmax ? bits : bmax;
    }
    for (int off = 16; off > 0; off >>= 1) {
        nz += __shfl_down_sync(0xffffffffu, nz, off);
        nle += __shfl_down_sync(0xffffffffu, nle, off);
        nco += __shfl_down_sync(0xffffffffu, nco, off);
        nlow += __shfl_down_sync(0xffffffffu, nlow, off);
        nhigh += __shfl_down_sync(0xffffffffu, nhigh, off);
        unsigned long long a = __shfl_down_sync(0xffffffffu, bmin, off);
        unsigned long long c = __shfl_down_sync(0xffffffffu, bmax, off);
        bmin = a < bmin ? a : bmin;
        bmax = c > bmax ? c : bmax;
    }
    if ((threadIdx.x & 31) == 0) {
        if (nz) atomicAdd(&cnt[0], nz);
        if (nle) atomicAdd(&cnt[1], nle);
        if (nco) atomicAdd(&cnt[2], nco);
        if (nlow) atomicAdd(&hist[0], nlow);
        if (nhigh) atomicAdd(&hist[nbins + 1], nhigh);
        atomicMin(&ext[0], bmin);
        atomicMax(&ext[1], bmax);
    }
    __syncthreads();
    for (int t = 1 + threadIdx.x; t <= nbins; t += blockDim.x)
        if (sh[t]) atomicAdd(&hist[t], (unsigned long long)sh[t]);
}

extern "C" __global__ void fk_collect(const double* D, long long bi, long long bj, int diag,
        const double* chain, int nchain, double clo, double chi,
        double* out, unsigned long long* counter, long long cap) {
    long long total = bi * bj;
    int lane = threadIdx.x & 31;
    long long stride = (long long)gridDim.x * blockDim.x;
    long long gtid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (long long eb = gtid - lane; eb < total; eb += stride) {   // warp-uniform loop
        long long e = eb + lane;
        bool pred = false;
        double v = 0.0;
        if (e < total) {
            long long i = e / bj, j = e - (e / bj) * bj;
            if (!(diag && j <= i)) {
                v = D[e];
                pred = v > clo && v <= chi && fk_in_chain(v, chain, nchain);
            }
        }
        unsigned int m = __ballot_sync(0xffffffffu, pred);
        if (m == 0u) continue;
        unsigned long long base = 0;
        if (lane == 0) base = atomicAdd(counter, (unsigned long long)__popc(m));
        base = __shfl_sync(0xffffffffu, base, 0);
        if (pred) {
            unsigned long long k = base + __popc(m & ((1u << lane) - 1u));
            if (k < (unsigned long long)cap) out[k] = v;
        }
    }
}
"""

_STATS_TMPL = _COMMON + r"""
#define M __M__
#define NP (M * (M + 1) / 2)
#define ROWS __ROWS__
extern "C" __global__ void fk_kstats(const double* Gs, const double* na_i, const double* na_j,
        const int* kinds, const double* gammas, long long bi, long long bj, int diag,
        double rel_tol, double* S, double* rows, double* cols, double* diags) {
    __shared__ double rsh[ROWS * M];
    __shared__ double ssh[NP];
    int lane = threadIdx.x & 31;
    for (int t = threadIdx.x; t < ROWS * M; t += blockDim.x) rsh[t] = 0.0;
    for (int t = threadIdx.x; t < NP; t += blockDim.x) ssh[t] = 0.0;
    __syncthreads();
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long i0 = (long long)blockIdx.y * ROWS;
    long long i1 = i0 + ROWS < bi ? i0 + ROWS : bi;
    bool vj = j < bj;
    long long tile = bi * bj;
    double colacc[M];
    double sacc[NP];
    for (int a = 0; a < M; ++a) colacc[a] = 0.0;
    for (int p = 0; p < NP; ++p) sacc[p] = 0.0;
    for (long long i = i0; i < i1; ++i) {
        double k[M];
        for (int a = 0; a < M; ++a) {
            double g = 0.0;
            if (vj) {
                g = Gs[a * tile + i * bj + j];
                if (kinds[a] == 1) {
                    if (diag && i == j) g = 1.0;
                    else g = exp(-gammas[a] * fk_sqdist(g, na_i[a * bi + i] + na_j[a * bj + j], rel_tol));
                }
                if (diag && i == j) diags[a * bi + i] = g;
            }
            k[a] = g;
            colacc[a] += g;
        }
        int p = 0;
        for (int a = 0; a < M; ++a)
            for (int b = a; b < M; ++b) sacc[p++] += k[a] * k[b];
        for (int a = 0; a < M; ++a) {
            double v = k[a];
            for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
            if (lane == 0) atomicAdd(&rsh[(i - i0) * M + a], v);
        }
    }
    if (vj)
        for (int a = 0; a < M; ++a) atomicAdd(&cols[a * bj + j], colacc[a]);
    for (int p = 0; p < NP; ++p) {
        double v = sacc[p];
        for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
        if (lane == 0) atomicAdd(&ssh[p], v);
    }
    __syncthreads();
    for (int t = threadIdx.x; t < (int)(i1 - i0) * M; t += blockDim.x) {
        int r = t / M, a = t - (t / M) * M;
        atomicAdd(&rows[a * bi + i0 + r], rsh[t]);
    }
    if (threadIdx.x < NP) {
        int p = 0;
        for (int a = 0; a < M; ++a)
            for (int b = a; b < M; ++b) {
                if (p == (int)threadIdx.x) {
                    atomicAdd(&S[a * M + b], ssh[p]);
                    if (a != b) atomicAdd(&S[b * M + a], ssh[p]);
                }
                ++p;
            }
    }
}
"""


def _cp():
    import cupy

    return cupy


@functools.cache
def _module(src: str):
    cp = _cp()
    return cp.RawModule(code=src, options=("--std=c++14",))


@functools.cache
def _stats_kernel(m: int):
    src = _STATS_TMPL.replace("__M__", str(m)).replace("__ROWS__", str(_ROWS))
    return _module(src).get_function("fk_kstats")


@functools.lru_cache(maxsize=1)
def _elementwise():
    cp = _cp()
    sqd = cp.ElementwiseKernel(
        "raw float64 na_i, raw float64 na_j, int64 bj, float64 rel_tol, bool diag",
        "float64 g",
        """
        long long r = i / bj, c = i - (i / bj) * bj;
        double s = na_i[r] + na_j[c];
        double d = s - 2.0 * g;
        g = (d <= rel_tol * s || (diag && r == c)) ? 0.0 : d;
        """, "fastcka_sqdist_inplace")
    rbf = cp.ElementwiseKernel(
        "raw float64 na_i, raw float64 na_j, int64 bj, float64 gamma, float64 rel_tol, bool diag",
        "float64 g",
        """
        long long r = i / bj, c = i - (i / bj) * bj;
        if (diag && r == c) { g = 1.0; } else {
            double s = na_i[r] + na_j[c];
            double d = s - 2.0 * g;
            if (d <= rel_tol * s) d = 0.0;
            g = exp(-gamma * d);
        }
        """, "fastcka_rbf_inplace")
    return sqd, rbf


def _c(a):
    cp = _cp()
    return cp.ascontiguousarray(a, dtype=cp.float64)


def _grid(total: int) -> int:
    cp = _cp()
    sms = cp.cuda.Device().attributes["MultiProcessorCount"]
    return int(max(1, min(sms * 16, math.ceil(total / _THREADS))))


def _chain_dev(chain):
    cp = _cp()
    if not chain:
        return cp.zeros(4, dtype=cp.float64), 0
    return cp.asarray(np.asarray(chain, dtype=np.float64).ravel()), len(chain)


def sqdist(G, na_i, na_j, rel_tol, diag):
    """In place: Gram tile -> squared distances (see :func:`kernels.cka_cpu.sqdist_np`)."""
    sqd, _ = _elementwise()
    sqd(_c(na_i), _c(na_j), np.int64(G.shape[1]), np.float64(rel_tol), bool(diag), G)
    return G


def hist(D, diag, chain, lo, inv_w, nbins, clo, chi):
    """See :func:`kernels.cka_cpu.hist_np` (same return values, host scalars and histogram)."""
    cp = _cp()
    bi, bj = D.shape
    h = cp.zeros(nbins + 2, dtype=cp.uint64)
    cnt = cp.zeros(3, dtype=cp.uint64)
    ext = cp.asarray(np.array([0x7FF0000000000000, 0], dtype=np.uint64))
    ch, nch = _chain_dev(chain)
    fn = _module(_HIST_SRC).get_function("fk_hist")
    fn((_grid(bi * bj),), (_THREADS,),
       (D, np.int64(bi), np.int64(bj), np.int32(bool(diag)), ch, np.int32(nch), np.float64(lo),
        np.float64(inv_w), np.int32(nbins), np.float64(clo), np.float64(chi), h, cnt, ext),
       shared_mem=4 * (nbins + 2))
    hh = h.get().astype(np.int64)
    c = cnt.get().astype(np.int64)
    e = ext.get().view(np.float64)
    if hh.sum() == 0:
        vmin, vmax = math.inf, -math.inf
    else:
        vmin, vmax = float(e[0]), float(e[1])
    return int(c[0]), hh, int(c[1]), int(c[2]), vmin, vmax


def collect(D, diag, chain, clo, chi, count=None):
    """Window values in ``(clo, chi]`` (device array; order unspecified).

    ``count`` is their number when known (from :func:`hist`); otherwise one more pass counts.
    """
    cp = _cp()
    bi, bj = D.shape
    ch, nch = _chain_dev(chain)
    nco = count if count is not None else hist(D, diag, chain, 0.0, 1.0, 1, clo, chi)[3]
    out = cp.empty(max(nco, 1), dtype=cp.float64)
    counter = cp.zeros(1, dtype=cp.uint64)
    fn = _module(_HIST_SRC).get_function("fk_collect")
    fn((_grid(bi * bj),), (_THREADS,),
       (D, np.int64(bi), np.int64(bj), np.int32(bool(diag)), ch, np.int32(nch), np.float64(clo),
        np.float64(chi), out, counter, np.int64(nco)))
    return out[:nco]


def kernel_stats(Gs, na_i, na_j, kinds, gammas, rel_tol, diag):
    """Fused tile statistics (see :func:`kernels.cka_cpu.kernel_stats_np`); device arrays."""
    cp = _cp()
    m, bi, bj = Gs.shape
    na_i, na_j = _c(na_i), _c(na_j)
    S = cp.zeros((m, m))
    rows = cp.zeros((m, bi))
    cols = cp.zeros((m, bj))
    diags = cp.zeros((m, bi))
    if m <= MAX_FUSED:
        fn = _stats_kernel(m)
        grid = (math.ceil(bj / _THREADS), math.ceil(bi / _ROWS))
        fn(grid, (_THREADS,),
           (Gs, na_i, na_j, cp.asarray(np.asarray(kinds, dtype=np.int32)),
            cp.asarray(np.asarray(gammas, dtype=np.float64)), np.int64(bi), np.int64(bj),
            np.int32(bool(diag)), np.float64(rel_tol), S, rows, cols, diags))
        return S, rows, cols, diags
    _, rbf = _elementwise()
    for a in range(m):
        if int(kinds[a]) == 1:
            rbf(na_i[a], na_j[a], np.int64(bj), np.float64(gammas[a]), np.float64(rel_tol),
                bool(diag), Gs[a])
    flat = Gs.reshape(m, bi * bj)
    S = flat @ flat.T  # cuBLAS
    rows = Gs.sum(axis=2)
    cols = Gs.sum(axis=1)
    if diag:
        diags = cp.stack([cp.diagonal(Gs[a]) for a in range(m)])
    return S, rows, cols, diags


class _Ops:
    name = "cupy"
    sqdist = staticmethod(sqdist)
    hist = staticmethod(hist)
    collect = staticmethod(collect)
    kernel_stats = staticmethod(kernel_stats)


def get_ops():
    """The CuPy kernel set (same interface as :func:`kernels.cka_cpu.get_ops`)."""
    return _Ops
