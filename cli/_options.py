"""Shared option decorators and the run settings of one CLI invocation."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import click

from fastcka._table import dumps, to_json  # noqa: F401  (one JSON encoder for library and CLI)

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
