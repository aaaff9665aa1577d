"""Files written whole or not at all."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Any, Callable

__all__ = ["write_atomically", "check_writable"]


def write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(temporary path)``, then the temporary file renamed to ``path`` (same folder, so the
    rename is atomic): a reader sees the old file or the whole new one, never a part, and a full
    disk leaves the old file as it was. The temporary file is removed when writing fails."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # the usual permissions
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_writable(path: Path) -> None:
    """Raise OSError unless a file can be written (atomically) at ``path``: its folder is made
    if missing and a probe file is created and removed there."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where a folder should be
        raise NotADirectoryError(20, "Not a directory", str(path.parent)) from None
    if path.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(path))
    probe = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.check")
    probe.write_bytes(b"")
    probe.unlink()
