"""``fastcka cka A B [C ...]``: CKA (or mutual k-NN / CKNNA) between embedding stores.

Rows are paired by id (the ids common to all stores, with a warning giving the rows each store
loses; fewer than 4 common ids is an error).  Two stores print one value; three or more print
the pairwise matrix (a table; ``-o`` writes it, ``--plot`` draws it as a labelled heatmap).
"""

from __future__ import annotations

import math
from pathlib import Path

import click
import numpy as np

from fastcka._io import check_outputs
from fastcka.parallel import parse_scheduler
from fastcka.plots import PLOT_FORMATS

from ._common import (
    check_result_path,
    device_option,
    emit_result,
    examples,
    json_option,
    load_many,
    parse_sigma,
    resolve,
    scheduler_context,
    seed_option,
    write_rows,
)
from ._shard import fingerprint, parse_shard, shard_option, shard_range, write_partial

METRICS = ("cka", "mutual_knn", "cknna")


def _label(spec: str) -> str:
    path, _, group = spec.partition("::")
    stem = Path(path).stem
    return f"{stem}::{group.strip('/')}" if group.strip("/") else stem


def _plot_format(path: str | None, fmt: str | None, hint: str = "'--plot'") -> str | None:
    """The format of a plot file: ``--plot-format``, else the file's suffix; a suffix naming
    another plot format than ``--plot-format`` is refused, as is a missing folder."""
    if path is None:
        return None
    p = Path(path)
    suffix = p.suffix.lower().lstrip(".")
    if fmt is None and suffix not in PLOT_FORMATS:
        raise click.BadParameter("the plot file must end in .png, .pdf or .svg (or give "
                                 "--plot-format)", param_hint=hint)
    if fmt is not None and suffix in PLOT_FORMATS and suffix != fmt.lower():
        raise click.BadParameter(f"the file ends in .{suffix} but --plot-format is {fmt}",
                                 param_hint=hint)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise click.BadParameter(f"folder does not exist: {parent}", param_hint=hint)
    return (fmt or suffix).lower()


@click.command("cka", epilog=examples(
    "fastcka cka img.h5 txt.h5 --kernel rbf --permutations 1000",
    "fastcka cka a.h5 b.h5 c.h5 -o cka.csv --plot cka.pdf",
    "fastcka cka a.h5 b.h5 c.h5 --shard 0/4 -o part0.h5"))
@click.argument("stores", nargs=-1, required=True, metavar="A B [C ...]")
@click.option("--metric", type=click.Choice(METRICS), default="cka", show_default=True,
              help="Alignment metric.")
@click.option("--kernel", type=click.Choice(["linear", "rbf"]), default="linear",
              show_default=True, help="CKA kernel.")
@click.option("--sigma", default="paper", show_default=True,
              help="RBF bandwidth: 'paper' (lower median of non-zero squared distances), "
                   "'kornblith' (threshold x median of all), or a number.")
@click.option("--threshold", type=float, default=1.0, show_default=True,
              help="Multiplier of the 'kornblith' bandwidth.")
@click.option("--estimator", type=click.Choice(["biased", "unbiased"]), default="biased",
              show_default=True, help="HSIC estimator ('unbiased': debiased CKA, n >= 4).")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True,
              help="Neighbours for mutual_knn and cknna.")
@click.option("--permutations", type=click.IntRange(min=1), default=None,
              help="Permutation test with N permutations (two stores, --metric cka).")
@click.option("--plot", default=None, type=click.Path(dir_okay=False),
              help="Draw the pairwise matrix as a heatmap with a colorbar (.png, .pdf or .svg); "
                   "with --permutations, the permutation null with the observed value.")
@click.option("--plot-kernels", default=None, type=click.Path(dir_okay=False),
              help="Draw the centred kernel matrices (--kernel, --sigma) of the stores side by "
                   "side, each with a colorbar, on at most 300 common rows (drawn with --seed); "
                   "ordered and block-labelled by class when the first store has labels.")
@click.option("--plot-format", "plot_format", default=None,
              type=click.Choice(PLOT_FORMATS, case_sensitive=False),
              help="Format of --plot and --plot-kernels: png, pdf or svg (default: the file's "
                   "suffix).")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="Write the value or matrix (.csv, .tsv, .json, .jsonl or .h5, or --format; "
                   "'-' = stdout).")
