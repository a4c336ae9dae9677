"""Classification by matching (issue 13 item 4): library, CLI, labels in stores, bad input."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from _cli import assert_one_line_error, run  # noqa: E402

from fastcka.classify import (
    balanced_assignment,
    classify,
    draw_seeds,
    read_labels,
    resolve_labels,
)
from fastcka.errors import InputError
from fastcka.store import read_store, store_info, write_store

CLASSES = ["cat", "dog", "bird", "fish", "frog", "horse"]


def planted(n_per=20, C=6, p=16, d=12, noise=0.35, seed=0):
    """Images around one centroid per class; each class prompt a fixed linear image of its
    centroid (the kernel structure of both sides agrees)."""
    rng = np.random.default_rng(seed)
    cent = rng.normal(size=(C, p))
    y = np.repeat(np.arange(C), n_per)
    X = cent[y] + noise * rng.normal(size=(len(y), p))
    P = cent @ rng.normal(size=(p, d)) + 0.05 * rng.normal(size=(C, d))
    return X, P, y


def _naive_linear_cka(A, B):
    A = A - A.mean(0)
    B = B - B.mean(0)
    K, L = A @ A.T, B @ B.T
    return float((K * L).sum() / np.sqrt((K * K).sum() * (L * L).sum()))


# ------------------------------------------------------------------------------- library

def test_planted_problem_every_method_recovers_it():
    X, P, y = planted()
    res = classify(X, P, y, classes=CLASSES, seeds=18,
                   methods="local-cka,linreg,relative,knn", rng=3)
    assert [m.name for m in res.methods] == ["local-cka/linear", "local-cka/rbf/paper",
                                             "local-cka/rbf/base", "linreg", "relative", "knn"]
    q = len(y) - 18
    assert res.n_queries == q and res.n_seeds == 18
    for m in res.methods:
        assert m.top1 >= 0.95, (m.name, m.top1)           # chance is 1/6
        assert m.top5 >= m.top1
        assert m.confusion.sum() == q
        # per-class accuracy and the confusion agree with a direct count
        for c in range(6):
            mask = res.labels == c
            assert m.per_class[c] == pytest.approx(np.mean(m.predictions[mask] == c))
            assert m.confusion[c].sum() == mask.sum()
        assert m.accuracy == pytest.approx(np.mean(m.predictions == res.labels))
    # cosine needs equal dimensions: a problem where prompts live in the image space
    Pe = np.stack([X[y == c].mean(0) for c in range(6)])
    r2 = classify(X, Pe, y, seeds=12, methods="cosine")
    assert r2.methods[0].top1 >= 0.95
    # shuffled labels: at chance level (the methods really use the structure)
    ys = np.random.default_rng(0).permutation(y)
    r3 = classify(X, P, ys, seeds=18, methods="local-cka:linear")
    assert r3.methods[0].top1 < 0.45


def test_local_cka_scores_are_the_reference_setting():
    """score[i, c] = linear CKA of [x_i ; seed images] and [prompt c ; prompts of the seeds'
    classes], computed naively."""
    X, P, y = planted(n_per=8, noise=0.8)
    res = classify(X, P, y, seeds=12, methods="local-cka:linear", rng=1)
    seeds = res.seed_rows
    assert np.array_equal(np.sort(np.concatenate([seeds, res.query_rows])), np.arange(len(y)))
    m = res.methods[0]
    for k, c in [(0, 0), (3, 2), (17, 5), (30, 1)]:
        i = res.query_rows[k]
        want = _naive_linear_cka(np.vstack([X[i], X[seeds]]), np.vstack([P[c], P[y[seeds]]]))
        assert m.scores[k, c] == pytest.approx(want, abs=1e-10)


def test_top5_counts_rank_naively():
    X, P, y = planted(n_per=10, noise=2.5)
    res = classify(X, P, y, seeds=12, methods="relative")
    m = res.methods[0]
    ranks = [(-m.scores[k]).argsort().tolist().index(res.labels[k]) for k in range(res.n_queries)]
    assert m.top1 == pytest.approx(np.mean(np.asarray(ranks) < 1))
    assert m.top5 == pytest.approx(np.mean(np.asarray(ranks) < 5))
    assert 0.0 < m.top1 < m.top5 < 1.0      # noisy enough to tell them apart


def _brute_balanced(S):
    """The best assignment of q rows to C classes with every class getting q//C or q//C + 1
    rows (q % C of them the larger share), by enumeration."""
    q, C = S.shape
    best, arg = -np.inf, None
    for assign in itertools.product(range(C), repeat=q):
        counts = np.bincount(assign, minlength=C)
        if counts.min() < q // C or counts.max() > -(-q // C):
            continue
        tot = S[np.arange(q), assign].sum()
        if tot > best:
            best, arg = tot, np.asarray(assign)
    return best, arg


@pytest.mark.parametrize("q, C", [(6, 3), (7, 3), (5, 2), (6, 4)])
def test_balanced_assignment_equals_brute_force(q, C):
    rng = np.random.default_rng(q * 10 + C)
    S = rng.normal(size=(q, C))
    got = balanced_assignment(S)
    best, arg = _brute_balanced(S)
    assert S[np.arange(q), got].sum() == pytest.approx(best, abs=1e-12)
    assert np.array_equal(got, arg)
    counts = np.bincount(got, minlength=C)
    assert sorted(counts.tolist()) == sorted([q // C + (k < q % C) for k in range(C)])


def test_balanced_gives_exactly_n_over_c_per_class():
    X, P, y = planted(n_per=20)
    # skew the scores: without the balance constraint one class would take many images
    res = classify(X, P, y, seeds=24, methods="local-cka:linear,relative", balanced=True)
    q = res.n_queries
    assert q % 6 == 0
    for m in res.methods:
        assert np.bincount(m.predictions, minlength=6).tolist() == [q // 6] * 6
        assert m.balanced and m.accuracy >= 0.95
        assert m.top1 == pytest.approx(np.mean(m.scores.argmax(1) == res.labels))
    S = np.zeros((12, 3))
    S[:, 0] = 1.0                                         # every row prefers class 0
    assert np.bincount(balanced_assignment(S), minlength=3).tolist() == [4, 4, 4]


def test_seed_draw_is_balanced_and_reproducible():
    y = np.repeat(np.arange(5), [30, 12, 20, 9, 40])
    a = draw_seeds(y, 23, 5, rng=7)
    b = draw_seeds(y, 23, 5, rng=7)
    assert np.array_equal(a, b) and len(np.unique(a)) == 23
    counts = np.bincount(y[a], minlength=5)
    assert sorted(counts.tolist()) == [4, 4, 5, 5, 5]
    assert not np.array_equal(a, draw_seeds(y, 23, 5, rng=8))
    X, P, yy = planted()
    r1 = classify(X, P, yy, seeds=18, methods="local-cka:rbf,linreg", rng=5)
    r2 = classify(X, P, yy, seeds=18, methods="local-cka:rbf,linreg", rng=5)
    assert np.array_equal(r1.seed_rows, r2.seed_rows)
    r3 = classify(X, P, yy, seeds=r1.seed_rows[::-1], methods="local-cka:rbf,linreg")
    for m1, m2, m3 in zip(r1.methods, r2.methods, r3.methods, strict=True):
        assert np.array_equal(m1.scores, m2.scores)
        assert np.array_equal(m1.predictions, m2.predictions)
        assert np.array_equal(m1.scores, m3.scores)      # explicit rows: the same seeds
    with pytest.raises(InputError, match="distinct rows"):
        classify(X, P, yy, seeds=[3, 3, 4, 5, 6, 7])


def test_cross_domain_base():
    """Seeds from captioned pairs of another set: every image is scored."""
    rng = np.random.default_rng(4)
    C, p, d = 5, 14, 10
    cent = rng.normal(size=(C, p))
    A = rng.normal(size=(p, d))
    y = np.repeat(np.arange(C), 12)
    X = cent[y] + 0.3 * rng.normal(size=(len(y), p))
    P = cent @ A
    # the base: other images of the same concepts with their "captions"
    yb = rng.integers(0, C, size=40)
    BI = cent[yb] + 0.3 * rng.normal(size=(40, p))
    BT = cent[yb] @ A + 0.05 * rng.normal(size=(40, d))
    res = classify(X, P, y, base=(BT, BI), methods="local-cka:linear,linreg,relative")
    assert res.cross_domain and res.n_queries == len(y) and res.n_seeds == 40
    for m in res.methods:
        assert m.top1 >= 0.9, (m.name, m.top1)
    with pytest.raises(InputError, match="dimension 10 but the base text store has 9"):
        classify(X, P, y, base=(BT[:, :9], BI))
    with pytest.raises(InputError, match="knn"):
        classify(X, P, y, base=(BT, BI), methods="knn")


def test_label_resolution():
    cl = ["a", "b", "c"]
    assert resolve_labels(np.array([2, 0, 1]), cl).tolist() == [2, 0, 1]
    assert resolve_labels(np.array(["c", "a", "1"]), cl).tolist() == [2, 0, 1]
    with pytest.raises(InputError, match="'zebra' is not one of the 3 classes"):
        resolve_labels(np.array(["a", "zebra"]), cl)
    with pytest.raises(InputError, match="label 3 is not a class index 0..2"):
        resolve_labels(np.array([0, 3]), cl)


@pytest.mark.parametrize("kwargs, needle", [
    (dict(seeds=120), "leave none of the 120 images"),
    (dict(seeds=5), "cannot cover the 6 classes"),
    (dict(methods="faq"), "unknown method 'faq'"),
    (dict(methods="bogus"), "unknown method 'bogus'"),
    (dict(classes=["a", "b", "a", "c", "d", "e"]), "duplicate class name"),
    (dict(methods="cosine"), "same dimension"),
])
def test_library_bad_input(kwargs, needle):
    X, P, y = planted()
    with pytest.raises(InputError, match=needle):
        classify(X, P, y, **kwargs)


# ------------------------------------------------------------------------------- stores

def test_labels_dataset_round_trip(tmp_path):
    X = np.arange(12, dtype=np.float32).reshape(6, 2)
    ids = [f"i{k}" for k in range(6)]
    write_store(tmp_path / "a.h5", X, ids, labels=[3, 1, 0, 1, 3, 3])
    es = read_store(tmp_path / "a.h5")
    assert es.labels.dtype == np.int64 and es.labels.tolist() == [3, 1, 0, 1, 3, 3]
    assert read_store(tmp_path / "a.h5", ids=["i4", "i2"]).labels.tolist() == [3, 0]
    assert store_info(tmp_path / "a.h5")["labels"] == {
        "dtype": "int64", "n_classes": 3, "counts": {"0": 1, "1": 2, "3": 3}}
    write_store(f"{tmp_path / 'a.h5'}::/s", X, ids, labels=list("xyxyzz"))
    assert read_store(f"{tmp_path / 'a.h5'}::/s").labels.tolist() == list("xyxyzz")
    assert read_store(tmp_path / "a.h5").labels.tolist() == [3, 1, 0, 1, 3, 3]  # kept
    write_store(tmp_path / "b.h5", X, ids)
    assert read_store(tmp_path / "b.h5").labels is None
    assert store_info(tmp_path / "b.h5")["labels"] is None
    with pytest.raises(InputError, match="one label per row"):
        write_store(tmp_path / "c.h5", X, ids, labels=[1, 2])
    assert not (tmp_path / "c.h5").exists()
    # a NaN row dropped on write drops its label too
    Xn = X.copy()
    Xn[2, 0] = np.nan
    with pytest.warns(UserWarning):
        write_store(tmp_path / "d.h5", Xn, ids, labels=[0, 1, 2, 3, 4, 5], nonfinite="drop")
    assert read_store(tmp_path / "d.h5").labels.tolist() == [0, 1, 3, 4, 5]


def test_info_shows_labels(tmp_path, capsys):
    write_store(tmp_path / "a.h5", np.ones((4, 2)), labels=[0, 1, 1, 1])
    code, out, err = run(["info", tmp_path / "a.h5"], capsys)
    assert code == 0, err
    assert "labels" in out and "2 classes (int64): 0 x1, 1 x3" in out
    code, out, err = run(["--json", "info", tmp_path / "a.h5"], capsys)
    assert json.loads(out)["labels"]["counts"] == {"0": 1, "1": 3}


def test_labels_file_readers(tmp_path):
    ids = ["a", "b", "c"]
    np.save(tmp_path / "l.npy", np.array([1, 0, 1]))
    assert read_labels(tmp_path / "l.npy", ids).tolist() == [1, 0, 1]
    (tmp_path / "l.csv").write_text("id,label\nc,dog\na,cat\nb,dog\n")
    assert read_labels(tmp_path / "l.csv", ids).tolist() == ["cat", "dog", "dog"]
    (tmp_path / "l.txt").write_text("x\ny\nz\n\n")
    assert read_labels(tmp_path / "l.txt", ids).tolist() == ["x", "y", "z"]
    (tmp_path / "m.csv").write_text("a,cat\nb,dog\nzz,dog\n")
    with pytest.raises(InputError, match="labels/ids mismatch"):
        read_labels(tmp_path / "m.csv", ids)


# ------------------------------------------------------------------------------- CLI

@pytest.fixture
def cli_data(tmp_path):
    """An image store with labels, one without, a prompt store (ids = classes), a classes file."""
    X, P, y = planted()
    ids = [f"img{k:03d}" for k in range(len(y))]
    write_store(tmp_path / "img.h5", X, ids, modality="image", labels=y)
    write_store(tmp_path / "nolab.h5", X, ids, modality="image")
    write_store(tmp_path / "prompts.h5", P, CLASSES, modality="text")
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return tmp_path, X, P, y, ids


def test_cli_classify_writes_results(cli_data, capsys):
    tmp, X, P, y, ids = cli_data
    out_dir = tmp / "out"
    code, out, err = run(["classify", tmp / "img.h5", "--prompts", tmp / "prompts.h5",
                          "--classes", tmp / "classes.txt", "--seeds", "18", "--methods",
                          "local-cka:linear,knn", "-o", out_dir], capsys)
    assert code == 0, err
    assert "local-cka/linear" in out and "confusion of local-cka/linear" in out
    lib = classify(X, P, y, classes=CLASSES, seeds=18, methods="local-cka:linear,knn")
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == sorted(["summary.csv", "per_class.csv", "predictions.csv",
                            "confusion_local-cka-linear.csv", "confusion_local-cka-linear.png",
                            "confusion_knn.csv", "confusion_knn.png"])
    rows = (out_dir / "confusion_local-cka-linear.csv").read_text().splitlines()
    assert rows[0].split(",")[1:] == CLASSES
    conf = np.array([[int(v) for v in r.split(",")[1:]] for r in rows[1:]])
    assert np.array_equal(conf, lib.methods[0].confusion)
    from fastcka.report import read_confusion  # the layout `fastcka report DIR` reads

    names, M = read_confusion(out_dir / "confusion_local-cka-linear.csv")
    assert names == CLASSES and np.array_equal(M, lib.methods[0].confusion)
    preds = (out_dir / "predictions.csv").read_text().splitlines()
    assert preds[0] == "id,class,local-cka/linear,knn" and len(preds) == 1 + lib.n_queries
    first = preds[1].split(",")
    assert first[0] == ids[lib.query_rows[0]] and first[1] == CLASSES[y[lib.query_rows[0]]]
    assert (out_dir / "confusion_knn.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --json: the common header, then the library's numbers
    code, out, err = run(["--json", "classify", tmp / "img.h5", "--prompts", tmp / "prompts.h5",
                          "--seeds", "18", "--methods", "local-cka:linear,knn"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["command"] == "classify" and list(doc)[:6] == ["command", "version", "device",
                                                              "seconds", "inputs", "outputs"]
    assert doc["classes"] == CLASSES          # prompt store ids are the classes
    assert [m["top1"] for m in doc["methods"]] == [m.top1 for m in lib.methods]
    assert doc["methods"][0]["confusion"] == lib.methods[0].confusion.tolist()


def test_cli_same_seed_same_output(cli_data, capsys):
    tmp = cli_data[0]
    argv = ["classify", tmp / "img.h5", "--prompts", tmp / "prompts.h5", "--seeds", "13",
            "--methods", "local-cka:rbf,relative", "--seed", "4"]
    docs = []
    for k in range(2):
        code, out, err = run(["--json", *argv, "-o", tmp / f"o{k}"], capsys)
        assert code == 0, err
        d = json.loads(out)
        for key in ("seconds", "outputs", "files"):
            d.pop(key)
        for m in d["methods"]:
            m.pop("seconds")
        docs.append(d)
    assert docs[0] == docs[1]
    for name in ("predictions.csv", "per_class.csv", "confusion_relative.csv"):
        assert (tmp / "o0" / name).read_bytes() == (tmp / "o1" / name).read_bytes()
    code, out, _ = run(["--json", *argv[:-1], "5"], capsys)
    assert json.loads(out)["methods"] != docs[0]["methods"]


def test_cli_balanced(cli_data, capsys):
    tmp, X, P, y, _ = cli_data
    code, out, err = run(["--json", "classify", tmp / "img.h5", "--prompts", tmp / "prompts.h5",
                          "--seeds", "24", "--methods", "relative", "--balanced"], capsys)
    assert code == 0, err
    m = json.loads(out)["methods"][0]
    assert [sum(r) for r in zip(*m["confusion"], strict=True)] == [16] * 6   # column sums


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("transformers")
    from _tiny_models import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny-classify"))


def test_cli_encoder_prompts_and_templates(cli_data, tiny, capsys):
    """Prompts embedded by a (tiny, local) text encoder: several templates are averaged."""
    from fastcka.classify import class_prompts
    from fastcka.encoders import get_encoder

    tmp, X, P, y, _ = cli_data
    bert = tiny["bert"]
    enc = get_encoder(str(bert), "text", device="cpu")
    t1, t2 = "a photo of a {}.", "a small {} in the background"
    both = class_prompts(CLASSES, enc, [t1, t2])
    one = [class_prompts(CLASSES, enc, [t]) for t in (t1, t2)]
    assert np.allclose(both, (one[0] + one[1]) / 2, atol=1e-6)
    direct = enc.infer(enc.prepare([t1.format("dog")]))[0]
    assert np.allclose(one[0][1], direct, atol=1e-6)
    code, out, err = run(["--json", "classify", tmp / "img.h5", "--classes", tmp / "classes.txt",
                          "--encoder", bert, "--template", t1, "--template", t2, "--seeds", "12",
                          "--methods", "linreg"], capsys)
    assert code == 0, err
    lib = classify(X, both, y, seeds=12, methods="linreg")
    assert json.loads(out)["methods"][0]["top1"] == pytest.approx(lib.methods[0].top1)


def _bad(tmp, capsys, argv, *needles):
    out_dir = tmp / "bad-out"
    code, out, err = run([*argv, "-o", out_dir], capsys)
    assert_one_line_error(code, err, *needles)
    assert not out_dir.exists()
    assert not [p for p in tmp.iterdir() if p.name.startswith(".bad-out")]


def test_cli_bad_input(cli_data, capsys):
    tmp, X, P, y, ids = cli_data
    img, pr = tmp / "img.h5", tmp / "prompts.h5"
    (tmp / "dup.txt").write_text("cat\ndog\ncat\n")
    _bad(tmp, capsys, ["classify", img, "--classes", tmp / "dup.txt", "--prompts", pr],
         "duplicate class name", "'cat'")
    _bad(tmp, capsys, ["classify", tmp / "nolab.h5", "--prompts", pr], "has no labels")
    (tmp / "short.txt").write_text("cat\n" * 50)
    _bad(tmp, capsys, ["classify", img, "--prompts", pr, "--labels", tmp / "short.txt"],
         "labels/ids mismatch", "50 lines")
    (tmp / "lab.csv").write_text("".join(f"{i},cat\n" for i in ids[:-1]) + "ghost,dog\n")
    _bad(tmp, capsys, ["classify", img, "--prompts", pr, "--labels", tmp / "lab.csv"],
         "labels/ids mismatch")
    _bad(tmp, capsys, ["classify", img, "--prompts", pr, "--seeds", "120"], "120 seeds")
    _bad(tmp, capsys, ["classify", img, "--prompts", pr, "--seeds", "500"], "500 seeds")
    _bad(tmp, capsys, ["classify", img, "--prompts", pr, "--seeds", "4"], "cover the 6 classes")
    _bad(tmp, capsys, ["classify", img, "--prompts", pr, "--methods", "local-cka,nope"],
         "unknown method 'nope'")
    # cross-domain base: text dimension differs from the prompts'; no common ids
    rng = np.random.default_rng(0)
    bids = [f"b{k}" for k in range(30)]
    write_store(tmp / "bt.h5", rng.normal(size=(30, 11)), bids, modality="text")
    write_store(tmp / "bi.h5", rng.normal(size=(30, X.shape[1])), bids, modality="image")
    write_store(tmp / "bi2.h5", rng.normal(size=(30, X.shape[1])),
                [f"z{k}" for k in range(30)], modality="image")
    _bad(tmp, capsys, ["classify", img, "--prompts", pr, "--base", tmp / "bt.h5", tmp / "bi.h5"],
         "dimension 12", "base text store", "11")
    _bad(tmp, capsys, ["classify", img, "--prompts", pr, "--base", tmp / "bt.h5",
                       tmp / "bi2.h5"], "only 0 ids are common")
    _bad(tmp, capsys, ["classify", img, "--prompts", pr, "--template", "x {}"], "not both")
    _bad(tmp, capsys, ["classify", img], "--classes")
    _bad(tmp, capsys, ["classify", img, "--classes", tmp / "classes.txt", "--template", "no slot"],
         "exactly one '{}'")


# ------------------------------------------------------------------------------- embed labels

def test_embed_image_stores_labels_of_npy_and_image_folder(tmp_path, tiny, capsys):
    from PIL import Image

    vit = tiny["vit"]
    rng = np.random.default_rng(0)
    arr = (rng.random((6, 12, 12)) * 255).astype(np.uint8)
    np.save(tmp_path / "x_images.npy", arr)
    np.save(tmp_path / "x_labels.npy", np.array([2, 0, 1, 1, 0, 2]))
    code, _, err = run(["embed", "image", tmp_path / "x_images.npy", "-o", tmp_path / "n.h5",
                        "--encoder", vit, "-q"], capsys)
    assert code == 0, err
    es = read_store(tmp_path / "n.h5")
    assert es.ids.tolist() == [str(i) for i in range(6)]
    assert es.labels.tolist() == [2, 0, 1, 1, 0, 2]
    tree = tmp_path / "tree"
    for cls, k in (("cat", 2), ("dog", 3)):
        (tree / cls).mkdir(parents=True)
        for i in range(k):
            Image.fromarray((rng.random((10, 10, 3)) * 255).astype(np.uint8)).save(
                tree / cls / f"{i}.png")
    code, _, err = run(["embed", "image", tree, "-o", tmp_path / "t.h5", "--encoder", vit, "-q"],
                       capsys)
    assert code == 0, err
    es = read_store(tmp_path / "t.h5")
    assert es.ids.tolist() == ["cat/0.png", "cat/1.png", "dog/0.png", "dog/1.png", "dog/2.png"]
    assert es.labels.tolist() == ["cat", "cat", "dog", "dog", "dog"]
    # unlabelled sources stay without labels
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(arr[0]).save(flat / "a.png")
    Image.fromarray(arr[1]).save(flat / "b.png")
    code, _, err = run(["embed", "image", flat, "-o", tmp_path / "f.h5", "--encoder", vit, "-q"],
                       capsys)
    assert code == 0, err
    assert read_store(tmp_path / "f.h5").labels is None


# ------------------------------------------------------------------------------- real data

@pytest.fixture(scope="session")
def fashion_store(shared_data, tmp_path_factory):
    """The 1000 Fashion-MNIST images embedded once by efficientnet-lite0, labels included."""
    src = shared_data / "fashion-mnist" / "test1000_images.npy"
    if not src.exists():
        pytest.skip(f"Fashion-MNIST subset absent: {src}")
    pytest.importorskip("efficientnet_lite_pytorch")
    from fastcka.datasets import read_images
    from fastcka.encoders import embed_images, get_encoder

    out = tmp_path_factory.mktemp("fashion") / "fm.h5"
    embed_images(read_images(src), get_encoder("efficientnet-lite0", "image", device="cpu"),
                 str(out), show_progress=False)
    return out


def test_fashion_mnist_50_seeds(fashion_store, shared_data, capsys):
    """The done-when run: local CKA well above chance (0.1) with 50 labelled seeds, and the
    nearest-neighbour reference on the same seeds in the same run."""
    pytest.importorskip("transformers")
    fm = shared_data / "fashion-mnist"
    es = read_store(fashion_store)
    assert np.array_equal(es.labels, np.load(fm / "test1000_labels.npy"))   # labels travelled
    code, out, err = run(["--json", "classify", fashion_store, "--classes", fm / "classes.txt",
                          "--seeds", "50", "--methods", "local-cka:linear,local-cka:rbf,knn"],
                         capsys)
    assert code == 0, err
    doc = json.loads(out)
    top1 = {m["name"]: m["top1"] for m in doc["methods"]}
    assert doc["n_queries"] == 950 and doc["n_seeds"] == 50
    assert top1["local-cka/linear"] >= 0.6 and top1["local-cka/rbf/paper"] >= 0.6, top1
    assert top1["knn"] > 0.3, top1
    conf = np.asarray(doc["methods"][0]["confusion"])
    assert conf.shape == (10, 10) and conf.sum() == 950
