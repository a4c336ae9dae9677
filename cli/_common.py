"""Helpers shared by the CLI subcommands: loading stores paired by id, seed/query options, and
atomic result files (.csv, .tsv, .json, .jsonl, .h5 chosen by suffix or ``--format``; ``-o -``
streams the table to stdout)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from fastcka._io import is_stdio
from fastcka._table import table_format
from fastcka._table import write_rows as _write_rows
from fastcka.errors import InputError
from fastcka.protocol import N_QUERIES, N_SEEDS

from ._options import dumps, settings, warn

HEADER_KEYS = ("command", "version", "device", "seconds", "inputs", "outputs")


def actual_device(requested: str | None) -> str:
    """The device a computation ran on: ``auto`` resolved to ``gpu`` or ``cpu``."""
    if requested in ("cpu", "gpu"):
        return requested
    from fastcka.backend import gpu_available

    return "gpu" if gpu_available() else "cpu"


def result_document(command: str, *, inputs: dict[str, Any], outputs: dict[str, Any],
                    results: dict[str, Any], device: str | None = None,
                    seconds: float | None = None) -> dict[str, Any]:
    """The one ``--json`` schema of every subcommand.

    The header keys come first, in this order: ``command`` (e.g. ``"match"``, ``"embed image"``),
    ``version`` (fastcka's), ``device`` (the device actually used: ``cpu`` or ``gpu``, never
    ``auto``), ``seconds`` (wall time of the command), ``inputs`` and ``outputs`` (name -> path
    or store spec; an output not written is ``null``); then the command's own results, at the top
    level.  A result key equal to a header key is replaced by the header's value.
    """
    import time

    from fastcka._version import __version__

    st = settings()
    doc: dict[str, Any] = {
        "command": command,
        "version": __version__,
        "device": actual_device(device if device is not None else st.device),
        "seconds": float(seconds if seconds is not None else time.perf_counter() - st.started),
        "inputs": dict(inputs),
        "outputs": dict(outputs),
    }
    doc.update({k: v for k, v in results.items() if k not in HEADER_KEYS})
    return doc


def emit_result(command: str, *, inputs: dict[str, Any], outputs: dict[str, Any],
                results: dict[str, Any], text: str | None, as_json: bool,
                device: str | None = None, seconds: float | None = None) -> dict[str, Any]:
    """Print a subcommand's result: the :func:`result_document` as one line of strict JSON
    (NaN as ``null``) with ``--json``, else ``text``; both on stdout, except that ``text`` goes
    to stderr when a result file is streamed to stdout (``-o -``).  Returns the document."""
    doc = result_document(command, inputs=inputs, outputs=outputs, results=results,
                          device=device, seconds=seconds)
    print_document(doc, text, as_json)
    return doc


def print_document(doc: dict[str, Any], text: str | None, as_json: bool) -> None:
    """The printing half of :func:`emit_result` (for a command that also saves ``doc``).

    When a result table went to stdout (``-o -``), stdout carries only that table: the JSON
    document or the text goes to stderr (the text not with ``-q``)."""
    streamed = any(is_stdio(v) for v in doc.get("outputs", {}).values() if isinstance(v, str))
    if as_json:
        click.echo(dumps(doc), err=streamed)
    elif text is not None and (not streamed or settings().verbosity >= 0):
        click.echo(text, err=streamed)


def write_rows(path: str, rows: list[dict[str, Any]], *, meta: dict[str, Any] | None = None,
               long: dict[str, str] | None = None, long_index: str = "rank") -> None:
    """:func:`fastcka._table.write_rows` in the format of ``--format`` (else by suffix)."""
    _write_rows(path, rows, meta=meta, fmt=_format(), long=long, long_index=long_index)


def _format() -> str | None:
    """``--format`` of the running command (None outside one, or when not given)."""
    ctx = click.get_current_context(silent=True)
    return settings(ctx).format if ctx is not None else None


def load_many(specs: Sequence[str], *, min_common: int = 4, nonfinite: str = "error"):
    """Read stores and keep the rows whose ids all of them share, in the first store's order
    (:func:`fastcka.store.align_many`).

    Warns (stderr) with the number of rows each store loses; fewer than ``min_common`` common ids
    is an :class:`~fastcka.errors.InputError`.
    """
    from fastcka._progress import note_numba_compile
    from fastcka.store import align_many, read_store

    note_numba_compile()  # every computing subcommand loads its stores here
    sets = [read_store(s, nonfinite=nonfinite) for s in specs]
    out = align_many(sets, min_common=min_common, names=specs)
    for spec, es, kept in zip(specs, sets, out, strict=True):
        if kept.n < es.n:
            warn(f"{spec}: {es.n - kept.n} of {es.n} rows have no partner by id and are dropped "
                 f"({kept.n} paired)")
    return out


def load_pair(src: str, tgt: str, *, min_common: int = 4, nonfinite: str = "error"):
    """Two stores paired by id (see :func:`load_many`)."""
    s, t = load_many([src, tgt], min_common=min_common, nonfinite=nonfinite)
    return s, t


def split_options(f):
    """``--seeds/--seed-ids/--queries/--query-ids/--seed-strategy`` shared by match and retrieve."""
    opts = [
        click.option("--seeds", "n_seeds", type=click.IntRange(min=1), default=None,
                     help=f"Number of seed (known) pairs drawn with --seed (default {N_SEEDS})."),
        click.option("--seed-ids", type=click.Path(dir_okay=False), default=None,
                     help="File of seed ids, one per line (exactly reproducible runs)."),
        click.option("--queries", "n_queries", type=click.IntRange(min=1), default=None,
                     help="Number of query pairs drawn among the non-seeds (default: all the rest, "
                          f"at most {N_QUERIES})."),
        click.option("--query-ids", type=click.Path(dir_okay=False), default=None,
                     help="File of query ids, one per line."),
        click.option("--seed-strategy", type=click.Choice(["random", "kmeans"]), default="random",
                     show_default=True,
                     help="How a seed count is drawn: at random, or nearest to k-means centroids."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def choose_split(ids: Sequence[str], *, n_seeds: int | None, seed_ids: str | None,
                 n_queries: int | None, query_ids: str | None, seed: int,
                 seed_strategy: str = "random", features: np.ndarray | None = None,
                 min_seeds: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Seed and query rows from the CLI options (:func:`fastcka.evaluate.draw_split`; explicit
    id files, read by :func:`fastcka.protocol.read_id_file`, win over counts)."""
    from fastcka.evaluate import draw_split
    from fastcka.protocol import read_id_file

    if n_seeds is not None and seed_ids is not None:
        raise click.UsageError("give either --seeds or --seed-ids, not both")
    if n_queries is not None and query_ids is not None:
        raise click.UsageError("give either --queries or --query-ids, not both")
    return draw_split(
        ids, n_seeds=n_seeds, n_queries=n_queries, rng=seed, seed_strategy=seed_strategy,
        seed_ids=None if seed_ids is None else read_id_file(seed_ids, "--seed-ids file"),
        query_ids=None if query_ids is None else read_id_file(query_ids, "--query-ids file"),
        features=features, min_seeds=min_seeds)


