"""Quadratic assignment / graph matching: a drop-in for :func:`scipy.optimize.quadratic_assignment`.

``quadratic_assignment(A, B, method="faq", options=None)`` has SciPy's signature, options,
validation messages and result (``OptimizeResult`` with ``col_ind``, ``fun``, ``nit``), and adds
options SciPy does not have (see :func:`quadratic_assignment`).

The FAQ solver (Vogelstein et al. 2015, seeded form of Fishkind et al. 2019) is a Frank–Wolfe
method over doubly-stochastic matrices.  Our implementation keeps ``M = A₂₂ P B₂₂ᵀ`` (and
``A₂₂ᵀ P B₂₂`` for asymmetric inputs) up to date incrementally: the Frank–Wolfe direction ``Q`` is a
permutation, so ``A₂₂ Q B₂₂ᵀ`` is a row gather of ``B₂₂ᵀ`` plus ONE matrix product, and
``M(P + t(Q-P)) = (1-t) M(P) + t M(Q)``.  The exact line search only needs inner products that are
O(n²) (or O(n) gathers).  A symmetric iteration is therefore one GEMM plus one LAP, against six
GEMMs in SciPy.  Restarts (``n_init``) are run as one batch: ``P`` is a ``(k, n', n')`` stack and
the products are batched ``matmul`` calls (CuPy on a GPU).

The LAPs are warm-started: each restart's first from the duals at the barycentre (or, without
seeds or a linear term, from the exact duals of the rank-one barycentre gradient, see
:func:`rank_one_duals`), later ones from the previous iteration's.  On a GPU, ``lap="auction"``
first improves the warm start with a row-parallel auction (:mod:`fastcka.kernels.auction_cuda`).
"""

from __future__ import annotations

import math
import numbers
import operator
import warnings
from typing import Any

import numpy as np

from ._progress import progress
from .backend import NUMPY_BACKEND, Backend, get_backend, is_cupy_array, numba_enabled

__all__ = ["quadratic_assignment", "OptimizeWarning", "doubly_stochastic", "qap_score"]

try:  # SciPy is a hard dependency of fastcka; keep the class identical so callers can filter it
    from scipy.optimize import OptimizeResult, OptimizeWarning
except ImportError:  # pragma: no cover
    class OptimizeWarning(UserWarning):  # type: ignore[no-redef]
        pass

    class OptimizeResult(dict):  # type: ignore[no-redef]
        __getattr__ = dict.__getitem__

_FAQ_OPTIONS = {"maximize", "partial_match", "rng", "P0", "shuffle_input", "maxiter", "tol",
                # fastcka extensions
                "device", "n_init", "padding", "S", "lap", "dtype", "factored", "batch_size",
                "scheduler"}
_TWO_OPT_OPTIONS = {"maximize", "rng", "partial_match", "partial_guess", "padding"}
_LAP_CHOICES = ("auto", "scipy", "jv", "auction")
# A (or B) whose max |A - Aᵀ| is at most this times max |A| counts as symmetric (rounding left
# by centring, e.g. H K H) and is iterated on as (A + Aᵀ) / 2 with the one-GEMM iteration
SYMMETRY_RTOL = 1e-12


# --------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------

def quadratic_assignment(A: Any, B: Any, method: str = "faq", options: dict | None = None):
    r"""Approximately solve the quadratic assignment (or graph matching) problem.

    Minimises (or, with ``maximize=True``, maximises) ``trace(Aᵀ P B Pᵀ) + trace(Sᵀ P)`` over
    permutation matrices ``P`` (``P[i, col_ind[i]] = 1``: node ``i`` of ``A`` is matched to node
    ``col_ind[i]`` of ``B``).  Same signature, options, messages and result as
    :func:`scipy.optimize.quadratic_assignment`; the extra options below are fastcka's own.

    Parameters
    ----------
    A, B : (n, n) array_like (NumPy or CuPy)
        Square matrices.  With ``factored=True`` they are feature matrices ``X`` (n×p) and
        ``Y`` (n×q) standing for the kernels ``XXᵀ`` and ``YYᵀ`` (never formed).
    method : {"faq", "2opt"}
    options : dict, optional
        SciPy's options: ``maximize`` (False), ``partial_match`` ((m, 2) seed pairs), ``rng``,
        ``P0`` ("barycenter" | "randomized" | (n', n') doubly-stochastic array),
        ``shuffle_input`` (False), ``maxiter`` (30), ``tol`` (0.03); for "2opt" ``partial_guess``.
        Unknown options give an ``OptimizeWarning``.

        fastcka's extensions (FAQ):

        ``device`` : {None, "cpu", "gpu", "auto"}
            None (default): the GPU only when an input is a CuPy array.
        ``n_init`` : int (1)
            Restarts run as one batch (useful with ``P0="randomized"``).  The best is returned;
            ``res.all_fun`` holds every restart's objective, ``res.all_nit`` its iterations and
            ``res.best_index`` the index of the returned one (the first best on ties).  With
            ``shuffle_input=True`` every restart draws its own ``P0`` and then its own shuffle,
            as that many SciPy calls on one ``rng`` would (run one by one).  With an explicit
            ``P0`` array or ``"barycenter"`` and no shuffle the restarts are identical: an
            ``OptimizeWarning`` says so.
        ``padding`` : {None, "naive", "adopted"}
            Allow ``A`` and ``B`` of different sizes: the smaller graph is padded with isolated
            nodes (``"adopted"``: Fishkind et al.'s padding, ``2A - 1`` before zero-padding).
            ``col_ind`` has ``len(A)`` entries in the caller's indices, ``-1`` for nodes of ``A``
            left unmatched (when ``A`` is the larger graph); ``fun`` is evaluated on the original
            matrices over matched pairs.  ``-1`` is a valid NumPy index (the last node of
            ``B``): select the matched rows first, ``m = res.col_ind >= 0``, then use
            ``res.col_ind[m]``.
        ``S`` : (n, n) array, optional
            Linear similarity term: adds ``trace(Sᵀ P) = Σ_i S[i, col_ind[i]]`` to the objective
            (``S[i, j]``: how much node ``i`` of ``A`` resembles node ``j`` of ``B``; with
            ``maximize=True`` larger is better, with ``maximize=False`` it is a cost).
        ``lap`` : {"auto", "scipy", "jv", "auction"}
            LAP solver for the Frank–Wolfe directions and the final projection.  "scipy":
            ``scipy.optimize.linear_sum_assignment``; "jv": our shortest-augmenting-path solver
            warm-started with the previous iteration's column duals (Numba on CPU, Numba CUDA on
            GPU), exact like SciPy's.  "auction" (GPU only): "jv" warm-started from the prices
            of a row-parallel ε-scaling auction, meant for one large problem (n' in the
            thousands), where "jv"'s one thread block per problem works sequentially; still
            exact.  "auto": "jv" on GPU, on CPU for n' ≥ 256 free nodes (where warm starts make
            it ~2× faster than SciPy's cold solves) and for batched restarts of n' ≥ 64; SciPy
            otherwise.
        ``dtype`` : {None, "float64", "float32"}
            Arithmetic precision of the iterations (float64 by default); ``fun`` is always
            evaluated in float64.
        ``factored`` : bool (False)
            ``A`` and ``B`` are features; linear kernels ``XXᵀ``, ``YYᵀ`` are never formed.
        ``batch_size`` : int, optional
            Restarts per batch (default: as many as fit ~512 MiB on CPU, 8 GiB on GPU).
        ``scheduler`` : None, str or :class:`fastcka.parallel.Executor`
            Run the batches of restarts as tasks of a Dask cluster (``"local[:N]"``,
            ``"tcp://HOST:PORT"``, ``"slurm"``; see :mod:`fastcka.parallel`).  Each batch gets
            the random stream at its own position, so the result is the in-process one
            whatever the number of workers.  None or ``"none"``: in-process.

    Returns
    -------
    res : scipy.optimize.OptimizeResult
        ``col_ind`` (NumPy int array), ``fun`` (objective of ``col_ind``), ``nit`` (iterations of
        the returned restart); with ``n_init > 1`` also ``all_fun``, ``all_nit``, ``best_index``.

    Notes
    -----
    Per Frank–Wolfe iteration and restart, with n' free nodes: one (n'×n')·(n'×n') GEMM for
    symmetric ``A``, ``B`` (two otherwise; asymmetry up to ``SYMMETRY_RTOL = 1e-12`` of
    ``max |A|``, the rounding centring leaves, counts as symmetric: the iterations then run on
    ``(A + Aᵀ) / 2``, ``fun`` on the inputs as given), one LAP and about eight O(n'²) passes; memory about
    five n'×n' arrays per restart in flight.  SciPy's FAQ does six GEMMs per iteration.
    With ``factored=True`` the products are (p×n')(n'×q) instead.
    """
    if options is None:
        options = {}
    method = str(method).lower()
    methods = {"faq": _faq, "2opt": _two_opt}
    if method not in methods:
        raise ValueError(f"method {method} must be in {methods}.")
    _rng_transition_warnings(options.get("rng", None))
    return methods[method](A, B, **options)


