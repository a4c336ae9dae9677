"""Our exact LAP solvers against scipy.optimize.linear_sum_assignment (optimal cost)."""

from __future__ import annotations

import numpy as np
import pytest
from reference import naive_lap_optimum
from scipy.optimize import linear_sum_assignment

from fastcka.kernels.lap_cpu import lap_batch


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
