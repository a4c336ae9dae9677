"""Seeded graph matching: correlated SBM recovery and the seeded_match protocol."""

from __future__ import annotations

import numpy as np
import pytest

from fastcka.errors import InputError
from fastcka.qap import quadratic_assignment
from fastcka.seeded import seeded_match


def _correlated_sbm(n_per, P, rho, rng):
    """Two ρ-correlated SBM graphs on the same vertex set (B_ij | A_ij correlated Bernoulli)."""
    sizes = np.asarray(n_per)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    p = np.asarray(P)[labels][:, labels]
    n = labels.size
    U = rng.random((n, n))
    A = (U < p).astype(float)
    V = rng.random((n, n))
    B = np.where(A == 1, V < p + rho * (1 - p), V < p * (1 - rho)).astype(float)
    A, B = np.triu(A, 1), np.triu(B, 1)
    return A + A.T, B + B.T


def test_sbm_seeded_matching_recovers_every_node():
    rng = np.random.default_rng(8888)
    P = [[0.7, 0.3, 0.4], [0.3, 0.7, 0.3], [0.4, 0.3, 0.7]]
    A, B = _correlated_sbm([100, 100, 100], P, 0.9, rng)
    n = 300
    # hide B's labels behind a random relabelling; 10 seeds reveal part of it
    perm = rng.permutation(n)                     # node i of A is node perm[i] of B
    Bs = np.empty_like(B)
    Bs[np.ix_(perm, perm)] = B
    seeds = rng.choice(n, 10, replace=False)
    pm = np.stack([seeds, perm[seeds]], 1)
    for lap in ("auto", "scipy"):
        res = quadratic_assignment(A, Bs, options={"maximize": True, "partial_match": pm,
                                                   "rng": np.random.default_rng(0), "lap": lap})
        assert (res.col_ind == perm).all(), lap
        # the recovered matching scores at least as high as the truth under the objective
        assert res.fun == np.sum(A * Bs[perm][:, perm])


def _paired_embeddings(n, rng, noise=0.05):
    Z = rng.standard_normal((n, 5))
    S = np.tanh(Z @ rng.standard_normal((5, 24)))
    T = Z @ rng.standard_normal((5, 16)) + noise * rng.standard_normal((n, 16))
    return S, T


def _centred_unit(K):
    K = K - K.mean(0, keepdims=True)
    K = K - K.mean(1, keepdims=True)
    return K / np.linalg.norm(K)


@pytest.mark.parametrize("kernel", ["rbf", "linear"])
def test_seeded_match_recovers_strongly_related_spaces(kernel):
    rng = np.random.default_rng(0)
    S, T = _paired_embeddings(160, rng)
    res = seeded_match(S, T, seeds=40, queries=60, kernel=kernel, n_init=3, rng=1)
    assert res.n_seeds == 40 and res.n_queries == 60
    assert res.accuracy == pytest.approx(np.mean(res.matched_idx == res.true_idx))
    assert res.accuracy > 0.8
    assert len(res.all_objectives) == 3 and res.objective == pytest.approx(res.all_objectives.max())
    assert np.intersect1d(res.seed_idx, res.query_idx).size == 0
    assert sorted(res.matched_idx) == sorted(res.query_idx)       # a bijection of the queries


