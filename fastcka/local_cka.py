"""Local CKA: the score of every (source query, target query) pair against a shared base set.

The public face of local CKA; the code lives in private modules:

- :mod:`fastcka._local_cka` — :class:`LocalCKAScorer` and :func:`local_cka` (the closed forms
  and the bandwidth interpolation are described in its docstring);
- :mod:`fastcka._local_cka_helpers` — the input checks, distances, bandwidths and Chebyshev
  helpers.

``fastcka.local_cka(...)`` is the function.  This module keeps ``import fastcka.local_cka`` and
``from fastcka.local_cka import LocalCKAScorer`` working; importing it rebinds the package
attribute ``fastcka.local_cka`` to the module, which is therefore callable like the function.
"""

from __future__ import annotations

from ._callable_module import make_module_callable
from ._local_cka import LocalCKAScorer, local_cka
from ._local_cka_helpers import (  # noqa: F401  (public and test-facing names)
    INTERP_MAX_NODES,
    INTERP_TOL,
    KERNELS,
    MIN_BASE,
    SIGMA_MODES,
    _cheb_remainder,
    _lagrange_weights,
    check_inputs,
    check_kernel_sigma,
    lower_median_nonzero,
    paper_sigma_of_base,
)

__all__ = ["local_cka", "LocalCKAScorer"]

make_module_callable(__name__, local_cka)
