"""CPU/GPU agreement on the same inputs (part of `make gpu-check`).

Checks: CKA (linear, rbf with the paper sigma, unbiased) within 1e-6 relative; FAQ objective of
the GPU equal to the CPU's for the same deterministic start (barycenter); local CKA scores within
1e-9 in float64 and 1e-5 in float32.  Writes ``<out>/agreement.json`` and exits 1 on a mismatch.

``--device cpu`` (a dry run on a machine without GPU) runs the same script with the CPU on both
sides, to check that it works before device time is spent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import fastcka
from fastcka.backend import get_backend


def correlated(n: int, dx: int, dy: int, rng: np.random.Generator, noise: float = 0.5):
    Z = rng.standard_normal((n, 16))
    X = Z @ rng.standard_normal((16, dx)) + noise * rng.standard_normal((n, dx))
    Y = Z @ rng.standard_normal((16, dy)) + noise * rng.standard_normal((n, dy))
    return X, Y


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="bench/results/gpu-run")
    ap.add_argument("--size", choices=["quick", "full"], default="full")
    ap.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = a.device
    if dev == "gpu":
        get_backend(device="gpu")  # fail fast, clearly, when no GPU is usable
    full = a.size == "full"
    rng = np.random.default_rng(0)
    rows: list[dict] = []

    def record(check: str, cpu: float, gpu: float, tol: float, relative: bool = True) -> None:
        diff = abs(cpu - gpu) / (abs(cpu) if relative and cpu != 0 else 1.0)
        rows.append(dict(check=check, cpu=float(cpu), gpu=float(gpu), diff=float(diff),
                         tol=tol, ok=bool(diff <= tol)))
        print(f"{check:55s} cpu={cpu:.12g} gpu={gpu:.12g} diff={diff:.2e} "
              f"{'ok' if diff <= tol else 'MISMATCH'}", flush=True)

    # --- CKA ------------------------------------------------------------------------------
    n = 4000 if full else 300
    X, Y = correlated(n, 512 if full else 32, 384 if full else 24, rng)
    for dtype in (np.float64, np.float32):
        Xd, Yd = X.astype(dtype), Y.astype(dtype)
        tag = np.dtype(dtype).name
        for kw in (dict(kernel="linear"), dict(kernel="rbf", sigma="paper"),
                   dict(kernel="linear", estimator="unbiased"),
                   dict(kernel="rbf", sigma="paper", estimator="unbiased")):
            c = fastcka.cka(Xd, Yd, device="cpu", **kw)
            g = fastcka.cka(Xd, Yd, device=dev, **kw)
            record(f"cka {kw} n={n} {tag}", c, g, 1e-6)

    # --- FAQ ------------------------------------------------------------------------------
    m = 400 if full else 40
    A = rng.random((m, m))
    A = (A + A.T) / 2
    perm = rng.permutation(m)
    B = A[np.ix_(perm, perm)] + 0.05 * rng.standard_normal((m, m))
    B = (B + B.T) / 2
    seeds = np.c_[np.arange(10), np.argsort(perm)[:10]]
    opts = dict(maximize=True, P0="barycenter", partial_match=seeds, maxiter=30, tol=1e-5)
    rc = fastcka.quadratic_assignment(A, B, options=dict(opts, device="cpu"))
    rg = fastcka.quadratic_assignment(A, B, options=dict(opts, device=dev))
    record(f"faq objective, barycenter start, n={m}, 10 seeds", rc.fun, rg.fun, 1e-9)
    rows[-1]["same_matching"] = bool(np.array_equal(rc.col_ind, rg.col_ind))
    if dev == "gpu":
        # the auction warm start must not change the (exact) answer; unseeded: the rank-one
        # first LAP as well
        for pm, label in ((seeds, "10 seeds"), (np.empty((0, 2), int), "unseeded")):
            o = dict(opts, partial_match=pm)
            rc = fastcka.quadratic_assignment(A, B, options=dict(o, device="cpu"))
            rg = fastcka.quadratic_assignment(A, B, options=dict(o, device=dev, lap="auction"))
            record(f"faq objective, lap=auction, n={m}, {label}", rc.fun, rg.fun, 1e-9)
            rows[-1]["same_matching"] = bool(np.array_equal(rc.col_ind, rg.col_ind))

    # --- local CKA ------------------------------------------------------------------------
    q, p = (500, 320) if full else (24, 16)
    S, T = correlated(2 * q + p, 384 if full else 20, 256 if full else 12, rng)
    Sb, Tb, Sq, Tq = S[:p], T[:p], S[p:p + q], T[p:p + q]
    for dtype, tol in ((np.float64, 1e-9), (np.float32, 1e-5)):
        args = [z.astype(dtype) for z in (Sq, Tq, Sb, Tb)]
        for kw in (dict(kernel="linear"), dict(kernel="rbf", sigma="base"),
                   dict(kernel="rbf", sigma="paper")):
            t0 = time.perf_counter()
            sc = np.asarray(fastcka.local_cka(*args, device="cpu", **kw))
            sg = fastcka.local_cka(*args, device=dev, **kw)
            sg = get_backend(sg).to_host(sg) if dev == "gpu" else np.asarray(sg)
            diff = float(np.max(np.abs(sc - sg)))
            rows.append(dict(check=f"local_cka {kw} q={q} p={p} {np.dtype(dtype).name} (max abs)",
                             cpu=float(sc.mean()), gpu=float(sg.mean()), diff=diff, tol=tol,
                             ok=bool(diff <= tol)))
            print(f"local_cka {kw} {np.dtype(dtype).name}: max|cpu-gpu|={diff:.2e} "
                  f"({time.perf_counter() - t0:.2f}s)", flush=True)

    (out / "agreement.json").write_text(json.dumps(rows, indent=1))
    bad = [r["check"] for r in rows if not r["ok"]]
    print(f"{len(rows) - len(bad)} agreed, {len(bad)} disagreed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
