"""The CPU thread pool of independent work units: one BLAS thread per unit, results in order.

Two paths cut their work into units that need no BLAS threads of their own: the linear CKA
feature path (row chunks, :mod:`fastcka._cka_stats`) and FAQ's groups of restarts
(:mod:`fastcka.qap._faq`).  :func:`pool_threads` says how many threads such a pool gets and
:func:`ordered_map` runs it: a few units in flight, their inputs drawn from an iterator in the
caller's thread and in order (a random stream stays in one order), their results handed back
in order, so the bits do not depend on the number of threads.
"""

from __future__ import annotations

import contextlib
import os
import queue
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .backend import NUMPY_BACKEND, Backend

#: multiply-adds below which the units run one after another (a few ms: the pool's start-up
#: would show)
THREADS_MIN_WORK = 2 ** 26


def pool_threads(be: Backend, units: int, work: int) -> int:
    """Threads for ``units`` units of ``work`` multiply-adds in all: 1 on a GPU, for one unit
    or little work, else the CPUs this process may run on, at most the units and the BLAS's
    own threads (what ``--threads`` or ``threadpoolctl.threadpool_limits`` set)."""
    if be.device != "cpu" or units < 2 or work < THREADS_MIN_WORK:
        return 1
    return max(1, min(units, cpu_threads()))


_BLAS = []  # the BLAS libraries' threadpoolctl controller, made once (a scan of the process)


def _blas():
    """A threadpoolctl controller of the BLAS libraries loaded at the first call (NumPy's, which
    runs every product of the pools), or None without threadpoolctl.  Made once: a new
    controller scans every loaded library (~0.6 ms a call); its thread counts are read live."""
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - a dependency
            _BLAS.append(None)
        else:
            _BLAS.append(ThreadpoolController().select(user_api="blas"))
    return _BLAS[0]


def cpu_threads() -> int:
    """The CPUs this process may run on, at most the BLAS's own threads."""
    ctl = _blas()
    if ctl is None:  # pragma: no cover - a dependency
        return 1
    blas = [i["num_threads"] for i in ctl.info()]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, min(blas) if blas else 1))


def tile_pool(units: int, tile_elems: int, dims: int, buffers: Callable[[], Any]):
    """``(threads, free)`` for a pass of ``units`` tiles of ``tile_elems`` pairs on the host,
    from row blocks of ``dims`` columns in all: the threads of :func:`pool_threads` and a queue
    of one :func:`buffers` set per thread (a unit takes one and puts it back).

    The tile passes of the CKA engine (:mod:`fastcka._median`, :mod:`fastcka._cka_stats`) run
    whole tiles per thread, each thread its GEMM on one BLAS thread and then one-thread Numba
    kernels: measured (n = 10k, 384/256 columns), the two thread pools of BLAS and Numba taking
    turns on two cores made each elementwise sweep after a GEMM 3-8x slower than alone."""
    threads = pool_threads(NUMPY_BACKEND, units, units * tile_elems * max(1, dims))
    free: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(threads):
        free.put(buffers())
    return threads, free


def ordered_map(fn: Callable[[Any], Any], items: Iterable, threads: int, *,
                one_blas: bool | None = None) -> Iterator:
    """``fn(item)`` for every item, yielded in the items' order.

    ``threads > 1``: a pool of that many threads, at most ``threads + 1`` items taken from
    ``items`` ahead of the result being yielded (``items`` is advanced in the caller's thread
    only, after the previous result was consumed: buffers a result hands back can be reused).
    ``one_blas`` (default: ``threads > 1``): the BLAS runs one thread (process-wide) meanwhile.
    """
    one_blas = threads > 1 if one_blas is None else one_blas
    if one_blas:
        ctl = _blas()
        with ctl.limit(limits=1) if ctl is not None else contextlib.nullcontext():
            yield from ordered_map(fn, items, threads, one_blas=False)
        return
    if threads <= 1:
        for item in items:
            yield fn(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    it = iter(items)
    with ThreadPoolExecutor(threads) as ex:
        window = deque(ex.submit(fn, item) for _, item in zip(range(threads + 1), it, strict=False))
        while window:
            yield window.popleft().result()
            for item in it:
                window.append(ex.submit(fn, item))
                break
