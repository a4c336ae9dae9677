"""GPU (CuPy) CKA path vs the CPU path (runs only where a CUDA GPU is usable: ``pytest -m gpu``)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import fastcka
from fastcka import _median
from fastcka.kernels import cka_cpu

ckam = importlib.import_module("fastcka._cka")
pytestmark = pytest.mark.gpu


def pair(n, p=24, q=16, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)).astype(np.float32)
    Y = (np.tanh(X[:, :q] @ rng.normal(size=(q, q))) + 0.5 * rng.normal(size=(n, q))).astype(np.float32)
    return X, Y


@pytest.fixture
def shrunk(monkeypatch):
    from fastcka import config

    for name, value in (("CKA_TILE", 97), ("MEDIAN_CAP", 2000), ("MEDIAN_SAMPLE", 500)):
        monkeypatch.setattr(config, name, {"cpu": value, "gpu": value})


@pytest.mark.parametrize("kernel,sigma", [("linear", "paper"), ("rbf", "paper"),
                                          ("rbf", "kornblith"), ("rbf", 3.0)])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("tiles", ["default", "shrunk"])
def test_gpu_cka_matches_cpu(kernel, sigma, estimator, tiles, request):
    if tiles == "shrunk":
        request.getfixturevalue("shrunk")
    X, Y = pair(611)
    kw = dict(kernel=kernel, sigma=sigma, threshold=0.9, estimator=estimator)
    cpu = fastcka.cka(X, Y, device="cpu", **kw)
    gpu = fastcka.cka(X, Y, device="gpu", **kw)
    assert gpu == pytest.approx(cpu, rel=1e-6)
    assert fastcka.hsic(X, Y, device="gpu", **kw) == pytest.approx(
        fastcka.hsic(X, Y, device="cpu", **kw), rel=1e-6)


def test_gpu_sigmas_match_cpu(shrunk):
    X, _ = pair(700)
    assert ckam.paper_sigma(X, device="gpu") == pytest.approx(ckam.paper_sigma(X, device="cpu"), rel=1e-12)
    assert ckam.kornblith_sigma(X, 0.5, device="gpu") == pytest.approx(
        ckam.kornblith_sigma(X, 0.5, device="cpu"), rel=1e-12)


def test_gpu_gram_and_matrix_match_cpu():
    import cupy as cp

    rng = np.random.default_rng(3)
    Xs = [rng.normal(size=(150, d)) for d in (4, 9, 5)] * 4  # 12 inputs: beyond the fused limit
    G = fastcka.gram(Xs[0], kernel="rbf", device="gpu")
    assert isinstance(G, cp.ndarray)
    np.testing.assert_allclose(G.get(), fastcka.gram(Xs[0], kernel="rbf", device="cpu"), rtol=1e-12)
    for kernel in ("linear", "rbf"):
        np.testing.assert_allclose(fastcka.cka_matrix(Xs, kernel=kernel, device="gpu"),
                                   fastcka.cka_matrix(Xs, kernel=kernel, device="cpu"), rtol=1e-9)
        np.testing.assert_allclose(fastcka.cka_matrix(Xs[:3], kernel=kernel, device="gpu"),
                                   fastcka.cka_matrix(Xs[:3], kernel=kernel, device="cpu"), rtol=1e-9)


def test_gpu_knn_metrics_and_permutation_match_cpu():
    X, Y = pair(300)
    assert fastcka.mutual_knn(X, Y, k=7, device="gpu") == pytest.approx(
        fastcka.mutual_knn(X, Y, k=7, device="cpu"))
    assert fastcka.cknna(X, Y, k=7, device="gpu") == pytest.approx(
        fastcka.cknna(X, Y, k=7, device="cpu"), rel=1e-9)
    a = fastcka.cka_permutation_test(X, Y, n_permutations=20, rng=1, kernel="rbf", device="gpu")
    b = fastcka.cka_permutation_test(X, Y, n_permutations=20, rng=1, kernel="rbf", device="cpu")
    np.testing.assert_allclose(a.null, b.null, rtol=1e-9)


@pytest.mark.parametrize("diag", [True, False])
def test_cupy_tile_kernels_match_cpu(diag):
    import cupy as cp

    from fastcka.kernels import cka_cupy

    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 7))
    X[10] = X[20]
    A, B = (X, X) if diag else (X[:130], X[130:])
    G = A @ B.T
    na, nb = (A * A).sum(1), (B * B).sum(1)
    Dc = cka_cpu.sqdist_np(G.copy(), na, nb, 1e-12, diag)
    Dg = cka_cupy.sqdist(cp.asarray(G), cp.asarray(na), cp.asarray(nb), 1e-12, diag)
    np.testing.assert_allclose(Dg.get(), Dc, rtol=1e-14, atol=1e-13)
    Dg = cp.asarray(Dc)  # identical values: the histogram and collection must agree exactly
    nz = Dc[Dc > 0]
    lo, hi = np.quantile(nz, [0.3, 0.7])
    for chain in ([], [(0.0, 4 / nz.max(), 4, 1)]):
        a = cka_cupy.hist(Dg, diag, chain, lo, 64 / (hi - lo), 64, *np.quantile(nz, [0.45, 0.55]))
        b = cka_cpu.hist_np(Dc, diag, chain, lo, 64 / (hi - lo), 64, *np.quantile(nz, [0.45, 0.55]))
        assert a[0] == b[0] and a[2:] == b[2:]
        np.testing.assert_array_equal(a[1], b[1])
        c = cka_cupy.collect(Dg, diag, chain, *np.quantile(nz, [0.45, 0.55]))
        np.testing.assert_array_equal(np.sort(c.get()),
                                      np.sort(cka_cpu.collect_np(Dc, diag, chain, *np.quantile(nz, [0.45, 0.55]))))
    Gs = np.stack([G, 0.5 * G])
    nas, nbs = np.stack([na, 0.25 * na]), np.stack([nb, 0.25 * nb])
    ref = cka_cpu.kernel_stats_np(Gs.copy(), nas, nbs, [1, 0], [0.2, 0.0], 1e-12, diag)
    got = cka_cupy.kernel_stats(cp.asarray(Gs), cp.asarray(nas), cp.asarray(nbs), [1, 0], [0.2, 0.0],
                                1e-12, diag)
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_allclose(cp.asnumpy(g), r, rtol=1e-11, atol=1e-11)


def test_gpu_median_multipass_matches_cpu():
    import cupy as cp

    from fastcka.kernels import cka_cupy

    X = np.random.default_rng(7).normal(size=(400, 6))
    for mode in ("paper", "kornblith"):
        ref = _median.sqdist_order_stats([X], [(0, mode)], ops=cka_cpu.get_ops(), tile=64,
                                         cap=100, sample_size=50)
        got = _median.sqdist_order_stats([cp.asarray(X)], [(0, mode)], xp=cp,
                                         ops=cka_cupy.get_ops(), tile=64, cap=100, sample_size=50)
        assert got == pytest.approx(ref, rel=1e-13)


