"""The linear feature path's statistics over several row chunks: against a naive float64
reference, and the per-unit statistics (shards, Dask tasks) bit for bit the in-process matrix."""

from __future__ import annotations

import numpy as np
import pytest

import fastcka
from fastcka._cka import _matrix_from
from fastcka._cka_stats import _linear_feature_stats
from fastcka.backend import get_backend
from fastcka.parallel import cka_matrix_stats


def _inputs(n=80, seed=5):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 3))
    return [np.tanh(Z @ rng.normal(size=(3, 6))) + 40.0,           # large means: centring matters
            (Z @ rng.normal(size=(3, 9))).astype(np.float32),
            rng.normal(size=(n, 5)).astype(np.float32) * 1e3,
            np.sin(Z @ rng.normal(size=(3, 11)))]


def test_chunked_statistics_equal_the_naive_sums(small_config):
    Xs = _inputs()
    st = _linear_feature_stats(get_backend(device="cpu"), Xs)
    C = [np.asarray(X, np.float64) - np.asarray(X, np.float64).mean(axis=0) for X in Xs]
    for a in range(len(Xs)):
        np.testing.assert_allclose(st.diags[a], (C[a] ** 2).sum(axis=1), rtol=1e-12)
        for b in range(len(Xs)):
            assert st.S[a, b] == pytest.approx(((C[a].T @ C[b]) ** 2).sum(), rel=1e-12)


def test_without_diagonals_the_sums_are_the_same_bits(small_config):
    Xs = _inputs()
    be = get_backend(device="cpu")
    full = _linear_feature_stats(be, Xs)
    bare = _linear_feature_stats(be, Xs, diags=False)
    assert np.array_equal(full.S, bare.S) and not bare.diags.any()
    one = _linear_feature_stats(be, Xs, [(1, 3)], diags=False)  # a pair alone, as a shard does
    assert one.S[1, 3] == full.S[1, 3]


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_units_over_chunks_equal_the_in_process_matrix(small_config, estimator):
    """CKA_CHUNK_ROWS = 17 < n = 80: every product accumulates over 8 chunks; each input's and
    each pair's statistics alone still give the in-process matrix exactly."""
    Xs = _inputs()
    ref = fastcka.cka_matrix(Xs, estimator=estimator, device="cpu")
    got = _matrix_from(cka_matrix_stats(Xs, "linear", "paper", 1.0), estimator)
    assert np.array_equal(ref, got), ref - got
    assert ref[0, 2] == pytest.approx(fastcka.cka(Xs[0], Xs[2], estimator=estimator,
                                                  device="cpu"), rel=1e-12)
    assert not np.allclose(ref, np.eye(len(Xs)))


def test_threads_do_not_change_the_bits(small_config, monkeypatch):
    """The chunks on 1, 2 or 3 threads (one BLAS thread each): the same sums bit for bit, and
    the naive ones to round-off."""
    from fastcka import _cka_stats

    Xs = _inputs(n=200)
    be = get_backend(device="cpu")
    got = []
    for t in (1, 2, 3):
        monkeypatch.setattr(_cka_stats, "_chunk_threads", lambda be, chunks, work, t=t: t)
        got.append(_linear_feature_stats(be, Xs))
    for st in got[1:]:
        assert np.array_equal(st.S, got[0].S) and np.array_equal(st.diags, got[0].diags)
    C = [np.asarray(X, np.float64) - np.asarray(X, np.float64).mean(axis=0) for X in Xs]
    assert got[2].S[1, 3] == pytest.approx(((C[1].T @ C[3]) ** 2).sum(), rel=1e-12)


def test_chunks_are_even_and_a_multiple_of_the_group(monkeypatch):
    """chunk_rows(n): at most CKA_CHUNK_ROWS rows, a multiple of CKA_CHUNK_GROUP chunks (one
    chunk when n fits), every row in exactly one chunk, the last chunk not empty."""
    from fastcka import _cka_stats, config

    monkeypatch.setattr(config, "CKA_CHUNK_ROWS", 2560)
    monkeypatch.setattr(config, "CKA_CHUNK_GROUP", 4)
    assert _cka_stats.chunk_rows(10_000) == 2500 and _cka_stats.chunk_rows(50_000) == 2500
    for n in [1, 3, 100, 2560, 2561, 7777, 10_000, 10_241, 123_457]:
        r = _cka_stats.chunk_rows(n)
        k = -(-n // r)
        assert 1 <= r <= 2560 and (k == 1 or k % 4 == 0) and (k - 1) * r < n <= k * r, (n, r)
        assert k == 1 or n > 2560


def test_thread_count_follows_the_blas_and_the_work():
    from fastcka import _cka_stats

    be = get_backend(device="cpu")
    assert _cka_stats._chunk_threads(be, 1, 2 ** 40) == 1            # one chunk
    assert _cka_stats._chunk_threads(be, 50, 1000) == 1              # too little work
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):                      # the user asked for 1
        assert _cka_stats._chunk_threads(be, 50, 2 ** 40) == 1
    assert 1 <= _cka_stats._chunk_threads(be, 50, 2 ** 40) <= 50
