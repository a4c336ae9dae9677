"""What the CLI subcommands share: the option decorators and the run settings of one
invocation (``--device``, ``--seed``, ``--json``, threads, scheduler, logging), loading stores
paired by id with the seed/query options, and the result: one ``--json`` document and atomic
result files (.csv, .tsv, .json, .jsonl, .h5 chosen by suffix or ``--format``; ``-o -`` streams
the table to stdout)."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np

from fastcka._io import is_stdio
from fastcka._table import dumps, table_format, to_json  # noqa: F401  (one JSON encoder)
from fastcka._table import write_rows as _write_rows
from fastcka.errors import InputError
from fastcka.protocol import N_QUERIES, N_SEEDS

log = logging.getLogger("fastcka")


@dataclass
class Settings:
    """Global options of one invocation (``fastcka --device gpu --json ... SUBCOMMAND``)."""

    device: str = "auto"
    json: bool = False
    verbosity: int = 0  # -1 quiet, 0 default, 1+ verbose
    seed: int | None = None
    debug: bool = False
    started: float = field(default_factory=time.perf_counter)  # for the "seconds" of --json
    scheduler: str = "none"
    jobs: int | None = None
    cluster_config: str | None = None
    threads: int | None = None
    format: str | None = None  # --format of a result table (None: by the -o suffix)


def settings(ctx: click.Context | None = None) -> Settings:
    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = Settings()
    return root.obj


def examples(*lines: str) -> str:
    """The epilog of a subcommand's ``--help``: the ``Examples:`` block, kept as written."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {ln}" for ln in lines)


def device_option(f):
    """``--device auto|cpu|gpu`` on a subcommand (overrides the global one)."""
    return click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default=None,
                        help="Where to compute (default: the global --device, else auto).")(f)


def json_option(f):
    """``--json`` on a subcommand (same as the global one)."""
    return click.option("--json", "json_", is_flag=True, default=False,
                        help="Print the result as one JSON object on stdout.")(f)


def seed_option(f):
    """``--seed N`` on a subcommand (overrides the global one)."""
    return click.option("--seed", type=int, default=None,
                        help="Random seed (default: the global --seed, else 0).")(f)


def assign_options(f):
    """``--assign dense|sparse|auto`` and ``--candidates K``: the score methods' assignment."""
    f = click.option("--candidates", type=click.IntRange(min=1), default=None,
                     help="--assign sparse: targets kept per query in each direction (default "
                          "20, fastcka.config.MATCH_CANDIDATES).")(f)
    return click.option("--assign", type=click.Choice(["dense", "sparse", "auto"]),
                        default="dense", show_default=True,
                        help="Score methods: dense = the q x q scores and an exact LAP; sparse "
                             "= streamed top-K candidates of both directions and a sparse "
                             "assignment (optimal on that graph; the q x q matrix is never "
                             "held); auto = dense below 8192 queries, sparse from there.")(f)


def plot_format_option(f):
    """``--plot-format png|pdf|svg`` on a subcommand that writes plots (default png)."""
    return click.option("--plot-format", "plot_format", default="png", show_default=True,
                        type=click.Choice(["png", "pdf", "svg"], case_sensitive=False),
                        help="File format of the plots.")(f)


def resolve(device: str | None = None, json_: bool = False, seed: int | None = None) -> Settings:
    """Merge subcommand-level options over the global ones."""
    s = settings()
    return Settings(device=device or s.device, json=bool(json_ or s.json), verbosity=s.verbosity,
                    seed=seed if seed is not None else (s.seed if s.seed is not None else 0),
                    debug=s.debug, started=s.started, scheduler=s.scheduler, jobs=s.jobs,
                    cluster_config=s.cluster_config, threads=s.threads,
                    format=s.format)


