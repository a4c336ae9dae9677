"""Labels, class prompts and seeds of :func:`fastcka.classify` (re-exported there): class names
checked, labels resolved to class indices, prompt embeddings from templates, the balanced seed
draw, and the classes / labels files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InputError
from .protocol import read_id_file

DEFAULT_TEMPLATE = "a photo of a {}."


def _dupes(items: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for x in items:
        if x in seen and x not in out:
            out.append(x)
        seen.add(x)
    return out


def check_classes(classes: Sequence[Any], what: str = "classes") -> list[str]:
    """Class names as strings: non-empty, unique."""
    names = [str(c) for c in classes]
    if len(names) < 2:
        raise InputError(f"{what}: classification needs at least 2 classes, got {len(names)}")
    if any(not n.strip() for n in names):
        raise InputError(f"{what}: a class name is empty")
    dup = _dupes(names)
    if dup:
        raise InputError(f"{what}: duplicate class name(s) {', '.join(map(repr, dup[:3]))}"
                         + (f" and {len(dup) - 3} more" if len(dup) > 3 else ""))
    return names


def resolve_labels(labels: Any, classes: Sequence[str], what: str = "labels") -> np.ndarray:
    """Labels (class indices ``0..C-1``, or class names) -> int64 class indices.

    A string label is a class name, or else a decimal index into ``classes``.
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise InputError(f"{what} must be one label per image (1-D), got shape {arr.shape}")
    C = len(classes)
    if arr.dtype.kind in "iu":
        idx = arr.astype(np.int64)
    elif arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise InputError(f"{what}: numeric labels must be whole class indices")
        idx = arr.astype(np.int64)
    else:
        pos = {c: i for i, c in enumerate(classes)}
        out = np.empty(arr.shape[0], dtype=np.int64)
        for k, v in enumerate(arr.tolist()):
            s = str(v).strip()
            if s in pos:
                out[k] = pos[s]
            elif s.lstrip("-").isdigit():
                out[k] = int(s)
            else:
                raise InputError(f"{what}: label {s!r} is not one of the {C} classes")
        idx = out
    bad = idx[(idx < 0) | (idx >= C)]
    if bad.size:
        raise InputError(f"{what}: label {int(bad[0])} is not a class index 0..{C - 1} "
                         f"({bad.size} such labels)")
    return idx


def class_prompts(classes: Sequence[str], encoder: Any, templates: Sequence[str] = (
        DEFAULT_TEMPLATE,)) -> np.ndarray:
    """The (C, d) prompt embeddings: for each class the mean over ``templates`` of the text
    encoder's embedding of ``template.format(name)`` (not renormalised, as a caption mean).

    ``encoder`` is a :class:`fastcka.encoders.TextEncoder` (``prepare``/``infer``)."""
    templates = check_templates(templates)
    texts = [t.format(c) for c in classes for t in templates]
    E = np.asarray(encoder.infer(encoder.prepare(texts)), dtype=np.float64)
    return E.reshape(len(classes), len(templates), -1).mean(axis=1)


def check_templates(templates: Sequence[str]) -> list[str]:
    if isinstance(templates, str):
        templates = [templates]
    out = [str(t) for t in templates]
    if not out:
        raise InputError("give at least one prompt template")
    for t in out:
        if t.count("{}") != 1 or "{" in t.replace("{}", "") or "}" in t.replace("{}", ""):
            raise InputError(f"prompt template {t!r} must hold exactly one '{{}}' for the class "
                             f"name (and no other braces)")
    return out


