"""Server tasks: a persistent queue claimed under a cap, handlers per kind, a sealed live log.

See ``docs/tasks.md``. The pieces: :mod:`.store` (database work, synchronous), :mod:`.log`
(sequence numbers, masking, batched sealed storage, live followers), :mod:`.kinds` (the
handler registry and what a handler gets) and :mod:`.executor` (:class:`TaskEngine`).
"""

from __future__ import annotations

from octo_appliance.engine.tasks.kinds import RunningTask, TaskFailed, TaskHandler, TaskKindRegistry
from octo_appliance.engine.tasks.log import TargetRef, TaskLogWriter
from octo_appliance.engine.tasks.running import RESTART_MESSAGE
from octo_appliance.engine.tasks.store import OutputVariable, TargetResult
from octo_appliance.engine.tasks.task_engine import TaskEngine

__all__ = [
    "RESTART_MESSAGE",
    "OutputVariable",
    "RunningTask",
    "TargetRef",
    "TargetResult",
    "TaskEngine",
    "TaskFailed",
    "TaskHandler",
    "TaskKindRegistry",
    "TaskLogWriter",
]
