"""The paper's experiments as one library call: a grid of matching/retrieval runs, a tidy table.

:func:`evaluate` pairs two embedding sets by row (or by id), draws the seed (base) and query sets
exactly as the reference code does (METHOD §2–§3), runs every method on every cell of the grid
(method × n_seeds × draw × direction) and returns an :class:`EvalTable`, one row per cell.

Protocol
--------
- The base is drawn **once** with ``rng`` (default seed 0): a random permutation of the pairs
  whose first ``max(seeds)`` rows are the base; the cell with ``m`` seeds takes the first ``m``
  of them, so seed sets are nested across counts (the 10 seeds are the first 10 of the 20).
  ``seed_strategy="kmeans"`` instead takes, for each count m, the source rows nearest (cosine) to
  k-means centroids (m clusters, seeded by ``rng``); then the sets are not nested.
- Queries are drawn **per draw** ``d`` (0, 1, 2 by default) among the pairs outside every base:
  the generator ``default_rng(d)`` first spends one permutation of the n pairs (the base draw's
  step) and then permutes the remaining pairs; the first ``queries`` are the queries.  Draw 0
  with the base of seed 0 is therefore exactly the split ``fastcka match --seeds K --queries Q``
  draws when K = max(seeds).  The same queries serve every seed count of one draw.
- ``base=(BS, BT)`` (cross-domain): the seeds come from that second pair of sets (drawn with
  ``rng`` as above) and the queries from ``S, T`` (drawn per draw among all their pairs).
- ``stretch``: every feature divided by its standard deviation over the cell's base + query
  points of each side (the reference code's population), before any method.
- Each cell builds its own points ``X = [S_base ; S_queries]``, ``Y = [T_base ; T_queries]`` (in
  the cell's direction) and runs one method: ``faq`` calls :func:`fastcka.seeded_match` with the
  base rows as seeds and ``rng = d`` (restarts and the target shuffle), ``local-cka`` / ``linreg``
  / ``relative`` / ``cosine`` score the q × q queries (:func:`fastcka.retrieval.score_matrix`),
  report top-1/5/10 retrieval and match by a maximising linear assignment.

The grid is a list of independent :class:`Cell` specs (:func:`plan`); :func:`evaluate_cell`
computes one from the prepared draws (:func:`prepare`), so any executor can distribute them.
One run alone (:func:`draw_split`, :func:`match_run`, :func:`query_scores`,
:func:`rank_queries`: what ``fastcka match`` / ``fastcka retrieve`` compute) lives in
``fastcka/protocol.py`` and is re-exported here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ._callable_module import make_module_callable
from ._eval_table import (  # noqa: F401  (_same_rows re-exported for the tests)
    COLUMNS,
    KEY,
    EvalTable,
    _normalise,
    _same_rows,
    read_table,
)
from .backend import check_matrix
from .errors import InputError
from .protocol import (
    DIRECTIONS,
    FAQ_MAXITER,
    FAQ_TOL,
    N_DRAWS,
    N_QUERIES,
    N_RESTARTS,
    SEED_GRID,
    MatchRun,
    draw_split,
    match_run,
    query_scores,
    rank_queries,
)

__all__ = ["evaluate", "EvalTable", "Cell", "plan", "prepare", "evaluate_cell", "parse_methods",
           "draw_split", "match_run", "MatchRun", "query_scores", "rank_queries",
           "read_table", "COLUMNS", "METHOD_CHOICES", "DIRECTIONS"]

DEFAULT_SEEDS = SEED_GRID
# method token -> list of (method, kernel, sigma) variants
METHOD_CHOICES: dict[str, list[tuple[str, str, str]]] = {
    "faq": [("faq", "rbf", "paper"), ("faq", "linear", "")],
    "faq:rbf": [("faq", "rbf", "paper")],
    "faq:linear": [("faq", "linear", "")],
    "local-cka": [("local-cka", "linear", ""), ("local-cka", "rbf", "paper"),
                  ("local-cka", "rbf", "base")],
    "local-cka:linear": [("local-cka", "linear", "")],
    "local-cka:rbf": [("local-cka", "rbf", "paper")],
    "local-cka:rbf-base": [("local-cka", "rbf", "base")],
    "linreg": [("linreg", "", "")],
    "relative": [("relative", "", "")],
    "cosine": [("cosine", "", "")],
}


@dataclass(frozen=True)
class Cell:
    """One grid cell: a method variant run on one (n_seeds, draw, direction)."""

    method: str
    kernel: str
    sigma: str
    n_seeds: int
    draw: int
    direction: str

    @property
    def key(self) -> tuple:
        return (self.method, self.kernel, self.sigma, int(self.n_seeds), int(self.draw),
                self.direction)


def parse_methods(methods: str | Iterable[str],
                  choices: dict[str, list[tuple[str, str, str]]] | None = None
                  ) -> list[tuple[str, str, str]]:
    """Method tokens (``"faq,local-cka,linreg"`` or a list) -> (method, kernel, sigma) variants
    (of :data:`METHOD_CHOICES`, or of ``choices``)."""
    choices = METHOD_CHOICES if choices is None else choices
    toks = [t.strip().lower() for t in (methods.split(",") if isinstance(methods, str)
                                        else methods)]
    toks = [t for t in toks if t]
    if not toks:
        raise InputError("no methods given")
    out: list[tuple[str, str, str]] = []
    for t in toks:
        if t not in choices:
            raise InputError(f"unknown method {t!r}; choose from {', '.join(choices)}")
        for v in choices[t]:
            if v not in out:
                out.append(v)
    return out


def _int_list(values: Any, what: str, minimum: int) -> list[int]:
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    if isinstance(values, (int, np.integer)):
        values = [values]
    try:
        out = [int(v) for v in values]
    except (TypeError, ValueError):
        raise InputError(f"{what} must be integers, got {values!r}") from None
    if not out:
        raise InputError(f"no {what} given")
    bad = [v for v in out if v < minimum]
    if bad:
        raise InputError(f"{what} must be at least {minimum}, got {bad[0]}")
    if len(set(out)) != len(out):
        raise InputError(f"{what} repeat a value: {out}")
    return out


def _draw_list(draws: Any) -> list[int]:
    if isinstance(draws, (int, np.integer)) and not isinstance(draws, bool):
        if draws < 1:
            raise InputError(f"draws must be at least 1, got {draws}")
        return list(range(int(draws)))
    return _int_list(draws, "draws", 0)


def _directions(directions: Any) -> list[str]:
    if isinstance(directions, str):
        directions = list(DIRECTIONS) if directions == "both" else directions.split(",")
    out = [str(d).strip() for d in directions]
    bad = [d for d in out if d not in DIRECTIONS]
    if bad or not out:
        raise InputError(f"direction must be one of {', '.join(DIRECTIONS)} or 'both', "
                         f"got {bad[0] if bad else directions!r}")
    return list(dict.fromkeys(out))


def plan(methods: Any, seeds: Any, draws: Any, directions: Any) -> list[Cell]:
    """The grid as a list of independent cells, in the order :func:`evaluate` runs them."""
    variants = parse_methods(methods)
    ks = _int_list(seeds, "seed counts", 1)
    ds = _draw_list(draws)
    dirs = _directions(directions)
    if any(m != "faq" for m, _, _ in variants) and min(ks) < 4:
        raise InputError(f"local CKA and the baselines need at least 4 seeds, got {min(ks)}")
    return [Cell(m, kern, sig, k, d, di) for d in ds for k in ks for di in dirs
            for (m, kern, sig) in variants]


# --------------------------------------------------------------------------------------------
# draws
# --------------------------------------------------------------------------------------------

@dataclass
class Prepared:
    """The paired data and every draw the grid needs (shared by all cells)."""

    S: np.ndarray            # query-side source rows (n, p)
    T: np.ndarray            # query-side target rows (n, q)
    BS: np.ndarray           # base-side source rows (the same arrays in-domain)
    BT: np.ndarray
    base: dict[int, np.ndarray]      # n_seeds -> base rows (into BS/BT)
    queries: dict[int, np.ndarray]   # draw -> query rows (into S/T)
    stretch: bool
    n_init: int
    maxiter: int
    tol: float
    device: str
    lap: str
    solver: Any = None
    assign: str = "dense"            # the score methods' assignment (match_run)
    candidates: int | None = None


def _pair(S: Any, T: Any, ids_S: Any, ids_T: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    Sx = np.asarray(check_matrix(S, f"{what} source", min_rows=2), dtype=np.float64)
    Tx = np.asarray(check_matrix(T, f"{what} target", min_rows=2), dtype=np.float64)
    if ids_S is None and ids_T is None:
        if len(Sx) != len(Tx):
            raise InputError(f"{what}: source and target must have the same number of rows "
                             f"(paired samples), got {len(Sx)} and {len(Tx)}")
        return Sx, Tx
    if ids_S is None or ids_T is None:
        raise InputError(f"{what}: give ids for both sides, or neither")
    from .store import common_rows

    rs, rt = common_rows(ids_S, ids_T)
    if len(rs) < 2:
        raise InputError(f"{what}: source and target share {len(rs)} ids")
    return Sx[rs], Tx[rt]


def _query_rows(n: int, pool: np.ndarray, q: int, d: int) -> np.ndarray:
    gen = np.random.default_rng(d)
    gen.permutation(n)                 # the base draw's step (draw 0 = the split of match alone)
    return gen.permutation(pool)[:q].astype(np.intp)


def prepare(S: Any, T: Any, *, seeds: Any = DEFAULT_SEEDS, queries: int = N_QUERIES, draws: Any = N_DRAWS,
            base: tuple | None = None, seed_strategy: str = "random", stretch: bool = False,
            n_init: int = N_RESTARTS, maxiter: int = FAQ_MAXITER, tol: float = FAQ_TOL, rng: int = 0,
            device: str = "auto", ids_S: Any = None, ids_T: Any = None, lap: str = "auto",
            solver: Any = None, assign: str = "dense", candidates: int | None = None) -> Prepared:
    """Pair the data and draw every base and query set of the grid (see the module notes)."""
    from .protocol import kmeans_seeds

    if seed_strategy not in ("random", "kmeans"):
        raise InputError(f"seed strategy must be 'random' or 'kmeans', got {seed_strategy!r}")
    if isinstance(n_init, bool) or not isinstance(n_init, (int, np.integer)) or n_init < 1:
        raise InputError(f"n_init must be a positive integer, got {n_init!r}")
    if isinstance(rng, bool) or not isinstance(rng, (int, np.integer)):
        raise InputError(f"rng must be an integer seed (the base draw), got {rng!r}")
    ks = _int_list(seeds, "seed counts", 1)
    ds = _draw_list(draws)
    if isinstance(queries, bool) or not isinstance(queries, (int, np.integer)) or queries < 1:
        raise InputError(f"queries must be a positive integer, got {queries!r}")
    Sx, Tx = _pair(S, T, ids_S, ids_T, "queries")
    n = len(Sx)
    kmax = max(ks)
    if base is None:
        BS, BT = Sx, Tx
        nb = n
    else:
        if len(base) not in (2, 4):
            raise InputError("base must be (BS, BT) or (BS, BT, ids_BS, ids_BT)")
        BS, BT = _pair(base[0], base[1], *(base[2:] if len(base) == 4 else (None, None)), "base")
        nb = len(BS)
        if BS.shape[1] != Sx.shape[1] or BT.shape[1] != Tx.shape[1]:
            raise InputError(f"base and query sets must have the same dimensions per side, got "
                             f"{BS.shape[1]}/{BT.shape[1]} (base) and {Sx.shape[1]}/{Tx.shape[1]}")
    if kmax >= nb:
        raise InputError(f"{kmax} seeds need more than the {nb} available base pairs")
    perm = np.random.default_rng(int(rng)).permutation(nb)
    if seed_strategy == "kmeans":
        base_rows = {k: np.asarray(kmeans_seeds(BS, k, int(rng)), dtype=np.intp) for k in ks}
        used = np.unique(np.concatenate(list(base_rows.values())))
    else:
        base_rows = {k: perm[:k].astype(np.intp) for k in ks}
        used = perm[:kmax]
    pool = np.arange(n) if base is not None else np.setdiff1d(np.arange(n), used)
    if queries > pool.size:
        raise InputError(f"{queries} queries + {kmax} seeds need more than the {n} pairs"
                         if base is None else f"{queries} queries need more than the {n} pairs")
    qrows = {d: _query_rows(n, pool, int(queries), d) for d in ds}
    from ._sparse_assign import check_assign

    return Prepared(Sx, Tx, BS, BT, base_rows, qrows, bool(stretch), int(n_init), int(maxiter),
                    float(tol), device, lap, solver, *check_assign(assign, candidates))


def check_cells(cells: Sequence[Cell], prep: Prepared) -> None:
    """Refuse a grid the data cannot run (before any cell is computed)."""
    if any(c.method == "cosine" for c in cells) and prep.S.shape[1] != prep.T.shape[1]:
        raise InputError(f"method 'cosine' needs source and target of the same dimension, got "
                         f"{prep.S.shape[1]} and {prep.T.shape[1]}: use linreg, relative or "
                         f"local-cka")


def _stretch(X: np.ndarray) -> np.ndarray:
    sd = X.std(axis=0)
    return X / np.where(sd > 0, sd, 1.0)


def cell_points(prep: Prepared, cell: Cell) -> tuple[np.ndarray, np.ndarray, int]:
    """The cell's source and target points ``[base ; queries]`` (in its direction) and m, its
    number of seeds."""
    b = prep.base[cell.n_seeds]
    qr = prep.queries[cell.draw]
    X = np.concatenate([prep.BS[b], prep.S[qr]])
    Y = np.concatenate([prep.BT[b], prep.T[qr]])
    if cell.direction == "tgt-to-src":
        X, Y = Y, X
    return X, Y, len(b)


def evaluate_cell(prep: Prepared, cell: Cell) -> dict[str, Any]:
    """One row of the table: run ``cell`` on the prepared draws (:func:`match_run` on the
    cell's points; top-k retrieval of the score methods' q × q scores)."""
    from .backend import NUMPY_BACKEND
    from .cka import cka
    from .retrieval import MatrixScorer, rank, topk_accuracy

    t0 = time.perf_counter()
    X, Y, m = cell_points(prep, cell)
    q = len(X) - m
    row: dict[str, Any] = {c: (math.nan if t == "f" else "") for c, t in COLUMNS.items()}
    row.update(asdict(cell))
    row["n_queries"] = q
    row["n_init"] = prep.n_init if cell.method == "faq" else 0
    seeds, queries = np.arange(m), np.arange(m, m + q)
    if cell.method == "faq":
        res = match_run(X, Y, seeds, queries, kernel=cell.kernel, sigma=cell.sigma or "paper",
                        n_init=prep.n_init, maxiter=prep.maxiter, tol=prep.tol,
                        stretch=prep.stretch, rng=cell.draw, device=prep.device, lap=prep.lap,
                        solver=prep.solver)
        row["accuracy"] = float(res.accuracy)
        row["objective"] = float(res.objective)
    else:
        if prep.stretch:
            X, Y = _stretch(X), _stretch(Y)
        if cell.method == "cosine" and X.shape[1] != Y.shape[1]:
            raise InputError(f"method 'cosine' needs source and target of the same dimension, got "
                             f"{X.shape[1]} and {Y.shape[1]}")
        res = match_run(X, Y, seeds, queries, method=cell.method,
                        kernel=cell.kernel or "linear", sigma=cell.sigma or "paper",
                        device=prep.device, assign=prep.assign, candidates=prep.candidates)
        acc = (topk_accuracy(res.topk["src_to_tgt_indices"], (1, 5, 10)) if res.scores_qq is None
               else rank(MatrixScorer(res.scores_qq, NUMPY_BACKEND, False),
                         k=10).accuracy["src-to-tgt"])  # scores of checked inputs
        row.update(top1=acc[1], top5=acc[5], top10=acc[10])
        row["accuracy"] = float(res.accuracy)
    if prep.stretch and cell.method == "faq":
        X, Y = _stretch(X), _stretch(Y)
    if m >= 4:
        row["seed_cka"] = float(cka(X[:m], Y[:m], kernel="rbf", sigma="paper", device="cpu"))
        row["seed_cka_linear"] = float(cka(X[:m], Y[:m], kernel="linear", device="cpu"))
    row["seconds"] = time.perf_counter() - t0
    return row


def _cell_task(prep: Prepared, cell: Cell) -> dict[str, Any]:
    return evaluate_cell(prep, cell)


def evaluate(S: Any, T: Any, *, methods: Any = ("faq", "local-cka", "linreg", "relative"),
             seeds: Any = DEFAULT_SEEDS, queries: int = N_QUERIES, draws: Any = N_DRAWS,
             directions: Any = ("src-to-tgt",), base: tuple | None = None,
             seed_strategy: str = "random", stretch: bool = False, n_init: int = N_RESTARTS,
             maxiter: int = FAQ_MAXITER, tol: float = FAQ_TOL, rng: int = 0, device: str = "auto",
             ids_S: Any = None, ids_T: Any = None, lap: str = "auto", solver: Any = None,
             assign: str = "dense", candidates: int | None = None,
             done: Iterable[dict[str, Any]] = (),
             on_row: Callable[[dict[str, Any]], None] | None = None,
             progress: Callable[[int, int, Cell], None] | None = None,
             scheduler: Any = None, cells: Sequence[Cell] | None = None) -> EvalTable:
    """Run the paper's protocol over a grid and return the tidy table (one row per cell).

    Parameters
    ----------
    S, T : (n, p), (n, q) array_like
        Source (e.g. text) and target (e.g. image) embeddings, paired by row, or by id with
        ``ids_S``/``ids_T``.  The queries always come from these.
    methods : str or list of str
        Tokens of :data:`METHOD_CHOICES`: ``faq`` (rbf paper-σ and linear kernels; ``faq:rbf``,
        ``faq:linear`` for one), ``local-cka`` (linear, rbf paper-σ, rbf base-σ; or one of
        ``local-cka:linear|rbf|rbf-base``), ``linreg``, ``relative``, ``cosine`` (equal
        dimensions only).
    seeds : list of int
        Seed counts (nested sets, see the module notes).
    queries : int
        Query pairs per draw.
    draws : int or list of int
        ``3`` means the query draws 0, 1, 2.
    directions : "both", "src-to-tgt", "tgt-to-src" or a list of them
    base : (BS, BT) or (BS, BT, ids_BS, ids_BT), optional
        Cross-domain: the seed pairs come from this second pair of sets.
    seed_strategy : {"random", "kmeans"}
    stretch : bool
    n_init, maxiter, tol, lap, solver
        FAQ options (see :func:`fastcka.seeded_match`).
    assign, candidates
        The score methods' assignment (see :func:`match_run`): ``"dense"`` (default), ``"sparse"``
        (top-``candidates`` graph; top-1/5/10 from the same streamed lists) or ``"auto"``.
    rng : int
        Seed of the base draw (the paper: 0).
    device : {"auto", "cpu", "gpu"}
    done : rows already computed (e.g. by an interrupted run); their cells are not recomputed.
    on_row : called with each new row as soon as its cell finishes (to journal it).
    progress : called as ``progress(i, total, cell)`` before each cell.
    scheduler : None, str or fastcka.parallel.Executor
        Run the cells as tasks of a Dask cluster (one task per cell, the prepared data sent
        once per worker, see :mod:`fastcka.parallel`); the rows are the in-process ones (but
        for ``seconds``), and ``on_row`` is called for each once all have come back.
    cells : list of Cell, optional
        Run only these cells of the grid (e.g. one job-array shard's, ``fastcka eval
        --shard``); the table holds their rows, in grid order, and the grid's metadata.

    Returns
    -------
    EvalTable
        Columns :data:`COLUMNS`; ``accuracy`` is the matching accuracy (FAQ's matching, or the
        linear assignment on the scores), ``top1/5/10`` retrieval of the score methods,
        ``objective`` FAQ's (the CKA under the matching), ``seed_cka``/``seed_cka_linear`` the
        rbf (paper σ) and linear CKA of the cell's seed sets.  NaN where not applicable.
    """
    cells = _grid_cells(plan(methods, seeds, draws, directions), cells)
    prep = prepare(S, T, seeds=seeds, queries=queries, draws=draws, base=base,
                   seed_strategy=seed_strategy, stretch=stretch, n_init=n_init, maxiter=maxiter,
                   tol=tol, rng=rng, device=device, ids_S=ids_S, ids_T=ids_T, lap=lap,
                   solver=solver, assign=assign, candidates=candidates)
    check_cells(cells, prep)
    have = {tuple(r[c] for c in KEY): r for r in (_normalise(r) for r in done)}
    if scheduler not in (None, "none"):
        rows = _run_cells_on(scheduler, prep, cells, have, on_row)
    else:
        rows = _run_cells_here(prep, cells, have, on_row, progress)
    meta = {"queries": int(queries), "seeds": _int_list(seeds, "seed counts", 1),
            "draws": _draw_list(draws), "seed_strategy": seed_strategy, "stretch": bool(stretch),
            "n_init": int(n_init), "base_seed": int(rng), "cross_domain": base is not None,
            "n_pairs": int(len(prep.S))}
    if prep.assign != "dense":
        meta.update(assign=prep.assign, candidates=prep.candidates)
    return EvalTable(rows, meta)


def _grid_cells(grid: list[Cell], cells: Sequence[Cell] | None) -> list[Cell]:
    """The cells of ``grid`` to run: all, or those of ``cells`` (a shard's), in grid order."""
    if cells is None:
        return grid
    keys = {c.key for c in cells}
    return [c for c in grid if c.key in keys]


def _run_cells_on(scheduler: Any, prep: Prepared, cells: list[Cell], have: dict,
                  on_row: Callable[[dict[str, Any]], None] | None) -> list[dict[str, Any]]:
    """The rows of ``cells`` computed as tasks of ``scheduler`` (those in ``have`` reused);
    ``on_row`` sees each new row once all have come back."""
    from .parallel import executor

    todo = [c for c in cells if c.key not in have]
    with executor(scheduler) as ex:
        got = dict(zip([c.key for c in todo],
                       ex.map(_cell_task, [(c,) for c in todo], shared=prep), strict=True))
    rows = []
    for cell in cells:
        if cell.key not in have and on_row is not None:
            on_row(got[cell.key])
        rows.append(have[cell.key] if cell.key in have else got[cell.key])
    return rows


def _run_cells_here(prep: Prepared, cells: list[Cell], have: dict,
                    on_row: Callable[[dict[str, Any]], None] | None,
                    progress: Callable[[int, int, Cell], None] | None) -> list[dict[str, Any]]:
    """The rows of ``cells`` computed in this process, in order (those in ``have`` reused)."""
    rows = []
    for i, cell in enumerate(cells):
        if cell.key in have:
            rows.append(have[cell.key])
            continue
        if progress is not None:
            progress(i, len(cells), cell)
        row = evaluate_cell(prep, cell)
        if on_row is not None:
            on_row(row)
        rows.append(row)
    return rows


make_module_callable(__name__, evaluate)
