"""Job-array shards (``--shard I/N``) and ``fastcka merge``: byte-identical to the unsharded run,
and every bad set of parts refused with one line."""

from __future__ import annotations

import json

import h5py
import numpy as np
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


def test_merge_reads_topk_shards_with_the_former_key_names(stores, capsys, tmp_path,
                                                         monkeypatch):
    """Streamed retrieve shards written before the rename (s2t_* / t2s_* datasets) merge to
    the same result as the unsharded run."""
    monkeypatch.setattr(cli_retrieve, "FULL_MATRIX_MAX_QUERIES", 20)
    src, tgt = stores
    code, out, err = run(["--json", "retrieve", src, tgt, *BASE], capsys)
    assert code == 0, err
    ref = json.loads(out)
    parts = _shards(src, tgt, capsys, tmp_path, 3)
    for p in parts:
        with h5py.File(p, "a") as f:
            assert "src_to_tgt_indices" in f
            for new, old in (("src_to_tgt", "s2t"), ("tgt_to_src", "t2s")):
                for what in ("indices", "scores"):
                    f.move(f"{new}_{what}", f"{old}_{what}")
    code, out, err = run(["--json", "merge", *parts], capsys)
    assert code == 0, err
    got = json.loads(out)
    for key in ("top1", "top5", "top10", "reverse", "n_queries"):
        assert got[key] == ref[key]


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


# --------------------------------------------------------------------------------------------
# cka matrix shards
# --------------------------------------------------------------------------------------------

def matrix_stores(tmp_path, n=40, m=4, prefix="s"):
    """m stores PREFIX0.h5 ... of n paired rows (dims 5, 8, 11, ...), rows of each in its own
    order."""
    from fastcka.store import write_store

    rng = np.random.default_rng(11)
    Z = rng.standard_normal((n, 3))
    ids = np.array([f"r{i:03d}" for i in range(n)])
    paths = []
    for a in range(m):
        X = np.tanh(Z @ rng.standard_normal((3, 5 + 3 * a))) + 0.1 * rng.standard_normal(
            (n, 5 + 3 * a))
        perm = rng.permutation(n)
        p = tmp_path / f"{prefix}{a}.h5"
        write_store(p, X[perm], ids[perm], modality="other")
        paths.append(p)
    return paths


def run_shards(argv, capsys, tmp_path, n, tag):
    """``argv --shard i/n -o TAGi.h5`` for every i: the partial outputs."""
    out = []
    for i in range(n):
        p = tmp_path / f"{tag}{i}.h5"
        code, o, err = run([*argv, "--shard", f"{i}/{n}", "-o", p], capsys)
        assert code == 0, err
        out.append(p)
    return out


def _cka_shards(paths, capsys, tmp_path, n, extra=(), tag="c"):
    return run_shards(["cka", *paths, *extra], capsys, tmp_path, n, tag)


@pytest.mark.parametrize("extra,n", [([], 1), ([], 13), (["--estimator", "unbiased"], 4),
                                     (["--kernel", "rbf", "--estimator", "unbiased"], 4),
                                     (["--kernel", "rbf", "--sigma", "kornblith"], 3),
                                     (["--metric", "cknna", "-k", "5"], 4)])
def test_cka_matrix_shards_merge_byte_for_byte(capsys, tmp_path, extra, n):
    paths = matrix_stores(tmp_path)
    full = tmp_path / "full.csv"
    code, out, err = run(["--json", "cka", *paths, *extra, "-o", full], capsys)
    assert code == 0, err
    ref = json.loads(out)
    parts = _cka_shards(paths, capsys, tmp_path, n, extra)  # 13 shards > 10 units: empty ones
    merged = tmp_path / "merged.csv"
    code, out, err = run(["--json", "merge", *reversed(parts), "-o", merged], capsys)
    assert code == 0, err
    assert merged.read_bytes() == full.read_bytes()
    assert json.loads(out)["matrix"] == ref["matrix"]
    M = np.asarray(ref["matrix"])
    assert 0.05 < M[0, 1] < 0.999                       # a real value, not the identity


