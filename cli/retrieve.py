"""``fastcka retrieve``: cross-modal retrieval and matching by local CKA or a baseline.

The two stores are paired by id; seed (known) pairs form the base sets, query pairs are
retrieved: each source query ranks every target query (and vice versa).  Reports top-1/5/10
accuracy in both directions and the accuracy of a maximising linear assignment on the scores.
"""

from __future__ import annotations

import click
import numpy as np

from fastcka._io import check_outputs
from fastcka.parallel import parse_scheduler
from fastcka.protocol import DIRECTIONS

from ._common import (
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
    warn,
    write_rows,
)
from ._shard import fingerprint, parse_shard, shard_option, shard_range, write_partial

# a full q x q score matrix (needed for the assignment) is built up to this many queries;
# above it retrieval streams blocks and the matching accuracy is not computed
FULL_MATRIX_MAX_QUERIES = 5000


@click.command("retrieve", epilog=examples(
    "fastcka retrieve txt.h5 img.h5 --seeds 320 --queries 500",
    "fastcka retrieve txt.h5 img.h5 --seed-ids seeds.txt -o ranks.csv",
    "fastcka retrieve txt.h5 img.h5 -o - --format jsonl > ranks.jsonl"))
@click.argument("src", metavar="SRC")
@click.argument("tgt", metavar="TGT")
@split_options
@click.option("--method", type=click.Choice(["local-cka", "linreg", "relative", "cosine"]),
              default="local-cka", show_default=True, help="Scoring method.")
@click.option("--kernel", type=click.Choice(["linear", "rbf"]), default="linear",
              show_default=True,
              help="Local CKA kernel (linear, as match --method local-cka; FAQ in match "
                   "defaults to rbf, the paper's QAP protocol).")
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
                   "within the top k, 0 if absent), matched_id (assignment), target_ids and "
                   "scores (top k, best first; in .csv/.tsv one line per rank: rank, target_id, "
                   "score). Format by suffix (.csv, .tsv, .json, .jsonl, .h5) or --format; "
                   "'-' = stdout.")
@click.option("--block", type=click.IntRange(min=1), default=None,
              help="Queries per block: the streaming tile and the unit of --shard and "
                   "--scheduler (default 2048).")
