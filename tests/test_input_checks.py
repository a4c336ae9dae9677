"""Checks done early and strictly (issue 12, item 7): one-line exit-2 errors before any work."""

from __future__ import annotations

import os
import zipfile
import zlib

import h5py
import numpy as np
import pytest
from _cli import assert_one_line_error, run

from fastcka.store import FORMAT_VERSION, read_store, write_store


def _store(path, n=12, d=4, seed=0, ids=None):
    X = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    write_store(path, X, ids if ids is not None else [f"r{i}" for i in range(n)])
    return X


def _raw_store(path, X, ids):
    """A store written by hand (bypassing the writer's checks), as another tool might."""
    with h5py.File(path, "w") as f:
        f.create_dataset("embeddings", data=X)
        f.create_dataset("ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype("utf-8"))
        f.attrs["format_version"] = np.int64(FORMAT_VERSION)


def test_ids_with_line_breaks_fail_read_validation(tmp_path, capsys):
    _raw_store(tmp_path / "s.h5", np.ones((3, 2), np.float32), ["a", "b\nc", "d"])
    code, _, err = run(["export", tmp_path / "s.h5", "-o", tmp_path / "x.npy", "--ids-out",
                        tmp_path / "ids.txt"], capsys)
    assert_one_line_error(code, err, "line breaks", "'b\\nc'")
    assert not (tmp_path / "x.npy").exists() and not (tmp_path / "ids.txt").exists()


def test_zero_column_store_fails_read_validation(tmp_path, capsys):
    _raw_store(tmp_path / "s.h5", np.zeros((3, 0), np.float32), ["a", "b", "c"])
    code, _, err = run(["info", tmp_path / "s.h5"], capsys)
    assert_one_line_error(code, err, "no columns")
    with pytest.raises(ValueError, match="no columns"):
        read_store(tmp_path / "s.h5")


@pytest.mark.parametrize("tol", ["nan", "inf", "-1", "0"])
def test_match_tol_must_be_finite_positive(tmp_path, capsys, tol):
    _store(tmp_path / "a.h5")
    _store(tmp_path / "b.h5", seed=1)
    code, _, err = run(["match", tmp_path / "a.h5", tmp_path / "b.h5", "--tol", tol], capsys)
    assert_one_line_error(code, err, "--tol")


@pytest.mark.parametrize("sigma", ["1e-300", "1e300"])
def test_sigma_whose_square_is_not_a_normal_float_is_refused(tmp_path, capsys, sigma):
    _store(tmp_path / "a.h5")
    _store(tmp_path / "b.h5", seed=1)
    code, _, err = run(["cka", tmp_path / "a.h5", tmp_path / "b.h5", "--kernel", "rbf",
                        "--sigma", sigma], capsys)
    assert_one_line_error(code, err, "--sigma", "between")


def test_cka_result_as_h5(tmp_path, capsys):
    A = _store(tmp_path / "a.h5")
    B = _store(tmp_path / "b.h5", seed=1)
    code, _, err = run(["cka", tmp_path / "a.h5", tmp_path / "b.h5", "-o", tmp_path / "r.h5"], capsys)
    assert code == 0, err
    from reference import naive_cka, naive_kernel

    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert f["value"][0] == pytest.approx(naive_cka(naive_kernel(A.astype(float), "linear"),
                                                          naive_kernel(B.astype(float), "linear")), abs=1e-6)
        assert np.isnan(f["sigma"][0])  # None (linear kernel) stored as NaN
        assert f["a"].asstr()[0] == "a"


@pytest.mark.parametrize("make, needles", [
    (lambda p: p.with_suffix(".npy").write_bytes(b""), ["cannot read", ".npy"]),
    (lambda p: p.with_suffix(".npy").write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'"),
     ["cannot read", ".npy"]),
])
def test_empty_or_cut_npy_is_exit_2(tmp_path, capsys, make, needles):
    src = tmp_path / "e"
    make(src)
    code, _, err = run(["import", src.with_suffix(".npy"), "-o", tmp_path / "s.h5"], capsys)
    assert_one_line_error(code, err, *needles)


def test_truncated_npz_is_exit_2(tmp_path, capsys):
    np.savez(tmp_path / "z.npz", x=np.random.default_rng(0).standard_normal((200, 30)))
    blob = (tmp_path / "z.npz").read_bytes()
    for cut, name in ((len(blob) // 2, "half.npz"), (len(blob) - 30, "tail.npz")):
        (tmp_path / name).write_bytes(blob[:cut])
        with pytest.raises((ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)):
            with np.load(tmp_path / name) as z:  # really damaged
                z["x"]
        code, _, err = run(["import", tmp_path / name, "-o", tmp_path / "s.h5"], capsys)
        assert_one_line_error(code, err, name)
    assert not (tmp_path / "s.h5").exists()
    assert zipfile.is_zipfile(tmp_path / "z.npz")


def test_csv_with_bom_keeps_its_id_header(tmp_path, capsys):
    (tmp_path / "e.csv").write_bytes("\ufeffid,a,b\nx,1,2\ny,3,4\n".encode())
    code, _, err = run(["import", tmp_path / "e.csv", "-o", tmp_path / "s.h5"], capsys)
    assert code == 0, err
    es = read_store(tmp_path / "s.h5")
    assert es.ids.tolist() == ["x", "y"] and es.X.tolist() == [[1, 2], [3, 4]]


def test_caption_csv_bom_extra_fields_and_ids_file(tmp_path):
    from fastcka.datasets import read_texts
    from fastcka.errors import InputError

    (tmp_path / "c.csv").write_bytes("\ufeffimage,caption\na.jpg,a dog\nb.jpg,a cat\n".encode())
    assert [r.id for r in read_texts(tmp_path / "c.csv")] == ["a.jpg", "b.jpg"]
    (tmp_path / "x.csv").write_text("image,caption\na.jpg,a dog,EXTRA\n")
    with pytest.raises(InputError, match=r"line 2: 3 fields, the header has 2"):
        read_texts(tmp_path / "x.csv")
    (tmp_path / "ids.txt").write_text("q\nr\n")
    with pytest.raises(InputError, match="line-aligned .txt"):
        read_texts(tmp_path / "c.csv", ids_file=tmp_path / "ids.txt")


def test_non_utf8_file_name_can_be_imported(tmp_path, capsys):
    name = os.fsdecode(b"caf\xe9.npy")  # Latin-1 bytes: not UTF-8
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / name, X)
    code, _, err = run(["import", tmp_path / name, "-o", tmp_path / "s.h5"], capsys)
    assert code == 0, err
    es = read_store(tmp_path / "s.h5")
    assert np.array_equal(es.X, X) and es.settings["source"] == "caf\ufffd.npy"
