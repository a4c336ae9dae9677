"""``fastcka import``: turn an array file into an embedding store.

Sources (by suffix, read by :func:`fastcka.sources.read_source`): ``.npy``; ``.npz``
(``--array NAME``; an array named ``ids`` supplies the ids); ``.csv``/``.tsv`` (optional header;
a header column named ``id`` supplies the ids); ``.pt`` (a torch tensor, or a dict of tensors
with an optional ``ids`` list; needs torch).  Ids come from ``--ids FILE`` (one per line, read by
:func:`fastcka.protocol.read_id_file`), else from the source, else row numbers ``0..n-1``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from fastcka.errors import InputError
from fastcka.protocol import read_id_file
from fastcka.sources import read_source

from ._common import emit_result, examples, json_option, resolve, warn


@click.command("import", epilog=examples(
    "fastcka import vectors.npy --ids ids.txt -o emb.h5::/text --modality text",
    "fastcka import table.csv -o emb.h5 --nonfinite drop"))
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", "store", required=True, metavar="STORE",
              help="Output store: FILE.h5 or FILE.h5::/group (other sets in FILE are kept).")
@click.option("--ids", "ids_file", type=click.Path(exists=True, dir_okay=False, allow_dash=True),
              default=None, help="Ids, one per line (default: from the source, else row numbers).")
@click.option("--modality", type=click.Choice(["image", "text", "other"]), default="other",
              show_default=True)
@click.option("--name", default=None, help="Name of the set (default: the source file name).")
@click.option("--encoder", default="", help="Name of the encoder that made the embeddings.")
@click.option("--group", default=None, metavar="GROUP",
              help="Write the set into this group (same as STORE::/GROUP).")
@click.option("--array", default=None, metavar="NAME",
              help="Array of a .npz (or tensor of a .pt dict) to import.")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default=None,
              help="Stored dtype (default: float16 for float16 input, else float32).")
@click.option("--nonfinite", type=click.Choice(["error", "drop"]), default="error",
              show_default=True, help="Rows with NaN/Inf: fail, or drop them (ids reported).")
@click.option("--compression", type=click.Choice(["gzip", "lzf", "none"]), default="gzip",
              show_default=True, help="HDF5 compression of the embeddings (gzip is the portable one).")
@json_option
def command(src: Path, store: str, ids_file: Path | None, modality: str, name: str | None,
            encoder: str, group: str | None, array: str | None, dtype: str | None,
            nonfinite: str, compression: str, json_: bool) -> None:
    """Import embeddings from SRC (.npy, .npz, .csv, .tsv, .pt) into an HDF5 STORE."""
    from fastcka._io import check_outputs
    from fastcka.store import (
        NonfiniteWarning,
        check_store_target,
        parse_spec,
        store_info,
        utf8_text,
        write_store,
    )

    s = resolve(json_=json_)
    if group is not None:
        if "::" in store:
            raise click.UsageError("give the group either as STORE::/GROUP or with --group, not both")
        store = f"{store}::/{group.lstrip('/')}"
    out_path, _ = parse_spec(store)  # bad spec -> exit 2 before reading anything
    check_outputs({"-o": out_path}, [src, ids_file])
    check_store_target(out_path)
    X, src_ids, settings = read_source(src, array)
    if X.ndim != 2:
        raise InputError(f"{src}: embeddings must be a 2-D array (rows x dim), got shape {X.shape}")
    ids = src_ids
    if ids_file is not None:
        ids = read_id_file(ids_file, "ids file", per_row=True)
        if len(ids) != X.shape[0]:
            raise InputError(f"ids file {ids_file} has {len(ids)} ids but {src} has {X.shape[0]} rows")
    settings = {"source": utf8_text(src.name), **settings}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NonfiniteWarning)
        written = write_store(store, X, ids, modality=modality, encoder=encoder, settings=settings,
                              name=name if name is not None else utf8_text(src.stem), dtype=dtype,
                              nonfinite=nonfinite,
                              compression=None if compression == "none" else compression)
    for w in caught:
        if issubclass(w.category, NonfiniteWarning):
            warn(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    info = store_info(store)
    result = {"store": info["spec"], "n": info["n"], "dim": info["dim"], "dtype": info["dtype"],
              "modality": info["modality"], "encoder": info["encoder"],
              "dropped": int(X.shape[0] - written.n),
              "ids_from": "file" if ids_file else ("source" if src_ids is not None else "row numbers")}
    emit_result("import", inputs={"src": str(src), "ids": str(ids_file) if ids_file else None},
                outputs={"store": info["spec"]}, results=result, as_json=s.json, device="cpu",
                text=f"wrote {info['n']} x {info['dim']} {info['dtype']} embeddings to "
                     f"{info['spec']} (ids from {result['ids_from']})")
