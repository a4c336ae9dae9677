"""The kernels of one FAQ request, and its linear assignment steps (SciPy's solver, or ours
warm-started per restart).

:func:`faq_ops` asks the kernel registry (:func:`fastcka.kernels.ops`) once per request for the
LAP kernel, the fused gradient, the Sinkhorn balancing and what the engine offers (the auction
warm start, random starts drawn on the device); the library code below and in :mod:`._faq`,
:mod:`._frank_wolfe` uses that one object and never branches on the device.

Each Frank–Wolfe iteration's direction is a LAP (Vogelstein et al. 2015, Algorithm 1 line 4:
the permutation ``Q`` maximising or minimising ``trace(∇f(P)ᵀ Q)``), and so is the final
projection (line 8).  Consecutive gradients of one restart are close, so our exact
shortest-augmenting-path solver (Jonker & Volgenant 1987) starts each LAP from the column duals
of the restart's previous one; the first from the duals at the barycentre, or, without seeds or
a linear term, from the exact duals of the rank-one barycentre gradient (:func:`rank_one_duals`).
The gradients handed to the kernels were built here from checked inputs: they are passed
without another check (``checked=True``).

References
----------
R. Jonker, A. Volgenant, "A shortest augmenting path algorithm for dense and sparse linear
assignment problems", Computing 38 (1987) 325–340, doi:10.1007/BF02278710.

D. F. Crouse, "On implementing 2D rectangular assignment algorithms", IEEE Transactions on
Aerospace and Electronic Systems 52 (2016) 1679–1696, doi:10.1109/TAES.2016.140952.

J. T. Vogelstein et al., "Fast approximate quadratic programming for graph matching",
PLoS ONE 10 (2015) e0121002, doi:10.1371/journal.pone.0121002.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from .. import config
from ..backend import Backend


def ops(name: str, be: Backend) -> Any:
    """The kernel of family ``name`` ("lap", "faq", ...) for ``be`` (or None where the library's
    array code is the implementation): the one registry lookup, :func:`fastcka.kernels.ops`."""
    return be.ops(name)


@dataclass(frozen=True)
class FaqOps:
    """The kernels of one FAQ request (looked up once, :func:`faq_ops`)."""

    lap: Any                # batched exact LAP kernel, or None (SciPy's solver)
    gradient: Any           # fused 2·M + C of a batch, or None (array code)
    balance: Any            # batched Sinkhorn balancing, or None (:func:`doubly_stochastic`)
    auction: bool           # the LAP kernel offers the auction warm start (``lap="auction"``)
    device_starts: bool     # randomized starts are drawn by the device's own generator
    one_thread: bool = False    # the kernels take ``parallel=False`` (see :meth:`in_one_thread`)

    def in_one_thread(self) -> FaqOps:
        """These kernels running in the calling thread only, the GIL released (for a thread of
        a pool of restart groups, :func:`fastcka.qap._faq.faq_batched`): the same bits."""
        if not self.one_thread:
            return self
        return FaqOps(lap=partial(self.lap, parallel=False),
                      gradient=partial(self.gradient, parallel=False),
                      balance=partial(self.balance, parallel=False),
                      auction=self.auction, device_starts=self.device_starts)


def faq_ops(be: Backend) -> FaqOps:
    """The request's kernels on ``be``'s engine: the "lap" family and the "faq" op set."""
    fam = ops("faq", be)
    lap = ops("lap", be)
    return FaqOps(lap=lap, gradient=fam.gradient, balance=fam.balance, auction=fam.auction,
                  device_starts=fam.device_starts,
                  one_thread=bool(getattr(fam, "one_thread", False))
                  and None not in (lap, fam.gradient, fam.balance))


def resolve_kind(lap: str, be: Backend, n_free: int, n_init: int) -> str:
    """``lap="auto"``: "jv" on GPU, on CPU for n' ≥ 256 and for batched restarts of n' ≥ 64."""
    if lap != "auto":
        return lap
    jv = (be.device == "gpu" or n_free >= config.LAP_JV_MIN_FREE
          or (n_init > 1 and n_free >= config.LAP_JV_MIN_FREE_BATCHED))
    return "jv" if jv else "scipy"


class LapSolver:
    """LAP steps of one FAQ batch: SciPy, or our exact solver warm-started per restart."""

    def __init__(self, be: Backend, lap: Any, kind: str, k: int, n: int):
        self.be, self.kind, self.k, self.n = be, kind, k, n
        self.v = None       # column duals of the last direction LAP, per restart (warm start)
        self.v_optimal = False  # v is already optimal for the next LAP (rank-one start)
        self.lap = lap      # the request's LAP kernel (on the arrays' device), :class:`FaqOps`
        if self.lap is None:            # Numba disabled on the CPU: SciPy's solver
            self.kind = "scipy"

    def prime(self, G0, *, maximize: bool, cache: dict):
        """Solve one LAP on G0 (n×n) and use its duals as every restart's warm start.

        ``cache`` keeps those duals for the problem's later batches (G0 is the same for all).
        """
        be = self.be
        key = ("prime", maximize)
        v = cache.get(key)
        if v is None:
            if self.lap is None:
                return
            v = self.lap(G0[None], maximize=maximize)[1][0]
            cache[key] = v
        self.v = be.xp.repeat(v[None], self.k, axis=0)

    def start_from(self, v0: np.ndarray) -> None:
        """Every restart's first LAP starts from the optimal duals ``v0`` (host, (n,))."""
        self.v = self.be.asarray(np.repeat(v0[None], self.k, axis=0), np.float64)
        self.v_optimal = True

    def solve(self, G, *, maximize: bool, which, final: bool = False):
        """Assignments (k', n) (backend ints) of the LAPs on ``G[r]``, restarts ``which``.

        The kernel works on the arrays' device; ``G`` was built from checked inputs
        (``checked=True``: no check, no copy, the duals updated in place).
        """
        be = self.be
        v_optimal, self.v_optimal = self.v_optimal, False     # holds for this LAP only
        if self.kind == "scipy":
            return be.asarray(_scipy_batch(be.to_host(G), maximize, self.n))
        G = be.xp.ascontiguousarray(G)
        # the auction improves a warm start; optimal duals need no improving
        kw = {"auction": True} if self.kind == "auction" and not v_optimal else {}
        if final:
            return self.lap(G, maximize=maximize, checked=True, **kw)[0]
        if self.v is None:
            self.v = be.xp.zeros((self.k, self.n), dtype=np.float64)
        if len(which) == self.k:        # every restart: no index upload, duals updated in place
            return self.lap(G, maximize=maximize, v0=self.v, checked=True, **kw)[0]
        wi = be.asarray(which)
        cols, v = self.lap(G, maximize=maximize, v0=self.v[wi], checked=True, **kw)
        self.v[wi] = v
        return cols


