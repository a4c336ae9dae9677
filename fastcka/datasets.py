"""Dataset readers for the encoder stage: image and caption sources -> records with ids.

Image sources (:func:`read_images`), the id is the image's file name as written in the source:

- a folder of images (``*.jpg|jpeg|png|bmp|gif|webp|tif|tiff``, sorted by name; a folder with no
  images but an ``images/`` sub-folder, e.g. ``flickr8k/``, reads that); a folder with no images
  but class sub-folders (an ImageFolder tree ``root/<class>/<image>``) gives ids
  ``<class>/<file>`` and the class as each image's label;
- CSV/TSV/JSONL with an image column (``image``, ``image_id``, ``file_name``, ``filename``,
  ``path``; or ``image_column``); paths resolve against ``images_dir``, the file's folder, or
  its ``images/`` sub-folder; an image listed on several rows is read once;
- COCO captions JSON (``images[].file_name``);
- a ``.npy`` image array (N x H x W grayscale or N x H x W x 3, uint8 or float in [0, 1]), e.g.
  the Fashion-MNIST subset; ids are the row indices; labels from ``<name with images->labels>.npy``
  when present.

Caption sources (:func:`read_texts`), one record per image id with all its captions:

- CSV/TSV/JSONL with an image column and a caption column (``caption``, ``text``, ``sentence``,
  ``captions``; or ``caption_column``; or the column named by ``lang`` as in ``multi30k.tsv``);
- COCO captions JSON (``annotations[].caption`` joined to ``images[].file_name``);
- the Flickr8k folder (``captions.csv``; ``multi30k.tsv`` when ``lang`` is given);
- line-aligned text files (XTD): ``file.txt``, or a folder plus ``lang`` (``*_<lang>.txt``);
  the id is line i of ``ids_file``; without one, line i of the XTD names file
  ``test_image_names.txt`` when the file is named ``*_<lang>.txt`` and such a names file sits in
  its folder or in a sibling folder (the XTD10 layout: ``XTD10/``, ``MIC/``, ``STAIR/``), so
  stores of different languages pair by id; otherwise the 0-based line number.

Readers only list records; images are decoded later by :func:`load_image` in the workers.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
IMAGE_COLUMNS = ("image", "image_id", "file_name", "filename", "image_path", "path", "img")
CAPTION_COLUMNS = ("caption", "text", "sentence", "captions", "raw")
TABLE_EXTS = (".csv", ".tsv", ".jsonl", ".ndjson")


@dataclass(frozen=True)
class ImageRecord:
    """One image: its id and where its pixels are (a file path or an in-memory array)."""

    id: str
    path: Path | None = None
    array: np.ndarray | None = field(default=None, compare=False, repr=False)
    label: Any = None


@dataclass(frozen=True)
class TextRecord:
    """One item of the text side: an id and its caption(s) (several for one image)."""

    id: str
    captions: tuple[str, ...]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _exists(source: str | Path, what: str) -> Path:
    p = Path(source).expanduser()
    if not p.exists():
        raise InputError(f"{what} {source} does not exist")
    return p


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")


def _rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV/TSV (header required) or JSONL file as dicts."""
    suf = path.suffix.lower()
    try:
        if suf in (".jsonl", ".ndjson"):
            rows = []
            with open(path, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise InputError(f"{path}: line {lineno} is not valid JSON ({exc.msg})") from None
                    if not isinstance(obj, dict):
                        raise InputError(f"{path}: line {lineno} is not a JSON object")
                    rows.append(obj)
            return rows
        with open(path, encoding="utf-8-sig", newline="") as fh:  # a UTF-8 BOM is not a header
            delim = "\t" if suf == ".tsv" else ","
            reader = csv.DictReader(fh, delimiter=delim,
                                    quoting=csv.QUOTE_NONE if suf == ".tsv" else csv.QUOTE_MINIMAL)
            if reader.fieldnames is None:
                raise InputError(f"{path} is empty (a header row is required)")
            rows = []
            for row in reader:
                if None in row:  # more fields than the header names
                    raise InputError(f"{path} line {reader.line_num}: "
                                     f"{len(reader.fieldnames) + len(row[None])} fields, the header "
                                     f"has {len(reader.fieldnames)}")
                rows.append(row)
            return rows
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text ({exc.reason})") from None


def _pick_column(columns: Iterable[str], wanted: str | None, candidates: tuple[str, ...],
                 path: Path, what: str) -> str:
    cols = list(columns)
    if wanted is not None:
        if wanted not in cols:
            raise InputError(f"{path} has no {what} column {wanted!r} (columns: {', '.join(cols)})")
        return wanted
    lower = {c.lower(): c for c in cols}
    for c in candidates:
        if c in lower:
            return lower[c]
    raise InputError(f"{path} has no {what} column (looked for {', '.join(candidates)}; columns: "
                     f"{', '.join(cols)}); name it with --{what}-column")


def _columns(rows: list[dict], path: Path) -> list[str]:
    if not rows:
        raise InputError(f"{path} has no data rows")
    cols: dict[str, None] = {}
    for r in rows[:100]:
        cols.update(dict.fromkeys(r))
    return list(cols)


def _resolver(base: Path, images_dir: str | Path | None):
    roots = [Path(images_dir).expanduser()] if images_dir else [base, base / "images"]

    def resolve(name: str) -> Path:
        for root in roots:
            cand = root / name
            if cand.is_file():
                return cand
        return roots[0] / name  # missing: reported (by id) when it is decoded

    return resolve


def _image_id(value: Any) -> str:
    s = str(value).strip()
    if not s:
        raise InputError("an image column holds an empty value")
    return s


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------

def read_images(source: str | Path, *, image_column: str | None = None,
                images_dir: str | Path | None = None, limit: int | None = None) -> list[ImageRecord]:
    """List the images of ``source`` (folder, table, COCO JSON or ``.npy``) with their ids.

    Parameters
    ----------
    source : path
        See the module docstring for the formats.
    image_column : str, optional
        Column holding the image file name (tables).
    images_dir : path, optional
        Folder the image names are relative to (default: the table's folder, then ``images/``).
    limit : int, optional
        Keep the first ``limit`` records.

    Returns
    -------
    list of ImageRecord
        In source order (folders: sorted by name); ids unique.
    """
    p = _exists(source, "image source")
    if p.is_dir():
        recs = _images_from_folder(p)
    else:
        suf = p.suffix.lower()
        if suf == ".npy":
            recs = _images_from_npy(p)
        elif suf == ".json":
            recs = _images_from_coco(p, images_dir)
        elif suf in TABLE_EXTS:
            rows = _rows(p)
            col = _pick_column(_columns(rows, p), image_column, IMAGE_COLUMNS, p, "image")
            resolve = _resolver(p.parent, images_dir)
            seen: dict[str, ImageRecord] = {}
            for r in rows:
                if r.get(col) in (None, ""):
                    continue
                i = _image_id(r[col])
                if i not in seen:
                    seen[i] = ImageRecord(i, path=resolve(i))
            recs = list(seen.values())
        elif _is_image(p):
            recs = [ImageRecord(p.name, path=p)]
        else:
            raise InputError(f"image source {p}: unknown format (expected a folder, .csv, .tsv, "
                             ".jsonl, COCO .json, .npy or an image file)")
    if not recs:
        raise InputError(f"image source {p} lists no images")
    return _limit(recs, limit)


def _limit(recs: list, limit: int | None) -> list:
    if limit is None:
        return recs
    if limit < 1:
        raise InputError(f"limit must be a positive integer, got {limit}")
    return recs[:limit]


def _images_from_folder(p: Path) -> list[ImageRecord]:
    files = sorted(f for f in p.iterdir() if _is_image(f))
    if not files and (p / "images").is_dir():
        files = sorted(f for f in (p / "images").iterdir() if _is_image(f))
    if not files:
        tree = _image_folder_tree(p)
        if tree:
            return tree
    if not files:
        raise InputError(f"image folder {p} holds no image files ({', '.join(IMAGE_EXTS)})")
    return [ImageRecord(f.name, path=f) for f in files]


def _image_folder_tree(p: Path) -> list[ImageRecord]:
    """An ImageFolder tree ``root/<class>/<image>``: id ``<class>/<file>``, label ``<class>``."""
    recs = []
    for sub in sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith(".")):
        recs += [ImageRecord(f"{sub.name}/{f.name}", path=f, label=sub.name)
                 for f in sorted(f for f in sub.iterdir() if _is_image(f))]
    return recs


