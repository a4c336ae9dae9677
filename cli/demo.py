"""``fastcka demo``: synthetic scenes -> built-in encoders -> CKA, seeded matching, retrieval."""

from __future__ import annotations

import click

from ._common import (
    device_option,
    dumps,
    examples,
    info,
    json_option,
    plot_format_option,
    print_document,
    resolve,
    result_document,
    seed_option,
)


@click.command("demo", epilog=examples(
    "fastcka demo -o demo-output",
    "fastcka demo --n 200 --n-init 10 --permutations 50 -o quick-demo",
    "fastcka demo --plot-format pdf -o demo-output"))
@click.option("-o", "--output", "out_dir", default="demo-output", show_default=True,
              type=click.Path(file_okay=False), help="Output folder for the report and data.")
@click.option("--n", "n", type=click.IntRange(min=16), default=1000, show_default=True,
              help="Number of synthetic scenes.")
@click.option("--seeds", type=click.IntRange(min=4), default=None,
              help="Seed pairs (default 320 when n >= 820, else ~39% of n).")
@click.option("--queries", type=click.IntRange(min=10), default=None,
              help="Query pairs (default 500 when n >= 820, else the rest).")
@click.option("--n-init", type=click.IntRange(min=1), default=50, show_default=True,
              help="FAQ restarts (the paper uses 500).")
@click.option("--permutations", "n_permutations", type=click.IntRange(min=1), default=200,
              show_default=True, help="Permutations of each CKA permutation test.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Image decoding threads (default min(4, cores)).")
@plot_format_option
@device_option
@seed_option
@json_option
def command(out_dir, n, seeds, queries, n_init, n_permutations, workers, plot_format, device, seed,
            json_):
    """Run the whole method on built-in synthetic data and write a report to --output.

    Renders N deterministic scenes (coloured shapes with template captions), embeds images with
    efficientnet-lite0 and captions with minilm-l6, then reports CKA (linear, rbf, permutation
    p-values), seeded FAQ matching accuracy and local-CKA retrieval top-1/5/10 against chance.
    Writes report.md, results.json, plots (--plot-format) and embeddings.h5.
    """
    from fastcka._progress import note_numba_compile
    from fastcka.demo import run_demo, summary

    s = resolve(device, json_, seed)
    note_numba_compile()
    res = run_demo(out_dir, n=n, seeds=seeds, queries=queries, n_init=n_init,
                   n_permutations=n_permutations, seed=s.seed, device=s.device, workers=workers,
                   show_progress=s.verbosity >= 0, echo=info, plot_format=plot_format)
    from pathlib import Path

    from fastcka._io import atomic_path

    doc = result_document("demo", inputs={}, results=res, device=s.device,
                          outputs={"folder": str(out_dir), "store": res.get("store")})
    with atomic_path(Path(out_dir) / "results.json") as tmp:  # the same document as --json
        tmp.write_text(dumps(doc, indent=1), encoding="utf-8")
    print_document(doc, summary(res), s.json)
