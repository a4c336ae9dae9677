"""Figures of :mod:`fastcka.plots` (structure checked on the Figure objects) and the CLI's
``--plot-format`` (valid PNG/PDF/SVG files, a bad format refused before anything is written)."""

from __future__ import annotations

import itertools
import json
import math
import os
import statistics

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _cli import assert_one_line_error, run  # noqa: E402
from matplotlib.colorbar import Colorbar  # noqa: E402
from matplotlib.container import BarContainer, ErrorbarContainer  # noqa: E402

from fastcka import plots  # noqa: E402
from fastcka.errors import InputError  # noqa: E402
from fastcka.evaluate import EvalTable  # noqa: E402
from fastcka.report import read_confusion, write_report  # noqa: E402

MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF-"}


def assert_format(path, fmt):
    data = open(path, "rb").read()
    if fmt == "svg":
        assert data.lstrip().startswith(b"<?xml") and b"<svg" in data[:2000], data[:80]
        assert data.rstrip().endswith(b"</svg>")
    else:
        assert data.startswith(MAGIC[fmt]), data[:16]
        if fmt == "pdf":
            assert data.rstrip().endswith(b"%%EOF")


def colorbars(fig):
    """(image axes, colorbar) of every image drawn with a colorbar."""
    out = []
    for ax in fig.axes:
        for im in ax.images:
            if isinstance(im.colorbar, Colorbar):
                out.append((ax, im.colorbar))
    return out


def errorbar_halfwidths(container):
    """x, y and the vertical error half-widths drawn by one ErrorbarContainer."""
    line, _, (bars,) = container.lines
    segs = bars.get_segments()
    x = np.array([s[0][0] for s in segs])
    y = np.asarray(line.get_data()[1], float) if line is not None else None
    half = np.array([abs(s[1][1] - s[0][1]) / 2 for s in segs])
    centre = np.array([(s[1][1] + s[0][1]) / 2 for s in segs])
    return x, y, half, centre


# ---------------------------------------------------------------------------------------------
# heatmaps
# ---------------------------------------------------------------------------------------------

def test_similarity_matrix_colorbar_names_and_values():
    M = np.array([[1.0, 0.25, 0.5], [0.25, 1.0, 0.75], [0.5, 0.75, 1.0]])
    names = ["dino", "minilm", "e5"]
    fig = plots.similarity_matrix(M, names, title="cka", label="CKA")
    (ax, cb), = colorbars(fig)
    assert len(fig.axes) == 2 and cb.ax in fig.axes and cb.ax is not ax
    assert cb.ax.get_ylabel() == "CKA"
    np.testing.assert_array_equal(ax.images[0].get_array(), M)
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    cells = sorted(t.get_text() for t in ax.texts)
    assert cells == sorted(f"{v:.3f}" for v in M.ravel())
    with pytest.raises(InputError, match="3 x 3"):
        plots.similarity_matrix(M[:2], names)


def test_kernel_heatmaps_block_labels_and_colorbars():
    rng = np.random.default_rng(0)
    groups = ["circle"] * 4 + ["square"] * 7 + ["star"] * 3
    n = len(groups)
    K1, K2 = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    fig = plots.kernel_heatmaps([K1, K2], ["image", "text"], groups=groups, group_name="shape")
    cbs = colorbars(fig)
    assert len(cbs) == 2 and len(fig.axes) == 4  # two panels, one colorbar each
    # block centres and separators computed by hand: blocks [0,4), [4,11), [11,14)
    want_centres = [1.5, 7.0, 12.0]
    for (ax, cb), K in zip(cbs, (K1, K2), strict=True):
        np.testing.assert_array_equal(ax.images[0].get_array(), K)
        lim = np.abs(K).max()
        assert ax.images[0].get_clim() == pytest.approx((-lim, lim))  # symmetric colour scale
        assert cb.ax.get_ylabel() == "kernel value"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["circle", "square", "star"]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["circle", "square", "star"]
        np.testing.assert_allclose(ax.get_xticks(), want_centres)
        np.testing.assert_allclose(ax.get_yticks(), want_centres)
        seps = sorted({round(float(ln.get_xdata()[0]), 6) for ln in ax.lines
                       if ln.get_xdata()[0] == ln.get_xdata()[1]})
        assert seps == [3.5, 10.5]
        assert ax.get_xlabel() == ax.get_ylabel() == "shape"
    with pytest.raises(InputError, match="one group label per row"):
        plots.kernel_heatmaps([K1], ["x"], groups=groups[:-1])


