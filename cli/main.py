"""Entry point of the ``fastcka`` batch tool.

Exit codes: 0 success, 2 bad usage or bad input, 1 runtime failure.  Results go to stdout,
logs and progress to stderr.  An error is one line on stderr (``fastcka: error: ...``); the
traceback is printed only with ``--debug``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import sys
import traceback
import warnings

import click

from fastcka._io import Interrupted, install_signal_handlers, reset_stdin
from fastcka._progress import set_progress
from fastcka._version import __version__
from fastcka.errors import FastckaError, exit_code_for, one_line

from ._common import Settings, apply_threads, examples, settings, setup_logging, warn

# subcommand -> "module:attribute"; modules are imported only when the subcommand runs, so
# `fastcka --help` and `fastcka info` never import torch.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "import": ("fastcka.cli.import_", "command"),
    "info": ("fastcka.cli.info", "command"),
    "export": ("fastcka.cli.export", "command"),
    "cka": ("fastcka.cli.cka", "command"),
    "match": ("fastcka.cli.match", "command"),
    "retrieve": ("fastcka.cli.retrieve", "command"),
    "embed": ("fastcka.cli.embed", "command"),
    "demo": ("fastcka.cli.demo", "command"),
    "merge": ("fastcka.cli.merge", "command"),
    "eval": ("fastcka.cli.eval", "command"),
    "report": ("fastcka.cli.report", "command"),
    "classify": ("fastcka.cli.classify", "command"),
}


def _adjust_verbosity(sign: int):
    def callback(ctx: click.Context, param: click.Parameter, value: int) -> None:
        if value:
            s = settings(ctx)
            s.verbosity += sign * value
            setup_logging(s.verbosity)
            if s.verbosity < 0:
                set_progress(False)
    return callback


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        settings(ctx).debug = True


def _set_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    if value is not None:
        settings(ctx).threads = value
        apply_threads(value)


def _threads_option(help_: str) -> click.Option:
    return click.Option(["--threads"], type=click.IntRange(min=1), default=None,
                        expose_value=False, callback=_set_threads, metavar="N", help=help_)


_THREADS_HELP = ("CPU threads for Numba kernels and BLAS (NumPy/SciPy) (default: all cores, or "
                 "NUMBA_NUM_THREADS / OMP_NUM_THREADS).")


def _late_options() -> list[click.Option]:
    """``-q``, ``-v``, ``--debug`` and ``--threads`` for a subcommand: the same as before it."""
    return [
        click.Option(["-q", "--quiet"], count=True, expose_value=False,
                     callback=_adjust_verbosity(-1),
                     help="Less output on stderr (no progress, errors only); as before the "
                          "subcommand."),
        click.Option(["-v", "--verbose"], count=True, expose_value=False,
                     callback=_adjust_verbosity(+1), help="More output on stderr (repeatable)."),
        click.Option(["--debug"], is_flag=True, expose_value=False, callback=_set_debug,
                     help="Show full tracebacks on errors."),
        _threads_option("CPU threads for Numba and BLAS; as before the subcommand."),
    ]


# subcommands whose -o result table may go to stdout (-o -) in the format of --format
TABLE_COMMANDS = ("match", "retrieve", "cka", "merge")


def _set_format(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        settings(ctx).format = value


def _format_option() -> click.Option:
    from fastcka._table import FORMATS

    return click.Option(["--format", "format"], type=click.Choice(FORMATS), default=None,
                        expose_value=False, callback=_set_format,
                        help="Format of the -o table (default: by its suffix; csv for -o -, "
                             "which writes the table to stdout and everything else to stderr).")


def add_global_options(cmd: click.Command) -> click.Command:
    """Give ``cmd`` (and the subcommands of a group) the options users put after it."""
    if getattr(cmd, "_fastcka_late_options", False):
        return cmd
    taken = {o for p in cmd.params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
    late = _late_options() + ([_format_option()] if cmd.name in TABLE_COMMANDS else [])
    for opt in late:
        if not set(opt.opts) & taken:
            cmd.params.append(opt)
    cmd._fastcka_late_options = True  # type: ignore[attr-defined]
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            add_global_options(sub)
    return cmd


# Click >= 8.2 raises this for a group run without a subcommand (8.1 prints the help itself)
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class LazyGroup(click.Group):
    """A Click group whose subcommands live in their own modules, imported on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names |= {n for n, (mod, _) in SUBCOMMANDS.items() if importlib.util.find_spec(mod)}
        return sorted(names)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in SUBCOMMANDS:
            mod, attr = SUBCOMMANDS[name]
            if importlib.util.find_spec(mod) is None:
                return None
            return add_global_options(getattr(importlib.import_module(mod), attr))
        cmd = super().get_command(ctx, name)
        return add_global_options(cmd) if cmd is not None else None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=examples("fastcka import vectors.npy -o emb.h5::/text",
                             "fastcka --json cka emb.h5::/image emb.h5::/text",
                             "fastcka match emb.h5::/text emb.h5::/image -o matches.csv"))
