"""Our exact LAP solvers against scipy.optimize.linear_sum_assignment (optimal cost)."""

from __future__ import annotations

import numpy as np
import pytest
from reference import naive_lap_optimum
from scipy.optimize import linear_sum_assignment

from fastcka.kernels.qap_cpu import lap_batch


def _opt(C, maximize):
    r, c = linear_sum_assignment(C, maximize=maximize)
    return C[r, c].sum()


def _check(C, cols, maximize, rtol=1e-12):
    n = C.shape[0]
    assert sorted(cols.tolist()) == list(range(n)), "not a permutation"
    got = C[np.arange(n), cols].sum()
    ref = _opt(C, maximize)
    assert abs(got - ref) <= rtol * max(1.0, abs(ref)), (got, ref)


@pytest.mark.parametrize("n", [1, 2, 7, 60, 250])
@pytest.mark.parametrize("maximize", [False, True])
def test_cpu_lap_reaches_scipy_optimum(n, maximize):
    rng = np.random.default_rng(n + 10 * maximize)
    for C in (rng.random((n, n)), rng.integers(0, 6, (n, n)).astype(float),  # many ties
              rng.standard_normal((n, n)) * 1e3):
        cols, v = lap_batch(C, maximize=maximize)
        _check(C, cols, maximize)
        assert v.shape == (n,)


@pytest.mark.parametrize("maximize", [False, True])
def test_cpu_lap_matches_the_optimum_over_all_permutations(maximize):
    rng = np.random.default_rng(5 + maximize)
    for n in (1, 2, 3, 5, 7):
        for C in (rng.random((n, n)), rng.integers(0, 3, (n, n)).astype(float)):
            cols, _ = lap_batch(C, maximize=maximize)
            assert sorted(cols.tolist()) == list(range(n))
            assert C[np.arange(n), cols].sum() == pytest.approx(naive_lap_optimum(C, maximize),
                                                                rel=1e-12, abs=1e-12)


def test_cpu_lap_checked_path_solves_alike_and_updates_the_duals_in_place():
    # checked=True (the FAQ loop's LAPs: arrays it built) skips checks and copies, same answer
    rng = np.random.default_rng(9)
    C = rng.random((4, 30, 30))
    v0 = rng.standard_normal((4, 30))
    cols, v = lap_batch(C, maximize=True, v0=v0)
    mine = v0.copy()
    cols2, v2 = lap_batch(C, maximize=True, v0=mine, checked=True)
    np.testing.assert_array_equal(cols2, cols)
    np.testing.assert_array_equal(v2, v)
    assert v2 is mine                      # no copy: the caller gave the duals up
    cold, _ = lap_batch(C, checked=True)
    for b in range(4):
        _check(C[b], cold[b], False)


def test_faq_loop_lap_calls_take_checked_arrays(monkeypatch):
    # inputs are checked once at the entry: no LAP of the Frank–Wolfe loop checks them again
    import fastcka.qap._lap as qap_lap
    from fastcka.qap import quadratic_assignment

    calls = []
    orig_ops = qap_lap.ops

    def spy_ops(name, be):                       # the LAP kernel the solver gets, spied on
        kernel = orig_ops(name, be)

        def spy(C, *args, **kw):
            calls.append(kw.get("checked", False))
            return kernel(C, *args, **kw)
        return spy if name == "lap" else kernel

    monkeypatch.setattr(qap_lap, "ops", spy_ops)
    rng = np.random.default_rng(2)
    A, B = rng.random((40, 40)), rng.random((40, 40))
    res = quadratic_assignment(A + A.T, B + B.T, options=dict(lap="jv", P0="randomized",
                                                              rng=np.random.default_rng(0)))
    assert len(calls) >= res.nit and all(calls)
    with pytest.raises(ValueError, match="`A` contains NaN"):
        quadratic_assignment(np.full((4, 4), np.nan), np.eye(4), options=dict(lap="jv"))