def test_cka_merge_refuses_bad_sets(capsys, tmp_path):
    paths = matrix_stores(tmp_path)
    p = _cka_shards(paths, capsys, tmp_path, 3)
    other = _cka_shards(paths, capsys, tmp_path, 3, ["--kernel", "rbf"], tag="o")
    ret = _shards(*paired_stores(tmp_path)[:2], capsys, tmp_path, 3, tag="r")
    with h5py.File(paths[2], "a") as f:
        for obj in f.values():
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f" and obj.ndim == 2:
                obj[0] = obj[0] + 1.0
    alt = _cka_shards(paths, capsys, tmp_path, 3, tag="a")
    out_path = tmp_path / "out.csv"
    out_path.write_text("keep me")
    for parts, needles in [([p[0], p[2]], ["missing shard", "1 of 3"]),
                           ([p[0], p[1], p[1], p[2]], ["given twice"]),
                           ([p[0], p[1], other[2]], ["other settings"]),
                           ([p[0], p[1], alt[2]], ["other inputs"]),
                           ([p[0], p[1], ret[2]], ["other command"])]:
        code, out, err = run(["merge", *parts, "-o", out_path], capsys)
        assert_one_line_error(code, err, *needles)
        assert out_path.read_text() == "keep me"


@pytest.mark.parametrize("argv,needles", [
    (["--shard", "0/2"], ["--shard needs -o"]),
    (["--shard", "0/2", "-o", "x.h5", "--plot", "x.png"], ["--plot"]),
])
def test_cka_bad_shard_flags(capsys, tmp_path, argv, needles):
    paths = matrix_stores(tmp_path)
    code, out, err = run(["cka", *paths, *argv], capsys)
    assert_one_line_error(code, err, *needles)
    code, out, err = run(["cka", *paths[:2], "--shard", "0/2", "-o", tmp_path / "x.h5"], capsys)
    assert_one_line_error(code, err, "three or more stores")


# --------------------------------------------------------------------------------------------
# eval shards
# --------------------------------------------------------------------------------------------

EVAL = ["--methods", "faq:rbf,linreg", "--seeds", "8,12", "--queries", 20,
        "--draws", 2, "--n-init", 3, "--direction", "both"]


@pytest.fixture
def fixed_seconds(monkeypatch):
    """The cells' measured ``seconds`` (the table's only run-dependent column) fixed at 0, so
    that two runs can be compared byte for byte."""
    import types

    import fastcka.evaluate as ev

    monkeypatch.setattr(ev, "time", types.SimpleNamespace(perf_counter=lambda: 0.0))


@pytest.mark.parametrize("n,suffix", [(5, ".csv"), (20, ".json")])
def test_eval_shards_merge_byte_for_byte(stores, capsys, tmp_path, fixed_seconds, n, suffix):
    src, tgt = stores
    full = tmp_path / f"full{suffix}"
    code, out, err = run(["eval", src, tgt, *EVAL, "-o", full], capsys)
    assert code == 0, err
    parts = run_shards(["eval", src, tgt, *EVAL], capsys, tmp_path, n, "e")
    merged = tmp_path / f"merged{suffix}"
    code, out, err = run(["merge", *parts, "-o", merged], capsys)
    assert code == 0, err
    assert merged.read_bytes() == full.read_bytes()
    from fastcka.evaluate import read_table

    table = read_table(full)
    assert len(table) == 16 and len(set(table.column("accuracy"))) > 1   # 16 real cells


def test_eval_merge_refuses_bad_sets(stores, capsys, tmp_path):
    src, tgt = stores

    def shards(extra, tag, n=3):
        return run_shards(["eval", src, tgt, *EVAL, *extra], capsys, tmp_path, n, tag)

    p = shards([], "p")
    other = shards(["--seed", 1], "o")
    out_path = tmp_path / "grid.csv"
    out_path.write_text("keep me")
    for parts, needles in [([p[0], p[1]], ["missing shard", "2 of 3"]),
                           ([p[0], p[0], p[1], p[2]], ["given twice"]),
                           ([p[0], p[1], other[2]], ["other settings"])]:
        code, out, err = run(["merge", *parts, "-o", out_path], capsys)
        assert_one_line_error(code, err, *needles)
        assert out_path.read_text() == "keep me"


