"""``fastcka export``: an embedding set back to a ``.npy`` array (and its ids to a text file)."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from fastcka._io import atomic_path, atomic_write_text, check_outputs

from ._common import emit_result, examples, json_option, resolve


class _Writes:
    """A file seen only through its ``write`` method."""

    def __init__(self, fh) -> None:
        self.write = fh.write


@click.command("export", epilog=examples(
    "fastcka export embeddings.h5::/image -o image.npy --ids-out image_ids.txt"))
@click.argument("store", metavar="STORE")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output .npy file (row i = id i).")
@click.option("--ids-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the ids, one per line, to this file.")
@json_option
def command(store: str, output: Path, ids_out: Path | None, json_: bool) -> None:
    """Export the embeddings of STORE to a .npy file (written atomically)."""
    from fastcka.store import read_store

    s = resolve(json_=json_)
    if output.suffix.lower() != ".npy":
        raise click.BadParameter(f"the output must end in .npy, got {output.name!r}",
                                 param_hint="'-o' / '--output'")
    if ids_out is not None and ids_out.resolve() == output.resolve():
        raise click.BadParameter("--ids-out must differ from the .npy output", param_hint="'--ids-out'")
    check_outputs({"-o": output, "--ids-out": ids_out}, [store])
    es = read_store(store)
    with atomic_path(output, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            # through .write (not ndarray.tofile) so that a full disk is an ENOSPC OSError
            np.save(_Writes(fh), es.X, allow_pickle=False)
        if ids_out is not None:
            atomic_write_text(ids_out, "".join(f"{i}\n" for i in es.ids.tolist()))
    result = {"store": es.spec, "output": str(output), "ids_out": str(ids_out) if ids_out else None,
              "n": es.n, "dim": es.dim, "dtype": str(es.X.dtype)}
    emit_result("export", inputs={"store": store},
                outputs={"output": str(output), "ids_out": str(ids_out) if ids_out else None},
                results=result, as_json=s.json, device="cpu",
                text=f"wrote {es.n} x {es.dim} {es.X.dtype} array to {output}"
                     + (f" and {es.n} ids to {ids_out}" if ids_out else ""))
