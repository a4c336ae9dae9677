"""One-pass RBF kernel sums (fastcka._rbf_onepass): the moments kernel against NumPy, the
truncation bounds against the truncated series, and every CKA/HSIC against the two-pass path."""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference import naive_cka, naive_kernel, sqd

import fastcka
from fastcka import _cka, _median, _rbf_onepass, config
from fastcka.backend import get_backend
from fastcka.kernels import cka_cpu

pytestmark = pytest.mark.skipif(cka_cpu.NUMBA_OPS is None, reason="numba absent")


def test_moment_groups_cover_every_term_once():
    m, L = 3, 5
    groups, terms = cka_cpu.moment_groups(m, L)
    want = {(a, k, b, q) for a in range(m) for b in range(a, m) for k in range(L)
            for q in range(L) if k + q <= L - 1 and (a != b or k <= q)}
    assert len(terms) == len(want) and {tuple(t) for t in terms} == want
    # the kernel writes the terms group by group: x row, then consecutive y rows
    flat = [(x, y0 + q) for x, y0, cnt in groups for q in range(cnt)]
    assert flat == [(a * L + k, b * L + q) for a, k, b, q in terms]


@pytest.mark.parametrize("diag", [False, True])
def test_moments_tile_is_numpy(diag):
    rng = np.random.default_rng(3)
    m, L = 2, 6
    bi, bj = (37, 37) if diag else (41, 600)  # 600 columns: three 256-column chunks
    D = rng.uniform(0.2, 3.0, (m, bi, bj))
    if diag:
        D = np.triu(D, 1) + np.transpose(np.triu(D, 1), (0, 2, 1))
    g0, c0 = np.array([0.7, 0.4]), np.array([0.3, 0.2])
    E = np.exp(-g0[:, None, None] * D)
    Df, Ef = np.zeros((m, bi * bj + 7)), np.zeros((m, bi * bj + 7))
    Df[:, :bi * bj], Ef[:, :bi * bj] = D.reshape(m, -1), E.reshape(m, -1)
    groups, terms = cka_cpu.moment_groups(m, L)
    P = np.full(len(terms), np.nan)
    rows, cols = np.full((m * L, bi), np.nan), np.full((m * L, bj), np.nan)
    cka_cpu.moments_tile_nb(Df, Ef, bi, bj, g0, c0, L, diag, groups, P, rows, cols,
                            np.empty((m * L, 256)), np.empty(256))
    v = np.empty((m, L, bi, bj))
    for a in range(m):
        u = g0[a] * D[a]
        v[a, 0] = E[a] - c0[a]
        for k in range(1, L):
            v[a, k] = E[a] * u ** k / math.factorial(k)
    v *= np.triu(np.ones((bi, bj), bool), 1) if diag else 1.0
    want = np.array([(v[a, k] * v[b, q]).sum() for a, k, b, q in terms])
    np.testing.assert_allclose(P, want, rtol=1e-13, atol=1e-13 * np.abs(want).max())
    np.testing.assert_allclose(rows, v.sum(3).reshape(m * L, bi), rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(cols, v.sum(2).reshape(m * L, bj), rtol=1e-13, atol=1e-12)


def _series(eps, L, u):
    return sum((-eps) ** k * np.exp(-u) * u ** k / math.factorial(k) for k in range(L))


@pytest.mark.parametrize("umax", [math.inf, 2.5, 0.8])
@pytest.mark.parametrize("eps", [0.3, -0.3, 0.1, -0.05, 0.02])
@pytest.mark.parametrize("L", [2, 3, 5, 7])
def test_remainder_bound_bounds_the_series(eps, L, umax):
    u = np.linspace(0.0, min(umax, 80.0), 200001)
    err = np.abs(np.exp(-(1 + eps) * u) - _series(eps, L, u)).max()
    bound = _rbf_onepass.remainder_bound(eps, L, umax)
    assert err <= bound + 1e-15  # a bound (to the round-off of evaluating the series)
    if bound > 1e-13:  # measurable in float64: and not a vacuous one
        assert bound < 30 * err


@pytest.mark.parametrize("umax", [(math.inf, math.inf), (1.5, 3.0)])
@pytest.mark.parametrize("ea,eb", [(0.2, -0.1), (-0.05, 0.08), (0.15, 0.15)])
@pytest.mark.parametrize("L", [3, 4, 6])
def test_product_bound_bounds_the_truncated_products(ea, eb, L, umax):
    """The degree ``< L`` part of the product of two truncated series (what the moments sum)
    against the true product of the two shifted kernel values, over a grid of (u_a, u_b) up
    to the largest u of each input."""
    ua, ub = np.meshgrid(np.linspace(0, min(umax[0], 40), 801),
                         np.linspace(0, min(umax[1], 40), 801))
    c = 0.25
    va = [np.exp(-ua) - c] + [np.exp(-ua) * ua ** k / math.factorial(k) for k in range(1, L)]
    vb = [np.exp(-ub) - c] + [np.exp(-ub) * ub ** k / math.factorial(k) for k in range(1, L)]
    got = sum((-ea) ** k * (-eb) ** q * va[k] * vb[q]
              for k in range(L) for q in range(L) if k + q <= L - 1)
    true = (np.exp(-(1 + ea) * ua) - c) * (np.exp(-(1 + eb) * ub) - c)
    err = np.abs(got - true).max()
    assert err <= _rbf_onepass.product_bound(ea, eb, L, *umax)


@pytest.fixture
def onepass_config(monkeypatch):
    """Small tiles and a small collect cap (the sampled-window path, ragged tiles, several
    threads' worth of tiles) with a sample large enough to plan the one pass."""
    monkeypatch.setattr(config, "CKA_TILE", {"cpu": 61, "gpu": 61})
    monkeypatch.setattr(config, "MEDIAN_CAP", {"cpu": 4000, "gpu": 4000})
    monkeypatch.setattr(config, "MEDIAN_SAMPLE", {"cpu": 40000, "gpu": 40000})
    return config


def _data(n, seed=0, dup=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 160))  # many dimensions: concentrated distances, as embeddings
    if dup:
        X[-dup:] = X[0]  # duplicate rows: zero distances
    Y = np.tanh(X @ rng.normal(size=(160, 64)) / 12.0) + 0.3 * rng.normal(size=(n, 64))
    return X.astype(dtype), Y.astype(dtype)


