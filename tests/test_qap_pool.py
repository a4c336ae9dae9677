"""FAQ's restarts on a thread pool of restart groups (issue 15 item 4): the same bits for any
number of threads, SciPy's answer where the settings are SciPy's, the thread setting honoured."""

from __future__ import annotations

import numpy as np
import pytest
from reference import naive_qap_objective
from scipy.optimize import quadratic_assignment as scipy_qap
from threadpoolctl import threadpool_info, threadpool_limits

from fastcka import config
from fastcka.backend import NUMPY_BACKEND
from fastcka.qap import _faq, quadratic_assignment


def _hkh(X):
    K = X @ X.T
    H = np.eye(len(X)) - 1.0 / len(X)
    return H @ K @ H


def _paper_like(seed=12, n=60, m=25):
    """H K H-centred kernels of a noisy relabelling (rounding-level asymmetry), seeds first."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6))
    A = _hkh(X)
    B = _hkh(X[rng.permutation(n)] + 0.3 * rng.standard_normal((n, 6)))
    return A, B, np.stack([np.arange(m), np.arange(m)], 1)


def _partial_unsorted(seed=4, n=50, m=7):
    """Random symmetric matrices, a few seeds in no order."""
    rng = np.random.default_rng(seed)
    A, B = rng.random((n, n)), rng.random((n, n))
    pm = np.stack([rng.permutation(n)[:m], rng.permutation(n)[:m]], 1)
    return A + A.T, B + B.T, pm


def _asymmetric(seed=5, n=40, m=4):
    """Truly asymmetric matrices: the general (two-product) iteration."""
    rng = np.random.default_rng(seed)
    pm = np.stack([np.arange(m), rng.permutation(n)[:m]], 1)
    return rng.random((n, n)), rng.random((n, n)), pm


def _ties(seed=6, n=30):
    """An isomorphic pair of 0/1 graphs: many restarts reach the same objective (ties), the
    first of them must be the one returned whatever the threads."""
    rng = np.random.default_rng(seed)
    A = np.triu((rng.random((n, n)) < 0.3).astype(float), 1)
    A = A + A.T
    p = rng.permutation(n)
    return A, A[np.ix_(p, p)], np.stack([np.arange(3), np.argsort(p)[:3]], 1)


CASES = {
    "paper-like, maximize": (_paper_like, dict(maximize=True, tol=1e-5)),
    "partial unsorted seeds, minimize": (_partial_unsorted, dict(maximize=False, tol=1e-6)),
    "asymmetric": (_asymmetric, dict(maximize=True, tol=1e-6)),
    "ties, maximize": (_ties, dict(maximize=True, tol=1e-6)),
    "ties, scipy LAP": (_ties, dict(maximize=True, tol=1e-6, lap="scipy")),
}


class _Spy:
    """Records what each faq_batched call's pool got: threads, batches, the BLAS threads seen
    inside a batch."""

    def __init__(self, monkeypatch):
        self.calls = []
        real_map, real_fw = _faq.ordered_map, _faq.frank_wolfe

        def ordered_map(fn, items, threads, **kw):
            items = list(items)
            self.calls.append({"threads": threads, "batches": len(items), "blas": set()})
            return real_map(fn, items, threads, **kw)

        def frank_wolfe(*a, **kw):
            self.calls[-1]["blas"].update(i["num_threads"] for i in threadpool_info()
                                          if i.get("user_api") == "blas")
            return real_fw(*a, **kw)

        monkeypatch.setattr(_faq, "ordered_map", ordered_map)
        monkeypatch.setattr(_faq, "frank_wolfe", frank_wolfe)


def _run(monkeypatch, A, B, opts, threads, **extra):
    monkeypatch.setattr(config, "QAP_THREADS", threads)
    return quadratic_assignment(A, B, options=dict(opts, rng=np.random.default_rng(7), **extra))


def _same_bits(a, b):
    np.testing.assert_array_equal(a.col_ind, b.col_ind)
    assert a.fun == b.fun and a.nit == b.nit and a.best_index == b.best_index
    np.testing.assert_array_equal(a.all_fun, b.all_fun)        # every restart, bit for bit
    np.testing.assert_array_equal(a.all_nit, b.all_nit)


@pytest.mark.parametrize("case", list(CASES))
def test_pool_gives_the_same_bits_for_one_two_three_threads(monkeypatch, case):
    make, extra = CASES[case]
    A, B, pm = make()
    opts = dict(P0="randomized", partial_match=pm, n_init=13, **extra)
    spy = _Spy(monkeypatch)
    ref = _run(monkeypatch, A, B, opts, 1)
    assert spy.calls[-1]["threads"] == 1 and spy.calls[-1]["blas"] == {1}
    for threads in (2, 3):
        res = _run(monkeypatch, A, B, opts, threads)
        call = spy.calls[-1]
        assert call["threads"] == threads and call["batches"] >= threads
        assert call["blas"] == {1}                    # one BLAS thread inside every group
        _same_bits(res, ref)
    # any batches: one restart each, or batches of 5 on two threads
    _same_bits(_run(monkeypatch, A, B, opts, 2, batch_size=1), ref)
    _same_bits(_run(monkeypatch, A, B, opts, 2, batch_size=5), ref)
    assert ref.fun == pytest.approx(naive_qap_objective(A, B, ref.col_ind), rel=1e-12)
    if case.startswith("ties"):
        assert (ref.all_fun == ref.fun).sum() >= 2        # a tie the first restart wins
        assert ref.best_index == int(np.flatnonzero(ref.all_fun == ref.fun)[0])


def test_factored_path_on_the_pool_equals_one_thread_and_dense(monkeypatch):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((70, 6))
    Y = X[rng.permutation(70)] @ np.linalg.qr(rng.standard_normal((6, 6)))[0]
    Y += 0.1 * rng.standard_normal((70, 6))
    pm = np.stack([np.arange(8), np.arange(8)], 1)
    opts = dict(maximize=True, partial_match=pm, P0="randomized", n_init=9, tol=1e-6,
                factored=True)
    ref = _run(monkeypatch, X, Y, opts, 1)
    for threads in (2, 3):
        _same_bits(_run(monkeypatch, X, Y, opts, threads), ref)
    dense = _run(monkeypatch, X @ X.T, Y @ Y.T, dict(opts, factored=False), 2)
    np.testing.assert_array_equal(dense.col_ind, ref.col_ind)
    assert dense.fun == pytest.approx(ref.fun, rel=1e-9)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_pool_returns_scipys_best_restart(monkeypatch, threads):
    # the paper protocol, small: SciPy once per restart from the same Generator stream
    A, B, pm = _paper_like()
    opts = dict(P0="randomized", maximize=True, partial_match=pm, tol=1e-5)
    res = _run(monkeypatch, A, B, dict(opts, n_init=6, lap="jv"), threads)
    g = np.random.default_rng(7)
    ref = [scipy_qap(A, B, options=dict(opts, rng=g)) for _ in range(6)]
    best = max(ref, key=lambda r: r.fun)
    np.testing.assert_array_equal(res.col_ind, best.col_ind)
    assert res.fun == pytest.approx(best.fun, rel=1e-13)
    np.testing.assert_allclose(res.all_fun, [r.fun for r in ref], rtol=1e-12)
    # SciPy's LAP in the loop: the same iterates restart by restart, SciPy's nit too
    res = _run(monkeypatch, A, B, dict(opts, n_init=6, lap="scipy"), threads)
    np.testing.assert_array_equal(res.all_nit, [r.nit for r in ref])
    np.testing.assert_allclose(res.all_fun, [r.fun for r in ref], rtol=1e-12)


def test_threads_setting_is_honoured(monkeypatch):
    monkeypatch.setattr(config, "QAP_THREADS", None)
    n, k = 500, 100                             # enough work for a pool
    with threadpool_limits(1):
        assert _faq.restart_threads(NUMPY_BACKEND, n, k) == 1
    assert 1 <= _faq.restart_threads(NUMPY_BACKEND, n, k) <= 2 ** 10
    assert _faq.restart_threads(NUMPY_BACKEND, n, 1) == 1           # one restart: no pool
    assert _faq.restart_threads(NUMPY_BACKEND, 10, 4) == 1          # too little work
    monkeypatch.setattr(config, "QAP_THREADS", 3)
    assert _faq.restart_threads(NUMPY_BACKEND, 10, 2) == 2          # at most the restarts
    # the result is the same under threadpool_limits(1) (one group at a time) as on the pool
    A, B, pm = _paper_like()
    opts = dict(P0="randomized", maximize=True, partial_match=pm, n_init=8, tol=1e-5)
    pooled = _run(monkeypatch, A, B, opts, 2)
    monkeypatch.setattr(config, "QAP_THREADS", None)
    spy = _Spy(monkeypatch)
    with threadpool_limits(1):
        one = quadratic_assignment(A, B, options=dict(opts, rng=np.random.default_rng(7)))
    assert spy.calls[-1]["threads"] == 1
    _same_bits(one, pooled)


def test_pool_memory_budget_is_shared_by_the_groups(monkeypatch):
    be = NUMPY_BACKEND
    per = 6 * 500 * 500 * 8                 # six n'×n' float64 arrays per restart
    budget = 100 * per + 100
    monkeypatch.setitem(config.QAP_BATCH_BUDGET, "cpu", budget)
    assert _faq.batch_size(be, 500, 1000, 8, None) == 100                 # one group
    bs = _faq.batch_size(be, 500, 1000, 8, None, groups=2)
    assert 2 * bs * per + bs * 500 * 500 * 8 <= budget                   # + one batch's draws
    assert bs >= 45
    assert _faq.batch_size(be, 500, 20, 8, None, groups=2) == 5           # k / (2 groups)
    assert _faq.batch_size(be, 500, 20, 8, 3, groups=2) == 3              # batch_size given


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_thread_kernels_equal_the_parallel_ones(dtype):
    from fastcka.kernels.qap_cpu import balance_batch, lap_batch, symmetric_gradient

    rng = np.random.default_rng(1)
    C = rng.random((5, 40, 40)).astype(dtype)
    v0 = rng.random((5, 40))
    for kw in ({}, {"v0": v0}):
        par = lap_batch(C, maximize=True, **kw)
        one = lap_batch(C, maximize=True, parallel=False, **kw)
        np.testing.assert_array_equal(par[0], one[0])
        np.testing.assert_array_equal(par[1], one[1])
    K = rng.random((4, 30, 30)) ** 3
    out = np.empty(K.shape, dtype)
    np.testing.assert_array_equal(balance_batch(K, alpha=0.1, beta=0.5, out=out.copy()),
                                  balance_batch(K, alpha=0.1, beta=0.5, out=out.copy(),
                                                parallel=False))
    M = rng.random((3, 20, 20)).astype(dtype)
    np.testing.assert_array_equal(symmetric_gradient(M, C[0, :20, :20]),
                                  symmetric_gradient(M, C[0, :20, :20], parallel=False))
    np.testing.assert_array_equal(symmetric_gradient(M, C[0, :20, :20], parallel=False),
                                  2.0 * M + C[0, :20, :20])