def draw_seeds(labels: np.ndarray, n_seeds: int, n_classes: int, rng: int = 0) -> np.ndarray:
    """``n_seeds`` image rows balanced over classes, drawn with ``default_rng(rng)``.

    Every class gets ``n_seeds // C`` seeds and ``n_seeds % C`` classes (drawn at random) one more;
    within a class the images are drawn at random.  Returns the rows, sorted.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = labels.shape[0]
    C = int(n_classes)
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, (int, np.integer)):
        raise InputError(f"seeds must be an integer, got {n_seeds!r}")
    if n_seeds < C:
        raise InputError(f"{n_seeds} seeds cannot cover the {C} classes: give at least one seed "
                         f"per class (--seeds >= {C})")
    if n_seeds >= n:
        raise InputError(f"{n_seeds} seeds leave none of the {n} images to classify: give "
                         f"fewer seeds than images")
    gen = np.random.default_rng(int(rng))
    per = np.full(C, n_seeds // C, dtype=np.int64)
    per[gen.permutation(C)[: n_seeds % C]] += 1
    rows = []
    for c in range(C):
        members = np.flatnonzero(labels == c)
        if members.size < per[c]:
            raise InputError(f"class {c} has {members.size} labelled images, fewer than the "
                             f"{per[c]} seeds it needs")
        rows.append(gen.permutation(members)[: per[c]])
    return np.sort(np.concatenate(rows)).astype(np.intp)


def read_classes(path: Any) -> list[str]:
    """Class names, one per line (line i = class i = integer label i); trailing blank lines are
    dropped, a blank line between names or a repeated name is an error."""
    lines = read_id_file(path, "classes file", per_row=True)   # line i names class i
    return check_classes(lines, f"classes file {path}")


def read_labels(path: Any, ids: Sequence[str]) -> np.ndarray:
    """The label of each image id from a file, aligned with ``ids``.

    ``.npy``: a 1-D array, row i = image row i.  ``.csv``/``.tsv``: two columns ``id,label``
    (an optional header ``id,label``) covering every id.  Anything else: one label per line,
    line i = image row i.
    """
    import csv
    from pathlib import Path

    p = Path(path)
    ids = [str(i) for i in ids]
    if not p.is_file():
        raise InputError(f"labels file not found: {p}")
    if p.suffix.lower() == ".npy":
        try:
            lab = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"labels file {p}: not a readable .npy array "
                             f"({' '.join(str(exc).split())})") from None
        if lab.ndim != 1 or lab.shape[0] != len(ids):
            raise InputError(f"labels/ids mismatch: {p} holds {lab.shape[0] if lab.ndim else 0} "
                             f"labels (shape {lab.shape}) for the {len(ids)} images")
        return lab
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"labels file is not UTF-8 text: {p}") from None
    if p.suffix.lower() in (".csv", ".tsv"):
        rows = [r for r in csv.reader(text.splitlines(),
                                      delimiter="\t" if p.suffix.lower() == ".tsv" else ",")
                if r and any(c.strip() for c in r)]
        if rows and [c.strip().lower() for c in rows[0]] == ["id", "label"]:
            rows = rows[1:]
        bad = [i for i, r in enumerate(rows) if len(r) != 2]
        if bad:
            raise InputError(f"labels file {p}: row {bad[0] + 1} does not have two fields "
                             f"(id, label)")
        got: dict[str, str] = {}
        for r in rows:
            k = r[0].strip()
            if k in got:
                raise InputError(f"labels file {p}: id {k!r} is labelled twice")
            got[k] = r[1].strip()
        pos = set(ids)
        extra = [k for k in got if k not in pos]
        missing = [i for i in ids if i not in got]
        if extra or missing:
            what = (f"{len(missing)} image id(s) have no label (e.g. {missing[0]!r})" if missing
                    else f"{len(extra)} labelled id(s) are not images of the store "
                         f"(e.g. {extra[0]!r})")
            raise InputError(f"labels/ids mismatch: {p}: {what}")
        return np.asarray([got[i] for i in ids], dtype=str)
    lines = [ln.strip() for ln in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if len(lines) != len(ids):
        raise InputError(f"labels/ids mismatch: {p} has {len(lines)} lines for the {len(ids)} "
                         f"images (line i labels image row i)")
    if any(not ln for ln in lines):
        raise InputError(f"labels file {p}: blank line {lines.index('') + 1}")
    return np.asarray(lines, dtype=str)
