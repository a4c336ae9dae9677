"""``fastcka classify IMAGES``: image classification by matching images to class prompts.

A thin call of :func:`fastcka.classify`: class prompts come from the class names and templates
through a text encoder (or from a prompt store whose ids are the classes), seeds are labelled
images of the same set (or captioned pairs of another dataset, ``--base``), and the result is
top-1/top-5 and per-class accuracy and a confusion matrix per method (CSV + PNG with ``-o``).
"""

from __future__ import annotations

import click

from ._common import (
    device_option,
    emit_result,
    examples,
    json_option,
    plot_format_option,
    resolve,
    seed_option,
)


@click.command("classify", epilog=examples(
    "fastcka classify fm.h5 --classes classes.txt --seeds 50",
    "fastcka classify fm.h5 --classes classes.txt --labels labels.npy --template 'a photo of a {}.' "
    "--template 'a picture of a {}.' -o fm-classify/",
    "fastcka classify imgs.h5 --prompts prompts.h5 --base coco.h5::/text coco.h5::/image "
    "--balanced"))
@click.argument("images", metavar="IMAGES")
@click.option("--classes", "classes_file", type=click.Path(dir_okay=False), default=None,
              help="Class names, one per line (line i = class i = integer label i).")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False), default=None,
              help="Labels of the images: .npy (row i), .csv/.tsv (id,label) or one per line. "
                   "Default: the store's own labels dataset.")
@click.option("--prompts", "prompts_store", default=None, metavar="STORE",
              help="Prompt embeddings whose ids are the class names (instead of embedding "
                   "templates).")
@click.option("--template", "templates", multiple=True, metavar="TEXT",
              help="Prompt template with '{}' for the class name (repeatable; the embeddings "
                   "are averaged). Default: 'a photo of a {}.'")
@click.option("--encoder", default=None, metavar="NAME|PATH",
              help="Text encoder of the prompts: minilm-l6 (default), e5-small-multilingual, "
                   "a local Hugging Face folder or cached id.")
@click.option("--seeds", "n_seeds", type=int, default=None,
              help="Labelled seed images of IMAGES, balanced over classes, drawn with --seed "
                   "(default 5 per class); with --base: base pairs drawn (default all).")
@click.option("--base", nargs=2, default=None, metavar="BTXT BIMG",
              help="Cross-domain seeds: captioned pairs of another dataset (text store, image "
                   "store, paired by id).")
@click.option("--methods", default="local-cka:linear,local-cka:rbf,linreg,relative",
              show_default=True,
              help="Comma-separated: local-cka (linear, rbf paper-sigma, rbf base-sigma), "
                   "local-cka:linear|rbf|rbf-base, linreg, relative, cosine, knn (nearest "
                   "labelled seed image).")
@click.option("--balanced", is_flag=True, default=False,
              help="Give every class n/C of the n scored images (a linear assignment on "
                   "replicated class columns) instead of the arg-max.")
@click.option("-o", "--output", "out_dir", default=None, type=click.Path(),
              help="Folder for summary.csv, per_class.csv, predictions.csv and the confusion "
                   "matrices (CSV + PNG).")
