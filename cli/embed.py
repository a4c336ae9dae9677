"""``fastcka embed image|text INPUT -o STORE``: the encoder stage.

Reads a dataset (see :mod:`fastcka.datasets`), embeds it with a built-in encoder or a Hugging Face
model (local folder or cached hub id) and writes an HDF5 store, resumably (``--resume``), with
nothing under the final name until every input has been handled.
"""

from __future__ import annotations

import click

from ._common import emit_result
from ._options import device_option, examples, json_option, resolve, warn

DTYPE_CHOICE = click.Choice(["auto", "float32", "float16", "bfloat16"])
POOLING_CHOICE = click.Choice(["mean", "cls", "pooler"])


def _common(f):
    f = click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Parallel decoding/tokenisation threads (default min(4, cores)).")(f)
    f = click.option("--limit", type=click.IntRange(min=1), default=None,
                     help="Embed only the first N items of INPUT.")(f)
    f = click.option("--resume", is_flag=True,
                     help="Continue a killed run: keep what was written, embed only missing ids.")(f)
    f = click.option("--pooling", type=POOLING_CHOICE, default=None,
                     help="Token pooling of Hugging Face models (default mean).")(f)
    f = click.option("--dtype", type=DTYPE_CHOICE, default="auto", show_default=True,
                     help="Compute dtype (autocast); auto = float16 on a GPU, float32 on the CPU.")(f)
    f = device_option(f)
    f = json_option(f)
    return f


def _check_output(output: str, *inputs) -> None:
    """Refuse a bad or input-overwriting STORE before any model is loaded or input read."""
    from fastcka._io import check_outputs, real_target
    from fastcka.store import _spec_lock, check_store_target, parse_spec

    path, group = parse_spec(output)
    check_outputs({"-o": path}, inputs)
    check_store_target(path)
    with _spec_lock(real_target(path), group):  # another live writer of STORE: refused now
        pass


def _summary(rep, what: str, rows: str | None = None) -> str:
    """The text report; ``rows`` names a row when it differs from an input (a text row is an
    image id holding the mean of its captions), so rows and inputs are counted separately."""
    done = (f"{rep.n_inputs} {what}" if rows is None else
            f"{rep.n_written} {rows} ({rep.n_inputs} {what})")
    lines = [f"wrote {rep.output}: {rep.n_rows} rows x {rep.dim} ({rep.encoder})",
             f"  this run: {done} embedded in {rep.seconds:.1f} s"
             + (f" ({rep.rate:.1f} {what}/s)" if rep.seconds > 0 and rep.n_inputs else "")]
    if rep.n_existing:
        lines.append(f"  resumed: {rep.n_existing} already written, skipped")
    if rep.failed:
        lines.append(f"  skipped {len(rep.failed)} unreadable: "
                     + ", ".join(i for i, _ in rep.failed[:10])
                     + (" ..." if len(rep.failed) > 10 else ""))
    return "\n".join(lines)


@click.group("embed", epilog=examples(
    "fastcka embed image images/ -o emb.h5::/image",
    "fastcka embed text captions.csv -o emb.h5::/text --encoder minilm-l6"))
def command() -> None:
    """Embed images or captions with an encoder into an HDF5 store.

    Built-in offline encoders: efficientnet-lite0 (image), minilm-l6 and e5-small-multilingual
    (text).  --encoder also takes a local Hugging Face model folder or a cached hub id (vision
    backbones, sentence-transformers style text models, CLIP-style towers).
    """


@command.command("image", epilog=examples(
    "fastcka embed image coco/val2017 -o coco.h5::/image --batch-size 32",
    "fastcka embed image images.csv --image-column path -o emb.h5::/image --resume"))
@click.argument("input_", metavar="INPUT", type=click.Path(exists=True))
@click.option("-o", "--output", required=True, metavar="STORE", help="Output store (file.h5[::/group]).")
@click.option("--encoder", default="efficientnet-lite0", show_default=True, metavar="NAME|PATH",
              help="Built-in name, local model folder or cached Hugging Face id.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Images per model call [default: 4 on the CPU, 32 on a GPU].")
@click.option("--on-error", type=click.Choice(["skip", "fail"]), default="skip", show_default=True,
              help="An unreadable image: skip it (reported by id) or stop with an error.")
