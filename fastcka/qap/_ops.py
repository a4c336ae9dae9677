"""Which compute kernel the QAP solvers use for an op on a backend: the one lookup.

``ops(name, be)`` returns the kernel function, or None where the library's NumPy/CuPy code is
the implementation (Numba disabled on the CPU, or no kernel for that backend).
"""

from __future__ import annotations

from typing import Any

from ..backend import Backend


def ops(name: str, be: Backend) -> Any:
    """The kernel of op ``name`` ("lap", "sinkhorn", "faq_gradient") for ``be``, or None
    (the families of the one registry, :func:`fastcka.kernels.ops`)."""
    return be.ops(name)
