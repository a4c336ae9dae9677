"""HDF5 embedding store: the interchange format between every stage of fastcka.

A *store* is an HDF5 file holding one or more *embedding sets*.  A set lives in an HDF5 group
(the root group ``/`` or a named group such as ``/minilm``) and is addressed by a *spec*:
``"file.h5"`` (the root set) or ``"file.h5::/group"``.  Each set has

- ``embeddings``: N x D, float32 or float16, chunked, shuffled and gzip-compressed (level 1);
- ``ids``: N unique UTF-8 strings (h5py variable-length string dtype), row i <-> id i;
- attributes ``format_version`` (int), ``fastcka_version``, ``created`` (ISO-8601 UTC),
  ``modality`` (image/text/other), ``encoder``, ``settings`` (a JSON object), ``name``.

The full schema, the format-version policy and the partial-file/resume protocol are written down
in ``docs/store.md``.

Atomicity: a store under its final name is always complete and valid.  :func:`write_store`
writes a temporary file beside the target and renames it; adding a set to an existing file
rewrites the file into a temporary copy first.  :class:`StoreWriter` appends chunks into a
partial folder ``<file>.partial`` (one atomically written HDF5 file per chunk), so a killed
writer leaves every completed chunk readable (:func:`read_partial`); ``resume=True`` picks the
partial folder up again and appends only the missing ids; closing merges the chunks into the final
store atomically.

Every problem is reported as a one-line :class:`~fastcka.errors.StoreError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import struct
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import _io
from ._version import __version__
from .backend import is_cupy_array, to_host
from .errors import StoreError

log = logging.getLogger("fastcka")

__all__ = [
    "FORMAT_VERSION",
    "MODALITIES",
    "EmbeddingSet",
    "NonfiniteWarning",
    "StoreError",
    "StoreWriter",
    "align",
    "align_many",
    "common_rows",
    "iter_store",
    "list_sets",
    "parse_spec",
    "partial_path",
    "read_partial",
    "read_store",
    "store_info",
    "write_store",
]

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
        from ._validation import compact_repr

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
# HDF5 access
# --------------------------------------------------------------------------------------------

def _h5py():
    import h5py

    return h5py


@contextlib.contextmanager
def _open_read(path: Path):
    """Open an HDF5 file for reading; every failure becomes a one-line StoreError."""
    h5py = _h5py()
    if not path.exists():
        raise StoreError(f"store file not found: {path}")
    if path.is_dir():
        raise StoreError(f"store path is a folder, not an HDF5 file: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        msg = " ".join(str(exc).split()).lower()
        if "truncated" in msg or "eof" in msg:
            raise StoreError(f"{path} is a truncated HDF5 file (incomplete write?)") from None
        raise StoreError(f"{path} is not a valid HDF5 file ({_short(exc)})") from None
    try:
        yield f
    except OSError as exc:  # data that cannot be read: a damaged or truncated file
        raise StoreError(f"{path} is corrupt or truncated: {_short(exc)}") from None
    finally:
        with contextlib.suppress(Exception):
            f.close()


def _short(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return msg if len(msg) < 160 else msg[:157] + "..."


def _attr(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _is_set(g) -> bool:
    return EMB in g or IDS in g


def _set_group(f, path: Path, group: str):
    """The HDF5 group of a set, validated: it exists and holds both datasets."""
    h5py = _h5py()
    where = _spec_str(path, group)
    try:
        g = f[group]
    except KeyError:
        sets = _list_sets_open(f)
        raise StoreError(f"no embedding set {group!r} in {path}; sets there: "
                         f"{', '.join(sets) if sets else 'none'}") from None
    if not isinstance(g, h5py.Group):
        raise StoreError(f"{where} is a dataset, not an embedding set group")
    _check_format_version(g, where)
    if EMB not in g and IDS not in g:
        sets = _list_sets_open(f)
        hint = f"; address one as {path}::{sets[0]}" if sets else ""
        raise StoreError(f"{where} holds no embedding set (datasets 'embeddings' and 'ids' missing); "
                         f"sets there: {', '.join(sets) if sets else 'none'}{hint}")
    for name in (EMB, IDS):
        if name not in g:
            raise StoreError(f"{where} is missing the {name!r} dataset")
        if not isinstance(g[name], h5py.Dataset):
            raise StoreError(f"{where}: {name!r} is not a dataset")
    emb, ids = g[EMB], g[IDS]
    if emb.ndim != 2:
        raise StoreError(f"{where}: 'embeddings' must be 2-D, got shape {emb.shape}")
    if emb.shape[1] < 1:
        raise StoreError(f"{where}: 'embeddings' has no columns (shape {emb.shape})")
    if emb.dtype.kind != "f" or emb.dtype.itemsize not in (2, 4, 8):
        raise StoreError(f"{where}: 'embeddings' has dtype {emb.dtype}; a store holds float32 or float16")
    if ids.ndim != 1:
        raise StoreError(f"{where}: 'ids' must be 1-D, got shape {ids.shape}")
    if h5py.check_string_dtype(ids.dtype) is None:
        raise StoreError(f"{where}: 'ids' has dtype {ids.dtype}; ids must be UTF-8 strings")
    if ids.shape[0] != emb.shape[0]:
        raise StoreError(f"{where}: 'ids' has {ids.shape[0]} entries but 'embeddings' has {emb.shape[0]} rows")
    return g


def _check_format_version(g, where: str) -> int:
    v = g.attrs.get("format_version")
    if v is None:
        if _is_set(g):
            raise StoreError(f"{where} has no 'format_version' attribute (not a fastcka store?)")
        return FORMAT_VERSION
    v = _attr(v)
    if not isinstance(v, int) or isinstance(v, bool):
        raise StoreError(f"{where}: 'format_version' must be an integer, got {v!r}")
    if v > FORMAT_VERSION:
        raise StoreError(f"{where} has format_version {v}, newer than this fastcka ({__version__}) "
                         f"reads (<= {FORMAT_VERSION}); upgrade fastcka")
    if v < 1:
        raise StoreError(f"{where}: invalid format_version {v}")
    return v


def _read_labels(g, idx: np.ndarray | None, where: str) -> np.ndarray | None:
    """The set's ``labels`` dataset (rows ``idx``), or None when it has none."""
    if LABELS not in g:
        return None
    ds = g[LABELS]
    if ds.shape != g[IDS].shape:
        raise StoreError(f"{where}: {ds.shape[0] if ds.ndim else 0} labels for "
                         f"{g[IDS].shape[0]} ids")
    if ds.dtype.kind in "iu":
        lab = ds[()].astype(np.int64)
    elif _h5py().check_string_dtype(ds.dtype) is not None:
        lab = _read_ids(ds)
    else:
        raise StoreError(f"{where}: labels must be integers or strings, got dtype {ds.dtype}")
    return lab if idx is None else lab[idx]


