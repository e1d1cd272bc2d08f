"""Where one Octo fan-out run's time went, per target, from the task log it already writes
(issue 14): each line carries the appliance's clock and its target, and the runner reports
the ends of its phases, so the bench needs no timing of its own and the product none extra.

For every target, by the first line of each kind seen for it (medians over the targets):

- **package**: task start -> the transfer line (``...: sent`` / ``already in the target's
  cache``): planning, variables and the acquisition check;
- **extract**: -> ``Extracted ...``: the runner command sent, the runner forked from the
  agent's fork server, journal, package size check, extraction with CRC checks;
- **conventions**: -> ``Running the Deploy script``: substitution and structured-variable
  scans, install directory, script helpers written;
- **script+back**: -> the step's end (``Step '...' succeeded``, shared by the targets): the
  script itself, its output streamed, the result handed back, the slowest target waited;
- **finish**: step end -> the task's last line: the deployment's own bookkeeping (target
  results stored, the deployment record).

Lines reach the appliance over the agent connection, so each mark is a little after the
moment it names; what matters is where the differences are.
"""

from __future__ import annotations

import statistics
from typing import Any

from _job import PACKAGE_ID, PACKAGE_VERSION
from _tasks import (
    parse_iso,
)

#: (phase, the message prefix or marker that ends it), in order
MARKS = (
    ("package", f"{PACKAGE_ID} {PACKAGE_VERSION}: "),
    ("extract", "Extracted "),
    ("conventions", "Running the Deploy script"),
)


def phases(items: list[dict[str, Any]]) -> dict[str, float]:
    """Median seconds of each phase over the targets; empty if the log lacks a mark."""
    if not items:
        return {}
    start = parse_iso(items[0]["time"])
    step_end = next(
        (
            parse_iso(i["time"])
            for i in items
            if str(i["message"]).startswith("Step '")
            and str(i["message"]).rstrip(".").endswith("succeeded")
        ),
        None,
    )
    marks: dict[str, dict[str, float]] = {}
    for item in items:
        name = (item.get("target") or {}).get("name")
        if not name:
            continue
        for phase, prefix in MARKS:
            if str(item["message"]).startswith(prefix):
                marks.setdefault(name, {}).setdefault(phase, parse_iso(item["time"]))
    complete = [m for m in marks.values() if len(m) == len(MARKS)]
    if not complete or step_end is None:
        return {}
    spans: dict[str, list[float]] = {}
    for mark in complete:
        previous = start
        for phase, _ in MARKS:
            spans.setdefault(phase, []).append(mark[phase] - previous)
            previous = mark[phase]
        spans.setdefault("script+back", []).append(step_end - previous)
    result = {phase: statistics.median(values) for phase, values in spans.items()}
    result["finish"] = parse_iso(items[-1]["time"]) - step_end
    return result


def phases_text(items: list[dict[str, Any]]) -> str:
    """`` [package 0.01 extract 1.02 ...]`` for the progress line, or nothing."""
    found = phases(items)
    if not found:
        return ""
    return " [" + " ".join(f"{phase} {seconds:.2f}" for phase, seconds in found.items()) + "]"
