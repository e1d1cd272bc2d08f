"""The C heap a burst of tasks freed is given back once none runs (issue 14: appliance RSS).

After 5,000 health checks glibc kept the freed pages of the burst in its arenas, so the RSS
stayed at the burst's high-water mark; the engine now trims once its last task has ended.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from octo_appliance.engine.tasks import TaskEngine, heap
from tests.engine.support import DEMO, wait_finished, wait_until


@pytest.mark.skipif(not heap.available(), reason="malloc_trim is glibc's")
def test_the_heap_is_trimmed_after_a_burst_and_never_while_a_task_runs(
    make_engine: Callable[..., TaskEngine], tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(cap=3, start=False)
    engine.heap_trim.after = 0.05
    running_at_trim: list[int] = []

    def trim() -> bool:
        running_at_trim.append(engine.running_count)
        return True

    monkeypatch.setattr(heap, "trim", trim)
    engine.start_in_thread()
    ids = [engine.enqueue(DEMO, f"wait {n}", {"gate": "burst"}) for n in range(5)]
    wait_until(lambda: tracker.executing() == 3, "three tasks to run")
    assert running_at_trim == []
    tracker.gate("burst").set()
    for task_id in ids:
        assert wait_finished(task_id).state == "success"
    wait_until(lambda: running_at_trim, "the trim after the burst")
    # once, or more if the last tasks were claimed after a pause with none running
    assert set(running_at_trim) == {0}
    assert engine.heap_trim.count >= len(running_at_trim)
