"""``#{...}`` substitution in the package's files that match the step's patterns.

The runner's substitution engine (``octo_runner.substitution``) evaluates each matching
file. A reference to a variable that does not exist is left as written with a warning naming
it (Octopus does the same), while a template error (unbalanced ``#{if}``, unknown filter,
a reference loop) fails the deployment naming the file. Files are read and written as UTF-8
(a byte-order mark is kept, line endings are untouched); binary files (with NUL bytes) and
files that are not UTF-8 are skipped with a message. A file is rewritten only when its text
changed, atomically and with its permissions kept.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Mapping, Sequence

from ..errors import RunnerError
from ..protocol import EventWriter
from ..substitution import SubstitutionError, UnresolvedVariablesError, substitute
from . import globs
from .files import describe_os_error, write_atomic

WHAT = "substitute_files"


def substitute_files(
    root: str, patterns: Sequence[str], variables: Mapping[str, str], events: EventWriter
) -> list[str]:
    """Substitute in every file below ``root`` matching ``patterns``; return the changed
    files (``a/b`` paths relative to ``root``)."""
    matched, unmatched = globs.match(root, patterns, WHAT)
    for pattern in unmatched:
        events.log("warning", f"No file matches the substitution pattern {pattern!r}")
    changed = [rel for rel in matched if _substitute_one(root, rel, variables, events)]
    summary = f"Substituted variables in {len(changed)} of {len(matched)} file(s)"
    events.log("info", summary + listing(changed))
    return changed


def _substitute_one(root: str, rel: str, variables: Mapping[str, str], events: EventWriter) -> bool:
    path = os.path.join(root, *rel.split("/"))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise RunnerError(f"cannot read {rel} to substitute: {describe_os_error(exc)}") from exc
    if b"\x00" in data:
        events.log("verbose", f"{rel} looks binary (it holds NUL bytes): not substituted")
        return False
    bom = codecs.BOM_UTF8 if data.startswith(codecs.BOM_UTF8) else b""
    try:
        text = data[len(bom) :].decode("utf-8")
    except UnicodeDecodeError:
        events.log("warning", f"{rel} is not UTF-8 text: not substituted (save it as UTF-8)")
        return False
    if "#{" not in text:
        return False
    try:
        try:
            result = substitute(text, variables)
        except UnresolvedVariablesError as exc:
            events.log(
                "warning",
                f"{rel}: unresolved variable(s) left as written: {', '.join(exc.names)}",
            )
            result = substitute(text, variables, strict=False)
    except SubstitutionError as exc:
        raise RunnerError(
            f"cannot substitute variables in {rel}: {exc.message}", hint=exc.hint
        ) from exc
    if result == text:
        return False
    try:
        write_atomic(path, bom + result.encode("utf-8"))
    except OSError as exc:
        raise RunnerError(f"cannot write {rel}: {describe_os_error(exc)}") from exc
    return True


def listing(names: Sequence[str], limit: int = 20) -> str:
    """``": a, b, c"`` (at most ``limit`` names, then how many more); empty for none."""
    if not names:
        return ""
    shown = ", ".join(names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f": {shown}{more}"