# --------------------------------------------------------------------------------------------
# embed shards
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from _tiny_models import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny-shard"))


def write_images(d, n, seed):
    """n small PNGs of different widths in the new folder d."""
    from PIL import Image

    d.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray((rng.random((22, 18 + i, 3)) * 255).astype(np.uint8)).save(
            d / f"im{i:02d}.png")
    return d


@pytest.fixture
def images(tmp_path):
    d = write_images(tmp_path / "imgs", 14, 2)
    (d / "im05.png").write_bytes(b"not a png")          # skipped, reported by its shard
    return d


def assert_same_store(a, b):
    """Same groups, datasets and attributes; ``created`` (the time a set was written) excepted."""
    def same(ga, gb):
        assert sorted(ga) == sorted(gb)
        for key in ga:
            x, y = ga[key], gb[key]
            if isinstance(x, h5py.Group):
                same(x, y)
                continue
            assert x.dtype == y.dtype and x.shape == y.shape, key
            if x.dtype.kind == "f":
                assert x[()].tobytes() == y[()].tobytes(), key
            else:
                assert (x[()] == y[()]).all(), key
        ka = {k: v for k, v in ga.attrs.items() if k not in ("created", "fastcka_partial")}
        kb = {k: v for k, v in gb.attrs.items() if k not in ("created", "fastcka_partial")}
        assert ka == kb
        assert ("created" in ga.attrs) == ("created" in gb.attrs)

    with h5py.File(a) as fa, h5py.File(b) as fb:
        same(fa, fb)


@pytest.mark.parametrize("kind,n", [("image", 1), ("image", 3), ("image", 7), ("text", 4)])
def test_embed_shards_merge_to_the_unsharded_store(tiny, images, capsys, tmp_path, kind, n):
    if kind == "image":
        args = ["embed", "image", images, "--encoder", tiny["vit"], "--batch-size", 3]
    else:
        caps = tmp_path / "caps.csv"
        caps.write_text("image,caption\n" + "".join(
            f"i{k % 5}.jpg,caption {k} of a {'red' if k % 2 else 'blue'} thing\n"
            for k in range(13)))
        args = ["embed", "text", caps, "--encoder", tiny["bert"], "--batch-size", 4,
                "--no-caption-mean"]
    full = tmp_path / "full.h5"
    code, out, err = run(["-q", *args, "-o", full], capsys)
    assert code == 0, err
    parts = run_shards(["-q", *args], capsys, tmp_path, n, "emb")
    merged = tmp_path / "merged.h5"
    code, out, err = run(["-q", "merge", *parts, "-o", merged], capsys)
    assert code == 0, err
    assert_same_store(full, merged)
    from fastcka.store import read_store

    es = read_store(merged)
    assert es.n == 13 and len(set(es.ids.tolist())) == es.n


def test_embed_merge_refuses_bad_sets(tiny, images, capsys, tmp_path):
    args = ["embed", "image", images, "--encoder", tiny["vit"], "--batch-size", 4]

    def shards(extra, tag, n=3):
        return run_shards(["-q", *args, *extra], capsys, tmp_path, n, tag)

    p = shards([], "p")
    other = shards(["--pooling", "cls"], "o")
    out = tmp_path / "emb.h5"
    for parts, needles in [([p[0], p[2]], ["missing shard", "1 of 3"]),
                           ([p[0], p[1], p[1], p[2]], ["given twice"]),
                           ([p[0], p[1], other[2]], ["other settings"])]:
        code, o, err = run(["merge", *parts, "-o", f"{out}::/image"], capsys)
        assert_one_line_error(code, err, *needles)
        assert not out.exists()
    code, o, err = run(["merge", *p], capsys)
    assert_one_line_error(code, err, "-o STORE")
    code, o, err = run([*args, "--shard", "0/2", "-o", f"{out}::/g"], capsys)
    assert_one_line_error(code, err, "no ::/group")
