"""The tidy table of :func:`fastcka.evaluate`: one row per grid cell, written and read back."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InputError

# the table's columns: name -> type ("s" string, "i" int, "f" float; NaN = not applicable)
COLUMNS: dict[str, str] = {
    "method": "s", "kernel": "s", "sigma": "s", "n_seeds": "i", "draw": "i", "direction": "s",
    "accuracy": "f", "top1": "f", "top5": "f", "top10": "f", "objective": "f",
    "seed_cka": "f", "seed_cka_linear": "f", "n_queries": "i", "n_init": "i", "seconds": "f",
}
KEY = ("method", "kernel", "sigma", "n_seeds", "draw", "direction")


def _normalise(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for c, t in COLUMNS.items():
        v = row.get(c)
        if t == "s":
            out[c] = "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
        elif t == "i":
            out[c] = int(v)
        else:
            out[c] = math.nan if v is None or v == "" else float(v)
    return out


class EvalTable:
    """A tidy table, one row per grid cell (columns: :data:`COLUMNS`), plus its metadata."""

    def __init__(self, rows: Sequence[dict[str, Any]], meta: dict[str, Any] | None = None):
        self.rows = [_normalise(r) for r in rows]
        self.meta = dict(meta or {})

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def column(self, name: str) -> np.ndarray:
        return np.asarray([r[name] for r in self.rows])

    def keys(self) -> list[tuple]:
        return [tuple(r[c] for c in KEY) for r in self.rows]

    def sorted(self) -> EvalTable:
        return EvalTable(sorted(self.rows, key=lambda r: tuple(r[c] for c in KEY)), self.meta)

    def select(self, **where: Any) -> EvalTable:
        return EvalTable([r for r in self.rows if all(r[k] == v for k, v in where.items())],
                         self.meta)

    def summary(self) -> list[dict[str, Any]]:
        """Mean and standard deviation over draws per (method, kernel, sigma, n_seeds, direction)."""
        groups: dict[tuple, list[dict]] = {}
        for r in self.rows:
            groups.setdefault(tuple(r[c] for c in KEY if c != "draw"), []).append(r)
        out = []
        for key, rs in groups.items():
            s = dict(zip([c for c in KEY if c != "draw"], key, strict=True))
            s["draws"] = len(rs)
            for c in ("accuracy", "top1", "top5", "top10", "objective", "seed_cka", "seconds"):
                v = np.asarray([r[c] for r in rs], dtype=np.float64)
                s[c] = float(v.mean()) if v.size and not np.isnan(v).all() else math.nan
                s[c + "_std"] = float(v.std()) if v.size and not np.isnan(v).all() else math.nan
            out.append(s)
        return out

    def write(self, path: str) -> None:
        """Write atomically as .csv/.tsv/.json/.h5 (by suffix)."""
        from ._table import write_rows

        write_rows(path, self.rows, meta=self.meta)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EvalTable) and _same_rows(self.rows, other.rows)

    def __repr__(self) -> str:
        return f"EvalTable({len(self.rows)} rows)"


def _same_rows(a: list[dict], b: list[dict], skip: tuple[str, ...] = ()) -> bool:
    if len(a) != len(b):
        return False
    for r, s in zip(a, b, strict=True):
        for c in COLUMNS:
            if c in skip:
                continue
            x, y = r[c], s[c]
            if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
                continue
            if x != y:
                return False
    return True


def read_table(path: str) -> EvalTable:
    """Read a table written by :meth:`EvalTable.write` (CSV, TSV, JSON or HDF5)."""
    from ._table import read_rows

    rows, meta = read_rows(path)
    missing = [c for c in KEY if rows and c not in rows[0]]
    if missing:
        raise InputError(f"{path}: not an evaluation table (no column {missing[0]!r})")
    return EvalTable(rows, meta)
