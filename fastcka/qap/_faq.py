"""FAQ (``method="faq"``): validate → draw the starts → run the batches of restarts → pick the best.

The steps of one call, each a function below:

1. :func:`fastcka.qap._qap.validate_faq` checks every input once (SciPy's order and
   messages), on the device the computation will run on;
2. :func:`_draw_starts` draws the restarts' random matrices in SciPy's order (``P0`` first, then
   the shuffle of the non-seed nodes of ``B``, :func:`_seeds_first`);
3. :func:`faq_batched` runs the restarts in batches that fit memory, each batch one
   :func:`fastcka.qap._frank_wolfe.frank_wolfe` (Vogelstein et al. 2015, Algorithm 1, on the
   free block of Fishkind et al. 2019's seeded problem, :mod:`fastcka.qap._frank_wolfe`);
4. :func:`_pick_best` maps every restart back to the caller's node indices, scores it on the
   caller's matrices (:func:`scores`, :func:`qap_score`) and returns the best as SciPy's
   ``OptimizeResult``.

A randomized start (Algorithm 1 line 1; SciPy's ``P0="randomized"``) is ``(J + DS(K)) / 2``
with ``J = 11ᵀ/n'`` the barycentre and ``DS(K)`` a uniform random matrix balanced to
doubly-stochastic by Sinkhorn–Knopp (the request's balancing kernel, or
:func:`fastcka.qap.doubly_stochastic` where the engine has none).

References
----------
J. T. Vogelstein et al., "Fast approximate quadratic programming for graph matching",
PLoS ONE 10 (2015) e0121002, doi:10.1371/journal.pone.0121002.

D. E. Fishkind et al., "Seeded graph matching", Pattern Recognition 87 (2019) 203–215,
doi:10.1016/j.patcog.2018.09.014.
"""

from __future__ import annotations

import dataclasses
import operator
import warnings
from typing import Any

import numpy as np

from .. import config
from .._progress import progress
from .._threads import ordered_map, pool_threads
from ..backend import Backend, get_backend, is_cupy_array
from ._frank_wolfe import Problem, build_problem, frank_wolfe
from ._lap import resolve_kind
from ._qap import FaqRequest, OptimizeResult, OptimizeWarning, pad_pair, seeded_perm, validate_faq


def faq(A, B, **options):
    """FAQ with SciPy's options and fastcka's (see :func:`fastcka.qap.quadratic_assignment`)."""
    req = validate_faq(A, B, **options)
    if req.n_init > 1 and req.n_free > 0:
        if req.shuffle_input:
            return _one_by_one(req)
        if req.p0_kind != "randomized":
            warnings.warn(f"n_init={req.n_init} restarts from the same P0 ({req.p0_kind}) "
                          "without shuffle_input are identical: use P0='randomized' or "
                          "shuffle_input=True", OptimizeWarning, stacklevel=3)
    return _solve(req)


def _one_by_one(req: FaqRequest):
    """Shuffled restarts: each draws its own P0 and then its own shuffle, as that many SciPy
    calls on one ``rng`` would (one problem per restart, its random matrix drawn when it runs)."""
    runs = [_solve(dataclasses.replace(req, n_init=1)) for _ in range(req.n_init)]
    all_fun = np.array([float(r.fun) for r in runs])
    best = int(np.argmax(all_fun) if req.maximize else np.argmin(all_fun))
    return OptimizeResult(dict(runs[best], all_fun=all_fun,
                               all_nit=np.array([r.nit for r in runs], dtype=int),
                               best_index=best))


def _solve(req: FaqRequest):
    starts = _draw_starts(req)
    if req.n == 0 or req.n_seeds == req.n:
        return _fully_seeded(req)
    perm_A, perm_B = _seeds_first(req)
    A_p, B_p, S_p = _padded(req)
    lap_kind = resolve_kind(req.lap, req.be, req.n_free, req.n_init)
    if req.scheduler in (None, "none") or req.n_init == 1 or req.shuffle_input:
        problem = build_problem(req.be, A_p, B_p, S_p, perm_A, perm_B, req.n_seeds, req.dtype,
                                req.factored, req.ops)
        cols, nit, inc = faq_batched(req.be, problem, req.n_init, starts, req.maximize,
                                     req.maxiter, req.tol, lap_kind, req.batch_size)
    else:  # the same batches of restarts, as tasks of a Dask cluster (fastcka.parallel)
        from ..parallel import faq_restarts

        be = req.be
        inputs = (be.to_host(A_p), be.to_host(B_p), None if S_p is None else be.to_host(S_p),
                  perm_A, perm_B, req.n_seeds, req.dtype, req.factored)
        cols, nit, inc = faq_restarts(req.scheduler, be, inputs, req.n_init, starts, req.rng,
                                      (req.maximize, req.maxiter, req.tol, lap_kind),
                                      req.batch_size)
    return _pick_best(req, (A_p, B_p, S_p), perm_A, perm_B, cols, nit, inc)


