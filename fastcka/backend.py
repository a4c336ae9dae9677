"""Array backends: NumPy on the CPU, CuPy on a GPU.

One :class:`Backend` object is obtained per call, from the inputs and the ``device`` argument
(:func:`get_backend`).  Algorithms are written once against ``backend.xp`` (the array module) and
never branch on the array library; steps that only exist on the host (SciPy's LAP, for example)
round-trip explicitly through :meth:`Backend.to_host` / :meth:`Backend.asarray`.

Environment kill switches
-------------------------
``FASTCKA_DISABLE_GPU=1``
    never use CuPy, even when a GPU is present (``device="gpu"`` then raises).
``FASTCKA_DISABLE_NUMBA=1``
    CPU code uses its plain NumPy fallbacks instead of the Numba kernels.

Kernels
-------
:meth:`Backend.ops` gives the op set of one kernel family on the call's engine
(:attr:`Backend.engine`: ``"cupy"``, ``"numba"`` or ``"numpy"``), from the registry of
:mod:`fastcka.kernels`; library code asks once per request and never branches on the engine.

``import fastcka`` never imports CuPy (nor torch): CuPy is imported the first time a GPU is
considered.

Inputs are checked here too (:func:`check_matrix`: shape, dtype, finite values), once at the
public entry, with the array module they live on (``xp``), so a CuPy input is checked on its
device; inner calls take the checked arrays.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import GPUUnavailableError, InputError
from .kernels import array_module, is_cupy_array  # noqa: F401  (the one CuPy-array test)

DEVICES = ("auto", "cpu", "gpu")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def numba_enabled() -> bool:
    """False when ``FASTCKA_DISABLE_NUMBA`` is set: CPU code must use its NumPy fallback."""
    return not _env_flag("FASTCKA_DISABLE_NUMBA")


@functools.lru_cache(maxsize=1)
def _probe_gpu() -> tuple[bool, str]:
    if _env_flag("FASTCKA_DISABLE_GPU"):
        return False, "the GPU backend is disabled by FASTCKA_DISABLE_GPU"
    try:
        import cupy  # noqa: F401
    except Exception as exc:  # ImportError, or a broken CUDA install
        return False, f"CuPy is not installed or failed to import ({type(exc).__name__}); install fastcka[gpu]"
    try:
        if not cupy.cuda.is_available():
            return False, "CuPy found no CUDA device (cupy.cuda.is_available() is False)"
        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"the CUDA runtime is not usable: {' '.join(str(exc).split())}"
    return True, ""


def gpu_available() -> bool:
    """Whether a CUDA GPU is usable through CuPy (and not disabled by the kill switch)."""
    return _probe_gpu()[0]


def gpu_unavailable_reason() -> str:
    """Why :func:`gpu_available` is False ("" when a GPU is usable)."""
    return _probe_gpu()[1]


def reset_gpu_probe() -> None:
    """Forget the cached GPU probe (tests toggle the kill switch)."""
    _probe_gpu.cache_clear()


def to_host(a: Any) -> Any:
    """``a`` on the host: a CuPy array copied to a NumPy array, anything else unchanged."""
    return a.get() if is_cupy_array(a) else a


def check_device(device: str) -> str:
    """Validate a ``device`` argument and return it lower-cased."""
    if not isinstance(device, str) or device.lower() not in DEVICES:
        raise InputError(f"device must be one of 'auto', 'cpu', 'gpu', got {device!r}")
    return device.lower()


@dataclass(frozen=True)
class Backend:
    """The array module of one call, and explicit host/device transfers.

    Attributes
    ----------
    name : {"numpy", "cupy"}
    xp : module
        ``numpy`` or ``cupy``.
    """

    name: str
    xp: Any

    @property
    def is_gpu(self) -> bool:
        return self.name == "cupy"

    @property
    def device(self) -> str:
        return "gpu" if self.is_gpu else "cpu"

    @property
    def engine(self) -> str:
        """The kernel engine of this call: "cupy", "numba", or "numpy" (``FASTCKA_DISABLE_NUMBA``).

        Read at every call, so the kill switch takes effect without a new backend object.
        """
        if self.is_gpu:
            return "cupy"
        return "numba" if numba_enabled() else "numpy"

    def ops(self, family: str) -> Any:
        """The op set of kernel family ``family`` on this call's engine (:mod:`fastcka.kernels`)."""
        from . import kernels

        return kernels.ops(family, self.engine)

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """``a`` as an array of this backend (host→device or device→host copy when needed)."""
        if self.is_gpu:
            return self.xp.asarray(a, dtype=dtype)
        return np.asarray(to_host(a), dtype=dtype)

    def to_host(self, a: Any) -> np.ndarray:
        """``a`` as a NumPy array (device→host copy on GPU)."""
        return np.asarray(to_host(a))

    def scalar(self, a: Any) -> float:
        """A 0-d array or scalar as a Python float (synchronises on GPU)."""
        return float(self.to_host(a))

    def synchronize(self) -> None:
        if self.is_gpu:
            self.xp.cuda.Device().synchronize()

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"Backend({self.name})"