def naive_centred(X, kernel="linear"):
    X = np.asarray(X, float)
    n = len(X)
    if kernel == "linear":
        K = X @ X.T
    else:
        D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
        off = D[~np.eye(n, dtype=bool)]
        s2 = np.sort(off[off > 0])[(off[off > 0].size - 1) // 2]  # lower median (the paper's σ²)
        K = np.exp(-D / (2 * s2))
    H = np.eye(n) - 1.0 / n
    return H @ K @ H


def test_kernel_figure_orders_rows_by_class_and_subsamples():
    rng = np.random.default_rng(4)
    X, Y = rng.standard_normal((40, 5)), rng.standard_normal((40, 3))
    labels = rng.choice(["bird", "cat", "ant"], size=40)
    fig, rows = plots.kernel_figure([X, Y], ["img", "txt"], groups=labels, max_rows=25, rng=2)
    assert len(rows) == 25 and len(set(rows.tolist())) == 25
    got = [str(labels[i]) for i in rows]
    assert got == sorted(got)  # ordered by class
    cbs = colorbars(fig)
    assert len(cbs) == 2 and len(fig.axes) == 4
    for (ax, _), Z, nm in zip(cbs, (X, Y), ("img", "txt"), strict=True):
        np.testing.assert_allclose(ax.images[0].get_array(), naive_centred(Z[rows]), atol=1e-10)
        assert ax.get_title() == f"centred linear kernel: {nm}"
        want = [c for c in ("ant", "bird", "cat") if c in got]
        assert [t.get_text() for t in ax.get_xticklabels()] == want
        assert ax.get_xlabel() == "class"
    fig, rows = plots.kernel_figure([X, Y], ["a", "b"], kernel="rbf")
    assert rows.tolist() == list(range(40))  # all rows, in their order
    ax = colorbars(fig)[0][0]
    np.testing.assert_allclose(ax.images[0].get_array(), naive_centred(X, "rbf"), atol=1e-10)
    assert ax.get_xlabel() == "sample"
    with pytest.raises(InputError, match="same rows"):
        plots.kernel_figure([X, Y[:30]], ["a", "b"])


# ---------------------------------------------------------------------------------------------
# permutation null
# ---------------------------------------------------------------------------------------------

def test_permutation_null_axes_labelled_and_observed_marked():
    import fastcka

    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 5))
    Y = X @ rng.standard_normal((5, 4)) + 0.5 * rng.standard_normal((40, 4))
    res = [fastcka.cka_permutation_test(X, Y, n_permutations=60, rng=1, kernel=k, device="cpu")
           for k in ("linear", "rbf")]
    fig = plots.permutation_null([{"null": r.null, "observed": r.statistic, "p_value": r.p_value,
                                   "title": k} for r, k in zip(res, ("linear", "rbf"), strict=True)])
    assert len(fig.axes) == 2
    for ax, r in zip(fig.axes, res, strict=True):
        assert "CKA" in ax.get_xlabel() and ax.get_ylabel() == "count"
        heights = [p.get_height() for p in ax.patches]
        assert sum(heights) == 60  # every permutation counted once
        (obs,) = [ln for ln in ax.lines]
        assert obs.get_xdata()[0] == pytest.approx(r.statistic)
        labels = ax.get_legend_handles_labels()[1]
        assert f"observed = {r.statistic:.4f}" in labels
        assert f"{r.p_value:.4g}" in ax.get_title()
    dens = plots.permutation_null([{"null": res[0].null, "observed": res[0].statistic}],
                                  density=True)
    ax = dens.axes[0]
    assert ax.get_ylabel() == "density"
    area = sum(p.get_height() * p.get_width() for p in ax.patches)
    assert area == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# matching / retrieval with error bars over draws
# ---------------------------------------------------------------------------------------------

def test_matching_and_retrieval_in_separate_panels_with_draw_error_bars():
    faq = [0.5, 0.6, 0.7]
    t2i = {1: [0.2, 0.3, 0.25], 5: [0.5, 0.55, 0.6], 10: [0.7, 0.7, 0.8]}
    i2t = {1: [0.1, 0.2, 0.3], 5: [0.4, 0.45, 0.4], 10: [0.6, 0.65, 0.7]}
    fig = plots.matching_retrieval({"FAQ": faq}, {"t→i": t2i, "i→t": i2t}, chance_matching=0.01,
                                   chance_retrieval={1: 0.01, 5: 0.05, 10: 0.1})
    ax_m, ax_r = fig.axes
    assert ax_m.get_title() == "matching" and ax_r.get_title() == "retrieval"
    assert ax_m.get_ylabel() == ax_r.get_ylabel() == "accuracy"
    (bm,) = [c for c in ax_m.containers if isinstance(c, BarContainer)]
    (br,) = [c for c in ax_r.containers if isinstance(c, BarContainer)]
    assert len(bm) == 1 and len(br) == 6
    assert bm[0].get_height() == pytest.approx(statistics.fmean(faq))
    _, _, half, _ = errorbar_halfwidths(bm.errorbar)
    assert half == pytest.approx([statistics.pstdev(faq)])
    vals = [t2i[k] for k in (1, 5, 10)] + [i2t[k] for k in (1, 5, 10)]
    assert [b.get_height() for b in br] == pytest.approx([statistics.fmean(v) for v in vals])
    _, _, half, _ = errorbar_halfwidths(br.errorbar)
    assert half == pytest.approx([statistics.pstdev(v) for v in vals])
    ticks = [t.get_text() for t in ax_r.get_xticklabels()]
    assert ticks[0] == "top-1\nt→i" and ticks[5] == "top-10\ni→t"
    # a single draw: no error bars at all
    one = plots.matching_retrieval({"FAQ": [0.5]}, {"t→i": {1: [0.2]}}, chance_matching=0.1,
                                   chance_retrieval={1: 0.1})
    assert all(c.errorbar is None for ax in one.axes for c in ax.containers)


