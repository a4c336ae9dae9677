"""Seed/query selection (fastcka.protocol) and CLI result files (cli/_common.write_rows)."""

import csv
import json

import h5py
import numpy as np
import pytest

from fastcka.cli._common import write_rows
from fastcka.errors import InputError
from fastcka.protocol import ids_to_indices, kmeans_seeds, read_id_file, split_seeds_queries


def test_random_split_disjoint_reproducible():
    s1, q1 = split_seeds_queries(100, n_seeds=20, n_queries=30, rng=0)
    s2, q2 = split_seeds_queries(100, n_seeds=20, n_queries=30, rng=0)
    s3, _ = split_seeds_queries(100, n_seeds=20, n_queries=30, rng=1)
    assert np.array_equal(s1, s2) and np.array_equal(q1, q2)
    assert not np.array_equal(s1, s3)
    assert len(s1) == 20 and len(q1) == 30
    assert len(np.intersect1d(s1, q1)) == 0
    assert len(np.unique(np.r_[s1, q1])) == 50


def test_all_rest_are_queries_by_default():
    s, q = split_seeds_queries(10, n_seeds=4, rng=3)
    assert sorted(np.r_[s, q].tolist()) == list(range(10))


def test_explicit_indices_kept_in_order():
    s, q = split_seeds_queries(10, seed_idx=[3, 1, 2, 0], query_idx=[9, 5])
    assert s.tolist() == [3, 1, 2, 0] and q.tolist() == [9, 5]


@pytest.mark.parametrize("kw, msg", [
    (dict(n_seeds=8, n_queries=5), "only 10 aligned pairs"),
    (dict(seed_idx=[0, 0, 1, 2]), "repeated"),
    (dict(seed_idx=[0, 1, 2, 10]), "out of range"),
    (dict(seed_idx=[0, 1, 2, 3], query_idx=[3, 4]), "both seeds and queries"),
    (dict(n_seeds=2, min_seeds=4), "at least 4 seeds"),
    (dict(), "exactly one"),
    (dict(n_seeds=4, strategy="kmeans"), "needs the features"),
    (dict(n_seeds=4, strategy="bogus"), "strategy"),
])
def test_split_errors(kw, msg):
    with pytest.raises(InputError, match=msg) as ei:
        split_seeds_queries(10, **kw)
    assert "\n" not in str(ei.value)


def test_kmeans_seeds_pick_one_per_cluster():
    rng = np.random.default_rng(0)
    centers = np.eye(4) * 10
    X = np.vstack([c + rng.normal(scale=0.1, size=(25, 4)) for c in centers])
    seeds = kmeans_seeds(X, 4, rng=0)
    assert sorted(seeds // 25) == [0, 1, 2, 3]  # one seed from each well-separated cluster
    s, q = split_seeds_queries(100, n_seeds=4, n_queries=10, strategy="kmeans", features=X, rng=0)
    assert sorted(s // 25) == [0, 1, 2, 3] and not np.intersect1d(s, q).size


def test_id_files(tmp_path):
    f = tmp_path / "ids.txt"
    f.write_text("a\n\n# comment\nc\n")
    assert read_id_file(f) == ["a", "c"]
    assert ids_to_indices(["a", "b", "c"], ["c", "a"]).tolist() == [2, 0]
    with pytest.raises(InputError, match="not among the common ids: 'z'"):
        ids_to_indices(["a", "b"], ["z"])
    f.write_text("a\na\n")
    with pytest.raises(InputError, match="repeats"):
        read_id_file(f)
    with pytest.raises(InputError, match="not found"):
        read_id_file(tmp_path / "nope.txt")


def test_id_file_rule_lists_and_per_row_files(tmp_path):
    """The one id-file rule: lists skip blank and # lines; per-row files keep every line."""
    f = tmp_path / "ids.txt"
    f.write_text("  a \n\n#b\nc\n\n\n")
    assert read_id_file(f) == ["a", "c"]
    with pytest.raises(InputError, match=r"blank line\(s\) at line 2"):
        read_id_file(f, "ids file", per_row=True)  # a dropped line would shift every later row
    f.write_text("a\n#b\n c\n\n\n")                 # trailing blank lines are fine in both
    assert read_id_file(f, per_row=True) == ["a", "#b", "c"]
    assert read_id_file(f) == ["a", "c"]
    f.write_text("a\na\n")
    assert read_id_file(f, per_row=True) == ["a", "a"]  # uniqueness is the store's check there
    for text in ("", "\n\n", "# only a comment\n"):
        f.write_text(text)
        with pytest.raises(InputError, match="is empty"):
            read_id_file(f)
    f.write_bytes(b"\xff\xfe\x00a")
    with pytest.raises(InputError, match="not UTF-8"):
        read_id_file(f, per_row=True)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".h5"])
def test_write_rows_round_trip(tmp_path, suffix):
    rows = [{"source_id": "a", "target_id": "b", "score": 0.5},
            {"source_id": "c", "target_id": "d", "score": 0.25}]
    out = tmp_path / f"r{suffix}"
    write_rows(str(out), rows, meta={"method": "faq"})
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp file left
    if suffix in (".csv", ".tsv"):
        with open(out, newline="") as fh:
            got = list(csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ","))
        assert [r["target_id"] for r in got] == ["b", "d"]
        assert [float(r["score"]) for r in got] == [0.5, 0.25]
    elif suffix == ".json":
        got = json.loads(out.read_text())
        assert got["rows"] == rows and got["meta"] == {"method": "faq"}
    else:
        with h5py.File(out) as f:
            assert [s.decode() for s in f["target_id"][:]] == ["b", "d"]
            assert f["score"][:].tolist() == [0.5, 0.25]
            assert json.loads(f.attrs["meta"]) == {"method": "faq"}


def test_write_rows_bad_suffix_leaves_nothing(tmp_path):
    with pytest.raises(InputError, match="unsupported output suffix"):
        write_rows(str(tmp_path / "r.xyz"), [{"a": 1}])
    assert list(tmp_path.iterdir()) == []


def test_id_file_that_is_a_folder_is_an_input_error(tmp_path):
    """A folder given as an id file is one InputError naming it (was an IsADirectoryError)."""
    from fastcka.errors import InputError
    from fastcka.protocol import read_id_file

    for per_row in (False, True):
        with pytest.raises(InputError, match="seed ids is a folder"):
            read_id_file(tmp_path, "seed ids", per_row=per_row)
