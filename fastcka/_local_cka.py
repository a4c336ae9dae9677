r"""Local CKA: the score of every (source query, target query) pair against a shared base set.

For source queries ``Sq`` (q_s x d_s), target queries ``Tq`` (q_t x d_t) and paired base (seed)
sets ``Sb`` (p x d_s), ``Tb`` (p x d_t)::

    score[i, j] = CKA([s_i ; Sb], [t_j ; Tb])        over the p + 1 points,

with biased HSIC and centred kernels (METHOD.md §1, §3).  The reference code loops over all
q_s * q_t pairs and recomputes a full CKA each time (O(q^2 p^3)).  Here every score comes from
exact closed forms.

Closed form
-----------
``HKH`` (``H`` the centring matrix of the p + 1 points) does not change when ``f 1^T + 1 g^T`` is
added to ``K``, so the kernel may first be centred on the *base* points:
``K'(x, y) = K(x, y) - m(x) - m(y) + M`` with ``m(x)`` the mean of ``K(x, .)`` over the base and
``M`` the base mean.  Then the bordered kernel of query i is ``[[z_i, k_i'^T], [k_i', K_b']]``
where ``K_b' = H_p K_b H_p``, ``1^T k_i' = 0``, and with ``c = p / (p + 1)``:

    tr(K H L H) = <K_b', L_b'> + 2 c k_i'^T l_j' + c^2 z_i w_j.

The base term is a constant (fixed bandwidth), the query self terms give the denominators
``<K_b', K_b'> + 2c |k_i'|^2 + c^2 z_i^2`` per query, and the q_s x q_t cross term is one
``(q_s x r)(r x q_t)`` GEMM.  For the linear kernel ``k_i' = S~ a_i`` (``S~`` the centred base,
``a_i = s_i - mean(Sb)``), so the cross term is ``a_i^T (S~^T T~) b_j``: the rank-one update of
the base centred cross-covariance, with inner dimension ``r = min(p, d_s, d_t)``.

``sigma="paper"`` (the reference code): the RBF bandwidth is recomputed for every pair from the
p + 1 points of each side (lower median of the non-zero squared distances), so it depends on
i only (source) and j only (target).  It is found exactly from the sorted base distances and a
rank search per query.  The base term then depends on (sigma_i, tau_j):
``<K_b'(a), L_b'(b)> = F(a, b) - (2/p) R(a)^T R(b) + T(a) T(b) / p^2`` with
``F(a, b) = p + 2 sum_{m<n} exp(-a D_mn) exp(-b E_mn)``, a GEMM over the p(p-1)/2 base pairs,
computed once per distinct bandwidth pair.

Bandwidth interpolation (``sigma="paper"``): the per-query bandwidths of one side usually span a
tiny relative range, and ``a -> exp(-a D)`` is then almost a low-degree polynomial in ``a``.  The
base kernel of each side is replaced by its Chebyshev interpolant
``K~(a) = sum_k l_k(a) K(a_k)`` over ``n`` nodes spanning the observed ``[a_min, a_max]``; every
base statistic is linear (``R``, ``T``, the centred ``K_b'``) or bilinear (``<K_b', K_b'>``,
``<K_b', L_b'>``) in the kernel, so it is an ``n``-term (``n x n``) form in the weights
``l(a)``, and the base term folds into the factors as ``n`` extra GEMM columns.  The scores are
then the exact CKA of bordered kernels whose base block is off by at most ``delta`` per entry,
the Chebyshev remainder ``max_x x^n e^{-a_min x} (h/2)^n / (2^{n-1} n!)`` (``h`` the range,
``x`` over the base distances); this moves a score by at most
``2 p delta_s / sqrt(min d) + 2 p delta_t / sqrt(min e)``, checked at run time against
``INTERP_TOL``.  A side whose range is too wide for ``INTERP_MAX_NODES`` nodes makes the scorer
take the exact per-bandwidth-pair path.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import config
from ._local_cka_helpers import (
    INTERP_MAX_NODES,
    INTERP_TOL,
    _centred_node_kernels,
    _cheb_remainder,
    _condensed,
    _lagrange_weights,
    _sqdist_gemm,
    check_inputs,
    check_kernel_sigma,
    lower_median_nonzero,
)
from .backend import get_backend, is_cupy_array
from .errors import InputError

# ------------------------------------------------------------------------------------------
# the scorer
# ------------------------------------------------------------------------------------------

class LocalCKAScorer:
    """Precomputed factors of local CKA; ``block(I, J)`` scores any sub-block exactly.

    Parameters
    ----------
    Sq, Tq, Sb, Tb : arrays (q_s x d_s), (q_t x d_t), (p x d_s), (p x d_t)
    kernel : {"linear", "rbf"}
    sigma : {"paper", "base"} or float
    device : {"auto", "cpu", "gpu"}

    Notes
    -----
    ``exact_base`` (``sigma="paper"``): never interpolate the base term in the bandwidth.

    Memory: the factors are ``(q_s + q_t) x (r + 2)`` float64 with ``r = p`` (rbf) or
    ``min(p, d_s, d_t)`` (linear), plus the p x p base kernels; never q_s x q_t.
    A block costs one ``(|I| x (r + 2))((r + 2) x |J|)`` GEMM; with ``sigma="paper"`` also a
    GEMM over the p(p-1)/2 base pairs for each distinct (sigma_i, tau_j) in the block.
    """

    def __init__(self, Sq, Tq, Sb, Tb, *, kernel: str = "linear", sigma: Any = "paper",
                 device: str = "auto", exact_base: bool = False):
        self.kernel, self.sigma = check_kernel_sigma(kernel, sigma)
        # sigma="paper": exact_base=True skips the bandwidth interpolation of the base term;
        # base_nodes says what was used ((n_s, n_t) nodes, or None: exact per bandwidth pair)
        self.exact_base = bool(exact_base)
        self.base_nodes = None
        self.base_error_bound = 0.0
        self.be = be = get_backend(Sq, Tq, Sb, Tb, device=device)
        self.ops = be.ops("local_cka")
        self.return_gpu = any(is_cupy_array(a) for a in (Sq, Tq, Sb, Tb))
        Sq, Tq, Sb, Tb = check_inputs(Sq, Tq, Sb, Tb, be.xp)
        self.shape = (Sq.shape[0], Tq.shape[0])
        self.p = p = Sb.shape[0]
        self.c = p / (p + 1.0)
        self.paper = False
        if self.kernel == "linear":
            self._linear(Sq, Tq, Sb, Tb)
        elif self.sigma == "paper":
            self._rbf_paper(Sq, Tq, Sb, Tb)
        else:
            self._rbf_fixed(Sq, Tq, Sb, Tb)

    # -- factor builders ---------------------------------------------------------------------
    def _linear(self, Sq, Tq, Sb, Tb):
        p, ds, dt = Sb.shape[0], Sb.shape[1], Tb.shape[1]
        mu, nu = Sb.mean(axis=0), Tb.mean(axis=0)
        St, Tt = Sb - mu, Tb - nu
        A, B = Sq - mu, Tq - nu

        def self_terms(Xt, Q):
            # <K_b', K_b'> = |Xt^T Xt|_F^2 and |k'|^2 = a^T (Xt^T Xt) a
            if Xt.shape[1] <= Xt.shape[0]:
                C = Xt.T @ Xt
                return float((C * C).sum()), ((Q @ C) * Q).sum(axis=1)
            G = Xt @ Xt.T
            Kq = Q @ Xt.T
            return float((G * G).sum()), (Kq * Kq).sum(axis=1)

        nb_s, ks2 = self_terms(St, A)
        nb_t, lt2 = self_terms(Tt, B)
        if nb_s == 0.0 or nb_t == 0.0:
            raise InputError("the base (seed) rows of one side are all identical: CKA is "
                             "undefined")
        M = St.T @ Tt  # d_s x d_t centred cross-covariance of the base
        gb = float((M * M).sum())
        r = min(p, ds, dt)
        if r == p:
            Kq, Lq = A @ St.T, B @ Tt.T
        elif r == dt:
            Kq, Lq = A @ M, B
        else:
            Kq, Lq = A, B @ M.T
        z, w = (A * A).sum(axis=1), (B * B).sum(axis=1)
        # the factor norms used in the denominators must be the true |k'|^2, not |Kq|^2
        c = self.c
        d = nb_s + 2.0 * c * ks2 + c * c * z * z
        e = nb_t + 2.0 * c * lt2 + c * c * w * w
        left, right = self._buffer(Kq.shape[0], r), self._buffer(Lq.shape[0], r)
        left[:, :r] = Kq
        right[:, :r] = Lq
        del Kq, Lq
        self._finish(left, z, d, right, w, e, gb)

    def _buffer(self, q, r, extra=0):
        """A (q, r + 2 + extra) float64 factor buffer; the kernel rows go in its first r columns."""
        return self.be.xp.empty((q, r + 2 + extra))

    def _finish(self, left, z, d, right, w, e, gb, r=None):
        """In place: left = [k', z, 1] / sqrt(d), right = [2c l', c^2 w, gb] / sqrt(e).

        ``left[:, :r]``/``right[:, :r]`` hold the cross-term factors on entry; ``gb`` is the base
        term (0 when it is added per block, ``sigma="paper"``).  Columns after ``r + 2`` (the
        interpolated base term) are only scaled.
        """
        xp, c = self.be.xp, self.c
        if r is None:
            r = left.shape[1] - 2
        sd, se = xp.sqrt(d), xp.sqrt(e)
        left[:, r] = z
        left[:, r + 1] = 1.0
        left /= sd[:, None]
        right[:, :r] *= 2.0 * c
        right[:, r] = (c * c) * w
        right[:, r + 1] = gb
        right /= se[:, None]
        self.left, self.right = left, right
        self.inv_sd, self.inv_se = 1.0 / sd, 1.0 / se

    def _side_alpha(self, Db, which):
        """Inverse bandwidth 1 / (2 sigma^2) of one side (``Db``: its base squared distances)."""
        if isinstance(self.sigma, float):
            return 0.5 / (self.sigma * self.sigma)
        med = lower_median_nonzero(_condensed(Db, self.be.xp), self.be.xp)
        setattr(self, f"sigma_{which}", math.sqrt(med))
        return 0.5 / med

    def _rbf_fixed(self, Sq, Tq, Sb, Tb):
        xp, p, be = self.be.xp, self.p, self.be

        def side(Q, Xb, which):
            Db = self.ops.sqdist_exact(Xb, Xb)
            alpha = self._side_alpha(Db, which)
            Kb = xp.exp(-alpha * Db)
            R = Kb.sum(axis=1)
            T = float(R.sum())
            Kc = Kb - R[:, None] / p - R[None, :] / p + T / (p * p)
            buf = self._buffer(Q.shape[0], p)
            z = xp.empty(Q.shape[0])
            k2 = xp.empty(Q.shape[0])
            step = max(1, config.LOCAL_CHUNK_ELEMS // p)
            # the GEMM form on rows centred on the base (distances are translation-invariant;
            # on uncentred rows it loses (offset / spread)^2 digits)
            mu = Xb.mean(axis=0)
            Xbc = Xb - mu
            for i0 in range(0, Q.shape[0], step):  # row chunks: O(chunk x p) temporaries
                k = _sqdist_gemm(Q[i0:i0 + step] - mu, Xbc, be)
                k *= -alpha
                xp.exp(k, out=k)
                sk = k.sum(axis=1)
                k -= sk[:, None] / p
                k -= R[None, :] / p
                k += T / (p * p)
                buf[i0:i0 + step, :p] = k
                k2[i0:i0 + step] = (k * k).sum(axis=1)
                z[i0:i0 + step] = 1.0 - 2.0 * sk / p + T / (p * p)
            return Kc, buf, z, k2

        Kc, left, z, k2 = side(Sq, Sb, "source")
        Lc, right, w, l2 = side(Tq, Tb, "target")
        nb_s, nb_t = float((Kc * Kc).sum()), float((Lc * Lc).sum())
        if nb_s <= 0.0 or nb_t <= 0.0:
            raise InputError("the base (seed) rows of one side are all identical: CKA is "
                             "undefined")
        gb = float((Kc * Lc).sum())
        c = self.c
        self._finish(left, z, nb_s + 2.0 * c * k2 + c * c * z * z,
                     right, w, nb_t + 2.0 * c * l2 + c * c * w * w, gb)

    def _rbf_paper(self, Sq, Tq, Sb, Tb):
        xp = self.be.xp

        def prepare(Q, Xb, which):
            Db = self.ops.sqdist_exact(Xb, Xb)
            Dc = _condensed(Db, xp)
            base_nz = xp.sort(Dc[Dc > 0])
            Dq = self.ops.sqdist_exact(Q, Xb)
            med = self.ops.lower_median_merge(base_nz, Dq)
            if not bool(xp.all(xp.isfinite(med) & (med > 0))):
                raise InputError(f"all {which} points are identical for some query: no non-zero "
                                 f"distance to set the RBF bandwidth from")
            setattr(self, f"sigma_{which}", xp.sqrt(med))
            return Db, Dc, Dq, 0.5 / med

        src, tgt = prepare(Sq, Sb, "source"), prepare(Tq, Tb, "target")
        if not self.exact_base:
            ns, nt = self._interp_nodes(src), self._interp_nodes(tgt)
            if ns is not None and nt is not None and self._rbf_paper_interp(src, tgt, ns, nt):
                return
        self._rbf_paper_exact(src, tgt)

    def _interp_nodes(self, prep):
        """Nodes, Lagrange weights (q x n) and per-entry kernel error bound of one side's
        bandwidths, or None when ``INTERP_MAX_NODES`` Chebyshev nodes are not enough."""
        xp, p = self.be.xp, self.p
        Db, Dc, _, alpha = prep
        ua = xp.unique(alpha)
        u, a0, a1 = int(ua.shape[0]), float(ua[0]), float(ua[-1])
        n, delta = 0, 0.0
        if u > 1:
            mid = 0.5 * (a0 + a1)
            K = xp.exp(-mid * Db)
            r = K.sum(axis=1)
            K -= r[:, None] / p
            K -= r[None, :] / p
            K += float(r.sum()) / (p * p)
            # the scores' own scale: nb(mid) <= d for queries near mid; checked again after
            budget = 0.25 * INTERP_TOL * math.sqrt(max(float((K * K).sum()), 0.0)) / (2.0 * p)
            dmax = float(Dc.max())
            for n in range(2, INTERP_MAX_NODES + 1):
                delta = _cheb_remainder(n, a0, a1, dmax)
                if delta <= budget:
                    break
            else:
                n = INTERP_MAX_NODES + 1
        if u <= n or u == 1:  # as many distinct bandwidths as nodes: the exact ones, weights 0/1
            idx = xp.searchsorted(ua, alpha)
            W = xp.zeros((alpha.shape[0], u))
            W[xp.arange(alpha.shape[0]), idx] = 1.0
            return ua, W, 0.0
        if n > INTERP_MAX_NODES:
            return None
        k = xp.arange(n, dtype=np.float64)
        nodes = 0.5 * (a0 + a1) + 0.5 * (a1 - a0) * xp.cos((2.0 * k + 1.0) * math.pi / (2.0 * n))
        return nodes, _lagrange_weights(alpha, nodes, xp), delta

    def _rbf_paper_interp(self, src, tgt, ns, nt) -> bool:
        """Factors with the base term interpolated in the bandwidth; False if the run-time error
        bound exceeds ``INTERP_TOL`` (then nothing is set)."""
        xp, p, c = self.be.xp, self.p, self.c
        sides = []
        for (Db, _, Dq, alpha), (nodes, W, delta) in ((src, ns), (tgt, nt)):
            R, T, Kc = _centred_node_kernels(Db, nodes, p, xp)
            nb = ((W @ (Kc @ Kc.T)) * W).sum(axis=1)
            k = xp.exp(-alpha[:, None] * Dq)
            sk = k.sum(axis=1)
            Ti = W @ T
            k -= sk[:, None] / p
            Ri = W @ R
            Ri /= p
            k -= Ri
            del Ri
            k += (Ti / (p * p))[:, None]
            z = 1.0 - 2.0 * sk / p + Ti / (p * p)
            d = nb + 2.0 * c * (k * k).sum(axis=1) + c * c * z * z
            sides.append((W, Kc, nb, k, z, d, delta))
        (Ws, Kcs, nbs, Kq, z, d, ds), (Wt, Kct, nbt, Lq, w, e, dt) = sides
        if not (bool(xp.all(nbs > 0)) and bool(xp.all(nbt > 0))):
            raise InputError("the base (seed) rows of one side are all identical: CKA is "
                             "undefined")
        bound = 2.0 * p * (ds / math.sqrt(float(d.min())) + dt / math.sqrt(float(e.min())))
        if not bound <= INTERP_TOL:
            return False
        G = Kcs @ Kct.T  # <K_b'(a_k), L_b'(b_l)> at the node pairs
        ms, mt = Ws.shape[1], Wt.shape[1]
        left, right = self._buffer(Kq.shape[0], p, ms), self._buffer(Lq.shape[0], p, ms)
        left[:, :p] = Kq
        left[:, p + 2:] = Ws
        right[:, :p] = Lq
        right[:, p + 2:] = Wt @ G.T  # so that left . right adds l_s(a_i)^T G l_t(b_j)
        del Kq, Lq
        self._finish(left, z, d, right, w, e, 0.0, r=p)
        self.base_nodes, self.base_error_bound = (ms, mt), bound
        return True

    def _rbf_paper_exact(self, src, tgt):
        xp, p = self.be.xp, self.p

        def side(prep):
            Db, Dc, Dq, alpha = prep
            ua, inv = xp.unique(alpha, return_inverse=True)
            inv = inv.reshape(-1)
            R, T, S2 = self.ops.rbf_base_stats(Db, ua)
            nb = S2 - (2.0 / p) * (R * R).sum(axis=1) + T * T / (p * p)  # per distinct alpha
            k = xp.exp(-alpha[:, None] * Dq)
            sk = k.sum(axis=1)
            Ti = T[inv]
            k -= sk[:, None] / p
            k -= R[inv] / p
            k += (Ti / (p * p))[:, None]
            z = 1.0 - 2.0 * sk / p + Ti / (p * p)
            return dict(Dc=Dc, alpha=alpha, ua=ua, inv=inv, R=R, T=T, nb=nb), k, z

        self.paper = True
        self.src, Kq, z = side(src)
        self.tgt, Lq, w = side(tgt)
        if not (bool(xp.all(self.src["nb"] > 0)) and bool(xp.all(self.tgt["nb"] > 0))):
            raise InputError("the base (seed) rows of one side are all identical: CKA is "
                             "undefined")
        c = self.c
        d = self.src["nb"][self.src["inv"]] + 2.0 * c * (Kq * Kq).sum(axis=1) + c * c * z * z
        e = self.tgt["nb"][self.tgt["inv"]] + 2.0 * c * (Lq * Lq).sum(axis=1) + c * c * w * w
        # base term handled separately (it depends on both bandwidths): gb column = 0
        left, right = self._buffer(Kq.shape[0], p), self._buffer(Lq.shape[0], p)
        left[:, :p] = Kq
        right[:, :p] = Lq
        del Kq, Lq
        self._finish(left, z, d, right, w, e, 0.0)

    def _base_term(self, rows, cols):
        """<K_b'(a_i), L_b'(b_j)> for the block (distinct bandwidth pairs only)."""
        xp, p = self.be.xp, self.p
        s, t = self.src, self.tgt
        ui, ii = xp.unique(s["inv"][rows], return_inverse=True)
        uj, jj = xp.unique(t["inv"][cols], return_inverse=True)
        a, b = s["ua"][ui], t["ua"][uj]
        Dc, Ec = s["Dc"], t["Dc"]
        M = Dc.shape[0]
        F = xp.zeros((a.shape[0], b.shape[0]))
        step = max(1, config.LOCAL_CHUNK_ELEMS // max(a.shape[0], b.shape[0], 1))
        for m0 in range(0, M, step):
            U = xp.exp(-a[:, None] * Dc[None, m0:m0 + step])
            V = xp.exp(-b[:, None] * Ec[None, m0:m0 + step])
            F += U @ V.T
        F = p + 2.0 * F
        G = F - (2.0 / p) * (s["R"][ui] @ t["R"][uj].T) + xp.outer(s["T"][ui], t["T"][uj]) / (p * p)
        return G[ii.reshape(-1)][:, jj.reshape(-1)]

    # -- scoring -----------------------------------------------------------------------------
    def block(self, rows=slice(None), cols=slice(None)):
        """Scores of source rows ``rows`` against target rows ``cols`` (backend array, float64)."""
        S = self.left[rows] @ self.right[cols].T
        if self.paper:
            S += self._base_term(rows, cols) * self.inv_sd[rows][:, None] * self.inv_se[cols][None, :]
        return S

    def full(self):
        return self.block(slice(None), slice(None))

    def output(self, a):
        """A result array as the caller expects it (NumPy unless an input was CuPy)."""
        return a if self.return_gpu else self.be.to_host(a)


def local_cka(Sq, Tq, Sb, Tb, *, kernel: str = "linear", sigma: Any = "paper",
              device: str = "auto"):
    r"""Local CKA of every (source query, target query) pair against shared base sets.

    ``score[i, j] = CKA([Sq[i]; Sb], [Tq[j]; Tb])`` over the p + 1 points, with biased HSIC
    and centred kernels, exactly as the reference code's per-pair loop computes it.

    Parameters
    ----------
    Sq : array (q_s, d_s)
        Source queries.
    Tq : array (q_t, d_t)
        Target queries.
    Sb : array (p, d_s)
        Source base (seed) rows; ``p >= 4``.
    Tb : array (p, d_t)
        Target base rows, paired with ``Sb`` row by row.
    kernel : {"linear", "rbf"}
    sigma : {"paper", "base"} or float
        RBF bandwidth (ignored for ``kernel="linear"``).  ``"paper"``: recomputed for every
        pair from the p + 1 points of each side, ``sigma^2`` = lower median of the non-zero
        squared distances (the reference code).  ``"base"``: the same statistic over the p
        base points of each side, fixed for all queries.  A float: that sigma on both sides.
        The kernel is ``exp(-|x - y|^2 / (2 sigma^2))``.
    device : {"auto", "cpu", "gpu"}

    Returns
    -------
    scores : array (q_s, q_t), float64
        NumPy, unless an input was a CuPy array.

    Raises
    ------
    InputError
        Non-finite values, feature-count mismatch between queries and base of one side, base
        sets of different lengths or with fewer than 4 rows, bad ``kernel``/``sigma``.

    Notes
    -----
    Complexity: linear ``O((q_s + q_t) r max(d) + q_s q_t r)`` with ``r = min(p, d_s, d_t)``;
    rbf with fixed sigma ``O((q_s + q_t) p d + p^2 d + q_s q_t p)``; ``sigma="paper"`` adds
    ``O(u p^2)`` for the base row sums of the ``u <= q`` distinct bandwidths and a
    ``u_s x u_t x p(p-1)/2`` GEMM for the base cross term, unless (the usual case) the
    bandwidths of each side span a range narrow enough for the base term to be interpolated on
    ``n <= 12`` Chebyshev nodes with a run-time bound of 1e-12 on the score error: then
    ``O(n p^2)`` and ``n`` extra factor columns.  Memory ``O((q_s + q_t) p + p^2)``
    besides the output.  For top-k retrieval on large q use :func:`fastcka.retrieve`, which
    streams blocks and never holds the q_s x q_t matrix.
    """
    sc = LocalCKAScorer(Sq, Tq, Sb, Tb, kernel=kernel, sigma=sigma, device=device)
    return sc.output(sc.full())