# --------------------------------------------------------------------------------------------
# helpers shared by both methods
# --------------------------------------------------------------------------------------------

def _rng_transition_warnings(rng: Any) -> None:
    """The warnings SciPy emits during its SPEC-7 transition (kept for drop-in behaviour)."""
    if isinstance(rng, np.random.RandomState):
        warnings.warn("Use of `RandomState` with `quadratic_assignment` is deprecated and will "
                      "result in an exception in a future version", DeprecationWarning, stacklevel=3)
    if (rng is None or rng is np.random) and np.random.mtrand._rand._bit_generator._seed_seq is None:
        warnings.warn("The NumPy global RNG was seeded by calling `np.random.seed`. "
                      "This function will not use the global RNG in the future.",
                      FutureWarning, stacklevel=3)
    if isinstance(rng, (numbers.Integral, np.integer)):
        warnings.warn("The behavior when the rng option is an integer is changing: the value "
                      "will be normalized using np.random.default_rng in the future.",
                      FutureWarning, stacklevel=3)


def _legacy_rng(rng: Any):
    """SciPy's ``check_random_state`` semantics (None → global RandomState, int → RandomState)."""
    if rng is None or rng is np.random:
        return np.random.mtrand._rand
    if isinstance(rng, (numbers.Integral, np.integer)):
        return np.random.RandomState(int(rng))
    if isinstance(rng, (np.random.RandomState, np.random.Generator)):
        return rng
    raise ValueError(f"{rng!r} cannot be used to seed a numpy.random.RandomState instance")


def _warn_unknown(unknown: dict) -> None:
    if unknown:
        msg = ", ".join(map(str, unknown.keys()))
        warnings.warn(f"Unknown solver options: {msg}", OptimizeWarning, stacklevel=4)


def _to_host(a: Any) -> Any:
    return a.get() if is_cupy_array(a) else a


def _common_validation(A: Any, B: Any, partial_match: Any, *, allow_unequal: bool = False):
    A = np.atleast_2d(np.asarray(_to_host(A)))
    B = np.atleast_2d(np.asarray(_to_host(B)))
    if partial_match is None:
        partial_match = np.array([[], []]).T
    partial_match = np.atleast_2d(np.asarray(_to_host(partial_match))).astype(int)
    if A.shape[0] != A.shape[1]:
        msg = "`A` must be square"
    elif B.shape[0] != B.shape[1]:
        msg = "`B` must be square"
    elif A.ndim != 2 or B.ndim != 2:
        msg = "`A` and `B` must have exactly two dimensions"
    elif A.shape != B.shape and not allow_unequal:
        msg = "`A` and `B` matrices must be of equal size"
    else:
        msg = _pairs_problem(partial_match, "partial_match", "seeds", len(A), len(B))
    if msg is not None:
        raise ValueError(msg)
    if A.dtype.kind not in "fiub" or B.dtype.kind not in "fiub":
        raise ValueError(f"`A` and `B` must hold real numbers, got dtypes {A.dtype} and {B.dtype}")
    if A.dtype.kind == "f" and not np.isfinite(A).all():
        raise ValueError("`A` contains NaN or Inf")
    if B.dtype.kind == "f" and not np.isfinite(B).all():
        raise ValueError("`B` contains NaN or Inf")
    return A, B, partial_match


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


