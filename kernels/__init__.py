"""Compute kernels (installed as ``fastcka.kernels``) and their registry.

- ``*_cpu.py``: Numba CPU kernels (parallel), each with a plain NumPy twin.
- ``*_cuda.py``: Numba CUDA kernels, written so that ``NUMBA_ENABLE_CUDASIM=1`` runs them on the
  CPU (tests use the simulator on small sizes; a real GPU runs them natively).
- ``*_cupy.py``: the GPU op sets: CuPy raw/elementwise kernels and array code (written against
  the array module of their inputs where it can be, so CPU tests run the same code on NumPy).

The registry
------------
The library asks for the operations of one request once, by family and engine::

    ops = fastcka.kernels.ops("local_cka", "numba")   # or "numpy", "cupy"
    D = ops.sqdist_exact(A, B)

Every engine of one family offers the same names with the same semantics (the twins); the library
never branches on the engine.  The engine of a request comes from its backend
(:attr:`fastcka.backend.Backend.engine`): ``"cupy"`` on a GPU, ``"numba"`` on the CPU, or
``"numpy"`` under ``FASTCKA_DISABLE_NUMBA=1``.

Adding a kernel family: write the twins, give each module a zero-argument factory returning the
op set (any object with the family's attributes), and add one line per engine to ``_REGISTRY``
(or call :func:`register`).  An engine a family lacks raises ``KeyError`` naming what exists.

Kernels import nothing from the library.  Nothing heavy is imported here: a module loads the
first time one of its op sets is asked for.
"""

from __future__ import annotations

import functools
import importlib
import sys
from types import SimpleNamespace
from typing import Any

import numpy as np

ENGINES = ("numba", "numpy", "cupy")


def is_cupy_array(a: Any) -> bool:
    """True for a CuPy ndarray, without importing CuPy: the one CuPy-array test of the kernels
    and the library."""
    return type(a).__module__.startswith("cupy")


def array_module(a: Any) -> Any:
    """``cupy`` for a CuPy array, else ``numpy``."""
    if is_cupy_array(a):
        import cupy

        return cupy
    return np


#: (family, engine) -> "module:factory" (module relative to this package)
_REGISTRY: dict[tuple[str, str], str] = {
    ("cka", "numba"): "cka_cpu:numba_ops",
    ("cka", "numpy"): "cka_cpu:numpy_ops",
    ("cka", "cupy"): "cka_cupy:get_ops",
    ("local_cka", "numba"): "local_cka_cpu:numba_ops",
    ("local_cka", "numpy"): "local_cka_cpu:numpy_ops",
    ("local_cka", "cupy"): "local_cka_cupy:local_cka_ops",
    ("topk", "numba"): "local_cka_cpu:numba_topk_ops",
    ("topk", "numpy"): "local_cka_cpu:numpy_topk_ops",
    ("topk", "cupy"): "local_cka_cupy:topk_ops",
    # CSV/TSV bodies (fastcka.sources); without Numba the library keeps its row loop
    ("text", "numba"): "text_cpu:numba_ops",
    # QAP: one kernel function, or None where the library's array code is the implementation
    # (":factory": a factory defined below, in this file)
    ("lap", "numba"): ":lap_numba",
    ("lap", "numpy"): ":none",
    ("lap", "cupy"): ":lap_cupy",
    ("sinkhorn", "numba"): ":sinkhorn_numba",
    ("sinkhorn", "numpy"): ":none",
    ("sinkhorn", "cupy"): ":none",
    ("faq_gradient", "numba"): ":faq_gradient_numba",
    ("faq_gradient", "numpy"): ":none",
    ("faq_gradient", "cupy"): ":none",
    # the float64 objectives of many permutations (FAQ's restarts); elsewhere ``scores``' loop
    ("qap_score", "numba"): "qap_score_cpu:numba_ops",
    ("qap_score", "numpy"): ":none",
    ("qap_score", "cupy"): ":none",
    # FAQ: the op set of one request (fused gradient, Sinkhorn balancing, engine capabilities)
    ("faq", "numba"): ":faq_numba",
    ("faq", "numpy"): ":faq_numpy",
    ("faq", "cupy"): ":faq_cupy",
}


def register(family: str, engine: str, target: str) -> None:
    """Make ``ops(family, engine)`` load ``target`` (``"module:factory"``, module relative)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    _REGISTRY[(family, engine)] = target
    ops.cache_clear()


def families() -> dict[str, list[str]]:
    """Each registered family and its engines."""
    out: dict[str, list[str]] = {}
    for fam, eng in _REGISTRY:
        out.setdefault(fam, []).append(eng)
    return out


@functools.cache
def ops(family: str, engine: str) -> Any:
    """The op set of kernel family ``family`` on ``engine`` ("numba", "numpy" or "cupy")."""
    try:
        target = _REGISTRY[(family, engine)]
    except KeyError:
        raise KeyError(f"no kernel family {family!r} on engine {engine!r}; registered: "
                       f"{families()}") from None
    module, factory = target.split(":")
    home = importlib.import_module(f".{module}", __name__) if module else sys.modules[__name__]
    return getattr(home, factory)()


# --------------------------------------------------------------------------------------------
# the QAP families' factories: the kernel function, or None where the library's own NumPy/CuPy
# array code is the implementation on that engine.  ``lap``: batched Jonker–Volgenant
# (``qap_cpu.lap_batch`` / ``lap_cuda.lap_batch_device``); ``sinkhorn``: batched Sinkhorn
# balancing (``qap_cpu.balance_batch``, CPU only); ``faq_gradient``: the fused symmetric FAQ
# gradient (``qap_cpu.symmetric_gradient``, CPU only); ``faq``: the op set of one FAQ request
# (``gradient``, ``balance``, ``auction``, ``device_starts``, ``one_thread``).
# --------------------------------------------------------------------------------------------

def none():
    """No kernel on this engine: the library's array code runs."""
    return None


def lap_numba():
    from .qap_cpu import lap_batch

    return lap_batch


def lap_cupy():
    from .lap_cuda import lap_batch_device

    return lap_batch_device


def sinkhorn_numba():
    from .qap_cpu import balance_batch

    return balance_batch


def faq_gradient_numba():
    from .qap_cpu import symmetric_gradient

    return symmetric_gradient


def faq_numba():
    # one_thread: lap/gradient/balance take parallel=False (a thread of FAQ's restart pool)
    return SimpleNamespace(gradient=faq_gradient_numba(), balance=sinkhorn_numba(),
                           auction=False, device_starts=False, one_thread=True)


def faq_numpy():
    return SimpleNamespace(gradient=None, balance=None, auction=False, device_starts=False,
                           one_thread=False)


def faq_cupy():
    return SimpleNamespace(gradient=None, balance=None, auction=True, device_starts=True,
                           one_thread=False)

