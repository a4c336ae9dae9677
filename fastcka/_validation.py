"""Input checks shared by the library (messages name the argument)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import to_host
from .errors import InputError


def as_rng(seed: Any) -> np.random.Generator:
    """A NumPy Generator from None, an int, a SeedSequence, a RandomState or a Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.RandomState):
        return np.random.default_rng(seed.randint(0, 2**31 - 1))
    return np.random.default_rng(seed)


def check_matrix(a: Any, name: str, *, xp: Any = np, min_rows: int = 1, finite: bool = True,
                 dtype: Any = None) -> Any:
    """Validate a 2-D numeric array with at least ``min_rows`` rows and finite values."""
    if xp is np:
        a = to_host(a)  # a CuPy input of a CPU call
    try:
        arr = xp.asarray(a) if dtype is None else xp.asarray(a, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a numeric 2-D array ({exc})") from None
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D array (n_samples x n_features), got {arr.ndim}-D "
                         f"with shape {tuple(arr.shape)}")
    if arr.dtype.kind not in "fiub":
        raise InputError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.shape[0] < min_rows:
        raise InputError(f"{name} needs at least {min_rows} rows, got {arr.shape[0]}")
    if finite and arr.dtype.kind == "f" and not bool(xp.isfinite(arr).all()):
        bad = int((~xp.isfinite(arr)).any(axis=1).sum())
        raise InputError(f"{name} contains NaN or Inf in {bad} row(s)")
    return arr


def check_same_rows(X: Any, Y: Any, xname: str = "X", yname: str = "Y") -> None:
    if X.shape[0] != Y.shape[0]:
        raise InputError(f"{xname} and {yname} must have the same number of rows (paired samples), "
                         f"got {X.shape[0]} and {Y.shape[0]}")


def compact_repr(obj) -> str:
    """``Name(field=value, ...)`` of a dataclass with each array shown as its shape and dtype
    (``array(1000x384, float32)``), not its values, and long strings/lists cut short."""
    import dataclasses

    def short(v):
        if hasattr(v, "shape") and hasattr(v, "dtype"):
            return f"array({'x'.join(map(str, v.shape)) or 'scalar'}, {v.dtype})"
        if isinstance(v, (list, tuple)) and len(v) > 6:
            return f"[{len(v)} items]"
        if isinstance(v, dict) and len(repr(v)) > 80:
            return f"{{{len(v)} keys}}"
        r = repr(v)
        return r if len(r) <= 80 else r[:77] + "..."

    fields = ", ".join(f"{f.name}={short(getattr(obj, f.name))}"
                       for f in dataclasses.fields(obj) if f.repr)
    return f"{type(obj).__name__}({fields})"
