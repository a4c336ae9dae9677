"""Checks, distances, bandwidths and Chebyshev helpers of local CKA (:mod:`fastcka._local_cka`).

Distances and the per-query statistics come from the ``"local_cka"`` kernel family
(:mod:`fastcka.kernels`), asked for once per call through the backend.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np

from .backend import Backend, check_matrix
from .errors import InputError

KERNELS = ("linear", "rbf")
SIGMA_MODES = ("paper", "base")
MIN_BASE = 4
# bandwidth interpolation (sigma="paper"): bound on the score error it may introduce, node limit
INTERP_TOL = 1e-12
INTERP_MAX_NODES = 12


# ------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------

def check_kernel_sigma(kernel: str, sigma: Any) -> tuple[str, str | float]:
    """Validate ``kernel`` and ``sigma``; returns them normalised."""
    if not isinstance(kernel, str) or kernel.lower() not in KERNELS:
        raise InputError(f"kernel must be 'linear' or 'rbf', got {kernel!r}")
    kernel = kernel.lower()
    if isinstance(sigma, str):
        s = sigma.lower()
        if s in SIGMA_MODES:
            return kernel, s
        try:
            sigma = float(s)
        except ValueError:
            raise InputError(f"sigma must be 'paper', 'base' or a positive number, got {sigma!r}"
                             ) from None
    if isinstance(sigma, bool) or not isinstance(sigma, Real):
        raise InputError(f"sigma must be 'paper', 'base' or a positive number, got {sigma!r}")
    sigma = float(sigma)
    if not (math.isfinite(sigma) and sigma > 0):
        raise InputError(f"sigma must be a positive finite number, got {sigma!r}")
    return kernel, sigma


def check_inputs(Sq, Tq, Sb, Tb, xp) -> tuple[Any, Any, Any, Any]:
    """Validate the four matrices of a local-CKA / retrieval problem (float64 on ``xp``)."""
    Sb = check_matrix(Sb, "Sb (source base)", xp=xp, dtype=np.float64)
    Tb = check_matrix(Tb, "Tb (target base)", xp=xp, dtype=np.float64)
    if Sb.shape[0] != Tb.shape[0]:
        raise InputError(f"Sb and Tb must hold the same number of paired base (seed) rows, got "
                         f"{Sb.shape[0]} and {Tb.shape[0]}")
    if Sb.shape[0] < MIN_BASE:
        raise InputError(f"local CKA needs at least {MIN_BASE} base (seed) pairs, got "
                         f"{Sb.shape[0]}")
    Sq = check_matrix(Sq, "Sq (source queries)", xp=xp, dtype=np.float64)
    Tq = check_matrix(Tq, "Tq (target queries)", xp=xp, dtype=np.float64)
    if Sq.shape[1] != Sb.shape[1]:
        raise InputError(f"Sq has {Sq.shape[1]} features but the source base Sb has "
                         f"{Sb.shape[1]}: queries and base of one side must come from the same "
                         f"encoder")
    if Tq.shape[1] != Tb.shape[1]:
        raise InputError(f"Tq has {Tq.shape[1]} features but the target base Tb has "
                         f"{Tb.shape[1]}: queries and base of one side must come from the same "
                         f"encoder")
    return Sq, Tq, Sb, Tb


# ------------------------------------------------------------------------------------------
# distances and bandwidths
# ------------------------------------------------------------------------------------------

def _sqdist_gemm(A, B, be: Backend):
    """Squared distances ``|a|^2 + |b|^2 - 2 a.b`` (one GEMM), clipped at 0."""
    xp = be.xp
    D = (A * A).sum(axis=1)[:, None] + (B * B).sum(axis=1)[None, :]
    D -= 2.0 * (A @ B.T)
    xp.maximum(D, 0.0, out=D)
    return D


def _condensed(D, xp):
    p = D.shape[0]
    iu = xp.triu_indices(p, k=1)
    return D[iu]


def lower_median_nonzero(values, xp) -> float:
    """Lower middle value of the non-zero entries of ``values`` (torch.median semantics)."""
    v = values[values > 0]
    if v.size == 0:
        raise InputError("all points of one side are identical: no non-zero distance to set the "
                         "RBF bandwidth from")
    v = xp.sort(v)
    return float(v[(v.size - 1) // 2])


def paper_sigma_of_base(Xb, be: Backend) -> float:
    """Paper bandwidth of a set: sigma = sqrt(lower median of non-zero squared distances)."""
    D = be.ops("local_cka").sqdist_exact(Xb, Xb)
    return math.sqrt(lower_median_nonzero(_condensed(D, be.xp), be.xp))



def _cheb_remainder(n: int, a0: float, a1: float, dmax: float) -> float:
    """Bound on |exp(-a x) - (its n-node Chebyshev interpolant in a on [a0, a1])|, 0 <= x <= dmax."""
    x = min(n / a0, dmax) if a0 > 0 else dmax
    g = math.exp(n * math.log(x) - a0 * x) if x > 0 else 0.0  # max_x x^n e^{-a0 x}
    return g * ((a1 - a0) / 2.0) ** n / (2.0 ** (n - 1) * math.factorial(n))


def _lagrange_weights(alpha, nodes, xp):
    """(len(alpha), n) Lagrange basis of ``nodes`` evaluated at ``alpha``."""
    n = nodes.shape[0]
    W = xp.ones((alpha.shape[0], n))
    for k in range(n):
        for j in range(n):
            if j != k:
                W[:, k] *= (alpha - nodes[j]) / (nodes[k] - nodes[j])
    return W


def _centred_node_kernels(Db, nodes, p: int, xp):
    """Per node a_k: row sums R_k, total T_k and the flattened centred base kernel K_b'(a_k)."""
    n = nodes.shape[0]
    R = xp.empty((n, p))
    T = xp.empty(n)
    Kc = xp.empty((n, p * p))
    for k in range(n):
        K = xp.exp(-float(nodes[k]) * Db)
        r = K.sum(axis=1)
        t = float(r.sum())
        K -= r[:, None] / p
        K -= r[None, :] / p
        K += t / (p * p)
        R[k], T[k], Kc[k] = r, t, K.reshape(-1)
    return R, T, Kc
