"""The CKA matrix's linear feature path: one GEMM per pair of inputs (today) against the one
concatenated SYRK it replaced, interleaved in the same run; and the matrix on a Dask
LocalCluster of 1 and 2 workers (one task per input, one per pair) against in-process.

Why: the per-pair form makes every entry independent of the other inputs, so the matrix from
per-pair tasks or job-array shards is the in-process one bit for bit; this checks that the
in-process matrix did not get slower for it.  The per-pair rows: the biased estimator's form
(no kernel diagonals: what ``cka_matrix`` computes by default) and the unbiased one's (with
them); the SYRK reference computes no diagonals either.

    python bench/cka_matrix_units.py [--rounds 5] [--n 8192] [--out bench/results/cka_matrix_units.md]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_lines  # noqa: E402


def concatenated_syrk(Xs):
    """The former feature-path statistics: ``C = Zᵀ Z`` of the column-stacked centred inputs,
    ``S[a, b] = ‖C_ab‖²`` (same chunking and centring as fastcka.cka)."""
    from fastcka import _median

    xp = np
    n = Xs[0].shape[0]
    dims = [X.shape[1] for X in Xs]
    offs = np.concatenate([[0], np.cumsum(dims)])
    affs = [_median.affine(xp, X) for X in Xs]
    C = np.zeros((offs[-1], offs[-1]))
    step = 8192  # CKA_CHUNK_ROWS of that code
    Z = np.empty((min(step, n), offs[-1]))
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        Zc = Z[: r1 - r0]
        for a, X in enumerate(Xs):
            Zc[:, offs[a]:offs[a + 1]] = _median.block64(xp, X, r0, r1, affs[a])
        C += Zc.T @ Zc
    m = len(Xs)
    S = np.zeros((m, m))
    for a in range(m):
        for b in range(a, m):
            blk = C[offs[a]:offs[a + 1], offs[b]:offs[b + 1]]
            S[a, b] = S[b, a] = (blk * blk).sum()
    return S


def main(argv=None) -> int:
    from fastcka._cka_stats import _linear_feature_stats
    from fastcka.backend import get_backend
    from fastcka.cka import cka_matrix
    from fastcka.parallel import executor

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--dims", default="256,384,512,768,256,384")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                         "cka_matrix_units.md"))
    args = ap.parse_args(argv)
    dims = [int(d) for d in args.dims.split(",")]
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(args.n, 16))
    Xs = [(np.tanh(Z @ rng.normal(size=(16, d))) + 0.3 * rng.normal(size=(args.n, d)))
          .astype(np.float32) for d in dims]
    be = get_backend(device="cpu")
    S_new = _linear_feature_stats(be, Xs).S
    S_old = concatenated_syrk(Xs)
    rel = float(np.max(np.abs(S_new - S_old) / np.abs(S_old)))

    stack = contextlib.ExitStack()
    t0 = time.perf_counter()
    c1 = stack.enter_context(executor("local:1"))
    c1.client.wait_for_workers(1)
    t1 = time.perf_counter()
    c2 = stack.enter_context(executor("local:2"))
    c2.client.wait_for_workers(2)
    t2 = time.perf_counter()
    ref = cka_matrix(Xs, device="cpu")
    for ex in (c1, c2):
        assert np.array_equal(ref, cka_matrix(Xs, device="cpu", scheduler=ex))

    for est in ("biased", "unbiased"):
        assert np.array_equal(cka_matrix(Xs, device="cpu", estimator=est),
                              cka_matrix(Xs, device="cpu", estimator=est, scheduler=c2))

    cases = {"per-pair GEMMs (fastcka today)": lambda: _linear_feature_stats(be, Xs, diags=False),
             "per-pair GEMMs + diagonals (unbiased)": lambda: _linear_feature_stats(be, Xs),
             "concatenated SYRK (before)": lambda: concatenated_syrk(Xs),
             "cka_matrix in-process": lambda: cka_matrix(Xs, device="cpu"),
             "cka_matrix, Dask 1 worker": lambda: cka_matrix(Xs, device="cpu", scheduler=c1),
             "cka_matrix, Dask 2 workers": lambda: cka_matrix(Xs, device="cpu", scheduler=c2)}
    raw: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            s = time.perf_counter()
            fn()
            raw[name].append(time.perf_counter() - s)
    stack.close()
    med = {k: statistics.median(v) for k, v in raw.items()}
    base_s, base_m = med["concatenated SYRK (before)"], med["cka_matrix in-process"]
    lines = ["# CKA matrix: per-pair units against the fused form", "",
             *machine_lines("cpu", f", dask {__import__('distributed').__version__}"),
             "",
             f"{len(Xs)} float32 inputs of n = {args.n} rows, dims {dims} (Σp = {sum(dims)}: "
             f"the linear feature path); {args.rounds} rounds, interleaved, medians; ratios "
             f"against the reference named in the same run. Cluster start-up (not in the "
             f"times): {t1 - t0:.1f} s (1 worker), {t2 - t1:.1f} s (2 workers). The "
             f"distributed matrices were checked identical to the in-process one; the two "
             f"statistics forms differ by at most {rel:.1e} relative (summation order).", "",
             "| what | seconds | ratio |", "| --- | ---: | ---: |"]
    for k in list(cases)[:3]:
        lines.append(f"| {k} | {med[k]:.3f} | {base_s / med[k]:.2f} vs SYRK |")
    for k in list(cases)[3:]:
        lines.append(f"| {k} | {med[k]:.3f} | {base_m / med[k]:.2f} vs in-process |")
    lines += ["", *(f"- raw {k}: " + ", ".join(f"{v:.3f}" for v in vs) for k, vs in raw.items())]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
