"""The agent's side of a runner fork server: start it, ask it for runners, learn their exits.

A fork server (``octo-runner --fork-server``, docs/runner-protocol.md "Fork server") is one
runner process of a build with every command imported; it forks a fresh runner per request,
~10 ms of CPU instead of the ~50 ms of an interpreter start. The agent talks to it over a
``SOCK_SEQPACKET`` socket pair given as its stdin: a fork request carries the three pipe
ends that become the child's stdin, stdout and stderr; the answer is the child's pid, and
its exit code arrives later on the same socket (the agent is not the child's parent).

:class:`ForkedRunner` makes such a child look like the ``asyncio.subprocess.Process`` of a
runner started directly (``pid``, ``returncode``, ``stdin``, ``stdout``, ``stderr``,
``wait``, ``send_signal``), so the runner host relays and cancels both alike. The child is
its own session leader and runs as the agent's user, so signals reach it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import psutil

from octo_appliance.agent.errors import AgentError

log = logging.getLogger("octo_appliance.agent.runner")

#: a control message is a small JSON object
MESSAGE_BYTES = 4096
#: the exit code of a forked runner whose server died before telling it (as a SIGKILL)
LOST_EXIT_CODE = -9
#: how often a forked runner orphaned by its server's death is checked for having ended
ORPHAN_POLL = 0.05


class ForkServerGone(AgentError, OSError):
    """The fork server ended (or never became ready): start runners directly instead.

    Also an ``OSError``: to its callers it is one more way starting a process can fail."""


class ForkedRunner:
    """One runner forked by a fork server, seen like a subprocess of the agent."""

    def __init__(
        self,
        pid: int,
        exit_code: asyncio.Future[int],
        stdin: asyncio.StreamWriter,
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
    ) -> None:
        self.pid = pid
        self.stdin: asyncio.StreamWriter | None = stdin
        self.stdout: asyncio.StreamReader | None = stdout
        self.stderr: asyncio.StreamReader | None = stderr
        self._exit_code = exit_code

    @property
    def returncode(self) -> int | None:
        future = self._exit_code
        return future.result() if future.done() and not future.cancelled() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._exit_code)

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)


class ForkServer:
    """A running fork server (see the module docstring); :meth:`close` ends it."""

    def __init__(self, process: asyncio.subprocess.Process, control: socket.socket) -> None:
        self.process = process
        self._control = control
        self._ids = itertools.count(1)
        #: per fork request: the child's pid and the future of its exit code
        self._answers: dict[int, asyncio.Future[tuple[int, asyncio.Future[int]]]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        #: set while no forked runner is alive (a retiring server waits for it)
        self._idle = asyncio.Event()
        self._idle.set()
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self._stderr = asyncio.get_running_loop().create_task(self._log_stderr())
        self._watches: set[asyncio.Task[None]] = set()
        self.gone = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def busy(self) -> bool:
        """Whether a runner it forked is still alive."""
        return not self._idle.is_set()

    @classmethod
    async def start(
        cls, argv: Sequence[str], env: Mapping[str, str], options: Mapping[str, Any]
    ) -> ForkServer:
        """Start ``argv --fork-server`` and wait until it is ready (its imports done)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                "--fork-server",
                stdin=theirs.fileno(),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                cwd="/",
                env=dict(env),
                start_new_session=True,
                **options,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        server = cls(process, ours)
        try:
            await asyncio.shield(server._ready)
        except BaseException:
            await server.close()
            raise
        return server

    async def fork(self, limit: int) -> ForkedRunner:
        """A new runner, its stdio piped to the agent (stream line limit ``limit``)."""
        if self.gone:
            raise ForkServerGone("the runner fork server has ended")
        loop = asyncio.get_running_loop()
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        ident = next(self._ids)
        answer: asyncio.Future[tuple[int, asyncio.Future[int]]] = loop.create_future()
        self._answers[ident] = answer
        try:
            await self._send({"id": ident}, [stdin_r, stdout_w, stderr_w])
        except BaseException:
            self._answers.pop(ident, None)
            for fd in (stdin_w, stdout_r, stderr_r):
                os.close(fd)
            raise
        finally:
            for fd in (stdin_r, stdout_w, stderr_w):
                os.close(fd)
        try:
            pid, exit_code = await answer
        except BaseException:
            for fd in (stdin_w, stdout_r, stderr_r):
                os.close(fd)
            raise
        stdout = await _reader(loop, stdout_r, limit)
        stderr = await _reader(loop, stderr_r, limit)
        stdin = await _writer(loop, stdin_w)
        return ForkedRunner(pid, exit_code, stdin, stdout, stderr)

    async def retire(self) -> None:
        """Fork no more, and end once every runner it forked has ended: ending it sooner
        would cancel them (they stop with their parent). A replaced build's server."""
        self.gone = True
        await self._idle.wait()
        await self.close()

    async def close(self) -> None:
        """End the server now and wait for it; runners it forked that still run get SIGTERM
        (agent shutdown, after its runners were stopped)."""
        self.gone = True
        for task in (self._reader, self._stderr):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._control.close()
        with contextlib.suppress(ProcessLookupError):
            if self.process.returncode is None:
                self.process.kill()
        await self.process.wait()

    # -- internals -----------------------------------------------------------------------

    async def _send(self, message: dict[str, Any], fds: list[int]) -> None:
        data = json.dumps(message).encode("utf-8")
        loop = asyncio.get_running_loop()
        while True:
            try:
                socket.send_fds(self._control, [data], fds)
                return
            except BlockingIOError:
                writable = loop.create_future()
                loop.add_writer(self._control, writable.set_result, None)
                try:
                    await writable
                finally:
                    loop.remove_writer(self._control)
            except OSError as exc:
                raise ForkServerGone(f"the runner fork server is unreachable: {exc}") from exc

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await loop.sock_recv(self._control, MESSAGE_BYTES):
                self._dispatch(json.loads(data))
        except (OSError, ValueError) as exc:
            log.warning("the runner fork server's control socket failed: %s", exc)
        finally:
            self._ended()

    def _dispatch(self, message: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        if message.get("ready"):
            if not self._ready.done():
                self._ready.set_result(None)
        elif "exit" in message:
            future = self._exits.pop(int(message["exit"]), None)
            if not self._exits:
                self._idle.set()
            if future is not None and not future.done():
                future.set_result(int(message["code"]))
        elif "id" in message:
            answer = self._answers.pop(int(message["id"]), None)
            if "pid" in message:
                pid = int(message["pid"])
                # registered before the next message is read, so its exit cannot be missed
                exit_code: asyncio.Future[int] = loop.create_future()
                self._exits[pid] = exit_code
                self._idle.clear()
                if answer is None or answer.done():  # the asker gave up: nobody reads it
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)
                else:
                    answer.set_result((pid, exit_code))
            elif answer is not None and not answer.done():
                answer.set_exception(ForkServerGone(str(message.get("error", "fork failed"))))

    def _ended(self) -> None:
        """The server is gone: nobody waits for an answer, and the runners it forked are
        watched until they end (they were sent SIGTERM by its death)."""
        self.gone = True
        error = ForkServerGone("the runner fork server ended")
        if not self._ready.done():
            self._ready.set_exception(error)
        for answer in self._answers.values():
            if not answer.done():
                answer.set_exception(error)
        self._answers.clear()
        loop = asyncio.get_running_loop()
        for pid, future in self._exits.items():
            watch = loop.create_task(_watch_orphan(pid, future))
            self._watches.add(watch)
            watch.add_done_callback(self._watches.discard)
        self._exits = {}
        self._idle.set()

    async def _log_stderr(self) -> None:
        stream = self.process.stderr
        if stream is None:
            return
        while line := await stream.readline():
            text = line.decode("utf-8", "replace").rstrip()[:1000]
            log.info("runner fork server (pid %d): %s", self.process.pid, text)


async def _watch_orphan(pid: int, future: asyncio.Future[int]) -> None:
    with contextlib.suppress(psutil.Error):
        process = psutil.Process(pid)
        while process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
            await asyncio.sleep(ORPHAN_POLL)
    if not future.done():
        future.set_result(LOST_EXIT_CODE)


async def _reader(loop: asyncio.AbstractEventLoop, fd: int, limit: int) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    await loop.connect_read_pipe(lambda: protocol, open(fd, "rb", buffering=0))  # noqa: SIM115
    return reader


async def _writer(loop: asyncio.AbstractEventLoop, fd: int) -> asyncio.StreamWriter:
    protocol = asyncio.StreamReaderProtocol(asyncio.StreamReader(loop=loop), loop=loop)
    pipe = open(fd, "wb", buffering=0)  # noqa: SIM115
    transport, _ = await loop.connect_write_pipe(lambda: protocol, pipe)
    return asyncio.StreamWriter(transport, protocol, None, loop)
