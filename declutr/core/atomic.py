"""Atomic writes: a file or a folder appears complete under its final name, or not at all.

Both helpers write under a temporary name next to the target (same file system, so the final
``os.replace`` is atomic) and remove the temporary on any error, interrupts included. They use
the standard library only, so every layer (data, training, io, inference) can share them.

``tempfile`` creates its files 0600 and folders 0700 whatever the umask; both helpers give them
the permissions an ordinary ``open``/``mkdir`` would (0666/0777 less the umask), so a run
directory shared by a team, or an export read by a server under another user, can be opened.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def current_umask() -> int:
    """The process's umask (read by setting it and back: not for use from several threads at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _ordinary_mode(path: str, directory: bool) -> None:
    """Give a ``tempfile``-made ``path`` the mode ``open``/``mkdir`` would have given it."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", *, fsync: bool = False, **open_kwargs: Any) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success it replaces ``path`` atomically.

    ``mode`` is ``"w"`` or ``"wb"`` (``encoding`` defaults to UTF-8 in text mode); ``fsync``
    flushes the data to disk before the rename (for small pointer files that must survive a crash).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file writes whole files: mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    if mode == "w":
        open_kwargs.setdefault("encoding", "utf-8")
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        _ordinary_mode(temporary, directory=False)
        with os.fdopen(handle, mode, **open_kwargs) as file:
            yield file
            if fsync:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, *, fsync: bool = True) -> None:
    """Write ``text`` to ``path`` atomically (fsynced by default)."""
    with atomic_file(path, "w", fsync=fsync) as file:
        file.write(text)


@contextlib.contextmanager
def staged_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder next to ``directory``; on success it becomes ``directory``.

    An existing ``directory`` is replaced: it is first renamed aside and removed only once the new
    folder is in place, so at every moment one complete version exists under a known name.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        _ordinary_mode(str(staging), directory=True)
        yield staging
        for path in staging.rglob("*"):  # what libraries wrote 0600 (safetensors does) follows the umask too
            if not path.is_symlink():
                _ordinary_mode(str(path), directory=path.is_dir())
        if directory.exists():
            previous = directory.with_name(f".{directory.name}.previous")
            shutil.rmtree(previous, ignore_errors=True)
            os.replace(directory, previous)
            os.replace(staging, directory)
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