@shard_option
@seed_option
@device_option
@json_option
def command(stores, metric, kernel, sigma, threshold, estimator, k, permutations, plot,
            plot_kernels, plot_format, output, shard, seed, device, json_):
    """Alignment between the embedding stores A, B, ... (rows paired by id)."""
    st = resolve(device, json_, seed)
    sig, part, plot_format, kernels_format = _check_args(
        stores, metric, sigma, threshold, permutations, shard, output, plot, plot_kernels,
        plot_format)
    check_outputs({"-o": output, "--plot": plot, "--plot-kernels": plot_kernels}, stores)
    sets = load_many(list(stores), min_common=4)
    names = [_label(s) for s in stores]
    if len(set(names)) < len(names):
        names = list(stores)
    n = int(sets[0].n)
    Xs = [es.X for es in sets]
    opts = {"metric": metric, "kernel": kernel, "sigma": sig, "threshold": threshold,
            "estimator": estimator, "k": k}
    meta, desc = _meta(opts, n)
    perm = None
    if len(sets) == 2:
        result, text, M, perm = _two_stores(opts, meta, desc, names, Xs, permutations, st,
                                            output)
    else:
        ctx = {"meta": meta, "names": names, "desc": desc, "stores": list(stores),
               "device": st.device, "opts": opts}
        M = _matrix(ctx, Xs, sets[0].ids, part, st, output)
        if M is None:  # a shard's partial output was written
            return
        result, text = matrix_result(ctx, M, output)
    if plot:
        _plot_values(M, perm, names, desc, metric, n, plot, plot_format)
    if plot_kernels:
        from fastcka import plots

        fig, _ = plots.kernel_figure(Xs, names, kernel=kernel, sigma=sig, threshold=threshold,
                                     groups=getattr(sets[0], "labels", None), rng=st.seed,
                                     device=st.device)
        plots.save(fig, plot_kernels, kernels_format)
    emit_result("cka", inputs={"stores": list(stores)},
                outputs={"output": output, "plot": plot, "plot_kernels": plot_kernels},
                results=result, text=text, as_json=st.json, device=st.device)


def _check_args(stores, metric, sigma, threshold, permutations, shard, output, plot,
                plot_kernels, plot_format):
    """The usage checks of ``cka``: ``(sigma, shard, plot format, kernels plot format)``."""
    if len(stores) < 2:
        raise click.UsageError("give at least two stores")
    sig = parse_sigma(sigma, ("paper", "kornblith"))
    if not (math.isfinite(threshold) and threshold > 0):
        raise click.BadParameter("must be a positive number", param_hint="'--threshold'")
    if permutations is not None and (metric != "cka" or len(stores) != 2):
        raise click.UsageError("--permutations needs exactly two stores and --metric cka")
    part = parse_shard(shard)
    if part is not None:
        if len(stores) < 3:
            raise click.UsageError("--shard splits the matrix of three or more stores")
        if output is None:
            raise click.UsageError("--shard needs -o PART.h5 (the partial output to merge)")
        if plot is not None or plot_kernels is not None:
            raise click.UsageError("--shard writes a partial output: draw --plot from the "
                                   "merged matrix (fastcka merge, then cka --plot)")
    else:
        check_result_path(output)
    kernels_format = _plot_format(plot_kernels, plot_format, "'--plot-kernels'")
    return sig, part, _plot_format(plot, plot_format), kernels_format


def _meta(opts: dict, n: int) -> tuple[dict, str]:
    """The settings that hold for the value(s), and the one-line description of the metric."""
    metric, kernel, sig = opts["metric"], opts["kernel"], opts["sigma"]
    estimator, k = opts["estimator"], opts["k"]
    meta = {"metric": metric, "kernel": kernel if metric == "cka" else "linear",
            "estimator": estimator if metric == "cka" else "unbiased" if metric == "cknna" else None,
            "sigma": sig if metric == "cka" and kernel == "rbf" else None,
            "threshold": opts["threshold"] if metric == "cka" and sig == "kornblith" else None,
            "n": n}
    if metric != "cka":
        meta["k"] = k
    desc = (f"{metric} ({kernel}{', sigma ' + str(sig) if kernel == 'rbf' else ''}, {estimator})"
            if metric == "cka" else f"{metric} (k={k})")
    return meta, desc


