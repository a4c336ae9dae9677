"""The paper's experiments as one library call: a grid of matching/retrieval runs, a tidy table.

:func:`evaluate` pairs two embedding sets by row (or by id), draws the seed (base) and query sets
exactly as the reference code does (METHOD §2–§3), runs every method on every cell of the grid
(method × n_seeds × draw × direction) and returns an :class:`EvalTable`, one row per cell.

Protocol
--------
- The base is drawn **once** with ``rng`` (default seed 0): a random permutation of the pairs
  whose first ``max(seeds)`` rows are the base; the cell with ``k`` seeds takes the first ``k``
  of them, so seed sets are nested across counts (the 10 seeds are the first 10 of the 20).
  ``seed_strategy="kmeans"`` instead takes, for each count k, the source rows nearest (cosine) to
  k-means centroids (k clusters, seeded by ``rng``); then the sets are not nested.
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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ._callable_module import make_module_callable
from ._validation import check_matrix
from .errors import InputError

__all__ = ["evaluate", "EvalTable", "Cell", "plan", "prepare", "evaluate_cell", "parse_methods",
           "read_table", "COLUMNS", "METHOD_CHOICES", "DIRECTIONS"]

DIRECTIONS = ("src-to-tgt", "tgt-to-src")
DEFAULT_SEEDS = (10, 20, 40, 80, 160, 320)
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
# the table's columns: name -> type ("s" string, "i" int, "f" float; NaN = not applicable)
COLUMNS: dict[str, str] = {
    "method": "s", "kernel": "s", "sigma": "s", "n_seeds": "i", "draw": "i", "direction": "s",
    "accuracy": "f", "top1": "f", "top5": "f", "top10": "f", "objective": "f",
    "seed_cka": "f", "seed_cka_linear": "f", "n_queries": "i", "n_init": "i", "seconds": "f",
}
KEY = ("method", "kernel", "sigma", "n_seeds", "draw", "direction")


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


def parse_methods(methods: str | Iterable[str]) -> list[tuple[str, str, str]]:
    """Method tokens (``"faq,local-cka,linreg"`` or a list) -> (method, kernel, sigma) variants."""
    toks = [t.strip().lower() for t in (methods.split(",") if isinstance(methods, str)
                                        else methods)]
    toks = [t for t in toks if t]
    if not toks:
        raise InputError("no methods given")
    out: list[tuple[str, str, str]] = []
    for t in toks:
        if t not in METHOD_CHOICES:
            raise InputError(f"unknown method {t!r}; choose from {', '.join(METHOD_CHOICES)}")
        for v in METHOD_CHOICES[t]:
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
    ids_S = [str(i) for i in ids_S]
    pos = {str(v): i for i, v in enumerate(ids_T)}
    common = [i for i, v in enumerate(ids_S) if v in pos]
    if len(common) < 2:
        raise InputError(f"{what}: source and target share {len(common)} ids")
    return Sx[common], Tx[[pos[ids_S[i]] for i in common]]


def _query_rows(n: int, pool: np.ndarray, q: int, d: int) -> np.ndarray:
    gen = np.random.default_rng(d)
    gen.permutation(n)                 # the base draw's step (draw 0 = the split of match alone)
    return gen.permutation(pool)[:q].astype(np.intp)


def prepare(S: Any, T: Any, *, seeds: Any = DEFAULT_SEEDS, queries: int = 500, draws: Any = 3,
            base: tuple | None = None, seed_strategy: str = "random", stretch: bool = False,
            n_init: int = 500, maxiter: int = 30, tol: float = 1e-5, rng: int = 0,
            device: str = "auto", ids_S: Any = None, ids_T: Any = None, lap: str = "auto",
            solver: Any = None) -> Prepared:
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
    return Prepared(Sx, Tx, BS, BT, base_rows, qrows, bool(stretch), int(n_init), int(maxiter),
                    float(tol), device, lap, solver)


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
    """The cell's source and target points ``[base ; queries]`` (in its direction) and k."""
    b = prep.base[cell.n_seeds]
    qr = prep.queries[cell.draw]
    X = np.concatenate([prep.BS[b], prep.S[qr]])
    Y = np.concatenate([prep.BT[b], prep.T[qr]])
    if cell.direction == "tgt-to-src":
        X, Y = Y, X
    return X, Y, len(b)


