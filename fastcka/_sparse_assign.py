"""Maximising assignment of a score method's queries without the q_s x q_t matrix (sparse path).

:func:`sparse_assign` streams the scorer's blocks once (:func:`fastcka._topk.topk_stream`, the
same streaming as retrieval), keeps the ``k`` best targets of every source query and the ``k``
best sources of every target query, and solves the maximising assignment on the union of those
candidate edges with SciPy's sparse Jonker–Volgenant
(``scipy.sparse.csgraph.min_weight_full_bipartite_matching``).

Fallback: when the candidate graph has no full matching, a maximum matching of it
(``maximum_bipartite_matching``) names the rows it leaves unmatched (columns when
``q_s > q_t``); those rows are scored against *every* target (one dense row block each) and
added to the graph, which then always has a full matching (each fallback row reaches every
free column), and the sparse solver runs again.

What is guaranteed: the returned ``col_ind`` is a valid full matching (every source row matched
to a distinct target when ``q_s <= q_t``; every target used once when ``q_s > q_t``, the other
rows -1), and it maximises the total score over all full matchings that use only edges of the
final graph (the candidates, plus the full rows or columns of the fallback).  It is therefore
the dense assignment's optimum whenever the dense optimum uses only those edges: always when
``k >= min(q_s, q_t)`` (then one direction's lists hold every pair: the graph is complete).
With a clear alignment the dense optimum lies in the top-k union already (tested); on noisy scores it
mostly does (``bench/results/match_scale.md``: k = 20 of 4,000 assigns 94 % of the queries as the
dense LAP, accuracy within 0.1 points; k = 50 the dense assignment).  Ties at the k-th place
of a list are broken as the stream breaks them.

Certificate (square problems): :func:`certify` builds dual potentials of the sparse optimum from
shortest paths in its residual graph and bounds every pair outside the graph by the k-th score
of its row's and its column's list (a pair outside both lists scores no more than either).
``optimal=True`` is then a proof, up to ``q * CERTIFY_RTOL * max|score|`` in the total, that no
full matching of the complete q x q scores does better: the sparse result *is* the dense LAP's
optimum.  ``False`` only means the bound was not tight enough to show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import config
from .errors import InputError

ASSIGN_CHOICES = ("dense", "sparse", "auto")


def check_assign(assign: str, candidates) -> tuple[str, int]:
    """``(assign, candidates)`` checked (``candidates=None``:
    :data:`fastcka.config.MATCH_CANDIDATES`); one-line :class:`InputError` for a bad value."""
    if candidates is None:
        candidates = config.MATCH_CANDIDATES
    if assign not in ASSIGN_CHOICES:
        raise InputError(f"assign must be one of {', '.join(ASSIGN_CHOICES)}, got {assign!r}")
    if (isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer))
            or candidates < 1):
        raise InputError(f"candidates must be a positive integer (targets kept per query), "
                         f"got {candidates!r}")
    return assign, int(candidates)


def use_sparse(assign: str, n_queries: int) -> bool:
    """Whether ``assign`` takes the sparse path for ``n_queries`` queries."""
    return assign == "sparse" or (assign == "auto" and n_queries >= config.MATCH_SPARSE_MIN)


#: relative tolerance of the optimality certificate (of the largest absolute score)
CERTIFY_RTOL = 1e-10


def _potentials(src, dst, w, n: int, tol: float):
    """Shortest distances from a virtual source (0-weight arcs to all ``n`` nodes) over the arcs
    ``src -> dst`` (weights ``w``, possibly negative), by vectorised Bellman–Ford sweeps; None
    when ``n`` sweeps do not settle them (a negative cycle: the matching is not optimal)."""
    d = np.zeros(n)
    for _ in range(n + 1):
        new = d.copy()
        np.minimum.at(new, dst, d[src] + w)
        if not (new < d - tol).any():
            return new
        d = new
    return None


def certify(rows, cols, vals, col, res: dict, k: int, qt: int, *, block: int = 2048):
    """Whether the matching ``col`` (square, optimal on the edges) is provably optimal over the
    complete graph: dual potentials from shortest paths in the residual graph (LP duality),
    and every pair outside the edges bounded by its row's and column's k-th streamed score.

    True guarantees that no full matching of the complete score matrix scores more than
    ``q * CERTIFY_RTOL * max|score|`` above ``col``; False says only that the bound could not
    show it (the dense optimum may still be ``col``).
    """
    qs = col.size
    if qs != qt:
        return False
    tol = CERTIFY_RTOL * max(1.0, float(np.abs(vals).max()))
    a = np.empty(qs)
    key = rows * qt + cols
    a[:] = vals[np.searchsorted(key, np.arange(qs) * qt + col)]       # matched scores
    off = cols != col[rows]
    # arc M(i) -> j' for every edge (i, j'): the reduced cost s_iM(i) - s_ij' of the swap
    d = _potentials(col[rows[off]], cols[off], a[rows[off]] - vals[off], qt, tol)
    if d is None:
        return False
    lists_r, lists_c = res["src_to_tgt_scores"][:, :k], res["tgt_to_src_scores"][:, :k]
    theta = lists_r[:, -1] if lists_r.shape[1] < qt else np.full(qs, -np.inf)
    phi = lists_c[:, -1] if lists_c.shape[1] < qs else np.full(qt, -np.inf)
    lhs = a + d[col]                 # pair (i, j') is safe when lhs_i - d_j' >= s_ij'
    open_rows = np.flatnonzero(lhs < np.minimum(theta, (phi + d).max()) - tol)
    for i0 in range(0, open_rows.size, block):
        r = open_rows[i0:i0 + block]
        bound = np.minimum(theta[r, None], phi[None, :])
        bad_r, bad_c = np.nonzero(lhs[r, None] - d[None, :] < bound - tol)
        bad = r[bad_r] * qt + bad_c
        pos = np.minimum(np.searchsorted(key, bad), key.size - 1)
        if (key[pos] != bad).any():   # a pair outside the graph might improve the matching
            return False
    return True


@dataclass
class SparseAssignment:
    """Outcome of :func:`sparse_assign`.

    ``col_ind`` (q_s,) the target of each source row (-1: unmatched, only when q_s > q_t);
    ``scores`` (q_s,) the score of each assigned pair (NaN when unmatched); ``topk`` the
    streamed lists (``src_to_tgt_indices`` ... as :func:`fastcka._topk.topk_stream`, host arrays,
    with ``lists`` entries per row); ``n_edges`` the edges of the final graph; ``fallback`` the
    rows (or columns, when q_s > q_t) scored densely because the candidates could not complete a
    matching; ``optimal`` (square problems) whether :func:`certify` proves ``col_ind`` the
    dense assignment's optimum (None: not checked, q_s != q_t).
    """

    col_ind: np.ndarray
    scores: np.ndarray
    topk: dict
    n_edges: int
    fallback: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    optimal: bool | None = None


def _candidate_edges(res: dict, k: int, qs: int, qt: int):
    """Unique ``(rows, cols, scores)`` of the union of both directions' first ``k`` lists."""
    ri, rv = res["src_to_tgt_indices"][:, :k], res["src_to_tgt_scores"][:, :k]
    ci, cv = res["tgt_to_src_indices"][:, :k], res["tgt_to_src_scores"][:, :k]
    rows = np.concatenate([np.repeat(np.arange(qs), ri.shape[1]), ci.ravel()])
    cols = np.concatenate([ri.ravel(), np.repeat(np.arange(qt), ci.shape[1])])
    vals = np.concatenate([rv.ravel(), cv.ravel()])
    ok = (rows >= 0) & (cols >= 0) & np.isfinite(vals)
    key = rows[ok].astype(np.int64) * qt + cols[ok]
    key, first = np.unique(key, return_index=True)
    return key // qt, key % qt, vals[ok][first]