def doubly_stochastic(P: Any, tol: float = 1e-3, max_iter: int = 1000) -> Any:
    """Sinkhorn–Knopp balancing of positive matrices, one (n, n) or a batch (k, n, n).

    Column then row rescaling, ``r ∘ P ∘ c``, until every row and column sum of a matrix is
    within ``tol`` of 1 (checked first on ``P`` itself; each matrix of a batch stops on its own,
    as if balanced alone) or ``max_iter`` sweeps.  Works on NumPy or CuPy arrays.

    Notes
    -----
    Only the scale vectors are iterated: two batched matrix-vector products per sweep
    (``P c`` and ``rᵀ P``), and the balanced matrix is formed once at the end.  O(k n²) time per
    sweep, one output array of P's size.  On the CPU (float64, Numba enabled) a fused kernel does
    each sweep in one cache-resident pass per matrix (:mod:`fastcka.kernels.sinkhorn_cpu`).
    """
    single = P.ndim == 2
    if not is_cupy_array(P) and numba_enabled() and P.dtype == np.float64:
        from .kernels.sinkhorn_cpu import balance_batch

        out = balance_batch(P[None] if single else P, tol, max_iter)
        return out[0] if single else out
    xp = get_backend(P, device="gpu" if is_cupy_array(P) else "cpu").xp
    P3 = P[None] if single else P

    def within(v):
        return (xp.abs(v - 1) < tol).all(axis=1)

    active = ~(within(P3.sum(axis=2)) & within(P3.sum(axis=1)))
    rr = xp.ones(P3.shape[:2], dtype=P3.dtype)
    cc = xp.ones(P3.shape[:2], dtype=P3.dtype)
    c = 1.0 / P3.sum(axis=1)                                    # SciPy's initial scales
    r = 1.0 / xp.matmul(P3, c[:, :, None])[:, :, 0]
    rP = xp.matmul(r[:, None, :], P3)[:, 0, :]
    for _ in range(max_iter):
        if not bool(active.any()):
            break
        c = 1.0 / rP
        r = 1.0 / xp.matmul(P3, c[:, :, None])[:, :, 0]
        a = active[:, None]
        rr = xp.where(a, r, rr)
        cc = xp.where(a, c, cc)
        rP = xp.matmul(r[:, None, :], P3)[:, 0, :]
        # rows of r∘P∘c sum to 1 by construction of r; columns sum to c ∘ (rᵀP)
        active = active & ~within(c * rP)
    out = rr[:, :, None] * P3 * cc[:, None, :]
    return out[0] if single else out


# --------------------------------------------------------------------------------------------
# FAQ
# --------------------------------------------------------------------------------------------

def _host_starts(rng, n_free: int, n_init: int, shuffle_input: bool):
    """``K_host(idx)``: the random matrices of the restarts ``idx`` (in order), drawn from ``rng``.

    Restart r's draws are the r-th n_free² uniforms of ``rng``'s stream, whichever variant
    draws them; :func:`fastcka.parallel.faq_restarts` relies on it to hand each batch of
    restarts a copy of ``rng`` at that batch's position.
    """
    if n_init == 1 or shuffle_input:
        drawn = [rng.uniform(size=(n_free, n_free)) for _ in range(n_init)]

        def K_host(idx, drawn=drawn):
            return [drawn[r] for r in idx]
    elif isinstance(rng, np.random.Generator):
        def K_host(idx):
            # Generator.random is bitwise Generator.uniform(0, 1), written in place
            out = np.empty((len(idx), n_free, n_free))
            for r in range(len(idx)):
                rng.random(out=out[r])
            return out
    else:
        def K_host(idx):
            return [rng.uniform(size=(n_free, n_free)) for _ in idx]
    return K_host


