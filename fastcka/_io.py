"""File safety shared by every writer of fastcka (stores, result tables, plots, exports).

- :func:`atomic_path`: write to a temporary file beside the target, rename on success.  The
  target is resolved through symlinks (``-o link`` writes the link's target), a replaced file
  keeps its mode (and, where allowed, owner and group), a new file gets ``0o666 & ~umask``, as
  ``cp`` would.  Disk full becomes one :class:`DiskFullError` naming the file; the temporary is
  removed and the old file stays intact.
- :func:`locked`: a per-target lock file ``.<name>.lock`` (``fcntl.flock``, released by the kernel
  when its holder dies, so a lock of a dead process is never stale) holding the holder's pid;
  writers of one file are serialised (``wait=True``) or refused naming the holder's pid.
- Temporaries are named ``.<name>.<pid>-<token>.tmp``; the next write to the same target (under
  its lock) removes those of dead processes and says so on the ``fastcka`` logger.
- :func:`check_outputs`: refuse an output that resolves to one of the command's inputs.
- :func:`stdin_text`: ``-`` as an input path means standard input (read by one option only).
- :func:`critical` / :func:`install_signal_handlers`: SIGINT/SIGTERM become :class:`Interrupted`,
  deferred while a file is being written so that HDF5 is never interrupted inside a write.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import signal
import stat
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import FastckaError, InputError

log = logging.getLogger("fastcka")


class DiskFullError(FastckaError):
    """The device ran out of space while writing (exit code 1); nothing was replaced."""


class LockedError(FastckaError):
    """Another live process is writing the same output (exit code 1)."""


class Interrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an error
    """SIGINT or SIGTERM arrived; ``signum`` says which (the CLI exits with 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# ------------------------------------------------------------------------------- signals

_critical_depth = 0
_pending: int | None = None


def _on_signal(signum, frame) -> None:
    global _pending
    if _critical_depth:
        _pending = signum
        return
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    """SIGINT and SIGTERM raise :class:`Interrupted` (deferred inside :func:`critical`)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """Defer SIGINT/SIGTERM until the block ends (then raise :class:`Interrupted`)."""
    global _critical_depth, _pending
    _critical_depth += 1
    try:
        yield
    finally:
        _critical_depth -= 1
        if _critical_depth == 0 and _pending is not None:
            sig, _pending = _pending, None
            raise Interrupted(sig)


# ------------------------------------------------------------------------------- paths

def real_target(path: str | os.PathLike) -> Path:
    """``path`` with every symlink resolved (a dangling link gives the path it points to)."""
    return Path(os.path.realpath(os.fspath(path)))


def _same_file(a: Path, b: Path) -> bool:
    ra, rb = real_target(a), real_target(b)
    if ra == rb:
        return True
    try:
        return os.path.samefile(ra, rb)  # hard links
    except OSError:
        return False


STDIO = "-"  # as a path: standard input (an input) or standard output (a result table)


def is_stdio(path: str | os.PathLike | None) -> bool:
    """True when ``path`` is ``-`` (standard input or output), not a file."""
    return path is not None and os.fspath(path) == STDIO


_stdin_taken: list[str] = []  # the option that read standard input in this invocation


def reset_stdin() -> None:
    """Forget that standard input was read (a new CLI invocation in the same process)."""
    _stdin_taken.clear()


def stdin_text(what: str) -> str:
    """All of standard input as UTF-8 text, for the input ``what`` given as ``-``.

    Standard input can be read once: a second input given as ``-`` is an :class:`InputError`.
    """
    if _stdin_taken:
        raise InputError(f"{what} is '-' but standard input was already read for "
                         f"{_stdin_taken[0]}; give one of them as a file")
    _stdin_taken.append(what)
    if sys.stdin is None or sys.stdin.closed:
        raise InputError(f"{what} is '-' but there is no standard input")
    if sys.stdin.isatty():
        log.info("reading %s from the terminal (end with Ctrl-D)", what)
    stream = getattr(sys.stdin, "buffer", None)
    data = stream.read() if stream is not None else sys.stdin.read()
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{what} on standard input is not UTF-8 text") from None


def check_outputs(outputs: dict[str, str | os.PathLike | None],
                  inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse (exit 2) an output that resolves to one of ``inputs`` or to another output.

    ``outputs`` maps an option label (``"-o"``) to a path or a store spec; inputs may be store
    specs (``file.h5::/group`` refers to ``file.h5``).  ``-`` (standard input or output) is no file
    and never clashes.
    """
    def file_of(p: str | os.PathLike) -> Path:
        return Path(os.fspath(p).partition("::")[0])

    ins = [file_of(i) for i in inputs if i is not None and not is_stdio(i)]
    outs = [(k, file_of(v)) for k, v in outputs.items() if v is not None and not is_stdio(v)]
    for label, out in outs:
        for inp in ins:
            if _same_file(out, inp):
                raise InputError(f"{label} {out} is the input {inp}; refusing to overwrite an input "
                                 f"(choose another output path)")
    for a in range(len(outs)):
        for b in range(a + 1, len(outs)):
            if _same_file(outs[a][1], outs[b][1]):
                raise InputError(f"{outs[a][0]} and {outs[b][0]} name the same file {outs[a][1]}")


# ------------------------------------------------------------------------------- locks

_held: dict[str, int] = {}  # lock files this process holds -> nesting depth


def _read_pid(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii").strip() or "unknown"
    except (OSError, UnicodeDecodeError):
        return "unknown"


@contextlib.contextmanager
def locked(target: str | os.PathLike, *, tag: str = "", wait: bool = True,
           what: str | None = None) -> Iterator[Path]:
    """Hold the lock file ``.<name><tag>.lock`` beside ``target`` for the block.

    ``wait=True`` waits for a live holder (one log line says so); ``wait=False`` raises
    :class:`LockedError` naming the holder's pid.  A holder that died released its lock with it.
    Re-entrant within one process.
    """
    final = real_target(target)
    lockp = final.with_name(f".{final.name}{tag}.lock")
    key = str(lockp)
    if key in _held:
        _held[key] += 1
        try:
            yield lockp
        finally:
            _held[key] -= 1
        return
    import fcntl

    announced = False
    while True:
        fd = os.open(lockp, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(lockp)
                if not wait:
                    raise LockedError(f"{what or final} is being written by another fastcka process "
                                      f"(pid {holder}, lock {lockp}); wait for it to finish or stop "
                                      f"it") from None
                if not announced:
                    log.warning(f"waiting for process {holder}, which is writing {final}")
                    announced = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:  # the holder we waited for may have removed the lock file: lock the new one
                same = os.stat(lockp).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        _held[key] = 1
        yield lockp
    finally:
        _held.pop(key, None)
        with contextlib.suppress(OSError):
            os.unlink(lockp)
        os.close(fd)


# ------------------------------------------------------------------------------- temporaries

def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_name(final: Path, kind: str = "tmp") -> Path:
    """A fresh temporary name beside ``final``: ``.<name>.<pid>-<token>.<kind>``."""
    return final.with_name(f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}.{kind}")


def remove_stale_temporaries(final: Path) -> None:
    """Remove temporaries of ``final`` left by dead processes (one log line each)."""
    pat = re.compile(rf"^\.{re.escape(final.name)}\.(\d+)-[0-9a-f]+\.tmp$")
    try:
        entries = list(os.scandir(final.parent))
    except OSError:
        return
    for e in entries:
        m = pat.match(e.name)
        if m is None or _alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            if e.is_dir(follow_symlinks=False):
                import shutil

                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            log.warning(f"removed stale temporary {e.path} left by dead process {m.group(1)}")


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _adopt_mode(tmp: Path, final: Path) -> None:
    """Give ``tmp`` the mode (and owner/group where allowed) of ``final``, else the umask's."""
    try:
        st = os.stat(final)
    except FileNotFoundError:
        os.chmod(tmp, 0o666 & ~_umask())
        return
    os.chmod(tmp, stat.S_IMODE(st.st_mode))
    with contextlib.suppress(OSError):
        os.chown(tmp, st.st_uid, st.st_gid)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError or an HDF5 error) reports a full device or quota."""
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    msg = str(exc).lower()
    return "no space left on device" in msg or "disk quota exceeded" in msg


def disk_full(path: Path) -> DiskFullError:
    return DiskFullError(f"cannot write {path}: no space left on device")


def fsync_path(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "rb+") as fh:
        os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None, *,
                lock: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside the (symlink-resolved) target; on success rename it over.

    On any exception (or SIGINT/SIGTERM, deferred until the block ends) the temporary file is
    removed and the target is left untouched, so a file under its final name is always
    complete.  Writers of one target are serialised by :func:`locked` (``lock=True``); stale
    temporaries of dead writers of the target are removed first.  ``suffix`` is accepted for
    compatibility; temporaries are always ``.<name>.<pid>-<token>.tmp``.
    """
    final = real_target(path)
    parent = final.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {parent}")
    if final.is_dir():
        raise IsADirectoryError(f"output path is a folder: {final}")
    with locked(final) if lock else contextlib.nullcontext():
        if lock:
            remove_stale_temporaries(final)
        tmp = temp_name(final)
        try:
            with critical():
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                yield tmp
                _adopt_mode(tmp, final)
                fsync_path(tmp)
            os.replace(tmp, final)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            if isinstance(exc, Exception) and is_disk_full(exc):
                raise disk_full(final) from None
            raise


def write_bytes_to(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` with plain ``os.write`` calls (a full disk is a clean OSError)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view[: 1 << 24])
            view = view[n:]
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def output_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield the folder to write the files of output folder ``path`` into.

    A folder that does not exist yet is built under a temporary sibling name and renamed to
    ``path`` when the block succeeds (removed when it fails), so it appears complete or not at
    all; an existing folder is written in place, each file atomically by its writer.  Missing
    parents are created.
    """
    import shutil

    final = real_target(path)
    if final.exists() and not final.is_dir():
        raise InputError(f"output {path} exists and is not a folder")
    if final.is_dir():
        yield final
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    tmp.mkdir()
    try:
        yield tmp
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
