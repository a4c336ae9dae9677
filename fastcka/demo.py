"""``fastcka demo``: the whole method on built-in synthetic data, from nothing, in a few minutes.

1. Render a deterministic set of synthetic scenes (:mod:`fastcka.scenes`) with template captions.
2. Embed the images with ``efficientnet-lite0`` and the captions with ``minilm-l6`` (the built-in
   offline encoders: a vision model that never saw text and a text model that never saw images).
3. Measure how alike the two representations are: linear and RBF CKA with permutation p-values.
4. Recover the caption <-> image pairing without training: seeded FAQ graph matching of the
   query pairs given a few seed pairs, and local-CKA retrieval top-1/5/10 against the seeds,
   each against its chance level.
5. Write ``report.md``, ``results.json``, PNG plots and the embedding store to the output folder.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_path, atomic_write_text
from .errors import InputError
from .protocol import DIRECTIONS, N_QUERIES, N_SEEDS

log = logging.getLogger("fastcka")

KS = (1, 5, 10)
# the demo's src is the captions, its tgt the images (docs/glossary.md, "direction")
_SIDES = {"src-to-tgt": "text→image", "tgt-to-src": "image→text"}


def default_split(n: int) -> tuple[int, int]:
    """The paper's 320 seeds / 500 queries when ``n >= 820``, else ~39 % seeds, the rest queries."""
    if n >= N_SEEDS + N_QUERIES:
        return N_SEEDS, N_QUERIES
    seeds = max(4, int(round(0.39 * n)))
    return seeds, n - seeds


def run_demo(out_dir: str | Path = "demo-output", *, n: int = 1000, seeds: int | None = None,
             queries: int | None = None, n_init: int = 50, n_permutations: int = 200,
             seed: int = 0, device: str = "auto", image_encoder: str = "efficientnet-lite0",
             text_encoder: str = "minilm-l6", batch_size: int | None = None, workers: int | None = None,
             show_progress: bool = True, echo=None, plot_format: str = "png") -> dict[str, Any]:
    """Run the demo end to end and write its report; returns the results dict (``results.json``).

    Parameters
    ----------
    out_dir : path
        Output folder (created): ``scenes/`` (images + captions), ``embeddings.h5`` (groups
        ``/image`` and ``/text``), ``results.json``, ``report.md``, plots (``*.png`` or
        ``plot_format``).
    n : int
        Number of scenes (>= 16).
    seeds, queries : int, optional
        Seed pairs and query pairs (default :func:`default_split`).
    n_init : int
        FAQ restarts (the paper uses 500; 50 is enough for this data and keeps the demo fast).
    n_permutations : int
        Permutations of each CKA permutation test.
    seed : int
        Seeds everything: the scenes, the seed/query split, the FAQ restarts, the permutations.
    device : {"auto", "cpu", "gpu"}
        For the encoders (torch) and the analysis (NumPy/Numba or CuPy).
    echo : callable, optional
        Progress lines (default: the ``fastcka`` logger at INFO).
    plot_format : {"png", "pdf", "svg"}
        File format of the plots.
    """
    from .plots import check_format

    say = echo or log.info
    fmt = check_format(plot_format)
    seeds, queries = _demo_split(n, seeds, queries)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    # 1. scenes
    t = time.perf_counter()
    from fastcka.scenes import write_scenes

    scenes = write_scenes(out / "scenes", n=int(n), seed=seed)
    timings["scenes"] = time.perf_counter() - t
    say(f"rendered {len(scenes)} scenes in {timings['scenes']:.1f} s -> {out / 'scenes'}")
    # 2. embeddings
    store = out / "embeddings.h5"
    X_img, X_txt, ids, encoders = _embed(out, store, image_encoder, text_encoder, device,
                                         batch_size, workers, show_progress, say, timings)
    # 3. CKA, 4a. seeded graph matching, 4b. local-CKA retrieval
    cka_res = _cka_tests(X_img, X_txt, n_permutations, seed, device, say, timings)
    m, acc = _match_and_retrieve(X_txt, X_img, seeds, queries, n_init, seed, device, say,
                                 timings)
    timings["total"] = time.perf_counter() - t_all
    results = _results(ids, seed, encoders, cka_res, m, acc, n_init, store, timings)
    _plots(out, X_img, X_txt, scenes, ids, cka_res, results, fmt)
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=1), encoding="utf-8")
    atomic_write_text(out / "report.md", _report(results, fmt))
    return results


