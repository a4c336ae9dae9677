"""The appending writer of embedding stores (:class:`StoreWriter`) and its partial folder
(private part of :mod:`fastcka.store`)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import struct
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import _io
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
from .errors import StoreError

log = logging.getLogger("fastcka")

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
        from .store import _spec_lock, check_store_target  # the writing floor (no cycle)

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
        from .store import _commit_set

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
