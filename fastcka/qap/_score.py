"""Objectives of permutations: ``trace(Aᵀ P B Pᵀ) (+ trace(Sᵀ P))`` as SciPy's ``fun``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import Backend, get_backend, is_cupy_array


def qap_score(A: Any, B: Any, perm: Any, S: Any = None) -> float:
    """``trace(Aᵀ P B Pᵀ) (+ trace(Sᵀ P))`` of the permutation ``perm`` (SciPy's ``fun``).

    Notes
    -----
    O(n²) time, one n×n temporary; evaluated as ``Σ A ∘ B[perm][:, perm]``.
    """
    xp = get_backend(A, device="cpu" if not is_cupy_array(A) else "gpu").xp
    perm = xp.asarray(perm)
    out = xp.sum(A * B[perm][:, perm])
    if S is not None:
        out = out + xp.sum(S[xp.arange(len(perm)), perm])
    return out


def host_scalar(a: Any) -> Any:
    """A NumPy scalar from a NumPy scalar (returned as is) or a 0-d CuPy array."""
    return a.get()[()] if is_cupy_array(a) else a


def seeded_perm(partial_match: np.ndarray, n: int) -> np.ndarray:
    """The permutation of a fully seeded problem: row ``i`` of ``A`` goes where its seed says.

    SciPy returns ``partial_match[:, 1]`` in seed order, which is this only for seeds sorted by
    row (and scores that wrong permutation).
    """
    perm = np.empty(n, dtype=partial_match.dtype if n else int)
    perm[partial_match[:, 0]] = partial_match[:, 1]
    return perm


def scores(be: Backend, A, B, S, perms, n_a, n_b, factored) -> np.ndarray:
    """float64 objective of each permutation on the caller's (unpadded) matrices."""
    xp = be.xp
    out = np.empty(len(perms))
    if factored:
        X = be.asarray(A, np.float64)
        Y = be.asarray(B, np.float64)
        for r, p in enumerate(perms):
            pg = be.asarray(p)
            val = xp.sum((X.T @ Y[pg]) ** 2)
            if S is not None:
                val = val + xp.sum(be.asarray(S)[xp.arange(len(p)), pg])
            out[r] = be.scalar(val)
        return out
    Ad = be.asarray(A, np.float64)
    Bd = be.asarray(B, np.float64)
    Sd = None if S is None else be.asarray(S, np.float64)
    for r, p in enumerate(perms):
        p = p[:n_a]
        valid = p < n_b
        if valid.all():
            pg = be.asarray(p)
            val = xp.sum(Ad * Bd[pg][:, pg])
            if Sd is not None:
                val = val + xp.sum(Sd[xp.arange(n_a), pg])
        else:
            rows = be.asarray(np.flatnonzero(valid))
            pg = be.asarray(p[valid])
            val = xp.sum(Ad[rows][:, rows] * Bd[pg][:, pg])
            if Sd is not None:
                val = val + xp.sum(Sd[rows, pg])
        out[r] = be.scalar(val)
    return out
