"""Local CKA against a naive implementation of the reference definition.

The reference (below) builds, for every pair (i, j), the p + 1 points of each side, their
kernel matrices, the explicit centring matrix H, and the biased-HSIC CKA; with
``sigma="paper"`` the bandwidth of each side is the lower middle value of the non-zero squared
distances of that side's p + 1 points (every ordered pair counted, as in the n x n matrix).
"""

from __future__ import annotations

import numpy as np
import pytest
from reference import naive_local_cka, sqd

import fastcka
from fastcka.errors import InputError
from fastcka.kernels import local_cka_cpu as kc
from fastcka.local_cka import LocalCKAScorer, local_cka


def make_problem(q_s=7, q_t=6, p=9, ds=5, dt=3, seed=0, offset=3.0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((q_s + p, 4))
    Sx = Z @ rng.standard_normal((4, ds)) + 0.3 * rng.standard_normal((q_s + p, ds)) + offset
    Tz = np.vstack([Z[:q_s][: q_t], rng.standard_normal((max(0, q_t - q_s), 4)), Z[q_s:]])
    Tx = Tz @ rng.standard_normal((4, dt)) + 0.3 * rng.standard_normal((Tz.shape[0], dt)) - offset
    return Sx[:q_s], Tx[:q_t], Sx[q_s:], Tx[q_t:]


MODES = [("linear", "paper"), ("rbf", "paper"), ("rbf", "base"), ("rbf", 1.7), ("rbf", 0.6)]


@pytest.mark.parametrize("kernel,sigma", MODES)
@pytest.mark.parametrize("dims", [(5, 3), (12, 20), (3, 3)])
def test_matches_naive_reference(kernel, sigma, dims, tunables):
    Sq, Tq, Sb, Tb = make_problem(ds=dims[0], dt=dims[1], seed=sum(dims))
    got = local_cka(Sq, Tq, Sb, Tb, kernel=kernel, sigma=sigma, device="cpu")
    ref = naive_local_cka(Sq, Tq, Sb, Tb, kernel, sigma)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("kernel,sigma", MODES)
def test_numpy_fallback_matches_naive(kernel, sigma, monkeypatch):
    monkeypatch.setenv("FASTCKA_DISABLE_NUMBA", "1")
    Sq, Tq, Sb, Tb = make_problem(q_s=5, q_t=8, p=11, seed=3)
    got = local_cka(Sq, Tq, Sb, Tb, kernel=kernel, sigma=sigma, device="cpu")
    np.testing.assert_allclose(got, naive_local_cka(Sq, Tq, Sb, Tb, kernel, sigma), atol=1e-9)


def test_paper_sigma_with_duplicates_and_ties():
    """Duplicated points (zero distances excluded) and tied distances on an integer grid."""
    rng = np.random.default_rng(5)
    Sb = rng.integers(0, 3, size=(10, 2)).astype(float)
    Tb = rng.integers(0, 3, size=(10, 3)).astype(float)
    Sb[3] = Sb[4]  # a duplicate base point
    Sq = np.vstack([Sb[0], rng.integers(0, 3, size=(4, 2))]).astype(float)  # query == base row
    Tq = rng.integers(0, 3, size=(6, 3)).astype(float)
    got = local_cka(Sq, Tq, Sb, Tb, kernel="rbf", sigma="paper", device="cpu")
    np.testing.assert_allclose(got, naive_local_cka(Sq, Tq, Sb, Tb, "rbf", "paper"), atol=1e-9)


def test_lower_median_merge_kernels_agree_with_sort():
    rng = np.random.default_rng(1)
    base = np.sort(rng.exponential(size=37))
    Q = rng.exponential(size=(25, 8))
    Q[rng.random(Q.shape) < 0.2] = 0.0
    Q[3] = 0.0
    Q[4, :4] = base[:4]  # exact ties with base values
    want = []
    for row in Q:
        v = np.sort(np.concatenate([base, row[row > 0]]))
        want.append(v[(v.size - 1) // 2])
    for use_numba in (True, False):
        np.testing.assert_array_equal(kc.lower_median_merge(base, Q, use_numba=use_numba), want)


def test_rbf_base_stats_kernels_agree():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((13, 4))
    D = sqd(X)
    alphas = np.array([0.1, 0.5, 2.0])
    R, T, S2 = kc.rbf_base_stats(D, alphas, use_numba=True)
    R0, T0, S20 = kc.rbf_base_stats(D, alphas, use_numba=False)
    for a, r, t, s in zip(alphas, R, T, S2, strict=True):
        E = np.exp(-a * D)
        np.testing.assert_allclose(r, E.sum(1), rtol=1e-13)
        np.testing.assert_allclose(t, E.sum(), rtol=1e-13)
        np.testing.assert_allclose(s, (E * E).sum(), rtol=1e-13)
    np.testing.assert_allclose(R, R0, rtol=1e-13)
    np.testing.assert_allclose(S2, S20, rtol=1e-13)
    np.testing.assert_allclose(T, T0, rtol=1e-13)


def test_sqdist_exact_zero_for_identical_rows():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((6, 5)) * 1e3
    B = np.vstack([A[2], rng.standard_normal((3, 5))])
    for use_numba in (True, False):
        D = kc.sqdist_exact(A, B, use_numba=use_numba)
        assert D[2, 0] == 0.0
        np.testing.assert_allclose(D, ((A[:, None] - B[None]) ** 2).sum(-1), rtol=1e-12)


@pytest.mark.parametrize("na,nb,d", [(1, 1, 3), (1, 7, 5), (2, 3, 4), (3, 4, 1), (5, 9, 17),
                                     (8, 12, 33), (7, 0, 3), (0, 5, 3)])
def test_sqdist_exact_blocks_and_tails(na, nb, d):
    # the Numba kernel works on 2 x 4 register blocks: odd row counts, column tails and empty
    # inputs against the broadcast form; a row of A repeated in B gives exactly 0 wherever it falls
    rng = np.random.default_rng(na * 100 + nb)
    A = rng.standard_normal((na, d)) * 3.0 + 1.0
    B = rng.standard_normal((nb, d))
    if na and nb:
        B[nb - 1] = A[na - 1]
    D = kc.sqdist_exact(A, B)
    ref = ((A[:, None] - B[None]) ** 2).sum(-1)
    assert D.shape == (na, nb)
    np.testing.assert_allclose(D, ref, rtol=1e-13, atol=0)
    if na and nb:
        assert D[na - 1, nb - 1] == 0.0


@pytest.mark.parametrize("kernel,sigma", MODES)
def test_blocks_equal_full(kernel, sigma):
    Sq, Tq, Sb, Tb = make_problem(q_s=9, q_t=8, p=10, seed=4)
    sc = LocalCKAScorer(Sq, Tq, Sb, Tb, kernel=kernel, sigma=sigma, device="cpu")
    full = sc.full()
    blk = sc.block(slice(2, 7), slice(3, 8))
    np.testing.assert_allclose(blk, full[2:7, 3:8], atol=1e-12)
    idx = np.array([8, 0, 4])
    np.testing.assert_allclose(sc.block(idx, slice(None)), full[idx], atol=1e-12)


def test_linear_invariances_and_range():
    """Linear local CKA is invariant to a rotation and a scaling of one side; values in [0, 1]."""
    Sq, Tq, Sb, Tb = make_problem(seed=6, ds=4, dt=4)
    rng = np.random.default_rng(0)
    Qm, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    a = local_cka(Sq, Tq, Sb, Tb, kernel="linear", device="cpu")
    b = local_cka(3.0 * Sq @ Qm + 1.0, Tq, 3.0 * Sb @ Qm + 1.0, Tb, kernel="linear", device="cpu")
    np.testing.assert_allclose(a, b, atol=1e-12)
    assert (a >= -1e-12).all() and (a <= 1 + 1e-12).all()


def test_float32_inputs_and_public_name():
    Sq, Tq, Sb, Tb = make_problem(seed=7)
    a = fastcka.local_cka(*(x.astype(np.float32) for x in (Sq, Tq, Sb, Tb)), kernel="rbf",
                          sigma="base", device="cpu")
    ref = naive_local_cka(*(x.astype(np.float32).astype(np.float64) for x in (Sq, Tq, Sb, Tb)),
                          "rbf", "base")
    assert a.dtype == np.float64
    np.testing.assert_allclose(a, ref, atol=1e-9)


# --------------------------------------------------------------------------------------------
# bad inputs
# --------------------------------------------------------------------------------------------


def _one_line(exc):
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_errors():
    Sq, Tq, Sb, Tb = make_problem()
    with pytest.raises(InputError, match="Sq has 4 features") as e:
        local_cka(Sq[:, :4], Tq, Sb, Tb, device="cpu")
    _one_line(e)
    with pytest.raises(InputError, match="Tq has 2 features"):
        local_cka(Sq, Tq[:, :2], Sb, Tb, device="cpu")
    with pytest.raises(InputError, match="at least 4 base"):
        local_cka(Sq, Tq, Sb[:3], Tb[:3], device="cpu")
    with pytest.raises(InputError, match="same number of paired base"):
        local_cka(Sq, Tq, Sb, Tb[:-1], device="cpu")
    bad = Sq.copy()
    bad[1, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        local_cka(bad, Tq, Sb, Tb, device="cpu")
    bad = Tb.copy()
    bad[0, 0] = np.inf
    with pytest.raises(InputError, match="NaN or Inf"):
        local_cka(Sq, Tq, Sb, bad, device="cpu")
    with pytest.raises(InputError, match="kernel"):
        local_cka(Sq, Tq, Sb, Tb, kernel="poly", device="cpu")
    with pytest.raises(InputError, match="sigma"):
        local_cka(Sq, Tq, Sb, Tb, kernel="rbf", sigma="median", device="cpu")
    with pytest.raises(InputError, match="sigma"):
        local_cka(Sq, Tq, Sb, Tb, kernel="rbf", sigma=-1.0, device="cpu")
    with pytest.raises(InputError, match="identical"):
        local_cka(Sq, Tq, np.ones_like(Sb), Tb, kernel="linear", device="cpu")
    with pytest.raises(InputError, match="identical"):
        local_cka(Sq, Tq, np.ones_like(Sb), Tb, kernel="rbf", sigma="base", device="cpu")
    with pytest.raises(InputError, match="device"):
        local_cka(Sq, Tq, Sb, Tb, device="tpu")


def test_base_sigma_agrees_with_cka_paper_sigma():
    """sigma="base" uses the paper bandwidth of the base set: same value as fastcka.paper_sigma."""
    from fastcka.backend import NUMPY_BACKEND
    from fastcka.cka import paper_sigma
    from fastcka.local_cka import paper_sigma_of_base

    Sq, Tq, Sb, Tb = make_problem(p=25, seed=8)
    Sb = np.vstack([Sb, Sb[:3]])  # duplicates: zero distances are excluded
    Tb = np.vstack([Tb, Tb[:3]])
    for X in (Sb, Tb):
        assert paper_sigma_of_base(X, NUMPY_BACKEND) == pytest.approx(paper_sigma(X, device="cpu"),
                                                                      rel=1e-12)
    sc = LocalCKAScorer(Sq, Tq, Sb, Tb, kernel="rbf", sigma="base", device="cpu")
    assert sc.sigma_source == pytest.approx(paper_sigma(Sb, device="cpu"), rel=1e-12)
    assert sc.sigma_target == pytest.approx(paper_sigma(Tb, device="cpu"), rel=1e-12)


# --------------------------------------------------------------------------------------------
# sigma="paper": base term interpolated in the bandwidth (Chebyshev nodes, run-time bound)
# --------------------------------------------------------------------------------------------


def test_paper_sigma_interpolated_base_term_matches_exact_and_naive():
    # many base points: every query moves its side's median very little, so the bandwidths
    # span a narrow range and the interpolated path is taken
    Sq, Tq, Sb, Tb = make_problem(q_s=24, q_t=20, p=80, ds=6, dt=5, seed=11)
    fast = LocalCKAScorer(Sq, Tq, Sb, Tb, kernel="rbf", sigma="paper", device="cpu")
    exact = LocalCKAScorer(Sq, Tq, Sb, Tb, kernel="rbf", sigma="paper", device="cpu",
                           exact_base=True)
    assert fast.base_nodes is not None and exact.base_nodes is None
    assert len(np.unique(fast.sigma_source)) > fast.base_nodes[0]  # really interpolated
    assert fast.base_error_bound <= 1e-12
    got = fast.full()
    np.testing.assert_allclose(got, exact.full(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(got, naive_local_cka(Sq, Tq, Sb, Tb, "rbf", "paper"), rtol=0,
                               atol=1e-10)
    # blocks of the one-GEMM factors are the same scores
    np.testing.assert_allclose(fast.block([3, 1, 7], slice(2, 9)), got[[3, 1, 7]][:, 2:9],
                               rtol=0, atol=1e-15)


def test_paper_sigma_wide_bandwidth_range_takes_the_exact_path():
    # few base points and far-away queries: the per-query bandwidths differ by orders of
    # magnitude, no node count meets the bound, the exact per-bandwidth-pair path runs
    Sq, Tq, Sb, Tb = make_problem(q_s=40, q_t=5, p=6, seed=2)
    Sb = Sb * np.geomspace(0.01, 100.0, 6)[:, None]
    Sq = Sq * np.geomspace(0.01, 100.0, 40)[:, None]
    fast = LocalCKAScorer(Sq, Tq, Sb, Tb, kernel="rbf", sigma="paper", device="cpu")
    exact = LocalCKAScorer(Sq, Tq, Sb, Tb, kernel="rbf", sigma="paper", device="cpu",
                           exact_base=True)
    assert fast.base_nodes is None
    assert len(np.unique(fast.sigma_source)) > 12
    np.testing.assert_array_equal(fast.full(), exact.full())
    np.testing.assert_allclose(fast.full(), naive_local_cka(Sq, Tq, Sb, Tb, "rbf", "paper"),
                               atol=1e-9)


def test_chebyshev_remainder_bounds_the_interpolation_error():
    from fastcka.local_cka import _cheb_remainder, _lagrange_weights

    a0, a1, dmax = 0.8, 0.83, 40.0
    x = np.linspace(0.0, dmax, 2001)
    a = np.linspace(a0, a1, 301)
    for n in (2, 3, 5):
        k = np.arange(n)
        nodes = 0.5 * (a0 + a1) + 0.5 * (a1 - a0) * np.cos((2 * k + 1) * np.pi / (2 * n))
        W = _lagrange_weights(a, nodes, np)
        err = np.abs(W @ np.exp(-nodes[:, None] * x[None, :]) - np.exp(-a[:, None] * x[None, :]))
        bound = _cheb_remainder(n, a0, a1, dmax)
        assert err.max() <= bound * (1 + 1e-9) + 1e-16
        assert err.max() >= bound / 20  # the bound is not vacuous
