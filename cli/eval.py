"""``fastcka eval``: the paper's grid (methods × seed counts × query draws × directions) in one run.

A thin call of :func:`fastcka.evaluate`.  Each finished cell is appended to a journal beside the
output (``.NAME.partial.jsonl``, flushed and fsynced per cell); the table appears under its final
name only when the grid is complete, and ``--resume`` after a kill reuses the journal's cells and
computes only the missing ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import numpy as np

from fastcka.protocol import N_DRAWS, N_QUERIES, N_RESTARTS, SEED_GRID

from ._common import (
    assign_options,
    check_result_path,
    device_option,
    emit,
    examples,
    json_option,
    load_pair,
    resolve,
    scheduler_context,
    seed_option,
)
from ._shard import fingerprint, parse_shard, shard_option, shard_range, write_partial


def journal_path(output: str) -> Path:
    p = Path(output)
    return p.with_name(f".{p.name}.partial.jsonl")


def _read_journal(path: Path, params: dict) -> list[dict]:
    from fastcka.errors import InputError

    if not path.exists():
        return []
    rows: list[dict] = []
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1 or not any(s.strip() for s in lines[i + 1:]):
                break                       # a line cut by the kill: that cell is redone
            raise InputError(f"{path}: corrupt journal line {i + 1}") from None
        if i == 0:
            if obj.get("params") != params:
                raise InputError(f"--resume: {path} was written by a run with other settings; "
                                 f"remove it or rerun with the same options")
            continue
        rows.append(obj)
    return rows


class _Journal:
    def __init__(self, path: Path, params: dict, fresh: bool):
        self.path = path
        mode = "w" if fresh or not path.exists() else "a"
        self.fh = open(path, mode, encoding="utf-8")
        if mode == "w":
            self._line({"params": params})

    def _line(self, obj: dict) -> None:
        self.fh.write(json.dumps(obj) + "\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


@click.command("eval", epilog=examples(
    "fastcka eval txt.h5 img.h5 -o grid.csv",
    "fastcka eval txt.h5 img.h5 --methods faq:rbf,local-cka -o grid.csv --resume",
    "fastcka eval txt.h5 img.h5 --shard 0/8 -o part0.h5"))
@click.argument("src", metavar="SRC")
@click.argument("tgt", metavar="TGT")
@click.option("--base", nargs=2, default=None, metavar="BSRC BTGT",
              help="Cross-domain: draw the seed pairs from these two stores (paired by id); "
                   "queries come from SRC/TGT.")
@click.option("--methods", default="faq,local-cka,linreg,relative", show_default=True,
              help="Comma-separated: faq (rbf+linear), faq:rbf, faq:linear, local-cka (linear, "
                   "rbf paper-sigma, rbf base-sigma), local-cka:linear|rbf|rbf-base, linreg, "
                   "relative, cosine.")
@click.option("--seeds", "seeds", default=",".join(map(str, SEED_GRID)), show_default=True,
              help="Seed counts (nested sets drawn once with --seed).")
@click.option("--queries", type=int, default=N_QUERIES, show_default=True,
              help="Query pairs per draw.")
@click.option("--draws", type=int, default=N_DRAWS, show_default=True,
              help="Query draws 0..N-1 (results averaged over them in reports).")
@click.option("--direction", type=click.Choice(["src-to-tgt", "tgt-to-src", "both"]),
              default="both", show_default=True)
@click.option("--seed-strategy", type=click.Choice(["random", "kmeans"]), default="random",
              show_default=True)
@click.option("--stretch", is_flag=True, default=False,
              help="Divide every feature by its std over the cell's base + queries first.")
@click.option("--n-init", type=click.IntRange(min=1), default=N_RESTARTS, show_default=True,
              help="FAQ random restarts.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The table (.csv, .tsv, .json or .h5); with --shard the partial output.")
@click.option("--resume", is_flag=True, default=False,
              help="Reuse the cells an interrupted run with the same options journaled.")
@assign_options
@shard_option
@seed_option
@device_option
@json_option
def command(src, tgt, base, methods, seeds, queries, draws, direction, seed_strategy, stretch,
            n_init, output, resume, assign, candidates, shard, seed, device, json_):
    """Run the paper's evaluation grid on SRC/TGT (stores paired by id) and write one table."""
    import fastcka.evaluate as ev
    from fastcka._progress import progress

    s = resolve(device, json_, seed)
    part = parse_shard(shard)
    if part is None:
        check_result_path(output)
    cells = ev.plan(methods, seeds, draws, direction)     # bad options fail before any reading
    grid = len(cells)
    if part is not None:
        cells = shard_range(cells, part)
    a, b = load_pair(src, tgt)
    base_arg = None
    if base is not None:
        ba, bb = load_pair(base[0], base[1])
        base_arg = (ba.X, bb.X)
    params = {"src": src, "tgt": tgt, "base": list(base) if base else None, "methods": methods,
              "seeds": seeds, "queries": queries, "draws": draws, "direction": direction,
              "seed_strategy": seed_strategy, "stretch": stretch, "n_init": n_init,
              "seed": s.seed}
    if assign != "dense":   # journals of dense runs keep their old parameters
        params.update(assign=assign, candidates=candidates)
    if part is not None:
        params["shard"] = list(part)
    jpath = journal_path(output)
    done = _read_journal(jpath, params) if resume else []
    prep_kw = dict(seeds=seeds, queries=queries, draws=draws, base=base_arg,
                   seed_strategy=seed_strategy, stretch=stretch, n_init=n_init, rng=s.seed,
                   device=s.device, assign=assign, candidates=candidates)
    ev.check_cells(ev.plan(methods, seeds, draws, direction),
                   ev.prepare(a.X, b.X, **prep_kw))   # validate before the journal
    journal = _Journal(jpath, params, fresh=not resume)
    bar = progress(total=len(cells), desc="eval", unit="cell", initial=len(done))

    def on_row(row):
        journal._line(row)
        bar.update(1)
        bar.set_postfix_str(f"{row['method']} {row['kernel']} k={row['n_seeds']} "
                            f"d={row['draw']} acc={row['accuracy']:.3f}")

    try:
        with scheduler_context(s) as ex:
            table = ev.evaluate(a.X, b.X, methods=methods, directions=direction, done=done,
                                on_row=on_row, scheduler=ex, cells=cells, **prep_kw)
    finally:
        journal.close()
        bar.close()
    table.meta.update(source=a.spec, target=b.spec,
                      base=list(base) if base else None)
    if part is not None:
        lo = part[0] * grid // part[1]               # shard_range's first cell
        inputs = fingerprint(a.X, b.X, a.ids, *(() if base is None else (ba.X, bb.X, ba.ids)))
        params.pop("shard")
        write_partial(output, "eval", params, inputs, part, (lo, lo + len(cells)),
                      {"rows": np.asarray([json.dumps(r) for r in table.rows]),
                       "meta": np.asarray([json.dumps(table.meta)])})
        jpath.unlink(missing_ok=True)
        emit({"output": output, "shard": part[0], "n_shards": part[1],
              "cells": [lo, lo + len(cells)], "of": grid},
             f"shard {part[0]}/{part[1]}: cells {lo}..{lo + len(cells)} of {grid} -> {output}",
             s.json)
        return
    table.write(output)
    jpath.unlink(missing_ok=True)
    _report(table, output, len(done), s.json)