def _demo_split(n: Any, seeds: int | None, queries: int | None) -> tuple[int, int]:
    """Seed and query counts of the demo (default :func:`default_split`), checked."""
    if not isinstance(n, (int, np.integer)) or n < 16:
        raise InputError(f"n must be an integer >= 16, got {n!r}")
    d_seeds, d_queries = default_split(int(n))
    seeds = d_seeds if seeds is None else int(seeds)
    queries = (int(n) - seeds if seeds != d_seeds else d_queries) if queries is None else int(queries)
    if seeds < 4 or queries < 10 or seeds + queries > n:
        raise InputError(f"need seeds >= 4, queries >= 10 and seeds + queries <= n; got seeds "
                         f"{seeds}, queries {queries}, n {n}")
    return seeds, queries


def _embed(out: Path, store: Path, image_encoder: str, text_encoder: str, device: str,
           batch_size: int | None, workers: int | None, show_progress: bool, say,
           timings: dict[str, float]):
    """Embed the scenes' images and captions into a fresh ``store``; ``(X_img, X_txt, ids,
    (image encoder, text encoder))``, the two sides paired by id."""
    from fastcka.datasets import read_images, read_texts
    from fastcka.encoders import embed_images, embed_texts, get_encoder
    from fastcka.store import align, read_store

    if store.exists():
        store.unlink()  # a fresh, complete store for these scenes
    t = time.perf_counter()
    ienc = get_encoder(image_encoder, "image", device=device)
    irep = embed_images(read_images(out / "scenes"), ienc, f"{store}::/image", batch_size=batch_size,
                        workers=workers, on_error="fail", settings={"source": "fastcka demo scenes"},
                        show_progress=show_progress)
    timings["embed_images"] = time.perf_counter() - t
    say(f"embedded {irep.n_rows} images with {ienc.name} in {timings['embed_images']:.1f} s")
    t = time.perf_counter()
    tenc = get_encoder(text_encoder, "text", device=device)
    trep = embed_texts(read_texts(out / "scenes" / "captions.csv"), tenc, f"{store}::/text",
                       batch_size=64, workers=workers, settings={"source": "fastcka demo scenes"},
                       show_progress=show_progress)
    timings["embed_texts"] = time.perf_counter() - t
    say(f"embedded {trep.n_rows} captions with {tenc.name} in {timings['embed_texts']:.1f} s")
    img, txt = align(read_store(f"{store}::/image"), read_store(f"{store}::/text"))
    return img.X.astype(np.float64), txt.X.astype(np.float64), img.ids.tolist(), (ienc, tenc)


def _cka_tests(X_img, X_txt, n_permutations: int, seed: int, device: str, say,
               timings: dict[str, float]) -> dict[str, dict]:
    """Linear and RBF CKA with their permutation tests (each null kept under ``_null``)."""
    import fastcka

    t = time.perf_counter()
    cka_res = {}
    for kernel in ("linear", "rbf"):
        pt = fastcka.cka_permutation_test(X_img, X_txt, n_permutations=n_permutations, rng=seed,
                                          kernel=kernel, device=device)
        cka_res[kernel] = {"cka": float(pt.statistic), "null_mean": float(pt.null_mean),
                           "null_std": float(pt.null_std), "p_value": float(pt.p_value),
                           "n_permutations": int(pt.n_permutations)}
        cka_res[kernel]["_null"] = pt.null
    timings["cka"] = time.perf_counter() - t
    say(f"CKA linear {cka_res['linear']['cka']:.4f}, rbf {cka_res['rbf']['cka']:.4f} "
        f"({timings['cka']:.1f} s)")
    return cka_res


def _match_and_retrieve(X_txt, X_img, seeds: int, queries: int, n_init: int, seed: int,
                        device: str, say, timings: dict[str, float]):
    """Seeded FAQ matching src-to-tgt (src: the captions, tgt: the images), then local-CKA
    retrieval with the same seeds (base) and queries; ``(SeededMatchResult, retrieval accuracy
    dict)``."""
    import fastcka

    t = time.perf_counter()
    m = fastcka.seeded_match(X_txt, X_img, seeds=seeds, queries=queries, kernel="rbf",
                             n_init=n_init, rng=seed, device=device, direction="src-to-tgt")
    timings["seeded_match"] = time.perf_counter() - t
    say(f"seeded FAQ matching: accuracy {m.accuracy:.3f} over {m.n_queries} queries "
        f"({timings['seeded_match']:.1f} s)")
    t = time.perf_counter()
    si, qi = np.asarray(m.seed_idx), np.asarray(m.query_idx)
    retr = fastcka.retrieve((X_txt[qi], X_img[qi], X_txt[si], X_img[si]), ks=KS, k=max(KS),
                            method="local-cka", kernel="linear", device=device)
    timings["local_cka"] = time.perf_counter() - t
    acc = retr.accuracy
    say("local-CKA retrieval src-to-tgt (text ranks images) top-1/5/10: "
        + "/".join(f"{acc['src-to-tgt'][k]:.3f}" for k in KS)
        + f" ({timings['local_cka']:.1f} s)")
    return m, acc


