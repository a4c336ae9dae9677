"""``fastcka.evaluate`` and ``fastcka eval``: the paper's protocol as a grid, against the parts run alone."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from _cli import assert_one_line_error, run

import fastcka
from fastcka.evaluate import prepare, read_table
from fastcka.retrieval import match_scores, retrieve, score_matrix
from fastcka.seeded import seeded_match
from fastcka.store import write_store


def planted(n=120, seed=0, noise=0.0):
    """Target = an exact rotation of the source (same pairwise geometry): every method recovers it."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6)) * np.array([3, 2.5, 2, 1.5, 1, 0.7])
    Q, _ = np.linalg.qr(np.random.default_rng(99).standard_normal((6, 6)))
    Y = X @ Q + noise * rng.standard_normal((n, 6))
    return X, Y


def nonlinear(n=100, seed=1):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 4))
    return (np.tanh(Z @ rng.standard_normal((4, 9))),
            Z @ rng.standard_normal((4, 5)) + 0.1 * rng.standard_normal((n, 5)))


def test_planted_alignment_recovered_by_every_method():
    X, Y = planted()
    t = fastcka.evaluate(X, Y, methods="faq,local-cka,linreg,relative", seeds=[30],
                         queries=40, draws=1, directions="both", n_init=5)
    assert len(t) == 2 * 7
    for r in t:
        assert r["accuracy"] == 1.0, r
        if r["method"] != "faq":
            assert r["top1"] == 1.0, r
    # FAQ's objective is the CKA of the (rotated, so equal) kernels under the true matching: 1
    assert all(abs(r["objective"] - 1) < 1e-9 for r in t if r["method"] == "faq")
    # cosine compares the raw spaces: planted as the same space up to scale
    c = fastcka.evaluate(X, 2 * X, methods="cosine", seeds=[30], queries=40, draws=1)
    assert c.rows[0]["accuracy"] == 1.0 and c.rows[0]["top1"] == 1.0


def test_same_seed_identical_table_and_different_draws_differ():
    X, Y = nonlinear()
    kw = dict(methods="faq:rbf,local-cka:linear,linreg", seeds=[8, 16], queries=30, draws=2,
              n_init=3)
    a, b = fastcka.evaluate(X, Y, **kw), fastcka.evaluate(X, Y, **kw)
    assert _same(a, b)
    p = prepare(X, Y, seeds=[8, 16], queries=30, draws=2)
    assert not np.array_equal(p.queries[0], p.queries[1])


def test_nested_seeds_and_queries_disjoint():
    X, Y = nonlinear(200)
    p = prepare(X, Y, seeds=[10, 20, 40], queries=50, draws=3)
    assert np.array_equal(p.base[10], p.base[20][:10])
    assert np.array_equal(p.base[20], p.base[40][:20])
    for d in range(3):
        assert np.intersect1d(p.queries[d], p.base[40]).size == 0
        assert len(np.unique(p.queries[d])) == 50
    # the base is one permutation of seed 0, independent of the seed counts asked for
    p2 = prepare(X, Y, seeds=[40], queries=50, draws=1)
    assert np.array_equal(p2.base[40], np.random.default_rng(0).permutation(200)[:40])
    # kmeans seeds: the strategy of protocol.kmeans_seeds for each count
    from fastcka.protocol import kmeans_seeds

    pk = prepare(X, Y, seeds=[10], queries=50, draws=1, seed_strategy="kmeans")
    assert np.array_equal(pk.base[10], kmeans_seeds(X, 10, 0))
    assert np.intersect1d(pk.queries[0], pk.base[10]).size == 0