@shard_option
@seed_option
@device_option
@json_option
def command(src, tgt, n_seeds, seed_ids, n_queries, query_ids, seed_strategy, method, kernel,
            sigma, k, direction, output, block, shard, seed, device, json_):
    """Retrieve the partners of query pairs of SRC among those of TGT (stores paired by id).

    Default: text (SRC) ranks images (TGT); --direction tgt-to-src swaps the roles.
    """
    from fastcka.evaluate import query_scores
    from fastcka.retrieval import _BLOCK, retrieve, row_blocks, rows_units

    s = resolve(device, json_, seed)
    sigma_v = parse_sigma(sigma, ("paper", "base"))
    part = parse_shard(shard)
    block = block or _BLOCK
    if part is not None and output is None:
        raise click.UsageError("--shard needs -o PART.h5 (the partial output to merge)")
    if part is None:
        check_result_path(output)
    check_outputs({"-o": output}, [src, tgt, seed_ids, query_ids])
    a, b, seed_idx, query_idx = load_split(
        src, tgt, direction=direction, n_seeds=n_seeds, seed_ids=seed_ids, n_queries=n_queries,
        query_ids=query_ids, seed=s.seed, seed_strategy=seed_strategy,
        min_seeds=4)
    ids = [str(x) for x in a.ids]
    Sb, Tb = a.X[seed_idx], b.X[seed_idx]
    Sq, Tq = a.X[query_idx], b.X[query_idx]
    q = int(query_idx.size)
    kmax = max(k, 10)
    qids = np.asarray(ids)[query_idx]
    info(f"{method}: {seed_idx.size} seeds, {q} queries ({a.spec} -> {b.spec})")
    full = q <= FULL_MATRIX_MAX_QUERIES
    if not full:
        warn(f"{q} queries: retrieval streams score blocks; the matching accuracy (a q x q "
             f"assignment) is not computed above {FULL_MATRIX_MAX_QUERIES} queries")
    base = {
        "method": method,
        "kernel": kernel if method == "local-cka" else None,
        "sigma": sigma_v if method == "local-cka" and kernel == "rbf" else None,
        "direction": direction,
        "source": a.spec,
        "target": b.spec,
        "n_seeds": int(seed_idx.size),
        "n_queries": q,
    }
    ctx = {"base": base, "k": k, "seed": s.seed, "device": s.device, "full": full,
           "block": block,
           "inputs": {"src": src, "tgt": tgt, "seed_ids": seed_ids, "query_ids": query_ids}}
    distributed = parse_scheduler(s.scheduler)[0] != "none"
    if part is None and not distributed:        # in-process: the library's own calls
        if full:
            S = query_scores(method, Sq, Tq, Sb, Tb, kernel=kernel, sigma=sigma_v,
                             device=s.device, block=block)
            return finish(ctx, qids, {"scores": S}, output, s.json)
        res = retrieve((Sq, Tq, Sb, Tb), k=kmax, method=method, kernel=kernel, sigma=sigma_v,
                       device=s.device, block=block)
        return finish(ctx, qids, {"result": res}, output, s.json)
    ranges = row_blocks(q, block)
    if part is not None:
        ranges = shard_range(ranges, part)
    with scheduler_context(s) as ex:
        pieces = rows_units("scores" if full else "topk", method, Sq, Tq, Sb, Tb, ranges,
                            kernel=kernel, sigma=sigma_v, device="cpu" if distributed else
                            s.device, k=kmax, block=block, scheduler=ex)
    if full:
        data = {"scores": (np.concatenate(pieces, axis=0) if pieces
                           else np.empty((0, q)))}
    else:
        data = _topk_data(pieces, q, kmax)
    if part is None:
        if not full:
            data = {"result": _topk_result(data)}
        return finish(ctx, qids, data, output, s.json)
    rows = _shard_rows(row_blocks(q, block), part, q)
    data["query_ids"] = qids
    write_partial(output, "retrieve", ctx, fingerprint(Sq, Tq, Sb, Tb, qids), part, rows, data)
    emit_result("retrieve", inputs=ctx["inputs"], outputs={"partial": output},
                results={**base, "shard": part[0], "n_shards": part[1], "rows": list(rows)},
                text=f"shard {part[0]}/{part[1]}: query rows {rows[0]}..{rows[1]} -> {output}",
                as_json=s.json, device=s.device)


def _shard_rows(blocks: list, part: tuple[int, int], q: int) -> tuple[int, int]:
    """The query rows (r0, r1) of a shard; an empty shard sits where its blocks would start."""
    mine = shard_range(blocks, part)
    if mine:
        return mine[0][0], mine[-1][1]
    start = part[0] * len(blocks) // part[1]
    r = blocks[start][0] if start < len(blocks) else q
    return r, r


def _topk_data(pieces: list[dict], q: int, kmax: int) -> dict:
    """The top-k parts of one shard (or of all shards) as arrays: src-to-tgt rows,
    tgt-to-src candidates."""
    from fastcka.retrieval import merge_topk_parts

    if not pieces:
        kk = min(kmax, q)
        return {"src_to_tgt_scores": np.empty((0, kk)),
                "src_to_tgt_indices": np.empty((0, kk), np.int64),
                "tgt_to_src_scores": np.full((q, kk), -np.inf),
                "tgt_to_src_indices": np.full((q, kk), -1, np.int64)}
    return merge_topk_parts(pieces)


def _topk_result(data: dict):
    """A RetrievalResult-like object of merged top-k arrays (accuracies filled by finish)."""
    from types import SimpleNamespace

    from fastcka.retrieval import TOPK_KEYS

    return SimpleNamespace(**{k: data[k] for k in TOPK_KEYS})


