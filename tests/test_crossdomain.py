"""Cross-domain evaluation (``evaluate(base=...)`` / ``fastcka eval --base``): seeds only from the
base pair of sets, queries only from the main pair, recovered both ways on a planted problem."""

from __future__ import annotations

import os

import numpy as np
import pytest
from _cli import assert_one_line_error, run

import fastcka
from fastcka.evaluate import Cell, cell_points, prepare, read_table
from fastcka.store import write_store

Q, _ = np.linalg.qr(np.random.default_rng(7).standard_normal((5, 5)))


def domain_a(n=140, seed=0):
    """Gaussian points; the target side is one fixed rotation of the source (the shared map)."""
    X = np.random.default_rng(seed).standard_normal((n, 5)) * np.array([3, 2.4, 1.8, 1.3, 1])
    return X, X @ Q


def domain_b(n=110, seed=1):
    """Another distribution (shifted clusters, other scales), the same map."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-4, 4, (4, 5))
    X = centres[rng.integers(4, size=n)] + rng.standard_normal((n, 5)) * np.array([1, .8, 2, .6, 1.5])
    return X, X @ Q


METHODS = "faq:linear,local-cka:linear,linreg,relative"


@pytest.mark.parametrize("base_first", [True, False], ids=["seeds-B_queries-A", "seeds-A_queries-B"])
def test_planted_recovered_both_ways(base_first):
    (S, T), (BS, BT) = (domain_a(), domain_b()) if base_first else (domain_b(), domain_a())
    t = fastcka.evaluate(S, T, base=(BS, BT), methods=METHODS, seeds=[25], queries=60, draws=1,
                         directions="both", n_init=3)
    assert len(t) == 4 * 2 and t.meta["cross_domain"]
    for r in t:
        assert r["accuracy"] == 1.0, r
    kw = dict(methods="local-cka:linear,linreg", seeds=[25], queries=60, draws=1)
    # control 1: the base pairs scrambled -> the queries are not recovered (seeds come from base)
    wrong = np.random.default_rng(3).permutation(len(BT))
    bad = fastcka.evaluate(S, T, base=(BS, BT[wrong]), **kw)
    assert max(r["accuracy"] for r in bad) < 0.3
    # control 2: the main pairs scrambled -> nothing recovered either (queries come from main);
    # the base alone is intact, so a path drawing queries from the base would still score 1
    wrong = np.random.default_rng(4).permutation(len(T))
    bad = fastcka.evaluate(S, T[wrong], base=(BS, BT), **kw)
    assert max(r["accuracy"] for r in bad) < 0.3


def test_seed_rows_only_from_base_query_rows_only_from_main():
    S, T = domain_a(100)
    BS, BT = domain_b(90)
    # every query pair of the main sets may be drawn (no seed is taken out of them)
    p = prepare(S, T, base=(BS, BT), seeds=[10, 30], queries=100, draws=2)
    for d in (0, 1):
        assert sorted(p.queries[d]) == list(range(100))
    assert np.array_equal(p.base[10], p.base[30][:10])          # nested, drawn in the base
    assert np.array_equal(p.base[30], np.random.default_rng(0).permutation(90)[:30])
    for direction in ("src-to-tgt", "tgt-to-src"):
        X, Y, k = cell_points(p, Cell("linreg", "", "", 30, 1, direction))
        src, tgt = (S, T) if direction == "src-to-tgt" else (T, S)
        bsrc, btgt = (BS, BT) if direction == "src-to-tgt" else (BT, BS)
        assert np.array_equal(X[:k], bsrc[p.base[30]]) and np.array_equal(Y[:k], btgt[p.base[30]])
        assert np.array_equal(X[k:], src[p.queries[1]]) and np.array_equal(Y[k:], tgt[p.queries[1]])


def _stores(d, name, X, Y, prefix, perm_seed):
    ids = np.array([f"{prefix}{i:04d}" for i in range(len(X))])
    perm = np.random.default_rng(perm_seed).permutation(len(X))
    write_store(d / f"{name}_txt.h5", X.astype(np.float32), ids, modality="text")
    write_store(d / f"{name}_img.h5", Y[perm].astype(np.float32), ids[perm], modality="image")


@pytest.fixture
def two_domains(tmp_path):
    (S, T), (BS, BT) = domain_a(), domain_b()
    _stores(tmp_path, "a", S, T, "a", 1)
    _stores(tmp_path, "b", BS, BT, "b", 2)
    return tmp_path, (S, T), (BS, BT)


@pytest.mark.parametrize("main, base", [("a", "b"), ("b", "a")])
def test_cli_base_both_ways_equals_library(two_domains, capsys, main, base):
    d, A, B = two_domains
    (S, T), (BS, BT) = (A, B) if main == "a" else (B, A)
    out = d / f"{main}.json"
    code, _, err = run(["eval", d / f"{main}_txt.h5", d / f"{main}_img.h5",
                        "--base", d / f"{base}_txt.h5", d / f"{base}_img.h5",
                        "--methods", "local-cka:linear,linreg", "--seeds", "10,25",
                        "--queries", 60, "--draws", 1, "-o", out, "-q"], capsys)
    assert code == 0, err
    t = read_table(str(out))
    assert len(t) == 2 * 2 * 2 and all(r["accuracy"] == 1.0 for r in t if r["n_seeds"] == 25)
    # the stores pair by id (rows were shuffled on the image side): the library on the row-paired
    # float32 arrays gives the same cells
    S32, T32, BS32, BT32 = (a.astype(np.float32) for a in (S, T, BS, BT))
    lib = fastcka.evaluate(S32, T32, base=(BS32, BT32), methods="local-cka:linear,linreg",
                           seeds=[10, 25], queries=60, draws=1, directions="both")
    from fastcka.evaluate import _same_rows

    assert _same_rows(t.rows, lib.rows, skip=("seconds",))
    assert t.meta["base"] == [str(d / f"{base}_txt.h5"), str(d / f"{base}_img.h5")]


@pytest.mark.parametrize("which, needle", [("no-common", "only 0 ids are common"), ("dims", "dimensions")])
def test_cli_bad_base_is_one_line_and_writes_nothing(two_domains, capsys, which, needle):
    d, _, (BS, BT) = two_domains
    if which == "no-common":       # the two base stores share no id
        write_store(d / "x_img.h5", BT.astype(np.float32), [f"zz{i}" for i in range(len(BT))])
    else:                          # a base side of another dimension than the query side
        write_store(d / "x_img.h5", BT[:, :3].astype(np.float32),
                    [f"b{i:04d}" for i in range(len(BT))])
    before = sorted(os.listdir(d))
    code, _, err = run(["eval", d / "a_txt.h5", d / "a_img.h5", "--base", d / "b_txt.h5",
                        d / "x_img.h5", "--methods", "linreg", "--seeds", "10", "--queries", 20,
                        "--draws", 1, "-o", d / "r.csv"], capsys)
    assert_one_line_error(code, err, needle)
    assert sorted(os.listdir(d)) == before
