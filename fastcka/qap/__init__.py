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

The parts, one private module each (SciPy's ``optimize/_qap.py`` is the model):

- :mod:`._validate`: the checks of every input, once, SciPy's messages;
- :mod:`._faq`: one FAQ call, validate → draw the starts → run the batches → pick the best;
- :mod:`._frank_wolfe`: the Frank–Wolfe loop on a batch of restarts (NumPy or CuPy);
- :mod:`._problem`: the free block of the seeded problem, dense or factored (dataclasses);
- :mod:`._lap`: the LAP solver state of a batch, and :func:`rank_one_duals`;
- :mod:`._sinkhorn`: :func:`doubly_stochastic` and the randomized starts;
- :mod:`._twoopt`: ``method="2opt"``;
- :mod:`._score`: objectives of permutations (:func:`qap_score`).

References
----------
J. T. Vogelstein, J. M. Conroy, V. Lyzinski, L. J. Podrazik, S. G. Kratzer, E. T. Harley,
D. E. Fishkind, R. J. Vogelstein, C. E. Priebe, "Fast approximate quadratic programming for graph
matching", PLoS ONE 10 (2015) e0121002, doi:10.1371/journal.pone.0121002.

D. E. Fishkind, S. Adali, H. G. Patsolic, L. Meng, D. Singh, V. Lyzinski, C. E. Priebe,
"Seeded graph matching", Pattern Recognition 87 (2019) 203–215, doi:10.1016/j.patcog.2018.09.014.
"""

from __future__ import annotations

from typing import Any

from . import _faq, _twoopt
from ._lap import rank_one_duals as rank_one_duals
from ._problem import SYMMETRY_RTOL as SYMMETRY_RTOL
from ._problem import build_problem as _build_problem  # noqa: F401 (fastcka.parallel)
from ._score import qap_score
from ._sinkhorn import doubly_stochastic
from ._validate import OptimizeResult as OptimizeResult
from ._validate import OptimizeWarning, rng_transition_warnings

__all__ = ["quadratic_assignment", "OptimizeWarning", "doubly_stochastic", "qap_score"]

# used by fastcka.parallel (FAQ's batches of restarts as cluster tasks)
_faq_batched, _host_starts, _batch_size = _faq.faq_batched, _faq.host_starts, _faq.batch_size


def quadratic_assignment(A: Any, B: Any, method: str = "faq", options: dict | None = None):
    r"""Approximately solve the quadratic assignment (or graph matching) problem.

    Minimises (or, with ``maximize=True``, maximises) ``trace(Aᵀ P B Pᵀ) + trace(Sᵀ P)`` over
    permutation matrices ``P`` (``P[i, col_ind[i]] = 1``: node ``i`` of ``A`` is matched to node
    ``col_ind[i]`` of ``B``).  Same signature, options, messages and result as
    :func:`scipy.optimize.quadratic_assignment`; the extra options below are fastcka's own.

    Parameters
    ----------
    A, B : (n, n) array_like (NumPy or CuPy)
        Square matrices.  With ``factored=True`` they are feature matrices ``X`` (n×p) and
        ``Y`` (n×q) standing for the kernels ``XXᵀ`` and ``YYᵀ`` (never formed).
    method : {"faq", "2opt"}
    options : dict, optional
        SciPy's options: ``maximize`` (False), ``partial_match`` ((m, 2) seed pairs), ``rng``,
        ``P0`` ("barycenter" | "randomized" | (n', n') doubly-stochastic array),
        ``shuffle_input`` (False), ``maxiter`` (30), ``tol`` (0.03); for "2opt" ``partial_guess``.
        Unknown options give an ``OptimizeWarning``.

        fastcka's extensions (FAQ):

        ``device`` : {None, "cpu", "gpu", "auto"}
            None (default): the GPU only when an input is a CuPy array.
        ``n_init`` : int (1)
            Restarts run as one batch (useful with ``P0="randomized"``).  The best is returned;
            ``res.all_fun`` holds every restart's objective, ``res.all_nit`` its iterations and
            ``res.best_index`` the index of the returned one (the first best on ties).  With
            ``shuffle_input=True`` every restart draws its own ``P0`` and then its own shuffle,
            as that many SciPy calls on one ``rng`` would (run one by one).  With an explicit
            ``P0`` array or ``"barycenter"`` and no shuffle the restarts are identical: an
            ``OptimizeWarning`` says so.
        ``padding`` : {None, "naive", "adopted"}
            Allow ``A`` and ``B`` of different sizes: the smaller graph is padded with isolated
            nodes (``"adopted"``: Fishkind et al.'s padding, ``2A - 1`` before zero-padding).
            ``col_ind`` has ``len(A)`` entries in the caller's indices, ``-1`` for nodes of ``A``
            left unmatched (when ``A`` is the larger graph); ``fun`` is evaluated on the original
            matrices over matched pairs.  ``-1`` is a valid NumPy index (the last node of
            ``B``): select the matched rows first, ``m = res.col_ind >= 0``, then use
            ``res.col_ind[m]``.
        ``S`` : (n, n) array, optional
            Linear similarity term: adds ``trace(Sᵀ P) = Σ_i S[i, col_ind[i]]`` to the objective
            (``S[i, j]``: how much node ``i`` of ``A`` resembles node ``j`` of ``B``; with
            ``maximize=True`` larger is better, with ``maximize=False`` it is a cost).
        ``lap`` : {"auto", "scipy", "jv", "auction"}
            LAP solver for the Frank–Wolfe directions and the final projection.  "scipy":
            ``scipy.optimize.linear_sum_assignment``; "jv": our shortest-augmenting-path solver
            warm-started with the previous iteration's column duals (Numba on CPU, Numba CUDA on
            GPU), exact like SciPy's.  "auction" (GPU only): "jv" warm-started from the prices
            of a row-parallel ε-scaling auction, meant for one large problem (n' in the
            thousands), where "jv"'s one thread block per problem works sequentially; still
            exact.  "auto": "jv" on GPU, on CPU for n' ≥ 256 free nodes (where warm starts make
            it ~2× faster than SciPy's cold solves) and for batched restarts of n' ≥ 64; SciPy
            otherwise.
        ``dtype`` : {None, "float64", "float32"}
            Arithmetic precision of the iterations (float64 by default); ``fun`` is always
            evaluated in float64.
        ``factored`` : bool (False)
            ``A`` and ``B`` are features; linear kernels ``XXᵀ``, ``YYᵀ`` are never formed.
        ``batch_size`` : int, optional
            Restarts per batch (default: as many as fit ~512 MiB on CPU, 8 GiB on GPU).
        ``scheduler`` : None, str or :class:`fastcka.parallel.Executor`
            Run the batches of restarts as tasks of a Dask cluster (``"local[:N]"``,
            ``"tcp://HOST:PORT"``, ``"slurm"``; see :mod:`fastcka.parallel`).  Each batch gets
            the random stream at its own position, so the result is the in-process one
            whatever the number of workers.  None or ``"none"``: in-process.

    Returns
    -------
    res : scipy.optimize.OptimizeResult
        ``col_ind`` (NumPy int array), ``fun`` (objective of ``col_ind``), ``nit`` (iterations of
        the returned restart); with ``n_init > 1`` also ``all_fun``, ``all_nit``, ``best_index``.

    Notes
    -----
    Per Frank–Wolfe iteration and restart, with n' free nodes: one (n'×n')·(n'×n') GEMM for
    symmetric ``A``, ``B`` (two otherwise; asymmetry up to ``SYMMETRY_RTOL = 1e-12`` of
    ``max |A|``, the rounding centring leaves, counts as symmetric: the iterations then run on
    ``(A + Aᵀ) / 2``, ``fun`` on the inputs as given), one LAP and about eight O(n'²) passes; memory up to six
    n'×n' arrays per restart in flight (``P``, ``M(P)``, the gradient, ``M(Q)`` and, while only
    some restarts iterate, their copies of ``P`` and ``M``; the transposed side's two more for
    asymmetric inputs); the default batch size budgets six.  SciPy's FAQ does six GEMMs per
    iteration.
    With ``factored=True`` the products are (p×n')(n'×q) instead.
    """
    if options is None:
        options = {}
    method = str(method).lower()
    methods = {"faq": _faq.faq, "2opt": _twoopt.two_opt}
    if method not in methods:
        raise ValueError(f"method {method} must be in {methods}.")
    rng_transition_warnings(options.get("rng", None))
    return methods[method](A, B, **options)