# ---- step 2: the starts ------------------------------------------------------------------

def host_starts(rng, n_free: int, n_init: int, shuffle_input: bool):
    """``K_host(idx)``: the random matrices of the restarts ``idx`` (in order), drawn from ``rng``.

    Restart r's draws are the r-th n_free² uniforms of ``rng``'s stream, whichever variant
    draws them; :func:`fastcka.parallel.faq_restarts` relies on it to hand each batch of
    restarts a copy of ``rng`` at that batch's position.
    """
    if n_init == 1 or shuffle_input:
        drawn = [rng.uniform(size=(n_free, n_free)) for _ in range(n_init)]

        def K_host(idx, drawn=drawn):
            return [drawn[r] for r in idx]
    elif isinstance(rng, np.random.Generator):
        def K_host(idx):
            # Generator.random is bitwise Generator.uniform(0, 1), written in place
            out = np.empty((len(idx), n_free, n_free))
            for r in range(len(idx)):
                rng.random(out=out[r])
            return out
    else:
        def K_host(idx):
            return [rng.uniform(size=(n_free, n_free)) for _ in idx]
    return K_host


def _draw_starts(req: FaqRequest):
    """``(kind, data)`` of the restarts' starts, Algorithm 1 line 1 (draws in SciPy's order).

    ``("randomized", K_host)`` (host draws, made batch by batch in restart order to bound
    memory), ``("randomized", seed)`` (drawn on the GPU), ``("array", P0)``, ``("barycenter",
    None)``.
    """
    if req.p0_kind == "array":
        return "array", req.P0
    if req.p0_kind == "barycenter":
        return "barycenter", None
    rng = req.rng
    if req.ops.device_starts:
        seed = int(rng.integers(0, 2**63 - 1) if hasattr(rng, "integers")
                   else rng.randint(0, 2**31 - 1))
        return "randomized", seed
    if req.n_free > 0:
        return "randomized", host_starts(rng, req.n_free, req.n_init, req.shuffle_input)
    return "randomized", 0


def _seeds_first(req: FaqRequest):
    """Node orders putting the seeds first (``B``'s free nodes shuffled with ``shuffle_input``)."""
    n, pm = req.n, req.partial_match
    nonseed_B = np.setdiff1d(np.arange(n), pm[:, 1])
    if req.shuffle_input:
        nonseed_B = req.rng.permutation(nonseed_B)
    nonseed_A = np.setdiff1d(np.arange(n), pm[:, 0])
    perm_A = np.concatenate([pm[:, 0], nonseed_A]).astype(np.int64)
    perm_B = np.concatenate([pm[:, 1], nonseed_B]).astype(np.int64)
    return perm_A, perm_B


def _padded(req: FaqRequest):
    """``A``, ``B``, ``S`` padded to a common size n (``padding``), on the compute device."""
    A, B, S = req.A, req.B, req.S
    if req.padding is not None and req.n_a != req.n_b and not req.factored:
        xp = req.be.xp
        A, B = pad_pair(xp, A, B, req.padding)
        if S is not None:
            S_pad = xp.zeros((req.n, req.n))
            S_pad[:req.n_a, :req.n_b] = S
            S = S_pad
    return A, B, S


def _fully_seeded(req: FaqRequest):
    """No free node: the seeds are the answer (scored as SciPy scores it)."""
    be, A, B, S, n = req.be, req.A, req.B, req.S, req.n
    perm = seeded_perm(req.partial_match, n)
    score = np.float64(host_scalar(qap_score(A, B, be.asarray(perm), S)) if n else 0.0)
    if A.dtype.kind in "iub" and B.dtype.kind in "iub" and S is None:
        pg = be.asarray(perm)
        score = host_scalar(be.xp.sum(A * B[pg][:, pg]))
    res = {"col_ind": perm, "fun": score, "nit": 0}
    if req.n_init > 1:
        res.update(all_fun=np.full(req.n_init, float(score)), all_nit=np.zeros(req.n_init, int))
    return OptimizeResult(res)


