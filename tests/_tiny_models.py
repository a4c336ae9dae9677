"""Tiny random Hugging Face models (built locally, saved with save_pretrained) for the encoder tests."""

from __future__ import annotations

from pathlib import Path

WORDS = ("a the dog cat red blue green circle square triangle runs on at top bottom left right "
         "large small in of background").split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s"]


def build_tiny_models(root: Path) -> dict[str, Path]:
    """Write tiny ViT (with image processor), DINOv2, ConvNeXt, BERT and CLIP models under ``root``."""
    import torch
    from transformers import (
        BertConfig,
        BertModel,
        BertTokenizerFast,
        CLIPConfig,
        CLIPModel,
        ConvNextConfig,
        ConvNextModel,
        Dinov2Config,
        Dinov2Model,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
    )

    torch.manual_seed(0)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab_file=str(root / "vocab.txt"), do_lower_case=True)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    out = {k: root / k for k in ("vit", "dinov2", "convnext", "bert", "clip")}
    ViTModel(ViTConfig(**small, intermediate_size=37, image_size=32, patch_size=8)
             ).save_pretrained(out["vit"])
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3
                      ).save_pretrained(out["vit"])
    Dinov2Model(Dinov2Config(**small, mlp_ratio=2, image_size=32, patch_size=8)
                ).save_pretrained(out["dinov2"])
    ConvNextModel(ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=32)
                  ).save_pretrained(out["convnext"])
    BertModel(BertConfig(vocab_size=len(VOCAB), **small, intermediate_size=37,
                         max_position_embeddings=64)).save_pretrained(out["bert"])
    tok.save_pretrained(out["bert"])
    clip = CLIPConfig(
        text_config=dict(vocab_size=len(VOCAB), **small, intermediate_size=37,
                         max_position_embeddings=64, pad_token_id=0, bos_token_id=2, eos_token_id=3),
        vision_config=dict(**small, intermediate_size=37, image_size=32, patch_size=8),
        projection_dim=16)
    CLIPModel(clip).save_pretrained(out["clip"])
    tok.save_pretrained(out["clip"])
    return out