def _read_ids(ds) -> np.ndarray:
    raw = ds.asstr()[()]
    return np.asarray(raw.tolist(), dtype=str) if len(raw) else np.zeros(0, dtype="<U1")


def _meta_of(g) -> tuple[dict, str, str, dict]:
    attrs = {k: _attr(v) for k, v in g.attrs.items()}
    settings: Any = attrs.get("settings", "{}")
    try:
        settings = json.loads(settings) if isinstance(settings, str) else {}
    except ValueError:
        settings = {}
    return attrs, str(attrs.get("modality", "other")), str(attrs.get("encoder", "")), settings


def _check_ids_text(ids: np.ndarray, where: str) -> None:
    """Ids read from a file: non-empty and without line breaks (else id files misalign)."""
    bad = [i for i in ids.tolist() if not i or "\n" in i or "\r" in i]
    if bad:
        raise StoreError(f"{where}: ids must be non-empty strings without line breaks; "
                         f"{len(bad)} are not: {_show(bad)}")


def _check_unique(ids: np.ndarray, where: str) -> None:
    if len(np.unique(ids)) != len(ids):
        dup = [k for k, c in Counter(ids.tolist()).items() if c > 1]
        raise StoreError(f"{where}: ids are not unique; {len(dup)} duplicate id(s): {_show(dup)}")


def _list_sets_open(f) -> list[str]:
    h5py = _h5py()
    out = []
    if _is_set(f):
        out.append("/")

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and _is_set(obj):
            out.append("/" + name)

    f.visititems(visit)
    return out


def list_sets(path: str | os.PathLike) -> list[str]:
    """Groups of ``path`` that hold an embedding set (``"/"`` for the root set)."""
    p, _ = parse_spec(path)
    with _open_read(p) as f:
        return _list_sets_open(f)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------

def read_store(spec: str | os.PathLike, *, ids: Iterable[str] | None = None,
               nonfinite: str = "error") -> EmbeddingSet:
    """Read an embedding set, whole or the rows of ``ids``.

    Parameters
    ----------
    spec : str or path
        ``file.h5`` (root set) or ``file.h5::/group``.
    ids : iterable of str, optional
        Read only these rows, returned in this order.  Ids absent from the store raise
        :class:`StoreError` naming them.
    nonfinite : {"error", "drop"}
        Rows with NaN/Inf: raise (default) or drop them with a :class:`NonfiniteWarning`
        listing their ids.

    Returns
    -------
    EmbeddingSet

    Notes
    -----
    Memory: the whole embeddings dataset is read (N x D x itemsize bytes) even for a subset;
    use :func:`iter_store` to stream a large set.  Time O(N·D) plus decompression.
    """
    _check_nonfinite(nonfinite)
    with _open_set(spec) as (g, where, all_ids):
        attrs, modality, encoder, settings = _meta_of(g)
        if ids is not None:
            idx = _indices_of(all_ids, ids, where)
            X = _read_rows(g[EMB], idx)
            sel_ids = all_ids[idx]
        else:
            idx = None
            X = g[EMB][()]
            sel_ids = all_ids
        labels = _read_labels(g, idx, where)
    if X.dtype == np.float64:
        X = X.astype(np.float32)
    X, kept = _handle_nonfinite(X, sel_ids, nonfinite, where)
    return EmbeddingSet(X, kept, modality, encoder, settings, attrs, where,
                        _labels_of(labels, sel_ids, kept))


@contextlib.contextmanager
def _open_set(spec: str | os.PathLike):
    """Open the embedding set ``spec`` for reading: ``(group, where, ids)``, ids checked unique."""
    path, group = parse_spec(spec)
    where = _spec_str(path, group)
    with _open_read(path) as f:
        g = _set_group(f, path, group)
        all_ids = _read_ids(g[IDS])
        _check_ids_text(all_ids, where)
        _check_unique(all_ids, where)
        yield g, where, all_ids