def test_cells_equal_seeded_match_and_retrieval_run_alone():
    X, Y = nonlinear(90)
    t = fastcka.evaluate(X, Y, methods="faq:rbf,faq:linear,local-cka:rbf,relative", seeds=[12],
                         queries=40, draws=[1], directions="both", n_init=4, stretch=True)
    p = prepare(X, Y, seeds=[12], queries=40, draws=[1])
    b, q = p.base[12], p.queries[1]
    for r in t:
        S, T = (X, Y) if r["direction"] == "src-to-tgt" else (Y, X)
        if r["method"] == "faq":
            m = seeded_match(S, T, seeds=b, queries=q, kernel=r["kernel"], n_init=4, rng=1,
                             stretch=True)
            assert r["accuracy"] == m.accuracy and r["objective"] == m.objective
        else:
            pts_S = np.concatenate([S[b], S[q]])
            pts_T = np.concatenate([T[b], T[q]])
            pts_S = pts_S / pts_S.std(axis=0)
            pts_T = pts_T / pts_T.std(axis=0)
            sc = score_matrix(r["method"], pts_S[12:], pts_T[12:], pts_S[:12], pts_T[:12],
                              kernel=r["kernel"] or "linear", sigma=r["sigma"] or "paper")
            assert r["top1"] == retrieve(sc).top1
            assert r["accuracy"] == np.mean(match_scores(sc) == np.arange(40))
        assert r["seed_cka_linear"] == pytest.approx(
            fastcka.cka(S[b] / np.concatenate([S[b], S[q]]).std(axis=0),
                        T[b] / np.concatenate([T[b], T[q]]).std(axis=0)), rel=1e-12)


def test_cross_domain_base_path():
    X, Y = planted(150, seed=3)
    BX, BY = planted(80, seed=4)        # the same rotation, other points: base from another set
    t = fastcka.evaluate(X, Y, base=(BX, BY), methods="local-cka:linear,linreg,faq:linear",
                         seeds=[20], queries=60, draws=1, n_init=3)
    assert all(r["accuracy"] == 1.0 for r in t)
    p = prepare(X, Y, base=(BX, BY), seeds=[20], queries=60, draws=1)
    assert np.array_equal(p.base[20], np.random.default_rng(0).permutation(80)[:20])
    assert p.BS is not p.S and p.queries[0].max() < 150
    # the base rows enter the cell, not the query set's rows of the same index
    from fastcka.evaluate import Cell, cell_points

    Xc, _, k = cell_points(p, Cell("linreg", "", "", 20, 0, "src-to-tgt"))
    assert np.array_equal(Xc[:k], BX[p.base[20]])
    with pytest.raises(fastcka.InputError, match="dimensions"):
        fastcka.evaluate(X, Y, base=(BX[:, :4], BY), methods="linreg", seeds=[20], queries=10)


@pytest.mark.parametrize("kw, needle", [
    (dict(methods="faq,nope"), "unknown method"),
    (dict(seeds=[200]), "seeds"),
    (dict(seeds=[50], queries=80), "queries"),
    (dict(draws=0), "draws"),
    (dict(methods="cosine"), "same dimension"),
])
def test_library_bad_input(kw, needle):
    X, Y = nonlinear()
    base = dict(methods="linreg", seeds=[10], queries=20, draws=1)
    base.update(kw)
    with pytest.raises(fastcka.InputError, match=needle):
        fastcka.evaluate(X, Y, **base)


@pytest.mark.parametrize("suffix", [".csv", ".json", ".h5"])
def test_table_round_trip(tmp_path, suffix):
    X, Y = nonlinear()
    t = fastcka.evaluate(X, Y, methods="faq:rbf,linreg", seeds=[8], queries=20, draws=2,
                         n_init=2)
    t.write(str(tmp_path / f"t{suffix}"))
    back = read_table(str(tmp_path / f"t{suffix}"))
    assert back == t and back.rows[0]["sigma"] == "paper" and math.isnan(back.rows[0]["top1"])


# ------------------------------------------------------------------------------------------
# the CLI
# ------------------------------------------------------------------------------------------

