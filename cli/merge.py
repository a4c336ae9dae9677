"""``fastcka merge``: put the partial outputs of a job array (``--shard I/N``) together.

Checks that every shard is there exactly once, made with the same settings from the same
inputs, then writes what the unsharded run writes (atomically, byte for byte the same) and
prints its result.
"""

from __future__ import annotations

import importlib

import click

from ._common import examples, json_option, resolve
from ._shard import check_parts

# command recorded in a partial output -> module with its merge(heads, output, as_json)
MERGERS = {"retrieve": "fastcka.cli.retrieve", "cka": "fastcka.cli.cka",
           "eval": "fastcka.cli.eval", "embed": "fastcka.cli.embed"}


@click.command("merge", epilog=examples(
    "fastcka merge part-*.h5 -o ranks.csv",
    "fastcka merge emb-part-*.h5 -o emb.h5::/image"))
@click.argument("parts", nargs=-1, required=True, metavar="PARTS...")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="The result file the unsharded run writes with -o (same formats; '-' = "
                   "stdout; for embed shards the store file.h5[::/group]).")
@json_option
def command(parts, output, json_):
    """Merge the partial outputs PARTS of one sharded run into its result."""
    from ._common import check_result_path

    s = resolve(None, json_, None)
    heads = check_parts(list(parts))
    cmd = heads[0]["command"]
    if cmd not in MERGERS:
        raise click.UsageError(f"{heads[0]['path']}: cannot merge partial outputs of {cmd!r}")
    mod = importlib.import_module(MERGERS[cmd])
    getattr(mod, "check_merge_output", check_result_path)(output)
    mod.merge(heads, output, s.json)