def test_cpu_lap_batch_and_warm_start():
    rng = np.random.default_rng(3)
    k, n = 5, 120
    C = rng.random((k, n, n))
    cols, V = lap_batch(C, maximize=True)
    for b in range(k):
        _check(C[b], cols[b], True)
    # warm starts - from the duals of a perturbed problem, or from arbitrary duals - stay exact
    C2 = C + 0.1 * rng.random((k, n, n))
    cols2, _ = lap_batch(C2, maximize=True, v0=V)
    cols3, _ = lap_batch(C2, maximize=True, v0=rng.standard_normal((k, n)) * 5)
    for b in range(k):
        _check(C2[b], cols2[b], True)
        _check(C2[b], cols3[b], True)


def test_cpu_lap_float32_and_bad_input():
    rng = np.random.default_rng(4)
    C = rng.random((40, 40)).astype(np.float32)
    cols, _ = lap_batch(C)
    _check(C.astype(np.float64), cols, False, rtol=1e-5)
    with pytest.raises(ValueError, match="NaN"):
        lap_batch(np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="square"):
        lap_batch(np.zeros((3, 4)))


def _cost_families(n, rng):
    """Cost matrices on which a cold start behaves differently: ties, dominated directions, scales."""
    a, b = rng.random(n), rng.random(n)
    yield rng.random((n, n))
    yield rng.integers(0, 4, (n, n)).astype(float)                      # many ties
    yield np.full((n, n), 3.0)                                           # all tied
    yield rng.integers(-10**6, 10**6, (n, n)).astype(float)              # integer, negative
    yield rng.standard_normal((n, n)) * 1e12
    yield rng.standard_normal((n, n)) * 1e-12
    yield np.outer(a, b)                                                 # rank one
    yield 100.0 * b[None, :] + rng.random((n, n))                        # columns dominate
    yield 100.0 * a[:, None] + rng.random((n, n))                        # rows dominate
    yield np.outer(a, b) + 1e-4 * rng.random((n, n))                     # FAQ-like
    yield rng.standard_normal((n, 2)) @ rng.standard_normal((2, n))      # low rank


def _check_duals(C, cols, v, maximize):
    # the returned column duals with u_i = min_j (c_ij - v_j) are optimal for the dual problem:
    # every assigned edge is a cheapest one of its row (complementary slackness), Σu + Σv = optimum
    s = -1.0 if maximize else 1.0
    R = s * C - v[None, :]
    u = R.min(axis=1)
    n = C.shape[0]
    scale = max(1.0, np.abs(C).max(), np.abs(v).max())
    np.testing.assert_allclose(R[np.arange(n), cols], u, rtol=0, atol=1e-12 * scale * n)
    assert abs(u.sum() + v.sum() - s * _opt(C, maximize)) <= 1e-11 * scale * n


@pytest.mark.parametrize("maximize", [False, True])
def test_cold_jv_initialisation_reaches_scipy_optimum_with_optimal_duals(maximize):
    rng = np.random.default_rng(20 + maximize)
    for n in (1, 2, 3, 9, 40, 150):
        for C in _cost_families(n, rng):
            cols, v = lap_batch(C, maximize=maximize)
            _check(C, cols, maximize)
            _check_duals(C, cols, v, maximize)
            # a warm start from these optimal duals (kept: their bound is the optimum) stays exact
            cols2, v2 = lap_batch(C, maximize=maximize, v0=v)
            _check(C, cols2, maximize)
            _check_duals(C, cols2, v2, maximize)


