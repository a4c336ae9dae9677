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
- the CKA matrix: one task per pair of stores (:func:`fastcka.cka.cka_matrix` callers).

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
           "parse_scheduler", "faq_restarts"]

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

    def map(self, fn, tasks, shared=None):
        if not tasks:
            return []
        client = self.client
        # a one-element list: scatter would split a tuple or list into one future per item
        fut = (client.scatter([shared], broadcast=True, hash=False)[0] if shared is not None
               else None)
        futures = [client.submit(fn, fut, *t, pure=False) for t in tasks]
        try:
            return client.gather(futures)
        finally:
            for f in futures:
                f.release()
            if fut is not None:
                fut.release()

    def close(self) -> None:
        if self._owned:
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()


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
    return _faq_batched(be, problem, k, starts, maximize, maxiter, tol, lap_kind, k)


def faq_restarts(scheduler, be, inputs, n_init, starts, rng, run_opts, batch_size):
    """FAQ's batches of restarts as tasks: what :func:`fastcka.qap._faq_batched` returns.

    The batches are the in-process ones (same size, same restarts), one task each.  A host
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