def merge(heads: list[dict], output: str | None, as_json: bool) -> None:
    """``fastcka merge`` of eval shards: the unsharded run's table, written atomically."""
    import fastcka.evaluate as ev

    from ._shard import read_data

    if output is None:
        raise click.UsageError("merging eval shards needs -o TABLE (.csv, .tsv, .json or .h5)")
    parts = [read_data(h["path"]) for h in heads]
    rows = [json.loads(r) for p in parts for r in p["rows"]]
    table = ev.EvalTable(rows, json.loads(parts[0]["meta"][0]))
    table.write(output)
    _report(table, output, 0, as_json)


def _report(table, output: str, reused: int, as_json: bool) -> None:
    summary = table.summary()
    result = {"output": output, "cells": len(table), "reused": reused,
              "seconds": float(sum(r["seconds"] for r in table.rows)), "summary": summary}
    emit(result, _text(summary, output), as_json)


def _text(summary: list[dict], output: str) -> str:
    lines = [f"{'method':<22}{'dir':<11}{'seeds':>6}{'accuracy':>16}{'top1':>8}{'top5':>8}"]
    for r in summary:
        name = r["method"] + (f"/{r['kernel']}" if r["kernel"] else "") + \
            (f"/{r['sigma']}" if r["sigma"] else "")
        top1 = "" if r["top1"] != r["top1"] else f"{r['top1']:.3f}"
        top5 = "" if r["top5"] != r["top5"] else f"{r['top5']:.3f}"
        lines.append(f"{name:<22}{r['direction']:<11}{r['n_seeds']:>6}"
                     f"{r['accuracy']:>9.3f} ±{r['accuracy_std']:.3f}{top1:>8}{top5:>8}")
    lines.append(f"wrote {output}")
    return "\n".join(lines)
