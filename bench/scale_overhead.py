"""Dask overhead on a tiny FAQ job (8 restarts, 60 free nodes): in-process alone, in-process and
on a running one-worker LocalCluster (same run), min of 5 each.  Run it twice, with
``NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`` and without, to see the thread effect."""

from __future__ import annotations

import time

import numpy as np

from fastcka.parallel import executor
from fastcka.qap import quadratic_assignment


def job(sched=None) -> float:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(70, 6))
    Y = X[rng.permutation(70)] + 0.1 * rng.normal(size=(70, 6))
    opts = {"P0": "randomized", "maximize": True, "n_init": 8, "batch_size": 4,
            "partial_match": np.stack([np.arange(10)] * 2, axis=1),
            "rng": np.random.default_rng(1), "scheduler": sched}
    t = time.perf_counter()
    quadratic_assignment(X @ X.T, Y @ Y.T, options=opts)
    return time.perf_counter() - t


def main() -> None:
    job()
    print(f"in-process alone: {min(job() for _ in range(5)):.4f} s")
    with executor("local:1") as ex:
        job(ex)
        inproc = min(job() for _ in range(5))
        dask = min(job(ex) for _ in range(5))
        print(f"with the cluster up: in-process {inproc:.4f} s, Dask {dask:.4f} s")


if __name__ == "__main__":
    main()
