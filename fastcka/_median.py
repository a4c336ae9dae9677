"""Exact order statistics of the n² squared distances of a point set, without n² memory.

The paper bandwidth is the lower median of the non-zero squared distances and the Kornblith
bandwidth the (NumPy) median of all n² of them (METHOD §1).  Both are order statistics of the
multiset of pair values ``U = {d_ij : i < j}`` (``M = n(n−1)/2`` values): the n² matrix is the
diagonal's n zeros plus every element of ``U`` twice.  With ``z`` zeros in ``U`` and
``P = M − z`` non-zero values:

- paper: torch.median of the ``2P`` non-zero entries is element ``P − 1`` of their sorted list,
  i.e. the non-zero pair value of rank ``(P − 1) // 2``;
- kornblith: element ``t`` (0-based) of the sorted n² list is 0 when ``t < n`` and otherwise
  ``U[(t − n) // 2]``; ``np.median`` averages ``t = n²/2 − 1`` and ``n²/2`` when n² is even.

Algorithm (per requested rank, all inputs and ranks sharing every pass over the tiles):

1. *Sample*: ``s`` random pairs (one Numba sweep on the host) give a quantile estimate of the
   target and a narrow *collect window* around it: ±8 standard deviations of the estimate, or
   fewer where that would exceed ``cap / 2`` values (``WINDOW_SDS``).
   For small n (``M <= dense``, at most ``cap``) the first pass simply collects every value
   (the dense path).
2. *Pass*: over the upper-triangle tiles (``tile x tile`` Gram tiles from one GEMM each) count the
   zeros, histogram the window values (4096 equal-width bins plus under/overflow), count the values
   below the collect window and collect the ones inside it (at most ``cap``).  On the host the
   first pass's one-bin window is counted and collected in a single sweep of each tile, and the
   tiles run on the tile pool (:func:`fastcka._threads.tile_pool`): each thread takes whole
   tiles, its GEMM on one BLAS thread and then the one-thread sweep ``tile.hist_collect``
   (branch-free writes into the thread's tile-sized buffer), merged in tile order.  Measured
   at n = 10k: the BLAS's and Numba's thread pools taking turns on the cores had made every
   sweep after a GEMM 3-8x slower than alone.
3. If the target rank falls inside the collected values, an exact selection (``partition``) on
   them gives the answer.  Otherwise the histogram bin holding the rank becomes the next window
   (an exact predicate: see ``kernels/cka_cpu.py``) and step 2 repeats on it, collecting it whole
   once it holds at most ``cap`` values.  In practice one pass (sample hit) or two.

Memory: per thread one ``tile²`` float64 Gram/distance tile and one collect tile, two float64
row blocks (``tile · p``); ``cap`` float64 collected values per rank (one buffer, selected in
place), ``O(n)`` norms.  The tile and collect buffers are allocated once per pass and reused.  Float32 inputs are never copied whole.
With one-pass RBF moments (:mod:`fastcka._rbf_onepass`) the first pass keeps the m distance
tiles of a tile and their exponentials per thread, and ``O(m·L·n)`` moment row sums.  Time per pass: one GEMM of
``n²/2 · p`` multiply-adds plus ``O(n²)`` elementwise work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import config
from ._threads import ordered_map, tile_pool
from .backend import to_host
from .errors import InputError

NBINS = 4096
REL_TOL = 1e-12  # squared distances below REL_TOL·(‖x_i‖²+‖x_j‖²) are exact zeros (duplicates)
MAX_LEVELS = 16
#: the dense path samples M / this many pairs for a one-pass plan (:mod:`fastcka._rbf_onepass`):
#: a sampled pair reads two random rows, a small sample keeps it a small part of the pass
DENSE_PLAN_DIV = 64
WINDOW_SDS = 8.0  # the first collect window spans at most ± this many sampling standard deviations


@dataclass
class _Target:
    chan: int
    mode: str  # "paper" or "kornblith"
    t: int = 0  # kornblith: index in the sorted n² list
    rank: int | None = None  # rank among non-zero pair values (known after pass 1)
    offset: int = 0  # non-zero values below the current window
    chain: list = field(default_factory=list)
    lo: float = 0.0
    inv_w: float = 0.0
    nbins: int = NBINS
    clo: float = math.inf
    chi: float = math.inf
    win_count: int | None = None  # values in the current window when known
    value: float | None = None
    # per-pass accumulators
    hist: np.ndarray | None = None
    n_le: int = 0
    n_coll: int = 0
    vmin: float = math.inf
    vmax: float = -math.inf
    buf: object = None  # preallocated collect buffer (cap values), reused across passes
    overflow: bool = False


def _set_window(tg: _Target, lo: float, hi: float, nbins: int = NBINS) -> None:
    if not hi > lo:
        hi = np.nextafter(lo, math.inf) if not math.isfinite(hi) or hi <= lo else hi
    tg.lo = float(lo)
    tg.nbins = int(nbins)
    w = (float(hi) - float(lo)) / nbins
    tg.inv_w = 1.0 / w if w > 0 and math.isfinite(w) else 1.0


def upper_tiles(n: int, tile: int):
    """(i0, i1, j0, j1, diag) of the upper block triangle of an n x n matrix."""
    for i0 in range(0, n, tile):
        i1 = min(n, i0 + tile)
        for j0 in range(i0, n, tile):
            yield i0, i1, j0, min(n, j0 + tile), j0 == i0


def affine(xp, X, ops=None):
    """``(mu, s)``: the centre and power-of-two scale that the tiles apply to X's rows.

    Kernels of centred rows lose nothing to cancellation (linear HSIC and squared distances are
    translation-invariant; the GEMM forms on uncentred data lose ``(offset / spread)²`` digits).
    ``mu`` is the column mean clipped into the column's range (exactly the value of a constant
    column, so that constant inputs stay exactly constant); ``s`` is 1 unless the centred values
    are so large or small (beyond 2^±64) that products of four of them would over- or underflow:
    then ``s = 2^-e`` brings them into [-1, 1] (exact, so CKA is unchanged: it is scale-invariant;
    callers undo ``s`` where a result has units).  ``O(n·p)``, no copy of X.  ``ops``: a host
    kernel set with ``column_stats`` (``kernels/cka_cpu.py``) makes the three column reductions
    one parallel pass (the same bits).
    """
    stats = getattr(ops, "column_stats", None) if xp is np else None
    if stats is not None:
        lo, hi, tot = stats(X)
        mean = tot / X.shape[0]
    else:
        lo = X.min(axis=0).astype(xp.float64)
        hi = X.max(axis=0).astype(xp.float64)
        mean = X.mean(axis=0, dtype=xp.float64)
    mu = xp.minimum(xp.maximum(mean, lo), hi)
    mu = xp.where(lo == hi, lo, mu)
    half = float(xp.maximum(0.5 * hi - 0.5 * mu, 0.5 * mu - 0.5 * lo).max()) if X.size else 0.0
    if half == 0.0 or (2.0 ** -65 <= half <= 2.0 ** 63):
        return mu, 1.0
    return mu, math.ldexp(1.0, -(math.frexp(half)[1] + 1))


def block64(xp, X, a, b, aff=None):
    """Rows ``a:b`` of X as a contiguous float64 array (a view when X already is float64);
    with ``aff = (mu, s)`` from :func:`affine`, the rows ``(X[a:b] − mu) · s`` (a new block)."""
    if aff is None:
        return xp.ascontiguousarray(X[a:b], dtype=xp.float64)
    B = xp.subtract(X[a:b], aff[0], dtype=xp.float64)
    if aff[1] != 1.0:
        B *= aff[1]
    return B


def sqnorms(xp, X, step=None, aff=None):
    """Squared row norms in float64, converting float32 input one row chunk at a time."""
    n = int(X.shape[0])
    step = int(config.CKA_CHUNK_ROWS if step is None else step)
    out = xp.empty(n, dtype=xp.float64)
    for a in range(0, n, step):
        B = block64(xp, X, a, min(n, a + step), aff)
        out[a:a + B.shape[0]] = (B * B).sum(axis=1)
    return out


class DistanceTiler:
    """Squared-distance tiles of one matrix on a backend (GEMM form, float64 tiles).

    Float32 inputs stay float32; each tile converts its two row blocks (``O(tile · p)``), centred
    and scaled by ``aff`` (:func:`affine`) when given.
    """

    def __init__(self, X, xp, ops, aff=None):
        self.X = X
        self.xp = xp
        self.ops = ops
        self.aff = aff
        self.sq = sqnorms(xp, X, aff=aff)

    def tile(self, i0, i1, j0, j1, diag, out=None, sqdist=None):
        """The distance tile, written into ``out`` (a flat float64 buffer) when given;
        ``sqdist``: the Gram-to-distance kernel (default: the kernel set's)."""
        A = block64(self.xp, self.X, i0, i1, self.aff)
        B = A if diag and (i0, i1) == (j0, j1) else block64(self.xp, self.X, j0, j1, self.aff)
        if out is None:
            G = A @ B.T
        else:  # one reused buffer: no per-tile allocation to fragment the heap
            G = out[: (i1 - i0) * (j1 - j0)].reshape(i1 - i0, j1 - j0)
            self.xp.matmul(A, B.T, out=G)
        return (sqdist or self.ops.sqdist)(G, self.sq[i0:i1], self.sq[j0:j1], REL_TOL, diag)


def _sample_pairs(Xs, n, s, xp, rng, affs=None, chunk=2 ** 22, ops=None):
    """Squared distances of ``s`` random pairs i != j (direct form) for each input, sorted.

    On the host with a kernel set that has ``pair_sqdist`` (Numba): one fused sweep per input
    (gather, difference, square, sum); otherwise NumPy / CuPy in chunks of ``chunk`` elements.
    """
    i = rng.integers(0, n, size=s)
    j = rng.integers(0, n - 1, size=s)
    j = j + (j >= i)
    out = []
    fused = getattr(ops, "pair_sqdist", None) if xp is np else None
    for k, X in enumerate(Xs):
        sc = affs[k][1] if affs is not None else 1.0
        if fused is not None:
            out.append(np.sort(fused(X, i, j, sc)))
            continue
        vals = []
        step = max(256, int(chunk) // max(1, int(X.shape[1])))
        for a in range(0, s, step):
            ii = xp.asarray(i[a:a + step])
            jj = xp.asarray(j[a:a + step])
            diff = xp.asarray(X[ii], dtype=xp.float64) - X[jj]
            if sc != 1.0:
                diff *= sc
            vals.append((diff * diff).sum(axis=1))
        out.append(np.sort(np.asarray(to_host(xp.concatenate(vals)))))
    return out


def sqdist_order_stats(Xs, requests, *, xp=np, ops=None, tile=2048, cap=None,
                       sample_size=None, sample_chunk=2 ** 22, rng=0, progress=None, affs=None,
                       moments=None, dense=None):
    """Exact paper / kornblith median squared distances of several inputs, sharing passes.

    Parameters
    ----------
    Xs : list of (n, p_k) float64 arrays on backend ``xp`` (same n)
    requests : list of (k, mode) — input index and ``"paper"`` or ``"kornblith"``
    ops : tile kernel set (``kernels.cka_cpu.get_ops()`` or the CuPy one)
    tile : int, tile edge
    cap : int, most values collected per rank (default: 2**24 on CPU)
    dense : int, most pair values (``M``) for which the first pass collects every value instead
        of a sampled window (default and at most: ``cap``)
    sample_size : int, pairs sampled for the first window (default 2**17)
    sample_chunk : int, float64 elements of one chunk of sampled-pair differences
    affs : list of ``(mu, s)`` per input (:func:`affine`), or None: the tiles centre and scale
        the rows; the results are then the order statistics of the scaled distances (``s²·d``)
    moments : a :class:`fastcka._rbf_onepass.OnePass` of every input, or None: on the host's
        tile pool its :meth:`~fastcka._rbf_onepass.OnePass.plan` gets the sampled distances and
        the first pass also sums its moments (the kernel sums of the selected bandwidths)

    Returns
    -------
    list of float: the median squared distance for each request (paper: lower median of the
    non-zero values; kornblith: NumPy median of all n², zero diagonal included).
    """
    n = int(Xs[0].shape[0])
    M = n * (n - 1) // 2
    if M == 0:
        raise InputError("a median distance needs at least 2 rows")
    cap = int(cap or 2 ** 24)
    tilers = [DistanceTiler(X, xp, ops, None if affs is None else affs[k])
              for k, X in enumerate(Xs)]
    targets, slots = _targets(n, requests)
    s = int(min(M, sample_size or 2 ** 17))
    samples = None
    if M <= min(cap, int(dense or cap)):
        for tg in targets:
            tg.clo, tg.chi = -math.inf, math.inf
            _set_window(tg, 0.0, 1.0)
    else:
        samples = _sample_pairs(Xs, n, s, xp, np.random.default_rng(rng), affs, sample_chunk,
                                ops)
        _initial_windows(targets, samples, n, M, s, cap)
    if moments is not None:
        pool = getattr(ops, "tile", None) if xp is np else None
        chans = sorted({tg.chan for tg in targets})
        if getattr(pool, "moments", None) is None or chans != list(range(len(Xs))):
            moments = None
        else:
            if samples is None:  # the dense path draws no sample of its own: a small one
                samples = _sample_pairs(Xs, n, max(1, min(s, M // DENSE_PLAN_DIV)), xp,
                                        np.random.default_rng(rng), affs, sample_chunk, ops)
            if not moments.plan(samples, n, M, [float(t.sq.mean()) for t in tilers]):
                moments = None

    n_zero = [None] * len(Xs)
    for level in range(MAX_LEVELS + 1):
        active = [tg for tg in targets if tg.value is None]
        if not active:
            break
        zeros = _tile_pass(active, tilers, n, tile, cap, xp, ops, progress, level,
                           moments if level == 0 else None)
        if level == 0 and moments is not None:  # every value seen: the largest of each input
            moments.vmax = [max(tg.vmax for tg in targets if tg.chan == k)
                            for k in range(len(Xs))]
        for k, z in zeros.items():
            if n_zero[k] is None:
                n_zero[k] = z
        for tg in active:
            _advance(tg, n, M, n_zero[tg.chan], cap, xp)

    out = []
    for sl in slots:
        vals = [targets[a].value for a in sl]
        if any(v is None for v in vals):  # pragma: no cover - MAX_LEVELS exhausted
            raise RuntimeError("median selection did not converge")
        out.append(float(sum(vals) / len(vals)))
    return out


def _targets(n: int, requests) -> tuple[list[_Target], list[list[int]]]:
    """The order statistics to select (one per paper request, one or two per kornblith) and
    the slots of each request among them."""
    targets: list[_Target] = []
    slots = []
    for k, mode in requests:
        if mode == "paper":
            slots.append([len(targets)])
            targets.append(_Target(k, "paper"))
        elif mode == "kornblith":
            nn = n * n
            ts = [(nn - 1) // 2] if nn % 2 else [nn // 2 - 1, nn // 2]
            slots.append([len(targets) + a for a in range(len(ts))])
            targets.extend(_Target(k, "kornblith", t=t) for t in ts)
        else:
            raise InputError(f"unknown median mode {mode!r}")
    return targets, slots


def target_sample(smp, tg: _Target, n: int, M: int):
    """``(values, q)``: the sorted sampled distances a target's rank is estimated from and its
    quantile among them (paper: the non-zero values, 0.5; kornblith: all of them, its pair rank
    over M)."""
    if tg.mode == "paper":
        return smp[smp > 0], 0.5
    return smp, max(0, (tg.t - n) // 2) / M


def sample_quantile(smp, f: float) -> float:
    """The value at fraction ``f`` (clamped to [0, 1]) of the sorted, non-empty ``smp``."""
    f = min(1.0, max(0.0, f))
    return float(smp[min(smp.size - 1, int(f * smp.size))])


def _initial_windows(targets, samples, n: int, M: int, s: int, cap: int) -> None:
    """First collect windows of the targets from the sorted sampled distances of each input."""
    sd = 0.5 / math.sqrt(s)
    # collect window: ±eps in quantile around the sample's estimate, at most a quarter of the
    # cap's worth of values each side, and no wider than 8 standard deviations of the estimate
    # (a miss then has probability ~1e-15; a narrower window is cheaper to collect and select)
    eps = min(max(cap / (4.0 * M), 1e-9), WINDOW_SDS * sd)
    delta = min(0.5, max(8 * eps, 12 * sd))
    for tg in targets:
        smp, q = target_sample(samples[tg.chan], tg, n, M)
        if smp.size == 0:
            smp = np.zeros(1)

        def quant(f, smp=smp):
            return sample_quantile(smp, f)

        tg.clo, tg.chi = quant(q - eps), quant(q + eps)
        if q - eps <= 0:
            tg.clo = -math.inf
        if q + eps >= 1:
            tg.chi = math.inf
        if math.isfinite(tg.clo) and math.isfinite(tg.chi) and tg.chi > tg.clo:
            # one bin (below / inside / above the collect window): a counting pass, and a
            # 4096-bin histogram only in the rare pass after a miss
            _set_window(tg, tg.clo, tg.chi, 1)
        else:
            _set_window(tg, quant(q - delta), quant(q + delta))


def _tile_pass(active, tilers, n: int, tile: int, cap: int, xp, ops, progress, level: int,
               moments=None) -> dict[int, int]:
    """One pass over the upper tiles: histogram and collect every active target's window
    (and sum ``moments``, on the tile pool).  Returns the number of zero distances of each
    input seen in the pass."""
    chans = sorted({tg.chan for tg in active})
    zeros = {k: 0 for k in chans}
    for tg in active:
        tg.hist = np.zeros(tg.nbins + 2, dtype=np.int64)
        tg.n_le = tg.n_coll = 0
        tg.vmin, tg.vmax = math.inf, -math.inf
        tg.overflow = False
    tiles = list(upper_tiles(n, tile))
    pool = getattr(ops, "tile", None) if xp is np else None
    if pool is not None:
        _pool_pass(active, tilers, chans, zeros, tiles, min(tile, n), cap, pool, progress, level,
                   moments)
        return zeros
    tbuf = xp.empty(min(tile, n) * min(tile, n))
    fused = getattr(ops, "count_collect", None) if xp is np else None
    scratch = None
    it = progress(tiles, total=len(tiles), desc=f"median pass {level + 1}") if progress else tiles
    for i0, i1, j0, j1, diag in it:
        for k in chans:
            D = tilers[k].tile(i0, i1, j0, j1, diag, out=tbuf)
            for tg in active:
                if tg.chan != k:
                    continue
                if fused is not None and tg.nbins == 1:  # count and collect in one sweep
                    if tg.buf is None:
                        tg.buf = xp.empty(cap)
                    if scratch is None:
                        scratch = np.empty(tbuf.size)
                    dest = tg.buf[tg.n_coll:] if not tg.overflow else tg.buf[:0]
                    nz, h, nle, nco, vmin, vmax = fused(D, diag, tg.chain, tg.lo, tg.inv_w,
                                                        tg.clo, tg.chi, scratch, dest)
                    if nco > dest.size:
                        tg.overflow = True
                    nco_to_collect = 0
                else:
                    nz, h, nle, nco, vmin, vmax = ops.hist(D, diag, tg.chain, tg.lo, tg.inv_w,
                                                           tg.nbins, tg.clo, tg.chi)
                    nco_to_collect = nco
                if tg is next(t for t in active if t.chan == k):
                    zeros[k] += nz
                tg.hist += np.asarray(to_host(h), dtype=np.int64)
                tg.n_le += nle
                tg.vmin, tg.vmax = min(tg.vmin, vmin), max(tg.vmax, vmax)
                if nco_to_collect and not tg.overflow:
                    if tg.n_coll + nco > cap:
                        tg.overflow = True
                    else:
                        if tg.buf is None:
                            tg.buf = xp.empty(cap)
                        tg.buf[tg.n_coll:tg.n_coll + nco] = ops.collect(
                            D, diag, tg.chain, tg.clo, tg.chi, nco)
                tg.n_coll += nco
            del D
    return zeros


def _pool_pass(active, tilers, chans, zeros, tiles, edge: int, cap: int, pool, progress,
               level: int, moments=None) -> None:
    """:func:`_tile_pass` on the host's tile pool (:func:`fastcka._threads.tile_pool`): each
    thread takes whole tiles (its GEMM on one BLAS thread, then one sweep per target that
    histograms, counts and collects the window, then the ``moments`` of the tile's m distance
    tiles when given); the results are merged in tile order, so the counts, the collected
    values, their order and the moment sums do not depend on the number of threads."""
    dims = sum(int(tilers[k].X.shape[1]) for k in chans)
    nd = len(chans) if moments is not None else 1

    def buffers():
        return (np.empty((nd, edge * edge)), np.empty(edge * edge),
                moments.scratch(edge) if moments is not None else None)

    threads, free = tile_pool(len(tiles), edge * edge, dims, buffers)

    def work(t):
        i0, i1, j0, j1, diag = t
        dbuf, out, scratch = free.get()
        try:
            res = []
            for c, k in enumerate(chans):
                D = tilers[k].tile(i0, i1, j0, j1, diag, out=dbuf[c if nd > 1 else 0],
                                   sqdist=pool.sqdist)
                for tg in active:
                    if tg.chan == k:
                        nz, h, nle, nco, vmin, vmax = pool.hist_collect(
                            D, diag, tg.chain, tg.lo, tg.inv_w, tg.nbins, tg.clo, tg.chi, out)
                        res.append((nz, h, nle, nco, vmin, vmax,
                                    out[:nco].copy() if 0 < nco <= cap else None))
            mom = (moments.tile(dbuf, i1 - i0, j1 - j0, diag, scratch)
                   if moments is not None else None)
            return res, mom
        finally:
            free.put((dbuf, out, scratch))

    results = ordered_map(work, tiles, threads)
    it = progress(results, total=len(tiles), desc=f"median pass {level + 1}") if progress else results
    order = [tg for k in chans for tg in active if tg.chan == k]
    first = {k: next(tg for tg in order if tg.chan == k) for k in chans}
    for t, (res, mom) in zip(tiles, it, strict=True):
        for tg, (nz, h, nle, nco, vmin, vmax, vals) in zip(order, res, strict=True):
            if tg is first[tg.chan]:
                zeros[tg.chan] += nz
            tg.hist += h
            tg.n_le += nle
            tg.vmin, tg.vmax = min(tg.vmin, vmin), max(tg.vmax, vmax)
            if nco and not tg.overflow:
                if tg.n_coll + nco > cap or vals is None:
                    tg.overflow = True
                else:
                    if tg.buf is None:
                        tg.buf = np.empty(cap)
                    tg.buf[tg.n_coll:tg.n_coll + nco] = vals
            tg.n_coll += nco
        if mom is not None:
            moments.add(t, mom)


def _advance(tg: _Target, n: int, M: int, z: int, cap: int, xp) -> None:
    """After a pass: finish the target or narrow its window."""
    if tg.rank is None:
        P = M - z
        if tg.mode == "paper":
            if P == 0:
                raise InputError("all pairwise squared distances are zero (identical rows): the "
                                 "paper bandwidth is undefined")
            tg.rank = (P - 1) // 2
        else:
            if tg.t < n or (tg.t - n) // 2 < z:
                tg.value = 0.0
                return
            tg.rank = (tg.t - n) // 2 - z
    r = tg.rank - tg.offset  # rank inside the current window
    if not tg.overflow and tg.n_le <= r < tg.n_le + tg.n_coll:
        vals = tg.buf[: tg.n_coll]
        kth = r - tg.n_le
        vals.partition(kth)  # in place: no extra copy
        tg.value = float(to_host(vals[kth]))
        tg.buf = None
        return
    if tg.vmin == tg.vmax:  # every window value equal
        tg.value = tg.vmin
        return
    cum = np.cumsum(tg.hist)
    b = int(np.searchsorted(cum, r, side="right"))
    tg.offset += int(cum[b - 1]) if b > 0 else 0
    count = int(tg.hist[b])
    nb_old = tg.nbins
    hi_old = tg.lo + nb_old / tg.inv_w
    tg.chain.append((tg.lo, tg.inv_w, nb_old, b))
    if b == 0:
        lo, hi = np.nextafter(tg.vmin, -math.inf), tg.lo
    elif b == nb_old + 1:
        lo, hi = hi_old, tg.vmax
    else:
        lo, hi = tg.lo + (b - 1) / tg.inv_w, tg.lo + b / tg.inv_w
    lo = max(lo, np.nextafter(tg.vmin, -math.inf)) if b == 0 else lo
    _set_window(tg, lo, hi)
    if count <= cap:
        tg.clo, tg.chi = -math.inf, math.inf
    else:
        tg.clo, tg.chi = math.inf, math.inf
