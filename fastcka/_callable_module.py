"""Modules that are also the function they are named after.

``fastcka.cka`` and ``fastcka.local_cka`` are public functions *and* submodules.  Importing a
submodule makes Python bind the package attribute to the module (after the module runs), which
would shadow the lazily exported function.  Making those modules callable keeps
``fastcka.cka(X, Y)`` working whichever of the two the attribute holds.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


def make_module_callable(module_name: str, func: Callable[..., Any]) -> None:
    """Calling module ``module_name`` calls ``func`` (same arguments, same result)."""

    class _CallableModule(types.ModuleType):
        __doc__ = func.__doc__

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)

    sys.modules[module_name].__class__ = _CallableModule