@pytest.fixture
def stores(tmp_path):
    X, Y = (a.astype(np.float32) for a in nonlinear(100))      # as the store holds them
    ids = np.array([f"im{i:03d}" for i in range(100)])
    perm = np.random.default_rng(5).permutation(100)
    write_store(tmp_path / "a.h5", X, ids, modality="text")
    write_store(tmp_path / "b.h5", Y[perm], ids[perm], modality="image")
    return tmp_path, X, Y


def test_cli_eval_matches_library_and_match(stores, capsys):
    d, X, Y = stores
    out = d / "r.csv"
    code, so, err = run(["eval", d / "a.h5", d / "b.h5", "--methods", "faq:rbf,local-cka:linear",
                         "--seeds", "8,20", "--queries", 30, "--draws", 2, "--n-init", 3,
                         "-o", out, "--json"], capsys)
    assert code == 0, err
    assert json.loads(so)["cells"] == 2 * 2 * 2 * 2
    t = read_table(str(out))
    lib = fastcka.evaluate(X, Y, methods="faq:rbf,local-cka:linear", seeds=[8, 20], queries=30,
                           draws=2, directions="both", n_init=3)
    assert _same(t, lib)
    # the FAQ cell at the largest seed count, draw 0, equals `fastcka match` run alone
    code, so, err = run(["match", d / "a.h5", d / "b.h5", "--seeds", 20, "--queries", 30,
                         "--n-init", 3, "--json"], capsys)
    assert code == 0, err
    m = json.loads(so)
    cell = t.select(method="faq", n_seeds=20, draw=0, direction="src-to-tgt").rows[0]
    assert (cell["accuracy"], cell["objective"]) == (m["accuracy"], m["objective"])


def test_cli_eval_cells_equal_match_and_retrieve_alone_both_directions(stores, capsys):
    """Each eval cell (draw 0, largest seed count) is what `match` / `retrieve` compute alone:
    both are thin calls of the same fastcka.evaluate functions, in either direction."""
    d, X, Y = stores
    out = d / "r.json"
    code, _, err = run(["eval", d / "a.h5", d / "b.h5", "--methods", "faq:rbf,local-cka:linear",
                        "--seeds", "8,20", "--queries", 30, "--draws", 1, "--n-init", 3,
                        "--direction", "both", "-o", out], capsys)
    assert code == 0, err
    t = read_table(str(out))
    for direction in ("src-to-tgt", "tgt-to-src"):
        common = [d / "a.h5", d / "b.h5", "--seeds", 20, "--queries", 30, "--direction",
                  direction, "--json"]
        cell = t.select(method="faq", n_seeds=20, direction=direction).rows[0]
        code, so, err = run(["match", *common, "--n-init", 3], capsys)
        assert code == 0, err
        m = json.loads(so)
        assert (cell["accuracy"], cell["objective"]) == (m["accuracy"], m["objective"])
        cell = t.select(method="local-cka", n_seeds=20, direction=direction).rows[0]
        code, so, err = run(["match", *common, "--method", "local-cka", "--kernel", "linear"],
                            capsys)
        assert code == 0, err
        assert json.loads(so)["accuracy"] == cell["accuracy"]
        code, so, err = run(["retrieve", *common, "--method", "local-cka", "--kernel", "linear"],
                            capsys)
        assert code == 0, err
        r = json.loads(so)
        assert (r["top1"], r["top5"], r["top10"]) == (cell["top1"], cell["top5"], cell["top10"])
        assert r["matching_accuracy"] == cell["accuracy"]


def _same(a, b):
    from fastcka.evaluate import _same_rows

    return _same_rows(a.rows, b.rows, skip=("seconds",))