def _images_from_npy(p: Path) -> list[ImageRecord]:
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"{p}: not a readable .npy array ({' '.join(str(exc).split())})") from None
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (1, 3, 4)):
        raise InputError(f"{p}: expected N x H x W (grayscale) or N x H x W x C images, got shape "
                         f"{arr.shape}")
    if arr.dtype.kind not in "uif":
        raise InputError(f"{p}: image array must be numeric, got dtype {arr.dtype}")
    labels = None
    lab = p.with_name(p.name.replace("images", "labels")) if "images" in p.name else None
    if lab is not None and lab.is_file():
        labels = np.load(lab, allow_pickle=False)
        if len(labels) != len(arr):
            raise InputError(f"{lab} has {len(labels)} labels for {len(arr)} images")
    return [ImageRecord(str(i), array=arr[i], label=None if labels is None else labels[i].item())
            for i in range(arr.shape[0])]


def _load_coco(p: Path) -> dict:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "images" not in data:
        raise InputError(f"{p}: not a COCO captions file (no 'images' list)")
    return data


def _coco_names(data: dict, p: Path) -> dict[Any, str]:
    names = {}
    for im in data["images"]:
        if "file_name" not in im or "id" not in im:
            raise InputError(f"{p}: a COCO image entry lacks 'id' or 'file_name'")
        names[im["id"]] = str(im["file_name"])
    return names


