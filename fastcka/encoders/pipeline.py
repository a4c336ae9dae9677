"""The embedding loop: records -> batches -> encoder -> :class:`fastcka.store.StoreWriter`.

Decoding/preprocessing (images) and tokenisation (texts) run in a thread pool while the model
runs on the previous batch; every batch is committed as one durable chunk of the store's partial
folder, so a killed run resumed with ``resume=True`` embeds only the ids still missing and the
final store holds every id exactly once.  The final store appears (atomically) only when every
record has been handled.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._progress import progress
from ..errors import InputError
from .base import ImageEncoder, TextEncoder

log = logging.getLogger("fastcka")

# seconds to sleep after each committed batch; a test knob to make a run slow enough to kill
_DELAY_ENV = "FASTCKA_EMBED_BATCH_DELAY"


@dataclass
class EmbedReport:
    """What one embedding run did.

    Attributes
    ----------
    output : str
        The store spec written.
    n_total : int
        Records in the input (after ``limit``).
    n_written : int
        Rows embedded and written in this run.
    n_existing : int
        Rows already in the store/partial folder (``resume``) and skipped.
    failed : list of (id, reason)
        Unreadable inputs skipped (``on_error="skip"``).
    n_rows : int
        Rows in the final store.
    seconds : float
        Wall time of the loop (model loading excluded).
    """

    output: str
    encoder: str
    modality: str
    dim: int
    n_total: int
    n_written: int = 0
    n_existing: int = 0
    n_inputs: int = 0  # images or captions actually encoded in this run
    failed: list[tuple[str, str]] = field(default_factory=list)
    n_rows: int = 0
    seconds: float = 0.0
    batches: tuple[int, int] = (0, 0)  # the batch range of the run this report covers
    settings: dict = field(default_factory=dict)  # the store's settings

    @property
    def rate(self) -> float:
        """Inputs (images or captions) per second in this run."""
        return self.n_inputs / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {"output": self.output, "encoder": self.encoder, "modality": self.modality,
                "dim": self.dim, "n_total": self.n_total, "n_written": self.n_written,
                "n_existing": self.n_existing, "n_rows": self.n_rows,
                "failed": [{"id": i, "reason": r} for i, r in self.failed],
                "seconds": round(self.seconds, 3), "inputs_per_s": round(self.rate, 2)
                if self.seconds > 0 else None}


def _batches(seq: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def _check_common(batch_size: int, workers: int | None, on_error: str) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if on_error not in ("skip", "fail"):
        raise InputError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    if not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    return workers


def _prefetched(batches: list, submit: Callable[[Any], Any], depth: int = 2) -> Iterator[tuple]:
    """Yield ``(batch, prepared)`` in order, with up to ``depth`` batches being prepared ahead."""
    pending: list[tuple[Any, Any]] = []
    it = iter(batches)
    for _ in range(depth):
        b = next(it, None)
        if b is None:
            break
        pending.append((b, submit(b)))
    while pending:
        b, fut = pending.pop(0)
        nxt = next(it, None)
        if nxt is not None:
            pending.append((nxt, submit(nxt)))
        yield b, fut


def _writer(output: str, encoder, resume: bool, extra: dict):
    from ..store import StoreWriter

    settings = dict(encoder.settings)
    settings.update(extra)
    return StoreWriter(output, dim=encoder.dim, dtype="float32", modality=encoder.modality,
                       encoder=encoder.name, settings=settings, resume=resume)


CPU_IMAGE_BATCH = 4
GPU_IMAGE_BATCH = 32


def default_image_batch(encoder: ImageEncoder) -> int:
    """Images per model call when none is given: 32 on a GPU, 4 on the CPU."""
    runner = getattr(encoder, "runner", None)
    device = str(getattr(runner, "device", getattr(encoder, "device", "cpu")))
    return CPU_IMAGE_BATCH if device == "cpu" else GPU_IMAGE_BATCH


def embed_images(records: Sequence, encoder: ImageEncoder, output: str, *,
                 batch_size: int | None = None,
                 workers: int | None = None, resume: bool = False, on_error: str = "skip",
                 settings: dict | None = None, show_progress: bool = True,
                 shard: tuple[int, int] | None = None) -> EmbedReport:
    """Embed image records into the store ``output`` (``file.h5`` or ``file.h5::/group``).

    Parameters
    ----------
    records : sequence of :class:`fastcka.datasets.ImageRecord`
    encoder : ImageEncoder
    output : str
        Store spec.  The final store appears only when every record has been handled.
    batch_size : int, optional
        Images per model call (and per committed chunk).  Default: 32 on a GPU, 4 on the CPU
        (small batches stay in cache: on a 2-core machine batch 4 embeds ~2.5x more images/s
        than batch 32 with efficientnet-lite0, see bench/embed.py).
    workers : int, optional
        Decoding threads (default ``min(4, cpu_count)``).
    resume : bool
        Continue a killed run: ids already committed are skipped.
    on_error : {"skip", "fail"}
        An unreadable image: skipped and reported by id, or an :class:`InputError` naming the id
        (the partial folder is kept, so ``resume`` continues after fixing the file).
    settings : dict, optional
        Extra entries recorded in the store's settings (source, limit, ...).
    shard : (i, n), optional
        Embed only shard i of n of the run's batches (:func:`shard_batches`) into ``output``:
        each of its batches is the unsharded run's, so its rows are that run's bit for bit.

    Returns
    -------
    EmbedReport

    Notes
    -----
    Memory: ``(depth + 1) * batch_size`` preprocessed images (3 x 224 x 224 float32 = 0.6 MB
    each) plus the model.  Decoding runs in threads (PIL releases the GIL while decoding and
    resizing); inference runs on the calling thread.
    """
    if batch_size is None:
        batch_size = default_image_batch(encoder)
    workers = _check_common(batch_size, workers, on_error)
    n_total = len(records)
    records, rng = shard_batches(list(_batches(list(records), batch_size)), shard)
    with _writer(output, encoder, resume, dict(settings or {}, batch_size=batch_size)) as writer:
        done = writer.existing_ids
        todo = [r for r in records if r.id not in done]
        rep = _start_report(writer, encoder, "image", n_total, len(records) - len(todo), rng)
        if not todo and writer.n == 0 and shard is None:
            raise InputError("no images to embed")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastcka-decode") as pool:
            def submit(batch):
                return [pool.submit(_decode, encoder, r) for r in batch]

            for batch, futs in _each_batch(list(_batches(todo, batch_size)), submit, len(todo),
                                           "embed images", "img", show_progress):
                arrays, ids = _decoded(batch, futs, on_error, rep)
                if arrays:
                    X = encoder.infer(arrays)
                    rep.n_written += writer.append(X, ids)
                    rep.n_inputs += len(arrays)
        rep.seconds = time.perf_counter() - t0
        if writer.n == 0 and shard is None:
            raise InputError(f"none of the {len(records)} images could be read "
                             f"(first: {rep.failed[0][0]!r}: {rep.failed[0][1]})")
        rep.n_rows = _close(writer, _labels(records))  # the rows of the final store, as written
    return rep


def _start_report(writer, encoder, modality: str, n_total: int, n_existing: int,
                  batches: tuple[int, int]) -> EmbedReport:
    """The report of a run that has opened ``writer`` (nothing written by it yet)."""
    return EmbedReport(output=writer.spec, encoder=encoder.name, modality=modality,
                       dim=encoder.dim, n_total=n_total, n_existing=n_existing, batches=batches,
                       settings=dict(writer.settings))


def _each_batch(batches: list, submit: Callable[[Any], Any], total: int, desc: str, unit: str,
                show_progress: bool) -> Iterator[tuple]:
    """:func:`_prefetched`'s ``(batch, prepared)``; once the caller has handled a batch, the
    progress bar advances by its items and the test delay (``FASTCKA_EMBED_BATCH_DELAY``) is
    slept."""
    delay = float(os.environ.get(_DELAY_ENV, "0") or 0)
    bar = progress(total=total, desc=desc, unit=unit) if show_progress else None
    for batch, prepared in _prefetched(batches, submit):
        yield batch, prepared
        if bar is not None:
            bar.update(len(batch))
        if delay:
            time.sleep(delay)
    if bar is not None:
        bar.close()


def _decode(encoder: ImageEncoder, rec) -> tuple[Any, str | None]:
    """``(the preprocessed image, None)``, or ``(None, reason)`` for an unreadable image."""
    from ..datasets import load_image

    try:
        return encoder.prepare(load_image(rec)), None
    except Exception as exc:  # unreadable/corrupt image: reported by id
        return None, f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]


def _decoded(batch: Sequence, futs: list, on_error: str, rep: EmbedReport) -> tuple[list, list]:
    """The preprocessed images of a batch and their ids; an unreadable one is skipped and
    recorded in ``rep.failed`` (``on_error="skip"``) or refused (``"fail"``)."""
    arrays, ids = [], []
    for rec, fut in zip(batch, futs, strict=True):
        arr, err = fut.result()
        if err is not None:
            if on_error == "fail":
                raise InputError(f"image {rec.id!r} cannot be read: {err}")
            log.warning(f"skipping image {rec.id!r}: {err}")
            rep.failed.append((rec.id, err))
            continue
        arrays.append(arr)
        ids.append(rec.id)
    return arrays, ids


def _labels(records: Sequence) -> dict | None:
    """A labelled source (Fashion-MNIST .npy, ImageFolder tree): the label of every record's
    id, so labels travel with the rows; None when a record has none."""
    if records and all(getattr(r, "label", None) is not None for r in records):
        return {r.id: r.label for r in records}
    return None


def embed_texts(records: Sequence, encoder: TextEncoder, output: str, *, batch_size: int = 64,
                workers: int | None = None, resume: bool = False, caption_mean: bool = True,
                settings: dict | None = None, show_progress: bool = True,
                shard: tuple[int, int] | None = None) -> EmbedReport:
    """Embed caption records into the store ``output``.

    Parameters
    ----------
    records : sequence of :class:`fastcka.datasets.TextRecord`
    encoder : TextEncoder
    output : str
    batch_size : int
        Captions per model call (records are never split across calls).
    workers : int, optional
        Tokenisation threads preparing the next batches (default ``min(4, cpu_count)``).
    resume : bool
    caption_mean : bool
        True: one row per id, the mean of its captions' (normalised) embeddings, not
        renormalised.  False: one row per caption, id ``"<id>#<k>"`` (k from 0) when an id has
        several captions, the plain id when it has one.
    shard : (i, n), optional
        Embed only shard i of n of the run's batches (see :func:`embed_images`).

    Returns
    -------
    EmbedReport
    """
    workers = _check_common(batch_size, workers, "fail")
    # expand to (row id, captions of that row)
    rows: list[tuple[str, tuple[str, ...]]] = []
    for r in records:
        if caption_mean or len(r.captions) == 1:
            rows.append((r.id, tuple(r.captions)))
        else:
            rows.extend((f"{r.id}#{k}", (c,)) for k, c in enumerate(r.captions))
    extra = dict(settings or {}, caption_mean=bool(caption_mean), batch_size=batch_size)
    n_total = len(rows)
    rows, rng = shard_batches(_caption_batches(rows, batch_size), shard)
    with _writer(output, encoder, resume, extra) as writer:
        done = writer.existing_ids
        todo = [r for r in rows if r[0] not in done]
        rep = _start_report(writer, encoder, "text", n_total, len(rows) - len(todo), rng)
        if not todo and writer.n == 0 and shard is None:
            raise InputError("no captions to embed")
        # a batch boundary of the whole run starts a shard, so its batches are the run's
        batches = _caption_batches(todo, batch_size)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastcka-tokenize") as pool:
            def submit(batch):
                return pool.submit(encoder.prepare, [c for _, caps in batch for c in caps])

            for batch, fut in _each_batch(batches, submit, len(todo), "embed captions", "id",
                                          show_progress):
                E = encoder.infer(fut.result())
                counts = np.fromiter((len(c) for _, c in batch), dtype=np.int64, count=len(batch))
                starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
                X = np.add.reduceat(E.astype(np.float64), starts, axis=0) / counts[:, None]
                rep.n_written += writer.append(X.astype(np.float32), [i for i, _ in batch])
                rep.n_inputs += int(counts.sum())
        rep.seconds = time.perf_counter() - t0
        rep.n_rows = _close(writer)
    return rep


def _caption_batches(rows: list, batch_size: int) -> list[list]:
    """Rows ``(id, captions)`` grouped into batches of about ``batch_size`` captions (a row is
    never split)."""
    batches, cur, ncap = [], [], 0
    for row in rows:
        if cur and ncap + len(row[1]) > batch_size:
            batches.append(cur)
            cur, ncap = [], 0
        cur.append(row)
        ncap += len(row[1])
    if cur:
        batches.append(cur)
    return batches


def shard_batches(batches: list, shard: tuple[int, int] | None) -> tuple[list, tuple[int, int]]:
    """The items of shard ``(i, n)`` of a run's batches (contiguous, the counts differing by at
    most one) and its batch range ``(b0, b1)`` of ``len(batches)``; all of them without a shard."""
    i, n = shard if shard is not None else (0, 1)
    b0, b1 = i * len(batches) // n, (i + 1) * len(batches) // n
    return [x for b in batches[b0:b1] for x in b], (b0, b1)


def _close(writer, labels=None) -> int:
    """Write the final store and return its rows; a shard that has no rows (more shards than
    batches, or only unreadable images) writes none and returns 0."""
    if writer.n == 0:
        import shutil

        writer.abandon()
        shutil.rmtree(writer.partial, ignore_errors=True)
        return 0
    return writer.close(labels=labels).n
