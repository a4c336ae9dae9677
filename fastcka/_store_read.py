"""Reading embedding stores: HDF5 access, read/iter/info, and pairing by id (private part
of :mod:`fastcka.store`)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._store_set import (  # noqa: F401
    _CHUNK_BYTES,
    _GZIP_LEVEL,
    _N_SHOW,
    _RESERVED,
    EMB,
    FORMAT_VERSION,
    IDS,
    LABELS,
    MODALITIES,
    STORE_DTYPES,
    EmbeddingSet,
    NonfiniteWarning,
    _as_embeddings,
    _as_ids,
    _as_labels,
    _check_modality,
    _check_nonfinite,
    _check_settings,
    _handle_nonfinite,
    _indices_of,
    _labels_of,
    _nonfinite_rows,
    _show,
    _spec_str,
    _store_dtype,
    parse_spec,
    partial_path,
)
from ._version import __version__
from .errors import StoreError

log = logging.getLogger("fastcka")

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
