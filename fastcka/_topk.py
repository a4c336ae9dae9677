"""Streaming top-k over any scorer (``shape`` and ``block(rows, cols)``), in row ranges too.

Each score block is merged into the sorted top-k lists of its rows and of its columns by the
``"topk"`` kernel family (:mod:`fastcka.kernels`): one-pass Numba merges on the CPU, partial
selections on a GPU.  The q_s x q_t matrix is never held (unless it fits in one block).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import config
from ._progress import progress


def _block(block):
    """The block size of a call: ``block``, or :data:`fastcka.config.RETRIEVAL_BLOCK`."""
    return config.RETRIEVAL_BLOCK if block is None else block


def topk_stream(scorer, k: int, *, block: int | None = None, directions=("s2t", "t2s")):
    """Top-k in both directions by streaming score blocks.

    Parameters
    ----------
    scorer : object with ``shape`` and ``block(rows, cols)``
    k : int
        Neighbours kept per query (clipped to the other side's size).
    block : int
        Rows and columns per block.

    Returns
    -------
    dict with ``s2t_indices`` (q_s, k), ``s2t_scores``, ``t2s_indices`` (q_t, k),
    ``t2s_scores``: backend arrays, each row sorted by decreasing score.

    Notes
    -----
    Memory O(block^2 + (q_s + q_t) k) besides the scorer's factors; the q_s x q_t matrix is
    never formed (unless it fits in one block).  Ties at the k-th place are broken arbitrarily.
    """
    qs, qt = scorer.shape
    return _topk_stream(scorer, min(k, qt), min(k, qs), _block(block), directions)


def _topk_stream(scorer, ks, kt, block, directions, row_range=None):
    """Streaming: each score block merged into the sorted top-k lists of its rows and columns
    (the ``"topk"`` kernel family: one-pass Numba merges on the CPU, selections on a GPU).

    ``row_range=(r0, r1)`` (r0 a multiple of ``block``) streams only those source rows: the
    s2t lists of rows r0..r1-1 and every target's top-k among them (see :func:`topk_rows`).
    """
    be = scorer.be
    xp, ops = be.xp, be.ops("topk")
    qs, qt = scorer.shape
    r0, r1 = (0, qs) if row_range is None else row_range
    rv, ri = xp.full((r1 - r0, ks), -xp.inf), xp.full((r1 - r0, ks), -1, dtype=np.int64)
    cv, ci = xp.full((qt, kt), -xp.inf), xp.full((qt, kt), -1, dtype=np.int64)
    for i0 in progress(range(r0, r1, block), desc="retrieval blocks", unit="block"):
        rows = slice(i0 - r0, min(r1, i0 + block) - r0)
        srows = slice(i0, min(r1, i0 + block))
        for j0 in range(0, qt, block):
            cols = slice(j0, min(qt, j0 + block))
            S = xp.ascontiguousarray(scorer.block(srows, cols))
            if "s2t" in directions:
                ops.update_rows(S, j0, rv[rows], ri[rows])
            if "t2s" in directions:
                ops.update_cols(S, i0, cv[cols], ci[cols])
    out: dict[str, Any] = {}
    if "s2t" in directions:
        out["s2t_scores"], out["s2t_indices"] = rv, ri
    if "t2s" in directions:
        out["t2s_scores"], out["t2s_indices"] = cv, ci
    return out


def row_blocks(q: int, block: int | None = None) -> list[tuple[int, int]]:
    """The ``(r0, r1)`` row ranges of the streaming blocks of ``q`` source queries."""
    block = _block(block)
    return [(i, min(q, i + block)) for i in range(0, q, block)]


def topk_rows(scorer, k: int, r0: int, r1: int, *, block: int | None = None) -> dict:
    """The part of :func:`topk_stream` (CPU) that source rows ``r0..r1-1`` contribute.

    ``s2t_*``: the finished lists of those rows; ``t2s_*``: every target's top-k among them.
    ``r0`` must start a block; :func:`merge_topk_parts` puts the parts of consecutive ranges
    together exactly (the lists are ordered by decreasing score, then increasing index, as
    the in-process stream orders them).
    """
    qs, qt = scorer.shape
    return _topk_stream(scorer, min(k, qt), min(k, qs), _block(block), ("s2t", "t2s"), (r0, r1))


def merge_topk_parts(parts: list[dict]) -> dict:
    """Exact merge of :func:`topk_rows` parts given in row order: the :func:`topk_stream` dict."""
    s2t_v = np.concatenate([p["s2t_scores"] for p in parts], axis=0)
    s2t_i = np.concatenate([p["s2t_indices"] for p in parts], axis=0)
    kt = parts[0]["t2s_scores"].shape[1]
    cand_v = np.concatenate([p["t2s_scores"] for p in parts], axis=1)
    cand_i = np.concatenate([p["t2s_indices"] for p in parts], axis=1)
    # earlier parts hold smaller source indices: a stable sort on -score keeps ties in index
    # order, as the stream's merge does
    order = np.argsort(-cand_v, axis=1, kind="stable")[:, :kt]
    return {"s2t_scores": s2t_v, "s2t_indices": s2t_i,
            "t2s_scores": np.take_along_axis(cand_v, order, axis=1),
            "t2s_indices": np.take_along_axis(cand_i, order, axis=1)}


def score_rows(scorer, r0: int, r1: int, *, block: int | None = None):
    """Rows ``r0..r1-1`` of the score matrix, computed block row by block row (host float64).

    The rows of a block are one ``block(rows, :)`` call whoever computes them, so rows put
    together from any split into whole blocks are the same numbers.
    """
    block = _block(block)
    return np.concatenate([scorer.output(scorer.block(slice(i, min(r1, i + block))))
                           for i in range(r0, r1, block)], axis=0) if r1 > r0 else \
        np.empty((0, scorer.shape[1]))