def _read_rows(ds, idx: np.ndarray) -> np.ndarray:
    n = ds.shape[0]
    if len(idx) == 0:
        return np.zeros((0, ds.shape[1]), dtype=ds.dtype)
    if len(idx) > n // 8:
        return ds[()][idx]
    order = np.argsort(idx)
    rows = ds[idx[order]]  # h5py needs increasing indices
    out = np.empty_like(rows)
    out[order] = rows
    return out


def iter_store(spec: str | os.PathLike, chunk_rows: int = 65536, *,
               nonfinite: str = "error") -> Iterator[EmbeddingSet]:
    """Stream an embedding set in row blocks of at most ``chunk_rows`` rows.

    Yields :class:`EmbeddingSet` objects (``X``, ``ids`` of the block, the set's metadata) in
    store order.  Memory O(chunk_rows x D).  Id uniqueness is checked once, up front; NaN/Inf
    rows are handled per block as in :func:`read_store`.
    """
    _check_nonfinite(nonfinite)
    if not isinstance(chunk_rows, (int, np.integer)) or isinstance(chunk_rows, bool) or chunk_rows < 1:
        raise StoreError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    with _open_set(spec) as (g, where, all_ids):
        attrs, modality, encoder, settings = _meta_of(g)
        ds = g[EMB]
        labels = _read_labels(g, None, where)
        for start in range(0, ds.shape[0], int(chunk_rows)):
            stop = min(start + int(chunk_rows), ds.shape[0])
            X = ds[start:stop]
            if X.dtype == np.float64:
                X = X.astype(np.float32)
            X, blk = _handle_nonfinite(X, all_ids[start:stop], nonfinite, where)
            lab = None if labels is None else _labels_of(labels[start:stop], all_ids[start:stop],
                                                         blk)
            yield EmbeddingSet(X, blk, modality, encoder, dict(settings), dict(attrs), where, lab)


def store_info(spec: str | os.PathLike) -> dict[str, Any]:
    """Metadata of an embedding set without reading its embeddings.

    Returns
    -------
    dict
        ``n``, ``dim``, ``dtype``, ``modality``, ``encoder``, ``format_version``, ``ids_sample``
        (first 5 ids), ``settings``, ``created``, ``fastcka_version``, ``name``, ``groups`` (all
        sets in the file), ``path``, ``group``, ``chunks``, ``compression``, ``file_bytes``,
        ``labels`` (None, or ``{"dtype", "n_classes", "counts"}``: the rows per label value).
    """
    path, group = parse_spec(spec)
    where = _spec_str(path, group)
    with _open_read(path) as f:
        g = _set_group(f, path, group)
        attrs, modality, encoder, settings = _meta_of(g)
        emb, ids = g[EMB], g[IDS]
        sample = [s for s in ids.asstr()[: min(5, ids.shape[0])].tolist()]
        info = {
            "n": int(emb.shape[0]),
            "dim": int(emb.shape[1]),
            "dtype": str(emb.dtype),
            "modality": modality,
            "encoder": encoder,
            "format_version": int(attrs.get("format_version", FORMAT_VERSION)),
            "ids_sample": sample,
            "settings": settings,
            "created": attrs.get("created", ""),
            "fastcka_version": attrs.get("fastcka_version", ""),
            "name": attrs.get("name", ""),
            "groups": _list_sets_open(f),
            "path": str(path),
            "group": group,
            "spec": where,
            "chunks": list(emb.chunks) if emb.chunks else None,
            "compression": emb.compression,
            "file_bytes": path.stat().st_size,
            "labels": _labels_info(_read_labels(g, None, where)),
        }
    return info


def _labels_info(labels: np.ndarray | None) -> dict[str, Any] | None:
    if labels is None:
        return None
    vals, counts = np.unique(labels, return_counts=True)
    return {"dtype": "int64" if labels.dtype.kind == "i" else "string",
            "n_classes": int(vals.size),
            "counts": {str(v): int(c) for v, c in zip(vals.tolist(), counts.tolist(), strict=True)}}


def common_rows(*id_lists: Iterable[Any]) -> list[np.ndarray]:
    """Row indices, one array per id list, of the ids that every list holds.

    The pairing rule of fastcka (the one id intersection every caller uses): ids are compared as
    strings; the common ids come **in the first list's order**; row ``j`` of every returned array
    points at the same id.  O(total length) with hash maps.
    """
    lists = [[str(v) for v in ids] for ids in id_lists]
    if not lists:
        return []
    common = set(lists[0])
    for other in lists[1:]:
        common &= set(other)
    first = [i for i, v in enumerate(lists[0]) if v in common]
    out = [np.asarray(first, dtype=np.intp)]
    for other in lists[1:]:
        pos = {v: i for i, v in enumerate(other)}
        out.append(np.fromiter((pos[lists[0][i]] for i in first), dtype=np.intp,
                               count=len(first)))
    return out


