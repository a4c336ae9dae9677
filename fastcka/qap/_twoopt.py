"""2-opt (``method="2opt"``): greedy pairwise-swap local search, SciPy's semantics.

Starting from a random permutation (seeds ``partial_match`` fixed, ``partial_guess`` as given),
the free nodes' pairs ``(i, j)`` are tried in order; the first swap that strictly improves the
objective is kept and the sweep starts over, until a full sweep finds none.

References
----------
G. A. Croes, "A method for solving traveling-salesman problems", Operations Research 6 (1958)
791–812, doi:10.1287/opre.6.6.791 (the 2-opt move).

D. E. Fishkind et al., "Seeded graph matching", Pattern Recognition 87 (2019) 203–215,
doi:10.1016/j.patcog.2018.09.014 (seeds).
"""

from __future__ import annotations

import numpy as np

from ._qap import (
    OptimizeResult,
    common_validation,
    legacy_rng,
    pad_pair,
    seeded_perm,
    validate_guess,
    warn_unknown,
)


def two_opt(A, B, maximize=False, rng=None, partial_match=None, partial_guess=None,
            padding=None, **unknown_options):
    """Greedy pairwise-swap local search (SciPy's "2opt" semantics: first improvement).

    Notes
    -----
    Each candidate swap is scored by evaluating the whole objective again, O(n²) (as SciPy
    does; an exact O(n) update of the change would round differently and could accept other
    swaps).  A sweep tries up to n²/2 swaps, so one improvement costs up to O(n⁴).
    """
    warn_unknown(unknown_options, stacklevel=3)
    rng = legacy_rng(rng)
    A, B, partial_match = common_validation(A, B, partial_match, allow_unequal=padding is not None)
    n_a, n_b = len(A), len(B)
    A_orig, B_orig = A, B
    if padding is not None and n_a != n_b:
        A, B = pad_pair(np, A, B, padding)
    N = len(A)
    if N == 0 or partial_match.shape[0] == N:
        perm = seeded_perm(partial_match, N)
        return OptimizeResult({"col_ind": perm, "fun": np.sum(A * B[perm][:, perm]), "nit": 0})
    partial_guess = validate_guess(partial_guess, N)
    perm, fixed = _initial(rng, N, partial_match, partial_guess)
    best, nit = _descend(A, B, perm, np.flatnonzero(~fixed), maximize)
    col_ind = perm[:n_a].copy()
    if n_b < n_a:
        col_ind[col_ind >= n_b] = -1
    if padding is not None and n_a != n_b:
        valid = np.flatnonzero(col_ind >= 0)
        best = np.sum(A_orig[valid][:, valid] * B_orig[col_ind[valid]][:, col_ind[valid]])
    return OptimizeResult({"col_ind": col_ind, "fun": best, "nit": nit})


def _initial(rng, N: int, partial_match: np.ndarray, partial_guess: np.ndarray):
    """(start permutation, seeded rows): seeds and guesses where they say, the rest random."""
    fixed = np.zeros(N, dtype=bool)
    if not (partial_match.size or partial_guess.size):
        return rng.permutation(np.arange(N)), fixed
    perm = np.zeros(N, dtype=int)
    g_rows = np.zeros(N, dtype=bool)
    g_cols = np.zeros(N, dtype=bool)
    f_cols = np.zeros(N, dtype=bool)
    g_rows[partial_guess[:, 0]] = True
    g_cols[partial_guess[:, 1]] = True
    perm[partial_guess[:, 0]] = partial_guess[:, 1]  # row order, whatever the pairs' order
    fixed[partial_match[:, 0]] = True
    f_cols[partial_match[:, 1]] = True
    perm[partial_match[:, 0]] = partial_match[:, 1]
    free_rows = ~fixed & ~g_rows
    free_cols = ~f_cols & ~g_cols
    perm[free_rows] = rng.permutation(np.arange(N)[free_cols])
    return perm, fixed


def _descend(A, B, perm, free, maximize: bool):
    """First-improvement swaps of ``perm`` (in place) over the ``free`` rows: (objective, nit)."""
    def score(p):
        return np.sum(A * B[p][:, p])

    best = score(perm)
    better = (lambda x, y: x > y) if maximize else (lambda x, y: x < y)
    nit = 0
    improved = True
    while improved:
        improved = False
        for a_i in range(len(free)):
            i = free[a_i]
            for a_j in range(a_i, len(free)):
                j = free[a_j]
                nit += 1
                perm[i], perm[j] = perm[j], perm[i]
                s = score(perm)
                if better(s, best):
                    best = s
                    improved = True
                    break
                perm[i], perm[j] = perm[j], perm[i]
            if improved:
                break
    return best, nit