# ---------------------------------------------------------------------------------------------
# evaluation curves
# ---------------------------------------------------------------------------------------------

def synthetic_table(seed=0, directions=("src-to-tgt", "tgt-to-src")):
    """An evaluation table with random values: 2 score methods + faq, 3 seed counts, 3 draws,
    2 directions (rows shuffled)."""
    rng = np.random.default_rng(seed)
    rows = []
    for (m, kern), k, d, direction in itertools.product(
            [("faq", "rbf"), ("local-cka", "linear"), ("linreg", "")], (10, 20, 40), range(3),
            directions):
        score = m != "faq"
        rows.append({"method": m, "kernel": kern, "sigma": "paper" if kern == "rbf" else "",
                     "n_seeds": k, "draw": d, "direction": direction,
                     "accuracy": float(rng.random()), "top1": float(rng.random()) if score else math.nan,
                     "top5": float(rng.random()) if score else math.nan,
                     "top10": float(rng.random()) if score else math.nan,
                     "objective": math.nan, "seed_cka": 0.1 * k ** 0.5 + 0.01 * d,
                     "seed_cka_linear": 0.05 * k ** 0.5, "n_queries": 50, "n_init": 1,
                     "seconds": 0.1})
    rng.shuffle(rows)
    return EvalTable(rows, {"queries": 50})


def by_hand(rows, label, direction, col):
    """n_seeds -> (mean, pstdev) over draws, with plain Python loops."""
    cells = {}
    for r in rows:
        lab = r["method"] + (f" {r['kernel']}" if r["kernel"] else "") + \
            (f" σ={r['sigma']}" if r["sigma"] else "")
        if lab == label and r["direction"] == direction:
            cells.setdefault(r["n_seeds"], []).append(r[col])
    return {k: (statistics.fmean(v), statistics.pstdev(v)) for k, v in sorted(cells.items())}


def test_accuracy_vs_seeds_error_bars_are_std_over_draws():
    t = synthetic_table()
    fig = plots.accuracy_vs_seeds(t.rows, "tgt-to-src")
    (ax,) = fig.axes
    assert ax.get_xlabel() == "number of seeds" and ax.get_ylabel() == "matching accuracy"
    assert ax.get_xscale() == "log"
    conts = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    labels = [c.get_label() for c in conts]
    assert labels == ["faq rbf σ=paper", "local-cka linear", "linreg"] or \
        sorted(labels) == sorted(["faq rbf σ=paper", "local-cka linear", "linreg"])
    for c in conts:
        want = by_hand(t.rows, c.get_label(), "tgt-to-src", "accuracy")
        x, y, half, centre = errorbar_halfwidths(c)
        assert x.tolist() == list(want) == [10, 20, 40]
        assert y == pytest.approx([m for m, _ in want.values()])
        assert half == pytest.approx([s for _, s in want.values()])
        assert centre == pytest.approx(y)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10", "20", "40"]  # the seed counts
    # a method keeps its colour in every figure of the report
    top = plots.topk_curves(t.rows, "tgt-to-src").axes[0]
    rec = plots.recovery_at(t.rows, "tgt-to-src").axes[0]
    col = {c.get_label(): c.lines[0].get_color() for c in conts}
    for c in top.containers:
        if isinstance(c, ErrorbarContainer):
            assert c.lines[0].get_color() == col[c.get_label()]
    (bars,) = [c for c in rec.containers if isinstance(c, BarContainer)]
    for b, tick in zip(bars, rec.get_xticklabels(), strict=True):
        assert matplotlib.colors.same_color(b.get_facecolor(), col[tick.get_text()])
    # the same numbers as the table's own summary
    s = {(r["method"], r["n_seeds"]): r for r in t.summary() if r["direction"] == "tgt-to-src"}
    x, y, half, _ = errorbar_halfwidths(conts[labels.index("linreg")])
    assert half[1] == pytest.approx(s[("linreg", 20)]["accuracy_std"])


