"""One-pass RBF kernel sums: the statistics of :mod:`fastcka._cka_stats` from the median pass.

With the exact paper or Kornblith bandwidth, the bandwidth is an order statistic of the
n(n−1)/2 squared distances (:mod:`fastcka._median`), known only after a pass over every tile;
the kernel sums then took a second pass, a second GEMM of every tile (half the time).  Here the
median's first pass produces them too.

Before that pass, the random pairs the median samples anyway place each input's bandwidth:
``γ0`` in the middle of the range the selected ``γ`` falls in (± ``PLAN_SDS`` sampling
standard deviations of the median estimate).  With ``u = γ0·d``, ``E = exp(−u)`` and
``ε = γ/γ0 − 1`` (a few 1e-3),

    exp(−γ d) − c0 = v_0 + Σ_{k=1}^{L−1} (−ε)^k v_k + R,   v_0 = E − c0,  v_k = E u^k / k!

Each pool thread, holding the m distance tiles of its tile for the median's counts, also sums
the products ``v_{a,k}·v_{b,q}`` with ``k + q <= L − 1`` of every pair of inputs and the row
and column sums of every ``v_k`` (kernel ``tile.moments`` of ``kernels/cka_cpu.py``; O(m·L·n)
numbers in all).  Once the median gives ``γ``, every statistic is a polynomial in the ``ε``:
``Σ (K_a − c0_a)(K_b − c0_b) = Σ_t (−ε_a)^k (−ε_b)^q P_t`` and the row sums likewise.  The
constant ``c0`` (:func:`fastcka._cka_stats.rbf_shift` at ``γ0``) is taken off every kernel
value, as the two-pass path takes its own: neither HSIC estimator changes with it.

Error, bounded at run time: with ``u`` at most ``umax = γ0 ×`` the input's largest distance
(the pass finds it), per pair value the remainder obeys
``|R| <= |ε|^L max_{u <= umax} u^L e^{−(1−|ε|)u} / L!`` (the Taylor remainder of
``e^{−εu}`` times ``E``), and the dropped products (``k + q >= L``) of two inputs obey
``Σ |ε_a|^k |ε_b|^q W_k W_q`` with ``W_0 = 1``, ``W_k = max_{u <= umax} E u^k/k!``.
These bounds, carried through both HSIC estimators (first order), must keep every CKA of the
statistics within ``CKA_TOL`` (every HSIC within ``CKA_TOL·√(HSIC_aa·HSIC_bb)``); otherwise
(a median far from its sample estimate, a too-wide range) the statistics come from the second
pass as before.  The degree ``L`` is the smallest (at most ``LMAX``) whose per-value bound at
the planned range (``umax`` from the sample's largest distance × ``PLAN_UMAX``) is below
``PLAN_TOL``: 5 on the benchmark inputs, where the post-check still holds at 4-8x the
observed ``ε``.
"""

from __future__ import annotations

import math

import numpy as np

from . import _median, config
from ._cka_stats import _Stats, rbf_shift

LMAX = 9
PLAN_TOL = 2.0 ** -54  # per-value bound at the planned ε range (a quarter of an ulp of 1)
PLAN_SDS = 4.0  # the planned range: ± this many sampling standard deviations of the median
CKA_TOL = 1e-13  # post-check: the first-order bound of every CKA's change
#: the plan's largest u: the sample's largest distance × this (the post-check takes the pass's
#: own largest distance)
PLAN_UMAX = 1.5
CHUNK = 256  # columns of the moment kernel's scratch rows


def _peak(k: int, a: float, umax: float) -> float:
    """``log max_{0 <= u <= umax} u^k e^{−a u}`` (k >= 1, a > 0): at ``u = min(k/a, umax)``."""
    u = min(k / a, umax)
    return -math.inf if u <= 0.0 else k * math.log(u) - a * u


def remainder_bound(eps: float, L: int, umax: float = math.inf) -> float:
    """Bound on ``|exp(−(1+ε)u) − Σ_{k<L} (−ε)^k e^{−u} u^k/k!|`` over ``0 <= u <= umax``:
    ``|ε|^L max_u u^L e^{−(1−|ε|)u} / L!``."""
    e = abs(float(eps))
    if e >= 1.0:
        return math.inf
    if e == 0.0:
        return 0.0
    return math.exp(L * math.log(e) + _peak(L, 1.0 - e, umax) - math.lgamma(L + 1))


def _w(k: int, umax: float = math.inf) -> float:
    """``max_{0 <= u <= umax} e^{−u} u^k / k!`` (1 at k = 0: bounds ``|E − c0|`` too)."""
    return 1.0 if k == 0 else math.exp(_peak(k, 1.0, umax) - math.lgamma(k + 1))


