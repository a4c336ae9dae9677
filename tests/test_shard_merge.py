"""Job-array shards (``--shard I/N``) and ``fastcka merge``: byte-identical to the unsharded run,
and every bad set of parts refused with one line."""

from __future__ import annotations

import json

import h5py
import pytest
from _cli import assert_one_line_error, paired_stores, run

import fastcka.cli.retrieve as cli_retrieve

BASE = ["--seeds", 15, "--block", 16]


@pytest.fixture
def stores(tmp_path):
    return paired_stores(tmp_path)[:2]


def _shards(src, tgt, capsys, tmp_path, n, extra=(), tag="p"):
    paths = []
    for i in range(n):
        p = tmp_path / f"{tag}{i}.h5"
        code, out, err = run(["retrieve", src, tgt, *BASE, *extra, "--shard", f"{i}/{n}",
                              "-o", p], capsys)
        assert code == 0, err
        paths.append(p)
    return paths


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("n", [1, 3, 5])
@pytest.mark.parametrize("suffix", [".csv", ".json", ".h5"])
def test_merge_equals_unsharded_byte_for_byte(stores, capsys, tmp_path, monkeypatch, n, stream,
                                             suffix):
    if stream:   # the streamed top-k path (no q x q matrix) on a small problem
        monkeypatch.setattr(cli_retrieve, "FULL_MATRIX_MAX_QUERIES", 20)
    src, tgt = stores
    full = tmp_path / f"full{suffix}"
    code, out, err = run(["--json", "retrieve", src, tgt, *BASE, "-o", full], capsys)
    assert code == 0, err
    ref = json.loads(out)
    parts = _shards(src, tgt, capsys, tmp_path, n)
    merged = tmp_path / f"merged{suffix}"
    code, out, err = run(["--json", "merge", *reversed(parts), "-o", merged], capsys)
    assert code == 0, err
    got = json.loads(out)
    if suffix == ".h5":    # HDF5 files carry no timestamps here, but compare the content too
        with h5py.File(full) as a, h5py.File(merged) as b:
            assert a.attrs["meta"] == b.attrs["meta"]
            assert sorted(a) == sorted(b)
            for key in a:
                assert (a[key][()] == b[key][()]).all()
    else:
        assert merged.read_bytes() == full.read_bytes()
    for key in ("top1", "top5", "top10", "reverse", "matching_accuracy", "n_queries"):
        assert got[key] == ref[key]
    assert (ref["matching_accuracy"] is None) == stream


def test_merge_refuses_bad_sets(stores, capsys, tmp_path):
    src, tgt = stores
    p = _shards(src, tgt, capsys, tmp_path, 3)
    other = _shards(src, tgt, capsys, tmp_path, 3, extra=["--method", "linreg", "--seed", 1],
                    tag="o")
    two = _shards(src, tgt, capsys, tmp_path, 2, tag="t")
    # same settings and paths, other inputs: one feature of the target store changed
    with h5py.File(tgt, "a") as f:
        for obj in f.values():
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f" and obj.ndim == 2:
                obj[0] = obj[0] + 1.0
    alt = _shards(src, tgt, capsys, tmp_path, 3, tag="a")
    out_path = tmp_path / "out.csv"
    out_path.write_text("keep me")
    cases = [
        ([p[0], p[2]], ["missing shard", "1 of 3"]),
        ([p[0], p[1], p[1], p[2]], ["given twice"]),
        ([p[0], p[1], other[2]], ["other settings"]),
        ([p[0], p[1], alt[2]], ["other inputs"]),
        ([p[0], p[1], two[1]], ["other shard count"]),
        ([p[0], p[1], src], ["not a fastcka partial output"]),
        ([p[0], p[1], tmp_path / "nope.h5"], ["cannot read partial output"]),
    ]
    for parts, needles in cases:
        code, out, err = run(["merge", *parts, "-o", out_path], capsys)
        assert_one_line_error(code, err, *needles)
        assert out_path.read_text() == "keep me"


@pytest.mark.parametrize("argv,needles", [
    (["--shard", "3/3", "-o", "x.h5"], ["--shard", "I/N"]),
    (["--shard", "a/b", "-o", "x.h5"], ["--shard"]),
    (["--shard", "0/2"], ["--shard needs -o"]),
])
def test_bad_shard_flags(stores, capsys, tmp_path, argv, needles):
    src, tgt = stores
    code, out, err = run(["retrieve", src, tgt, *BASE, *argv], capsys)
    assert_one_line_error(code, err, *needles)