def test_topk_curves_three_panels_score_methods_only():
    t = synthetic_table(1)
    fig = plots.topk_curves(t.rows, "src-to-tgt")
    assert len(fig.axes) == 3
    for ax, k in zip(fig.axes, ("top1", "top5", "top10"), strict=True):
        assert k in ax.get_ylabel() and ax.get_xlabel() == "number of seeds"
        conts = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert sorted(c.get_label() for c in conts) == ["linreg", "local-cka linear"]  # no faq
        for c in conts:
            want = by_hand(t.rows, c.get_label(), "src-to-tgt", k)
            x, y, half, _ = errorbar_halfwidths(c)
            assert len(x) == 3 and y == pytest.approx([m for m, _ in want.values()])
            assert half == pytest.approx([s for _, s in want.values()])


def test_recovery_at_largest_seed_count_per_method():
    t = synthetic_table(2)
    fig = plots.recovery_at(t.rows, "src-to-tgt")
    ax_m, ax_r = fig.axes
    assert "40 seeds, 50 queries, 3 draws" in fig.get_suptitle()
    (bm,) = [c for c in ax_m.containers if isinstance(c, BarContainer)]
    (br,) = [c for c in ax_r.containers if isinstance(c, BarContainer)]
    labels = [t.get_text() for t in ax_m.get_xticklabels()]
    assert sorted(labels) == sorted(["faq rbf σ=paper", "local-cka linear", "linreg"])
    _, _, half, _ = errorbar_halfwidths(bm.errorbar)
    for i, lab in enumerate(labels):
        m, s = by_hand(t.rows, lab, "src-to-tgt", "accuracy")[40]
        assert bm[i].get_height() == pytest.approx(m) and half[i] == pytest.approx(s)
    ticks = [t.get_text() for t in ax_r.get_xticklabels()]
    assert len(br) == 6 and "faq" not in " ".join(ticks)  # score methods only
    _, _, half, _ = errorbar_halfwidths(br.errorbar)
    for i, tick in enumerate(ticks):
        k, lab = tick.split("\n")
        m, s = by_hand(t.rows, lab, "src-to-tgt", "top" + k.removeprefix("top-"))[40]
        assert br[i].get_height() == pytest.approx(m) and half[i] == pytest.approx(s)
    chance = [p[1] for p in ax_r.collections[-1].get_offsets()]
    assert sorted(set(np.round(chance, 6))) == [0.02, 0.1, 0.2]  # k / 50 queries
    # the same colour for a method in both panels
    lc = {lab: bm[i].get_facecolor() for i, lab in enumerate(labels)}
    for i, tick in enumerate(ticks):
        assert br[i].get_facecolor() == lc[tick.split("\n")[1]]
    only_faq = plots.recovery_at([r for r in t.rows if r["method"] == "faq"], "src-to-tgt", 10)
    assert len(only_faq.axes) == 1 and "10 seeds" in only_faq.get_suptitle()


def test_seed_cka_both_kernels():
    t = synthetic_table()
    fig = plots.seed_cka(t.rows)
    (ax,) = fig.axes
    conts = {c.get_label(): c for c in ax.containers if isinstance(c, ErrorbarContainer)}
    assert set(conts) == {"rbf (paper σ)", "linear"}
    x, y, half, _ = errorbar_halfwidths(conts["rbf (paper σ)"])
    for i, k in enumerate((10, 20, 40)):
        v = [r["seed_cka"] for r in t.rows if r["n_seeds"] == k]
        assert y[i] == pytest.approx(statistics.fmean(v))
        assert half[i] == pytest.approx(statistics.pstdev(v))
    assert ax.get_ylabel() and ax.get_xlabel() == "number of seeds"


def test_confusion_matrix_figure():
    M = np.array([[8, 2, 0], [1, 5, 4], [0, 0, 10]])
    fig = plots.confusion_matrix(M, ["a", "b", "c"])
    (ax, cb), = colorbars(fig)
    assert len(fig.axes) == 2
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    want = M / M.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ax.images[0].get_array(), want)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert "fraction" in cb.ax.get_ylabel()
    raw = plots.confusion_matrix(M, ["a", "b", "c"], normalize=False)
    np.testing.assert_array_equal(raw.axes[0].images[0].get_array(), M)


# ---------------------------------------------------------------------------------------------
# confusion CSV layouts
# ---------------------------------------------------------------------------------------------

