"""CPU tile kernels of the CKA engine: Numba (``parallel=True``, ``cache=True``) and NumPy twins.

Every function works on one tile of a symmetric n x n problem: ``G`` is the Gram tile
``X[I] @ X[J].T`` (float64, C-contiguous, computed by BLAS outside), ``na_i``/``na_j`` the squared
row norms of the two row blocks.  A *diagonal* tile (``I == J``) is square and only its strict
upper triangle is a set of distinct pairs.

Squared distances use the GEMM form ``d_ij = ‖x_i‖² + ‖x_j‖² − 2 x_i·x_j``, clipped at 0; a value
``d <= rel_tol · (‖x_i‖² + ‖x_j‖²)`` is below the resolution of that form and is set to exactly 0
(duplicate rows), and the diagonal of a diagonal tile is exactly 0.

Histogram bins of a window ``(lo, lo + nbins / inv_w]``: ``f(v) = 0`` if ``(v − lo)·inv_w <= 0``,
``nbins + 1`` if it exceeds ``nbins``, else ``ceil((v − lo)·inv_w)``.  ``f`` is monotone in ``v``
in floating point, so "the values whose bin was b" is an exact predicate that later passes reuse
(the *chain* of ``(lo, inv_w, nbins, b)`` rows).

Each public function has a Numba kernel (``*_nb``) and a NumPy fallback (``*_np``) with the same
results; :func:`get_ops` picks one set.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

try:  # numba is a hard dependency, but keep the fallback importable without it
    import numba
    from numba import njit, prange
except Exception:  # pragma: no cover
    numba = None

KIND_LINEAR = 0
KIND_RBF = 1

_NCHUNK = 64  # row chunks of a tile processed in parallel (partial sums per chunk)
_NO_VALUES = np.empty(0)  # scratch / dest of a count-only sweep
#: the one-pass moment kernel's floating-point licences: sums may be reassociated (SIMD) and
#: products fused; no "finite only" or approximate-function licence (the values stay IEEE)
_FASTMATH = {"reassoc", "contract", "nsz"}


def moment_groups(m: int, L: int):
    """The product terms of the one-pass RBF moments of m inputs to degree ``L - 1``.

    Row ``a·L + k`` of the moment rows is ``v_k`` of input a (``v_0 = E - c0``,
    ``v_k = E u^k / k!``).  The terms are the pairs ``(a, k, b, q)`` with ``k + q <= L - 1``
    and ``(a, k) <= (b, l)`` within one input (``a == b``: ``k <= l``), in groups of one x row
    and consecutive y rows.  Returns ``(groups (G, 3) int64: x, y0, count; terms (T, 4) int64:
    a, k, b, q in the kernel's order)``.
    """
    groups, terms = [], []
    for a in range(m):
        for k in range(L):
            if L - 1 - k >= k:
                groups.append((a * L + k, a * L + k, L - 2 * k))
                terms.extend((a, k, a, q) for q in range(k, L - k))
            for b in range(a + 1, m):
                groups.append((a * L + k, b * L, L - k))
                terms.extend((a, k, b, q) for q in range(L - k))
    return (np.array(groups, dtype=np.int64).reshape(-1, 3),
            np.array(terms, dtype=np.int64).reshape(-1, 4))


# ----------------------------------------------------------------------------------------------
# NumPy fallbacks
# ----------------------------------------------------------------------------------------------

def sqdist_np(G, na_i, na_j, rel_tol, diag):
    """In place: ``G`` (Gram tile) -> squared distances (see module notes)."""
    s = na_i[:, None] + na_j[None, :]
    G *= -2.0
    G += s
    G[G <= rel_tol * s] = 0.0
    if diag:
        np.fill_diagonal(G, 0.0)
    return G


def _values(D, diag):
    if diag:
        return D[np.triu_indices(D.shape[0], 1)]
    return D.ravel()


def _bins(v, lo, inv_w, nbins):
    x = (v - lo) * inv_w
    return np.clip(np.ceil(x), 0, nbins + 1).astype(np.int64)


def _in_chain(v, chain):
    keep = v != 0.0
    for lo, inv_w, nb, b in chain:
        keep &= _bins(v, lo, inv_w, int(nb)) == int(b)
    return keep


def hist_np(D, diag, chain, lo, inv_w, nbins, clo, chi):
    """Statistics of the pair values of a distance tile that lie in the chain's window.

    Returns ``(n_zero, hist, n_le_clo, n_coll, vmin, vmax)``: the number of exactly-zero pair
    values (all of them, whatever the chain), the histogram (``nbins + 2`` counts) of the non-zero
    window values, how many of those are ``<= clo``, how many lie in ``(clo, chi]``, and their
    min/max (``inf``/``-inf`` when none).
    """
    v = _values(D, diag)
    n_zero = int(np.count_nonzero(v == 0.0))
    v = v[_in_chain(v, chain)]
    hist = np.bincount(_bins(v, lo, inv_w, nbins), minlength=nbins + 2).astype(np.int64)
    n_le = int(np.count_nonzero(v <= clo))
    n_coll = int(np.count_nonzero((v > clo) & (v <= chi)))
    vmin = float(v.min()) if v.size else math.inf
    vmax = float(v.max()) if v.size else -math.inf
    return n_zero, hist, n_le, n_coll, vmin, vmax


def collect_np(D, diag, chain, clo, chi, count=None):
    """The non-zero window values of a distance tile in ``(clo, chi]`` (1-D float64)."""
    v = _values(D, diag)
    v = v[_in_chain(v, chain)]
    return v[(v > clo) & (v <= chi)].copy()


def kernel_stats_np(Gs, na_i, na_j, kinds, gammas, rel_tol, diag, shifts=None):
    """Kernel tiles of m inputs and their sums, from their Gram tiles (``Gs`` is overwritten).

    Parameters
    ----------
    Gs : (m, bi, bj) float64
    na_i : (m, bi), na_j : (m, bj)
    kinds : (m,) int (0 linear, 1 rbf); gammas : (m,) float, ``1 / (2σ²)`` for rbf
    shifts : (m,) float or None: a constant subtracted from every value of an rbf kernel
        (diagonal included) before the sums; HSIC is unchanged by it (``H(K − c11ᵀ)H = HKH``)
        and a shift near the kernel's typical value keeps the raw sums from cancelling

    Returns
    -------
    S : (m, m) ``Σ K_a ∘ K_b`` over the tile
    rows : (m, bi), cols : (m, bj) row and column sums
    diags : (m, bi) the tile diagonal when ``diag`` (zeros otherwise)
    """
    m, bi, bj = Gs.shape
    for a in range(m):
        if kinds[a] == KIND_RBF:
            sqdist_np(Gs[a], na_i[a], na_j[a], rel_tol, diag)
            Gs[a] *= -gammas[a]
            np.exp(Gs[a], out=Gs[a])
            if shifts is not None and shifts[a] != 0.0:
                Gs[a] -= shifts[a]
    flat = Gs.reshape(m, bi * bj)
    S = flat @ flat.T
    rows = Gs.sum(axis=2)
    cols = Gs.sum(axis=1)
    diags = np.zeros((m, bi))
    if diag:
        for a in range(m):
            diags[a] = np.diagonal(Gs[a])
    return S, rows, cols, diags


def column_stats_np(X):
    """``(lo, hi, total)`` per column of a 2-D float array (float64): ``X.min(0)``,
    ``X.max(0)`` and ``X.sum(0, dtype=float64)`` (rows added in order, as NumPy's axis-0
    reduction does: the same bits)."""
    return (X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64),
            X.sum(axis=0, dtype=np.float64))


def rows64_np(X, r0, r1, mu, s, out):
    """Rows ``r0:r1`` of X, centred by ``mu`` and scaled by ``s`` in float64, written into
    ``out[:r1 - r0]`` (returned): ``(X[r0:r1] − mu) · s``."""
    B = out[: r1 - r0]
    np.subtract(X[r0:r1], mu, out=B, dtype=np.float64)
    if s != 1.0:
        B *= s
    return B


# ----------------------------------------------------------------------------------------------
# Numba kernels
# ----------------------------------------------------------------------------------------------

if numba is not None:

    @njit(inline="always")
    def _sqdist_row(G, i, na_i, na_j, scale, rel_tol, diag):
        # row i of a Gram tile -> scale x its squared distances (GEMM form, clipped to exact 0)
        for j in range(G.shape[1]):
            s = na_i[i] + na_j[j]
            d = s - 2.0 * G[i, j]
            if d <= rel_tol * s:
                d = 0.0
            G[i, j] = scale * d
        if diag:
            G[i, i] = 0.0

    @njit(parallel=True, cache=True)
    def sqdist_nb(G, na_i, na_j, rel_tol, diag):
        for i in prange(G.shape[0]):
            _sqdist_row(G, i, na_i, na_j, 1.0, rel_tol, diag)
        return G

    @njit(inline="always")
    def _bin_nb(v, lo, inv_w, nbins):
        x = (v - lo) * inv_w
        if x <= 0.0:
            return 0
        if x > nbins:
            return nbins + 1
        return int(math.ceil(x))

    @njit(inline="always")
    def _in_chain_nb(v, chain):
        if v == 0.0:
            return False
        for k in range(chain.shape[0]):
            if _bin_nb(v, chain[k, 0], chain[k, 1], int(chain[k, 2])) != int(chain[k, 3]):
                return False
        return True

    @njit(inline="always")
    def _bin_clamped_nb(v, lo, inv_w, nbins):
        # branch-free twin of _bin_nb (same value: ceil clamped to [0, nbins + 1])
        # clamp before ceil: math.ceil returns an int64, which far-away values would overflow
        x = min(max((v - lo) * inv_w, 0.0), nbins + 1.0)
        return int(math.ceil(x))

    @njit(parallel=True, cache=True)
    def _hist_nb(D, diag, chain, lo, inv_w, nbins, clo, chi):
        bi, bj = D.shape
        nch = min(_NCHUNK, bi)
        nchain = chain.shape[0]
        hist = np.zeros((nch, nbins + 2), dtype=np.int64)
        cnt = np.zeros((nch, 3), dtype=np.int64)  # zeros, <= clo, in (clo, chi]
        ext = np.empty((nch, 2))
        for c in prange(nch):
            h = np.zeros(nbins + 2, dtype=np.int64)
            nz = 0
            nle = 0
            nco = 0
            vmin = np.inf
            vmax = -np.inf
            for i in range(c * bi // nch, (c + 1) * bi // nch):
                j0 = i + 1 if diag else 0
                for j in range(j0, bj):
                    v = D[i, j]
                    if v == 0.0:  # rare: predictable
                        nz += 1
                        continue
                    if nchain > 0 and not _in_chain_nb(v, chain):
                        continue
                    h[_bin_clamped_nb(v, lo, inv_w, nbins)] += 1
                    nle += np.int64(v <= clo)
                    nco += np.int64(v > clo) & np.int64(v <= chi)
                    vmin = min(vmin, v)
                    vmax = max(vmax, v)
            hist[c] = h
            cnt[c, 0] = nz
            cnt[c, 1] = nle
            cnt[c, 2] = nco
            ext[c, 0] = vmin
            ext[c, 1] = vmax
        return hist.sum(axis=0), cnt.sum(axis=0), ext[:, 0].min(), ext[:, 1].max()

    def hist_nb(D, diag, chain, lo, inv_w, nbins, clo, chi):
        if int(nbins) == 1:  # below / inside / above one window: the one-sweep kernel, no dest
            c, vmin, vmax = _count_collect_nb(D, bool(diag), _chain_array(chain), float(lo),
                                              float(inv_w), float(clo), float(chi),
                                              np.empty(D.size), _NO_VALUES)
            return int(c[3]), c[:3].copy(), int(c[4]), int(c[5]), float(vmin), float(vmax)
        h, c, vmin, vmax = _hist_nb(D, bool(diag), _chain_array(chain), float(lo), float(inv_w),
                                    int(nbins), float(clo), float(chi))
        return int(c[0]), h, int(c[1]), int(c[2]), float(vmin), float(vmax)

    @njit(parallel=True, cache=True)
    def _collect_nb(D, diag, chain, clo, chi):
        bi, bj = D.shape
        nch = min(_NCHUNK, bi)
        nchain = chain.shape[0]
        counts = np.zeros(nch + 1, dtype=np.int64)
        for c in prange(nch):
            k = 0
            for i in range(c * bi // nch, (c + 1) * bi // nch):
                j0 = i + 1 if diag else 0
                for j in range(j0, bj):
                    v = D[i, j]
                    inwin = (v > clo) & (v <= chi) & (v != 0.0)  # branch-free: a narrow window
                    if inwin and (nchain == 0 or _in_chain_nb(v, chain)):
                        k += 1
            counts[c + 1] = k
        offs = np.cumsum(counts)
        out = np.empty(offs[-1])
        for c in prange(nch):
            k = offs[c]
            for i in range(c * bi // nch, (c + 1) * bi // nch):
                j0 = i + 1 if diag else 0
                for j in range(j0, bj):
                    v = D[i, j]
                    inwin = (v > clo) & (v <= chi) & (v != 0.0)
                    if inwin and (nchain == 0 or _in_chain_nb(v, chain)):
                        out[k] = v
                        k += 1
        return out

    def collect_nb(D, diag, chain, clo, chi, count=None):
        return _collect_nb(D, bool(diag), _chain_array(chain), float(clo), float(chi))

    @njit(parallel=True, cache=True)
    def _count_collect_nb(D, diag, chain, lo, inv_w, clo, chi, scratch, dest):
        # the counts of a one-bin window (below / inside / above, zeros, <= clo, in (clo, chi])
        # in register counters and, in the same sweep, a branch-free write of every value in
        # (clo, chi] into the chunk's own stretch of ``scratch`` (a chunk owns its rows' slots,
        # so no count pass is needed first); then, if they fit, the chunks' values packed into
        # ``dest``.  (An unconditional write: a flag to skip it costs a third more time.)
        bi, bj = D.shape
        nch = min(_NCHUNK, bi)
        nchain = chain.shape[0]
        cnt = np.zeros((nch, 6), dtype=np.int64)  # bin0, bin1, bin2, zeros, <= clo, (clo, chi]
        ext = np.empty((nch, 2))
        for c in prange(nch):
            start = (c * bi // nch) * bj
            pos = start
            b0 = 0
            b1 = 0
            b2 = 0
            nz = 0
            nle = 0
            vmin = np.inf
            vmax = -np.inf
            for i in range(c * bi // nch, (c + 1) * bi // nch):
                j0 = i + 1 if diag else 0
                for j in range(j0, bj):
                    v = D[i, j]
                    if v == 0.0:
                        nz += 1
                        continue
                    if nchain > 0 and not _in_chain_nb(v, chain):
                        continue
                    b = _bin_clamped_nb(v, lo, inv_w, 1)
                    b0 += np.int64(b == 0)
                    b1 += np.int64(b == 1)
                    b2 += np.int64(b == 2)
                    nle += np.int64(v <= clo)
                    scratch[pos] = v
                    pos += np.int64(v > clo) & np.int64(v <= chi)
                    vmin = min(vmin, v)
                    vmax = max(vmax, v)
            cnt[c, 0] = b0
            cnt[c, 1] = b1
            cnt[c, 2] = b2
            cnt[c, 3] = nz
            cnt[c, 4] = nle
            cnt[c, 5] = pos - start
            ext[c, 0] = vmin
            ext[c, 1] = vmax
        offs = np.zeros(nch + 1, dtype=np.int64)
        for c in range(nch):
            offs[c + 1] = offs[c] + cnt[c, 5]
        if offs[nch] <= dest.shape[0]:
            for c in prange(nch):
                src = (c * bi // nch) * bj
                for k in range(cnt[c, 5]):
                    dest[offs[c] + k] = scratch[src + k]
        return cnt.sum(axis=0), ext[:, 0].min(), ext[:, 1].max()

    def count_collect_nb(D, diag, chain, lo, inv_w, clo, chi, scratch, dest):
        """:func:`hist_nb` of a one-bin window (``nbins == 1``) and :func:`collect_nb` of
        ``(clo, chi]`` in one sweep of the tile.

        Returns ``(n_zero, hist, n_le, n_coll, vmin, vmax)`` as ``hist_nb`` does, and writes the
        collected values to ``dest[:n_coll]`` when ``n_coll <= len(dest)`` (else ``dest`` is
        untouched).  ``scratch``: float64, at least ``D.size`` long (overwritten).
        """
        c, vmin, vmax = _count_collect_nb(D, bool(diag), _chain_array(chain), float(lo),
                                          float(inv_w), float(clo), float(chi), scratch, dest)
        return int(c[3]), c[:3].copy(), int(c[4]), int(c[5]), float(vmin), float(vmax)

    @njit(parallel=True, cache=True, fastmath=_FASTMATH)  # a SIMD sum: 3-5x at 384 columns
    def _pair_sqdist_nb(X, i, j, sc):
        s = i.shape[0]
        p = X.shape[1]
        out = np.empty(s)
        for k in prange(s):
            a = i[k]
            b = j[k]
            acc = 0.0
            for f in range(p):
                d = (np.float64(X[a, f]) - np.float64(X[b, f])) * sc
                acc += d * d
            out[k] = acc
        return out

    def pair_sqdist_nb(X, i, j, sc):
        """Squared distances ``‖(x_i − x_j)·sc‖²`` (float64) of the row pairs ``(i[k], j[k])``."""
        return _pair_sqdist_nb(X, np.ascontiguousarray(i, dtype=np.int64),
                               np.ascontiguousarray(j, dtype=np.int64), float(sc))

    @njit(nogil=True, cache=True)
    def _rows64_nb(X, r0, r1, mu, s, out):
        p = X.shape[1]
        for i in range(r0, r1):
            for j in range(p):
                out[i - r0, j] = np.float64(X[i, j]) - mu[j]
            if s != 1.0:
                for j in range(p):
                    out[i - r0, j] *= s

    def rows64_nb(X, r0, r1, mu, s, out):
        """:func:`rows64_np` (the same bits) in one pass without the GIL: the cast, the centring
        and the scaling of a float32 block in one sweep instead of NumPy's buffered casting."""
        if not (isinstance(X, np.ndarray) and X.ndim == 2 and X.flags.c_contiguous
                and X.dtype in (np.float32, np.float64) and out.flags.c_contiguous):
            return rows64_np(X, r0, r1, mu, s, out)
        _rows64_nb(X, int(r0), int(r1), np.ascontiguousarray(mu, dtype=np.float64), float(s),
                   out)
        return out[: r1 - r0]

    _COL_BLOCK = 64  # columns per parallel unit of column_stats_nb

    @njit(parallel=True, cache=True)
    def _column_stats_nb(X):
        n, p = X.shape
        W = _COL_BLOCK
        out = np.empty((3, p))
        for b in prange((p + W - 1) // W):
            j0 = b * W
            w = min(p, j0 + W) - j0
            lo = np.full(W, np.inf)
            hi = np.full(W, -np.inf)
            tot = np.zeros(W)
            for i in range(n):
                r = X[i, j0:j0 + w]
                for j in range(w):  # select forms (not min/max): they vectorise
                    v = np.float64(r[j])
                    lo[j] = v if v < lo[j] else lo[j]
                    hi[j] = v if v > hi[j] else hi[j]
                    tot[j] += v  # rows in order: NumPy's axis-0 sum, the same bits
            out[0, j0:j0 + w] = lo[:w]
            out[1, j0:j0 + w] = hi[:w]
            out[2, j0:j0 + w] = tot[:w]
        return out

    def column_stats_nb(X):
        """:func:`column_stats_np` in one parallel pass over X (blocks of columns, each block's
        rows in order).  The selects skip NaN; a column whose total is not finite (it holds a
        NaN or an infinity) gets its min and max from NumPy, so the result is NumPy's."""
        if (not isinstance(X, np.ndarray) or X.ndim != 2 or not X.flags.c_contiguous
                or X.dtype not in (np.float32, np.float64) or X.shape[0] == 0):
            return column_stats_np(X)  # never a copy of X
        lo, hi, tot = _column_stats_nb(X)
        bad = ~np.isfinite(tot)
        if bad.any():
            lo[bad] = X[:, bad].min(axis=0)
            hi[bad] = X[:, bad].max(axis=0)
        return lo, hi, tot

    @njit(parallel=True, cache=True)
    def _kernel_stats_nb(Gs, na_i, na_j, kinds, gammas, rel_tol, diag, shifts):
        m, bi, bj = Gs.shape
        nch = min(_NCHUNK, bi)
        Sp = np.zeros((nch, m, m))
        colp = np.zeros((nch, m, bj))
        rows = np.zeros((m, bi))
        diags = np.zeros((m, bi))
        for c in prange(nch):
            k = np.empty(m)
            for i in range(c * bi // nch, (c + 1) * bi // nch):
                for j in range(bj):
                    # fused: distance -> kernel -> products -> row/column sums
                    for a in range(m):
                        g = Gs[a, i, j]
                        if kinds[a] == 1:
                            if diag and i == j:
                                g = 1.0
                            else:
                                s = na_i[a, i] + na_j[a, j]
                                d = s - 2.0 * g
                                if d <= rel_tol * s:
                                    d = 0.0
                                g = math.exp(-gammas[a] * d)
                            g -= shifts[a]
                        k[a] = g
                        rows[a, i] += g
                        colp[c, a, j] += g
                    for a in range(m):
                        for b in range(a, m):
                            Sp[c, a, b] += k[a] * k[b]
                    if diag and i == j:
                        for a in range(m):
                            diags[a, i] = k[a]
        S = Sp.sum(axis=0)
        for a in range(m):
            for b in range(a + 1, m):
                S[b, a] = S[a, b]
        return S, rows, colp.sum(axis=0), diags

    def kernel_stats_fused_nb(Gs, na_i, na_j, kinds, gammas, rel_tol, diag, shifts=None):
        """Everything in one Numba sweep (fastest where Numba has a vector exp: SVML)."""
        m = Gs.shape[0]
        sh = np.zeros(m) if shifts is None else np.asarray(shifts, dtype=np.float64)
        return _kernel_stats_nb(Gs, na_i, na_j, np.asarray(kinds, dtype=np.int64),
                                np.asarray(gammas, dtype=np.float64), float(rel_tol), bool(diag),
                                sh)

    @njit(parallel=True, cache=True)
    def _neg_gamma_sqdist_nb(G, na_i, na_j, gamma, rel_tol, diag):
        for i in prange(G.shape[0]):
            _sqdist_row(G, i, na_i, na_j, -gamma, rel_tol, diag)
        return G

    @njit(parallel=True, cache=True)
    def _tile_sums_nb(Gs, diag):
        m, bi, bj = Gs.shape
        nch = min(_NCHUNK, bi)
        Sp = np.zeros((nch, m, m))
        colp = np.zeros((nch, m, bj))
        rows = np.zeros((m, bi))
        diags = np.zeros((m, bi))
        for c in prange(nch):
            for i in range(c * bi // nch, (c + 1) * bi // nch):
                for a in range(m):
                    r = 0.0
                    for j in range(bj):
                        g = Gs[a, i, j]
                        r += g
                        colp[c, a, j] += g
                    rows[a, i] = r
                    if diag:
                        diags[a, i] = Gs[a, i, i]
                    for b in range(a, m):
                        t = 0.0
                        for j in range(bj):
                            t += Gs[a, i, j] * Gs[b, i, j]
                        Sp[c, a, b] += t
        S = Sp.sum(axis=0)
        for a in range(m):
            for b in range(a + 1, m):
                S[b, a] = S[a, b]
        return S, rows, colp.sum(axis=0), diags

    def kernel_stats_nb(Gs, na_i, na_j, kinds, gammas, rel_tol, diag, shifts=None):
        """Numba distance -> exponent kernel, NumPy's SIMD exp, Numba fused products/row sums.

        Without SVML Numba's scalar ``exp`` costs ~20 ns a value, NumPy's AVX-512 one ~1 ns;
        the two extra passes over a tile are cheaper than that.  ``shifts``: as in
        :func:`kernel_stats_np` (the same bits).
        """
        for a in range(Gs.shape[0]):
            if int(kinds[a]) == KIND_RBF:
                _neg_gamma_sqdist_nb(Gs[a], na_i[a], na_j[a], float(gammas[a]), float(rel_tol),
                                     bool(diag))
                np.exp(Gs[a], out=Gs[a])
                if shifts is not None and shifts[a] != 0.0:
                    Gs[a] -= shifts[a]
        return _tile_sums_nb(Gs, bool(diag))


    # --- one-thread tile kernels (``nogil``): a pool of threads runs whole tiles, each thread its
    # own GEMM on one BLAS thread and then these, so that no two thread pools (OpenBLAS's,
    # Numba's) take turns spinning on the same cores (fastcka._tiles).

    @njit(nogil=True, cache=True)
    def _sqdist_tile_nb(G, na_i, na_j, scale, rel_tol, diag):
        for i in range(G.shape[0]):
            _sqdist_row(G, i, na_i, na_j, scale, rel_tol, diag)
        return G

    def sqdist_tile_nb(G, na_i, na_j, rel_tol, diag):
        """:func:`sqdist_nb` on the calling thread (the same values)."""
        return _sqdist_tile_nb(G, na_i, na_j, 1.0, float(rel_tol), bool(diag))

    @njit(nogil=True, cache=True)
    def _hist_collect_tile_nb(D, diag, chain, lo, inv_w, nbins, clo, chi, out):
        bi, bj = D.shape
        nchain = chain.shape[0]
        h = np.zeros(nbins + 2, dtype=np.int64)
        nz = 0
        nle = 0
        pos = 0
        vmin = np.inf
        vmax = -np.inf
        if nbins == 1:  # three register counters (a one-bin array would chain its stores)
            b0 = 0
            b1 = 0
            b2 = 0
        for i in range(bi):
            j0 = i + 1 if diag else 0
            for j in range(j0, bj):
                v = D[i, j]
                if v == 0.0:  # rare: predictable
                    nz += 1
                    continue
                if nchain > 0 and not _in_chain_nb(v, chain):
                    continue
                b = _bin_clamped_nb(v, lo, inv_w, nbins)
                if nbins == 1:
                    b0 += np.int64(b == 0)
                    b1 += np.int64(b == 1)
                    b2 += np.int64(b == 2)
                else:
                    h[b] += 1
                nle += np.int64(v <= clo)
                out[pos] = v  # branch-free: kept when inside (clo, chi]
                pos += np.int64(v > clo) & np.int64(v <= chi)
                vmin = min(vmin, v)
                vmax = max(vmax, v)
        if nbins == 1:
            h[0] = b0
            h[1] = b1
            h[2] = b2
        return h, nz, nle, pos, vmin, vmax

    def hist_collect_tile_nb(D, diag, chain, lo, inv_w, nbins, clo, chi, out):
        """:func:`hist_nb` and :func:`collect_nb` in one sweep of the tile on the calling thread.

        Returns ``(n_zero, hist, n_le, n_coll, vmin, vmax)`` as ``hist_nb`` does and writes the
        ``n_coll`` values of the window ``(clo, chi]`` to ``out[:n_coll]`` in tile order
        (``out``: float64, at least ``D.size`` long; overwritten).
        """
        h, nz, nle, nco, vmin, vmax = _hist_collect_tile_nb(
            D, bool(diag), _chain_array(chain), float(lo), float(inv_w), int(nbins), float(clo),
            float(chi), out)
        return int(nz), h, int(nle), int(nco), float(vmin), float(vmax)

    # --- one-pass RBF moments (fastcka._rbf_onepass): with E = exp(-g0·D) and u = g0·D, the
    # rows v_0 = E - c0, v_k = E·u^k/k! (k = 1..L-1) of each input in a column chunk, and the
    # products of the term groups, the row and the column sums of every v_k

    _MOMENT_CHUNK = 256  # columns per chunk: the m·L rows of v stay in L1

    @njit(nogil=True, cache=True, fastmath=_FASTMATH, boundscheck=False)
    def _moment_dots(V, grp, P, w):
        # P[t] += Σ_j V[x, j]·V[y, j] for the terms of each group (x; y0 .. y0 + cnt - 1),
        # four y rows a sweep (one load of x for four products)
        t = 0
        for g in range(grp.shape[0]):
            x = V[grp[g, 0]]
            y0 = grp[g, 1]
            cnt = grp[g, 2]
            q = 0
            while q + 4 <= cnt:
                ya = V[y0 + q]
                yb = V[y0 + q + 1]
                yc = V[y0 + q + 2]
                yd = V[y0 + q + 3]
                s1 = 0.0
                s2 = 0.0
                s3 = 0.0
                s4 = 0.0
                for j in range(w):
                    xv = x[j]
                    s1 += xv * ya[j]
                    s2 += xv * yb[j]
                    s3 += xv * yc[j]
                    s4 += xv * yd[j]
                P[t] += s1
                P[t + 1] += s2
                P[t + 2] += s3
                P[t + 3] += s4
                t += 4
                q += 4
            while q < cnt:
                ya = V[y0 + q]
                s1 = 0.0
                for j in range(w):
                    s1 += x[j] * ya[j]
                P[t] += s1
                t += 1
                q += 1

    @njit(nogil=True, cache=True, fastmath=_FASTMATH, boundscheck=False)
    def _moments_tile_nb(Df, Ef, bi, bj, g0, c0, invk, L, diag, grp, P, rows, cols, V, U):
        m = Df.shape[0]
        R = m * L
        P[:] = 0.0
        rows[:, :] = 0.0
        cols[:, :] = 0.0
        for i in range(bi):
            j0 = i + 1 if diag else 0
            for c0j in range(j0, bj, _MOMENT_CHUNK):
                w = min(bj, c0j + _MOMENT_CHUNK) - c0j
                off = i * bj + c0j
                for a in range(m):  # the rows of v, each with its row sum
                    base = a * L
                    ga = g0[a]
                    ca = c0[a]
                    d = Df[a, off:off + w]
                    e = Ef[a, off:off + w]
                    v0 = V[base]
                    s = 0.0
                    for j in range(w):
                        x = e[j] - ca
                        v0[j] = x
                        s += x
                    rows[base, i] += s
                    if L > 1:
                        v1 = V[base + 1]
                        s = 0.0
                        for j in range(w):
                            uu = ga * d[j]
                            U[j] = uu
                            x = e[j] * uu
                            v1[j] = x
                            s += x
                        rows[base + 1, i] += s
                    for k in range(2, L):
                        vk = V[base + k]
                        vp = V[base + k - 1]
                        f = invk[k]
                        s = 0.0
                        for j in range(w):
                            x = vp[j] * U[j] * f
                            vk[j] = x
                            s += x
                        rows[base + k, i] += s
                _moment_dots(V, grp, P, w)
                for r in range(R):
                    x = V[r]
                    cc = cols[r, c0j:c0j + w]
                    for j in range(w):
                        cc[j] += x[j]

    def moments_tile_nb(Df, Ef, bi, bj, g0, c0, L, diag, grp, P, rows, cols, V, U):
        """The moment sums of one distance tile (strict upper triangle when ``diag``).

        ``Df``/``Ef``: (m, ≥ bi·bj) float64, row ``a`` holding input a's distance tile and its
        ``exp(-g0[a]·D)`` as C-ordered ``bi x bj`` blocks; ``grp``: :func:`moment_groups`.
        Writes ``P`` (the T term sums, in the order of :func:`moment_groups`), ``rows`` (m·L, bi)
        and ``cols`` (m·L, bj): the row and column sums of each ``v_k`` over the tile's pairs.
        ``V`` (m·L, ≥ 256), ``U`` (≥ 256): scratch.  Float sums reassociated (SIMD).
        """
        invk = np.array([0.0] + [1.0 / k for k in range(1, int(L))])
        _moments_tile_nb(Df, Ef, int(bi), int(bj), np.asarray(g0, dtype=np.float64),
                         np.asarray(c0, dtype=np.float64), invk, int(L), bool(diag), grp, P,
                         rows, cols, V, U)

    @njit(nogil=True, cache=True)
    def _tile_sums_tile_nb(Gs, shifts, diag):
        # four interleaved partial sums along each row (j mod 4), added pairwise at its end: four
        # independent add chains instead of one (a float sum is not reordered by the compiler)
        m, bi, bj = Gs.shape
        npair = m * (m + 1) // 2
        S = np.zeros((m, m))
        rows = np.zeros((m, bi))
        cols = np.zeros((m, bj))
        diags = np.zeros((m, bi))
        acc = np.zeros((npair, 4))
        r = np.zeros((m, 4))
        k = np.empty(m)
        full = bj - bj % 4
        for i in range(bi):
            acc[:] = 0.0
            r[:] = 0.0
            for j0 in range(0, full, 4):
                for lane in range(4):
                    j = j0 + lane
                    for a in range(m):
                        g = Gs[a, i, j] - shifts[a]
                        k[a] = g
                        r[a, lane] += g
                        cols[a, j] += g
                    p = 0
                    for a in range(m):
                        for b in range(a, m):
                            acc[p, lane] += k[a] * k[b]
                            p += 1
            for j in range(full, bj):
                for a in range(m):
                    g = Gs[a, i, j] - shifts[a]
                    k[a] = g
                    r[a, 0] += g
                    cols[a, j] += g
                p = 0
                for a in range(m):
                    for b in range(a, m):
                        acc[p, 0] += k[a] * k[b]
                        p += 1
            p = 0
            for a in range(m):
                rows[a, i] = (r[a, 0] + r[a, 1]) + (r[a, 2] + r[a, 3])
                if diag:
                    diags[a, i] = Gs[a, i, i] - shifts[a]
                for b in range(a, m):
                    S[a, b] += (acc[p, 0] + acc[p, 1]) + (acc[p, 2] + acc[p, 3])
                    p += 1
        for a in range(m):
            for b in range(a + 1, m):
                S[b, a] = S[a, b]
        return S, rows, cols, diags

    def kernel_stats_tile_nb(Gs, na_i, na_j, kinds, gammas, rel_tol, diag, shifts=None):
        """:func:`kernel_stats_nb` on the calling thread (NumPy's SIMD ``exp``, the rest one
        Numba sweep; the sums' partial-sum order is its own, so the last bits may differ)."""
        m = Gs.shape[0]
        sh = np.zeros(m) if shifts is None else np.asarray(shifts, dtype=np.float64)
        for a in range(m):
            if int(kinds[a]) == KIND_RBF:
                _sqdist_tile_nb(Gs[a], na_i[a], na_j[a], -float(gammas[a]), float(rel_tol),
                                bool(diag))
                np.exp(Gs[a], out=Gs[a])
            else:
                sh[a] = 0.0
        return _tile_sums_tile_nb(Gs, sh, bool(diag))


def _chain_array(chain):
    if len(chain) == 0:
        return np.zeros((0, 4))
    return np.asarray(chain, dtype=np.float64).reshape(-1, 4)


class _Ops:
    """A kernel set.  ``count_collect`` and ``pair_sqdist`` are optional fast forms (None: the
    callers use ``hist`` + ``collect`` and NumPy sampling); ``column_stats`` gives the column
    ranges and totals of :func:`fastcka._median.affine`, ``rows64`` the centred float64 row
    blocks of the linear feature path.  ``tile``: the one-thread kernels (``sqdist``, ``moments``,
    ``hist_collect``, ``kernel_stats``) of the tile pool (:mod:`fastcka._tiles`), or None."""

    def __init__(self, name, sqdist, hist, collect, kernel_stats, count_collect=None,
                 pair_sqdist=None, column_stats=column_stats_np, rows64=rows64_np, tile=None):
        self.name = name
        self.sqdist = sqdist
        self.hist = hist
        self.collect = collect
        self.kernel_stats = kernel_stats
        self.count_collect = count_collect
        self.pair_sqdist = pair_sqdist
        self.column_stats = column_stats
        self.rows64 = rows64
        self.tile = tile


NUMPY_OPS = _Ops("numpy", sqdist_np, hist_np, collect_np, kernel_stats_np)
NUMBA_OPS = (_Ops("numba", sqdist_nb, hist_nb, collect_nb,
                  kernel_stats_fused_nb if getattr(numba.config, "USING_SVML", False)
                  else kernel_stats_nb, count_collect_nb, pair_sqdist_nb, column_stats_nb,
                  rows64_nb, SimpleNamespace(sqdist=sqdist_tile_nb,
                                             hist_collect=hist_collect_tile_nb,
                                             kernel_stats=kernel_stats_tile_nb,
                                             moments=moments_tile_nb))
             if numba is not None else None)


def get_ops(use_numba: bool = True) -> _Ops:
    """The Numba kernels (``use_numba``) or their NumPy twins."""
    if use_numba and NUMBA_OPS is not None:
        return NUMBA_OPS
    return NUMPY_OPS


def numba_ops() -> _Ops:
    """Registry factory (``fastcka.kernels.ops("cka", "numba")``): NumPy twins without Numba."""
    return get_ops(True)


def numpy_ops() -> _Ops:
    """Registry factory (``fastcka.kernels.ops("cka", "numpy")``)."""
    return NUMPY_OPS
