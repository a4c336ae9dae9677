"""Classification by matching on the Fashion-MNIST subset of ../shared/data (`make experiments`).

Embeds the 1000 images with efficientnet-lite0 once (labels travel into the store), then runs
``fastcka classify`` with 50 labelled seeds (5 per class) and MiniLM prompts "a photo of a {}."
for the seed draws 0, 1, 2, arg-max and ``--balanced``; every method of the same run, the
nearest-labelled-seed reference (``knn``) included.  Writes the confusion matrices of draw 0
(CSV + PNG) and ``classify.md`` (mean ± std over the draws) into the output folder.

    python bench/classify_fmnist.py [--out docs/results/classify] [--store build/...h5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "fashion-mnist"
FASTCKA = [sys.executable, "-m", "fastcka"]
METHODS = "local-cka,linreg,relative,knn"


def sh(*args: str) -> str:
    r = subprocess.run([*FASTCKA, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stderr.strip() or f"fastcka {' '.join(args)} failed ({r.returncode})")
    return r.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "classify"))
    ap.add_argument("--store", default=str(ROOT / "build" / "experiments" / "fmnist.h5"))
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--draws", type=int, default=3)
    a = ap.parse_args()
    if not (DATA / "test1000_images.npy").exists():
        sys.exit(f"fastcka: error: {DATA} not found")
    store = Path(a.store)
    store.parent.mkdir(parents=True, exist_ok=True)
    if not store.exists():
        sh("-q", "embed", "image", str(DATA / "test1000_images.npy"), "-o", str(store))
    base = ["--json", "classify", str(store), "--classes", str(DATA / "classes.txt"),
            "--seeds", str(a.seeds), "--methods", METHODS]
    runs: dict[tuple[bool, int], dict] = {}
    for balanced in (False, True):
        for d in range(a.draws):
            extra = ["--balanced"] if balanced else []
            if d == 0 and not balanced:
                extra += ["-o", a.out]
            runs[balanced, d] = json.loads(sh(*base, "--seed", str(d), *extra))
    first = runs[False, 0]
    names = [m["name"] for m in first["methods"]]

    def stat(balanced: bool, key: str, name: str) -> str:
        v = np.array([next(m[key] for m in runs[balanced, d]["methods"] if m["name"] == name)
                      for d in range(a.draws)])
        return f"{v.mean():.3f} ± {v.std():.3f}"

    lines = [f"Fashion-MNIST subset ({first['n_queries'] + first['n_seeds']} images, "
             f"{len(first['classes'])} classes), {first['n_seeds']} labelled seeds balanced "
             f"over classes, {first['n_queries']} images classified; images efficientnet-lite0, "
             f"prompts MiniLM (\"a photo of a {{}}.\"); mean ± std over the seed draws "
             f"0..{a.draws - 1}; chance {first['chance']:.3f}.", "",
             "| method | top-1 | top-5 | top-1 with `--balanced` |", "|---|---|---|---|"]
    for n in names:
        lines.append(f"| {n} | {stat(False, 'top1', n)} | {stat(False, 'top5', n)} | "
                     f"{stat(True, 'accuracy', n)} |")
    per = first["methods"][0]["per_class"]
    lines += ["", f"Per-class top-1 of {names[0]} (draw 0): "
              + ", ".join(f"{k} {v:.2f}" for k, v in per.items()), ""]
    text = "\n".join(lines)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "classify.md").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