@plot_format_option
@seed_option
@device_option
@json_option
def command(images, classes_file, labels_file, prompts_store, templates, encoder, n_seeds, base,
            methods, balanced, out_dir, plot_format, seed, device, json_):
    """Classify the images of IMAGES by matching them to class prompts."""
    import numpy as np

    import fastcka.classify as fc
    from fastcka._io import check_outputs
    from fastcka.errors import InputError
    from fastcka.store import read_store

    from ._common import load_pair

    s = resolve(device, json_, seed)
    fc.parse_classify_methods(methods)                      # bad options before any reading
    if prompts_store is not None and (templates or encoder):
        raise click.UsageError("--template/--encoder embed class names; give them or "
                               "--prompts, not both")
    if prompts_store is None and classes_file is None:
        raise click.UsageError("give --classes FILE (class names) or --prompts STORE")
    templates = fc.check_templates(list(templates) or [fc.DEFAULT_TEMPLATE])
    if out_dir is not None:
        check_outputs({"-o": out_dir}, [images, classes_file, labels_file, prompts_store,
                                        *(base or ())])
    classes = fc.read_classes(classes_file) if classes_file is not None else None
    img = read_store(images)
    if labels_file is not None:
        raw = fc.read_labels(labels_file, img.ids.tolist())
    elif img.labels is not None:
        raw = img.labels
    else:
        raise InputError(f"{images} has no labels: embed a labelled source (a Fashion-MNIST "
                         f".npy with its labels, an ImageFolder tree) or give --labels FILE")
    prompts = None
    if prompts_store is not None:
        ps = read_store(prompts_store)
        pids = ps.ids.tolist()
        if classes is None:
            classes = fc.check_classes(pids, f"prompt store {prompts_store} ids")
        else:
            pos = {k: i for i, k in enumerate(pids)}
            missing = [c for c in classes if c not in pos]
            if missing:
                raise InputError(f"prompt store {prompts_store} has no prompt for class(es) "
                                 f"{', '.join(map(repr, missing[:3]))}")
            ps = ps.take(np.asarray([pos[c] for c in classes], dtype=np.intp))
        prompts = ps.X
    labels = fc.resolve_labels(raw, classes, f"labels of {images}")
    base_arg = None
    if base is not None:
        bt, bi = load_pair(base[0], base[1])
        base_arg = (bt.X, bi.X)
        if prompts is not None and prompts.shape[1] != bt.dim:
            raise InputError(f"the prompts have dimension {prompts.shape[1]} but the base text "
                             f"store {base[0]} has {bt.dim}: use the base captions' encoder")
    elif n_seeds is not None:
        fc.draw_seeds(labels, n_seeds, len(classes), s.seed)  # seed errors before the encoder
    if prompts is None:
        from fastcka.encoders import get_encoder

        enc = get_encoder(encoder, "text", device=s.device)
        if base is not None and enc.dim != base_arg[0].shape[1]:
            raise InputError(f"the prompt encoder {enc.name} gives dimension {enc.dim} but the "
                             f"base text store {base[0]} has {base_arg[0].shape[1]}: use the "
                             f"base captions' encoder")
        prompts = fc.class_prompts(classes, enc, templates)
    res = fc.classify(img.X, prompts, labels, classes=classes, seeds=n_seeds, base=base_arg,
                      methods=methods, balanced=balanced,
                      rng=s.seed, device=s.device)
    files = (fc.write_classification(res, out_dir, ids=img.ids.tolist(), plot_format=plot_format)
             if out_dir else [])
    doc = res.to_dict()
    doc.update(images=images, files=files)
    emit_result("classify", inputs={"images": images, "classes": classes_file,
                                    "labels": labels_file, "prompts": prompts_store,
                                    "base_text": base[0] if base else None,
                                    "base_images": base[1] if base else None},
                outputs={"dir": out_dir}, results=doc, text=_text(res, images, out_dir, files),
                as_json=s.json)


def _text(res, images: str, out_dir: str | None, files: list[str]) -> str:
    from fastcka.classify import confusion_text

    seeds = (f"{res.n_seeds} cross-domain base pairs" if res.cross_domain
             else f"{res.n_seeds} labelled seed images")
    lines = [f"{images}: {res.n_queries} images classified into {len(res.classes)} classes "
             f"with {seeds} (chance {res.chance:.3f})",
             f"{'method':<22}{'top1':>8}{'top5':>8}" + (f"{'balanced':>10}" if res.balanced else "")]
    for m in res.methods:
        lines.append(f"{m.name:<22}{m.top1:>8.3f}{m.top5:>8.3f}"
                     + (f"{m.accuracy:>10.3f}" if res.balanced else ""))
    first = res.methods[0]
    lines += ["", f"confusion of {first.name} (rows: true class, columns: predicted"
              + (", balanced assignment" if res.balanced else "") + ")",
              confusion_text(first, res.classes)]
    if out_dir:
        lines.append(f"wrote {len(files)} files to {out_dir}")
    return "\n".join(lines)
