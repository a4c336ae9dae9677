"""Seeded graph matching of two embedding sets (the paper's QAP protocol, METHOD §2).

:func:`seeded_match` builds centred, unit-Frobenius kernels of the seed and query points of each
side (seeds first, target queries shuffled), solves the maximising QAP with FAQ from
``P0="randomized"`` with the seeds as ``partial_match``, keeps the best of ``n_init`` restarts
(run as one batch, see :func:`fastcka.qap.quadratic_assignment`), and reports the matching of every
source query to a target query, the objective (the CKA under the matching) and the accuracy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backend import (
    array_module,
    as_rng,
    backend_of,
    check_device,
    check_matrix,
    get_backend,
    to_host,
)
from .errors import InputError
from .protocol import (
    DIRECTIONS,
    FAQ_MAXITER,
    FAQ_TOL,
    N_QUERIES,
    N_RESTARTS,
    N_SEEDS,
    check_direction,
)

__all__ = ["seeded_match", "SeededMatchResult", "DIRECTIONS"]


@dataclass
class SeededMatchResult:
    """Outcome of :func:`seeded_match`.

    Attributes
    ----------
    query_idx : (q,) int array
        Source rows of the queries (indices into the source input).
    matched_idx : (q,) int array
        Target row matched to each source query (indices into the target input).
    true_idx : (q,) int array
        The true partner of each query (the same paired row), in target rows.
    seed_idx : (m,) int array
        Seed rows (paired: the same row on both sides).
    query_ids, matched_ids : list of str or None
        Ids of the source queries and of their matched targets (when ids were given).
    scores : (q,) float array
        Each query's contribution ``Σ_j A[i, j] B[π(i), π(j)]`` to the objective.
    objective : float
        ``trace(A P B Pᵀ)`` of the returned matching (= kernel CKA under the matching).
    all_objectives : (n_init,) float array
    accuracy : float or None
        Fraction of queries matched to their true partner (None when the truth is unknown).
    """

    def __repr__(self) -> str:
        from ._repr import compact_repr

        return compact_repr(self)


    query_idx: np.ndarray
    matched_idx: np.ndarray
    true_idx: np.ndarray
    seed_idx: np.ndarray
    scores: np.ndarray
    objective: float
    all_objectives: np.ndarray
    accuracy: float | None
    n_init: int
    nit: int
    seconds: float
    direction: str
    kernel: str
    query_ids: list | None = None
    matched_ids: list | None = None
    extra: dict = field(default_factory=dict)

    @property
    def n_seeds(self) -> int:
        return int(len(self.seed_idx))

    @property
    def n_queries(self) -> int:
        return int(len(self.query_idx))

    def as_dict(self) -> dict:
        return {"n_seeds": self.n_seeds, "n_queries": self.n_queries, "accuracy": self.accuracy,
                "objective": self.objective, "n_init": self.n_init, "nit": self.nit,
                "seconds": self.seconds, "direction": self.direction, "kernel": self.kernel}


def _kernel_matrix(X, kernel: str, sigma: Any, device: str):
    """Centred, unit-Frobenius kernel of X (seeds first, checked float64 rows), dense (n×n) on
    the call's backend."""
    from ._cka import _check_sigma, _gram

    sigma = _check_sigma(sigma, 1.0)
    be = get_backend(X, device=device)
    K = _gram(be, be.asarray(X), kernel, sigma, 1.0, True)
    be = backend_of(K)
    nrm = be.scalar(be.xp.linalg.norm(K))
    if not nrm > 0:
        raise InputError("a kernel matrix is zero after centring (all points identical?)")
    return K / nrm


def _linear_factor(X, device: str):
    """Features F with F Fᵀ = the centred unit-Frobenius linear kernel (never formed)."""
    be = get_backend(X, device=device)
    F = be.asarray(X, np.float64)
    F = F - F.mean(axis=0, keepdims=True)
    nrm = be.scalar(be.xp.linalg.norm(F.T @ F))
    if not nrm > 0:
        raise InputError("a linear kernel is zero after centring (all points identical?)")
    return F / np.sqrt(nrm)


