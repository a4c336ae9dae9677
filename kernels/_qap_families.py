"""Registry factories of the QAP kernel families: each gives the kernel function, or None where
the library's own NumPy/CuPy array code is the implementation on that engine.

``lap``: batched Jonker–Volgenant (``lap_cpu.lap_batch`` / ``lap_cuda.lap_batch_device``);
``sinkhorn``: batched Sinkhorn balancing (``sinkhorn_cpu.balance_batch``, CPU only);
``faq_gradient``: the fused symmetric FAQ gradient (``faq_cpu.symmetric_gradient``, CPU only);
``faq``: the op set of one FAQ request: ``gradient`` and ``balance`` (the two kernels above, or
None), ``auction`` (the engine's LAP kernel offers the auction warm start) and ``device_starts``
(randomized starts are drawn by the device's own generator, not the caller's ``rng``).
"""

from __future__ import annotations

from types import SimpleNamespace


def none():
    """No kernel on this engine: the library's array code runs."""
    return None


def lap_numba():
    from .lap_cpu import lap_batch

    return lap_batch


def lap_cupy():
    from .lap_cuda import lap_batch_device

    return lap_batch_device


def sinkhorn_numba():
    from .sinkhorn_cpu import balance_batch

    return balance_batch


def faq_gradient_numba():
    from .faq_cpu import symmetric_gradient

    return symmetric_gradient


def faq_numba():
    return SimpleNamespace(gradient=faq_gradient_numba(), balance=sinkhorn_numba(),
                           auction=False, device_starts=False)


def faq_numpy():
    return SimpleNamespace(gradient=None, balance=None, auction=False, device_starts=False)


def faq_cupy():
    return SimpleNamespace(gradient=None, balance=None, auction=True, device_starts=True)