@pytest.mark.parametrize("start", [0, 1, 2])
@pytest.mark.parametrize("maximize", [False, True])
def test_each_cold_start_reaches_scipy_optimum_with_optimal_duals(start, maximize):
    # the cold start races the JV column reduction (1) against a row-side start (2) and keeps
    # the higher dual bound (0); whichever one runs, the augmentations must end at the optimum
    from fastcka.kernels.qap_cpu import _solve

    rng = np.random.default_rng(40 + 3 * start + maximize)
    fams = [list(_cost_families(n, rng)) for n in (1, 2, 3, 9, 40, 150)]
    # sizes where the race is entered (more than n / 64 rows left free by the column side)
    b = rng.random(300)
    fams.append([np.outer(rng.random(300), b) + 1e-4 * rng.random((300, 300)),
                 rng.standard_normal((300, 8)) @ rng.standard_normal((8, 300)),
                 50.0 * rng.random(300)[:, None] + rng.random((300, 300))])
    for group in fams:
        for C in group:
            n = C.shape[0]
            C3 = np.ascontiguousarray(C[None], dtype=np.float64)
            cols, v = _solve(C3, maximize, np.zeros((1, n)), False, False, start)
            _check(C, cols[0], maximize)
            _check_duals(C, cols[0], v[0], maximize)


def test_jv_initialisation_leaves_a_valid_partial_assignment():
    # the augmentations only stay exact if the initialisation hands over a matching in which
    # every assigned row sits on a cheapest column of its reduced costs c_ij - v_j
    from fastcka.kernels.qap_cpu import _initial_assignment

    rng = np.random.default_rng(30)
    for n in (1, 2, 5, 60, 200):
        for C in _cost_families(n, rng):
            for warm, v0, start in ((False, np.zeros(n), 0), (False, np.zeros(n), 1),
                                    (False, np.zeros(n), 2), (True, rng.standard_normal(n), 0),
                                    (True, np.zeros(n), 0)):
                v = v0.copy()
                col4row, row4col = np.empty(n, np.int64), np.empty(n, np.int64)
                free = np.empty(n, np.int64)
                nfree = _initial_assignment(C, 1.0, v, warm, col4row, row4col, free,
                                            np.empty(n), np.empty(n, np.int64), start)
                assigned = np.flatnonzero(col4row >= 0)
                assert sorted(free[:nfree].tolist()) == np.flatnonzero(col4row < 0).tolist()
                assert len(assigned) + nfree == n
                np.testing.assert_array_equal(row4col[col4row[assigned]], assigned)
                assert (row4col >= 0).sum() == len(assigned)     # no column held twice
                R = C - v[None, :]
                np.testing.assert_allclose(R[assigned, col4row[assigned]],
                                           R[assigned].min(axis=1), rtol=0,
                                           atol=1e-12 * max(1.0, np.abs(C).max()) * n)


def test_single_problem_and_batch_paths_solve_alike():
    # one problem runs outside the parallel region (no thread-pool wake-up); same answer as the
    # same problem inside a batch, warm or cold
    rng = np.random.default_rng(32)
    C = rng.random((3, 50, 50))
    v0 = rng.standard_normal((3, 50))
    for warm in (None, v0):
        cols, V = lap_batch(C, v0=warm)
        for b in range(3):
            one, v = lap_batch(C[b], v0=None if warm is None else warm[b])
            np.testing.assert_array_equal(one, cols[b])
            np.testing.assert_array_equal(v, V[b])
            _check(C[b], one, False)


def test_warm_duals_are_kept_only_when_they_bound_the_optimum_better():
    from fastcka.kernels.qap_cpu import _column_reduction, _dual_bound, _keep_warm

    rng = np.random.default_rng(31)
    n = 80
    b = rng.random(n)
    C = 100.0 * b[None, :] + rng.random((n, n))          # columns dominate: v = 0 is far off
    _, v_opt = lap_batch(C)
    w, argmin = np.empty(n), np.empty(n, np.int64)
    assert _keep_warm(C, 1.0, v_opt.copy(), w, argmin)   # optimal duals: bound = optimum
    assert not _keep_warm(C, 1.0, np.zeros(n), w, argmin)
    # the column reduction left in w/argmin: column minima and their first rows
    np.testing.assert_array_equal(w, C.min(axis=0))
    np.testing.assert_array_equal(argmin, C.argmin(axis=0))
    # the dual bound is Σv + Σ_i min_j (c_ij - v_j), never above the optimum
    v = rng.standard_normal(n)
    assert _dual_bound(C, 1.0, v) == pytest.approx(v.sum() + (C - v).min(axis=1).sum(), rel=1e-12)
    assert _dual_bound(C, 1.0, v) <= _opt(C, False) + 1e-9
    assert _column_reduction(C, 1.0, w, argmin, v) == pytest.approx(_dual_bound(C, 1.0, v),
                                                                   rel=1e-12)