NUMPY_BACKEND = Backend("numpy", np)


@functools.lru_cache(maxsize=1)
def _cupy_backend() -> Backend:
    import cupy

    return Backend("cupy", cupy)


def require_gpu() -> Backend:
    """The CuPy backend, or :class:`GPUUnavailableError` naming what is missing."""
    ok, why = _probe_gpu()
    if not ok:
        raise GPUUnavailableError(f"device='gpu' was requested but no GPU is usable: {why}")
    return _cupy_backend()


def get_backend(*arrays: Any, device: str = "auto") -> Backend:
    """The backend of one call.

    Parameters
    ----------
    *arrays
        The call's array inputs.  Any CuPy array selects the GPU unless ``device="cpu"``.
    device : {"auto", "cpu", "gpu"}
        ``"auto"``: the GPU when an input is a CuPy array or a GPU is usable, else the CPU.
        ``"cpu"``: NumPy (CuPy inputs are copied to the host by :meth:`Backend.asarray`).
        ``"gpu"``: CuPy; raises :class:`GPUUnavailableError` when no GPU is usable.
    """
    device = check_device(device)
    if device == "cpu":
        return NUMPY_BACKEND
    if device == "gpu" or any(is_cupy_array(a) for a in arrays):
        return require_gpu()
    return _cupy_backend() if gpu_available() else NUMPY_BACKEND


def backend_of(a: Any) -> Backend:
    """The backend ``a`` lives on: CuPy for a CuPy array, else NumPy (no copy, no probe of a
    GPU for a host array)."""
    return require_gpu() if is_cupy_array(a) else NUMPY_BACKEND


# --------------------------------------------------------------------------------------------
# inputs checked once, at the public entry, with the array module the data lives on
# --------------------------------------------------------------------------------------------

def as_rng(seed: Any) -> np.random.Generator:
    """A NumPy Generator from None, an int, a SeedSequence, a RandomState or a Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.RandomState):
        return np.random.default_rng(seed.randint(0, 2**31 - 1))
    return np.random.default_rng(seed)


def check_matrix(a: Any, name: str, *, xp: Any = np, min_rows: int = 1, finite: bool = True,
                 dtype: Any = None) -> Any:
    """Validate a 2-D numeric array with at least ``min_rows`` rows and finite values."""
    if xp is np:
        a = to_host(a)  # a CuPy input of a CPU call
    try:
        arr = xp.asarray(a) if dtype is None else xp.asarray(a, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a numeric 2-D array ({exc})") from None
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D array (n_samples x n_features), got {arr.ndim}-D "
                         f"with shape {tuple(arr.shape)}")
    if arr.dtype.kind not in "fiub":
        raise InputError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.shape[0] < min_rows:
        raise InputError(f"{name} needs at least {min_rows} rows, got {arr.shape[0]}")
    if finite and arr.dtype.kind == "f" and not bool(xp.isfinite(arr).all()):
        bad = int((~xp.isfinite(arr)).any(axis=1).sum())
        raise InputError(f"{name} contains NaN or Inf in {bad} row(s)")
    return arr


def check_same_rows(X: Any, Y: Any, xname: str = "X", yname: str = "Y") -> None:
    if X.shape[0] != Y.shape[0]:
        raise InputError(f"{xname} and {yname} must have the same number of rows (paired samples), "
                         f"got {X.shape[0]} and {Y.shape[0]}")


def usable_devices() -> list[str]:
    """The devices usable here: ``["cpu"]`` or ``["cpu", "gpu"]``."""
    return ["cpu", "gpu"] if gpu_available() else ["cpu"]
