"""The runner's wire protocol: one JSON request on stdin, JSON-lines events on stdout.

``parse_request`` validates the request (``BadInputError`` names the offending field);
``EventWriter`` writes events, masking every log line and message on the way out. The
authoritative description, with examples, is ``docs/runner-protocol.md``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, BinaryIO

from . import PROTOCOL_VERSION
from .errors import BadInputError, RunnerError
from .masking import Masker

LEVELS = ("verbose", "info", "highlight", "wait", "warning", "error")
STREAMS = ("stdout", "stderr", "runner")
KNOWN_FIELDS = ("protocol", "command", "arguments", "variables", "work_dir", "context", "plugin")
_SHA256_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Variable:
    name: str
    value: str
    sensitive: bool = False


@dataclass(frozen=True)
class PluginBundleRef:
    """The plugin command bundle a request's command comes from: a zip on this machine
    (``path``, absolute) and the SHA-256 it must have (checked before anything is loaded)."""

    path: str
    sha256: str
    name: str = ""


@dataclass(frozen=True)
class Request:
    command: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    variables: tuple[Variable, ...] = ()
    work_dir: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    ignored_fields: tuple[str, ...] = ()
    #: where a command that is not built in comes from (docs/runner-protocol.md, "Plugin
    #: commands"); None: only the built-in commands
    plugin: PluginBundleRef | None = None

    def variable_map(self) -> dict[str, str]:
        """Name -> value; a later duplicate name wins."""
        return {v.name: v.value for v in self.variables}

    def sensitive_values(self) -> list[str]:
        return [v.value for v in self.variables if v.sensitive]


def parse_request(data: bytes) -> Request:
    """Decode and validate the stdin document (raises ``BadInputError``)."""
    if not data.strip():
        raise BadInputError(
            "no request on stdin", hint="write one JSON request to the runner's stdin, then EOF"
        )
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadInputError("the request is not UTF-8", hint="encode the JSON as UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise BadInputError(
            f"the request is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            hint="send exactly one JSON object on stdin",
        ) from exc
    if not isinstance(document, dict):
        raise BadInputError("the request must be a JSON object", hint="see docs/runner-protocol.md")
    protocol = document.get("protocol")
    if protocol != PROTOCOL_VERSION or isinstance(protocol, bool):
        raise BadInputError(
            f"unsupported protocol version {protocol!r}; this runner speaks {PROTOCOL_VERSION}",
            hint="use a runner version that matches the agent (see docs/runner-protocol.md)",
        )
    command = _string(document, "command", "request")
    arguments = _mapping(document, "arguments")
    context = _mapping(document, "context")
    work_dir = document.get("work_dir")
    if work_dir is not None and (not isinstance(work_dir, str) or not work_dir):
        raise BadInputError("'work_dir' must be a non-empty string (a directory path)")
    return Request(
        command=command,
        arguments=arguments,
        variables=_variables(document.get("variables", [])),
        work_dir=work_dir,
        context=context,
        ignored_fields=tuple(sorted(k for k in document if k not in KNOWN_FIELDS)),
        plugin=_plugin(document.get("plugin")),
    )


def _plugin(value: Any) -> PluginBundleRef | None:
    """The optional ``plugin`` field: ``{"path", "sha256", "name"?}``."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadInputError("request field 'plugin' must be an object {path, sha256, name}")
    path, sha256, name = value.get("path"), value.get("sha256"), value.get("name", "")
    if not isinstance(path, str) or not os.path.isabs(path):
        raise BadInputError("plugin.path must be the absolute path of a plugin command bundle")
    if not isinstance(sha256, str) or len(sha256) != 64 or not set(sha256) <= _SHA256_HEX:
        raise BadInputError("plugin.sha256 must be 64 lowercase hex digits (a SHA-256 digest)")
    if not isinstance(name, str):
        raise BadInputError("plugin.name must be a string")
    return PluginBundleRef(path, sha256, name)


