"""``fastcka embed image|text INPUT -o STORE``: the encoder stage.

Reads a dataset (see :mod:`fastcka.datasets`), embeds it with a built-in encoder or a Hugging Face
model (local folder or cached hub id) and writes an HDF5 store, resumably (``--resume``), with
nothing under the final name until every input has been handled.
"""

from __future__ import annotations

import click

from ._common import device_option, emit_result, examples, json_option, resolve, warn
from ._shard import parse_shard, shard_option

DTYPE_CHOICE = click.Choice(["auto", "float32", "float16", "bfloat16"])
POOLING_CHOICE = click.Choice(["mean", "cls", "pooler"])


def _common(f):
    f = shard_option(f)
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


def _check_output(output: str, *inputs, shard=None) -> None:
    """Refuse a bad or input-overwriting STORE before any model is loaded or input read."""
    from fastcka._io import check_outputs, real_target
    from fastcka.store import _spec_lock, check_store_target, parse_spec

    path, group = parse_spec(output)
    if shard is not None and group != "/":
        raise click.UsageError("--shard writes a partial store: give -o PART.h5 (no ::/group; "
                               "`fastcka merge PARTS -o STORE::/group` names the set)")
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
          resume, pooling, dtype, shard, device, json_):
    """Embed the images of INPUT (folder, CSV/TSV/JSONL, COCO JSON, .npy array)."""
    from fastcka.datasets import read_images

    s = resolve(device, json_)
    part = parse_shard(shard)
    _check_output(output, input_, images_dir, shard=part)
    records = read_images(input_, image_column=image_column, images_dir=images_dir, limit=limit)
    kw = dict(batch_size=batch_size, workers=workers, resume=resume, on_error=on_error,
              settings={"source": str(input_), "limit": limit})
    enc_kw = dict(name=encoder, modality="image", device=s.device, dtype=dtype, pooling=pooling)
    rep, enc = _embed(s, records, output, enc_kw, kw, part)
    for i, why in rep.failed:
        warn(f"image {i!r} skipped: {why}")
    if part is not None:
        return _shard_done(rep, part, records, "images", s, enc)
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
         ids_file, workers, limit, resume, pooling, dtype, shard, device, json_):
    """Embed the captions of INPUT (CSV/TSV/JSONL, COCO JSON, Flickr8k/XTD folders, .txt)."""
    from fastcka.datasets import names_file_for, read_texts

    s = resolve(device, json_)
    part = parse_shard(shard)
    _check_output(output, input_, ids_file, shard=part)
    if ids_file is None:                  # XTD: ids from test_image_names.txt, found beside it
        found = names_file_for(input_, lang)
        ids_file = None if found is None else str(found)
    records = read_texts(input_, lang=lang, caption_column=caption_column,
                         image_column=image_column, ids_file=ids_file, limit=limit)
    kw = dict(batch_size=batch_size, workers=workers, resume=resume, caption_mean=caption_mean,
              settings={"source": str(input_), "lang": lang, "limit": limit,
                        "ids_file": ids_file})
    enc_kw = dict(name=encoder, modality="text", device=s.device, dtype=dtype, pooling=pooling)
    rep, enc = _embed(s, records, output, enc_kw, kw, part)
    if part is not None:
        return _shard_done(rep, part, records, "captions", s, enc)
    emit_result("embed text", inputs={"input": str(input_), "ids_file": ids_file},
                outputs={"store": rep.output}, results=rep.as_dict(), as_json=s.json,
                text=_summary(rep, "captions", "image ids" if caption_mean else None),
                device=_encoder_device(enc))


def _encoder_device(enc) -> str:
    """``cpu`` or ``gpu``: where the encoder's model runs."""
    runner = getattr(enc, "runner", None)
    d = str(getattr(runner, "device", getattr(enc, "device", "cpu")))
    return "cpu" if d == "cpu" else "gpu"


# --------------------------------------------------------------------------------------------
# job-array shards: --shard I/N writes a store of the shard's batches; `fastcka merge` joins them
# --------------------------------------------------------------------------------------------

def _records_fingerprint(records) -> str:
    import numpy as np

    from ._shard import fingerprint

    ids = np.asarray([str(r.id) for r in records])
    if records and hasattr(records[0], "captions"):
        return fingerprint(ids, np.asarray(["\x1f".join(r.captions) for r in records]))
    return fingerprint(ids, np.asarray([str(getattr(r, "path", "") or "") for r in records]))


def _shard_done(rep, part, records, what: str, s, enc) -> None:
    """Mark the shard's store as a partial output (settings, input fingerprint, batch range)."""
    import json

    from fastcka.store import parse_spec

    from ._shard import mark_partial, write_partial

    settings = json.loads(json.dumps({"modality": rep.modality, "encoder": rep.encoder,
                                      "dim": int(rep.dim), "store_settings": rep.settings}))
    path = str(parse_spec(rep.output)[0])
    fp = _records_fingerprint(records)
    if rep.n_rows == 0:          # no batch (more shards than batches) or none readable
        write_partial(path, "embed", settings, fp, part, rep.batches, {})
    mark_partial(path, "embed", settings, fp, part, rep.batches,
                 {"failed": [list(f) for f in rep.failed], "n_rows": int(rep.n_rows)})
    emit_result("embed", inputs={"n_records": len(records)}, outputs={"partial": path},
                results={**rep.as_dict(), "shard": part[0], "n_shards": part[1],
                         "batches": list(rep.batches)},
                text=f"shard {part[0]}/{part[1]}: batches {rep.batches[0]}..{rep.batches[1]}, "
                     f"{rep.n_rows} rows ({rep.n_inputs} {what}) -> {path}",
                as_json=s.json, device=_encoder_device(enc))


