"""bench/experiments_summary.py: the page's summary blocks are rebuilt from the tables' rows."""

import importlib.util
import math
from pathlib import Path

import pytest

from fastcka._eval_table import EvalTable

ROOT = Path(__file__).resolve().parents[1]


def _summary_module():
    spec = importlib.util.spec_from_file_location("experiments_summary",
                                                  ROOT / "bench" / "experiments_summary.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(method, n_seeds, draw, direction, acc, n_init):
    rbf = method == "faq"
    return dict(method=method, kernel="rbf" if rbf else "", sigma="paper" if rbf else "",
                n_seeds=n_seeds, draw=draw, direction=direction, accuracy=acc, top1=math.nan,
                top5=math.nan, top10=math.nan, objective=math.nan, seed_cka=0.5,
                seed_cka_linear=0.4, n_queries=50, n_init=n_init if rbf else 0, seconds=1.0)


@pytest.fixture
def results(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    rows = [_row(m, k, d, "src-to-tgt", acc, 7) for m in ("faq", "linreg") for k in (10, 40)
            for d, acc in ((0, 0.25), (1, 0.75))]
    EvalTable(rows).write(str(res / "xtd10_a.csv"))
    EvalTable([_row("faq", 20, 0, "tgt-to-src", 0.5, 3)]).write(str(res / "multi30k_b.csv"))
    return res


def test_blocks_between_markers_are_replaced_and_the_rest_kept(results):
    page = results.parent / "results.md"
    page.write_text("# head\nkept A\n<!-- BEGIN summary:settings -->\nstale\n"
                    "<!-- END summary:settings -->\nkept B\n<!-- BEGIN summary:xtd10 -->\nold table\n"
                    "<!-- END summary:xtd10 -->\nkept C\n", encoding="utf-8")
    assert _summary_module().main(["x", str(results)]) == 0
    text = page.read_text(encoding="utf-8")
    assert "stale" not in text and "old table" not in text
    for kept in ("# head", "kept A", "kept B", "kept C"):
        assert kept in text
    lines = text.splitlines()
    xtd = next(ln for ln in lines if ln.startswith("| [`xtd10_a.csv`]"))
    # what the rows hold: two methods, seeds 10 and 40, two draws, one direction, 7 restarts
    assert xtd.split(" | ")[1:] == ["faq rbf σ=paper, linreg", "10, 40", "2", "src-to-tgt", "7", "8 |"]
    m30 = next(ln for ln in lines if ln.startswith("| [`multi30k_b.csv`]"))
    assert m30.split(" | ")[2:] == ["20", "1", "tgt-to-src", "3", "1 |"]
    # the family block: mean ± std over the two draws (0.25, 0.75) -> 0.500 ± 0.250
    assert "| a | faq rbf σ=paper | 0.500 ± 0.250 | 0.500 ± 0.250 |" in lines
    assert (results / "xtd10.md").is_file() and (results / "xtd10.png").is_file()


def test_a_page_without_markers_is_unchanged(results):
    page = results.parent / "results.md"
    page.write_text("no markers here\n", encoding="utf-8")
    _summary_module().main(["x", str(results)])
    assert page.read_text(encoding="utf-8") == "no markers here\n"
