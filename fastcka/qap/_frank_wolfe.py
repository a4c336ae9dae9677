"""The Frank–Wolfe loop of FAQ on a batch of restarts, written once for NumPy and CuPy.

Vogelstein et al. (2015), Algorithm 1, on the free block of the seeded problem (Fishkind et al.
2019), for ``k`` restarts at once (``P`` is a ``(k, n', n')`` stack):

- line 1: initial ``P`` (barycentre, randomized or given);
- line 2: loop while a restart has not converged (step ``‖P⁺ - P‖_F / √n' < tol``, or the
  direction is the permutation ``P`` already is) and fewer than ``maxiter`` iterations;
- line 3: gradient ``∇f(P) = A₂₂ P B₂₂ᵀ + A₂₂ᵀ P B₂₂ + C``;
- line 4: direction ``Q`` = the permutation solving the LAP on the gradient;
- line 5: step size ``t`` = the exact maximiser (minimiser) of the quadratic
  ``f(P + t (Q - P))`` over ``[0, 1]``;
- line 6: ``P ← P + t (Q - P)``;
- line 8: projection of ``P`` onto the permutations (a LAP).

The state kept per restart is ``P``, ``M = A₂₂ P B₂₂ᵀ`` (``Mᵀ``-side ``A₂₂ᵀ P B₂₂`` when
asymmetric) and the scalars ``<P, M>``, ``<C, P>``, ``|P|²``.  Because ``Q`` is a permutation,
``M(Q)`` is a row gather plus one GEMM, and ``M(P + t(Q-P)) = (1-t) M(P) + t M(Q)``; the line
search needs only O(n'²) inner products.  The stacks and the scalars stay on the compute device;
the host receives, per iteration, the directions (which restarts converged, which share a
direction) and one vector of step sizes and stop flags: two transfers of O(k n') numbers.

References
----------
Vogelstein et al. 2015, PLoS ONE 10 e0121002, doi:10.1371/journal.pone.0121002 (FAQ).
Fishkind et al. 2019, Pattern Recognition 87 203–215, doi:10.1016/j.patcog.2018.09.014 (seeds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import Backend, is_cupy_array
from ._lap import LapSolver, rank_one_duals
from ._ops import ops
from ._problem import Problem, barycenter_M


def _xp(a):
    if is_cupy_array(a):
        import cupy

        return cupy
    return np


def _snap_ties(a, b, scale):
    """``b`` with ``a + b = 0`` exactly where the full-step gain ``a + b`` is within rounding.

    ``a + b`` is a difference of sums of magnitude ``scale`` (per restart), some of them updated
    incrementally: their drift (−5.7e-14 where the exact gain is 0) must not decide an endpoint
    tie, which the rule of :func:`_step_sizes` gives to t = 1.
    """
    xp = _xp(a)
    tie = xp.abs(a + b) <= 64.0 * np.finfo(np.float64).eps * scale
    return xp.where(tie, -a, b)


def _step_sizes(a, b, s):
    """argmax over t in [0, 1] of s·(a t² + b t); endpoint ties go to t = 1 (SciPy's choice)."""
    xp = _xp(a)
    t = xp.where((a + b) * s >= 0, 1.0, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = -b / (2 * a)
    inner = (a * s < 0) & (vertex >= 0) & (vertex <= 1)
    return xp.where(inner, vertex, t)


@dataclass
class _Batch:
    """State of k restarts: stacks and scalars on the device, bookkeeping on the host."""

    P: Any
    MP: Any
    MT: Any                 # None for symmetric problems
    pMP: Any                # <P, M(P)> per restart
    cP: Any                 # <C, P>
    pP: Any                 # |P|²
    active: np.ndarray      # restarts still iterating
    nit: np.ndarray
    last_t: np.ndarray      # last step size (1: P is the permutation last_cols)
    last_cols: np.ndarray


def frank_wolfe(be: Backend, pr: Problem, k: int, P, maximize: bool, maxiter: int, tol: float,
                lap_kind: str):
    """Frank–Wolfe on a batch of k restarts: (cols (k, n'), nit (k,), free-block objective (k,)).

    ``P``: the (k, n', n') starts, or None for the barycentre.  The objective is that of the
    final permutation where the loop ended on one (NaN elsewhere).
    """
    solver = LapSolver(be, lap_kind, k, pr.n)
    st = _start(be, pr, k, P, maximize, solver)
    for it in range(1, maxiter + 1):                    # Algorithm 1, line 2
        if not _iterate(be, pr, st, solver, it, maximize, tol):
            break
    return _project(be, st, solver, k)


def _start(be: Backend, pr: Problem, k: int, P, maximize: bool, solver: LapSolver) -> _Batch:
    """Algorithm 1, line 1: the starts, their M(P), scalars and first LAP's warm start."""
    xp, n, dt, sym = pr.xp, pr.n, pr.dtype, pr.symmetric
    bary_MP = barycenter_M(pr).astype(dt)
    bary_MT = None if sym else barycenter_M(pr, transpose=True).astype(dt)
    if P is None:  # barycenter
        P = xp.full((k, n, n), 1.0 / n, dtype=dt)
        MP = xp.repeat(bary_MP[None], k, axis=0)
        MT = None if sym else xp.repeat(bary_MT[None], k, axis=0)
        if sym and not pr.linear and solver.kind in ("jv", "auction"):
            # the first gradient 2 u wᵀ / n is rank one: start the LAP from its optimal duals
            u, w = pr.barycenter_factors()
            sign = -1.0 if maximize else 1.0
            solver.start_from(rank_one_duals(sign * 2.0 * be.to_host(u) / n, be.to_host(w)))
    else:
        MP = pr.apply(P)
        MT = None if sym else pr.apply(P, transpose=True)
        if k > 1 and solver.kind in ("jv", "auction"):
            # warm start every restart's first LAP with the duals at the barycentre
            G0 = (2.0 * bary_MP if sym else bary_MP + bary_MT) + pr.C
            solver.prime(G0, maximize=maximize, cache=pr.cache)
    return _Batch(P=P, MP=MP, MT=MT, pMP=xp.einsum("kij,kij->k", P, MP),
                  cP=xp.einsum("kij,ij->k", P, pr.C), pP=xp.einsum("kij,kij->k", P, P),
                  active=np.ones(k, dtype=bool), nit=np.zeros(k, dtype=np.int64),
                  last_t=np.zeros(k), last_cols=np.full((k, n), -1, dtype=np.int64))


def _gradient(be: Backend, pr: Problem, MPa, MTa):
    """Algorithm 1, line 3: ∇f(P) = M(P) + Mᵀ-side(P) + C (2·M(P) + C when symmetric)."""
    if pr.symmetric:
        fused = ops("faq_gradient", be)
        if fused is not None:
            return fused(MPa, pr.C)
        G = MPa * 2.0
    else:
        G = MPa + MTa
    G += pr.C
    return G


def _directions(be: Backend, pr: Problem, st: _Batch, solver: LapSolver, act, maximize):
    """Algorithm 1, line 4, for the active restarts ``act``: (act, cols, cols_h) of those that
    have not converged (``act`` None when none is left).

    A restart whose P already is the permutation Q (last step 1, same Q) has converged: its step
    would be zero.
    """
    full = len(act) == len(st.active)
    ai = None if full else be.asarray(act)
    MPa = st.MP if full else st.MP[ai]
    MTa = None if pr.symmetric else (st.MT if full else st.MT[ai])
    G = _gradient(be, pr, MPa, MTa)
    del MPa, MTa
    cols = solver.solve(G, maximize=maximize, which=act)       # (ka, n) backend ints
    del G
    cols_h = be.to_host(cols)                                    # transfer 1 of 2
    same = (st.last_t[act] == 1.0) & (cols_h == st.last_cols[act]).all(axis=1)
    if same.any():
        st.active[act[same]] = False
        keep = ~same
        if not keep.any():
            return None, None, None
        act = act[keep]
        cols = cols[be.asarray(np.flatnonzero(keep))]
        cols_h = cols_h[keep]
    return act, cols, cols_h


def _shared(be: Backend, cols_h):
    """(distinct directions, index of each restart's) on the backend, or None if all differ.

    Restarts often share a direction (the seed term dominates the gradient): one GEMM per
    distinct permutation, copied to the restarts that share it.
    """
    uniq, inv = np.unique(cols_h, axis=0, return_inverse=True)
    if len(uniq) == len(cols_h):
        return None
    return be.asarray(uniq), be.asarray(inv.reshape(-1))


def _direction_products(pr: Problem, cols, shared, transpose: bool = False):
    """M(Q) (``transpose``: A₂₂ᵀ Q B₂₂) for the directions Q, one GEMM per distinct Q."""
    if shared is not None:
        ucols, uinv = shared
        return pr.apply_perm(ucols, transpose)[uinv]
    return pr.apply_perm(cols, transpose)


def _iterate(be: Backend, pr: Problem, st: _Batch, solver: LapSolver, it: int, maximize: bool,
             tol: float) -> bool:
    """One Frank–Wolfe iteration of the active restarts; False when none is left."""
    xp, n, dt = pr.xp, pr.n, pr.dtype
    act = np.flatnonzero(st.active)
    if len(act) == 0:
        return False
    st.nit[act] = it
    k = len(st.active)
    act, cols, cols_h = _directions(be, pr, st, solver, act, maximize)
    if act is None:
        return False
    full = len(act) == k
    ai = None if full else be.asarray(act)
    Pa = st.P if full else st.P[ai]
    MPa = st.MP if full else st.MP[ai]
    pMPa = st.pMP if full else st.pMP[ai]
    cPa = st.cP if full else st.cP[ai]
    pPa = st.pP if full else st.pP[ai]
    shared = _shared(be, cols_h)
    MQ = _direction_products(pr, cols, shared)
    # Algorithm 1, line 5: f(P + t(Q-P)) = f(P) + b t + a t² with g(X) = <X, A X Bᵀ>
    rows = xp.arange(n)[None, :]
    bidx = xp.arange(len(act))[:, None]
    qMP = MPa[bidx, rows, cols].sum(axis=1)
    qMQ = MQ[bidx, rows, cols].sum(axis=1)
    pMQ = xp.einsum("kij,kij->k", Pa, MQ)
    cQ = pr.C[rows, cols].sum(axis=1)
    pQ = Pa[bidx, rows, cols].sum(axis=1)
    a = qMQ - qMP - pMQ + pMPa                      # g(Q - P)
    b = pMQ + qMP - 2.0 * pMPa + (cQ - cPa)          # d/dt of the objective at t = 0
    scale = abs(qMQ) + abs(qMP) + abs(pMQ) + abs(pMPa) + abs(cQ) + abs(cPa)
    dD2 = pPa - 2.0 * pQ + n                         # |Q - P|²
    t64, t_h, stop = _line_search(be, a, b, scale, dD2, maximize, tol, n)
    t = t64.astype(dt)
    tt = t[:, None, None]
    # Algorithm 1, line 6: P <- (1-t) P + t Q ; M <- (1-t) M + t M(Q) ; scalars likewise
    if (t_h == 1.0).all():
        # full steps (the rule when seeds dominate): P = Q and M = M(Q) exactly, without the
        # four passes over the batch of the general update
        Pa.fill(0)
        Pa[bidx, rows, cols] = 1
        MPa = MQ
    else:
        Pa *= (1 - tt)
        Pa[bidx, rows, cols] += t[:, None]
        MPa *= (1 - tt)
        MQ *= tt
        MPa += MQ
    del MQ
    new_pMP = pMPa + t * (b - (cQ - cPa)) + t * t * a
    new_cP = cPa + t * (cQ - cPa)
    new_pP = pPa + 2 * t * (pQ - pPa) + t * t * dD2
    if full:
        st.P, st.MP = Pa, MPa
        if not pr.symmetric:
            st.MT *= (1 - tt)
            st.MT += tt * _direction_products(pr, cols, shared, transpose=True)
        st.pMP, st.cP, st.pP = new_pMP, new_cP, new_pP
    else:
        st.P[ai] = Pa
        st.MP[ai] = MPa
        if not pr.symmetric:
            st.MT[ai] = st.MT[ai] * (1 - tt) + tt * _direction_products(
                pr, cols, shared, transpose=True)
        st.pMP[ai] = new_pMP
        st.cP[ai] = new_cP
        st.pP[ai] = new_pP
    st.last_t[act] = t_h
    st.last_cols[act] = cols_h
    st.active[act[stop]] = False
    return True


def _line_search(be: Backend, a, b, scale, dD2, maximize: bool, tol: float, n: int):
    """(t float64 on the device, t on the host, stop flags on the host) of the active restarts.

    ``stop``: the step ``t |Q - P|_F / √n`` is below ``tol`` (Algorithm 1, line 2's criterion,
    as SciPy's).  Both come to the host in one transfer (transfer 2 of 2).
    """
    xp = be.xp
    a64 = a.astype(np.float64)
    b64 = _snap_ties(a64, b.astype(np.float64), scale.astype(np.float64))
    t64 = _step_sizes(a64, b64, 1.0 if maximize else -1.0)
    step = t64 * xp.sqrt(xp.maximum(dD2.astype(np.float64), 0.0)) / math.sqrt(n)
    finite = xp.isfinite(a64) & xp.isfinite(b64)
    host = be.to_host(xp.concatenate([t64, (step < tol).astype(np.float64), finite.astype(np.float64)]))
    ka = len(t64)
    if not (host[2 * ka:] > 0).all():
        raise ValueError("the Frank–Wolfe iterates overflowed (non-finite objective terms): "
                         "rescale `A` and `B`, or use dtype='float64'")
    return t64, host[:ka], host[ka:2 * ka] > 0


def _project(be: Backend, st: _Batch, solver: LapSolver, k: int):
    """Algorithm 1, line 8: P onto the permutations; exact shortcut where P is a permutation."""
    out = np.empty((k, st.last_cols.shape[1]), dtype=np.int64)
    perm_done = st.last_t == 1.0
    out[perm_done] = st.last_cols[perm_done]
    rest = np.flatnonzero(~perm_done)
    if len(rest):
        Pr = st.P if len(rest) == k else st.P[be.asarray(rest)]
        out[rest] = be.to_host(solver.solve(Pr, maximize=True, which=rest, final=True))
    inc = np.full(k, np.nan)
    inc[perm_done] = be.to_host(st.cP + st.pMP).astype(np.float64)[perm_done]
    return out, st.nit, inc
