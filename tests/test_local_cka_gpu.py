"""GPU path of local CKA and retrieval.

- ``cudasim``: the Numba CUDA kernels against the CPU kernels (simulated here on tiny sizes,
  native on a GPU).
- ``gpu``: the whole CuPy path against the CPU path (float64 within 1e-9, float32 inputs within
  1e-5), on a real GPU only.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastcka.kernels import local_cka_cpu as kc


def _host(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


MODES = [("linear", "paper"), ("rbf", "paper"), ("rbf", "base"), ("rbf", 0.9)]


@pytest.mark.cudasim
def test_cuda_median_merge_matches_cpu():
    from fastcka.kernels import local_cka_cuda as kcu

    rng = np.random.default_rng(0)
    base = np.sort(rng.exponential(size=29))
    Q = rng.exponential(size=(9, 6))
    Q[rng.random(Q.shape) < 0.3] = 0.0
    Q[2] = 0.0
    Q[4, :3] = base[5:8]  # ties with base values
    counts = (Q > 0).sum(axis=1).astype(np.int64)
    Qs = np.sort(np.where(Q > 0, Q, np.inf), axis=1)
    got = kcu.lower_median_sorted(base, Qs, counts)
    got = _host(got)
    np.testing.assert_array_equal(got, kc.lower_median_merge(base, Q, use_numba=False))
    # an empty union gives nan
    got = kcu.lower_median_sorted(np.empty(0), np.full((1, 3), np.inf), np.zeros(1, np.int64))
    got = _host(got)
    assert np.isnan(got[0])


@pytest.mark.cudasim
def test_cuda_rbf_stats_match_cpu():
    from fastcka.kernels import local_cka_cuda as kcu

    rng = np.random.default_rng(1)
    X = rng.standard_normal((11, 3))
    D = ((X[:, None] - X[None]) ** 2).sum(-1)
    alphas = np.array([0.2, 1.0, 3.0])
    R, T, S2 = kcu.rbf_base_stats(D, alphas)
    R0, T0, S20 = kc.rbf_base_stats(D, alphas, use_numba=False)
    np.testing.assert_allclose(_host(R), R0, rtol=1e-13)
    np.testing.assert_allclose(_host(T), T0, rtol=1e-13)
    np.testing.assert_allclose(_host(S2), S20, rtol=1e-13)


def _problem(q_s=60, q_t=50, p=40, ds=24, dt=16, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((max(q_s, q_t) + p, 5))
    S = Z @ rng.standard_normal((5, ds)) + 0.5 * rng.standard_normal((Z.shape[0], ds))
    T = Z @ rng.standard_normal((5, dt)) + 0.5 * rng.standard_normal((Z.shape[0], dt))
    n = max(q_s, q_t)
    return tuple(a.astype(dtype) for a in (S[:q_s], T[:q_t], S[n:], T[n:]))


@pytest.mark.gpu
@pytest.mark.parametrize("kernel,sigma", MODES)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-9), (np.float32, 1e-5)])
def test_gpu_matches_cpu(kernel, sigma, dtype, tol):
    import cupy

    from fastcka.local_cka import local_cka

    inp = _problem(dtype=dtype)
    cpu = local_cka(*inp, kernel=kernel, sigma=sigma, device="cpu")
    gpu = local_cka(*inp, kernel=kernel, sigma=sigma, device="gpu")
    assert isinstance(gpu, np.ndarray)  # NumPy inputs give a NumPy result
    np.testing.assert_allclose(gpu, cpu, rtol=0, atol=tol)
    on_dev = local_cka(*(cupy.asarray(a) for a in inp), kernel=kernel, sigma=sigma)
    assert isinstance(on_dev, cupy.ndarray)
    np.testing.assert_allclose(on_dev.get(), cpu, rtol=0, atol=tol)


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["local-cka", "linreg", "relative", "cosine"])
def test_gpu_retrieval_matches_cpu(method):
    from fastcka.retrieval import retrieve, score_matrix

    inp = _problem(q_s=70, q_t=70, ds=16, dt=16)
    kw = dict(method=method, kernel="rbf", sigma="paper", k=7, block=32)
    cpu = retrieve(inp, device="cpu", **kw)
    gpu = retrieve(inp, device="gpu", **kw)
    np.testing.assert_array_equal(gpu.src_to_tgt_indices, cpu.src_to_tgt_indices)
    np.testing.assert_array_equal(gpu.tgt_to_src_indices, cpu.tgt_to_src_indices)
    np.testing.assert_allclose(gpu.src_to_tgt_scores, cpu.src_to_tgt_scores, atol=1e-9)
    assert gpu.accuracy == cpu.accuracy
    np.testing.assert_allclose(score_matrix(method, *inp, kernel="rbf", device="gpu"),
                               score_matrix(method, *inp, kernel="rbf", device="cpu"), atol=1e-9)


@pytest.mark.gpu
def test_gpu_paper_size_agrees():
    from fastcka.local_cka import local_cka

    inp = _problem(q_s=500, q_t=500, p=320, ds=384, dt=256, seed=2)
    for kernel, sigma in MODES:
        np.testing.assert_allclose(local_cka(*inp, kernel=kernel, sigma=sigma, device="gpu"),
                                   local_cka(*inp, kernel=kernel, sigma=sigma, device="cpu"),
                                   atol=1e-9)
