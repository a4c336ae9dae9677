"""Dataset readers: ids preserved, captions grouped, formats and their errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from fastcka.datasets import ImageRecord, load_image, names_file_for, read_images, read_texts
from fastcka.errors import InputError


def _png(path, value=0, size=(5, 4)):
    Image.new("RGB", size, (value, value, value)).save(path)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("b.png", "a.png", "c.jpg"):
        _png(tmp_path / "images" / name, 10)
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    with open(tmp_path / "captions.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "caption"])
        w.writerows([("b.png", "a dog, running"), ("a.png", 'a "quoted" cat'), ("b.png", "second")])
    return tmp_path


def test_image_folder_sorted_by_name(folder):
    recs = read_images(folder / "images")
    assert [r.id for r in recs] == ["a.png", "b.png", "c.jpg"]
    assert read_images(folder) == recs  # a folder with images/ inside
    assert [r.id for r in read_images(folder / "images", limit=2)] == ["a.png", "b.png"]
    with pytest.raises(InputError, match="limit"):
        read_images(folder, limit=0)


def test_table_images_dedup_and_resolve(folder):
    recs = read_images(folder / "captions.csv")
    assert [r.id for r in recs] == ["b.png", "a.png"]
    assert recs[0].path == folder / "images" / "b.png"
    assert load_image(recs[0]).size == (5, 4)


def test_csv_captions_are_parsed_as_csv(folder):
    recs = read_texts(folder / "captions.csv")
    assert [(r.id, r.captions) for r in recs] == [("b.png", ("a dog, running", "second")),
                                                 ("a.png", ('a "quoted" cat',))]
    assert read_texts(folder) == recs  # a folder with captions.csv


def test_tsv_language_columns(tmp_path):
    p = tmp_path / "m.tsv"
    p.write_text('image\ten\tde\nx.jpg\ta "dog"\tein Hund\ny.jpg\ta cat\teine Katze\n', encoding="utf-8")
    assert [r.captions for r in read_texts(p, lang="de")] == [("ein Hund",), ("eine Katze",)]
    assert read_texts(p, lang="en")[0].captions == ('a "dog"',)  # quotes kept in TSV
    with pytest.raises(InputError, match="choose one with --lang"):
        read_texts(p)
    with pytest.raises(InputError, match="no column for language 'fr'"):
        read_texts(p, lang="fr")


def test_jsonl_with_caption_lists(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"file_name": "1.jpg", "captions": ["one", "uno"]}) + "\n\n"
                 + json.dumps({"file_name": "2.jpg", "captions": "two"}) + "\n")
    assert [(r.id, r.captions) for r in read_texts(p)] == [("1.jpg", ("one", "uno")), ("2.jpg", ("two",))]
    assert [r.id for r in read_images(p)] == ["1.jpg", "2.jpg"]
    p.write_text("{not json\n")
    with pytest.raises(InputError, match="line 1 is not valid JSON"):
        read_texts(p)


def test_coco_captions(tmp_path):
    data = {"images": [{"id": 7, "file_name": "COCO_7.jpg"}, {"id": 3, "file_name": "COCO_3.jpg"}],
            "annotations": [{"image_id": 3, "caption": "b"}, {"image_id": 7, "caption": "a1"},
                            {"image_id": 7, "caption": "a2 "}]}
    p = tmp_path / "captions_val.json"
    p.write_text(json.dumps(data))
    assert [r.id for r in read_images(p)] == ["COCO_7.jpg", "COCO_3.jpg"]
    assert [(r.id, r.captions) for r in read_texts(p)] == [("COCO_3.jpg", ("b",)),
                                                          ("COCO_7.jpg", ("a1", "a2"))]
    data["annotations"].append({"image_id": 99, "caption": "x"})
    p.write_text(json.dumps(data))
    with pytest.raises(InputError, match="unknown image_id 99"):
        read_texts(p)


def test_line_aligned_files_with_lang_and_ids(tmp_path):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    (tmp_path / "A" / "test_en.txt").write_text("a dog\na cat\n")
    (tmp_path / "B" / "test_de.txt").write_text("ein Hund\neine Katze\n")
    (tmp_path / "ids.txt").write_text("img1.jpg\nimg2.jpg\n")
    de = read_texts(tmp_path, lang="de")
    assert [(r.id, r.captions) for r in de] == [("0", ("ein Hund",)), ("1", ("eine Katze",))]
    en = read_texts(tmp_path, lang="en", ids_file=tmp_path / "ids.txt")
    assert [r.id for r in en] == ["img1.jpg", "img2.jpg"]
    with pytest.raises(InputError, match="no file for language 'fr'.*de, en"):
        read_texts(tmp_path, lang="fr")
    (tmp_path / "ids.txt").write_text("only-one\n")
    with pytest.raises(InputError, match="has 1 lines but"):
        read_texts(tmp_path / "A" / "test_en.txt", ids_file=tmp_path / "ids.txt")


def _xtd_tree(root, names=("COCO_b.jpg", "COCO_a.jpg", "COCO_c.jpg")):
    """A tiny XTD10 layout: XTD10/ (en, es, names), MIC/ (de), STAIR/ (jp); line i = one caption."""
    caps = {"XTD10/test_1kcaptions_en.txt": ["a dog", "a cat", "a bird"],
            "XTD10/test_1kcaptions_es.txt": ["un perro", "un gato", "un pájaro"],
            "MIC/test_1kcaptions_de.txt": ["ein Hund", "eine Katze", "ein Vogel"],
            "STAIR/test_1kcaptions_jp.txt": ["犬", "猫", "鳥"]}
    for rel, lines in caps.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "XTD10" / "test_image_names.txt").write_text("\n".join(names) + "\n")
    return caps, list(names)


def test_xtd_ids_from_names_file_pair_languages(tmp_path):
    caps, names = _xtd_tree(tmp_path)
    by_lang = {}
    for lang in ("en", "es", "de", "jp"):       # the folder + --lang, as `embed text xtd10 --lang`
        recs = read_texts(tmp_path, lang=lang)
        assert [r.id for r in recs] == names, lang
        by_lang[lang] = {r.id: r.captions[0] for r in recs}
        assert names_file_for(tmp_path, lang) == tmp_path / "XTD10" / "test_image_names.txt"
    # two languages pair by id: the same id holds line i of each file
    for i, name in enumerate(names):
        assert by_lang["en"][name] == caps["XTD10/test_1kcaptions_en.txt"][i]
        assert by_lang["de"][name] == caps["MIC/test_1kcaptions_de.txt"][i]
    # a file named directly takes the names file too; an explicit ids file wins
    assert [r.id for r in read_texts(tmp_path / "MIC" / "test_1kcaptions_de.txt")] == names
    (tmp_path / "ids.txt").write_text("x\ny\nz\n")
    assert [r.id for r in read_texts(tmp_path, lang="de", ids_file=tmp_path / "ids.txt")] == \
        ["x", "y", "z"]
    # a .txt that names no language, or a folder without a names file: line numbers
    (tmp_path / "XTD10" / "notes.txt").write_text("p\nq\n")
    assert names_file_for(tmp_path / "XTD10" / "notes.txt") is None
    assert [r.id for r in read_texts(tmp_path / "XTD10" / "notes.txt")] == ["0", "1"]
    (tmp_path / "XTD10" / "test_image_names.txt").unlink()
    assert names_file_for(tmp_path, "de") is None
    assert [r.id for r in read_texts(tmp_path, lang="de")] == ["0", "1", "2"]


def test_xtd_names_file_of_other_length_and_wrong_lang(tmp_path):
    _xtd_tree(tmp_path, names=("only.jpg", "two.jpg"))
    with pytest.raises(InputError, match="test_image_names.txt has 2 lines but .* has 3"):
        read_texts(tmp_path, lang="en")
    with pytest.raises(InputError, match="--lang 'fr' does not match .*holds language 'de'"):
        read_texts(tmp_path / "MIC" / "test_1kcaptions_de.txt", lang="fr")
    (tmp_path / "c.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}],
                                                 "annotations": [{"image_id": 1, "caption": "x"}]}))
    with pytest.raises(InputError, match="--lang 'de' does not apply"):
        read_texts(tmp_path / "c.json", lang="de")


def test_npy_grayscale_array_to_rgb(tmp_path):
    imgs = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    np.save(tmp_path / "x_images.npy", imgs)
    np.save(tmp_path / "x_labels.npy", np.array([2, 0, 1]))
    recs = read_images(tmp_path / "x_images.npy")
    assert [r.id for r in recs] == ["0", "1", "2"] and [r.label for r in recs] == [2, 0, 1]
    rgb = np.asarray(load_image(recs[1]))
    assert rgb.shape == (4, 5, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], imgs[1])
    np.save(tmp_path / "bad.npy", np.zeros((3, 4)))
    with pytest.raises(InputError, match="expected N x H x W"):
        read_images(tmp_path / "bad.npy")


def test_bad_sources(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_images(tmp_path / "nope")
    (tmp_path / "x.csv").write_text("foo,bar\n1,2\n")
    with pytest.raises(InputError, match="no image column"):
        read_images(tmp_path / "x.csv")
    with pytest.raises(InputError, match="--image-column"):
        read_texts(tmp_path / "x.csv")
    (tmp_path / "e").mkdir()
    with pytest.raises(InputError, match="holds no image files"):
        read_images(tmp_path / "e")
    (tmp_path / "f.xyz").write_text("")
    with pytest.raises(InputError, match="unknown format"):
        read_images(tmp_path / "f.xyz")
    with pytest.raises(OSError):
        load_image(ImageRecord("gone.png", path=tmp_path / "gone.png"))


def test_shared_flickr8k_readers(shared_data):
    ids = (shared_data / "embeddings" / "flickr8k_ids.txt").read_text().split()
    imgs = read_images(shared_data / "flickr8k")
    assert [r.id for r in imgs] == ids  # sorted file names == the reference id list
    caps = read_texts(shared_data / "flickr8k")
    assert len(caps) == 1000 and all(len(r.captions) == 5 for r in caps)
    # captions.csv quotes captions with commas; the reader unquotes them like csv does
    with open(shared_data / "flickr8k" / "captions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(c for r in caps for c in r.captions) == sorted(r["caption"].strip() for r in rows)
    de = read_texts(shared_data / "flickr8k", lang="de")
    assert len(de) == 937 and set(r.id for r in de) <= set(ids)


def test_shared_xtd_and_fashion_mnist(shared_data):
    xtd = shared_data / "xtd10"
    names = (xtd / "XTD10" / "test_image_names.txt").read_text().split()
    for lang in ("en", "de", "jp"):   # XTD10, MIC and STAIR files: ids from the names file
        recs = read_texts(xtd, lang=lang)
        assert len(recs) == 1000 and [r.id for r in recs] == names
    recs = read_texts(xtd, lang="es", ids_file=xtd / "XTD10" / "test_image_names.txt")
    assert recs[0].id == names[0]
    fm = read_images(shared_data / "fashion-mnist" / "test1000_images.npy")
    labels = np.load(shared_data / "fashion-mnist" / "test1000_labels.npy")
    assert len(fm) == 1000 and [r.label for r in fm[:20]] == labels[:20].tolist()
    assert load_image(fm[0]).mode == "RGB" and load_image(fm[0]).size == (28, 28)