def align_many(sets: Sequence[EmbeddingSet | str | os.PathLike], *, min_common: int = 0,
               names: Sequence[str] | None = None, nonfinite: str = "error",
               copy: bool = False) -> list[EmbeddingSet]:
    """Restrict embedding sets to the ids all of them share, paired row by row.

    Parameters
    ----------
    sets : sequence of EmbeddingSet or store spec
        Specs are read with :func:`read_store` (``nonfinite`` passed on).
    min_common : int
        Fewer common ids is an :class:`~fastcka.errors.InputError` naming the sets.
    names : sequence of str, optional
        How the error names the sets (default: their specs).
    copy : bool
        Copy a set whose rows are already exactly the common ids (by default it is returned as
        it is).

    Returns
    -------
    list of EmbeddingSet
        Equal ``ids`` in every set: the common ids, **in the first set's row order**
        (:func:`common_rows`).  May be empty when ``min_common`` is 0.
    """
    from .errors import InputError

    sets = [s if isinstance(s, EmbeddingSet) else read_store(s, nonfinite=nonfinite)
            for s in sets]
    rows = common_rows(*(s.ids.tolist() for s in sets))
    n = len(rows[0]) if rows else 0
    if n < min_common:
        shown = names if names is not None else [s.spec or "(in memory)" for s in sets]
        raise InputError(f"only {n} ids are common to {', '.join(map(str, shown))}; need at "
                         f"least {min_common}")
    return [s.take(r) if copy or not np.array_equal(r, np.arange(s.n)) else s
            for s, r in zip(sets, rows, strict=True)]


def align(a: EmbeddingSet | str | os.PathLike, b: EmbeddingSet | str | os.PathLike
          ) -> tuple[EmbeddingSet, EmbeddingSet]:
    """Restrict two sets to their common ids, paired row by row (:func:`align_many` of two).

    Parameters
    ----------
    a, b : EmbeddingSet or store spec

    Returns
    -------
    (a2, b2) : EmbeddingSet
        ``a2.ids == b2.ids``: the ids present in both, **in a's row order**; copies.  May be
        empty; callers decide how many common ids they need.
    """
    a2, b2 = align_many([a, b], copy=True)
    return a2, b2


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------

