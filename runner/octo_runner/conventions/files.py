"""Small file helpers the conventions share: atomic replacement and containment checks."""

from __future__ import annotations

import contextlib
import os
import tempfile


def write_atomic(path: str, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` through a temp file beside it and ``os.replace``, so a
    reader (or a crash) sees the old content or the new one, never half of it. ``mode``
    defaults to the current file's permission bits (0o600 for a new file)."""
    directory = os.path.dirname(os.path.abspath(path))
    if mode is None:
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o600
    fd, temp = tempfile.mkstemp(prefix=".octo-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


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
