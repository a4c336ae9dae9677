"""``fastcka report``: markdown + PNG plots of a table written by ``fastcka eval``."""

from __future__ import annotations

import click

from ._options import emit, examples, json_option, resolve


@click.command("report", epilog=examples(
    "fastcka report grid.csv -o report/"))
@click.argument("table", metavar="TABLE", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for report.md and the PNG plots (created).")
@click.option("--title", default="fastcka evaluation", show_default=True)
@json_option
def command(table, out_dir, title, json_):
    """Draw accuracy-vs-seeds (error bars over draws), top-k curves and seed-set CKA of TABLE."""
    from fastcka.evaluate import read_table
    from fastcka.report import write_report

    s = resolve(None, json_, None)
    files = write_report(read_table(table), out_dir, title=title)
    emit({"output": out_dir, "files": files}, f"wrote {', '.join(files)} to {out_dir}", s.json)