@click.option("--image-column", default=None, help="Image column of a CSV/TSV/JSONL input.")
@click.option("--images-dir", type=click.Path(file_okay=False), default=None,
              help="Folder that image names in a table/COCO file are relative to.")
@_common
def image(input_, output, encoder, batch_size, on_error, image_column, images_dir, workers, limit,
          resume, pooling, dtype, device, json_):
    """Embed the images of INPUT (folder, CSV/TSV/JSONL, COCO JSON, .npy array)."""
    from fastcka.datasets import read_images
    from fastcka.encoders import embed_images, get_encoder

    s = resolve(device, json_)
    _check_output(output, input_, images_dir)
    records = read_images(input_, image_column=image_column, images_dir=images_dir, limit=limit)
    enc = get_encoder(encoder, "image", device=s.device, dtype=dtype, pooling=pooling)
    rep = embed_images(records, enc, output, batch_size=batch_size, workers=workers, resume=resume,
                       on_error=on_error, settings={"source": str(input_), "limit": limit},
                       show_progress=s.verbosity >= 0)
    for i, why in rep.failed:
        warn(f"image {i!r} skipped: {why}")
    emit_result("embed image", inputs={"input": str(input_)}, outputs={"store": rep.output},
                results=rep.as_dict(), text=_summary(rep, "images"), as_json=s.json,
                device=_encoder_device(enc))


@command.command("text", epilog=examples(
    "fastcka embed text captions_val2017.json -o coco.h5::/text",
    "fastcka embed text multi30k.tsv --lang de --encoder e5-small-multilingual -o m.h5::/de"))
@click.argument("input_", metavar="INPUT", type=click.Path(exists=True))
@click.option("-o", "--output", required=True, metavar="STORE", help="Output store (file.h5[::/group]).")
@click.option("--encoder", default="minilm-l6", show_default=True, metavar="NAME|PATH",
              help="Built-in name, local model folder or cached Hugging Face id.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Captions per model call.")
@click.option("--caption-mean/--no-caption-mean", default=True, show_default=True,
              help="One row per image, the mean of its captions' embeddings (else one row per "
                   "caption, id '<id>#<k>').")
@click.option("--lang", default=None,
              help="Language of a multilingual input (multi30k.tsv column, XTD *_<lang>.txt).")
@click.option("--caption-column", default=None, help="Caption column of a CSV/TSV/JSONL input.")
@click.option("--image-column", default=None, help="Id/image column of a CSV/TSV/JSONL input.")
@click.option("--ids-file", type=click.Path(exists=True, dir_okay=False, allow_dash=True),
              default=None,
              help="Line-aligned text input: line i holds the id of caption line i (XTD: "
                   "test_image_names.txt is found by itself).")
@_common
def text(input_, output, encoder, batch_size, caption_mean, lang, caption_column, image_column,
         ids_file, workers, limit, resume, pooling, dtype, device, json_):
    """Embed the captions of INPUT (CSV/TSV/JSONL, COCO JSON, Flickr8k/XTD folders, .txt)."""
    from fastcka.datasets import names_file_for, read_texts
    from fastcka.encoders import embed_texts, get_encoder

    s = resolve(device, json_)
    _check_output(output, input_, ids_file)
    if ids_file is None:                  # XTD: ids from test_image_names.txt, found beside it
        found = names_file_for(input_, lang)
        ids_file = None if found is None else str(found)
    records = read_texts(input_, lang=lang, caption_column=caption_column,
                         image_column=image_column, ids_file=ids_file, limit=limit)
    enc = get_encoder(encoder, "text", device=s.device, dtype=dtype, pooling=pooling)
    rep = embed_texts(records, enc, output, batch_size=batch_size, workers=workers, resume=resume,
                      caption_mean=caption_mean,
                      settings={"source": str(input_), "lang": lang, "limit": limit,
                                "ids_file": ids_file},
                      show_progress=s.verbosity >= 0)
    emit_result("embed text", inputs={"input": str(input_), "ids_file": ids_file},
                outputs={"store": rep.output}, results=rep.as_dict(), as_json=s.json,
                text=_summary(rep, "captions", "image ids" if caption_mean else None),
                device=_encoder_device(enc))


def _encoder_device(enc) -> str:
    """``cpu`` or ``gpu``: where the encoder's model runs."""
    runner = getattr(enc, "runner", None)
    d = str(getattr(runner, "device", getattr(enc, "device", "cpu")))
    return "cpu" if d == "cpu" else "gpu"