def _string(document: Mapping[str, Any], key: str, where: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise BadInputError(f"{where} field {key!r} must be a non-empty string, got {value!r}")
    return value


def _mapping(document: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key, {})
    if not isinstance(value, dict):
        raise BadInputError(f"request field {key!r} must be a JSON object")
    return value


_VARIABLE_FIELDS = frozenset({"name", "value", "sensitive"})


def _variables(value: Any) -> tuple[Variable, ...]:
    if not isinstance(value, list):
        raise BadInputError("request field 'variables' must be a list of {name, value, sensitive}")
    result = []
    for index, item in enumerate(value):
        where = f"variables[{index}]"
        if not isinstance(item, dict):
            raise BadInputError(f"{where} must be an object with name, value and sensitive")
        if not item.keys() <= _VARIABLE_FIELDS:  # a view comparison: no set built per item
            unknown = sorted(item.keys() - _VARIABLE_FIELDS)
            raise BadInputError(f"{where} has unknown field(s) {', '.join(unknown)}")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise BadInputError(f"{where}.name must be a non-empty string")
        raw = item.get("value")
        if not isinstance(raw, str):
            # Never echo the value: it may be a secret sent with the wrong type.
            raise BadInputError(f"{where}.value ({name}) must be a string")
        sensitive = item.get("sensitive", False)
        if not isinstance(sensitive, bool):
            raise BadInputError(f"{where}.sensitive ({name}) must be true or false")
        result.append(Variable(name, raw, sensitive))
    return tuple(result)


class Arguments:
    """Typed access to ``request.arguments`` that fails with the argument's name."""

    def __init__(self, values: Mapping[str, Any], command: str) -> None:
        self.values = values
        self.command = command

    def _fail(self, key: str, expected: str) -> BadInputError:
        return BadInputError(f"{self.command}: argument {key!r} must be {expected}")

    def string(self, key: str, *, default: str | None = None, choices: tuple[str, ...] = ()) -> str:
        value = self.values.get(key, default)
        if not isinstance(value, str):
            raise self._fail(key, "a string")
        if choices and value not in choices:
            raise self._fail(key, "one of " + ", ".join(choices))
        return value

    def optional_string(self, key: str) -> str | None:
        return None if self.values.get(key) is None else self.string(key)

    def number(self, key: str, default: float) -> float:
        value = self.values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise self._fail(key, "a non-negative number")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.values.get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, "true or false")
        return value

    def mapping(self, key: str) -> dict[str, Any] | None:
        value = self.values.get(key)
        if value is not None and not isinstance(value, dict):
            raise self._fail(key, "an object")
        return value


class EventStreamClosed(RunnerError):
    """Stdout is closed: the agent stopped listening, so the runner stops the work."""


class EventWriter:
    """Writes one JSON event per line, flushed, masking log lines and messages.

    Output variables, artifact paths and result details are not masked: the agent needs
    the real values (the appliance seals sensitive output variables). Thread-safe.
    """

    def __init__(self, out: BinaryIO, masker: Masker) -> None:
        self.out = out
        self.masker = masker
        self.counts = dict.fromkeys(LEVELS, 0)
        self.result_sent = False
        self.closed = False
        self._lock = threading.Lock()

    def log(self, level: str, message: str, *, stream: str = "runner") -> None:
        self.counts[level] += 1
        event = {"type": "log", "level": level, "time": _now(), "message": message}
        self.emit({**event, "stream": stream})

    def output_variable(self, name: str, value: str, sensitive: bool) -> None:
        event = {"type": "output-variable", "name": name, "value": value}
        self.emit({**event, "sensitive": sensitive})

    def artifact(self, path: str, name: str, length: int) -> None:
        self.emit({"type": "artifact", "path": path, "name": name, "length": length})

    def progress(self, percentage: int, message: str) -> None:
        self.emit({"type": "progress", "percentage": percentage, "message": message})

    def result(self, exit_code: int, success: bool, message: str, **extra: Any) -> None:
        event = {"type": "result", "exit_code": exit_code, "success": success}
        self.emit({**event, "message": message, **extra})
        self.result_sent = True

    def emit(self, event: dict[str, Any]) -> None:
        if event["type"] in ("log", "progress", "result"):
            event["message"] = self.masker.mask(event["message"])
        try:
            line = json.dumps(event, ensure_ascii=False)
            data = (line + "\n").encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates from a malformed request
            data = (json.dumps(event, ensure_ascii=True) + "\n").encode("ascii")
        with self._lock:
            if self.result_sent or self.closed:
                return  # the result is the last event, whatever a late thread says
            try:
                self.out.write(data)
                self.out.flush()
            except OSError as exc:
                # The agent is gone: nobody can see the work any more, so stop it.
                self.closed = True
                raise EventStreamClosed("the agent closed the runner's output") from exc


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