def _solve(rows, cols, vals, qs: int, qt: int):
    """Maximum-score full matching on the edges, or None when none exists."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    # costs >= 1 (SciPy needs non-zero weights); every full matching has min(qs, qt) edges,
    # so the shift changes no optimum
    cost = (vals.max() - vals) + 1.0
    G = csr_matrix((cost, (rows, cols)), shape=(qs, qt))
    try:
        r, c = min_weight_full_bipartite_matching(G)
    except ValueError:
        return None
    out = np.full(qs, -1, dtype=np.int64)
    out[r] = c
    return out


def _unmatched(rows, cols, qs: int, qt: int) -> np.ndarray:
    """Rows (columns when qs > qt) a maximum matching of the graph leaves free."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    G = csr_matrix((np.ones(rows.size), (rows, cols)), shape=(qs, qt))
    if qs <= qt:
        return np.flatnonzero(maximum_bipartite_matching(G, perm_type="column") < 0)
    return np.flatnonzero(maximum_bipartite_matching(G, perm_type="row") < 0)


def _dense_edges(scorer, free: np.ndarray, by_rows: bool, block: int):
    """Every edge of the rows (or columns) ``free``, scored in blocks of ``block``."""
    qs, qt = scorer.shape
    rows, cols, vals = [], [], []
    for i in range(0, free.size, block):
        f = free[i:i + block]
        fb = scorer.be.asarray(f)
        if by_rows:
            S = np.asarray(scorer.be.to_host(scorer.block(fb, slice(None))), dtype=np.float64)
            rows.append(np.repeat(f, qt))
            cols.append(np.tile(np.arange(qt), f.size))
        else:
            S = np.asarray(scorer.be.to_host(scorer.block(slice(None), fb)), dtype=np.float64).T
            cols.append(np.repeat(f, qs))
            rows.append(np.tile(np.arange(qs), f.size))
        vals.append(S.ravel())
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def sparse_assign(scorer, k: int | None = None, *, lists: int | None = None,
                  block: int | None = None) -> SparseAssignment:
    """Maximising assignment on the top-``k`` candidate graph of a scorer (see the module notes).

    Parameters
    ----------
    scorer : object with ``shape``, ``be`` and ``block(rows, cols)`` (:mod:`fastcka.retrieval`)
    k : int, optional
        Candidates kept per query in each direction (clipped to the other side's size;
        default :data:`fastcka.config.MATCH_CANDIDATES`).
    lists : int, optional
        Length of the streamed top lists returned in ``topk`` (at least ``k``; e.g. 10 so the
        caller also gets top-10 retrieval from the same pass).
    block : int, optional
        Streaming block (default :data:`fastcka.config.RETRIEVAL_BLOCK`).

    Returns
    -------
    SparseAssignment

    Notes
    -----
    Memory O(block^2 + (q_s + q_t) * lists) besides the scorer, plus the fallback's rows
    (q_t scores each); time one streamed pass over the scores (the same as top-k retrieval)
    plus the sparse solve on at most 2 k max(q_s, q_t) edges.
    """
    from ._topk import _block, topk_stream

    _, k = check_assign("sparse", k)
    block = _block(block)
    qs, qt = scorer.shape
    res = topk_stream(scorer, max(k, lists or 0), block=block)
    res = {key: np.asarray(scorer.be.to_host(v)) for key, v in res.items()}
    rows, cols, vals = _candidate_edges(res, k, qs, qt)
    col = _solve(rows, cols, vals, qs, qt) if rows.size else None
    free = np.empty(0, dtype=np.int64)
    if col is None:
        free = _unmatched(rows, cols, qs, qt) if rows.size else np.arange(min(qs, qt))
        er, ec, ev = _dense_edges(scorer, free, qs <= qt, block)
        key = np.concatenate([rows * qt + cols, er * qt + ec])
        allv = np.concatenate([vals, ev])
        key, first = np.unique(key, return_index=True)
        rows, cols, vals = key // qt, key % qt, allv[first]
        col = _solve(rows, cols, vals, qs, qt)
        if col is None:  # cannot happen: each free row reaches every free column
            raise RuntimeError("sparse assignment: no full matching after the dense fallback")
    scores = np.full(qs, np.nan)
    hit = col >= 0
    key = rows * qt + cols
    pos = np.searchsorted(key, np.flatnonzero(hit) * qt + col[hit])
    scores[hit] = vals[pos]
    optimal = certify(rows, cols, vals, col, res, k, qt, block=block) if qs == qt else None
    return SparseAssignment(col, scores, res, int(rows.size), free, optimal)


def sparse_run(method: str, S, T, seed_idx, query_idx, *, kernel, sigma, device,
               k: int) -> SparseAssignment:
    """:func:`sparse_assign` of one score method on the queries of ``S``/``T`` (the seeds as
    base), with the top-10 lists (host arrays)."""
    from .retrieval import make_scorer

    sc = make_scorer(method, S[query_idx], T[query_idx], S[seed_idx], T[seed_idx],
                     kernel=kernel, sigma=sigma, device=device)
    return sparse_assign(sc, k, lists=10)
