"""Which compute kernel the QAP solvers use for an op on a backend: the one lookup.

``ops(name, be)`` returns the kernel function, or None where the library's NumPy/CuPy code is
the implementation (Numba disabled on the CPU, or no kernel for that backend).
"""

from __future__ import annotations

from typing import Any

from ..backend import Backend, numba_enabled

# op name -> (CPU kernel module and function, GPU kernel module and function)
_TWINS = {
    "lap": (("lap_cpu", "lap_batch"), ("lap_cuda", "lap_batch_device")),
    "sinkhorn": (("sinkhorn_cpu", "balance_batch"), None),
    "faq_gradient": (("faq_cpu", "symmetric_gradient"), None),
}


def ops(name: str, be: Backend) -> Any:
    """The kernel of op ``name`` ("lap", "sinkhorn", "faq_gradient") for ``be``, or None."""
    import importlib

    cpu, gpu = _TWINS[name]
    where = gpu if be.is_gpu else (cpu if numba_enabled() else None)
    if where is None:
        return None
    module, func = where
    return getattr(importlib.import_module(f"fastcka.kernels.{module}"), func)