def _spy(monkeypatch):
    """Records what each OnePass.stats returned and each second pass (_kernel_stats)."""
    log = {"one": [], "two": 0, "vmax": []}
    stats, kernel_stats = _rbf_onepass.OnePass.stats, _cka._kernel_stats

    def spy_stats(self, gammas):
        out = stats(self, gammas)
        log["one"].append(out is not None)
        log["vmax"].append(getattr(self, "vmax", None))
        return out

    def spy_two(*args, **kw):
        log["two"] += 1
        return kernel_stats(*args, **kw)

    monkeypatch.setattr(_rbf_onepass.OnePass, "stats", spy_stats)
    monkeypatch.setattr(_cka, "_kernel_stats", spy_two)
    return log


def _both(monkeypatch, fn):
    monkeypatch.setattr(config, "RBF_ONE_PASS_MAX_INPUTS", 6)
    one = fn()
    monkeypatch.setattr(config, "RBF_ONE_PASS_MAX_INPUTS", 0)
    two = fn()
    monkeypatch.setattr(config, "RBF_ONE_PASS_MAX_INPUTS", 6)
    return one, two


@pytest.mark.parametrize("sigma,threshold", [("paper", 1.0), ("kornblith", 0.8)])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("case", ["dense", "window", "duplicates", "float32"])
def test_one_pass_cka_is_the_two_pass_cka(monkeypatch, onepass_config, sigma, threshold,
                                          estimator, case):
    n = 700
    if case == "dense":  # M <= cap: every value collected, a plan from a sample of M / 4
        monkeypatch.setattr(config, "MEDIAN_CAP", {"cpu": 300000, "gpu": 300000})
        monkeypatch.setattr(_median, "DENSE_PLAN_DIV", 4)
    X, Y = _data(n, dup=40 if case == "duplicates" else 0,
                 dtype=np.float32 if case == "float32" else np.float64)
    log = _spy(monkeypatch)
    one, two = _both(monkeypatch, lambda: (
        fastcka.cka(X, Y, kernel="rbf", sigma=sigma, threshold=threshold, estimator=estimator,
                    device="cpu"),
        fastcka.hsic(X, Y, kernel="rbf", sigma=sigma, threshold=threshold,
                     estimator=estimator, device="cpu")))
    assert log["one"] == [True, True] and log["two"] == 2  # one pass, then the two-pass path
    # the post-check's largest u: the pass's largest distance of each input (scaled units)
    affs = _cka._affs(get_backend("cpu"), [X, Y])
    for a, (Z, (_, sc)) in enumerate(zip((X, Y), affs, strict=True)):
        assert log["vmax"][0][a] == pytest.approx(sc * sc * sqd(Z.astype(np.float64)).max(),
                                                  rel=1e-12)
    assert one[0] == pytest.approx(two[0], abs=1e-12)
    assert one[1] == pytest.approx(two[1], rel=1e-11)
    if case == "window" and estimator == "biased" and sigma == "paper":
        K, L = naive_kernel(X, "rbf", "paper", 1.0), naive_kernel(Y, "rbf", "paper", 1.0)
        assert one[0] == pytest.approx(naive_cka(K, L, False), rel=1e-12)


