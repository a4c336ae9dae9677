"""Retrieval and matching from cross-modal scores: local CKA and the paper's baselines.

Methods (METHOD.md §3), all scoring source queries against target queries given paired base
(seed) sets ``Sb``, ``Tb``:

``local-cka``
    :func:`fastcka.local_cka` (``kernel``, ``sigma``).
``linreg``
    least-squares linear map ``W = argmin |Sb W - Tb|_F`` (no intercept), then the cosine
    between ``Sq W`` and ``Tq``.
``relative``
    relative representations (Moschella et al. 2023): each query becomes its vector of cosine
    similarities to the base anchors of its side; then the cosine between those vectors.
``cosine``
    plain cosine between ``Sq`` and ``Tq`` (same dimension only).

Every method is a *scorer* with ``block(rows, cols)``, so :func:`retrieve` can stream blocks and
keep a running top-k in both directions without ever holding the q_s x q_t matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import config
from ._local_cka import LocalCKAScorer
from ._local_cka_helpers import check_inputs, check_kernel_sigma
from ._topk import (  # noqa: F401  (public names of this module)
    FORMER_KEYS,
    TOPK_KEYS,
    DirectionDict,
    _block,
    merge_topk_parts,
    row_blocks,
    score_rows,
    topk_rows,
    topk_stream,
    warn_renamed,
)
from .backend import check_matrix, get_backend, is_cupy_array
from .errors import InputError

METHODS = ("local-cka", "linreg", "relative", "cosine")
DEFAULT_KS = (1, 5, 10)
_BLOCK = config.RETRIEVAL_BLOCK  # the default block (read at call time: config)


def _check_method(method: str) -> str:
    if not isinstance(method, str):
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    m = method.lower().replace("_", "-")
    if m == "localcka":
        m = "local-cka"
    if m not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return m


class FactorScorer:
    """Scores ``left @ right.T`` (cosine-type baselines): rows of ``left``/``right`` unit norm."""

    def __init__(self, left, right, be, return_gpu):
        self.left, self.right, self.be, self.return_gpu = left, right, be, return_gpu
        self.shape = (left.shape[0], right.shape[0])

    def block(self, rows=slice(None), cols=slice(None)):
        return self.left[rows] @ self.right[cols].T

    def full(self):
        return self.block()

    def output(self, a):
        return a if self.return_gpu else self.be.to_host(a)


class MatrixScorer:
    """A precomputed score matrix seen through the scorer interface."""

    def __init__(self, scores, be, return_gpu):
        self.S, self.be, self.return_gpu = scores, be, return_gpu
        self.shape = tuple(scores.shape)

    def block(self, rows=slice(None), cols=slice(None)):
        return self.S[rows][:, cols]

    def full(self):
        return self.S

    def output(self, a):
        return a if self.return_gpu else self.be.to_host(a)


def _unit_rows(X, xp):
    n = xp.sqrt((X * X).sum(axis=1))
    n = xp.where(n > 0, n, 1.0)  # a zero row scores 0 against everything
    return X / n[:, None]


def make_scorer(method: str, Sq, Tq, Sb, Tb, *, kernel: str = "linear", sigma: Any = "paper",
                device: str = "auto"):
    """The scorer of one method (``block(rows, cols)`` gives exact score blocks)."""
    method = _check_method(method)
    if method == "local-cka":
        return LocalCKAScorer(Sq, Tq, Sb, Tb, kernel=kernel, sigma=sigma, device=device)
    be = get_backend(Sq, Tq, Sb, Tb, device=device)
    ret_gpu = any(is_cupy_array(a) for a in (Sq, Tq, Sb, Tb))
    xp = be.xp
    Sq, Tq, Sb, Tb = check_inputs(Sq, Tq, Sb, Tb, xp)
    if method == "cosine":
        if Sq.shape[1] != Tq.shape[1]:
            raise InputError(f"method 'cosine' needs source and target of the same dimension, "
                             f"got {Sq.shape[1]} and {Tq.shape[1]}: use linreg, relative or "
                             f"local-cka")
        return FactorScorer(_unit_rows(Sq, xp), _unit_rows(Tq, xp), be, ret_gpu)
    if method == "linreg":
        W = xp.linalg.lstsq(Sb, Tb, rcond=None)[0]
        return FactorScorer(_unit_rows(Sq @ W, xp), _unit_rows(Tq, xp), be, ret_gpu)
    # relative representations
    rs = _unit_rows(_unit_rows(Sq, xp) @ _unit_rows(Sb, xp).T, xp)
    rt = _unit_rows(_unit_rows(Tq, xp) @ _unit_rows(Tb, xp).T, xp)
    return FactorScorer(rs, rt, be, ret_gpu)


def score_matrix(method: str, Sq, Tq, Sb, Tb, *, kernel: str = "linear", sigma: Any = "paper",
                 device: str = "auto"):
    """The full q_s x q_t score matrix of one method.

    Parameters
    ----------
    method : {"local-cka", "linreg", "relative", "cosine"}
    Sq, Tq, Sb, Tb : arrays (q_s, d_s), (q_t, d_t), (p, d_s), (p, d_t)
        Source/target queries and the paired base (seed) sets (p >= 4).
    kernel, sigma
        Local CKA options (see :func:`fastcka.local_cka`); ignored by the baselines.
    device : {"auto", "cpu", "gpu"}

    Returns
    -------
    scores : (q_s, q_t) float64; NumPy unless an input was a CuPy array.  Higher = more alike.

    Notes
    -----
    Memory O(q_s q_t) for the output; use :func:`retrieve` with the inputs to stream top-k.
    """
    sc = make_scorer(method, Sq, Tq, Sb, Tb, kernel=kernel, sigma=sigma, device=device)
    return sc.output(sc.full())


# --------------------------------------------------------------------------------------------
# units of work: blocks of source queries (fastcka.parallel, --shard)
# --------------------------------------------------------------------------------------------

_SCORERS: dict[str, Any] = {}      # one scorer per worker process, reused by its tasks


def _scorer_of(inputs):
    token, method, Sq, Tq, Sb, Tb, kernel, sigma, device = inputs
    sc = _SCORERS.get(token)
    if sc is None:
        _SCORERS.clear()
        sc = _SCORERS[token] = make_scorer(method, Sq, Tq, Sb, Tb, kernel=kernel, sigma=sigma,
                                           device=device)
    return sc


def _rows_task(inputs, what, r0, r1, k, block):
    sc = _scorer_of(inputs)
    if what == "scores":
        return score_rows(sc, r0, r1, block=block)
    return topk_rows(sc, k, r0, r1, block=block)


def rows_units(what: str, method: str, Sq, Tq, Sb, Tb, ranges, *, kernel="linear",
               sigma="paper", device="cpu", k: int = 10, block: int | None = None, scheduler=None):
    """Run the row-range units ``ranges`` (whole blocks) where ``scheduler`` says.

    ``what="scores"``: the score rows of each range; ``"topk"``: the :func:`topk_rows` parts.
    The inputs travel once per worker; each worker builds the scorer once.
    """
    import uuid

    from .parallel import executor

    block = _block(block)
    inputs = (uuid.uuid4().hex, method, Sq, Tq, Sb, Tb, kernel, sigma, device)
    try:
        with executor(scheduler) as ex:
            return ex.map(_rows_task, [(what, r0, r1, k, block) for r0, r1 in ranges],
                          shared=inputs)
    finally:
        _SCORERS.pop(inputs[0], None)       # in-process runs keep no scorer behind


# --------------------------------------------------------------------------------------------
# retrieval metrics and matching
# --------------------------------------------------------------------------------------------

def _former_field(old: str) -> property:
    """A read-only alias of a renamed field that warns (``DeprecationWarning``)."""
    new = FORMER_KEYS[old]

    def get(self):
        warn_renamed(old, new)
        return getattr(self, new)

    return property(get, doc=f"Deprecated alias of ``{new}``.")


@dataclass
class RetrievalResult:
    """Top-k neighbours in both directions and top-k accuracies.

    Attributes
    ----------
    src_to_tgt_indices, src_to_tgt_scores : (q_s, k) ndarray
        For each source query, target indices by decreasing score, and the scores.
    tgt_to_src_indices, tgt_to_src_scores : (q_t, k) ndarray
        For each target query, source indices by decreasing score.
    accuracy : dict
        ``{"src-to-tgt": {k: acc}, "tgt-to-src": {k: acc}}`` for each k in ``ks`` (fraction
        of queries whose true partner is among the top k), keyed by
        :data:`fastcka.protocol.DIRECTIONS`.

    Notes
    -----
    The fields were formerly named ``s2t_*`` / ``t2s_*`` and the accuracy keys
    ``source_to_target`` / ``target_to_source``; those names still read (read-only), with a
    ``DeprecationWarning``.
    """

    src_to_tgt_indices: np.ndarray
    src_to_tgt_scores: np.ndarray
    tgt_to_src_indices: np.ndarray
    tgt_to_src_scores: np.ndarray
    accuracy: dict = field(default_factory=DirectionDict)

    def __repr__(self) -> str:
        from ._repr import compact_repr

        return compact_repr(self)

    # the former field names: read-only, deprecated
    s2t_indices = _former_field("s2t_indices")
    s2t_scores = _former_field("s2t_scores")
    t2s_indices = _former_field("t2s_indices")
    t2s_scores = _former_field("t2s_scores")

    def top(self, k: int, direction: str = "src-to-tgt") -> float:
        """Top-``k`` accuracy of ``direction`` (one of :data:`fastcka.protocol.DIRECTIONS`)."""
        return self.accuracy[direction][k]

    @property
    def top1(self) -> float:
        return self.accuracy["src-to-tgt"].get(1, float("nan"))

    @property
    def top5(self) -> float:
        return self.accuracy["src-to-tgt"].get(5, float("nan"))

    @property
    def top10(self) -> float:
        return self.accuracy["src-to-tgt"].get(10, float("nan"))

    def to_dict(self) -> dict:
        return {d: {f"top{k}": v for k, v in acc.items()} for d, acc in self.accuracy.items()}


def _hits(indices: np.ndarray, query_keys, cand_keys) -> np.ndarray:
    """(n, k) bool: whether the candidate at each rank is the row's true partner."""
    if query_keys is None:
        return indices == np.arange(indices.shape[0])[:, None]
    return cand_keys[indices] == query_keys[:, None]