def join_stores(sets, output: str, modality: str, encoder: str, settings: dict):
    """Write the rows (and labels, where every part has them) of ``sets`` in order as one
    store, atomically: what one writer of all the batches writes."""
    import numpy as np

    from fastcka.store import write_store

    labels = (np.concatenate([np.asarray(es.labels) for es in sets])
              if all(getattr(es, "labels", None) is not None for es in sets) else None)
    return write_store(output, np.concatenate([es.X for es in sets]),
                       np.concatenate([np.asarray(es.ids, dtype=str) for es in sets]),
                       modality=modality, encoder=encoder, settings=settings, labels=labels)


def check_merge_output(output) -> None:
    if output is None:
        raise click.UsageError("merging embed shards needs -o STORE (file.h5[::/group])")
    _check_output(output)


def merge(heads: list[dict], output: str, as_json: bool) -> None:
    """``fastcka merge`` of embed shards: the unsharded run's store (rows, ids, settings), written
    atomically.  Its ``created`` attribute is the time of the merge (a run's own start time in an
    unsharded run): the one attribute that differs between any two runs."""

    from fastcka.errors import InputError
    from fastcka.store import read_store

    sets = [read_store(h["path"]) for h in heads if h.get("n_rows")]
    st = heads[0]["settings"]
    if not sets:
        raise InputError("the shards hold no rows (every input was unreadable)")
    out = join_stores(sets, output, st["modality"], st["encoder"], st["store_settings"])
    failed = [f for h in heads for f in h.get("failed", [])]
    for i, why in failed:
        warn(f"image {i!r} skipped: {why}")
    emit_result("merge", inputs={"parts": [h["path"] for h in heads]},
                outputs={"store": output},
                results={"n_rows": int(out.n), "dim": int(out.dim), "encoder": st["encoder"],
                         "shards": len(heads), "failed": [{"id": i, "reason": r}
                                                          for i, r in failed]},
                text=f"wrote {output}: {out.n} rows x {out.dim} ({st['encoder']}) from "
                     f"{len(heads)} shards", as_json=as_json)


# --------------------------------------------------------------------------------------------
# a Dask scheduler: every worker embeds one shard into its own store, one merge at the end
# --------------------------------------------------------------------------------------------

def _distributed(s) -> bool:
    from fastcka.parallel import parse_scheduler

    return parse_scheduler(s.scheduler)[0] != "none"


def _part_spec(output: str, i: int, n: int) -> str:
    """The store a worker writes shard i of n to: a hidden file beside the output's."""
    from fastcka.store import parse_spec

    path, group = parse_spec(output)
    tag = "" if group == "/" else "." + group.strip("/").replace("/", "~")
    return str(path.with_name(f".{path.name}{tag}.part-{i}-of-{n}.h5"))


def _run(records, output, enc_kw, kw, shard, show_progress):
    """Load the encoder and embed ``records`` (or shard ``shard`` of their batches)."""
    from fastcka.encoders import embed_images, embed_texts, get_encoder

    enc = get_encoder(enc_kw["name"], enc_kw["modality"], device=enc_kw["device"],
                      dtype=enc_kw["dtype"], pooling=enc_kw["pooling"])
    fn = embed_images if enc_kw["modality"] == "image" else embed_texts
    return fn(records, enc, output, show_progress=show_progress, shard=shard, **kw), enc


def _embed(s, records, output, enc_kw, kw, part):
    """Here (all, or the --shard's batches), or over the workers of --scheduler."""
    if part is None and _distributed(s):
        return _on_cluster(s, records, output, enc_kw, kw)
    return _run(records, output, enc_kw, kw, part, s.verbosity >= 0)


def _embed_task(shared, i, n, part):
    """One worker's shard: its own encoder and StoreWriter (chunk files beside the output)."""
    records, enc_kw, kw = shared
    return _run(records, part, enc_kw, kw, (i, n), False)[0]


def _on_cluster(s, records, output, enc_kw, kw):
    """Embed over the workers of ``--scheduler`` (one shard each, the records sent once per
    worker) and merge the shards' stores into ``output``: the in-process store's rows."""
    from pathlib import Path
    from types import SimpleNamespace

    from fastcka.encoders.pipeline import EmbedReport
    from fastcka.store import read_store

    from ._common import scheduler_context

    with scheduler_context(s) as ex:
        n = max(1, ex.n_workers)
        parts = [_part_spec(output, i, n) for i in range(n)]
        reps = ex.map(_embed_task, [(i, n, parts[i]) for i in range(n)],
                      shared=(records, enc_kw, kw))
    have = [read_store(p) for p, r in zip(parts, reps, strict=True) if r.n_rows]
    if not have:
        from fastcka.errors import InputError

        raise InputError(f"none of the {len(records)} inputs could be embedded")
    r0 = reps[0]
    out = join_stores(have, output, r0.modality, r0.encoder, r0.settings)
    for p in parts:
        Path(p).unlink(missing_ok=True)
    from fastcka.store import _spec_str, parse_spec

    rep = EmbedReport(output=_spec_str(*parse_spec(output)), encoder=r0.encoder,
                      modality=r0.modality, dim=r0.dim, n_total=r0.n_total,
                      n_written=sum(r.n_written for r in reps),
                      n_existing=sum(r.n_existing for r in reps),
                      n_inputs=sum(r.n_inputs for r in reps),
                      failed=[f for r in reps for f in r.failed], n_rows=int(out.n),
                      seconds=max(r.seconds for r in reps), settings=r0.settings)
    return rep, SimpleNamespace(device=enc_kw["device"] if enc_kw["device"] != "auto" else "cpu")
