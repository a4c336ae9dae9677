"""Benchmark: matching many queries with a score method, dense LAP against the sparse path.

What is measured (same run, same machine, interleaved rounds):

1. n = 4,000 queries (``--quick``: 1,000), local CKA (linear kernel, the default of
   ``match --method local-cka``) on synthetic embeddings shaped like Flickr8k (text 384-d,
   image 1280-d, p = 320 seeds, a planted alignment through a shared 64-d latent plus noise):
   - the peers: SciPy ``linear_sum_assignment``, ``lapx.lapjvc`` (when installed, the
     ``bench`` extra) and fastcka's own dense JV solver (``kernels/qap_cpu.py: lap_batch``, the
     LAP of FAQ) on the dense q x q score matrix (the matrix given, so the LAP alone);
   - our dense path: ``fastcka.evaluate.match_run(assign="dense")`` end to end (scores + LAP);
   - our sparse path: ``match_run(assign="sparse", candidates=k)`` end to end for several k
     (streamed top-k both ways + ``scipy.sparse.csgraph.min_weight_full_bipartite_matching``).
   Each row: median time over the rounds, matching accuracy, the fraction of queries assigned
   as the dense LAP assigns them, and the relative gap of the total score to the dense optimum.
2. n = 20,000 (``--quick``: 4,000) with the sparse path alone, one round: the scorer's factors,
   the streamed candidates + sparse solve, the end-to-end total and the accuracy.  The dense
   path is not run there (a 3.2 GB matrix and a cubic LAP).

Usage::

    python bench/match_scale.py [--quick] [--rounds R] [--out FILE]

Writes ``bench/results/match_scale.md`` (``--quick``: ``match_scale_quick.md``).  Time on the
2-core machine at load average ~14: 3.5 minutes (``--quick``: 20-50 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import _machine
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
P_SEEDS = 320


def make_data(n: int, p: int = P_SEEDS, noise: float = 15.0, seed: int = 0):
    """Paired text (384-d) / image (1280-d) views of a 64-d latent: rows 0..p-1 the seeds."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n + p, 64))
    S = Z @ rng.standard_normal((64, 384)) + noise * rng.standard_normal((n + p, 384))
    T = (np.tanh(Z @ rng.standard_normal((64, 1280)) / 8)
         + 0.1 * noise * rng.standard_normal((n + p, 1280)))
    return S, T, np.arange(p), np.arange(p, p + n)


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def compare(n: int, ks, rounds: int) -> tuple[list[dict], dict]:
    from scipy.optimize import linear_sum_assignment

    from fastcka.evaluate import match_run
    from fastcka.retrieval import score_matrix

    S, T, seeds, queries = make_data(n)
    kw = dict(method="local-cka", kernel="linear", device="cpu")
    M = np.asarray(score_matrix("local-cka", S[queries], T[queries], S[seeds], T[seeds],
                                kernel="linear", device="cpu"))
    match_run(S[:600], T[:600], seeds, np.arange(P_SEEDS, 600), assign="sparse", **kw)  # warm-up
    runs: dict[str, list[float]] = {}
    outs: dict[str, np.ndarray] = {}
    proofs: dict[str, bool | None] = {}
    here = str(Path(__file__).resolve().parent)   # bench/lap.py would shadow lapx's `lap`
    path, sys.path[:] = sys.path[:], [p for p in sys.path if str(Path(p or ".").resolve()) != here]
    try:
        import lap  # lapx, the `bench` extra: the fastest dense LAP peer we know of
        if not hasattr(lap, "lapjvc"):
            raise ImportError("not lapx")
        peers = [("scipy", None), ("lapx", None)]
    except ImportError:
        lap, peers = None, [("scipy", None)]
        print("  lapx not installed (pip install -e '.[bench]'): its row is left out",
              file=sys.stderr)
    finally:
        sys.path[:] = path
    from fastcka.kernels.qap_cpu import lap_batch

    lap_batch(np.random.default_rng(0).random((8, 8)))          # compiled before the rounds
    peers.append(("jv", None))
    configs = [("scores", None)] + peers + [("dense", None)] + [("sparse", k) for k in ks]
    for r in range(rounds):
        order = configs if r % 2 == 0 else configs[::-1]
        for name, k in order:
            key = name if k is None else f"sparse k={k}"
            proof = None
            if name == "scores":       # the dense matrix alone: scores + a peer LAP = its path
                t, _ = _timed(lambda: score_matrix("local-cka", S[queries], T[queries], S[seeds],
                                                   T[seeds], kernel="linear", device="cpu"))
                runs.setdefault(key, []).append(t)
                continue
            if name == "scipy":
                t, (_, col) = _timed(lambda: linear_sum_assignment(M, maximize=True))
                col = queries[col]
            elif name == "jv":         # fastcka's own dense JV (kernels/qap_cpu.py, FAQ's LAP)
                t, out = _timed(lambda: lap_batch(M, maximize=True)[0])
                col = queries[np.asarray(out).reshape(-1)]
            elif name == "lapx":
                t, out = _timed(lambda: lap.lapjvc(-M))
                col = queries[np.asarray(out[2])]
            else:
                t, res = _timed(lambda name=name, k=k: match_run(
                    S, T, seeds, queries, assign=name, candidates=k, **kw))
                col, proof = res.matched, res.optimal
            runs.setdefault(key, []).append(t)
            outs[key] = col
            proofs[key] = proof
            print(f"  n={n} round {r}: {key} {t:.2f} s", file=sys.stderr, flush=True)
    ref = outs["dense"]
    best = M[np.arange(n), ref - P_SEEDS].sum()
    rows = [{"path": "scores", "seconds": statistics.median(runs.pop("scores")), "accuracy": None}]
    for key, ts in runs.items():
        col = outs[key]
        total = M[np.arange(n), col - P_SEEDS].sum()
        rows.append({"path": key, "seconds": statistics.median(ts),
                     "accuracy": float(np.mean(col == queries)),
                     "same": float(np.mean(col == ref)), "gap": float((best - total) / abs(best)),
                     "optimal": proofs[key]})
    return rows, {"n": n}


