"""Seed/query selection for the paper's protocol (METHOD §2–§3), shared by matching and retrieval.

Rows of the two aligned sides are indexed ``0..n-1`` (row ``i`` of the source is the true partner of
row ``i`` of the target).  A *seed* pair is known to the algorithm; a *query* pair is to be recovered.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .backend import as_rng
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
