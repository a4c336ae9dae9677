"""The in-memory embedding set, store specs, the schema constants and the checks of inputs
(private part of :mod:`fastcka.store`)."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backend import is_cupy_array, to_host
from .errors import StoreError

log = logging.getLogger("fastcka")

#: Version of the on-disk schema written by this fastcka.  Readers accept any version
#: ``<= FORMAT_VERSION`` and refuse newer ones (see docs/store.md).
FORMAT_VERSION = 1
MODALITIES = ("image", "text", "other")
STORE_DTYPES = ("float32", "float16")
EMB = "embeddings"
IDS = "ids"
LABELS = "labels"  # optional: the class label of each row (int64 or UTF-8 strings)
_RESERVED = {EMB, IDS, LABELS}
_CHUNK_BYTES = 1 << 20  # target size of one HDF5 chunk of embeddings (1 MiB)
_N_SHOW = 5  # how many offending ids an error message names
# gzip level 1: on real embeddings it compresses within 2% of level 4 (float32 features of the
# Flickr8k reference: 74% vs 73% of raw) and writes ~25% faster; shuffle groups the float bytes.
_GZIP_LEVEL = 1


class NonfiniteWarning(UserWarning):
    """Rows with NaN/Inf were dropped (``nonfinite="drop"``); the message lists their ids."""


# --------------------------------------------------------------------------------------------
# specs
# --------------------------------------------------------------------------------------------

def parse_spec(spec: str | os.PathLike) -> tuple[Path, str]:
    """Split a store spec into ``(path, group)``.

    ``"f.h5"`` -> ``(Path("f.h5"), "/")``; ``"f.h5::/a/b"`` or ``"f.h5::a/b"`` ->
    ``(Path("f.h5"), "/a/b")``.  The group is normalised (leading ``/``, no trailing or doubled
    slashes).

    Raises
    ------
    StoreError
        Empty path, ``.``/``..`` components, or a group component named like a dataset of a set
        (``embeddings``, ``ids``, ``labels``).
    """
    if isinstance(spec, os.PathLike):
        text = os.fspath(spec)
    elif isinstance(spec, str):
        text = spec
    else:
        raise StoreError(f"a store spec must be a path or 'file.h5::/group' string, got {type(spec).__name__}")
    path_s, sep, group_s = text.partition("::")
    if not path_s:
        raise StoreError(f"store spec {text!r} has no file path")
    parts = [p for p in group_s.split("/") if p] if sep else []
    for p in parts:
        if p in (".", ".."):
            raise StoreError(f"store spec {text!r}: group components '.' and '..' are not allowed")
        if p in _RESERVED:
            raise StoreError(f"store spec {text!r}: a group cannot be named {p!r} (reserved for datasets)")
    return Path(path_s), "/" + "/".join(parts)


def _spec_str(path: Path, group: str) -> str:
    return str(path) if group == "/" else f"{path}::{group}"


def partial_path(spec: str | os.PathLike) -> Path:
    """Folder where :class:`StoreWriter` keeps the completed chunks of an unfinished set.

    ``f.h5`` -> ``f.h5.partial``; ``f.h5::/a/b`` -> ``f.h5.a~b.partial``.
    """
    path, group = parse_spec(spec)
    tag = "" if group == "/" else "." + group.strip("/").replace("/", "~")
    return path.with_name(f"{path.name}{tag}.partial")


# --------------------------------------------------------------------------------------------
# the in-memory set
# --------------------------------------------------------------------------------------------

@dataclass
class EmbeddingSet:
    """One embedding set in memory.

    Attributes
    ----------
    X : ndarray, shape (n, dim)
        float32 or float16 embeddings, row i belongs to ``ids[i]``.
    ids : ndarray of str, shape (n,)
        Unique ids.
    modality : {"image", "text", "other"}
    encoder : str
    settings : dict
        Encoder settings (JSON object).
    attrs : dict
        All attributes of the set's HDF5 group (``format_version``, ``created``, ...).
    spec : str
        Where it came from (``""`` when built in memory).
    labels : ndarray of int64 or str, shape (n,), or None
        The class label of each row, when the set has a ``labels`` dataset.
    """

    def __repr__(self) -> str:
        from ._repr import compact_repr

        return compact_repr(self)


    X: np.ndarray
    ids: np.ndarray
    modality: str = "other"
    encoder: str = ""
    settings: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    spec: str = ""
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.X, np.ndarray) and not is_cupy_array(self.X):
            self.X = np.asarray(self.X)
        if not isinstance(self.ids, np.ndarray) or self.ids.dtype.kind != "U":
            lst = [str(i) for i in np.asarray(self.ids, dtype=object).ravel().tolist()]
            self.ids = np.asarray(lst, dtype=str) if lst else np.zeros(0, dtype="<U1")
        if self.X.ndim != 2 or self.ids.shape != (self.X.shape[0],):
            raise StoreError(f"EmbeddingSet needs X of shape (n, dim) and n ids, got X {tuple(self.X.shape)} "
                             f"and {self.ids.size} ids")
        if self.labels is not None:
            self.labels = _as_labels(self.labels, self.X.shape[0])

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.X.shape[0])

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.X.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self.X.dtype

    def __len__(self) -> int:
        return self.n

    def take(self, index: Any) -> EmbeddingSet:
        """The rows ``index`` (integer array or slice), metadata kept."""
        return EmbeddingSet(self.X[index], self.ids[index], self.modality, self.encoder,
                            dict(self.settings), dict(self.attrs), self.spec,
                            None if self.labels is None else self.labels[index])

    def select(self, ids: Iterable[str]) -> EmbeddingSet:
        """The rows of ``ids``, in that order (:class:`StoreError` naming missing ids)."""
        return self.take(_indices_of(self.ids, ids, self.spec or "the embedding set"))


def _indices_of(have: np.ndarray, wanted: Iterable[str], where: str) -> np.ndarray:
    wanted = [str(w) for w in wanted]
    dup = [k for k, c in Counter(wanted).items() if c > 1]
    if dup:
        raise StoreError(f"requested ids contain {len(dup)} duplicate(s): {_show(dup)}")
    pos = {k: i for i, k in enumerate(have.tolist())}
    missing = [w for w in wanted if w not in pos]
    if missing:
        raise StoreError(f"{len(missing)} requested id(s) not in {where}: {_show(missing)}")
    return np.fromiter((pos[w] for w in wanted), dtype=np.int64, count=len(wanted))


def _show(items: Sequence[Any], k: int = _N_SHOW) -> str:
    shown = ", ".join(repr(str(x)) for x in list(items)[:k])
    return shown + (f", ... ({len(items) - k} more)" if len(items) > k else "")


# --------------------------------------------------------------------------------------------
# validation of in-memory inputs
# --------------------------------------------------------------------------------------------

def _check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise StoreError(f"modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
    return modality


def _check_nonfinite(nonfinite: str) -> str:
    if nonfinite not in ("error", "drop"):
        raise StoreError(f"nonfinite must be 'error' or 'drop', got {nonfinite!r}")
    return nonfinite


def _store_dtype(dtype: Any, X: np.ndarray | None = None) -> np.dtype:
    if dtype is None:
        return np.dtype(np.float16) if X is not None and X.dtype == np.float16 else np.dtype(np.float32)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in STORE_DTYPES:
        raise StoreError(f"store dtype must be float32 or float16, got {dtype!r}")
    return dt


def _as_embeddings(X: Any, dtype: np.dtype, what: str = "embeddings") -> np.ndarray:
    X = to_host(X)
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} must be a numeric 2-D array ({' '.join(str(exc).split())})") from None
    if arr.ndim != 2:
        raise StoreError(f"{what} must be a 2-D array (rows x dim), got shape {tuple(arr.shape)}")
    if arr.dtype.kind not in "fiub":
        raise StoreError(f"{what} must hold real numbers, got dtype {arr.dtype}")
    if arr.shape[1] < 1:
        raise StoreError(f"{what} must have at least one column, got shape {tuple(arr.shape)}")
    if arr.dtype.kind == "f" and arr.dtype.itemsize > dtype.itemsize:
        with np.errstate(over="ignore"):  # values beyond float16/32 range become Inf -> caught below
            out = arr.astype(dtype)
    else:
        out = arr.astype(dtype, copy=False)
    return np.ascontiguousarray(out)


def _as_ids(ids: Any, n: int, what: str = "ids") -> np.ndarray:
    if ids is None:
        return np.arange(n).astype(str)
    if isinstance(ids, (str, bytes)):
        raise StoreError(f"{what} must be a sequence of strings, got a single string")
    ids = to_host(ids)
    arr = np.asarray(ids, dtype=object)
    if arr.ndim != 1:
        raise StoreError(f"{what} must be 1-D, got shape {arr.shape}")
    lst = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in arr.tolist()]
    if len(lst) != n:
        raise StoreError(f"{what} has {len(lst)} entries but the embeddings have {n} rows")
    bad = [i for i in lst if not i or "\n" in i or "\r" in i]
    if bad:
        raise StoreError(f"{what} must be non-empty strings without line breaks; {len(bad)} are not: {_show(bad)}")
    dup = [k for k, c in Counter(lst).items() if c > 1]
    if dup:
        raise StoreError(f"{what} must be unique; {len(dup)} duplicate id(s): {_show(dup)}")
    return np.asarray(lst, dtype=str) if lst else np.zeros(0, dtype="<U1")


def _as_labels(labels: Any, n: int, what: str = "labels") -> np.ndarray:
    """One class label per row: integers (int64) or non-empty strings."""
    if isinstance(labels, dict):
        raise StoreError(f"{what} must be a sequence aligned with the rows, not a dict")
    a = np.asarray(labels)
    if a.dtype == object:
        vals = a.ravel().tolist()
        if vals and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                        for v in vals):
            a = np.asarray(vals, dtype=np.int64)
        elif all(isinstance(v, str) for v in vals):
            a = np.asarray(vals, dtype=str) if vals else np.zeros(0, dtype=np.int64)
        else:
            raise StoreError(f"{what} must be all integers or all strings")
    if a.ndim != 1 or a.shape[0] != n:
        raise StoreError(f"{what}: expected one label per row ({n}), got shape {a.shape}")
    if a.dtype.kind in "iu":
        return a.astype(np.int64)
    if a.dtype.kind == "U":
        if any(not v or "\n" in v for v in a.tolist()):
            raise StoreError(f"{what}: a string label is empty or holds a line break")
        return a
    raise StoreError(f"{what} must be integers or strings, got dtype {a.dtype}")


def _labels_of(labels: np.ndarray | None, kept_from: np.ndarray, kept: np.ndarray
               ) -> np.ndarray | None:
    """``labels`` (aligned with ids ``kept_from``) restricted to the ids ``kept``."""
    if labels is None or len(kept) == len(kept_from):
        return labels
    pos = {k: i for i, k in enumerate(kept_from.tolist())}
    return labels[[pos[k] for k in kept.tolist()]]


def _nonfinite_rows(X: np.ndarray) -> np.ndarray:
    if X.dtype.kind != "f":
        return np.zeros(X.shape[0], dtype=bool)
    return ~np.isfinite(X).all(axis=1)


def _handle_nonfinite(X: np.ndarray, ids: np.ndarray, nonfinite: str, where: str
                      ) -> tuple[np.ndarray, np.ndarray]:
    bad = _nonfinite_rows(X)
    if not bad.any():
        return X, ids
    bad_ids = ids[bad].tolist()
    if nonfinite == "error":
        raise StoreError(f"{where}: {len(bad_ids)} row(s) contain NaN or Inf, ids {_show(bad_ids)} "
                         f"(use nonfinite='drop' / --nonfinite drop to drop them)")
    warnings.warn(f"{where}: dropped {len(bad_ids)} row(s) with NaN or Inf, ids {_show(bad_ids, 20)}",
                  NonfiniteWarning, stacklevel=3)
    return X[~bad], ids[~bad]


def _check_settings(settings: Any) -> dict:
    settings = {} if settings is None else settings
    if not isinstance(settings, dict):
        raise StoreError(f"settings must be a dict (a JSON object), got {type(settings).__name__}")
    try:
        json.dumps(settings)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"settings must be JSON-serialisable: {' '.join(str(exc).split())}") from None
    return settings


# --------------------------------------------------------------------------------------------
