"""Benchmark: FAQ's restart groups on a thread pool (issue 15 item 4) against the previous code
and SciPy, on the paper workload, interleaved in one run.

The paper workload of ``bench/qap.py`` (a): Flickr8k text → image, 320 seeds + 500 queries,
centred unit-Frobenius RBF kernels (paper σ), P0="randomized", maximize, tol 1e-5, maxiter 30,
best of ``--restarts`` (500), full run including the kernels.  Each round runs, in separate
processes and in rotating order:

- ``old``: the code of ``--old`` (a git revision, default the commit before the pool), extracted
  with ``git archive`` and imported instead of the working tree;
- ``new``: the working tree (the pool of restart groups, one BLAS thread each);
- ``new, float32``: the working tree with ``dtype="float32"`` (the iterations in float32, every
  restart re-scored in float64 by the ``qap_score`` kernel): its best objective must be the
  float64 run's;
- ``new, one group at a time``: the working tree with ``fastcka.config.QAP_THREADS = 1`` (the
  restarts' groups one after another, one BLAS thread, the kernels built as in ``new``), to show
  what the pool adds;
- ``scipy``: SciPy's ``quadratic_assignment`` once per restart on ``--scipy-restarts`` restarts
  (same kernels, same Generator stream), extrapolated linearly to ``--restarts``, and the
  working tree on the same restarts (identical starts: the objectives must agree).

Every kind first runs once untimed on 2 restarts (Numba's on-disk caches compiled, the files
read once), so no timed round pays a compilation.  Medians over ``--rounds``.  The returned matching and objective must be identical between old,
new and new on one thread.  Writes ``bench/results/qap_pool.md``.  About 1.5 minutes per round
on an idle 2-core machine.

Usage: ``python bench/qap_pool.py [--rounds 3] [--restarts 500] [--old REV]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FASTCKA_SHARED_DATA", ROOT.parent / "shared" / "data"))
OLD_DEFAULT = "a36b0f5"     # main before the restart pool


def child(kind: str, restarts: int, scipy_restarts: int) -> dict:
    """One measurement in this process (``kind``: old, new, new1, scipy): a JSON-able dict."""
    if kind == "old":     # import the extracted tree on PYTHONPATH, not the editable install
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    import numpy as np

    import fastcka
    from fastcka.seeded import seeded_match

    emb = SHARED / "embeddings"
    ids = (emb / "flickr8k_ids.txt").read_text().split()
    img = np.load(emb / "flickr8k_image_efficientnet_lite0.npy")
    txt = np.load(emb / "flickr8k_caption_minilm_l6_mean5.npy")
    kw = dict(seeds=320, queries=500, kernel="rbf", sigma="paper", maxiter=30, tol=1e-5,
              ids_S=ids, ids_T=ids, device="cpu")
    seeded_match(txt, img, n_init=2, rng=0, **kw)               # warm up (JIT cache)
    out = {"kind": kind, "fastcka": str(Path(fastcka.__file__).parent)}
    if kind == "scipy":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from qap import scipy_solver

        st: dict = {}
        rs = seeded_match(txt, img, n_init=scipy_restarts, rng=0, solver=scipy_solver(st), **kw)
        ro = seeded_match(txt, img, n_init=scipy_restarts, rng=0, **kw)
        out.update(seconds=st["seconds"], objective=float(rs.objective),
                   same_objective=float(ro.objective),
                   same_match=bool(np.array_equal(rs.matched_idx, ro.matched_idx)))
        return out
    if kind == "new1":
        fastcka.config.QAP_THREADS = 1
    if kind == "new32":
        kw["dtype"] = "float32"
    t = time.perf_counter()
    r = seeded_match(txt, img, n_init=restarts, rng=0, **kw)
    out["seconds"] = time.perf_counter() - t
    out.update(objective=float(r.objective), accuracy=float(r.accuracy), nit=int(r.nit),
               match=hashlib.sha256(np.ascontiguousarray(r.matched_idx).tobytes()).hexdigest()[:16])
    return out


def run_child(kind: str, args, old_tree: str, restarts: int | None = None) -> dict:
    env = dict(os.environ)
    if kind == "old":
        env["PYTHONPATH"] = old_tree + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind,
           "--restarts", str(args.restarts if restarts is None else restarts),
           "--scipy-restarts", str(args.scipy_restarts if restarts is None else restarts)]
    p = subprocess.run(cmd, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"child {kind} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def extract(rev: str, dest: str) -> str:
    """The package of revision ``rev`` laid out for import from ``dest``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "fastcka", "kernels", "cli"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    os.rename(os.path.join(dest, "kernels"), os.path.join(dest, "fastcka", "kernels"))
    os.rename(os.path.join(dest, "cli"), os.path.join(dest, "fastcka", "cli"))
    return dest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--restarts", type=int, default=500)
    ap.add_argument("--scipy-restarts", type=int, default=20)
    ap.add_argument("--old", default=OLD_DEFAULT)
    ap.add_argument("--child", choices=["old", "new", "new32", "new1", "scipy"])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.restarts, args.scipy_restarts)))
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _machine import machine_lines

    kinds = ["old", "new", "new32", "new1", "scipy"]
    res: dict = {k: [] for k in kinds}
    loads = [os.getloadavg()]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = extract(args.old, tmp)
        for kind in kinds:     # untimed warm-up: Numba's caches compiled, files in the page cache
            run_child(kind, args, old_tree, restarts=2)
        for rnd in range(args.rounds):
            for kind in kinds[rnd % len(kinds):] + kinds[:rnd % len(kinds)]:
                r = run_child(kind, args, old_tree)
                res[kind].append(r)
                print(f"round {rnd + 1} {kind}: {r['seconds']:.2f} s, objective "
                      f"{r['objective']:.12f}", flush=True)
            loads.append(os.getloadavg())
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in res.items()}
    scipy_full = med["scipy"] / args.scipy_restarts * args.restarts
    runs = res["old"] + res["new"] + res["new1"]
    same = len({(r["objective"], r["match"], r["nit"]) for r in runs}) == 1
    same32 = {r["objective"] for r in res["new32"]} == {res["new"][0]["objective"]}
    match32 = {r["match"] for r in res["new32"]} == {res["new"][0]["match"]}
    sc = res["scipy"][0]
    ratio = [o["seconds"] / n["seconds"] for o, n in zip(res["old"], res["new"], strict=True)]
    lines = ["# FAQ restart groups on a thread pool: paper workload, old vs new vs SciPy", "",
             *machine_lines("cpu"),
             "- load average (1, 5, 15 min) at the start and after each round: "
             + "; ".join(", ".join(f"{x:.2f}" for x in la) for la in loads), "",
             f"Run: `python bench/qap_pool.py --rounds {args.rounds} --restarts {args.restarts}`, "
             f"{stamp}; old = `{args.old}`.  Each row a separate process, rounds interleaved "
             "(rotating order), median seconds of the rounds; full run of "
             "`seeded_match` including the kernels (320 seeds + 500 queries).", "",
             "| case | seconds (median) | rounds | objective | speed-up vs SciPy |",
             "|---|---:|---|---:|---:|"]
    label = {"old": f"old ({args.old}), {args.restarts} restarts",
             "new": f"new (restart pool), {args.restarts} restarts",
             "new32": f"new, dtype float32 (re-scored in float64), {args.restarts} restarts",
             "new1": f"new, QAP_THREADS = 1 (one group at a time), {args.restarts} restarts"}
    lines.append(f"| SciPy, {args.scipy_restarts} restarts (timed) | {med['scipy']:.2f} | "
                 + ", ".join(f"{r['seconds']:.2f}" for r in res["scipy"])
                 + f" | {sc['objective']:.12f} | |")
    lines.append(f"| SciPy, {args.restarts} restarts (extrapolated ×{args.restarts / args.scipy_restarts:g}) "
                 f"| {scipy_full:.1f} | | | |")
    for k in ("old", "new", "new32", "new1"):
        lines.append(f"| {label[k]} | {med[k]:.2f} | "
                     + ", ".join(f"{r['seconds']:.2f}" for r in res[k])
                     + f" | {res[k][0]['objective']:.12f} | {scipy_full / med[k]:.1f}× |")
    lines += ["", f"- new / old time, per round: {', '.join(f'{1 / x:.3f}' for x in ratio)} "
              f"(old / new: {', '.join(f'{x:.2f}' for x in ratio)}×; median "
              f"{statistics.median(ratio):.2f}×)",
              f"- old, new and new on one thread return the same matching, objective and nit "
              f"(every round): {same}",
              f"- float32's best objective is float64's (every round): {same32}; the same "
              f"matching: {match32}",
              f"- SciPy and the new code on the same {args.scipy_restarts} restarts: objective "
              f"{sc['objective']:.12f} vs {sc['same_objective']:.12f}, same matching: "
              f"{sc['same_match']}"]
    text = "\n".join(lines) + "\n"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "qap_pool.md").write_text(text)
    print(text)
    return 0 if same and same32 else 1


if __name__ == "__main__":
    sys.exit(main())
