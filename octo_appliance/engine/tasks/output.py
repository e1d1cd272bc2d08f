"""Script output in the task log: every line up to a per-task limit, then a count and a tail.

A task's runner events become log lines through one :class:`TargetOutput` per target run.
The task's :class:`OutputBudget` (setting ``task_log_max_lines``) is shared by all its runs:
once it is spent, further lines are counted, and only the last ``TAIL_LINES`` of each run are
kept in memory; when the run ends they are written after one line saying how many were not
shown. Nothing is dropped silently, and the end of a script (its last words, the output
variables it set) still reaches the log. The engine's own lines are never counted.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from octo_appliance.config import Config

if TYPE_CHECKING:  # kinds imports this module
    from octo_appliance.engine.tasks.kinds import RunningTask
    from octo_appliance.engine.tasks.log import TargetRef

#: Lines of a run kept (and written at its end) once the task's budget is spent.
TAIL_LINES = 100
#: the ``task_log_max_lines`` setting's default
DEFAULT_MAX_LINES = Config.task_log_max_lines


class OutputBudget:
    """How many lines of script output one task may still log."""

    def __init__(self, limit: int = DEFAULT_MAX_LINES) -> None:
        self.limit = limit
        self.used = 0

    def take(self) -> bool:
        if self.used >= self.limit:
            return False
        self.used += 1
        return True


class TargetOutput:
    """The log lines of one target's run, within the task's :class:`OutputBudget`."""

    def __init__(self, task: RunningTask, target: TargetRef | None) -> None:
        self.task = task
        self.target = target
        self.budget = task.output_budget
        self.hidden = 0
        self.tail: deque[tuple[str, str]] = deque(maxlen=TAIL_LINES)

    def line(self, level: str, message: str) -> None:
        if self.budget.take():
            self.task.log(level, message, self.target)
            return
        if len(self.tail) == TAIL_LINES:
            self.hidden += 1
        self.tail.append((level, message))

    def finish(self) -> None:
        """The run ended: say how many lines were not shown, then write the kept tail."""
        if self.hidden:
            self.task.log(
                "warning",
                f"... {self.hidden:,} lines of script output not shown: this task's log reached "
                f"its limit of {self.budget.limit:,} lines (setting task_log_max_lines); the "
                f"last {len(self.tail)} lines follow ...",
                self.target,
            )
        for level, message in self.tail:
            self.task.log(level, message, self.target)
        self.tail.clear()
        self.hidden = 0