def test_seeded_match_objective_is_cka_under_matching():
    """Recompute the objective independently: kernels by hand, seeds first, matched order."""
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(3)
    S, T = _paired_embeddings(90, rng, noise=0.5)
    res = seeded_match(S, T, seeds=20, queries=50, kernel="rbf", n_init=2, rng=5)

    def rbf(X):
        D = cdist(X, X, "sqeuclidean")
        nz = np.sort(D[D > 0])
        s2 = nz[(len(nz) - 1) // 2]                       # lower median of non-zero distances
        return _centred_unit(np.exp(-D / (2 * s2)))

    src = np.concatenate([res.seed_idx, res.query_idx])
    # rbf σ is computed on the matcher's own point set, which is the same set of rows
    A = rbf(S[src])
    B = rbf(T[np.concatenate([res.seed_idx, res.matched_idx])])
    assert res.objective == pytest.approx(float(np.sum(A * B)), rel=1e-9)
    assert res.scores.sum() == pytest.approx(float(np.sum(A[20:] * B[20:])), rel=1e-9)


def test_seeded_match_ids_direction_and_explicit_split():
    rng = np.random.default_rng(4)
    S, T = _paired_embeddings(80, rng)
    ids = [f"id{i}" for i in range(80)]
    order = rng.permutation(80)                             # T stored in another order
    seeds, queries = np.arange(20), np.arange(20, 50)
    res = seeded_match(S, T[order], seeds=seeds, queries=queries, ids_S=ids,
                       ids_T=[ids[i] for i in order], n_init=2, rng=0)
    assert res.query_ids == [ids[i] for i in queries]
    assert res.accuracy == pytest.approx(np.mean(np.array(res.query_ids) == np.array(res.matched_ids)))
    rev = seeded_match(S, T, seeds=seeds, queries=queries, direction="tgt-to-src", n_init=2, rng=0)
    assert rev.direction == "tgt-to-src" and rev.accuracy > 0.8
    # the former spelling is still an alias: the same run, reported in the one vocabulary
    old = seeded_match(S, T, seeds=seeds, queries=queries, direction="image->text", n_init=2,
                       rng=0)
    assert old.direction == "tgt-to-src"
    np.testing.assert_array_equal(old.matched_idx, rev.matched_idx)


def test_seeded_match_kmeans_seeds_and_stretch():
    rng = np.random.default_rng(6)
    S, T = _paired_embeddings(100, rng)
    res = seeded_match(S, T, seeds=25, queries=40, seed_strategy="kmeans", stretch=True,
                       n_init=2, rng=0)
    assert res.n_seeds == 25 and res.accuracy > 0.7


@pytest.mark.parametrize("kw,msg", [
    ({"seeds": [1, 1, 2, 3]}, "seed"),
    ({"seeds": [0, 1, 500]}, "seed"),
    ({"direction": "up"}, "direction"),
    ({"kernel": "poly"}, "kernel"),
    ({"n_init": 0}, "n_init"),
])
def test_seeded_match_bad_inputs(kw, msg):
    rng = np.random.default_rng(0)
    S, T = _paired_embeddings(40, rng)
    with pytest.raises(InputError, match=msg) as ei:
        seeded_match(S, T, **{"queries": 10, **kw})
    assert "\n" not in str(ei.value)


def test_seeded_match_bad_arrays():
    rng = np.random.default_rng(0)
    S, T = _paired_embeddings(40, rng)
    S[3, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        seeded_match(S, T, seeds=5, queries=10)
    with pytest.raises(InputError, match="same number of rows"):
        seeded_match(T[:30], T, seeds=5, queries=10)


def test_seeded_match_reference_embeddings(reference_embeddings):
    ids, img, txt = reference_embeddings
    res = seeded_match(txt, img, seeds=320, queries=500, n_init=4, rng=0, ids_S=ids, ids_T=ids,
                       device="cpu")
    # chance is 1/500; the paper-scale protocol with these encoders is far above it
    assert res.accuracy > 0.05
    assert 0 < res.objective <= 1.0 + 1e-9


@pytest.mark.parametrize("kernel", ["rbf", "linear"])
def test_seeded_match_checks_each_input_once_where_it_lives(kernel, monkeypatch):
    """Validate once, at the entry, with the array module of the data (issue 11 item 3): the
    kernels are built from the already-checked points (no second check of the n×d rows), and
    the result is the one of the kernels built through the public, checking ``gram``."""
    import fastcka._cka as ckam
    import fastcka.backend as val
    import fastcka.seeded as seeded
    from fastcka.cka import gram

    seen = []
    orig = val.check_matrix

    def spy(a, name, **kw):
        seen.append((name, kw.get("xp", np), a.shape))
        return orig(a, name, **kw)

    for mod in (seeded, ckam):
        monkeypatch.setattr(mod, "check_matrix", spy)
    rng = np.random.default_rng(7)
    S, T = _paired_embeddings(80, rng, noise=0.3)
    res = seeded_match(S, T, seeds=15, queries=40, kernel=kernel, n_init=2, rng=2, device="cpu")
    assert seen == [("S", np, S.shape), ("T", np, T.shape)]

    # the same kernels as the checking public gram builds (dense: 3 * 24 > 40 queries)
    def solver(A, B, options):
        X, Y = captured
        A2 = gram(X, kernel=kernel, center=True, device="cpu")
        B2 = gram(Y, kernel=kernel, center=True, device="cpu")
        np.testing.assert_array_equal(A, A2 / np.linalg.norm(A2))
        np.testing.assert_array_equal(B, B2 / np.linalg.norm(B2))
        return quadratic_assignment(A, B, method="faq", options=options)

    orig_points = seeded._points
    captured = []
    monkeypatch.setattr(seeded, "_points",
                        lambda *a: captured.extend(orig_points(*a)) or tuple(captured))
    again = seeded_match(S, T, seeds=15, queries=40, kernel=kernel, n_init=2, rng=2,
                         device="cpu", solver=solver)
    np.testing.assert_array_equal(again.matched_idx, res.matched_idx)
