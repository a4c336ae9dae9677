"""HDF5 embedding store: round trips, chunks, subsets, align, groups, validation, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from fastcka.errors import StoreError
from fastcka.store import (
    FORMAT_VERSION,
    NonfiniteWarning,
    StoreWriter,
    align,
    iter_store,
    list_sets,
    parse_spec,
    partial_path,
    read_partial,
    read_store,
    store_info,
    write_store,
)

ROOT = Path(__file__).resolve().parents[1]


def _data(n=50, d=6, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, d)) * 10).astype(dtype)
    ids = [f"item-{i:03d}-é" for i in range(n)]  # non-ASCII on purpose
    return X, ids


def _one_line_error(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    for needle in needles:
        assert needle.lower() in msg.lower(), (needle, msg)
    return msg


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ----------------------------------------------------------------------------- specs

@pytest.mark.parametrize("spec, expected", [
    ("f.h5", ("f.h5", "/")),
    ("f.h5::/g", ("f.h5", "/g")),
    ("f.h5::g", ("f.h5", "/g")),
    ("f.h5::/a//b/", ("f.h5", "/a/b")),
    ("f.h5::", ("f.h5", "/")),
    ("dir/x.h5::/enc", ("dir/x.h5", "/enc")),
])
def test_parse_spec(spec, expected):
    path, group = parse_spec(spec)
    assert (str(path), group) == expected


@pytest.mark.parametrize("spec", ["::/g", "f.h5::/a/../b", "f.h5::/ids", "f.h5::/x/embeddings"])
def test_parse_spec_rejects(spec):
    with pytest.raises(StoreError) as ei:
        parse_spec(spec)
    _one_line_error(ei, spec)


def test_partial_path_names():
    assert partial_path("d/f.h5") == Path("d/f.h5.partial")
    assert partial_path("d/f.h5::/a/b") == Path("d/f.h5.a~b.partial")


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_round_trip_bit_exact(tmp_path, dtype):
    X, ids = _data(dtype=dtype)
    X[0, 0] = np.finfo(dtype).max  # extreme but finite values survive
    X[1, 1] = np.finfo(dtype).tiny
    X[2, 2] = -0.0
    f = tmp_path / "s.h5"
    write_store(f, X, ids, modality="text", encoder="enc", settings={"pool": "mean", "k": 5},
                name="set")
    es = read_store(f)
    assert _same_bits(es.X, X)
    assert es.ids.tolist() == ids
    assert (es.modality, es.encoder, es.settings) == ("text", "enc", {"pool": "mean", "k": 5})
    assert es.attrs["format_version"] == FORMAT_VERSION
    assert es.attrs["fastcka_version"] and es.attrs["created"].endswith("+00:00")
    assert (es.n, es.dim) == X.shape


def test_schema_on_disk(tmp_path):
    """The on-disk layout docs/store.md documents, read with plain h5py."""
    X, ids = _data(n=3000, d=200)
    f = tmp_path / "s.h5"
    write_store(f, X, ids, modality="image", encoder="e", settings={"a": [1, 2]})
    with h5py.File(f, "r") as h:
        emb, hid = h["embeddings"], h["ids"]
        assert emb.dtype == np.float32 and emb.shape == X.shape
        assert emb.compression == "gzip" and emb.shuffle
        assert emb.chunks[1] == 200 and emb.chunks[0] * 200 * 4 <= 1 << 20 and emb.chunks[0] < 3000
        assert h5py.check_string_dtype(hid.dtype).encoding == "utf-8"
        assert hid.asstr()[()].tolist() == ids
        assert isinstance(h.attrs["format_version"], np.integer)
        assert json.loads(h.attrs["settings"]) == {"a": [1, 2]}
        assert h.attrs["modality"] == "image"


def test_float64_and_int_input_cast_to_float32(tmp_path):
    X64 = np.random.default_rng(1).standard_normal((10, 4))
    write_store(tmp_path / "a.h5", X64)
    es = read_store(tmp_path / "a.h5")
    assert es.X.dtype == np.float32 and _same_bits(es.X, X64.astype(np.float32))
    assert es.ids.tolist() == [str(i) for i in range(10)]  # default ids: row numbers
    Xi = np.arange(12).reshape(3, 4)
    write_store(tmp_path / "b.h5", Xi, dtype="float16")
    es = read_store(tmp_path / "b.h5")
    assert es.X.dtype == np.float16 and np.array_equal(es.X, Xi.astype(np.float16))


def test_iter_store_chunks(tmp_path):
    X, ids = _data(n=103)
    write_store(tmp_path / "s.h5", X, ids)
    blocks = list(iter_store(tmp_path / "s.h5", chunk_rows=25))
    assert [b.n for b in blocks] == [25, 25, 25, 25, 3]
    assert _same_bits(np.concatenate([b.X for b in blocks]), X)
    assert np.concatenate([b.ids for b in blocks]).tolist() == ids
    with pytest.raises(StoreError) as ei:
        list(iter_store(tmp_path / "s.h5", chunk_rows=0))
    _one_line_error(ei, "chunk_rows")


@pytest.mark.parametrize("k", [3, 40])  # few ids: h5py point selection; many: full read
def test_read_subset_by_ids_in_requested_order(tmp_path, k):
    X, ids = _data(n=60)
    write_store(tmp_path / "s.h5", X, ids)
    rng = np.random.default_rng(3)
    pick = rng.permutation(60)[:k]
    es = read_store(tmp_path / "s.h5", ids=[ids[i] for i in pick])
    assert es.ids.tolist() == [ids[i] for i in pick]
    assert _same_bits(es.X, X[pick])


def test_read_subset_missing_ids_named(tmp_path):
    X, ids = _data(n=10)
    write_store(tmp_path / "s.h5", X, ids)
    with pytest.raises(StoreError) as ei:
        read_store(tmp_path / "s.h5", ids=[ids[0], "nope-1", "nope-2"])
    _one_line_error(ei, "2 requested id(s)", "nope-1", "nope-2")


def test_align_intersection_in_a_order():
    from fastcka.store import EmbeddingSet

    rng = np.random.default_rng(0)
    ida = np.array(["c", "a", "x", "b", "d"])
    idb = np.array(["b", "y", "a", "d", "c"])
    A = EmbeddingSet(rng.standard_normal((5, 3)).astype(np.float32), ida)
    B = EmbeddingSet(rng.standard_normal((5, 2)).astype(np.float32), idb)
    a2, b2 = align(A, B)
    expected = [i for i in ida.tolist() if i in set(idb.tolist())]  # naive reference
    assert a2.ids.tolist() == expected == b2.ids.tolist() == ["c", "a", "b", "d"]
    for k, key in enumerate(expected):
        assert np.array_equal(a2.X[k], A.X[ida.tolist().index(key)])
        assert np.array_equal(b2.X[k], B.X[idb.tolist().index(key)])
    a3, b3 = align(B, A)  # order follows the first argument
    assert a3.ids.tolist() == ["b", "a", "d", "c"] == b3.ids.tolist()


def test_align_many_three_sets_against_naive_intersection(tmp_path):
    from fastcka.errors import InputError
    from fastcka.store import EmbeddingSet, align_many

    rng = np.random.default_rng(1)
    idl = [["c", "a", "x", "b", "d", "e"], ["b", "y", "a", "d", "c", "e"], ["e", "d", "z", "a", "c"]]
    sets = [EmbeddingSet(rng.standard_normal((len(i), 2 + k)).astype(np.float32), np.array(i))
            for k, i in enumerate(idl)]
    write_store(tmp_path / "s.h5", sets[2].X, idl[2])
    out = align_many([sets[0], sets[1], str(tmp_path / "s.h5")])  # sets and specs mixed
    want = [i for i in idl[0] if all(i in other for other in idl[1:])]  # naive reference
    assert want == ["c", "a", "d", "e"]
    for es, ids, got in zip(sets, idl, out, strict=True):
        assert got.ids.tolist() == want
        for k, key in enumerate(want):
            assert np.array_equal(got.X[k], es.X[ids.index(key)])
    with pytest.raises(InputError, match=r"only 4 ids are common to A, B, C; need at least 5"):
        align_many(sets, min_common=5, names=["A", "B", "C"])
    same = align_many([sets[0], sets[0]])  # already paired: returned as they are, unless copy
    assert same[0] is sets[0] and align_many([sets[0]], copy=True)[0] is not sets[0]
    assert [s.n for s in align_many([sets[0], EmbeddingSet(np.zeros((1, 1)), ["q"])])] == [0, 0]


def test_align_specs_and_empty(tmp_path):
    X, ids = _data(n=8)
    write_store(tmp_path / "f.h5::/a", X, ids)
    write_store(tmp_path / "f.h5::/b", X[:4][::-1], ids[:4][::-1])
    a2, b2 = align(f"{tmp_path / 'f.h5'}::/a", f"{tmp_path / 'f.h5'}::/b")
    assert a2.ids.tolist() == ids[:4] and _same_bits(a2.X, b2.X)
    write_store(tmp_path / "g.h5", X[:2], ["p", "q"])
    e1, e2 = align(tmp_path / "g.h5", f"{tmp_path / 'f.h5'}::/a")
    assert e1.n == 0 and e2.n == 0 and e1.dim == 6 and e2.dim == 6


# ----------------------------------------------------------------------------- groups

def test_groups_in_one_file(tmp_path):
    f = tmp_path / "multi.h5"
    X1, ids = _data(n=20, d=5)
    X2, _ = _data(n=20, d=3, dtype=np.float16, seed=1)
    write_store(f"{f}::/img", X1, ids, modality="image", encoder="effnet")
    write_store(f"{f}::/txt/minilm", X2, ids, modality="text", encoder="minilm")
    write_store(f, X1[:5], ids[:5])  # root set added last, groups kept
    assert list_sets(f) == ["/", "/img", "/txt/minilm"]
    assert _same_bits(read_store(f"{f}::/img").X, X1)
    assert _same_bits(read_store(f"{f}::txt/minilm").X, X2)
    assert read_store(f).n == 5
    info = store_info(f"{f}::/txt/minilm")
    assert (info["n"], info["dim"], info["dtype"], info["modality"], info["encoder"]) == \
        (20, 3, "float16", "text", "minilm")
    assert info["groups"] == ["/", "/img", "/txt/minilm"]
    # replacing one set keeps the others and leaves no dead space
    size_before = f.stat().st_size
    for _ in range(3):
        write_store(f"{f}::/img", X1, ids, modality="image", encoder="effnet2")
    assert store_info(f"{f}::/img")["encoder"] == "effnet2"
    assert _same_bits(read_store(f"{f}::/txt/minilm").X, X2) and read_store(f).n == 5
    assert f.stat().st_size <= size_before * 1.1
    with pytest.raises(StoreError) as ei:
        read_store(f"{f}::/nope")
    _one_line_error(ei, "/nope", "/img")


def test_store_info_keys(tmp_path):
    X, ids = _data(n=12, d=4)
    write_store(tmp_path / "s.h5", X, ids, modality="image", encoder="e", settings={"s": 1})
    info = store_info(tmp_path / "s.h5")
    for key in ("n", "dim", "dtype", "modality", "encoder", "format_version", "ids_sample",
                "settings", "created", "fastcka_version", "groups"):
        assert key in info
    assert info["ids_sample"] == ids[:5] and info["settings"] == {"s": 1}
    json.dumps(info)  # JSON-ready


def test_write_is_atomic_on_failure(tmp_path):
    """A failed write leaves the old store intact and no temporary file behind."""
    X, ids = _data(n=10)
    f = tmp_path / "s.h5"
    write_store(f, X, ids)
    before = f.read_bytes()
    with pytest.raises(StoreError):
        write_store(f"{f}::/g", X, ids[:9])
    with pytest.raises(TypeError, match="simulated"):  # a failure in the middle of the HDF5 write
        _fail_mid_write(f, X, ids)
    assert f.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


def _fail_mid_write(f, X, ids):
    import fastcka.store as st

    orig = st._write_set

    def boom(g, *a, **k):
        orig(g, *a, **k)
        raise TypeError("simulated failure after writing the datasets")

    st._write_set = boom
    try:
        write_store(f"{f}::/g", X, ids)
    finally:
        st._write_set = orig


def test_refuses_to_overwrite_non_hdf5(tmp_path):
    f = tmp_path / "notes.h5"
    f.write_text("precious text")
    with pytest.raises(StoreError) as ei:
        write_store(f, np.ones((2, 2)), ["a", "b"])
    _one_line_error(ei, "not an HDF5 file")
    assert f.read_text() == "precious text"


# ----------------------------------------------------------------------------- validation

def test_error_duplicate_ids_on_write(tmp_path):
    with pytest.raises(StoreError) as ei:
        write_store(tmp_path / "s.h5", np.ones((4, 2)), ["a", "b", "a", "c"])
    _one_line_error(ei, "unique", "'a'")
    assert not (tmp_path / "s.h5").exists()


def test_error_duplicate_ids_on_read(tmp_path):
    f = tmp_path / "s.h5"
    write_store(f, np.ones((3, 2)), ["a", "b", "c"])
    with h5py.File(f, "r+") as h:
        h["ids"][2] = "a"
    with pytest.raises(StoreError) as ei:
        read_store(f)
    _one_line_error(ei, "not unique", "'a'")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_error_nonfinite_rows_on_write(tmp_path, bad):
    X, ids = _data(n=10)
    X[2, 1] = bad
    X[7, 0] = bad
    with pytest.raises(StoreError) as ei:
        write_store(tmp_path / "s.h5", X, ids)
    _one_line_error(ei, "2 row(s)", "NaN or Inf", ids[2], ids[7])
    assert not (tmp_path / "s.h5").exists()


def test_float64_overflow_becomes_nonfinite_error(tmp_path):
    X = np.ones((3, 2))
    X[1, 0] = 1e300  # finite in float64, Inf in float32
    with pytest.raises(StoreError) as ei:
        write_store(tmp_path / "s.h5", X, ["a", "b", "c"])
    _one_line_error(ei, "'b'")


def test_nonfinite_drop_on_write_and_read(tmp_path):
    X, ids = _data(n=10)
    X[3, 0] = np.nan
    with pytest.warns(NonfiniteWarning, match=ids[3]):
        out = write_store(tmp_path / "s.h5", X, ids, nonfinite="drop")
    assert out.n == 9
    es = read_store(tmp_path / "s.h5")
    keep = [i for i in range(10) if i != 3]
    assert es.ids.tolist() == [ids[i] for i in keep] and _same_bits(es.X, X[keep])
    # a store written by another tool with NaN rows: error on read, or drop
    with h5py.File(tmp_path / "s.h5", "r+") as h:
        h["embeddings"][5, 2] = np.inf
    with pytest.raises(StoreError) as ei:
        read_store(tmp_path / "s.h5")
    _one_line_error(ei, "1 row(s)", es.ids[5])
    with pytest.warns(NonfiniteWarning, match=es.ids[5]):
        es2 = read_store(tmp_path / "s.h5", nonfinite="drop")
    assert es2.n == 8 and es.ids[5] not in es2.ids.tolist()


def test_error_inconsistent_dimensions_append(tmp_path):
    with StoreWriter(tmp_path / "s.h5", dim=4) as w:
        w.append(np.ones((2, 4)), ["a", "b"])
        with pytest.raises(StoreError) as ei:
            w.append(np.ones((2, 5)), ["c", "d"])
        _one_line_error(ei, "dim 5", "dim 4")
    assert read_store(tmp_path / "s.h5").n == 2


@pytest.mark.parametrize("X, needle", [
    (np.ones(5), "2-D"),
    (np.ones((2, 2, 2)), "2-D"),
    (np.array([["a", "b"]]), "real numbers"),
    (np.ones((2, 2), dtype=complex), "real numbers"),
    (np.ones((0, 3)), "no rows"),
])
def test_error_bad_embeddings_on_write(tmp_path, X, needle):
    with pytest.raises(StoreError) as ei:
        write_store(tmp_path / "s.h5", X)
    _one_line_error(ei, needle)


@pytest.mark.parametrize("kw, needle", [
    ({"modality": "audio"}, "modality"),
    ({"dtype": "float64"}, "float32 or float16"),
    ({"dtype": "int8"}, "float32 or float16"),
    ({"settings": {"f": object()}}, "JSON"),
    ({"nonfinite": "ignore"}, "nonfinite"),
])
def test_error_bad_options_on_write(tmp_path, kw, needle):
    with pytest.raises(StoreError) as ei:
        write_store(tmp_path / "s.h5", np.ones((2, 2)), **kw)
    _one_line_error(ei, needle)


def test_error_ids_count_and_content_on_write(tmp_path):
    with pytest.raises(StoreError) as ei:
        write_store(tmp_path / "s.h5", np.ones((3, 2)), ["a", "b"])
    _one_line_error(ei, "2 entries", "3 rows")
    with pytest.raises(StoreError) as ei:
        write_store(tmp_path / "s.h5", np.ones((2, 2)), ["a", ""])
    _one_line_error(ei, "non-empty")
    with pytest.raises(StoreError) as ei:
        write_store(tmp_path / "s.h5", np.ones((2, 2)), ["a", "b\nc"])
    _one_line_error(ei, "line breaks")


def _raw_store(f, emb=None, ids=None, version=FORMAT_VERSION):
    with h5py.File(f, "w") as h:
        if emb is not None:
            h["embeddings"] = emb
        if ids is not None:
            h.create_dataset("ids", data=np.asarray(ids, dtype=object),
                             dtype=h5py.string_dtype("utf-8"))
        if version is not None:
            h.attrs["format_version"] = version


@pytest.mark.parametrize("case, needle", [
    ("int_dtype", "dtype int32"),
    ("ids_count", "2 entries but 'embeddings' has 3 rows"),
    ("no_ids", "missing the 'ids' dataset"),
    ("no_embeddings", "missing the 'embeddings' dataset"),
    ("nothing", "holds no embedding set"),
    ("future", "format_version 99"),
    ("no_version", "no 'format_version'"),
    ("ids_not_str", "ids must be UTF-8 strings"),
    ("emb_1d", "must be 2-D"),
])
def test_error_bad_stored_sets(tmp_path, case, needle):
    f = tmp_path / "s.h5"
    ids3 = ["a", "b", "c"]
    emb = np.ones((3, 2), dtype=np.float32)
    if case == "int_dtype":
        _raw_store(f, np.ones((3, 2), dtype=np.int32), ids3)
    elif case == "ids_count":
        _raw_store(f, emb, ids3[:2])
    elif case == "no_ids":
        _raw_store(f, emb, None)
    elif case == "no_embeddings":
        _raw_store(f, None, ids3)
    elif case == "nothing":
        _raw_store(f, None, None)
    elif case == "future":
        _raw_store(f, emb, ids3, version=99)
    elif case == "no_version":
        _raw_store(f, emb, ids3, version=None)
    elif case == "ids_not_str":
        with h5py.File(f, "w") as h:
            h["embeddings"] = emb
            h["ids"] = np.arange(3)
            h.attrs["format_version"] = 1
    elif case == "emb_1d":
        _raw_store(f, np.ones(3, dtype=np.float32), ids3)
    with pytest.raises(StoreError) as ei:
        read_store(f)
    _one_line_error(ei, needle, str(f))
    if case not in ("nothing",):
        with pytest.raises(StoreError):
            store_info(f)


def test_error_future_version_in_group(tmp_path):
    f = tmp_path / "s.h5"
    write_store(f"{f}::/g", np.ones((2, 2)), ["a", "b"])
    with h5py.File(f, "r+") as h:
        h["g"].attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(StoreError) as ei:
        read_store(f"{f}::/g")
    _one_line_error(ei, f"format_version {FORMAT_VERSION + 1}", "upgrade")


def test_error_missing_not_hdf5_truncated(tmp_path):
    with pytest.raises(StoreError) as ei:
        read_store(tmp_path / "absent.h5")
    _one_line_error(ei, "not found", "absent.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"this is not hdf5\n" * 50)
    with pytest.raises(StoreError) as ei:
        read_store(junk)
    _one_line_error(ei, "not a valid HDF5 file")
    X, ids = _data(n=500, d=64)
    good = tmp_path / "good.h5"
    write_store(good, X, ids)
    blob = good.read_bytes()
    for frac in (0.3, 0.7, 0.95):
        cut = tmp_path / f"cut{frac}.h5"
        cut.write_bytes(blob[: int(len(blob) * frac)])
        with pytest.raises(StoreError) as ei:
            read_store(cut)
        _one_line_error(ei, "truncated")
    with pytest.raises(StoreError) as ei:
        read_store(tmp_path)
    _one_line_error(ei, "folder")


def test_error_corrupt_chunk_data(tmp_path):
    """Damaged compressed data inside an intact file is reported, not a raw h5py error."""
    X, ids = _data(n=400, d=32)
    f = tmp_path / "s.h5"
    write_store(f, X, ids)
    with h5py.File(f, "r") as h:
        off = h["embeddings"].id.get_chunk_info(0).byte_offset
    blob = bytearray(f.read_bytes())
    for i in range(off + 8, off + 300):
        blob[i] ^= 0xFF
    bad = tmp_path / "bad.h5"
    bad.write_bytes(bytes(blob))
    with pytest.raises(StoreError) as ei:
        read_store(bad)
    _one_line_error(ei, "corrupt or truncated", "bad.h5")


# ----------------------------------------------------------------------------- appending writer

def test_writer_chunks_skip_and_partial(tmp_path):
    X, ids = _data(n=40)
    f = tmp_path / "w.h5"
    with StoreWriter(f, dim=6, modality="image", encoder="enc", settings={"b": 8}) as w:
        assert w.existing_ids == frozenset() and w.n == 0
        assert w.append(X[:15], ids[:15]) == 15
        assert not f.exists() and partial_path(f).is_dir()
        part = read_partial(f)
        assert part.ids.tolist() == ids[:15] and _same_bits(part.X, X[:15])
        assert w.append(X[10:40], ids[10:40]) == 25  # the 5 already present are skipped
        assert w.existing_ids == frozenset(ids)
        with pytest.raises(StoreError) as ei:
            w.append(np.ones((2, 6)), ["new", "new"])
        _one_line_error(ei, "unique")
    assert not partial_path(f).exists()
    es = read_store(f)
    assert es.ids.tolist() == ids and _same_bits(es.X, X)
    assert (es.modality, es.encoder, es.settings) == ("image", "enc", {"b": 8})


def test_writer_exception_keeps_partial_and_resumes(tmp_path):
    X, ids = _data(n=30)
    f = tmp_path / "w.h5::/g"
    with pytest.raises(RuntimeError), StoreWriter(f, dim=6) as w:
        w.append(X[:10], ids[:10])
        raise RuntimeError("encoder crashed")
    assert not (tmp_path / "w.h5").exists() and partial_path(f).is_dir()
    with StoreWriter(f, dim=6, resume=True) as w:
        assert w.existing_ids == frozenset(ids[:10])
        assert w.append(X, ids) == 20
    es = read_store(f)
    assert es.ids.tolist() == ids and _same_bits(es.X, X)


def test_writer_resume_checks_compatibility(tmp_path):
    f = tmp_path / "w.h5"
    w = StoreWriter(f, dim=6, encoder="a")
    w.append(np.ones((2, 6)), ["x", "y"])
    w.abandon()
    for kw, needle in (({"dim": 5, "encoder": "a"}, "dim"), ({"dim": 6, "encoder": "b"}, "encoder"),
                       ({"dim": 6, "encoder": "a", "dtype": "float16"}, "dtype")):
        with pytest.raises(StoreError) as ei:
            StoreWriter(f, resume=True, **kw)
        _one_line_error(ei, "cannot resume", needle)
    # resume=False discards the stale partial folder
    with StoreWriter(f, dim=6, encoder="a") as w2:
        assert w2.existing_ids == frozenset()
        w2.append(np.zeros((1, 6)), ["z"])
    assert read_store(f).ids.tolist() == ["z"]


def test_writer_resume_from_final_store(tmp_path):
    X, ids = _data(n=20)
    f = tmp_path / "w.h5"
    write_store(f, X[:12], ids[:12], modality="text")
    with StoreWriter(f, dim=6, modality="text", resume=True) as w:
        assert w.existing_ids == frozenset(ids[:12])
        w.append(X, ids)
    es = read_store(f)
    assert es.ids.tolist() == ids and _same_bits(es.X, X)


def test_writer_empty_close_and_nonfinite(tmp_path):
    f = tmp_path / "w.h5"
    w = StoreWriter(f, dim=3)
    with pytest.raises(StoreError) as ei:
        w.close()
    _one_line_error(ei, "no rows")
    assert not f.exists()
    w = StoreWriter(f, dim=3, nonfinite="drop")
    X = np.ones((3, 3))
    X[1, 1] = np.nan
    with pytest.warns(NonfiniteWarning, match="'b'"):
        assert w.append(X, ["a", "b", "c"]) == 2
    w.close()
    assert read_store(f).ids.tolist() == ["a", "c"]
    with pytest.raises(StoreError) as ei:
        StoreWriter(f, dim=0)
    _one_line_error(ei, "dim")


_KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    from fastcka.store import StoreWriter
    spec, n, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(7)
    X = rng.standard_normal((n, 16)).astype(np.float32)
    ids = [f"row{i}" for i in range(n)]
    w = StoreWriter(spec, dim=16, modality="text", encoder="slow", resume=True)
    todo = [i for i in range(n) if ids[i] not in w.existing_ids]
    for s in range(0, len(todo), step):
        idx = todo[s:s + step]
        w.append(X[idx], [ids[i] for i in idx])
        print("chunk", s // step, flush=True)
        time.sleep(float(sys.argv[4]))
    w.close()
    print("done", flush=True)
""")