def topk_accuracy(indices: np.ndarray, ks, *, query_keys=None, cand_keys=None) -> dict:
    """Fraction of rows whose true partner is within the first k columns of ``indices``.

    Ground truth: the diagonal (row i's partner is candidate i), or id equality
    ``cand_keys[j] == query_keys[i]`` when keys are given.
    """
    indices = np.asarray(indices)
    hit = _hits(indices, query_keys, cand_keys)
    first = np.where(hit.any(axis=1), hit.argmax(axis=1), np.iinfo(np.int64).max)
    n = max(1, indices.shape[0])
    return {int(k): float((first < k).sum() / n) for k in ks}


def retrieve(scores_or_inputs, *, k: int = 10, ks=DEFAULT_KS, method: str = "local-cka",
             kernel: str = "linear", sigma: Any = "paper", device: str = "auto",
             source_ids=None, target_ids=None, block: int | None = None,
             scheduler: Any = None) -> RetrievalResult:
    """Top-k retrieval in both directions, with top-k accuracies.

    Parameters
    ----------
    scores_or_inputs : array (q_s, q_t) or tuple ``(Sq, Tq, Sb, Tb)``
        A score matrix (higher = more alike), or the inputs of ``method``; inputs are scored
        in streamed blocks, so the q_s x q_t matrix is never held.
    k : int
        Neighbours returned per query (at least ``max(ks)`` are computed).
    ks : sequence of int
        Accuracies reported (default top-1/5/10).
    method, kernel, sigma, device
        Scoring options (see :func:`score_matrix`); used with inputs only.
    source_ids, target_ids : sequences, optional
        Ground truth by id equality; default: source i pairs with target i (needs q_s == q_t).
    block : int
        Block size of the streaming.
    scheduler : None, str or fastcka.parallel.Executor
        With inputs on the CPU: one task per block of source queries on a Dask cluster (see
        :mod:`fastcka.parallel`), the top-k lists merged exactly; the result is the in-process
        one.

    Returns
    -------
    RetrievalResult
        ``top1``/``top5``/``top10`` are src-to-tgt (the rows of ``Sq`` / of the scores rank
        the targets); both directions are in ``accuracy``.
    """
    k, ks, block = _check_options(k, ks, block)
    inputs = isinstance(scores_or_inputs, (tuple, list))
    if inputs:
        if len(scores_or_inputs) != 4:
            raise InputError("scores_or_inputs must be a score matrix or a tuple (Sq, Tq, Sb, Tb)")
        check_kernel_sigma(kernel, sigma)
        scorer = make_scorer(method, *scores_or_inputs, kernel=kernel, sigma=sigma,
                             device=device)
    else:
        be = get_backend(scores_or_inputs, device=device)
        S = check_matrix(scores_or_inputs, "scores", xp=be.xp, dtype=np.float64)
        scorer = MatrixScorer(S, be, is_cupy_array(scores_or_inputs))
    qs, qt = scorer.shape
    source_ids, target_ids = _check_ids(source_ids, target_ids, qs, qt)
    if scheduler in (None, "none") or not inputs:
        return rank(scorer, k=k, ks=ks, source_ids=source_ids, target_ids=target_ids,
                    block=block)
    if scorer.be.device != "cpu":
        raise InputError("retrieval on a Dask scheduler runs on CPU workers: use "
                         "device='cpu' (or no scheduler on a GPU)")
    res = merge_topk_parts(rows_units("topk", method, *scores_or_inputs, row_blocks(qs, block),
                                      kernel=kernel, sigma=sigma, device="cpu", k=max(k, *ks),
                                      block=block, scheduler=scheduler))
    return _result(scorer.be, res, k, ks, source_ids, target_ids)


