"""Scale-out benchmark: in-process against a Dask LocalCluster of 1 and 2 worker processes.

(a) the FAQ paper workload (Flickr8k reference embeddings, src-to-tgt with the captions as src,
    320 seeds + 500 queries, RBF paper sigma, 500 restarts); (b) a q = 20,000 local-CKA retrieval (synthetic
    float32 embeddings of the reference dimensions, p = 1000 base pairs, streamed top-10);
(c) the Dask path's overhead on a small job (FAQ, 8 restarts of 60 free nodes); (d) the memory
of each worker after (b) against the retrieval block budget.  The clusters are started once
(start-up timed apart); each round runs every configuration once, interleaved, and the table
quotes the median of the rounds and ratios against in-process in the same run.  Every
distributed result is checked equal to the in-process one.

    python bench/scale.py [--rounds 3] [--restarts 500] [--q 20000] [--out bench/results/scale.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_lines  # noqa: E402
from local_cka import make_data  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
    from fastcka.parallel import executor

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--restarts", type=int, default=500)
    ap.add_argument("--q", type=int, default=20000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "scale.md"))
    args = ap.parse_args(argv)

    work = _workloads(args)
    t = time.perf_counter()
    ex1 = executor("local:1")
    c1 = ex1.__enter__()
    start1 = time.perf_counter() - t
    t = time.perf_counter()
    ex2 = executor("local:2")
    c2 = ex2.__enter__()
    start2 = time.perf_counter() - t
    configs = {"in-process": None, "Dask, 1 worker": c1, "Dask, 2 workers": c2}
    times = _rounds(work, configs, args.rounds)
    mem = {name: c.client.run(_rss_mib) for name, c in (("1", c1), ("2", c2))}
    ex2.__exit__(None, None, None)
    ex1.__exit__(None, None, None)
    lines = _table(args, work, times, mem, start1, start2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _workloads(args) -> dict:
    """The inputs and keyword arguments of the three units (a), (b), (c)."""
    emb = SHARED / "embeddings"
    ids = (emb / "flickr8k_ids.txt").read_text().split()
    img = np.load(emb / "flickr8k_image_efficientnet_lite0.npy")
    txt = np.load(emb / "flickr8k_caption_minilm_l6_mean5.npy")
    faq_kw = dict(seeds=320, queries=500, kernel="rbf", sigma="paper", maxiter=30, tol=1e-5,
                  ids_S=ids, ids_T=ids, device="cpu", n_init=args.restarts, rng=0)
    Sq, Tq, Sb, Tb = make_data(args.q, 1000)
    ret_kw = dict(k=10, method="local-cka", kernel="linear", device="cpu")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(70, 6))
    A = X @ X.T
    Y = X[rng.permutation(70)] + 0.1 * rng.normal(size=(70, 6))
    B = Y @ Y.T
    small = {"P0": "randomized", "maximize": True, "n_init": 8, "batch_size": 4,
             "partial_match": np.stack([np.arange(10)] * 2, axis=1)}
    return {"txt": txt, "img": img, "faq_kw": faq_kw, "ret": (Sq, Tq, Sb, Tb),
            "ret_kw": ret_kw, "A": A, "B": B, "small": small}


def _rounds(w: dict, configs: dict, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Warm every configuration up, then time each unit once per configuration per round
    (interleaved), checking every result equal to the first (in-process) one."""
    from fastcka.qap import quadratic_assignment
    from fastcka.retrieval import retrieve
    from fastcka.seeded import seeded_match

    txt, img, faq_kw, ret_kw, (Sq, Tq, Sb, Tb) = w["txt"], w["img"], w["faq_kw"], w["ret_kw"], w["ret"]
    A, B, small = w["A"], w["B"], w["small"]
    # warm-ups: JIT compilation in this process and in every worker
    for sched in configs.values():
        seeded_match(txt, img, **{**faq_kw, "n_init": 4}, scheduler=sched)
        retrieve((Sq[:3000], Tq[:3000], Sb, Tb), **ret_kw, scheduler=sched)
        quadratic_assignment(A, B, options={**small, "rng": np.random.default_rng(1),
                                            "scheduler": sched})

    times: dict[str, dict[str, list[float]]] = {u: {c: [] for c in configs}
                                                for u in ("faq", "ret", "small")}
    ref = {}
    for r in range(rounds):
        for name, sched in configs.items():
            t = time.perf_counter()
            res = seeded_match(txt, img, **faq_kw, scheduler=sched)
            times["faq"][name].append(time.perf_counter() - t)
            t = time.perf_counter()
            rr = retrieve((Sq, Tq, Sb, Tb), **ret_kw, scheduler=sched)
            times["ret"][name].append(time.perf_counter() - t)
            ts = []
            for _ in range(5):
                t = time.perf_counter()
                sm = quadratic_assignment(A, B, options={**small, "scheduler": sched,
                                                         "rng": np.random.default_rng(1)})
                ts.append(time.perf_counter() - t)
            times["small"][name].append(min(ts))
            got = (res.objective, res.matched_idx.tobytes(), rr.src_to_tgt_indices.tobytes(),
                   rr.tgt_to_src_indices.tobytes(), sm.fun, sm.col_ind.tobytes())
            ref.setdefault("v", got)
            assert got == ref["v"], f"{name} differs from in-process (round {r})"
            print(f"round {r} {name}: faq {times['faq'][name][-1]:.2f}s "
                  f"retrieve {times['ret'][name][-1]:.2f}s small {ts[-1] * 1e3:.1f}ms",
                  flush=True)
    return times