def _images_from_coco(p: Path, images_dir) -> list[ImageRecord]:
    names = _coco_names(_load_coco(p), p)
    resolve = _resolver(p.parent, images_dir)
    return [ImageRecord(n, path=resolve(n)) for n in dict.fromkeys(names.values())]


def load_image(rec: ImageRecord):
    """Decode one record to an RGB ``PIL.Image`` (grayscale arrays are replicated to RGB).

    Raises ``OSError``/``ValueError`` for an unreadable file (the caller reports it by id).
    """
    from PIL import Image

    if rec.array is not None:
        a = np.asarray(rec.array)
        if a.dtype.kind == "f":
            a = np.clip(a * 255.0 if a.max() <= 1.0 else a, 0, 255)
        a = a.astype(np.uint8)
        if a.ndim == 3 and a.shape[-1] == 1:
            a = a[..., 0]
        return Image.fromarray(a).convert("RGB")
    with Image.open(rec.path) as im:
        im.load()
        return im.convert("RGB")


# --------------------------------------------------------------------------------------------
# captions
# --------------------------------------------------------------------------------------------

def read_texts(source: str | Path, *, lang: str | None = None, caption_column: str | None = None,
               image_column: str | None = None, ids_file: str | Path | None = None,
               limit: int | None = None) -> list[TextRecord]:
    """List the captions of ``source`` grouped by id (see the module docstring for formats).

    Parameters
    ----------
    source : path
    lang : str, optional
        Language: the caption column of a multilingual table (``multi30k.tsv``), or the
        ``*_<lang>.txt`` file of a folder of line-aligned files (XTD).
    caption_column, image_column : str, optional
        Column names of a table (defaults: see ``CAPTION_COLUMNS`` / ``IMAGE_COLUMNS``).
    ids_file : path, optional
        Line-aligned files: line i of this file is the id of caption line i.
    limit : int, optional
        Keep the first ``limit`` ids.

    Returns
    -------
    list of TextRecord
        One per id, in order of first appearance, with every caption of that id.
    """
    p = _exists(source, "caption source")
    if p.is_dir():
        p = _text_file_in_folder(p, lang)
    suf = p.suffix.lower()
    if ids_file is not None and suf != ".txt":
        raise InputError(f"an ids file applies to line-aligned .txt caption files; {p} names its "
                         f"ids itself")
    if suf == ".txt":
        _check_file_lang(p, lang)
        recs = _texts_from_lines(p, ids_file if ids_file is not None else names_file_for(p))
    elif suf == ".json":
        if lang is not None:
            raise InputError(f"--lang {lang!r} does not apply to {p}: a COCO captions file has one "
                             "language (languages come from a multilingual table column or "
                             "*_<lang>.txt files)")
        recs = _texts_from_coco(p)
    elif suf in TABLE_EXTS:
        recs = _texts_from_table(p, lang, caption_column, image_column)
    else:
        raise InputError(f"caption source {p}: unknown format (expected .csv, .tsv, .jsonl, COCO "
                         ".json, .txt or a folder)")
    if not recs:
        raise InputError(f"caption source {p} lists no captions")
    return _limit(recs, limit)


def _text_file_in_folder(p: Path, lang: str | None) -> Path:
    if lang:
        if (p / "multi30k.tsv").is_file():
            return p / "multi30k.tsv"
        hits = sorted(p.rglob(f"*_{lang}.txt"))
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise InputError(f"caption folder {p} has several files for language {lang!r}: "
                             f"{', '.join(str(h) for h in hits)}")
        langs = sorted({h.stem.rsplit("_", 1)[-1] for h in p.rglob("*_*.txt")})
        raise InputError(f"caption folder {p} has no file for language {lang!r}"
                         + (f" (languages: {', '.join(langs)})" if langs else ""))
    for name in ("captions.csv", "captions.tsv", "captions.jsonl", "captions.json"):
        if (p / name).is_file():
            return p / name
    raise InputError(f"caption folder {p} has no captions.csv/.tsv/.jsonl/.json; name the file, "
                     "or give --lang for multilingual folders")