def _two_stores(opts, meta, desc, names, Xs, permutations, st, output):
    """One value (with its permutation test when asked): ``(result, text, 2×2 matrix,
    permutation result or None)``; ``-o`` gets one row."""
    import fastcka

    n = meta["n"]
    result = dict(meta, names=names)
    perm = None
    if permutations is not None:
        perm = fastcka.cka_permutation_test(
            Xs[0], Xs[1], n_permutations=permutations, rng=st.seed, kernel=opts["kernel"],
            sigma=opts["sigma"], threshold=opts["threshold"], estimator=opts["estimator"],
            device=st.device)
        value = perm.statistic
        result.update(value=value, p_value=perm.p_value, null_mean=perm.null_mean,
                      null_std=perm.null_std, n_permutations=perm.n_permutations)
        text = (f"{desc} = {value:.6f}  (n = {n}; permutation test: p = {perm.p_value:.4g}, "
                f"null {perm.null_mean:.4f} ± {perm.null_std:.4f} over {permutations})")
    else:
        value = _pair_value(opts, st.device, Xs[0], Xs[1])
        result["value"] = value
        text = f"{desc} = {value:.6f}  (n = {n})"
    M = np.array([[1.0, value], [value, 1.0]])
    if output:
        write_rows(output, [{k2: v for k2, v in result.items() if k2 != "names"}
                            | {"a": names[0], "b": names[1]}], meta=meta)
    return result, text, M, perm


def _matrix(ctx, Xs, ids, part, st, output):
    """The pairwise matrix of three or more stores (in-process, as units on the scheduler, or
    one shard's units written as a partial output: then None)."""
    import fastcka

    opts, n = ctx["opts"], ctx["meta"]["n"]
    if part is None and parse_scheduler(st.scheduler)[0] == "none":
        if opts["metric"] == "cka":
            return fastcka.cka_matrix(Xs, kernel=opts["kernel"], sigma=opts["sigma"],
                                      threshold=opts["threshold"], estimator=opts["estimator"],
                                      device=st.device)
        m = len(Xs)
        M = np.eye(m)
        for a in range(m):
            for b in range(a + 1, m):
                M[a, b] = M[b, a] = _pair_value(opts, st.device, Xs[a], Xs[b])
        return M
    units = matrix_units(opts["metric"], len(Xs))
    mine = units if part is None else shard_range(units, part)
    with scheduler_context(st) as ex:
        res = run_units(ctx, Xs, mine, ex)
    if part is None:
        return matrix_from(ctx, units, res, n)
    lo = part[0] * len(units) // part[1]        # shard_range's first unit
    write_partial(output, "cka", ctx, fingerprint(*Xs, ids), part,
                  (lo, lo + len(mine)), units_data(mine, res, n))
    emit_result("cka", inputs={"stores": ctx["stores"]}, outputs={"partial": output},
                results={"shard": part[0], "n_shards": part[1],
                         "units": [lo, lo + len(mine)]},
                text=f"shard {part[0]}/{part[1]}: units {lo}..{lo + len(mine)} of "
                     f"{len(units)} -> {output}",
                as_json=st.json, device=st.device)
    return None


def _plot_values(M, perm, names, desc, metric, n, plot, plot_format) -> None:
    """``--plot``: the permutation null with the observed value, or the matrix as a heatmap."""
    from fastcka import plots

    if perm is not None:
        fig = plots.permutation_null([{"null": perm.null, "observed": perm.statistic,
                                       "p_value": perm.p_value,
                                       "title": f"{names[0]} vs {names[1]}"}],
                                     statistic=desc)
    else:
        label = {"cka": "CKA", "mutual_knn": "mutual k-NN", "cknna": "CKNNA"}[metric]
        fig = plots.similarity_matrix(M, names, title=f"{desc}, n = {n}", label=label)
    plots.save(fig, plot, plot_format)


def _pair_value(opts: dict, device: str, X, Y) -> float:
    import fastcka

    if opts["metric"] == "cka":
        return fastcka.cka(X, Y, kernel=opts["kernel"], sigma=opts["sigma"],
                           threshold=opts["threshold"], estimator=opts["estimator"],
                           device=device)
    if opts["metric"] == "mutual_knn":
        return fastcka.mutual_knn(X, Y, k=opts["k"], device=device)
    return fastcka.cknna(X, Y, k=opts["k"], device=device)


def _knn_pair_task(Xs, a, b, opts, device):
    return _pair_value(opts, device, Xs[a], Xs[b])


def matrix_units(metric: str, m: int) -> list[tuple]:
    """The units of the matrix (the unit of --shard and --scheduler): for CKA every store's
    statistics then every pair's cross sum (:func:`fastcka.parallel.cka_units`), for the
    k-NN metrics every pair."""
    from fastcka.parallel import cka_units

    units = cka_units(m)
    return units if metric == "cka" else [u for u in units if u[0] == "pair"]


