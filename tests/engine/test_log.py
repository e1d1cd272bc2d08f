"""The task log: order, sequence numbers, sealing at rest, masking, key rotation, tampering."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from octo_runner.masking import Masker

from octo_appliance.db.tasks import TaskLogLine, TaskTargetResult
from octo_appliance.engine.tasks.log import UNREADABLE, TaskLogWriter, read_lines
from octo_appliance.engine.tasks.store import open_output_variables
from octo_appliance.vault import KeyRing, MasterKey, Vault
from tests.engine.support import DEMO, wait_finished

SECRET = "hunter2-Sup3r-Secret"
LATE = "late-secret-token-77"
OUTPUT = "output-secret-value-42"
MASK = "********"


def all_lines(octo, task_id):
    return read_lines(octo.appliance.vault, task_id, 0, 100_000)


def test_lines_are_numbered_in_order(octo, engine):
    task_id = engine.enqueue(DEMO, "many lines", {"lines": 450})
    assert wait_finished(task_id).state == "success"
    lines = all_lines(octo, task_id)
    assert [line.seq for line in lines] == list(range(1, len(lines) + 1))
    numbered = [line.message for line in lines if line.message.startswith("line ")]
    assert numbered == [f"line {n}" for n in range(1, 451)]
    assert lines[-1].message == "The task succeeded."


def test_lines_are_sealed_at_rest(octo, engine):
    task_id = engine.enqueue(DEMO, "sealed", {"lines": 5})
    wait_finished(task_id)
    cursor = octo.appliance.db.execute_sql(
        f"SELECT message FROM task_log_line WHERE task_id = {octo.appliance.db.param}",
        (task_id,),
    )
    raw = [row[0] for row in cursor.fetchall()]
    assert len(raw) >= 5
    assert all(value.startswith("v1.") for value in raw)
    assert not any("line" in value for value in raw)


def test_sensitive_values_never_reach_the_stored_log(octo, engine):
    targets = [{"id": "tgt_a", "name": "web-1", "sensitive_outputs": {"Token": "token"}}]
    task_id = engine.enqueue(
        DEMO,
        "secrets",
        {"echo_secret": True, "late_secret": LATE, "targets": targets, "fail": f"bad {SECRET}"},
        {"password": SECRET, "token": OUTPUT},
    )
    task = wait_finished(task_id)
    assert task.state == "failed"
    assert task.error == f"bad {MASK}"
    text = "\n".join(line.message for line in all_lines(octo, task_id))
    assert f"the password is {MASK}" in text
    assert f"late: {MASK}" in text
    assert f"output was {MASK}" in text
    for secret in (SECRET, LATE, OUTPUT):
        assert secret not in text
    # the sensitive output is stored sealed, and opens for the engine's own later use
    result = TaskTargetResult.get(TaskTargetResult.task == task_id)
    assert result.output_variables == [{"name": "Token", "value": None, "sensitive": True}]
    assert OUTPUT not in result.sealed_output_variables
    assert open_output_variables(octo.appliance.vault, result) == {"Token": OUTPUT}
    # and the sensitive argument is sealed in its row
    assert SECRET not in (task.sealed_arguments or "") and task.sealed_arguments


def test_master_key_rotation_reseals_the_log(octo, engine):
    from octo_appliance.db.rekey import reseal_values

    task_id = engine.enqueue(DEMO, "rotate", {"lines": 3}, {"password": SECRET})
    wait_finished(task_id)
    engine.stop_in_thread()
    old = octo.appliance.vault
    rotating = Vault(KeyRing(MasterKey.generate(), (old.ring.current,)))
    reseal_values(octo.appliance.db, rotating, batch_size=2, progress=lambda *a: None)
    new_only = Vault(KeyRing(rotating.ring.current))
    lines = read_lines(new_only, task_id, 0, 100)
    assert [line.message for line in lines][:3] == ["Running on node node-1.", "line 1", "line 2"]
    assert UNREADABLE not in [line.message for line in lines]


def test_a_line_moved_to_another_place_does_not_open(octo, engine):
    first = engine.enqueue(DEMO, "one", {"lines": 2})
    wait_finished(first)
    line = TaskLogLine.get((TaskLogLine.task == first) & (TaskLogLine.seq == 2))
    # Copy the sealed text of line 2 over line 3: same task, other position.
    TaskLogLine.update(message=line.message).where(
        (TaskLogLine.task == first) & (TaskLogLine.seq == 3)
    ).execute()
    lines = all_lines(octo, first)
    assert lines[1].message == "line 1"
    assert lines[2].message == UNREADABLE
    assert lines[2].level == "error"


async def test_the_log_holds_producers_back_while_the_database_is_behind() -> None:
    """Runner events wait in ``room()`` while too many lines are not stored yet, so a slow
    (or unreachable) database slows the script down instead of filling the appliance."""
    gate = asyncio.Event()

    async def slow_db(call: Callable[[], Any]) -> Any:
        await gate.wait()  # the database is behind: nothing is stored until the gate opens

    writer = TaskLogWriter(cast(Any, None), cast(Any, None), slow_db, batch_lines=10)
    writer.bind(asyncio.get_running_loop())
    writer.max_unsaved = 50
    writer.open_task("task_x", 0, Masker())
    for number in range(60):
        writer.append("task_x", "info", f"line {number}")

    producer = asyncio.ensure_future(writer.room())
    await asyncio.sleep(0.2)  # a chance to run ahead, which it must not take
    assert not producer.done()

    gate.set()
    await asyncio.wait_for(producer, 10)
    assert writer.unsaved < writer.max_unsaved
    await writer.close()
