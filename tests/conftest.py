"""Shared test fixtures.

- Numba CUDA kernels run under the simulator (NUMBA_ENABLE_CUDASIM=1) unless a real GPU is
  present or the caller set the variable (the GPU check sets it to 0).  This must happen before
  numba is imported, hence at the top of conftest.
- ``backend``: parametrised over the array backends usable on this machine.
- ``shared_data``: ``../shared/data`` (tests skip with a reason where it is absent).
- ``small_config``: every tile, chunk and block of :mod:`fastcka.config` shrunk to a few rows, so
  that edge tiles, multi-pass median selection and multi-block top-k merges run on test sizes;
  ``tunables`` runs a test once with the defaults and once with ``small_config``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# shared test helpers (tests/_cli.py, tests/_tiny_models.py) import as top-level modules
sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

if "NUMBA_ENABLE_CUDASIM" not in os.environ:
    from fastcka.backend import gpu_available as _gpu_available

    os.environ["NUMBA_ENABLE_CUDASIM"] = "0" if _gpu_available() else "1"

import pytest  # noqa: E402

from fastcka.backend import get_backend, gpu_available, gpu_unavailable_reason  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FASTCKA_SHARED_DATA", ROOT.parent / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    if gpu_available():
        return
    skip = pytest.mark.skip(reason=f"needs a CUDA GPU: {gpu_unavailable_reason()}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["cpu", "gpu"])
def backend(request):
    """Each array backend that is actually usable here (gpu skips with the reason)."""
    if request.param == "gpu" and not gpu_available():
        pytest.skip(f"gpu backend not usable: {gpu_unavailable_reason()}")
    return get_backend(device=request.param)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder absent: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def reference_embeddings(shared_data):
    """(ids, image 1000x1280, text 1000x384) of the shared Flickr8k reference embeddings."""
    import numpy as np

    emb = shared_data / "embeddings"
    files = [emb / "flickr8k_ids.txt", emb / "flickr8k_image_efficientnet_lite0.npy",
             emb / "flickr8k_caption_minilm_l6_mean5.npy"]
    for f in files:
        if not f.exists():
            pytest.skip(f"reference embedding file absent: {f}")
    ids = files[0].read_text().split()
    return ids, np.load(files[1]), np.load(files[2])


#: the tunables of fastcka.config shrunk by ``small_config`` (odd sizes: ragged edge tiles)
SMALL_CONFIG = {
    "CKA_TILE": {"cpu": 29, "gpu": 29},
    "MEDIAN_CAP": {"cpu": 300, "gpu": 300},
    "MEDIAN_SAMPLE": {"cpu": 200, "gpu": 200},
    "MEDIAN_SAMPLE_CHUNK": {"cpu": 2 ** 10, "gpu": 2 ** 10},
    "CKA_CHUNK_ROWS": 17,
    "GRAM_CENTER_ROWS": 7,
    "KNN_BLOCK": 13,
    "LOCAL_CHUNK_ELEMS": 37,
    "RETRIEVAL_BLOCK": 5,
}


@pytest.fixture
def small_config(monkeypatch):
    """Shrink the tiles, chunks and blocks of :mod:`fastcka.config` for one test."""
    from fastcka import config

    for name, value in SMALL_CONFIG.items():
        assert hasattr(config, name), name
        monkeypatch.setattr(config, name, value)
    return config


@pytest.fixture(params=["default", "small"])
def tunables(request):
    """Runs a test with the default tunables and again under ``small_config``."""
    if request.param == "small":
        return request.getfixturevalue("small_config")
    from fastcka import config

    return config
