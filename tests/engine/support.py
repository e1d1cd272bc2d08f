"""A test task kind whose behaviour the arguments choose, and the tracker it reports to.

``demo`` arguments: ``lines`` (log that many numbered lines), ``gate`` (then wait until the
test opens that gate), ``after_gate_lines``, ``targets`` (``[{"id", "name", "exit_code",
"state", "outputs", "sensitive_outputs": {name: key of a sensitive argument}}]``),
``echo_secret`` (log the sensitive argument
``password``), ``late_secret`` (register it as sensitive, then log it), ``fail`` (raise
TaskFailed with that message), ``fail_with_secret`` (a message holding ``password``),
``crash`` (raise an unexpected error).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from octo_appliance.db.tasks import ServerTask
from octo_appliance.engine.tasks import OutputVariable, RunningTask, TaskFailed, TaskKindRegistry

DEMO = "demo"


@dataclass
class Tracker:
    """What the handlers did, as seen from the test thread."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    current: int = 0
    highest: int = 0
    runs: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    gates: dict[str, threading.Event] = field(default_factory=dict)

    def gate(self, name: str) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(name, threading.Event())

    def executing(self) -> int:
        with self.lock:
            return self.current


def demo_handler(tracker: Tracker) -> Callable[[RunningTask], Any]:
    async def run(task: RunningTask) -> None:
        args = task.arguments
        with tracker.lock:
            tracker.runs.append(task.id)
            tracker.current += 1
            tracker.highest = max(tracker.highest, tracker.current)
        try:
            for target in args.get("targets", []):
                await task.set_target_result(target["id"], target["name"], "executing")
            if args.get("echo_secret"):
                task.info(f"the password is {task.sensitive_arguments['password']}")
            if args.get("late_secret"):
                task.add_sensitive_values([args["late_secret"]])
                task.info(f"late: {args['late_secret']}")
            for number in range(1, args.get("lines", 0) + 1):
                target = (
                    args["targets"][number % len(args["targets"])] if args.get("targets") else None
                )
                task.log(
                    "info", f"line {number}", (target["id"], target["name"]) if target else None
                )
            if args.get("gate"):
                gate = tracker.gate(args["gate"])
                while not gate.is_set():
                    await asyncio.sleep(0.01)
            for number in range(1, args.get("after_gate_lines", 0) + 1):
                task.info(f"after {number}")
            for target in args.get("targets", []):
                outputs = [OutputVariable(k, v) for k, v in target.get("outputs", {}).items()]
                secrets = {
                    name: task.sensitive_arguments[key]
                    for name, key in target.get("sensitive_outputs", {}).items()
                }
                outputs += [OutputVariable(k, v, sensitive=True) for k, v in secrets.items()]
                await task.set_target_result(
                    target["id"],
                    target["name"],
                    target.get("state", "success"),
                    exit_code=target.get("exit_code", 0),
                    output_variables=outputs,
                    message=target.get("message"),
                )
                for value in secrets.values():
                    task.info(f"output was {value}", (target["id"], target["name"]))
            if args.get("fail"):
                raise TaskFailed(args["fail"])
            if args.get("fail_with_secret"):
                raise TaskFailed(f"failed with {task.sensitive_arguments['password']}")
            if args.get("crash"):
                raise RuntimeError(f"crashed {args.get('crash_text', '')}")
        except asyncio.CancelledError:
            with tracker.lock:
                tracker.cancelled.append(task.id)
            raise
        finally:
            with tracker.lock:
                tracker.current -= 1

    return run


def demo_kinds(tracker: Tracker) -> TaskKindRegistry:
    kinds = TaskKindRegistry()
    kinds.register(DEMO, demo_handler(tracker))
    return kinds


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll until ``predicate()``; the timeout only bounds a hang, it is not under test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


def task_row(task_id: str) -> ServerTask:
    return ServerTask.get_by_id(task_id)


def wait_finished(task_id: str, timeout: float = 30.0) -> ServerTask:
    from octo_appliance.db.tasks import FINAL_STATES

    wait_until(
        lambda: task_row(task_id).state in FINAL_STATES, f"task {task_id} to finish", timeout
    )
    return task_row(task_id)


def wait_state(task_id: str, state: str, timeout: float = 30.0) -> ServerTask:
    wait_until(lambda: task_row(task_id).state == state, f"task {task_id} to be {state}", timeout)
    return task_row(task_id)


def sse_events(lines: Any) -> Any:
    """Parse server-sent events from an iterator of text lines.

    Yields ``{"id", "event", "data"}`` dicts (missing fields absent) and ``{"comment": text}``
    for comment lines.
    """
    event: dict[str, str] = {}
    for line in lines:
        if line == "":
            if event:
                yield event
                event = {}
            continue
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        event[name] = event[name] + "\n" + value if name in event else value
    if event:
        yield event


def log_messages_until(events: Iterator[dict[str, str]], message: str) -> list[str]:
    """The messages of the ``log`` events read from ``events`` up to the one that is
    ``message`` (the rest of the stream is left to read)."""
    seen: list[str] = []
    for event in events:
        if event.get("event") == "log":
            seen.append(json.loads(event["data"])["message"])
        if message in seen:
            break
    return seen