def evaluate_cell(prep: Prepared, cell: Cell) -> dict[str, Any]:
    """One row of the table: run ``cell`` on the prepared draws."""
    from .cka import cka
    from .retrieval import match_scores, retrieve, score_matrix

    t0 = time.perf_counter()
    X, Y, k = cell_points(prep, cell)
    q = len(X) - k
    row: dict[str, Any] = {c: (math.nan if t == "f" else "") for c, t in COLUMNS.items()}
    row.update(asdict(cell))
    row["n_queries"] = q
    row["n_init"] = prep.n_init if cell.method == "faq" else 0
    if cell.method == "faq":
        from .seeded import seeded_match

        res = seeded_match(X, Y, seeds=np.arange(k), queries=np.arange(k, k + q),
                           kernel=cell.kernel, sigma=cell.sigma or "paper", n_init=prep.n_init,
                           maxiter=prep.maxiter, tol=prep.tol, stretch=prep.stretch,
                           rng=cell.draw, device=prep.device, lap=prep.lap, solver=prep.solver)
        row["accuracy"] = float(res.accuracy)
        row["objective"] = float(res.objective)
    else:
        if prep.stretch:
            X, Y = _stretch(X), _stretch(Y)
        if cell.method == "cosine" and X.shape[1] != Y.shape[1]:
            raise InputError(f"method 'cosine' needs source and target of the same dimension, got "
                             f"{X.shape[1]} and {Y.shape[1]}")
        Sc = np.asarray(score_matrix(cell.method, X[k:], Y[k:], X[:k], Y[:k],
                                     kernel=cell.kernel or "linear", sigma=cell.sigma or "paper",
                                     device=prep.device))
        Sc = Sc.get() if type(Sc).__module__.startswith("cupy") else Sc
        r = retrieve(Sc, k=10)
        acc = r.accuracy["source_to_target"]
        row.update(top1=acc[1], top5=acc[5], top10=acc[10])
        col = match_scores(Sc)
        row["accuracy"] = float(np.mean(col == np.arange(q)))
    if prep.stretch and cell.method == "faq":
        X, Y = _stretch(X), _stretch(Y)
    if k >= 4:
        row["seed_cka"] = float(cka(X[:k], Y[:k], kernel="rbf", sigma="paper", device="cpu"))
        row["seed_cka_linear"] = float(cka(X[:k], Y[:k], kernel="linear", device="cpu"))
    row["seconds"] = time.perf_counter() - t0
    return row


# --------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------

def _normalise(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for c, t in COLUMNS.items():
        v = row.get(c)
        if t == "s":
            out[c] = "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
        elif t == "i":
            out[c] = int(v)
        else:
            out[c] = math.nan if v is None or v == "" else float(v)
    return out


class EvalTable:
    """A tidy table, one row per grid cell (columns: :data:`COLUMNS`), plus its metadata."""

    def __init__(self, rows: Sequence[dict[str, Any]], meta: dict[str, Any] | None = None):
        self.rows = [_normalise(r) for r in rows]
        self.meta = dict(meta or {})

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def column(self, name: str) -> np.ndarray:
        return np.asarray([r[name] for r in self.rows])

    def keys(self) -> list[tuple]:
        return [tuple(r[c] for c in KEY) for r in self.rows]

    def sorted(self) -> EvalTable:
        return EvalTable(sorted(self.rows, key=lambda r: tuple(r[c] for c in KEY)), self.meta)

    def select(self, **where: Any) -> EvalTable:
        return EvalTable([r for r in self.rows if all(r[k] == v for k, v in where.items())],
                         self.meta)

    def summary(self) -> list[dict[str, Any]]:
        """Mean and standard deviation over draws per (method, kernel, sigma, n_seeds, direction)."""
        groups: dict[tuple, list[dict]] = {}
        for r in self.rows:
            groups.setdefault(tuple(r[c] for c in KEY if c != "draw"), []).append(r)
        out = []
        for key, rs in groups.items():
            s = dict(zip([c for c in KEY if c != "draw"], key, strict=True))
            s["draws"] = len(rs)
            for c in ("accuracy", "top1", "top5", "top10", "objective", "seed_cka", "seconds"):
                v = np.asarray([r[c] for r in rs], dtype=np.float64)
                s[c] = float(v.mean()) if v.size and not np.isnan(v).all() else math.nan
                s[c + "_std"] = float(v.std()) if v.size and not np.isnan(v).all() else math.nan
            out.append(s)
        return out

    def write(self, path: str) -> None:
        """Write atomically as .csv/.tsv/.json/.h5 (by suffix)."""
        from ._table import write_rows

        write_rows(path, self.rows, meta=self.meta)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EvalTable) and _same_rows(self.rows, other.rows)

    def __repr__(self) -> str:
        return f"EvalTable({len(self.rows)} rows)"


