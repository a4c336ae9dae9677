"""One run of the protocol: what ``fastcka match`` and ``fastcka retrieve`` compute alone.

:func:`draw_split` chooses the seed and query rows of one run, :func:`match_run` matches the
queries (FAQ through :func:`fastcka.seeded_match`, or a score method and a maximising linear
assignment), :func:`query_scores` / :func:`rank_queries` build and rank the q × q scores of
``fastcka retrieve``.  Every cell of :func:`fastcka.evaluate` calls the same functions
(``fastcka.evaluate`` re-exports them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import to_host
from .errors import InputError
from .protocol import FAQ_MAXITER, FAQ_TOL, N_RESTARTS

__all__ = ["draw_split", "match_run", "MatchRun", "query_scores", "rank_queries"]


def _host(a: Any) -> np.ndarray:
    return np.asarray(to_host(a))



def draw_split(ids: Sequence[str], *, n_seeds: int | None = None,
               seed_ids: Sequence[str] | None = None, n_queries: int | None = None,
               query_ids: Sequence[str] | None = None, rng: int = 0,
               seed_strategy: str = "random", features: np.ndarray | None = None,
               min_seeds: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Seed and query rows of one run among the paired rows ``ids`` (explicit ids win).

    Defaults (the paper's protocol, :data:`fastcka.protocol.N_SEEDS` /
    :data:`~fastcka.protocol.N_QUERIES`): 320 seeds (at most n − 1; at most n // 2 when the
    queries are not fixed either) and 500 queries among the rest (at most all of them).
    ``rng`` seeds :func:`fastcka.protocol.split_seeds_queries`; with ``rng = 0`` the split is
    the one of draw 0 of :func:`evaluate` whose largest seed count is ``n_seeds``.
    """
    from .protocol import N_QUERIES, N_SEEDS, ids_to_indices, split_seeds_queries

    n = len(ids)
    seed_idx = query_idx = None
    if seed_ids is not None:
        seed_idx = ids_to_indices(ids, seed_ids, "seed ids")
    if query_ids is not None:
        query_idx = ids_to_indices(ids, query_ids, "query ids")
    if seed_idx is None and n_seeds is None:
        n_seeds = min(N_SEEDS, max(n - 1, 0))
        if query_idx is None and n_queries is None:
            n_seeds = min(N_SEEDS, n // 2)
    if query_idx is None and n_queries is None:
        taken = seed_idx.size if seed_idx is not None else n_seeds
        n_queries = min(N_QUERIES, n - taken)
        if n_queries < 1:
            raise InputError(f"no pairs left for queries: {n} pairs, {taken} seeds")
    return split_seeds_queries(n, n_seeds=n_seeds, n_queries=n_queries, seed_idx=seed_idx,
                               query_idx=query_idx, rng=rng, strategy=seed_strategy,
                               features=features, min_seeds=min_seeds)


@dataclass
class MatchRun:
    """The outcome of :func:`match_run`: every source query matched to one target query.

    ``matched`` holds target rows (``-1`` when left unmatched), ``scores`` each query's score
    (FAQ: its contribution to the objective; else the score of the assigned pair), ``scores_qq``
    the q × q score matrix of a score method (None for FAQ).
    """

    matched: np.ndarray
    scores: np.ndarray
    accuracy: float
    objective: float | None = None
    all_objectives: np.ndarray | None = None
    scores_qq: np.ndarray | None = None
    topk: dict | None = None  # assign="sparse": the streamed top lists instead of scores_qq
    candidates: int | None = None  # assign="sparse": the candidates per query it kept
    optimal: bool | None = None  # assign="sparse": certified the dense LAP's optimum


def match_run(S: Any, T: Any, seed_idx: np.ndarray, query_idx: np.ndarray, *,
              method: str = "faq", kernel: str = "rbf", sigma: Any = "paper",
              n_init: int = N_RESTARTS, maxiter: int = FAQ_MAXITER, tol: float = FAQ_TOL, stretch: bool = False,
              rng: int = 0, device: str = "auto", lap: str = "auto", solver: Any = None,
              scheduler: Any = None, assign: str = "dense",
              candidates: int | None = None, dtype: Any = None) -> MatchRun:
    """Match the query rows of ``S`` to those of ``T`` given the seed rows (rows paired).

    ``method="faq"``: :func:`fastcka.seeded_match` (``stretch`` applies here, over the seed +
    query points; ``rng`` drives the target shuffle and the restarts).  Else the q × q matrix
    of :func:`fastcka.retrieval.score_matrix` on the queries with the seeds as base, and a
    maximising linear assignment on it (``stretch`` is then the caller's: :func:`evaluate_cell`
    stretches its points first).

    ``assign`` (score methods; FAQ ignores it): ``"dense"`` the q × q matrix and SciPy's LAP;
    ``"sparse"`` the top-``candidates`` lists of both directions (default
    :data:`fastcka.config.MATCH_CANDIDATES`) streamed and a sparse assignment on them
    (:mod:`fastcka._sparse_assign`: a full matching, optimal over the candidate graph, the
    q × q matrix never held; ``scores_qq`` is then None, ``topk`` holds the lists, at least
    10 long, and ``optimal`` says whether the result is certified to be the dense optimum,
    :func:`fastcka._sparse_assign.certify`); ``"auto"`` dense below :data:`fastcka.config.MATCH_SPARSE_MIN` queries, sparse
    from there.

    ``dtype`` (FAQ): precision of the Frank–Wolfe iterations (None: float64; ``"float32"``: the
    faster GEMMs, every restart re-scored in float64 before the best is chosen).
    """
    if method == "faq":
        from .seeded import seeded_match

        res = seeded_match(S, T, seeds=seed_idx, queries=query_idx, kernel=kernel, sigma=sigma,
                           n_init=n_init, maxiter=maxiter, tol=tol, stretch=stretch, rng=rng,
                           device=device, lap=lap, solver=solver, scheduler=scheduler,
                           dtype=dtype)
        return MatchRun(res.matched_idx, res.scores, float(np.mean(res.matched_idx == query_idx)),
                        res.objective, res.all_objectives)
    from ._sparse_assign import check_assign, sparse_run, use_sparse  # score methods only
    from .retrieval import assign as lap_assign
    from .retrieval import score_matrix

    q = int(query_idx.size)
    assign, candidates = check_assign(assign, candidates)
    if use_sparse(assign, q):
        sp = sparse_run(method, S, T, seed_idx, query_idx, kernel=kernel, sigma=sigma,
                        device=device, k=candidates)
        matched = np.where(sp.col_ind >= 0, query_idx[np.maximum(sp.col_ind, 0)], -1)
        return MatchRun(matched, sp.scores, float(np.mean(matched == query_idx)), topk=sp.topk,
                        candidates=candidates, optimal=sp.optimal)
    Sc = _host(score_matrix(method, S[query_idx], T[query_idx], S[seed_idx], T[seed_idx],
                            kernel=kernel, sigma=sigma, device=device))
    col = lap_assign(Sc)  # Sc: checked inputs, float64 scores on the host
    matched = np.where(col >= 0, query_idx[np.maximum(col, 0)], -1)
    scores = np.where(col >= 0, Sc[np.arange(q), np.maximum(col, 0)], np.nan)
    return MatchRun(matched, scores, float(np.mean(matched == query_idx)), scores_qq=Sc)


def query_scores(method: str, Sq: Any, Tq: Any, Sb: Any, Tb: Any, *, kernel: str = "linear",
                 sigma: Any = "paper", device: str = "auto", block: int | None = None):
    """The q × q score matrix of the queries (what ``fastcka retrieve`` ranks), built in row
    blocks of ``block`` queries when there are more (:func:`fastcka.retrieval.rows_units`)."""
    from .retrieval import _BLOCK, rows_units, score_matrix

    block = block or _BLOCK
    q = len(Sq)
    if q <= block:
        return score_matrix(method, Sq, Tq, Sb, Tb, kernel=kernel, sigma=sigma, device=device)
    return _host(rows_units("scores", method, Sq, Tq, Sb, Tb, [(0, q)], kernel=kernel,
                            sigma=sigma, device=device, block=block)[0])


def rank_queries(scores: Any, *, k: int = 10, device: str = "auto"):
    """Retrieval (top-``max(k, 10)`` both ways) and the maximising assignment of a q × q score
    matrix: ``(RetrievalResult, col_ind, matching accuracy)`` (row i's partner is column i)."""
    from .retrieval import match_scores, matching_accuracy, retrieve

    res = retrieve(scores, k=max(k, 10), device=device)
    col = match_scores(scores)
    return res, col, matching_accuracy(col)