def utf8_text(s: str) -> str:
    """``s`` as valid UTF-8 text: bytes of a non-UTF-8 file name (surrogate escapes) become U+FFFD."""
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _chunk_rows_for(n: int, dim: int, itemsize: int) -> int:
    return max(1, min(n, _CHUNK_BYTES // max(1, dim * itemsize)))


def _write_set(g, X: np.ndarray, ids: np.ndarray, *, modality: str, encoder: str, settings: dict,
               name: str, created: str | None = None, compression: str | None = "gzip",
               labels: np.ndarray | None = None) -> None:
    """Write datasets and attributes of one set into the (empty of datasets) group ``g``."""
    h5py = _h5py()
    n, dim = X.shape
    kw: dict[str, Any] = {}
    if n > 0:
        kw["chunks"] = (_chunk_rows_for(n, dim, X.dtype.itemsize), dim)
        if compression == "gzip":
            kw.update(compression="gzip", compression_opts=_GZIP_LEVEL, shuffle=True)
        elif compression == "lzf":
            kw.update(compression="lzf", shuffle=True)
        elif compression is not None:
            raise StoreError(f"compression must be 'gzip', 'lzf' or None, got {compression!r}")
    g.create_dataset(EMB, data=X, **kw)
    g.create_dataset(IDS, data=np.asarray(ids.tolist(), dtype=object),
                     dtype=h5py.string_dtype("utf-8"))
    if labels is not None:
        labels = _as_labels(labels, n)
        if labels.dtype.kind == "i":
            g.create_dataset(LABELS, data=labels)
        else:
            g.create_dataset(LABELS, data=np.asarray(labels.tolist(), dtype=object),
                             dtype=h5py.string_dtype("utf-8"))
    g.attrs["format_version"] = np.int64(FORMAT_VERSION)
    g.attrs["fastcka_version"] = __version__
    g.attrs["created"] = created or datetime.now(UTC).isoformat(timespec="seconds")
    g.attrs["modality"] = modality
    g.attrs["encoder"] = utf8_text(encoder)
    g.attrs["settings"] = json.dumps(settings, sort_keys=True)
    g.attrs["name"] = utf8_text(name)


def _copy_except(src, dst, target: str) -> None:
    """Copy ``src`` into ``dst`` leaving out the set at ``target`` (its datasets and attributes)."""
    h5py = _h5py()
    here = src.name  # "/" or "/a/b"
    if here == target:
        for k in src:
            if k in _RESERVED:
                continue
            src.copy(src[k], dst, name=k)
        return
    for k, v in src.attrs.items():
        dst.attrs[k] = v
    for k in src:
        child = (here.rstrip("/") + "/" + k)
        obj = src[k]
        if isinstance(obj, h5py.Group) and (target == child or target.startswith(child + "/")):
            _copy_except(obj, dst.require_group(k), target)
        else:
            src.copy(obj, dst, name=k)


def check_store_target(path: Path) -> None:
    """Fail early on an output store path that cannot be written (before any work)."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise StoreError(f"output folder does not exist: {parent}")
    if path.is_dir():
        raise StoreError(f"store path is a folder: {path}")
    if path.exists():
        try:
            ok = _h5py().is_hdf5(path)
        except OSError:
            ok = False
        if not ok:
            raise StoreError(f"refusing to overwrite {path}: it exists and is not an HDF5 file")


def _spec_lock(path: Path, group: str):
    """The lock of one set's writer (held by :class:`StoreWriter` for its whole life)."""
    where = _spec_str(path, group)
    tag = "" if group == "/" else "." + group.strip("/").replace("/", "~")
    return _io.locked(path, tag=tag + ".writer", wait=False, what=where)


@contextlib.contextmanager
def _h5_image(path: Path):
    """An in-memory HDF5 file whose image is written to ``path`` with plain writes on success.

    HDF5 never writes to the disk itself, so a full disk is one clean ``OSError`` (no HDF5
    error stack, no half-closed file ids) and an interrupted write leaves nothing to clean.
    Memory: the size of the file.
    """
    h5py = _h5py()
    f = h5py.File(f"fastcka-image-{id(path)}", "w", driver="core", backing_store=False)
    try:
        yield f
        f.flush()
        image = f.id.get_file_image()
    finally:
        f.close()
    _io.write_bytes_to(path, image)


def _commit_set(path: Path, group: str, X: np.ndarray, ids: np.ndarray, **meta: Any) -> None:
    """Write one set under ``path`` atomically, keeping the file's other sets.

    Writers of one file are serialised by its lock (another set being added waits), so a set
    added concurrently by another process is never lost.
    """
    path = _io.real_target(path)
    check_store_target(path)
    with _io.atomic_path(path) as tmp:
        check_store_target(path)  # may have changed while waiting for the lock
        existing = path.exists()
        with _h5_image(tmp) as out:
            if existing:
                with _open_read(path) as old:
                    _copy_except(old, out, group)
            g = out.require_group(group) if group != "/" else out
            for k in list(g.attrs):  # a replaced set starts with fresh attributes
                del g.attrs[k]
            _write_set(g, X, ids, **meta)
            if group != "/" and "format_version" not in out.attrs:
                out.attrs["format_version"] = np.int64(FORMAT_VERSION)


def write_store(spec: str | os.PathLike, X: Any, ids: Any = None, *, modality: str = "other",
                encoder: str = "", settings: dict | None = None, name: str = "",
                dtype: Any = None, nonfinite: str = "error", compression: str | None = "gzip",
                labels: Any = None) -> EmbeddingSet:
    """Write an embedding set atomically.

    Parameters
    ----------
    spec : str or path
        ``file.h5`` (root set) or ``file.h5::/group``.  Other sets already in the file are kept;
        a set already at that group is replaced.
    X : array_like, shape (n, dim)
        Real numbers.  Stored as float16 when ``X`` is float16, else float32 (float64 and integer
        input is cast) unless ``dtype`` says otherwise.
    ids : sequence of str, optional
        One unique, non-empty id per row (no line breaks); default ``"0" .. "n-1"``.
    modality : {"image", "text", "other"}
    encoder : str
        Encoder name.
    settings : dict, optional
        Encoder settings (must be JSON-serialisable).
    name : str
        Free-form name of the set.
    dtype : {"float32", "float16"}, optional
    nonfinite : {"error", "drop"}
        Rows with NaN/Inf (after the cast): raise, or drop with a :class:`NonfiniteWarning`.
    compression : {"gzip", "lzf", None}
    labels : sequence of int or str, optional
        One class label per row, stored as the set's ``labels`` dataset.

    Returns
    -------
    EmbeddingSet
        What was written (after casting / dropping).

    Notes
    -----
    The file is written to a temporary file beside ``path`` and renamed, so ``path`` is always
    either the old or the new complete store.  Adding a set to an existing file rewrites the file
    (time and disk O(file size)).  Concurrent writers to the same file are not supported.
    """
    path, group = parse_spec(spec)
    where = _spec_str(path, group)
    _check_modality(modality)
    _check_nonfinite(nonfinite)
    settings = _check_settings(settings)
    X = to_host(X)
    Xa = np.asarray(X) if not isinstance(X, np.ndarray) else X
    dt = _store_dtype(dtype, Xa if isinstance(Xa, np.ndarray) else None)
    Xs = _as_embeddings(Xa, dt)
    if Xs.shape[0] == 0:
        raise StoreError(f"{where}: no rows to write (embeddings have shape {Xs.shape})")
    ids_all = _as_ids(ids, Xs.shape[0])
    lab = None if labels is None else _as_labels(labels, Xs.shape[0])
    Xs, ids_a = _handle_nonfinite(Xs, ids_all, nonfinite, where)
    if Xs.shape[0] == 0:
        raise StoreError(f"{where}: every row contains NaN or Inf; nothing to write")
    lab = _labels_of(lab, ids_all, ids_a)
    with _spec_lock(_io.real_target(path), group):
        _commit_set(path, group, Xs, ids_a, modality=modality, encoder=str(encoder),
                    settings=settings, name=str(name), compression=compression, labels=lab)
    return EmbeddingSet(Xs, ids_a, modality, str(encoder), settings, {}, where, lab)


# --------------------------------------------------------------------------------------------
# appending writer with a partial folder
# --------------------------------------------------------------------------------------------

_META = "meta.json"
_CHUNK_RE = re.compile(r"^chunk-(\d{8})\.h5$")


_SEGMENT_RE = re.compile(r"^segment-(\d{8})\.fcs$")
# one committed batch in a segment: magic, rows, embedding bytes, id bytes, CRC-32 of both
_RECORD = struct.Struct("<4sIQQI")
_MAGIC = b"FCR1"
#: a resumable writer starts a new segment file after this many rows or seconds
SEGMENT_ROWS = 10_000
SEGMENT_SECONDS = 300.0


def _partial_chunks(pdir: Path) -> list[Path]:
    """HDF5 chunk files of partial folders written by fastcka before segments (read, kept)."""
    return sorted((p for p in pdir.iterdir() if _CHUNK_RE.match(p.name)), key=lambda p: p.name)


def _partial_segments(pdir: Path) -> list[Path]:
    return sorted((p for p in pdir.iterdir() if _SEGMENT_RE.match(p.name)), key=lambda p: p.name)


def _record(X: np.ndarray, ids: np.ndarray) -> bytes:
    data = np.ascontiguousarray(X, dtype=X.dtype.newbyteorder("<")).tobytes()
    text = "\n".join(ids.tolist()).encode("utf-8")
    return _RECORD.pack(_MAGIC, X.shape[0], len(data), len(text),
                        zlib.crc32(text, zlib.crc32(data))) + data + text


def _read_segment(path: Path, dim: int, dtype: np.dtype) -> tuple[list[tuple[np.ndarray, np.ndarray]], int, int]:
    """The complete records of a segment and the byte offset where they end.

    A record cut short (writer killed mid-write, disk full) or failing its CRC ends the segment:
    it and anything after it were never committed.
    """
    buf = path.read_bytes()
    dt = np.dtype(dtype).newbyteorder("<")
    out, off = [], 0
    while off + _RECORD.size <= len(buf):
        magic, n, nd, ni, crc = _RECORD.unpack_from(buf, off)
        start, end = off + _RECORD.size, off + _RECORD.size + nd + ni
        if magic != _MAGIC or nd != n * dim * dt.itemsize or end > len(buf):
            break
        body = memoryview(buf)[start:end]
        if zlib.crc32(body) != crc:
            break
        X = np.frombuffer(body[:nd], dtype=dt).reshape(n, dim).astype(np.dtype(dtype))
        ids = bytes(body[nd:]).decode("utf-8").split("\n") if n else []
        out.append((X, np.asarray(ids, dtype=str) if ids else np.zeros(0, dtype="<U1")))
        off = end
    return out, off, len(buf)


def _partial_blocks(pdir: Path, meta: dict) -> Iterator[tuple[Path, np.ndarray, np.ndarray]]:
    """``(file, X, ids)`` of every committed block of a partial folder, in append order."""
    for c in _partial_chunks(pdir):
        with _open_read(c) as f:
            g = _set_group(f, c, "/")
            yield c, g[EMB][()], _read_ids(g[IDS])
    for s in _partial_segments(pdir):
        for X, ids in _read_segment(s, int(meta["dim"]), np.dtype(meta["dtype"]))[0]:
            yield s, X, ids


def _read_meta(pdir: Path) -> dict:
    try:
        meta = json.loads((pdir / _META).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"partial store {pdir} has no {_META}; remove the folder to start again") from None
    except ValueError as exc:
        raise StoreError(f"partial store {pdir}: unreadable {_META} ({_short(exc)})") from None
    v = meta.get("format_version")
    if not isinstance(v, int) or v > FORMAT_VERSION:
        raise StoreError(f"partial store {pdir} has format_version {v!r}; this fastcka reads <= {FORMAT_VERSION}")
    return meta


def read_partial(spec: str | os.PathLike) -> EmbeddingSet:
    """The rows an unfinished (or killed) :class:`StoreWriter` has committed so far.

    Reads every committed batch of ``partial_path(spec)`` in append order.  A batch being
    written when the writer died is incomplete (it fails its length or CRC check) and ignored.
    """
    pdir = partial_path(spec)
    if not pdir.is_dir():
        raise StoreError(f"no partial store for {spec}: {pdir} does not exist")
    meta = _read_meta(pdir)
    Xs, idss = [], []
    for _, X, ids in _partial_blocks(pdir, meta):
        Xs.append(X)
        idss.append(ids)
    dt = np.dtype(meta["dtype"])
    X = np.concatenate(Xs) if Xs else np.zeros((0, int(meta["dim"])), dtype=dt)
    ids = np.concatenate(idss) if idss else np.zeros(0, dtype="<U1")
    where = f"partial store {pdir}"
    _check_unique(ids, where)
    return EmbeddingSet(X, ids, meta.get("modality", "other"), meta.get("encoder", ""),
                        meta.get("settings", {}), {"created": meta.get("created", "")}, str(pdir))


class StoreWriter:
    """Append an embedding set chunk by chunk, resumably; the final store appears on close.

    Parameters
    ----------
    spec : str or path
        Final store (``file.h5`` or ``file.h5::/group``).
    dim : int
        Embedding dimension every chunk must have.
    dtype : {"float32", "float16"}
        Stored dtype (input is cast).
    modality, encoder, settings, name
        As in :func:`write_store`.
    resume : bool
        ``False`` (default): a leftover partial folder of the same spec is discarded and writing
        starts afresh.  ``True``: reopen the partial folder (its dim/dtype/modality/encoder must
        match), or, when there is none but the final store already holds this set, start from
        that set's rows; :attr:`existing_ids` then lists the ids already written.
    nonfinite : {"error", "drop"}
        Rows with NaN/Inf in an appended chunk.

    segment_rows, segment_seconds : int, float
        A new segment file of the partial folder is started after this many rows or seconds
        (defaults :data:`SEGMENT_ROWS`, :data:`SEGMENT_SECONDS`).

    Notes
    -----
    Each :meth:`append` appends one checksummed record to the current segment file
    ``segment-NNNNNNNN.fcs`` of ``partial_path(spec)`` (one file per 10k rows or 5 minutes, not
    one per batch: friendly to parallel file systems).  A record is committed when ``append``
    returns; a writer killed mid-record leaves a torn tail that readers ignore and ``resume``
    cuts off, so a killed writer leaves every committed batch readable (:func:`read_partial`)
    and nothing under the final name.  :meth:`close` (or leaving
    the ``with`` block without an exception) merges the chunks, validates them and writes the
    final store atomically, then removes the partial folder.  Leaving the ``with`` block with an
    exception keeps the partial folder for a later ``resume=True``.
    """

    def __init__(self, spec: str | os.PathLike, *, dim: int, dtype: Any = "float32",
                 modality: str = "other", encoder: str = "", settings: dict | None = None,
                 name: str = "", resume: bool = False, nonfinite: str = "error",
                 compression: str | None = "gzip", segment_rows: int = SEGMENT_ROWS,
                 segment_seconds: float = SEGMENT_SECONDS) -> None:
        self.path, self.group = parse_spec(spec)
        self.spec = _spec_str(self.path, self.group)
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 1:
            raise StoreError(f"dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        self.dtype = _store_dtype(dtype)
        self.modality = _check_modality(modality)
        self.encoder = str(encoder)
        self.settings = _check_settings(settings)
        self.name = str(name)
        self.nonfinite = _check_nonfinite(nonfinite)
        self.compression = compression
        self.partial = partial_path(spec)
        self._ids: set[str] = set()
        self._frozen: frozenset[str] | None = None
        self._n = 0
        self._seq = 0
        self._closed = False
        self.segment_rows = int(segment_rows)
        self.segment_seconds = float(segment_seconds)
        self._seg: tuple[int, Path] | None = None  # (fd, path) of the segment being appended
        self._seg_rows = 0
        self._seg_t0 = 0.0
        check_store_target(self.path)
        real = _io.real_target(self.path)
        self.partial = partial_path(_spec_str(real, self.group))
        self._lock = _spec_lock(real, self.group)
        self._lock.__enter__()  # another live writer of this set: refused, naming its pid
        try:
            _io.remove_stale_temporaries(self.partial)
            if resume and self.partial.is_dir():
                self._reopen()
            else:
                if self.partial.exists():
                    shutil.rmtree(self.partial) if self.partial.is_dir() else self.partial.unlink()
                self._start(seed_from_final=resume)
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        self._close_segment()
        lock, self._lock = getattr(self, "_lock", None), None
        if lock is not None:
            lock.__exit__(None, None, None)

    # -- set-up ---------------------------------------------------------------------------
    def _meta(self) -> dict:
        return {"format_version": FORMAT_VERSION, "dim": self.dim, "dtype": self.dtype.name,
                "modality": self.modality, "encoder": self.encoder, "settings": self.settings,
                "name": self.name, "group": self.group, "target": self.path.name,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "fastcka_version": __version__}

    def _start(self, seed_from_final: bool) -> None:
        meta = self._meta()
        tmp = _io.temp_name(self.partial)
        tmp.mkdir()
        (tmp / _META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        os.replace(tmp, self.partial)
        self.created = meta["created"]
        if seed_from_final and self.path.exists() and self.group in list_sets(self.path):
            old = read_store(self.spec)
            self._check_compatible({"dim": old.dim, "dtype": old.X.dtype.name,
                                    "modality": old.modality, "encoder": old.encoder}, self.spec)
            self._write_chunk(old.X, old.ids)

    def _check_compatible(self, meta: dict, where: str) -> None:
        for key, mine in (("dim", self.dim), ("dtype", self.dtype.name), ("modality", self.modality),
                          ("encoder", self.encoder)):
            if meta.get(key) != mine:
                raise StoreError(f"cannot resume {where}: it has {key} {meta.get(key)!r}, "
                                 f"this writer {mine!r}")

    def _reopen(self) -> None:
        meta = _read_meta(self.partial)
        self._check_compatible(meta, f"partial store {self.partial}")
        self.settings = meta.get("settings", self.settings)
        self.created = meta.get("created")
        for p in self.partial.iterdir():  # a chunk half-written when the writer died
            if p.name.endswith(".tmp"):
                p.unlink()
        for c in _partial_chunks(self.partial):
            with _open_read(c) as f:
                g = _set_group(f, c, "/")
                ids = _read_ids(g[IDS]).tolist()
                if g[EMB].shape[1] != self.dim:
                    raise StoreError(f"partial chunk {c} has dim {g[EMB].shape[1]}, expected {self.dim}")
            dup = self._ids.intersection(ids)
            if dup:
                raise StoreError(f"partial store {self.partial}: id(s) repeated across chunks: {_show(sorted(dup))}")
            self._ids.update(ids)
            self._n += len(ids)
            self._seq = int(_CHUNK_RE.match(c.name).group(1)) + 1
        for sp in _partial_segments(self.partial):
            blocks, good, size = _read_segment(sp, self.dim, self.dtype)
            if good < size:  # a batch cut short when the writer died: never committed
                os.truncate(sp, good)
                log.info(f"cut an incomplete batch of {size - good} bytes off {sp}")
            for _, ids_a in blocks:
                ids = ids_a.tolist()
                dup = self._ids.intersection(ids)
                if dup:
                    raise StoreError(f"partial store {self.partial}: id(s) repeated across "
                                     f"batches: {_show(sorted(dup))}")
                self._ids.update(ids)
                self._n += len(ids)
            self._seq = max(self._seq, int(_SEGMENT_RE.match(sp.name).group(1)) + 1)

    # -- public ---------------------------------------------------------------------------
    @property
    def existing_ids(self) -> frozenset[str]:
        """Ids already committed (earlier sessions included); :meth:`append` skips them."""
        if self._frozen is None:
            self._frozen = frozenset(self._ids)
        return self._frozen

    @property
    def n(self) -> int:
        """Rows committed so far."""
        return self._n

    def append(self, X: Any, ids: Any) -> int:
        """Commit one chunk of rows; ids already present are skipped silently.

        Returns the number of rows written.  The chunk is durable (readable by
        :func:`read_partial`, kept by ``resume=True``) once this returns.
        """
        if self._closed:
            raise StoreError(f"StoreWriter for {self.spec} is closed")
        Xa = _as_embeddings(X, self.dtype, "appended embeddings")
        if Xa.shape[1] != self.dim:
            raise StoreError(f"appended embeddings have dim {Xa.shape[1]}, the store has dim {self.dim}")
        ids_a = _as_ids(ids, Xa.shape[0], "appended ids")
        keep = np.fromiter((i not in self._ids for i in ids_a.tolist()), dtype=bool, count=len(ids_a))
        Xa, ids_a = Xa[keep], ids_a[keep]
        Xa, ids_a = _handle_nonfinite(Xa, ids_a, self.nonfinite, self.spec)
        if len(ids_a) == 0:
            return 0
        self._write_chunk(Xa, ids_a)
        return int(len(ids_a))

    def _write_chunk(self, X: np.ndarray, ids: np.ndarray) -> None:
        """Append one record to the current segment (a new one after segment_rows/seconds)."""
        now = time.monotonic()
        if self._seg is not None and (self._seg_rows >= self.segment_rows
                                      or now - self._seg_t0 >= self.segment_seconds):
            self._close_segment()
        if self._seg is None:
            path = self.partial / f"segment-{self._seq:08d}.fcs"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o666)
            self._seg, self._seg_rows, self._seg_t0 = (fd, path), 0, now
            self._seq += 1
        fd, path = self._seg
        rec = memoryview(_record(X, ids))
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            with _io.critical():
                while rec:
                    rec = rec[os.write(fd, rec):]
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)  # the batch is not committed
            if isinstance(exc, OSError) and _io.is_disk_full(exc):
                raise _io.disk_full(path) from None
            raise
        self._seg_rows += len(ids)
        self._n += len(ids)
        self._ids.update(ids.tolist())
        self._frozen = None

    def _close_segment(self) -> None:
        seg, self._seg = getattr(self, "_seg", None), None
        if seg is not None:
            with contextlib.suppress(OSError):
                os.fsync(seg[0])
            os.close(seg[0])

    def close(self, labels: dict[str, Any] | None = None) -> EmbeddingSet:
        """Merge the chunks, validate, write the final store atomically, remove the partial folder.

        ``labels`` (id -> class label, integer or string) stores a ``labels`` dataset; every
        written id needs one.  Raises :class:`StoreError` when no row was ever appended (the
        partial folder is kept).
        """
        if self._closed:
            raise StoreError(f"StoreWriter for {self.spec} is already closed")
        self._close_segment()
        part = read_partial(_spec_str(_io.real_target(self.path), self.group))
        if part.n == 0:
            raise StoreError(f"{self.spec}: no rows were appended; nothing to write")
        if part.dim != self.dim:
            raise StoreError(f"{self.spec}: partial chunks have dim {part.dim}, expected {self.dim}")
        X, ids = _handle_nonfinite(part.X, part.ids, "error", str(self.partial))
        lab = None
        if labels is not None:
            missing = [i for i in ids.tolist() if i not in labels]
            if missing:
                raise StoreError(f"{self.spec}: no label for {len(missing)} id(s), "
                                 f"{_show(missing)}")
            lab = _as_labels(np.asarray([labels[i] for i in ids.tolist()], dtype=object),
                             len(ids))
        _commit_set(self.path, self.group, X, ids, modality=self.modality, encoder=self.encoder,
                    settings=self.settings, name=self.name, created=self.created,
                    compression=self.compression, labels=lab)
        shutil.rmtree(self.partial, ignore_errors=True)
        self._closed = True
        self._release()
        return EmbeddingSet(X, ids, self.modality, self.encoder, self.settings, {}, self.spec, lab)

    def abandon(self) -> None:
        """Stop without writing the final store; the partial folder stays for ``resume=True``."""
        self._closed = True
        self._release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._release()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._closed:
            return
        if exc_type is None:
            self.close()
        else:
            self.abandon()