@pytest.mark.cudasim
def test_cuda_lap_reaches_scipy_optimum():
    from fastcka.kernels.lap_cuda import lap_batch_cuda

    rng = np.random.default_rng(7)
    n = 14
    C = np.stack([rng.random((n, n)), rng.integers(0, 4, (n, n)).astype(float),
                  rng.standard_normal((n, n)) * 100])
    for maximize in (False, True):
        cols, V = lap_batch_cuda(C, maximize=maximize)
        assert cols.shape == (3, n) and V.shape == (3, n)
        for b in range(3):
            _check(C[b], cols[b], maximize)


@pytest.mark.cudasim
def test_cuda_lap_warm_start_and_tiny():
    from fastcka.kernels.lap_cuda import lap_batch_cuda

    rng = np.random.default_rng(8)
    n = 10
    C = rng.random((2, n, n))
    _, V = lap_batch_cuda(C, maximize=True)
    C2 = C + 0.2 * rng.random((2, n, n))
    cols, _ = lap_batch_cuda(C2, maximize=True, v0=V)
    for b in range(2):
        _check(C2[b], cols[b], True)
    c1, _ = lap_batch_cuda(np.array([[5.0]]))
    assert c1.tolist() == [0]


@pytest.mark.cudasim
@pytest.mark.parametrize("maximize", [False, True])
def test_cuda_auction_is_eps_optimal_and_its_prices_make_jv_exact(maximize):
    from fastcka.kernels.auction_cuda import auction_cuda
    from fastcka.kernels.lap_cuda import lap_batch_cuda

    rng = np.random.default_rng(11 + maximize)
    n = 7
    C = rng.normal(size=(2, n, n)) * 5
    C[1, :, 3] = C[1, :, 4]                     # tied columns
    eps_final = 1e-3
    cols, prices, rounds = auction_cuda(C, maximize, eps_start=0.1, eps_final=eps_final,
                                        check_every=1)
    assert rounds > 0 and prices.shape == (2, n)
    for b in range(2):
        assert sorted(cols[b].tolist()) == list(range(n))
        r, c = linear_sum_assignment(C[b], maximize=maximize)
        gap = C[b][r, c].sum() - C[b][np.arange(n), cols[b]].sum()
        # ε-complementary slackness: within n·ε of the optimum (ε = eps_final · cost range)
        assert abs(gap) <= n * eps_final * np.ptp(C) + 1e-12
    # the exact solver warm-started from the auction's prices: SciPy's optimum, also when warm
    fast = {"eps_start": 0.1, "eps_final": 1e-2, "check_every": 1}
    out, V = lap_batch_cuda(C, maximize=maximize, auction=fast)
    for b in range(2):
        _check(C[b], out[b], maximize)
    out2, _ = lap_batch_cuda(C + 0.1, maximize=maximize, v0=V, auction=fast)
    for b in range(2):
        _check(C[b] + 0.1, out2[b], maximize)


@pytest.mark.cudasim
def test_cuda_auction_single_column_and_empty():
    from fastcka.kernels.auction_cuda import auction_cuda

    cols, prices, _ = auction_cuda(np.array([[2.5]]), eps_start=0.5, eps_final=0.5)
    assert cols.tolist() == [0] and np.isfinite(prices).all()
    cols, _, rounds = auction_cuda(np.zeros((1, 0, 0)))
    assert cols.shape == (1, 0) and rounds == 0
