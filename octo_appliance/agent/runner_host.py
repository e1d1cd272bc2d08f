"""Starting the runner as a subprocess, relaying its events, and killing its process tree.

The runner gets everything on stdin (variables, sensitive ones included: never argv, never
environment, never a file) and answers with JSON lines on stdout, which are re-emitted to the
appliance one by one as they arrive. It runs as ``sys.executable -I -S <runner.pyz>`` in a new
session, or, in a program frozen by PyInstaller, as ``<program> <runner.pyz>``
(:mod:`octo_appliance.agent.interpreter`). Once a build has been
used, the host keeps a fork server of it (:mod:`octo_appliance.agent.forkpool`), started
when the process is quiet, and later tasks get a runner forked from it: the same process a
direct start makes, without the interpreter start. A subclass that overrides
:meth:`RunnerHost.spawn` opts in with ``forks = True``; one that only changes
:meth:`RunnerHost.runner_command` keeps them.

Cancelling: SIGTERM to the runner (it kills the script's process group itself, after its own
grace), then, if the runner is still there after ``kill_grace``, SIGKILL to the runner's group
and to every descendant seen; any process of the tree that outlived the runner (a script that
``setsid``-ed away) is killed too. The agent's log gets counts and exit codes, never event
content: messages may hold a value that is not sensitive to the runner but is to the reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol

import psutil

from octo_appliance.agent.contract import AGENT_STREAM
from octo_appliance.agent.forkpool import ForkPool
from octo_appliance.agent.forkshare import Command as Command  # how a runner is started
from octo_appliance.agent.interpreter import python_command
from octo_appliance.agent.quiet import activity
from octo_appliance.comms import CallFailed

log = logging.getLogger("octo_appliance.agent.runner")

#: StreamReader line limit; the runner splits script lines at 64 KiB, JSON escaping grows them
LINE_LIMIT = 8 * 1024 * 1024
#: runner stderr lines copied into the agent log per run (the rest are counted)
STDERR_LINES = 200
STDERR_LINE_CHARS = 1000
#: environment variables the runner (and so every script) must not inherit
SCRUBBED_ENV = ("OCTO_API_KEY", "OCTO_REGISTRATION_TOKEN")

Emit = Callable[[dict[str, Any]], Awaitable[None]]


class Child(Protocol):
    """A runner process: started directly (``asyncio.subprocess.Process``) or forked
    (:class:`~octo_appliance.agent.forkserver.ForkedRunner`)."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    @property
    def stdin(self) -> asyncio.StreamWriter | None: ...
    @property
    def stdout(self) -> asyncio.StreamReader | None: ...
    @property
    def stderr(self) -> asyncio.StreamReader | None: ...
    async def wait(self) -> int: ...
    def send_signal(self, signum: int) -> None: ...


