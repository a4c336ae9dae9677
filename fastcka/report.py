"""Reports of an evaluation table (:mod:`fastcka.evaluate`) or of a classification: markdown + plots.

:func:`write_report` draws, per direction, matching accuracy against the number of seeds for each
method (mean over draws, error bars one standard deviation), the top-1/5/10 retrieval curves of
the score methods, matching and retrieval at the largest seed count in separate panels, and the
CKA of the seed sets, and writes ``report.md`` with tables laid out as
the paper's (methods as rows, seed counts as columns, mean ± std over draws).  Plots are written
as PNG, PDF or SVG (``plot_format``); the figures themselves come from :mod:`fastcka.plots`.

A classification result adds a confusion matrix (plot + per-class accuracy table).  It is read by
:func:`read_confusion` from a CSV/TSV in one of two documented layouts:

- **long** (one row per image or per cell): columns ``true`` and ``predicted`` (class names),
  and optionally ``count`` (default 1 per row); other columns (``id``, scores) are ignored;
- **wide** (the matrix itself, as ``fastcka classify -o DIR`` writes ``confusion_<method>.csv``):
  a header whose first cell starts with ``true`` (``true`` or ``true \\ predicted``) followed by
  the predicted classes, and one row per true class, ``<class>,<count predicted as class 1>,...``;
  every class a row and a column.

``fastcka report`` takes such a file as its TABLE (a classification report), a folder of
``confusion_*.csv`` files (the output folder of ``fastcka classify``: one matrix per method), or
files beside an evaluation table with ``--confusion FILE`` (repeatable).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._io import atomic_write_text, output_folder
from .errors import InputError
from .plots import (
    accuracy_vs_seeds,
    check_format,
    confusion_matrix,
    mean_std,
    recovery_at,
    save,
    seed_cka,
    topk_curves,
    variant_label,
)

__all__ = ["write_report", "markdown_table", "read_confusion", "is_confusion_table",
           "confusion_files", "read_query_result", "load_inputs"]


def _fmt(m: float, s: float) -> str:
    return "–" if m != m else f"{m:.3f} ± {s:.3f}"


def markdown_table(summary: list[dict], direction: str, value: str = "accuracy") -> str:
    """Methods × seed counts, ``value`` mean ± std over draws, for one direction."""
    rows = [r for r in summary if r["direction"] == direction]
    ks = sorted({r["n_seeds"] for r in rows})
    labels = list(dict.fromkeys(variant_label(r) for r in rows))
    cell = {(variant_label(r), r["n_seeds"]): _fmt(r[value], r[value + "_std"]) for r in rows}
    out = [f"| method | {' | '.join(f'{k} seeds' for k in ks)} |",
           "|---|" + "---|" * len(ks)]
    for lab in labels:
        out.append(f"| {lab} | {' | '.join(cell.get((lab, k), '') for k in ks)} |")
    return "\n".join(out)


def _header(path: Path) -> tuple[list[str], list[list[str]]]:
    if path.suffix.lower() not in (".csv", ".tsv"):
        raise InputError(f"{path}: a confusion matrix is read from .csv or .tsv")
    if not path.is_file():
        raise InputError(f"table not found: {path}")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    if not rows:
        raise InputError(f"{path}: empty file")
    return [h.strip() for h in rows[0]], rows[1:]


def is_confusion_table(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a CSV/TSV in one of the confusion layouts of :func:`read_confusion`."""
    p = Path(path)
    if p.suffix.lower() not in (".csv", ".tsv") or not p.is_file():
        return False
    head, _ = _header(p)
    return (bool(head) and head[0].startswith("true")) or {"true", "predicted"} <= set(head)


def _count(v: str, path: Path, line: int) -> float:
    try:
        c = float(v)
    except ValueError:
        raise InputError(f"{path}, line {line}: count {v!r} is not a number") from None
    if not (math.isfinite(c) and c >= 0):
        raise InputError(f"{path}, line {line}: count {v!r} must be finite and >= 0")
    return c


