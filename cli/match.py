"""``fastcka match``: recover the pairing of query pairs between two stores.

The stores are paired by id (ground truth = id equality).  Seed pairs are revealed to the
matcher; every source query is matched to one target query:

- ``--method faq`` (default): the paper's seeded graph matching (kernels over seeds + queries,
  FAQ with ``--n-init`` random restarts, best objective kept; see ``fastcka.seeded_match``);
- ``--method local-cka|linreg|relative|cosine``: a score matrix from ``fastcka.retrieval`` and a
  maximising linear assignment on it.
"""

from __future__ import annotations

import contextlib
import time

import click

from fastcka._io import check_outputs
from fastcka.protocol import DIRECTIONS, FAQ_MAXITER, FAQ_TOL, N_RESTARTS

from ._common import (
    PositiveFloat,
    assign_options,
    check_result_path,
    device_option,
    emit_result,
    examples,
    info,
    json_option,
    load_split,
    parse_sigma,
    resolve,
    scheduler_context,
    seed_option,
    split_options,
    write_rows,
)

METHODS = ("faq", "local-cka", "linreg", "relative", "cosine")
# --kernel by method when not given (see its --help); retrieve's default is linear too
DEFAULT_KERNEL = {"faq": "rbf", "local-cka": "linear"}


@click.command("match", epilog=examples(
    "fastcka match txt.h5 img.h5 --seeds 320 --queries 500 --n-init 500",
    "fastcka match txt.h5 img.h5 --method local-cka -o matches.csv",
    "fastcka match txt.h5 img.h5 --seed-ids - -o - --format csv < seeds.txt | head"))
@click.argument("src", metavar="SRC")
@click.argument("tgt", metavar="TGT")
@split_options
@click.option("--method", type=click.Choice(METHODS), default="faq", show_default=True,
              help="faq: seeded graph matching (QAP); others: score matrix + linear assignment.")
@click.option("--kernel", type=click.Choice(["rbf", "linear"]), default=None,
              help="Kernel of the QAP (faq) or of local CKA.  Default: rbf for faq (the paper's "
                   "QAP protocol: RBF kernels, paper bandwidth), linear for local-cka (the same "
                   "default as retrieve, eval and fastcka.local_cka, so match --method local-cka "
                   "gives retrieve's matching accuracy).")
@click.option("--sigma", default="paper", show_default=True,
              help="RBF bandwidth: 'paper', 'kornblith' (faq), 'base' (local-cka) or a number.")
@click.option("--n-init", type=click.IntRange(min=1), default=N_RESTARTS, show_default=True,
              help="FAQ random restarts (run as one batch); the best objective is kept.")
@click.option("--maxiter", type=click.IntRange(min=1), default=FAQ_MAXITER, show_default=True,
              help="FAQ Frank-Wolfe iterations per restart.")
@click.option("--tol", type=PositiveFloat(), default=FAQ_TOL,
              show_default=True, help="FAQ stopping tolerance.")
@click.option("--lap", type=click.Choice(["auto", "scipy", "jv", "auction"]), default="auto",
              show_default=True,
              help="FAQ's linear assignment solver: SciPy's, our warm-started exact solver, or "
                   "(GPU only) that solver warm-started by a row-parallel auction; all exact.")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64",
              show_default=True,
              help="FAQ's arithmetic: float32 runs the GEMMs ~2x faster; every restart is "
                   "re-scored in float64 before the best is kept.")
@click.option("--direction", type=click.Choice(DIRECTIONS), default="src-to-tgt",
              show_default=True, help="Which store holds the source queries.")
@click.option("--stretch", is_flag=True, default=False,
              help="Divide every feature by its standard deviation first (faq).")
@assign_options
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="Per query: source id, matched target id, score (.csv, .tsv, .json, .jsonl "
                   "or .h5, or --format; '-' = stdout).")
