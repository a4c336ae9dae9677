"""``fastcka info``: what an embedding store holds."""

from __future__ import annotations

import json

import click

from ._common import emit_result, examples, json_option, resolve


def format_info(info: dict) -> str:
    """A readable two-column table of :func:`fastcka.store.store_info`'s result."""
    rows = [
        ("store", info["spec"]),
        ("rows (n)", info["n"]),
        ("dim", info["dim"]),
        ("dtype", info["dtype"]),
        ("modality", info["modality"]),
        ("encoder", info["encoder"] or "-"),
        ("name", info.get("name") or "-"),
        ("settings", json.dumps(info["settings"], sort_keys=True) if info["settings"] else "-"),
        ("ids (first)", ", ".join(info["ids_sample"]) + (", ..." if info["n"] > len(info["ids_sample"]) else "")),
        ("created", info["created"] or "-"),
        ("fastcka version", info["fastcka_version"] or "-"),
        ("format version", info["format_version"]),
        ("chunks", "x".join(map(str, info["chunks"])) if info.get("chunks") else "contiguous"),
        ("compression", info.get("compression") or "none"),
        ("file size", f"{info['file_bytes']:,} bytes"),
        ("sets in file", ", ".join(info["groups"])),
        ("labels", _labels_text(info.get("labels"))),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _labels_text(lab: dict | None) -> str:
    """``10 classes (int64): 0 x100, 1 x100, ...`` or ``-``."""
    if not lab:
        return "-"
    items = list(lab["counts"].items())
    shown = ", ".join(f"{k} x{v}" for k, v in items[:6]) + (", ..." if len(items) > 6 else "")
    return f"{lab['n_classes']} classes ({lab['dtype']}): {shown}"


@click.command("info", epilog=examples(
    "fastcka info embeddings.h5",
    "fastcka --json info embeddings.h5::/text"))
@click.argument("store", metavar="STORE")
@json_option
def command(store: str, json_: bool) -> None:
    """Describe the embedding set STORE (FILE.h5 or FILE.h5::/group)."""
    from fastcka.store import store_info

    s = resolve(json_=json_)
    sets = _sets_of_file(store)
    if sets is not None:  # a file holding several sets: describe each one
        infos = [store_info(f"{store}::{g}") for g in sets]
        text = "\n\n".join(format_info(i) for i in infos)
        emit_result("info", inputs={"store": store}, outputs={},
                    results={"spec": str(store), "groups": sets, "sets": infos},
                    text=f"{store}: {len(sets)} embedding sets\n\n{text}", as_json=s.json,
                    device="cpu")
        return
    info = store_info(store)
    emit_result("info", inputs={"store": store}, outputs={}, results=info,
                text=format_info(info), as_json=s.json, device="cpu")


def _sets_of_file(store: str) -> list[str] | None:
    """The sets of a plain FILE.h5 (no ::/group) holding several sets and none at its root."""
    from pathlib import Path

    from fastcka.store import list_sets

    if "::" in str(store) or not Path(store).is_file():
        return None
    try:
        sets = list_sets(store)
    except Exception:  # not a store: store_info gives the one-line error
        return None
    return sets if len(sets) > 1 and "/" not in sets else None
