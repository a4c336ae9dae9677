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
from .protocol import DIRECTIONS

# the keys of a top-k dict (:func:`topk_stream`)
TOPK_KEYS = ("src_to_tgt_scores", "src_to_tgt_indices", "tgt_to_src_scores", "tgt_to_src_indices")
# Keys renamed to the one direction vocabulary (docs/glossary.md, "direction"): the former
# names still read, with a DeprecationWarning, from the dicts of retrieval results.
FORMER_KEYS = {"s2t_indices": "src_to_tgt_indices", "s2t_scores": "src_to_tgt_scores",
               "t2s_indices": "tgt_to_src_indices", "t2s_scores": "tgt_to_src_scores",
               "source_to_target": "src-to-tgt", "target_to_source": "tgt-to-src"}


def warn_renamed(old: str, new: str) -> None:
    import warnings

    warnings.warn(f"{old!r} is now {new!r} (one direction vocabulary: src-to-tgt, tgt-to-src)",
                  DeprecationWarning, stacklevel=3)


class DirectionDict(dict):
    """A plain dict whose :data:`FORMER_KEYS` still read (``d["s2t_indices"]``), warning."""

    def __missing__(self, key):
        new = FORMER_KEYS.get(key) if isinstance(key, str) else None
        if new is None or new not in self:
            raise KeyError(key)
        warn_renamed(key, new)
        return dict.__getitem__(self, new)

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default


def _block(block):
    """The block size of a call: ``block``, or :data:`fastcka.config.RETRIEVAL_BLOCK`."""
    return config.RETRIEVAL_BLOCK if block is None else block


def topk_stream(scorer, k: int, *, block: int | None = None, directions=DIRECTIONS):
    """Top-k in both directions by streaming score blocks.

    Parameters
    ----------
    scorer : object with ``shape`` and ``block(rows, cols)``
    k : int
        Neighbours kept per query (clipped to the other side's size).
    block : int
        Rows and columns per block.
    directions : subset of :data:`fastcka.protocol.DIRECTIONS`
        The lists kept (default both).

    Returns
    -------
    dict with ``src_to_tgt_indices`` (q_s, k), ``src_to_tgt_scores``, ``tgt_to_src_indices``
    (q_t, k), ``tgt_to_src_scores``: backend arrays, each row sorted by decreasing score (a
    :class:`DirectionDict`: the former keys ``s2t_*`` / ``t2s_*`` still read, deprecated).

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
    src-to-tgt lists of rows r0..r1-1 and every target's top-k among them (see :func:`topk_rows`).
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
            if "src-to-tgt" in directions:
                ops.update_rows(S, j0, rv[rows], ri[rows])
            if "tgt-to-src" in directions:
                ops.update_cols(S, i0, cv[cols], ci[cols])
    out: dict[str, Any] = DirectionDict()
    if "src-to-tgt" in directions:
        out["src_to_tgt_scores"], out["src_to_tgt_indices"] = rv, ri
    if "tgt-to-src" in directions:
        out["tgt_to_src_scores"], out["tgt_to_src_indices"] = cv, ci
    return out


def row_blocks(q: int, block: int | None = None) -> list[tuple[int, int]]:
    """The ``(r0, r1)`` row ranges of the streaming blocks of ``q`` source queries."""
    block = _block(block)
    return [(i, min(q, i + block)) for i in range(0, q, block)]


def topk_rows(scorer, k: int, r0: int, r1: int, *, block: int | None = None) -> dict:
    """The part of :func:`topk_stream` (CPU) that source rows ``r0..r1-1`` contribute.

    ``src_to_tgt_*``: the finished lists of those rows; ``tgt_to_src_*``: every target's top-k
    among them.
    ``r0`` must start a block; :func:`merge_topk_parts` puts the parts of consecutive ranges
    together exactly (the lists are ordered by decreasing score, then increasing index, as
    the in-process stream orders them).
    """
    qs, qt = scorer.shape
    return _topk_stream(scorer, min(k, qt), min(k, qs), _block(block), DIRECTIONS, (r0, r1))


def merge_topk_parts(parts: list[dict]) -> dict:
    """Exact merge of :func:`topk_rows` parts given in row order: the :func:`topk_stream` dict."""
    fwd_v = np.concatenate([p["src_to_tgt_scores"] for p in parts], axis=0)
    fwd_i = np.concatenate([p["src_to_tgt_indices"] for p in parts], axis=0)
    kt = parts[0]["tgt_to_src_scores"].shape[1]
    cand_v = np.concatenate([p["tgt_to_src_scores"] for p in parts], axis=1)
    cand_i = np.concatenate([p["tgt_to_src_indices"] for p in parts], axis=1)
    # earlier parts hold smaller source indices: a stable sort on -score keeps ties in index
    # order, as the stream's merge does
    order = np.argsort(-cand_v, axis=1, kind="stable")[:, :kt]
    return DirectionDict(src_to_tgt_scores=fwd_v, src_to_tgt_indices=fwd_i,
                         tgt_to_src_scores=np.take_along_axis(cand_v, order, axis=1),
                         tgt_to_src_indices=np.take_along_axis(cand_i, order, axis=1))


def score_rows(scorer, r0: int, r1: int, *, block: int | None = None):
    """Rows ``r0..r1-1`` of the score matrix, computed block row by block row (host float64).

    The rows of a block are one ``block(rows, :)`` call whoever computes them, so rows put
    together from any split into whole blocks are the same numbers.
    """
    block = _block(block)
    return np.concatenate([scorer.output(scorer.block(slice(i, min(r1, i + block))))
                           for i in range(r0, r1, block)], axis=0) if r1 > r0 else \
        np.empty((0, scorer.shape[1]))