def large(n: int, k: int) -> dict:
    from fastcka._sparse_assign import sparse_assign
    from fastcka.retrieval import make_scorer

    S, T, seeds, queries = make_data(n, seed=1)
    t0 = time.perf_counter()
    sc = make_scorer("local-cka", S[queries], T[queries], S[seeds], T[seeds], kernel="linear",
                     device="cpu")
    t1 = time.perf_counter()
    res = sparse_assign(sc, k, lists=10)
    t2 = time.perf_counter()
    valid = np.array_equal(np.sort(res.col_ind), np.arange(n))
    return {"n": n, "k": k, "factors": t1 - t0, "assign": t2 - t1, "total": t2 - t0,
            "optimal": res.optimal,
            "accuracy": float(np.mean(res.col_ind == np.arange(n))), "edges": res.n_edges,
            "fallback": int(res.fallback.size), "valid": valid}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n = 1,000 / 4,000 instead of 4,000 / 20,000")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3, quick 2)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    from fastcka._progress import set_progress

    set_progress(False)
    n_cmp, n_big = (1000, 4000) if a.quick else (4000, 20000)
    rounds = a.rounds or (2 if a.quick else 3)
    ks = (10, 20, 50)
    machine = _machine.machine_lines("cpu", f", SciPy {__import__('scipy').__version__}")
    t_all = time.perf_counter()
    rows, _ = compare(n_cmp, ks, rounds)
    big = large(n_big, 20)
    load_end = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    wall = time.perf_counter() - t_all
    dense_t = next(r["seconds"] for r in rows if r["path"] == "dense")
    lines = ["# Matching at scale: dense LAP vs the sparse candidate path (local CKA, linear)", "",
             "Produced by `python bench/match_scale.py" + (" --quick" if a.quick else "") + "`.", "",
             *machine, f"- load average at the end: {load_end}; the whole script took {wall:.0f} s",
             "",
             f"## n = {n_cmp:,} queries, p = {P_SEEDS} seeds, 384-d / 1280-d ({rounds} interleaved "
             "rounds, median)", "",
             "The peers are SciPy `linear_sum_assignment`, `lapx.lapjvc` and fastcka's dense JV "
             "(`jv`, `kernels/qap_cpu.py`) on the dense score matrix (the matrix given: the LAP alone; add the first row for their end-to-end "
             "time); `dense` and `sparse` are `match_run` end to end (scores "
             "included). *same*: queries assigned as the dense LAP assigns them; *gap*: relative "
             "shortfall of the total score from the dense optimum; *certified*: the sparse "
             "path's own proof (dual potentials + the k-th scores as bounds) that its result is "
             "the dense optimum (False: not shown, not necessarily wrong).", "",
             "| path | seconds | dense / this (same run) | accuracy | same as dense | gap | "
             "certified |", "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["accuracy"] is None:
            lines.append(f"| the q x q scores alone | {r['seconds']:.2f} | | | | | |")
            continue
        cert = "" if r["optimal"] is None else str(r["optimal"])
        lines.append(f"| {r['path']} | {r['seconds']:.2f} | {dense_t / r['seconds']:.2f}x | "
                     f"{r['accuracy']:.4f} | {r['same']:.4f} | {r['gap']:.2e} | {cert} |")
    dacc = next(r["accuracy"] for r in rows if r["path"] == "dense")
    lines += ["", f"Dense accuracy {dacc:.4f}; sparse within "
              + ", ".join(f"{abs(r['accuracy'] - dacc) * 100:.2f} points (k={r['path'][9:]})"
                          for r in rows if r["path"].startswith("sparse")) + ".", "",
              f"## n = {n_big:,} queries, sparse path alone (k = {big['k']}, one run)", "",
              "| factors (s) | candidates + sparse solve + certificate (s) | total (s) | "
              "accuracy | edges | fallback rows | valid permutation | certified |",
              "|---:|---:|---:|---:|---:|---:|---|---|",
              f"| {big['factors']:.1f} | {big['assign']:.1f} | {big['total']:.1f} | "
              f"{big['accuracy']:.4f} | {big['edges']:,} | {big['fallback']} | {big['valid']} | "
              f"{big['optimal']} |",
              "", "The dense path is not run in this section (at this size: a "
              f"{n_big * n_big * 8 / 2**30:.1f} GiB score matrix and a cubic LAP).", ""]
    out = Path(a.out) if a.out else ROOT / "bench" / "results" / (
        "match_scale_quick.md" if a.quick else "match_scale.md")
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