def _scipy_batch(Gh: np.ndarray, maximize: bool, n: int) -> np.ndarray:
    from scipy.optimize import linear_sum_assignment

    cols = np.empty((Gh.shape[0], n), dtype=np.int64)
    for r in range(Gh.shape[0]):
        cols[r] = linear_sum_assignment(Gh[r], maximize=maximize)[1]
    return cols


def rank_one_duals(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Optimal column duals of the assignment problem min Σ a_i b_σ(i) (costs a bᵀ, rank one).

    By the rearrangement inequality the optimum pairs a ascending with b descending; column
    duals ``v`` that make each row's assigned column its cheapest (``a_i b_j - v_j`` minimal)
    follow along that order: with sorted ``a_(k)``, ``b_(k)``, any step
    ``v_(k+1) - v_(k)`` in ``[a_(k+1) Δ_k, a_(k) Δ_k]``, ``Δ_k = b_(k+1) - b_(k) ≤ 0``, satisfies
    the adjacent constraints, and the others follow by telescoping; we take the midpoint.

    A cold Jonker–Volgenant solve is at its worst on such a matrix (every row prefers the same
    columns: O(n³), ~10 s at n = 2000); warm-started from these duals it only mends round-off.
    FAQ's first gradient from the barycentre is exactly this matrix when there are no seeds and
    no linear term.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"a and b must be vectors of one length, got shapes {a.shape} and {b.shape}")
    sa = np.sort(a)
    order_b = np.argsort(-b, kind="stable")
    sb = b[order_b]
    steps = 0.5 * (sa[:-1] + sa[1:]) * np.diff(sb)
    v = np.empty_like(b)
    v[order_b] = np.concatenate(([0.0], np.cumsum(steps)))
    return v
