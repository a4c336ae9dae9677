"""The free block of a seeded QAP and the Frank–Wolfe loop of FAQ on a batch of restarts,
written once for NumPy and CuPy.

The problem.  With the ``m`` seeds first (rows of ``A`` by ``perm_A``, of ``B`` by
``perm_B``), the seeded objective of Fishkind et al. (2019) splits into a constant (seeds
against seeds), a linear term ``trace(Cᵀ P)`` with ``C = A₂₁ B₂₁ᵀ + A₁₂ᵀ B₁₂ (+ S₂₂)`` and the
quadratic term ``trace(A₂₂ᵀ P B₂₂ Pᵀ)`` over the ``n' = n - m`` free nodes.  The loop only ever
needs ``C``, ``M(P) = A₂₂ P B₂₂ᵀ`` (and ``A₂₂ᵀ P B₂₂`` when asymmetric) for a stack of
doubly-stochastic ``P`` or of permutations ``Q``, and the barycentre's ``M(J)``:
:class:`DenseProblem` and :class:`FactoredProblem` give exactly that, for dense matrices and
for feature matrices ``X``, ``Y`` standing for the kernels ``XXᵀ``, ``YYᵀ`` (never formed).

The loop.
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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import Backend, is_cupy_array
from ._lap import FaqOps, LapSolver, faq_ops, rank_one_duals

# A (or B) whose max |A - Aᵀ| is at most this times max |A| counts as symmetric (rounding left
# by centring, e.g. H K H) and is iterated on as (A + Aᵀ) / 2 with the one-GEMM iteration
SYMMETRY_RTOL = 1e-12


def _lmul(xp, W, X):
    """W @ X[r] for every r of the stack X (k, a, b); W (c, a): one batched ``matmul``."""
    return xp.matmul(W, X)


def _rmul(xp, X, W):
    """X[r] @ W for every r of the stack X (k, a, b); W (b, c).  One (k·a)×b GEMM."""
    k, a, b = X.shape
    if not X.flags.c_contiguous if hasattr(X, "flags") else False:
        X = xp.ascontiguousarray(X)
    return (X.reshape(k * a, b) @ W).reshape(k, a, W.shape[1])


@dataclass
class DenseProblem:
    """Free block of a dense problem: ``A₂₂``, ``B₂₂`` (and transposes, C-contiguous), ``C``."""

    A22: Any
    B22T: Any
    A22T: Any
    B22: Any
    C: Any
    symmetric: bool
    linear: bool            # C is not identically zero (seeds or S)
    dtype: np.dtype
    xp: Any
    ops: FaqOps             # the request's kernels
    cache: dict = field(default_factory=dict)   # results shared by the problem's batches
    factored = False

    @property
    def n(self) -> int:
        return self.A22.shape[0]

    def apply(self, P, transpose=False):
        """A₂₂ P B₂₂ᵀ (or A₂₂ᵀ P B₂₂) for a stack P (k, n, n): two GEMMs per restart."""
        W, R = (self.A22T, self.B22) if transpose else (self.A22, self.B22T)
        Y = _rmul(self.xp, P, R)
        if self.xp is not np:
            return _lmul(self.xp, W, Y)
        # on the CPU W·Y[r] for all r as one tall GEMM, (Y[r]ᵀ Wᵀ)ᵀ over the stacked Y[r]ᵀ:
        # ~1.4× faster than k batched n×n products at n = 500
        k, a, b = Y.shape
        Yt = np.ascontiguousarray(Y.transpose(0, 2, 1))
        del Y
        return (Yt.reshape(k * b, a) @ W.T).reshape(k, b, W.shape[0]).transpose(0, 2, 1)

    def apply_perm(self, cols, transpose=False):
        """A₂₂ Q B₂₂ᵀ for permutations Q (Q[i, cols[i]] = 1): a row gather plus one GEMM."""
        if transpose:
            return self.xp.matmul(self.A22T, self.B22[cols])
        return self.xp.matmul(self.A22, self.B22T[cols])

    def barycenter_factors(self, transpose=False):
        """(u, w) with A₂₂ J B₂₂ᵀ = u wᵀ / n, J = 11ᵀ/n."""
        if transpose:
            return self.A22.sum(axis=0), self.B22.sum(axis=0)
        return self.A22.sum(axis=1), self.B22.sum(axis=1)


@dataclass
class FactoredProblem:
    """Free block of a factored problem: features ``X₂``, ``Y₂`` (kernels ``X₂X₂ᵀ``, ``Y₂Y₂ᵀ``)."""

    X2: Any
    Y2: Any
    C: Any
    linear: bool
    dtype: np.dtype
    xp: Any
    ops: FaqOps
    cache: dict = field(default_factory=dict)
    factored = True
    symmetric = True        # linear kernels are symmetric

    @property
    def n(self) -> int:
        return self.X2.shape[0]

    def apply(self, P, transpose=False):
        """X₂ (X₂ᵀ P Y₂) Y₂ᵀ for a stack P: (p×n')(n'×q) products, never an n'×n' kernel."""
        xp = self.xp
        W = _rmul(xp, _lmul(xp, self.X2.T, P), self.Y2)            # X2ᵀ P Y2  (k, p, q)
        return _rmul(xp, _lmul(xp, self.X2, W), self.Y2.T)

    def apply_perm(self, cols, transpose=False):
        xp = self.xp
        W = _lmul(xp, self.X2.T, self.Y2[cols])                      # X2ᵀ Q Y2  (k, p, q)
        return _rmul(xp, _lmul(xp, self.X2, W), self.Y2.T)

    def barycenter_factors(self, transpose=False):
        return self.X2 @ self.X2.sum(axis=0), self.Y2 @ self.Y2.sum(axis=0)


Problem = DenseProblem | FactoredProblem


def barycenter_M(pr: Problem, transpose=False):
    """A₂₂ J B₂₂ᵀ with J = 11ᵀ/n: rank one, O(n²)."""
    u, w = pr.barycenter_factors(transpose)
    return pr.xp.outer(u, w) / pr.n


def near_symmetric(xp, M) -> bool:
    """max |M - Mᵀ| <= SYMMETRY_RTOL * max |M| (exactly symmetric for an all-zero M)."""
    if M.size == 0:
        return True
    return float(xp.abs(M - M.T).max()) <= SYMMETRY_RTOL * float(xp.abs(M).max())


def build_problem(be: Backend, A, B, S, perm_A, perm_B, m, dtype, factored,
                  ops: FaqOps | None = None) -> Problem:
    """The free block of ``A``, ``B`` (rows/columns reordered seeds first) in ``dtype`` on ``be``.

    ``ops``: the request's kernels (looked up here when not given, e.g. on a cluster worker).
    """
    xp = be.xp
    ops = faq_ops(be) if ops is None else ops
    pa = be.asarray(perm_A)
    pb = be.asarray(perm_B)
    linear = bool(m) or S is not None
    if factored:
        X = be.asarray(A, dtype)[pa]
        Y = be.asarray(B, dtype)[pb]
        X1, X2 = X[:m], X[m:]
        Y1, Y2 = Y[:m], Y[m:]
        # linear term of the free block: A21 B21ᵀ + A12ᵀ B12 = 2 X2 (X1ᵀ Y1) Y2ᵀ
        C = 2.0 * (X2 @ (X1.T @ Y1)) @ Y2.T if m else xp.zeros((len(X2), len(Y2)), dtype)
        if S is not None:
            C = C + be.asarray(S, dtype)[pa[m:]][:, pb[m:]]
        return FactoredProblem(X2=X2, Y2=Y2, C=C, linear=linear, dtype=dtype, xp=xp, ops=ops)
    Ad = be.asarray(A, dtype)[pa][:, pa]
    Bd = be.asarray(B, dtype)[pb][:, pb]
    sym = near_symmetric(xp, Ad) and near_symmetric(xp, Bd)
    if sym:  # rounding-level asymmetry: iterate on the symmetric parts
        Ad = 0.5 * (Ad + Ad.T) if not bool(xp.array_equal(Ad, Ad.T)) else Ad
        Bd = 0.5 * (Bd + Bd.T) if not bool(xp.array_equal(Bd, Bd.T)) else Bd
    A12, A21, A22 = Ad[:m, m:], Ad[m:, :m], Ad[m:, m:]
    B12, B21, B22 = Bd[:m, m:], Bd[m:, :m], Bd[m:, m:]
    # Fishkind et al. 2019: the seeded objective's linear term, A₂₁ B₂₁ᵀ + A₁₂ᵀ B₁₂
    C = A21 @ B21.T + A12.T @ B12 if m else xp.zeros_like(A22)
    if S is not None:
        C = C + be.asarray(S, dtype)[pa[m:]][:, pb[m:]]
    c = xp.ascontiguousarray
    return DenseProblem(A22=c(A22), B22T=c(B22.T), A22T=c(A22.T), B22=c(B22), C=c(C),
                        symmetric=sym, linear=linear, dtype=dtype, xp=xp, ops=ops)


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
    solver = LapSolver(be, pr.ops.lap, lap_kind, k, pr.n)
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
        if pr.ops.gradient is not None:
            return pr.ops.gradient(MPa, pr.C)
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
    act = np.flatnonzero(st.active)
    if len(act) == 0:
        return False
    st.nit[act] = it
    act, cols, cols_h = _directions(be, pr, st, solver, act, maximize)      # lines 3–4
    if act is None:
        return False
    sub = _active_state(be, st, act)
    shared = _shared(be, cols_h)
    sub.MQ = _direction_products(pr, cols, shared)
    tm = _step_terms(pr, sub, cols)                                         # line 5
    t64, t_h, stop = _line_search(be, tm.a, tm.b, tm.scale, tm.dD2, maximize, tol, pr.n)
    _step(pr, st, sub, tm, cols, shared, t64.astype(pr.dtype), t_h)          # line 6
    st.last_t[act] = t_h
    st.last_cols[act] = cols_h
    st.active[act[stop]] = False
    return True


@dataclass
class _Active:
    """The active restarts' part of a :class:`_Batch` (the batch's own arrays when all are)."""

    ai: Any                 # their indices on the device, None when every restart is active
    P: Any
    MP: Any
    pMP: Any
    cP: Any
    pP: Any
    MQ: Any = None          # M(Q) of their directions (released by :func:`_step`)


def _active_state(be: Backend, st: _Batch, act) -> _Active:
    if len(act) == len(st.active):
        return _Active(None, st.P, st.MP, st.pMP, st.cP, st.pP)
    ai = be.asarray(act)
    return _Active(ai, st.P[ai], st.MP[ai], st.pMP[ai], st.cP[ai], st.pP[ai])


@dataclass
class _Terms:
    """Algorithm 1, line 5: f(P + t(Q-P)) = f(P) + b t + a t², with the inner products used."""

    a: Any                  # g(Q - P), g(X) = <X, A X Bᵀ>
    b: Any                  # d/dt of the objective at t = 0
    scale: Any              # magnitude of the sums a and b are differences of
    dD2: Any                # |Q - P|²
    cQ: Any                 # <C, Q>
    pQ: Any                 # <P, Q>


def _step_terms(pr: Problem, sub: _Active, cols) -> _Terms:
    """The coefficients of the line search: O(n'²) inner products and O(n') gathers."""
    xp, n = pr.xp, pr.n
    rows = xp.arange(n)[None, :]
    bidx = xp.arange(len(cols))[:, None]
    qMP = sub.MP[bidx, rows, cols].sum(axis=1)
    qMQ = sub.MQ[bidx, rows, cols].sum(axis=1)
    pMQ = xp.einsum("kij,kij->k", sub.P, sub.MQ)
    cQ = pr.C[rows, cols].sum(axis=1)
    pQ = sub.P[bidx, rows, cols].sum(axis=1)
    a = qMQ - qMP - pMQ + sub.pMP
    b = pMQ + qMP - 2.0 * sub.pMP + (cQ - sub.cP)
    scale = abs(qMQ) + abs(qMP) + abs(pMQ) + abs(sub.pMP) + abs(cQ) + abs(sub.cP)
    dD2 = sub.pP - 2.0 * pQ + n
    return _Terms(a=a, b=b, scale=scale, dD2=dD2, cQ=cQ, pQ=pQ)


def _step(pr: Problem, st: _Batch, sub: _Active, tm: _Terms, cols, shared, t, t_h):
    """Algorithm 1, line 6: P ← (1-t) P + t Q; M ← (1-t) M + t M(Q); the scalars likewise."""
    xp, n = pr.xp, pr.n
    rows = xp.arange(n)[None, :]
    bidx = xp.arange(len(cols))[:, None]
    tt = t[:, None, None]
    Pa, MPa = sub.P, sub.MP
    MQ, sub.MQ = sub.MQ, None
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
    new_pMP = sub.pMP + t * (tm.b - (tm.cQ - sub.cP)) + t * t * tm.a
    new_cP = sub.cP + t * (tm.cQ - sub.cP)
    new_pP = sub.pP + 2 * t * (tm.pQ - sub.pP) + t * t * tm.dD2
    ai = sub.ai
    if ai is None:
        st.P, st.MP = Pa, MPa
        if not pr.symmetric:
            st.MT *= (1 - tt)
            st.MT += tt * _direction_products(pr, cols, shared, transpose=True)
        st.pMP, st.cP, st.pP = new_pMP, new_cP, new_pP
        return
    st.P[ai] = Pa
    st.MP[ai] = MPa
    if not pr.symmetric:
        st.MT[ai] = st.MT[ai] * (1 - tt) + tt * _direction_products(
            pr, cols, shared, transpose=True)
    st.pMP[ai] = new_pMP
    st.cP[ai] = new_cP
    st.pP[ai] = new_pP


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
