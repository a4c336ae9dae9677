"""Result tables: rows of dicts written atomically as .csv/.tsv/.json/.h5 (by suffix), read back.

Shared by the CLI's per-query outputs and :mod:`fastcka.evaluate`'s tidy tables.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_path
from .errors import InputError

RESULT_SUFFIXES = (".csv", ".tsv", ".json", ".h5", ".hdf5")


def dumps(obj: Any, **kw: Any) -> str:
    """Strict JSON (NaN and infinities as ``null``; NumPy values as Python ones)."""
    return json.dumps(to_json(obj), allow_nan=False, **kw)


def to_json(o: Any) -> Any:
    """``o`` with every value JSON can hold: NumPy scalars/arrays as Python ones, tuples as
    lists, non-finite floats as ``None`` (``null``), anything else unknown as its string."""
    import numpy as np

    if isinstance(o, dict):
        return {str(k): to_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [to_json(v) for v in o]
    if isinstance(o, np.ndarray):
        return to_json(o.tolist())
    if isinstance(o, np.generic):
        return to_json(o.item())
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if o is None or isinstance(o, (str, int)):
        return o
    return str(o)


def _suffix(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in RESULT_SUFFIXES:
        raise InputError(f"unsupported table suffix {suffix or '(none)'!r}; use one of "
                         f"{', '.join(RESULT_SUFFIXES)}")
    return suffix


def write_rows(path: str, rows: list[dict[str, Any]], *, meta: dict[str, Any] | None = None) -> None:
    """Write result rows atomically; the format follows the suffix.

    ``.csv``/``.tsv``: a header and one line per row (list values joined with ``;``).
    ``.json``: ``{"meta": ..., "rows": [...]}``.  ``.h5``: one dataset per column (strings as
    UTF-8, lists as 2-D arrays) and ``meta`` as JSON in the root attribute ``meta``.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in RESULT_SUFFIXES:
        raise InputError(f"unsupported output suffix {suffix or '(none)'!r}; use one of "
                         f"{', '.join(RESULT_SUFFIXES)}")
    columns: list[str] = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    with atomic_path(p, suffix=suffix) as tmp:
        if suffix in (".csv", ".tsv"):
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh, delimiter="\t" if suffix == ".tsv" else ",")
                w.writerow(columns)
                for r in rows:
                    w.writerow([_cell(r.get(c)) for c in columns])
        elif suffix == ".json":
            tmp.write_text(dumps({"meta": meta or {}, "rows": rows}), encoding="utf-8")
        else:
            import h5py

            with h5py.File(tmp, "w") as f:
                f.attrs["meta"] = dumps(meta or {})
                for c in columns:
                    vals = [r.get(c) for r in rows]
                    if any(v is None for v in vals):  # HDF5 has no None: '' / NaN
                        text = any(isinstance(v, str) for v in vals)
                        vals = [("" if text else np.nan) if v is None else v for v in vals]
                    if vals and all(isinstance(v, str) for v in vals):
                        f.create_dataset(c, data=np.array(vals, dtype=object),
                                         dtype=h5py.string_dtype("utf-8"))
                    elif vals and isinstance(vals[0], (list, tuple, np.ndarray)):
                        arr = np.asarray(vals)
                        if arr.dtype.kind in "OUS":
                            f.create_dataset(c, data=arr.astype(object),
                                             dtype=h5py.string_dtype("utf-8"))
                        else:
                            f.create_dataset(c, data=arr)
                    else:
                        arr = np.asarray(vals)
                        if arr.dtype.kind in "OUS":  # mixed values: their text
                            arr = np.array([str(v) for v in vals], dtype=object)
                            f.create_dataset(c, data=arr, dtype=h5py.string_dtype("utf-8"))
                        else:
                            f.create_dataset(c, data=arr)


def _cell(v: Any) -> Any:
    if isinstance(v, (list, tuple, np.ndarray)):
        return ";".join(str(_cell(x)) for x in v)
    if isinstance(v, np.generic):
        return v.item()
    return v


def _parse(v: str) -> Any:
    """A CSV cell back to a Python value: '' -> None, numbers, True/False, else the string."""
    if v == "":
        return None
    if v in ("True", "False"):
        return v == "True"
    try:
        i = int(v)
        return i
    except ValueError:
        pass
    try:
        f = float(v)
        return f
    except ValueError:
        return v


def read_rows(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows (and meta, empty for CSV/TSV) of a table written by :func:`write_rows`.

    CSV/TSV cells come back as int, float, bool or str (empty cells as None); list cells stay
    ``;``-joined strings.  NaN written to JSON as ``NaN`` is read back as NaN.
    """
    p = Path(path)
    suffix = _suffix(p)
    if not p.is_file():
        raise InputError(f"table not found: {p}")
    if suffix in (".csv", ".tsv"):
        with open(p, newline="", encoding="utf-8") as fh:
            r = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            rows = [{k: _parse(v) for k, v in row.items()} for row in r]
        return rows, {}
    if suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{p}: not a JSON table ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
            raise InputError(f"{p}: not a fastcka table (no 'rows' list)")
        return data["rows"], data.get("meta") or {}
    import h5py

    try:
        with h5py.File(p, "r") as f:
            meta = json.loads(f.attrs.get("meta", "{}"))
            cols = {k: f[k][()] for k in f.keys()}
    except OSError as exc:
        raise InputError(f"{p}: not a readable HDF5 table ({' '.join(str(exc).split())})") from None
    n = len(next(iter(cols.values()))) if cols else 0
    rows = []
    for i in range(n):
        row = {}
        for k, arr in cols.items():
            v = arr[i]
            if isinstance(v, bytes):
                v = v.decode("utf-8")
            elif isinstance(v, np.generic):
                v = v.item()
                if isinstance(v, float) and math.isnan(v) and arr.dtype.kind == "O":
                    v = None
            elif isinstance(v, np.ndarray):
                v = v.tolist()
            row[k] = v
        rows.append(row)
    return rows, meta
