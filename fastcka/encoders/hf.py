"""Hugging Face encoders: vision backbones, sentence-transformers style text models, CLIP towers.

A model is named by a hub id (used only when its files are already in the local Hugging Face
cache: the stage never downloads) or by a local folder written with ``save_pretrained``.

- Vision backbones (ViT, DINOv2, ConvNeXt, ...): ``pooling="mean"`` averages the last hidden
  state over its tokens (over H x W for convolutional feature maps), ``"cls"`` takes token 0,
  ``"pooler"`` takes the model's ``pooler_output``.  Images are preprocessed by the model's own
  image processor when the folder has one, else resized (bicubic) to ``config.image_size`` and
  normalised with the ImageNet mean/std.
- Text models (BERT-like, sentence-transformers style): the tokenizer of the folder, the last
  hidden state mean-pooled over the attention mask (``"cls"``/``"pooler"`` also available), then
  L2-normalised per text.
- CLIP-style dual encoders (a config with ``vision_config`` and ``text_config``): the image tower
  (``get_image_features``) or the text tower (``get_text_features``), both L2-normalised: the
  aligned reference for the unimodal encoders.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .base import POOLINGS, ImageEncoder, TextEncoder, TorchRunner, l2_normalize, masked_mean

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or \
        os.environ.get("TRANSFORMERS_OFFLINE", "0") not in ("", "0")


def load_config(name: str):
    """The ``transformers`` config of ``name`` (a folder or a cached hub id), never downloading.

    Raises
    ------
    InputError
        When ``name`` is neither a folder with a ``config.json`` nor a hub id whose files are in
        the local cache (one line, saying the weights are not available offline).
    """
    from transformers import AutoConfig

    _quiet_transformers()
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise InputError(f"encoder folder {name} has no config.json (expected a folder written "
                             "by save_pretrained)")
        return AutoConfig.from_pretrained(str(p))
    try:
        return AutoConfig.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError):
        how = "HF_HUB_OFFLINE is set" if _offline() else "the stage never downloads"
        raise InputError(f"encoder {name!r} is not a built-in, not a local folder, and its weights "
                         f"are not available offline (not in the Hugging Face cache; {how})"
                         ) from None


def _quiet_transformers() -> None:
    """No loading bars from transformers; its warnings only with fastcka -v."""
    import logging

    from transformers.utils import logging as tlog

    tlog.disable_progress_bar()
    if not logging.getLogger("fastcka").isEnabledFor(logging.INFO):
        tlog.set_verbosity_error()


def _from_pretrained(cls, name: str, **kw):
    _quiet_transformers()
    p = Path(name).expanduser()
    src = str(p) if p.exists() else name
    try:
        return cls.from_pretrained(src, local_files_only=True, **kw)
    except (OSError, ValueError) as exc:
        raise InputError(f"encoder {name!r}: cannot load {cls.__name__} offline: "
                         f"{' '.join(str(exc).split())[:200]}") from None


def is_dual_encoder(config) -> bool:
    return getattr(config, "vision_config", None) is not None and \
        getattr(config, "text_config", None) is not None


def _check_pooling(pooling: str | None, default: str) -> str:
    pooling = pooling or default
    if pooling not in POOLINGS:
        raise InputError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    return pooling


def _features(out) -> Any:
    """``get_*_features`` returns a tensor (transformers 4) or an output with ``pooler_output`` (5)."""
    return out if hasattr(out, "dim") else out.pooler_output


# --------------------------------------------------------------------------------------------
# image side
# --------------------------------------------------------------------------------------------

class _Preprocessor:
    """Image -> CHW float32 array, with the model's image processor or a config-based fallback."""

    def __init__(self, name: str, config) -> None:
        self.processor = None
        p = Path(name).expanduser()
        has_local = p.exists() and (p / "preprocessor_config.json").is_file()
        if has_local or not p.exists():
            try:
                from transformers import AutoImageProcessor

                self.processor = _from_pretrained(AutoImageProcessor, name)
            except InputError:
                if has_local:
                    raise
                self.processor = None
        vc = getattr(config, "vision_config", None) or config
        size = getattr(vc, "image_size", 224)
        self.size = int(size[0] if isinstance(size, (list, tuple)) else size)
        self.describe = (f"{type(self.processor).__name__} of the model" if self.processor else
                         f"RGB, bicubic resize to {self.size}x{self.size}, /255, ImageNet mean/std, CHW")

    def __call__(self, img) -> np.ndarray:
        if self.processor is not None:
            out = self.processor(images=img, return_tensors="np")
            return np.asarray(out["pixel_values"][0], dtype=np.float32)
        from PIL import Image

        im = img.convert("RGB").resize((self.size, self.size), Image.BICUBIC)
        a = np.asarray(im, dtype=np.float32) / 255.0
        a = (a - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
        return np.ascontiguousarray(a.transpose(2, 0, 1))


class HFImageEncoder(ImageEncoder):
    """A Hugging Face vision backbone or the image tower of a CLIP-style model."""

    def __init__(self, name: str, *, device: str, dtype: str, pooling: str | None = None) -> None:
        import torch
        from transformers import AutoModel

        self.name = str(name)
        config = load_config(name)
        self.dual = is_dual_encoder(config)
        model = _from_pretrained(AutoModel, name).eval().to(device)
        self.model = model
        self.runner = TorchRunner(device, dtype)
        self.pre = _Preprocessor(name, config)
        if self.dual:
            if pooling not in (None, "pooler"):
                raise InputError(f"encoder {name!r} is a CLIP-style dual encoder: its image tower "
                                 f"has one output (projected pooler), pooling {pooling!r} is not available")
            self.pooling = "projection"
        else:
            self.pooling = _check_pooling(pooling, "mean")
        # probe the output dimension with one blank image
        probe = self.pre(_blank_image(self.pre.size))
        with self.runner.context():
            dim = int(self._forward(torch.from_numpy(probe[None]).to(device)).shape[-1])
        settings = {"kind": "clip-image" if self.dual else "hf-vision",
                    "model_type": getattr(config, "model_type", ""), "pooling": self.pooling,
                    "preprocessing": self.pre.describe, "dtype": dtype, "device": device,
                    "normalize": bool(self.dual)}
        super().__init__(name=str(name), modality="image", dim=dim, settings=settings)

    def _forward(self, x):
        if self.dual:
            return l2_normalize(_features(self.model.get_image_features(pixel_values=x)).float())
        out = self.model(pixel_values=x)
        if self.pooling == "pooler":
            pooled = getattr(out, "pooler_output", None)
            if pooled is None:
                raise InputError(f"encoder {self.name!r} has no pooler output; use --pooling mean or cls")
            return pooled.reshape(pooled.shape[0], -1)
        h = out.last_hidden_state
        if h.dim() == 4:  # convolutional feature map (B, C, H, W)
            if self.pooling == "cls":
                raise InputError(f"encoder {self.name!r} outputs a feature map without a CLS token; "
                                 "use --pooling mean or pooler")
            return h.float().mean((2, 3))
        return h[:, 0] if self.pooling == "cls" else h.float().mean(1)

    def prepare(self, img) -> np.ndarray:
        return self.pre(img)

    def infer(self, batch: list[np.ndarray]) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.stack(batch)).to(self.runner.device)
        with self.runner.context():
            return self.runner.to_numpy(self._forward(x))


