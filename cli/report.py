"""``fastcka report``: markdown + plots of a table written by ``fastcka eval`` or of a confusion matrix."""

from __future__ import annotations

import click

from ._common import emit_result
from ._options import examples, json_option, plot_format_option, resolve


@click.command("report", epilog=examples(
    "fastcka report grid.csv -o report/",
    "fastcka report grid.csv --confusion confusion.csv --plot-format pdf -o report/",
    "fastcka report classify-out/ -o classify-report/"))
@click.argument("table", metavar="TABLE", type=click.Path())
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for report.md and the plots (created).")
@click.option("--confusion", multiple=True, type=click.Path(dir_okay=False),
              help="A confusion matrix CSV/TSV to draw beside the evaluation table (repeatable): "
                   "columns 'true','predicted'[,'count'] (one row per image or cell), or the "
                   "matrix under a header 'true,<class>,...'.")
@click.option("--title", default=None,
              help="Heading of report.md (default 'fastcka evaluation', or 'fastcka "
                   "classification' without an evaluation table).")
@plot_format_option
@json_option
def command(table, out_dir, confusion, title, plot_format, json_):
    """Draw accuracy-vs-seeds (error bars over draws), top-k curves and seed-set CKA of TABLE.

    TABLE is a table of `fastcka eval` (.csv, .tsv, .json, .h5); or a confusion matrix CSV/TSV
    (as --confusion), or the output folder of `fastcka classify` (its confusion_*.csv), which
    make a classification report: each confusion matrix drawn with its per-class accuracy.
    """
    from pathlib import Path

    from fastcka.evaluate import read_table
    from fastcka.report import confusion_files, is_confusion_table, write_report

    s = resolve(None, json_, None)
    confusion = list(confusion)
    if Path(table).is_dir():
        evaluation, confusion = None, [*map(str, confusion_files(table)), *confusion]
    elif is_confusion_table(table):
        evaluation, confusion = None, [table, *confusion]
    else:
        evaluation = read_table(table)
    if title is None:
        title = "fastcka evaluation" if evaluation is not None else "fastcka classification"
    files = write_report(evaluation, out_dir, title=title, plot_format=plot_format,
                         confusion=confusion)
    emit_result("report", inputs={"table": table, "confusion": confusion},
                outputs={"folder": out_dir}, results={"files": files},
                text=f"wrote {', '.join(files)} to {out_dir}", as_json=s.json)
