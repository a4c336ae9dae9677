"""The paper's protocol (METHOD §2–§3): its defaults, the seed/query split, and one run of it.

Rows of the two aligned sides are indexed ``0..n-1`` (row ``i`` of the source is the true partner of
row ``i`` of the target).  A *seed* pair is known to the algorithm; a *query* pair is to be recovered.

One run (the end of this module) is what ``fastcka match`` and ``fastcka retrieve`` compute alone.

:func:`draw_split` chooses the seed and query rows of one run, :func:`match_run` matches the
queries (FAQ through :func:`fastcka.seeded_match`, or a score method and a maximising linear
assignment), :func:`query_scores` / :func:`rank_queries` build and rank the q × q scores of
``fastcka retrieve``.  Every cell of :func:`fastcka.evaluate` calls the same functions
(``fastcka.evaluate`` re-exports them).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import as_rng, to_host
from .errors import InputError

STRATEGIES = ("random", "kmeans")

# The paper's protocol defaults (METHOD §2), defined here once: the seed pairs and the query pairs
# of one run, the FAQ restarts and stopping rule, the seed counts and query draws of the
# evaluation grid.
N_SEEDS = 320
N_QUERIES = 500
N_RESTARTS = 500
FAQ_MAXITER = 30
FAQ_TOL = 1e-5
SEED_GRID = (10, 20, 40, 80, 160, 320)
N_DRAWS = 3

# The one direction vocabulary (docs/glossary.md): which side holds the source queries.
DIRECTIONS = ("src-to-tgt", "tgt-to-src")
# older spellings still accepted where they were public (seeded_match took "text->image")
DIRECTION_ALIASES = {"text->image": "src-to-tgt", "image->text": "tgt-to-src"}


def check_direction(direction: Any, what: str = "direction") -> str:
    """``direction`` as one of :data:`DIRECTIONS` (an alias of :data:`DIRECTION_ALIASES`
    mapped); a one-line :class:`InputError` otherwise."""
    d = DIRECTION_ALIASES.get(direction, direction) if isinstance(direction, str) else None
    if d not in DIRECTIONS:
        raise InputError(f"{what} must be one of {', '.join(DIRECTIONS)} (or an alias "
                         f"{', '.join(DIRECTION_ALIASES)}), got {direction!r}")
    return d


def read_id_file(path: str | os.PathLike, what: str = "id file", *,
                 per_row: bool = False) -> list[str]:
    """Ids from a UTF-8 text file, one per line: the one id-file reader of fastcka.

    The rule (``docs/glossary.md``, "id files"): every line is stripped of surrounding
    whitespace and trailing blank lines are ignored.  Then

    - a **list of ids** (``per_row=False``: ``--seed-ids``, ``--query-ids``, any set of ids
      looked up by name) ignores blank lines and lines starting with ``#`` anywhere, and must not
      repeat an id;
    - a **per-row file** (``per_row=True``: ``import --ids``, where line *i* names row *i*) keeps
      every line as an id, ``#`` included; a blank line before the last id is an error, because
      dropping it would shift every later id onto the wrong row.  Uniqueness is checked where the
      ids are stored.

    ``-`` reads the ids from standard input (once per command: :func:`fastcka._io.stdin_text`).

    Raises :class:`InputError` naming the file when it is missing, not UTF-8, empty, repeats an
    id (lists) or has a blank line inside (per-row files).
    """
    import io

    from ._io import is_stdio, stdin_text

    try:
        with (io.StringIO(stdin_text(what), newline=None) if is_stdio(path)
              else open(path, encoding="utf-8")) as fh:
            lines = [s.strip() for s in fh]
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{what} is a folder: {path}") from None
    except UnicodeDecodeError:
        raise InputError(f"{what} is not UTF-8 text: {path}") from None
    while lines and not lines[-1]:
        lines.pop()
    if per_row:
        blank = [i + 1 for i, ln in enumerate(lines) if not ln]
        if blank:
            raise InputError(f"{what} has blank line(s) at line {blank[0]}"
                             + (f" and {len(blank) - 1} more" if len(blank) > 1 else "")
                             + f": {path}")
        ids = lines
    else:
        ids = [s for s in lines if s and not s.startswith("#")]
    if not ids:
        raise InputError(f"{what} is empty: {'standard input' if is_stdio(path) else path}")
    if not per_row:
        dup = _first_duplicates(ids)
        if dup:
            raise InputError(f"{what} repeats id(s) {', '.join(map(repr, dup))}: {path}")
    return ids


def _first_duplicates(items: Sequence[Any], limit: int = 3) -> list[Any]:
    seen: set[Any] = set()
    dup: list[Any] = []
    for it in items:
        if it in seen and it not in dup:
            dup.append(it)
            if len(dup) >= limit:
                break
        seen.add(it)
    return dup


def ids_to_indices(ids: Sequence[str], wanted: Sequence[str], what: str = "ids") -> np.ndarray:
    """Row indices of ``wanted`` in ``ids``; one-line error naming missing or repeated ids."""
    pos = {s: i for i, s in enumerate(map(str, ids))}
    wanted = [str(w) for w in wanted]
    dup = _first_duplicates(wanted)
    if dup:
        raise InputError(f"{what} repeat id(s) {', '.join(map(repr, dup))}")
    missing = [w for w in wanted if w not in pos]
    if missing:
        shown = ", ".join(map(repr, missing[:5]))
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise InputError(f"{len(missing)} of the {what} are not among the common ids: {shown}{more}")
    return np.fromiter((pos[w] for w in wanted), dtype=np.intp, count=len(wanted))


def _check_index(idx: Any, n: int, what: str) -> np.ndarray:
    arr = np.asarray(idx)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise InputError(f"{what} must be a 1-D array of integer row indices")
    arr = arr.astype(np.intp, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise InputError(f"{what} out of range: indices must lie in [0, {n - 1}]")
    if np.unique(arr).size != arr.size:
        raise InputError(f"{what} contain repeated indices")
    return arr


def kmeans_seeds(features: np.ndarray, n_seeds: int, rng: Any = 0,
                 candidates: np.ndarray | None = None) -> np.ndarray:
    """Seeds nearest (cosine) to k-means centroids, k = ``n_seeds`` (reference-code knob).

    Rows are L2-normalised, clustered with k-means++ / Lloyd (``scipy.cluster.vq.kmeans2``), and
    each centroid takes its most cosine-similar row not already taken (greedy, centroids in order).
    """
    from scipy.cluster.vq import kmeans2

    X = np.asarray(features, dtype=np.float64)
    cand = np.arange(X.shape[0]) if candidates is None else np.asarray(candidates, dtype=np.intp)
    if n_seeds > cand.size:
        raise InputError(f"cannot pick {n_seeds} k-means seeds from {cand.size} candidates")
    Xc = X[cand]
    Xc = Xc / np.maximum(np.linalg.norm(Xc, axis=1, keepdims=True), 1e-12)
    seed_int = int(as_rng(rng).integers(0, 2**31 - 1))
    centroids, _ = kmeans2(Xc, n_seeds, minit="++", seed=seed_int)
    centroids = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    sim = centroids @ Xc.T  # k x m
    taken = np.zeros(cand.size, dtype=bool)
    chosen = np.empty(n_seeds, dtype=np.intp)
    for c in range(n_seeds):
        row = np.where(taken, -np.inf, sim[c])
        j = int(np.argmax(row))
        taken[j] = True
        chosen[c] = cand[j]
    return chosen


def split_seeds_queries(n: int, *, n_seeds: int | None = None, n_queries: int | None = None,
                        seed_idx: Any = None, query_idx: Any = None, rng: Any = 0,
                        strategy: str = "random", features: np.ndarray | None = None,
                        min_seeds: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Choose disjoint seed and query rows among ``n`` aligned pairs.

    Parameters
    ----------
    n : int
        Number of aligned pairs.
    n_seeds, seed_idx
        Either a count (drawn by ``strategy``) or explicit row indices.
    n_queries, query_idx
        Either a count (drawn at random among the non-seed rows), explicit row indices, or neither
        (every non-seed row is a query).
    rng : seed or Generator
        Drives every random choice: seeds are drawn first, then queries, from one Generator.
    strategy : {"random", "kmeans"}
        ``"kmeans"`` needs ``features`` (n×d): seeds are the rows nearest to k-means centroids.
    min_seeds : int
        Fewer seeds is an error (local CKA needs 4).

    Returns
    -------
    seed_idx, query_idx : ndarray of intp
        Disjoint; queries in random order when drawn, else in the given order.
    """
    if strategy not in STRATEGIES:
        raise InputError(f"seed strategy must be one of {STRATEGIES}, got {strategy!r}")
    gen = as_rng(rng)
    if (seed_idx is None) == (n_seeds is None):
        raise InputError("give exactly one of a seed count and explicit seed ids")
    if query_idx is not None and n_queries is not None:
        raise InputError("give at most one of a query count and explicit query ids")
    q_fixed = None if query_idx is None else _check_index(query_idx, n, "query ids")
    if seed_idx is not None:
        seeds = _check_index(seed_idx, n, "seed ids")
    else:
        if not isinstance(n_seeds, (int, np.integer)) or n_seeds < 0:
            raise InputError(f"the number of seeds must be a non-negative integer, got {n_seeds!r}")
        pool = np.arange(n) if q_fixed is None else np.setdiff1d(np.arange(n), q_fixed)
        if n_seeds > pool.size:
            raise InputError(f"asked for {n_seeds} seeds but only {pool.size} pairs are available")
        if strategy == "kmeans":
            if features is None:
                raise InputError("seed strategy 'kmeans' needs the features to cluster")
            seeds = kmeans_seeds(features, int(n_seeds), gen, candidates=pool)
        else:
            seeds = gen.permutation(pool)[: int(n_seeds)].astype(np.intp)
    if seeds.size < min_seeds:
        raise InputError(f"need at least {min_seeds} seeds, got {seeds.size}")
    if q_fixed is not None:
        overlap = np.intersect1d(seeds, q_fixed)
        if overlap.size:
            raise InputError(f"{overlap.size} row(s) are both seeds and queries")
        return seeds, q_fixed
    rest = np.setdiff1d(np.arange(n), seeds)
    if n_queries is None:
        return seeds, gen.permutation(rest).astype(np.intp)
    if not isinstance(n_queries, (int, np.integer)) or n_queries < 1:
        raise InputError(f"the number of queries must be a positive integer, got {n_queries!r}")
    if n_queries > rest.size:
        raise InputError(f"asked for {n_seeds if n_seeds is not None else seeds.size} seeds + "
                         f"{n_queries} queries but only {n} aligned pairs exist")
    return seeds, gen.permutation(rest)[: int(n_queries)].astype(np.intp)


# --------------------------------------------------------------------------------------------
# one run: what `fastcka match` and `fastcka retrieve` compute alone (every cell of
# fastcka.evaluate calls the same functions)
# --------------------------------------------------------------------------------------------

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
