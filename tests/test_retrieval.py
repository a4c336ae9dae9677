"""Retrieval metrics, streaming top-k, matching and the baselines against naive references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from reference import topk_full

import fastcka
from fastcka.errors import InputError
from fastcka.local_cka import local_cka
from fastcka.retrieval import (
    MatrixScorer,
    make_scorer,
    match_scores,
    matching_accuracy,
    retrieve,
    score_matrix,
    topk_stream,
)

# hand-checked: ranks of the true partner (diagonal) per row: 1, 3, 2, 4; per column: 1, 2, 1, 3
HAND = np.array([[0.9, 0.1, 0.3, 0.2],
                 [0.5, 0.4, 0.6, 0.1],
                 [0.2, 0.8, 0.7, 0.0],
                 [0.1, 0.3, 0.2, 0.05]])


def test_hand_checked_metrics():
    r = retrieve(HAND, k=4, ks=(1, 2, 3, 4), device="cpu")
    assert r.accuracy["src-to-tgt"] == {1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0}
    assert r.accuracy["tgt-to-src"] == {1: 0.5, 2: 0.75, 3: 1.0, 4: 1.0}
    assert r.top1 == 0.25
    np.testing.assert_array_equal(r.src_to_tgt_indices[1], [2, 0, 1, 3])
    np.testing.assert_array_equal(r.tgt_to_src_indices[3], [0, 1, 3, 2])
    np.testing.assert_allclose(r.src_to_tgt_scores[2], [0.8, 0.7, 0.2, 0.0])
    # best total: 0.9 + 0.8 + 0.6 + 0.05 with rows -> cols 0, 2, 1, 3
    col = match_scores(HAND)
    np.testing.assert_array_equal(col, [0, 2, 1, 3])
    assert matching_accuracy(col) == 0.5


def test_former_direction_names_still_read_with_a_warning():
    """The s2t_* / t2s_* fields and source_to_target / target_to_source keys of older versions
    read the renamed ones (read-only), with a DeprecationWarning."""
    r = retrieve(HAND, k=4, ks=(1, 2), device="cpu")
    for old, new in (("s2t_indices", "src_to_tgt_indices"), ("s2t_scores", "src_to_tgt_scores"),
                     ("t2s_indices", "tgt_to_src_indices"), ("t2s_scores", "tgt_to_src_scores")):
        with pytest.warns(DeprecationWarning, match=new):
            assert getattr(r, old) is getattr(r, new)
        with pytest.raises(AttributeError):
            setattr(r, old, None)
    with pytest.warns(DeprecationWarning, match="src-to-tgt"):
        assert r.accuracy["source_to_target"] == {1: 0.25, 2: 0.5}
    with pytest.warns(DeprecationWarning, match="tgt-to-src"):
        assert r.top(2, "target_to_source") == 0.75
    with pytest.raises(KeyError):
        r.accuracy["s2t"]
    out = topk_stream(MatrixScorer(HAND, fastcka.get_backend(HAND, device="cpu"), False), 2)
    with pytest.warns(DeprecationWarning, match="tgt_to_src_scores"):
        np.testing.assert_array_equal(out["t2s_scores"], out["tgt_to_src_scores"])


def test_ground_truth_by_ids():
    perm = np.array([2, 0, 3, 1])
    S = HAND[:, perm]  # column c now holds original column perm[c]
    src = np.array(["a", "b", "c", "d"])
    r = retrieve(S, k=4, ks=(1, 2, 3, 4), source_ids=src, target_ids=src[perm], device="cpu")
    assert r.accuracy["src-to-tgt"] == {1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0}
    assert r.accuracy["tgt-to-src"] == {1: 0.5, 2: 0.75, 3: 1.0, 4: 1.0}
    col = match_scores(S)
    assert matching_accuracy(col, source_ids=src, target_ids=src[perm]) == 0.5


def test_match_scores_against_brute_force():
    rng = np.random.default_rng(0)
    S = rng.standard_normal((6, 6))
    best = max(itertools.permutations(range(6)), key=lambda p: S[np.arange(6), p].sum())
    np.testing.assert_array_equal(match_scores(S), best)
    R = rng.standard_normal((5, 3))  # more rows than columns: two rows unmatched
    col = match_scores(R)
    assert (col == -1).sum() == 2
    best = max(itertools.permutations(range(5), 3),
               key=lambda rows: R[list(rows), np.arange(3)].sum())
    for c, row in enumerate(best):
        assert col[row] == c


def _problem(q=23, p=12, ds=6, dt=4, seed=0, dim_equal=False):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((q + p, 3))
    dt = ds if dim_equal else dt
    S = Z @ rng.standard_normal((3, ds)) + 0.5 * rng.standard_normal((q + p, ds))
    T = Z @ rng.standard_normal((3, dt)) + 0.5 * rng.standard_normal((q + p, dt))
    return S[:q], T[:q], S[q:], T[q:]


@pytest.mark.parametrize("method,kernel,sigma", [
    ("local-cka", "linear", "paper"), ("local-cka", "rbf", "paper"), ("local-cka", "rbf", "base"),
    ("linreg", "linear", "paper"), ("relative", "linear", "paper"), ("cosine", "linear", "paper"),
])
@pytest.mark.parametrize("block", [4, 7, 1000])
def test_streaming_topk_equals_full(method, kernel, sigma, block):
    inp = _problem(dim_equal=True, seed=block)
    S = score_matrix(method, *inp, kernel=kernel, sigma=sigma, device="cpu")
    k = 9  # larger than some blocks: merges across blocks
    r = retrieve(inp, k=k, method=method, kernel=kernel, sigma=sigma, block=block, device="cpu")
    np.testing.assert_array_equal(r.src_to_tgt_indices, topk_full(S, k))
    np.testing.assert_array_equal(r.tgt_to_src_indices, topk_full(S.T, k))
    np.testing.assert_allclose(r.src_to_tgt_scores, np.take_along_axis(S, r.src_to_tgt_indices, 1),
                               atol=1e-12)
    full = retrieve(S, k=k, device="cpu")
    assert full.accuracy == r.accuracy


@pytest.mark.parametrize("method,kernel,sigma", [("local-cka", "rbf", "paper"),
                                                 ("local-cka", "rbf", 0.9), ("linreg", "linear", "paper")])
def test_default_block_under_small_config_equals_full_sort(method, kernel, sigma, small_config):
    inp = _problem(q=19, seed=11)
    S = score_matrix(method, *inp, kernel=kernel, sigma=sigma, device="cpu")
    r = retrieve(inp, k=8, method=method, kernel=kernel, sigma=sigma, device="cpu")  # blocks of 5
    np.testing.assert_array_equal(r.src_to_tgt_indices, topk_full(S, 8))
    np.testing.assert_array_equal(r.tgt_to_src_indices, topk_full(S.T, 8))
    np.testing.assert_allclose(r.src_to_tgt_scores, np.take_along_axis(S, r.src_to_tgt_indices, 1),
                               atol=1e-12)


def test_streaming_rectangular_with_ids():
    Sq, Tq, Sb, Tb = _problem(q=15)
    Tq2 = Tq[:11]
    sc = make_scorer("local-cka", Sq, Tq2, Sb, Tb, kernel="rbf", sigma="base", device="cpu")
    out = topk_stream(sc, 5, block=4)
    S = sc.full()
    np.testing.assert_array_equal(out["src_to_tgt_indices"], topk_full(S, 5))
    np.testing.assert_array_equal(out["tgt_to_src_indices"], topk_full(S.T, 5))
    ids = np.arange(15).astype(str)
    r = fastcka.retrieve((Sq, Tq2, Sb, Tb), k=5, ks=(1, 5), kernel="rbf", sigma="base",
                         source_ids=ids, target_ids=ids[:11], block=4, device="cpu")
    want = np.mean([i in topk_full(S, 1)[i] for i in range(15)])
    assert r.accuracy["src-to-tgt"][1] == pytest.approx(want)


def test_local_cka_method_equals_local_cka():
    inp = _problem()
    np.testing.assert_array_equal(score_matrix("local-cka", *inp, kernel="rbf", sigma=0.8,
                                               device="cpu"),
                                  local_cka(*inp, kernel="rbf", sigma=0.8, device="cpu"))


def _cos(a, b):
    return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


def test_baselines_against_naive():
    Sq, Tq, Sb, Tb = _problem(q=7, p=10)
    # linreg: W solves the normal equations of min |Sb W - Tb| (full column rank here)
    W = np.linalg.solve(Sb.T @ Sb, Sb.T @ Tb)
    want = np.array([[_cos(Sq[i] @ W, Tq[j]) for j in range(7)] for i in range(7)])
    np.testing.assert_allclose(score_matrix("linreg", Sq, Tq, Sb, Tb, device="cpu"), want,
                               atol=1e-10)
    # relative representations: cosine to each anchor, then cosine
    rs = [np.array([_cos(s, b) for b in Sb]) for s in Sq]
    rt = [np.array([_cos(t, b) for b in Tb]) for t in Tq]
    want = np.array([[_cos(rs[i], rt[j]) for j in range(7)] for i in range(7)])
    np.testing.assert_allclose(score_matrix("relative", Sq, Tq, Sb, Tb, device="cpu"), want,
                               atol=1e-12)
    Sq, Tq, Sb, Tb = _problem(q=5, p=6, dim_equal=True)
    want = np.array([[_cos(Sq[i], Tq[j]) for j in range(5)] for i in range(5)])
    np.testing.assert_allclose(score_matrix("cosine", Sq, Tq, Sb, Tb, device="cpu"), want,
                               atol=1e-12)


def test_local_cka_recovers_planted_pairs():
    """A strongly shared latent structure: local CKA retrieves better than chance by far."""
    Sq, Tq, Sb, Tb = _problem(q=40, p=30, ds=8, dt=5, seed=3)
    r = retrieve((Sq, Tq, Sb, Tb), kernel="linear", device="cpu")
    assert r.top10 > 0.5  # chance is 0.25


def test_errors():
    Sq, Tq, Sb, Tb = _problem()
    with pytest.raises(InputError, match="same dimension"):
        score_matrix("cosine", Sq, Tq, Sb, Tb, device="cpu")
    with pytest.raises(InputError, match="method"):
        score_matrix("knn", Sq, Tq, Sb, Tb, device="cpu")
    with pytest.raises(InputError, match="at least 4 base"):
        score_matrix("linreg", Sq, Tq, Sb[:3], Tb[:3], device="cpu")
    with pytest.raises(InputError, match="Sq has"):
        score_matrix("relative", Sq[:, :2], Tq, Sb, Tb, device="cpu")
    with pytest.raises(InputError, match="k must be"):
        retrieve(HAND, k=0)
    with pytest.raises(InputError, match="diagonal"):
        retrieve(HAND[:, :3], device="cpu")
    with pytest.raises(InputError, match="both source_ids"):
        retrieve(HAND, source_ids=["a"] * 4, device="cpu")
    bad = HAND.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        retrieve(bad, device="cpu")
    with pytest.raises(InputError, match="NaN"):
        match_scores(bad)


@pytest.mark.parametrize("numba_off", [False, True])
def test_streaming_ties_follow_stable_order(numba_off, monkeypatch):
    """Integer scores (many exact ties): both the Numba and NumPy merges keep the lower index."""
    if numba_off:
        monkeypatch.setenv("FASTCKA_DISABLE_NUMBA", "1")
    S = np.random.default_rng(4).integers(0, 4, size=(13, 11)).astype(float)
    r = retrieve(S, k=5, ks=(1,), source_ids=np.arange(13), target_ids=np.arange(11), block=4,
                 device="cpu")
    np.testing.assert_array_equal(r.src_to_tgt_indices, topk_full(S, 5))
    np.testing.assert_array_equal(r.tgt_to_src_indices, topk_full(S.T, 5))
    np.testing.assert_array_equal(r.src_to_tgt_scores, np.take_along_axis(S, topk_full(S, 5), 1))


def test_streaming_never_scores_more_than_a_block():
    """retrieve() on inputs asks the scorer only for block x block tiles, never q_s x q_t."""
    inp = _problem(q=30, p=8)
    sc = make_scorer("local-cka", *inp, kernel="rbf", sigma="paper", device="cpu")
    full = sc.full()
    seen = []

    class Recording:
        shape, be = sc.shape, sc.be

        def block(self, rows, cols):
            out = sc.block(rows, cols)
            seen.append(out.shape)
            return out

    res = topk_stream(Recording(), 4, block=8)
    assert max(r for r, _ in seen) <= 8 and max(c for _, c in seen) <= 8
    assert len(seen) == 16  # 4 x 4 tiles, each scored once for both directions
    np.testing.assert_array_equal(res["src_to_tgt_indices"], topk_full(full, 4))
    np.testing.assert_array_equal(res["tgt_to_src_indices"], topk_full(full.T, 4))