def _faq(A, B, maximize=False, partial_match=None, rng=None, P0="barycenter",
         shuffle_input=False, maxiter=30, tol=0.03, device=None, n_init=1, padding=None,
         S=None, lap="auto", dtype=None, factored=False, batch_size=None, scheduler=None,
         **unknown_options):
    _warn_unknown(unknown_options)
    maxiter = operator.index(maxiter)
    n_init = operator.index(n_init)

    # ---- where to compute ----------------------------------------------------------------
    inputs_on_gpu = is_cupy_array(A) or is_cupy_array(B)
    if device is None:
        be = get_backend(A, B, device="auto") if inputs_on_gpu else NUMPY_BACKEND
    else:
        be = get_backend(A, B, device=device)
    if padding not in (None, "naive", "adopted"):
        raise ValueError(f"padding must be None, 'naive' or 'adopted', got {padding!r}")
    if lap not in _LAP_CHOICES:
        raise ValueError(f"lap must be one of {_LAP_CHOICES}, got {lap!r}")
    if lap == "auction" and not be.is_gpu:
        raise ValueError("lap='auction' runs on the GPU only (device='gpu'); use 'jv' on the CPU")
    if dtype is None:
        dtype = np.float64
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if n_init < 1:
        raise ValueError(f"'n_init' must be a positive integer, got {n_init}")

    if factored:
        X = np.atleast_2d(np.asarray(_to_host(A)))
        Y = np.atleast_2d(np.asarray(_to_host(B)))
        if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
            raise ValueError("with factored=True `A` and `B` must be feature matrices with the "
                             f"same number of rows, got shapes {X.shape} and {Y.shape}")
        for name, M in (("A", X), ("B", Y)):
            if M.dtype.kind not in "fiub" or (M.dtype.kind == "f" and not np.isfinite(M).all()):
                raise ValueError(f"`{name}` must hold finite real numbers")
        n_a = n_b = X.shape[0]
        if partial_match is None:
            partial_match = np.zeros((0, 2), dtype=int)
        partial_match = _validate_pm_only(
            np.atleast_2d(np.asarray(_to_host(partial_match))).astype(int), n_a)
        A_h, B_h = X, Y
    else:
        A_h, B_h, partial_match = _common_validation(A, B, partial_match,
                                                     allow_unequal=padding is not None)
        n_a, n_b = A_h.shape[0], B_h.shape[0]

    msg = None
    if isinstance(P0, str) and P0 not in {"barycenter", "randomized"}:
        msg = "Invalid 'P0' parameter string"
    elif maxiter <= 0:
        msg = "'maxiter' must be a positive integer"
    elif tol <= 0:
        msg = "'tol' must be a positive float"
    if msg is not None:
        raise ValueError(msg)

    rng = _legacy_rng(rng)
    n = max(n_a, n_b)
    n_seeds = len(partial_match)
    n_free = n - n_seeds

    # ---- linear term ----------------------------------------------------------------------
    S_h = None
    if S is not None:
        S_h = np.atleast_2d(np.asarray(_to_host(S), dtype=np.float64))
        if S_h.shape != (n_a, n_b):
            raise ValueError(f"`S` must have shape {(n_a, n_b)} (len(A) x len(B)), got {S_h.shape}")
        if not np.isfinite(S_h).all():
            raise ValueError("`S` contains NaN or Inf")

    # ---- padding to a common size ----------------------------------------------------------
    A_orig, B_orig, S_orig = A_h, B_h, S_h
    if padding is not None and n_a != n_b and not factored:
        A_h, B_h = _pad_pair(A_h, B_h, padding)
        if S_h is not None:
            S_pad = np.zeros((n, n))
            S_pad[:n_a, :n_b] = S_h
            S_h = S_pad

    # ---- P0 ------------------------------------------------------------------------------
    P0_arr = None
    if not isinstance(P0, str):
        P0_arr = np.atleast_2d(np.asarray(_to_host(P0), dtype=np.float64))
        if P0_arr.shape != (n_free, n_free):
            msg = "`P0` matrix must have shape m' x m', where m'=n-m"
        elif ((P0_arr < 0).any() or not np.allclose(P0_arr.sum(axis=0), 1)
              or not np.allclose(P0_arr.sum(axis=1), 1)):
            msg = "`P0` matrix must be doubly stochastic"
        if msg is not None:
            raise ValueError(msg)

    p0_kind = P0 if isinstance(P0, str) else "array"
    if n_init > 1 and n_free > 0:
        if shuffle_input:
            # each restart its own shuffle, after its own P0 draw (SciPy's order, call by call):
            # one problem per restart, its random matrix drawn only when it runs
            runs = [_faq(A, B, maximize=maximize, partial_match=partial_match, rng=rng, P0=P0,
                         shuffle_input=True, maxiter=maxiter, tol=tol, device=device, n_init=1,
                         padding=padding, S=S, lap=lap, dtype=dtype, factored=factored)
                    for _ in range(n_init)]
            all_fun = np.array([float(r.fun) for r in runs])
            best = int(np.argmax(all_fun) if maximize else np.argmin(all_fun))
            return OptimizeResult(dict(runs[best], all_fun=all_fun,
                                       all_nit=np.array([r.nit for r in runs], dtype=int),
                                       best_index=best))
        if p0_kind != "randomized":
            warnings.warn(f"n_init={n_init} restarts from the same P0 ({p0_kind}) without "
                          "shuffle_input are identical: use P0='randomized' or shuffle_input=True",
                          OptimizeWarning, stacklevel=3)

    # random draws happen in SciPy's order: P0 first, then the shuffle.  With several restarts
    # (and no shuffle) the draws are made batch by batch, in restart order, to bound memory.
    K_host = None
    if p0_kind == "randomized" and n_free > 0 and not be.is_gpu:
        K_host = _host_starts(rng, n_free, n_init, shuffle_input)
    gpu_seed = int(rng.integers(0, 2**63 - 1) if hasattr(rng, "integers")
                   else rng.randint(0, 2**31 - 1)) if (p0_kind == "randomized" and be.is_gpu) else 0

    if n == 0 or n_seeds == n:
        perm = _seeded_perm(partial_match, n)
        score = np.float64(qap_score(A_orig, B_orig, perm, S_orig) if n else 0.0)  # as SciPy
        if A_orig.dtype.kind in "iub" and B_orig.dtype.kind in "iub" and S_orig is None:
            score = np.sum(A_orig * B_orig[perm][:, perm])
        res = {"col_ind": perm, "fun": score, "nit": 0}
        if n_init > 1:
            res.update(all_fun=np.full(n_init, float(score)), all_nit=np.zeros(n_init, int))
        return OptimizeResult(res)

    nonseed_B = np.setdiff1d(np.arange(n), partial_match[:, 1])
    if shuffle_input:
        nonseed_B = rng.permutation(nonseed_B)
    nonseed_A = np.setdiff1d(np.arange(n), partial_match[:, 0])
    perm_A = np.concatenate([partial_match[:, 0], nonseed_A]).astype(np.int64)
    perm_B = np.concatenate([partial_match[:, 1], nonseed_B]).astype(np.int64)

    lap_kind = lap
    if lap_kind == "auto":
        lap_kind = "jv" if (be.is_gpu or n_free >= 256 or (n_init > 1 and n_free >= 64)) else "scipy"

    problem = _build_problem(be, A_h, B_h, S_h, perm_A, perm_B, n_seeds, dtype, factored)
    if P0_arr is not None:
        starts = ("array", P0_arr)
    elif p0_kind == "barycenter":
        starts = ("barycenter", None)
    else:
        starts = ("randomized", K_host if K_host is not None else gpu_seed)

    if scheduler in (None, "none") or n_init == 1 or shuffle_input:
        cols_all, nit_all, inc_all = _faq_batched(be, problem, n_init, starts, maximize, maxiter,
                                                  tol, lap_kind, batch_size)
    else:  # the same batches of restarts, as tasks of a Dask cluster (fastcka.parallel)
        from .parallel import faq_restarts

        cols_all, nit_all, inc_all = faq_restarts(
            scheduler, be, (A_h, B_h, S_h, perm_A, perm_B, n_seeds, dtype, factored), n_init,
            starts, rng, (maximize, maxiter, tol, lap_kind), batch_size)

    # ---- back to the caller's indices, scores --------------------------------------------
    best = None
    all_fun = np.empty(n_init)
    int_exact = (not factored and A_orig.dtype.kind in "iub" and B_orig.dtype.kind in "iub"
                 and S_orig is None and n_a == n_b)
    perms = []
    for r in range(n_init):
        perm = np.concatenate((np.arange(n_seeds), cols_all[r] + n_seeds))
        unshuffled = np.zeros(n, dtype=int)
        unshuffled[perm_A] = perm_B[perm]
        perms.append(unshuffled)
    # restarts that ended exactly on a permutation already know their objective from the
    # incrementally maintained <C, P> + <P, A P Bᵀ> (plus the seed block); the rest are scored
    # directly, and so is the returned one (below)
    incremental = (n_init > 1 and not factored and n_a == n_b and padding is None
                   and dtype == np.float64)
    direct = np.ones(n_init, dtype=bool)
    fun_vals = np.empty(n_init)
    if incremental:
        const = float(np.sum(A_h[perm_A[:n_seeds]][:, perm_A[:n_seeds]]
                             * B_h[perm_B[:n_seeds]][:, perm_B[:n_seeds]]))
        if S_h is not None:
            const += float(S_h[perm_A[:n_seeds], perm_B[:n_seeds]].sum())
        direct = ~np.isfinite(inc_all)
        fun_vals[~direct] = const + inc_all[~direct]
    if direct.any():
        fun_vals[direct] = _scores(be, A_orig, B_orig, S_orig,
                                   [perms[r] for r in np.flatnonzero(direct)], n_a, n_b, factored)
    for r in range(n_init):
        all_fun[r] = fun_vals[r]
        better = best is None or (all_fun[r] > all_fun[best] if maximize else all_fun[r] < all_fun[best])
        if better:
            best = r
    col_ind = perms[best][:n_a].copy()
    if n_b < n_a:
        col_ind[col_ind >= n_b] = -1
    fun = all_fun[best]
    if int_exact:
        fun = np.sum(A_orig * B_orig[col_ind][:, col_ind])
    elif not direct[best]:
        fun = all_fun[best] = float(_scores(be, A_orig, B_orig, S_orig, [perms[best]], n_a, n_b,
                                            factored)[0])
    res = {"col_ind": col_ind, "fun": fun, "nit": int(nit_all[best])}
    if n_init > 1:
        res.update(all_fun=all_fun, all_nit=np.asarray(nit_all, dtype=int), best_index=int(best))
    return OptimizeResult(res)