def write_confusions(tmp_path):
    rng = np.random.default_rng(5)
    classes = ["cat", "dog", "owl"]
    true = rng.integers(0, 3, 60)
    pred = np.where(rng.random(60) < 0.6, true, rng.integers(0, 3, 60))
    M = np.zeros((3, 3))
    for a, b in zip(true, pred, strict=True):
        M[a, b] += 1
    per_image = tmp_path / "pred.csv"
    per_image.write_text("id,true,predicted,score\n" + "".join(
        f"im{i},{classes[a]},{classes[b]},0.5\n" for i, (a, b) in enumerate(zip(true, pred, strict=True))))
    wide = tmp_path / "wide.csv"  # columns in another order than the rows
    order = [2, 0, 1]
    wide.write_text("true," + ",".join(classes[j] for j in order) + "\n" + "".join(
        classes[i] + "," + ",".join(str(int(M[i, j])) for j in order) + "\n" for i in range(3)))
    cells = tmp_path / "cells.tsv"
    cells.write_text("true\tpredicted\tcount\n" + "".join(
        f"{classes[i]}\t{classes[j]}\t{int(M[i, j])}\n" for i in range(3) for j in range(3)))
    return classes, M, per_image, wide, cells


def test_read_confusion_layouts_agree(tmp_path):
    classes, M, per_image, wide, cells = write_confusions(tmp_path)
    for f in (per_image, wide, cells):
        got_c, got = read_confusion(f)
        assert got_c == classes, f
        np.testing.assert_array_equal(got, M)
    bad = tmp_path / "bad.csv"
    bad.write_text("true,a,b\na,1,2\nc,3,4\n")
    with pytest.raises(InputError, match="differ"):
        read_confusion(bad)
    bad.write_text("true,predicted,count\na,b,x\n")
    with pytest.raises(InputError, match="line 2"):
        read_confusion(bad)


# ---------------------------------------------------------------------------------------------
# the CLI: --plot-format on report, cka and the demo's plots
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["png", "pdf", "svg"])
def test_report_plot_formats(tmp_path, capsys, fmt):
    dirs = ("src-to-tgt", "tgt-to-src") if fmt == "png" else ("src-to-tgt",)  # keep it quick
    t = synthetic_table(directions=dirs)
    t.write(str(tmp_path / "t.csv"))
    _, _, per_image, _, _ = write_confusions(tmp_path)
    out = tmp_path / "rep"
    code, so, err = run(["report", tmp_path / "t.csv", "--confusion", per_image, "-o", out,
                         "--plot-format", fmt, "--json"], capsys)
    assert code == 0, err
    doc = json.loads(so)
    want = {f"{p}_{d}.{fmt}" for p in ("accuracy", "topk", "recovery") for d in dirs}
    want |= {f"seed_cka.{fmt}", f"confusion.{fmt}"}
    assert set(doc["files"]) == want | {"report.md"}
    assert set(os.listdir(out)) == want | {"report.md"}
    for f in want:
        assert_format(out / f, fmt)
    md = (out / "report.md").read_text()
    for f in want:
        assert f"]({f})" in md
    # the paper's layout: methods as rows, seed counts as columns, mean ± std over draws
    m, s = by_hand(t.rows, "local-cka linear", "src-to-tgt", "top5")[20]
    assert f"{m:.3f} ± {s:.3f}" in md
    assert "| method | 10 seeds | 20 seeds | 40 seeds |" in md


def test_report_of_a_confusion_table(tmp_path, capsys):
    classes, M, per_image, _, _ = write_confusions(tmp_path)
    out = tmp_path / "cls"
    code, so, err = run(["report", per_image, "-o", out], capsys)
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["confusion.png", "report.md"]
    assert_format(out / "confusion.png", "png")
    md = (out / "report.md").read_text()
    assert md.startswith("# fastcka classification")
    assert f"Accuracy {np.trace(M) / M.sum():.3f} over 60 images" in md
    assert f"| dog | {int(M[1].sum())} | {M[1, 1] / M[1].sum():.3f} |" in md


