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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import _io

# the set, the specs and the checks; reading and pairing (private modules by role)
from ._store_read import (  # noqa: F401
    _attr,
    _check_format_version,
    _check_ids_text,
    _check_unique,
    _h5py,
    _is_set,
    _labels_info,
    _list_sets_open,
    _meta_of,
    _open_read,
    _open_set,
    _read_ids,
    _read_labels,
    _read_rows,
    _set_group,
    _short,
    align,
    align_many,
    common_rows,
    iter_store,
    list_sets,
    read_store,
    store_info,
)
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
from .backend import to_host
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


# the appending writer (imports the writing functions above when it runs)
from ._store_writer import (  # noqa: E402, F401
    _CHUNK_RE,
    _MAGIC,
    _META,
    _RECORD,
    _SEGMENT_RE,
    SEGMENT_ROWS,
    SEGMENT_SECONDS,
    StoreWriter,
    _partial_blocks,
    _partial_chunks,
    _partial_segments,
    _read_meta,
    _read_segment,
    _record,
    read_partial,
)