def _faq(A, B, options):
    from .qap import quadratic_assignment

    return quadratic_assignment(A, B, method="faq", options=options)


def _paired(S: Any, T: Any, ids_S: Any, ids_T: Any):
    """``(S, T, ids or None)``: the inputs checked on the device they are on (no copy) and,
    with ids, paired by id (common ids in S's order, :func:`fastcka.store.common_rows`)."""
    from .store import common_rows

    Sx = check_matrix(S, "S", xp=array_module(S), min_rows=2)
    Tx = check_matrix(T, "T", xp=array_module(T), min_rows=2)
    if ids_S is None and ids_T is None:
        if len(Sx) != len(Tx):
            raise InputError(f"S and T must have the same number of rows (paired samples), got "
                             f"{len(Sx)} and {len(Tx)}; pass ids_S/ids_T to pair them by id")
        return Sx, Tx, None
    if ids_S is None or ids_T is None:
        raise InputError("give both ids_S and ids_T, or neither")
    ids_S = [str(i) for i in ids_S]
    ids_T = [str(i) for i in ids_T]
    if len(ids_S) != len(Sx) or len(ids_T) != len(Tx):
        raise InputError(f"ids_S/ids_T must have one id per row: got {len(ids_S)} ids for "
                         f"{len(Sx)} rows of S and {len(ids_T)} for {len(Tx)} rows of T")
    if len(set(ids_T)) != len(ids_T) or len(set(ids_S)) != len(ids_S):
        raise InputError("ids_S and ids_T must be unique")
    rs, rt = common_rows(ids_S, ids_T)
    if len(rs) < 2:
        raise InputError(f"S and T share only {len(rs)} ids")
    return _rows(Sx, rs), _rows(Tx, rt), [ids_S[i] for i in rs]


def _rows(X: Any, rows: Any, dtype: Any = None) -> Any:
    """Rows ``rows`` (host indices) of the checked array ``X``, on the device ``X`` is on."""
    be = backend_of(X)
    return be.xp.asarray(X[be.asarray(rows)], dtype=dtype)


def _split(n: int, seeds: Any, queries: Any, gen: Any, seed_strategy: str, Sx: Any):
    """Seed and query rows (int64) from counts or explicit rows (:func:`split_seeds_queries`)."""
    from .protocol import split_seeds_queries

    seed_kw = ({"n_seeds": int(seeds)} if isinstance(seeds, (int, np.integer))
               else {"seed_idx": np.asarray(seeds)})
    if queries is None:
        q_kw = {}
    elif isinstance(queries, (int, np.integer)):
        q_kw = {"n_queries": int(queries)}
    else:
        q_kw = {"query_idx": np.asarray(queries)}
    seed_idx, query_idx = split_seeds_queries(
        n, **seed_kw, **q_kw, rng=gen, strategy=seed_strategy,
        features=to_host(Sx) if seed_strategy == "kmeans" else None)
    seed_idx = np.asarray(seed_idx, dtype=np.int64)
    query_idx = np.asarray(query_idx, dtype=np.int64)
    if len(query_idx) == 0:
        raise InputError("no query pairs left to match")
    return seed_idx, query_idx


def _contributions(A, B, col: np.ndarray, factored: bool) -> np.ndarray:
    """Each node's contribution ``Σ_j A[i, j] B[π i, π j]`` to the objective (host array)."""
    be = backend_of(A)
    if factored:
        Ah = be.to_host(A)
        Bh = be.to_host(B)
        Bp = Bh[col]
        # Σ_j A[i,j] B[π i, π j] = x_iᵀ (Xᵀ Y_π) y_{π i}
        M = Ah.T @ Bp
        return np.einsum("ip,pq,iq->i", Ah, M, Bp)
    pg = be.asarray(col)
    return be.to_host((A * B[pg][:, pg]).sum(axis=1))