def now_iso() -> str:
    """The timestamp format of runner events (UTC, milliseconds, ``Z``)."""
    now = datetime.datetime.now(datetime.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def agent_log_event(message: str, level: str = "info") -> dict[str, Any]:
    """A log event written by the agent itself (``stream: "agent"``)."""
    return {
        "type": "log",
        "level": level,
        "time": now_iso(),
        "message": message,
        "stream": AGENT_STREAM,
    }


class Collected:
    """What the result of ``runner.run`` is made of, gathered from the event stream."""

    def __init__(self) -> None:
        self.events = 0
        self.output_variables: list[dict[str, Any]] = []
        self.artifacts: list[dict[str, Any]] = []
        self.result: dict[str, Any] | None = None

    def add(self, event: dict[str, Any]) -> None:
        self.events += 1
        kind = event.get("type")
        if kind == "output-variable":
            self.output_variables.append(
                {
                    "name": event.get("name"),
                    "value": event.get("value"),
                    "sensitive": bool(event.get("sensitive")),
                }
            )
        elif kind == "artifact":
            self.artifacts.append({k: event.get(k) for k in ("path", "name", "length")})
        elif kind == "result":
            self.result = event

    def outcome(self, returncode: int, work_dir: Path) -> dict[str, Any]:
        event = self.result
        if event is None:
            code = returncode
            body: dict[str, Any] = {
                "exit_code": code,
                "success": False,
                "canceled": False,
                "message": f"the runner ended without a result (exit code {code})",
            }
        else:
            body = {
                "exit_code": int(event.get("exit_code", returncode)),
                "success": bool(event.get("success")) and returncode == 0,
                "canceled": bool(event.get("canceled", False)),
                "message": str(event.get("message", "")),
            }
            if "status" in event:
                body["status"] = event["status"]
        details = event.get("details") if event is not None else None
        body.update(
            output_variables=self.output_variables,
            artifacts=self.artifacts,
            details=details if isinstance(details, dict) else {},
            work_dir=str(work_dir),
        )
        return body


class RunnerProcess:
    """One running runner; :meth:`terminate` is idempotent and shared by all who ask."""

    def __init__(
        self,
        process: Child,
        task_id: str,
        kill_grace: float,
        on_gone: Callable[[RunnerProcess], None],
    ) -> None:
        self.process = process
        self.task_id = task_id
        self.kill_grace = kill_grace
        self._on_gone = on_gone
        self._terminating: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def terminate(self) -> asyncio.Task[None]:
        if self._terminating is None:
            self._terminating = asyncio.get_running_loop().create_task(self._terminate())
        return self._terminating

    async def _terminate(self) -> None:
        process = self.process
        tree = _descendants(process.pid)
        try:
            if process.returncode is None:
                log.info("task %s: stopping the runner (pid %d)", self.task_id, process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                drain = asyncio.create_task(_discard(process.stdout))
                try:
                    async with asyncio.timeout(self.kill_grace):
                        await process.wait()
                except TimeoutError:
                    log.warning(
                        "task %s: the runner did not stop within %g s; killing its tree",
                        self.task_id,
                        self.kill_grace,
                    )
                    tree += _descendants(process.pid)
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, signal.SIGKILL)
                    _kill(tree)
                    await process.wait()
                finally:
                    drain.cancel()
            survivors = _kill(tree)
            if survivors:
                log.warning(
                    "task %s: killed %d process(es) the script left outside its group",
                    self.task_id,
                    survivors,
                )
        finally:
            self.gone()

    def gone(self) -> None:
        self._on_gone(self)


class RunnerHost:
    """Runs runner processes for one agent identity and knows which are still alive."""

    #: fork later tasks' runners from a fork server of their build (see
    #: :mod:`octo_appliance.agent.forkpool`); a subclass that overrides :meth:`spawn` gets
    #: ``False`` unless it sets this itself: the fork server is started with
    #: :meth:`runner_command`, not with its ``spawn``
    forks: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "spawn" in cls.__dict__ and "forks" not in cls.__dict__:
            cls.forks = False

    def __init__(self) -> None:
        self.live: set[RunnerProcess] = set()
        self.fork_pool = ForkPool(self.runner_command)

    async def run(
        self,
        pyz: Path,
        document: dict[str, Any],
        *,
        work_dir: Path,
        task_id: str,
        emit: Emit,
        kill_grace: float,
    ) -> dict[str, Any]:
        """Run one request through the runner; cancel this to kill the whole tree."""
        payload = json.dumps(document).encode("utf-8")
        busy = activity()
        busy.task_started()
        try:
            process, forked = await self._start(pyz, work_dir)
        except OSError as exc:
            busy.task_ended()
            log.error("task %s: cannot start the runner: %s", task_id, exc)
            raise CallFailed(
                "runner_failed",
                f"the agent cannot start the runner: {exc.strerror or exc}",
                hint="see the agent's log; check free memory and process limits on the target",
            ) from None
        except BaseException:
            busy.task_ended()
            raise
        handle = RunnerProcess(process, task_id, kill_grace, self.live.discard)
        self.live.add(handle)
        log.info(
            "task %s: runner %s (pid %d) in %s",
            task_id,
            "forked" if forked else "started",
            process.pid,
            work_dir.name,
        )
        stderr = asyncio.create_task(_log_stderr(process.stderr, task_id))
        feed = asyncio.create_task(_feed(process.stdin, payload))
        collected = Collected()
        try:
            assert process.stdout is not None
            while line := await _readline(process.stdout, task_id):
                event = _parse(line, task_id)
                if event is None:
                    continue
                collected.add(event)
                await emit(event)
            await feed
            returncode = await process.wait()
            await stderr
        except BaseException:
            feed.cancel()
            await asyncio.shield(handle.terminate())
            stderr.cancel()
            raise
        finally:
            busy.task_ended()
            if self.can_fork():
                self.fork_pool.refill_when_quiet(pyz)
        handle.gone()
        log.info(
            "task %s: runner exited with code %d after %d events",
            task_id,
            returncode,
            collected.events,
        )
        return collected.outcome(returncode, work_dir)

    async def _start(self, pyz: Path, work_dir: Path) -> tuple[Child, bool]:
        """A runner for this task: forked if the build has a fork server, else started;
        and whether it was forked."""
        if self.can_fork():
            process = await self.fork_pool.fork(pyz, LINE_LIMIT)
            if process is not None:
                return process, True
            self.fork_pool.forgive()
        return await self.spawn(pyz, work_dir), False

    def can_fork(self) -> bool:
        """Whether this host's runners may come from a fork server."""
        return self.forks

    def runner_command(self, pyz: Path) -> Command:
        """How the runner is started: the appliance's built-in worker overrides this to
        start it as another user, with that user's environment. The fork server is started
        the same way, and hosts whose commands differ only in the build's path share it."""
        return [*python_command(), str(pyz)], _child_environment(), {}

    async def spawn(self, pyz: Path, work_dir: Path) -> Child:
        """Start the runner with piped stdio in its own session."""
        argv, env, options = self.runner_command(pyz)
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=work_dir,
            env=env,
            start_new_session=True,
            limit=LINE_LIMIT,
            **options,
        )

    async def terminate_all(self) -> None:
        """Stop every runner still alive and leave the fork server, which ends unless
        another host of this process uses it (agent shutdown: no more are started
        afterwards), and wait until they are gone."""
        tasks = [handle.terminate() for handle in list(self.live)]
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.fork_pool.close()


