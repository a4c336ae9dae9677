"""Progress bars on stderr (tqdm), quiet with -q or when stderr is not a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

_ENABLED: bool | None = None  # None: decide from stderr.isatty()


def set_progress(enabled: bool | None) -> None:
    """Force progress bars on/off (None: on only when stderr is a terminal)."""
    global _ENABLED
    _ENABLED = enabled


def progress_enabled() -> bool:
    if _ENABLED is not None:
        return _ENABLED
    try:
        return sys.stderr.isatty()
    except Exception:  # pragma: no cover
        return False


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", **kw: Any):
    """A tqdm bar on stderr, disabled when progress is off."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr,
                disable=not progress_enabled(), leave=False, **kw)