def seeded_match(S: Any, T: Any, *, seeds: Any = N_SEEDS, queries: Any = N_QUERIES,
                 kernel: str = "rbf", sigma: Any = "paper", n_init: int = N_RESTARTS, maxiter: int = FAQ_MAXITER,
                 tol: float = FAQ_TOL,
                 direction: str = "src-to-tgt", stretch: bool = False,
                 seed_strategy: str = "random", rng: Any = 0, device: str = "auto",
                 ids_S: Any = None, ids_T: Any = None, lap: str = "auto",
                 dtype: Any = None, solver: Any = None,
                 scheduler: Any = None) -> SeededMatchResult:
    """Recover the pairing of query rows from a few seed pairs by graph matching (METHOD §2).

    Parameters
    ----------
    S : (n, p) array_like
        Text embeddings (the paper's source side).
    T : (n, q) array_like
        Image embeddings, row ``i`` paired with row ``i`` of ``S`` (the truth; the matcher never
        sees it beyond the seeds).  With ``ids_S``/``ids_T`` the rows are paired by id instead.
    seeds : int or array of int
        Number of seed pairs (drawn by ``seed_strategy``) or explicit row indices.
    queries : int, array of int or None
        Number of query pairs drawn at random among the non-seeds, explicit rows, or None (all
        the other rows).
    kernel : {"rbf", "linear"}
        ``"rbf"`` with ``sigma`` ("paper": σ² = lower median of the non-zero squared distances of
        each side's seed+query points; "kornblith"; or a float).  ``"linear"`` uses the factored
        FAQ path (the n×n kernels are never formed) when both feature dimensions are at most a
        third of the number of queries, dense kernels otherwise.
    sigma : {"paper", "kornblith"} or float
    n_init : int
        FAQ restarts from random initialisations (the paper: 500), best objective kept.
    maxiter, tol : FAQ stopping rule (the paper: 30, 1e-5).
    direction : {"src-to-tgt", "tgt-to-src"}
        Which side is the source: "src-to-tgt" matches each ``S`` row (e.g. a caption) to a
        ``T`` row (an image); "tgt-to-src" the reverse (``T`` becomes the source).  The former
        spellings "text->image" / "image->text" are still accepted as aliases; the result
        reports the direction as one of :data:`DIRECTIONS`.
    stretch : bool
        Divide every feature by its standard deviation (over the seed+query points) first.
    seed_strategy : {"random", "kmeans"}
        ``"kmeans"``: seeds are the source samples nearest to k-means centroids (k = seeds).
    rng : seed or numpy Generator
        Drives everything random, in this order: seeds, queries, the target shuffle, the
        restarts' initialisations.
    device : {"auto", "cpu", "gpu"}
    ids_S, ids_T : sequence of str, optional
        Ids of the rows; the truth is id equality, and the result reports matched ids.
    lap, dtype
        Passed to :func:`fastcka.qap.quadratic_assignment`.
    solver : callable, optional
        ``solver(A, B, options) -> OptimizeResult`` used instead of
        :func:`fastcka.qap.quadratic_assignment` (benchmarks plug SciPy in here); it receives
        the same options, ``n_init`` included.
    scheduler : None, str or fastcka.parallel.Executor
        Where the FAQ restarts run (see :mod:`fastcka.parallel`); the result is the same.

    Returns
    -------
    SeededMatchResult

    Notes
    -----
    With m seeds and q queries the QAP has m + q nodes (q free): memory ~ 2 (m+q)² for the
    kernels plus ~6 q² per restart in a batch; time per restart and Frank–Wolfe iteration one
    q×q GEMM plus one q×q LAP.
    """
    t0 = time.perf_counter()
    device = check_device(device)
    direction = _check_options(direction, kernel, n_init)
    Sx, Tx, ids = _paired(S, T, ids_S, ids_T)
    if direction == "tgt-to-src":
        Sx, Tx = Tx, Sx
    gen = as_rng(rng)
    seed_idx, query_idx = _split(len(Sx), seeds, queries, gen, seed_strategy, Sx)
    m, q = len(seed_idx), len(query_idx)
    shuffle = gen.permutation(q)                      # target queries in shuffled order
    X, Y = _points(Sx, Tx, seed_idx, query_idx, shuffle, stretch)
    A, B, factored = _kernels(X, Y, kernel, sigma, device, q)
    options = _faq_options(A, m, gen, tol, maxiter, n_init, lap, dtype, factored, scheduler)
    res = (solver or _faq)(A, B, options)
    return _result(res, A, B, factored, seed_idx, query_idx, shuffle, ids, t0,
                   n_init=int(n_init), direction=direction, kernel=kernel)