def _same_rows(a: list[dict], b: list[dict], skip: tuple[str, ...] = ()) -> bool:
    if len(a) != len(b):
        return False
    for r, s in zip(a, b, strict=True):
        for c in COLUMNS:
            if c in skip:
                continue
            x, y = r[c], s[c]
            if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
                continue
            if x != y:
                return False
    return True


def read_table(path: str) -> EvalTable:
    """Read a table written by :meth:`EvalTable.write` (CSV, TSV, JSON or HDF5)."""
    from ._table import read_rows

    rows, meta = read_rows(path)
    missing = [c for c in KEY if rows and c not in rows[0]]
    if missing:
        raise InputError(f"{path}: not an evaluation table (no column {missing[0]!r})")
    return EvalTable(rows, meta)


def _cell_task(prep: Prepared, cell: Cell) -> dict[str, Any]:
    return evaluate_cell(prep, cell)


def evaluate(S: Any, T: Any, *, methods: Any = ("faq", "local-cka", "linreg", "relative"),
             seeds: Any = DEFAULT_SEEDS, queries: int = 500, draws: Any = 3,
             directions: Any = ("src-to-tgt",), base: tuple | None = None,
             seed_strategy: str = "random", stretch: bool = False, n_init: int = 500,
             maxiter: int = 30, tol: float = 1e-5, rng: int = 0, device: str = "auto",
             ids_S: Any = None, ids_T: Any = None, lap: str = "auto", solver: Any = None,
             done: Iterable[dict[str, Any]] = (),
             on_row: Callable[[dict[str, Any]], None] | None = None,
             progress: Callable[[int, int, Cell], None] | None = None,
             scheduler: Any = None) -> EvalTable:
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

    Returns
    -------
    EvalTable
        Columns :data:`COLUMNS`; ``accuracy`` is the matching accuracy (FAQ's matching, or the
        linear assignment on the scores), ``top1/5/10`` retrieval of the score methods,
        ``objective`` FAQ's (the CKA under the matching), ``seed_cka``/``seed_cka_linear`` the
        rbf (paper σ) and linear CKA of the cell's seed sets.  NaN where not applicable.
    """
    cells = plan(methods, seeds, draws, directions)
    prep = prepare(S, T, seeds=seeds, queries=queries, draws=draws, base=base,
                   seed_strategy=seed_strategy, stretch=stretch, n_init=n_init, maxiter=maxiter,
                   tol=tol, rng=rng, device=device, ids_S=ids_S, ids_T=ids_T, lap=lap,
                   solver=solver)
    check_cells(cells, prep)
    have = {tuple(r[c] for c in KEY): r for r in (_normalise(r) for r in done)}
    rows = []
    if scheduler not in (None, "none"):
        from .parallel import executor

        todo = [c for c in cells if c.key not in have]
        with executor(scheduler) as ex:
            got = dict(zip([c.key for c in todo],
                           ex.map(_cell_task, [(c,) for c in todo], shared=prep), strict=True))
        for cell in cells:
            if cell.key not in have and on_row is not None:
                on_row(got[cell.key])
            rows.append(have[cell.key] if cell.key in have else got[cell.key])
        cells = []
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
    meta = {"queries": int(queries), "seeds": _int_list(seeds, "seed counts", 1),
            "draws": _draw_list(draws), "seed_strategy": seed_strategy, "stretch": bool(stretch),
            "n_init": int(n_init), "base_seed": int(rng), "cross_domain": base is not None,
            "n_pairs": int(len(prep.S))}
    return EvalTable(rows, meta)


make_module_callable(__name__, evaluate)
