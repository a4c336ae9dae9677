"""Input checks of :func:`fastcka.qap.quadratic_assignment`: SciPy's messages, in SciPy's order.

Everything the solvers receive has been checked here once: shapes, finite values (on the device
the data will be computed on, so a CuPy input is not copied to the host to be checked), the
seed pairs, the options.  The solvers and the LAPs inside their loops take the checked arrays.
"""

from __future__ import annotations

import numbers
import operator
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import NUMPY_BACKEND, Backend, get_backend, is_cupy_array

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
    if be.is_gpu:
        return be.xp.atleast_2d(be.xp.asarray(a))
    return np.atleast_2d(np.asarray(_host(a)))


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
    """One checked FAQ call: the inputs on the compute backend ``be`` and every option."""

    be: Backend
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
    if padding not in (None, "naive", "adopted"):
        raise ValueError(f"padding must be None, 'naive' or 'adopted', got {padding!r}")
    if lap not in LAP_CHOICES:
        raise ValueError(f"lap must be one of {LAP_CHOICES}, got {lap!r}")
    if lap == "auction" and not be.is_gpu:
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
    return FaqRequest(be=be, A=A, B=B, S=S, partial_match=partial_match, P0=P0, rng=rng,
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


def validate_guess(partial_guess: Any, n: int) -> np.ndarray:
    """2-opt's ``partial_guess`` as a checked (g, 2) int array."""
    partial_guess = _pairs(partial_guess)
    msg = pairs_problem(partial_guess, "partial_guess", "entries", n, n)
    if msg is not None:
        raise ValueError(msg)
    return partial_guess