def test_killed_writer_resumes_with_each_id_once(tmp_path):
    """A writer killed with SIGKILL mid-append keeps its completed chunks; resuming finishes."""
    script = tmp_path / "slow_writer.py"
    script.write_text(_KILL_SCRIPT)
    final = tmp_path / "out.h5"
    n, step = 200, 20
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), str(final), str(n), str(step), "0.3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    done_chunks = 0
    deadline = time.monotonic() + 120
    try:
        while done_chunks < 2:
            line = proc.stdout.readline()
            assert line, f"writer died early: {proc.stderr.read()}"
            if line.startswith("chunk"):
                done_chunks += 1
            assert time.monotonic() < deadline
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not final.exists(), "nothing may appear under the final name before completion"
    part = read_partial(final)
    assert part.n >= done_chunks * step and part.n % step == 0 and part.n < n
    rng = np.random.default_rng(7)
    X = rng.standard_normal((n, 16)).astype(np.float32)
    ids = [f"row{i}" for i in range(n)]
    pos = [ids.index(i) for i in part.ids.tolist()]
    assert _same_bits(part.X, X[pos])  # completed chunks readable, exact

    out = subprocess.run([sys.executable, str(script), str(final), str(n), str(step), "0"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("chunk") == (n - part.n) // step  # only the missing ids were written
    es = read_store(final)
    assert sorted(es.ids.tolist()) == sorted(ids) and len(set(es.ids.tolist())) == n
    order = [ids.index(i) for i in es.ids.tolist()]
    assert _same_bits(es.X, X[order])
    assert not partial_path(final).exists()


# ----------------------------------------------------------------------------- reference data

def test_reference_embeddings_round_trip(tmp_path, reference_embeddings):
    ids, img, txt = reference_embeddings
    f = tmp_path / "ref.h5"
    write_store(f"{f}::/image", img, ids, modality="image", encoder="efficientnet_lite0")
    write_store(f"{f}::/text", txt, ids, modality="text", encoder="all-MiniLM-L6-v2")
    a, b = align(f"{f}::/image", f"{f}::/text")
    assert a.ids.tolist() == ids == b.ids.tolist()
    assert _same_bits(a.X, img) and _same_bits(b.X, txt)


def test_embedding_set_coerces_and_checks():
    from fastcka.store import EmbeddingSet

    es = EmbeddingSet([[1.0, 2.0], [3.0, 4.0]], [7, "b"])
    assert isinstance(es.X, np.ndarray) and es.ids.dtype.kind == "U" and es.ids.tolist() == ["7", "b"]
    assert es.select(["b"]).X.tolist() == [[3.0, 4.0]]
    with pytest.raises(StoreError) as ei:
        EmbeddingSet(np.ones((3, 2)), ["a", "b"])
    _one_line_error(ei, "2 ids")
