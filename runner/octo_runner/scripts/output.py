"""Turn a script's output lines into events, acting on the service messages among them."""

from __future__ import annotations

import os

from ..protocol import EventWriter
from ..service_messages import MalformedServiceMessage, ServiceMessage, parse_service_message

#: ``##octo[stdout-<x>]`` switches the level of the plain stdout lines that follow.
STDOUT_LEVELS = {
    "stdout-default": "info",
    "stdout-verbose": "verbose",
    "stdout-highlight": "highlight",
    "stdout-wait": "wait",
    "stdout-warning": "warning",
    "stdout-error": "error",
}

#: Level of every stderr line: shown as an error, but it does not fail the step by itself.
STDERR_LEVEL = "error"


class OutputHandler:
    """State of one script's output: current stdout level, result message, forced failure."""

    def __init__(self, events: EventWriter, work_dir: str) -> None:
        self.events = events
        self.work_dir = work_dir
        self.level = "info"
        self.result_message: str | None = None
        self.failed_by_message = False

    def stdout_line(self, line: str) -> None:
        try:
            message = parse_service_message(line)
        except MalformedServiceMessage as exc:
            self.events.log("warning", f"{exc} (ignored)")
            return
        if message is None:
            self.events.log(self.level, line, stream="stdout")
        else:
            self.handle(message)

    def stderr_line(self, line: str) -> None:
        self.events.log(STDERR_LEVEL, line, stream="stderr")

    def handle(self, message: ServiceMessage) -> None:
        name = message.name
        if name in STDOUT_LEVELS:
            self.level = STDOUT_LEVELS[name]
        elif name == "setVariable":
            self._set_variable(message)
        elif name == "mask":
            self.events.masker.add(message.get("value") or "")
        elif name == "createArtifact":
            self._artifact(message)
        elif name == "progress":
            self._progress(message)
        elif name in ("resultMessage", "fail"):
            self.result_message = message.get("message") or self.result_message
            self.failed_by_message = self.failed_by_message or name == "fail"
        else:
            self.events.log("warning", f"unknown service message {name!r} ignored")

    def _set_variable(self, message: ServiceMessage) -> None:
        name, value = message.get("name"), message.get("value")
        flag = (message.get("sensitive") or "False").strip().lower()
        if not name or value is None or flag not in ("true", "false"):
            self.events.log(
                "warning",
                "malformed setVariable service message ignored: it needs name, value and "
                "sensitive='True' or 'False' (all base64)",
            )
            return
        sensitive = flag == "true"
        if sensitive:
            # Before anything else is written: later lines must already be masked.
            self.events.masker.add(value)
        self.events.output_variable(name, value, sensitive)
        kind = "sensitive output variable" if sensitive else "output variable"
        self.events.log("verbose", f"set {kind} {name!r}")

    def _artifact(self, message: ServiceMessage) -> None:
        path = message.get("path")
        if not path:
            self.events.log("warning", "createArtifact service message without a path ignored")
            return
        full = os.path.normpath(os.path.join(self.work_dir, path))
        try:
            length = os.stat(full).st_size
        except OSError:
            self.events.log("warning", f"artifact {path!r} not found; it will not be collected")
            return
        self.events.artifact(full, message.get("name") or os.path.basename(full), length)

    def _progress(self, message: ServiceMessage) -> None:
        try:
            percentage = int(float(message.get("percentage") or "0"))
        except ValueError:
            self.events.log("warning", "progress service message with a non-numeric percentage")
            return
        self.events.progress(max(0, min(100, percentage)), message.get("message") or "")
