"""``fastcka retrieve``: cross-modal retrieval and matching by local CKA or a baseline.

The two stores are paired by id; seed (known) pairs form the base sets, query pairs are
retrieved: each source query ranks every target query (and vice versa).  Reports top-1/5/10
accuracy in both directions and the accuracy of a maximising linear assignment on the scores.
"""

from __future__ import annotations

import click
import numpy as np

from ._common import check_result_path, emit_result, load_split, split_options, write_rows
from ._options import (
    device_option,
    examples,
    info,
    json_option,
    parse_sigma,
    resolve,
    seed_option,
    warn,
)

# a full q x q score matrix (needed for the assignment) is built up to this many queries;
# above it retrieval streams blocks and the matching accuracy is not computed
FULL_MATRIX_MAX_QUERIES = 5000
DIRECTIONS = ("src-to-tgt", "tgt-to-src")


@click.command("retrieve", epilog=examples(
    "fastcka retrieve txt.h5 img.h5 --seeds 320 --queries 500",
    "fastcka retrieve txt.h5 img.h5 --seed-ids seeds.txt -o ranks.jsonl"))
@click.argument("src", metavar="SRC")
@click.argument("tgt", metavar="TGT")
@split_options
@click.option("--method", type=click.Choice(["local-cka", "linreg", "relative", "cosine"]),
              default="local-cka", show_default=True, help="Scoring method.")
@click.option("--kernel", type=click.Choice(["linear", "rbf"]), default="linear",
              show_default=True, help="Local CKA kernel.")
@click.option("--sigma", default="paper", show_default=True,
              help="RBF bandwidth: 'paper' (per pair, reference code), 'base' (from the seeds), "
                   "or a number.")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True,
              help="Neighbours listed per query in -o.")
@click.option("--direction", type=click.Choice(DIRECTIONS), default="src-to-tgt",
              show_default=True,
              help="Which store holds the queries that rank the other (both directions' "
                   "accuracies are always reported).")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="Per-query rows: query_id, rank_of_true (1-based rank of the true partner "
                   "within the top k, 0 if absent), target_ids and scores (top k, best first), "
                   "matched_id (assignment). Format by suffix: .csv, .tsv, .json or .h5.")
@seed_option
@device_option
@json_option
def command(src, tgt, n_seeds, seed_ids, n_queries, query_ids, seed_strategy, method, kernel,
            sigma, k, direction, output, seed, device, json_):
    """Retrieve the partners of query pairs of SRC among those of TGT (stores paired by id).

    Default: text (SRC) ranks images (TGT); --direction tgt-to-src swaps the roles.
    """
    from fastcka.retrieval import match_scores, matching_accuracy, retrieve, score_matrix

    s = resolve(device, json_, seed)
    sigma_v = parse_sigma(sigma, ("paper", "base"))
    check_result_path(output)
    a, b, seed_idx, query_idx = load_split(
        src, tgt, direction=direction, n_seeds=n_seeds, seed_ids=seed_ids, n_queries=n_queries,
        query_ids=query_ids, seed=s.seed, seed_strategy=seed_strategy,
        min_seeds=4)
    ids = [str(x) for x in a.ids]
    Sb, Tb = a.X[seed_idx], b.X[seed_idx]
    Sq, Tq = a.X[query_idx], b.X[query_idx]
    q = int(query_idx.size)
    kmax = max(k, 10)
    info(f"{method}: {seed_idx.size} seeds, {q} queries ({a.spec} -> {b.spec})")
    match_acc = None
    if q <= FULL_MATRIX_MAX_QUERIES:
        S = score_matrix(method, Sq, Tq, Sb, Tb, kernel=kernel, sigma=sigma_v, device=s.device)
        res = retrieve(S, k=kmax, device=s.device)
        col_ind = match_scores(S)
        match_acc = matching_accuracy(col_ind)
    else:
        warn(f"{q} queries: retrieval streams score blocks; the matching accuracy (a q x q "
             f"assignment) is not computed above {FULL_MATRIX_MAX_QUERIES} queries")
        res = retrieve((Sq, Tq, Sb, Tb), k=kmax, method=method, kernel=kernel, sigma=sigma_v,
                       device=s.device)
        col_ind = None
    fwd, rev = res.accuracy["source_to_target"], res.accuracy["target_to_source"]
    result = {
        "method": method,
        "kernel": kernel if method == "local-cka" else None,
        "sigma": sigma_v if method == "local-cka" and kernel == "rbf" else None,
        "direction": direction,
        "source": a.spec,
        "target": b.spec,
        "n_seeds": int(seed_idx.size),
        "n_queries": q,
        "top1": fwd[1], "top5": fwd[5], "top10": fwd[10],
        "reverse": {"top1": rev[1], "top5": rev[5], "top10": rev[10]},
        "matching_accuracy": match_acc,
        "seed": s.seed,
        "device": s.device,
        "output": output,
    }
    if output is not None:
        qids = np.asarray(ids)[query_idx]
        rows = []
        for i in range(q):
            top = res.s2t_indices[i, :k]
            hit = np.nonzero(top == i)[0]
            row = {"query_id": qids[i],
                   "rank_of_true": int(hit[0]) + 1 if hit.size else 0,
                   "target_ids": [str(qids[j]) for j in top],
                   "scores": [float(v) for v in res.s2t_scores[i, :k]]}
            if col_ind is not None:
                row["matched_id"] = str(qids[col_ind[i]]) if col_ind[i] >= 0 else ""
            rows.append(row)
        write_rows(output, rows, meta={kk: v for kk, v in result.items() if kk != "output"})
    text = (f"{method}{'/' + kernel if method == 'local-cka' else ''}: {result['n_seeds']} seeds, "
            f"{q} queries ({direction})\n"
            f"  top-1 {fwd[1]:.3f}  top-5 {fwd[5]:.3f}  top-10 {fwd[10]:.3f}"
            f"   (reverse: {rev[1]:.3f} / {rev[5]:.3f} / {rev[10]:.3f})\n"
            f"  matching accuracy: "
            f"{'n/a' if match_acc is None else format(match_acc, '.3f')}"
            + (f"\n  wrote {output}" if output else ""))
    emit_result("retrieve", inputs={"src": src, "tgt": tgt, "seed_ids": seed_ids,
                                    "query_ids": query_ids},
                outputs={"output": output}, results=result, text=text, as_json=s.json,
                device=s.device)
