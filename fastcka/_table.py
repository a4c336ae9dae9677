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

RESULT_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".h5", ".hdf5")
# a table's format: by --format / fmt=, else by the path's suffix
FORMATS = ("csv", "tsv", "json", "jsonl", "h5")
_SUFFIX_FORMAT = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".h5": "h5",
                  ".hdf5": "h5"}
STREAM_FORMATS = ("csv", "tsv", "json", "jsonl")  # what ``-`` (standard output) can carry


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


def table_format(path: str | Path, fmt: str | None = None) -> str:
    """The format a table at ``path`` is written in: ``fmt`` when given, else by the suffix.

    ``-`` (standard output) takes ``fmt`` or ``csv``; HDF5 cannot be streamed.  A ``fmt`` that
    contradicts a known suffix (``x.csv`` with ``json``) is an :class:`InputError`.
    """
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"unknown table format {fmt!r}; use one of {', '.join(FORMATS)}")
    if str(path) == "-":
        fmt = fmt or "csv"
        if fmt not in STREAM_FORMATS:
            raise InputError(f"a {fmt} table cannot be written to standard output ('-'); use "
                             f"one of {', '.join(STREAM_FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    by_suffix = _SUFFIX_FORMAT.get(suffix)
    if fmt is None:
        if by_suffix is None:
            raise InputError(f"unsupported output suffix {suffix or '(none)'!r}; use one of "
                             f"{', '.join(RESULT_SUFFIXES)}")
        return by_suffix
    if by_suffix is not None and by_suffix != fmt:
        raise InputError(f"format {fmt} contradicts the suffix of {path} ({by_suffix})")
    return fmt


def write_rows(path: str, rows: list[dict[str, Any]], *, meta: dict[str, Any] | None = None,
               fmt: str | None = None, long: dict[str, str] | None = None,
               long_index: str = "rank") -> None:
    """Write result rows atomically (or to standard output for ``path="-"``).

    The format is ``fmt`` (``csv``, ``tsv``, ``json``, ``jsonl``, ``h5``), else by the suffix
    (see :func:`table_format`):

    - ``csv``/``tsv``: a header and one value per cell.  Rows holding lists are written long:
      one line per list element, the element's 1-based position in ``long_index`` and each list
      column under its name in ``long`` (default: its own name), the other columns repeated.
    - ``json``: ``{"meta": ..., "rows": [...]}``; ``jsonl``: one JSON object per row (no meta).
    - ``h5``: one dataset per column (strings as UTF-8, lists as 2-D arrays) and ``meta`` as JSON
      in the root attribute ``meta`` (plain h5py, see docs/cli.md).

    Files end lines with ``\r\n`` (CSV as RFC 4180 has it); standard output with ``\n``.
    """
    import io
    import sys

    fmt = table_format(path, fmt)
    columns: list[str] = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    to_stdout = str(path) == "-"
    if fmt != "h5":
        buf = io.StringIO(newline="")
        if fmt in ("csv", "tsv"):
            cols, flat = _long_rows(columns, rows, long or {}, long_index)
            w = csv.writer(buf, delimiter="\t" if fmt == "tsv" else ",",
                           lineterminator="\n" if to_stdout else "\r\n")
            w.writerow(cols)
            for r in flat:
                w.writerow([_cell(r.get(c)) for c in cols])
        elif fmt == "json":
            buf.write(dumps({"meta": meta or {}, "rows": rows}) + ("\n" if to_stdout else ""))
        else:
            for r in rows:
                buf.write(dumps(r) + "\n")
        if to_stdout:
            sys.stdout.write(buf.getvalue())
            sys.stdout.flush()
            return
        with atomic_path(Path(path), suffix=Path(path).suffix.lower() or f".{fmt}") as tmp:
            tmp.write_text(buf.getvalue(), encoding="utf-8", newline="")
        return
    with atomic_path(Path(path), suffix=Path(path).suffix.lower() or ".h5") as tmp:
        _write_h5(tmp, columns, rows, meta)


def _long_rows(columns: list[str], rows: list[dict[str, Any]], names: dict[str, str],
               index: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and rows of a CSV: rows holding lists as one row per list element."""
    lists = [c for c in columns
             if any(isinstance(r.get(c), (list, tuple, np.ndarray)) for r in rows)]
    if not lists:
        return columns, rows
    plain = [c for c in columns if c not in lists]
    out_cols = plain + [index] + [names.get(c, c) for c in lists]
    out: list[dict[str, Any]] = []
    for r in rows:
        lens = {len(r[c]) for c in lists if r.get(c) is not None}
        if len(lens) > 1:
            raise ValueError(f"list columns {', '.join(lists)} of one row differ in length")
        m = lens.pop() if lens else 0
        head = {c: r.get(c) for c in plain}
        if m == 0:  # no elements: the row stays, its list cells empty
            out.append(head)
        for j in range(m):
            out.append(head | {index: j + 1} | {names.get(c, c): r[c][j] for c in lists})
    return out_cols, out


def _write_h5(tmp: Path, columns: list[str], rows: list[dict[str, Any]],
              meta: dict[str, Any] | None) -> None:
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


def _delimited_rows(p: Path, delimiter: str) -> list[dict[str, Any]]:
    """The rows of a CSV/TSV table; a line with more or fewer fields than the header (a
    truncated or hand-edited file), or bytes that are not UTF-8, is an :class:`InputError`."""
    rows = []
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            r = csv.DictReader(fh, delimiter=delimiter)
            for row in r:
                if None in row or None in row.values():   # DictReader's rest key / value
                    raise InputError(f"{p}: line {r.line_num} does not have the header's "
                                     f"{len(r.fieldnames)} fields (truncated or edited?)")
                rows.append({k: _parse(v) for k, v in row.items()})
    except (UnicodeDecodeError, csv.Error) as exc:
        kind = "CSV" if delimiter == "," else "TSV"
        raise InputError(f"{p}: not a {kind} table ({exc})") from None
    return rows


def read_rows(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows (and meta, empty for CSV/TSV) of a table written by :func:`write_rows`.

    CSV/TSV cells come back as int, float, bool or str (empty cells as None), one row per line
    (a long table stays long).  NaN written to JSON as ``NaN`` is read back as NaN.
    """
    p = Path(path)
    suffix = _suffix(p)
    if not p.is_file():
        raise InputError(f"table not found: {p}")
    if suffix in (".csv", ".tsv"):
        return _delimited_rows(p, "\t" if suffix == ".tsv" else ","), {}
    if suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{p}: not a JSON table ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
            raise InputError(f"{p}: not a fastcka table (no 'rows' list)")
        return data["rows"], data.get("meta") or {}
    if suffix == ".jsonl":
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
            rows = [json.loads(ln) for ln in lines if ln.strip()]
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{p}: not a JSON Lines table ({exc})") from None
        if not all(isinstance(r, dict) for r in rows):
            raise InputError(f"{p}: not a fastcka table (a line is not a JSON object)")
        return rows, {}
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