# ---- step 3: the batches of restarts ------------------------------------------------------

def restart_threads(be: Backend, n: int, k: int) -> int:
    """Threads of the pool of restart groups for k restarts of n' free nodes: 1 on a GPU or for
    one restart, ``config.QAP_THREADS`` when set, else :func:`fastcka._threads.pool_threads`
    (the CPUs, at most the BLAS threads ``--threads`` / ``threadpool_limits`` set)."""
    if be.device != "cpu" or k < 2:
        return 1
    if config.QAP_THREADS is not None:
        return max(1, min(k, operator.index(config.QAP_THREADS)))
    return pool_threads(be, k, k * n ** 3)


def batch_size(be: Backend, n: int, k: int, itemsize: int, batch_size, groups: int = 1) -> int:
    """Restarts per batch: ``batch_size``, or as many as fit ~512 MiB (CPU) / 8 GiB (GPU) at
    six n'×n' arrays per restart (the most :func:`frank_wolfe` holds at once).

    ``groups`` batches running at once (a pool of restart groups) share that memory with the
    random matrices (float64) of one more batch drawn ahead, and each of them gets at most
    ``k / (2 groups)`` restarts so that the threads finish together.
    """
    if batch_size is not None:
        return max(1, min(k, operator.index(batch_size)))
    budget = config.QAP_BATCH_BUDGET[be.device]
    per = 6 * n * n * itemsize + 1
    if groups <= 1:
        return max(1, min(k, budget // per))
    return max(1, min(-(-k // (2 * groups)), budget // (groups * per + 8 * n * n)))


def _draws(starts, idx: list):
    """The host random matrices of the restarts ``idx`` (drawn now, in restart order), or None
    where the starts need none drawn here."""
    kind, data = starts
    return data(idx) if kind == "randomized" and not isinstance(data, int) else None


def _batch_starts(be: Backend, pr: Problem, starts, idx: list, s: int, Ks):
    """The (len(idx), n', n') starts of the restarts ``idx`` (first ``s``; ``Ks``: their
    :func:`_draws`), None: barycentre."""
    kind, data = starts
    if Ks is not None:
        return _randomized_from_host(be, pr.ops.balance, Ks, pr.dtype)
    if kind == "randomized":
        return _randomized_on_device(be, len(idx), pr.n, data + s, pr.dtype)
    if kind == "array":
        return be.asarray(np.broadcast_to(data, (len(idx), pr.n, pr.n)).copy(), pr.dtype)
    return None  # barycenter: handled analytically


def _randomized_from_host(be: Backend, balance, Ks, dtype):
    """``(J/n + DS(K)) / 2`` for host random matrices ``Ks`` (k, n, n), on ``be`` in ``dtype``.

    ``balance``: the request's Sinkhorn kernel, which writes the start once in the working
    dtype; without one, :func:`fastcka.qap.doubly_stochastic`'s array code.
    """
    Ks = Ks if isinstance(Ks, np.ndarray) else np.stack(Ks)
    n = Ks.shape[-1]
    if balance is not None:
        return balance(Ks, alpha=0.5 / n, beta=0.5, out=np.empty(Ks.shape, dtype))
    from ._sinkhorn import doubly_stochastic

    P = (1.0 / n + doubly_stochastic(Ks)) / 2.0
    return be.asarray(P, dtype)


def _randomized_on_device(be: Backend, k: int, n: int, seed: int, dtype):
    """k randomized starts drawn and balanced on the device (its generator, seeded)."""
    from ._sinkhorn import doubly_stochastic

    g = be.xp.random.default_rng(seed % (2**63))
    K = g.random((k, n, n), dtype=be.xp.float64)
    P = (1.0 / n + doubly_stochastic(K)) / 2.0
    return P.astype(dtype, copy=False)


def faq_batched(be: Backend, pr: Problem, k: int, starts, maximize: bool, maxiter: int,
                tol: float, lap_kind: str, batch_size_opt, threads: int | None = None):
    """All k restarts, batch by batch: (cols (k, n'), nit (k,), free-block objective (k,)).

    On the CPU the batches run on a pool of ``threads`` threads (None:
    :func:`restart_threads`; a cluster task passes 1), each batch in one thread with the
    kernels' one-thread forms (:meth:`fastcka.qap._lap.FaqOps.in_one_thread`), and a request of
    several restarts computes with one BLAS thread whatever the pool: a GEMM's rounding depends
    on the BLAS's threads (not on the batch it is part of), so every restart's bits, and the
    best restart, depend neither on the threads nor on the batches.  The random matrices are
    drawn here, batch after batch in restart order, as without a pool.
    """
    cols_out = np.empty((k, pr.n), dtype=np.int64)
    nit_out = np.zeros(k, dtype=np.int64)
    inc_out = np.full(k, np.nan)
    one_blas = be.device == "cpu" and (k > 1 or threads is not None)
    threads = restart_threads(be, pr.n, k) if threads is None else max(1, threads)
    bs = batch_size(be, pr.n, k, np.dtype(pr.dtype).itemsize, batch_size_opt, threads)
    wpr = dataclasses.replace(pr, ops=pr.ops.in_one_thread()) if threads > 1 else pr

    def batches():
        for s in range(0, k, bs):
            idx = list(range(s, min(k, s + bs)))
            yield [idx, s, _draws(starts, idx)]

    def run(item):
        idx, s, Ks = item
        item[2] = None                  # the draws go once balanced into the starts
        P = _batch_starts(be, wpr, starts, idx, s, Ks)
        del Ks
        return idx, frank_wolfe(be, wpr, len(idx), P, maximize, maxiter, tol, lap_kind)

    bar = progress(total=k, desc="FAQ restarts", unit="restart") if k > bs else None
    for idx, (cols, nit, inc) in ordered_map(run, batches(), threads, one_blas=one_blas):
        cols_out[idx] = cols
        inc_out[idx] = inc
        nit_out[idx] = nit
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    return cols_out, nit_out, inc_out


# ---- step 4: back to the caller's indices, the best restart -------------------------------

def _unshuffled(req: FaqRequest, perm_A, perm_B, cols_all) -> list:
    """Each restart's permutation of the padded problem, in the caller's node indices."""
    m, n = req.n_seeds, req.n
    perms = []
    for r in range(req.n_init):
        perm = np.concatenate((np.arange(m), cols_all[r] + m))
        unshuffled = np.zeros(n, dtype=int)
        unshuffled[perm_A] = perm_B[perm]
        perms.append(unshuffled)
    return perms


def _objectives(req: FaqRequest, padded, perm_A, perm_B, perms, inc_all):
    """(objective of every restart, which were scored directly).

    Restarts that ended exactly on a permutation already know their objective from the
    incrementally maintained <C, P> + <P, A P Bᵀ> (plus the seed block); the rest are scored
    directly, and so is the returned one (see :func:`_pick_best`).
    """
    be, xp, m = req.be, req.be.xp, req.n_seeds
    incremental = (req.n_init > 1 and not req.factored and req.n_a == req.n_b
                   and req.padding is None and req.dtype == np.float64)
    direct = np.ones(req.n_init, dtype=bool)
    fun_vals = np.empty(req.n_init)
    if incremental:
        A_h, B_h, S_h = padded
        sa, sb = be.asarray(perm_A[:m]), be.asarray(perm_B[:m])
        const = float(xp.sum(A_h[sa][:, sa] * B_h[sb][:, sb]))
        if S_h is not None:
            const += float(S_h[sa, sb].sum())
        direct = ~np.isfinite(inc_all)
        fun_vals[~direct] = const + inc_all[~direct]
    if direct.any():
        todo = np.flatnonzero(direct)
        fast = be.ops("qap_score") if (len(todo) > 1 and not req.factored and req.S is None
                                       and req.n_a == req.n_b) else None
        if fast is None:
            fun_vals[todo] = scores(be, req.A, req.B, req.S, [perms[r] for r in todo],
                                    req.n_a, req.n_b, req.factored)
        else:
            fun_vals[todo] = _fast_scores(req, fast, np.stack([perms[r] for r in todo]))
    return fun_vals, direct


def _fast_scores(req: FaqRequest, kernel, P: np.ndarray) -> np.ndarray:
    """float64 objectives of the permutations ``P`` (r, n), each distinct one scored once by the
    ``qap_score`` kernel; those that could be the best (within the kernel's rounding bound of
    it) are rescored by :func:`scores`, so the best restart, its ``fun`` and ties are exactly
    what scoring every restart with :func:`scores` gives."""
    from ..kernels.qap_score_cpu import rounding_bound

    uniq, inv = np.unique(P, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    A, B = req.be.to_host(req.A), req.be.to_host(req.B)
    val, mag = kernel(A, B, uniq)
    err = rounding_bound(req.n, mag)
    lo, hi = val - err, val + err
    # a permutation can be the best only if its upper (lower, minimising) bound reaches the
    # best lower (upper) bound
    maybe = hi >= lo.max() if req.maximize else lo <= hi.min()
    close = np.flatnonzero(maybe)
    val[close] = scores(req.be, req.A, req.B, None, list(uniq[close]), req.n_a, req.n_b, False)
    return val[inv]


def _pick_best(req: FaqRequest, padded, perm_A, perm_B, cols_all, nit_all, inc_all):
    """The best restart (the first on ties) as SciPy's result, with every restart's record."""
    perms = _unshuffled(req, perm_A, perm_B, cols_all)
    fun_vals, direct = _objectives(req, padded, perm_A, perm_B, perms, inc_all)
    best = None
    all_fun = np.empty(req.n_init)
    for r in range(req.n_init):
        all_fun[r] = fun_vals[r]
        better = best is None or (all_fun[r] > all_fun[best] if req.maximize
                                  else all_fun[r] < all_fun[best])
        if better:
            best = r
    col_ind = perms[best][:req.n_a].copy()
    if req.n_b < req.n_a:
        col_ind[col_ind >= req.n_b] = -1
    fun = all_fun[best]
    A, B = req.A, req.B
    if (not req.factored and A.dtype.kind in "iub" and B.dtype.kind in "iub" and req.S is None
            and req.n_a == req.n_b):
        pg = req.be.asarray(col_ind)
        fun = host_scalar(req.be.xp.sum(A * B[pg][:, pg]))       # exact for integer inputs
    elif not direct[best]:
        fun = all_fun[best] = float(scores(req.be, A, B, req.S, [perms[best]], req.n_a,
                                           req.n_b, req.factored)[0])
    res = {"col_ind": col_ind, "fun": fun, "nit": int(nit_all[best])}
    if req.n_init > 1:
        res.update(all_fun=all_fun, all_nit=np.asarray(nit_all, dtype=int), best_index=int(best))
    return OptimizeResult(res)


# ---- objectives of permutations ----------------------------------------------------------

def qap_score(A: Any, B: Any, perm: Any, S: Any = None) -> float:
    """``trace(Aᵀ P B Pᵀ) (+ trace(Sᵀ P))`` of the permutation ``perm`` (SciPy's ``fun``).

    Notes
    -----
    O(n²) time, one n×n temporary; evaluated as ``Σ A ∘ B[perm][:, perm]``.
    """
    xp = get_backend(A, device="cpu" if not is_cupy_array(A) else "gpu").xp
    perm = xp.asarray(perm)
    out = xp.sum(A * B[perm][:, perm])
    if S is not None:
        out = out + xp.sum(S[xp.arange(len(perm)), perm])
    return out


def host_scalar(a: Any) -> Any:
    """A NumPy scalar from a NumPy scalar (returned as is) or a 0-d CuPy array."""
    return a.get()[()] if is_cupy_array(a) else a


def scores(be: Backend, A, B, S, perms, n_a, n_b, factored) -> np.ndarray:
    """float64 objective of each permutation on the caller's (unpadded) matrices."""
    xp = be.xp
    out = np.empty(len(perms))
    if factored:
        X = be.asarray(A, np.float64)
        Y = be.asarray(B, np.float64)
        for r, p in enumerate(perms):
            pg = be.asarray(p)
            val = xp.sum((X.T @ Y[pg]) ** 2)
            if S is not None:
                val = val + xp.sum(be.asarray(S)[xp.arange(len(p)), pg])
            out[r] = be.scalar(val)
        return out
    Ad = be.asarray(A, np.float64)
    Bd = be.asarray(B, np.float64)
    Sd = None if S is None else be.asarray(S, np.float64)
    for r, p in enumerate(perms):
        p = p[:n_a]
        valid = p < n_b
        if valid.all():
            pg = be.asarray(p)
            val = xp.sum(Ad * Bd[pg][:, pg])
            if Sd is not None:
                val = val + xp.sum(Sd[xp.arange(n_a), pg])
        else:
            rows = be.asarray(np.flatnonzero(valid))
            pg = be.asarray(p[valid])
            val = xp.sum(Ad[rows][:, rows] * Bd[pg][:, pg])
            if Sd is not None:
                val = val + xp.sum(Sd[rows, pg])
        out[r] = be.scalar(val)
    return out
