"""``fastcka import``: turn an array file into an embedding store.

Sources (by suffix): ``.npy``; ``.npz`` (``--array NAME``; an array named ``ids`` supplies the
ids); ``.csv``/``.tsv`` (optional header; a header column named ``id`` supplies the ids); ``.pt``
(a torch tensor, or a dict of tensors with an optional ``ids`` list; needs torch).  Ids come from
``--ids FILE`` (one per line), else from the source, else row numbers ``0..n-1``.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

import click
import numpy as np

from fastcka.errors import InputError
from fastcka.protocol import read_id_file

from ._common import emit_result
from ._options import examples, json_option, resolve, warn

SUFFIXES = (".npy", ".npz", ".csv", ".tsv", ".pt", ".pth")


def _pick(names: list[str], wanted: str | None, src: Path, what: str = "array") -> str:
    if wanted is not None:
        if wanted not in names:
            raise InputError(f"{src} has no {what} {wanted!r}; it has: {', '.join(names) or 'none'}")
        return wanted
    if len(names) == 1:
        return names[0]
    if not names:
        raise InputError(f"{src} holds no 2-D numeric {what}")
    raise InputError(f"{src} holds several {what}s ({', '.join(names)}); pick one with --array")


def _load_npy(src: Path) -> tuple[np.ndarray, list[str] | None, dict]:
    try:
        X = np.load(src, allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:  # empty, truncated or not an array
        raise InputError(f"cannot read {src} as a .npy array: {' '.join(str(exc).split())}") from None
    return X, None, {}


def _load_npz(src: Path, array: str | None) -> tuple[np.ndarray, list[str] | None, dict]:
    import zipfile
    import zlib

    try:
        return _load_npz_arrays(src, array)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"cannot read {src} as a .npz archive (truncated or damaged?): "
                         f"{' '.join(str(exc).split()) or type(exc).__name__}") from None


def _load_npz_arrays(src: Path, array: str | None) -> tuple[np.ndarray, list[str] | None, dict]:
    z = np.load(src, allow_pickle=False)
    with z:
        names = [n for n in z.files if n != "ids"]
        name = _pick(names, array, src) if array is not None else _pick(
            [n for n in names if z[n].ndim == 2 and z[n].dtype.kind in "fiub"], None, src)
        X = z[name]
        ids = None
        if "ids" in z.files:
            raw = z["ids"]
            if raw.ndim != 1:
                raise InputError(f"{src}: array 'ids' must be 1-D, got shape {raw.shape}")
            ids = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in raw.tolist()]
    return X, ids, {"array": name}


def _load_text_table(src: Path) -> tuple[np.ndarray, list[str] | None, dict]:
    delim = "\t" if src.suffix.lower() == ".tsv" else ","
    with open(src, newline="", encoding="utf-8-sig") as fh:  # a UTF-8 BOM is not part of a header
        rows = [r for r in csv.reader(fh, delimiter=delim)]
    while rows and not any(c.strip() for c in rows[-1]):
        rows.pop()
    if not rows:
        raise InputError(f"{src} is empty")

    def numeric(cell: str) -> bool:
        try:
            float(cell)
            return True
        except ValueError:
            return False

    header = None
    first = [c.strip() for c in rows[0]]
    if not all(numeric(c) for c in first):
        header, rows = first, rows[1:]
        if not rows:
            raise InputError(f"{src} has a header but no data rows")
    id_col = None
    if header is not None:
        low = [h.lower() for h in header]
        if "id" in low:
            id_col = low.index("id")
    width = len(rows[0]) if header is None else len(header)
    ids: list[str] | None = [] if id_col is not None else None
    data = np.empty((len(rows), width - (id_col is not None)), dtype=np.float64)
    line0 = 2 if header is not None else 1
    for r, row in enumerate(rows):
        if len(row) != width:
            raise InputError(f"{src} line {r + line0}: {len(row)} fields, expected {width}")
        vals = []
        for c, cell in enumerate(row):
            if c == id_col:
                ids.append(cell.strip())
                continue
            try:
                vals.append(float(cell))
            except ValueError:
                col = header[c] if header else str(c + 1)
                raise InputError(f"{src} line {r + line0}, column {col}: {cell!r} is not a number") from None
        data[r] = vals
    if data.shape[1] == 0:
        raise InputError(f"{src} has no numeric columns")
    return data, ids, ({"columns": [h for i, h in enumerate(header) if i != id_col]} if header else {})


def _load_pt(src: Path, array: str | None) -> tuple[np.ndarray, list[str] | None, dict]:
    try:
        import torch
    except ImportError:
        raise InputError(f"reading {src.suffix} files needs torch, which is not installed "
                         "(pip install 'fastcka[encoders]')") from None
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of every kind
        raise InputError(f"cannot read {src} with torch.load: {' '.join(str(exc).split())}") from None
    ids = None
    meta: dict[str, Any] = {}
    if isinstance(obj, dict):
        if "ids" in obj:
            raw = obj["ids"]
            ids = [str(x) for x in (raw.tolist() if hasattr(raw, "tolist") else list(raw))]
        tensors = {str(k): v for k, v in obj.items() if k != "ids" and isinstance(v, torch.Tensor)}
        name = _pick(list(tensors), array, src, "tensor")
        obj = tensors[name]
        meta["array"] = name
    if not isinstance(obj, torch.Tensor):
        raise InputError(f"{src} holds a {type(obj).__name__}, not a tensor (or a dict of tensors)")
    t = obj.detach().cpu()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.numpy(), ids, meta


def load_source(src: Path, array: str | None = None) -> tuple[np.ndarray, list[str] | None, dict]:
    """``(X, ids or None, settings)`` read from an array file, chosen by its suffix."""
    suffix = src.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"cannot import {src}: unknown suffix {src.suffix!r} "
                         f"(expected one of {', '.join(SUFFIXES)})")
    if array is not None and suffix not in (".npz", ".pt", ".pth"):
        raise InputError(f"--array applies to .npz and .pt sources, not {suffix}")
    if suffix == ".npy":
        return _load_npy(src)
    if suffix == ".npz":
        return _load_npz(src, array)
    if suffix in (".csv", ".tsv"):
        return _load_text_table(src)
    return _load_pt(src, array)


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
    X, src_ids, settings = load_source(src, array)
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
