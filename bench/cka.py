"""Benchmark of the CKA engine against the naive Gram-form NumPy reference (same run).

Usage::

    python bench/cka.py [--device cpu|gpu] [--out DIR] [--quick]

Writes ``<out>/cka.md`` (CPU) or ``<out>/cka_gpu.md`` (GPU); ``--out`` defaults to
``bench/results`` and also receives the raw numbers as JSON.

Sections
--------
1. naive reference vs ours, linear and RBF (paper σ) CKA, n = 1k, 5k, 10k, 20k (d = 384 / 256);
   the reference (centred n×n Gram matrices, ``Σ Kc∘Lc``; sorted non-zero distances for σ) runs
   only where its n×n matrices fit in memory;
2. linear CKA, n = 100k, d = 1024 (float32 inputs);
3. RBF CKA with exact paper σ, n = 50k, d = 384, in a subprocess that reports its peak memory
   beyond the inputs (RSS high-water mark, reset through /proc/self/clear_refs once the inputs
   exist, minus the RSS then; tracemalloc is not used: its own bookkeeping inflates the RSS and
   it misses Numba's and OpenBLAS's allocations);
4. linear CKA against torch (the peer: centred features, ``‖XᵀY‖²_F / (‖XᵀX‖_F‖YᵀY‖_F)``,
   three GEMMs, in float64 and in float32, torch on the same thread count as OpenBLAS),
   n = 10k and 50k, d = 384/256 and 1024/1024, interleaved rounds, medians, same float32 inputs
   (its own table, ``<out>/cka_torch.md``: a run of one section leaves the other table alone);
5. RBF CKA with the exact paper σ against torch (the peer: dense float64 squared distances
   from one GEMM, ``torch.median`` of the non-zero ones, ``exp``, centred kernels, ``Σ Kc∘Lc``;
   torch on the same thread count as OpenBLAS), n = 5k and 10k, d = 384/256, interleaved
   rounds, next to the same code without the tile pool (*before*) and a tiled torch
   peer (every distance stored, the median by in-place ``ndarray.partition``, a second pass for
   the kernel sums); at n = 50k the dense peer's two n×n float64 matrices (40 GB) do not fit
   this machine, and the section ``rbf_large`` times fastcka against the tiled peer (its store:
   10 GB) and *before* there (2 interleaved rounds);
6. ``--device gpu``: RBF CKA (paper σ) at n = 100k, d = 1024 on the GPU, and GPU-vs-CPU agreement
   (the CPU run at a smaller n where the full one would take minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = cpu_name()
    mem = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f", {int(line.split()[1]) / 2**20:.0f} GiB RAM"
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs{mem}, numpy {np.__version__}, Python {platform.python_version()}"


def avail_bytes() -> int:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30


def data(n, p, q, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p), dtype=np.float32)
    W = rng.standard_normal((p, q), dtype=np.float32) / np.float32(math.sqrt(p))
    Y = np.tanh(X @ W) + np.float32(0.5) * rng.standard_normal((n, q), dtype=np.float32)
    return X.astype(dtype), Y.astype(dtype)


# ---------------------------------------------------------------------- naive reference

def naive_cka(X, Y, kernel):
    """Centred Gram matrices and Σ Kc∘Lc (Kornblith's notebook form), float64, O(n²) memory."""
    def kern(A):
        A = A.astype(np.float64)
        G = A @ A.T
        if kernel == "rbf":
            sq = np.diag(G).copy()
            G *= -2.0
            G += sq[:, None]
            G += sq[None, :]
            np.maximum(G, 0, out=G)
            np.fill_diagonal(G, 0.0)
            v = G[G != 0]
            v.sort()
            s2 = v[(v.size - 1) // 2]  # lower median of the non-zero squared distances
            del v
            G *= -1.0 / (2 * s2)
            np.exp(G, out=G)
        G -= G.mean(axis=0, keepdims=True)
        G -= G.mean(axis=1, keepdims=True)
        return G

    K = kern(X)
    L = kern(Y)
    kl = float(np.vdot(K, L))
    kk = float(np.vdot(K, K))
    ll = float(np.vdot(L, L))
    return kl / math.sqrt(kk * ll)


def timed(fn, *args, **kw):
    t = time.perf_counter()
    v = fn(*args, **kw)
    return time.perf_counter() - t, v


# ---------------------------------------------------------------------- sections

def section_reference(ns, device, rows):
    import fastcka

    fastcka.cka(*data(300, 16, 8), kernel="rbf", device=device)  # JIT / kernel warm-up
    for n in ns:
        X, Y = data(n, 384, 256, seed=n)
        for kernel in ("linear", "rbf"):
            t_ours, v_ours = timed(fastcka.cka, X, Y, kernel=kernel, sigma="paper", device=device)
            need = (5 if kernel == "rbf" else 3) * n * n * 8
            if need < min(0.4 * avail_bytes(), 8 * 2**30):  # a shared machine: stay modest
                t_ref, v_ref = timed(naive_cka, X, Y, kernel)
                note = ""
            else:
                t_ref = v_ref = None
                note = f"reference skipped: needs ~{need / 2**30:.0f} GiB"
            rows.append(dict(section="reference", n=n, d="384/256", kernel=kernel, device=device,
                             ours_s=t_ours, ref_s=t_ref, value=v_ours, ref_value=v_ref,
                             speedup=(t_ref / t_ours) if t_ref else None,
                             rel_diff=(abs(v_ours - v_ref) / abs(v_ref)) if v_ref else None,
                             note=note))
            print(rows[-1], flush=True)


def section_linear(n, device, rows):
    import fastcka

    X, Y = data(n, 1024, 1024, seed=1)
    fastcka.cka(X[:2000], Y[:2000], device=device)
    t, v = timed(fastcka.cka, X, Y, device=device)
    rows.append(dict(section="linear", n=n, d="1024/1024", kernel="linear", device=device,
                     ours_s=t, value=v, note="float32 inputs, float64 accumulation"))
    print(rows[-1], flush=True)


def torch_linear_cka(X, Y, dtype):
    """The peer: linear CKA as a competent torch user writes it (feature space, centred)."""
    import torch

    X = torch.from_numpy(X).to(dtype)
    Y = torch.from_numpy(Y).to(dtype)
    X = X - X.mean(dim=0, keepdim=True)
    Y = Y - Y.mean(dim=0, keepdim=True)
    xy = torch.linalg.matrix_norm(X.T @ Y) ** 2
    return float(xy / (torch.linalg.matrix_norm(X.T @ X) * torch.linalg.matrix_norm(Y.T @ Y)))


def section_torch(sizes, rounds, rows):
    import torch

    import fastcka

    torch.set_num_threads(os.cpu_count() or 1)
    cases = {"fastcka": lambda X, Y: fastcka.cka(X, Y, device="cpu"),
             "fastcka before (1024-row chunks, NumPy passes)": cka_numpy_chunks,
             "fastcka before (BLAS threads)": cka_blas_threads,
             "torch float64": lambda X, Y: torch_linear_cka(X, Y, torch.float64),
             "torch float32": lambda X, Y: torch_linear_cka(X, Y, torch.float32)}
    for n, p, q in sizes:  # the short runs get more rounds: their medians are the noisy ones
        _interleaved(cases, [(n, p, q, 4)], rounds(n), rows, "torch", "linear", 1000)


def _linear_as_before(X, Y, chunk, threads=None):
    """fastcka.cka with the linear feature path as it was: ``chunk`` rows per chunk whatever n,
    the column ranges and the float64 row blocks by NumPy reductions and casts (the kernel
    set's NumPy twins), and ``threads`` (None: the pool as today)."""
    import fastcka
    from fastcka import _cka_stats
    from fastcka.kernels import cka_cpu

    ops = cka_cpu.get_ops(True)
    keep = (_cka_stats.chunk_rows, _cka_stats._chunk_threads, ops.column_stats, ops.rows64)
    _cka_stats.chunk_rows = lambda n: chunk
    if threads is not None:
        _cka_stats._chunk_threads = lambda *a: threads
    ops.column_stats, ops.rows64 = cka_cpu.column_stats_np, cka_cpu.rows64_np
    try:
        return fastcka.cka(X, Y, device="cpu")
    finally:
        _cka_stats.chunk_rows, _cka_stats._chunk_threads, ops.column_stats, ops.rows64 = keep


def cka_numpy_chunks(X, Y):
    """Linear CKA before the one-pass column ranges and casts: 1024-row chunks on the pool."""
    return _linear_as_before(X, Y, 1024)


def cka_blas_threads(X, Y):
    """Linear CKA as before the chunk thread pool: 8192-row chunks one after another, the BLAS
    library's own threads inside each GEMM (the same code with its pool switched off)."""
    return _linear_as_before(X, Y, 8192, threads=1)


def _interleaved(cases, sizes, rounds, rows, section, kernel, warm, peer=None):
    """Same-run interleaved rounds of every case on each ``(n, p, q, seed)`` input; one row per
    case with the median time and its ratio to the first case (fastcka), ``rel_diff`` against
    ``peer`` (default the torch float64 case)."""
    import statistics

    first = next(iter(cases))
    peer = peer or next(k for k in cases if k.startswith("torch float64"))
    for n, p, q, seed in sizes:
        X, Y = data(n, p, q, seed=seed)
        for fn in cases.values():  # warm-up (JIT, thread pools)
            fn(X[:warm], Y[:warm])
        raw = {k: [] for k in cases}
        val = {}
        load = os.getloadavg()[0]
        for _ in range(rounds):
            for name, fn in cases.items():
                t, val[name] = timed(fn, X, Y)
                raw[name].append(t)
        med = {k: statistics.median(v) for k, v in raw.items()}
        for name in cases:
            rows.append(dict(section=section, n=n, d=f"{p}/{q}", kernel=kernel, device="cpu",
                             case=name, ours_s=med[name], value=val[name],
                             rel_diff=abs(val[name] - val[peer]) / abs(val[peer]),
                             speedup=med[name] / med[first], raw=raw[name], load=load))
            print(rows[-1], flush=True)


def _torch_centred(A):
    """float64 rows centred on their mean, and their squared norms (the torch peers)."""
    import torch

    A = torch.from_numpy(A).to(torch.float64)
    A = A - A.mean(0)
    return A, (A * A).sum(1)


def _torch_sqdist(A, sq, i, j, block):
    """Squared distances of rows ``i:i+block`` to rows ``j:j+block`` (one addmm), clamped at 0,
    the diagonal of a diagonal block set to 0."""
    import torch

    D = torch.addmm(sq[i:i + block, None] + sq[None, j:j + block], A[i:i + block],
                    A[j:j + block].T, alpha=-2.0).clamp_(min=0.0)
    if i == j:
        D.fill_diagonal_(0.0)
    return D


def torch_rbf_cka(X, Y):
    """The peer: RBF CKA with the paper σ as a competent torch user writes it (dense, float64)."""
    import torch

    def centred_kernel(A):
        A, sq = _torch_centred(A)
        D = _torch_sqdist(A, sq, 0, 0, A.shape[0])
        s2 = D[D != 0].median()  # torch.median: the lower median (the paper's σ²)
        K = D.mul_(-0.5 / s2).exp_()
        r = K.mean(1)
        K -= r[:, None]
        K -= r[None, :]
        K += r.mean()
        return K

    K = centred_kernel(X)
    L = centred_kernel(Y)
    kl = torch.vdot(K.reshape(-1), L.reshape(-1))
    return float(kl / torch.sqrt(torch.vdot(K.reshape(-1), K.reshape(-1))
                                 * torch.vdot(L.reshape(-1), L.reshape(-1))))


def torch_rbf_cka_tiled(X, Y, block=1024):
    """The peer where torch's dense matrices do not fit (n = 50k: 40 GB): the same float64 CKA as
    :func:`torch_rbf_cka`, written tile by tile over the upper triangle of ``block``-row blocks as
    a competent torch user writes it (``block``: 512-1024 rows were level at n = 10k, 2.2-2.7 s,
    and 2048 rows 1.5x slower, 3.6-4.3 s, the same run).  Pass 1 stores each input's n(n−1)/2 squared distances
    (float64, 10 GB at 50k, one buffer reused for X and Y) and selects the lower median of the
    non-zero ones in place with ``ndarray.partition`` (``torch.kthvalue`` copies its input: two
    buffers do not fit); pass 2 recomputes the tiles, takes ``exp``, shifts each kernel by the
    mean of its first tile (H(K − c11ᵀ)H = HKH; without it the raw sums cancel by ~10³) and
    accumulates ``Σ K∘L``, ``Σ K∘K``, ``Σ L∘L`` and the row sums, from which the centred sums
    follow exactly: ``⟨HKH, HLH⟩ = Σ K∘L − (2/n)(K1)ᵀ(L1) + (1ᵀK1)(1ᵀL1)/n²``."""
    import torch

    n = X.shape[0]
    starts = range(0, n, block)
    pairs = [(i, j) for i in starts for j in starts if j >= i]
    f64 = torch.float64
    upper = torch.ones(block, block, dtype=torch.bool).triu_(1)

    def tile(A, sq, i, j):
        return _torch_sqdist(A, sq, i, j, block)

    def sigma2(A, sq, buf):
        store = torch.from_numpy(buf)
        pos = zeros = 0
        for i, j in pairs:
            D = tile(A, sq, i, j)
            v = D[upper[:D.shape[0], :D.shape[1]]] if i == j else D.reshape(-1)
            store[pos:pos + v.numel()] = v
            pos += v.numel()
            zeros += int((v == 0).sum())
        k = zeros + (buf.size - zeros - 1) // 2  # the lower median of the non-zero distances
        buf.partition(k)
        return float(buf[k])

    Ax, sx = _torch_centred(X)
    Ay, sy = _torch_centred(Y)
    buf = np.empty(n * (n - 1) // 2, dtype=np.float64)
    gx, gy = -0.5 / sigma2(Ax, sx, buf), -0.5 / sigma2(Ay, sy, buf)
    del buf
    rk, rl = torch.zeros(n, dtype=f64), torch.zeros(n, dtype=f64)
    kl = kk = ll = 0.0
    mk = ml = None
    for i, j in pairs:
        K = tile(Ax, sx, i, j).mul_(gx).exp_()
        L = tile(Ay, sy, i, j).mul_(gy).exp_()
        if mk is None:  # a constant shift leaves HKH as it is and keeps the sums from cancelling
            mk, ml = float(K.mean()), float(L.mean())
        K -= mk
        L -= ml
        w = 1.0 if i == j else 2.0
        k1, l1 = K.reshape(-1), L.reshape(-1)
        kl += w * float(torch.dot(k1, l1))
        kk += w * float(torch.dot(k1, k1))
        ll += w * float(torch.dot(l1, l1))
        rk[i:i + block] += K.sum(1)
        rl[i:i + block] += L.sum(1)
        if i != j:
            rk[j:j + block] += K.sum(0)
            rl[j:j + block] += L.sum(0)

    def centred(s, ra, rb):
        return s - 2.0 / n * float(ra @ rb) + float(ra.sum()) * float(rb.sum()) / n ** 2

    return centred(kl, rk, rl) / math.sqrt(centred(kk, rk, rk) * centred(ll, rl, rl))


def cka_rbf_before_tile_pool(X, Y):
    """RBF CKA as before the tile pool (issue 15 item 2): 2048-row tiles, each GEMM on the BLAS
    library's threads and each sweep a ``parallel=True`` Numba kernel (the one-sweep count and
    collect of the median pass, the parallel kernel sums) - the same code with the pool's
    one-thread kernels switched off and the previous tile edge (the same value to round-off)."""
    import fastcka
    from fastcka import config
    from fastcka.kernels import cka_cpu

    ops = cka_cpu.NUMBA_OPS
    keep = ops.tile, config.CKA_TILE["cpu"]
    ops.tile, config.CKA_TILE["cpu"] = None, 2048
    try:
        return fastcka.cka(X, Y, kernel="rbf", sigma="paper", device="cpu")
    finally:
        ops.tile, config.CKA_TILE["cpu"] = keep


def cka_rbf_two_passes(X, Y):
    """RBF CKA as before the one-pass sums (issue 15 item 2): the median pass, then the kernel
    sums in a second GEMM pass (both on the tile pool) - the same code with
    ``config.RBF_ONE_PASS_MAX_INPUTS = 0`` (the same value to round-off)."""
    import fastcka
    from fastcka import config

    keep = config.RBF_ONE_PASS_MAX_INPUTS
    config.RBF_ONE_PASS_MAX_INPUTS = 0
    try:
        return fastcka.cka(X, Y, kernel="rbf", sigma="paper", device="cpu")
    finally:
        config.RBF_ONE_PASS_MAX_INPUTS = keep


def section_rbf_torch(ns, rounds, rows):
    import torch

    import fastcka

    torch.set_num_threads(os.cpu_count() or 1)
    cases = {"fastcka": lambda X, Y: fastcka.cka(X, Y, kernel="rbf", sigma="paper", device="cpu"),
             "fastcka two passes": cka_rbf_two_passes,
             "fastcka before the tile pool": cka_rbf_before_tile_pool,
             "torch float64": torch_rbf_cka,
             "torch float64, tiled": torch_rbf_cka_tiled}
    _interleaved(cases, [(n, 384, 256, 5) for n in ns], rounds, rows, "rbf_torch", "rbf", 500)


def section_rbf_large(n, rounds, rows):
    """n = 50k: torch's two dense float64 matrices (40 GB) do not fit 24 GiB; the same-run peers
    are torch tiled (:func:`torch_rbf_cka_tiled`, a 10 GB distance store) and the code before the
    one-pass sums (:func:`cka_rbf_two_passes`)."""
    import torch

    import fastcka

    torch.set_num_threads(os.cpu_count() or 1)
    cases = {"fastcka": lambda X, Y: fastcka.cka(X, Y, kernel="rbf", sigma="paper", device="cpu"),
             "fastcka two passes": cka_rbf_two_passes,
             "torch float64, tiled": torch_rbf_cka_tiled}
    # warm-up past the dense path (8000 rows): the sampled-window kernels compile
    _interleaved(cases, [(n, 384, 256, 5)], rounds, rows, "rbf_large", "rbf", 8000,
                 peer="torch float64, tiled")


_MEM_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[4])
import numpy as np
from cka import data
import fastcka
fastcka.cka(*data(300, 16, 8), kernel="rbf", device="cpu")  # JIT warm-up (cached kernels)
n, d = int(sys.argv[1]), int(sys.argv[2])
X, Y = data(n, d, d, seed=2)
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
base = status("VmRSS")
try:  # reset the high-water mark so input generation's temporaries do not count
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    reset = True
except OSError:
    reset = False
t = time.perf_counter()
v = fastcka.cka(X, Y, kernel="rbf", sigma="paper", device=sys.argv[3])
t = time.perf_counter() - t
print(json.dumps(dict(t=t, value=v, peak_beyond_inputs=status("VmHWM") - base, reset=reset,
                      inputs=X.nbytes + Y.nbytes)))
"""


def section_rbf_memory(n, d, rows):
    out = subprocess.run([sys.executable, "-c", _MEM_CHILD, str(n), str(d), "cpu",
                          str(Path(__file__).parent)], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    rows.append(dict(section="rbf_memory", n=n, d=f"{d}/{d}", kernel="rbf (paper σ)", device="cpu",
                     ours_s=r["t"], value=r["value"],
                     mem_beyond_inputs_MiB=r["peak_beyond_inputs"] / 2**20,
                     note=f"inputs {r['inputs'] / 2**20:.0f} MiB float32; peak RSS (VmHWM"
                          f"{', reset after the inputs were made' if r['reset'] else ''}) minus RSS "
                          "with the inputs, libraries and JIT code loaded"))
    print(rows[-1], flush=True)


def section_gpu(n_gpu, n_cpu, rows):
    import fastcka
    from fastcka.backend import get_backend

    be = get_backend(device="gpu")
    import cupy as cp

    dev = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    Xw, Yw = data(4096, 64, 64)
    fastcka.cka(Xw, Yw, kernel="rbf", device="gpu")  # compile kernels
    for n, d in ((n_gpu, 1024),):
        X, Y = data(n, d, d, seed=3)
        Xg, Yg = cp.asarray(X), cp.asarray(Y)  # inputs resident on the GPU
        be.synchronize()
        for kernel in ("rbf", "linear"):
            ts = []
            for _ in range(2):
                t, v = timed(fastcka.cka, Xg, Yg, kernel=kernel, sigma="paper", device="gpu")
                be.synchronize()
                ts.append(t)
            rows.append(dict(section="gpu", n=n, d=f"{d}/{d}", kernel=kernel, device=dev,
                             ours_s=min(ts), value=v, note=f"runs {', '.join(f'{x:.3f}' for x in ts)} s"))
            print(rows[-1], flush=True)
        del Xg, Yg
        cp.get_default_memory_pool().free_all_blocks()
    # agreement: CPU on a size it finishes in reasonable time
    for kernel in ("rbf", "linear"):
        nn = n_cpu if kernel == "rbf" else n_gpu
        X, Y = data(nn, 1024, 1024, seed=3)
        tg, vg = timed(fastcka.cka, X, Y, kernel=kernel, sigma="paper", device="gpu")
        tc, vc = timed(fastcka.cka, X, Y, kernel=kernel, sigma="paper", device="cpu")
        rows.append(dict(section="gpu_vs_cpu", n=nn, d="1024/1024", kernel=kernel, device=dev,
                         ours_s=tg, ref_s=tc, value=vg, ref_value=vc,
                         rel_diff=abs(vg - vc) / abs(vc),
                         note="CPU run at this n" + (" (the 100k CPU RBF run would take minutes)"
                                                     if nn != n_gpu else "")))
        print(rows[-1], flush=True)


# ---------------------------------------------------------------------- report

def fmt(v, spec=".3f"):
    if v is None:
        return "—"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


_TORCH_NOTES = {
    "torch": "  fastcka: centred float64 features, per chunk (n = 10k and 50k: 2500 rows, a "
             "multiple of 4 chunks) two SYRKs and one GEMM (2/3 of the peer's multiply-adds in "
             "float64), the chunks on a pool of threads with one BLAS thread each, the column "
             "ranges and the float64 row blocks in one Numba pass each; the peer's three GEMMs "
             "run on torch's threads.  *before (1024-row chunks, NumPy passes)*: the same code "
             "with 1024-row chunks and NumPy's reductions and casts; *before (BLAS threads)*: "
             "8192-row chunks one after another on the BLAS library's threads.  "
             "float32 torch does a multiply-add in half the time, but its value is off by the "
             "|rel diff| shown.",
    "rbf_torch": "  fastcka: exact paper σ (the lower median of the n(n−1)/2 distances, selected "
                 "over tiles in O(n) memory beyond a tile) and the kernel sums in the same GEMM "
                 "pass: Taylor moments in ε = γ/γ0 − 1 around the sample's bandwidth γ0, "
                 "evaluated at the selected γ under a run-time error bound "
                 "(fastcka._rbf_onepass); the pass runs whole 1024-row tiles on a pool of one "
                 "thread per core, each thread its GEMM on one BLAS thread and then one-thread "
                 "Numba sweeps.  *two passes*: the same code with the kernel sums in a second "
                 "GEMM pass (``RBF_ONE_PASS_MAX_INPUTS = 0``).  *before the tile pool* is the "
                 "two-pass code with the pool switched off: 2048-row tiles, GEMMs on "
                 "the BLAS library's threads, ``parallel=True`` Numba sweeps.  "
                 "*torch float64*: dense n×n matrices and ``torch.median``; *torch float64, "
                 "tiled*: the same CKA over 1024-row tiles of the upper triangle, every distance "
                 "stored (n(n−1)/2 float64) and its median selected in place by "
                 "``ndarray.partition``, then a second pass for the kernel sums (a constant shift "
                 "keeps them from cancelling) - the stronger peer.",
}


def _torch_table(tor, title) -> list[str]:
    """The same-run table of one torch comparison (empty without rows)."""
    if not tor:
        return []
    out = [f"## {title} against torch (same run, interleaved)", "",
            f"torch {__import__('torch').__version__} on {__import__('torch').get_num_threads()} "
            f"threads, OpenBLAS on its default ({os.cpu_count()}); float32 inputs; medians of the "
            "rounds; |rel diff| against torch float64." + _TORCH_NOTES.get(tor[0]["section"], ""),
            "",
            "| n | d (X/Y) | case | seconds | case / fastcka | value | |rel diff| | rounds (s) | load |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in tor:
        out.append(f"| {r['n']} | {r['d']} | {r['case']} | {fmt(r['ours_s'])} "
                   f"| {r['speedup']:.2f}× | {r['value']:.15f} | {r['rel_diff']:.1e} "
                   f"| {', '.join(f'{x:.3f}' for x in r['raw'])} | {r['load']:.1f} |")
    out.append("")
    return out


def markdown(rows, header) -> str:
    out = [header, ""]
    ref = [r for r in rows if r["section"] == "reference"]
    if ref:
        out += ["## Naive Gram-form reference vs fastcka (same run)", "",
                "| n | d (X/Y) | kernel | fastcka s | reference s | speed-up | |rel diff| | note |",
                "|---|---|---|---|---|---|---|---|"]
        for r in ref:
            out.append(f"| {r['n']} | {r['d']} | {r['kernel']} | {fmt(r['ours_s'])} | {fmt(r['ref_s'])} "
                       f"| {fmt(r['speedup'], '.1f')}{'×' if r['speedup'] else ''} "
                       f"| {fmt(r['rel_diff'], '.1e')} | {r['note']} |")
        out.append("")
    big = [r for r in rows if r["section"] in ("linear", "rbf_memory")]
    if big:
        out += ["## Large n", "", "| case | n | d | seconds | memory beyond inputs | value | note |",
                "|---|---|---|---|---|---|---|"]
        for r in big:
            mem = f"{r['mem_beyond_inputs_MiB']:.0f} MiB" if "mem_beyond_inputs_MiB" in r else "—"
            out.append(f"| {r['kernel']} CKA | {r['n']} | {r['d']} | {fmt(r['ours_s'], '.2f')} | {mem} "
                       f"| {fmt(r['value'], '.6f')} | {r['note']} |")
        out.append("")
    for sec, title in (("torch", "Linear CKA"), ("rbf_torch", "RBF CKA (exact paper σ)")):
        out += _torch_table([r for r in rows if r["section"] == sec], title)
    large = [r for r in rows if r["section"] == "rbf_large"]
    if large:
        out += ["## RBF CKA (exact paper σ) at n = 50k: against torch tiled and the two-pass code (same run, interleaved)",
                "", "torch float64 needs two dense n×n matrices (40 GB) here and does not fit "
                "24 GiB; the peers are torch float64 tiled (as in the table above: its distance "
                "store is 10 GB here, one buffer for X and then Y) and the code before the "
                "one-pass sums (*two passes*).  "
                "|rel diff| against torch tiled.", "",
                "| n | d (X/Y) | case | seconds | case / fastcka | value | |rel diff| | rounds (s) "
                "| load |", "|---|---|---|---|---|---|---|---|---|"]
        for r in large:
            out.append(f"| {r['n']} | {r['d']} | {r['case']} | {fmt(r['ours_s'])} "
                       f"| {r['speedup']:.2f}× | {r['value']:.15f} | {r['rel_diff']:.1e} "
                       f"| {', '.join(f'{x:.3f}' for x in r['raw'])} | {r['load']:.1f} |")
        out.append("")
    gpu = [r for r in rows if r["section"].startswith("gpu")]
    if gpu:
        out += ["## GPU", "", "| case | n | d | device | GPU s | CPU s | GPU value | CPU value | rel diff | note |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in gpu:
            out.append(f"| {r['kernel']} CKA{' (paper σ)' if r['kernel'] == 'rbf' else ''} | {r['n']} "
                       f"| {r['d']} | {r['device']} | {fmt(r['ours_s'])} | {fmt(r.get('ref_s'))} "
                       f"| {fmt(r['value'], '.9f')} | {fmt(r.get('ref_value'), '.9f')} "
                       f"| {fmt(r.get('rel_diff'), '.1e')} | {r['note']} |")
        out.append("")
    return "\n".join(out)


def write_table(path: Path, md: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(md + "\n")
    tmp.replace(path)
    return md


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--out", default=None, help="folder for the table and the JSON (default bench/results)")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    ap.add_argument("--section", nargs="*", default=None,
                    choices=["reference", "linear", "torch", "rbf_torch", "rbf_large",
                             "rbf_memory"],
                    help="CPU sections to run (default all)")
    args = ap.parse_args(argv)
    rows: list[dict] = []
    header = (f"# CKA benchmark ({'quick' if args.quick else 'full'}, device {args.device})\n\n"
              f"Machine: {machine()}.  Generated by `python bench/cka.py"
              f"{' --device gpu' if args.device == 'gpu' else ''}{' --quick' if args.quick else ''}`"
              f" on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.")
    if args.device == "cpu":
        want = set(args.section or ["reference", "linear", "torch", "rbf_torch", "rbf_large",
                                    "rbf_memory"])
        if "reference" in want:
            section_reference([1000, 5000] if args.quick else [1000, 5000, 10000, 20000], "cpu", rows)
        if "linear" in want:
            section_linear(20000 if args.quick else 100_000, "cpu", rows)
        if "torch" in want:
            section_torch([(n, p, q) for n in ((2000, 10000) if args.quick else (10000, 50000))
                           for p, q in ((384, 256), (1280, 384), (1024, 1024))],
                          lambda n: 3 if args.quick else (15 if n <= 10000 else 5), rows)
        if "rbf_torch" in want:
            section_rbf_torch((2000, 5000) if args.quick else (5000, 10000), 3, rows)
        if "rbf_large" in want:
            section_rbf_large(20000 if args.quick else 50_000, 1 if args.quick else 2, rows)
        if "rbf_memory" in want:
            section_rbf_memory(10000 if args.quick else 50_000, 384, rows)
        md_path = Path(args.out or ROOT / "bench" / "results") / "cka.md"
    else:
        section_gpu(20000 if args.quick else 100_000, 5000 if args.quick else 20000, rows)
        section_reference([1000, 5000] if args.quick else [1000, 5000, 10000], "gpu", rows)
        md_path = Path(args.out or ROOT / "bench" / "results") / "cka_gpu.md"
    # the torch rows have their own table (cka_torch.md): a run of one section leaves the other
    # table as it was
    tor = [r for r in rows if r["section"] == "torch"]
    rest = [r for r in rows if r["section"] != "torch"]
    md = ""
    for path, part in ((md_path, rest), (md_path.with_name("cka_torch.md"), tor)):
        if part:
            md += write_table(path, markdown(part, header)) + "\n"
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / f"cka_{args.device}.json").write_text(json.dumps(rows, indent=1, default=str))
    print(md)


if __name__ == "__main__":
    main()