def _seeded_perm(partial_match: np.ndarray, n: int) -> np.ndarray:
    """The permutation of a fully seeded problem: row ``i`` of ``A`` goes where its seed says.

    SciPy returns ``partial_match[:, 1]`` in seed order, which is this only for seeds sorted by
    row (and scores that wrong permutation).
    """
    perm = np.empty(n, dtype=partial_match.dtype if n else int)
    perm[partial_match[:, 0]] = partial_match[:, 1]
    return perm


def _pairs_problem(P: np.ndarray, name: str, noun: str, n_a: int, n_b: int) -> str | None:
    """SciPy's message for a bad (k, 2) array of node pairs (rows of A, columns of B), or None.

    One ladder, in SciPy's order and words, for ``partial_match`` (FAQ, 2-opt, factored FAQ) and
    ``partial_guess`` (2-opt).
    """
    if P.shape[0] > min(n_a, n_b):
        return f"`{name}` can have only as many {noun} as there are nodes"
    if P.shape[1] != 2:
        return f"`{name}` must have two columns"
    if P.ndim != 2:
        return f"`{name}` must have exactly two dimensions"
    if (P < 0).any():
        return f"`{name}` must contain only positive indices"
    if (P[:, 0] >= n_a).any() or (P[:, 1] >= n_b).any():
        return f"`{name}` entries must be less than number of nodes"
    if len(set(P[:, 0])) != len(P) or len(set(P[:, 1])) != len(P):
        return f"`{name}` column entries must be unique"
    return None


def _validate_pm_only(pm: np.ndarray, n: int) -> np.ndarray:
    msg = _pairs_problem(pm, "partial_match", "seeds", n, n)
    if msg is not None:
        raise ValueError(msg)
    return pm


def _pad_pair(A: np.ndarray, B: np.ndarray, padding: str):
    A = A.astype(np.float64)
    B = B.astype(np.float64)
    if padding == "adopted":
        A = 2.0 * A - 1.0
        B = 2.0 * B - 1.0
    n = max(len(A), len(B))

    def pad(X):
        out = np.zeros((n, n))
        out[:len(X), :len(X)] = X
        return out

    return pad(A), pad(B)


def _scores(be: Backend, A, B, S, perms, n_a, n_b, factored) -> np.ndarray:
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


class _Problem:
    """The free-block data of one FAQ problem, on the compute backend."""

    def __init__(self, **kw):
        self.cache = {}     # per-problem results shared by its batches of restarts
        self.__dict__.update(kw)


def _near_symmetric(xp, M) -> bool:
    """max |M - Mᵀ| <= SYMMETRY_RTOL * max |M| (exactly symmetric for an all-zero M)."""
    if M.size == 0:
        return True
    return float(xp.abs(M - M.T).max()) <= SYMMETRY_RTOL * float(xp.abs(M).max())


def _build_problem(be: Backend, A, B, S, perm_A, perm_B, m, dtype, factored) -> _Problem:
    xp = be.xp
    pa = be.asarray(perm_A)
    pb = be.asarray(perm_B)
    if factored:
        X = be.asarray(A, dtype)[pa]
        Y = be.asarray(B, dtype)[pb]
        X1, X2 = X[:m], X[m:]
        Y1, Y2 = Y[:m], Y[m:]
        # linear term of the free block: A21 B21ᵀ + A12ᵀ B12 = 2 X2 (X1ᵀ Y1) Y2ᵀ
        C = 2.0 * (X2 @ (X1.T @ Y1)) @ Y2.T if m else xp.zeros((len(X2), len(Y2)), dtype)
        if S is not None:
            C = C + be.asarray(S, dtype)[pa[m:]][:, pb[m:]]
        return _Problem(factored=True, symmetric=True, X2=X2, Y2=Y2, C=C, n=len(X2),
                        dtype=dtype, xp=xp, linear=bool(m) or S is not None)
    Ad = be.asarray(A, dtype)[pa][:, pa]
    Bd = be.asarray(B, dtype)[pb][:, pb]
    sym = _near_symmetric(xp, Ad) and _near_symmetric(xp, Bd)
    if sym:  # rounding-level asymmetry: iterate on the symmetric parts
        Ad = 0.5 * (Ad + Ad.T) if not bool(xp.array_equal(Ad, Ad.T)) else Ad
        Bd = 0.5 * (Bd + Bd.T) if not bool(xp.array_equal(Bd, Bd.T)) else Bd
    A12, A21, A22 = Ad[:m, m:], Ad[m:, :m], Ad[m:, m:]
    B12, B21, B22 = Bd[:m, m:], Bd[m:, :m], Bd[m:, m:]
    if m:
        C = A21 @ B21.T + A12.T @ B12
    else:
        C = xp.zeros_like(A22)
    if S is not None:
        C = C + be.asarray(S, dtype)[pa[m:]][:, pb[m:]]
    C = xp.ascontiguousarray(C)
    return _Problem(factored=False, symmetric=sym, A22=xp.ascontiguousarray(A22),
                    B22T=xp.ascontiguousarray(B22.T), A22T=xp.ascontiguousarray(A22.T),
                    B22=xp.ascontiguousarray(B22), C=C, n=A22.shape[0], dtype=dtype, xp=xp,
                    linear=bool(m) or S is not None)


