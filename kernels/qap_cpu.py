"""The CPU kernels of one FAQ request (Numba): the balancing of the random starts, the fused
gradient, the exact linear assignment (shortest augmenting paths, warm-startable).

Three parts, in the order a Frank–Wolfe iteration meets them (the CUDA twins are
:mod:`lap_cuda` and :mod:`auction_cuda`; the registry families ``lap``, ``faq_gradient``,
``sinkhorn`` and ``faq`` in :mod:`fastcka.kernels` point here):

1. **Start balancing** (``balance_batch``, family ``sinkhorn``).
2. **Gradient** (``symmetric_gradient``, family ``faq_gradient``).
3. **Linear assignment** (``lap_batch``, family ``lap``).

Start balancing
---------------
Same iteration and stopping rule as :func:`fastcka.qap.doubly_stochastic` (and SciPy's FAQ
initialisation): column then row scales, stop when every row and column sum of ``r ∘ P ∘ c`` is
within ``tol`` of 1 (checked on ``P`` itself first), at most ``max_iter`` sweeps.

Each sweep is a *single* pass over the matrix: row ``i`` gives ``r_i = 1 / (P_i · c)`` and, while
still in L1 cache, adds ``r_i P_i`` to the column sums ``rᵀP`` needed by the next sweep and by the
stopping test.  Matrices of a batch are balanced in parallel threads and stay cache-resident across
their sweeps; the NumPy formulation instead streams the whole batch through memory several times
per sweep.  The output can be an affine map ``alpha + beta · (r ∘ P ∘ c)`` (FAQ's randomized start
is ``(J/n + DS(K)) / 2``), written once.

Gradient
--------
NumPy evaluates ``2·M + C`` for a batch of restarts as two passes over a freshly allocated
(k, n, n) array (page faults included); the kernel here does one parallel pass into the output,
~4× faster at the paper workload's 44 × 500 × 500.

Linear assignment
-----------------
The solver is the Jonker–Volgenant / Crouse shortest-augmenting-path method: rows are inserted
one at a time; for each, a Dijkstra search over reduced costs ``c[i, j] - u[i] - v[j]`` finds the
cheapest augmenting path to a free column, then the duals are updated so that reduced costs stay
non-negative on every assigned row and zero on assigned edges.  The result is an exact optimum
(same optimal cost as :func:`scipy.optimize.linear_sum_assignment`; ties may be broken
differently).

Warm start: any column duals ``v`` are valid initial values (no row is assigned yet, so no dual
constraint is binding).  Good duals - for example those of a nearby cost matrix, such as the
previous Frank–Wolfe iteration's gradient - make most rows find a free column in their first scan,
so a warm solve costs close to O(n²) instead of the cold worst case O(n³).

Cold start (no ``v0``): the Jonker–Volgenant initialisation - column reduction (each column's
minimum becomes its dual, the minimising row takes it), reduction transfer (a row holding one
column passes its slack to that column's dual) and augmenting row reduction of the rows left
free - before the augmentations.  On costs where one direction dominates (every row prefers the
same columns, as FAQ's gradients near the barycentre) the column duals it finds leave far fewer
rows to augment (381 instead of 1351 of 2000 on ``bench/lap.py``'s FAQ-like costs).  Where rows
differ by offsets or the costs are low-rank, the row side (``v = 0``, augmenting row reduction
over every row) leaves fewer; so when the column side leaves more than n / 64 rows free, both
starts run pass for pass and the higher dual bound wins (:func:`_cold_start`), and the winner's
reduction goes on while a pass frees enough rows to pay for itself.  A warm start keeps its duals unless the column
reduction's give a higher dual bound Σv + Σ_i min_j (c_ij - v_j) (the problem moved far from the
one the duals came from): two O(n²) sweeps.

Batches of independent problems run in parallel threads (``prange``).

References
----------
R. Jonker, A. Volgenant, "A shortest augmenting path algorithm for dense and sparse linear
assignment problems", Computing 38 (1987) 325–340, doi:10.1007/BF02278710.

(The shortest augmenting paths follow Crouse 2016, cited in :mod:`fastcka.qap._lap`.)
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# --------------------------------------------------------------------------------------------
# 1. start balancing: Sinkhorn–Knopp on a batch of positive matrices
# --------------------------------------------------------------------------------------------

@njit(cache=True, nogil=True, error_model="numpy")     # x/0 -> inf, as in the NumPy path
def _balance_one(P, tol, max_iter, alpha, beta, out, r, c, rP):  # pragma: no cover
    n = P.shape[0]
    for j in range(n):
        rP[j] = 0.0
    ok = True
    for i in range(n):
        s = 0.0
        for j in range(n):
            v = P[i, j]
            s += v
            rP[j] += v
        if not abs(s - 1.0) < tol:
            ok = False
    for j in range(n):
        if not abs(rP[j] - 1.0) < tol:
            ok = False
    if ok:
        for i in range(n):
            r[i] = 1.0
        for j in range(n):
            c[j] = 1.0
    else:
        # sweep 0 gives SciPy's initial scales (rP holds the column sums, so c = 1 / colsums);
        # each of the up to max_iter sweeps after it ends with the stopping test
        for sweep in range(max_iter + 1):
            for j in range(n):
                c[j] = 1.0 / rP[j]
                rP[j] = 0.0
            for i in range(n):
                s = 0.0
                for j in range(n):
                    s += P[i, j] * c[j]
                ri = 1.0 / s
                r[i] = ri
                for j in range(n):
                    rP[j] += ri * P[i, j]
            if sweep == 0:
                continue
            # rows of r∘P∘c sum to 1 by construction of r; columns sum to c ∘ (rᵀP)
            done = True
            for j in range(n):
                if not abs(c[j] * rP[j] - 1.0) < tol:
                    done = False
                    break
            if done:
                break
    for i in range(n):
        bi = beta * r[i]
        for j in range(n):
            out[i, j] = alpha + bi * P[i, j] * c[j]


@njit(cache=True, parallel=True, error_model="numpy")
def _balance_batch(P, tol, max_iter, alpha, beta, out):  # pragma: no cover
    k, n, _ = P.shape
    for b in prange(k):
        r = np.empty(n)
        c = np.empty(n)
        rP = np.empty(n)
        _balance_one(P[b], tol, max_iter, alpha, beta, out[b], r, c, rP)


@njit(cache=True, nogil=True, error_model="numpy")
def _balance_serial(P, tol, max_iter, alpha, beta, out):  # pragma: no cover
    """:func:`_balance_batch` in the calling thread (GIL released)."""
    n = P.shape[1]
    r, c, rP = np.empty(n), np.empty(n), np.empty(n)
    for b in range(P.shape[0]):
        _balance_one(P[b], tol, max_iter, alpha, beta, out[b], r, c, rP)


def balance_batch(P: np.ndarray, tol: float = 1e-3, max_iter: int = 1000, alpha: float = 0.0,
                  beta: float = 1.0, out: np.ndarray | None = None, *,
                  parallel: bool = True) -> np.ndarray:
    """``alpha + beta · DS(P[b])`` for every matrix of a (k, n, n) float64 batch.

    ``out`` (k, n, n; float64 or float32, C-contiguous) may be given; it must not alias ``P``.
    ``parallel=False``: in the calling thread only, the GIL released (a thread of a pool of
    restart groups); the same bits.
    """
    P = np.ascontiguousarray(P, dtype=np.float64)
    if P.ndim != 3 or P.shape[1] != P.shape[2]:
        raise ValueError(f"P must be (k, n, n), got shape {P.shape}")
    if out is None:
        out = np.empty_like(P)
    if P.shape[1]:
        (_balance_batch if parallel else _balance_serial)(
            P, float(tol), int(max_iter), float(alpha), float(beta), out)
    return out

# --------------------------------------------------------------------------------------------
# 2. gradient: 2·M + C for every restart
# --------------------------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _twice_plus_one(M, C, out):  # pragma: no cover
    n, m = M.shape
    for i in range(n):
        for j in range(m):
            out[i, j] = 2.0 * M[i, j] + C[i, j]


@njit(cache=True, parallel=True)
def _twice_plus(M, C, out):  # pragma: no cover
    for b in prange(M.shape[0]):
        _twice_plus_one(M[b], C, out[b])


@njit(cache=True, nogil=True)
def _twice_plus_serial(M, C, out):  # pragma: no cover
    for b in range(M.shape[0]):
        _twice_plus_one(M[b], C, out[b])


def symmetric_gradient(M: np.ndarray, C: np.ndarray, *, parallel: bool = True) -> np.ndarray:
    """``2·M[r] + C`` for every restart r: FAQ's gradient for symmetric A and B.

    ``parallel=False``: in the calling thread only, the GIL released; the same bits.
    """
    M = np.ascontiguousarray(M)
    C = np.ascontiguousarray(C, dtype=M.dtype)
    out = np.empty_like(M)
    if M.size:
        (_twice_plus if parallel else _twice_plus_serial)(M, C, out)
    return out

# --------------------------------------------------------------------------------------------
# 3. linear assignment: shortest augmenting paths with the Jonker–Volgenant start
# --------------------------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _arr_pass(c, sign, v, col4row, row4col, free, nfree, max_steps):  # pragma: no cover
    """One pass of the augmenting row reduction (Jonker & Volgenant 1987): auction-like cheap
    assignments.

    Each of the ``nfree`` free rows listed first in ``free`` takes its cheapest column ``j1``
    (reduced cost ``c - v``) and lowers ``v[j1]`` by the gap to its second cheapest, so that
    ``j1`` stays a cheapest column for it; a row displaced by a strict improvement is processed
    next (after ``max_steps`` steps: in the next pass).  Every assigned row keeps dual
    feasibility with ``u_i = c[i, col4row[i]] - v[col4row[i]]`` (``v`` only decreases, and only
    on the column a row takes).  Returns the number of rows still free (listed first in
    ``free``) and the steps taken (rows processed, each one scan of its costs).
    """
    n = c.shape[0]
    inf = np.inf
    k = 0
    prev = nfree
    nfree = 0
    steps = 0
    while k < prev:
        i = free[k]
        k += 1
        steps += 1
        u1 = inf
        u2 = inf
        j1 = -1
        j2 = -1
        for j in range(n):
            h = sign * c[i, j] - v[j]
            if h < u2:
                if h >= u1:
                    u2 = h
                    j2 = j
                else:
                    u2 = u1
                    j2 = j1
                    u1 = h
                    j1 = j
        i0 = row4col[j1]
        if j2 >= 0 and u1 < u2:
            v[j1] -= u2 - u1
        elif i0 >= 0 and j2 >= 0:
            j1 = j2
            i0 = row4col[j2]
        if i0 >= 0:
            col4row[i0] = -1
            if u1 < u2 and steps < max_steps:
                k -= 1
                free[k] = i0
            else:
                free[nfree] = i0
                nfree += 1
        row4col[j1] = i
        col4row[i] = j1
    return nfree, steps


@njit(cache=True, nogil=True)
def _arr(c, sign, v, col4row, row4col, free, nfree, max_steps):  # pragma: no cover
    """Two passes of :func:`_arr_pass` (the warm start's reduction); returns the rows left free."""
    for _ in range(2):
        nfree, _steps = _arr_pass(c, sign, v, col4row, row4col, free, nfree, max_steps)
    return nfree


# Cold start (see _cold_start): the row-side start is raced against the column reduction's
# when the latter leaves more than n / _RACE_FREE rows free after two passes, for at most
# _RACE_PASSES passes each; the winner's augmenting row reduction then goes on while a pass
# frees more than steps / (_PASS_WORTH n) rows (one free row costs the augmentations about
# 0.3 n scans at twice the cost of a reduction step), at most _MAX_PASSES passes in all.
_RACE_FREE = 64
_RACE_PASSES = 4
_PASS_WORTH = 0.6
_MAX_PASSES = 32


@njit(cache=True, nogil=True, inline="always")
def _row_min(c, sign, v, i):  # pragma: no cover
    """``min_j (sign · c_ij - v_j)``: row ``i``'s dual ``u_i`` for the column duals ``v``."""
    m = np.inf
    for j in range(c.shape[1]):
        h = sign * c[i, j] - v[j]
        if h < m:
            m = h
    return m


@njit(cache=True, nogil=True)
def _partial_bound(c, sign, v, col4row, free, nfree):  # pragma: no cover
    """:func:`_dual_bound` of an augmenting row reduction's state in O(n (1 + nfree)).

    An assigned row's minimum ``c_ij - v_j`` is its own column's (the reduction keeps it so);
    only the free rows are scanned.
    """
    n = c.shape[0]
    total = 0.0
    for j in range(n):
        total += v[j]
    for i in range(n):
        j = col4row[i]
        if j >= 0:
            total += sign * c[i, j] - v[j]
    for k in range(nfree):
        total += _row_min(c, sign, v, free[k])
    return total


@njit(cache=True, nogil=True)
def _dual_bound(c, sign, v):  # pragma: no cover
    """The dual objective Σ_j v_j + Σ_i min_j (c_ij - v_j): a lower bound on the optimum."""
    n = c.shape[0]
    total = 0.0
    for j in range(n):
        total += v[j]
    for i in range(n):
        total += _row_min(c, sign, v, i)
    return total


@njit(cache=True, nogil=True)
def _column_reduction(c, sign, w, argmin, v):  # pragma: no cover
    """Column reduction (Jonker & Volgenant 1987, step 1): ``w_j = min_i c_ij``, its row.

    Swept row by row (C order: contiguous reads) rather than column by column; the first
    minimising row of each column wins.  In the same sweep, the dual bound of the duals ``v``
    (:func:`_dual_bound`; 0 when ``v`` is None).
    """
    n = c.shape[0]
    for j in range(n):
        w[j] = np.inf
        argmin[j] = 0
    bound = 0.0
    if v is not None:
        for j in range(n):
            bound += v[j]
    for i in range(n):
        m = np.inf
        for j in range(n):
            h = sign * c[i, j]
            if h < w[j]:
                w[j] = h
                argmin[j] = i
            if v is not None:
                r = h - v[j]
                if r < m:
                    m = r
        bound += m
    return bound


@njit(cache=True, nogil=True)
def _jv_start(c, sign, v, argmin, col4row, row4col, free):  # pragma: no cover
    """Assignments from the column reduction in ``v``/``argmin``, then reduction transfer.

    Each column goes to its minimising row unless that row already holds a column; a row holding
    exactly one column ``j1`` then passes its slack on: ``v[j1]`` is lowered by
    ``min_{j≠j1} (c_ij - v_j)``, which keeps ``j1`` a cheapest column of row ``i`` (dual
    feasibility) and makes the column dearer for the others (JV 1987, step 2).  Returns the
    number of free rows, listed in ``free``.
    """
    n = c.shape[0]
    # columns in decreasing order (as JV): a row minimising several keeps the lowest, and is
    # marked (-2 - j) as one whose slack cannot be transferred
    for j in range(n - 1, -1, -1):
        i = argmin[j]
        prev = col4row[i]
        if prev == -1:
            col4row[i] = j
        else:
            row4col[prev if prev >= 0 else -2 - prev] = -1
            col4row[i] = -2 - j
        row4col[j] = i
    nfree = 0
    for i in range(n):
        j1 = col4row[i]
        if j1 == -1:
            free[nfree] = i
            nfree += 1
        elif j1 <= -2:
            col4row[i] = -2 - j1
        elif n > 1:
            m = np.inf
            for j in range(n):
                if j != j1:
                    h = sign * c[i, j] - v[j]
                    if h < m:
                        m = h
            v[j1] -= m
    return nfree


@njit(cache=True, nogil=True)
def _keep_warm(c, sign, v, w, argmin):  # pragma: no cover
    """Whether the warm duals ``v`` bound the optimum at least as well as the column reduction.

    Leaves the column reduction in ``w``/``argmin`` (for when they do not).  Two sweeps of ``c``.
    """
    warm_bound = _column_reduction(c, sign, w, argmin, v)
    return warm_bound >= _dual_bound(c, sign, w)


@njit(cache=True, nogil=True)
def _more_passes(c, sign, v, col4row, row4col, free, nfree, gain, steps,
                 passes):  # pragma: no cover
    """Further augmenting row reduction passes while the last one paid off (it freed ``gain``
    rows in ``steps`` steps; ``passes`` done so far).  Returns the rows left free."""
    n = c.shape[0]
    while nfree > 0 and passes < _MAX_PASSES and gain * _PASS_WORTH * n > steps:
        before = nfree
        nfree, steps = _arr_pass(c, sign, v, col4row, row4col, free, nfree, 4 * n)
        gain = before - nfree
        passes += 1
    return nfree


@njit(cache=True, nogil=True)
def _cold_start(c, sign, v, col4row, row4col, free, argmin, force):  # pragma: no cover
    """Cold initial assignments and duals: the better of two starts, then more reduction.

    Column side: the Jonker–Volgenant column reduction and reduction transfer (:func:`_jv_start`)
    and two augmenting row reduction passes.  Row side: ``v = 0`` and two passes over every row
    (each row's first step is its row reduction).  Neither wins everywhere: the column side
    where every row prefers the same columns (FAQ's gradients), the row side where rows differ
    by offsets or on low-rank costs, whose column minima leave free rows that need long
    augmenting paths (2000 × 2000 rank 8: 192k Dijkstra row scans after the column side's two
    passes, 156k after the row side's).  So when the column side leaves more than
    n / ``_RACE_FREE`` rows free, both run pass for pass, up to ``_RACE_PASSES`` passes, until one
    side's dual bound Σv + Σu leads by more than the other's last gain; the higher bound wins
    (the column side on ties).  The winner's reduction goes on while it pays
    (:func:`_more_passes`).  ``force``: 0 as above, 1 the column side, 2 the row side (tests).

    Returns the number of free rows (listed first in ``free``).
    """
    n = c.shape[0]
    _column_reduction(c, sign, v, argmin, None)
    nfree = _jv_start(c, sign, v, argmin, col4row, row4col, free)
    passes = 0
    gain = 0
    steps = 0
    bc0 = bc = 0.0
    race = force == 2 or (force == 0 and nfree * _RACE_FREE > n)
    for _ in range(2):
        before = nfree
        nfree, steps = _arr_pass(c, sign, v, col4row, row4col, free, nfree, 4 * n)
        gain = before - nfree
        passes += 1
        if race:
            bc0 = bc
            bc = _partial_bound(c, sign, v, col4row, free, nfree)
    race = force == 2 or (force == 0 and nfree * _RACE_FREE > n)
    if race:
        vr = np.zeros(n)
        c4r = np.full(n, -1, np.int64)
        r4c = np.full(n, -1, np.int64)
        fr = np.arange(n)
        nfr = n
        gain_r = 0
        steps_r = 0
        br0 = br = 0.0
        for _ in range(2):
            before = nfr
            nfr, steps_r = _arr_pass(c, sign, vr, c4r, r4c, fr, nfr, 4 * n)
            gain_r = before - nfr
            br0 = br
            br = _partial_bound(c, sign, vr, c4r, fr, nfr)
        while force == 0 and passes < _RACE_PASSES and nfree > 0 and nfr > 0:
            if bc >= br and bc - br > br - br0 or br > bc and br - bc > bc - bc0:
                break          # the lagging side cannot catch up in one more pass
            before = nfree
            nfree, steps = _arr_pass(c, sign, v, col4row, row4col, free, nfree, 4 * n)
            gain = before - nfree
            bc0 = bc
            bc = _partial_bound(c, sign, v, col4row, free, nfree)
            before = nfr
            nfr, steps_r = _arr_pass(c, sign, vr, c4r, r4c, fr, nfr, 4 * n)
            gain_r = before - nfr
            br0 = br
            br = _partial_bound(c, sign, vr, c4r, fr, nfr)
            passes += 1
        if force == 2 or br > bc:
            v[:] = vr
            col4row[:] = c4r
            row4col[:] = r4c
            free[:] = fr
            nfree, gain, steps = nfr, gain_r, steps_r
    return _more_passes(c, sign, v, col4row, row4col, free, nfree, gain, steps, passes)


@njit(cache=True, nogil=True)
def _initial_assignment(c, sign, v, warm, col4row, row4col, remaining, w, argmin,
                        force=0):  # pragma: no cover
    """Cheap initial assignments and duals before the augmentations; returns the free rows.

    Cold (``warm`` False): :func:`_cold_start` (``force`` picks its start for tests).  Warm: the
    given duals ``v`` are kept (augmenting row reduction from them over every row) unless the
    column reduction's duals give a higher dual bound, i.e. the problem moved far from the one
    ``v`` came from (then the Jonker–Volgenant column reduction, reduction transfer and two
    passes of the reduction).  ``w``/``argmin`` are scratch.
    """
    n = c.shape[0]
    for i in range(n):
        col4row[i] = -1
        row4col[i] = -1
    if not warm:
        return _cold_start(c, sign, v, col4row, row4col, remaining, argmin, force)
    if _keep_warm(c, sign, v, w, argmin):
        for i in range(n):
            remaining[i] = i
        return _arr(c, sign, v, col4row, row4col, remaining, n, 4 * n)
    for j in range(n):
        v[j] = w[j]
    nfree = _jv_start(c, sign, v, argmin, col4row, row4col, remaining)
    return _arr(c, sign, v, col4row, row4col, remaining, nfree, 4 * n)


@njit(cache=True, nogil=True)
def _sap_one(c, sign, v, warm, col4row, row4col, u, spc, path, remaining, SR, SC,
             start=0):  # pragma: no cover
    n = c.shape[0]
    inf = np.inf
    # cheap initial assignments, then exact shortest augmenting paths for the rows left free
    nfree = _initial_assignment(c, sign, v, warm, col4row, row4col, remaining, spc, path, start)
    for i in range(n):
        j = col4row[i]
        u[i] = sign * c[i, j] - v[j] if j >= 0 else 0.0
    for f in range(nfree):
        cur = remaining[f]
        for j in range(n):
            spc[j] = inf
            SC[j] = False
            SR[j] = False
        minval = 0.0
        i = cur
        sink = -1
        while sink == -1:
            SR[i] = True
            index = -1
            lowest = inf
            ui = u[i]
            # sequential scan over the columns not yet reached (cache-friendly)
            for j in range(n):
                if SC[j]:
                    continue
                r = minval + sign * c[i, j] - ui - v[j]
                if r < spc[j]:
                    path[j] = i
                    spc[j] = r
                sj = spc[j]
                if sj < lowest or (sj == lowest and row4col[j] == -1 and row4col[index] != -1):
                    lowest = sj
                    index = j
            minval = lowest
            if minval == inf:
                return False
            j = index
            if row4col[j] == -1:
                sink = j
            else:
                i = row4col[j]
            SC[j] = True
        u[cur] += minval
        for i in range(n):
            if SR[i] and i != cur:
                u[i] += minval - spc[col4row[i]]
        for j in range(n):
            if SC[j]:
                v[j] -= minval - spc[j]
        j = sink
        while True:
            i = path[j]
            row4col[j] = i
            nxt = col4row[i]
            col4row[i] = j
            j = nxt
            if i == cur:
                break
    return True


@njit(cache=True, nogil=True)
def _sap_alloc(c, sign, v, warm, cols, start):  # pragma: no cover
    """:func:`_sap_one` with its work arrays."""
    n = c.shape[0]
    return _sap_one(c, sign, v, warm, cols, np.empty(n, np.int64), np.empty(n), np.empty(n),
                    np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.bool_),
                    np.empty(n, np.bool_), start)


