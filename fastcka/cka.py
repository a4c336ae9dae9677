"""Centered Kernel Alignment (CKA), HSIC and related representation-alignment metrics.

The public face of the CKA engine; the code lives in private modules, as SciPy's does:

- :mod:`fastcka._cka` — bandwidths, Gram matrices, :func:`hsic`, :func:`cka`, :func:`cka_matrix`
  (definitions and algorithms in its docstring);
- :mod:`fastcka._cka_stats` — the tile-by-tile kernel sums and the linear feature-space form;
- :mod:`fastcka._knn` — :func:`mutual_knn` and :func:`cknna`;
- :mod:`fastcka._permutation` — :func:`cka_permutation_test`.

``fastcka.cka(X, Y)`` is the function.  This module exists so that ``import fastcka.cka`` and
``from fastcka.cka import gram`` keep working; importing it rebinds the package attribute
``fastcka.cka`` to the module, which is therefore callable like the function.
"""

from __future__ import annotations

from ._callable_module import make_module_callable
from ._cka import cka, cka_matrix, gram, hsic, kornblith_sigma, paper_sigma
from ._knn import cknna, mutual_knn
from ._permutation import PermutationResult, cka_permutation_test

__all__ = ["cka", "hsic", "gram", "cka_matrix", "mutual_knn", "cknna", "cka_permutation_test",
           "paper_sigma", "kornblith_sigma", "PermutationResult"]

make_module_callable(__name__, cka)
