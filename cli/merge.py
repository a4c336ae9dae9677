"""``fastcka merge``: put the partial outputs of a job array (``--shard I/N``) together.

Checks that every shard is there exactly once, made with the same settings from the same
inputs, then writes what the unsharded run writes (atomically, byte for byte the same) and
prints its result.
"""

from __future__ import annotations

import importlib

import click

from ._options import examples, json_option, resolve
from ._shard import check_parts

# command recorded in a partial output -> module with its merge(heads, output, as_json)
MERGERS = {"retrieve": "fastcka.cli.retrieve", "cka": "fastcka.cli.cka"}


@click.command("merge", epilog=examples(
    "fastcka merge part-*.h5 -o ranks.csv"))
@click.argument("parts", nargs=-1, required=True, metavar="PARTS...")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="The result file the unsharded run writes with -o (same formats; '-' = "
                   "stdout).")
@json_option
def command(parts, output, json_):
    """Merge the partial outputs PARTS of one sharded run into its result."""
    from ._common import check_result_path

    s = resolve(None, json_, None)
    heads = check_parts(list(parts))
    cmd = heads[0]["command"]
    if cmd not in MERGERS:
        raise click.UsageError(f"{heads[0]['path']}: cannot merge partial outputs of {cmd!r}")
    check_result_path(output)
    importlib.import_module(MERGERS[cmd]).merge(heads, output, s.json)