def _blank_image(size: int):
    from PIL import Image

    return Image.new("RGB", (size, size), (127, 127, 127))


# --------------------------------------------------------------------------------------------
# text side
# --------------------------------------------------------------------------------------------

class HFTextEncoder(TextEncoder):
    """A sentence-transformers style text model (mean pooling, L2) or a CLIP text tower."""

    def __init__(self, name: str, *, device: str, dtype: str, pooling: str | None = None,
                 max_length: int | None = None, normalize: bool = True,
                 display_name: str | None = None) -> None:
        import threading

        import torch
        from transformers import AutoModel, AutoTokenizer

        self.name = str(display_name or name)
        self._local = threading.local()
        self._copy_lock = threading.Lock()
        config = load_config(name)
        self.dual = is_dual_encoder(config)
        self.tokenizer = _from_pretrained(AutoTokenizer, name)
        self.model = _from_pretrained(AutoModel, name).eval().to(device)
        self.runner = TorchRunner(device, dtype)
        self.normalize = normalize
        if self.dual:
            if pooling not in (None, "pooler"):
                raise InputError(f"encoder {name!r} is a CLIP-style dual encoder: its text tower has "
                                 f"one output (projected pooler), pooling {pooling!r} is not available")
            self.pooling = "projection"
            self.normalize = True
        else:
            self.pooling = _check_pooling(pooling, "mean")
        limit = max_length or getattr(self.tokenizer, "model_max_length", 512)
        pos = getattr(getattr(config, "text_config", None) or config, "max_position_embeddings", None)
        if not isinstance(limit, int) or limit > 100_000:
            limit = 512
        if pos:
            limit = min(limit, int(pos))
        self.max_length = int(limit)
        with self.runner.context():
            dim = int(self._forward(self.prepare(["probe"])).shape[-1])
        settings = {"kind": "clip-text" if self.dual else "hf-text",
                    "model_type": getattr(config, "model_type", ""), "pooling": self.pooling,
                    "normalize": self.normalize, "max_length": self.max_length, "dtype": dtype,
                    "device": device}
        del torch
        super().__init__(name=str(display_name or name), modality="text", dim=dim, settings=settings)

    def _thread_tokenizer(self):
        """A tokenizer per thread: a fast tokenizer called from two threads at once with
        padding/truncation can fail ("Already borrowed"), so each worker thread uses its own copy."""
        import copy
        import threading

        if threading.current_thread() is threading.main_thread():
            return self.tokenizer
        tok = getattr(self._local, "tok", None)
        if tok is None:
            with self._copy_lock:
                tok = self._local.tok = copy.deepcopy(self.tokenizer)
        return tok

    def prepare(self, texts: list[str]) -> dict:
        return dict(self._thread_tokenizer()(list(texts), padding=True, truncation=True,
                                             max_length=self.max_length, return_tensors="pt"))

    def _forward(self, batch: dict):
        batch = {k: v.to(self.runner.device) for k, v in batch.items()}
        if self.dual:
            kw = {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}
            return l2_normalize(_features(self.model.get_text_features(**kw)).float())
        out = self.model(**batch)
        if self.pooling == "pooler":
            e = getattr(out, "pooler_output", None)
            if e is None:
                raise InputError(f"encoder {self.name!r} has no pooler output; use --pooling mean or cls")
        elif self.pooling == "cls":
            e = out.last_hidden_state[:, 0]
        else:
            e = masked_mean(out.last_hidden_state.float(), batch["attention_mask"])
        e = e.float()
        return l2_normalize(e) if self.normalize else e

    def infer(self, prepared: dict) -> np.ndarray:
        with self.runner.context():
            return self.runner.to_numpy(self._forward(prepared))
