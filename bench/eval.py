"""Benchmark: the whole Flickr8k evaluation grid with fastcka vs the reference protocol.

fastcka: ``fastcka.evaluate`` over the grid (6 seed counts x 3 draws x 2 directions, FAQ rbf with
``--restarts`` restarts, local CKA linear/rbf-paper/rbf-base, linreg, relative), timed in full.
Reference (the paper's code's way), timed in the same run on ONE cell (320 seeds, draw 0,
src-to-tgt: caption queries rank images) and extrapolated: FAQ as one
``scipy.optimize.quadratic_assignment`` call per restart (timed on ``--scipy-restarts``, scaled
to ``--restarts``), local CKA as a per-pair loop of full
(p+1)-point CKAs (timed on ``--ref-pairs`` pairs, scaled to the q^2 pairs of the cell).  Every
grid cell is priced as that 320-seed cell (an upper bound for smaller seed counts; the table
says what is measured and what is scaled).

Usage: ``python bench/eval.py [--restarts 500] [--scipy-restarts 3] [--ref-pairs 200]``.
Writes ``bench/results/eval.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_lines  # noqa: E402
from local_cka import reference_pair  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FASTCKA_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--restarts", type=int, default=500)
    ap.add_argument("--scipy-restarts", type=int, default=3)
    ap.add_argument("--ref-pairs", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "eval.md"))
    return ap.parse_args()


def scipy_solver(A, B, opts):
    """``seeded_match(solver=)``: one SciPy FAQ call per restart, the best objective kept."""
    from scipy.optimize import quadratic_assignment

    A, B = np.asarray(A), np.asarray(B)
    best = None
    for _ in range(opts["n_init"]):
        res = quadratic_assignment(A, B, method="faq", options={
            "P0": "randomized", "maximize": True, "partial_match": opts["partial_match"],
            "rng": opts["rng"], "tol": opts["tol"], "maxiter": opts["maxiter"]})
        if best is None or res.fun > best.fun:
            best = res
    return best


def reference_cell(a, X, Y, k):
    """Seconds of the one 320-seed cell ``(X, Y)`` (k seeds first): SciPy FAQ (scaled to
    ``--restarts``), fastcka FAQ (timed), and each local-CKA variant's per-pair loop (scaled to
    the q^2 pairs); ``(t_scipy, t_faq_cell, t_ref_lc, q)``."""
    from fastcka.seeded import seeded_match

    t0 = time.perf_counter()
    seeded_match(X, Y, seeds=np.arange(k), queries=np.arange(k, len(X)), n_init=a.scipy_restarts,
                 rng=0, solver=scipy_solver)
    t_scipy = (time.perf_counter() - t0) / a.scipy_restarts * a.restarts
    t0 = time.perf_counter()
    seeded_match(X, Y, seeds=np.arange(k), queries=np.arange(k, len(X)), n_init=a.restarts, rng=0)
    t_faq_cell = time.perf_counter() - t0
    q = len(X) - k
    Sq, Tq, Sb, Tb = X[k:], Y[k:], X[:k], Y[:k]
    t_ref_lc = {}
    for kern, sig in (("linear", None), ("rbf", "paper"), ("rbf", "base")):
        t0 = time.perf_counter()
        for m in range(a.ref_pairs):
            reference_pair(Sq[m % q], Tq[(7 * m + 3) % q], Sb, Tb, kern, sig)
        t_ref_lc[(kern, sig)] = (time.perf_counter() - t0) / a.ref_pairs * q * q
    return t_scipy, t_faq_cell, t_ref_lc, q


def report_lines(a, tab, t_scipy, t_faq_cell, t_ref_lc, q, t_grid):
    """The lines of ``bench/results/eval.md``."""
    import scipy

    n_faq = sum(1 for r in tab if r["method"] == "faq")
    n_lc = sum(1 for r in tab if r["method"] == "local-cka") // 3
    ref_grid = n_faq * t_scipy + n_lc * sum(t_ref_lc.values())
    return [
        "# The Flickr8k evaluation grid: fastcka.evaluate vs the reference protocol", "",
        f"Run: `python bench/eval.py --restarts {a.restarts} --scipy-restarts "
        f"{a.scipy_restarts} --ref-pairs {a.ref_pairs}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        *machine_lines("cpu", f", SciPy {scipy.__version__}"), "",
        f"Grid: {len(tab)} cells = 6 seed counts x 3 draws x 2 directions x 6 method variants "
        f"(FAQ rbf {a.restarts} restarts, local CKA x3, linreg, relative), 500 queries.", "",
        "| what | seconds | how |", "|---|---|---|",
        f"| reference FAQ, one cell (320 seeds), {a.restarts} SciPy calls | {t_scipy:.1f} | "
        f"{a.scipy_restarts} calls timed, x{a.restarts / a.scipy_restarts:.0f} |",
        f"| fastcka FAQ, the same cell, {a.restarts} restarts | {t_faq_cell:.1f} | timed |",
        *[f"| reference local CKA {kk} {ss or ''}, one cell, {q}x{q} per-pair loop | "
          f"{v:.0f} | {a.ref_pairs} pairs timed, x{q * q / a.ref_pairs:.0f} |"
          for (kk, ss), v in t_ref_lc.items()],
        f"| **reference, whole grid** | **{ref_grid:.0f}** | {n_faq} FAQ cells x the FAQ cell + "
        f"{n_lc} x the three local-CKA cells (every cell priced as the 320-seed one; baselines "
        f"not counted) |",
        f"| **fastcka.evaluate, whole grid** | **{t_grid:.0f}** | timed in full |",
        f"| ratio | {ref_grid / t_grid:.0f}x | |", "",
        "The per-cell reference prices are for 320 seeds; smaller seed counts have fewer "
        "points (820 -> 510), so the reference extrapolation is an upper bound by up to "
        "(820/510)^2 for FAQ and (321/11)^3 for the local-CKA loop at 10 seeds.", ""]


def main():
    a = _args()
    import fastcka
    from fastcka.evaluate import Cell, cell_points, prepare

    E = SHARED / "embeddings"
    if not E.is_dir():
        sys.exit(f"skipped: {E} not found")
    T = np.load(E / "flickr8k_caption_minilm_l6_mean5.npy")
    Im = np.load(E / "flickr8k_image_efficientnet_lite0.npy")
    seeds = [10, 20, 40, 80, 160, 320]
    methods = "faq:rbf,local-cka,linreg,relative"
    # reference, one cell: 320 seeds, draw 0, src-to-tgt (src: captions, tgt: images)
    prep = prepare(T, Im, seeds=seeds, queries=500, draws=3)
    X, Y, k = cell_points(prep, Cell("faq", "rbf", "paper", 320, 0, "src-to-tgt"))
    t_scipy, t_faq_cell, t_ref_lc, q = reference_cell(a, X, Y, k)
    # fastcka: the whole grid, timed in full
    t0 = time.perf_counter()
    tab = fastcka.evaluate(T, Im, methods=methods, seeds=seeds, queries=500, draws=3,
                           directions="both", n_init=a.restarts)
    t_grid = time.perf_counter() - t0
    lines = report_lines(a, tab, t_scipy, t_faq_cell, t_ref_lc, q, t_grid)
    Path(a.out).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
