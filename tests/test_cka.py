"""CKA engine against naive float64 references, published values and invariances."""

from __future__ import annotations

import importlib
import math
import warnings

import numpy as np
import pytest
from reference import (
    lower_median_nonzero,
    naive_cka,
    naive_cknna,
    naive_hsic,
    naive_kernel,
    naive_knn_sets,
    sqd,
)

import fastcka
from fastcka import _median
from fastcka.errors import InputError
from fastcka.kernels import cka_cpu

ckam = importlib.import_module("fastcka._cka")


# ---------------------------------------------------------------- naive references (float64)

def pair(n, p=13, q=7, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    Y = np.tanh(X @ rng.normal(size=(p, q))) + 0.5 * rng.normal(size=(n, q))
    return X.astype(dtype), Y.astype(dtype)


@pytest.fixture(params=["numba", "numpy"])
def engine(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setenv("FASTCKA_DISABLE_NUMBA", "1")
    else:
        monkeypatch.delenv("FASTCKA_DISABLE_NUMBA", raising=False)
    return request.param


# ---------------------------------------------------------------- published values

def test_kornblith_golden_values():
    np.random.seed(1337)
    X = np.random.randn(100, 10)
    Y = np.random.randn(100, 10) + X
    assert fastcka.cka(X, Y, device="cpu") == pytest.approx(0.55761, abs=5e-6)
    assert fastcka.cka(X, Y, kernel="rbf", sigma="kornblith", threshold=0.5,
                       device="cpu") == pytest.approx(0.65483, abs=5e-6)
    assert fastcka.cka(X, Y, estimator="unbiased", device="cpu") == pytest.approx(0.51346, abs=5e-6)


# ---------------------------------------------------------------- against the naive reference

@pytest.mark.parametrize("kernel,sigma", [("linear", "paper"), ("rbf", "paper"),
                                          ("rbf", "kornblith"), ("rbf", 2.5)])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("tiles", ["dense", "tiled"])
def test_cka_hsic_match_naive(engine, kernel, sigma, estimator, tiles, request):
    if tiles == "tiled":
        request.getfixturevalue("small_config")
    X, Y = pair(97, dtype=np.float32)  # float32 inputs, float64 accumulation
    thr = 0.8
    K = naive_kernel(X, kernel, sigma, thr)
    L = naive_kernel(Y, kernel, sigma, thr)
    unb = estimator == "unbiased"
    got = fastcka.cka(X, Y, kernel=kernel, sigma=sigma, threshold=thr, estimator=estimator,
                      device="cpu")
    assert got == pytest.approx(naive_cka(K, L, unb), rel=1e-6)
    h = fastcka.hsic(X, Y, kernel=kernel, sigma=sigma, threshold=thr, estimator=estimator,
                     device="cpu")
    assert h == pytest.approx(naive_hsic(K, L, unb), rel=1e-6)


def _cka_longdouble(K, L, unbiased):
    """CKA of two float64 kernel matrices with every sum in long double (x87: 64-bit mantissa)
    and only O(n²) elementwise work: the biased form on explicitly centred kernels, the
    unbiased one (Song et al.) on the zero-diagonal kernels."""
    K = K.astype(np.longdouble)
    L = L.astype(np.longdouble)
    n = K.shape[0]

    def h(A, B):
        if not unbiased:
            Ac = A - A.mean(0) - A.mean(1)[:, None] + A.mean()
            Bc = B - B.mean(0) - B.mean(1)[:, None] + B.mean()
            return (Ac * Bc).sum()
        A, B = A.copy(), B.copy()
        np.fill_diagonal(A, 0)
        np.fill_diagonal(B, 0)
        ra, rb = A.sum(1), B.sum(1)
        return ((A * B).sum() + ra.sum() * rb.sum() / ((n - 1) * (n - 2))
                - 2 * (ra * rb).sum() / (n - 2))

    return float(h(K, L) / np.sqrt(h(K, K) * h(L, L)))


@pytest.mark.skipif(np.finfo(np.longdouble).eps > 1e-18, reason="needs an 80-bit long double")
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_rbf_kernel_sums_do_not_cancel(engine, estimator):
    """RBF CKA with the paper σ at n = 2500 in high dimension: every kernel value is near
    e^-1/2, so the raw sums Σ K∘L cancel by ~10³ in the HSIC formula; the tiles sum the kernels
    less a constant (``rbf_shift``), which leaves HSIC unchanged and keeps the value at float64
    round-off of the long-double reference (without the shift: 4e-13 here, 2.3e-12 at 20k)."""
    rng = np.random.default_rng(11)
    n = 2500
    X = rng.normal(size=(n, 96))
    Y = np.tanh(X @ rng.normal(size=(96, 64)) / 8) + rng.normal(size=(n, 64))

    def kernel(A):
        A = A - A.mean(0)
        sq = (A * A).sum(1)
        D = np.maximum(sq[:, None] + sq[None, :] - 2 * (A @ A.T), 0)
        np.fill_diagonal(D, 0)
        return np.exp(-D / (2 * fastcka.paper_sigma(A, device="cpu") ** 2))

    ref = _cka_longdouble(kernel(X), kernel(Y), estimator == "unbiased")
    got = fastcka.cka(X, Y, kernel="rbf", sigma="paper", estimator=estimator, device="cpu")
    assert abs(got - ref) / abs(ref) < 5e-14, (got, ref)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_linear_feature_space_equals_gram_path(monkeypatch, small_config, estimator):
    X, Y = pair(61, p=5, q=4, seed=3)
    X = X + 40.0  # large means: the centred feature form must not lose precision
    ref = naive_cka(X @ X.T, Y @ Y.T, estimator == "unbiased")
    monkeypatch.setattr(ckam, "_use_features", lambda n, dims: True)
    feat = fastcka.cka(X, Y, estimator=estimator, device="cpu")
    monkeypatch.setattr(ckam, "_use_features", lambda n, dims: False)
    gram_path = fastcka.cka(X, Y, estimator=estimator, device="cpu")
    # the uncentred n x n forms (naive and Gram path) lose ~1e-9 to cancellation with means of 40
    assert feat == pytest.approx(ref, rel=1e-7)
    assert gram_path == pytest.approx(ref, rel=1e-7)
    Xc = X - X.mean(0)  # the unbiased HSIC is unchanged by centring the features
    assert feat == pytest.approx(naive_cka(Xc @ Xc.T, Y @ Y.T, estimator == "unbiased"), rel=1e-9)


def test_gram_matches_naive(engine, tunables):
    X, _ = pair(31)
    for kernel, sigma in [("linear", "paper"), ("rbf", "paper"), ("rbf", "kornblith"), ("rbf", 1.7)]:
        K = naive_kernel(X, kernel, sigma, 1.0)
        G = fastcka.gram(X, kernel=kernel, sigma=sigma, device="cpu")
        np.testing.assert_allclose(G, K, rtol=1e-9, atol=1e-12)
        H = np.eye(31) - 1 / 31
        Gc = fastcka.gram(X, kernel=kernel, sigma=sigma, center=True, device="cpu")
        np.testing.assert_allclose(Gc, H @ K @ H, rtol=1e-9, atol=1e-9)
        assert np.array_equal(Gc, Gc.T)      # exactly: FAQ's symmetric path relies on it


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_centred_gram_exactly_symmetric_across_row_blocks(kernel):
    X = np.random.default_rng(5).normal(size=(1100, 7))
    K = naive_kernel(X, kernel, "paper", 1.0)
    Gc = fastcka.gram(X, kernel=kernel, center=True, device="cpu")
    assert np.array_equal(Gc, Gc.T)
    Kc = K - K.mean(axis=0) - K.mean(axis=1)[:, None] + K.mean()
    np.testing.assert_allclose(Gc, Kc, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- bandwidths

@pytest.mark.parametrize("n", [2, 3, 8, 45])
def test_paper_sigma_is_lower_median_of_nonzero(engine, n):
    X, _ = pair(n, p=3, seed=n)
    D = sqd(X)
    assert ckam.paper_sigma(X, device="cpu") ** 2 == pytest.approx(lower_median_nonzero(D), rel=1e-12)


def test_paper_sigma_excludes_duplicate_rows_and_uses_lower_middle(engine):
    # duplicate rows give zero off-diagonal distances, excluded like the diagonal; the 8
    # non-zero pair values 1,1,1,1,4,4,9,9 appear twice each (16 entries): lower middle is 1
    X = np.array([[0.0], [0.0], [1.0], [1.0], [3.0]])
    D = sqd(X)
    v = np.sort(D[D != 0])
    assert v.size % 2 == 0
    assert ckam.paper_sigma(X, device="cpu") ** 2 == pytest.approx(v[v.size // 2 - 1])
    assert v[v.size // 2 - 1] != v[v.size // 2]  # the lower/upper middles differ here
    import torch  # the reference code's median semantics

    assert ckam.paper_sigma(X, device="cpu") ** 2 == pytest.approx(
        float(torch.median(torch.as_tensor(D)[torch.as_tensor(D) != 0])))


@pytest.mark.parametrize("n", [5, 6, 40])
def test_kornblith_sigma_is_numpy_median_of_all(engine, n):
    X, _ = pair(n, p=4, seed=n)
    D = sqd(X)
    assert ckam.kornblith_sigma(X, 0.5, device="cpu") == pytest.approx(
        0.5 * math.sqrt(np.median(D)), rel=1e-12)


@pytest.mark.parametrize("mode", ["paper", "kornblith"])
def test_median_multipass_selection_is_exact(engine, mode):
    """Shrunk capacity: the sample window misses or overflows, histogram refinement runs."""
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(size=(150, 3)), rng.normal(size=(40, 3)) * 1e-3,
                        np.repeat(rng.normal(size=(1, 3)), 11, axis=0)])  # clusters + duplicates
    D = sqd(X)
    ref = lower_median_nonzero(D) if mode == "paper" else np.median(D)
    passes = []

    def counting(it, total=None, desc=""):
        passes.append(desc)
        return it

    ops = cka_cpu.get_ops(engine == "numba")
    for cap, sample in [(50, 30), (5000, 400), (10 ** 6, None)]:
        passes.clear()
        (got,) = _median.sqdist_order_stats([X], [(0, mode)], ops=ops, tile=23, cap=cap,
                                            sample_size=sample, progress=counting)
        assert got == pytest.approx(ref, rel=1e-12)
        if cap == 50:
            assert len(passes) >= 2  # refinement really ran


@pytest.mark.parametrize("mode", ["paper", "kornblith"])
def test_median_dense_limit_takes_the_sampled_window(monkeypatch, engine, mode):
    """``dense`` below M (the cap above it): the first pass collects a sampled window, not
    every value, and the order statistic is the same."""
    rng = np.random.default_rng(12)
    X = np.concatenate([rng.normal(size=(180, 6)), np.repeat(rng.normal(size=(1, 6)), 9, 0)])
    D = sqd(X)
    ref = lower_median_nonzero(D) if mode == "paper" else np.median(D)
    ops = cka_cpu.get_ops(engine == "numba")
    windows = []
    initial = _median._initial_windows
    monkeypatch.setattr(_median, "_initial_windows",
                        lambda *a: windows.append(1) or initial(*a))
    M = 189 * 188 // 2
    for dense, sampled in [(None, False), (M, False), (M - 1, True)]:
        windows.clear()
        (got,) = _median.sqdist_order_stats([X], [(0, mode)], ops=ops, tile=31, cap=10 ** 6,
                                            sample_size=4000, dense=dense)
        assert got == pytest.approx(ref, rel=1e-12)
        assert bool(windows) == sampled


@pytest.mark.parametrize("threads", [2, 3])
def test_tile_pool_bits_do_not_depend_on_threads(monkeypatch, small_config, threads):
    """The host's tile pool (whole tiles per thread, merged in tile order) gives the exact
    medians, through refinement passes too, and the same bits of every CKA as one thread."""
    from fastcka import _threads

    rng = np.random.default_rng(9)
    X = np.concatenate([rng.normal(size=(150, 3)), rng.normal(size=(40, 3)) * 1e-3,
                        np.repeat(rng.normal(size=(1, 3)), 11, axis=0)])
    Y = np.tanh(X @ rng.normal(size=(3, 5))) + 0.1 * rng.normal(size=(201, 5))
    D = sqd(X)
    ops = cka_cpu.get_ops(True)

    def run():
        med = [_median.sqdist_order_stats([X], [(0, mode)], ops=ops, tile=23, cap=50,
                                          sample_size=30)[0] for mode in ("paper", "kornblith")]
        vals = [fastcka.cka(X, Y, kernel=k, sigma=s, estimator=e, device="cpu")
                for k, s in (("rbf", "paper"), ("rbf", "kornblith"), ("linear", "paper"))
                for e in ("biased", "unbiased")]
        return med, vals

    monkeypatch.setattr(_threads, "cpu_threads", lambda: 1)
    one = run()
    monkeypatch.setattr(_threads, "cpu_threads", lambda: threads)
    monkeypatch.setattr(_threads, "THREADS_MIN_WORK", 0)
    used = []
    pool_threads = _threads.pool_threads

    def spy(*args):
        used.append(pool_threads(*args))
        return used[-1]

    monkeypatch.setattr(_threads, "pool_threads", spy)  # what tile_pool gives each pass
    many = run()
    assert used and min(used) == threads  # the pool really ran on several threads
    assert many == one  # the same bits
    assert one[0][0] == pytest.approx(lower_median_nonzero(D), rel=1e-12)
    assert one[0][1] == pytest.approx(np.median(D), rel=1e-12)
    K = naive_kernel(X, "rbf", "paper", 1.0)
    L = naive_kernel(Y, "rbf", "paper", 1.0)
    assert one[1][0] == pytest.approx(naive_cka(K, L, False), rel=1e-12)


def test_median_all_zero_distances_is_an_error():
    with pytest.raises(InputError, match="zero"):
        ckam.paper_sigma(np.ones((6, 3)), device="cpu")
    with pytest.raises(InputError, match="zero"):
        fastcka.cka(np.ones((6, 3)), np.arange(18.0).reshape(6, 3), kernel="rbf", device="cpu")


# ---------------------------------------------------------------- invariances

@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_invariances(kernel, estimator):
    X, Y = pair(80, p=6, q=6, seed=11)
    base = fastcka.cka(X, Y, kernel=kernel, estimator=estimator, device="cpu")
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    perm = rng.permutation(80)
    kw = dict(kernel=kernel, estimator=estimator, device="cpu")
    assert fastcka.cka(X @ Q, Y, **kw) == pytest.approx(base, rel=1e-9)
    assert fastcka.cka(3.7 * X, Y, **kw) == pytest.approx(base, rel=1e-9)
    assert fastcka.cka(X[perm], Y[perm], **kw) == pytest.approx(base, rel=1e-9)
    A = rng.normal(size=(6, 6)) @ np.diag([1, 1, 1, 1, 5, 0.05])
    assert abs(fastcka.cka(X @ A, Y, **kw) - base) > 1e-3  # not invariant to a general linear map
    assert fastcka.cka(X, X, **kw) == pytest.approx(1.0, rel=1e-12)


# ---------------------------------------------------------------- matrix, kNN metrics, test

def test_cka_matrix_matches_pairs(small_config):
    rng = np.random.default_rng(2)
    Xs = [rng.normal(size=(50, d)) for d in (3, 8, 5)]
    Xs[2] = Xs[2] + Xs[0] @ rng.normal(size=(3, 5))
    for kernel in ["linear", "rbf"]:
        M = fastcka.cka_matrix(Xs, kernel=kernel, device="cpu")
        assert M.shape == (3, 3)
        np.testing.assert_allclose(np.diag(M), 1.0)
        for a in range(3):
            for b in range(3):
                if a != b:
                    ref = naive_cka(naive_kernel(Xs[a], kernel), naive_kernel(Xs[b], kernel))
                    assert M[a, b] == pytest.approx(ref, rel=1e-9)


def test_mutual_knn_matches_naive(tunables):
    X, Y = pair(60, seed=4)
    for k in (1, 5, 10):
        a, _ = naive_knn_sets(X, k)
        b, _ = naive_knn_sets(Y, k)
        ref = np.mean([len(a[i] & b[i]) / k for i in range(60)])
        assert fastcka.mutual_knn(X, Y, k=k, device="cpu") == pytest.approx(ref)
    assert fastcka.mutual_knn(X, 2 * X, k=5, device="cpu") == pytest.approx(1.0)


def test_cknna_matches_naive_definition(tunables):
    X, Y = pair(50, seed=6)
    k = 8
    ref = naive_cknna(X, Y, k)
    assert fastcka.cknna(X, Y, k=k, device="cpu") == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_permutation_test(kernel):
    X, Y = pair(40, seed=8)
    res = fastcka.cka_permutation_test(X, Y, n_permutations=30, rng=3, kernel=kernel, device="cpu")
    assert res.statistic == pytest.approx(fastcka.cka(X, Y, kernel=kernel, device="cpu"))
    # the null is CKA of X against row-permuted Y, with the same permutations
    gen = np.random.default_rng(3)
    null = [fastcka.cka(X, Y[gen.permutation(40)], kernel=kernel, device="cpu") for _ in range(30)]
    np.testing.assert_allclose(res.null, null, rtol=1e-9)
    assert res.null_mean == pytest.approx(np.mean(null))
    assert res.p_value == pytest.approx(1 / 31)  # strongly aligned: no permutation beats it
    Z = np.random.default_rng(9).normal(size=(40, 7))
    res2 = fastcka.cka_permutation_test(X, Z, n_permutations=30, rng=0, kernel=kernel, device="cpu")
    assert res2.p_value > 0.05
    again = fastcka.cka_permutation_test(X, Z, n_permutations=30, rng=0, kernel=kernel, device="cpu")
    np.testing.assert_array_equal(again.null, res2.null)


# ---------------------------------------------------------------- errors

def test_negative_self_hsic_gives_nan_with_warning():
    # The unbiased self-HSIC is ||U-centred K||^2 / (n(n-3)) >= 0 in exact arithmetic (checked
    # here on random kernels); a negative value can only come from round-off on a degenerate
    # kernel, and must give NaN with a warning, never silently.
    for seed in range(20):
        X = np.random.default_rng(seed).normal(size=(5, 2))
        assert naive_hsic(X @ X.T, X @ X.T, True) >= 0
    with pytest.warns(RuntimeWarning, match="negative"):
        v = ckam._ratio(0.3, -1e-17, 2.0)
    assert math.isnan(v)
    st = ckam._Stats(4, np.array([[1.0, 0.5], [0.5, 1.0]]), np.zeros((2, 4)), np.ones((2, 4)))
    assert st.hsic(0, 0, "unbiased") < 0  # a degenerate (invalid) kernel
    with pytest.warns(RuntimeWarning, match="negative"):
        assert math.isnan(ckam._cka_from(st, 0, 1, "unbiased"))


@pytest.mark.parametrize("call,match", [
    (lambda: fastcka.cka(np.ones((3, 2)), np.ones((3, 2)), estimator="unbiased"), "at least 4 rows"),
    (lambda: fastcka.cka(np.ones(5), np.ones((5, 2))), "2-D"),
    (lambda: fastcka.cka(np.ones((5, 2)), np.ones((6, 2))), "same number of rows"),
    (lambda: fastcka.cka(np.array([[1.0, np.nan]] * 5), np.ones((5, 2))), "NaN"),
    (lambda: fastcka.cka(np.ones((5, 2)), np.ones((5, 2)), kernel="poly"), "kernel"),
    (lambda: fastcka.cka(np.ones((5, 2)), np.ones((5, 2)), sigma="median"), "sigma"),
    (lambda: fastcka.cka(np.ones((5, 2)), np.ones((5, 2)), sigma=-1.0), "sigma"),
    (lambda: fastcka.cka(np.ones((5, 2)), np.ones((5, 2)), estimator="debiased"), "estimator"),
    (lambda: fastcka.cka(np.ones((5, 2)), np.ones((5, 2)), threshold=0), "threshold"),
    (lambda: fastcka.mutual_knn(np.ones((5, 2)), np.ones((5, 2)), k=5), "k must be"),
    (lambda: fastcka.cka_permutation_test(np.ones((5, 2)), np.ones((5, 2)), n_permutations=0),
     "n_permutations"),
])
def test_bad_inputs_raise_one_line_input_error(call, match):
    with pytest.raises(InputError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_constant_representation_warns():
    X, _ = pair(10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeWarning, match="zero HSIC"):
            fastcka.cka(X, np.ones((10, 3)), device="cpu")
