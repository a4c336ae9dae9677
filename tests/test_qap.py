"""fastcka.quadratic_assignment against SciPy's implementation and independent references."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from reference import exact_faq, naive_pad, naive_qap_objective, naive_sinkhorn
from scipy.optimize import quadratic_assignment as scipy_qap

from fastcka.qap import OptimizeWarning, doubly_stochastic, quadratic_assignment


def _problem(n, sym, seed):
    rng = np.random.default_rng(seed)
    A, B = rng.random((n, n)), rng.random((n, n))
    if sym:
        A, B = A + A.T, B + B.T
    return A, B, rng


@pytest.mark.parametrize("sym", [True, False])
@pytest.mark.parametrize("m", [0, 7])
@pytest.mark.parametrize("maximize", [False, True])
def test_objective_matches_scipy_same_deterministic_P0(sym, m, maximize):
    A, B, rng = _problem(50, sym, 1 + m + 2 * sym)
    pm = np.stack([rng.permutation(50)[:m], rng.permutation(50)[:m]], 1)
    opts = dict(maximize=maximize, partial_match=pm, tol=1e-6, maxiter=60)
    ref = scipy_qap(A, B, options=dict(opts, rng=np.random.default_rng(0)))
    for extra in ({}, {"lap": "jv"}):
        res = quadratic_assignment(A, B, options=dict(opts, rng=np.random.default_rng(0), **extra))
        better = res.fun >= ref.fun - 1e-9 * abs(ref.fun) if maximize else res.fun <= ref.fun + 1e-9 * abs(ref.fun)
        assert better, (res.fun, ref.fun, extra)
        assert res.fun == pytest.approx(naive_qap_objective(A, B, res.col_ind), rel=1e-12)
        assert sorted(res.col_ind) == list(range(50))
        assert (res.col_ind[pm[:, 0]] == pm[:, 1]).all()
    # SciPy's LAP in the loop: the same iterates, so the same answer
    res = quadratic_assignment(A, B, options=dict(opts, rng=np.random.default_rng(0), lap="scipy"))
    assert res.fun == pytest.approx(ref.fun, rel=1e-10)


def test_explicit_P0_matches_scipy():
    A, B, rng = _problem(40, True, 5)
    P0 = doubly_stochastic(rng.random((40, 40)), tol=1e-10)
    ref = scipy_qap(A, B, options=dict(P0=P0, maximize=True, rng=np.random.default_rng(1)))
    res = quadratic_assignment(A, B, options=dict(P0=P0, maximize=True, rng=np.random.default_rng(1)))
    assert res.fun >= ref.fun - 1e-9 * abs(ref.fun)
    # SciPy's LAP in the loop: the same iterates from the same P0, so SciPy's answer
    res = quadratic_assignment(A, B, options=dict(P0=P0, maximize=True, lap="scipy",
                                                  rng=np.random.default_rng(1)))
    np.testing.assert_array_equal(res.col_ind, ref.col_ind)
    assert res.nit == ref.nit
    assert res.fun == pytest.approx(ref.fun, rel=1e-12)


def test_randomized_restarts_batch_equals_sequential_scipy_calls():
    A, B, _ = _problem(45, True, 9)
    pm = np.stack([np.arange(5), np.arange(5)], 1)
    opts = dict(P0="randomized", maximize=True, partial_match=pm, tol=1e-6)
    g = np.random.default_rng(123)
    refs = [scipy_qap(A, B, options=dict(opts, rng=g)).fun for _ in range(4)]
    res = quadratic_assignment(A, B, options=dict(opts, rng=np.random.default_rng(123), n_init=4,
                                                  lap="scipy"))
    np.testing.assert_allclose(res.all_fun, refs, rtol=1e-10)
    assert res.fun == pytest.approx(max(refs), rel=1e-12)
    assert res.fun == pytest.approx(naive_qap_objective(A, B, res.col_ind), rel=1e-12)
    # our warm-started LAP inside: exact too, never worse in the best restart on this instance
    res_jv = quadratic_assignment(A, B, options=dict(opts, rng=np.random.default_rng(123), n_init=4,
                                                     lap="jv", batch_size=3))
    assert len(res_jv.all_fun) == 4 and len(res_jv.all_nit) == 4
    assert res_jv.fun == pytest.approx(naive_qap_objective(A, B, res_jv.col_ind), rel=1e-12)
    assert res_jv.fun == pytest.approx(res_jv.all_fun.max())


def test_real_kernels_not_worse_than_scipy(reference_embeddings):
    from fastcka.cka import gram

    _, img, txt = reference_embeddings
    idx = np.random.default_rng(0).permutation(len(img))[:150]

    def k(X):
        K = gram(X[idx], kernel="rbf", sigma="paper", center=True, device="cpu")
        return K / np.linalg.norm(K)

    A, B = k(txt), k(img)
    pm = np.stack([np.arange(40), np.arange(40)], 1)
    opts = dict(maximize=True, partial_match=pm, tol=1e-5)
    ref = scipy_qap(A, B, options=dict(opts, rng=np.random.default_rng(0)))
    res = quadratic_assignment(A, B, options=dict(opts, rng=np.random.default_rng(0)))
    assert res.fun >= ref.fun - 1e-9


def test_factored_linear_path_equals_dense():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((70, 6))
    Y = X[rng.permutation(70)] @ np.linalg.qr(rng.standard_normal((6, 6)))[0] + 0.1 * rng.standard_normal((70, 6))
    pm = np.stack([np.arange(8), np.arange(8)], 1)
    opts = dict(maximize=True, partial_match=pm, rng=np.random.default_rng(0), tol=1e-6)
    dense = quadratic_assignment(X @ X.T, Y @ Y.T, options=opts)
    fact = quadratic_assignment(X, Y, options=dict(opts, factored=True))
    assert fact.fun == pytest.approx(dense.fun, rel=1e-9)
    assert fact.fun == pytest.approx(naive_qap_objective(X @ X.T, Y @ Y.T, fact.col_ind), rel=1e-9)


def test_float32_option():
    # a planted matching (B = A relabelled, plus noise): float32 iterations find it like float64
    A, _, rng = _problem(60, True, 4)
    truth = rng.permutation(60)
    B = np.empty_like(A)
    B[np.ix_(truth, truth)] = A
    B += 0.01 * rng.random(B.shape)
    B = B + B.T
    pm = np.stack([np.arange(5), truth[:5]], 1)
    opts = dict(maximize=True, partial_match=pm, rng=np.random.default_rng(0))
    r64 = quadratic_assignment(A, B, options=opts)
    r32 = quadratic_assignment(A, B, options=dict(opts, dtype="float32"))
    assert (r64.col_ind == truth).all() and (r32.col_ind == truth).all()
    assert r32.fun == naive_qap_objective(A, B, r32.col_ind)          # fun is evaluated in float64


def test_linear_term_S():
    A, B, rng = _problem(30, True, 6)
    truth = rng.permutation(30)
    S = np.zeros((30, 30))
    S[np.arange(30), truth] = 1e4      # an overwhelming linear reward for `truth`
    res = quadratic_assignment(A, B, options=dict(maximize=True, S=S, rng=np.random.default_rng(0)))
    assert (res.col_ind == truth).all()
    assert res.fun == pytest.approx(naive_qap_objective(A, B, truth, S), rel=1e-12)
    # as a cost under minimisation it is avoided entirely
    res = quadratic_assignment(A, B, options=dict(maximize=False, S=S, rng=np.random.default_rng(0)))
    assert not (res.col_ind == truth).any()
    # a small S is consistent: fun = quadratic + linear of col_ind, and S=0 changes nothing
    S2 = rng.random((30, 30))
    res = quadratic_assignment(A, B, options=dict(maximize=True, S=S2, rng=np.random.default_rng(0)))
    assert res.fun == pytest.approx(naive_qap_objective(A, B, res.col_ind, S2), rel=1e-12)
    r0 = quadratic_assignment(A, B, options=dict(maximize=True, S=np.zeros((30, 30)), rng=np.random.default_rng(0)))
    r1 = quadratic_assignment(A, B, options=dict(maximize=True, rng=np.random.default_rng(0)))
    assert r0.fun == pytest.approx(r1.fun) and (r0.col_ind == r1.col_ind).all()


@pytest.mark.parametrize("padding", ["naive", "adopted"])
@pytest.mark.parametrize("a_smaller", [True, False])
def test_unequal_sizes_with_padding(padding, a_smaller):
    rng = np.random.default_rng(11)
    nb, na = 40, 32
    G = (rng.random((nb, nb)) < 0.3).astype(float)
    G = np.triu(G, 1)
    G = G + G.T
    keep = rng.permutation(nb)[:na]               # A = induced subgraph of B on `keep`
    A, B = G[keep][:, keep], G
    seeds = np.stack([np.arange(6), keep[:6]], 1)
    if not a_smaller:
        A, B = B, A
        seeds = seeds[:, ::-1]
    opts = dict(maximize=True, partial_match=seeds, rng=np.random.default_rng(0), padding=padding,
                tol=1e-6)
    res = quadratic_assignment(A, B, options=opts)
    # reference: pad by hand, SciPy's FAQ on the padded pair, map back
    Ap, Bp = naive_pad(A, B, padding)
    ref = scipy_qap(Ap, Bp, options=dict(maximize=True, partial_match=seeds, rng=np.random.default_rng(0), tol=1e-6))
    ref_col = ref.col_ind[:len(A)].copy()
    ref_col[ref_col >= len(B)] = -1
    assert len(res.col_ind) == len(A)
    np.testing.assert_array_equal(res.col_ind, ref_col)
    valid = np.flatnonzero(res.col_ind >= 0)
    assert len(valid) == min(na, nb)
    expected = np.sum(A[valid][:, valid] * B[res.col_ind[valid]][:, res.col_ind[valid]])
    assert res.fun == pytest.approx(expected)
    if a_smaller:
        assert (res.col_ind == keep).mean() > 0.9      # the embedded subgraph is found


def test_two_opt_padding_and_unknown_option_warning():
    A, B, _ = _problem(8, True, 1)
    with pytest.warns(OptimizeWarning, match="device"):
        quadratic_assignment(A, B, method="2opt", options={"rng": np.random.default_rng(0), "device": "cpu"})
    res = quadratic_assignment(A[:6, :6], B, method="2opt", options={"rng": np.random.default_rng(0), "padding": "naive"})
    assert len(res.col_ind) == 6 and len(set(res.col_ind)) == 6


@pytest.mark.parametrize("padding", ["naive", "adopted"])
@pytest.mark.parametrize("a_smaller", [True, False])
@pytest.mark.parametrize("maximize", [True, False])
def test_two_opt_padded_pairs_match_scipy_on_the_padded_pair(padding, a_smaller, maximize):
    # reference: pad by hand, SciPy's 2-opt on the padded pair (same rng), map back; the
    # objective is ours on the caller's matrices over the matched pairs
    rng = np.random.default_rng(3)
    nb, na = 11, 8
    G = (rng.random((nb, nb)) < 0.4).astype(float)
    G = np.triu(G, 1)
    G = G + G.T
    keep = rng.permutation(nb)[:na]                  # A = induced subgraph of B on `keep`
    A, B = G[keep][:, keep], G
    seeds = np.stack([np.arange(3), keep[:3]], 1)
    if not a_smaller:
        A, B = B, A
        seeds = seeds[:, ::-1]
        seeds = seeds[np.argsort(seeds[:, 0])]       # sorted rows: SciPy places them right
    Ap, Bp = naive_pad(A, B, padding)
    for pm, guess in ((None, None), (seeds, None), (None, seeds)):
        opts = dict(maximize=maximize, partial_match=pm, partial_guess=guess)
        res = quadratic_assignment(A, B, "2opt", options=dict(opts, padding=padding,
                                                               rng=np.random.default_rng(5)))
        ref = scipy_qap(Ap, Bp, "2opt", options=dict(opts, rng=np.random.default_rng(5)))
        ref_col = ref.col_ind[:len(A)].copy()
        ref_col[ref_col >= len(B)] = -1
        np.testing.assert_array_equal(res.col_ind, ref_col)
        assert res.nit == ref.nit
        m = res.col_ind >= 0
        rows, cols = np.flatnonzero(m), res.col_ind[m]
        assert len(rows) == min(na, nb)
        assert res.fun == np.sum(A[np.ix_(rows, rows)] * B[np.ix_(cols, cols)])
        if padding == "naive":                        # isolated padding nodes add nothing
            assert res.fun == ref.fun


@pytest.mark.parametrize("A,B,opts,msg", [
    (np.zeros((3, 4)), np.zeros((3, 3)), {}, "`A` must be square"),
    (np.zeros((3, 3)), np.zeros((4, 4)), {}, "must be of equal size"),
    (np.full((3, 3), np.nan), np.zeros((3, 3)), {}, "`A` contains NaN"),
    (np.zeros((3, 3)), np.array([[0, 1, np.inf]] * 3), {}, "`B` contains NaN or Inf"),
    (np.eye(4), np.eye(4), {"partial_match": [[0, 5]]}, "less than number of nodes"),
    (np.eye(4), np.eye(4), {"partial_match": [[0, 1], [0, 2]]}, "column entries must be unique"),
    (np.eye(4), np.eye(4), {"padding": "zeros"}, "padding must be"),
    (np.eye(4), np.eye(4), {"lap": "hungarian"}, "lap must be one of"),
    (np.eye(4), np.eye(4), {"dtype": "int32"}, "dtype must be float32 or float64"),
    (np.eye(4), np.eye(4), {"n_init": 0}, "'n_init' must be a positive integer"),
    (np.eye(4), np.eye(4), {"S": np.zeros((3, 3))}, "`S` must have shape"),
])
def test_bad_inputs_one_line_errors(A, B, opts, msg):
    with pytest.raises(ValueError, match=msg) as ei:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quadratic_assignment(A, B, options=dict(opts, rng=np.random.default_rng(0)))
    assert "\n" not in str(ei.value)


def test_doubly_stochastic_batched():
    rng = np.random.default_rng(0)
    P = doubly_stochastic(rng.random((3, 20, 20)), tol=1e-8)
    np.testing.assert_allclose(P.sum(axis=-1), 1, atol=1e-8)
    np.testing.assert_allclose(P.sum(axis=-2), 1, atol=1e-8)
    assert (P > 0).all()


@pytest.mark.parametrize("numba", [True, False])
@pytest.mark.parametrize("tol", [1e-3, 1e-9])
def test_doubly_stochastic_matches_plain_sinkhorn(monkeypatch, numba, tol):
    if not numba:
        monkeypatch.setenv("FASTCKA_DISABLE_NUMBA", "1")
    rng = np.random.default_rng(3)
    K = rng.random((4, 57, 57)) ** 3          # skewed: several sweeps needed
    K[1] = doubly_stochastic(K[1], tol=1e-12)  # already balanced: returned as it is
    got = doubly_stochastic(K, tol=tol)
    for b in range(4):
        np.testing.assert_allclose(got[b], naive_sinkhorn(K[b], tol), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(doubly_stochastic(K[1], tol=tol), K[1])


def test_doubly_stochastic_zero_column_like_numpy(monkeypatch):
    K = np.random.default_rng(2).random((2, 6, 6))
    K[0, :, 2] = 0.0                       # cannot be balanced: inf/nan, not an exception
    with np.errstate(all="ignore"):
        fast = doubly_stochastic(K)
        monkeypatch.setenv("FASTCKA_DISABLE_NUMBA", "1")
        plain = doubly_stochastic(K)
    assert not np.isfinite(fast[0]).all() and not np.isfinite(plain[0]).all()
    np.testing.assert_allclose(fast[1], plain[1], rtol=1e-12)


def test_fused_randomized_start_kernel():
    from fastcka.kernels.qap_cpu import balance_batch

    rng = np.random.default_rng(4)
    K = rng.random((3, 40, 40))
    want = np.stack([(1 / 40 + naive_sinkhorn(k)) / 2 for k in K])
    np.testing.assert_allclose(balance_batch(K, alpha=0.5 / 40, beta=0.5), want, rtol=1e-12)
    out32 = balance_batch(K, alpha=0.5 / 40, beta=0.5, out=np.empty(K.shape, np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, want, rtol=1e-6)


@pytest.mark.parametrize("ties", [False, True])
def test_rank_one_duals_are_optimal(ties):
    from scipy.optimize import linear_sum_assignment

    from fastcka.kernels.qap_cpu import lap_batch
    from fastcka.qap import rank_one_duals

    rng = np.random.default_rng(7 + ties)
    n = 120
    a, b = rng.normal(size=n), rng.normal(size=n)
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    C = np.outer(a, b)
    v = rank_one_duals(a, b)
    # every row's cheapest reduced column is an optimal assignment (up to round-off)
    red = C - v[None, :]
    best = C[np.arange(n), linear_sum_assignment(C)[1]].sum()
    order_a, order_b = np.argsort(a, kind="stable"), np.argsort(-b, kind="stable")
    sorted_pairs = np.empty(n, int)
    sorted_pairs[order_a] = order_b
    assert C[np.arange(n), sorted_pairs].sum() == pytest.approx(best, rel=1e-12, abs=1e-12)
    assert (red[np.arange(n), sorted_pairs] <= red.min(axis=1) + 1e-9).all()
    # and the exact solver warm-started from them reaches SciPy's optimal cost
    got, _ = lap_batch(C, v0=v)
    assert C[np.arange(n), got].sum() == pytest.approx(best, rel=1e-12, abs=1e-12)
    with pytest.raises(ValueError, match="one length"):
        rank_one_duals(a, b[:-1])


@pytest.mark.parametrize("maximize", [False, True])
def test_unseeded_barycenter_start_matches_scipy_at_jv_size(maximize):
    # n' >= 256 takes our warm-started solver under lap="auto" (first LAP: rank-one duals)
    A, B, _ = _problem(300, True, 11)
    opts = dict(maximize=maximize, maxiter=8)
    ref = scipy_qap(A, B, options=dict(opts, rng=np.random.default_rng(0)))
    res = quadratic_assignment(A, B, options=dict(opts, rng=np.random.default_rng(0)))
    assert res.fun == pytest.approx(ref.fun, rel=1e-12)
    np.testing.assert_array_equal(res.col_ind, ref.col_ind)


def test_auction_lap_needs_the_gpu():
    A, B, _ = _problem(6, True, 0)
    with pytest.raises(ValueError, match="GPU only") as ei:
        quadratic_assignment(A, B, options={"lap": "auction", "device": "cpu",
                                            "rng": np.random.default_rng(0)})
    assert "\n" not in str(ei.value)


def test_seed_dominated_restarts_full_steps_match_scipy(monkeypatch):
    # many seeds: every restart takes the full step t = 1 (the fast update path); same answers
    import fastcka.qap._frank_wolfe as fw_mod

    rng = np.random.default_rng(21)
    n, m = 70, 40
    A = rng.random((n, n))
    A = A + A.T
    perm = rng.permutation(n)
    B = A[np.ix_(perm, perm)] + 0.01 * rng.standard_normal((n, n))
    B = B + B.T
    pm = np.stack([np.arange(m), np.argsort(perm)[:m]], 1)
    opts = dict(P0="randomized", maximize=True, partial_match=pm, tol=1e-6)
    g = np.random.default_rng(5)
    refs = [scipy_qap(A, B, options=dict(opts, rng=g)).fun for _ in range(6)]
    seen = []
    orig = fw_mod._step_sizes
    monkeypatch.setattr(fw_mod, "_step_sizes", lambda a, b, s: seen.append(orig(a, b, s)) or seen[-1])
    res = quadratic_assignment(A, B, options=dict(opts, rng=np.random.default_rng(5), n_init=6,
                                                  lap="jv"))
    assert (seen[0] == 1.0).all()          # the case this test is about
    np.testing.assert_allclose(res.all_fun, refs, rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_symmetric_gradient_kernel(dtype):
    from fastcka.kernels.qap_cpu import symmetric_gradient

    rng = np.random.default_rng(8)
    M = rng.normal(size=(3, 17, 17)).astype(dtype)
    C = rng.normal(size=(17, 17)).astype(dtype)
    G = symmetric_gradient(M, C)
    assert G.dtype == dtype
    np.testing.assert_array_equal(G, M * dtype(2) + C)      # bitwise: no contraction into FMA
    assert symmetric_gradient(M[:0], C).shape == (0, 17, 17)


# ---------------------------------------------------------------- seeds in any order (issue 12)

def _chr12c():
    # QAPLIB chr12c (Christofides & Benavent), as shipped in SciPy's own test module; published
    # optimum 11156 at opt_perm
    from scipy.optimize.tests.test_quadratic_assignment import chr12c

    return chr12c()


@pytest.mark.parametrize("method", ["faq", "2opt"])
def test_all_seeded_unsorted_partial_match_returns_the_permutation(method):
    # SciPy returns partial_match[:, 1] in seed order and scores it (42492 / 53032, not 11156)
    A, B, opt = _chr12c()
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(12)
        pm = np.stack([np.arange(12), opt], 1)[order]
        res = quadratic_assignment(A, B, method, options=dict(partial_match=pm))
        np.testing.assert_array_equal(res.col_ind, opt)
        assert res.fun == 11156 and res.nit == 0
    # the float objective of the trivial path is a NumPy float64, as SciPy's
    Af, Bf = A.astype(float), B.astype(float)
    pm = np.stack([np.arange(12), opt], 1)[::-1]
    res = quadratic_assignment(Af, Bf, method, options=dict(partial_match=pm))
    ref = scipy_qap(Af, Bf, method, options=dict(partial_match=pm[::-1]))  # sorted: SciPy is right
    assert type(res.fun) is type(ref.fun) is np.float64 and res.fun == ref.fun == 11156.0
    empty = quadratic_assignment(np.zeros((0, 0)), np.zeros((0, 0)), method)
    assert type(empty.fun) is type(scipy_qap(np.zeros((0, 0)), np.zeros((0, 0)), method).fun)


def test_two_opt_honours_unsorted_partial_match_and_guess():
    A, B, opt = _chr12c()
    order = np.random.default_rng(1).permutation(12)
    # a full guess at the optimum, pairs in any order: 2-opt starts there and cannot improve
    guess = np.stack([np.arange(12), opt], 1)[order]
    res = quadratic_assignment(A, B, "2opt", options=dict(partial_guess=guess, rng=0))
    np.testing.assert_array_equal(res.col_ind, opt)
    assert res.fun == 11156
    # seeds in any order are kept where they say
    pm = np.stack([np.arange(12), opt], 1)[order[:5]]
    for rng in range(3):
        res = quadratic_assignment(A, B, "2opt", options=dict(partial_match=pm, rng=rng))
        np.testing.assert_array_equal(res.col_ind[pm[:, 0]], pm[:, 1])
        assert res.fun == np.sum(A * B[res.col_ind][:, res.col_ind])


# ---------------------------------------------------------------- step-size endpoint ties

@pytest.mark.parametrize("seed", [216, 336, 403, 571])
def test_endpoint_ties_take_the_full_step(seed):
    # problems (0/1 graphs) where the exact full-step gain a + b is 0 at some iteration; the
    # incrementally updated scalars gave it as ±1e-15, so fastcka stopped (or stepped) where the
    # rule says otherwise and ended elsewhere than the exact iteration and SciPy
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 9))
    if seed % 4 == 0:  # an isomorphic pair
        A = (rng.random((n, n)) < 0.4).astype(float)
        A = np.triu(A, 1)
        A = A + A.T
        p = rng.permutation(n)
        B = A[np.ix_(p, p)]
    else:  # two random directed graphs
        A = (rng.random((n, n)) < 0.3).astype(float)
        B = (rng.random((n, n)) < 0.3).astype(float)
    maximize = bool(seed % 2)
    col, nit, ties = exact_faq(A, B, maximize)
    assert ties >= 1  # the case this test is about
    res = quadratic_assignment(A, B, options=dict(maximize=maximize, lap="scipy"))
    ref = scipy_qap(A, B, options=dict(maximize=maximize))
    np.testing.assert_array_equal(res.col_ind, col)
    np.testing.assert_array_equal(ref.col_ind, col)
    assert res.nit == nit


# ---------------------------------------------------------------- restarts (issue 12, item 14)

@pytest.mark.parametrize("P0", ["randomized", "barycenter"])
def test_shuffled_restarts_each_draw_their_own_start_and_shuffle(P0):
    # before: one shuffle for every restart, and every P0 drawn up front
    A, B, _ = _problem(12, False, 4)
    pm = [[0, 3], [5, 1]]
    opts = dict(P0=P0, shuffle_input=True, partial_match=pm, tol=1e-6)
    g = np.random.default_rng(7)
    refs = [scipy_qap(A, B, options=dict(opts, rng=g)) for _ in range(5)]  # one call per restart
    with warnings.catch_warnings():
        warnings.simplefilter("error", OptimizeWarning)  # restarts differ: no warning
        res = quadratic_assignment(A, B, options=dict(opts, rng=np.random.default_rng(7),
                                                      n_init=5))
    np.testing.assert_allclose(res.all_fun, [r.fun for r in refs], rtol=1e-10)
    np.testing.assert_array_equal(res.all_nit, [r.nit for r in refs])
    best = int(np.argmin([r.fun for r in refs]))
    assert res.best_index == best and res.all_fun[best] == res.fun
    np.testing.assert_array_equal(res.col_ind, refs[best].col_ind)


def test_identical_restarts_warn():
    A, B, _ = _problem(10, True, 2)
    P0 = doubly_stochastic(np.random.default_rng(0).random((10, 10)), tol=1e-12)
    for p0 in ("barycenter", P0):
        with pytest.warns(OptimizeWarning, match="identical"):
            res = quadratic_assignment(A, B, options=dict(P0=p0, n_init=3))
        assert np.ptp(res.all_fun) == 0 and res.best_index == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", OptimizeWarning)
        quadratic_assignment(A, B, options=dict(P0="randomized", n_init=3,
                                                    rng=np.random.default_rng(0)))
        quadratic_assignment(A, B, options=dict(P0="barycenter", n_init=1))


@pytest.mark.parametrize("method", ["faq", "2opt"])
def test_unmatched_padded_nodes_are_minus_one_and_never_indexed(method):
    # -1 would silently index B's last node: select the matched rows first
    A, _, _ = _problem(9, True, 3)
    B = A[:6, :6] + 0.0
    res = quadratic_assignment(A, B, method, options=dict(padding="naive", maximize=True,
                                                          rng=np.random.default_rng(0)))
    m = res.col_ind >= 0
    assert len(res.col_ind) == 9 and (~m).sum() == 3 and (res.col_ind[~m] == -1).all()
    cols = res.col_ind[m]
    assert sorted(cols) == list(range(6))
    rows = np.flatnonzero(m)
    assert res.fun == pytest.approx(np.sum(A[np.ix_(rows, rows)] * B[np.ix_(cols, cols)]),
                                    rel=1e-12)


# --------------------------------------------------------------------------------------------
# near-symmetric inputs (rounding left by H K H centring) take the symmetric iteration
# --------------------------------------------------------------------------------------------


def _hkh(X):
    K = X @ X.T
    H = np.eye(len(X)) - 1.0 / len(X)
    return H @ K @ H


def test_centred_kernels_take_the_symmetric_path_and_match_scipy():
    from fastcka import qap as q
    from fastcka.backend import NUMPY_BACKEND

    rng = np.random.default_rng(5)
    n, m = 40, 8
    Z = rng.standard_normal((n, 3))
    A = _hkh(np.hstack([Z, 0.3 * rng.standard_normal((n, 4))]))
    B = _hkh(np.hstack([Z, 0.3 * rng.standard_normal((n, 5))]))
    assert not np.array_equal(A, A.T) and not np.array_equal(B, B.T)  # rounding asymmetry
    ident = np.arange(n)
    pr = q._build_problem(NUMPY_BACKEND, A, B, None, ident, ident, m, np.float64, False)
    assert pr.symmetric
    np.testing.assert_array_equal(pr.A22, pr.A22.T)
    seeds = np.column_stack([np.arange(m), np.arange(m)])
    for P0 in ("barycenter", "randomized"):
        opts = dict(maximize=True, partial_match=seeds, P0=P0, rng=3, shuffle_input=False)
        ref = scipy_qap(A, B, options=opts)
        got = quadratic_assignment(A, B, options=opts)
        np.testing.assert_array_equal(got.col_ind, ref.col_ind)
        assert got.fun == pytest.approx(ref.fun, rel=1e-12)
        assert got.fun == naive_qap_objective(A, B, got.col_ind)  # fun on the inputs as given


def test_truly_asymmetric_inputs_keep_the_general_path():
    from fastcka import qap as q
    from fastcka.backend import NUMPY_BACKEND
    from fastcka.qap._frank_wolfe import near_symmetric

    rng = np.random.default_rng(6)
    n = 30
    A = _hkh(rng.standard_normal((n, 4)))
    A[3, 7] += 1e-9 * np.abs(A).max()  # far above rounding: a real (tiny) asymmetry
    B = _hkh(rng.standard_normal((n, 4)))
    ident = np.arange(n)
    pr = q._build_problem(NUMPY_BACKEND, A, B, None, ident, ident, 0, np.float64, False)
    assert not pr.symmetric
    np.testing.assert_array_equal(pr.A22, A)  # untouched
    assert near_symmetric(np, B) and not near_symmetric(np, A)


@pytest.mark.parametrize("transpose", [False, True])
def test_apply_M_stacked_gemm_matches_per_restart_products(transpose):
    # the CPU path computes A₂₂ P B₂₂ᵀ of all restarts as one tall GEMM
    from fastcka import qap as q
    from fastcka.backend import NUMPY_BACKEND

    rng = np.random.default_rng(8)
    n, m, k = 23, 4, 5
    A, B = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    ident = np.arange(n)
    pr = q._build_problem(NUMPY_BACKEND, A, B, None, ident, ident, m, np.float64, False)
    P = rng.random((k, n - m, n - m))
    got = pr.apply(P, transpose=transpose)
    A22, B22 = A[m:, m:], B[m:, m:]
    for r in range(k):
        ref = A22.T @ P[r] @ B22 if transpose else A22 @ P[r] @ B22.T
        np.testing.assert_allclose(got[r], ref, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("engine,kernels_there,auction,device_starts", [
    ("numba", True, False, False), ("numpy", False, False, False), ("cupy", False, True, True)])
def test_faq_op_set_per_engine(engine, kernels_there, auction, device_starts):
    # one lookup per request: the fused gradient and the balancing kernel exactly where the
    # "faq_gradient" / "sinkhorn" families have them, and what the engine offers
    from fastcka import kernels

    got = kernels.ops("faq", engine)
    assert got.gradient is kernels.ops("faq_gradient", engine)
    assert got.balance is kernels.ops("sinkhorn", engine)
    assert (got.gradient is not None) is kernels_there
    assert got.auction is auction and got.device_starts is device_starts


def test_randomized_starts_skip_the_array_sinkhorn_where_a_kernel_balances(monkeypatch):
    # with the Numba engine the starts are balanced by the kernel (qap._sinkhorn does not run);
    # without it by doubly_stochastic's array code: the same restarts either way
    import fastcka.qap._sinkhorn as sk

    calls = []
    orig = sk.doubly_stochastic
    monkeypatch.setattr(sk, "doubly_stochastic", lambda *a, **k: calls.append(1) or orig(*a, **k))
    A, B, _ = _problem(30, True, 4)
    opts = dict(P0="randomized", n_init=4, lap="scipy")
    fast = quadratic_assignment(A, B, options=dict(opts, rng=np.random.default_rng(1)))
    assert calls == []
    monkeypatch.setenv("FASTCKA_DISABLE_NUMBA", "1")
    plain = quadratic_assignment(A, B, options=dict(opts, rng=np.random.default_rng(1)))
    assert calls
    g = np.random.default_rng(1)
    ref = [scipy_qap(A, B, options=dict(P0="randomized", rng=g)).fun for _ in range(4)]
    np.testing.assert_allclose(fast.all_fun, ref, rtol=1e-12)
    np.testing.assert_allclose(plain.all_fun, ref, rtol=1e-12)


@pytest.mark.parametrize("sym", [True, False])
def test_direction_products_of_gathered_rows_match_the_permutation_matrix_products(sym):
    # M(Q) = A₂₂ Q B₂₂ᵀ (and A₂₂ᵀ Q B₂₂) of a stack of permutations, computed as a row gather
    # plus one GEMM per restart: the explicit products with Q as a matrix, restart by restart
    from fastcka import qap as q
    from fastcka.backend import NUMPY_BACKEND

    A, B, rng = _problem(37, sym, 9)
    ident = np.arange(37)
    pr = q._build_problem(NUMPY_BACKEND, A, B, None, ident, ident, 5, np.float64, False)
    cols = np.stack([rng.permutation(32) for _ in range(4)])
    A22, B22 = A[5:, 5:], B[5:, 5:]
    for transpose in (False, True):
        got = pr.apply_perm(cols, transpose)
        for r in range(4):
            Q = np.eye(32)[cols[r]]
            want = A22.T @ Q @ B22 if transpose else A22 @ Q @ B22.T
            np.testing.assert_allclose(got[r], want, rtol=1e-13, atol=1e-12)


def test_restarts_equal_the_per_restart_products_and_scipy(monkeypatch):
    # seeded FAQ from randomized starts (the paper protocol, small): the returned assignment and
    # objective are those of plain per-restart products written out here (the tall stacked GEMM
    # tried for M(Q) was reverted: its values depended on the BLAS thread count), and SciPy's
    # best restart
    from fastcka.qap._frank_wolfe import DenseProblem

    rng = np.random.default_rng(12)
    n, m = 60, 25
    X = rng.standard_normal((n, 6))
    A = _hkh(X)
    B = _hkh(X[rng.permutation(n)] + 0.3 * rng.standard_normal((n, 6)))
    pm = np.stack([np.arange(m), np.arange(m)], 1)
    opts = dict(P0="randomized", maximize=True, partial_match=pm, tol=1e-5, n_init=5, lap="jv")
    now = quadratic_assignment(A, B, options=dict(opts, rng=np.random.default_rng(3)))

    def batched(pr, cols, transpose=False):
        W, R = (pr.A22T, pr.B22) if transpose else (pr.A22, pr.B22T)
        return np.matmul(W, R[cols])

    monkeypatch.setattr(DenseProblem, "apply_perm", batched)
    before = quadratic_assignment(A, B, options=dict(opts, rng=np.random.default_rng(3)))
    np.testing.assert_array_equal(now.col_ind, before.col_ind)
    assert now.fun == before.fun
    np.testing.assert_allclose(now.all_fun, before.all_fun, rtol=1e-13)
    g = np.random.default_rng(3)
    ref = [scipy_qap(A, B, options=dict(P0="randomized", maximize=True, partial_match=pm,
                                        tol=1e-5, rng=g)) for _ in range(5)]
    best = max(ref, key=lambda r: r.fun)
    np.testing.assert_array_equal(now.col_ind, best.col_ind)
    assert now.fun == pytest.approx(best.fun, rel=1e-13)