@click.version_option(__version__, prog_name="fastcka")
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default="auto",
              show_default=True, help="Where to compute: auto = GPU when CuPy sees one.")
@click.option("--json", "json_", is_flag=True, help="Print results as JSON on stdout.")
@click.option("-q", "--quiet", count=True, help="Less output on stderr (no progress, errors only).")
@click.option("-v", "--verbose", count=True, help="More output on stderr (repeat for debug logs).")
@click.option("--seed", type=int, default=None, help="Random seed for every random choice (default 0).")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("--threads", type=click.IntRange(min=1), default=None, metavar="N",
              expose_value=False, callback=_set_threads, help=_THREADS_HELP)
@click.option("--scheduler", envvar="FASTCKA_SCHEDULER", default="none", show_default=True,
              help="Where independent units run: none (in-process), local[:N] (a Dask "
                   "LocalCluster of N processes), tcp://HOST:PORT (a Dask scheduler) or slurm "
                   "(dask-jobqueue). Env: FASTCKA_SCHEDULER.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="SLURM jobs to start with --scheduler slurm (default 1).")
@click.option("--cluster-config", type=click.Path(dir_okay=False), default=None,
              help="Dask config YAML for --scheduler slurm (jobqueue: slurm: cores, memory, ...).")
@click.pass_context
def cli(ctx: click.Context, device: str, json_: bool, quiet: int, verbose: int, seed: int | None,
        debug: bool, scheduler: str, jobs: int | None, cluster_config: str | None) -> None:
    """fastcka: CKA, seeded graph matching and local-CKA retrieval between encoders.

    Embeddings travel between stages as HDF5 stores (STORE or STORE::/group).
    """
    if scheduler != "none":             # the default needs no parsing (nor fastcka.parallel)
        from fastcka.parallel import parse_scheduler

        parse_scheduler(scheduler)      # a bad value is a usage error before any work
    verbosity = verbose - quiet
    ctx.obj = Settings(device=device, json=json_, verbosity=verbosity, seed=seed, debug=debug,
                       scheduler=scheduler, jobs=jobs, cluster_config=cluster_config,
                       threads=settings(ctx).threads)
    setup_logging(verbosity)
    set_progress(False if quiet else None)
    warnings.showwarning = _showwarning


def _showwarning(message, category, filename, lineno, file=None, line=None) -> None:
    """Library warnings (e.g. dropped NaN rows) as one log line on stderr, not Python's two."""
    warn(" ".join(str(message).split()))


def _error(msg: str) -> None:
    click.echo(f"fastcka: error: {msg}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with 0 (ok), 2 (bad usage/input) or 1 (runtime failure)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("FASTCKA_DEBUG", "") not in ("", "0")
    install_signal_handlers()
    reset_stdin()
    try:
        rv = cli.main(args=args, prog_name="fastcka", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):
            click.echo("fastcka: interrupted", err=True)
            code = 130
        else:
            _error("aborted")
            code = 1
    except _NO_ARGS_IS_HELP as exc:  # bare `fastcka` or `fastcka embed`: the help, as --help
        click.echo(exc.ctx.get_help())
        code = 0
    except click.ClickException as exc:
        if debug:
            traceback.print_exc()
        _error(" ".join(exc.format_message().split()))
        code = 2 if isinstance(exc, click.UsageError) or exc.exit_code == 2 else max(exc.exit_code, 1)
    except (KeyboardInterrupt, Interrupted) as exc:
        # temporaries are gone, partial folders kept for --resume; 130 (SIGINT) / 143 (SIGTERM)
        click.echo("fastcka: interrupted", err=True)
        code = 128 + getattr(exc, "signum", signal.SIGINT)
    except BrokenPipeError:
        code = 0
    except Exception as exc:  # the library's errors become one line
        if debug:
            traceback.print_exc()
        code = exit_code_for(exc)
        prefix = "" if code == 2 or isinstance(exc, FastckaError) else f"{type(exc).__name__}: "
        _error(prefix + one_line(exc))
    sys.exit(code)


if __name__ == "__main__":
    main()
