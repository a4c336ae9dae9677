"""The one test for CuPy arrays, shared by the kernels and the library (no CuPy import)."""

from __future__ import annotations

from typing import Any

import numpy as np


def is_cupy_array(a: Any) -> bool:
    """True for a CuPy ndarray, without importing CuPy."""
    return type(a).__module__.startswith("cupy")


def array_module(a: Any) -> Any:
    """``cupy`` for a CuPy array, else ``numpy``."""
    if is_cupy_array(a):
        import cupy

        return cupy
    return np