def _batch_size(be: Backend, n: int, k: int, itemsize: int, batch_size) -> int:
    if batch_size is not None:
        return max(1, min(k, operator.index(batch_size)))
    budget = (8 << 30) if be.is_gpu else (512 << 20)
    per = 6 * n * n * itemsize + 1
    return max(1, min(k, budget // per))


def _faq_batched(be: Backend, pr: _Problem, k: int, starts, maximize: bool, maxiter: int,
                 tol: float, lap_kind: str, batch_size):
    cols_out = np.empty((k, pr.n), dtype=np.int64)
    nit_out = np.zeros(k, dtype=np.int64)
    inc_out = np.full(k, np.nan)
    bs = _batch_size(be, pr.n, k, np.dtype(pr.dtype).itemsize, batch_size)
    kind, data = starts
    bar = progress(total=k, desc="FAQ restarts", unit="restart") if k > bs else None
    for s in range(0, k, bs):
        idx = list(range(s, min(k, s + bs)))
        if kind == "randomized" and not isinstance(data, int):
            P = _randomized_from_host(be, data(idx), pr.dtype)
        elif kind == "randomized":
            P = _randomized_on_device(be, len(idx), pr.n, data + s, pr.dtype)
        elif kind == "array":
            P = be.asarray(np.broadcast_to(data, (len(idx), pr.n, pr.n)).copy(), pr.dtype)
        else:
            P = None  # barycenter: handled analytically
        cols, nit, inc = _faq_run(be, pr, len(idx), P, maximize, maxiter, tol, lap_kind)
        cols_out[idx] = cols
        inc_out[idx] = inc
        nit_out[idx] = nit
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    return cols_out, nit_out, inc_out


def _randomized_from_host(be: Backend, Ks, dtype):
    Ks = Ks if isinstance(Ks, np.ndarray) else np.stack(Ks)
    n = Ks.shape[-1]
    if not be.is_gpu and numba_enabled():
        from .kernels.sinkhorn_cpu import balance_batch

        # (J/n + DS(K)) / 2 written once, in the working dtype
        return balance_batch(Ks, alpha=0.5 / n, beta=0.5, out=np.empty(Ks.shape, dtype))
    P = (1.0 / n + doubly_stochastic(Ks)) / 2.0
    return be.asarray(P, dtype)


def _randomized_on_device(be: Backend, k: int, n: int, seed: int, dtype):
    xp = be.xp
    g = xp.random.default_rng(seed % (2**63))
    K = g.random((k, n, n), dtype=xp.float64)
    P = (1.0 / n + doubly_stochastic(K)) / 2.0
    return P.astype(dtype, copy=False)


def _lmul(pr: _Problem, W, X):
    """W @ X[r] for every r of the stack X (k, a, b); W (c, a): one batched ``matmul``."""
    return pr.xp.matmul(W, X)


def _rmul(pr: _Problem, X, W):
    """X[r] @ W for every r of the stack X (k, a, b); W (b, c).  One (k·a)×b GEMM."""
    k, a, b = X.shape
    if not X.flags.c_contiguous if hasattr(X, "flags") else False:
        X = pr.xp.ascontiguousarray(X)
    return (X.reshape(k * a, b) @ W).reshape(k, a, W.shape[1])


def _apply_M(pr: _Problem, P, transpose=False):
    """A₂₂ P B₂₂ᵀ (or A₂₂ᵀ P B₂₂) for a stack P (k, n, n): two GEMMs per restart."""
    if pr.factored:
        W = _rmul(pr, _lmul(pr, pr.X2.T, P), pr.Y2)            # X2ᵀ P Y2  (k, p, q)
        return _rmul(pr, _lmul(pr, pr.X2, W), pr.Y2.T)
    W, R = (pr.A22T, pr.B22) if transpose else (pr.A22, pr.B22T)
    Y = _rmul(pr, P, R)
    if pr.xp is not np:
        return _lmul(pr, W, Y)
    # on the CPU W·Y[r] for all r as one tall GEMM, (Y[r]ᵀ Wᵀ)ᵀ over the stacked Y[r]ᵀ:
    # ~1.4× faster than k batched n×n products at n = 500
    k, a, b = Y.shape
    Yt = np.ascontiguousarray(Y.transpose(0, 2, 1))
    del Y
    return (Yt.reshape(k * b, a) @ W.T).reshape(k, b, W.shape[0]).transpose(0, 2, 1)


def _apply_M_perm(pr: _Problem, cols, transpose=False):
    """A₂₂ Q B₂₂ᵀ for permutations Q (Q[i, cols[i]] = 1): a row gather plus one GEMM."""
    if pr.factored:
        W = _lmul(pr, pr.X2.T, pr.Y2[cols])                      # X2ᵀ Q Y2  (k, p, q)
        return _rmul(pr, _lmul(pr, pr.X2, W), pr.Y2.T)
    xp = pr.xp
    if transpose:
        return xp.matmul(pr.A22T, pr.B22[cols])
    return xp.matmul(pr.A22, pr.B22T[cols])


def _barycenter_factors(pr: _Problem, transpose=False):
    """(u, w) with A₂₂ J B₂₂ᵀ = u wᵀ / n, J = 11ᵀ/n."""
    if pr.factored:
        return pr.X2 @ pr.X2.sum(axis=0), pr.Y2 @ pr.Y2.sum(axis=0)
    if transpose:
        return pr.A22.sum(axis=0), pr.B22.sum(axis=0)
    return pr.A22.sum(axis=1), pr.B22.sum(axis=1)


def _barycenter_M(pr: _Problem, transpose=False):
    """A₂₂ J B₂₂ᵀ with J = 11ᵀ/n: rank one, O(n²)."""
    u, w = _barycenter_factors(pr, transpose)
    return pr.xp.outer(u, w) / pr.n


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


def _snap_ties(a_h, b_h, scale):
    """``b`` with ``a + b = 0`` exactly where the full-step gain ``a + b`` is within rounding.

    ``a + b`` is a difference of sums of magnitude ``scale`` (per restart), some of them updated
    incrementally: their drift (−5.7e-14 where the exact gain is 0) must not decide an endpoint
    tie, which the rule of :func:`_step_sizes` gives to t = 1.
    """
    tie = np.abs(a_h + b_h) <= 64.0 * np.finfo(np.float64).eps * scale
    return np.where(tie, -a_h, b_h)


def _step_sizes(a_h, b_h, s):
    """argmax over t in [0, 1] of s·(a t² + b t); endpoint ties go to t = 1 (SciPy's choice)."""
    t = np.where((a_h + b_h) * s >= 0, 1.0, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = -b_h / (2 * a_h)
    inner = (a_h * s < 0) & (vertex >= 0) & (vertex <= 1)
    t[inner] = vertex[inner]
    return t


def _faq_run(be: Backend, pr: _Problem, k: int, P, maximize, maxiter, tol, lap_kind):
    """Frank–Wolfe on a batch of k restarts: (cols (k, n), nit (k,), free-block objective (k,)).

    State per restart: P, MP = A₂₂ P B₂₂ᵀ (MT = A₂₂ᵀ P B₂₂ when asymmetric) and the scalars
    <P, MP>, <C, P>, |P|², all updated incrementally (see the module docstring).
    """
    xp = pr.xp
    n = pr.n
    dt = pr.dtype
    sym = pr.symmetric
    ar = xp.arange(n)
    solver = _LapSolver(be, lap_kind, k, n)
    bary_MP = _barycenter_M(pr).astype(dt)
    bary_MT = None if sym else _barycenter_M(pr, transpose=True).astype(dt)
    if P is None:  # barycenter
        P = xp.full((k, n, n), 1.0 / n, dtype=dt)
        MP = xp.repeat(bary_MP[None], k, axis=0)
        MT = None if sym else xp.repeat(bary_MT[None], k, axis=0)
        if sym and not pr.linear and solver.kind in ("jv", "auction"):
            # the first gradient 2 u wᵀ / n is rank one: start the LAP from its optimal duals
            u, w = _barycenter_factors(pr)
            sign = -1.0 if maximize else 1.0
            v0 = rank_one_duals(sign * 2.0 * be.to_host(u) / n, be.to_host(w))
            solver.v = be.asarray(np.repeat(v0[None], k, axis=0), np.float64)
            solver.v_optimal = True
    else:
        MP = _apply_M(pr, P)
        MT = None if sym else _apply_M(pr, P, transpose=True)
        if k > 1 and solver.kind in ("jv", "auction"):
            # warm start every restart's first LAP with the duals at the barycentre
            G0 = (2.0 * bary_MP if sym else bary_MP + bary_MT) + pr.C
            solver.prime(G0, maximize=maximize, cache=pr.cache)
    pMP = xp.einsum("kij,kij->k", P, MP)
    cP = xp.einsum("kij,ij->k", P, pr.C)
    pP = xp.einsum("kij,kij->k", P, P)
    active = np.ones(k, dtype=bool)
    nit = np.zeros(k, dtype=np.int64)
    last_t = np.zeros(k)
    last_cols = np.full((k, n), -1, dtype=np.int64)
    s = 1.0 if maximize else -1.0
    sqn = math.sqrt(n)
    fused = not be.is_gpu and numba_enabled()
    if fused:
        from .kernels.faq_cpu import symmetric_gradient
    for it in range(1, maxiter + 1):
        act = np.flatnonzero(active)
        if len(act) == 0:
            break
        nit[act] = it
        full = len(act) == k
        ai = None if full else be.asarray(act)
        MPa = MP if full else MP[ai]
        if sym and fused:
            G = symmetric_gradient(MPa, pr.C)
        else:
            G = MPa * 2.0 if sym else MPa + (MT if full else MT[ai])
            G += pr.C
        cols = solver.solve(G, maximize=maximize, which=act)       # (ka, n) backend ints
        del G
        cols_h = be.to_host(cols)
        # P already equal to the permutation Q: the step is zero, the restart has converged
        same = (last_t[act] == 1.0) & (cols_h == last_cols[act]).all(axis=1)
        if same.any():
            active[act[same]] = False
            keep = ~same
            if not keep.any():
                break
            act = act[keep]
            cols = cols[be.asarray(np.flatnonzero(keep))]
            cols_h = cols_h[keep]
            full = False
            ai = be.asarray(act)
            MPa = MP[ai]
        Pa = P if full else P[ai]
        rows = ar[None, :]
        bidx = xp.arange(len(act))[:, None]
        # restarts often share a direction (the seed term dominates the gradient): one GEMM per
        # distinct permutation, copied to the restarts that share it
        uniq, inv = np.unique(cols_h, axis=0, return_inverse=True)
        shared = len(uniq) < len(cols_h)
        if shared:
            ucols = be.asarray(uniq)
            uinv = be.asarray(inv.reshape(-1))
            MQ = _apply_M_perm(pr, ucols)[uinv]
        else:
            MQ = _apply_M_perm(pr, cols)
        qMP = MPa[bidx, rows, cols].sum(axis=1)
        qMQ = MQ[bidx, rows, cols].sum(axis=1)
        pMQ = xp.einsum("kij,kij->k", Pa, MQ)
        cQ = pr.C[rows, cols].sum(axis=1)
        pQ = Pa[bidx, rows, cols].sum(axis=1)
        pMPa = pMP if full else pMP[ai]
        cPa = cP if full else cP[ai]
        pPa = pP if full else pP[ai]
        a = qMQ - qMP - pMQ + pMPa                      # g(Q - P), g(X) = <X, A X Bᵀ>
        b = pMQ + qMP - 2.0 * pMPa + (cQ - cPa)          # d/dt of the objective at t = 0
        scale = abs(qMQ) + abs(qMP) + abs(pMQ) + abs(pMPa) + abs(cQ) + abs(cPa)
        a_h = be.to_host(a).astype(np.float64)
        b_h = _snap_ties(a_h, be.to_host(b).astype(np.float64), be.to_host(scale).astype(np.float64))
        t_h = _step_sizes(a_h, b_h, s)
        t = be.asarray(t_h, dt)
        tt = t[:, None, None]
        # P <- (1-t) P + t Q ; M <- (1-t) M + t M(Q) ; scalars likewise
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
        dD2 = pPa - 2.0 * pQ + n                         # |Q - P|²
        new_pMP = pMPa + t * (b - (cQ - cPa)) + t * t * a
        new_cP = cPa + t * (cQ - cPa)
        new_pP = pPa + 2 * t * (pQ - pPa) + t * t * dD2
        if full:
            P, MP = Pa, MPa
            if not sym:
                MT *= (1 - tt)
                MT += tt * (_apply_M_perm(pr, ucols, transpose=True)[uinv] if shared
                            else _apply_M_perm(pr, cols, transpose=True))
            pMP, cP, pP = new_pMP, new_cP, new_pP
        else:
            P[ai] = Pa
            MP[ai] = MPa
            if not sym:
                MT[ai] = MT[ai] * (1 - tt) + tt * (
                    _apply_M_perm(pr, ucols, transpose=True)[uinv] if shared
                    else _apply_M_perm(pr, cols, transpose=True))
            pMP[ai] = new_pMP
            cP[ai] = new_cP
            pP[ai] = new_pP
        last_t[act] = t_h
        last_cols[act] = cols_h
        step = t_h * np.sqrt(np.maximum(be.to_host(dD2).astype(np.float64), 0.0)) / sqn
        active[act[step < tol]] = False
    # final projection of P onto the permutations; exact shortcut where P is a permutation
    out = np.empty((k, n), dtype=np.int64)
    perm_done = last_t == 1.0
    out[perm_done] = last_cols[perm_done]
    rest = np.flatnonzero(~perm_done)
    if len(rest):
        Pr = P if len(rest) == k else P[be.asarray(rest)]
        out[rest] = be.to_host(solver.solve(Pr, maximize=True, which=rest, final=True))
    inc = np.full(k, np.nan)
    inc[perm_done] = be.to_host(cP + pMP).astype(np.float64)[perm_done]
    return out, nit, inc


class _LapSolver:
    """LAP steps of one FAQ batch: SciPy, or our exact solver warm-started per restart."""

    def __init__(self, be: Backend, kind: str, k: int, n: int):
        self.be, self.kind, self.k, self.n = be, kind, k, n
        self.v = None       # column duals of the last direction LAP, per restart (warm start)
        self.v_optimal = False  # v is already optimal for the next LAP (rank-one start)

    def prime(self, G0, *, maximize: bool, cache: dict):
        """Solve one LAP on G0 (n×n) and use its duals as every restart's warm start.

        ``cache`` keeps those duals for the problem's later batches (G0 is the same for all).
        """
        be = self.be
        key = ("prime", maximize)
        v = cache.get(key)
        if v is None:
            if be.is_gpu:
                from .kernels.lap_cuda import lap_batch_device

                v = lap_batch_device(G0[None], maximize=maximize)[1][0]
            else:
                from .backend import numba_enabled

                if not numba_enabled():
                    return
                from .kernels.lap_cpu import lap_batch

                v = be.asarray(lap_batch(np.ascontiguousarray(be.to_host(G0)),
                                         maximize=maximize)[1])
            cache[key] = v
        self.v = be.xp.repeat(v[None], self.k, axis=0)

    def solve(self, G, *, maximize: bool, which, final: bool = False):
        be = self.be
        v_optimal, self.v_optimal = self.v_optimal, False     # holds for this LAP only
        if self.kind == "scipy":
            from scipy.optimize import linear_sum_assignment

            Gh = be.to_host(G)
            cols = np.empty((Gh.shape[0], self.n), dtype=np.int64)
            for r in range(Gh.shape[0]):
                cols[r] = linear_sum_assignment(Gh[r], maximize=maximize)[1]
            return be.asarray(cols)
        which = np.asarray(which)
        if be.is_gpu:
            from .kernels.lap_cuda import lap_batch_device

            # the auction improves a warm start; optimal duals need no improving
            auction = self.kind == "auction" and not v_optimal
            if final:
                cols, _ = lap_batch_device(G, maximize=maximize, auction=auction)
                return cols
            if self.v is None:
                self.v = be.xp.zeros((self.k, self.n), dtype=be.xp.float64)
            wi = be.asarray(which)
            cols, v = lap_batch_device(G, maximize=maximize, v0=self.v[wi], auction=auction)
            self.v[wi] = v
            return cols
        from .backend import numba_enabled

        if not numba_enabled():
            self.kind = "scipy"
            return self.solve(G, maximize=maximize, which=which, final=final)
        from .kernels.lap_cpu import lap_batch

        Gh = np.ascontiguousarray(be.to_host(G))
        if final:
            return lap_batch(Gh, maximize=maximize)[0]
        if self.v is None:
            self.v = np.zeros((self.k, self.n))
        cols, v = lap_batch(Gh, maximize=maximize, v0=self.v[which])
        self.v[which] = v
        return cols


# --------------------------------------------------------------------------------------------
# 2-opt
# --------------------------------------------------------------------------------------------

def _two_opt(A, B, maximize=False, rng=None, partial_match=None, partial_guess=None,
             padding=None, **unknown_options):
    """Greedy pairwise-swap local search (SciPy's "2opt" semantics: first improvement).

    Notes
    -----
    Each candidate swap is scored in O(n) from the change it makes (rows and columns ``i``,
    ``j``), and a swap is accepted when the full objective strictly improves.
    """
    _warn_unknown(unknown_options)
    rng = _legacy_rng(rng)
    A, B, partial_match = _common_validation(A, B, partial_match, allow_unequal=padding is not None)
    n_a, n_b = len(A), len(B)
    A_orig, B_orig = A, B
    if padding is not None and n_a != n_b:
        A, B = _pad_pair(A, B, padding)
    N = len(A)
    if N == 0 or partial_match.shape[0] == N:
        perm = _seeded_perm(partial_match, N)
        return OptimizeResult({"col_ind": perm, "fun": np.sum(A * B[perm][:, perm]), "nit": 0})

    if partial_guess is None:
        partial_guess = np.array([[], []]).T
    partial_guess = np.atleast_2d(np.asarray(partial_guess)).astype(int)
    msg = _pairs_problem(partial_guess, "partial_guess", "entries", N, N)
    if msg is not None:
        raise ValueError(msg)

    fixed = np.zeros(N, dtype=bool)
    if partial_match.size or partial_guess.size:
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
    else:
        perm = rng.permutation(np.arange(N))

    def score(p):
        return np.sum(A * B[p][:, p])

    best = score(perm)
    free = np.flatnonzero(~fixed)
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
    col_ind = perm[:n_a].copy()
    if n_b < n_a:
        col_ind[col_ind >= n_b] = -1
    if padding is not None and n_a != n_b:
        valid = np.flatnonzero(col_ind >= 0)
        best = np.sum(A_orig[valid][:, valid] * B_orig[col_ind[valid]][:, col_ind[valid]])
    return OptimizeResult({"col_ind": col_ind, "fun": best, "nit": nit})