def test_one_pass_cka_matrix_is_the_two_pass_matrix(monkeypatch, onepass_config):
    X, Y = _data(500, seed=4)
    Z = np.sin(X[:, :96]) + 0.5 * np.random.default_rng(5).normal(size=(500, 96))
    log = _spy(monkeypatch)
    one, two = _both(monkeypatch, lambda: fastcka.cka_matrix([X, Y, Z], kernel="rbf",
                                                             device="cpu"))
    assert log["one"] == [True]
    np.testing.assert_allclose(one, two, rtol=0, atol=1e-12)


def test_one_pass_falls_back_to_the_second_pass(monkeypatch, onepass_config):
    """A bound over the tolerance (here: a tolerance of 0) takes the second pass: the same
    bits as the two-pass path."""
    X, Y = _data(500, seed=6)
    monkeypatch.setattr(_rbf_onepass, "CKA_TOL", 0.0)
    log = _spy(monkeypatch)
    one, two = _both(monkeypatch, lambda: fastcka.cka(X, Y, kernel="rbf", device="cpu"))
    assert log["one"] == [False] and log["two"] == 2
    assert one == two


def test_one_pass_is_off_where_it_cannot_run(monkeypatch, onepass_config):
    X, Y = _data(300, seed=7)
    log = _spy(monkeypatch)
    fastcka.cka(X, Y, kernel="rbf", sigma=1.7, device="cpu")  # a fixed σ: one pass already
    monkeypatch.setattr(config, "RBF_ONE_PASS_MAX_INPUTS", 1)  # two inputs: over the limit
    fastcka.cka(X, Y, kernel="rbf", device="cpu")
    monkeypatch.setattr(config, "RBF_ONE_PASS_MAX_INPUTS", 6)
    monkeypatch.setattr(config, "MEDIAN_SAMPLE", {"cpu": 100, "gpu": 100})  # no usable plan
    fastcka.cka(X, Y, kernel="rbf", device="cpu")
    assert log["one"] == [False] and log["two"] == 3


@pytest.mark.parametrize("threads", [2, 3])
def test_one_pass_bits_do_not_depend_on_threads(monkeypatch, onepass_config, threads):
    from fastcka import _threads

    X, Y = _data(600, seed=8)
    log = _spy(monkeypatch)

    def run():
        return [fastcka.cka(X, Y, kernel="rbf", sigma=s, estimator=e, device="cpu")
                for s in ("paper", "kornblith") for e in ("biased", "unbiased")]

    monkeypatch.setattr(_threads, "cpu_threads", lambda: 1)
    one = run()
    monkeypatch.setattr(_threads, "cpu_threads", lambda: threads)
    monkeypatch.setattr(_threads, "THREADS_MIN_WORK", 0)
    many = run()
    assert all(log["one"]) and len(log["one"]) == 8
    assert many == one


def test_one_pass_on_the_reference_embeddings(monkeypatch, reference_embeddings):
    """Flickr8k image (EfficientNet-Lite0) and caption (MiniLM) embeddings, 1000 pairs: the
    one-pass CKA is the two-pass CKA, both bandwidths and estimators."""
    _, X, Y = reference_embeddings
    log = _spy(monkeypatch)
    for sigma in ("paper", "kornblith"):
        for est in ("biased", "unbiased"):
            one, two = _both(monkeypatch, lambda s=sigma, e=est: fastcka.cka(
                X, Y, kernel="rbf", sigma=s, estimator=e, device="cpu"))
            assert one == pytest.approx(two, abs=1e-12)
    assert log["one"] == [True] * 4
