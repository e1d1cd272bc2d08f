"""Replace sensitive values with ``********`` in text before it leaves the process.

One ``Masker`` holds every value known to be sensitive: the sensitive variables of the
request, and values a script marks sensitive while it runs. Masking works on whole
occurrences within one piece of text (a log line or a message): a secret printed across two
lines, or split by the 64 KiB line cap, is masked only as far as its parts are themselves
registered. To narrow that gap, a multi-line value also registers each of its lines that is
at least ``MIN_FRAGMENT_LENGTH`` characters long (e.g. the body lines of a PEM key), and a
value with surrounding whitespace also registers its stripped form.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

MASK = "********"

#: Lines of a multi-line secret shorter than this are not masked on their own: masking every
#: ``}`` or ``-----END KEY-----`` line in a log would hide more than it protects.
MIN_FRAGMENT_LENGTH = 8


class Masker:
    """A thread-safe set of secret values and the compiled pattern that hides them."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add_all(values)

    def __len__(self) -> int:
        return len(self._values)

    def add(self, value: str) -> None:
        """Mask ``value`` (and its stripped form and long lines) from now on; ignore ''."""
        self.add_all((value,))

    def add_all(self, values: Iterable[str]) -> None:
        with self._lock:
            before = len(self._values)
            for value in values:
                self._values.update(_forms(value))
            if len(self._values) != before:
                self._pattern = _compile(self._values)

    def mask(self, text: str) -> str:
        """Return ``text`` with every whole occurrence of a secret replaced, longest first."""
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)


def _forms(value: str) -> set[str]:
    forms = {value, value.strip()}
    if "\n" in value or "\r" in value:
        forms.update(
            line.strip() for line in value.splitlines() if len(line.strip()) >= MIN_FRAGMENT_LENGTH
        )
    forms.discard("")
    return forms


def _compile(values: set[str]) -> re.Pattern[str]:
    # An alternation tries its branches in order, so listing longer values first makes the
    # longest secret win where one contains another ("abc" inside "abcdef").
    ordered = sorted(values, key=lambda v: (-len(v), v))
    return re.compile("|".join(re.escape(v) for v in ordered))