def test_report_of_a_classify_folder_and_repeated_confusions(tmp_path, capsys):
    """The folder `fastcka classify -o DIR` writes: one wide confusion_<method>.csv per method
    under a header 'true \\ predicted,<classes>'; each is drawn with its own table."""
    classes, M, per_image, _, cells = write_confusions(tmp_path)
    folder = tmp_path / "cls"
    folder.mkdir()
    M2 = M[::-1].copy()
    for name, mat in (("knn", M), ("local-cka-linear", M2)):
        (folder / f"confusion_{name}.csv").write_text(
            "true \\ predicted," + ",".join(classes) + "\n" + "".join(
                c + "," + ",".join(str(int(v)) for v in row) + "\n"
                for c, row in zip(classes, mat, strict=True)))
    (folder / "summary.csv").write_text("method,top1\nknn,0.5\n")
    out = tmp_path / "rep"
    code, so, err = run(["report", folder, "-o", out, "--plot-format", "svg"], capsys)
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["confusion_knn.svg", "confusion_local-cka-linear.svg",
                                       "report.md"]
    md = (out / "report.md").read_text()
    for name, mat in (("knn", M), ("local-cka-linear", M2)):
        assert f"## Classification: {name}" in md
        assert f"Accuracy {np.trace(mat) / mat.sum():.3f} over 60 images" in md
        assert f"![confusion matrix](confusion_{name}.svg)" in md
    for f in os.listdir(out):
        if f.endswith(".svg"):
            assert_format(out / f, "svg")
    t = synthetic_table(directions=("src-to-tgt",))
    t.write(str(tmp_path / "t.csv"))
    code, so, err = run(["report", tmp_path / "t.csv", "--confusion", per_image, "--confusion",
                         cells, "-o", tmp_path / "both", "--json"], capsys)
    assert code == 0, err
    files = json.loads(so)["files"]
    assert {"confusion_pred.png", "confusion_cells.png", "accuracy_src-to-tgt.png"} <= set(files)
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(["report", empty, "-o", tmp_path / "rep3"], capsys)
    assert_one_line_error(code, err, "confusion_")
    assert not (tmp_path / "rep3").exists()


def test_report_bad_inputs_write_nothing(tmp_path, capsys):
    t = synthetic_table()
    t.write(str(tmp_path / "t.csv"))
    out = tmp_path / "rep"
    code, _, err = run(["report", tmp_path / "t.csv", "-o", out, "--plot-format", "jpg"], capsys)
    assert_one_line_error(code, err, "--plot-format", "jpg")
    assert not out.exists()
    bad = tmp_path / "conf.csv"
    bad.write_text("true,predicted,count\na,b,-1\n")
    code, _, err = run(["report", tmp_path / "t.csv", "--confusion", bad, "-o", out], capsys)
    assert_one_line_error(code, err, "count")
    assert not out.exists()


@pytest.fixture
def two_stores(tmp_path):
    from fastcka.store import write_store

    rng = np.random.default_rng(2)
    X = rng.standard_normal((30, 5))
    Y = X @ rng.standard_normal((5, 3)) + 0.3 * rng.standard_normal((30, 3))
    ids = [f"r{i}" for i in range(30)]
    write_store(tmp_path / "a.h5", X, ids)
    write_store(tmp_path / "b.h5", Y, ids)
    write_store(tmp_path / "c.h5", np.tanh(X[:, :4]), ids)
    return tmp_path, X, Y


@pytest.mark.parametrize("fmt", ["png", "pdf", "svg"])
def test_cka_plot_formats(two_stores, capsys, fmt):
    d, X, Y = two_stores
    m = d / f"matrix.{fmt}"
    code, _, err = run(["cka", d / "a.h5", d / "b.h5", d / "c.h5", "--plot", m,
                        "--plot-format", fmt], capsys)
    assert code == 0, err
    assert_format(m, fmt)
    bare = d / "null"  # no suffix: the format comes from --plot-format alone
    code, _, err = run(["cka", d / "a.h5", d / "b.h5", "--permutations", 20, "--plot", bare,
                        "--plot-format", fmt], capsys)
    assert code == 0, err
    assert_format(bare, fmt)


def test_cka_plot_kernels(two_stores, capsys):
    d, X, Y = two_stores
    out = d / "k.svg"
    code, so, err = run(["cka", d / "a.h5", d / "b.h5", "--plot-kernels", out, "--json"], capsys)
    assert code == 0, err
    assert json.loads(so)["outputs"]["plot_kernels"] == str(out)
    assert_format(out, "svg")
    code, _, err = run(["cka", d / "a.h5", d / "b.h5", "--plot-kernels", d / "k.gif"], capsys)
    assert_one_line_error(code, err, "--plot-kernels")
    assert not (d / "k.gif").exists()


def test_cka_permutation_plot_is_the_null(two_stores, capsys, monkeypatch):
    import fastcka

    d, X, Y = two_stores
    seen = []
    real = plots.save
    monkeypatch.setattr(plots, "save", lambda fig, path, fmt=None, **kw: (seen.append(fig),
                                                                           real(fig, path, fmt)))
    code, _, err = run(["cka", d / "a.h5", d / "b.h5", "--permutations", 30, "--seed", 3,
                        "--plot", d / "p.png"], capsys)
    assert code == 0, err
    (fig,) = seen
    (ax,) = fig.axes
    ref = fastcka.cka_permutation_test(X, Y, n_permutations=30, rng=3, device="cpu")
    assert sum(p.get_height() for p in ax.patches) == 30
    assert ax.lines[0].get_xdata()[0] == pytest.approx(ref.statistic)
    assert ax.get_xlabel() and ax.get_ylabel() == "count"


