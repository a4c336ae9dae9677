"""``fastcka cka`` end to end: values vs the library, JSON keys, matrix/CSV/plot, bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from _cli import assert_one_line_error, run

import fastcka
from fastcka.store import write_store


@pytest.fixture
def stores(tmp_path):
    rng = np.random.default_rng(0)
    n = 50
    Z = rng.standard_normal((n, 3))
    X = Z @ rng.standard_normal((3, 6)) + 0.4 * rng.standard_normal((n, 6))
    Y = Z @ rng.standard_normal((3, 4)) + 0.4 * rng.standard_normal((n, 4))
    W = rng.standard_normal((n, 5))
    X, Y, W = (A.astype(np.float32) for A in (X, Y, W))  # what the stores hold
    ids = np.array([f"id{i:03d}" for i in range(n)])
    perm = rng.permutation(n)  # B holds the rows in another order plus an orphan id
    write_store(tmp_path / "a.h5", X, ids, modality="text")
    write_store(tmp_path / "b.h5", np.vstack([Y[perm], np.ones((1, 4))]),
                np.append(ids[perm], "orphan"), modality="image")
    write_store(tmp_path / "c.h5", W, ids)
    return tmp_path, X, Y, W


@pytest.mark.parametrize("extra,kw", [
    ([], dict(kernel="linear")),
    (["--kernel", "rbf"], dict(kernel="rbf", sigma="paper")),
    (["--kernel", "rbf", "--sigma", "kornblith", "--threshold", "0.5"],
     dict(kernel="rbf", sigma="kornblith", threshold=0.5)),
    (["--kernel", "rbf", "--sigma", "2.5", "--estimator", "unbiased"],
     dict(kernel="rbf", sigma=2.5, estimator="unbiased")),
])
def test_two_stores_json_matches_library(stores, capsys, extra, kw):
    d, X, Y, _ = stores
    code, out, err = run(["cka", d / "a.h5", d / "b.h5", "--json", "--device", "cpu", *extra], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert "1 of 51 rows" in err  # the orphan is reported
    for key in ("metric", "kernel", "estimator", "sigma", "n", "value"):
        assert key in res
    assert res["n"] == 50 and res["metric"] == "cka"
    assert res["value"] == pytest.approx(fastcka.cka(X, Y, device="cpu", **kw), rel=1e-12)


def test_knn_metrics_and_permutations(stores, capsys):
    d, X, Y, _ = stores
    for metric, fn in (("mutual_knn", fastcka.mutual_knn), ("cknna", fastcka.cknna)):
        code, out, err = run(["cka", d / "a.h5", d / "b.h5", "--metric", metric, "-k", 5, "--json"],
                             capsys)
        assert code == 0, err
        res = json.loads(out)
        assert res["metric"] == metric and res["k"] == 5
        assert res["value"] == pytest.approx(fn(X, Y, k=5, device="cpu"), rel=1e-12)
    code, out, err = run(["cka", d / "a.h5", d / "b.h5", "--permutations", 25, "--seed", 4,
                          "--json"], capsys)
    assert code == 0, err
    res = json.loads(out)
    ref = fastcka.cka_permutation_test(X, Y, n_permutations=25, rng=4, device="cpu")
    assert res["p_value"] == pytest.approx(ref.p_value)
    assert res["null_mean"] == pytest.approx(ref.null_mean)
    assert res["value"] == pytest.approx(ref.statistic)
    code, out, err = run(["cka", d / "a.h5", d / "b.h5"], capsys)
    assert code == 0 and out.startswith("cka (linear, biased) = ")


def test_three_stores_matrix_csv_plot(stores, capsys, tmp_path):
    d, X, Y, W = stores
    csv_path, png = tmp_path / "m.csv", tmp_path / "m.png"
    code, out, err = run(["cka", d / "a.h5", d / "b.h5", d / "c.h5", "--kernel", "rbf", "--json",
                          "-o", csv_path, "--plot", png], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert res["names"] == ["a", "b", "c"]
    ref = fastcka.cka_matrix([X, Y, W], kernel="rbf", device="cpu")
    np.testing.assert_allclose(res["matrix"], ref, rtol=1e-12)
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["name"] for r in rows] == ["a", "b", "c"]
    assert float(rows[0]["b"]) == pytest.approx(ref[0, 1])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, err = run(["cka", d / "a.h5", d / "b.h5", d / "c.h5"], capsys)
    assert code == 0 and len(out.strip().splitlines()) == 5  # title, header, 3 rows


def test_bad_inputs_one_line_exit_2(stores, capsys, tmp_path):
    d, X, _, _ = stores
    ids = np.array([f"id{i:03d}" for i in range(50)])
    write_store(tmp_path / "other.h5", np.ones((3, 2)), np.array(["x", "y", "z"]))
    write_store(tmp_path / "three.h5", X[:3], ids[:3])
    code, _, err = run(["cka", d / "a.h5", tmp_path / "other.h5"], capsys)
    assert_one_line_error(code, err, "common")  # mismatched ids
    code, _, err = run(["cka", d / "a.h5", tmp_path / "three.h5"], capsys)
    assert_one_line_error(code, err, "need at least 4")  # n < 4
    code, _, err = run(["cka", d / "a.h5", d / "b.h5", "--sigma", "wide"], capsys)
    assert_one_line_error(code, err, "sigma")
    code, _, err = run(["cka", d / "a.h5", d / "b.h5", "--threshold", "-1"], capsys)
    assert_one_line_error(code, err, "threshold")
    code, _, err = run(["cka", d / "a.h5", d / "b.h5", "-o", tmp_path / "x.txt"], capsys)
    assert_one_line_error(code, err, "suffix")
    code, _, err = run(["cka", d / "a.h5", d / "b.h5", "--metric", "cknna", "--permutations", "5"],
                       capsys)
    assert_one_line_error(code, err, "permutations")
    code, _, err = run(["cka", d / "a.h5"], capsys)
    assert_one_line_error(code, err, "two stores")
    code, _, err = run(["cka", d / "a.h5", tmp_path / "missing.h5"], capsys)
    assert_one_line_error(code, err)
    code, _, err = run(["cka", d / "a.h5", d / "b.h5", "-k", 60, "--metric", "mutual_knn"], capsys)
    assert_one_line_error(code, err, "k must be")


def test_nan_and_non_2d_rows_are_one_line_errors(tmp_path, capsys):
    import h5py

    ids = np.array([f"id{i}" for i in range(6)])
    write_store(tmp_path / "ok.h5", np.random.default_rng(0).normal(size=(6, 3)), ids)
    write_store(tmp_path / "bad.h5", np.random.default_rng(1).normal(size=(6, 3)), ids)
    # corrupt the stored matrix: a NaN row (written behind the store's back)
    with h5py.File(tmp_path / "bad.h5", "r+") as f:
        name = [k for k in f.keys() if isinstance(f[k], h5py.Dataset) and f[k].ndim == 2]
        if not name:
            pytest.skip("store layout unknown")
        f[name[0]][2, 1] = np.nan
    code, _, err = run(["cka", tmp_path / "ok.h5", tmp_path / "bad.h5"], capsys)
    assert_one_line_error(code, err)
    assert "nan" in err.lower() or "finite" in err.lower()


def test_reference_embeddings_json(reference_embeddings, tmp_path, capsys):
    ids, img, txt = reference_embeddings
    write_store(tmp_path / "img.h5", img, np.asarray(ids), modality="image")
    write_store(tmp_path / "txt.h5", txt, np.asarray(ids), modality="text")
    code, out, err = run(["cka", tmp_path / "txt.h5", tmp_path / "img.h5", "--kernel", "rbf",
                          "--json", "--device", "cpu"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert res["n"] == len(ids) == 1000
    assert res["value"] == pytest.approx(fastcka.cka(txt, img, kernel="rbf", device="cpu"), rel=1e-9)
    assert 0.0 < res["value"] < 1.0
    code, out, err = run(["cka", tmp_path / "txt.h5", tmp_path / "img.h5", "--json"], capsys)
    lin = json.loads(out)["value"]
    assert lin == pytest.approx(fastcka.cka(txt.astype(np.float64), img.astype(np.float64)), rel=1e-9)


def test_device_gpu_without_gpu_is_one_line_error(stores, capsys):
    from fastcka.backend import gpu_available

    if gpu_available():
        pytest.skip("a GPU is usable here")
    d, *_ = stores
    code, _, err = run(["cka", d / "a.h5", d / "b.h5", "--device", "gpu"], capsys)
    assert_one_line_error(code, err, "gpu")
