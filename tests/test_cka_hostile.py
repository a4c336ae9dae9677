"""CKA on hostile inputs (issue 12, items 9-12): large offsets, outlier dimensions, extreme
magnitudes, constant inputs.

References are naive n×n computations (tests/reference.py) on the *same* float64 input centred by
hand in extended precision (``np.longdouble``): subtracting the column mean there is exact up to
the final rounding, so the reference carries no cancellation; the inputs are scaled by powers of
ten, so for the magnitude cases the reference is the unscaled data (CKA is scale-invariant).
"""

from __future__ import annotations

import importlib
import math
import warnings

import numpy as np
import pytest
from reference import lower_median_nonzero, naive_cka, naive_hsic, naive_kernel, sqd

import fastcka

lcka = importlib.import_module("fastcka.local_cka")


def centred(X):
    """X − column mean, computed in extended precision, then rounded to float64."""
    L = np.asarray(X, dtype=np.longdouble)
    return (L - L.mean(axis=0)).astype(np.float64)


def pair(n, p, q, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    Y = np.tanh(X @ rng.normal(size=(p, q))) + 0.5 * rng.normal(size=(n, q))
    return X, Y


def ref_cka(X, Y, kernel="linear", sigma="paper", unbiased=False):
    Xc, Yc = centred(X), centred(Y)
    return naive_cka(naive_kernel(Xc, kernel, sigma), naive_kernel(Yc, kernel, sigma), unbiased)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("offset", [1e3, 1e4, 1e5])
def test_linear_gram_path_uncentred(offset, estimator):
    # p + q > n: the Gram path.  Before: errors 2.6e-3 / 0.65 / NaN (a "negative self-HSIC")
    X, Y = pair(40, 30, 25)
    Xo, Yo = X + offset, Y - 2 * offset
    ref = ref_cka(Xo, Yo, unbiased=estimator == "unbiased")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fastcka.cka(Xo, Yo, estimator=estimator, device="cpu")
    assert got == pytest.approx(ref, abs=1e-12)


def test_linear_gram_path_large_constant_dimensions():
    # two constant outlier dimensions at +3000 (as in LLM activations): before, error 5e-6
    X, Y = pair(50, 40, 30, seed=1)
    X = np.hstack([X, np.full((50, 2), 3000.0)])
    Y = np.hstack([Y * 0.01, np.full((50, 2), -3000.0)])
    assert fastcka.cka(X, Y, device="cpu") == pytest.approx(ref_cka(X, Y), abs=1e-12)
    m = fastcka.cka_matrix([X, Y, X[:, :30] + 1e4], device="cpu")
    assert m[0, 1] == pytest.approx(ref_cka(X, Y), abs=1e-12)
    assert m[1, 2] == pytest.approx(ref_cka(Y, X[:, :30] + 1e4), abs=1e-12)


@pytest.mark.parametrize("sigma", ["paper", "kornblith", 3.0])
@pytest.mark.parametrize("offset", [1e6, 1e7])
def test_rbf_uncentred(offset, sigma):
    # before: off by 0.19 at 1e6; "all pairwise squared distances are zero" at 1e7
    X, Y = pair(30, 6, 4, seed=2)
    Xo, Yo = X + offset, Y + offset
    assert fastcka.cka(Xo, Yo, kernel="rbf", sigma=sigma, device="cpu") == pytest.approx(
        ref_cka(Xo, Yo, "rbf", sigma), abs=1e-9)
    D = sqd(centred(Xo))
    assert fastcka.paper_sigma(Xo, device="cpu") ** 2 == pytest.approx(
        lower_median_nonzero(D), rel=1e-9)
    assert fastcka.kornblith_sigma(Xo, device="cpu") ** 2 == pytest.approx(np.median(D), rel=1e-9)
    np.testing.assert_allclose(fastcka.gram(Xo, "rbf", sigma, device="cpu"),
                               naive_kernel(centred(Xo), "rbf", sigma), atol=1e-9)
    # the centred linear Gram matrix HKH as well
    H = np.eye(30) - 1.0 / 30
    Xc = centred(Xo)
    np.testing.assert_allclose(fastcka.gram(Xo, center=True, device="cpu"), H @ (Xc @ Xc.T) @ H,
                               atol=1e-8)


def test_local_cka_base_sigma_uncentred():
    # the query-to-base distances (GEMM form) on rows far from the origin
    rng = np.random.default_rng(3)
    Sb, Tb = rng.normal(size=(12, 5)), rng.normal(size=(12, 4))
    Sq, Tq = rng.normal(size=(3, 5)), rng.normal(size=(4, 4))
    off = 1e6
    got = fastcka.local_cka(Sq + off, Tq + off, Sb + off, Tb + off, kernel="rbf", sigma="base",
                            device="cpu")
    ref = np.empty((3, 4))
    for i in range(3):
        K = naive_kernel(centred(np.vstack([Sq[i:i + 1], Sb]) + off), "rbf", "base",
                         base=centred(Sb + off))
        for j in range(4):
            L = naive_kernel(centred(np.vstack([Tq[j:j + 1], Tb]) + off), "rbf", "base",
                             base=centred(Tb + off))
            ref[i, j] = naive_cka(K, L)
    np.testing.assert_allclose(got, ref, atol=1e-8)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("scale", [1e150, 1e160, 1e-150, 1e-200])
def test_extreme_magnitudes(kernel, scale):
    # before: linear 0.0 / NaN at 1e150, an IndexError in _median at 1e160 (rbf), NaN with a
    # "constant representation" warning at 1e-150
    for n, p, q in ((40, 30, 25), (60, 5, 4)):  # Gram path and feature-space path
        X, Y = pair(n, p, q, seed=4)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = fastcka.cka(X * scale, Y * scale, kernel=kernel, device="cpu")
        assert got == pytest.approx(ref_cka(X, Y, kernel), abs=1e-9)


def test_extreme_magnitudes_keep_units():
    # HSIC and the bandwidths have units: the rescaling must be undone exactly (powers of two)
    X, Y = pair(40, 30, 25, seed=5)
    s = 2.0 ** -260
    Xs, Ys = X * s, Y * s
    for est in ("biased", "unbiased"):
        h = fastcka.hsic(Xs, Ys, estimator=est, device="cpu")
        ref = naive_hsic(centred(X) @ centred(X).T, centred(Y) @ centred(Y).T, est == "unbiased")
        assert h / s ** 2 / s ** 2 == pytest.approx(ref, rel=1e-9)
    assert fastcka.paper_sigma(Xs, device="cpu") / s == pytest.approx(
        math.sqrt(lower_median_nonzero(sqd(X))), rel=1e-12)
    big = 2.0 ** 500
    assert fastcka.kornblith_sigma(X * big, device="cpu") / big == pytest.approx(
        math.sqrt(np.median(sqd(X))), rel=1e-12)
    # a float sigma is in the units of the input
    assert fastcka.cka(X * big, Y * big, kernel="rbf", sigma=2.0 * big, device="cpu") == \
        pytest.approx(ref_cka(X, Y, "rbf", 2.0), abs=1e-12)
    np.testing.assert_allclose(fastcka.gram(Xs, "rbf", 3.0 * s, device="cpu"),
                               naive_kernel(X, "rbf", 3.0), atol=1e-12)
    r = fastcka.cka_permutation_test(X * big, Y * big, n_permutations=5, rng=0, device="cpu")
    r0 = fastcka.cka_permutation_test(X, Y, n_permutations=5, rng=0, device="cpu")
    np.testing.assert_allclose(r.null, r0.null, rtol=1e-9)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_permutation_test_nan_statistic_gives_nan_p_value(kernel):
    # before: p ≈ 0.048 for a constant X (NaN >= x is never true)
    _, Y = pair(20, 3, 4, seed=6)
    X = np.full((20, 3), 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = fastcka.cka_permutation_test(X, Y, n_permutations=20, rng=0, kernel=kernel,
                                         sigma=1.0, device="cpu")
    assert math.isnan(r.statistic) and math.isnan(r.p_value)


def test_constant_inputs_stay_exactly_constant():
    # the centre of a constant column is its value exactly (0.1 * n / n need not be 0.1)
    _, Y = pair(23, 3, 4, seed=7)
    for X in (np.full((23, 30), 0.1), np.full((23, 2), 1e-170)):
        with pytest.warns(RuntimeWarning, match="zero HSIC"):
            assert math.isnan(fastcka.cka(X, Y, device="cpu"))