def test_cka_plot_format_conflicts_refused(two_stores, capsys):
    d, _, _ = two_stores
    for extra, needle in ((["--plot", d / "m.png", "--plot-format", "svg"], "--plot-format"),
                          (["--plot", d / "m.png", "--plot-format", "gif"], "gif"),
                          (["--plot", d / "m.jpg"], ".png")):
        code, _, err = run(["cka", d / "a.h5", d / "b.h5", *extra], capsys)
        assert_one_line_error(code, err, needle)
        assert not [f for f in os.listdir(d) if f.startswith(("m.", ".m."))]


def test_demo_plots_as_svg(tmp_path):
    """The demo's four figures (kernels, permutation null, matching/retrieval, scenes) in a
    format other than its default PNG (which test_demo's end-to-end run checks)."""
    fmt = "svg"
    from fastcka.demo import _plots
    from fastcka.scenes import scene_specs

    scenes = scene_specs(24, seed=0)
    ids = [s.id for s in scenes]
    rng = np.random.default_rng(0)
    X_img, X_txt = rng.standard_normal((24, 6)), rng.standard_normal((24, 4))
    cka_res = {k: {"cka": 0.3, "p_value": 0.05, "_null": rng.random(20) * 0.2}
               for k in ("linear", "rbf")}
    res = {"encoders": {"image": {"name": "img"}, "text": {"name": "txt"}},
           "cka": {"linear": {"cka": 0.3}},
           "seeded_match": {"accuracy": 0.4, "chance": 0.1, "n_seeds": 10, "n_queries": 14},
           "retrieval": {"src-to-tgt": {"1": 0.2, "5": 0.5, "10": 0.8},
                         "tgt-to-src": {"1": 0.1, "5": 0.4, "10": 0.7},
                         "chance": {"1": 0.07, "5": 0.36, "10": 0.71}}}
    _plots(tmp_path, X_img, X_txt, scenes, ids, cka_res, res, fmt)
    assert sorted(os.listdir(tmp_path)) == sorted(
        f"{n}.{fmt}" for n in ("kernels", "permutation", "accuracy", "scenes"))
    for f in os.listdir(tmp_path):
        assert_format(tmp_path / f, fmt)


def test_write_report_rejects_bad_format_before_writing(tmp_path):
    with pytest.raises(InputError, match="plot format"):
        write_report(synthetic_table(), tmp_path / "r", plot_format="bmp")
    assert not (tmp_path / "r").exists()


def test_demo_bad_plot_format_refused_before_anything(tmp_path, capsys):
    out = tmp_path / "demo"
    code, _, err = run(["demo", "--plot-format", "tiff", "-o", out, "--n", 16], capsys)
    assert_one_line_error(code, err, "--plot-format", "tiff")
    assert not out.exists()
    from fastcka.demo import run_demo

    with pytest.raises(InputError, match="plot format"):
        run_demo(out, n=16, plot_format="bmp")
    assert not out.exists()


