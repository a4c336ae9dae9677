"""The public :func:`quadratic_assignment` and its one validation (SciPy's ``_qap.py`` model).

Every input is checked here once, with SciPy's messages in SciPy's order: shapes, finite values
(on the device the data will be computed on, so a CuPy input is not copied to the host to be
checked), the seed pairs, the options.  The solvers (:mod:`._faq`, :mod:`._twoopt`) and the
LAPs inside their loops take the checked request.

References
----------
J. T. Vogelstein et al., "Fast approximate quadratic programming for graph matching",
PLoS ONE 10 (2015) e0121002, doi:10.1371/journal.pone.0121002.

D. E. Fishkind et al., "Seeded graph matching", Pattern Recognition 87 (2019) 203–215,
doi:10.1016/j.patcog.2018.09.014.
"""

from __future__ import annotations

import numbers
import operator
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import NUMPY_BACKEND, Backend, get_backend, is_cupy_array
from ._lap import FaqOps, faq_ops

try:  # SciPy is a hard dependency of fastcka; keep the classes identical so callers can filter them
    from scipy.optimize import OptimizeResult, OptimizeWarning
except ImportError:  # pragma: no cover
    class OptimizeWarning(UserWarning):  # type: ignore[no-redef]
        pass

    class OptimizeResult(dict):  # type: ignore[no-redef]
        __getattr__ = dict.__getitem__

LAP_CHOICES = ("auto", "scipy", "jv", "auction")


def rng_transition_warnings(rng: Any) -> None:
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


def legacy_rng(rng: Any):
    """SciPy's ``check_random_state`` semantics (None → global RandomState, int → RandomState)."""
    if rng is None or rng is np.random:
        return np.random.mtrand._rand
    if isinstance(rng, (numbers.Integral, np.integer)):
        return np.random.RandomState(int(rng))
    if isinstance(rng, (np.random.RandomState, np.random.Generator)):
        return rng
    raise ValueError(f"{rng!r} cannot be used to seed a numpy.random.RandomState instance")


def warn_unknown(unknown: dict, stacklevel: int) -> None:
    if unknown:
        msg = ", ".join(map(str, unknown.keys()))
        warnings.warn(f"Unknown solver options: {msg}", OptimizeWarning, stacklevel=stacklevel + 1)


def pairs_problem(P: np.ndarray, name: str, noun: str, n_a: int, n_b: int) -> str | None:
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


def _pairs(P: Any) -> np.ndarray:
    if P is None:
        P = np.array([[], []]).T
    return np.atleast_2d(np.asarray(_host(P))).astype(int)


def _host(a: Any) -> Any:
    return a.get() if is_cupy_array(a) else a


def _on(be: Backend, a: Any):
    """``a`` as an array where it will be computed on: NumPy (a CuPy input is copied to the host
    only for the CPU backend), CuPy on the GPU backend; nothing is converted in dtype."""
    return be.xp.atleast_2d(be.asarray(a))


def _finite(xp, M) -> bool:
    return M.dtype.kind != "f" or bool(xp.isfinite(M).all())


def common_validation(A: Any, B: Any, partial_match: Any, *, allow_unequal: bool = False,
                      be: Backend = NUMPY_BACKEND):
    """SciPy's checks of ``A``, ``B`` (square, equal sizes, real, finite) and ``partial_match``.

    ``A`` and ``B`` come back on ``be`` (checked there); ``partial_match`` as a NumPy int array.
    """
    xp = be.xp
    A, B = _on(be, A), _on(be, B)
    partial_match = _pairs(partial_match)
    if A.shape[0] != A.shape[1]:
        msg = "`A` must be square"
    elif B.shape[0] != B.shape[1]:
        msg = "`B` must be square"
    elif A.ndim != 2 or B.ndim != 2:
        msg = "`A` and `B` must have exactly two dimensions"
    elif A.shape != B.shape and not allow_unequal:
        msg = "`A` and `B` matrices must be of equal size"
    else:
        msg = pairs_problem(partial_match, "partial_match", "seeds", len(A), len(B))
    if msg is not None:
        raise ValueError(msg)
    if A.dtype.kind not in "fiub" or B.dtype.kind not in "fiub":
        raise ValueError(f"`A` and `B` must hold real numbers, got dtypes {A.dtype} and {B.dtype}")
    if not _finite(xp, A):
        raise ValueError("`A` contains NaN or Inf")
    if not _finite(xp, B):
        raise ValueError("`B` contains NaN or Inf")
    return A, B, partial_match


