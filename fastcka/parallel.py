"""Execution layer: fastcka's independent units of work, in-process or on a Dask cluster.

One choice, ``scheduler``, shared by the library and the CLI (``--scheduler`` /
``FASTCKA_SCHEDULER``):

``None`` or ``"none"``
    in-process (the default): the loops run exactly as without this module.
``"local"`` or ``"local:N"``
    a :class:`distributed.LocalCluster` with N worker processes (default: one per CPU), one
    thread each, started for the call and closed after it.
``"tcp://HOST:PORT"``
    an existing Dask scheduler.
``"slurm"``
    a :class:`dask_jobqueue.SLURMCluster` configured by dask's own ``jobqueue.slurm`` config
    (``~/.config/dask/jobqueue.yaml``, ``DASK_JOBQUEUE__SLURM__*``) or ``cluster_config`` (a dask
    config YAML file), scaled to ``jobs`` jobs.

An :class:`Executor` (from :func:`executor`) can be passed instead, to reuse one cluster across
calls.  The units are the library's own loops, cut where the in-process code already cuts them,
so a distributed result is the in-process one bit for bit:

- FAQ restarts: one task per batch of restarts (:func:`faq_restarts`); each batch gets a copy of
  the random generator at its own position in the stream;
- retrieval: one task per block of source queries, the top-k lists merged exactly
  (:func:`fastcka.retrieval.retrieve`);
- the CKA matrix (:func:`fastcka.cka_matrix`): one task per input (its bandwidth and self
  statistics), then one per pair of inputs (:func:`cka_run_units`);
- eval grid cells (:func:`fastcka.evaluate`): one task per cell;
- embedding (``fastcka embed`` with ``--scheduler``): one shard of the batches per worker, each
  writing its own store, merged at the end.

Inputs travel once per worker (``scatter(..., broadcast=True)``), not once per task.  Dask,
distributed and dask-jobqueue are the ``dask`` extra; they are imported only when a cluster is
asked for.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from .errors import FastckaError, InputError, one_line

__all__ = ["SCHEDULER_ENV", "Executor", "InProcess", "DaskExecutor", "executor",
           "parse_scheduler", "faq_restarts", "cka_units", "cka_run_units", "cka_stats_from",
           "cka_matrix_stats"]

SCHEDULER_ENV = "FASTCKA_SCHEDULER"
_CHOICES = "'none', 'local', 'local:N', 'tcp://HOST:PORT' or 'slurm'"


class SchedulerError(FastckaError):
    """The Dask cluster could not be reached or started (runtime failure, exit code 1)."""


def parse_scheduler(spec: Any) -> tuple[str, Any]:
    """``(kind, argument)`` of a scheduler choice; kind in none, local, tcp, slurm, executor.

    Raises :class:`fastcka.errors.InputError` naming the value when it is none of them.
    """
    if spec is None:
        return "none", None
    if isinstance(spec, Executor):
        return "executor", spec
    if type(spec).__name__ == "Client" and type(spec).__module__.startswith("distributed"):
        return "client", spec
    if not isinstance(spec, str):
        raise InputError(f"scheduler must be {_CHOICES}, got {spec!r}")
    s = spec.strip()
    low = s.lower()
    if low in ("", "none"):
        return "none", None
    if low == "slurm":
        return "slurm", None
    if low == "local":
        return "local", None
    if low.startswith("local:"):
        n = low[len("local:"):]
        if not n.isdigit() or int(n) < 1:
            raise InputError(f"scheduler 'local:N' needs a positive number of workers N, "
                             f"got {spec!r}")
        return "local", int(n)
    if low.startswith("tcp://"):
        host, _, port = s[len("tcp://"):].rpartition(":")
        if not host or not port.isdigit():
            raise InputError(f"scheduler 'tcp://HOST:PORT' needs a host and a port, got {spec!r}")
        return "tcp", s
    raise InputError(f"scheduler must be {_CHOICES}, got {spec!r}")


class Executor:
    """Runs ``fn(shared, *task)`` for every task and returns the results in task order."""

    n_workers = 1

    def map(self, fn: Callable, tasks: Sequence[tuple], shared: Any = None) -> list:
        raise NotImplementedError

    def scatter(self, shared: Any) -> Any:
        """``shared`` sent to the workers once, as a handle that several :meth:`map` calls take
        as their ``shared`` (release it with :meth:`release`)."""
        return shared

    def release(self, handle: Any) -> None:
        pass

    def close(self) -> None:
        pass


class InProcess(Executor):
    """The tasks one after the other in this process (what ``scheduler=None`` does)."""

    def map(self, fn, tasks, shared=None):
        return [fn(shared, *t) for t in tasks]


class DaskExecutor(Executor):
    """Tasks on a :class:`distributed.Client`; ``shared`` is scattered once to every worker.

    A worker lost mid-run (killed, its job ended) is replaced by Dask, which reruns its tasks;
    the tasks are pure functions of their arguments, so the results do not change.
    """

    def __init__(self, client, cluster=None, owned: bool = False):
        self.client, self.cluster, self._owned = client, cluster, owned

    @property
    def n_workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def scatter(self, shared):
        # a one-element list: scatter would split a tuple or list into one future per item
        return self.client.scatter([shared], broadcast=True, hash=False)[0]

    def release(self, handle):
        if _is_future(handle):
            handle.release()

    def map(self, fn, tasks, shared=None):
        if not tasks:
            return []
        client = self.client
        owned = shared is not None and not _is_future(shared)
        fut = self.scatter(shared) if owned else shared
        futures = [client.submit(fn, fut, *t, pure=False) for t in tasks]
        try:
            return client.gather(futures)
        finally:
            for f in futures:
                f.release()
            if owned:
                fut.release()

    def close(self) -> None:
        if self._owned:
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()


def _is_future(obj) -> bool:
    return type(obj).__name__ == "Future" and type(obj).__module__.startswith("distributed")


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise InputError("a Dask scheduler needs the 'dask' extra: pip install "
                         "'fastcka[dask]' (dask, distributed, dask-jobqueue)") from None
    return distributed


def _local(n: int | None) -> DaskExecutor:
    distributed = _import_distributed()
    n = n or os.cpu_count() or 1
    threads = max(1, (os.cpu_count() or 1) // n)
    env = {k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}
    cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR,
                                       env=env)
    return DaskExecutor(distributed.Client(cluster), cluster, owned=True)


def _tcp(address: str) -> DaskExecutor:
    distributed = _import_distributed()
    import dask

    try:
        client = distributed.Client(address,
                                    timeout=dask.config.get("distributed.comm.timeouts.connect"))
    except OSError as exc:
        raise SchedulerError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    return DaskExecutor(client, owned=True)


def load_cluster_config(path: str) -> dict:
    """A dask config YAML file (``jobqueue: slurm: ...``) as a dict; one-line errors."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            cfg = yaml.safe_load(fh)
    except OSError as exc:
        raise InputError(f"cannot read the cluster config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"cluster config {path} is not valid YAML: {exc}") from None
    if not isinstance(cfg, dict):
        raise InputError(f"cluster config {path} must be a mapping (a dask config file such as "
                         f"'jobqueue: {{slurm: {{cores: 1, memory: 2GiB}}}}')")
    return cfg


def _slurm(jobs: int | None, cluster_config: str | None) -> DaskExecutor:
    distributed = _import_distributed()
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise InputError("scheduler 'slurm' needs dask-jobqueue: pip install "
                         "'fastcka[dask]'") from None
    cfg = load_cluster_config(cluster_config) if cluster_config else {}
    section = (cfg.get("jobqueue") or {}).get("slurm") or {}
    if cluster_config and (not isinstance(section, dict) or not section):
        raise InputError(f"cluster config {cluster_config} has no 'jobqueue: slurm:' section")
    # the file's settings as arguments (they then hold for every job the cluster starts);
    # anything it leaves out comes from dask's own jobqueue.slurm config
    kwargs = {str(k).replace("-", "_"): v for k, v in section.items()}
    try:
        cluster = SLURMCluster(**kwargs)
    except (ValueError, TypeError) as exc:  # e.g. cores/memory missing, an unknown key
        raise InputError(f"cannot configure the SLURM cluster: {one_line(exc)}") from None
    cluster.scale(jobs=jobs or 1)
    client = distributed.Client(cluster)
    return DaskExecutor(client, cluster, owned=True)


@contextmanager
def executor(scheduler: Any = None, *, jobs: int | None = None,
             cluster_config: str | None = None) -> Iterator[Executor]:
    """The :class:`Executor` of a scheduler choice, for the duration of a ``with`` block.

    Clusters started here (local, slurm) are closed at the end of the block; an
    :class:`Executor` or ``distributed.Client`` passed in is used as is and left open.
    """
    kind, arg = parse_scheduler(scheduler)
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise InputError(f"jobs must be a positive integer, got {jobs!r}")
    if kind == "executor":
        yield arg
        return
    if kind == "none":
        yield InProcess()
        return
    if kind == "client":
        yield DaskExecutor(arg)
        return
    ex = _local(arg) if kind == "local" else _tcp(arg) if kind == "tcp" else _slurm(
        jobs, cluster_config)
    try:
        yield ex
    finally:
        ex.close()


# --------------------------------------------------------------------------------------------
# unit: FAQ restarts
# --------------------------------------------------------------------------------------------

def _faq_batch_task(inputs, device, start_kind, start_data, k, run_opts):
    """One batch of FAQ restarts on a worker: (cols, nit, inc) as :func:`_faq_batched` gives."""
    from .backend import get_backend
    from .qap import _build_problem, _faq_batched, _host_starts

    A_h, B_h, S_h, perm_A, perm_B, m, dtype, factored = inputs
    be = get_backend(device=device)
    problem = _build_problem(be, A_h, B_h, S_h, perm_A, perm_B, m, dtype, factored)
    if start_kind == "randomized-host":      # start_data: the generator at this batch's position
        starts = ("randomized", _host_starts(start_data, len(perm_A) - m, k, False))
    else:
        starts = (start_kind, start_data)
    maximize, maxiter, tol, lap_kind = run_opts
    return _faq_batched(be, problem, k, starts, maximize, maxiter, tol, lap_kind, k, threads=1)


def faq_restarts(scheduler, be, inputs, n_init, starts, rng, run_opts, batch_size):
    """FAQ's batches of restarts as tasks: what :func:`fastcka.qap._faq_batched` returns.

    The batches are those of an in-process run in one thread (same size, same restarts), one
    task each, run like the in-process ones with one BLAS thread (the same bits).  A host
    randomized start gives each task a copy of ``rng`` at its batch's position (the client
    draws and drops each batch's matrices to get there, which also leaves ``rng`` where the
    in-process run leaves it); a device start passes each batch its own seed, as in-process.
    """
    from .qap import _batch_size

    A_h, B_h, S_h, perm_A, perm_B, m, dtype, factored = inputs
    n_free = len(perm_A) - m
    bs = _batch_size(be, n_free, n_init, np.dtype(dtype).itemsize, batch_size)
    kind, data = starts
    tasks = []
    for s in range(0, n_init, bs):
        idx = list(range(s, min(n_init, s + bs)))
        if kind == "randomized" and not isinstance(data, int):
            task_start = ("randomized-host", copy.deepcopy(rng))
            data(idx)                                   # advance rng past this batch's draws
        elif kind == "randomized":
            task_start = ("randomized", data + s)
        else:
            task_start = (kind, data)
        tasks.append((*task_start, len(idx), run_opts))
    device = be.device
    with executor(scheduler) as ex:
        parts = ex.map(_faq_batch_task, [(device, *t) for t in tasks], shared=inputs)
    cols = np.concatenate([p[0] for p in parts], axis=0)
    nit = np.concatenate([p[1] for p in parts])
    inc = np.concatenate([p[2] for p in parts])
    return cols, nit, inc



# --------------------------------------------------------------------------------------------
# unit: the CKA matrix over many inputs
# --------------------------------------------------------------------------------------------
#
# The in-process matrix (fastcka.cka.cka_matrix) forms every entry's sums on its own: the
# linear feature path one GEMM X_aᵀX_b per pair, the Gram path per-entry sums over the same
# tiles (the Numba tile kernels' chunks do not depend on the thread count).  So an input's
# statistics (bandwidth, Σ K_a∘K_a, row sums, diagonal) and a pair's Σ K_a∘K_b computed alone,
# on any worker or shard, are the bits the whole matrix holds, and the matrix built from them
# by fastcka.cka._matrix_from is the in-process one.

def cka_units(m: int) -> list[tuple]:
    """The units of an m-input CKA matrix: every input ``("store", a)``, then every pair
    ``("pair", a, b)`` (a < b)."""
    return [("store", a) for a in range(m)] + [("pair", a, b) for a in range(m)
                                                for b in range(a + 1, m)]


def _features(Xs, kernel: str) -> bool:
    """Whether the matrix takes the linear feature path (decided once, over all inputs)."""
    from ._cka import _use_features

    return kernel == "linear" and _use_features(int(Xs[0].shape[0]),
                                                [int(X.shape[1]) for X in Xs])


def _cka_store(be, X, kernel, sigma, threshold, features, full=True) -> dict:
    """One input's bandwidth (scaled-units gamma) and, if ``full``, its self statistics."""
    from ._cka import _affs, _kernel_stats, _linear_feature_stats, _sigmas

    (aff,) = _affs(be, [X])
    gamma = 0.0
    if kernel == "rbf":
        (s,) = _sigmas(be, [X], sigma, threshold, [aff])
        gamma = 1.0 / (2.0 * (s * aff[1]) ** 2)
    if not full:
        return {"gamma": gamma}
    if features:
        st = _linear_feature_stats(be, [X], [(0, 0)], affs=[aff])
    else:
        st = _kernel_stats(be, [X], [int(kernel == "rbf")], [gamma], affs=[aff])
    return {"gamma": gamma, "S": float(st.S[0, 0]), "rows": st.rows[0], "diags": st.diags[0],
            "unit": float(st.unit[0])}


def _cka_pair(be, Xa, Xb, kernel, features, gammas) -> float:
    """``Σ K_a∘K_b`` of one pair (the gammas of its two inputs from :func:`_cka_store`)."""
    from ._cka import _affs, _kernel_stats, _linear_feature_stats

    affs = _affs(be, [Xa, Xb])
    if features:
        st = _linear_feature_stats(be, [Xa, Xb], [(0, 1)], affs=affs, diags=False)
    else:
        st = _kernel_stats(be, [Xa, Xb], [int(kernel == "rbf")] * 2, list(gammas), affs=affs)
    return float(st.S[0, 1])


def _cka_store_task(Xs, a, kernel, sigma, threshold, features, full, device):
    from .backend import get_backend

    be = get_backend(device=device)
    return _cka_store(be, be.asarray(Xs[a]), kernel, sigma, threshold, features, full)


def _cka_pair_task(Xs, a, b, kernel, features, gammas, device):
    from .backend import get_backend

    be = get_backend(device=device)
    return _cka_pair(be, be.asarray(Xs[a]), be.asarray(Xs[b]), kernel, features, gammas)


def cka_run_units(Xs, units, kernel, sigma, threshold, *, device="cpu", scheduler=None,
                  features=None) -> list:
    """The results of some :func:`cka_units` of the inputs ``Xs`` (validated, host arrays):
    a dict per store unit, ``Σ K_a∘K_b`` per pair unit.

    With a scheduler: one task per input whose bandwidth a pair needs (rbf) or whose store
    unit is asked for, then one task per pair; the inputs are scattered once per worker.
    ``features`` (the linear path) is decided over all of ``Xs`` unless given.
    """
    features = _features(Xs, kernel) if features is None else features
    stores = sorted({u[1] for u in units if u[0] == "store"})
    pairs = [(u[1], u[2]) for u in units if u[0] == "pair"]
    need = sorted(set(stores) | ({a for p in pairs for a in p} if kernel == "rbf" else set()))
    st_tasks = [(a, kernel, sigma, threshold, features, a in stores, device) for a in need]
    with executor(scheduler) as ex:
        handle = ex.scatter(Xs)
        try:
            got = dict(zip(need, ex.map(_cka_store_task, st_tasks, shared=handle), strict=True))
            gam = {a: r["gamma"] for a, r in got.items()}
            vals = ex.map(_cka_pair_task, [(a, b, kernel, features,
                                            (gam.get(a, 0.0), gam.get(b, 0.0)), device)
                                           for a, b in pairs], shared=handle)
        finally:
            ex.release(handle)
    pv = dict(zip(pairs, vals, strict=True))
    return [got[u[1]] if u[0] == "store" else pv[(u[1], u[2])] for u in units]


def cka_stats_from(n: int, m: int, units, results):
    """The :class:`fastcka.cka._Stats` of an m-input matrix from all its units' results."""
    from ._cka import _Stats

    S = np.zeros((m, m))
    rows, diags, unit = np.zeros((m, n)), np.zeros((m, n)), [1.0] * m
    for u, r in zip(units, results, strict=True):
        if u[0] == "store":
            a = u[1]
            S[a, a] = r["S"]
            rows[a], diags[a], unit[a] = r["rows"], r["diags"], r["unit"]
        else:
            S[u[1], u[2]] = S[u[2], u[1]] = r
    return _Stats(n, S, rows, diags, unit)


def cka_matrix_stats(Xs, kernel, sigma, threshold, *, scheduler=None, device="cpu"):
    """The statistics :func:`fastcka.cka_matrix` builds its matrix from, unit by unit."""
    units = cka_units(len(Xs))
    res = cka_run_units(Xs, units, kernel, sigma, threshold, device=device, scheduler=scheduler)
    return cka_stats_from(int(Xs[0].shape[0]), len(Xs), units, res)
