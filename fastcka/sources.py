"""Readers of the array files ``fastcka import`` turns into embedding stores.

Sources (by suffix): ``.npy``; ``.npz`` (``array=NAME``, the CLI's ``--array``; an array named
``ids`` supplies the ids); ``.csv``/``.tsv`` (optional header; a header column named ``id``
supplies the ids); ``.pt``/``.pth`` (a torch tensor, or a dict of tensors with an optional
``ids`` list; needs torch).  :func:`read_source` returns ``(X, ids or None, settings)``; every
problem is a one-line :class:`~fastcka.errors.InputError`.

CSV/TSV bodies of at least :data:`fastcka.config.TEXT_PARSER_MIN_BYTES` are parsed by the
Numba kernel ``kernels.ops("text", "numba").parse_table`` (correctly rounded, the values ``float()`` gives);
a file it does not take as it is (quotes, carriage returns, non-ASCII numbers, blank lines, a
wrong field count, a field ``float()`` refuses) is read again by the row loop, which alone
words the error messages, so that both paths accept the same files, give the same arrays and
fail with the same message.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["read_source", "SUFFIXES"]

SUFFIXES = (".npy", ".npz", ".csv", ".tsv", ".pt", ".pth")


def _pick(names: list[str], wanted: str | None, src: Path, what: str = "array") -> str:
    if wanted is not None:
        if wanted not in names:
            raise InputError(f"{src} has no {what} {wanted!r}; it has: {', '.join(names) or 'none'}")
        return wanted
    if len(names) == 1:
        return names[0]
    if not names:
        raise InputError(f"{src} holds no 2-D numeric {what}")
    raise InputError(f"{src} holds several {what}s ({', '.join(names)}); pick one with --array")


def _load_npy(src: Path) -> tuple[np.ndarray, list[str] | None, dict]:
    try:
        X = np.load(src, allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:  # empty, truncated or not an array
        raise InputError(f"cannot read {src} as a .npy array: {' '.join(str(exc).split())}") from None
    return X, None, {}


def _load_npz(src: Path, array: str | None) -> tuple[np.ndarray, list[str] | None, dict]:
    import zipfile
    import zlib

    try:
        return _load_npz_arrays(src, array)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"cannot read {src} as a .npz archive (truncated or damaged?): "
                         f"{' '.join(str(exc).split()) or type(exc).__name__}") from None


def _load_npz_arrays(src: Path, array: str | None) -> tuple[np.ndarray, list[str] | None, dict]:
    z = np.load(src, allow_pickle=False)
    with z:
        names = [n for n in z.files if n != "ids"]
        name = _pick(names, array, src) if array is not None else _pick(
            [n for n in names if z[n].ndim == 2 and z[n].dtype.kind in "fiub"], None, src)
        X = z[name]
        ids = None
        if "ids" in z.files:
            raw = z["ids"]
            if raw.ndim != 1:
                raise InputError(f"{src}: array 'ids' must be 1-D, got shape {raw.shape}")
            ids = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in raw.tolist()]
    return X, ids, {"array": name}


def _load_text_table(src: Path, engine: str = "auto") -> tuple[np.ndarray, list[str] | None, dict]:
    if engine not in ("auto", "fast", "python"):
        raise InputError(f"engine must be 'auto', 'fast' or 'python', got {engine!r}")
    if engine != "python":
        from . import config
        from .backend import NUMPY_BACKEND
        from .kernels import families

        big = engine == "fast" or src.stat().st_size >= config.TEXT_PARSER_MIN_BYTES
        if big and NUMPY_BACKEND.engine in families()["text"]:  # the CPU engine has a parser
            got = _fast_text_table(src, "\t" if src.suffix.lower() == ".tsv" else ",")
            if got is not None:
                return got
    return _text_table_rows(src)


def _numeric(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _text_table_rows(src: Path) -> tuple[np.ndarray, list[str] | None, dict]:
    """The row loop (csv.reader + float): the reference reader, and the one that words errors."""
    delim = "\t" if src.suffix.lower() == ".tsv" else ","
    with open(src, newline="", encoding="utf-8-sig") as fh:  # a UTF-8 BOM is not part of a header
        rows = [r for r in csv.reader(fh, delimiter=delim)]
    while rows and not any(c.strip() for c in rows[-1]):
        rows.pop()
    if not rows:
        raise InputError(f"{src} is empty")

    header = None
    first = [c.strip() for c in rows[0]]
    if not all(_numeric(c) for c in first):
        header, rows = first, rows[1:]
        if not rows:
            raise InputError(f"{src} has a header but no data rows")
    id_col = None
    if header is not None:
        low = [h.lower() for h in header]
        if "id" in low:
            id_col = low.index("id")
    width = len(rows[0]) if header is None else len(header)
    ids: list[str] | None = [] if id_col is not None else None
    data = np.empty((len(rows), width - (id_col is not None)), dtype=np.float64)
    line0 = 2 if header is not None else 1
    for r, row in enumerate(rows):
        if len(row) != width:
            raise InputError(f"{src} line {r + line0}: {len(row)} fields, expected {width}")
        vals = []
        for c, cell in enumerate(row):
            if c == id_col:
                ids.append(cell.strip())
                continue
            try:
                vals.append(float(cell))
            except ValueError:
                col = header[c] if header else str(c + 1)
                raise InputError(f"{src} line {r + line0}, column {col}: {cell!r} is not a number") from None
        data[r] = vals
    if data.shape[1] == 0:
        raise InputError(f"{src} has no numeric columns")
    return data, ids, ({"columns": [h for i, h in enumerate(header) if i != id_col]} if header else {})


def _fast_text_table(src: Path, delim: str) -> tuple[np.ndarray, list[str] | None, dict] | None:
    """The table through the Numba parser, or None where the row loop must decide.

    Exactly the row loop's result on every file it takes: no quotes (csv.reader would unquote),
    no carriage return or NUL, no blank line (csv.reader gives it no field), every line with the
    header's (or first line's) number of fields, numeric fields in ASCII.
    """
    from .backend import NUMPY_BACKEND

    try:
        with open(src, newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
    except (UnicodeDecodeError, OSError):
        return None
    if '"' in text or "\r" in text or "\x00" in text:
        return None
    lines = text.split("\n")
    while lines and not lines[-1].replace(delim, "").strip():
        lines.pop()
    if not lines or "" in lines:
        return None
    first = [c.strip() for c in lines[0].split(delim)]
    header = None if all(_numeric(c) for c in first) else first
    rows = lines[1:] if header is not None else lines
    if not rows:
        return None
    width = len(header) if header is not None else len(rows[0].split(delim))
    id_col = None
    if header is not None and "id" in [h.lower() for h in header]:
        id_col = [h.lower() for h in header].index("id")
    ids = None
    if id_col is not None:
        ids, body_rows = [], []
        for line in rows:
            parts = line.split(delim)
            if len(parts) != width:
                return None
            ids.append(parts.pop(id_col).strip())
            body_rows.append(delim.join(parts))
        rows = body_rows
    ncols = width - (id_col is not None)
    body = "\n".join(rows)
    if ncols == 0 or not body.isascii():
        return None
    values, slow, status = NUMPY_BACKEND.ops("text").parse_table(
        np.frombuffer(body.encode("ascii"), np.uint8), len(rows), ncols, ord(delim))
    if status:
        return None
    for k, s, e in slow.tolist():           # fields the kernel leaves to float() (nan, 1_0, ...)
        try:
            values[k] = float(body[s:e])
        except ValueError:
            return None
    settings = ({"columns": [h for i, h in enumerate(header) if i != id_col]} if header else {})
    return values.reshape(len(rows), ncols), ids, settings


def _load_pt(src: Path, array: str | None) -> tuple[np.ndarray, list[str] | None, dict]:
    try:
        import torch
    except ImportError:
        raise InputError(f"reading {src.suffix} files needs torch, which is not installed "
                         "(pip install 'fastcka[encoders]')") from None
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of every kind
        raise InputError(f"cannot read {src} with torch.load: {' '.join(str(exc).split())}") from None
    ids = None
    meta: dict[str, Any] = {}
    if isinstance(obj, dict):
        if "ids" in obj:
            raw = obj["ids"]
            ids = [str(x) for x in (raw.tolist() if hasattr(raw, "tolist") else list(raw))]
        tensors = {str(k): v for k, v in obj.items() if k != "ids" and isinstance(v, torch.Tensor)}
        name = _pick(list(tensors), array, src, "tensor")
        obj = tensors[name]
        meta["array"] = name
    if not isinstance(obj, torch.Tensor):
        raise InputError(f"{src} holds a {type(obj).__name__}, not a tensor (or a dict of tensors)")
    t = obj.detach().cpu()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.numpy(), ids, meta


def read_source(src: str | os.PathLike, array: str | None = None, *, engine: str = "auto"
                ) -> tuple[np.ndarray, list[str] | None, dict]:
    """``(X, ids or None, settings)`` read from an array file, chosen by its suffix.

    ``engine`` (CSV/TSV only): ``"auto"`` (the Numba parser for files of at least
    :data:`fastcka.config.TEXT_PARSER_MIN_BYTES` when Numba is enabled, else the row loop), ``"fast"`` (the
    parser whatever the size) or ``"python"`` (the row loop).  All give the same result.
    """
    src = Path(src)
    suffix = src.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"cannot import {src}: unknown suffix {src.suffix!r} "
                         f"(expected one of {', '.join(SUFFIXES)})")
    if array is not None and suffix not in (".npz", ".pt", ".pth"):
        raise InputError(f"--array applies to .npz and .pt sources, not {suffix}")
    if suffix == ".npy":
        return _load_npy(src)
    if suffix == ".npz":
        return _load_npz(src, array)
    if suffix in (".csv", ".tsv"):
        return _load_text_table(src, engine)
    return _load_pt(src, array)