# the BLAS/OpenMP variables that --threads sets (read by OpenBLAS, MKL, BLIS, Accelerate, OpenMP
# when they load, and inherited by Dask worker processes started later)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def apply_threads(n: int) -> None:
    """Limit this process (and the processes it starts) to ``n`` CPU threads.

    Numba: ``NUMBA_NUM_THREADS`` before Numba is imported, else ``numba.set_num_threads``
    (at most the pool Numba started with).  BLAS: the variables of :data:`THREAD_VARIABLES`
    (effective for libraries not loaded yet and for child processes) and, for the BLAS NumPy
    has already loaded, ``threadpoolctl`` when it is installed.
    """
    import os

    for var in THREAD_VARIABLES:
        os.environ[var] = str(n)
    numba = sys.modules.get("numba")
    if numba is None:
        os.environ["NUMBA_NUM_THREADS"] = str(n)
    else:
        pool = int(numba.config.NUMBA_NUM_THREADS)
        if n > pool:
            warn(f"--threads {n}: Numba started with {pool} threads; using {pool}")
        numba.set_num_threads(min(n, pool))
    if "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            return
        threadpool_limits(limits=n)


@contextlib.contextmanager
def scheduler_context(s: Settings):
    """The executor of the global ``--scheduler`` for one command; None means in-process.

    None (not an in-process executor) keeps ``--scheduler none`` on the library's own
    in-process code path, exactly as without the option.
    """
    if s.scheduler == "none":  # the default: nothing to parse, fastcka.parallel not needed
        yield None
        return
    from fastcka.parallel import executor, parse_scheduler

    if parse_scheduler(s.scheduler)[0] == "none":
        yield None
        return
    with executor(s.scheduler, jobs=s.jobs, cluster_config=s.cluster_config) as ex:
        yield ex


def emit(result: dict[str, Any], text: str | None, as_json: bool) -> None:
    """Print a result: one JSON object with ``--json``, else ``text`` (results go to stdout).

    Subcommands call :func:`fastcka.cli._common.emit_result`, which adds the common header."""
    if as_json:
        click.echo(dumps(result))
    elif text is not None:
        click.echo(text)


def jsonable(o: Any) -> Any:
    """JSON fallback for NumPy scalars and arrays (anything else as its string)."""
    return to_json(o)


def warn(msg: str) -> None:
    """A warning on stderr (shown unless -q)."""
    log.warning(msg)


def info(msg: str) -> None:
    log.info(msg)


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else (logging.ERROR if verbosity < 0 else
                                                    (logging.INFO if verbosity == 1 else logging.DEBUG))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("fastcka: %(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def parse_sigma(value: str, names: tuple[str, ...]) -> str | float:
    """A ``--sigma`` value: one of the bandwidth rule ``names`` or a positive float."""
    import math

    v = value.strip().lower()
    if v in names:
        return v
    try:
        f = float(v)
    except ValueError:
        expected = ", ".join(repr(n) for n in names)
        raise click.BadParameter(f"expected {expected} or a positive number, got {value!r}",
                                 param_hint="'--sigma'") from None
    if not (math.isfinite(f) and f > 0):
        raise click.BadParameter(f"sigma must be a positive number, got {value!r}",
                                 param_hint="'--sigma'")
    if not (_SIGMA_MIN <= f <= _SIGMA_MAX):  # sigma**2 must be a normal float64
        raise click.BadParameter(f"sigma must lie between {_SIGMA_MIN:.1e} and {_SIGMA_MAX:.1e} "
                                 f"(its square must be a normal float), got {value!r}",
                                 param_hint="'--sigma'")
    return f


_SIGMA_MIN = 1.5e-154
_SIGMA_MAX = 1.3e154


class PositiveFloat(click.ParamType):
    """A finite number > 0 (``nan`` and ``inf`` refused, unlike ``click.FloatRange``)."""

    name = "float"

    def convert(self, value, param, ctx):
        import math

        try:
            f = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not (math.isfinite(f) and f > 0):
            self.fail(f"must be a finite positive number, got {value!r}", param, ctx)
        return f


# --------------------------------------------------------------------------------------------
# loading, splits and results
# --------------------------------------------------------------------------------------------

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
