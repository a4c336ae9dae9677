"""fastcka: Centered Kernel Alignment and training-free matching between unimodal encoders.

Public functions are imported lazily, so ``import fastcka`` stays light: it never imports torch
or CuPy, and heavy modules load on first use.
"""

from __future__ import annotations

from ._lazy import lazy_exports
from ._version import __version__
from .backend import get_backend, gpu_available
from .errors import FastckaError, GPUUnavailableError, InputError, StoreError

# public name -> module that defines it
_LAZY = {
    # CKA engine
    "cka": "fastcka.cka",
    "hsic": "fastcka.cka",
    "gram": "fastcka.cka",
    "cka_matrix": "fastcka.cka",
    "mutual_knn": "fastcka.cka",
    "cknna": "fastcka.cka",
    "cka_permutation_test": "fastcka.cka",
    "paper_sigma": "fastcka.cka",
    "kornblith_sigma": "fastcka.cka",
    "PermutationResult": "fastcka.cka",
    # seeded graph matching
    "quadratic_assignment": "fastcka.qap",
    "seeded_match": "fastcka.seeded",
    # local CKA retrieval
    "local_cka": "fastcka.local_cka",
    "retrieve": "fastcka.retrieval",
    "match_scores": "fastcka.retrieval",
    "score_matrix": "fastcka.retrieval",
    # the paper's experiments
    "evaluate": "fastcka.evaluate",
    "EvalTable": "fastcka.evaluate",
    "read_table": "fastcka.evaluate",
    "classify": "fastcka.classify",
    "ClassifyResult": "fastcka.classify",
    # embedding store
    "read_store": "fastcka.store",
    "write_store": "fastcka.store",
    "StoreWriter": "fastcka.store",
    "EmbeddingSet": "fastcka.store",
    "align": "fastcka.store",
    "align_many": "fastcka.store",
    "iter_store": "fastcka.store",
    "store_info": "fastcka.store",
    "parse_spec": "fastcka.store",
    # seed/query selection and the demo
    "split_seeds_queries": "fastcka.protocol",
    "run_demo": "fastcka.demo",
}

__all__ = [
    "__version__",
    "get_backend",
    "gpu_available",
    "FastckaError",
    "GPUUnavailableError",
    "InputError",
    "StoreError",
    *_LAZY,
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)
