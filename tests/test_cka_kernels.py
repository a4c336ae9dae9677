"""CKA tile kernels (Numba CPU, NumPy fallback, Numba CUDA under the simulator) vs naive sums."""

from __future__ import annotations

import numpy as np
import pytest

from fastcka.kernels import cka_cpu


def sqd(A, B):
    return ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)


def data(n=37, p=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    X[3] = X[7]  # a duplicate row: exact zero distance
    return X


OPS = [cka_cpu.get_ops(True), cka_cpu.get_ops(False),
       cka_cpu._Ops("numba-fused", cka_cpu.sqdist_nb, cka_cpu.hist_nb, cka_cpu.collect_nb,
                    cka_cpu.kernel_stats_fused_nb),
       cka_cpu._Ops("numba-tile", cka_cpu.sqdist_tile_nb, cka_cpu.hist_nb, cka_cpu.collect_nb,
                    cka_cpu.kernel_stats_tile_nb)]
IDS = ["numba", "numpy", "numba-fused", "numba-tile"]


@pytest.mark.parametrize("ops", OPS, ids=IDS)
@pytest.mark.parametrize("diag", [True, False])
def test_sqdist_tile(ops, diag):
    X = data()
    A, B = (X[:20], X[:20]) if diag else (X[:20], X[20:])
    G = A @ B.T
    D = ops.sqdist(G.copy(), (A * A).sum(1), (B * B).sum(1), 1e-12, diag)
    ref = sqd(A, B)
    np.testing.assert_allclose(D, ref, atol=1e-12 * ref.max())
    if diag:
        assert np.all(np.diag(D) == 0.0)
        assert D[3, 7] == 0.0 and D[7, 3] == 0.0


@pytest.mark.parametrize("diag", [True, False])
def test_hist_and_collect_numba_equal_numpy(diag):
    X = data(40)
    A, B = (X, X) if diag else (X[:17], X[17:])
    D = cka_cpu.sqdist_np(A @ B.T, (A * A).sum(1), (B * B).sum(1), 1e-12, diag)
    vals = D[np.triu_indices(len(A), 1)] if diag else D.ravel()
    nz = vals[vals != 0]
    lo, hi = np.quantile(nz, 0.2), np.quantile(nz, 0.8)
    inv_w = 16 / (hi - lo)
    chain = [(0.0, 1.0 / (hi * 1.1 / 4), 4, 2)]  # values in bin 2 of a 4-bin window
    c_all = np.sort(cka_cpu.collect_nb(D, diag, [], -np.inf, np.inf))  # zeros are never collected
    np.testing.assert_array_equal(c_all, np.sort(cka_cpu.collect_np(D, diag, [], -np.inf, np.inf)))
    np.testing.assert_array_equal(c_all, np.sort(nz))
    for ch in ([], chain):
        for nb, iw in ((16, inv_w), (1, 1 / (hi - lo))):  # nbins == 1 has its own kernel
            a = cka_cpu.hist_nb(D, diag, ch, lo, iw, nb, np.quantile(nz, 0.4), np.quantile(nz, 0.6))
            b = cka_cpu.hist_np(D, diag, ch, lo, iw, nb, np.quantile(nz, 0.4), np.quantile(nz, 0.6))
            assert a[0] == b[0] and a[2:] == b[2:]
            np.testing.assert_array_equal(a[1], b[1])
        a = cka_cpu.hist_nb(D, diag, ch, lo, inv_w, 16, np.quantile(nz, 0.4), np.quantile(nz, 0.6))
        sel = nz if not ch else nz[np.clip(np.ceil((nz - 0.0) * ch[0][1]), 0, 5) == 2]
        assert a[1].sum() == sel.size  # every window value lands in one bin
        assert a[0] == np.count_nonzero(vals == 0)
        c1 = np.sort(cka_cpu.collect_nb(D, diag, ch, np.quantile(nz, 0.4), np.quantile(nz, 0.6)))
        c2 = np.sort(cka_cpu.collect_np(D, diag, ch, np.quantile(nz, 0.4), np.quantile(nz, 0.6)))
        np.testing.assert_array_equal(c1, c2)
        ref = sel[(sel > np.quantile(nz, 0.4)) & (sel <= np.quantile(nz, 0.6))]
        np.testing.assert_array_equal(c1, np.sort(ref))


def window_tile(seed, diag):
    """A distance tile of 300 points (one duplicate), its non-zero pair values, a collect window
    around their median and a chain selecting the values in bin 1 of a 4-bin window."""
    X = data(300, 4, seed=seed)
    A, B = (X, X) if diag else (X[:130], X[130:])
    D = cka_cpu.sqdist_np(A @ B.T, (A * A).sum(1), (B * B).sum(1), 1e-12, diag)
    vals = D[np.triu_indices(len(A), 1)] if diag else D.ravel()
    nz = vals[vals != 0]
    chain = [(0.0, 1.0 / (nz.max() * 1.1 / 4), 4, 1)]
    return D, nz, np.quantile(nz, 0.45), np.quantile(nz, 0.55), chain


@pytest.mark.parametrize("diag", [True, False])
def test_count_collect_is_one_bin_hist_plus_collect(diag):
    # the median pass's one-sweep kernel: the counts of a one-bin hist and the values of
    # collect, exactly (any order), with or without a chain; a dest too small stays untouched
    D, nz, clo, chi, chain = window_tile(3, diag)
    scratch = np.full(D.size, np.nan)
    for ch in ([], chain):
        for lo, iw in ((clo, 1.0 / (chi - clo)), (np.quantile(nz, 0.3), 0.7 / (chi - clo))):
            ref = cka_cpu.hist_np(D, diag, ch, lo, iw, 1, clo, chi)
            want = np.sort(cka_cpu.collect_np(D, diag, ch, clo, chi))
            assert ref[3] == want.size > 0
            dest = np.full(want.size + 5, -1.0)
            got = cka_cpu.count_collect_nb(D, diag, ch, lo, iw, clo, chi, scratch, dest)
            assert got[0] == ref[0] and got[2:] == ref[2:]
            np.testing.assert_array_equal(got[1], ref[1])
            np.testing.assert_array_equal(np.sort(dest[:want.size]), want)
            assert np.all(dest[want.size:] == -1.0)
            small = np.full(want.size - 1, -2.0)
            got2 = cka_cpu.count_collect_nb(D, diag, ch, lo, iw, clo, chi, scratch, small)
            assert got2[3] == want.size and np.all(small == -2.0)


@pytest.mark.parametrize("diag", [True, False])
def test_hist_collect_tile_is_hist_plus_collect(diag):
    # the tile pool's one-thread sweep: exactly the counts and histogram of hist_np and the
    # values of collect_np in tile order, for one-bin and many-bin windows, with or without a
    # chain, and an unbounded collect window (the whole window collected)
    D, nz, clo, chi, chain = window_tile(5, diag)
    out = np.full(D.size, np.nan)
    for ch in ([], chain):
        for lo, iw, nb, cl, ch_ in ((clo, 1.0 / (chi - clo), 1, clo, chi),
                                    (np.quantile(nz, 0.3), 0.7 / (chi - clo), 1, clo, chi),
                                    (np.quantile(nz, 0.2), 16 / (chi - clo), 16, clo, chi),
                                    (0.0, 64 / nz.max(), 64, -np.inf, np.inf),
                                    (0.0, 64 / nz.max(), 64, np.inf, np.inf)):
            ref = cka_cpu.hist_np(D, diag, ch, lo, iw, nb, cl, ch_)
            got = cka_cpu.hist_collect_tile_nb(D, diag, ch, lo, iw, nb, cl, ch_, out)
            assert got[0] == ref[0] and got[2:] == ref[2:]
            np.testing.assert_array_equal(got[1], ref[1])
            want = cka_cpu.collect_np(D, diag, ch, cl, ch_)
            np.testing.assert_array_equal(out[:got[3]], want)  # both in row-major tile order


@pytest.mark.parametrize("diag", [True, False])
def test_kernel_stats_tile_shifts(diag):
    # the constant shift of the RBF kernels (not of the linear one) against shifted naive sums
    rng = np.random.default_rng(4)
    Xs = [rng.normal(size=(45, p)) for p in (3, 4)]
    sl = (slice(0, 25), slice(0, 25)) if diag else (slice(0, 25), slice(25, 45))
    kinds, gammas, shifts = [1, 0], [0.4, 0.0], np.array([0.3, 0.7])
    Gs = np.stack([X[sl[0]] @ X[sl[1]].T for X in Xs])
    na_i = np.stack([(X[sl[0]] ** 2).sum(1) for X in Xs])
    na_j = np.stack([(X[sl[1]] ** 2).sum(1) for X in Xs])
    S, rows, cols, diags = cka_cpu.kernel_stats_tile_nb(Gs.copy(), na_i, na_j, kinds, gammas,
                                                        1e-12, diag, shifts)
    A, B = Xs[0][sl[0]], Xs[0][sl[1]]
    Ks = [np.exp(-0.4 * sqd(A, B)) - 0.3, Xs[1][sl[0]] @ Xs[1][sl[1]].T]
    for a in range(2):
        np.testing.assert_allclose(rows[a], Ks[a].sum(1), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(cols[a], Ks[a].sum(0), rtol=1e-12, atol=1e-13)
        if diag:
            np.testing.assert_allclose(diags[a], np.diag(Ks[a]), rtol=1e-12)
        for b in range(2):
            assert S[a, b] == pytest.approx((Ks[a] * Ks[b]).sum(), rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pair_sqdist_equals_the_direct_form(dtype):
    rng = np.random.default_rng(8)
    X = (rng.normal(size=(500, 37)) * 3 + 10).astype(dtype)
    i, j = rng.integers(0, 500, 2000), rng.integers(0, 500, 2000)
    for sc in (1.0, 0.25):
        ref = (((X[i].astype(np.float64) - X[j].astype(np.float64)) * sc) ** 2).sum(axis=1)
        got = cka_cpu.pair_sqdist_nb(X, i, j, sc)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=0)
        assert np.all(got[i == j] == 0.0)


@pytest.mark.parametrize("ops", OPS, ids=IDS)
@pytest.mark.parametrize("diag", [True, False])
def test_kernel_stats_tile(ops, diag):
    rng = np.random.default_rng(1)
    Xs = [rng.normal(size=(41, p)) for p in (3, 6, 2)]
    sl = (slice(0, 23), slice(0, 23)) if diag else (slice(0, 23), slice(23, 41))
    kinds, gammas = [1, 0, 1], [0.3, 0.0, 1.1]
    Gs = np.stack([X[sl[0]] @ X[sl[1]].T for X in Xs])
    na_i = np.stack([(X[sl[0]] ** 2).sum(1) for X in Xs])
    na_j = np.stack([(X[sl[1]] ** 2).sum(1) for X in Xs])
    S, rows, cols, diags = ops.kernel_stats(Gs.copy(), na_i, na_j, kinds, gammas, 1e-12, diag)
    Ks = []
    for X, kd, g in zip(Xs, kinds, gammas, strict=True):
        A, B = X[sl[0]], X[sl[1]]
        Ks.append(A @ B.T if kd == 0 else np.exp(-g * sqd(A, B)))
    for a in range(3):
        np.testing.assert_allclose(rows[a], Ks[a].sum(1), rtol=1e-12)
        np.testing.assert_allclose(cols[a], Ks[a].sum(0), rtol=1e-12)
        if diag:
            np.testing.assert_allclose(diags[a], np.diag(Ks[a]), rtol=1e-12)
        for b in range(3):
            assert S[a, b] == pytest.approx((Ks[a] * Ks[b]).sum(), rel=1e-12)


_TILE_SUMS_CHILD = """
import numpy as np
from fastcka.kernels import cka_cpu
G = np.random.default_rng(5).random((2, 37, 1001))
S, rows, cols, diags = cka_cpu._tile_sums_nb(G, False)
print(np.concatenate([S.ravel(), rows.ravel(), cols.ravel()]).tobytes().hex())
"""


def test_tile_sums_same_bits_compiled_or_loaded_from_the_numba_cache(tmp_path):
    """A freshly compiled tile-sum kernel and the same kernel loaded from Numba's cache give the
    same bits (with fastmath reassociation they did not: a Dask worker loading the cache then
    differed from a test process that had compiled it, issue 14)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = [subprocess.run([sys.executable, "-c", _TILE_SUMS_CHILD], env=env, capture_output=True,
                          text=True, check=True).stdout.strip() for _ in range(2)]  # compile, load
    assert any(tmp_path.rglob("*.nbi"))  # the second run had a cache to load
    G = np.random.default_rng(5).random((2, 37, 1001))
    S, rows, cols, _ = cka_cpu._tile_sums_nb(G, False)
    here = np.concatenate([S.ravel(), rows.ravel(), cols.ravel()]).tobytes().hex()
    assert out[0] == out[1] == here


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_stats_are_numpys_bits(dtype):
    """One parallel pass (blocks of 64 columns): NumPy's min, max and float64 axis-0 sum bit for
    bit, also with a constant column, a NaN column and an infinite one, and the affine map
    fastcka._median.affine builds from them is the NumPy one."""
    from fastcka import _median

    rng = np.random.default_rng(3)
    X = (rng.standard_normal((3001, 150)) * 7 + 40).astype(dtype)
    X[:, 5] = dtype(2.5)
    for got in (cka_cpu.column_stats_nb(X), cka_cpu.column_stats_np(X)):
        assert np.array_equal(got[0], X.min(0).astype(np.float64))
        assert np.array_equal(got[1], X.max(0).astype(np.float64))
        assert np.array_equal(got[2], X.sum(0, dtype=np.float64))
        assert np.array_equal(got[2] / len(X), X.mean(0, dtype=np.float64))
    for ops in (cka_cpu.get_ops(True), None):
        mu, s = _median.affine(np, X, ops)
        ref_mu, ref_s = _median.affine(np, X)
        assert np.array_equal(mu, ref_mu) and s == ref_s and mu[5] == 2.5
    big = X.astype(np.float64) * 2.0 ** 70                        # rescaled: s = 2^-e
    assert _median.affine(np, big, cka_cpu.get_ops(True))[1] == _median.affine(np, big)[1] < 1
    Y = X.copy()
    Y[17, 3], Y[4, 9], Y[8, 9] = np.nan, np.inf, -np.inf
    lo, hi, tot = cka_cpu.column_stats_nb(Y)
    assert np.isnan(lo[3]) and np.isnan(hi[3]) and np.isnan(tot[3])
    assert lo[9] == -np.inf and hi[9] == np.inf and np.isnan(tot[9])
    assert np.array_equal(lo[10:], Y[:, 10:].min(0).astype(np.float64))
    F = np.asfortranarray(X)                                       # no copy: the NumPy form
    assert all(np.array_equal(a, b) for a, b in zip(cka_cpu.column_stats_nb(F),
                                                   cka_cpu.column_stats_np(F), strict=True))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("s", [1.0, 2.0 ** -40])
def test_rows64_is_numpys_centred_block(dtype, s):
    rng = np.random.default_rng(4)
    X = (rng.standard_normal((50, 13)) * 3 + 9).astype(dtype)
    mu = X.mean(0, dtype=np.float64)
    out_nb, out_np = np.full((20, 13), np.nan), np.full((20, 13), np.nan)
    got = cka_cpu.rows64_nb(X, 31, 50, mu, s, out_nb)
    ref = cka_cpu.rows64_np(X, 31, 50, mu, s, out_np)
    naive = (X[31:50].astype(np.float64) - mu) * s
    assert got.shape == (19, 13) and np.array_equal(got, naive) and np.array_equal(ref, naive)
    assert np.isnan(out_nb[19]).all()                              # nothing past the block
