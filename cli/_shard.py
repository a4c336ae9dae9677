"""Job-array shards: ``--shard I/N`` partial outputs and their checks for ``fastcka merge``.

A partial output is an HDF5 file whose root attribute ``fastcka_partial`` (JSON) says what it
is: the command, the settings that shape the result, a fingerprint of the inputs, the shard
index and count and the rows it covers; its datasets hold that shard's piece of the result.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import click
import numpy as np

from fastcka._io import atomic_path
from fastcka.errors import InputError

FORMAT = 1
ATTR = "fastcka_partial"


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """``"I/N"`` (0 <= I < N) as ``(I, N)``; a usage error naming ``--shard`` otherwise."""
    if value is None:
        return None
    i, sep, n = str(value).partition("/")
    if not sep or not i.strip().isdigit() or not n.strip().isdigit() or not (
            0 <= int(i) < int(n)):
        raise click.BadParameter(f"expected I/N with 0 <= I < N (e.g. 0/4), got {value!r}",
                                 param_hint="'--shard'")
    return int(i), int(n)


def shard_option(f):
    return click.option(
        "--shard", default=None, metavar="I/N",
        help="Compute only shard I of N (0-based, e.g. $SLURM_ARRAY_TASK_ID/N) and write a "
             "partial output to -o; `fastcka merge` puts the parts together.")(f)


def shard_range(units: list, shard: tuple[int, int]) -> list:
    """The units of shard I of N: a contiguous run, the sizes differing by at most one."""
    i, n = shard
    return units[i * len(units) // n:(i + 1) * len(units) // n]


def fingerprint(*arrays: Any) -> str:
    """sha256 over the arrays' dtype, shape and bytes (and strings' UTF-8)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.kind in "OUS":
            data = "\x00".join(str(x) for x in a.ravel()).encode()
            h.update(f"str{a.shape}".encode())
        else:
            a = np.ascontiguousarray(a)
            data = a.tobytes()
            h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def write_partial(path: str, command: str, settings: dict, inputs: str, shard: tuple[int, int],
                  rows: tuple[int, int], data: dict[str, np.ndarray]) -> None:
    """Write one shard's partial output atomically."""
    import h5py

    head = {"format": FORMAT, "command": command, "settings": settings, "inputs": inputs,
            "shard": shard[0], "n_shards": shard[1], "rows": list(rows)}
    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        f.attrs[ATTR] = json.dumps(head)
        for key, arr in data.items():
            arr = np.asarray(arr)
            if arr.dtype.kind in "OU":
                f.create_dataset(key, data=arr.astype(object), dtype=h5py.string_dtype("utf-8"))
            else:
                f.create_dataset(key, data=arr)


def mark_partial(path: str, command: str, settings: dict, inputs: str, shard: tuple[int, int],
                 rows: tuple[int, int], extra: dict | None = None) -> None:
    """Make the HDF5 file ``path`` (a shard's store) a partial output: its head last, so that
    a shard killed before this point is refused by ``fastcka merge``, never half-merged."""
    import h5py

    head = {"format": FORMAT, "command": command, "settings": settings, "inputs": inputs,
            "shard": shard[0], "n_shards": shard[1], "rows": list(rows), **(extra or {})}
    with h5py.File(path, "a") as f:
        f.attrs[ATTR] = json.dumps(head)
        f.flush()


def read_head(path: str) -> dict:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get(ATTR)
    except (OSError, FileNotFoundError) as exc:
        raise InputError(f"cannot read partial output {path}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    if raw is None:
        raise InputError(f"{path} is not a fastcka partial output (made with --shard)")
    head = json.loads(raw)
    if head.get("format") != FORMAT:
        raise InputError(f"{path}: partial output format {head.get('format')} is not {FORMAT}")
    head["path"] = str(path)
    return head


def read_data(path: str) -> dict[str, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        return {k: (f[k].asstr()[()] if h5py.check_string_dtype(f[k].dtype) else f[k][()])
                for k in f}


def check_parts(paths: list[str]) -> list[dict]:
    """The heads of ``paths`` in shard order, after checking that they form one complete set.

    Refuses (one-line InputError) another command, other settings or inputs, a different
    shard count, a repeated shard and a missing one.
    """
    if not paths:
        raise InputError("give the partial outputs to merge")
    heads = [read_head(p) for p in paths]
    first = heads[0]
    seen: dict[int, str] = {}
    for h in heads:
        for key, what in (("command", "command"), ("n_shards", "shard count"),
                          ("settings", "settings"), ("inputs", "inputs")):
            if h[key] != first[key]:
                raise InputError(f"{h['path']} was made with other {what} than {first['path']}; "
                                 f"all parts must come from one sharded run")
        if h["shard"] in seen:
            raise InputError(f"shard {h['shard']}/{h['n_shards']} given twice: "
                             f"{seen[h['shard']]} and {h['path']}")
        seen[h["shard"]] = h["path"]
    missing = [i for i in range(first["n_shards"]) if i not in seen]
    if missing:
        raise InputError(f"missing shard(s) {', '.join(map(str, missing))} of "
                         f"{first['n_shards']}")
    heads.sort(key=lambda h: h["shard"])
    for a, b in zip(heads, heads[1:], strict=False):
        if a["rows"][1] != b["rows"][0]:
            raise InputError(f"{b['path']} does not continue {a['path']} (rows "
                             f"{a['rows']} then {b['rows']})")
    return heads
