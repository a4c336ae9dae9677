"""The sparse assignment of the score methods (fastcka._sparse_assign) against SciPy's dense LAP
and a brute-force optimum over the candidate graph."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from _cli import assert_one_line_error, paired_stores, run
from scipy.optimize import linear_sum_assignment

import fastcka
from fastcka._sparse_assign import sparse_assign
from fastcka.backend import NUMPY_BACKEND
from fastcka.errors import InputError
from fastcka.evaluate import match_run
from fastcka.retrieval import MatrixScorer


def _scorer(S):
    return MatrixScorer(np.asarray(S, dtype=np.float64), NUMPY_BACKEND, False)


def _total(S, col):
    hit = col >= 0
    return float(S[np.flatnonzero(hit), col[hit]].sum())


@pytest.mark.parametrize("shape", [(40, 40), (25, 40), (40, 25)])
def test_complete_graph_gives_the_dense_optimum(shape):
    """k >= min(q_s, q_t): one direction's lists hold every pair, so the sparse solve is the
    dense LAP (SciPy): same optimal total, and (continuous random scores: unique optimum) the
    same assignment."""
    rng = np.random.default_rng(1)
    S = rng.standard_normal(shape)
    r, c = linear_sum_assignment(S, maximize=True)
    ref = np.full(shape[0], -1)
    ref[r] = c
    for k in (min(shape), max(shape), 1000):
        res = sparse_assign(_scorer(S), k, block=16)
        assert res.fallback.size == 0
        assert _total(S, res.col_ind) == pytest.approx(S[r, c].sum(), rel=0, abs=1e-9)
        np.testing.assert_array_equal(res.col_ind, ref)
        hit = res.col_ind >= 0
        np.testing.assert_array_equal(res.scores[hit], S[np.flatnonzero(hit), res.col_ind[hit]])
        assert np.isnan(res.scores[~hit]).all() and hit.sum() == min(shape)


def _allowed(S, k, fallback, by_rows):
    """Naive candidate graph: top-k of every row and column by a full sort, plus the full
    rows (or columns) of the fallback."""
    E = np.zeros(S.shape, dtype=bool)
    for i in range(S.shape[0]):
        E[i, np.argsort(-S[i])[:k]] = True
    for j in range(S.shape[1]):
        E[np.argsort(-S[:, j])[:k], j] = True
    if by_rows:
        E[fallback, :] = True
    else:
        E[:, fallback] = True
    return E


def _brute_best(S, E):
    """Best total over every full matching (q_s <= q_t) using only edges of E."""
    n, m = S.shape
    best = -np.inf
    for cols in itertools.permutations(range(m), n):
        if all(E[i, c] for i, c in enumerate(cols)):
            best = max(best, sum(S[i, c] for i, c in enumerate(cols)))
    return best


def test_fallback_completes_a_matching_optimal_on_its_graph():
    """Every row's and every column's best partner is row/column 0 (scores a_i + b_j, a_0 and
    b_0 largest): with k = 1 the candidate graph is a star, whose largest matching has 2 edges.
    The fallback scores the rows left free against every target; the result is a permutation
    of the best total among the matchings of that final graph (brute force over all 7!)."""
    rng = np.random.default_rng(3)
    n = 7
    a, b = np.sort(rng.random(n))[::-1], np.sort(rng.random(n))[::-1]
    S = 10 * (a[:, None] + b[None, :]) + 0.1 * rng.standard_normal((n, n))
    S[0, :] += 5.0
    S[:, 0] += 5.0
    res = sparse_assign(_scorer(S), 1)
    assert sorted(res.col_ind) == list(range(n))             # a valid permutation
    assert res.fallback.size == n - 2                        # the star matches 2 rows
    E = _allowed(S, 1, res.fallback, by_rows=True)
    assert res.n_edges == E.sum()
    assert all(E[i, c] for i, c in enumerate(res.col_ind))
    assert _total(S, res.col_ind) == pytest.approx(_brute_best(S, E), rel=0, abs=1e-12)
    np.testing.assert_array_equal(res.scores, S[np.arange(n), res.col_ind])


def test_fallback_with_more_sources_than_targets_uses_full_columns():
    """q_s > q_t: a full matching uses every target once; the free columns are scored
    densely, every target is matched to a distinct row, the total is the brute-force best of
    the final graph (transposed: the columns' view)."""
    rng = np.random.default_rng(4)
    qs, qt = 7, 5
    S = rng.standard_normal((qs, qt)) * 0.1
    S[0, :] += 5.0
    S[:, 0] += 5.0
    res = sparse_assign(_scorer(S), 1)
    used = res.col_ind[res.col_ind >= 0]
    assert sorted(used) == list(range(qt)) and (res.col_ind < 0).sum() == qs - qt
    assert res.fallback.size > 0
    E = _allowed(S, 1, res.fallback, by_rows=False)
    rows_of = {c: i for i, c in enumerate(res.col_ind) if c >= 0}
    assert all(E[rows_of[c], c] for c in range(qt))
    assert _total(S, res.col_ind) == pytest.approx(_brute_best(S.T, E.T), rel=0, abs=1e-12)


def _planted(n, noise, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 12))
    X = np.tanh(Z @ rng.standard_normal((12, 24)) / 2)
    Y = Z @ rng.standard_normal((12, 16)) + noise * rng.standard_normal((n, 16))
    return X, Y


