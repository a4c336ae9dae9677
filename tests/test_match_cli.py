"""``fastcka match`` end to end: JSON against the library, result files, id files, errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from _cli import assert_one_line_error, paired_stores, run

from fastcka.protocol import split_seeds_queries
from fastcka.seeded import seeded_match


@pytest.fixture
def stores(tmp_path):
    return paired_stores(tmp_path)


def test_faq_json_matches_library(stores, capsys):
    src, tgt, X, Y, ids = stores
    code, out, err = run(["match", src, tgt, "--seeds", 20, "--queries", 30, "--n-init", 3,
                          "--seed", 4, "--json", "--device", "cpu"], capsys)
    assert code == 0, err
    r = json.loads(out)
    for key in ("method", "n_seeds", "n_queries", "accuracy", "objective", "n_init", "seconds"):
        assert key in r
    assert (r["method"], r["n_seeds"], r["n_queries"], r["n_init"]) == ("faq", 20, 30, 3)
    # the same split and matching through the library (the CLI draws the split from --seed)
    seeds, queries = split_seeds_queries(60, n_seeds=20, n_queries=30, rng=4)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)          # stores hold float32
    lib = seeded_match(X32, Y32, seeds=seeds, queries=queries, n_init=3, rng=4, device="cpu")
    assert r["objective"] == pytest.approx(lib.objective, rel=1e-12)
    assert r["accuracy"] == pytest.approx(lib.accuracy)
    assert r["accuracy"] > 0.8
    # every exact LAP gives the same iterates: --lap changes the speed, not the answer
    for lap in ("scipy", "jv"):
        code, out, err = run(["match", src, tgt, "--seeds", 20, "--queries", 30, "--n-init", 3,
                              "--seed", 4, "--json", "--device", "cpu", "--lap", lap], capsys)
        assert code == 0, err
        assert json.loads(out)["objective"] == pytest.approx(lib.objective, rel=1e-9)


def test_faq_float32_is_the_library_float32_run_scored_in_float64(stores, capsys):
    src, tgt, X, Y, ids = stores
    code, out, err = run(["match", src, tgt, "--seeds", 20, "--queries", 30, "--n-init", 3,
                          "--seed", 4, "--json", "--device", "cpu", "--dtype", "float32"], capsys)
    assert code == 0, err
    r = json.loads(out)
    seeds, queries = split_seeds_queries(60, n_seeds=20, n_queries=30, rng=4)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    lib = seeded_match(X32, Y32, seeds=seeds, queries=queries, n_init=3, rng=4, device="cpu",
                       dtype="float32")
    lib64 = seeded_match(X32, Y32, seeds=seeds, queries=queries, n_init=3, rng=4, device="cpu")
    assert r["objective"] == lib.objective and r["accuracy"] == lib.accuracy
    # the planted pairs are found in float32 too, and the kept restart is scored in float64:
    # the same matching has exactly the float64 run's objective
    np.testing.assert_array_equal(lib.matched_idx, lib64.matched_idx)
    assert lib.objective == lib64.objective


@pytest.mark.parametrize("suffix", [".csv", ".json", ".h5"])
def test_output_rows_and_id_files(stores, capsys, tmp_path, suffix):
    src, tgt, X, Y, ids = stores
    (tmp_path / "seeds.txt").write_text("\n".join(ids[:15]) + "\n")
    (tmp_path / "queries.txt").write_text("\n".join(ids[40:60]) + "\n")
    out_path = tmp_path / f"res{suffix}"
    code, out, err = run(["match", src, tgt, "--seed-ids", tmp_path / "seeds.txt",
                          "--query-ids", tmp_path / "queries.txt", "--n-init", 2, "--json",
                          "-o", out_path, "--device", "cpu"], capsys)
    assert code == 0, err
    r = json.loads(out)
    assert r["n_seeds"] == 15 and r["n_queries"] == 20
    if suffix == ".csv":
        rows = list(csv.DictReader(out_path.open()))
    elif suffix == ".json":
        rows = json.loads(out_path.read_text())["rows"]
    else:
        import h5py

        with h5py.File(out_path) as f:
            rows = [{"source_id": s.decode(), "matched_id": m.decode(), "correct": c}
                    for s, m, c in zip(f["source_id"][:], f["matched_id"][:], f["correct"][:], strict=True)]
    assert [row["source_id"] for row in rows] == list(ids[40:60])
    correct = [row["source_id"] == row["matched_id"] for row in rows]
    assert np.mean(correct) == pytest.approx(r["accuracy"])
    assert sorted(row["matched_id"] for row in rows) == sorted(ids[40:60])
    # explicit id files make runs exactly reproducible
    code, out2, _ = run(["match", src, tgt, "--seed-ids", tmp_path / "seeds.txt",
                         "--query-ids", tmp_path / "queries.txt", "--n-init", 2, "--json",
                         "--device", "cpu"], capsys)
    assert json.loads(out2)["objective"] == r["objective"]


def test_other_methods_through_retrieval(stores, capsys):
    pytest.importorskip("fastcka.retrieval")
    from fastcka.retrieval import match_scores, score_matrix

    src, tgt, X, Y, ids = stores
    code, out, err = run(["match", src, tgt, "--method", "linreg", "--seeds", 25,
                          "--queries", 30, "--seed", 1, "--json", "--device", "cpu"], capsys)
    assert code == 0, err
    r = json.loads(out)
    seeds, queries = split_seeds_queries(60, n_seeds=25, n_queries=30, rng=1)
    S = score_matrix("linreg", X[queries], Y[queries], X[seeds], Y[seeds], device="cpu")
    col = match_scores(S)
    assert r["accuracy"] == pytest.approx(np.mean(col == np.arange(30)))
    assert r["method"] == "linreg" and r["objective"] is None


@pytest.mark.parametrize("argv,needles", [
    (["--seeds", 0], ["--seeds"]),
    (["--method", "nope"], ["--method"]),
    (["--sigma", "-1"], ["sigma"]),
    (["--seeds", 5, "--seed-ids", "x.txt"], ["--seed-ids"]),
    (["-o", "out.xlsx"], ["suffix"]),
    (["--seeds", 59, "--queries", 10], ["queries"]),
    (["--lap", "auction", "--device", "cpu"], ["auction", "GPU"]),
])
def test_bad_flags_exit_2(stores, capsys, argv, needles):
    src, tgt, *_ = stores
    code, out, err = run(["match", src, tgt, *argv], capsys)
    assert_one_line_error(code, err, *needles)
    assert out == ""


def test_bad_seed_ids_exit_2(stores, capsys, tmp_path):
    src, tgt, X, Y, ids = stores
    (tmp_path / "s.txt").write_text("id001\nid001\nid002\n")
    code, _, err = run(["match", src, tgt, "--seed-ids", tmp_path / "s.txt"], capsys)
    assert_one_line_error(code, err)
    (tmp_path / "s2.txt").write_text("id001\nnot-an-id\n")
    code, _, err = run(["match", src, tgt, "--seed-ids", tmp_path / "s2.txt"], capsys)
    assert_one_line_error(code, err, "not-an-id")