def read_confusion(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Class names (row order) and the count matrix (rows true, columns predicted) of a confusion
    CSV/TSV in the long (``true``, ``predicted`` [, ``count``]) or wide layout."""
    p = Path(path)
    head, body = _header(p)
    if {"true", "predicted"} <= set(head):
        it, ip = head.index("true"), head.index("predicted")
        ic = head.index("count") if "count" in head else None
        pairs = []
        for ln, row in enumerate(body, start=2):
            if not row:
                continue
            if len(row) != len(head):
                raise InputError(f"{p}, line {ln}: {len(row)} fields, the header has {len(head)}")
            pairs.append((row[it], row[ip], 1.0 if ic is None else _count(row[ic], p, ln)))
        if not pairs:
            raise InputError(f"{p}: no rows")
        classes = sorted({t for t, _, _ in pairs} | {q for _, q, _ in pairs})
        pos = {c: i for i, c in enumerate(classes)}
        M = np.zeros((len(classes), len(classes)))
        for t, q, c in pairs:
            M[pos[t], pos[q]] += c
        return classes, M
    if not head or not head[0].startswith("true"):
        raise InputError(f"{p}: not a confusion matrix (need columns 'true' and 'predicted', "
                         "or a header 'true,<class>,...')")
    cols = head[1:]
    if len(set(cols)) != len(cols):
        raise InputError(f"{p}: duplicate class in the header")
    classes, vals = [], []
    for ln, row in enumerate(body, start=2):
        if not row:
            continue
        if len(row) != len(head):
            raise InputError(f"{p}, line {ln}: {len(row)} fields, the header has {len(head)}")
        classes.append(row[0])
        vals.append([_count(v, p, ln) for v in row[1:]])
    if sorted(classes) != sorted(cols) or len(set(classes)) != len(classes):
        raise InputError(f"{p}: the true classes (rows) and predicted classes (columns) differ")
    order = [cols.index(c) for c in classes]
    return classes, np.asarray(vals, dtype=np.float64)[:, order]


def _confusion_md(classes: list[str], M: np.ndarray, name: str, label: str) -> list[str]:
    tot = M.sum(axis=1)
    acc = float(np.trace(M) / M.sum()) if M.sum() else math.nan
    md = [f"## Classification: {label}", "",
          f"Accuracy {acc:.3f} over {int(M.sum())} images, {len(classes)} classes "
          f"(chance {1 / len(classes):.3f}).", "",
          "| class | images | accuracy |", "|---|---|---|"]
    for i, c in enumerate(classes):
        md.append(f"| {c} | {int(tot[i])} | "
                  f"{(M[i, i] / tot[i]) if tot[i] else math.nan:.3f} |")
    return md + ["", f"![confusion matrix]({name})", ""]


def confusion_files(folder: str | os.PathLike) -> list[Path]:
    """The ``confusion_*.csv`` files of a folder (as ``fastcka classify -o DIR`` writes), sorted."""
    found = sorted(Path(folder).glob("confusion_*.csv")) + sorted(Path(folder).glob("confusion_*.tsv"))
    if not found:
        raise InputError(f"{folder}: a folder holding no confusion_*.csv to report")
    return found


def _names(paths: list[Path], fmt: str) -> list[str]:
    if len(paths) == 1:
        return [f"confusion.{fmt}"]
    stems = [p.stem if p.stem.startswith("confusion") else f"confusion_{p.stem}" for p in paths]
    if len(set(stems)) < len(stems):
        stems = [f"confusion_{i + 1}" for i in range(len(paths))]
    return [f"{st}.{fmt}" for st in stems]


def read_query_result(path: str | os.PathLike) -> dict | None:
    """The per-query output of ``fastcka match -o`` (columns ``correct``, ``matched_id``) or
    ``fastcka retrieve -o`` (``rank_of_true``, ``target_ids``) as a dict (``kind``, ``label``,
    ``n_queries`` and ``accuracy`` or ``ranks`` + ``k_max``), or None for another table.

    The label names the run: method, kernel and direction from the settings a .json/.h5 output
    carries (so outputs of the same run with other ``--seed`` draws share it and become error
    bars), else the file's name.
    """
    from ._table import read_rows

    p = Path(path)
    rows, meta = read_rows(p)
    if not rows:
        return None
    head = rows[0]
    if "rank_of_true" in head:
        kind = "retrieve"
        if "rank" in head and "target_id" in head:  # a long .csv/.tsv: one line per rank
            rows = _one_row_per_query(rows)
    elif "correct" in head and "matched_id" in head:
        kind = "match"
    else:
        return None
    if meta.get("method"):
        label = " ".join(str(v) for v in (meta["method"], meta.get("kernel"), meta.get("direction"))
                         if v)
    else:
        label = p.stem
    out: dict = {"path": str(p), "kind": kind, "label": label, "n_queries": len(rows)}
    if kind == "match":
        bad = [r["correct"] for r in rows if not isinstance(r["correct"], (bool, np.bool_))]
        if bad:
            raise InputError(f"{p}: column 'correct' holds {bad[0]!r}, not True/False")
        out["accuracy"] = float(np.mean([bool(r["correct"]) for r in rows]))
    else:
        try:
            ranks = np.asarray([int(r["rank_of_true"]) for r in rows])
        except (TypeError, ValueError):
            raise InputError(f"{p}: column 'rank_of_true' must hold integers") from None
        listed = [len(t.split(";")) if isinstance(t, str) else len(t or [])
                  for t in (r.get("target_ids") for r in rows)]
        out["ranks"] = ranks
        out["k_max"] = max(max(listed, default=0), int(ranks.max(initial=0)))
        if out["k_max"] < 1:
            raise InputError(f"{p}: no candidates listed per query")
    return out


def _one_row_per_query(rows: list[dict]) -> list[dict]:
    """The lines of a long ``retrieve -o`` table (``query_id, rank_of_true, ..., rank,
    target_id, score``, the ranks of a query consecutive) as one row per query."""
    out: list[dict] = []
    for r in rows:
        if not out or r.get("rank") in (None, 1) or out[-1]["query_id"] != r.get("query_id"):
            out.append({"query_id": r.get("query_id"), "rank_of_true": r.get("rank_of_true"),
                        "target_ids": []})
        if r.get("target_id") is not None:
            out[-1]["target_ids"].append(r["target_id"])
    return out


def load_inputs(paths: Sequence[str | os.PathLike]):
    """Sort the inputs of ``fastcka report``: (evaluation table or None, confusion files,
    match/retrieve outputs).  A folder is the output of ``fastcka classify``."""
    from .evaluate import read_table

    table, confusions, queries = None, [], []
    for p in map(Path, paths):
        if p.is_dir():
            confusions += confusion_files(p)
        elif is_confusion_table(p):
            confusions.append(p)
        elif p.suffix.lower() in (".csv", ".tsv", ".json", ".jsonl", ".h5", ".hdf5") and p.is_file() and (
                q := read_query_result(p)) is not None:
            queries.append(q)
        else:
            if table is not None:
                raise InputError(f"{p}: give at most one evaluation table")
            table = read_table(str(p))
    return table, confusions, queries


def _queries_section(queries: list[dict], fmt: str):
    """Figures and markdown of match/retrieve outputs (same label = draws of one run)."""
    from .plots import matching_retrieval, rank_curves

    runs: dict[str, list[dict]] = {}
    for q in queries:
        runs.setdefault(q["label"], []).append(q)
    kinds = {lab: {q["kind"] for q in qs} for lab, qs in runs.items()}
    mixed = [lab for lab, k in kinds.items() if len(k) > 1]
    if mixed:
        raise InputError(f"run {mixed[0]!r}: match and retrieve outputs under one label")
    n_q = min(q["n_queries"] for q in queries)
    k_max = min((q["k_max"] for q in queries if q["kind"] == "retrieve"), default=0)
    ks = [k for k in (1, 5, 10) if k <= k_max]
    matching = {lab: [q["accuracy"] for q in qs] for lab, qs in runs.items()
                if kinds[lab] == {"match"}}
    ranks = {lab: [q["ranks"] for q in qs] for lab, qs in runs.items()
             if kinds[lab] == {"retrieve"}}
    topk = {lab: {k: [float(np.mean((r >= 1) & (r <= k))) for r in rs] for k in ks}
            for lab, rs in ranks.items()}
    figures = [(f"queries.{fmt}", matching_retrieval(
        matching, topk, chance_matching=1.0 / n_q,
        chance_retrieval={k: min(1.0, k / n_q) for k in ks},
        title=f"{n_q} queries; error bars: std over draws"))]
    md = ["## Matching and retrieval runs", "",
          "| run | draws | queries | matching accuracy | " + " | ".join(f"top-{k}" for k in ks)
          + " |", "|---|---|---|---|" + "---|" * len(ks)]
    for lab, qs in runs.items():
        nq = "/".join(sorted({str(q["n_queries"]) for q in qs}))
        if lab in matching:
            cells = [_fmt(*mean_std(matching[lab]))] + [""] * len(ks)
        else:
            cells = [""] + [_fmt(*mean_std(topk[lab][k])) for k in ks]
        md.append(f"| {lab} | {len(qs)} | {nq} | " + " | ".join(cells) + " |")
    md += ["", f"![matching and retrieval](queries.{fmt})", ""]
    if ranks:
        figures.append((f"ranks.{fmt}", rank_curves(ranks, k_max=k_max, n_candidates=n_q)))
        md += [f"![top-k against k](ranks.{fmt})", ""]
    return figures, md


def write_report(table, out_dir: str | os.PathLike, *, title: str = "fastcka evaluation",
                 plot_format: str = "png",
                 confusion: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
                 queries: Sequence[dict] = ()) -> list[str]:
    """Write ``report.md`` and the plots of ``table`` (an :class:`~fastcka.evaluate.EvalTable`,
    or None for a classification-only report) into ``out_dir``; returns the file names.

    ``confusion``: one or several confusion CSV/TSV files (:func:`read_confusion`), each drawn
    (``confusion.<fmt>`` for one, ``confusion_<name>.<fmt>`` for several) with its per-class
    accuracy table.  ``queries``: outputs of ``match``/``retrieve`` (:func:`read_query_result`),
    drawn as matching and retrieval panels (``queries.<fmt>``) and top-k against k
    (``ranks.<fmt>``).  Inputs are all read and checked before anything is written.
    """
    fmt = check_format(plot_format)
    if confusion is None:
        conf_paths: list[Path] = []
    elif isinstance(confusion, (str, os.PathLike)):
        conf_paths = [Path(confusion)]
    else:
        conf_paths = [Path(c) for c in confusion]
    if table is None and not conf_paths and not queries:
        raise InputError("nothing to report: give an evaluation table, a confusion matrix or "
                         "match/retrieve outputs")
    if table is not None and not len(table):
        raise InputError("the table has no rows to report")
    confs = [read_confusion(c) for c in conf_paths]
    out = Path(out_dir)
    figures: list[tuple[str, object]] = []
    md = [f"# {title}", ""]
    meta = table.meta if table is not None else {}
    if meta:
        md += ["Settings: " + ", ".join(f"{k} = {v}" for k, v in meta.items()), ""]
    if table is not None:
        rows = table.rows
        summary = table.summary()
        for d in dict.fromkeys(r["direction"] for r in summary):
            acc, topk, rec = f"accuracy_{d}.{fmt}", f"topk_{d}.{fmt}", f"recovery_{d}.{fmt}"
            figures += [(acc, accuracy_vs_seeds(rows, d)), (topk, topk_curves(rows, d)),
                        (rec, recovery_at(rows, d))]
            md += [f"## {d}", "", "Matching accuracy (mean ± std over query draws):", "",
                   markdown_table(summary, d), ""]
            scored = [r for r in summary if not math.isnan(r["top1"])]
            for k in ("top1", "top5", "top10"):
                if any(r["direction"] == d for r in scored):
                    md += [f"Retrieval {k} (score methods):", "", markdown_table(scored, d, k), ""]
            kmax = max(int(r["n_seeds"]) for r in rows if r["direction"] == d)
            md += [f"![accuracy]({acc})", "", f"![top-k]({topk})", "",
                   f"Matching and retrieval at {kmax} seeds (error bars: std over draws):", "",
                   f"![recovery]({rec})", ""]
        ks = sorted({int(r["n_seeds"]) for r in rows if r["seed_cka"] == r["seed_cka"]})
        if ks:
            name = f"seed_cka.{fmt}"
            figures.append((name, seed_cka(rows)))
            md += ["## CKA of the seed sets", "",
                   "| seeds | " + " | ".join(map(str, ks)) + " |", "|---|" + "---|" * len(ks)]
            for col, lab in (("seed_cka", "CKA rbf (paper σ)"), ("seed_cka_linear", "CKA linear")):
                cells = [mean_std(r[col] for r in rows if int(r["n_seeds"]) == k) for k in ks]
                if any(m == m for m, _ in cells):
                    md.append(f"| {lab} | " + " | ".join(_fmt(m, s) for m, s in cells) + " |")
            md += ["", f"![seed CKA]({name})", ""]
    if queries:
        figs, lines = _queries_section(list(queries), fmt)
        figures += figs
        md += lines
    for path, (classes, M), name in zip(conf_paths, confs, _names(conf_paths, fmt), strict=True):
        label = path.stem.removeprefix("confusion_") if path.stem != "confusion" else path.name
        figures.append((name, confusion_matrix(M, classes, title=label)))
        md += _confusion_md(classes, M, name, label)
    with output_folder(out) as target:
        for name, fig in figures:
            save(fig, target / name, fmt)
        atomic_write_text(target / "report.md", "\n".join(md))
    return ["report.md", *(n for n, _ in figures)]