def _results(ids: list, seed: int, encoders: tuple, cka_res: dict, m: Any, acc: dict,
             n_init: int, store: Path, timings: dict[str, float]) -> dict[str, Any]:
    """The ``results.json`` document."""
    import fastcka

    ienc, tenc = encoders
    si, qi = np.asarray(m.seed_idx), np.asarray(m.query_idx)
    q = int(len(qi))
    return {
        "n": int(len(ids)), "seed": int(seed), "src": "text", "tgt": "image",
        "encoders": {"image": {"name": ienc.name, "dim": ienc.dim},
                     "text": {"name": tenc.name, "dim": tenc.dim}},
        "cka": {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")}
                for k, v in cka_res.items()},
        "seeded_match": {"n_seeds": int(len(si)), "n_queries": q, "kernel": "rbf",
                         "sigma": "paper", "n_init": int(n_init), "direction": "src-to-tgt",
                         "accuracy": float(m.accuracy), "chance": 1.0 / q,
                         "objective": float(m.objective)},
        "retrieval": {"method": "local-cka", "kernel": "linear", "n_base": int(len(si)),
                      "n_queries": q,
                      **{d: {str(k): float(acc[d][k]) for k in KS} for d in DIRECTIONS},
                      "chance": {str(k): min(1.0, k / q) for k in KS}},
        "seed_ids": [ids[i] for i in si], "query_ids": [ids[i] for i in qi],
        "store": str(store), "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "machine": f"{platform.machine()} {platform.system()}, python {platform.python_version()}",
        "fastcka_version": fastcka.__version__,
    }


