"""Encoder interface shared by the built-in and Hugging Face encoders.

An encoder turns a batch of inputs into an ``(n, dim)`` float32 array in two steps:

- ``prepare``: CPU-only, thread-safe work done in the decoding workers (image decoding, resizing,
  normalisation, tokenisation);
- ``infer``: the model call on the main thread, batched, under ``torch.inference_mode`` (and
  autocast on a GPU when a reduced dtype is asked for).

Nothing here imports torch at module import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GPUUnavailableError, InputError

DTYPES = ("auto", "float32", "float16", "bfloat16")
POOLINGS = ("mean", "cls", "pooler")


@dataclass
class Encoder:
    """Base class: a named model that maps inputs of one modality to ``dim``-vectors.

    Attributes
    ----------
    name : str
        Encoder name as recorded in the store (a built-in name, a hub id or a folder path).
    modality : {"image", "text"}
    dim : int
        Embedding dimension.
    settings : dict
        JSON-serialisable description of the preprocessing/pooling, recorded in the store.
    """

    name: str
    modality: str
    dim: int
    settings: dict[str, Any] = field(default_factory=dict)

    def prepare(self, item: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def infer(self, batch: list[Any]) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class ImageEncoder(Encoder):
    """``prepare(PIL.Image) -> array`` (one image, in a worker); ``infer(list of arrays)``."""


class TextEncoder(Encoder):
    """``prepare(list[str]) -> model input`` (one batch); ``infer(prepared) -> (n, dim)``."""


# --------------------------------------------------------------------------------------------
# torch helpers (torch imported lazily)
# --------------------------------------------------------------------------------------------

def torch_device(device: str | None) -> str:
    """Map ``auto|cpu|gpu`` to a torch device string (``cpu`` or ``cuda``).

    ``gpu`` without a CUDA-capable torch raises :class:`GPUUnavailableError`; ``auto`` picks
    ``cuda`` when torch sees a GPU, else ``cpu``.
    """
    import torch

    device = (device or "auto").lower()
    if device in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise GPUUnavailableError("device 'gpu' asked for, but torch sees no CUDA GPU "
                                      f"(torch {torch.__version__}, cuda {torch.version.cuda})")
        return "cuda"
    if device == "cpu":
        return "cpu"
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    raise InputError(f"device must be auto, cpu or gpu, got {device!r}")


def resolve_dtype(dtype: str | None, device: str) -> str:
    """``auto`` -> float16 on a GPU (autocast), float32 on the CPU."""
    dtype = (dtype or "auto").lower()
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        return "float16" if device == "cuda" else "float32"
    return dtype


class TorchRunner:
    """Run a torch module on a device with optional autocast; results come back as float32 numpy."""

    def __init__(self, device: str, dtype: str) -> None:
        self.device = device
        self.dtype = dtype

    def context(self):
        import contextlib

        import torch

        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.dtype != "float32":
            stack.enter_context(torch.autocast(device_type=self.device,
                                               dtype=getattr(torch, self.dtype)))
        return stack

    def to_numpy(self, t) -> np.ndarray:
        return t.detach().float().cpu().numpy().astype(np.float32, copy=False)


def l2_normalize(t):
    """Row-wise L2 normalisation of a torch tensor (zero rows stay zero)."""
    import torch

    return t / torch.linalg.vector_norm(t.float(), dim=-1, keepdim=True).clamp_min(1e-12)


def masked_mean(hidden, mask):
    """Mean of ``hidden`` (B, T, D) over the tokens where ``mask`` (B, T) is 1."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
