"""Figures a reader would put in a paper, as :class:`matplotlib.figure.Figure` objects.

Every function here builds and returns a figure without touching pyplot's global state (no
backend switch, nothing to close); :func:`save` writes one atomically as PNG, PDF or SVG.  The
CLI (``fastcka cka --plot``, ``fastcka demo``, ``fastcka report``) only calls these and saves.

- :func:`similarity_matrix`: a pairwise CKA (or k-NN) matrix with a colorbar and every value.
- :func:`kernel_heatmaps`: (centred) kernel matrices side by side, each with its colorbar, rows
  ordered by group with the groups labelled on both axes and separated by lines;
  :func:`kernel_figure` computes them from representations (``fastcka cka --plot-kernels``).
- :func:`permutation_null`: the permutation null of a statistic (histogram with labelled axes)
  and the observed value marked, one panel per test.
- :func:`matching_retrieval`: matching accuracy and retrieval top-k in separate panels, chance
  marked, error bars over draws when there are several; :func:`rank_curves`: top-k against k
  from the ranks of the true partners (``retrieve -o`` outputs).
- :func:`accuracy_vs_seeds`, :func:`topk_curves`, :func:`recovery_at`, :func:`seed_cka`: the
  figures of an evaluation table (:mod:`fastcka.evaluate`), mean over draws with
  one-standard-deviation error bars.
- :func:`confusion_matrix`: a classification confusion matrix with a colorbar.
- :func:`image_grid`: images with their captions (the demo's scenes).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backend import to_host
from .errors import InputError

__all__ = ["PLOT_FORMATS", "check_format", "save", "similarity_matrix", "kernel_heatmaps",
           "kernel_figure", "permutation_null", "matching_retrieval", "rank_curves",
           "accuracy_vs_seeds", "topk_curves", "recovery_at", "seed_cka", "confusion_matrix",
           "image_grid", "mean_std", "variant_label"]

PLOT_FORMATS = ("png", "pdf", "svg")
TOPK = ("top1", "top5", "top10")


def check_format(fmt: str) -> str:
    """``fmt`` lower-cased if it is one of :data:`PLOT_FORMATS`, else an :class:`InputError`."""
    f = str(fmt).lower().lstrip(".")
    if f not in PLOT_FORMATS:
        raise InputError(f"unsupported plot format {fmt!r}; use one of {', '.join(PLOT_FORMATS)}")
    return f


def save(fig, path: str | os.PathLike, fmt: str | None = None, *, dpi: int = 120) -> None:
    """Write ``fig`` atomically to ``path`` as ``fmt`` (default: the suffix of ``path``)."""
    from ._io import atomic_path

    fmt = check_format(fmt if fmt is not None else Path(path).suffix or "(none)")
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")


def _figure(figsize: tuple[float, float]):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _runs(groups: Sequence[Any]) -> list[tuple[int, int, str]]:
    """(start, stop, label) of each run of equal consecutive labels."""
    out: list[tuple[int, int, str]] = []
    start = 0
    for i in range(1, len(groups) + 1):
        if i == len(groups) or groups[i] != groups[start]:
            out.append((start, i, str(groups[start])))
            start = i
    return out


def similarity_matrix(M: Any, names: Sequence[str], *, title: str = "", vmin: float = 0.0,
                      vmax: float = 1.0, label: str = "CKA"):
    """Heatmap of a square matrix between named sets: every value written in its cell, the
    names on both axes, a colorbar labelled ``label``."""
    M = np.asarray(M, dtype=np.float64)
    m = len(names)
    if M.shape != (m, m):
        raise InputError(f"need a {m} x {m} matrix for {m} names, got shape {M.shape}")
    fig = _figure((2.2 + 0.9 * m, 1.2 + 0.8 * m))
    ax = fig.subplots()
    im = ax.imshow(M, vmin=vmin, vmax=vmax, cmap="viridis")
    ax.set_xticks(range(m), labels=list(names), rotation=45, ha="right")
    ax.set_yticks(range(m), labels=list(names))
    mid = vmin + 0.6 * (vmax - vmin)
    for a in range(m):
        for b in range(m):
            v = M[a, b]
            ax.text(b, a, "nan" if not np.isfinite(v) else f"{v:.3f}", ha="center", va="center",
                    color="white" if np.isfinite(v) and v < mid else "black", fontsize=8)
    fig.colorbar(im, ax=ax, label=label)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def kernel_heatmaps(kernels: Sequence[Any], titles: Sequence[str], *,
                    groups: Sequence[Any] | None = None, group_name: str = "",
                    suptitle: str = "", label: str = "kernel value"):
    """Kernel matrices side by side, one panel and one colorbar each (symmetric colour scale).

    ``groups`` (one label per row, equal labels consecutive) draws the block structure: a tick
    label at the centre of each block on both axes and a line between blocks; ``group_name``
    names the axes (e.g. ``"shape"``).
    """
    if len(kernels) != len(titles) or not kernels:
        raise InputError("need one title per kernel matrix (and at least one matrix)")
    n = np.asarray(kernels[0]).shape[0]
    runs = _runs(list(groups)) if groups is not None else []
    if groups is not None and len(groups) != n:
        raise InputError(f"need one group label per row: {len(groups)} labels for {n} rows")
    fig = _figure((5.4 * len(kernels), 4.8))
    axes = np.atleast_1d(fig.subplots(1, len(kernels)))
    for ax, K, title in zip(axes, kernels, titles, strict=True):
        K = np.asarray(K, dtype=np.float64)
        lim = float(np.nanmax(np.abs(K))) if K.size else 1.0
        lim = lim if lim > 0 and math.isfinite(lim) else 1.0
        im = ax.imshow(K, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        fig.colorbar(im, ax=ax, label=label, shrink=0.85)
        ax.set_title(title, fontsize=9)
        if runs:
            centres = [(a + b - 1) / 2 for a, b, _ in runs]
            names = [lab for _, _, lab in runs]
            ax.set_xticks(centres, labels=names, rotation=45, ha="right", fontsize=7)
            ax.set_yticks(centres, labels=names, fontsize=7)
            for a, _, _ in runs[1:]:
                ax.axhline(a - 0.5, color="k", lw=0.6)
                ax.axvline(a - 0.5, color="k", lw=0.6)
            if group_name:
                ax.set_xlabel(group_name)
                ax.set_ylabel(group_name)
        else:
            ax.set_xlabel("sample")
            ax.set_ylabel("sample")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def kernel_figure(Xs: Sequence[Any], names: Sequence[str], *, kernel: str = "linear",
                  sigma: Any = "paper", threshold: float = 1.0, groups: Sequence[Any] | None = None,
                  group_name: str = "class", max_rows: int = 300, rng: int = 0,
                  device: str = "cpu"):
    """The centred kernel matrices ``H K H`` of paired representations, side by side
    (:func:`kernel_heatmaps`).  Rows are the same in every panel: at most ``max_rows`` of them
    (drawn with ``rng`` when there are more), ordered by ``groups`` (stable) when given, whose
    blocks are then labelled.  Returns ``(figure, rows)`` with the row indices drawn, in order.
    """
    from .cka import gram

    n = int(np.asarray(Xs[0]).shape[0])
    if any(int(np.asarray(X).shape[0]) != n for X in Xs):
        raise InputError("the representations must have the same rows (pair them by id first)")
    rows = np.arange(n)
    if n > max_rows:
        rows = np.sort(np.random.default_rng(rng).choice(n, size=max_rows, replace=False))
    if groups is not None:
        g = np.asarray([str(v) for v in groups])
        if g.shape[0] != n:
            raise InputError(f"need one group label per row: {g.shape[0]} labels for {n} rows")
        rows = rows[np.argsort(g[rows], kind="stable")]
    Ks = []
    for X in Xs:
        K = gram(np.asarray(X)[rows], kernel, sigma=sigma, threshold=threshold, center=True,
                 device=device)
        Ks.append(np.asarray(to_host(K)))
    fig = kernel_heatmaps(Ks, [f"centred {kernel} kernel: {nm}" for nm in names],
                          groups=None if groups is None else [str(groups[i]) for i in rows],
                          group_name=group_name,
                          suptitle=f"{len(rows)} of {n} rows" + (
                              f", ordered by {group_name}" if groups is not None else ""))
    return fig, rows


def permutation_null(tests: Sequence[Mapping[str, Any]], *, statistic: str = "CKA",
                     density: bool = False, bins: int = 30):
    """One panel per permutation test: the null distribution as a histogram (x: ``statistic``
    under permuted pairings, y: count or density) and the observed value as a vertical line.

    Each test is a mapping with ``null`` (the permuted statistics), ``observed`` and optionally
    ``p_value`` and ``title``; a :class:`~fastcka.cka.PermutationResult` fits through
    ``{"null": r.null, "observed": r.statistic, "p_value": r.p_value}``.
    """
    if not tests:
        raise InputError("need at least one permutation test to plot")
    fig = _figure((5.0 * len(tests), 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(tests)))
    for ax, t in zip(axes, tests, strict=True):
        null = np.asarray(t["null"], dtype=np.float64)
        obs = float(t["observed"])
        ax.hist(null, bins=bins, density=density, color="0.6",
                label=f"null ({null.size} permutations)")
        ax.axvline(obs, color="C3", lw=2, label=f"observed = {obs:.4f}")
        ax.set_xlabel(f"{statistic} under permuted pairings")
        ax.set_ylabel("density" if density else "count")
        head = t.get("title") or statistic
        p = t.get("p_value")
        ax.set_title(head + (f" (p = {float(p):.4g})" if p is not None else ""), fontsize=9)
        ax.legend(fontsize=7)
    return fig


def _bars(ax, labels, vals, errs, chance, color) -> None:
    x = np.arange(len(labels))
    errs = None if errs is None or all(e == 0 or e != e for e in errs) else errs
    ax.bar(x, vals, yerr=errs, capsize=4 if errs is not None else 0, color=color,
           label="accuracy")
    ax.scatter(x, chance, marker="_", s=400, color="k", label="chance", zorder=3)
    wide = len(labels) > 4 or max((len(s) for s in labels), default=0) > 14
    ax.set_xticks(x, labels, fontsize=7 if wide else 8, rotation=35 if wide else 0,
                  ha="right" if wide else "center")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)


def matching_retrieval(matching: Mapping[str, Sequence[float]],
                       retrieval: Mapping[str, Mapping[int, Sequence[float]]], *,
                       chance_matching: float, chance_retrieval: Mapping[int, float],
                       title: str = "", colours: Mapping[str, str] | None = None):
    """Matching and retrieval in separate panels (bars: mean over draws; error bars: standard
    deviation over draws when there are several; chance as a black mark).

    ``matching`` maps a label (a method, ``"FAQ src-to-tgt"``) to its accuracy per draw;
    ``retrieval`` maps a label (a method or a direction) to ``{k: top-k accuracy per draw}``.
    A label in both has the same colour in both panels (``colours`` may fix them).  A side
    without values gets no panel.
    """
    n_r = sum(len(v) for v in retrieval.values())
    if not matching and not n_r:
        raise InputError("nothing to plot: no matching and no retrieval values")
    colour = {lab: f"C{i % 10}" for i, lab in enumerate(
        list(matching) + [d for d in retrieval if d not in matching])} | dict(colours or {})
    fig = _figure((3.0 + 0.9 * len(matching) + 0.8 * n_r, 4.0))
    if n_r and matching:
        ax_m, ax_r = fig.subplots(1, 2, gridspec_kw={"width_ratios": [max(1, len(matching)),
                                                                      max(1, n_r)]})
    elif matching:
        ax_m, ax_r = fig.subplots(), None
    else:
        ax_m, ax_r = None, fig.subplots()
    if ax_m is not None:
        labs = list(matching)
        vals = [np.asarray(matching[k], dtype=np.float64) for k in labs]
        _bars(ax_m, labs, [v.mean() for v in vals], [v.std() for v in vals],
              [chance_matching] * len(labs), [colour[lab] for lab in labs])
        ax_m.set_title("matching", fontsize=9)
    if ax_r is not None:
        rl, rv, re, rc, col = [], [], [], [], []
        for d, by_k in retrieval.items():
            for k, v in by_k.items():
                a = np.asarray(v, dtype=np.float64)
                rl.append(f"top-{k}\n{d}")
                rv.append(a.mean())
                re.append(a.std())
                rc.append(chance_retrieval[k])
                col.append(colour[d])
        _bars(ax_r, rl, rv, re, rc, col)
        ax_r.set_title("retrieval", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def rank_curves(ranks: Mapping[str, Sequence[Sequence[int]]], *, k_max: int, n_candidates: int,
                title: str = ""):
    """Retrieval accuracy against k (1..``k_max``): the fraction of queries whose true partner
    ranks within the top k, one curve per label, mean over draws (one rank list per draw) with
    one-standard-deviation error bars; chance k / ``n_candidates`` dashed.  A rank of 0 means
    the partner was not among the listed candidates."""
    if not ranks:
        raise InputError("nothing to plot: no rank lists")
    ks = np.arange(1, int(k_max) + 1)
    fig = _figure((5.6, 3.8))
    ax = fig.subplots()
    for i, (lab, draws) in enumerate(ranks.items()):
        acc = np.array([[np.mean((r >= 1) & (r <= k)) for k in ks]
                        for r in (np.asarray(d) for d in draws)])
        err = acc.std(axis=0) if len(acc) > 1 else None
        ax.errorbar(ks, acc.mean(axis=0), yerr=err, marker="o", ms=3, capsize=3 if err is not None
                    else 0, label=lab, color=f"C{i % 10}")
    ax.plot(ks, np.minimum(1.0, ks / n_candidates), ls="--", color="k", lw=1, label="chance")
    ax.set_xlabel("k (candidates listed)")
    ax.set_ylabel("top-k retrieval accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def image_grid(images: Sequence[Any], captions: Sequence[str], *, columns: int = 4):
    """Images with their captions as titles, ``columns`` per row, axes hidden."""
    rows = max(1, math.ceil(len(images) / columns))
    fig = _figure((2.5 * columns, 2.8 * rows))
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax, img, cap in zip(axes, images, captions, strict=False):
        ax.imshow(img)
        ax.set_title(cap, fontsize=7)
    for ax in axes:
        ax.axis("off")
    return fig


# ------------------------------------------------------------------------------------------
# evaluation tables
# ------------------------------------------------------------------------------------------

def variant_label(r: Mapping[str, Any]) -> str:
    """``faq rbf σ=paper``: the method variant of a table row."""
    return r["method"] + (f" {r['kernel']}" if r.get("kernel") else "") + \
        (f" σ={r['sigma']}" if r.get("sigma") else "")


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and population standard deviation over draws, ignoring NaN (NaN when all are)."""
    v = np.asarray([x for x in values if x == x], dtype=np.float64)
    return (float(v.mean()), float(v.std())) if v.size else (math.nan, math.nan)