def _child_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}


async def _feed(stdin: asyncio.StreamWriter | None, payload: bytes) -> None:
    """Write the request and close stdin; a runner that exits early is not an error here."""
    if stdin is None:
        return
    try:
        stdin.write(payload)
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()
    except (BrokenPipeError, ConnectionResetError):
        pass


async def _readline(stream: asyncio.StreamReader, task_id: str) -> bytes:
    while True:
        try:
            return await stream.readline()
        except ValueError:  # over LINE_LIMIT: the reader dropped what it had buffered
            log.warning("task %s: the runner wrote an over-long line; it was dropped", task_id)


def _parse(line: bytes, task_id: str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        log.warning(
            "task %s: the runner wrote a line that is not an event (%d bytes); ignored",
            task_id,
            len(line),
        )
        return None
    return event


async def _log_stderr(stream: asyncio.StreamReader | None, task_id: str) -> None:
    """Copy the runner's own diagnostics (masked by the runner) into the agent log."""
    if stream is None:
        return
    lines = 0
    while True:
        try:
            raw = await stream.readline()
        except ValueError:
            continue
        if not raw:
            break
        lines += 1
        if lines <= STDERR_LINES:
            text = raw.decode("utf-8", "replace").rstrip()[:STDERR_LINE_CHARS]
            log.info("task %s: runner stderr: %s", task_id, text)
    if lines > STDERR_LINES:
        log.info("task %s: %d more runner stderr lines not logged", task_id, lines - STDERR_LINES)


async def _discard(stream: asyncio.StreamReader | None) -> None:
    """Keep reading a cancelled runner's stdout so it never blocks writing its last events."""
    if stream is None:
        return
    with contextlib.suppress(ValueError):
        while await stream.read(65536):
            pass


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def _kill(processes: list[psutil.Process]) -> int:
    """SIGKILL those still running (psutil checks they are the same processes); the count."""
    killed = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                process.kill()
                killed += 1
    return killed
