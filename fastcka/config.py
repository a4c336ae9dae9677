"""Tunables of the library: tile sizes, memory budgets, batch sizes and size thresholds.

One place for every number that trades memory for speed.  None changes a result beyond
floating-point round-off (the exact order statistics and top-k lists are exact whatever the
tiles); they only set how the work is cut.  Per-device values are dicts keyed by
:attr:`fastcka.backend.Backend.device` (``"cpu"`` / ``"gpu"``).

Values are read when a call runs, so a test (the ``small_config`` fixture of
``tests/conftest.py``) or a user may change them at run time, e.g.
``fastcka.config.CKA_TILE["cpu"] = 1024``.
"""

from __future__ import annotations

# --- CKA engine (fastcka._cka, fastcka._median) -----------------------------------------------
#: edge of one n×n kernel tile
CKA_TILE = {"cpu": 1024, "gpu": 16384}
#: RBF CKA with a selected bandwidth (paper / Kornblith σ) on the host: the kernel sums come
#: from the median's first pass (:mod:`fastcka._rbf_onepass`) for at most this many inputs
#: (its products grow as m²); 0: always the second pass
RBF_ONE_PASS_MAX_INPUTS = 6
#: most squared distances collected per median rank (float64 values)
MEDIAN_CAP = {"cpu": 2 ** 24, "gpu": 2 ** 27}
#: most pair values n(n−1)/2 for which the median's first pass collects every value (above: a
#: window placed by a sample).  CPU: collecting, copying and selecting all 12.5M values at
#: n = 5k cost more than the sampled window (RBF CKA 0.76 -> 0.49 s with the one-pass sums)
MEDIAN_DENSE = {"cpu": 2 ** 22, "gpu": 2 ** 27}
#: random pairs sampled to place the first median window
MEDIAN_SAMPLE = {"cpu": 2 ** 18, "gpu": 2 ** 21}
#: float64 elements of one sampled-pair difference chunk
MEDIAN_SAMPLE_CHUNK = {"cpu": 2 ** 22, "gpu": 2 ** 25}
#: most rows of one chunk of the feature-space linear path (one task of its thread pool; the
#: single-thread SYRK runs at ~33 GFLOP/s on 1024 rows, ~36 on 2500: bench/cka.py) and rows of
#: one block of the squared-norm pass
CKA_CHUNK_ROWS = 2560
#: the number of chunks of the linear feature path is a multiple of this (n = 10k: 4 chunks of
#: 2500 rows, an equal share for each of 2 or 4 threads)
CKA_CHUNK_GROUP = 4
#: largest Σp of the feature-space linear path ((Σp)² float64: 512 MiB)
CKA_MAX_FEATURE_DIM = 8192
#: rows of one block when an n×n Gram matrix is centred in place
GRAM_CENTER_ROWS = 1024
#: rows of one similarity block of the mutual k-NN search
KNN_BLOCK = 2048

# --- import (fastcka.sources) -----------------------------------------------------------------
#: smallest CSV/TSV file parsed by the Numba kernel: below it the row loop is faster than
#: importing Numba (and, on a first run, compiling the parser)
TEXT_PARSER_MIN_BYTES = 8 << 20

# --- local CKA and retrieval (fastcka.local_cka, fastcka.retrieval) ----------------------------
#: float64 elements of one temporary chunk of the local-CKA factors (2**22: 32 MiB)
LOCAL_CHUNK_ELEMS = 1 << 22
#: rows and columns of one streamed block of scores
RETRIEVAL_BLOCK = 2048
#: assign="sparse" (score methods' matching): candidates kept per query in each direction
MATCH_CANDIDATES = 20
#: assign="auto": the dense LAP below this many queries, the sparse path from there
MATCH_SPARSE_MIN = 8192

# --- seeded graph matching (fastcka.qap) ------------------------------------------------------
#: bytes the batched Frank–Wolfe restarts may hold at once
QAP_BATCH_BUDGET = {"cpu": 512 << 20, "gpu": 8 << 30}
#: threads of the CPU pool of FAQ restart groups (one BLAS thread each): None for the CPUs
#: this process may use, at most the BLAS threads (``--threads``, ``threadpool_limits``); the
#: results do not depend on it
QAP_THREADS: int | None = None
#: lap="auto" on the CPU takes the warm-started JV solver from this many free nodes ...
LAP_JV_MIN_FREE = 256
#: ... or from this many when several restarts run as one batch
LAP_JV_MIN_FREE_BATCHED = 64
