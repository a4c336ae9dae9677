"""GPU (CuPy + Numba CUDA) FAQ against the CPU path; skipped where no GPU is usable."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from fastcka.qap import quadratic_assignment

pytestmark = pytest.mark.gpu


def _sym(n, seed):
    rng = np.random.default_rng(seed)
    A, B = rng.random((n, n)), rng.random((n, n))
    return A + A.T, B + B.T


def test_gpu_lap_device_matches_scipy_optimum():
    import cupy as cp

    from fastcka.kernels.lap_cuda import lap_batch_device

    rng = np.random.default_rng(0)
    for n in (5, 130, 600):
        C = rng.random((3, n, n))
        cols, v = lap_batch_device(cp.asarray(C), maximize=True)
        cols = cp.asnumpy(cols)
        for b in range(3):
            r, c = linear_sum_assignment(C[b], maximize=True)
            assert sorted(cols[b].tolist()) == list(range(n))
            assert C[b][np.arange(n), cols[b]].sum() == pytest.approx(C[b][r, c].sum(), rel=1e-12)


@pytest.mark.parametrize("m", [0, 15])
def test_cupy_inputs_match_cpu(m):
    import cupy as cp

    A, B = _sym(120, m)
    pm = np.stack([np.arange(m), np.arange(m)[::-1]], 1)
    opts = dict(maximize=True, partial_match=pm, rng=np.random.default_rng(0), tol=1e-6)
    cpu = quadratic_assignment(A, B, options=dict(opts, lap="scipy"))
    gpu = quadratic_assignment(cp.asarray(A), cp.asarray(B), options=dict(opts))
    assert isinstance(gpu.col_ind, np.ndarray)
    assert gpu.fun == pytest.approx(float(np.sum(A * B[gpu.col_ind][:, gpu.col_ind])), rel=1e-9)
    assert gpu.fun >= cpu.fun * (1 - 1e-9)


def test_device_gpu_with_numpy_inputs_and_batched_restarts():
    A, B = _sym(90, 3)
    pm = np.stack([np.arange(10), np.arange(10)], 1)
    opts = dict(maximize=True, partial_match=pm, P0="randomized", n_init=16,
                rng=np.random.default_rng(1), tol=1e-5, device="gpu")
    res = quadratic_assignment(A, B, options=opts)
    assert len(res.all_fun) == 16 and res.fun == pytest.approx(res.all_fun.max())
    assert res.fun == pytest.approx(float(np.sum(A * B[res.col_ind][:, res.col_ind])), rel=1e-9)
    cpu = quadratic_assignment(A, B, options=dict(opts, device="cpu", rng=np.random.default_rng(1)))
    # different random streams (CuPy draws the GPU restarts), same problem: similar best objective
    assert res.fun == pytest.approx(cpu.fun, rel=1e-2)


def test_float32_on_gpu():
    import cupy as cp

    A, B = _sym(100, 5)
    r = quadratic_assignment(cp.asarray(A), cp.asarray(B),
                             options=dict(maximize=True, rng=np.random.default_rng(0),
                                          dtype="float32"))
    assert sorted(r.col_ind.tolist()) == list(range(100))


def test_seeded_match_gpu_vs_cpu():
    from fastcka.seeded import seeded_match

    rng = np.random.default_rng(0)
    Z = rng.standard_normal((200, 5))
    S = np.tanh(Z @ rng.standard_normal((5, 20)))
    T = Z @ rng.standard_normal((5, 12)) + 0.05 * rng.standard_normal((200, 12))
    g = seeded_match(S, T, seeds=50, queries=80, n_init=8, rng=0, device="gpu")
    c = seeded_match(S, T, seeds=50, queries=80, n_init=8, rng=0, device="cpu")
    assert g.accuracy > 0.8 and c.accuracy > 0.8
    assert g.objective == pytest.approx(c.objective, rel=1e-3)


@pytest.mark.parametrize("m", [0, 20])
def test_auction_lap_same_objective_as_jv(m):
    import cupy as cp

    A, B = _sym(400, 40 + m)
    pm = np.stack([np.arange(m), np.arange(m)], 1)
    opts = dict(partial_match=pm, rng=np.random.default_rng(0), tol=1e-6, maxiter=12)
    ref = quadratic_assignment(A, B, options=dict(opts, lap="scipy"))
    got = quadratic_assignment(cp.asarray(A), cp.asarray(B), options=dict(opts, lap="auction"))
    # exact LAPs on both sides: the same iterates, so the same answer
    assert got.fun == pytest.approx(ref.fun, rel=1e-9)
    assert got.fun == pytest.approx(float(np.sum(A * B[got.col_ind][:, got.col_ind])), rel=1e-9)


@pytest.mark.parametrize("sym", [True, False])
def test_faq_state_stays_on_the_device(monkeypatch, sym):
    # inputs checked where they are; per Frank–Wolfe iteration two O(k·n') transfers to the host
    # (directions, then step sizes and stop flags); never an n'×n' matrix
    import cupy as cp

    from fastcka.backend import Backend

    moved = []
    orig = Backend.to_host

    def spy(self, a):
        moved.append(tuple(getattr(a, "shape", ())))
        return orig(self, a)

    monkeypatch.setattr(Backend, "to_host", spy)
    n, m, k = 150, 10, 8
    A, B = _sym(n, 2)
    if not sym:
        A = A + np.triu(np.ones((n, n)), 1)
    pm = np.stack([np.arange(m), np.arange(m)], 1)
    opts = dict(maximize=True, partial_match=pm, P0="randomized", n_init=k, tol=1e-6,
                rng=np.random.default_rng(0))
    res = quadratic_assignment(cp.asarray(A), cp.asarray(B), options=opts)
    assert all(int(np.prod(s)) < (n - m) ** 2 for s in moved), moved
    arrays = [s for s in moved if s]            # the scalars are the objectives, at the end
    assert len(arrays) <= 2 * int(res.all_nit.max()) + 2, (len(arrays), res.all_nit)
    monkeypatch.undo()
    ref = quadratic_assignment(A, B, options=dict(opts, device="gpu"))   # NumPy inputs, same path
    assert res.fun == ref.fun
    np.testing.assert_array_equal(res.col_ind, ref.col_ind)
