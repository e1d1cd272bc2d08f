"""Task kinds: the handler each kind of task runs, and what a handler is given.

A handler is ``async def run(task: RunningTask) -> None``. It returns when the work is done,
raises :class:`TaskFailed` to fail the task with a message, and is cancelled (it sees
``asyncio.CancelledError`` at its next ``await``) when the task is canceled, times out or the
appliance stops; it must then clean up (stop remote work) and let the error propagate.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from octo_runner.masking import Masker

from octo_appliance.db.base import utcnow
from octo_appliance.db.tasks import FINAL_TARGET_STATES, TARGET_STATES
from octo_appliance.engine.tasks.claims import ClaimedTask
from octo_appliance.engine.tasks.log import TargetRef, TaskLogWriter
from octo_appliance.engine.tasks.output import DEFAULT_MAX_LINES, OutputBudget
from octo_appliance.engine.tasks.store import OutputVariable, TargetResult
from octo_appliance.exceptions import OctoError, PluginError

if TYPE_CHECKING:
    from octo_appliance.engine.tasks.store import StoredLine

TaskHandler = Callable[["RunningTask"], Coroutine[Any, Any, None]]
#: saves one target result (the engine's worker threads do the database work)
SaveResult = Callable[[str, TargetResult], Awaitable[None]]

_KIND_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


class TaskFailed(OctoError):
    """Raised by a handler: the task fails, and ``message`` goes to its log and ``error``."""


class TaskKindRegistry:
    """Kind name -> handler; a name registered twice is an error naming it."""

    def __init__(self) -> None:
        self._handlers: dict[str, TaskHandler] = {}

    def register(self, kind: str, handler: TaskHandler) -> None:
        if not _KIND_NAME.match(kind):
            raise PluginError(
                f"invalid task kind name {kind!r}",
                hint="names are lower-case words joined by dashes, like health-check",
            )
        if kind in self._handlers:
            raise PluginError(
                f"task kind '{kind}' is registered twice",
                hint="give one of the two handlers another kind name",
            )
        self._handlers[kind] = handler

    def get(self, kind: str) -> TaskHandler | None:
        return self._handlers.get(kind)

    def __contains__(self, kind: object) -> bool:
        return kind in self._handlers

    def names(self) -> list[str]:
        return sorted(self._handlers)


def _target_ref(target: TargetRef | tuple[str, str] | None) -> TargetRef | None:
    if target is None or isinstance(target, TargetRef):
        return target
    return TargetRef(*target)


class RunningTask:
    """A claimed task as its handler sees it: arguments, log, target results, masking."""

    def __init__(
        self,
        claimed: ClaimedTask,
        node: str,
        writer: TaskLogWriter,
        masker: Masker,
        save_result: SaveResult,
        output_line_limit: int = DEFAULT_MAX_LINES,
    ) -> None:
        self.id = claimed.id
        self.kind = claimed.kind
        self.description = claimed.description
        self.arguments: dict[str, Any] = claimed.arguments
        self.sensitive_arguments: dict[str, Any] = claimed.sensitive_arguments
        self.environment_id = claimed.environment_id
        self.project_id = claimed.project_id
        self.created_by = claimed.created_by_name
        self.timeout_seconds = claimed.timeout_seconds
        self.node = node
        self.targets: dict[str, TargetResult] = {}
        self._writer = writer
        self._masker = masker
        self._save_result = save_result
        #: why the engine is stopping the handler (``canceled``, ``timed_out``, ``shutdown``)
        self.stop_reason: str | None = None
        #: extra keys a handler keeps in the task's ``summary`` (a deployment's per-step
        #: states); the engine adds ``targets`` and ``states`` when the task ends
        self.summary: dict[str, Any] = {}
        #: lines of script output this task may still log (see engine/tasks/output.py)
        self.output_budget = OutputBudget(output_line_limit)

    @property
    def cancel_requested(self) -> bool:
        return self.stop_reason is not None

    def mask(self, text: str) -> str:
        return self._masker.mask(text)

    def add_sensitive_values(self, values: Iterable[str]) -> None:
        """Mask these values in every later log line, error and target message."""
        self._masker.add_all(str(value) for value in values)

    def log(
        self, level: str, message: str, target: TargetRef | tuple[str, str] | None = None
    ) -> StoredLine:
        """Append a line (masked) to the task log; never blocks. Levels: see LOG_LEVELS."""
        return self._writer.append(self.id, level, message, _target_ref(target))

    async def log_room(self) -> None:
        """Wait while the task log has too many lines not stored yet (a producer that can
        wait, such as a target's runner events, calls this so memory stays bounded)."""
        await self._writer.room()

    def info(self, message: str, target: TargetRef | tuple[str, str] | None = None) -> None:
        self.log("info", message, target)

    def warning(self, message: str, target: TargetRef | tuple[str, str] | None = None) -> None:
        self.log("warning", message, target)

    def error(self, message: str, target: TargetRef | tuple[str, str] | None = None) -> None:
        self.log("error", message, target)

    async def set_target_result(
        self,
        target_id: str,
        target_name: str,
        state: str,
        exit_code: int | None = None,
        output_variables: Sequence[OutputVariable] | Mapping[str, str] | None = None,
        message: str | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
    ) -> TargetResult:
        """Record (or update) a target's outcome; sensitive output values are masked from now.

        Fields left ``None`` keep what an earlier call set; a final state sets ``finished_at``
        and a first ``executing`` sets ``started_at`` when not given.
        """
        if state not in TARGET_STATES:
            raise ValueError(f"unknown target state {state!r}; use one of {TARGET_STATES}")
        result = self.targets.get(target_id) or TargetResult(target_id, target_name)
        result.target_name = target_name
        result.state = state
        if exit_code is not None:
            result.exit_code = exit_code
        if output_variables is not None:
            if isinstance(output_variables, Mapping):
                variables = [OutputVariable(k, str(v)) for k, v in output_variables.items()]
            else:
                variables = list(output_variables)
            self.add_sensitive_values(v.value for v in variables if v.sensitive)
            # A value built from a secret (``set_octovariable X "#{Secret}-suffix"``) is a
            # secret too: sealed and shown as set, never stored or returned in clear.
            variables = [
                v
                if v.sensitive or self.mask(v.value) == v.value
                else OutputVariable(v.name, v.value, True)
                for v in variables
            ]
            result.output_variables = variables
        if message is not None:
            result.message = self.mask(message)
        now = utcnow()
        if started_at is not None:
            result.started_at = started_at
        elif result.started_at is None and state not in ("pending", "skipped"):
            result.started_at = now
        if finished_at is not None:
            result.finished_at = finished_at
        elif state in FINAL_TARGET_STATES and result.finished_at is None:
            result.finished_at = now
        self.targets[target_id] = result
        await self._save_result(self.id, result)
        return result
