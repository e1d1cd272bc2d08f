"""Work directories: create them on demand, private to the agent's user."""

from __future__ import annotations

import os

from .errors import RunnerError


def ensure_directory(path: str) -> str:
    """Create ``path`` (mode 0700 for new directories) and return it as an absolute path."""
    full = os.path.abspath(path)
    try:
        os.makedirs(full, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise RunnerError(
            f"cannot create the work directory {full}: {exc.strerror or exc}",
            hint="check that the agent's user may write there, or configure another work path",
        ) from exc
    if not os.path.isdir(full):
        raise RunnerError(f"the work directory {full} is not a directory")
    return full
