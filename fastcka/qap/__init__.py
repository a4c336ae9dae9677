"""Quadratic assignment / graph matching: a drop-in for :func:`scipy.optimize.quadratic_assignment`.

``quadratic_assignment(A, B, method="faq", options=None)`` has SciPy's signature, options,
validation messages and result (``OptimizeResult`` with ``col_ind``, ``fun``, ``nit``), and adds
options SciPy does not have (see :func:`quadratic_assignment`).

The FAQ solver (Vogelstein et al. 2015, seeded form of Fishkind et al. 2019) is a Frank–Wolfe
method over doubly-stochastic matrices.  Our implementation keeps ``M = A₂₂ P B₂₂ᵀ`` (and
``A₂₂ᵀ P B₂₂`` for asymmetric inputs) up to date incrementally: the Frank–Wolfe direction ``Q`` is a
permutation, so ``A₂₂ Q B₂₂ᵀ`` is a row gather of ``B₂₂ᵀ`` plus ONE matrix product, and
``M(P + t(Q-P)) = (1-t) M(P) + t M(Q)``.  The exact line search only needs inner products that are
O(n²) (or O(n) gathers).  A symmetric iteration is therefore one GEMM plus one LAP, against six
GEMMs in SciPy.  Restarts (``n_init``) are run as one batch: ``P`` is a ``(k, n', n')`` stack and
the products are batched ``matmul`` calls (CuPy on a GPU).

The LAPs are warm-started: each restart's first from the duals at the barycentre (or, without
seeds or a linear term, from the exact duals of the rank-one barycentre gradient, see
:func:`rank_one_duals`), later ones from the previous iteration's.  On a GPU, ``lap="auction"``
first improves the warm start with a row-parallel auction (:mod:`fastcka.kernels.auction_cuda`).

The parts, one private module each (SciPy's ``optimize/_qap.py`` is the model), in the order
one FAQ request runs through them:

- :mod:`._qap`: :func:`quadratic_assignment` and its one validation (SciPy's messages);
- :mod:`._faq`: one FAQ call, validate → draw the starts → run the batches → pick the best, and
  the objectives of permutations (:func:`qap_score`);
- :mod:`._frank_wolfe`: the free block of the seeded problem (dense or factored dataclasses) and
  the Frank–Wolfe loop on a batch of restarts (NumPy or CuPy);
- :mod:`._lap`: the request's kernels (one registry lookup), the LAP solver state of a batch,
  and :func:`rank_one_duals`;
- :mod:`._sinkhorn`: :func:`doubly_stochastic` (the array code; the randomized starts call the
  registry's balancing kernel where there is one, so this module runs only without one);
- :mod:`._twoopt`: ``method="2opt"``.

References
----------
J. T. Vogelstein, J. M. Conroy, V. Lyzinski, L. J. Podrazik, S. G. Kratzer, E. T. Harley,
D. E. Fishkind, R. J. Vogelstein, C. E. Priebe, "Fast approximate quadratic programming for graph
matching", PLoS ONE 10 (2015) e0121002, doi:10.1371/journal.pone.0121002.

D. E. Fishkind, S. Adali, H. G. Patsolic, L. Meng, D. Singh, V. Lyzinski, C. E. Priebe,
"Seeded graph matching", Pattern Recognition 87 (2019) 203–215, doi:10.1016/j.patcog.2018.09.014.
"""

from __future__ import annotations

from . import _faq, _frank_wolfe, _lap, _qap, _sinkhorn, _twoopt  # noqa: F401 (submodules)
from ._faq import qap_score
from ._frank_wolfe import SYMMETRY_RTOL as SYMMETRY_RTOL
from ._frank_wolfe import build_problem as _build_problem  # noqa: F401 (fastcka.parallel)
from ._lap import rank_one_duals as rank_one_duals
from ._qap import OptimizeResult as OptimizeResult
from ._qap import OptimizeWarning, quadratic_assignment
from ._sinkhorn import doubly_stochastic

__all__ = ["quadratic_assignment", "OptimizeWarning", "doubly_stochastic", "qap_score"]

# used by fastcka.parallel (FAQ's batches of restarts as cluster tasks)
_faq_batched, _host_starts, _batch_size = _faq.faq_batched, _faq.host_starts, _faq.batch_size
