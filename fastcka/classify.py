"""Image classification by matching: images scored against class prompts (METHOD §4).

Each class ``c`` has a *prompt* embedding ``P[c]`` from a text encoder (the class name put into
templates such as ``"a photo of a {}."``, several averaged), or from any store whose ids are the
classes.  Classification reuses the cross-modal scorers of :mod:`fastcka.retrieval` with the
images as source queries and the C prompts as target candidates, given a paired base set:

- **in-domain seeds** (the reference code's setting): ``seeds`` labelled images of the same set,
  balanced over classes (``seeds // C`` per class, the remainder to classes drawn at random), and
  the text side of each seed pair is the prompt of its class: ``Sb = X[seeds]``,
  ``Tb = P[labels[seeds]]``.  The other images are scored.
- **cross-domain base**: captioned pairs ``(BT, BI)`` of another dataset (caption embeddings from
  the same text encoder as the prompts, image embeddings from the same image encoder as the
  images); every image is scored.

For each method, ``score[i, c]`` is local CKA ``CKA([x_i ; Sb], [P_c ; Tb])`` (linear, rbf) or a
baseline (``linreg``, ``relative``, ``cosine`` for equal dimensions, and ``knn``: the cosine to the
nearest seed image of class c, the nearest-neighbour reference that uses the labelled seed images
alone).  The prediction is the arg-max over classes; top-k is the share of images whose class is
among the k best scores.  ``balanced=True`` instead assigns each class ``q // C`` or
``q // C + 1`` of the ``q`` scored images (exactly ``q / C`` when C divides q) by one maximising
linear assignment on the score matrix with each class column replicated (classification as
matching; the paper's code does not have it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._callable_module import make_module_callable
from ._classify_labels import (  # noqa: F401  (re-exported: the labels, prompts and seeds)
    DEFAULT_TEMPLATE,
    check_classes,
    check_templates,
    class_prompts,
    draw_seeds,
    read_classes,
    read_labels,
    resolve_labels,
)
from ._classify_output import confusion_text, write_classification  # noqa: F401  (re-exported)
from .backend import check_matrix, to_host
from .errors import InputError

__all__ = ["classify", "ClassifyResult", "MethodResult", "balanced_assignment", "draw_seeds",
           "resolve_labels", "class_prompts", "parse_classify_methods", "read_classes",
           "read_labels", "CLASSIFY_METHODS", "DEFAULT_TEMPLATE"]

DEFAULT_METHODS = ("local-cka:linear", "local-cka:rbf", "linreg", "relative")


def _classify_choices() -> dict[str, list[tuple[str, str, str]]]:
    from .evaluate import METHOD_CHOICES

    out = {k: v for k, v in METHOD_CHOICES.items() if not k.startswith("faq")}
    out["knn"] = [("knn", "", "")]
    return out


CLASSIFY_METHODS = tuple(_classify_choices())


def parse_classify_methods(methods: Any) -> list[tuple[str, str, str]]:
    """Method tokens -> (method, kernel, sigma) variants (those of ``fastcka eval`` but FAQ,
    plus ``knn``)."""
    from .evaluate import parse_methods

    return parse_methods(methods, choices=_classify_choices())


def method_name(method: str, kernel: str, sigma: str) -> str:
    """``local-cka/rbf/paper``, ``linreg``, ...: one label per variant."""
    return "/".join(x for x in (method, kernel, sigma) if x)


# --------------------------------------------------------------------------------------------
# scores and assignments
# --------------------------------------------------------------------------------------------

def balanced_assignment(scores: Any) -> np.ndarray:
    """Assign each of the q rows (images) one of the C columns (classes), every class getting
    ``q // C`` or ``q // C + 1`` rows (``q % C`` classes the larger share), maximising the total
    score.

    One maximising linear assignment on the scores with each class column replicated
    ``ceil(q / C)`` times; when C does not divide q, ``C - q % C`` dummy rows may take only the
    last replica of a class (each class has one), so exactly that many classes get the smaller
    share.  Returns the (q,) int64 class of each row.
    """
    from scipy.optimize import linear_sum_assignment

    S = check_matrix(scores, "scores", dtype=np.float64)
    q, C = S.shape
    if q < C:
        raise InputError(f"a balanced assignment needs at least as many images as classes, got "
                         f"{q} images and {C} classes")
    hi = -(-q // C)
    r = q % C
    cols = np.repeat(np.arange(C), hi)                 # replica j of class c at column c*hi + j
    M = np.repeat(S, hi, axis=1)
    if r:
        big = (float(S.max() - S.min()) + 1.0) * (q + C) + 1.0
        dummy = np.full((C - r, C * hi), -big)
        dummy[:, hi - 1::hi] = 0.0                      # only the last replica of each class
        M = np.vstack([M, dummy])
    rows, cc = linear_sum_assignment(M, maximize=True)
    out = np.empty(q, dtype=np.int64)
    keep = rows < q
    out[rows[keep]] = cols[cc[keep]]
    return out


def _knn_scores(Xq: np.ndarray, Xb: np.ndarray, lb: np.ndarray, C: int) -> np.ndarray:
    def unit(A):
        n = np.linalg.norm(A, axis=1, keepdims=True)
        return A / np.where(n > 0, n, 1.0)

    sim = unit(Xq) @ unit(Xb).T
    out = np.full((Xq.shape[0], C), -np.inf)
    for c in range(C):
        m = lb == c
        if m.any():
            out[:, c] = sim[:, m].max(axis=1)
    return out


@dataclass
class MethodResult:
    """The classification of the scored images by one method.

    Attributes
    ----------
    method, kernel, sigma : str
        The variant (``local-cka``/``linear``, ``linreg``/``""``, ...); ``name`` joins them.
    scores : (q, C) float64
        Image × class scores (higher = more alike).
    predictions : (q,) int64
        The predicted class of each scored image (arg-max, or the balanced assignment).
    top1, top5 : float
        Share of images whose class is the best / among the 5 best scores (arg-max ranking,
        also with ``balanced``; top-5 counts min(5, C) classes).
    accuracy : float
        Share of correct ``predictions`` (= ``top1`` unless ``balanced``).
    per_class : (C,) float
        Accuracy of ``predictions`` per true class (NaN for a class with no scored image).
    confusion : (C, C) int64
        ``confusion[t, p]``: scored images of class t predicted as p.
    seconds : float
    """

    method: str
    kernel: str
    sigma: str
    scores: np.ndarray = field(repr=False)
    predictions: np.ndarray = field(repr=False)
    top1: float
    top5: float
    accuracy: float
    per_class: np.ndarray = field(repr=False)
    confusion: np.ndarray = field(repr=False)
    balanced: bool = False
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return method_name(self.method, self.kernel, self.sigma)


@dataclass
class ClassifyResult:
    """What :func:`classify` returns.

    Attributes
    ----------
    classes : list of str
    methods : list of MethodResult
        In the order of the ``methods`` argument.
    query_rows : (q,) int
        The rows of ``images`` that were scored (all rows but the seeds, or all with ``base``).
    labels : (q,) int64
        Their true classes.
    seed_rows : (m,) int or None
        In-domain seeds (rows of ``images``); None with a cross-domain ``base``.
    n_seeds : int
        Seed pairs used (the base size).
    balanced : bool
    """

    classes: list[str]
    methods: list[MethodResult]
    query_rows: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    seed_rows: np.ndarray | None = field(default=None, repr=False)
    n_seeds: int = 0
    balanced: bool = False
    cross_domain: bool = False

    def __getitem__(self, name: str) -> MethodResult:
        for m in self.methods:
            if name in (m.name, m.method):
                return m
        raise KeyError(f"no method {name!r}; have {', '.join(m.name for m in self.methods)}")

    @property
    def n_queries(self) -> int:
        return int(len(self.query_rows))

    @property
    def chance(self) -> float:
        return 1.0 / len(self.classes)

    def summary(self) -> list[dict[str, Any]]:
        """One row per method: method, kernel, sigma, top1, top5, accuracy, n_queries, n_seeds."""
        return [{"method": m.method, "kernel": m.kernel, "sigma": m.sigma, "top1": m.top1,
                 "top5": m.top5, "accuracy": m.accuracy, "balanced": self.balanced,
                 "n_queries": self.n_queries, "n_seeds": self.n_seeds,
                 "n_classes": len(self.classes), "seconds": m.seconds} for m in self.methods]

    def per_class_rows(self) -> list[dict[str, Any]]:
        """Tidy rows (method, kernel, sigma, class, n, accuracy)."""
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return [{"method": m.method, "kernel": m.kernel, "sigma": m.sigma, "class": c,
                 "n": int(counts[i]), "accuracy": float(m.per_class[i])}
                for m in self.methods for i, c in enumerate(self.classes)]

    def to_dict(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "n_queries": self.n_queries,
                "n_seeds": self.n_seeds, "balanced": self.balanced,
                "cross_domain": self.cross_domain, "chance": self.chance,
                "methods": [{"name": m.name, "method": m.method, "kernel": m.kernel,
                             "sigma": m.sigma, "top1": m.top1, "top5": m.top5,
                             "accuracy": m.accuracy,
                             "per_class": dict(zip(self.classes, m.per_class.tolist(),
                                                   strict=True)),
                             "confusion": m.confusion.tolist(), "seconds": m.seconds}
                            for m in self.methods]}

    def __repr__(self) -> str:
        accs = ", ".join(f"{m.name}={m.top1:.3f}" for m in self.methods)
        return (f"ClassifyResult({len(self.classes)} classes, {self.n_queries} images, "
                f"{self.n_seeds} seeds; top1 {accs})")


def _topk(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, scores.shape[1])
    mine = scores[np.arange(len(labels)), labels]
    better = (scores > mine[:, None]).sum(axis=1)     # ties count in the image's favour
    return float(np.mean(better < k)) if len(labels) else math.nan


def _evaluate(method, kernel, sigma, scores, labels, C, balanced, seconds) -> MethodResult:
    scores = np.asarray(scores, dtype=np.float64)
    pred = balanced_assignment(scores) if balanced else np.argmax(scores, axis=1).astype(np.int64)
    conf = np.zeros((C, C), dtype=np.int64)
    np.add.at(conf, (labels, pred), 1)
    counts = conf.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per = np.where(counts > 0, np.diag(conf) / np.maximum(counts, 1), np.nan)
    return MethodResult(method, kernel, sigma, scores, pred, _topk(scores, labels, 1),
                        _topk(scores, labels, 5), float(np.mean(pred == labels)),
                        per.astype(np.float64), conf, bool(balanced), seconds)


def classify(images: Any, prompts: Any, labels: Any, *, classes: Sequence[str] | None = None,
             seeds: Any = None, base: tuple | None = None, methods: Any = DEFAULT_METHODS,
             balanced: bool = False, rng: int = 0, device: str = "auto") -> ClassifyResult:
    """Classify images by matching them to class prompts, given seed pairs.

    Parameters
    ----------
    images : (n, p) array_like
        Image embeddings.
    prompts : (C, d) array_like
        Row c: the prompt embedding of class c (see :func:`class_prompts`).
    labels : (n,) array_like
        True class of every image: indices ``0..C-1`` or class names (see
        :func:`resolve_labels`).  They pick the in-domain seeds and score the result.
    classes : sequence of str, optional
        Class names (default ``"0" .. "C-1"``); unique.
    seeds : int or array of int, optional
        In-domain: the number of labelled seed images, balanced over classes and drawn with
        ``rng`` (default ``5 * C``), or their rows.  With ``base``: draw that many of the base
        pairs (default all).
    base : (BT, BI), optional
        Cross-domain seed pairs: caption embeddings (same text encoder as ``prompts``) and image
        embeddings (same image encoder as ``images``) of another dataset, paired by row.  Every
        image is then scored.
    methods : str or list of str
        ``local-cka`` (linear, rbf paper-σ, rbf base-σ), ``local-cka:linear|rbf|rbf-base``,
        ``linreg``, ``relative``, ``cosine`` (equal dimensions only), ``knn`` (nearest labelled
        seed image; in-domain only).  Default: local CKA linear and rbf, linreg, relative.
    balanced : bool
        Assign each class q/C of the q scored images by a linear assignment (see
        :func:`balanced_assignment`) instead of the arg-max.
    rng : int
        Seed of the seed draw.
    device : {"auto", "cpu", "gpu"}

    Returns
    -------
    ClassifyResult
    """
    variants = parse_classify_methods(methods)
    X = np.asarray(check_matrix(images, "images", min_rows=2), dtype=np.float64)
    P = np.asarray(check_matrix(prompts, "prompts", min_rows=2), dtype=np.float64)
    C = P.shape[0]
    classes = check_classes(classes if classes is not None else [str(i) for i in range(C)])
    if len(classes) != C:
        raise InputError(f"{len(classes)} class names for {C} prompt rows")
    y = resolve_labels(labels, classes)
    if y.shape[0] != X.shape[0]:
        raise InputError(f"{y.shape[0]} labels for {X.shape[0]} images")
    if isinstance(rng, bool) or not isinstance(rng, (int, np.integer)):
        raise InputError(f"rng must be an integer seed, got {rng!r}")
    seed_rows = None
    if base is None:
        seed_rows = _seed_rows(seeds, y, C, len(X), int(rng))
        qrows = np.setdiff1d(np.arange(X.shape[0]), seed_rows).astype(np.intp)
        Sb, Tb, lb = X[seed_rows], P[y[seed_rows]], y[seed_rows]
    else:
        Sb, Tb = _cross_domain_base(base, seeds, X, P, variants, int(rng))
        qrows, lb = np.arange(X.shape[0], dtype=np.intp), None
    _check_runnable(variants, len(Sb), X, P, balanced, len(qrows))
    Xq, yq = X[qrows], y[qrows]
    results = []
    for m, kern, sig in variants:
        t0 = time.perf_counter()
        sc = _scores(m, kern, sig, Xq, P, Sb, Tb, lb, C, device)
        results.append(_evaluate(m, kern, sig, sc, yq, C, balanced, time.perf_counter() - t0))
    return ClassifyResult(classes, results, qrows, yq, seed_rows, int(len(Sb)), bool(balanced),
                          base is not None)


def _seed_rows(seeds: Any, y: np.ndarray, C: int, n: int, rng: int) -> np.ndarray:
    """In-domain seed rows: ``seeds`` (default 5 C) drawn balanced over classes, or given."""
    if seeds is None:
        seeds = 5 * C
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        return draw_seeds(y, int(seeds), C, rng)
    seed_rows = np.unique(np.asarray(seeds, dtype=np.intp))
    if seed_rows.size == 0 or seed_rows.size != np.asarray(seeds).size or \
            seed_rows.min() < 0 or seed_rows.max() >= n:
        raise InputError(f"seed rows must be distinct rows 0..{n - 1}")
    if seed_rows.size >= n:
        raise InputError("the seeds leave no image to classify")
    return seed_rows


def _cross_domain_base(base: Any, seeds: Any, X: np.ndarray, P: np.ndarray, variants: list,
                       rng: int) -> tuple[np.ndarray, np.ndarray]:
    """``(Sb, Tb)``: the base images and captions, checked against the images and prompts
    (``seeds`` of them drawn with ``rng`` when a count is given)."""
    if len(base) != 2:
        raise InputError("base must be a pair (BT, BI): caption and image embeddings")
    BT = np.asarray(check_matrix(base[0], "base text", min_rows=2), dtype=np.float64)
    BI = np.asarray(check_matrix(base[1], "base images", min_rows=2), dtype=np.float64)
    if len(BT) != len(BI):
        raise InputError(f"base text and images must be paired by row, got {len(BT)} and "
                         f"{len(BI)} rows")
    if BT.shape[1] != P.shape[1]:
        raise InputError(f"the prompts have dimension {P.shape[1]} but the base text store "
                         f"has {BT.shape[1]}: embed the prompts with the base captions' "
                         f"text encoder")
    if BI.shape[1] != X.shape[1]:
        raise InputError(f"the images have dimension {X.shape[1]} but the base images have "
                         f"{BI.shape[1]}: use the same image encoder")
    if any(m == "knn" for m, _, _ in variants):
        raise InputError("method 'knn' needs labelled seed images of the same set; it has "
                         "no meaning with a cross-domain base")
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or \
                not 4 <= seeds <= len(BT):
            raise InputError(f"with a base, seeds must be a count 4..{len(BT)}, got {seeds!r}")
        pick = np.sort(np.random.default_rng(rng).permutation(len(BT))[: int(seeds)])
        BT, BI = BT[pick], BI[pick]
    return BI, BT


def _check_runnable(variants: list, n_base: int, X: np.ndarray, P: np.ndarray, balanced: bool,
                    q: int) -> None:
    """Refuse methods the base, the dimensions or the number of scored images cannot run."""
    if n_base < 4 and any(m != "knn" for m, _, _ in variants):
        raise InputError(f"local CKA and the baselines need at least 4 seed pairs, got {n_base}")
    if any(m == "cosine" for m, _, _ in variants) and X.shape[1] != P.shape[1]:
        raise InputError(f"method 'cosine' needs images and prompts of the same dimension, got "
                         f"{X.shape[1]} and {P.shape[1]}: use local-cka, linreg or relative")
    if balanced and q < len(P):
        raise InputError(f"--balanced needs at least as many images to classify as classes, "
                         f"got {q} and {len(P)}")


def _scores(m: str, kern: str, sig: str, Xq: np.ndarray, P: np.ndarray, Sb: np.ndarray,
            Tb: np.ndarray, lb: np.ndarray | None, C: int, device: str) -> np.ndarray:
    """The q × C score matrix of one method (host array)."""
    if m == "knn":
        return _knn_scores(Xq, Sb, lb, C)
    from .retrieval import score_matrix

    sc = score_matrix(m, Xq, P, Sb, Tb, kernel=kern or "linear", sigma=sig or "paper",
                      device=device)
    return np.asarray(to_host(sc))


make_module_callable(__name__, classify)