def test_cli_cross_domain_base(stores, capsys):
    d, X, Y = stores
    BX, BY = (a.astype(np.float32) for a in nonlinear(60, seed=1))
    ids = [f"b{i}" for i in range(60)]
    write_store(d / "ba.h5", BX, ids)
    write_store(d / "bb.h5", BY, ids)
    code, so, err = run(["eval", d / "a.h5", d / "b.h5", "--base", d / "ba.h5", d / "bb.h5",
                         "--methods", "linreg", "--seeds", "20", "--queries", 50, "--draws", 1,
                         "--direction", "src-to-tgt", "-o", d / "x.json"], capsys)
    assert code == 0, err
    lib = fastcka.evaluate(X, Y, base=(BX, BY), methods="linreg", seeds=[20], queries=50, draws=1)
    assert _same(read_table(str(d / "x.json")), lib)


def test_cli_resume_after_sigkill(stores, tmp_path):
    d, X, Y = stores
    args = [sys.executable, "-m", "fastcka", "eval", str(d / "a.h5"), str(d / "b.h5"),
            "--methods", "faq:rbf", "--seeds", "8,12,16,20", "--queries", "60", "--draws", "3",
            "--n-init", "40", "--device", "cpu"]
    env = dict(os.environ)
    full = subprocess.run(args + ["-o", str(d / "full.csv")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert full.returncode == 0, full.stderr
    out = d / "r.csv"
    journal = d / ".r.csv.partial.jsonl"
    p = subprocess.Popen(args + ["-o", str(out)], env=env, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 120:
        if journal.exists() and len(journal.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not out.exists()
    n_done = len(journal.read_text().splitlines()) - 1
    assert 1 <= n_done < 24
    again = subprocess.run(args + ["-o", str(out), "--resume", "--json"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["reused"] >= n_done
    assert _same(read_table(str(out)), read_table(str(d / "full.csv")))
    assert not journal.exists()


@pytest.mark.parametrize("extra, needle", [
    (["--methods", "faq,bogus"], "unknown method"),
    (["--seeds", "100"], "seeds"),
    (["--draws", "0"], "draws"),
    (["--seeds", "2"], "at least 4"),
    (["--methods", "cosine"], "same dimension"),
    (["--base", "a.h5", "other.h5"], "common"),
])
def test_cli_bad_input(stores, capsys, extra, needle, monkeypatch):
    d, _, _ = stores
    write_store(d / "other.h5", np.ones((5, 3)) * np.arange(5)[:, None], [f"z{i}" for i in range(5)])
    monkeypatch.chdir(d)
    code, so, err = run(["eval", "a.h5", "b.h5", "--methods", "linreg", "--seeds", "10",
                         "--queries", 20, "--draws", 1, *extra, "-o", "r.csv"], capsys)
    assert_one_line_error(code, err, needle)
    assert not (d / "r.csv").exists()
    assert not [f for f in os.listdir(d) if f.startswith(".r.csv")]


def test_report_writes_markdown_and_plots(stores, capsys):
    d, X, Y = stores
    t = fastcka.evaluate(X, Y, methods="faq:rbf,linreg", seeds=[8, 16], queries=20, draws=2,
                         n_init=2, directions="both")
    t.write(str(d / "t.csv"))
    code, so, err = run(["report", d / "t.csv", "-o", d / "rep"], capsys)
    assert code == 0, err
    md = (d / "rep" / "report.md").read_text()
    s = {(r["method"], r["n_seeds"], r["direction"]): r for r in t.summary()}
    want = s[("linreg", 16, "tgt-to-src")]
    assert f"{want['accuracy']:.3f} ± {want['accuracy_std']:.3f}" in md
    acc = [r["accuracy"] for r in t if (r["method"], r["n_seeds"], r["direction"])
           == ("linreg", 16, "tgt-to-src")]
    assert want["accuracy"] == pytest.approx(np.mean(acc)) and want["draws"] == 2
    for f in ("accuracy_src-to-tgt.png", "topk_tgt-to-src.png", "seed_cka.png"):
        assert (d / "rep" / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, so, err = run(["report", d / "missing.csv", "-o", d / "rep2"], capsys)
    assert_one_line_error(code, err, "not found")
