"""``fastcka report``: markdown + plots of a table written by ``fastcka eval`` or of a confusion matrix."""

from __future__ import annotations

import click

from ._common import emit_result
from ._options import examples, json_option, plot_format_option, resolve


@click.command("report", epilog=examples(
    "fastcka report grid.csv -o report/",
    "fastcka report grid.csv --confusion confusion.csv --plot-format pdf -o report/",
    "fastcka report confusion.csv -o classify-report/"))
@click.argument("table", metavar="TABLE", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for report.md and the plots (created).")
@click.option("--confusion", default=None, type=click.Path(dir_okay=False),
              help="A confusion matrix CSV/TSV to draw beside the evaluation table: columns "
                   "'true','predicted'[,'count'] (one row per image or cell), or the matrix "
                   "with a header 'true,<class>,...'.")
@click.option("--title", default="fastcka evaluation", show_default=True)
@plot_format_option
@json_option
def command(table, out_dir, confusion, title, plot_format, json_):
    """Draw accuracy-vs-seeds (error bars over draws), top-k curves and seed-set CKA of TABLE.

    TABLE is a table of `fastcka eval` (.csv, .tsv, .json, .h5), or a confusion matrix CSV/TSV
    (as --confusion), which makes a classification report: the confusion matrix plot and the
    per-class accuracy.
    """
    from fastcka.evaluate import read_table
    from fastcka.report import is_confusion_table, write_report

    s = resolve(None, json_, None)
    if confusion is None and is_confusion_table(table):
        files = write_report(None, out_dir, title=title, plot_format=plot_format,
                             confusion=table)
    else:
        files = write_report(read_table(table), out_dir, title=title, plot_format=plot_format,
                             confusion=confusion)
    emit_result("report", inputs={"table": table, "confusion": confusion},
                outputs={"folder": out_dir}, results={"files": files},
                text=f"wrote {', '.join(files)} to {out_dir}", as_json=s.json)
