"""FAQ's restarts scored in float64 by the ``qap_score`` kernel (issue 15 item 4, float32 path).

The kernel's objectives are pinned to the naive ``Σ A ∘ B[p][:, p]`` within its stated rounding
bound, and a FAQ request that scores its restarts with it returns exactly what scoring every
restart with the array formulation returns: the same best restart (first on ties), the same
``fun`` bits, the same matching; ``all_fun`` agrees within the bound.
"""

from __future__ import annotations

import numpy as np
import pytest
from reference import naive_qap_objective
from scipy.optimize import quadratic_assignment as scipy_qap

from fastcka import backend
from fastcka.kernels.qap_score_cpu import perm_objectives, rounding_bound
from fastcka.qap import _faq, quadratic_assignment


def _sym(rng, n, centred=True):
    R = rng.standard_normal((n, n))
    A = R + R.T
    if centred:
        H = np.eye(n) - 1.0 / n
        A = H @ A @ H
    return A


def test_kernel_equals_the_naive_objective_within_its_bound():
    rng = np.random.default_rng(0)
    n = 60
    A, B = _sym(rng, n), _sym(rng, n)
    perms = np.stack([rng.permutation(n) for _ in range(25)] + [np.arange(n)])
    val, mag = perm_objectives(A, B, perms)
    naive = np.array([naive_qap_objective(A, B, p) for p in perms])
    absum = np.array([np.abs(A * B[p][:, p]).sum() for p in perms])
    np.testing.assert_allclose(mag, absum, rtol=1e-12)
    err = np.abs(val - naive)
    assert (err <= rounding_bound(n, mag)).all()
    assert err.max() > 0 or np.array_equal(val, naive)      # a real sum, not a copy of NumPy's


def test_kernel_rejects_bad_shapes():
    A = np.eye(4)
    with pytest.raises(ValueError, match="square"):
        perm_objectives(A, np.eye(5), np.zeros((1, 4), int))
    with pytest.raises(ValueError, match="perms must be"):
        perm_objectives(A, A, np.zeros((1, 3), int))


def _without_kernel(monkeypatch):
    real = backend.Backend.ops

    def ops(self, family):
        return None if family == "qap_score" else real(self, family)

    monkeypatch.setattr(backend.Backend, "ops", ops)


@pytest.mark.parametrize("maximize", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_faq_with_the_kernel_equals_scoring_every_restart(monkeypatch, maximize, dtype):
    rng = np.random.default_rng(3)
    n, m = 70, 20
    A = _sym(rng, n)
    perm = rng.permutation(n)
    B = A[perm][:, perm] + 0.3 * _sym(rng, n)
    seeds = np.column_stack([np.arange(m), np.argsort(perm)[:m]])
    opts = dict(P0="randomized", maximize=maximize, partial_match=seeds, dtype=dtype)
    spy = []
    real = _faq._fast_scores

    def counting(*a):
        spy.append(len(a[2]))
        return real(*a)

    monkeypatch.setattr(_faq, "_fast_scores", counting)
    fast = quadratic_assignment(A, B, options=dict(opts, rng=np.random.default_rng(5), n_init=40))
    if dtype == "float32":
        assert spy == [40]        # every restart went through the kernel
    monkeypatch.undo()
    _without_kernel(monkeypatch)
    ref = quadratic_assignment(A, B, options=dict(opts, rng=np.random.default_rng(5), n_init=40))
    assert fast.best_index == ref.best_index
    assert fast.fun == ref.fun
    np.testing.assert_array_equal(fast.col_ind, ref.col_ind)
    mags = np.abs(A).sum() * np.abs(B).max()
    np.testing.assert_allclose(fast.all_fun, ref.all_fun, rtol=0, atol=float(rounding_bound(n, mags)))
    # and SciPy's own score of the returned matching
    assert fast.fun == pytest.approx(naive_qap_objective(A, B, fast.col_ind), rel=1e-14)


def test_exact_ties_go_to_the_first_restart(monkeypatch):
    # integer-valued float kernels with a symmetric structure: many restarts end on different
    # permutations of exactly equal objective; the first of them must be returned, as when every
    # restart is scored by the array formulation
    n = 24
    blocks = np.repeat(np.arange(4), n // 4)
    A = (blocks[:, None] == blocks[None, :]).astype(float) * 3.0 + np.eye(n)
    B = A.copy()
    opts = dict(P0="randomized", maximize=True, dtype="float32", n_init=30)
    fast = quadratic_assignment(A, B, options=dict(opts, rng=np.random.default_rng(2)))
    _without_kernel(monkeypatch)
    ref = quadratic_assignment(A, B, options=dict(opts, rng=np.random.default_rng(2)))
    assert fast.best_index == ref.best_index
    assert fast.fun == ref.fun
    np.testing.assert_array_equal(fast.all_fun, ref.all_fun)     # integer sums: exact
    assert (ref.all_fun == ref.fun).sum() > 1                     # the test has ties to break
    # its first restart is SciPy's call on the same rng: the best of 30 is at least that
    assert ref.fun >= scipy_qap(A, B, options=dict(P0="randomized", maximize=True, rng=np.random.default_rng(2))).fun
