"""ε-scaling auction on a GPU (Numba CUDA): near-optimal duals for large assignment problems.

:mod:`lap_cuda` solves each problem in one thread block, which suits FAQ's hundreds of batched
restarts but leaves a single large problem (n in the thousands) to the sequential steps of its
shortest-path searches.  The auction (Bertsekas, Jacobi form) is parallel across rows instead:

* **bid** — one thread block per unassigned row scans its row of values ``-s·C[i, j] - p_j``
  (top two, shared-memory reduction) and bids ``p_j1 + (v1 - v2) + ε`` for its best column ``j1``; each
  column keeps the highest bid (``atomic.max``);
* **claim** — every bidder whose bid equals its column's highest bid competes for the column
  (``atomic.max`` of the row index: the highest row wins a tie);
* **assign** — each column with a winner evicts its previous owner and raises its price.

Rounds repeat until every row is assigned; ε then shrinks by ``theta`` and a new phase starts
from the current prices (ε-scaling).  At the end the assignment is within ``n·ε`` of optimal and
the prices ``p`` are near-optimal column duals.  They are *not* used as the answer: FAQ needs the
exact optimum, so :func:`fastcka.kernels.lap_cuda.lap_batch_device` hands ``v = -p`` to the exact
shortest-augmenting-path solver as its warm start, which then has little left to repair.

Rounds are three small kernel launches; the host reads the number of free rows every
``check_every`` rounds (extra rounds with nothing to do return at once).
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np

if not hasattr(np, "row_stack"):  # pragma: no cover - numba-cuda with NumPy >= 2.5
    setattr(np, "row_stack", np.vstack)  # noqa: B010
from numba import cuda  # noqa: E402

_TPB = 128          # threads per block (bid: one block per bidding row)
_TPB_SIM = 4        # under the CUDA simulator every thread is a Python thread


def _tpb() -> int:
    return _TPB_SIM if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1" else _TPB


@functools.cache
def _kernels(tpb: int):  # pragma: no cover - compiled for the device or simulated
    ninf = -math.inf

    @cuda.jit
    def bid(C, sign, price, col4row, bidcol, bidval, colbid, eps):
        k = C.shape[0]
        n = C.shape[1]
        w = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        if w >= k * n:
            return
        b = w // n
        i = w - b * n
        if col4row[b, i] >= 0:          # the whole block leaves together
            if tid == 0:
                bidcol[b, i] = -1
            return
        sh_v1 = cuda.shared.array(tpb, dtype=np.float64)
        sh_v2 = cuda.shared.array(tpb, dtype=np.float64)
        sh_j = cuda.shared.array(tpb, dtype=np.int64)
        v1 = ninf
        v2 = ninf
        j1 = -1
        for j in range(tid, n, tpb):
            h = -sign * C[b, i, j] - price[b, j]
            if h > v1:
                v2 = v1
                v1 = h
                j1 = j
            elif h > v2:
                v2 = h
        sh_v1[tid] = v1
        sh_v2[tid] = v2
        sh_j[tid] = j1
        cuda.syncthreads()
        half = tpb // 2
        while half > 0:
            if tid < half:
                o1 = sh_v1[tid + half]
                o2 = sh_v2[tid + half]
                oj = sh_j[tid + half]
                a1 = sh_v1[tid]
                a2 = sh_v2[tid]
                aj = sh_j[tid]
                if o1 > a1 or (o1 == a1 and oj >= 0 and (aj < 0 or oj < aj)):
                    sh_v2[tid] = max(a1, o2)
                    sh_v1[tid] = o1
                    sh_j[tid] = oj
                else:
                    sh_v2[tid] = max(a2, o1)
            cuda.syncthreads()
            half //= 2
        if tid == 0:
            v1 = sh_v1[0]
            v2 = sh_v2[0]
            j1 = sh_j[0]
            if v2 == ninf:          # a single column
                v2 = v1
            x = price[b, j1] + (v1 - v2) + eps
            bidcol[b, i] = j1
            bidval[b, i] = x
            cuda.atomic.max(colbid, (b, j1), x)

    @cuda.jit
    def claim(bidcol, bidval, colbid, winner):
        k, n = bidcol.shape
        t = cuda.grid(1)
        b, i = t // n, t % n
        if b >= k:
            return
        j = bidcol[b, i]
        if j >= 0 and bidval[b, i] == colbid[b, j]:
            cuda.atomic.max(winner, (b, j), i)

    @cuda.jit
    def assign(price, col4row, row4col, colbid, winner, nfree):
        k, n = price.shape
        t = cuda.grid(1)
        b, j = t // n, t % n
        if b >= k:
            return
        w = winner[b, j]
        if w >= 0:
            old = row4col[b, j]
            # the evicted owner did not bid this round, so no other column writes its entry
            if old >= 0:
                col4row[b, old] = -1
            else:
                cuda.atomic.add(nfree, b, -1)
            row4col[b, j] = w
            col4row[b, w] = j
            price[b, j] = colbid[b, j]
            winner[b, j] = -1
            colbid[b, j] = ninf

    @cuda.jit
    def reset(col4row, row4col, colbid, winner, nfree):
        k, n = col4row.shape
        t = cuda.grid(1)
        b, j = t // n, t % n
        if b >= k:
            return
        col4row[b, j] = -1
        row4col[b, j] = -1
        colbid[b, j] = ninf
        winner[b, j] = -1
        if j == 0:
            nfree[b] = n

    return bid, claim, assign, reset


def auction_device(dC, maximize: bool, dprice, cost_range: float, *, eps_final: float = 1e-7,
                   eps_start: float = 0.125, theta: float = 5.0, check_every: int = 4,
                   max_rounds: int | None = None):
    """Run the ε-scaling auction on device arrays; prices are updated in place.

    Parameters
    ----------
    dC : (k, n, n) device array (float32/float64)
        Costs; the auction maximises ``-s·C`` (``s = -1`` when ``maximize``), i.e. it solves the
        same problem as the exact solver.
    dprice : (k, n) float64 device array
        Initial prices (any values; e.g. ``-v`` of a previous solve), updated in place.
    cost_range : float
        max − min of the costs (all problems): ε runs from ``eps_start·range`` down to
        ``eps_final·range``.
    max_rounds : int, optional
        Bound on the rounds of a phase (default ``20 n + 1000``); a phase cut short leaves valid
        (if less good) prices, so the exact solver that follows is still exact.

    Returns
    -------
    col4row : (k, n) int64 device array (the ε-optimal assignment of the last phase)
    rounds : int
        total bidding rounds.
    """
    k, n = dC.shape[0], dC.shape[1]
    col4row = cuda.device_array((k, n), dtype=np.int64)
    if k == 0 or n == 0:
        return col4row, 0
    tpb = _tpb()
    bid, claim, assign, reset = _kernels(tpb)
    row4col = cuda.device_array((k, n), dtype=np.int64)
    bidcol = cuda.device_array((k, n), dtype=np.int64)
    bidval = cuda.device_array((k, n), dtype=np.float64)
    colbid = cuda.device_array((k, n), dtype=np.float64)
    winner = cuda.device_array((k, n), dtype=np.int64)
    nfree = cuda.device_array(k, dtype=np.int32)
    sign = -1.0 if maximize else 1.0
    scale = float(cost_range) if cost_range > 0 and math.isfinite(cost_range) else 1.0
    # ε must stay visible next to the prices in float64 (else a bid would not raise a price)
    eps_lo = max(eps_final * scale, 1e-12 * scale)
    eps = max(eps_start * scale, eps_lo)
    cap = max_rounds if max_rounds is not None else 20 * n + 1000
    g_rows = k * n
    g_flat = (k * n + tpb - 1) // tpb
    rounds = 0
    while True:
        reset[g_flat, tpb](col4row, row4col, colbid, winner, nfree)
        done = 0
        finished = False
        while done < cap:
            for _ in range(check_every):
                bid[g_rows, tpb](dC, sign, dprice, col4row, bidcol, bidval, colbid, eps)
                claim[g_flat, tpb](bidcol, bidval, colbid, winner)
                assign[g_flat, tpb](dprice, col4row, row4col, colbid, winner, nfree)
            done += check_every
            if int(nfree.copy_to_host().sum()) == 0:
                finished = True
                break
        rounds += done
        if not finished or eps <= eps_lo:
            break
        eps = max(eps / theta, eps_lo)
    return col4row, rounds


def auction_cuda(C: np.ndarray, maximize: bool = False, **kw):
    """Host wrapper (tests): ``(cols, prices, rounds)`` for (k, n, n) or (n, n) ``C``."""
    C = np.asarray(C, dtype=np.float64)
    single = C.ndim == 2
    if single:
        C = C[None]
    k, n = C.shape[0], C.shape[1]
    dprice = cuda.to_device(np.zeros((k, n)))
    rng = float(C.max() - C.min()) if C.size else 0.0
    cols, rounds = auction_device(cuda.to_device(np.ascontiguousarray(C)), maximize, dprice, rng,
                                  **kw)
    cols, prices = cols.copy_to_host(), dprice.copy_to_host()
    if single:
        return cols[0], prices[0], rounds
    return cols, prices, rounds