def _factored_validation(A: Any, B: Any, partial_match: Any, be: Backend):
    X, Y = _on(be, A), _on(be, B)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError("with factored=True `A` and `B` must be feature matrices with the "
                         f"same number of rows, got shapes {X.shape} and {Y.shape}")
    for name, M in (("A", X), ("B", Y)):
        if M.dtype.kind not in "fiub" or not _finite(be.xp, M):
            raise ValueError(f"`{name}` must hold finite real numbers")
    n = X.shape[0]
    partial_match = _pairs(np.zeros((0, 2), dtype=int) if partial_match is None else partial_match)
    msg = pairs_problem(partial_match, "partial_match", "seeds", n, n)
    if msg is not None:
        raise ValueError(msg)
    return X, Y, partial_match


@dataclass
class FaqRequest:
    """One checked FAQ call: the inputs on the compute backend ``be``, its kernels, every option."""

    be: Backend
    ops: FaqOps                 # the request's kernels, looked up once (fastcka.kernels)
    A: Any                      # as the caller gave them (unpadded), checked, on ``be``
    B: Any
    S: Any                      # (n_a, n_b) float64 on ``be``, or None
    partial_match: np.ndarray   # (m, 2) int, NumPy
    P0: Any                     # "barycenter" | "randomized" | (n', n') float64 NumPy array
    rng: Any                    # a RandomState or Generator (SciPy's semantics)
    maximize: bool
    shuffle_input: bool
    maxiter: int
    tol: float
    n_init: int
    padding: str | None
    lap: str
    dtype: np.dtype
    factored: bool
    batch_size: Any
    scheduler: Any
    device: Any

    @property
    def n_a(self) -> int:
        return self.A.shape[0]

    @property
    def n_b(self) -> int:
        return self.B.shape[0]

    @property
    def n(self) -> int:
        return max(self.n_a, self.n_b)

    @property
    def n_seeds(self) -> int:
        return len(self.partial_match)

    @property
    def n_free(self) -> int:
        return self.n - self.n_seeds

    @property
    def p0_kind(self) -> str:
        return self.P0 if isinstance(self.P0, str) else "array"


def _compute_backend(A: Any, B: Any, device: Any) -> Backend:
    """None (default): the GPU only when an input is a CuPy array; else as ``get_backend``."""
    if device is None:
        on_gpu = is_cupy_array(A) or is_cupy_array(B)
        return get_backend(A, B, device="auto") if on_gpu else NUMPY_BACKEND
    return get_backend(A, B, device=device)


