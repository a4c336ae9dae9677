"""The kernel registry (fastcka.kernels.ops) and the GPU twins run on NumPy arrays.

The GPU op sets of local CKA and of the streaming top-k are written against the array module of
their inputs, and their Numba CUDA kernels run under the simulator here, so the whole GPU
algorithm of local CKA and retrieval runs on the CPU through a backend whose engine is "cupy"
while its arrays are NumPy's; it must agree with the naive references.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from reference import naive_local_cka, sqd, topk_full

from fastcka import _local_cka, kernels
from fastcka.backend import NUMPY_BACKEND, Backend
from fastcka.retrieval import retrieve, score_matrix

FAMILY_NAMES = {
    "cka": {"sqdist", "hist", "collect", "kernel_stats"},
    "local_cka": {"sqdist_exact", "lower_median_merge", "rbf_base_stats"},
    "topk": {"update_rows", "update_cols"},
}


@pytest.mark.parametrize("family", sorted(FAMILY_NAMES))
@pytest.mark.parametrize("engine", kernels.ENGINES)
def test_every_engine_offers_the_family_interface(family, engine):
    ops = kernels.ops(family, engine)
    for name in FAMILY_NAMES[family]:
        assert callable(getattr(ops, name)), (family, engine, name)
    assert kernels.ops(family, engine) is ops  # asked once, cached


def test_unknown_family_names_what_is_registered():
    with pytest.raises(KeyError, match="no kernel family 'nope' on engine 'numba'.*local_cka"):
        kernels.ops("nope", "numba")
    with pytest.raises(ValueError, match="engine must be one of"):
        kernels.register("x", "tpu", "cka_cpu:numpy_ops")


def test_engine_follows_the_numba_kill_switch(monkeypatch):
    monkeypatch.delenv("FASTCKA_DISABLE_NUMBA", raising=False)
    assert NUMPY_BACKEND.engine == "numba"
    assert NUMPY_BACKEND.ops("local_cka") is kernels.ops("local_cka", "numba")
    monkeypatch.setenv("FASTCKA_DISABLE_NUMBA", "1")
    assert NUMPY_BACKEND.engine == "numpy"
    assert NUMPY_BACKEND.ops("topk") is kernels.ops("topk", "numpy")


@dataclasses.dataclass(frozen=True)
class _GpuKernelsOnNumpy(Backend):
    """NumPy arrays, GPU op sets: the GPU code path, run on the host."""

    @property
    def engine(self) -> str:
        return "cupy"


GPU_TWINS = _GpuKernelsOnNumpy("numpy", np)


def _problem(q=9, p=11, ds=5, dt=4, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((q + p, 3))
    S = Z @ rng.standard_normal((3, ds)) + 0.4 * rng.standard_normal((q + p, ds)) + 2.0
    T = Z @ rng.standard_normal((3, dt)) + 0.4 * rng.standard_normal((q + p, dt)) - 1.0
    return S[:q], T[:q], S[q:], T[q:]


def test_gpu_sqdist_twin_chunks_exactly():
    from fastcka.kernels import local_cka_cupy

    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((13, 4)), rng.standard_normal((7, 4))
    A[5] = B[2]
    for chunk in (1, 29, 1 << 22):  # one row per chunk, ragged chunks, one chunk
        D = local_cka_cupy.sqdist_exact(A, B, chunk_elems=chunk)
        np.testing.assert_allclose(D, sqd(np.vstack([A, B]))[:13, 13:], rtol=1e-13, atol=1e-14)
        assert D[5, 2] == 0.0


@pytest.mark.cudasim
@pytest.mark.parametrize("kernel,sigma", [("linear", "paper"), ("rbf", "paper"),
                                          ("rbf", "base"), ("rbf", 1.3)])
def test_gpu_twins_local_cka_match_naive(kernel, sigma, monkeypatch, small_config):
    monkeypatch.setattr(_local_cka, "get_backend", lambda *a, **k: GPU_TWINS)
    Sq, Tq, Sb, Tb = _problem()
    sc = _local_cka.LocalCKAScorer(Sq, Tq, Sb, Tb, kernel=kernel, sigma=sigma)
    assert sc.ops is kernels.ops("local_cka", "cupy")
    np.testing.assert_allclose(sc.full(), naive_local_cka(Sq, Tq, Sb, Tb, kernel, sigma),
                               rtol=0, atol=1e-9)
    # the exact per-bandwidth-pair path of sigma="paper" (the GPU rbf_base_stats kernel)
    if sigma == "paper":
        sc = _local_cka.LocalCKAScorer(Sq, Tq, Sb, Tb, kernel=kernel, sigma=sigma,
                                       exact_base=True)
        np.testing.assert_allclose(sc.full(), naive_local_cka(Sq, Tq, Sb, Tb, kernel, sigma),
                                   rtol=0, atol=1e-9)


@pytest.mark.cudasim
@pytest.mark.parametrize("method", ["local-cka", "cosine"])
def test_gpu_twins_streaming_topk_match_full_sort(method, monkeypatch, small_config):
    monkeypatch.setattr(_local_cka, "get_backend", lambda *a, **k: GPU_TWINS)
    monkeypatch.setattr("fastcka.retrieval.get_backend", lambda *a, **k: GPU_TWINS)
    inp = _problem(q=17, ds=4, dt=4, seed=5)
    S = score_matrix(method, *inp, kernel="rbf", sigma="base")
    k = 7  # more than a block (5): lists merge across blocks
    r = retrieve(inp, k=k, method=method, kernel="rbf", sigma="base")
    np.testing.assert_array_equal(r.src_to_tgt_indices, topk_full(S, k))
    np.testing.assert_array_equal(r.tgt_to_src_indices, topk_full(S.T, k))
    np.testing.assert_allclose(r.src_to_tgt_scores, np.take_along_axis(S, topk_full(S, k), 1),
                               rtol=0, atol=1e-15)


@pytest.mark.parametrize("family,engines", [
    ("lap", {"numba": True, "numpy": False, "cupy": True}),
    ("sinkhorn", {"numba": True, "numpy": False, "cupy": False}),
    ("faq_gradient", {"numba": True, "numpy": False, "cupy": False}),
])
def test_qap_families_give_a_kernel_or_none(family, engines):
    """QAP families: one kernel function, or None where the library's array code runs."""
    for engine, has_kernel in engines.items():
        got = kernels.ops(family, engine)
        assert callable(got) if has_kernel else got is None, (family, engine)