def test_report_of_match_and_retrieve_outputs(tmp_path, capsys, monkeypatch):
    """Per-query outputs of match/retrieve: two --seed draws of each run become one bar with an
    error bar (std over the draws), in separate matching and retrieval panels."""
    from _cli import paired_stores

    src, tgt, *_ = paired_stores(tmp_path)
    outs = {}
    for seed in (0, 1):
        for cmd, extra in (("match", ["--method", "linreg"]),
                           ("retrieve", ["--method", "local-cka"])):
            f = tmp_path / f"{cmd}{seed}.json"
            code, _, err = run([cmd, src, tgt, "--seeds", 20, "--queries", 30, "--seed", seed,
                                *extra, "-o", f], capsys)
            assert code == 0, err
            outs.setdefault(cmd, []).append(f)
    # the numbers by hand, from the written rows
    acc = [statistics.fmean(bool(r["correct"]) for r in json.loads(f.read_text())["rows"])
           for f in outs["match"]]
    ranks = [[r["rank_of_true"] for r in json.loads(f.read_text())["rows"]] for f in outs["retrieve"]]
    top5 = [statistics.fmean(1 <= x <= 5 for x in rs) for rs in ranks]
    assert len(set(acc)) == 2 and len(set(top5)) == 2  # the draws differ
    import fastcka.report

    seen = []
    monkeypatch.setattr(fastcka.report, "save", lambda fig, path, fmt=None, **kw: (seen.append((
        os.path.basename(path), fig)), plots.save(fig, path, fmt)))
    out = tmp_path / "rep"
    code, so, err = run(["report", *outs["match"], *outs["retrieve"], "-o", out,
                         "--plot-format", "pdf"], capsys)
    assert code == 0, err
    figs = dict(seen)
    assert set(figs) == {"queries.pdf", "ranks.pdf"}
    for f in figs:
        assert_format(out / f, "pdf")
    ax_m, ax_r = figs["queries.pdf"].axes
    (bm,) = [c for c in ax_m.containers if isinstance(c, BarContainer)]
    assert [t.get_text() for t in ax_m.get_xticklabels()] == ["linreg src-to-tgt"]
    assert bm[0].get_height() == pytest.approx(statistics.fmean(acc))
    assert errorbar_halfwidths(bm.errorbar)[2] == pytest.approx([statistics.pstdev(acc)])
    (br,) = [c for c in ax_r.containers if isinstance(c, BarContainer)]
    ticks = [t.get_text() for t in ax_r.get_xticklabels()]
    assert ticks == [f"top-{k}\nlocal-cka linear src-to-tgt" for k in (1, 5, 10)]
    assert br[1].get_height() == pytest.approx(statistics.fmean(top5))
    (ax,) = figs["ranks.pdf"].axes
    (c,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    x, y, half, _ = errorbar_halfwidths(c)
    assert x.tolist() == list(range(1, 11)) and y[4] == pytest.approx(statistics.fmean(top5))
    assert half[4] == pytest.approx(statistics.pstdev(top5))
    md = (out / "report.md").read_text()
    assert md.startswith("# fastcka runs")
    m, s = statistics.fmean(acc), statistics.pstdev(acc)
    assert f"| linreg src-to-tgt | 2 | 30 | {m:.3f} ± {s:.3f} |" in md
    # a CSV output (no settings inside) is labelled by its file name
    code, _, err = run(["match", src, tgt, "--seeds", 20, "--queries", 30, "--method", "linreg",
                        "-o", tmp_path / "m.csv"], capsys)
    assert code == 0, err
    code, so, err = run(["report", tmp_path / "m.csv", "-o", tmp_path / "rep2", "--json"], capsys)
    assert code == 0, err
    assert "| m | 1 | 30 |" in (tmp_path / "rep2" / "report.md").read_text()
    assert json.loads(so)["files"] == ["report.md", "queries.png"]


def test_report_refuses_ambiguous_inputs(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.csv").write_text("source_id,matched_id,score,correct\nq1,q1,0.5,True\n"
                                          "q2,q1,0.1,False\n")
    (tmp_path / "b" / "x.csv").write_text("query_id,rank_of_true,target_ids,scores\n"
                                          "q1,1,q1;q2,0.5;0.1\nq2,0,q1;q3,0.4;0.2\n")
    out = tmp_path / "rep"
    code, _, err = run(["report", tmp_path / "a" / "x.csv", tmp_path / "b" / "x.csv", "-o", out],
                       capsys)
    assert_one_line_error(code, err, "under one label")
    assert not out.exists()
    t = synthetic_table(directions=("src-to-tgt",))
    t.write(str(tmp_path / "t.csv"))
    t.write(str(tmp_path / "t.json"))
    code, _, err = run(["report", tmp_path / "t.csv", tmp_path / "t.json", "-o", out], capsys)
    assert_one_line_error(code, err, "at most one evaluation table")
    assert not out.exists()
    # the two small outputs alone: matching 1/2 correct, top-1 1/2 and top-2 1/2
    from fastcka.report import read_query_result

    m, r = read_query_result(tmp_path / "a" / "x.csv"), read_query_result(tmp_path / "b" / "x.csv")
    assert m["kind"] == "match" and m["accuracy"] == 0.5 and m["n_queries"] == 2
    assert r["kind"] == "retrieve" and r["k_max"] == 2 and r["ranks"].tolist() == [1, 0]


def test_report_folder_appears_complete_or_not_at_all(tmp_path, monkeypatch):
    import fastcka.report

    t = synthetic_table(directions=("src-to-tgt",))
    calls = []

    def failing(fig, path, fmt=None, **kw):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        plots.save(fig, path, fmt)

    monkeypatch.setattr(fastcka.report, "save", failing)
    with pytest.raises(OSError):
        write_report(t, tmp_path / "rep")
    assert os.listdir(tmp_path) == []  # neither the folder nor its temporary sibling
    monkeypatch.undo()
    keep = tmp_path / "old"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    files = write_report(t, keep)
    assert (keep / "notes.txt").read_text() == "mine"
    assert set(os.listdir(keep)) == {"notes.txt", *files}
