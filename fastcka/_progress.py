"""Progress of long steps on stderr: a tqdm bar on a terminal, log lines elsewhere.

One module used by every long loop (embedding, FAQ restarts, permutation tests, streamed
retrieval, kernel sums).  Where stderr is a terminal it draws a tqdm bar.  Where it is not (a
batch job's log file, a pipe) it prints one line now and then::

    fastcka: embed images: 250/1000 (25%), 3.1 img/s, ETA 4m02s

at most every ``FASTCKA_PROGRESS_INTERVAL`` seconds (default 30), and also when another 10 % is
done if at least a sixth of that interval has passed; a step that ends before the first line is
due prints nothing (short runs keep a clean log), and a step that printed ends with a ``done``
line.  ``-q`` (or ``set_progress(False)``) turns both off.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

_ENABLED: bool | None = None  # None: bar on a terminal, lines elsewhere; False: nothing
INTERVAL_ENV = "FASTCKA_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 30.0


def set_progress(enabled: bool | None) -> None:
    """Force progress off (``False``), a bar even without a terminal (``True``), or decide from
    stderr (``None``: a bar on a terminal, log lines elsewhere)."""
    global _ENABLED
    _ENABLED = enabled


def _isatty() -> bool:
    try:
        return sys.stderr.isatty()
    except Exception:  # pragma: no cover
        return False


def progress_mode() -> str:
    """``"off"``, ``"bar"`` (tqdm) or ``"lines"`` (log lines for files and pipes)."""
    if _ENABLED is False:
        return "off"
    if _ENABLED is True or _isatty():
        return "bar"
    return "lines"


def progress_enabled() -> bool:
    return progress_mode() != "off"


def _interval() -> float:
    try:
        v = float(os.environ.get(INTERVAL_ENV, "") or DEFAULT_INTERVAL)
    except ValueError:
        v = DEFAULT_INTERVAL
    return v if math.isfinite(v) and v >= 0 else DEFAULT_INTERVAL


def _rate(r: float) -> str:
    return f"{r:.3g}" if r < 1000 else f"{r:.0f}"


def _duration(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class LineProgress:
    """The tqdm subset the library uses (``update``, ``close``, iteration, ``with``), printing
    occasional one-line reports instead of redrawing a bar."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None,
                 desc: str = "", unit: str = "it", interval: float | None = None,
                 clock=time.monotonic, stream=None) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.interval = _interval() if interval is None else interval
        self.clock, self.stream = clock, stream
        self.n = 0
        self.t0 = self.last = clock()
        self.last_decile = 0
        self.printed = 0
        self.closed = False

    def __iter__(self) -> Iterator:
        for x in self.iterable:  # type: ignore[union-attr]
            yield x
            self.update(1)
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def line(self, final: bool = False) -> str:
        el = self.clock() - self.t0
        rate = self.n / el if el > 0 else float("nan")
        head = f"fastcka: {self.desc}: " if self.desc else "fastcka: "
        if final:
            return (f"{head}done {self.n}" + (f"/{self.total}" if self.total else "")
                    + f" {self.unit} in {_duration(el)}"
                    + (f" ({_rate(rate)} {self.unit}/s)" if math.isfinite(rate) else ""))
        done = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else \
            f"{self.n} {self.unit}"
        txt = f"{head}{done}"
        if math.isfinite(rate):
            txt += f", {_rate(rate)} {self.unit}/s"
            if self.total and rate > 0:
                txt += f", ETA {_duration(max(self.total - self.n, 0) / rate)}"
        return txt

    def _print(self, text: str) -> None:
        stream = self.stream or sys.stderr
        print(text, file=stream, flush=True)
        self.printed += 1

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        since = now - self.last
        decile = int(10 * self.n / self.total) if self.total else 0
        due = since >= self.interval or (decile > self.last_decile
                                         and since >= self.interval / 6)
        if due and not (self.total and self.n >= self.total and not self.printed):
            self._print(self.line())
            self.last, self.last_decile = now, decile

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.printed:
            self._print(self.line(final=True))

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:  # tqdm compatibility
        pass


class _NoProgress:
    def __init__(self, iterable: Iterable | None = None) -> None:
        self.iterable = iterable
        self.n = 0

    def __iter__(self) -> Iterator:
        return iter(self.iterable)  # type: ignore[arg-type]

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", **kw: Any):
    """Progress of one long step on stderr (see the module docstring); off with -q."""
    mode = progress_mode()
    if mode == "off":
        return _NoProgress(iterable)
    if mode == "lines":
        return LineProgress(iterable, total=total, desc=desc, unit=unit)
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, **kw)


# --------------------------------------------------------------------------------------------
# Numba's first-run compilation
# --------------------------------------------------------------------------------------------

_NOTED = False


def numba_cache_dir() -> Path:
    """Where Numba caches fastcka's compiled CPU kernels (``NUMBA_CACHE_DIR`` if set, else the
    ``__pycache__`` folder beside the kernels)."""
    env = os.environ.get("NUMBA_CACHE_DIR", "")
    if env:
        return Path(env)
    from . import kernels

    return Path(kernels.__file__).resolve().parent / "__pycache__"


def numba_is_cached() -> bool:
    """Whether compiled kernels of this Python are in :func:`numba_cache_dir` already."""
    d = numba_cache_dir()
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    pattern = f"**/*cpu*.{tag}.nbi" if os.environ.get("NUMBA_CACHE_DIR") else f"*cpu*.{tag}.nbi"
    try:
        return any(d.glob(pattern))
    except OSError:  # pragma: no cover - unreadable folder
        return False


def note_numba_compile() -> bool:
    """Say once per process, when Numba has not compiled fastcka's kernels yet, that the first
    run compiles them and where the result is cached.  Returns whether it said so."""
    global _NOTED
    from .backend import NUMPY_BACKEND

    if _NOTED or not progress_enabled() or NUMPY_BACKEND.engine != "numba" or numba_is_cached():
        return False
    _NOTED = True
    print(f"fastcka: first run: Numba compiles the CPU kernels (about 30 s, once); they are "
          f"cached in {numba_cache_dir()} (set NUMBA_CACHE_DIR to move it)",
          file=sys.stderr, flush=True)
    return True
