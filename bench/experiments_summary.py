"""Summaries of the `make experiments` tables by family (cross-domain, Multi30K, XTD10).

Usage: python bench/experiments_summary.py [RESULTS_DIR]   (default docs/results)

For each family of tables ``<family>_<name>.csv`` in RESULTS_DIR writes ``<family>.md`` (one row
per table and method: matching accuracy, mean ± std over the query draws, at every seed count, per
direction) and ``<family>.png`` (accuracy against the number of seeds, one panel per method, one
line per table).  Tables are read with :func:`fastcka.evaluate.read_table`.

When the page next to RESULTS_DIR (``docs/results.md`` for ``docs/results``) exists, the blocks
between its markers ``<!-- BEGIN summary:NAME -->`` and ``<!-- END summary:NAME -->`` are
replaced: NAME = a family (its table, as in ``<family>.md``) or ``settings`` (one row per table
of RESULTS_DIR: the methods, seed counts, draws, directions and FAQ restarts it really holds, read
from its rows).  So the page's tables and its statement of what was run are never stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

FAMILIES = ("crossdomain", "multi30k", "xtd10")


def _label(r: dict) -> str:
    return r["method"] + (f" {r['kernel']}" if r["kernel"] else "") + \
        (f" σ={r['sigma']}" if r["sigma"] else "")


def _fmt(m: float, s: float) -> str:
    return "–" if m != m else f"{m:.3f} ± {s:.3f}"


def family_tables(results: Path, family: str) -> dict[str, list[dict]]:
    from fastcka.evaluate import read_table

    out = {}
    for p in sorted(results.glob(f"{family}_*.csv")):
        t = read_table(str(p))
        out[p.stem[len(family) + 1:]] = {"summary": t.summary(), "meta": t.meta}
    return out


def markdown(family: str, tabs: dict) -> str:
    lines = [f"<!-- written by bench/experiments_summary.py from {family}_*.csv -->"]
    for direction in ("src-to-tgt", "tgt-to-src"):
        rows = [(name, r) for name, t in tabs.items() for r in t["summary"]
                if r["direction"] == direction]
        if not rows:
            continue
        ks = sorted({r["n_seeds"] for _, r in rows})
        lines += ["", f"**{direction}**, matching accuracy (mean ± std over query draws; a bare "
                  "value: one draw):", "",
                  f"| table | method | {' | '.join(f'{k} seeds' for k in ks)} |",
                  "|---|---|" + "---|" * len(ks)]
        cells: dict[tuple, dict[int, str]] = {}
        for name, r in rows:
            cells.setdefault((name, _label(r)), {})[r["n_seeds"]] = (
                _fmt(r["accuracy"], r["accuracy_std"]) if r["draws"] > 1 else
                f"{r['accuracy']:.3f}")
        for (name, lab), by_k in cells.items():
            lines.append(f"| {name} | {lab} | {' | '.join(by_k.get(k, '') for k in ks)} |")
    return "\n".join(lines) + "\n"


def _ints(values) -> str:
    return ", ".join(str(v) for v in sorted(set(values)))


def settings_table(results: Path) -> str:
    """One row per ``*.csv`` table of *results*: what its rows hold (not what was asked for)."""
    from fastcka.evaluate import read_table

    lines = ["<!-- written by bench/experiments_summary.py from the tables' rows -->",
             "| table | methods | seed counts | draws | directions | FAQ restarts | cells |",
             "|---|---|---|---|---|---|---|"]
    for p in sorted(results.glob("*.csv")):
        rows = list(read_table(str(p)))
        if not rows or "n_seeds" not in rows[0]:
            continue
        n_init = [r["n_init"] for r in rows if r["method"] == "faq"]
        lines.append(
            f"| [`{p.name}`]({results.name}/{p.name}) "
            f"| {', '.join(dict.fromkeys(_label(r) for r in rows))} "
            f"| {_ints(r['n_seeds'] for r in rows)} | {len({r['draw'] for r in rows})} "
            f"| {', '.join(sorted({r['direction'] for r in rows}))} "
            f"| {_ints(n_init) if n_init else '–'} | {len(rows)} |")
    return "\n".join(lines) + "\n"


def splice(page: str, name: str, block: str) -> str:
    """*page* with the text between the markers of *name* replaced by *block* (unchanged if the
    page has no such markers)."""
    begin, end = f"<!-- BEGIN summary:{name} -->", f"<!-- END summary:{name} -->"
    i, j = page.find(begin), page.find(end)
    if i < 0 or j < i:
        return page
    return page[:i + len(begin)] + "\n" + block + page[j:]


def plot(family: str, tabs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastcka._io import atomic_path

    have = {r["direction"] for t in tabs.values() for r in t["summary"]}
    direction = "src-to-tgt" if "src-to-tgt" in have or not have else "tgt-to-src"
    rows = [(name, r) for name, t in tabs.items() for r in t["summary"]
            if r["direction"] == direction]
    methods = list(dict.fromkeys(_label(r) for _, r in rows))
    fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 3.2), sharey=True,
                             squeeze=False)
    for ax, m in zip(axes[0], methods, strict=True):
        for name in tabs:
            pts = sorted((r["n_seeds"], r["accuracy"], r["accuracy_std"]) for n, r in rows
                         if n == name and _label(r) == m)
            if pts:
                k, a, s = zip(*pts, strict=True)
                ax.errorbar(k, a, yerr=s, marker="o", ms=3, capsize=2, label=name)
        ax.set_xscale("log")
        ks = sorted({r["n_seeds"] for _, r in rows})
        ax.set_xticks(ks, [str(k) for k in ks], fontsize=7)
        ax.minorticks_off()
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("seeds")
    axes[0][0].set_ylabel(f"matching accuracy ({direction})")
    axes[0][-1].legend(fontsize=7, loc="upper left")
    fig.suptitle(family)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)


def main(argv: list[str]) -> int:
    from fastcka._io import atomic_write_text

    results = Path(argv[1] if len(argv) > 1 else "docs/results")
    doc = results.parent / f"{results.name}.md"
    page = doc.read_text(encoding="utf-8") if doc.is_file() else None
    for fam in FAMILIES:
        tabs = family_tables(results, fam)
        if not tabs:
            print(f"experiments_summary: no {fam}_*.csv tables in {results}")
            continue
        atomic_write_text(results / f"{fam}.md", markdown(fam, tabs))
        plot(fam, tabs, results / f"{fam}.png")
        print(f"experiments_summary: wrote {results / (fam + '.md')} and {fam}.png "
              f"({len(tabs)} tables)")
        if page is not None:
            page = splice(page, fam, markdown(fam, tabs))
    if page is not None:
        page = splice(page, "settings", settings_table(results))
        atomic_write_text(doc, page)
        print(f"experiments_summary: updated the summary blocks of {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