def _result(res, A, B, factored: bool, seed_idx: np.ndarray, query_idx: np.ndarray,
            shuffle: np.ndarray, ids, t0: float, **info) -> SeededMatchResult:
    """The :class:`SeededMatchResult` of the QAP solution ``res`` (nodes: the seeds, then the
    queries; target queries in ``shuffle`` order); ``info``: ``n_init``, ``direction``,
    ``kernel``; ``seconds`` counted from ``t0``."""
    m = len(seed_idx)
    col = np.asarray(res.col_ind)
    matched_pos = col[m:] - m                          # position among the shuffled target queries
    matched_idx = query_idx[shuffle[matched_pos]]
    scores = np.asarray(_contributions(A, B, col, factored)[m:], dtype=np.float64)
    all_fun = np.atleast_1d(np.asarray(res.get("all_fun", [res.fun]), dtype=np.float64))
    out = SeededMatchResult(
        query_idx=query_idx, matched_idx=matched_idx, true_idx=query_idx, seed_idx=seed_idx,
        scores=scores, objective=float(res.fun), all_objectives=all_fun,
        accuracy=float(np.mean(matched_idx == query_idx)), nit=int(res.nit),
        seconds=time.perf_counter() - t0, **info)
    if ids is not None:
        out.query_ids = [ids[i] for i in query_idx]
        out.matched_ids = [ids[i] for i in matched_idx]
    return out


def _check_options(direction: str, kernel: str, n_init: Any) -> str:
    """Refuse a bad ``direction``, ``kernel`` or ``n_init`` before any work; the direction as
    one of :data:`DIRECTIONS`."""
    direction = check_direction(direction)
    if kernel not in ("rbf", "linear"):
        raise InputError(f"kernel must be 'rbf' or 'linear', got {kernel!r}")
    if not isinstance(n_init, (int, np.integer)) or n_init < 1:
        raise InputError(f"n_init must be a positive integer, got {n_init!r}")
    return direction


def _points(Sx: Any, Tx: Any, seed_idx: np.ndarray, query_idx: np.ndarray,
            shuffle: np.ndarray, stretch: bool):
    """The QAP's points, float64 on the device of the data: ``X`` = source seeds then source
    queries, ``Y`` = target seeds then the target queries in ``shuffle`` order (each feature
    divided by its standard deviation with ``stretch``)."""
    X = _rows(Sx, np.concatenate([seed_idx, query_idx]), np.float64)
    Y = _rows(Tx, np.concatenate([seed_idx, query_idx[shuffle]]), np.float64)
    if stretch:
        X, Y = _stretch(X), _stretch(Y)
    return X, Y


def _stretch(X: Any) -> Any:
    xp = backend_of(X).xp
    return X / xp.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)


def _kernels(X: Any, Y: Any, kernel: str, sigma: Any, device: str, q: int):
    """``(A, B, factored)``: the two sides' kernels, or with the factored linear path (when
    the feature dimensions are well below the q free nodes, where it pays off) their factors."""
    if kernel == "linear" and 3 * max(X.shape[1], Y.shape[1]) <= q:
        return _linear_factor(X, device), _linear_factor(Y, device), True
    return (_kernel_matrix(X, kernel, sigma, device), _kernel_matrix(Y, kernel, sigma, device),
            False)


def _faq_options(A: Any, m: int, gen: Any, tol: float, maxiter: int, n_init: int, lap: str,
                 dtype: Any, factored: bool, scheduler: Any) -> dict:
    """The options of :func:`fastcka.qap.quadratic_assignment`: maximise from random starts
    with the m seeds (the first m nodes of both sides) as the partial match."""
    pm = np.stack([np.arange(m), np.arange(m)], axis=1)
    options = {
        "P0": "randomized", "maximize": True, "partial_match": pm, "rng": gen,
        "tol": tol, "maxiter": maxiter, "n_init": int(n_init), "lap": lap,
        "dtype": dtype, "factored": factored, "device": backend_of(A).device}
    if scheduler is not None:
        options["scheduler"] = scheduler
    return options