def _palette(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """One colour per method variant of a table (sorted labels), the same in every figure."""
    return {lab: f"C{i % 10}" for i, lab in enumerate(sorted({variant_label(r) for r in rows}))}


def _seed_axis(ax, ks: Iterable[int]) -> None:
    """A log axis of seed counts, ticked at the counts themselves."""
    from matplotlib.ticker import NullFormatter, NullLocator

    ax.set_xscale("log")
    ks = sorted(set(ks))
    if ks:
        ax.set_xticks(ks, labels=[str(k) for k in ks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("number of seeds")
    ax.grid(alpha=0.3)


def _curves(rows: Sequence[Mapping[str, Any]], col: str) -> dict[str, tuple[list, list, list]]:
    """Per method variant: seed counts, mean and std over draws of ``col`` (NaN-only dropped)."""
    cells: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        cells.setdefault(variant_label(r), {}).setdefault(int(r["n_seeds"]), []).append(
            float(r[col]))
    out = {}
    for lab, by_k in sorted(cells.items()):
        ks = sorted(k for k, v in by_k.items() if any(x == x for x in v))
        if ks:
            ms = [mean_std(by_k[k]) for k in ks]
            out[lab] = (ks, [m for m, _ in ms], [s for _, s in ms])
    return out


def _curve_panel(ax, rows, col: str, ylabel: str, title: str, colours: Mapping[str, str]) -> int:
    n = 0
    for lab, (ks, m, s) in _curves(rows, col).items():
        ax.errorbar(ks, m, yerr=s, marker="o", capsize=3, label=lab, color=colours[lab])
        n += 1
    _seed_axis(ax, (int(r["n_seeds"]) for r in rows))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if n:
        ax.legend(fontsize=7)
    return n


def _direction(rows, direction):
    return [r for r in rows if r["direction"] == direction]


def accuracy_vs_seeds(rows: Sequence[Mapping[str, Any]], direction: str):
    """Matching accuracy against the number of seeds, one curve per method variant (mean over
    draws, error bars one standard deviation over draws), for one direction."""
    fig = _figure((6.4, 4.2))
    ax = fig.subplots()
    _curve_panel(ax, _direction(rows, direction), "accuracy", "matching accuracy",
                 f"matching accuracy ({direction})", _palette(rows))
    return fig


def topk_curves(rows: Sequence[Mapping[str, Any]], direction: str):
    """Retrieval top-1/5/10 against the number of seeds (three panels, score methods only)."""
    fig = _figure((13, 3.8))
    axes = fig.subplots(1, 3, sharey=True)
    rs = _direction(rows, direction)
    for ax, k in zip(axes, TOPK, strict=True):
        _curve_panel(ax, rs, k, f"retrieval {k} accuracy", f"retrieval {k} ({direction})",
                     _palette(rows))
    return fig


def seed_cka(rows: Sequence[Mapping[str, Any]]):
    """CKA of the seed sets against their size (rbf with the paper's σ, and linear when the
    table has it), mean over the rows of each size with their standard deviation."""
    fig = _figure((5.2, 3.6))
    ax = fig.subplots()
    for col, lab in (("seed_cka", "rbf (paper σ)"), ("seed_cka_linear", "linear")):
        by_k: dict[int, list[float]] = {}
        for r in rows:
            if col in r:
                by_k.setdefault(int(r["n_seeds"]), []).append(float(r[col]))
        ks = sorted(k for k, v in by_k.items() if any(x == x for x in v))
        if ks:
            ms = [mean_std(by_k[k]) for k in ks]
            ax.errorbar(ks, [m for m, _ in ms], yerr=[s for _, s in ms], marker="o",
                        capsize=3, label=lab)
    _seed_axis(ax, (int(r["n_seeds"]) for r in rows))
    ax.set_ylabel("CKA of the seed sets")
    ax.set_title("base-set CKA", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def recovery_at(rows: Sequence[Mapping[str, Any]], direction: str, n_seeds: int | None = None):
    """:func:`matching_retrieval` of an evaluation table at one seed count (default the largest)
    for one direction: every method variant's matching accuracy and the score methods' top-1/5/10,
    mean over draws with one-standard-deviation error bars, chance from ``n_queries``."""
    colours = _palette(rows)
    rs = _direction(rows, direction)
    if not rs:
        raise InputError(f"no rows for direction {direction!r}")
    k = max(int(r["n_seeds"]) for r in rs) if n_seeds is None else int(n_seeds)
    rs = [r for r in rs if int(r["n_seeds"]) == k]
    if not rs:
        raise InputError(f"no rows with {k} seeds for direction {direction!r}")
    matching: dict[str, list[float]] = {}
    retrieval: dict[str, dict[int, list[float]]] = {}
    for r in sorted(rs, key=variant_label):
        lab = variant_label(r)
        matching.setdefault(lab, []).append(float(r["accuracy"]))
        if r["top1"] == r["top1"]:
            by_k = retrieval.setdefault(lab, {1: [], 5: [], 10: []})
            for kk in by_k:
                by_k[kk].append(float(r[f"top{kk}"]))
    q = min(int(r["n_queries"]) for r in rs)
    draws = max(len(v) for v in matching.values())
    return matching_retrieval(matching, retrieval, chance_matching=1.0 / q,
                              chance_retrieval={kk: min(1.0, kk / q) for kk in (1, 5, 10)},
                              title=f"{k} seeds, {q} queries, {draws} draws ({direction})",
                              colours=colours)


def confusion_matrix(M: Any, classes: Sequence[str], *, normalize: bool = True, title: str = ""):
    """A confusion matrix (rows: true class, columns: predicted class) with a colorbar; with
    ``normalize`` each row is divided by its total (the per-class recall on the diagonal)."""
    C = np.asarray(M, dtype=np.float64)
    m = len(classes)
    if C.shape != (m, m):
        raise InputError(f"need a {m} x {m} confusion matrix for {m} classes, got {C.shape}")
    if normalize:
        tot = C.sum(axis=1, keepdims=True)
        C = np.divide(C, tot, out=np.zeros_like(C), where=tot > 0)
    size = 2.5 + 0.45 * m
    fig = _figure((size + 1.2, size))
    ax = fig.subplots()
    im = ax.imshow(C, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(im, ax=ax, label="fraction of the true class" if normalize else "count")
    ax.set_xticks(range(m), labels=list(classes), rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(m), labels=list(classes), fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if m <= 20:
        hi = np.nanmax(C) if C.size else 1.0
        for a in range(m):
            for b in range(m):
                ax.text(b, a, f"{C[a, b]:.2f}" if normalize else f"{int(C[a, b])}",
                        ha="center", va="center", fontsize=6,
                        color="white" if C[a, b] > 0.6 * hi else "black")
    if title:
        ax.set_title(title, fontsize=9)
    return fig