def _table(args, w: dict, times: dict, mem: dict, start1: float, start2: float) -> list[str]:
    """The markdown table and notes of the run."""
    from fastcka.retrieval import _BLOCK

    Sq, Tq, Sb, Tb = w["ret"]
    med = {u: {c: statistics.median(v) for c, v in d.items()} for u, d in times.items()}
    block_mib = _BLOCK * args.q * 8 / 2**20
    lines = ["# Scale-out: in-process against a Dask LocalCluster", ""]
    lines += machine_lines("cpu", f", dask {__import__('distributed').__version__}")
    lines += ["", f"{args.rounds} rounds, each configuration once per round (interleaved); "
              "medians; ratios = in-process time / configuration time in the same run "
              "(> 1: faster than in-process).  Cluster start-up (not in the times): "
              f"{start1:.1f} s for 1 worker, {start2:.1f} s for 2.  Every distributed result "
              "was checked identical to the in-process one (objective, matching, top-k lists).",
              "", "Workers are single-threaded processes (`local:N` gives each "
              "cpu_count/N BLAS and Numba threads); the in-process run uses every core.", "",
              "| unit | in-process (s) | Dask, 1 worker (s) | ratio | Dask, 2 workers (s) | ratio |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    labels = {"faq": f"(a) FAQ paper workload, {args.restarts} restarts",
              "ret": f"(b) local-CKA retrieval, q = {args.q:,}, p = 1000, top-10 both ways",
              "small": "(c) small job: FAQ 8 restarts, 60 free nodes (best of 5)"}
    for u, lab in labels.items():
        m = med[u]
        base = m["in-process"]
        lines.append(f"| {lab} | {base:.3f} | {m['Dask, 1 worker']:.3f} | "
                     f"{base / m['Dask, 1 worker']:.2f} | {m['Dask, 2 workers']:.3f} | "
                     f"{base / m['Dask, 2 workers']:.2f} |")
    lines += ["", f"(c) Dask overhead on the small job: "
              f"{(med['small']['Dask, 2 workers'] - med['small']['in-process']) * 1e3:.0f} ms "
              f"with 2 workers, "
              f"{(med['small']['Dask, 1 worker'] - med['small']['in-process']) * 1e3:.0f} ms "
              f"with 1 (scatter of the inputs + one round trip per task).", "",
              "(d) Peak resident memory per worker after (b): "
              + ", ".join(f"{v:.0f} MiB" for v in mem["2"].values()) + " (2 workers), "
              + ", ".join(f"{v:.0f} MiB" for v in mem["1"].values()) + " (1 worker); "
              f"one retrieval block of {_BLOCK} queries x {args.q:,} targets is "
              f"{block_mib:.0f} MiB of float64 scores, besides the scattered inputs "
              f"({(Sq.nbytes + Tq.nbytes + Sb.nbytes + Tb.nbytes) / 2**20:.0f} MiB) and the "
              f"scorer's factors.", ""]
    for u in labels:
        lines.append(f"- raw {u}: " + "; ".join(
            f"{c}: " + ", ".join(f"{x:.3f}" for x in v) for c, v in times[u].items()))
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