def product_bound(ea: float, eb: float, L: int, ua: float = math.inf,
                  ub: float = math.inf) -> float:
    """Bound on the error of one product ``(K_a − c_a)(K_b − c_b)`` from its degree ``< L``
    terms, for ``u`` up to ``ua`` / ``ub`` (``γ0 ×`` the largest distance)."""
    ea, eb = abs(float(ea)), abs(float(eb))
    ra, rb = remainder_bound(ea, L, ua), remainder_bound(eb, L, ub)
    wa = [_w(k, ua) for k in range(L)]
    wb = [_w(k, ub) for k in range(L)]
    ta = sum(ea ** k * wa[k] for k in range(L))
    tb = sum(eb ** k * wb[k] for k in range(L))
    drop = sum(ea ** k * eb ** q * wa[k] * wb[q]
               for k in range(L) for q in range(L) if k + q >= L)
    return drop + ra * tb + rb * ta + ra * rb


class OnePass:
    """The one-pass statistics of m inputs whose bandwidths the median pass selects.

    ``mode``: ``"paper"`` or ``"kornblith"`` (``threshold`` scales σ), as in
    :func:`fastcka._cka._sigmas`.  :func:`fastcka._median.sqdist_order_stats` calls
    :meth:`plan` with its sampled distances, then, in its first pass, :meth:`scratch` once per
    pool thread, :meth:`tile` per tile and :meth:`add` per tile in tile order; :meth:`stats`
    then gives the statistics at the selected bandwidths, or None (the second pass is needed).
    After the first pass it also sets :attr:`vmax`, each input's largest distance (the bound's
    largest ``u``), from the targets' own maxima.
    """

    def __init__(self, m: int, mode: str, threshold: float = 1.0, kernel=None):
        self.m = int(m)
        self.mode = mode
        self.thr = float(threshold) if mode == "kornblith" else 1.0
        self.kernel = kernel
        self.active = False
        self.L = 0

    @classmethod
    def maybe(cls, be, n_inputs: int, sigma, threshold: float):
        """A :class:`OnePass` where the host's tile pool can run it, else None."""
        if be.device != "cpu" or not isinstance(sigma, str) or sigma not in ("paper", "kornblith"):
            return None
        if not 0 < n_inputs <= int(config.RBF_ONE_PASS_MAX_INPUTS):
            return None
        pool = getattr(be.ops("cka"), "tile", None)
        kernel = getattr(pool, "moments", None)
        if kernel is None:
            return None
        return cls(n_inputs, sigma, threshold, kernel)

    def gamma(self, m2: float) -> float:
        """γ (in the units of the tiles) of a median squared distance ``m2``."""
        return 1.0 / (2.0 * m2 * self.thr * self.thr)

    # ----------------------------------------------------------------------------- the plan
    def plan(self, samples, n: int, M: int, sq_means) -> bool:
        """``γ0``, ``c0`` and the degree ``L`` from the sorted sampled distances of each input.

        False (and the median runs alone) when a sample holds too few non-zero values or no
        degree up to ``LMAX`` meets ``PLAN_TOL`` on the planned range.
        """
        self.active = False
        if len(samples) != self.m or n < 4:
            return False
        target = _median._targets(n, [(0, self.mode)])[0][0]  # (the first kornblith rank)
        g0, eps, umax = [], [], []
        for smp in samples:
            smp, q = _median.target_sample(np.asarray(smp), target, n, M)
            if smp.size < 64:
                return False
            sd = 0.5 / math.sqrt(smp.size)
            lo = _median.sample_quantile(smp, q - PLAN_SDS * sd)
            hi = _median.sample_quantile(smp, q + PLAN_SDS * sd)
            if not (lo > 0 and math.isfinite(hi)):
                return False
            glo, ghi = self.gamma(hi), self.gamma(lo)
            g = 0.5 * (glo + ghi)
            g0.append(g)
            eps.append((ghi - glo) / (2.0 * g))
            umax.append(g * float(smp[-1]) * PLAN_UMAX)
        pairs = [(a, b) for a in range(self.m) for b in range(a, self.m)]
        L = next((L for L in range(2, LMAX + 1)
                  if max(product_bound(eps[a], eps[b], L, umax[a], umax[b]) for a, b in pairs)
                  <= PLAN_TOL), None)
        if L is None:
            return False
        self.n, self.L = int(n), int(L)
        self.vmax = None  # the largest distance of each input: set by the pass
        self.g0 = np.array(g0)
        self.c0 = np.array([rbf_shift(float(s), g) for s, g in zip(sq_means, g0, strict=True)])
        from .kernels.cka_cpu import moment_groups

        self.groups, self.terms = moment_groups(self.m, self.L)
        self.P = np.zeros(len(self.terms))
        self.rows = np.zeros((self.m * self.L, self.n))
        self.active = True
        return True

    # ------------------------------------------------------------------------- the pass
    def scratch(self, edge: int):
        """One pool thread's buffers for tiles of at most ``edge`` rows and columns."""
        R = self.m * self.L
        return (np.empty((self.m, edge * edge)), np.empty((R, CHUNK)), np.empty(CHUNK),
                np.empty(len(self.terms)), np.empty((R, edge)), np.empty((R, edge)))

    def tile(self, Df, bi: int, bj: int, diag: bool, scratch):
        """The moment sums of one tile from its m distance tiles (rows of ``Df``, C-ordered
        ``bi x bj`` blocks); returns ``(P, rows, cols)`` (copies)."""
        E, V, U, P, rows, cols = scratch
        k = bi * bj
        for a in range(self.m):
            np.multiply(Df[a, :k], -self.g0[a], out=E[a, :k])
            np.exp(E[a, :k], out=E[a, :k])
        self.kernel(Df, E, bi, bj, self.g0, self.c0, self.L, diag, self.groups, P,
                    rows[:, :bi], cols[:, :bj], V, U)
        return P.copy(), rows[:, :bi].copy(), cols[:, :bj].copy()

    def add(self, t, res) -> None:
        """Adds one tile's sums (the caller goes in tile order)."""
        i0, i1, j0, j1, _diag = t
        P, r, c = res
        self.P += P
        self.rows[:, i0:i1] += r
        self.rows[:, j0:j1] += c

    # ------------------------------------------------------------------------- the result
    def stats(self, gammas) -> _Stats | None:
        """The kernel statistics at the selected ``gammas`` (units of the tiles), or None when
        the error bound exceeds ``CKA_TOL`` (or the plan did not run)."""
        if not self.active:
            return None
        m, L, n = self.m, self.L, self.n
        eps = np.asarray(gammas, dtype=np.float64) / self.g0 - 1.0
        if not np.all(np.abs(eps) < 0.5):
            return None
        pw = (-eps)[:, None] ** np.arange(L)[None, :]  # (m, L): (−ε_a)^k
        S = np.zeros((m, m))
        for t, (a, k, b, q) in enumerate(self.terms):
            coef = pw[a, k] * pw[b, q] * (2.0 if a == b and k < q else 1.0)
            S[a, b] += 2.0 * coef * self.P[t]  # every tile stands for its mirror image
        d0 = 1.0 - self.c0  # K(i, i) = 1: v_0 = 1 − c0, v_k = 0
        S += n * np.outer(d0, d0)
        S = np.triu(S) + np.triu(S, 1).T
        rows = np.einsum("ak,akn->an", pw, self.rows.reshape(m, L, n)) + d0[:, None]
        diags = np.repeat(d0[:, None], n, axis=1)
        st = _Stats(n, S, rows, diags, [1.0] * m)
        return st if self._within(st, eps) else None

    def _within(self, st: _Stats, eps) -> bool:
        """Every CKA (and HSIC, relative to ``√(HSIC_aa·HSIC_bb)``) within ``CKA_TOL``."""
        m, L = self.m, self.L
        um = ([math.inf] * m if self.vmax is None
              else [float(g) * float(v) for g, v in zip(self.g0, self.vmax, strict=True)])
        rho = [remainder_bound(e, L, u) for e, u in zip(eps, um, strict=True)]
        for est in ("biased", "unbiased"):
            H = [st.hsic(a, a, est) for a in range(m)]
            if not all(h > 0 for h in H):
                return False
            own = [self._hsic_err(st, a, a, est, product_bound(eps[a], eps[a], L, um[a], um[a]),
                                  rho[a], rho[a]) / H[a] for a in range(m)]
            for a in range(m):
                for b in range(a + 1, m):
                    scale = math.sqrt(H[a] * H[b])
                    err = self._hsic_err(st, a, b, est,
                                         product_bound(eps[a], eps[b], L, um[a], um[b]),
                                         rho[a], rho[b])
                    cka = abs(st.hsic(a, b, est)) / scale
                    if not err / scale + cka * 0.5 * (own[a] + own[b]) <= CKA_TOL:
                        return False
            if not max(own) <= CKA_TOL:
                return False
        return True

    @staticmethod
    def _hsic_err(st: _Stats, a: int, b: int, est: str, pi: float, ra: float, rb: float) -> float:
        """First-order bound on an HSIC's change: ``|ΔS| <= n²·pi``, row sums ``|Δr| <= n·ρ``."""
        n = st.n
        dS = n * n * pi
        if est == "biased":
            ua, ub = st.rows[a], st.rows[b]
            denom = (n - 1) ** 2
            lin = 2.0 / n
            quad = 1.0 / (n * n)
        else:
            ua, ub = st.rows[a] - st.diags[a], st.rows[b] - st.diags[b]
            denom = n * (n - 3)
            lin = 2.0 / (n - 2)
            quad = 1.0 / ((n - 1) * (n - 2))
        dra, drb = n * ra, n * rb
        sa, sb = abs(float(ua.sum())), abs(float(ub.sum()))
        cross = lin * (dra * float(np.abs(ub).sum()) + drb * float(np.abs(ua).sum())
                       + n * dra * drb)
        tot = quad * (n * dra * sb + n * drb * sa + n * n * dra * drb)
        return (dS + cross + tot) / denom