@seed_option
@device_option
@json_option
def command(src, tgt, n_seeds, seed_ids, n_queries, query_ids, seed_strategy, method, kernel,
            sigma, n_init, maxiter, tol, lap, dtype, direction, stretch, assign, candidates, output,
            seed, device, json_):
    """Match the query pairs of SRC to those of TGT given seed pairs (stores paired by id).

    Default: SRC (e.g. captions) is the source; --direction tgt-to-src swaps the roles.
    """
    t0 = time.perf_counter()
    s = resolve(device, json_, seed)
    kernel = kernel or DEFAULT_KERNEL.get(method, "linear")
    sigma_v = parse_sigma(sigma, ("paper", "kornblith", "base"))
    if method == "faq" and sigma_v == "base":
        raise click.BadParameter("'base' is a local-cka bandwidth; use 'paper', 'kornblith' or a "
                                 "number with --method faq", param_hint="'--sigma'")
    if method == "faq" and (assign == "sparse" or candidates is not None):
        raise click.BadParameter("--assign sparse and --candidates apply to the score methods "
                                 "(local-cka, linreg, relative, cosine), not faq",
                                 param_hint="'--assign'")
    check_result_path(output)
    check_outputs({"-o": output}, [src, tgt, seed_ids, query_ids])
    a, b, seed_idx, query_idx = load_split(
        src, tgt, direction=direction, n_seeds=n_seeds, seed_ids=seed_ids, n_queries=n_queries,
        query_ids=query_ids, seed=s.seed, seed_strategy=seed_strategy,
        min_seeds=1 if method == "faq" else 4)
    ids = [str(x) for x in a.ids]
    q = int(query_idx.size)
    info(f"{method}: {seed_idx.size} seeds, {q} queries ({a.spec} -> {b.spec})")
    from fastcka.evaluate import match_run

    # only FAQ's restarts are distributed: a score method never starts a cluster
    with scheduler_context(s) if method == "faq" else contextlib.nullcontext() as ex:
        res = match_run(a.X, b.X, seed_idx, query_idx, method=method, kernel=kernel,
                        sigma=sigma_v, n_init=n_init, maxiter=maxiter, tol=tol, stretch=stretch,
                        rng=s.seed, device=s.device, lap=lap, scheduler=ex, assign=assign,
                        candidates=candidates, dtype=dtype)
    matched, scores, objective, all_obj = res.matched, res.scores, res.objective, res.all_objectives
    accuracy = res.accuracy
    seconds = time.perf_counter() - t0
    result = {
        "method": method,
        "kernel": kernel if method in ("faq", "local-cka") else None,
        "sigma": sigma_v if kernel == "rbf" and method in ("faq", "local-cka") else None,
        "direction": direction,
        "source": a.spec,
        "target": b.spec,
        "n_seeds": int(seed_idx.size),
        "n_queries": q,
        "accuracy": accuracy,
        "objective": objective,
        "objective_spread": None if all_obj is None else [float(all_obj.min()), float(all_obj.max())],
        "n_init": n_init if method == "faq" else None,
        "assign": None if method == "faq" else assign,
        "candidates": res.candidates,
        "optimal": res.optimal,
        "seed": s.seed,
        "device": s.device,
        "seconds": seconds,
        "output": output,
    }
    if output is not None:
        rows = [{"source_id": ids[query_idx[i]],
                 "matched_id": ids[matched[i]] if matched[i] >= 0 else "",
                 "score": float(scores[i]),
                 "correct": bool(matched[i] == query_idx[i])} for i in range(q)]
        write_rows(output, rows, meta={k: v for k, v in result.items() if k != "output"})
    text = (f"{method}: {result['n_seeds']} seeds, {q} queries ({direction})\n"
            f"  accuracy {accuracy:.3f}"
            + (f"  objective {objective:.6f} (best of {n_init})" if objective is not None else "")
            + f"  [{seconds:.2f} s]"
            + (f"\n  wrote {'the table to stdout' if output == '-' else output}"
               if output else ""))
    emit_result("match", inputs={"src": src, "tgt": tgt, "seed_ids": seed_ids,
                                 "query_ids": query_ids},
                outputs={"output": output}, results=result, text=text, as_json=s.json,
                device=s.device, seconds=seconds)

