"""Small file helpers the conventions share: atomic replacement and containment checks."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

#: bytes copied at a time from an archive member or a file to another file. Each read
#: returns a new ``bytes`` object; at 1 MiB glibc's malloc gave each one fresh pages (an
#: ``mmap``, or heap grown and trimmed again), so a 50 MiB package cost ~30,000 page faults to
#: extract against ~700 at 64 KiB: with 50 targets extracting at once on 2 cores that was
#: most of the warm fan-out's gap to the floor, whose ``python -m zipfile -e`` copies 64 KiB at
#: a time (docs/performance.md, "Page faults in the extraction").
COPY_BUFFER = 64 * 1024


@contextlib.contextmanager
def replacing(path: str, *, suffix: str = "") -> Iterator[tuple[int, str]]:
    """A temp file beside ``path`` (its descriptor and name) that replaces ``path`` through
    ``os.replace`` when the block ends, or is removed when the block raises: a reader (or a
    crash) sees the old content or the new one, never half of it. The block closes the
    descriptor."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=".octo-", suffix=suffix, dir=directory)
    try:
        yield fd, temp
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def write_atomic(path: str, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` (see :func:`replacing`), synced to disk. ``mode``
    defaults to the current file's permission bits (0o600 for a new file)."""
    if mode is None:
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o600
    with replacing(path, suffix=".tmp") as (fd, temp):
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, mode)


def is_within(path: str, root: str) -> bool:
    """True when ``path`` is ``root`` or lies below it (both made absolute and normalised;
    symbolic links are not resolved: callers resolve first when that matters)."""
    path = os.path.normpath(os.path.abspath(path))
    root = os.path.normpath(os.path.abspath(root))
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def describe_os_error(exc: OSError) -> str:
    """``strerror: filename`` without Python's ``[Errno n]`` noise."""
    reason = exc.strerror or str(exc)
    return f"{reason}: {exc.filename}" if exc.filename else reason