def summary(res: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    c, m, r = res["cka"], res["seeded_match"], res["retrieval"]
    fwd, ch = r["src-to-tgt"], r["chance"]
    return "\n".join([
        f"fastcka demo: {res['n']} synthetic scenes, {res['encoders']['image']['name']} "
        f"(image, {res['encoders']['image']['dim']}-d) vs {res['encoders']['text']['name']} "
        f"(text, {res['encoders']['text']['dim']}-d)",
        f"  CKA linear {c['linear']['cka']:.4f} (null {c['linear']['null_mean']:.4f} ± "
        f"{c['linear']['null_std']:.4f}, p = {c['linear']['p_value']:.4f}); rbf {c['rbf']['cka']:.4f} "
        f"(null {c['rbf']['null_mean']:.4f} ± {c['rbf']['null_std']:.4f}, p = {c['rbf']['p_value']:.4f})",
        f"  seeded FAQ matching ({m['n_seeds']} seeds, {m['n_queries']} queries, {m['n_init']} "
        f"restarts): accuracy {m['accuracy']:.3f} (chance {m['chance']:.4f})",
        f"  local-CKA retrieval src-to-tgt (text ranks images) top-1/5/10: {fwd['1']:.3f} / "
        f"{fwd['5']:.3f} / {fwd['10']:.3f} (chance {ch['1']:.3f} / {ch['5']:.3f} / {ch['10']:.3f})",
        f"  total {res['timings_s']['total']:.0f} s; report: {Path(res['store']).parent / 'report.md'}",
    ])


def _report(res: dict[str, Any], fmt: str = "png") -> str:
    c, m, r = res["cka"], res["seeded_match"], res["retrieval"]
    lines = [
        "# fastcka demo report", "",
        f"{res['n']} synthetic scenes (seed {res['seed']}): one coloured shape of some size and "
        "position on a plain background, captioned from a template (\"a large red circle at the "
        "top left on a blue background\"). Images embedded with "
        f"`{res['encoders']['image']['name']}` ({res['encoders']['image']['dim']}-d, an ImageNet "
        f"classifier), captions with `{res['encoders']['text']['name']}` "
        f"({res['encoders']['text']['dim']}-d, a sentence encoder). Neither model saw the other "
        "modality; nothing is trained here.", "",
        "## Representation similarity (CKA)", "",
        "| kernel | CKA | null mean ± std (permuted pairs) | p-value | permutations |",
        "|---|---|---|---|---|",
    ]
    for k in ("linear", "rbf"):
        v = c[k]
        lines.append(f"| {k} | {v['cka']:.4f} | {v['null_mean']:.4f} ± {v['null_std']:.4f} | "
                     f"{v['p_value']:.4f} | {v['n_permutations']} |")
    lines += [
        "", f"The smallest p-value {c['linear']['n_permutations']} permutations can give is "
        f"1/{c['linear']['n_permutations'] + 1} = {1 / (c['linear']['n_permutations'] + 1):.4f}.",
        "", f"![kernels](kernels.{fmt})", "", f"![permutation test](permutation.{fmt})", "",
        "## Recovering the pairing from a few seed pairs", "",
        f"{m['n_seeds']} seed pairs are given; {m['n_queries']} query captions must be matched to "
        "their images (src-to-tgt: src = the captions, tgt = the images; tgt-to-src the "
        "reverse).", "",
        "| method | accuracy | chance |", "|---|---|---|",
        f"| seeded FAQ graph matching (RBF kernels, {m['n_init']} restarts), src-to-tgt | "
        f"{m['accuracy']:.3f} | {m['chance']:.4f} |",
    ]
    for d in DIRECTIONS:
        lines += [f"| local-CKA retrieval top-{k}, {d} | {r[d][str(k)]:.3f} | "
                  f"{r['chance'][str(k)]:.4f} |" for k in KS]
    lines += ["", f"![accuracy](accuracy.{fmt})", "", f"![scenes](scenes.{fmt})", "",
              "## Run", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in res["timings_s"].items()]
    lines += ["", f"{res['machine']}; fastcka {res['fastcka_version']}. Embeddings: "
              f"`{Path(res['store']).name}` (groups `/image`, `/text`); all numbers in "
              "`results.json`.", ""]
    return "\n".join(lines)


def _plots(out: Path, X_img, X_txt, scenes, ids, cka_res, res, fmt: str = "png") -> None:
    from . import plots
    from .cka import gram

    by_id = {s.id: s for s in scenes}
    # kernel matrices of up to 150 scenes, ordered by shape then colour (block structure)
    sub = sorted(range(min(150, len(ids))), key=lambda i: (by_id[ids[i]].shape, by_id[ids[i]].color))
    enc = res["encoders"]
    fig = plots.kernel_heatmaps(
        [np.asarray(gram(X[sub], "linear", center=True, device="cpu")) for X in (X_img, X_txt)],
        [f"centred linear kernel: image ({enc['image']['name']})",
         f"centred linear kernel: text ({enc['text']['name']})"],
        groups=[by_id[ids[i]].shape for i in sub], group_name="scene shape",
        suptitle=f"{len(sub)} scenes ordered by shape, then colour; linear CKA "
                 f"{res['cka']['linear']['cka']:.3f}")
    plots.save(fig, out / f"kernels.{fmt}", fmt)

    fig = plots.permutation_null(
        [{"null": cka_res[k]["_null"], "observed": cka_res[k]["cka"],
          "p_value": cka_res[k]["p_value"], "title": f"{k} CKA"} for k in ("linear", "rbf")],
        statistic="CKA")
    plots.save(fig, out / f"permutation.{fmt}", fmt)

    r, m = res["retrieval"], res["seeded_match"]
    fig = plots.matching_retrieval(
        {"FAQ src-to-tgt": [m["accuracy"]]},
        {f"{d} ({_SIDES[d]})": {k: [r[d][str(k)]] for k in KS} for d in DIRECTIONS},
        chance_matching=m["chance"], chance_retrieval={k: r["chance"][str(k)] for k in KS},
        title=f"pairing recovery: {m['n_seeds']} seeds, {m['n_queries']} queries (one draw)")
    plots.save(fig, out / f"accuracy.{fmt}", fmt)

    from .scenes import render_scene

    show = scenes[:8]
    fig = plots.image_grid([render_scene(sc, 112) for sc in show],
                           [_two_lines(sc.caption) for sc in show])
    plots.save(fig, out / f"scenes.{fmt}", fmt)


def _two_lines(text: str) -> str:
    words = text.split()
    half = len(words) // 2
    return " ".join(words[:half]) + "\n" + " ".join(words[half:])
