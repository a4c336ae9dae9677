"""Exception types shared by the library and the CLI.

The library raises these (or plain ``ValueError``/``OSError``) with a message that names the
argument and what is wrong.  The CLI turns them into one line on stderr and an exit code:
``exit_code`` 2 means bad usage or bad input, 1 a runtime failure.
"""


class FastckaError(Exception):
    """Base class of fastcka's own errors."""

    exit_code = 1


class InputError(FastckaError, ValueError):
    """Bad input: wrong shape, NaN, mismatched ids, bad option value (exit code 2)."""

    exit_code = 2


class StoreError(InputError):
    """An embedding store is missing, corrupt, truncated or invalid (exit code 2)."""


class GPUUnavailableError(FastckaError, RuntimeError):
    """A GPU was asked for (``device="gpu"``) but none is usable (exit code 2)."""

    exit_code = 2


def exit_code_for(exc: BaseException) -> int:
    """Exit code the CLI uses for ``exc``: 2 for bad usage/input, 1 for runtime failures."""
    if isinstance(exc, FastckaError):
        return exc.exit_code
    if isinstance(exc, (ValueError, TypeError, KeyError, FileNotFoundError, IsADirectoryError,
                        NotADirectoryError, PermissionError)):
        return 2
    if isinstance(exc, OSError):
        return 2
    return 1


def one_line(exc: BaseException) -> str:
    """Render ``exc`` as a single line (newlines folded)."""
    msg = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and msg.startswith("'") and msg.endswith("'"):
        msg = msg[1:-1]
    return " ".join(msg.split())