def check_result_path(path: str | None) -> None:
    """Fail early (before any computation) on an unsupported or unwritable ``-o`` path.

    ``-`` (stdout) is accepted by the subcommands that have ``--format``."""
    if path is None:
        return
    fmt = _format()
    if is_stdio(path):
        ctx = click.get_current_context(silent=True)
        if ctx is not None and not any(p.name == "format" for p in ctx.command.params):
            raise click.BadParameter("this command cannot write its result to stdout ('-'); "
                                     "give a file", param_hint="'-o'")
    try:
        table_format(path, fmt)
    except InputError as exc:
        hint = "" if fmt or is_stdio(path) else " (or give --format)"
        raise click.BadParameter(str(exc) + hint, param_hint="'-o'") from None
    if is_stdio(path):
        return
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise click.BadParameter(f"output folder does not exist: {parent}", param_hint="'-o'")


def load_split(src: str, tgt: str, *, direction: str, n_seeds: int | None, seed_ids: str | None,
               n_queries: int | None, query_ids: str | None, seed: int, seed_strategy: str,
               min_seeds: int):
    """Stores paired by id, oriented by ``direction``, and their seed/query rows.

    Returns ``(a, b, seed_idx, query_idx)``: ``a`` is the source side (SRC, or TGT with
    ``direction="tgt-to-src"``); k-means seeds cluster the source features.
    """
    a, b = load_pair(src, tgt)
    if direction == "tgt-to-src":
        a, b = b, a
    seed_idx, query_idx = choose_split(
        [str(x) for x in a.ids], n_seeds=n_seeds, seed_ids=seed_ids, n_queries=n_queries,
        query_ids=query_ids, seed=seed, seed_strategy=seed_strategy,
        features=a.X if seed_strategy == "kmeans" else None, min_seeds=min_seeds)
    return a, b, seed_idx, query_idx
