"""repr of results and embedding sets is compact: shapes, not whole arrays (issue 16 item 5)."""

import numpy as np

import fastcka
from fastcka.store import read_store, write_store


def test_embedding_set_and_results_repr_is_short(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 64)).astype(np.float32)
    write_store(tmp_path / "s.h5", X, [f"id{i}" for i in range(500)], modality="text")
    es = read_store(tmp_path / "s.h5")
    r = repr(es)
    assert "X=array(500x64, float32)" in r and "ids=array(500," in r and len(r) < 600, r
    assert str(X[0, 0])[:6] not in r  # no values
    res = fastcka.cka_permutation_test(X[:60], X[:60] + rng.standard_normal((60, 64)),
                                       n_permutations=30, rng=np.random.default_rng(0))
    r = repr(res)
    assert "null=array(30, float64)" in r and f"statistic={res.statistic!r}" in r and len(r) < 300
    assert repr(np.asarray(res.null)) not in r
