"""Reports of an evaluation table (:mod:`fastcka.evaluate`): a markdown page and PNG plots.

:func:`write_report` draws, per direction, matching accuracy against the number of seeds for each
method (mean over draws, error bars one standard deviation), the top-1/5/10 retrieval curves of
the score methods and the CKA of the seed sets, and writes ``report.md`` with a table laid out as
the paper's (methods as rows, seed counts as columns, accuracy mean ± std over draws).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ._io import atomic_path, atomic_write_text
from .errors import InputError

__all__ = ["write_report", "markdown_table"]


def _label(r: dict) -> str:
    return r["method"] + (f" {r['kernel']}" if r["kernel"] else "") + \
        (f" σ={r['sigma']}" if r["sigma"] else "")


def _fmt(m: float, s: float) -> str:
    return "–" if m != m else f"{m:.3f} ± {s:.3f}"


def markdown_table(summary: list[dict], direction: str, value: str = "accuracy") -> str:
    """Methods × seed counts, ``value`` mean ± std over draws, for one direction."""
    rows = [r for r in summary if r["direction"] == direction]
    ks = sorted({r["n_seeds"] for r in rows})
    labels = list(dict.fromkeys(_label(r) for r in rows))
    cell = {(_label(r), r["n_seeds"]): _fmt(r[value], r[value + "_std"]) for r in rows}
    out = [f"| method | {' | '.join(f'{k} seeds' for k in ks)} |",
           "|---|" + "---|" * len(ks)]
    for lab in labels:
        out.append(f"| {lab} | {' | '.join(cell.get((lab, k), '') for k in ks)} |")
    return "\n".join(out)


def _save(fig, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")


def write_report(table, out_dir: str | os.PathLike, *, title: str = "fastcka evaluation") -> list[str]:
    """Write ``report.md`` and PNG plots of ``table`` into ``out_dir``; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not len(table):
        raise InputError("the table has no rows to report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = table.summary()
    dirs = list(dict.fromkeys(r["direction"] for r in summary))
    files: list[str] = []
    md = [f"# {title}", ""]
    meta = table.meta
    if meta:
        md += ["Settings: " + ", ".join(f"{k} = {v}" for k, v in meta.items()), ""]
    for d in dirs:
        rows = [r for r in summary if r["direction"] == d]
        labels = list(dict.fromkeys(_label(r) for r in rows))
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for lab in labels:
            rs = sorted((r for r in rows if _label(r) == lab), key=lambda r: r["n_seeds"])
            ax.errorbar([r["n_seeds"] for r in rs], [r["accuracy"] for r in rs],
                        yerr=[r["accuracy_std"] for r in rs], marker="o", capsize=3, label=lab)
        ax.set_xscale("log")
        ax.set_xlabel("number of seeds")
        ax.set_ylabel("matching accuracy")
        ax.set_title(f"matching accuracy ({d})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        name = f"accuracy_{d}.png"
        _save(fig, out / name)
        plt.close(fig)
        files.append(name)
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
        for ax, k in zip(axes, ("top1", "top5", "top10"), strict=True):
            for lab in labels:
                rs = sorted((r for r in rows if _label(r) == lab), key=lambda r: r["n_seeds"])
                if all(math.isnan(r[k]) for r in rs):
                    continue
                ax.errorbar([r["n_seeds"] for r in rs], [r[k] for r in rs],
                            yerr=[r[k + "_std"] for r in rs], marker="o", capsize=3, label=lab)
            ax.set_xscale("log")
            ax.set_title(f"retrieval {k} ({d})")
            ax.set_xlabel("number of seeds")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        name = f"topk_{d}.png"
        _save(fig, out / name)
        plt.close(fig)
        files.append(name)
        md += [f"## {d}", "", "Matching accuracy (mean ± std over query draws):", "",
               markdown_table(summary, d), "",
               "Retrieval top-1 (score methods):", "", markdown_table(
                   [r for r in summary if not math.isnan(r["top1"])], d, "top1"), "",
               f"![accuracy]({files[-2]})", "", f"![top-k]({files[-1]})", ""]
    ks_cka = {}
    for r in summary:
        ks_cka.setdefault(r["n_seeds"], r["seed_cka"])
    if ks_cka:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        ks = sorted(ks_cka)
        ax.plot(ks, [ks_cka[k] for k in ks], marker="o")
        ax.set_xscale("log")
        ax.set_xlabel("number of seeds")
        ax.set_ylabel("kernel CKA of the seed sets")
        ax.grid(alpha=0.3)
        _save(fig, out / "seed_cka.png")
        plt.close(fig)
        files.append("seed_cka.png")
        md += ["## CKA of the seed sets (rbf, paper σ; draw-averaged)", "",
               "| seeds | " + " | ".join(map(str, ks)) + " |", "|---|" + "---|" * len(ks),
               "| CKA | " + " | ".join(f"{ks_cka[k]:.3f}" for k in ks) + " |", "",
               "![seed CKA](seed_cka.png)", ""]
    atomic_write_text(out / "report.md", "\n".join(md))
    return ["report.md", *files]
