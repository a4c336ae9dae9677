"""``fastcka retrieve`` end to end: JSON, result files, id files, errors, reference embeddings."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from _cli import assert_one_line_error, run

from fastcka.protocol import split_seeds_queries
from fastcka.retrieval import match_scores, matching_accuracy, retrieve, score_matrix
from fastcka.store import write_store


@pytest.fixture
def stores(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    Z = rng.standard_normal((n, 3))
    X = Z @ rng.standard_normal((3, 6)) + 0.4 * rng.standard_normal((n, 6))
    Y = Z @ rng.standard_normal((3, 4)) + 0.4 * rng.standard_normal((n, 4))
    ids = np.array([f"id{i:03d}" for i in range(n)])
    # the target store holds the rows in another order plus one id without a partner
    perm = rng.permutation(n)
    write_store(tmp_path / "txt.h5", X, ids, modality="text")
    write_store(tmp_path / "img.h5", np.vstack([Y[perm], np.ones((1, 4))]),
                np.append(ids[perm], "orphan"), modality="image")
    return tmp_path / "txt.h5", tmp_path / "img.h5", X, Y, ids


@pytest.mark.parametrize("extra,method,kernel,sigma", [
    ([], "local-cka", "linear", "paper"),
    (["--kernel", "rbf", "--sigma", "paper"], "local-cka", "rbf", "paper"),
    (["--kernel", "rbf", "--sigma", "1.5"], "local-cka", "rbf", 1.5),
    (["--method", "relative"], "relative", "linear", "paper"),
])
def test_json_matches_library(stores, capsys, extra, method, kernel, sigma):
    src, tgt, X, Y, ids = stores
    code, out, err = run(["retrieve", src, tgt, "--seeds", 12, "--queries", 20, "--seed", 3,
                          "--json", "--device", "cpu", *extra], capsys)
    assert code == 0, err
    res = json.loads(out)
    for key in ("method", "kernel", "n_seeds", "n_queries", "top1", "top5", "top10",
                "matching_accuracy"):
        assert key in res
    assert (res["method"], res["n_seeds"], res["n_queries"]) == (method, 12, 20)
    seed_idx, query_idx = split_seeds_queries(40, n_seeds=12, n_queries=20, rng=3)
    S = score_matrix(method, X[query_idx], Y[query_idx], X[seed_idx], Y[seed_idx],
                     kernel=kernel, sigma=sigma, device="cpu")
    r = retrieve(S, device="cpu")
    assert res["top1"] == r.top1 and res["top5"] == r.top5 and res["top10"] == r.top10
    assert res["reverse"]["top1"] == r.accuracy["tgt-to-src"][1]
    assert res["matching_accuracy"] == matching_accuracy(match_scores(S))
    assert "no partner" in err  # the unpaired target row is reported on stderr
    assert res["top10"] > 0.5  # planted structure, chance is 0.5 for 10 of 20


def test_output_file_and_id_files(stores, capsys, tmp_path):
    src, tgt, X, Y, ids = stores
    (tmp_path / "seeds.txt").write_text("\n".join(ids[:10]) + "\n")
    (tmp_path / "queries.txt").write_text("\n".join(ids[20:35]) + "\n")
    out_csv = tmp_path / "top.csv"
    code, out, err = run(["retrieve", src, tgt, "--seed-ids", tmp_path / "seeds.txt",
                          "--query-ids", tmp_path / "queries.txt", "-k", 3, "-o", out_csv,
                          "--json", "--device", "cpu"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert res["n_seeds"] == 10 and res["n_queries"] == 15
    # long format: one line per (query, rank), one value per cell
    lines = list(csv.DictReader(out_csv.open()))
    assert list(lines[0]) == ["query_id", "rank_of_true", "matched_id", "rank", "target_id",
                              "score"]
    assert [r["query_id"] for r in lines[::3]] == list(ids[20:35]) and len(lines) == 15 * 3
    S = score_matrix("local-cka", X[20:35], Y[20:35], X[:10], Y[:10], device="cpu")
    for i in range(15):
        rows = lines[3 * i:3 * i + 3]
        top = np.argsort(-S[i])[:3]
        assert {r["query_id"] for r in rows} == {ids[20 + i]}
        assert [int(r["rank"]) for r in rows] == [1, 2, 3]
        assert [r["target_id"] for r in rows] == [ids[20 + j] for j in top]
        np.testing.assert_allclose([float(r["score"]) for r in rows], S[i, top])
        assert {int(r["rank_of_true"]) for r in rows} == {list(top).index(i) + 1 if i in top
                                                          else 0}


def test_direction_swaps_roles(stores, capsys):
    src, tgt, X, Y, ids = stores
    args = ["--seeds", 10, "--queries", 20, "--json", "--device", "cpu"]
    code, out, _ = run(["retrieve", src, tgt, *args], capsys)
    fwd = json.loads(out)
    code2, out2, _ = run(["retrieve", src, tgt, "--direction", "tgt-to-src", *args], capsys)
    rev = json.loads(out2)
    assert code == code2 == 0
    # same split (seeded on the common-id order of the first store) -> mirrored accuracies
    seed_idx, query_idx = split_seeds_queries(40, n_seeds=10, n_queries=20, rng=0)
    S = score_matrix("local-cka", X[query_idx], Y[query_idx], X[seed_idx], Y[seed_idx],
                     device="cpu")
    r = retrieve(S, device="cpu")
    assert fwd["top1"] == r.top1
    assert rev["direction"] == "tgt-to-src" and 0.0 <= rev["top1"] <= 1.0


def test_errors(stores, capsys, tmp_path):
    src, tgt, *_ = stores
    code, _, err = run(["retrieve", src, tgt, "--seeds", 3, "--device", "cpu"], capsys)
    assert_one_line_error(code, err, "at least 4 seeds")
    code, _, err = run(["retrieve", src, tgt, "--method", "cosine", "--device", "cpu"], capsys)
    assert_one_line_error(code, err, "same dimension")
    code, _, err = run(["retrieve", src, tgt, "--kernel", "rbf", "--sigma", "wide"], capsys)
    assert_one_line_error(code, err, "sigma")
    code, _, err = run(["retrieve", src, tgt, "-o", tmp_path / "x.xlsx"], capsys)
    assert_one_line_error(code, err, "suffix")
    assert not (tmp_path / "x.xlsx").exists()
    code, _, err = run(["retrieve", src, tmp_path / "missing.h5"], capsys)
    assert_one_line_error(code, err, "missing.h5")


def test_reference_embeddings_json(reference_embeddings, capsys, tmp_path):
    """Flickr8k reference embeddings (src-to-tgt: captions rank images), the paper's 320 seeds / 500 queries."""
    ids, img, txt = reference_embeddings
    write_store(tmp_path / "t.h5", txt, np.array(ids), modality="text")
    write_store(tmp_path / "i.h5", img, np.array(ids), modality="image")
    code, out, err = run(["retrieve", tmp_path / "t.h5", tmp_path / "i.h5", "--kernel", "rbf",
                          "--sigma", "base", "--json", "--device", "cpu"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert (res["n_seeds"], res["n_queries"]) == (320, 500)
    seed_idx, query_idx = split_seeds_queries(1000, n_seeds=320, n_queries=500, rng=0)
    S = score_matrix("local-cka", txt[query_idx], img[query_idx], txt[seed_idx], img[seed_idx],
                     kernel="rbf", sigma="base", device="cpu")
    r = retrieve(S, device="cpu")
    assert res["top10"] == r.top10
    assert res["matching_accuracy"] == matching_accuracy(match_scores(S))
    # far above chance (top-10 chance is 0.02 with 500 candidates)
    assert res["top10"] > 0.1 and res["matching_accuracy"] > 0.02


def test_large_query_sets_stream_without_matching(stores, capsys, monkeypatch):
    """Above the full-matrix limit the CLI streams top-k and reports no matching accuracy."""
    from fastcka.cli import retrieve as cli_retrieve

    src, tgt, X, Y, ids = stores
    monkeypatch.setattr(cli_retrieve, "FULL_MATRIX_MAX_QUERIES", 5)
    code, out, err = run(["retrieve", src, tgt, "--seeds", 10, "--queries", 25, "--json",
                          "--device", "cpu"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert res["matching_accuracy"] is None and "not computed" in err
    seed_idx, query_idx = split_seeds_queries(40, n_seeds=10, n_queries=25, rng=0)
    S = score_matrix("local-cka", X[query_idx], Y[query_idx], X[seed_idx], Y[seed_idx],
                     device="cpu")
    r = retrieve(S, device="cpu")
    assert (res["top1"], res["top5"], res["top10"]) == (r.top1, r.top5, r.top10)