def finish(ctx: dict, qids, data: dict, output, as_json: bool) -> None:
    """Accuracies, the assignment, -o rows and the printed result of a (merged) retrieval.

    ``data``: ``{"scores": S}`` (the full q x q matrix) or ``{"result": top-k lists}``.
    """
    from fastcka.evaluate import rank_queries
    from fastcka.retrieval import DEFAULT_KS, topk_accuracy

    k, base = ctx["k"], ctx["base"]
    col_ind = match_acc = None
    if "scores" in data:
        res, col_ind, match_acc = rank_queries(data["scores"], k=k, device=ctx["device"])
        acc = res.accuracy
    else:
        res = data["result"]
        acc = getattr(res, "accuracy", None) or {
            "src-to-tgt": topk_accuracy(res.src_to_tgt_indices, DEFAULT_KS),
            "tgt-to-src": topk_accuracy(res.tgt_to_src_indices, DEFAULT_KS)}
    fwd, rev = acc["src-to-tgt"], acc["tgt-to-src"]
    method, direction, q = base["method"], base["direction"], base["n_queries"]
    kernel = base["kernel"]
    result = {
        **base,
        "top1": fwd[1], "top5": fwd[5], "top10": fwd[10],
        "reverse": {"top1": rev[1], "top5": rev[5], "top10": rev[10]},
        "matching_accuracy": match_acc,
        "seed": ctx["seed"],
        "device": ctx["device"],
        "output": output,
    }
    if output is not None:
        rows = []
        for i in range(q):
            top = res.src_to_tgt_indices[i, :k]
            hit = np.nonzero(top == i)[0]
            row = {"query_id": qids[i],
                   "rank_of_true": int(hit[0]) + 1 if hit.size else 0,
                   "target_ids": [str(qids[j]) for j in top],
                   "scores": [float(v) for v in res.src_to_tgt_scores[i, :k]]}
            if col_ind is not None:
                row["matched_id"] = str(qids[col_ind[i]]) if col_ind[i] >= 0 else ""
            rows.append(row)
        write_rows(output, rows, meta={kk: v for kk, v in result.items() if kk != "output"},
                   long={"target_ids": "target_id", "scores": "score"})
    text = (f"{method}{'/' + kernel if method == 'local-cka' else ''}: {result['n_seeds']} seeds, "
            f"{q} queries ({direction})\n"
            f"  top-1 {fwd[1]:.3f}  top-5 {fwd[5]:.3f}  top-10 {fwd[10]:.3f}"
            f"   (reverse: {rev[1]:.3f} / {rev[5]:.3f} / {rev[10]:.3f})\n"
            f"  matching accuracy: "
            f"{'n/a' if match_acc is None else format(match_acc, '.3f')}"
            + (f"\n  wrote {'the table to stdout' if output == '-' else output}"
               if output else ""))
    emit_result("retrieve", inputs=ctx["inputs"], outputs={"output": output}, results=result,
                text=text, as_json=as_json, device=ctx["device"])


def merge(heads: list[dict], output: str | None, as_json: bool) -> None:
    """``fastcka merge`` of retrieve shards: the unsharded run's result and -o file."""
    from fastcka.retrieval import FORMER_KEYS, TOPK_KEYS, merge_topk_parts

    from ._shard import read_data

    ctx = heads[0]["settings"]
    parts = [read_data(h["path"]) for h in heads]
    qids = parts[0]["query_ids"]
    if ctx["full"]:
        data = {"scores": np.concatenate([p["scores"] for p in parts], axis=0)}
    else:
        former = {new: old for old, new in FORMER_KEYS.items()}   # shards of older versions
        data = {"result": _topk_result(merge_topk_parts(
            [{k: p[k] if k in p else p[former[k]] for k in TOPK_KEYS} for p in parts]))}
    finish(ctx, qids, data, output, as_json)