def run_units(ctx: dict, Xs: list, units: list, ex) -> list:
    """The results of ``units`` here or on the executor ``ex`` (workers compute on the CPU)."""
    from fastcka._cka import _prep_many
    from fastcka.parallel import cka_run_units, executor

    o = ctx["opts"]
    device = "cpu" if ex is not None else ctx["device"]
    if o["metric"] == "cka":
        be, Xd = _prep_many(Xs, o["estimator"], device)
        return cka_run_units([be.to_host(X) for X in Xd], units, o["kernel"], o["sigma"],
                             o["threshold"], device=device, scheduler=ex)
    with executor(ex) as run:
        return run.map(_knn_pair_task, [(u[1], u[2], o, device) for u in units], shared=Xs)


def units_data(units: list, res: list, n: int) -> dict:
    """One shard's unit results as the arrays of its partial output."""
    st = [(u[1], r) for u, r in zip(units, res, strict=True) if u[0] == "store"]
    pr = [(u[1], u[2], r) for u, r in zip(units, res, strict=True) if u[0] == "pair"]
    return {"store": np.asarray([a for a, _ in st], np.int64),
            "store_S": np.asarray([r["S"] for _, r in st], np.float64),
            "store_rows": np.asarray([r["rows"] for _, r in st], np.float64).reshape(-1, n),
            "store_diags": np.asarray([r["diags"] for _, r in st], np.float64).reshape(-1, n),
            "store_unit": np.asarray([r["unit"] for _, r in st], np.float64),
            "pair": np.asarray([(a, b) for a, b, _ in pr], np.int64).reshape(-1, 2),
            "pair_value": np.asarray([r for _, _, r in pr], np.float64)}


def _units_from_data(parts: list[dict]) -> tuple[list, list]:
    units, res = [], []
    for d in parts:
        for i, a in enumerate(d["store"]):
            units.append(("store", int(a)))
            res.append({"S": float(d["store_S"][i]), "rows": d["store_rows"][i],
                        "diags": d["store_diags"][i], "unit": float(d["store_unit"][i])})
        for (a, b), v in zip(d["pair"], d["pair_value"], strict=True):
            units.append(("pair", int(a), int(b)))
            res.append(float(v))
    return units, res


def matrix_from(ctx: dict, units: list, res: list, n: int) -> np.ndarray:
    """The matrix of all the units' results: what the in-process run computes, bit for bit."""
    m = len(ctx["names"])
    if ctx["opts"]["metric"] == "cka":
        from fastcka._cka import _matrix_from
        from fastcka.parallel import cka_stats_from

        return _matrix_from(cka_stats_from(n, m, units, res), ctx["opts"]["estimator"])
    M = np.eye(m)
    for u, v in zip(units, res, strict=True):
        M[u[1], u[2]] = M[u[2], u[1]] = v
    return M


def matrix_result(ctx: dict, M: np.ndarray, output) -> tuple[dict, str]:
    """The result and text of a matrix, -o written (the unsharded run and ``fastcka merge``)."""
    names, meta, desc = ctx["names"], ctx["meta"], ctx["desc"]
    result = dict(meta, names=names, matrix=[[float(v) for v in row] for row in M])
    width = max(len(s) for s in names)
    cw = [max(8, len(s)) for s in names]  # whole names: columns as wide as their header
    lines = [f"{desc}, n = {meta['n']}",
             " " * width + "  " + "  ".join(f"{s:>{w}}" for s, w in zip(names, cw, strict=True))]
    for a, s in enumerate(names):
        lines.append(f"{s:<{width}}  " + "  ".join(f"{v:{w}.4f}" for v, w in
                                                   zip(M[a], cw, strict=True)))
    if output:
        rows = [{"name": s} | {names[b]: float(M[a, b]) for b in range(len(names))}
                for a, s in enumerate(names)]
        write_rows(output, rows, meta=meta)
    return result, "\n".join(lines)


def merge(heads: list[dict], output: str | None, as_json: bool) -> None:
    """``fastcka merge`` of cka matrix shards: the unsharded run's matrix, -o file and output."""
    from ._shard import read_data

    ctx = heads[0]["settings"]
    units, res = _units_from_data([read_data(h["path"]) for h in heads])
    result, text = matrix_result(ctx, matrix_from(ctx, units, res, ctx["meta"]["n"]), output)
    emit_result("cka", inputs={"stores": ctx["stores"]},
                outputs={"output": output, "plot": None, "plot_kernels": None},
                results=result, text=text, as_json=as_json, device=ctx["device"])