@njit(cache=True, parallel=True)
def _sap_batch(C, sign, V, warm, cols, start):  # pragma: no cover
    k = C.shape[0]
    ok = np.ones(k, dtype=np.bool_)
    for b in prange(k):
        ok[b] = _sap_alloc(C[b], sign, V[b], warm, cols[b], start)
    return ok


@njit(cache=True, nogil=True)
def _sap_serial(C, sign, V, warm, cols, start):  # pragma: no cover
    """:func:`_sap_batch` in the calling thread (GIL released)."""
    ok = np.ones(C.shape[0], dtype=np.bool_)
    for b in range(C.shape[0]):
        ok[b] = _sap_alloc(C[b], sign, V[b], warm, cols[b], start)
    return ok


def lap_batch(C: np.ndarray, maximize: bool = False, v0: np.ndarray | None = None, *,
              checked: bool = False, parallel: bool = True):
    """Solve k dense n×n assignment problems exactly.

    Parameters
    ----------
    C : (k, n, n) or (n, n) float array
        Costs (C-contiguous; float32 or float64).
    maximize : bool
        Maximise the total instead of minimising it.
    v0 : (k, n) float64, optional
        Initial column duals (warm start) in the *minimisation* of ``±C``; e.g. the ``v`` returned
        for a nearby cost matrix.
    checked : bool
        The caller guarantees ``C`` is a finite C-contiguous (k, n, n) float32/float64 array and
        ``v0`` (if given) a C-contiguous (k, n) float64 array it gives up (updated in place and
        returned as ``v``): no check, no copy.  For solvers that call this in a loop on arrays
        they built (FAQ's Frank–Wolfe directions), where the checks cost ~7 % of the run.
    parallel : bool
        ``False``: the problems one after another in the calling thread, the GIL released (a
        thread of a pool of FAQ restart groups); the same answers.

    Returns
    -------
    cols : (k, n) int64
        ``cols[b, i]``: column assigned to row ``i`` in problem ``b``.
    v : (k, n) float64
        Column duals at the optimum (for the next warm start).

    Notes
    -----
    Time: O(n²) per row insertion in the worst case (O(n³) per problem), much less when warm;
    memory: O(n) per problem besides ``C``.  Problems run in parallel over Numba threads.
    """
    if checked:
        return _solve(C, maximize, np.zeros(C.shape[:2]) if v0 is None else v0, v0 is not None,
                      parallel)
    C = np.asarray(C)
    single = C.ndim == 2
    if single:
        C = C[None]
    if C.ndim != 3 or C.shape[1] != C.shape[2]:
        raise ValueError(f"C must be (k, n, n) or (n, n) (square problems), got shape {C.shape}")
    if C.dtype not in (np.float32, np.float64):
        C = C.astype(np.float64)
    C = np.ascontiguousarray(C)
    k, n, _ = C.shape
    if not np.isfinite(C).all():
        raise ValueError("C contains NaN or Inf")
    V = np.zeros((k, n)) if v0 is None else np.array(v0, dtype=np.float64, copy=True).reshape(k, n)
    cols, V = _solve(C, maximize, V, v0 is not None, parallel)
    if single:
        return cols[0], V[0]
    return cols, V


def _solve(C: np.ndarray, maximize: bool, V: np.ndarray, warm: bool, parallel: bool = True,
           start: int = 0):
    """The solve of :func:`lap_batch` on checked arrays (``V`` updated in place; its values are
    the warm start when ``warm``).  ``start``: the cold start of :func:`_cold_start` (0 the raced
    choice, 1 the column side, 2 the row side; for tests)."""
    k, n, _ = C.shape
    cols = np.empty((k, n), np.int64)
    if n:
        sign = -1.0 if maximize else 1.0
        # one problem: no parallel region (waking the thread pool costs more than a small solve)
        ok = (_sap_batch if parallel and k > 1 else _sap_serial)(C, sign, V, warm, cols, start)
        if not ok.all():  # pragma: no cover - cannot happen with finite dense costs
            raise ValueError("cost matrix is infeasible")
    return cols, V