def _check_options(k, ks, block) -> tuple[int, tuple[int, ...], int]:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    try:
        ks = tuple(int(x) for x in ks)
    except TypeError:
        raise InputError(f"ks must be a sequence of positive integers, got {ks!r}") from None
    if not ks or min(ks) < 1:
        raise InputError(f"ks must be positive integers, got {ks!r}")
    block = _block(block)
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise InputError(f"block must be a positive integer, got {block!r}")
    return int(k), ks, int(block)


def _check_ids(source_ids, target_ids, qs: int, qt: int):
    if (source_ids is None) != (target_ids is None):
        raise InputError("give both source_ids and target_ids, or neither")
    if source_ids is None and qs != qt:
        raise InputError(f"without ids the ground truth is the diagonal, which needs as many "
                         f"source as target queries, got {qs} and {qt}")
    if source_ids is not None:
        source_ids, target_ids = np.asarray(source_ids), np.asarray(target_ids)
        if source_ids.shape != (qs,) or target_ids.shape != (qt,):
            raise InputError(f"source_ids/target_ids must have {qs} and {qt} entries, got "
                             f"{source_ids.shape} and {target_ids.shape}")
    return source_ids, target_ids


def rank(scorer, *, k: int = 10, ks=DEFAULT_KS, source_ids=None, target_ids=None,
         block: int | None = None) -> RetrievalResult:
    """:func:`retrieve` of a scorer whose inputs are already checked (no second validation).

    For inner calls: e.g. ``rank(MatrixScorer(S, backend, False), k=10)`` on a score matrix
    the library just computed with :func:`score_matrix`.  ``ks`` a tuple of ints; ids, when
    given, NumPy arrays of the scorer's row / column counts.
    """
    res = topk_stream(scorer, max(int(k), *ks), block=block)
    return _result(scorer.be, res, k, ks, source_ids, target_ids)