@pytest.mark.parametrize("method,kernel,sigma", [
    ("local-cka", "linear", "paper"), ("local-cka", "rbf", "paper"),
    ("local-cka", "rbf", "base"), ("linreg", "linear", "paper"),
    ("relative", "linear", "paper"), ("cosine", "linear", "paper")])
def test_planted_sparse_equals_dense(method, kernel, sigma):
    """On a planted alignment the sparse matching (the default k = 20 of 150 targets) is the
    dense LAP's assignment, for every score method, though the dense accuracy is far from 1
    (so the assignment is not just every row's best); the scores are the dense matrix's."""
    X, Y = _planted(190, 0.3)
    if method == "cosine":
        Y = X + 0.6 * np.random.default_rng(1).standard_normal(X.shape)
    seeds, queries = np.arange(40), np.arange(40, 190)
    kw = dict(method=method, kernel=kernel, sigma=sigma, device="cpu")
    dense = match_run(X, Y, seeds, queries, **kw)
    sparse = match_run(X, Y, seeds, queries, assign="sparse", **kw)
    assert 0.4 < dense.accuracy < 0.995
    np.testing.assert_array_equal(sparse.matched, dense.matched)
    assert sparse.accuracy == dense.accuracy
    np.testing.assert_allclose(sparse.scores, dense.scores, rtol=0, atol=1e-12)
    # the returned lists (max(k, 10) long) are the dense matrix's top 20 of each row
    assert sparse.scores_qq is None and sparse.topk["src_to_tgt_indices"].shape == (150, 20)
    top = np.argsort(-dense.scores_qq, axis=1, kind="stable")[:, :20]
    np.testing.assert_array_equal(sparse.topk["src_to_tgt_indices"], top)


def test_auto_switches_at_the_configured_size(monkeypatch):
    from fastcka import config

    X, Y = _planted(120, 0.3)
    seeds, queries = np.arange(20), np.arange(20, 120)
    monkeypatch.setattr(config, "MATCH_SPARSE_MIN", 101)
    assert match_run(X, Y, seeds, queries, method="linreg", assign="auto").scores_qq is not None
    monkeypatch.setattr(config, "MATCH_SPARSE_MIN", 100)
    assert match_run(X, Y, seeds, queries, method="linreg", assign="auto").scores_qq is None


@pytest.mark.parametrize("kw,needle", [
    ({"candidates": 0}, "candidates must be a positive integer"),
    ({"candidates": -3}, "candidates must be a positive integer"),
    ({"candidates": 2.5}, "candidates must be a positive integer"),
    ({"assign": "hungarian"}, "assign must be one of dense, sparse, auto")])
def test_bad_library_options(kw, needle):
    X, Y = _planted(60, 0.3)
    with pytest.raises(InputError, match=needle) as ei:
        match_run(X, Y, np.arange(10), np.arange(10, 60), method="linreg",
                  **{"assign": "sparse", **kw})
    assert "\n" not in str(ei.value)
    with pytest.raises(InputError, match="candidates must be a positive integer"):
        sparse_assign(_scorer(np.eye(3)), 0)


@pytest.fixture
def stores(tmp_path):
    return paired_stores(tmp_path)


