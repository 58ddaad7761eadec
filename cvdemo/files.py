"""Publishing files atomically: write a temp file beside the target, then rename it into place.

Several processes (a second server, a test worker, the inference server) share cvdemo's cache; a
reader must never see half a file, and a failed write must leave nothing behind.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator


@contextmanager
def atomic_write(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content into; renamed onto ``path`` when the block ends
    normally (``os.replace``: readers see the old file or the new one), removed when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`); returns the path."""
    with atomic_write(path) as fh:
        fh.write(data)
    return Path(path)


def publish(work: str | os.PathLike, final: str | os.PathLike, is_complete: Callable[[Path], bool]) -> Path:
    """Rename a finished temp file or folder ``work`` onto ``final`` (same file system). Losing the race
    to another process that already published a complete ``final`` is fine; any other failure raises."""
    final = Path(final)
    try:
        os.replace(work, final)
    except OSError:
        if not is_complete(final):  # not another process that finished first: a real error
            raise
    return final
