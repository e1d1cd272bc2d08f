"""The interface the engine uses to reach a target, whatever carries the bytes."""

from __future__ import annotations

from typing import ClassVar


class Transport:
    """Base class of transports. Subclasses set ``name`` and ``summary``."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
