"""Benchmark of the encoder stage: images/s and captions/s of the built-in encoders on the CPU.

Usage::

    python bench/embed.py [--images N] [--device cpu|gpu] [--out DIR]

Reference, measured in the same run: the naive loop of ``../shared/data/README.md`` (decode and
preprocess one image, run the model on it, next image; one caption at a time for text).  Ours:
``fastcka.encoders.embed_images`` / ``embed_texts`` (decoding in worker threads, batched
inference under ``torch.inference_mode``, every batch committed to a resumable HDF5 store, so
the store I/O is included).  Inputs: the first N Flickr8k images and their 5 captions each from
``../shared/data`` when present, else N synthetic scenes (``fastcka.scenes``).  Each timing is
the best of 2 after a warm-up.  Writes ``bench/results/embed.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FASTCKA_SHARED_DATA", ROOT.parent / "shared" / "data"))


def machine() -> str:
    import torch

    return (f"{cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")


def inputs(n: int, tmp: Path):
    from fastcka.datasets import read_images, read_texts

    if (SHARED / "flickr8k").is_dir():
        imgs = read_images(SHARED / "flickr8k", limit=n)
        keep = {r.id for r in imgs}
        texts = [r for r in read_texts(SHARED / "flickr8k") if r.id in keep]
        return imgs, texts, f"first {n} Flickr8k images (JPEG, ~500x375) and their 5 captions each"
    from fastcka.scenes import write_scenes

    write_scenes(tmp / "scenes", n=n)
    return (read_images(tmp / "scenes"), read_texts(tmp / "scenes" / "captions.csv"),
            f"{n} synthetic scenes (PNG 224x224), 1 caption each")


def best(fn, repeat: int = 2) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def naive_images(enc, recs):
    from fastcka.datasets import load_image

    return np.concatenate([enc.infer([enc.prepare(load_image(r))]) for r in recs])


def naive_texts(enc, recs):
    rows = []
    for r in recs:
        rows.append(np.mean([enc.infer(enc.prepare([c]))[0] for c in r.captions], axis=0))
    return np.stack(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from fastcka.encoders import embed_images, embed_texts, get_encoder
    from fastcka.store import read_store

    print(machine(), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        imgs, texts, what = inputs(args.images, tmp)
        n_caps = sum(len(r.captions) for r in texts)
        print(f"inputs: {what}", flush=True)

        enc = get_encoder("efficientnet-lite0", "image", device=args.device)
        naive_images(enc, imgs[:4])  # warm-up
        out = tmp / "i.h5"
        t_ref = best(lambda: naive_images(enc, imgs), repeat=1)
        ref = naive_images(enc, imgs[:16])
        for bs, workers in ((4, 2), (32, 2)):  # 4: the CPU default; 32: the GPU default
            t = best(lambda bs=bs, w=workers: embed_images(imgs, enc, str(out), batch_size=bs,
                                                           workers=w, show_progress=False))
            err = float(np.abs(read_store(out).X[:16] - ref).max())
            rows.append(("efficientnet-lite0", f"images (batch {bs}, {workers} decode threads)",
                         len(imgs), len(imgs) / t_ref, len(imgs) / t, err))
            print(rows[-1], flush=True)

        for name in ("minilm-l6", "e5-small-multilingual"):
            enc = get_encoder(name, "text", device=args.device)
            naive_texts(enc, texts[:2])
            t_ref = best(lambda enc=enc: naive_texts(enc, texts), repeat=1)
            ref = naive_texts(enc, texts[:16])
            out = tmp / f"{name}.h5"
            t = best(lambda enc=enc, out=out: embed_texts(texts, enc, str(out), batch_size=64,
                                                           show_progress=False))
            err = float(np.abs(read_store(out).X[:16] - ref).max())
            rows.append((name, "captions (batch 64, caption mean)", n_caps, n_caps / t_ref,
                         n_caps / t, err))
            print(rows[-1], flush=True)

    lines = ["# Encoder stage throughput (`bench/embed.py`)", "",
             f"Machine: {machine()}; device {args.device}.", f"Inputs: {what}.", "",
             "Reference (same run): the naive loop of the data README, one image (one caption) "
             "at a time through the same model.  Ours: `embed_images`/`embed_texts` (threaded "
             "decoding, batched inference under `torch.inference_mode`, resumable HDF5 store "
             "writes included).  Best of 2 runs after a warm-up (reference: one run).", "",
             "| encoder | what | inputs | naive /s | fastcka /s | speed-up | max abs diff vs naive |",
             "|---|---|---|---|---|---|---|"]
    for name, kind, n, r_ref, r, err in rows:
        lines.append(f"| {name} | {kind} | {n} | {r_ref:.1f} | {r:.1f} | {r / r_ref:.2f}x | {err:.1e} |")
    lines.append("")
    text = "\n".join(lines)
    print(text)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "embed.md" if args.device == "cpu" else "embed_gpu.md"
    (out_dir / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
