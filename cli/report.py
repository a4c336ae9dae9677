"""``fastcka report``: markdown + plots of a table written by ``fastcka eval`` or of a confusion matrix."""

from __future__ import annotations

import click

from ._common import emit_result, examples, json_option, plot_format_option, resolve


@click.command("report", epilog=examples(
    "fastcka report grid.csv --plot-format pdf -o report/",
    "fastcka report classify-out/ -o classify-report/",
    "fastcka report faq-s0.json faq-s1.json lcka-s0.json lcka-s1.json -o runs-report/"))
@click.argument("tables", metavar="TABLE...", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for report.md and the plots (created).")
@click.option("--confusion", multiple=True, type=click.Path(dir_okay=False),
              help="A confusion matrix CSV/TSV to draw (repeatable): columns "
                   "'true','predicted'[,'count'] (one row per image or cell), or the "
                   "matrix under a header 'true,<class>,...'.")
@click.option("--title", default=None,
              help="Heading of report.md (default 'fastcka evaluation', or 'fastcka "
                   "classification' / 'fastcka runs' without an evaluation table).")
@plot_format_option
@json_option
def command(tables, out_dir, confusion, title, plot_format, json_):
    """Draw the plots and tables of TABLE... into a markdown report.

    Each TABLE is one of: a table of `fastcka eval` (.csv, .tsv, .json, .h5; at most one):
    accuracy-vs-seeds (error bars over draws), top-k curves, matching and retrieval at the largest
    seed count, seed-set CKA and tables laid out as the paper's; a confusion matrix CSV/TSV (as
    --confusion) or the output folder of `fastcka classify` (its confusion_*.csv): each matrix
    with its per-class accuracy; or per-query outputs of `fastcka match -o` / `fastcka retrieve
    -o`: matching and retrieval in separate panels and top-k against k, where .json/.h5 outputs
    of the same method and direction (other --seed draws) give the error bars.
    """
    from pathlib import Path

    from fastcka.report import load_inputs, write_report

    s = resolve(None, json_, None)
    evaluation, confs, queries = load_inputs(tables)
    confs += [Path(c) for c in confusion]
    if title is None:
        title = ("fastcka evaluation" if evaluation is not None else
                 "fastcka classification" if confs and not queries else "fastcka runs")
    files = write_report(evaluation, out_dir, title=title, plot_format=plot_format,
                         confusion=confs, queries=queries)
    emit_result("report", inputs={"tables": list(tables), "confusion": list(confusion)},
                outputs={"folder": out_dir}, results={"files": files},
                text=f"wrote {', '.join(files)} to {out_dir}", as_json=s.json)