NAMES_FILE = "test_image_names.txt"
_LANG_FILE = re.compile(r"^.+_([A-Za-z]{2,3}(?:-[A-Za-z]{2,4})?)\.txt$")


def _file_lang(p: Path) -> str | None:
    """The language a line-aligned file names itself by (``test_1kcaptions_de.txt`` -> de)."""
    m = _LANG_FILE.match(p.name)
    return m.group(1) if m and p.name != NAMES_FILE else None


def _check_file_lang(p: Path, lang: str | None) -> None:
    own = _file_lang(p)
    if lang is not None and own is not None and own.lower() != lang.lower():
        raise InputError(f"--lang {lang!r} does not match {p}, which holds language {own!r}")


def names_file_for(source: str | Path, lang: str | None = None) -> Path | None:
    """The XTD names file that gives ids to the line-aligned caption file of ``source``, or None.

    ``source`` is a ``*_<lang>.txt`` file (or a folder plus ``lang``, resolved as
    :func:`read_texts` does).  The names file is ``test_image_names.txt`` in the file's folder,
    else the only one in a sibling folder (XTD10: ``MIC/test_1kcaptions_de.txt`` takes its ids
    from ``XTD10/test_image_names.txt``, line i = the same caption in every language).
    """
    p = Path(source).expanduser()
    if p.is_dir():
        if not lang:
            return None
        p = _text_file_in_folder(p, lang)
    if p.suffix.lower() != ".txt" or _file_lang(p) is None:
        return None
    here = p.parent / NAMES_FILE
    if here.is_file():
        return here
    near = sorted(f for f in p.parent.parent.glob(f"*/{NAMES_FILE}") if f.is_file())
    return near[0] if len(near) == 1 else None


def _texts_from_lines(p: Path, ids_file) -> list[TextRecord]:
    lines = p.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if ids_file is not None:
        from ._io import is_stdio, stdin_text

        text = (stdin_text("--ids-file") if is_stdio(ids_file)
                else _exists(ids_file, "ids file").read_text(encoding="utf-8"))
        ids = [s.strip() for s in text.splitlines()]
        while ids and not ids[-1]:
            ids.pop()
        if len(ids) != len(lines):
            raise InputError(f"ids file {ids_file} has {len(ids)} lines but {p} has {len(lines)}")
    else:
        ids = [str(i) for i in range(len(lines))]
    empty = [i for i, s in zip(ids, lines, strict=True) if not s.strip()]
    if empty:
        raise InputError(f"{p}: {len(empty)} empty caption line(s), ids {', '.join(empty[:5])}")
    return _group(zip(ids, lines, strict=True))


def _group(pairs: Iterable[tuple[str, str]]) -> list[TextRecord]:
    groups: dict[str, list[str]] = {}
    for i, c in pairs:
        groups.setdefault(i, []).append(c)
    return [TextRecord(i, tuple(cs)) for i, cs in groups.items()]


def _texts_from_coco(p: Path) -> list[TextRecord]:
    data = _load_coco(p)
    names = _coco_names(data, p)
    pairs = []
    for a in data.get("annotations", []):
        if a.get("image_id") not in names:
            raise InputError(f"{p}: annotation for unknown image_id {a.get('image_id')!r}")
        pairs.append((names[a["image_id"]], str(a.get("caption", "")).strip()))
    return _group(pairs)


def _texts_from_table(p: Path, lang, caption_column, image_column) -> list[TextRecord]:
    rows = _rows(p)
    cols = _columns(rows, p)
    img = _pick_column(cols, image_column, IMAGE_COLUMNS, p, "image")
    if caption_column is None and lang is not None:
        if lang not in cols:
            langs = [c for c in cols if c != img]
            raise InputError(f"{p} has no column for language {lang!r} (columns: {', '.join(langs)})")
        caption_column = lang
    elif caption_column is None and not any(c.lower() in CAPTION_COLUMNS for c in cols):
        others = [c for c in cols if c != img]
        if len(others) > 1:
            raise InputError(f"{p} has caption columns {', '.join(others)}: choose one with --lang "
                             "(or --caption-column)")
    cap = _pick_column(cols, caption_column, CAPTION_COLUMNS, p, "caption") if \
        caption_column or any(c.lower() in CAPTION_COLUMNS for c in cols) else \
        [c for c in cols if c != img][0]
    pairs = []
    for r in rows:
        i, c = r.get(img), r.get(cap)
        if i in (None, "") or c is None:
            continue
        caps = c if isinstance(c, list) else [c]
        for s in caps:
            s = str(s).strip()
            if s:
                pairs.append((_image_id(i), s))
    return _group(pairs)