def _result(be, res: dict, k: int, ks, source_ids, target_ids) -> RetrievalResult:
    host = {key: be.to_host(v) for key, v in res.items()}
    acc = DirectionDict({
        "src-to-tgt": topk_accuracy(host["src_to_tgt_indices"], ks, query_keys=source_ids,
                                    cand_keys=target_ids),
        "tgt-to-src": topk_accuracy(host["tgt_to_src_indices"], ks, query_keys=target_ids,
                                    cand_keys=source_ids),
    })
    kk = int(k)
    return RetrievalResult(host["src_to_tgt_indices"][:, :kk], host["src_to_tgt_scores"][:, :kk],
                           host["tgt_to_src_indices"][:, :kk], host["tgt_to_src_scores"][:, :kk],
                           acc)


def match_scores(scores) -> np.ndarray:
    """Maximising linear assignment (Hungarian) on a score matrix.

    Parameters
    ----------
    scores : (q_s, q_t) array (NumPy or CuPy)

    Returns
    -------
    col_ind : (q_s,) int64 ndarray
        The target matched to each source row; ``-1`` for rows left unmatched when
        ``q_s > q_t``.  Maximises the total score (scipy ``linear_sum_assignment``).
    """
    return assign(check_matrix(scores, "scores", dtype=np.float64))


def assign(S: np.ndarray) -> np.ndarray:
    """:func:`match_scores` of an already-checked float64 host matrix (no second validation)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(S, maximize=True)
    out = np.full(S.shape[0], -1, dtype=np.int64)
    out[rows] = cols
    return out


def matching_accuracy(col_ind, *, source_ids=None, target_ids=None) -> float:
    """Fraction of source rows matched to their true partner (diagonal or id equality)."""
    col_ind = np.asarray(col_ind)
    if source_ids is None:
        ok = col_ind == np.arange(col_ind.shape[0])
    else:
        tid = np.asarray(target_ids)
        ok = (col_ind >= 0) & (tid[np.clip(col_ind, 0, None)] == np.asarray(source_ids))
    return float(ok.mean()) if ok.size else float("nan")