def test_cli_match_sparse_equals_dense(stores, capsys):
    src, tgt, *_ = stores
    common = ["match", src, tgt, "--method", "local-cka", "--seeds", 15, "--queries", 40,
              "--json", "--device", "cpu"]
    code, out, err = run(common, capsys)
    assert code == 0, err
    dense = json.loads(out)
    # --candidates 40 of 40 queries: the complete graph, so exactly the dense LAP's matching
    code, out, err = run(common + ["--assign", "sparse", "--candidates", 40], capsys)
    assert code == 0, err
    sparse = json.loads(out)
    assert (sparse["assign"], dense["assign"]) == ("sparse", "dense")
    assert (sparse["candidates"], dense["candidates"]) == (40, None)
    assert (sparse["optimal"], dense["optimal"]) == (True, None)      # complete graph: proved
    assert sparse["accuracy"] == dense["accuracy"]


@pytest.mark.parametrize("argv,needles", [
    (["--method", "local-cka", "--candidates", 0], ["--candidates", "0"]),
    (["--method", "local-cka", "--assign", "greedy"], ["--assign", "greedy"]),
    (["--assign", "sparse"], ["--assign", "faq"])])
def test_cli_match_bad_assign_options(stores, capsys, argv, needles):
    src, tgt, *_ = stores
    code, _, err = run(["match", src, tgt, "--seeds", 15, "--queries", 40] + argv, capsys)
    assert_one_line_error(code, err, *needles)


def test_cli_eval_sparse_equals_dense(stores, capsys, tmp_path):
    """The eval cells of the score methods are the same with --assign sparse on the complete
    graph (--candidates = queries; accuracy and top-1/5/10 from the streamed lists); FAQ cells
    are untouched."""
    src, tgt, X, Y, _ = stores
    tables = {}
    for mode in ("dense", "sparse"):
        out = tmp_path / f"{mode}.json"
        code, _, err = run(["eval", src, tgt, "--methods", "faq:linear,local-cka:linear,linreg",
                            "--seeds", "10,20", "--queries", 30, "--draws", 1, "--n-init", 2,
                            "--assign", mode, "--candidates", 30, "-o", out], capsys)
        assert code == 0, err
        tables[mode] = fastcka.evaluate.read_table(str(out))
    for rd, rs in zip(tables["dense"].rows, tables["sparse"].rows, strict=True):
        for col in ("method", "n_seeds", "accuracy", "top1", "top5", "top10", "objective"):
            assert rd[col] == rs[col] or (rd[col] != rd[col] and rs[col] != rs[col]), col
    assert tables["sparse"].meta["assign"] == "sparse" and "assign" not in tables["dense"].meta


def test_certificate_is_sound_and_fires():
    """``optimal`` is a proof: whenever it is True the sparse total is SciPy's dense optimum
    (many random matrices and k, some where the sparse optimum falls short, which must then
    say False); on a complete graph and on an easy planted alignment it is True."""
    rng = np.random.default_rng(7)
    seen = {True: 0, False: 0}
    for trial in range(60):
        n = int(rng.integers(5, 40))
        low = rng.standard_normal((n, 3)) @ rng.standard_normal((3, n))
        S = low + rng.uniform(0.2, 3.0) * rng.standard_normal((n, n)) + 4 * np.eye(n) * (trial % 2)
        r, c = linear_sum_assignment(S, maximize=True)
        best = S[r, c].sum()
        res = sparse_assign(_scorer(S), int(rng.integers(1, 6)))
        total = _total(S, res.col_ind)
        assert total <= best + 1e-9
        if res.optimal:
            assert total == pytest.approx(best, rel=0, abs=1e-9)
        if total < best - 1e-9:
            assert res.optimal is False
        seen[bool(res.optimal)] += 1
    assert seen[True] > 5 and seen[False] > 5          # both outcomes exercised
    S = rng.standard_normal((30, 30))
    assert sparse_assign(_scorer(S), 30).optimal is True
    assert sparse_assign(_scorer(S[:, :20]), 30).optimal is None     # not square: not checked


def test_cli_eval_bad_candidates(stores, capsys, tmp_path):
    src, tgt, *_ = stores
    code, _, err = run(["eval", src, tgt, "--methods", "linreg", "--seeds", "10", "--queries", 20,
                        "--assign", "sparse", "--candidates", 0, "-o", tmp_path / "t.csv"], capsys)
    assert_one_line_error(code, err, "--candidates", "0")
    assert not (tmp_path / "t.csv").exists()