def validate_faq(A, B, maximize=False, partial_match=None, rng=None, P0="barycenter",
                 shuffle_input=False, maxiter=30, tol=0.03, device=None, n_init=1, padding=None,
                 S=None, lap="auto", dtype=None, factored=False, batch_size=None, scheduler=None,
                 **unknown_options) -> FaqRequest:
    """Check every input and option of an FAQ call (SciPy's order and messages first).

    Raises ``ValueError`` (``TypeError`` for a non-integer ``maxiter``/``n_init``) with a
    one-line message; unknown options give an ``OptimizeWarning``.
    """
    warn_unknown(unknown_options, stacklevel=4)
    maxiter = operator.index(maxiter)
    n_init = operator.index(n_init)
    be = _compute_backend(A, B, device)
    ops = faq_ops(be)
    if padding not in (None, "naive", "adopted"):
        raise ValueError(f"padding must be None, 'naive' or 'adopted', got {padding!r}")
    if lap not in LAP_CHOICES:
        raise ValueError(f"lap must be one of {LAP_CHOICES}, got {lap!r}")
    if lap == "auction" and not ops.auction:
        raise ValueError("lap='auction' runs on the GPU only (device='gpu'); use 'jv' on the CPU")
    dtype = np.dtype(np.float64 if dtype is None else dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if n_init < 1:
        raise ValueError(f"'n_init' must be a positive integer, got {n_init}")
    if factored:
        A, B, partial_match = _factored_validation(A, B, partial_match, be)
    else:
        A, B, partial_match = common_validation(A, B, partial_match,
                                                allow_unequal=padding is not None, be=be)
    msg = None
    if isinstance(P0, str) and P0 not in {"barycenter", "randomized"}:
        msg = "Invalid 'P0' parameter string"
    elif maxiter <= 0:
        msg = "'maxiter' must be a positive integer"
    elif tol <= 0:
        msg = "'tol' must be a positive float"
    if msg is not None:
        raise ValueError(msg)
    rng = legacy_rng(rng)
    n_a, n_b = A.shape[0], B.shape[0]
    if S is not None:
        S = be.xp.atleast_2d(be.asarray(S, np.float64))
        if S.shape != (n_a, n_b):
            raise ValueError(f"`S` must have shape {(n_a, n_b)} (len(A) x len(B)), got {S.shape}")
        if not bool(be.xp.isfinite(S).all()):
            raise ValueError("`S` contains NaN or Inf")
    if not isinstance(P0, str):
        P0 = _checked_P0(P0, max(n_a, n_b) - len(partial_match))
    return FaqRequest(be=be, ops=ops, A=A, B=B, S=S, partial_match=partial_match, P0=P0, rng=rng,
                      maximize=maximize, shuffle_input=shuffle_input, maxiter=maxiter, tol=tol,
                      n_init=n_init, padding=padding, lap=lap, dtype=dtype, factored=factored,
                      batch_size=batch_size, scheduler=scheduler, device=device)


def _checked_P0(P0: Any, n_free: int) -> np.ndarray:
    P0 = np.atleast_2d(np.asarray(_host(P0), dtype=np.float64))
    msg = None
    if P0.shape != (n_free, n_free):
        msg = "`P0` matrix must have shape m' x m', where m'=n-m"
    elif ((P0 < 0).any() or not np.allclose(P0.sum(axis=0), 1)
          or not np.allclose(P0.sum(axis=1), 1)):
        msg = "`P0` matrix must be doubly stochastic"
    if msg is not None:
        raise ValueError(msg)
    return P0


def seeded_perm(partial_match: np.ndarray, n: int) -> np.ndarray:
    """The permutation of a fully seeded problem: row ``i`` of ``A`` goes where its seed says.

    SciPy returns ``partial_match[:, 1]`` in seed order, which is this only for seeds sorted by
    row (and scores that wrong permutation).
    """
    perm = np.empty(n, dtype=partial_match.dtype if n else int)
    perm[partial_match[:, 0]] = partial_match[:, 1]
    return perm


def pad_pair(xp, A, B, padding: str):
    """``A``, ``B`` zero-padded to a common size (``"adopted"``: ``2X - 1`` first), float64."""
    A = A.astype(np.float64)
    B = B.astype(np.float64)
    if padding == "adopted":
        A = 2.0 * A - 1.0
        B = 2.0 * B - 1.0
    n = max(len(A), len(B))

    def pad(X):
        out = xp.zeros((n, n))
        out[:len(X), :len(X)] = X
        return out

    return pad(A), pad(B)


def validate_guess(partial_guess: Any, n: int) -> np.ndarray:
    """2-opt's ``partial_guess`` as a checked (g, 2) int array."""
    partial_guess = _pairs(partial_guess)
    msg = pairs_problem(partial_guess, "partial_guess", "entries", n, n)
    if msg is not None:
        raise ValueError(msg)
    return partial_guess


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
    ``(A + Aᵀ) / 2``, ``fun`` on the inputs as given), one LAP and about eight O(n'²) passes; memory up to six
    n'×n' arrays per restart in flight (``P``, ``M(P)``, the gradient, ``M(Q)`` and, while only
    some restarts iterate, their copies of ``P`` and ``M``; the transposed side's two more for
    asymmetric inputs); the default batch size budgets six.  SciPy's FAQ does six GEMMs per
    iteration.
    With ``factored=True`` the products are (p×n')(n'×q) instead.
    """
    from ._faq import faq  # the solvers import this module's checks
    from ._twoopt import two_opt

    if options is None:
        options = {}
    method = str(method).lower()
    methods = {"faq": faq, "2opt": two_opt}
    if method not in methods:
        raise ValueError(f"method {method} must be in {methods}.")
    rng_transition_warnings(options.get("rng", None))
    return methods[method](A, B, **options)
